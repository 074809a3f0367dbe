"""HTTP log ingest under hostile input: a poisoned line never turns a batch into a 5xx (a shipper
would retry it forever and block the node, hiding the reads shipped with it). Bad records are
quarantined and counted, the rest commits; 400 only when nothing in the body is usable; 503 only when
the control store is really unavailable."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from testkit import STDOUT_SINK, CanaryRows, MakeConfig, OpenRuntime, customer_canary, read_record, serving

from canary.events import EventKind
from canary.postgres.http_ingest import PATH, HttpIngest
from canary.postgres.processor import default_handlers
from canary.postgres.record import Detection, RecordContext
from canary.runtime import Runtime
from canary.secret import Secret

TOKEN = "t0ken-for-quarantine-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def read_line(pk: int | str, *, pid: int = 4242, fields: dict[str, object] | None = None) -> bytes:
    """A signed CY001 jsonlog line: a read of canary row ``pk`` of public.customers on shop (``fields``
    replace the record's own after signing)."""
    return json.dumps(read_record(pk, pid, query="select * from customers", fields={"application_name": "psql", **(fields or {})})).encode()


def plain_line(n: int) -> bytes:
    """An ordinary log line that is no detection."""
    return json.dumps({"timestamp": "2026-11-23 15:24:13.620 UTC", "user": "app", "pid": 100 + n, "error_severity": "LOG",
                       "message": f"duration: {n}.0 ms", "state_code": "00000"}).encode()


#: Poison lines: (name, line, reject reason). The first three can be no PostgreSQL line and are set aside
#: before any work; the last passes every check (its MAC is good) and names no canary: its row key, a lone
#: surrogate, has a blind index like any text (it once failed the batch where it was hashed).
POISON = [
    ("lone_surrogate_user",
     json.dumps({"error_severity": "FATAL", "state_code": "28P01", "user": "ops\udc80", "pid": 7, "remote_host": "10.6.6.6",
                 "message": 'password authentication failed for user "ops"', "timestamp": "2026-11-23 15:24:13.620 UTC"}).encode(),
     "quarantined_text"),
    ("pid_out_of_range", read_line(33, pid=5, fields={"pid": 10**40}), "quarantined_number"),
    ("surrogate_inside_signed_detail", read_line("\udc80", pid=6), "unknown_canary"),
]


@pytest.fixture
async def runtime(open_test_runtime: OpenRuntime, make_config: MakeConfig, canary_rows: CanaryRows) -> Runtime:
    """A runtime with a stdout sink and a running pipeline; customer canaries at rows 11, 22, 33."""
    rt = await open_test_runtime(make_config(sinks=[STDOUT_SINK]))
    await canary_rows(*(customer_canary(pk) for pk in (11, 22, 33)))
    rt.pipeline.start()
    return rt


@pytest.fixture
async def ingest(runtime: Runtime) -> AsyncIterator[str]:
    """The ingest endpoint on a loopback port, for node 'primary' of datastore shop."""
    async with serving(runtime, [HttpIngest(Secret(TOKEN), {"primary": "shop"}, max_body=4 * 1024 * 1024)]) as port:
        yield f"http://127.0.0.1:{port}{PATH}"


async def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, object], str]:
    async with aiohttp.ClientSession() as http:
        async with http.post(url, params={"node": "primary"}, data=body, headers={**AUTH, **(headers or {})}) as resp:
            text = await resp.text()
            return resp.status, json.loads(text), resp.headers.get("Retry-After", "")


async def reasons(rt: Runtime) -> list[str]:
    return [r["reason"] for r in await rt.pool.fetch("SELECT reason FROM rejects ORDER BY id")]


@pytest.mark.parametrize(("name", "poison", "reason"), POISON, ids=[p[0] for p in POISON])
async def test_a_poison_line_is_quarantined_and_the_reads_still_detected(runtime: Runtime, ingest: str, name: str,
                                                                          poison: bytes, reason: str) -> None:
    """One poisoned line among real reads and ordinary lines: 200, the poison quarantined (rejected
    with its reason, counted in the answer), both reads committed as events of their canaries."""
    lines = [plain_line(i) for i in range(20)]
    lines[3], lines[11], lines[17] = read_line(11, pid=11), poison, read_line(22, pid=22)
    status, body, _ = await post(ingest, b"\n".join(lines))
    assert status == 200, body
    assert body == {"node": "primary", "lines": 20, "events": 2, "quarantined": int(reason != "unknown_canary")}
    rows = await runtime.pool.fetch("SELECT kind, canary_id, actor FROM events ORDER BY id")
    assert [r["kind"] for r in rows] == ["read", "read"] and len({r["canary_id"] for r in rows}) == 2
    assert await reasons(runtime) == [reason]
    assert f'canary_rejects_total{{reason="{reason}",source="http:primary"}} 1.0' in runtime.metrics.render().decode()


async def test_every_poison_at_once_in_a_large_batch(runtime: Runtime, ingest: str) -> None:
    """A 3,000-line body (two processing batches) carrying every poison twice, gzip-compressed: each
    poison is quarantined once per copy, the three reads commit, nothing else is lost."""
    lines = [plain_line(i) for i in range(3000)]
    for i, (_, poison, _) in enumerate(POISON * 2):
        lines[100 + i * 450] = poison
    lines[5], lines[1999], lines[2999] = read_line(11, pid=11), read_line(22, pid=22), read_line(33, pid=33)
    status, body, _ = await post(ingest, gzip.compress(b"\n".join(lines)), {"Content-Encoding": "gzip"})
    assert status == 200, body
    assert body == {"node": "primary", "lines": 3000, "events": 3, "quarantined": 2 * sum(p[2] != "unknown_canary" for p in POISON)}
    assert await runtime.pool.fetchval("SELECT count(DISTINCT canary_id) FROM events WHERE kind = 'read'") == 3
    assert sorted(await reasons(runtime)) == sorted([p[2] for p in POISON] * 2)


def _buggy(record: Mapping[str, Any], ctx: RecordContext) -> Detection | None:
    """A handler with a bug that shows only when its detection is resolved (a value that is no text)."""
    if record.get("message") != "buggy":
        return None
    return Detection(kind=EventKind.READ, key="buggy", group="buggy", observed_at=dt.datetime.now(dt.timezone.utc),
                     values=(("email", 12345),))  # type: ignore[arg-type]


async def test_a_record_that_fails_the_batch_is_isolated_and_quarantined(runtime: Runtime) -> None:
    """Whatever fails a batch for one record's sake (here a handler bug surfacing at resolution) halves
    the batch until that record stands alone: it is quarantined, every other read commits."""
    lines = [plain_line(i) for i in range(40)]
    lines[5], lines[21], lines[33] = read_line(11, pid=11), json.dumps({"message": "buggy", "pid": 1}).encode(), read_line(22, pid=22)
    async with serving(runtime, [HttpIngest(Secret(TOKEN), {"primary": "shop"}, handlers=(*default_handlers(), _buggy))]) as port:
        status, body, _ = await post(f"http://127.0.0.1:{port}{PATH}", b"\n".join(lines))
    assert status == 200, body
    assert body == {"node": "primary", "lines": 40, "events": 2, "quarantined": 1}
    assert await reasons(runtime) == ["quarantined_record"]
    assert await runtime.pool.fetchval("SELECT count(DISTINCT canary_id) FROM events WHERE kind = 'read'") == 2


@pytest.mark.parametrize(
    ("body", "headers"),
    [(b"not json at all\n\x00\xff\xfe garbage\n[1, 2, 3]\n", {}),
     (b"this is not gzip" * 10, {"Content-Encoding": "gzip"}),
     (gzip.compress(b"x" * 1000)[:-12] + b"\x00" * 12, {"Content-Encoding": "gzip"})],
    ids=["not_ndjson", "not_gzip", "bad_gzip_checksum"],
)
async def test_a_body_with_nothing_usable_is_400(runtime: Runtime, ingest: str, body: bytes, headers: dict[str, str]) -> None:
    """A body that is not NDJSON at all, or not the gzip it claims to be, is a 400 (the shipper
    should drop it, not retry), its lines counted as quarantined; never a 5xx."""
    status, answer, _ = await post(ingest, body, headers)
    assert status == 400, answer
    assert answer["events"] in (0, 1)  # lines that were read but not JSON still raise their HEALTH event
    assert set(await reasons(runtime)) <= {"malformed_log_line", "bad_body"} and await reasons(runtime)
    assert await runtime.pool.fetchval("SELECT count(*) FROM events WHERE kind <> 'health'") == 0


async def test_a_stopped_store_is_503_and_nothing_is_quarantined(runtime: Runtime, ingest: str) -> None:
    """With the control store's pool closed (the store is down) a batch with reads answers 503 with
    Retry-After, so the shipper keeps the batch and retries; nothing is blamed on the input."""
    await runtime.pool.close()
    status, body, retry_after = await post(ingest, b"\n".join([read_line(11, pid=11), plain_line(1), read_line(22, pid=22)]))
    assert status == 503 and retry_after == "5"
    assert "quarantined" not in body and body["committed_events"] == 0
    assert "quarantined" not in runtime.metrics.render().decode()
