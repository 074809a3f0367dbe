"""canary's own sessions are known by what the server sets on every line (pid, session id), never by
an ``application_name``: a client that names itself like the seeder or copies a drill's tag is paged
like anyone, and the seeder's own DDL and reads are recorded as suppressed."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import asyncpg

from canary.drilltags import attribute_drills, register_markers
from canary.events import DetectionEvent, EventKind
from canary.postgres.tamper import install_event_trigger
from canary.runtime import Runtime
from canary.store import sessions


async def _wait(rt: Runtime, sql: str, *args: Any, timeout: float = 10.0) -> list[asyncpg.Record]:
    deadline = time.monotonic() + timeout
    while True:
        rows = await rt.pool.fetch(sql, *args)
        if rows or time.monotonic() > deadline:
            return list(rows)
        await asyncio.sleep(0.05)


async def test_seeder_names_are_not_trusted_but_its_sessions_are(deployed: dict[str, Any], target_dsn: str) -> None:
    rt, seeder, role = deployed["runtime"], deployed["seeder"], deployed["role"]
    admin = await asyncpg.connect(target_dsn)
    try:
        await install_event_trigger(admin, "rowsec", "shop")
        apps = await admin.fetch("SELECT DISTINCT application_name FROM pg_stat_activity")
    finally:
        await admin.close()
    assert not any("canary" in (r["application_name"] or "") for r in apps), "an application name tells"
    # the seeder registered each of its sessions and closed them
    report = await seeder.verify()
    assert report.ok, report.findings
    rows = await rt.pool.fetch("SELECT * FROM own_sessions")
    assert len(rows) >= 2 and all(r["purpose"] == "seeder" and r["closed_at"] is not None for r in rows)
    # DDL from a registered session (as the seeder's briefly lifting FORCE): recorded, suppressed, not paged
    conn = await asyncpg.connect(target_dsn)
    try:
        own = await sessions.open_session(rt.pool, "shop", conn, "seeder")
        async with conn.transaction():
            await conn.execute("ALTER TABLE public.customers NO FORCE ROW LEVEL SECURITY")
            await conn.execute("ALTER TABLE public.customers FORCE ROW LEVEL SECURITY")
    finally:
        await conn.close()
    await sessions.close_session(rt.pool, own)
    mine = await _wait(rt, "SELECT * FROM events WHERE kind = 'tamper'")
    assert mine and all(r["suppressed_by"] == "canary_self:seeder" for r in mine)
    assert await rt.pool.fetchval("SELECT count(*) FROM outbox") == 0

    # a superuser who names the session like canary 0.x's seeder and lifts the tripwire: paged
    spoof = await asyncpg.connect(target_dsn, server_settings={"application_name": "canary-seeder"})
    try:
        await spoof.execute("ALTER TABLE public.customers NO FORCE ROW LEVEL SECURITY")
        await spoof.execute("ALTER TABLE public.customers FORCE ROW LEVEL SECURITY")
        spoof_pid = spoof.get_server_pid()
    finally:
        await spoof.close()
    tampers = await _wait(rt, "SELECT * FROM incidents WHERE kind = 'tamper' AND suppressed_by IS NULL")
    assert tampers and tampers[0]["origin"]["pid"] == spoof_pid

    # a reader named like the seeder (or like a drill) reading a canary: paged as a read
    canary = (await rt.registry.active("shop"))[0]
    for app in ("canary-seeder", "canary-drill:r1/1"):
        reader = await asyncpg.connect(deployed["reader_dsn"], server_settings={"application_name": app})
        try:
            await reader.fetchrow("SELECT * FROM customers WHERE id = $1", int(canary.location["pk"]))
        finally:
            await reader.close()
    reads = await _wait(rt, "SELECT * FROM incidents WHERE kind = 'read' AND suppressed_by IS NULL AND drill IS NULL")
    assert reads and reads[0]["actor"]["user"] == role
    assert await _wait(rt, "SELECT * FROM outbox")


def _event(pid: int, tag: str | None, at: dt.datetime) -> DetectionEvent:
    return DetectionEvent(kind=EventKind.READ, source="t", key=f"k{pid}{tag}", group="g", canary_id=None, observed_at=at,
                          actor={"application_name": f"canary-drill:{tag}" if tag else "etl"},
                          origin={"datastore": "shop", "pid": pid}, evidence={"session_id": f"abc.{pid:x}"}, drill=tag)


async def test_a_copied_drill_tag_is_not_a_drill(runtime: Runtime) -> None:
    """A drill step registers its tag with its session's pid: the same tag from another pid (copied from
    pg_stat_activity during the drill) is a real read, and keeps the claim in its evidence."""
    await runtime.pool.execute("INSERT INTO drill_runs (id, playbook, mode, steps_total) VALUES ('r1', 'p', 'demo', 1)")
    await register_markers(runtime.pool, "r1", 1, [("drill", "drill", "r1/1"), ("origin", "pid", "4242")], 60)
    now = dt.datetime.now(dt.timezone.utc)
    async with runtime.pool.acquire() as conn:
        out = await attribute_drills(conn, [_event(4242, "r1/1", now), _event(4343, "r1/1", now), _event(4242, None, now)])
    assert [e.drill for e in out] == ["r1/1", None, "r1/1"]
    assert out[1].evidence["claimed_drill"] == "r1/1"


async def test_own_session_matching(runtime: Runtime, target_dsn: str) -> None:
    """Same datastore and pid and session id: canary's own. Another session id with that pid (the pid
    reused after canary's session ended), another datastore, or a line without a pid: not."""
    conn = await asyncpg.connect(target_dsn)
    try:
        pid, sid = await sessions.server_session(conn)
        assert sid == await conn.fetchval("SELECT to_hex(trunc(extract(epoch FROM backend_start))::bigint) || '.' || "
                                          "to_hex(pid) FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        own = await sessions.open_session(runtime.pool, "shop", conn, "seeder")
    finally:
        await conn.close()
    await sessions.close_session(runtime.pool, own)
    now = dt.datetime.now(dt.timezone.utc)

    def ev(ds: str, p: Any, s: str | None, at: dt.datetime = now, kind: EventKind = EventKind.TAMPER) -> DetectionEvent:
        return DetectionEvent(kind=kind, source="t", key=f"{ds}{p}{s}{at}{kind}", group="g", canary_id=None, observed_at=at,
                              origin={"datastore": ds, "pid": p}, evidence={"session_id": s} if s else {})

    events = [ev("shop", pid, sid), ev("shop", pid, "1.2"), ev("other", pid, sid), ev("shop", None, sid),
              ev("shop", pid, None), ev("shop", pid, None, now + dt.timedelta(hours=1)), ev("shop", pid, sid, kind=EventKind.CONTACTED),
              ev("shop", str(pid), sid), ev("shop", True, sid)]
    async with runtime.pool.acquire() as c:
        found = await sessions.own_events(c, events)
    assert found == {0: "canary_self:seeder", 4: "canary_self:seeder", 7: "canary_self:seeder"}
