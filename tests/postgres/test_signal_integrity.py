"""Attacks on the PostgreSQL detection signal by a reader who knows canary: poisoned, forged and padded
log records, against a real server, a real seeded shop and a running listener tailing its jsonlog.

After each attack a genuine read must still page, and the attack itself must neither stall the tail
nor be believed."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import asyncpg
from testkit import incidents_when

from canary.postgres.protocol import READ_SQLSTATE, TAMPER_SQLSTATE
from canary.postgres.tamper import install_event_trigger
from canary.runtime import Runtime


async def _raise(conn: asyncpg.Connection, *, errcode: str, message: str = "row access audit", detail: str | None = None,
                 hint: str | None = None) -> None:
    """A log record written the way any role may: a DO block that RAISEs LOG (no privilege needed)."""
    parts = [f"MESSAGE = {_lit(message)}", f"ERRCODE = {_lit(errcode)}"]
    if detail is not None:
        parts.append(f"DETAIL = {_lit(detail)}")
    if hint is not None:
        parts.append(f"HINT = {_lit(hint)}")
    await conn.execute(f"DO $x$ BEGIN RAISE LOG USING {', '.join(parts)}; END $x$")


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _fake_detail(pk: str, **extra: Any) -> str:
    return json.dumps({"v": 1, "ds": "shop", "t": "public.customers", "k": pk, "u": "ceo", "q": "select * from customers",
                       "ts": "2026-11-23T15:24:13+00:00", "a": "10.66.66.66", "p": 1, "su": "ceo", "db": "shop", **extra})


async def _real_read_pages(rt: Runtime, reader: asyncpg.Connection, role: str) -> float:
    """A genuine read of one canary after an attack: returns seconds from the query to its incident."""
    canary = (await rt.registry.active("shop"))[0]
    before = {r["id"] for r in await rt.pool.fetch("SELECT id FROM incidents")}
    started = time.monotonic()
    await reader.fetchrow("SELECT * FROM customers WHERE id = $1", int(canary.location["pk"]))
    deadline = started + 10
    while time.monotonic() < deadline:
        rows = await rt.pool.fetch("SELECT * FROM incidents WHERE kind = 'read' AND NOT (id = ANY($1::bigint[]))", list(before))
        if rows:
            assert rows[0]["canary_ids"] == [canary.id] and rows[0]["actor"]["user"] == role
            took = time.monotonic() - started
            print(f"read after attack paged as an incident in {took:.3f} s")  # shown with pytest -s
            return took
        await asyncio.sleep(0.02)
    raise AssertionError("the genuine read after the attack was not detected within 10 s")


async def test_forged_read_lines_are_one_tamper_incident_per_session(deployed: dict[str, Any]) -> None:
    """Thirty forged CY001 lines naming a canary, another role and 10.66.66.66 open no read incident and
    page nobody as a read: they are one TAMPER incident for the forging session, naming the forger as
    the server saw it. A second forging session is a second incident. A genuine read still pages."""
    rt, reader, role = deployed["runtime"], deployed["reader"], deployed["role"]
    canary = (await rt.registry.active("shop"))[1]
    for i in range(30):
        # with a made-up MAC, without any, and with a non-ASCII one (its comparison once raised, and the
        # line was only a counted reject instead of a forgery)
        hint = ("é" * 64 if i % 3 == 0 else "0" * 64) if i % 2 else None
        await _raise(reader, errcode=READ_SQLSTATE, detail=_fake_detail(str(canary.location["pk"])), hint=hint)
    incidents = await incidents_when(rt, 1)
    assert [i["kind"] for i in incidents] == ["tamper"]
    inc = incidents[0]
    assert inc["actor"]["user"] == role and inc["origin"]["client_addr"] == "127.0.0.1"
    assert inc["canary_ids"] == []
    # the tail commits the lines in batches: the incident opens with the first, the rest join it
    deadline = time.monotonic() + 10
    while True:
        events = await rt.pool.fetch("SELECT evidence FROM events WHERE incident_id = $1", inc["id"])
        if len(events) >= 30 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert len(events) == 30 and {e["evidence"]["signal"] for e in events} == {"forged_log_line"}
    assert [i["kind"] for i in await incidents_when(rt, 1)] == ["tamper"]  # still one incident
    other = await asyncpg.connect(deployed["reader_dsn"])
    try:
        await _raise(other, errcode=READ_SQLSTATE, detail=_fake_detail("1"))
    finally:
        await other.close()
    assert [i["kind"] for i in await incidents_when(rt, 2)] == ["tamper", "tamper"]
    assert await _real_read_pages(rt, reader, role) < 10
    assert "10.66.66.66" not in json.dumps([dict(r) for r in await rt.pool.fetch("SELECT actor, origin FROM incidents")], default=str)


async def test_poisoned_details_neither_stall_the_tail_nor_fail_a_batch(deployed: dict[str, Any]) -> None:
    """Deeply nested JSON, characters jsonb refuses (NUL, lone surrogates) and a huge detail in CY001
    lines are forgeries (TAMPER), never a stall: the tail moves on and a genuine read still pages."""
    rt, reader, role = deployed["runtime"], deployed["reader"], deployed["role"]
    await _raise(reader, errcode=READ_SQLSTATE, detail="[" * 200_000 + "]" * 200_000)
    await _raise(reader, errcode=READ_SQLSTATE, detail='{"v": 1, "ds": "shop\\u0000", "t": "\\ud800", "k": "1"}')
    await _raise(reader, errcode=READ_SQLSTATE, detail=_fake_detail("1", q="x" * 100_000))
    assert await _real_read_pages(rt, reader, role) < 10
    kinds = sorted(r["kind"] for r in await rt.pool.fetch("SELECT kind FROM incidents"))
    assert kinds == ["read", "tamper"]
    assert await rt.pool.fetchval("SELECT count(*) FROM events WHERE kind = 'tamper'") == 3


async def test_raised_imitations_of_other_signals_are_forgeries(deployed: dict[str, Any]) -> None:
    """A RAISE that imitates a login line of another role or a pgaudit line is not believed as what it
    imitates: the server marks RAISEd records in their context, so it is a forgery (TAMPER)."""
    rt, reader = deployed["runtime"], deployed["reader"]
    await _raise(reader, errcode="00000", message="connection authorized: user=svc_billing database=shop application_name=psql")
    await _raise(reader, errcode="00000", message="AUDIT: SESSION,1,1,DDL,DROP POLICY,,,DROP POLICY rowsec_audit_r ON customers,<not logged>")
    incidents = await incidents_when(rt, 1)
    assert {i["kind"] for i in incidents} <= {"tamper"}


async def test_ddl_lines_are_signed_and_imitations_are_forgeries(deployed: dict[str, Any], target_dsn: str) -> None:
    """The DDL event trigger signs its lines: a reader's RAISE of a CY002 line claiming a dropped policy is
    a forgery by the reader's session, while real DDL is reported as what it did. Retire still drops
    the tripwire's key table with the trigger installed (the trigger never blocks DDL)."""
    rt, reader, role = deployed["runtime"], deployed["reader"], deployed["role"]
    admin = await asyncpg.connect(target_dsn)
    try:
        await install_event_trigger(admin, "rowsec", "shop")
        fake = json.dumps({"v": 1, "ds": "shop", "event": "sql_drop", "tag": "DROP POLICY",
                           "objs": [{"type": "policy", "id": "rowsec_r on public.customers"}], "q": "DROP POLICY rowsec_r ON customers"})
        await _raise(reader, errcode=TAMPER_SQLSTATE, message="ddl audit", detail=fake, hint="0" * 64)
        forged = await incidents_when(rt, 1)
        assert [i["kind"] for i in forged] == ["tamper"] and forged[0]["actor"]["user"] == role
        ev = await rt.pool.fetch("SELECT evidence FROM events WHERE incident_id = $1", forged[0]["id"])
        assert {e["evidence"]["signal"] for e in ev} == {"forged_log_line"}
        for ddl in ("CREATE POLICY p_any ON public.orders USING (true)", "DROP POLICY p_any ON public.orders"):
            await admin.execute(ddl)
    finally:
        await admin.close()
    # the CREATE's line can land before the DROP's: wait for the drop itself, not for the first line
    deadline = time.monotonic() + 10
    findings: set[str] = set()
    while time.monotonic() < deadline and "policy_dropped" not in findings:
        real = await rt.pool.fetch("SELECT evidence FROM events WHERE evidence->>'signal' = 'event_trigger'")
        findings = {f for e in real for f in e["evidence"]["findings"]}
        await asyncio.sleep(0.05)
    assert "policy_dropped" in findings
    result = await deployed["seeder"].retire()
    assert result.removed


async def test_a_padded_export_is_detected(deployed: dict[str, Any]) -> None:
    """A query padded with a 1 MiB comment makes every detection line longer than the tail keeps whole;
    the detection fields are read from the line's head, so the export is one incident with every
    canary, and the long lines are counted."""
    rt, reader, role = deployed["runtime"], deployed["reader"], deployed["role"]
    pad = "/*" + "x" * (1024 * 1024 + 100) + "*/"
    started = time.monotonic()
    rows = await reader.fetch(f"SELECT * FROM customers {pad}")
    assert len(rows) == await reader.fetchval("SELECT count(*) FROM customers WHERE id > 0 OR id <= 0")
    incidents = await incidents_when(rt, 1, canaries=10)
    assert [(i["kind"], len(i["canary_ids"])) for i in incidents] == [("read", 10)]
    assert time.monotonic() - started < 10
    assert incidents[0]["actor"]["user"] == role
    assert incidents[0]["evidence"]["query"].startswith("SELECT * FROM customers /*xxx")
    long = await rt.pool.fetchval("SELECT count(*) FROM rejects WHERE reason = 'line_too_long'")
    assert long >= 1
