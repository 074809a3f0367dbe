"""The jsonlog tail: rotation, truncation, checkpoints, and bad lines, against a real control store."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from testkit import STDOUT_SINK, CanaryRows, MakeConfig, OpenRuntime, customer_canary, signed

from canary.crypto import Keyring
from canary.listener import Listener
from canary.postgres.jsonlog import JsonlogSource
from canary.postgres.lines import MAX_LINE
from canary.postgres.record import is_export, parse_pg_timestamp
from canary.runtime import Runtime, open_runtime
from canary.store import ControlStore


def record(pk: int, *, pid: int = 4242, ts: str = "2026-11-23T15:24:13.620276+00:00", query: str = "select * from customers") -> bytes:
    detail = {"v": 1, "ds": "shop", "t": "public.customers", "k": str(pk), "u": "mallory", "q": query, "ts": ts,
              "a": "10.1.2.3", "p": pid}
    line = {"timestamp": "2026-11-23 15:24:13.620 UTC", "user": "mallory", "dbname": "shop", "pid": pid,
            "remote_host": "10.1.2.3", "session_id": "6b045a9d.114f", "error_severity": "LOG",
            "state_code": "CY001", "message": "row access audit", "detail": json.dumps(detail),
            "application_name": "psql"}
    return json.dumps(signed(line)).encode() + b"\n"


@pytest.fixture
async def runtime(open_test_runtime: OpenRuntime, make_config: MakeConfig, canary_rows: CanaryRows) -> Runtime:
    """A runtime with a stdout sink and a running pipeline; customer canaries at rows 11, 22, 33, 44."""
    rt = await open_test_runtime(make_config(sinks=[STDOUT_SINK]))
    await canary_rows(*(customer_canary(pk) for pk in (11, 22, 33, 44)))
    rt.pipeline.start()
    return rt


async def _events(rt: Runtime) -> int:
    return int(await rt.pool.fetchval("SELECT count(*) FROM events"))


async def _drain(src: JsonlogSource) -> None:
    while await src.step():
        pass


async def test_follows_rotation_to_the_next_file(runtime: Runtime, tmp_path: Path) -> None:
    """Lines in the old file and in the file the collector rotated to are all read, in order."""
    (tmp_path / "postgresql-20261123-100000.json").write_bytes(record(11) + record(22))
    src = JsonlogSource("shop", "primary", tmp_path, from_start=True)
    await src.start(runtime)
    await src.stop()
    await _drain(src)
    (tmp_path / "postgresql-20261123-110000.json").write_bytes(record(33, pid=7))
    await _drain(src)
    assert await _events(runtime) == 3


async def test_starts_at_the_end_without_a_checkpoint(runtime: Runtime, tmp_path: Path) -> None:
    """A first start reports new activity, not history already in the log."""
    log = tmp_path / "postgresql-20261123-100000.json"
    log.write_bytes(record(11))
    src = JsonlogSource("shop", "primary", tmp_path)
    await src.start(runtime)
    await src.stop()
    await _drain(src)
    assert await _events(runtime) == 0
    with log.open("ab") as fh:
        fh.write(record(22))
    await _drain(src)
    assert await _events(runtime) == 1


async def test_resumes_from_checkpoint_without_duplicates(runtime: Runtime, tmp_path: Path) -> None:
    """After a restart the tail continues at its committed checkpoint; re-reads are idempotent."""
    log = tmp_path / "postgresql-20261123-100000.json"
    log.write_bytes(record(11) + record(22))
    first = JsonlogSource("shop", "primary", tmp_path, from_start=True)
    await first.start(runtime)
    await first.stop()
    await _drain(first)
    with log.open("ab") as fh:
        fh.write(record(33, pid=9) + b'{"partial": ')  # a line still being written
    second = JsonlogSource("shop", "primary", tmp_path)
    await second.start(runtime)
    await second.stop()
    await _drain(second)
    assert await _events(runtime) == 3
    with log.open("ab") as fh:
        fh.write(b'"rest"}\n' + record(44, pid=10))
    await _drain(second)
    assert await _events(runtime) == 4
    assert await runtime.pool.fetchval("SELECT count(*) FROM rejects") == 0  # the split line was whole


async def test_bad_lines_are_counted_and_do_not_stop_the_tail(runtime: Runtime, tmp_path: Path) -> None:
    """Garbage, a non-object and an over-long line with nothing recoverable are each rejected and
    counted, and raise one HEALTH event (a detection line may have been lost); a CY001 line with a
    broken detail is a forgery (TAMPER); the genuine reads around them still become events."""
    broken = json.loads(record(11))
    broken["detail"] = "{not json"
    content = (
        record(11)
        + b"\x00\xff garbage that is not json\n"
        + b"[1, 2, 3]\n"
        + json.dumps(broken).encode() + b"\n"
        + b'{"x": "' + b"A" * (MAX_LINE + 10) + b'"}\n'
        + record(22, pid=5)
        + record(99, pid=6)  # a CY001 line for a row that is not a canary
    )
    (tmp_path / "postgresql-20261123-100000.json").write_bytes(content)
    src = JsonlogSource("shop", "primary", tmp_path, from_start=True)
    await src.start(runtime)
    await src.stop()
    await _drain(src)
    kinds = sorted(r["kind"] for r in await runtime.pool.fetch("SELECT kind FROM events"))
    assert kinds == ["health", "read", "read", "tamper"]
    reasons = sorted(r["reason"] for r in await runtime.pool.fetch("SELECT reason FROM rejects"))
    assert reasons == ["line_too_long", "malformed_log_line", "malformed_log_line", "malformed_log_line", "unknown_canary"]
    text = runtime.metrics.render().decode()
    assert 'canary_rejects_total{reason="malformed_log_line",source="jsonlog:primary"} 3.0' in text


async def test_truncated_file_is_read_again_from_the_start(runtime: Runtime, tmp_path: Path) -> None:
    """copytruncate-style rotation: a file shorter than the offset is re-read from byte 0."""
    log = tmp_path / "postgresql-20261123-100000.json"
    log.write_bytes(record(11) + record(22))
    src = JsonlogSource("shop", "primary", tmp_path, from_start=True)
    await src.start(runtime)
    await src.stop()
    await _drain(src)
    log.write_bytes(record(33, pid=77))
    await _drain(src)
    assert await _events(runtime) == 3


def test_copy_statements_count_as_exports() -> None:
    """COPY (even after comments and whitespace) is an export; SELECT is a read."""
    assert is_export("COPY customers TO STDOUT")
    assert is_export("  /* nightly */ -- x\n copy (select 1) to stdout")
    assert not is_export("select * from customers -- copy")
    assert parse_pg_timestamp("2026-11-23 15:24:13.620 UTC").isoformat() == "2026-11-23T15:24:13.620000+00:00"


async def test_parallel_worker_reads_name_the_leaders_session(runtime: Runtime, tmp_path: Path) -> None:
    """A parallel worker's CY001 line has no user or client address; the leader's connection line
    supplies them, so the event still says who read from where."""
    connect = {"timestamp": "2026-11-23 15:24:13.100 UTC", "user": "mallory", "dbname": "shop", "pid": 4242,
               "remote_host": "10.9.8.7", "application_name": "etl", "error_severity": "LOG",
               "message": "connection authorized: user=mallory database=shop application_name=etl"}
    worker = json.loads(record(11, pid=5555))
    detail = json.loads(worker["detail"])
    detail["a"], detail["p"] = None, 5555
    signed(worker.update(detail=json.dumps(detail), leader_pid=4242, backend_type="parallel worker") or worker)
    for k in ("user", "dbname", "remote_host", "application_name"):
        worker.pop(k)
    (tmp_path / "postgresql-20261123-100000.json").write_bytes(
        json.dumps(connect).encode() + b"\n" + json.dumps(worker).encode() + b"\n")
    src = JsonlogSource("shop", "primary", tmp_path, from_start=True)
    await src.start(runtime)
    await src.stop()
    await _drain(src)
    ev = await runtime.pool.fetchrow("SELECT actor, origin, group_key FROM events")
    assert ev["actor"]["user"] == "mallory" and ev["actor"]["application_name"] == "etl"
    assert ev["origin"]["client_addr"] == "10.9.8.7" and ev["origin"]["database"] == "shop"
    assert ev["group_key"] == "pg:primary:shop:mallory:read"
    inc = await runtime.pool.fetchrow("SELECT title FROM incidents")
    assert inc["title"] == "Canary data read by mallory from 10.9.8.7"


async def test_one_role_over_many_connections_is_one_incident(runtime: Runtime, tmp_path: Path) -> None:
    """A scraper paging through the table over several connections is one incident that grows, not a
    page per connection."""
    lines = b"".join(record(pk, pid=pid, ts=f"2026-11-23T15:2{i}:00+00:00") for i, (pk, pid) in
                     enumerate([(11, 100), (22, 101), (33, 102), (44, 103)]))
    (tmp_path / "postgresql-20261123-100000.json").write_bytes(lines)
    src = JsonlogSource("shop", "primary", tmp_path, from_start=True)
    await src.start(runtime)
    await src.stop()
    await _drain(src)
    rows = await runtime.pool.fetch("SELECT cardinality(canary_ids) AS n, event_count FROM incidents")
    assert [(r["n"], r["event_count"]) for r in rows] == [(4, 4)]


async def test_worker_line_without_the_leaders_lines_names_user_database_and_app(runtime: Runtime, tmp_path: Path) -> None:
    """A parallel worker's CY001 line whose leader lines never arrived still names the session user,
    database and application from the detail's 'su', 'db' and 'an' (restored in workers)."""
    worker = json.loads(record(22, pid=6666))
    detail = json.loads(worker["detail"])
    detail.update(a=None, p=6666, su="mallory", db="shop", an="etl")
    signed(worker.update(detail=json.dumps(detail), leader_pid=4343, backend_type="parallel worker") or worker)
    for k in ("user", "dbname", "remote_host", "application_name"):
        worker.pop(k)
    (tmp_path / "postgresql-20261123-100000.json").write_bytes(json.dumps(worker).encode() + b"\n")
    src = JsonlogSource("shop", "primary", tmp_path, from_start=True)
    await src.start(runtime)
    await src.stop()
    await _drain(src)
    ev = await runtime.pool.fetchrow("SELECT actor, origin FROM events")
    assert ev["actor"] == {"user": "mallory", "role": "mallory", "application_name": "etl"}
    assert ev["origin"]["database"] == "shop" and ev["origin"]["pid"] == 4343
    assert "client_addr" not in ev["origin"]


async def test_a_stalled_tail_is_unhealthy_and_pages_health(store: ControlStore, make_config: MakeConfig, keyring: Keyring,
                                                          tmp_path: Path) -> None:
    """A tail that stops advancing while its log grows (here: its task dies) is reported: /healthz
    answers 503 naming it with its lag in bytes and seconds, the lag gauges move, and one HEALTH
    incident is raised per stall; once it catches up it is healthy again."""
    cfg = make_config(sinks=[STDOUT_SINK], listener={"stall_after": "200ms", "watch_interval": "50ms", "jsonlog_poll": "20ms"})
    runtime = await open_runtime(cfg, keyring=keyring, store=store)
    log_file = tmp_path / "postgresql-20261123-100000.json"
    log_file.write_bytes(b"")
    src = JsonlogSource("shop", "primary", tmp_path, poll=0.02)
    listener = Listener(runtime, [src])
    server = TestServer(listener.app(), host="127.0.0.1")
    await server.start_server()
    try:
        assert src._task is not None
        src._task.cancel()  # the tail dies; the log keeps growing
        log_file.write_bytes(record(11) * 3)
        async with aiohttp.ClientSession() as http:
            status, body = await _healthz_until(http, str(server.make_url("/healthz")), 503)
            assert status == 503 and body["stalled"] == ["jsonlog:primary"]
            assert body["lag"]["jsonlog:primary"]["behind_bytes"] == len(record(11)) * 3
            await asyncio.sleep(0.3)  # further checks while still stalled raise nothing new
            rows = await runtime.pool.fetch("SELECT kind, group_key FROM incidents")
            assert [(r["kind"], r["group_key"]) for r in rows] == [("health", "stalled:jsonlog:primary")]
            assert 'canary_source_behind_bytes{source="jsonlog:primary"}' in runtime.metrics.render().decode()
            src._task = asyncio.create_task(src._run())  # back to life: it catches up
            await asyncio.wait_for(src.caught_up.wait(), 10)
            status, body = await _healthz_until(http, str(server.make_url("/healthz")), 200)
            assert status == 200 and body["stalled"] == []
    finally:
        await server.close()


async def _healthz_until(http: aiohttp.ClientSession, url: str, status: int, timeout: float = 10) -> tuple[int, dict[str, Any]]:
    """(status, body) of /healthz once it answers ``status`` (or the last answer at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        async with http.get(url) as resp:
            got, body = resp.status, await resp.json()
        if got == status or time.monotonic() > deadline:
            return got, body
        await asyncio.sleep(0.05)


async def test_a_first_start_during_a_half_written_line_reads_that_line_whole(runtime: Runtime, tmp_path: Path) -> None:
    """Started with no checkpoint while the server is in the middle of writing a long line, the tail
    begins at that line's start: the line is read whole when finished, nothing is rejected and no
    HEALTH event is raised for a line the tail only cut in two itself."""
    log = tmp_path / "postgresql-20261123-100000.json"
    line = record(22)
    half = len(line) // 2
    log.write_bytes(record(11) * 50 + line[:half])
    src = JsonlogSource("shop", "primary", tmp_path)
    await src.start(runtime)
    await src.stop()
    await _drain(src)
    with log.open("ab") as fh:
        fh.write(line[half:] + record(33, pid=8))
    await _drain(src)
    assert sorted(r["kind"] for r in await runtime.pool.fetch("SELECT kind FROM events")) == ["read", "read"]
    assert await runtime.pool.fetchval("SELECT count(*) FROM rejects") == 0
