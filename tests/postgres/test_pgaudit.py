"""pgaudit object audit and DDL tamper detection against Debian's PostgreSQL 15 with pgaudit loaded:
a superuser's ``pg_dump -t customers`` alerts, pg_dump's RLS error is an event, and disabling the
detection is reported from the event trigger and the DDL log."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from seeder_helpers import Shop, shop_database
from testkit import STDOUT_SINK, MakeConfig, OpenRuntime, fresh_database

from canary.events import EventKind, Severity
from canary.health.checks import record_audit_configured
from canary.postgres.audit import audit_detection, audit_state, configure_object_audit, parse_audit, rls_error_detection
from canary.postgres.jsonlog import JsonlogSource
from canary.postgres.record import RecordContext
from canary.postgres.tamper import classify, install_event_trigger
from canary.runtime import Runtime
from canary.seeding.postgres import PostgresSeeder
from canary.store.embedded import PostgresServer

PG_DUMP = Path("/usr/lib/postgresql/15/bin/pg_dump")
ROLE = "canary_auditor"
CTX = RecordContext("shop", "primary", "jsonlog:primary")


def _needs_pgaudit(server: PostgresServer) -> None:
    if not Path("/usr/lib/postgresql/15/lib/pgaudit.so").exists():
        pytest.skip("pgaudit cannot be loaded: postgresql-15-pgaudit is not installed (/usr/lib/postgresql/15/lib/pgaudit.so)")


@pytest.fixture
async def shop15(pg15_server: PostgresServer) -> AsyncIterator[Shop]:
    _needs_pgaudit(pg15_server)
    async with fresh_database(pg15_server, "shop") as dsn, shop_database(pg15_server, dsn, rows=300) as s:
        yield s


@pytest.fixture
async def audited(shop15: Shop, pg15_server: PostgresServer, open_test_runtime: OpenRuntime,
                  make_config: MakeConfig) -> AsyncIterator[tuple[Runtime, JsonlogSource]]:
    cfg = make_config(sinks=[STDOUT_SINK],
                      datastores=[{"name": "shop", "dsn": shop15.dsn, "tables": [{"table": "public.customers", "count": 3}]}])
    rt = await open_test_runtime(cfg)
    tail = JsonlogSource("shop", "primary", pg15_server.log_dir, poll=0.05)
    try:
        await PostgresSeeder(cfg.datastores[0], rt.registry, seed=5).apply()
        conn = await asyncpg.connect(shop15.dsn)
        try:
            state = await configure_object_audit(conn, ROLE, ["public.customers"])
            await conn.execute(f'ALTER DATABASE "{shop15.db}" SET log_statement = \'ddl\'')
            await install_event_trigger(conn, cfg.datastores[0].detection_schema, "shop")
        finally:
            await conn.close()
        assert state.problems(ROLE, ["public.customers"]) == []
        await record_audit_configured(rt.pool, "shop", ROLE, ["public.customers"])
        rt.pipeline.start()
        await tail.start(rt)
        yield rt, tail
    finally:
        await tail.stop()


def _pg_dump(dsn: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(PG_DUMP), "-d", dsn, "-t", "customers", "-f", os.devnull], capture_output=True, timeout=60,
                          env={**os.environ, "PGCONNECT_TIMEOUT": "10"}, check=False)


async def _events(rt: Runtime, where: str, *args: Any, timeout: float = 8.0) -> list[asyncpg.Record]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await rt.pool.fetch(f"SELECT * FROM events WHERE {where} ORDER BY id", *args)
        if rows or asyncio.get_running_loop().time() > deadline:
            return list(rows)
        await asyncio.sleep(0.1)


async def test_superuser_pg_dump_of_customers_alerts(audited: tuple[Runtime, JsonlogSource], shop15: Shop) -> None:
    """``pg_dump -t customers`` as the superuser (which row-level security never sees) is an
    EXPORTED / CRITICAL event naming the table, the statement, the role and pg_dump, and is paged."""
    rt, _ = audited
    done = await asyncio.to_thread(_pg_dump, shop15.dsn)
    assert done.returncode == 0, done.stderr.decode()
    rows = await _events(rt, "evidence->>'signal' = 'pgaudit'")
    assert rows, "no pgaudit event for the superuser's pg_dump"
    ev = rows[0]
    assert (ev["kind"], ev["severity"]) == ("exported", "critical")
    assert ev["actor"] == {"user": "postgres", "application_name": "pg_dump"}
    assert ev["evidence"]["how"] == "pg_dump" and ev["evidence"]["table"] == "public.customers"
    assert ev["evidence"]["label"] == "shop/public.customers"
    assert ev["evidence"]["query"].startswith("COPY public.customers")
    assert ev["canary_id"] is None and ev["origin"]["node"] == "primary"
    inc = await rt.pool.fetchrow("SELECT * FROM incidents WHERE id = $1", ev["incident_id"])
    assert inc["suppressed_by"] is None
    assert await rt.pool.fetchval("SELECT count(*) FROM outbox WHERE incident_id = $1", inc["id"]) == 1


async def test_owner_pg_dump_refused_by_rls_is_an_event(audited: tuple[Runtime, JsonlogSource], shop15: Shop) -> None:
    """The table owner's pg_dump fails with 'query would be affected by row-level security policy'
    (FORCE RLS); that error is itself an EXPORTED / CRITICAL event."""
    rt, _ = audited
    done = await asyncio.to_thread(_pg_dump, shop15.owner_dsn)
    assert done.returncode != 0 and b"row-level security" in done.stderr
    rows = await _events(rt, "evidence->>'signal' = 'rls_error'")
    assert rows, "no event for pg_dump's row-level security error"
    assert rows[0]["kind"] == "exported" and rows[0]["severity"] == "critical"
    assert rows[0]["actor"]["user"] == shop15.owner and rows[0]["evidence"]["table"] == "public.customers"


async def test_superuser_selects_are_exports_or_reads(audited: tuple[Runtime, JsonlogSource], shop15: Shop) -> None:
    """A superuser SELECT of the whole table is an export (CRITICAL); a filtered one is a READ at
    WARNING (pgaudit cannot tell which rows it returned); an unaudited table gives nothing."""
    rt, _ = audited
    conn = await asyncpg.connect(shop15.dsn, server_settings={"application_name": "psql"})
    try:
        await conn.fetch("SELECT * FROM public.customers")
        await conn.fetch("SELECT email FROM public.customers WHERE id = 42")
        await conn.execute("CREATE TABLE public.other (id int)")
        await conn.fetch("SELECT * FROM public.other")
    finally:
        await conn.close()
    rows = await _events(rt, "evidence->>'signal' = 'pgaudit'")
    deadline = asyncio.get_running_loop().time() + 5
    while len(rows) < 2 and asyncio.get_running_loop().time() < deadline:
        rows = await _events(rt, "evidence->>'signal' = 'pgaudit'")
    got = sorted((r["kind"], r["severity"], r["evidence"]["how"]) for r in rows)
    assert got == [("exported", "critical", "select_all"), ("read", "warning", "select")]
    assert all(r["evidence"]["table"] == "public.customers" for r in rows)


async def test_disabling_detection_is_reported_from_ddl(audited: tuple[Runtime, JsonlogSource], shop15: Shop) -> None:
    """DROP POLICY and NO FORCE ROW LEVEL SECURITY by a superuser are TAMPER events, from both the
    event trigger (objects) and log_statement = 'ddl' (text), grouped in one incident per session."""
    rt, _ = audited
    conn = await asyncpg.connect(shop15.dsn)
    try:
        await conn.execute(f'DROP POLICY "{"rowsec_r"}" ON public.customers')
        await conn.execute("ALTER TABLE public.customers NO FORCE ROW LEVEL SECURITY")
        await conn.execute("CREATE TABLE public.harmless (id int)")
    finally:
        await conn.close()
    rows = await _events(rt, "kind = 'tamper'")
    deadline = asyncio.get_running_loop().time() + 5
    while len(rows) < 4 and asyncio.get_running_loop().time() < deadline:
        rows = await _events(rt, "kind = 'tamper'")
    signals = sorted((r["evidence"]["signal"], tuple(r["evidence"]["findings"])) for r in rows)
    assert signals == [
        ("event_trigger", ("policy_dropped",)), ("event_trigger", ("rls_unforced",)),
        ("log_statement", ("policy_dropped",)), ("log_statement", ("rls_unforced",)),
    ]
    assert len({r["incident_id"] for r in rows}) == 1
    assert all(r["severity"] == "error" and r["actor"]["user"] == "postgres" for r in rows)


async def test_audit_state_reports_a_revoked_grant(audited: tuple[Runtime, JsonlogSource], shop15: Shop) -> None:
    """Revoking the audit role's SELECT (which silently ends object audit) shows up in audit_state."""
    conn = await asyncpg.connect(shop15.dsn)
    try:
        await conn.execute(f"REVOKE SELECT ON public.customers FROM {ROLE}")
        state = await audit_state(conn, ROLE)
        await conn.execute(f"GRANT SELECT ON public.customers TO {ROLE}")
    finally:
        await conn.close()
    assert state.problems(ROLE, ["public.customers"]) == ["pgaudit_grant_missing:public.customers"]


def _rec(message: str, **extra: Any) -> dict[str, Any]:
    return {"timestamp": "2026-11-23 15:34:39.253 UTC", "user": "postgres", "dbname": "shop", "pid": 11505,
            "session_id": "6b045d0f.2cf1", "error_severity": "LOG", "message": message, **extra}


@pytest.mark.parametrize(
    ("message", "app", "expected"),
    [
        ('AUDIT: OBJECT,1,1,READ,SELECT,TABLE,public.customers,"COPY public.customers (id, email) TO stdout;",<not logged>',
         "pg_dump", (EventKind.EXPORTED, Severity.CRITICAL, "pg_dump")),
        ("AUDIT: OBJECT,1,1,READ,SELECT,TABLE,public.customers,copy customers to '/tmp/x.csv',<not logged>",
         "psql", (EventKind.EXPORTED, Severity.CRITICAL, "copy")),
        ("AUDIT: OBJECT,2,1,READ,SELECT,TABLE,public.customers,\"select * from customers where email like '%,%'\",<not logged>",
         "psql", (EventKind.READ, Severity.WARNING, "select")),
        ("AUDIT: OBJECT,3,1,READ,SELECT,TABLE,public.customers,\"select 'where' from customers\",<not logged>",
         None, (EventKind.EXPORTED, Severity.CRITICAL, "select_all")),
    ],
)
def test_audit_lines_should_match(message: str, app: str | None, expected: tuple[EventKind, Severity, str]) -> None:
    """pgaudit OBJECT READ lines (CSV-quoted statements) classify as export or read."""
    d = audit_detection(_rec(message, application_name=app), CTX)
    assert d is not None and (d.kind, d.severity, d.evidence["how"]) == expected
    assert d.evidence["table"] == "public.customers" and not d.require_canary


@pytest.mark.parametrize(
    "message",
    [
        "AUDIT: OBJECT,1,1,WRITE,UPDATE,TABLE,public.customers,update customers set x = 1,<not logged>",
        "AUDIT: SESSION,1,1,READ,SELECT,,,select 1,<not logged>",
        "statement: select * from customers",
        "connection authorized: user=postgres database=shop",
    ],
)
def test_audit_lines_should_not_match(message: str) -> None:
    """Writes, session-audit reads and ordinary lines are not object-audit read events."""
    assert audit_detection(_rec(message), CTX) is None
    assert rls_error_detection(_rec(message), CTX) is None


def test_malformed_audit_line_is_an_error() -> None:
    """A truncated AUDIT line raises ValueError (the processor rejects and counts it)."""
    with pytest.raises(ValueError):
        audit_detection(_rec("AUDIT: OBJECT,1,1,READ"), CTX)
    with pytest.raises(ValueError):
        parse_audit("AUDIT: OBJECT,1,\"unterminated")


@pytest.mark.parametrize(
    ("sql", "findings"),
    [
        ("DROP POLICY rowsec_audit_r ON public.customers", ["policy_dropped"]),
        ("alter policy p on t using (true)", ["policy_altered"]),
        ("ALTER TABLE customers DISABLE ROW LEVEL SECURITY", ["rls_disabled"]),
        ("alter table only customers no force row level security", ["rls_unforced"]),
        ("DROP FUNCTION rowsec_audit.row_access(text, text, text)", ["function_dropped"]),
        ("CREATE OR REPLACE FUNCTION rowsec_audit.row_access(a text) RETURNS bool AS 'select true' LANGUAGE sql",
         ["function_altered"]),
        ("DROP EXTENSION pgaudit", ["pgaudit_dropped"]),
        ("SET pgaudit.role = ''", ["pgaudit_setting_changed"]),
        ("ALTER SYSTEM RESET ALL", ["pgaudit_setting_changed"]),
        ("REVOKE SELECT ON customers FROM canary_auditor", ["audit_role_changed"]),
        ("ALTER EVENT TRIGGER canary_ddl_guard_end DISABLE", ["event_trigger_disabled"]),
        ("DROP EVENT TRIGGER ddl_audit_drop", ["event_trigger_disabled"]),
        ("select 'DROP POLICY x ON y'", []),
        ("-- drop policy x on y\ncreate table t (id int)", []),
        ("ALTER TABLE customers ENABLE ROW LEVEL SECURITY", []),
        ("DROP FUNCTION public.compute_totals()", []),
    ],
)
def test_ddl_classification(sql: str, findings: list[str]) -> None:
    """Statements that disable detection are findings; quoted text, comments and unrelated DDL are not."""
    assert classify(sql) == findings


async def test_scheduled_check_reads_are_recorded_not_paged_and_audit_damage_is_tamper(
    audited: tuple[Runtime, JsonlogSource], shop15: Shop
) -> None:
    """The canary check's own verify reads (which pgaudit logs like any superuser read) are recorded
    but suppressed; after the audit role loses its grant the same check reports a CRITICAL tamper."""
    from canary.health.checks import check_canaries

    rt, _ = audited
    ds = rt.config.datastores[0]
    assert await check_canaries(rt, ds, ROLE) == []
    rows = await _events(rt, "evidence->>'signal' = 'pgaudit'")
    assert rows and all(r["suppressed_by"] == "canary_self:seeder" for r in rows)
    assert await rt.pool.fetchval("SELECT count(*) FROM outbox") == 0
    conn = await asyncpg.connect(shop15.dsn)
    try:
        await conn.execute(f"REVOKE SELECT ON public.customers FROM {ROLE}")
    finally:
        await conn.close()
    found = await check_canaries(rt, ds, ROLE)
    assert [(e.kind, e.severity, e.evidence["problem"]) for e in found] == [
        (EventKind.TAMPER, Severity.CRITICAL, "pgaudit_grant_missing:public.customers")
    ]


async def test_ordinary_reader_gets_one_incident_from_both_paths(audited: tuple[Runtime, JsonlogSource], shop15: Shop) -> None:
    """An ordinary role's SELECT * is seen twice (CY001 per canary row via RLS, and pgaudit for the
    table); both land in one incident that counts every canary once."""
    rt, _ = audited
    conn = await asyncpg.connect(shop15.reader_dsn)
    try:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        await conn.fetch("SELECT * FROM public.customers")
    finally:
        await conn.close()
    rows: list[asyncpg.Record] = []
    deadline = asyncio.get_running_loop().time() + 8
    while asyncio.get_running_loop().time() < deadline:
        rows = await rt.pool.fetch("SELECT * FROM events WHERE (origin->>'pid')::int = $1", pid)
        if len(rows) >= 4:
            break
        await asyncio.sleep(0.1)
    signals = sorted(r["evidence"].get("signal", "rls") for r in rows)
    assert signals == ["pgaudit", "rls", "rls", "rls"]
    assert len({r["incident_id"] for r in rows}) == 1
    inc = await rt.pool.fetchrow("SELECT * FROM incidents WHERE id = $1", rows[0]["incident_id"])
    assert len(inc["canary_ids"]) == 3


def test_ddl_classification_knows_configured_names() -> None:
    """A datastore's configured touch-function name and pgaudit role are protected like the defaults;
    a function that merely shares a prefix is not."""
    assert classify("DROP FUNCTION audit.seen_rows(text, text, text)", ("seen_rows",)) == ["function_dropped"]
    assert classify("DROP FUNCTION audit.seen_rows_v2(text)", ("seen_rows",)) == []
    assert classify("DROP FUNCTION audit.seen_rows(text, text, text)") == []
    assert classify("REVOKE SELECT ON customers FROM audit_reader", (), "audit_reader") == ["audit_role_changed"]
    assert classify("DROP FUNCTION rowsec.ddl_log() CASCADE") == ["function_dropped"]
