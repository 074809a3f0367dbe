"""Cloud deliveries that split a stderr entry: the lines of canary's read entry (LOG, DETAIL with the
JSON, HINT with the MAC, CONTEXT) arrive as separate Pub/Sub pushes in any order, some twice, or
across Firehose requests to different listeners sharing one control store, or reach a listener that
dies before the entry is complete. Each way it is one read incident with a verified MAC; a flood of
partial lines stays within [coverage.log_staging]'s bounds."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
from typing import Any

import pytest
from cloud_support import (
    AUDIENCE,
    DATABASE_ID,
    SERVICE_ACCOUNT,
    Google,
    cloudwatch_message,
    firehose_record,
    jwks_server,
    log_entry,
    post_firehose,
    post_push,
    push_body,
)
from testkit import (
    STDOUT_SINK,
    CanaryRows,
    MakeConfig,
    OpenRuntime,
    customer_canary,
    incidents_when,
    read_record,
    serving,
)

from canary.config import Config
from canary.errors import ConfigError
from canary.postgres.firehose import FirehoseReceiver
from canary.postgres.protocol import LOG_MESSAGE
from canary.postgres.pubsub import PubSubPush
from canary.postgres.staging import split_entries
from canary.runtime import Runtime, close_runtime, open_runtime
from canary.store import ControlStore, log_staging
from canary.store.log_staging import StagedLine

SHOP = {"name": "shop", "dsn": "postgresql://canary@127.0.0.1:1/shop", "node": "primary"}
RDS_PREFIX = "%t:%r:%u@%d:[%p]:"
CLOUDSQL_PREFIX = "%m [%p]: [%l-1] db=%d,user=%u "
RDS_GROUP = "/aws/rds/instance/shop-db/postgresql"
NUMBERED_GROUP = "/aws/rds/instance/numbered-db/postgresql"
STREAMS = [{"log_group": RDS_GROUP, "datastore": "shop", "node": "shop-db", "format": "stderr", "log_line_prefix": RDS_PREFIX},
           {"log_group": NUMBERED_GROUP, "datastore": "shop", "node": "shop-db", "format": "stderr",
            "log_line_prefix": CLOUDSQL_PREFIX}]
CONTEXT = "PL/pgSQL function canary_shop.row_visible(text,text,text) line 12 at RAISE"


def read_entry(pk: int, pid: int) -> dict[str, Any]:
    """The touch function's entry for canary row ``pk`` read by mallory in backend ``pid``, signed."""
    return read_record(pk, pid, query="select * from customers", fields={"message": LOG_MESSAGE})


def cloudsql_lines(pk: int, pid: int, first: int) -> list[str]:
    """The entry as Cloud SQL's stderr lines (``%l`` from ``first``), then the backend's next entry."""
    record = read_entry(pk, pid)
    head = "2026-11-23 15:24:13.620 UTC [{pid}]: [{n}-1] db=shop,user=mallory "
    body = [f"LOG:  {record['message']}", f"DETAIL:  {record['detail']}", f"HINT:  {record['hint']}", f"CONTEXT:  {CONTEXT}",
            "LOG:  duration: 1.234 ms"]
    return [head.format(pid=pid, n=first + i) + text for i, text in enumerate(body)]


def rds_lines(pk: int, pid: int) -> list[str]:
    """The entry as RDS writes it (``%t:%r:%u@%d:[%p]:``, no ``%l``), between two other entries."""
    record = read_entry(pk, pid)
    head = f"2026-11-23 15:24:13 UTC:10.1.2.3(5432):mallory@shop:[{pid}]:"
    return [f"2026-11-23 15:24:12 UTC:10.1.2.3(5432):mallory@shop:[{pid}]:LOG:  connection authorized: user=mallory database=shop",
            f"{head}LOG:  {record['message']}", f"{head}DETAIL:  {record['detail']}", f"{head}HINT:  {record['hint']}",
            f"{head}CONTEXT:  {CONTEXT}", f"{head}LOG:  duration: 2.5 ms"]


def cloud_config(make_config: MakeConfig, jwks_url: str = "http://127.0.0.1:9/certs", **staging: Any) -> Config:
    return make_config(sinks=[STDOUT_SINK], datastores=[SHOP], coverage={
        "firehose": {"access_key": "fh-access-key-for-tests", "streams": STREAMS},
        "pubsub": {"audience": AUDIENCE, "service_account": SERVICE_ACCOUNT, "jwks_url": jwks_url,
                   "databases": [{"database_id": DATABASE_ID, "datastore": "shop", "node": "shop-sql"}]},
        "log_staging": {"quiet": "0.5s", "firehose_quiet": staging.get("quiet", "0.5s"), **staging}})


@pytest.fixture
async def canaries(canary_rows: CanaryRows) -> list[int]:
    return await canary_rows(*(customer_canary(pk) for pk in (11, 22, 33)))


async def reasons(rt: Runtime) -> list[str]:
    return sorted(r["reason"] for r in await rt.pool.fetch("SELECT reason FROM rejects"))


async def reads(rt: Runtime, at_least: int = 1, timeout: float = 8.0) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = [dict(r) for r in await rt.pool.fetch("SELECT * FROM events WHERE kind = 'read' ORDER BY id")]
        if len(rows) >= at_least or asyncio.get_running_loop().time() > deadline:
            return rows
        await asyncio.sleep(0.05)


async def test_a_read_pushed_line_by_line_in_shuffled_order_one_line_twice_is_one_incident(
        open_test_runtime: OpenRuntime, make_config: MakeConfig, canaries: list[int]) -> None:
    """Cloud SQL's lines of one read entry (and the backend's next entry) pushed one LogEntry per
    request in shuffled order, the DETAIL once more after the entry was processed: every push is
    acknowledged, the read is one event of canary 11 whose MAC held (no tamper, nothing rejected), one
    incident, and nothing is left waiting once the flusher has seen the quiet next entry."""
    google = Google()
    async with jwks_server(google) as certs:
        rt = await open_test_runtime(cloud_config(make_config, certs.url))
        rt.pipeline.start()
        push = PubSubPush.from_config(rt.config)
        lines = cloudsql_lines(11, 4242, first=5)
        entries = [log_entry(line, insert_id=f"insert-{n}") for n, line in enumerate(lines)]
        order = entries[:]
        random.Random(7).shuffle(order)
        order.insert(2, entries[3])  # the CONTEXT twice before the entry completes
        async with serving(rt, [push]) as port:
            url = f"http://127.0.0.1:{port}/ingest/pubsub"
            for entry in order:
                status, body, _ = await post_push(url, push_body(entry), google.token())
                assert (status, body) == (204, b"")
            found = await reads(rt)
            assert len(found) == 1 and found[0]["canary_id"] == canaries[0]
            status, _, _ = await post_push(url, push_body(entries[1]), google.token())  # the DETAIL again, later
            assert status == 204
            for _ in range(60):
                if (await log_staging.counts(rt.pool, "pubsub"))[::2] == (0, 0):
                    break
                await asyncio.sleep(0.05)
            assert (await log_staging.counts(rt.pool, "pubsub"))[::2] == (0, 0)
        await push.stop()
    assert found[0]["source"] == "pubsub:shop-sql" and found[0]["actor"]["user"] == "mallory"
    assert found[0]["origin"]["pid"] == 4242 and found[0]["evidence"]["query"] == "select * from customers"
    assert await rt.pool.fetchval("SELECT count(*) FROM events WHERE kind IN ('read', 'tamper', 'health')") == 1
    assert len(await incidents_when(rt, 1)) == 1
    assert await reasons(rt) == []


async def test_an_entry_split_across_firehose_requests_to_two_listeners_is_one_incident(
        open_test_runtime: OpenRuntime, make_config: MakeConfig, canaries: list[int]) -> None:
    """RDS's lines (no %l) of a read entry: the LOG and DETAIL end one Firehose request to listener A,
    the HINT, CONTEXT and the next entry start the next request, to listener B (another runtime on the
    same control store). Each request is answered 200; B's request completes the entry (the next
    line starts a new one), so the read is committed before B answers, long before the quiet period:
    one read event, one incident."""
    config = cloud_config(make_config, quiet="30s", max_age="60s")
    rt_a, rt_b = await open_test_runtime(config), await open_test_runtime(config)
    rt_a.pipeline.start()
    rt_b.pipeline.start()
    lines = rds_lines(22, 5151)
    ids = [f"{37_000_000_000_000_000 + n:056d}" for n in range(len(lines))]
    a, b = FirehoseReceiver.from_config(config), FirehoseReceiver.from_config(config)
    async with serving(rt_a, [a]) as port_a, serving(rt_b, [b]) as port_b:
        status, body, _ = await post_firehose(f"http://127.0.0.1:{port_a}/ingest/firehose",
                                              [firehose_record(cloudwatch_message(lines[:3], log_group=RDS_GROUP, ids=ids[:3]))])
        assert status == 200, body
        assert await rt_a.pool.fetchval("SELECT count(*) FROM events WHERE kind = 'read'") == 0
        status, body, _ = await post_firehose(f"http://127.0.0.1:{port_b}/ingest/firehose",
                                              [firehose_record(cloudwatch_message(lines[3:], log_group=RDS_GROUP, ids=ids[3:],
                                                                                      first_ms=1795965853620 + 3))])
        assert status == 200, body
        found = [dict(r) for r in await rt_b.pool.fetch("SELECT * FROM events WHERE kind = 'read'")]
    await a.stop()
    await b.stop()
    assert len(found) == 1 and found[0]["canary_id"] == canaries[1] and found[0]["source"] == "firehose:shop-db"
    assert found[0]["origin"]["client_addr"] == "10.1.2.3"
    assert len(await incidents_when(rt_b, 1)) == 1
    assert await reasons(rt_b) == []
    assert (await log_staging.counts(rt_b.pool, "firehose"))[0] == 1  # only the next entry waits (its end is unknown)


async def test_lines_staged_by_a_listener_that_dies_are_processed_by_another_after_the_quiet_period(
        store: ControlStore, open_test_runtime: OpenRuntime, make_config: MakeConfig, keyring: Any, canaries: list[int]) -> None:
    """Listener A (its own pool) acknowledges a delivery holding a whole read entry and nothing after
    it, then dies before the quiet period (its flusher stopped, runtime closed: nothing flushed).
    Listener B, started afterwards on the same control store, finds the entry quiet and processes it:
    one read incident; the staged lines are done."""
    config = cloud_config(make_config)
    lines = rds_lines(33, 6161)[1:5]
    rt_a = await open_runtime(config, keyring=keyring, store=ControlStore(config))
    a = FirehoseReceiver.from_config(config)
    try:
        async with serving(rt_a, [a]) as port:
            status, _, _ = await post_firehose(f"http://127.0.0.1:{port}/ingest/firehose",
                                               [firehose_record(cloudwatch_message(lines, log_group=RDS_GROUP))])
            assert status == 200
            await a.stop()
    finally:
        await close_runtime(rt_a, grace=0)
    assert (await log_staging.counts(store.pool, "firehose"))[0] == 4
    assert await store.pool.fetchval("SELECT count(*) FROM events") == 0
    rt_b = await open_test_runtime(config)
    rt_b.pipeline.start()
    b = FirehoseReceiver.from_config(config)
    async with serving(rt_b, [b]):
        found = await reads(rt_b)
    await b.stop()
    assert len(found) == 1 and found[0]["canary_id"] == canaries[2]
    assert b.staging.flushed >= 1
    assert (await log_staging.counts(store.pool, "firehose"))[0] == 0
    assert len(await incidents_when(rt_b, 1)) == 1


async def test_a_flood_of_partial_entries_stays_within_the_bounds(open_test_runtime: OpenRuntime, make_config: MakeConfig,
                                                                  canaries: list[int]) -> None:
    """Lines no entry can complete (a DETAIL for a new backend each, as a hostile client can make a
    server write) in two streams, 3 x 120 per stream: at most stream_lines wait per stream and
    max_lines in all, the oldest dropped first, counted (staging_overflow) and raised as one HEALTH
    event per stream (and one for all streams); a genuine read sent afterwards still pages."""
    config = cloud_config(make_config, quiet="30s", max_age="60s", stream_lines=50, max_lines=80)
    rt = await open_test_runtime(config)
    rt.pipeline.start()
    receiver = FirehoseReceiver.from_config(config)
    async with serving(rt, [receiver]) as port:
        url = f"http://127.0.0.1:{port}/ingest/firehose"
        for round_ in range(3):
            for stream in ("a", "b"):
                flood = [f"2026-11-23 15:24:13.620 UTC [{100_000 + round_ * 1000 + n}]: [2-1] db=shop,user=x DETAIL:  {{\"v\": 1}}"
                         for n in range(120)]
                status, _, _ = await post_firehose(url, [firehose_record(cloudwatch_message(
                    flood, log_group=NUMBERED_GROUP, log_stream=stream))])
                assert status == 200
                per_stream = await rt.pool.fetch("SELECT stream, count(*) AS n FROM log_staging_lines WHERE done_at IS NULL GROUP BY stream")
                assert all(r["n"] <= 50 for r in per_stream)
                waiting, _, groups = await log_staging.counts(rt.pool)
                assert waiting <= 80 and groups <= waiting
        survivors = await rt.pool.fetch("SELECT line_id FROM log_staging_lines WHERE done_at IS NULL")
        assert all(":102" in r["line_id"] for r in survivors)  # the last round's lines: the oldest went first
        status, _, _ = await post_firehose(url, [firehose_record(cloudwatch_message(cloudsql_lines(11, 777, first=1),
                                                                                    log_group=NUMBERED_GROUP, log_stream="c"))])
        assert status == 200
        found = await reads(rt)
    await receiver.stop()
    assert len(found) == 1 and found[0]["canary_id"] == canaries[0]
    overflow = rt.metrics.render().decode()
    assert 'reason="staging_overflow"' in overflow
    health = [h["evidence"] for h in await rt.pool.fetch("SELECT evidence FROM events WHERE kind = 'health'")]
    assert {json.loads(h["stream"])[1] for h in health if h["stream"] != "*"} == {"a", "b"}
    assert {h["limit"] for h in health} == {50, 80} and all(h["dropped"] > 0 for h in health)


# -- what completes an entry -------------------------------------------------------------------------
def _line(n: int, kind: str, num: int | None = None, age: float = 0.0) -> StagedLine:
    at = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) - dt.timedelta(seconds=age)
    return StagedLine(n, f"id{n}", f"{n:04d}", kind, num, f"text {n}", None, at)


COMPLETION: list[tuple[str, list[StagedLine], bool, list[list[int]]]] = [
    ("numbered: next number starts an entry", [_line(1, "primary", 5), _line(2, "DETAIL", 6), _line(3, "primary", 7)], True, [[1, 2]]),
    ("numbered: a gap waits", [_line(1, "primary", 5), _line(2, "DETAIL", 6), _line(3, "primary", 8)], True, []),
    ("numbered: a STATEMENT ends it", [_line(1, "primary", 5), _line(2, "STATEMENT", 6)], True, [[1, 2]]),
    ("numbered: a field line without its head waits", [_line(1, "HINT", 6), _line(2, "primary", 7)], True, []),
    ("stream: the next line starts an entry", [_line(1, "primary"), _line(2, "DETAIL"), _line(3, "primary")], False, [[1, 2]]),
    ("stream: the last entry waits", [_line(1, "primary"), _line(2, "HINT")], False, []),
    ("stream: a broken line waits with what follows it", [_line(1, "primary"), _line(2, "broken"), _line(3, "primary")], False, [[1]]),
    ("stream: a broken line goes with a complete entry", [_line(1, "broken"), _line(2, "primary"), _line(3, "primary")], False,
     [[1], [2]]),
    ("aged lines go however they stand", [_line(1, "primary", 5, age=120), _line(2, "DETAIL", 6, age=120)], True, [[1, 2]]),
]


def test_unordered_deliveries_complete_unnumbered_entries_only_when_quiet() -> None:
    """Where pushes may arrive in any order (Pub/Sub) and the prefix has no %l, a later line says
    nothing about an earlier entry: only quiet or age complete it."""
    lines = [_line(1, "primary"), _line(2, "DETAIL"), _line(3, "primary"), _line(4, "primary")]
    assert split_entries(lines, numbered=False, final=False, ordered=False)[0] == []
    assert len(split_entries(lines, numbered=False, final=True, ordered=False)[0]) == 3


@pytest.mark.parametrize(("name", "lines", "numbered", "complete"), COMPLETION, ids=[c[0] for c in COMPLETION])
def test_what_completes_an_entry(name: str, lines: list[StagedLine], numbered: bool, complete: list[list[int]]) -> None:
    """The next entry (by %l, or in stream order), a STATEMENT line or age complete an entry; a gap, a
    missing head or the end of the stream keep it waiting; a broken line is processed with its next."""
    aged = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) - dt.timedelta(seconds=60)
    done, waiting = split_entries(lines, numbered=numbered, final=False, aged=aged)
    assert [[x.id for x in e] for e in done] == complete
    assert sorted([x.id for e in done for x in e] + [x.id for x in waiting]) == [x.id for x in lines]
    everything, _ = split_entries(lines, numbered=numbered, final=True)
    assert [x.id for e in everything for x in e] == [x.id for x in lines]


def test_firehose_streams_wait_past_firehoses_buffering_interval(make_config: MakeConfig) -> None:
    """By default a Firehose stream's partial entry waits longer than Firehose buffers a delivery (60 s by
    default), so an entry cut between two deliveries is read whole; Pub/Sub's per-backend groups keep the
    short quiet; max_age must cover both."""
    config = make_config(datastores=[SHOP], coverage={"firehose": {"access_key": "fh-access-key-for-tests", "streams": STREAMS}})
    assert FirehoseReceiver.from_config(config).staging.settings.quiet == 120.0
    assert config.coverage.log_staging.quiet == 10.0 and config.coverage.log_staging.max_age >= 120.0
    with pytest.raises(ConfigError, match="max_age must be at least quiet and firehose_quiet"):
        make_config(coverage={"log_staging": {"firehose_quiet": "600s", "max_age": "300s"}})
