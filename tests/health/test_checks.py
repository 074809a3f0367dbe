"""Scheduled checks against a real seeded datastore: dropping the policy, deleting a canary row or
stopping log ingestion each raises an alert within the configured interval; canary's own heartbeats
and verify reads never page."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from seeder_helpers import Shop
from testkit import STDOUT_SINK, MakeConfig, OpenRuntime

from canary.crypto import Keyring, generate_key
from canary.events import DetectionEvent, Severity
from canary.health.checks import SelfActivity, check_webhook
from canary.health.scheduler import CoverageScheduler, HeartbeatRecognition, scheduler_components
from canary.listener import cluster_singleton
from canary.postgres.heartbeat import heartbeat_detection
from canary.postgres.jsonlog import JsonlogSource
from canary.postgres.record import RecordContext
from canary.runtime import Runtime
from canary.seeding.postgres import PostgresSeeder
from canary.store.embedded import PostgresServer

INTERVAL = 0.5


@pytest.fixture
def shop_rows() -> int:
    return 300


@pytest.fixture
async def runtime(shop: Shop, pg_server: PostgresServer, open_test_runtime: OpenRuntime, make_config: MakeConfig) -> Runtime:
    """A runtime with 0.5 s checks and heartbeats on the seeded shop (4 canaries), pipeline running."""
    cfg = make_config(
        sinks=[STDOUT_SINK],
        datastores=[{"name": "shop", "dsn": shop.dsn, "jsonlog_dir": str(pg_server.log_dir),
                     "tables": [{"table": "public.customers", "count": 4}]}],
        coverage={"checks": True, "check_interval": INTERVAL, "heartbeat_interval": INTERVAL, "heartbeat_timeout": 1.0},
    )
    rt = await open_test_runtime(cfg)
    await PostgresSeeder(cfg.datastores[0], rt.registry, seed=3).apply()
    rt.pipeline.start()
    return rt


async def _wait_for(rt: Runtime, sql: str, *args: object, timeout: float = 6.0) -> list[asyncpg.Record]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await rt.pool.fetch(sql, *args)
        if rows or asyncio.get_running_loop().time() > deadline:
            return list(rows)
        await asyncio.sleep(0.1)


async def _running(rt: Runtime, *components: Any) -> None:
    for c in components:
        await c.start(rt)


async def test_dropping_the_policy_raises_a_tamper_alert(runtime: Runtime, shop: Shop) -> None:
    """A clean datastore gives no findings; after DROP POLICY the next check (0.5 s interval) opens a
    CRITICAL tamper incident that is paged."""
    sched = CoverageScheduler()
    sched.jobs = lambda: [("checks", INTERVAL, sched._all_canaries)]  # type: ignore[method-assign]
    await sched.start(runtime)
    try:
        await _wait_for(runtime, "SELECT 1 WHERE $1 < 0", 0, timeout=1.2)
        assert sched.runs.get("checks", 0) >= 2
        assert await runtime.pool.fetchval("SELECT count(*) FROM events WHERE kind = 'tamper'") == 0
        conn = await asyncpg.connect(shop.dsn)
        try:
            await conn.execute(f'DROP POLICY "{"rowsec_r"}" ON public.customers')
        finally:
            await conn.close()
        dropped = asyncio.get_running_loop().time()
        rows = await _wait_for(runtime, "SELECT * FROM events WHERE kind = 'tamper'")
        took = asyncio.get_running_loop().time() - dropped
    finally:
        await sched.stop()
    assert rows, "no tamper event after the policy was dropped"
    assert took < INTERVAL + 2.0
    assert {r["evidence"]["problem"] for r in rows} >= {"detection_policy_missing"}
    inc = await runtime.pool.fetchrow("SELECT * FROM incidents WHERE kind = 'tamper'")
    assert inc["severity"] == "critical" and inc["suppressed_by"] is None
    assert await runtime.pool.fetchval("SELECT count(*) FROM outbox WHERE incident_id = $1", inc["id"]) == 1


async def test_deleting_a_canary_row_names_the_canary(runtime: Runtime, shop: Shop) -> None:
    """Deleting one canary row produces a tamper event for exactly that canary (by registry id)."""
    victim = (await runtime.registry.active("shop"))[0]
    conn = await asyncpg.connect(shop.dsn)
    try:
        await conn.execute("DELETE FROM public.customers WHERE id = $1", int(victim.location["pk"]))
    finally:
        await conn.close()
    sched = CoverageScheduler()
    sched.jobs = lambda: [("checks", INTERVAL, sched._all_canaries)]  # type: ignore[method-assign]
    await sched.start(runtime)
    try:
        rows = await _wait_for(runtime, "SELECT * FROM events WHERE kind = 'tamper' AND canary_id IS NOT NULL")
    finally:
        await sched.stop()
    assert [(r["canary_id"], r["evidence"]["problem"]) for r in rows][:1] == [(victim.id, "missing")]
    assert all(r["canary_id"] == victim.id for r in rows)


async def test_stopping_log_ingestion_trips_the_dead_mans_switch(runtime: Runtime, pg_server: PostgresServer) -> None:
    """While the jsonlog tail runs, heartbeats arrive and are recorded but suppressed (nothing paged);
    once the tail stops, a HEALTH/ERROR 'log_ingestion_stalled' event follows within interval + bound."""
    tail = JsonlogSource("shop", "shop", pg_server.log_dir, poll=0.05)
    sched, rule = CoverageScheduler(), HeartbeatRecognition()
    sched.jobs = lambda: [(n, i, j) for n, i, j in CoverageScheduler.jobs(sched) if n.startswith("heartbeat:")]  # type: ignore[method-assign]
    await _running(runtime, tail, rule, sched)
    try:
        arrived = await _wait_for(runtime, "SELECT * FROM events WHERE group_key = 'heartbeat:shop'")
        assert arrived, "heartbeat never ingested"
        await _wait_for(runtime, "SELECT 1 WHERE $1 < 0", 0, timeout=1.0)
        assert await runtime.pool.fetchval("SELECT count(*) FROM events WHERE kind = 'health' AND group_key LIKE 'deadman:%'") == 0
        await tail.stop()
        stopped = asyncio.get_running_loop().time()
        rows = await _wait_for(runtime, "SELECT * FROM events WHERE group_key = 'deadman:shop:log_ingestion_stalled'")
        took = asyncio.get_running_loop().time() - stopped
    finally:
        await sched.stop()
        await rule.stop()
        await tail.stop()
    assert rows and rows[0]["severity"] == "error"
    assert took < INTERVAL + 1.0 + 1.5
    hb = await runtime.pool.fetch("SELECT i.suppressed_by, (SELECT count(*) FROM outbox o WHERE o.incident_id = i.id) AS n"
                                  " FROM incidents i WHERE group_key = 'heartbeat:shop'")
    assert hb and all(r["suppressed_by"] == "canary-heartbeat" and r["n"] == 0 for r in hb)
    stalled = await runtime.pool.fetchrow("SELECT * FROM incidents WHERE group_key = 'deadman:shop:log_ingestion_stalled'")
    assert stalled["suppressed_by"] is None


def _hb_event(nonce: str, node: str) -> DetectionEvent:
    d = heartbeat_detection({"state_code": "CY009", "detail": nonce, "timestamp": "2026-11-23 15:24:13.620 UTC"},
                            RecordContext("shop", node, "jsonlog:" + node))
    assert d is not None
    return DetectionEvent(kind=d.kind, source="t", key=d.key, group=d.group, canary_id=None, observed_at=d.observed_at,
                          origin=d.origin, evidence=d.evidence, severity=d.severity)


def test_only_heartbeats_canary_issued_are_suppressed(keyring: Keyring) -> None:
    """A heartbeat whose nonce canary issued for that node is suppressed by any listener holding the
    master key (the leader issues, another listener may ingest it); a forged nonce, the right nonce from
    another node, a nonce under another key and one older than ``remember`` are not."""
    act = SelfActivity(keyring)
    nonce = act.new_nonce("primary")
    assert len(nonce) == 32 and int(nonce, 16) >= 0
    assert act(_hb_event(nonce, "primary")) == "canary-heartbeat"
    assert SelfActivity(keyring)(_hb_event(nonce, "primary")) == "canary-heartbeat"  # another listener
    assert act(_hb_event("0" * 32, "primary")) is None
    assert act(_hb_event(nonce[:16] + "0" * 16, "primary")) is None
    assert act(_hb_event(nonce, "standby")) is None
    assert SelfActivity(Keyring(generate_key()))(_hb_event(nonce, "primary")) is None
    old_head = f"{int(dt.datetime.now(dt.timezone.utc).timestamp()) - 7 * 3600:08x}" + nonce[8:16]
    stale = old_head + act._mac("primary", old_head)
    assert act(_hb_event(stale, "primary")) is None
    future_head = f"{int(dt.datetime.now(dt.timezone.utc).timestamp()) + 3600:08x}" + nonce[8:16]
    assert act(_hb_event(future_head + act._mac("primary", future_head), "primary")) is None
    with pytest.raises(ValueError):
        heartbeat_detection({"state_code": "CY009", "detail": "not-a-nonce", "timestamp": "2026-11-23 15:24:13 UTC"},
                            RecordContext("shop", "n", "s"))


async def test_unreachable_or_failing_webhooks_are_health_warnings(runtime: Runtime, aiohttp_free_port: int) -> None:
    """A webhook answering 405 is alive; one answering 503 or not listening is a HEALTH warning whose
    evidence never includes the query string."""
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def broken_handler(request: web.Request) -> web.Response:
        return web.Response(status=503)

    app = web.Application()
    app.router.add_post("/hooks/twilio", ok)
    app.router.add_get("/hooks/broken", broken_handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", aiohttp_free_port)
    await site.start()
    base = f"http://127.0.0.1:{aiohttp_free_port}"
    try:
        assert await check_webhook(runtime.http, base + "/hooks/twilio", 2) == []
        broken = await check_webhook(runtime.http, base + "/hooks/broken?token=s3cret", 2)
    finally:
        await runner.cleanup()
    dead = await check_webhook(runtime.http, base + "/hooks/twilio", 2)
    assert [e.evidence["problem"] for e in broken] == ["webhook_error"]
    assert [e.evidence["problem"] for e in dead] == ["webhook_unreachable"]
    assert all(e.severity is Severity.WARNING for e in broken + dead)
    assert "s3cret" not in json.dumps([e.to_json() for e in broken])


@pytest.fixture
def aiohttp_free_port() -> int:
    from canary.store.embedded import free_port

    return free_port()


async def test_a_failing_job_becomes_a_health_event_and_the_scheduler_keeps_running(runtime: Runtime) -> None:
    """A job whose datastore is unreachable reports HEALTH/ERROR 'job failed' and runs again on the
    next tick instead of stopping the scheduler."""
    async def broken() -> list[DetectionEvent]:
        conn = await asyncpg.connect("postgresql://nobody@127.0.0.1:1/x", timeout=1)
        await conn.close()
        return []

    sched = CoverageScheduler(extra_jobs=[("broken", 0.3, broken)])
    sched.jobs = lambda: sched.extra_jobs  # type: ignore[method-assign]
    await sched.start(runtime)
    try:
        rows = await _wait_for(runtime, "SELECT * FROM events WHERE group_key = 'job-failed:broken'")
        for _ in range(200):  # the next tick (0.3 s) comes later on a loaded machine: wait for it, bounded
            if sched.runs["broken"] >= 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await sched.stop()
    assert rows and rows[0]["kind"] == "health" and rows[0]["severity"] == "error"
    assert "OSError" in rows[0]["evidence"]["error"] or "Connection" in rows[0]["evidence"]["error"]
    assert sched.runs["broken"] >= 2


def test_every_listener_recognises_heartbeats_only_the_leader_issues(make_config: MakeConfig) -> None:
    """With checks on, the scheduler (which issues heartbeats) runs once per cluster, and the rule that
    recognises them runs in every listener: a heartbeat ingested by a listener that is not the leader
    is still canary's own (scale-out)."""
    comps = scheduler_components(make_config(coverage={"checks": True}))
    assert [(c.name, cluster_singleton(c)) for c in comps] == [("heartbeat-rule", False), ("scheduler", True)]
    assert [c.name for c in scheduler_components(make_config(coverage={"sweep": True}))] == ["scheduler"]
