"""Delivery to a rate-limited pager: after a 429 with Retry-After, one probe per window, then a slow
start (1, 2, 4, ... requests per round), never the burst of everything that queued up in the pause;
every alert still delivered exactly once."""

from __future__ import annotations

import datetime as dt

import aiohttp
import pytest
from aiohttp import web
from alerting_servers import PagerDutyServer, Seen, drained
from hypothesis import given, settings
from hypothesis import strategies as st
from testkit import MakeConfig

from canary.config import Config
from canary.events import DetectionEvent, EventKind, event_key
from canary.outbox import Dispatcher
from canary.pipeline import Pipeline
from canary.runtime import build_sinks
from canary.sinks._http import parse_retry_after
from canary.store import ControlStore

KEY = "R0UT1NGK3Y000000000000000000000P"
T0 = dt.datetime(2026, 3, 1, 3, 0, tzinfo=dt.timezone.utc)
INTERVAL = 0.4  # seconds between the starts of two paced rounds (the test's pace_interval)


def _events(n: int) -> list[DetectionEvent]:
    """``n`` reads in ``n`` groups: ``n`` incidents, one trigger each."""
    return [DetectionEvent(kind=EventKind.READ, source="pace", key=event_key("p", i), group=f"p-g{i}", canary_id=None,
                           observed_at=T0 + dt.timedelta(milliseconds=i), actor={"user": "mallory"}) for i in range(n)]


def _config(make_config: MakeConfig, pd: PagerDutyServer, workers: int) -> Config:
    return make_config(
        sinks=[{"name": "pd", "type": "pagerduty", "routing_key": KEY, "url": pd.url, "timeout": 2}],
        alerting={"retry_initial": 0.05, "retry_max": 0.3, "sink_timeout": 2, "workers": workers},
    )


def _offsets(requests: list[Seen], since: float) -> list[float]:
    return [round(r.at - since, 3) for r in requests]


async def _deliver_all(store: ControlStore, make_config: MakeConfig, http: aiohttp.ClientSession, pd: PagerDutyServer,
                       n: int, *, batch: int, pace_limit: int, workers: int = 2) -> Dispatcher:
    """Record ``n`` incidents, run a dispatcher until the outbox is drained, check each alert was
    opened exactly once at PagerDuty."""
    cfg = _config(make_config, pd, workers)
    await Pipeline(store.pool, cfg).record(_events(n))
    d = Dispatcher(store.pool, build_sinks(cfg, http), cfg.alerting, poll=0.05, batch=batch, pace_interval=INTERVAL,
                   pace_limit=pace_limit)
    await d.start()
    try:
        await drained(store.pool, 30)
    finally:
        await d.stop()
    keys = {r["dedup_key"] for r in await store.pool.fetch("SELECT dedup_key FROM incidents")}
    assert len(keys) == n and set(pd.opened) == keys and set(pd.opened.values()) == {1}  # each exactly once
    return d


async def test_one_probe_per_retry_after_window_then_a_slow_start(store: ControlStore, make_config: MakeConfig,
                                                                  http: aiohttp.ClientSession) -> None:
    """PagerDuty throttles for 2.5 s answering 429 with Retry-After: 1. After the requests already in
    flight when the first 429 came, at most one request reaches it per one-second window (a probe,
    throttled again until the limit lifts); after the first probe that succeeds, rounds of 1, 2, 4
    requests at least a pace interval apart, then (after a clean round of pace_limit = 8) unpaced;
    all 40 alerts delivered exactly once."""
    async with PagerDutyServer(KEY) as pd:
        pd.throttle = (2.5, "1")
        await _deliver_all(store, make_config, http, pd, 40, batch=10, pace_limit=8)
    first = pd.requests[0].at
    assert pd.throttled_until is not None
    limit_lifted = pd.throttled_until
    burst = [r for r in pd.requests if r.at < first + 0.2]  # sent before the first 429 came back
    assert len(burst) <= 20  # at most the two workers' claimed batches
    probes = [r for r in pd.requests if first + 0.2 <= r.at < limit_lifted]
    assert 1 <= len(probes) <= 3, _offsets(pd.requests, first)
    gaps = [b.at - a.at for a, b in zip([burst[-1], *probes], probes)]
    assert all(g >= 0.9 for g in gaps), _offsets(pd.requests, first)  # one request per Retry-After window
    after = [r for r in pd.requests if r.at >= limit_lifted]
    probe = after[0].at
    assert probe - (probes[-1].at if probes else burst[-1].at) >= 0.9  # the first success was a probe too

    def by(t: float) -> int:
        return sum(1 for r in after if r.at < probe + t)

    # round k holds 2**k requests and starts at least INTERVAL after round k-1 (slack for scheduling)
    assert by(INTERVAL - 0.1) == 1, _offsets(after, probe)
    assert by(2 * INTERVAL - 0.1) <= 1 + 2, _offsets(after, probe)
    assert by(3 * INTERVAL - 0.1) <= 1 + 2 + 4, _offsets(after, probe)
    assert len(after) == 40  # nothing sent twice once the limit lifted


class ThrottlingPagerDuty(PagerDutyServer):
    """PagerDuty answering its rate-limit response (429, Retry-After: 1) to the n-th requests given."""

    def __init__(self, routing_key: str, throttled: set[int]) -> None:
        super().__init__(routing_key)
        self.throttled = throttled

    async def enqueue(self, request: web.Request) -> web.Response:
        if len(self.requests) in self.throttled:
            return web.json_response({"status": "throttled", "message": "Requests for this service are arriving too "
                                      "quickly. Please retry later."}, status=429, headers={"Retry-After": "1"})
        return await super().enqueue(request)


async def test_a_sink_that_throttles_again_mid_ramp_is_paused_again(store: ControlStore, make_config: MakeConfig,
                                                                   http: aiohttp.ClientSession) -> None:
    """A 429 in the middle of the slow start (the first request of the round of four) pauses the sink
    again for its Retry-After: nothing but that round's requests already in flight reaches it in the
    window, then a single probe, then rounds again; every alert delivered exactly once.

    The round is told by its place in the order, not by arrival time: requests 0 (429) and 1 (the
    probe), the round of two (2, 3), the round of four (4..7, the first throttled, three in flight).
    Under load the in-flight three can reach the server late, even after Retry-After has passed."""
    async with ThrottlingPagerDuty(KEY, {1, 5}) as pd:
        await _deliver_all(store, make_config, http, pd, 12, batch=1, workers=1, pace_limit=4)
    at = [r.at for r in pd.requests]
    assert at[1] - at[0] >= 0.9  # the first probe waited out Retry-After
    again = at[4]
    after_round = at[8:]  # everything the dispatcher sent after it learnt of the second 429
    assert len(after_round) >= 2, _offsets(pd.requests, again)
    assert after_round[0] - again >= 0.9, _offsets(pd.requests, again)  # nothing new in the window
    assert after_round[1] - after_round[0] >= INTERVAL - 0.1, _offsets(pd.requests, again)  # a probe alone


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("120", 120.0), (" 7 ", 7.0), ("1.5", 1.5), ("99999999999999999999", 3600.0), ("0", 0.0),
     ("Mon, 01 Jan 0001 00:00:00 GMT", 0.0), ("Mon, 01 Jan 9999 00:00:00 GMT", 3600.0),
     ("\u00b9", None), ("\u0663", None), ("-5", None), ("soon", None), ("", None), (None, None)],
)
def test_retry_after_values_parse_to_bounded_seconds(header: str | None, seconds: float | None) -> None:
    """Retry-After as delta-seconds (with a fraction too) or HTTP-date becomes seconds in [0, 3600];
    anything else (Unicode digits float() refuses, negatives, words) is ignored, never an exception."""
    assert parse_retry_after(header) == seconds


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40))
def test_no_retry_after_header_raises(header: str) -> None:
    """Whatever a receiver writes in Retry-After, parsing it gives None or seconds in [0, 3600]."""
    got = parse_retry_after(header)
    assert got is None or 0.0 <= got <= 3600.0
