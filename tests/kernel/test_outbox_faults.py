"""Delivery under faults: a sink that is down, one that throttles, several dispatchers on one outbox,
a 10,000-row bulk read end to end, and a listener killed with SIGKILL mid-storm."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import aiohttp
import pytest
from alerting_servers import PagerDutyServer, drained
from testkit import MakeConfig

from canary.alerts import Alert
from canary.config import Config
from canary.errors import DeliveryError
from canary.events import DetectionEvent, EventKind, event_key
from canary.metrics import Metrics
from canary.outbox import Dispatcher
from canary.pipeline import Pipeline
from canary.runtime import build_sinks
from canary.store import ControlStore

KEY = "R0UT1NGK3Y000000000000000000000B"
T0 = dt.datetime(2026, 3, 1, 3, 0, tzinfo=dt.timezone.utc)


def _events(n: int, groups: int, prefix: str = "f", canary_ids: Sequence[int] | None = None) -> list[DetectionEvent]:
    return [
        DetectionEvent(kind=EventKind.READ, source="fault", key=event_key(prefix, i), group=f"{prefix}-g{i % groups}",
                       canary_id=canary_ids[i] if canary_ids else None, observed_at=T0 + dt.timedelta(milliseconds=i),
                       actor={"user": "mallory"}, origin={"client_addr": "10.0.0.9"})
        for i in range(n)
    ]


def _config(make_config: MakeConfig, pd: PagerDutyServer, **alerting: object) -> Config:
    return make_config(
        sinks=[{"name": "pd", "type": "pagerduty", "routing_key": KEY, "url": pd.url, "timeout": 2}],
        alerting={"retry_initial": 0.05, "retry_max": 0.3, "sink_timeout": 2, "workers": 2, **alerting},
    )


async def test_sink_down_then_up_receives_every_incident(store: ControlStore, make_config: MakeConfig, http: aiohttp.ClientSession) -> None:
    """PagerDuty answering 503 for a second, then 202: every incident is delivered exactly once, and
    /metrics counts the failed and delivered attempts per sink."""
    async with PagerDutyServer(KEY) as pd:
        cfg = _config(make_config, pd)
        await Pipeline(store.pool, cfg).record(_events(30, 30))
        pd.fail_until = time.monotonic() + 1.0
        metrics = Metrics()
        d = Dispatcher(store.pool, build_sinks(cfg, http), cfg.alerting, poll=0.05, metrics=metrics)
        await d.start()
        try:
            await drained(store.pool, 20)
        finally:
            await d.stop()
    keys = {r["dedup_key"] for r in await store.pool.fetch("SELECT dedup_key FROM incidents")}
    assert set(pd.opened) == keys and set(pd.opened.values()) == {1} and len(keys) == 30
    assert any(r.at < pd.fail_until for r in pd.requests)  # it really was down for a while
    assert d.stats.dead == 0 and d.stats.failed_attempts >= 1
    rendered = metrics.render().decode()
    assert 'canary_deliveries_total{outcome="delivered",sink="pd"} 30.0' in rendered
    assert 'canary_deliveries_total{outcome="failed",sink="pd"}' in rendered


async def test_throttling_sink_is_not_hammered(store: ControlStore, make_config: MakeConfig, http: aiohttp.ClientSession) -> None:
    """After a 429 with Retry-After: 1, no request reaches the sink until the second has passed,
    and every incident is delivered afterwards."""
    async with PagerDutyServer(KEY) as pd:
        cfg = _config(make_config, pd)
        await Pipeline(store.pool, cfg).record(_events(20, 20))
        pd.throttle = (0.3, "1")
        d = Dispatcher(store.pool, build_sinks(cfg, http), cfg.alerting, poll=0.05, batch=5)
        await d.start()
        try:
            await drained(store.pool, 20)
        finally:
            await d.stop()
    first_429 = pd.requests[0].at
    burst = [r for r in pd.requests if r.at < first_429 + 0.2]  # requests already in flight when the 429 came
    quiet = [r for r in pd.requests if first_429 + 0.2 <= r.at < first_429 + 0.95]
    assert quiet == [], [round(r.at - first_429, 3) for r in pd.requests]
    assert len(burst) <= 10  # at most the two workers' claimed batches
    assert len(pd.opened) == 20 and set(pd.opened.values()) == {1}
    assert len(pd.requests) <= 20 + len(burst)


async def test_several_dispatchers_share_one_outbox_without_duplicates(make_config: MakeConfig, control_dsn: str, http: aiohttp.ClientSession) -> None:
    """Three dispatchers (separate pools, as three listeners) deliver 200 incidents: each exactly once."""
    async with PagerDutyServer(KEY) as pd:
        cfg = _config(make_config, pd)
        stores = [await ControlStore(cfg).open() for _ in range(3)]
        try:
            await Pipeline(stores[0].pool, cfg).record(_events(200, 200))
            pd.delay = 0.005
            ds = [Dispatcher(s.pool, build_sinks(cfg, http), cfg.alerting, poll=0.05, batch=10) for s in stores]
            for d in ds:
                await d.start()
            try:
                await drained(stores[0].pool, 30)
            finally:
                for d in ds:
                    await d.stop()
        finally:
            for s in stores:
                await s.close()
    assert len(pd.requests) == 200 and len(pd.opened) == 200
    assert all(d.stats.delivered > 0 for d in ds)  # the work really was shared


async def test_bulk_read_of_10000_canaries_pages_once_end_to_end(store: ControlStore, make_config: MakeConfig, http: aiohttp.ClientSession) -> None:
    """One statement reading 10,000 canaries (10,000 events, one group) reaches PagerDuty as one alert:
    a trigger plus at most one update per escalation threshold, all with the same dedup_key."""
    ids = [r["id"] for r in await store.pool.fetch(
        "INSERT INTO canaries (uid, kind, datastore, label, location_enc, location_idx, key_id)"
        " SELECT 'u'||g, 'customer', 'shop', 'shop/public.customers', '\\x00', int8send(g), 'k'"
        " FROM generate_series(1, 10000) g RETURNING id")]
    async with PagerDutyServer(KEY) as pd:
        cfg = _config(make_config, pd, escalate_at=[10, 100, 1000, 10000])
        p = Pipeline(store.pool, cfg)
        p.start()
        d = Dispatcher(store.pool, build_sinks(cfg, http), cfg.alerting, poll=0.05)
        await d.start()
        try:
            events = [DetectionEvent(kind=EventKind.READ, source="jsonlog", key=event_key("bulk", c), group="stmt-42",
                                     canary_id=c, observed_at=T0, actor={"user": "mallory"}) for c in ids]
            await p.submit_many(events)
            await p.stop()
            await drained(store.pool, 20)
        finally:
            await d.stop()
    bodies = [r.json() for r in pd.requests]
    assert len({b["dedup_key"] for b in bodies}) == 1 and len(pd.opened) == 1
    assert 2 <= len(bodies) <= 5 and all(b["event_action"] == "trigger" for b in bodies)
    last = bodies[-1]["payload"]["custom_details"]
    assert last["canary_count"] == 10_000 and last["canaries"] == [{"label": "shop/public.customers", "kind": "customer",
                                                                     "count": 10_000}]


async def test_permanent_failure_dead_letters_and_alerts(store: ControlStore, make_config: MakeConfig, http: aiohttp.ClientSession) -> None:
    """A 400 from PagerDuty dead-letters the notification at once and calls on_dead (which the
    listener turns into a HEALTH incident for the other sinks)."""
    async with PagerDutyServer(KEY) as pd:
        cfg = _config(make_config, pd)
        await Pipeline(store.pool, cfg).record(_events(1, 1))
        pd.script.append((400, {}))
        dead: list[tuple[str, int]] = []

        async def on_dead(sink: str, alert: Alert, error: DeliveryError) -> None:
            dead.append((sink, alert.incident_id))

        d = Dispatcher(store.pool, build_sinks(cfg, http), cfg.alerting, poll=0.05, on_dead=on_dead)
        await d.start()
        try:
            await drained(store.pool, 10)
        finally:
            await d.stop()
    row = await store.pool.fetchrow("SELECT status, last_error, attempts FROM outbox")
    assert row["status"] == "dead" and "400" in row["last_error"] and row["attempts"] == 1
    assert dead == [("pd", await store.pool.fetchval("SELECT id FROM incidents"))]


WORKER = textwrap.dedent('''
    """A listener stand-in: pipeline + dispatcher in one process, submitting a replayable storm."""
    import asyncio, datetime as dt, sys
    import aiohttp
    from canary.config import load
    from canary.events import DetectionEvent, EventKind, event_key
    from canary.outbox import Dispatcher
    from canary.pipeline import Pipeline
    from canary.runtime import build_sinks
    from canary.store import ControlStore

    T0 = dt.datetime(2026, 3, 1, 3, 0, tzinfo=dt.timezone.utc)

    async def main(path: str, n: int, groups: int) -> None:
        cfg = load(path)
        store = await ControlStore(cfg).open()
        async with aiohttp.ClientSession() as http:
            pipeline = Pipeline(store.pool, cfg, max_batch=40)
            pipeline.start()
            dispatcher = Dispatcher(store.pool, build_sinks(cfg, http), cfg.alerting, poll=0.05, batch=10)
            await dispatcher.start()
            events = [DetectionEvent(kind=EventKind.READ, source="storm", key=event_key("storm", i),
                                     group=f"storm-{i % groups}", canary_id=None,
                                     observed_at=T0 + dt.timedelta(milliseconds=i), actor={"user": "mallory"})
                      for i in range(n)]
            for start in range(0, n, 100):
                await pipeline.submit_many(events[start:start + 100])
                print("committed", start + 100, flush=True)
            while await store.pool.fetchval("SELECT count(*) FROM outbox WHERE status = 'pending'"):
                await asyncio.sleep(0.05)
            print("drained", flush=True)
            await pipeline.stop()
            await dispatcher.stop()
        await store.close()

    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
''')


async def _wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.mark.slow
async def test_kill_9_mid_storm_then_restart_delivers_every_incident_once(
    store: ControlStore, make_config: MakeConfig, tmp_path: Path, control_dsn: str, data_dir: Path,
) -> None:
    """SIGKILL a listener process while 1,000 events are being committed and delivered; restart it
    (its source replays from the last checkpoint): all events are stored once, every incident reaches
    PagerDuty, and no dedup key opens a second PagerDuty alert."""
    async with PagerDutyServer(KEY) as pd:
        pd.delay = 0.01
        cfg_file = tmp_path / "canary.toml"
        cfg_file.write_text(textwrap.dedent(f'''
            [canary]
            data_dir = "{data_dir}"
            [control]
            dsn = "{control_dsn}"
            [alerting]
            retry_initial = 0.05
            retry_max = 0.5
            sink_timeout = 0.5
            workers = 2
            [[sinks]]
            name = "pd"
            type = "pagerduty"
            routing_key = "{KEY}"
            url = "{pd.url}"
            timeout = 0.5
        '''))
        script = tmp_path / "worker.py"
        script.write_text(WORKER)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        args = [sys.executable, str(script), str(cfg_file), "1000", "200"]
        errors = (tmp_path / "worker.err").open("wb")
        first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=errors, env=env)
        try:
            await _wait_for(lambda: len(pd.requests) >= 30 or first.poll() is not None, 60)
            assert first.poll() is None, (tmp_path / "worker.err").read_text()[-2000:]
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        committed_before = await store.pool.fetchval("SELECT count(*) FROM events")
        delivered_before = len(pd.requests)
        second = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                      stderr=asyncio.subprocess.PIPE, env=env)
        out, err = await asyncio.wait_for(second.communicate(), 90)
        errors.close()
        assert second.returncode == 0 and b"drained" in out, err.decode()[-2000:]
    assert 0 < committed_before < 1000 or delivered_before < 200  # the kill really was mid-storm
    assert await store.pool.fetchval("SELECT count(*) FROM events") == 1000
    keys = {r["dedup_key"] for r in await store.pool.fetch("SELECT dedup_key FROM incidents")}
    assert len(keys) == 200
    assert set(pd.opened) == keys and set(pd.opened.values()) == {1}
    assert await store.pool.fetchval("SELECT count(*) FROM outbox WHERE status <> 'delivered'") == 0


async def test_retry_horizon_dead_letters_a_sink_that_never_recovers(store: ControlStore, make_config: MakeConfig, http: aiohttp.ClientSession) -> None:
    """With dead_letter_after = 0.5 s, a sink answering 503 forever is retried with backoff and then
    dead-lettered (and on_dead is called), instead of being retried without end or dropped."""
    async with PagerDutyServer(KEY) as pd:
        cfg = _config(make_config, pd, dead_letter_after="500ms")
        await Pipeline(store.pool, cfg).record(_events(1, 1))
        pd.fail_until = time.monotonic() + 3600
        dead: list[str] = []

        async def on_dead(sink: str, alert: Alert, error: DeliveryError) -> None:
            dead.append(error.message)

        d = Dispatcher(store.pool, build_sinks(cfg, http), cfg.alerting, poll=0.05, on_dead=on_dead)
        await d.start()
        try:
            await drained(store.pool, 10)
        finally:
            await d.stop()
    row = await store.pool.fetchrow("SELECT status, attempts FROM outbox")
    assert row["status"] == "dead" and row["attempts"] >= 3 and len(pd.requests) == row["attempts"]
    assert len(dead) == 1 and "503" in dead[0]
    gaps = [b.at - a.at for a, b in zip(pd.requests, pd.requests[1:])]
    assert all(g >= 0.02 for g in gaps)  # backoff, not a tight loop


def test_backoff_is_exponential_with_jitter_and_honours_retry_after() -> None:
    """Delays grow exponentially within [base/2, base], cap at retry_max, never undercut Retry-After."""
    import random

    from canary.outbox import backoff

    rng = random.Random(7)
    for attempts in range(1, 12):
        base = min(300.0, 1.0 * 2 ** (attempts - 1))
        for _ in range(50):
            assert base / 2 <= backoff(attempts, 1.0, 300.0, None, rng) <= base
    assert backoff(1, 1.0, 300.0, 42.0, rng) == 42.0
    assert backoff(20, 1.0, 300.0, None, rng) <= 300.0
