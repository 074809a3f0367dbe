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
from canary.postgres.backstop import Backstop, read_snapshot
from canary.postgres.jsonlog import JsonlogSource
from canary.postgres.paths import audit_grants, privileged_objects
from canary.postgres.record import Detection, RecordContext
from canary.postgres.tamper import classify, install_event_trigger
from canary.runtime import Runtime
from canary.seeding.postgres import PostgresSeeder
from canary.store import detection_objects
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


async def test_a_publication_is_reported_the_moment_it_is_created(audited: tuple[Runtime, JsonlogSource], shop15: Shop) -> None:
    """CREATE PUBLICATION for the canary table is a TAMPER event from the event trigger (objects, signed)
    and from log_statement, with who created it, before any subscriber connects."""
    rt, _ = audited
    conn = await asyncpg.connect(shop15.dsn)
    try:
        await conn.execute("CREATE PUBLICATION leak FOR TABLE public.customers")
        await conn.execute("DROP PUBLICATION leak")
    finally:
        await conn.close()
    rows = await _events(rt, "kind = 'tamper' AND evidence->'findings' ? 'publication_changed'")
    deadline = asyncio.get_running_loop().time() + 5
    while len(rows) < 2 and asyncio.get_running_loop().time() < deadline:
        rows = await _events(rt, "kind = 'tamper' AND evidence->'findings' ? 'publication_changed'")
    assert sorted(r["evidence"]["signal"] for r in rows) == ["event_trigger", "log_statement"]
    assert all(r["actor"]["user"] == "postgres" for r in rows)


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
        ("CREATE PUBLICATION p FOR TABLE public.customers", ["publication_changed"]),
        ("alter publication p add table customers", ["publication_changed"]),
        ("CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p", ["subscription_changed"]),
        ("DROP PUBLICATION p", []),
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


async def _quiet(rt: Runtime) -> float:
    return rt.metrics.registry.get_sample_value("canary_backstop_quiet_total", {"source": "jsonlog:primary", "why": "tripwire"}) or 0.0


async def _until_quiet(rt: Runtime, at_least: float, timeout: float = 60.0) -> float:
    """Wait until the backstop has left ``at_least`` object-audit lines to the tripwire in all."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (n := await _quiet(rt)) < at_least and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    return n


REAL_IDS = [g for g in range(1, 301) if g % 5 != 3]  # shop_database's customers


async def test_ordinary_reader_is_left_to_the_tripwire(audited: tuple[Runtime, JsonlogSource], shop15: Shop) -> None:
    """An ordinary role's SELECT * is seen by the tripwire (CY001 per canary row) and by object
    audit; the backstop leaves it to the tripwire: three row events in one incident, no pgaudit
    event, and the audit line is counted as quiet."""
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
        if len(rows) >= 3 and await _quiet(rt) >= 1:
            break
        await asyncio.sleep(0.1)
    assert sorted(r["evidence"].get("signal", "rls") for r in rows) == ["rls", "rls", "rls"]
    assert len({r["incident_id"] for r in rows}) == 1
    inc = await rt.pool.fetchrow("SELECT * FROM incidents WHERE id = $1", rows[0]["incident_id"])
    assert len(inc["canary_ids"]) == 3
    assert await _quiet(rt) >= 1


async def test_ten_thousand_lookups_of_real_customers_by_the_application_are_silent(
    audited: tuple[Runtime, JsonlogSource], shop15: Shop
) -> None:
    """With object audit on, 10,000 lookups of real customers by an ordinary application role make
    10,000 AUDIT lines and zero events: the tripwire covers that role, so the backstop stays quiet."""
    rt, _ = audited
    before = await rt.pool.fetchval("SELECT count(*) FROM events")
    conn = await asyncpg.connect(shop15.reader_dsn, server_settings={"application_name": "shop-api"})
    try:
        stmt = await conn.prepare("SELECT full_name, email FROM public.customers WHERE id = $1")
        for i in range(10_000):
            await stmt.fetchrow(REAL_IDS[i % len(REAL_IDS)])
    finally:
        await conn.close()
    assert await _until_quiet(rt, 10_000) >= 10_000
    await asyncio.sleep(0.5)
    assert await rt.pool.fetchval("SELECT count(*) FROM events") == before
    assert await rt.pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_superuser_lookups_follow_the_privileged_rule(audited: tuple[Runtime, JsonlogSource], shop15: Shop) -> None:
    """The same lookups by a superuser (whom row security never binds) are events by default
    (``privileged_reads = "all"``): each a READ saying why it is uncovered, all in one incident,
    paged once."""
    rt, _ = audited
    conn = await asyncpg.connect(shop15.dsn, server_settings={"application_name": "psql"})
    try:
        stmt = await conn.prepare("SELECT full_name, email FROM public.customers WHERE id = $1")
        for i in range(50):
            await stmt.fetchrow(REAL_IDS[i])
    finally:
        await conn.close()
    deadline = asyncio.get_running_loop().time() + 10
    rows: list[asyncpg.Record] = []
    while len(rows) < 50 and asyncio.get_running_loop().time() < deadline:
        rows = await _events(rt, "evidence->>'signal' = 'pgaudit'")
    assert len(rows) == 50
    assert {(r["kind"], r["evidence"]["uncovered"], r["actor"]["user"]) for r in rows} == {("read", "superuser", "postgres")}
    assert len({r["incident_id"] for r in rows}) == 1
    assert await rt.pool.fetchval("SELECT count(*) FROM outbox") == 1


async def test_a_role_made_privileged_just_before_it_reads_is_not_left_to_the_tripwire(
    audited: tuple[Runtime, JsonlogSource], shop15: Shop
) -> None:
    """The reader is first known as ordinary (its lookup is quiet). Then a superuser grants it a
    BYPASSRLS role, it reads through SET ROLE and the role is revoked at once: pgaudit's ROLE lines make
    the backstop re-read the catalog and remember the grant, so the read speaks although row security
    never saw it and the catalog no longer shows the membership."""
    rt, _ = audited
    reader = await asyncpg.connect(shop15.reader_dsn)
    admin = await asyncpg.connect(shop15.dsn)
    try:
        await reader.fetchrow("SELECT * FROM public.customers WHERE id = 1")
        assert await _until_quiet(rt, 1) >= 1
        await admin.execute('CREATE ROLE "escape_hatch" NOLOGIN BYPASSRLS')
        await admin.execute(f'GRANT SELECT ON public.customers TO "escape_hatch"; GRANT "escape_hatch" TO "{shop15.reader}"')
        await reader.execute('SET ROLE "escape_hatch"')
        await reader.fetch("SELECT * FROM public.customers WHERE id > 0")
        await reader.execute("RESET ROLE")
        await admin.execute(f'REVOKE "escape_hatch" FROM "{shop15.reader}"')
        rows = await _events(rt, "evidence->>'signal' = 'pgaudit' AND actor->>'user' = $1", shop15.reader)
        # judged after the REVOKE, the catalog alone would say "covered": the grant seen in the log decides
        assert [r["kind"] for r in rows] == ["read"]
        assert rows[0]["evidence"]["uncovered"] in ("member_of:escape_hatch", "granted_role:escape_hatch")
        assert await rt.pool.fetchval("SELECT count(*) FROM events WHERE evidence->>'signal' IS NULL") == 0
    finally:
        await reader.close()
        await admin.execute('DROP OWNED BY "escape_hatch"; DROP ROLE "escape_hatch"')
        await admin.close()


async def test_privileged_objects_are_found_and_views_covered_by_object_audit(
    audited: tuple[Runtime, JsonlogSource], shop15: Shop
) -> None:
    """A superuser-owned view over customers, a materialized view and a SECURITY DEFINER function are
    listed; an invoker view is not. Once the audit role may read the view and the copy, the reader's
    lookup through the view (which row security never sees) is an event naming the view; the
    function stays listed as not covered."""
    rt, _ = audited
    admin = await asyncpg.connect(shop15.dsn)
    try:
        await admin.execute(f"""
            CREATE VIEW public.customer_directory AS SELECT id, full_name, email FROM public.customers;
            CREATE VIEW public.customer_invoker WITH (security_invoker = true) AS SELECT id, email FROM public.customers;
            CREATE MATERIALIZED VIEW public.customers_nightly AS SELECT * FROM public.customers WITH NO DATA;
            CREATE FUNCTION public.lookup_customer(i int) RETURNS text LANGUAGE sql SECURITY DEFINER
                AS 'SELECT email FROM public.customers WHERE id = i';
            CREATE FUNCTION public.harmless() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';
            GRANT SELECT ON public.customer_directory, public.customer_invoker TO "{shop15.reader}";
        """)
        policies = await detection_objects.policies(rt.pool, "shop")
        snap = await read_snapshot(admin, policies, 0.0)
        found = await privileged_objects(admin, ["public.customers"], snap, ["rowsec"])
        assert [(o.kind, o.name, o.cover) for o in found] == [
            ("view", "public.customer_directory", "object_audit"),
            ("materialized_view", "public.customers_nightly", "object_audit"),
            ("function", "public.lookup_customer(i integer)", "none"),
        ]
        assert found[0].why == "reads as its owner superuser"
        state = await configure_object_audit(admin, ROLE, ["public.customers"], objects=audit_grants(found))
        assert {"public.customer_directory", "public.customers_nightly"} <= state.audited
    finally:
        await admin.close()
    reader = await asyncpg.connect(shop15.reader_dsn)
    try:
        await reader.fetchrow("SELECT * FROM public.customer_directory WHERE id = 2")
    finally:
        await reader.close()
    rows = await _events(rt, "evidence->>'signal' = 'pgaudit'")
    assert [(r["kind"], r["evidence"]["object_type"], r["evidence"]["table"]) for r in rows] == [
        ("read", "VIEW", "public.customer_directory")]


async def test_backstop_fails_loud_and_never_waits(audited: tuple[Runtime, JsonlogSource], shop15: Shop) -> None:
    """A role the catalog does not know speaks (``unknown_role``); with the datastore unreachable
    every line speaks (``privileges_unknown``) and the next ones do not wait for it; with
    ``privileged_reads = "exports"`` a superuser's filtered read is quiet but its whole-table read speaks.
    A role change imitated with RAISE changes nothing."""
    rt, _ = audited
    ctx = RecordContext("shop", "primary", "test")

    def line(user: str, statement: str) -> Detection:
        found = audit_detection({"message": f"AUDIT: OBJECT,1,1,READ,SELECT,TABLE,public.customers,{statement},<not logged>",
                                 "user": user, "pid": 7, "timestamp": "2026-12-01 10:00:00.000 UTC"}, ctx)
        assert found is not None
        return found

    live = Backstop(rt.pool, "shop", shop15.dsn)
    assert await live.keep(line("nobody_at_all", "SELECT 1 FROM customers WHERE id = 1"))
    assert not await live.keep(line(shop15.reader, "SELECT 1 FROM customers WHERE id = 1"))
    down = Backstop(rt.pool, "shop", "postgresql://x:y@127.0.0.1:1/none")
    first = line(shop15.reader, "SELECT 1 FROM customers WHERE id = 1")
    assert await down.keep(first) and first.evidence["uncovered"] == "privileges_unknown"
    started = asyncio.get_running_loop().time()
    for _ in range(20):
        assert await down.keep(line(shop15.reader, "SELECT 1 FROM customers WHERE id = 1"))
    assert asyncio.get_running_loop().time() - started < 1.0
    # a GRANT line written by a RAISE is not believed (it would make the application role page);
    # the same line as the server logs it is
    lookup = "SELECT 1 FROM customers WHERE id = 1"
    live.observe({"message": f'statement: GRANT "escape" TO "{shop15.reader}"',
                  "context": "PL/pgSQL function inline_code_block line 1 at RAISE"})
    assert not await live.keep(line(shop15.reader, lookup))
    live.observe({"message": f'statement: GRANT "escape" TO "{shop15.reader}"'})
    loud = line(shop15.reader, lookup)
    assert await live.keep(loud) and loud.evidence["uncovered"] == "granted_role:escape"
    exports = Backstop(rt.pool, "shop", shop15.dsn, privileged_reads="exports")
    assert not await exports.keep(line("postgres", "SELECT 1 FROM customers WHERE id = 1"))
    assert await exports.keep(line("postgres", "SELECT * FROM customers"))


def test_ddl_classification_knows_configured_names() -> None:
    """A datastore's configured touch-function name and pgaudit role are protected like the defaults;
    a function that merely shares a prefix is not."""
    assert classify("DROP FUNCTION audit.seen_rows(text, text, text)", ("seen_rows",)) == ["function_dropped"]
    assert classify("DROP FUNCTION audit.seen_rows_v2(text)", ("seen_rows",)) == []
    assert classify("DROP FUNCTION audit.seen_rows(text, text, text)") == []
    assert classify("REVOKE SELECT ON customers FROM audit_reader", (), "audit_reader") == ["audit_role_changed"]
    assert classify("DROP FUNCTION rowsec.ddl_log() CASCADE") == ["function_dropped"]
