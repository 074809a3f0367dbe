"""The copy sweep against real PostgreSQL: canary data copied into another schema, a materialized
view or another database of the datastore's server is one incident per object (owner, columns, never
a value); real data, canary's own armed tables and its detection schema raise nothing and are never
read; the budget bounds each run, the position survives between runs and new copies jump the queue;
the SQL it sends holds identifiers and block numbers only; hostile names, dropped tables, refused
databases and unreadable tables are skipped and counted, never fatal."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog
from seeder_helpers import JsonLog, Shop
from testkit import STDOUT_SINK, TEST_KEYRING, CanaryRows, MakeConfig, OpenRuntime, customer_canary, fresh_database

from canary.alerts import incident_title
from canary.app import cli
from canary.errors import ConfigError
from canary.events import DetectionEvent
from canary.health import scheduler as scheduler_mod
from canary.health.scheduler import CoverageScheduler
from canary.health.sweep import MAX_CELL, Budget, CopySweep, SweepSummary
from canary.health.valuematch import COUNTRY_CODES, ValueMatcher
from canary.postgres.sql import ident, qualified
from canary.runtime import Runtime
from canary.seeding.postgres import PostgresSeeder
from canary.seeding.synth import contacts as seeding_contacts
from canary.store import checkpoints
from canary.store.embedded import PostgresServer
from canary.store.registry import value_indexes, value_purpose

POOL = {"email_domains": ["mail.northwind-post.com"], "phone_numbers": ["+15550100000-+15550100099"]}
WIDE = Budget(max_seconds=30, max_bytes=1 << 30, blocks=64)


@pytest.fixture
def shop_rows() -> int:
    return 300


@dataclass
class Seeded:
    rt: Runtime
    shop: Shop
    emails: list[str]  # canary e-mail addresses (what the tests plant; never expected in any output)
    phones: list[str]  # canary phone numbers, E.164
    uids: list[str]
    owner: dict[str, str] = field(default_factory=dict)  # canary value -> its canary's uid (a phone may be NULL, as real rows' are)

    @property
    def values(self) -> list[str]:
        """Every spelling of every canary value a leak would show: addresses, E.164, digits, table form."""
        out = [e.lower() for e in self.emails]
        for p in self.phones:
            digits = p.lstrip("+")
            out += [p, digits, digits[1:], f"{digits[1:4]}-{digits[4:7]}-{digits[7:]}"]
        return out


def _config(make_config: MakeConfig, dsn: str, **coverage: Any) -> Any:
    return make_config(datastores=[{"name": "shop", "dsn": dsn, "tables": [{"table": "public.customers", "count": 4}]}],
                       seeding=POOL, coverage={"sweep": True, **coverage}, sinks=[STDOUT_SINK])


@pytest.fixture
async def seeded(shop: Shop, open_test_runtime: OpenRuntime, make_config: MakeConfig) -> Seeded:
    """The shop (300 customers) with 4 canary customers seeded (e-mail and phone each)."""
    cfg = _config(make_config, shop.dsn)
    rt = await open_test_runtime(cfg)
    await PostgresSeeder.from_config(cfg, "shop", rt.registry, seed=7).apply()
    emails, phones, uids, owner = [], [], [], {}
    for c in await rt.registry.active("shop"):
        uids.append(c.uid)
        for kind, value in await rt.registry.values_of(c.id):
            (emails if kind == "email" else phones).append(value)
            owner[value] = c.uid
    assert len(emails) == 4 and phones
    return Seeded(rt, shop, emails, phones, uids, owner)


async def _sql(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for st in statements:
            await conn.execute(st)
    finally:
        await conn.close()


async def _count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def _events(rt: Runtime) -> list[dict[str, Any]]:
    return [dict(r) for r in await rt.pool.fetch("SELECT * FROM events WHERE source = 'sweep' ORDER BY id")]


def _no_values(s: Seeded, *blobs: object) -> None:
    text = json.dumps(blobs, default=str).lower()
    leaked = [v for v in s.values if v.lower() in text]
    assert not leaked, "a canary value reached the output"


async def _sweep(rt: Runtime, budget: Budget = WIDE) -> tuple[list[DetectionEvent], SweepSummary]:
    sweep = CopySweep(rt, budget=budget)
    events = await sweep.sweep_once()
    (summary,) = sweep.summaries
    return events, summary


async def test_a_ctas_copy_in_another_schema_is_one_incident_naming_owner_and_columns(seeded: Seeded) -> None:
    """CREATE TABLE AS by an ordinary role copies the canaries into analytics.customers_2025: one sweep
    commits one EXPORTED/CRITICAL event (not one per row) for that object with its owner, the columns
    holding canary values, the match count and the canaries' uids; its incident is titled after the
    copy; neither the event, the incident, the outbox, the summary nor the logs hold any canary value."""
    s = seeded
    await _sql(s.shop.dsn, f'CREATE SCHEMA analytics AUTHORIZATION "{s.shop.reader}"')
    await _sql(s.shop.reader_dsn, "CREATE TABLE analytics.customers_2025 AS SELECT * FROM public.customers")
    with structlog.testing.capture_logs() as logs:
        events, summary = await _sweep(s.rt)
    assert len(events) == 1
    rows = await _events(s.rt)
    assert len(rows) == 1
    ev = rows[0]
    assert (ev["kind"], ev["severity"], ev["source"]) == ("exported", "critical", "sweep")
    e = ev["evidence"]
    assert e["signal"] == "copy_sweep" and e["object"] == "analytics.customers_2025" and e["relkind"] == "r"
    assert e["owner"] == s.shop.reader and ev["actor"] == {"user": s.shop.reader}
    assert set(e["columns"]) == {"email", "phone"}
    assert e["matches"] == len(s.emails) + len(s.phones) and e["canary_count"] == 4 and sorted(e["canaries"]) == sorted(s.uids)
    assert e["created_at"] is None and e["created_at_unknown"] == "track_commit_timestamp is off"
    assert ev["origin"]["datastore"] == "shop" and ev["origin"]["database"] == s.shop.db
    assert ev["group_key"] == f"copy:shop:{s.shop.db}:analytics.customers_2025"
    assert ev["canary_id"] in {c.id for c in await s.rt.registry.active("shop")}
    inc = await s.rt.pool.fetchrow("SELECT * FROM incidents")
    assert inc["title"] == (f"Canary data copied into analytics.customers_2025, owned by role {s.shop.reader},"
                            f" in database {s.shop.db} on shop")
    assert inc["title"] == incident_title(events[0])
    outbox = [dict(r) for r in await s.rt.pool.fetch("SELECT * FROM outbox")]
    assert summary.hits == [{"database": s.shop.db, "object": "analytics.customers_2025", "relkind": "r",
                             "owner": s.shop.reader, "columns": ["email", "phone"], "matches": len(s.emails) + len(s.phones), "canaries": 4}]
    _no_values(s, rows, dict(inc), outbox, summary.to_json(), logs)
    assert any(line["event"] == "sweep.copy_found" for line in logs)


async def test_running_the_same_sweep_again_adds_no_event(seeded: Seeded) -> None:
    """The copy is re-read by the next sweep (its round-robin pass) and found again, but the event key
    (datastore, database, oid) is the same: still one event and one incident, nothing paged twice."""
    s = seeded
    await _sql(s.shop.dsn, "CREATE TABLE public.customers_backup AS SELECT * FROM public.customers")
    first, _ = await _sweep(s.rt)
    second, summary = await _sweep(s.rt)
    assert len(first) == 1 and summary.hits
    assert second[0].key == first[0].key
    assert len(await _events(s.rt)) == 1
    assert await s.rt.pool.fetchval("SELECT count(*) FROM incidents") == 1
    assert await s.rt.pool.fetchval("SELECT count(*) FROM outbox") == 1  # one page, to the one sink


async def test_a_materialized_view_is_found(seeded: Seeded) -> None:
    """A materialized view over the canary table holds copies too: found as relkind 'm'."""
    s = seeded
    await _sql(s.shop.dsn, "CREATE SCHEMA reports",
               "CREATE MATERIALIZED VIEW reports.contacts AS SELECT full_name, lower(email) AS mail FROM public.customers",
               "CREATE MATERIALIZED VIEW reports.empty AS SELECT email FROM public.customers WITH NO DATA")
    _, summary = await _sweep(s.rt)
    (ev,) = await _events(s.rt)
    assert ev["evidence"]["object"] == "reports.contacts" and ev["evidence"]["relkind"] == "m"
    assert ev["evidence"]["object_type"] == "materialized view" and ev["evidence"]["columns"] == ["mail"]
    assert summary.skipped.get("not_populated") == 1


async def test_a_copy_in_another_database_of_the_server_is_found(seeded: Seeded, pg_server: PostgresServer) -> None:
    """A table in another database of the same server (reached with the datastore's DSN, database
    replaced) holding a canary e-mail and, in another row, its phone in E.164 form is one incident
    naming that database."""
    s = seeded
    phone = s.phones[0]
    email = next(e for e in s.emails if s.owner[e] != s.owner[phone])  # another canary's
    async with fresh_database(pg_server, "warehouse") as dsn:
        db = dsn.rsplit("/", 1)[1]
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("CREATE TABLE leads (id int, contact text, note varchar(200))")
            await conn.executemany("INSERT INTO leads VALUES ($1, $2, $3)",
                                   [(i, f"lead{i}@example.org", "call back") for i in range(200)]
                                   + [(900, email.upper(), "vip"), (901, "n/a", f"phone {phone} pls")])
        finally:
            await conn.close()
        _, summary = await _sweep(s.rt)
    (ev,) = await _events(s.rt)
    assert ev["origin"]["database"] == db and ev["evidence"]["object"] == "public.leads"
    assert ev["evidence"]["columns"] == ["contact", "note"] and ev["evidence"]["canary_count"] == 2
    assert summary.databases >= 3 and summary.skipped.get("control_store") == 1  # shop, warehouse, postgres


async def test_real_data_gives_no_events(seeded: Seeded) -> None:
    """Copies of the real customers only (canary rows left out), JSON documents, arrays and a
    partitioned table of real contact data are read end to end and raise nothing."""
    s = seeded
    pks = [int(c.location["pk"]) for c in await s.rt.registry.active("shop")]
    await _sql(
        s.shop.dsn, "CREATE SCHEMA analytics",
        f"CREATE TABLE analytics.real_customers AS SELECT * FROM public.customers WHERE id <> ALL('{{{','.join(map(str, pks))}}}')",
        "CREATE TABLE analytics.docs (id int, doc jsonb, tags text[])",
        "INSERT INTO analytics.docs SELECT g, jsonb_build_object('email', 'user' || g || '@example.net', 'phone', '555-' || g),"
        " ARRAY['+1 555 77' || lpad(g::text, 5, '0')] FROM generate_series(1, 500) g",
        "CREATE TABLE analytics.parts (id int, email text) PARTITION BY RANGE (id)",
        "CREATE TABLE analytics.parts_1 PARTITION OF analytics.parts FOR VALUES FROM (0) TO (1000)",
        "INSERT INTO analytics.parts SELECT g, 'p' || g || '@example.com' FROM generate_series(1, 999) g",
    )
    real = await _count(s.shop.dsn, "SELECT count(*) FROM public.customers") - len(pks)
    events, summary = await _sweep(s.rt)
    assert events == [] and await _events(s.rt) == []
    assert summary.relations_scanned == 3 and summary.rows == real + 500 + 999
    assert summary.hashed > summary.rows  # real e-mails and phones were hashed and missed
    assert summary.stopped == "done" and summary.problems == []


async def test_json_arrays_and_partition_leaves_are_read(seeded: Seeded) -> None:
    """A canary e-mail inside a jsonb document and a canary phone in a text[] land in two leaves of a
    partitioned table: each leaf is its own incident; the partitioned parent is not read twice."""
    s = seeded
    await _sql(s.shop.dsn, "CREATE TABLE public.events (id int, payload jsonb, tags text[]) PARTITION BY RANGE (id)",
               "CREATE TABLE public.events_a PARTITION OF public.events FOR VALUES FROM (0) TO (100)",
               "CREATE TABLE public.events_b PARTITION OF public.events FOR VALUES FROM (100) TO (200)")
    conn = await asyncpg.connect(s.shop.dsn)
    try:
        await conn.execute("INSERT INTO public.events VALUES (5, $1::jsonb, NULL), (150, NULL, $2::text[])",
                           json.dumps({"user": {"contact": {"email": s.emails[0]}}}), ["x", s.phones[0]])
    finally:
        await conn.close()
    await _sweep(s.rt)
    evs = {e["evidence"]["object"]: e["evidence"] for e in await _events(s.rt)}
    assert set(evs) == {"public.events_a", "public.events_b"}
    assert evs["public.events_a"]["columns"] == ["payload"] and evs["public.events_b"]["columns"] == ["tags"]


async def test_armed_tables_and_the_detection_schema_are_never_read(seeded: Seeded, pg_server: PostgresServer) -> None:
    """The canary table canary armed is never read by the sweep (its scan counters and buffer counters
    do not move, no CY001 detection line is logged), nor are the detection schema's tables, nor a
    renamed armed table (recognised by its policy's dependency on the detection function)."""
    s = seeded
    await _sql(s.shop.dsn, "CREATE TABLE public.customers_copy AS SELECT * FROM public.customers")
    stats_sql = ("SELECT relname, coalesce(seq_scan, 0) + coalesce(idx_scan, 0) AS scans,"
                 " coalesce(heap_blks_read, 0) + coalesce(heap_blks_hit, 0) AS blks,"
                 " autovacuum_count + autoanalyze_count AS maintenance"
                 " FROM pg_stat_all_tables JOIN pg_statio_all_tables USING (relid, schemaname, relname)"
                 " WHERE schemaname IN ('public', 'rowsec') AND relname <> 'customers_copy' ORDER BY 1")
    conn = await asyncpg.connect(s.shop.dsn)
    try:
        # sessions that ended just before (seeding, the copy) flush their counters late: wait until stable
        before: list[tuple[Any, ...]] = []
        for _ in range(6):
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            now = [tuple(r) for r in await conn.fetch(stats_sql)]
            if now == before:
                break
            before = now
            await asyncio.sleep(1.1)
        log = JsonLog(pg_server)
        log.mark()
        _, summary = await _sweep(s.rt)
        await asyncio.sleep(1.1)  # sessions flush their statistics at most once a second
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        after = [tuple(r) for r in await conn.fetch(stats_sql)]
        hits = await log.settle(s.shop.db, conn)
    finally:
        await conn.close()
    assert [r[0] for r in before] and [r[0] for r in after] == [r[0] for r in before]
    for (name, scans, blks, maint), (_, scans2, blks2, maint2) in zip(before, after):
        assert scans2 == scans, name  # no scan of any kind
        if maint2 == maint:  # autovacuum / autoanalyze read heap blocks too: then only the scans can tell
            assert blks2 == blks, name
    assert hits == []
    assert summary.skipped.get("armed") == 1 and summary.skipped.get("detection_schema", 0) >= 2
    assert [e["evidence"]["object"] for e in await _events(s.rt)] == ["public.customers_copy"]
    await _sql(s.shop.dsn, "ALTER TABLE public.customers RENAME TO clients")
    _, summary = await _sweep(s.rt)
    assert summary.skipped.get("armed") == 1 and summary.hits == [summary.hits[0]] and len(summary.hits) == 1


async def _ledger(dsn: str, rows: int, *, table: str = "public.ledger", tail: str | None = None) -> None:
    """A table of ``rows`` real-looking rows; ``tail``, when given, is an e-mail in its very last row."""
    await _sql(dsn, f"CREATE TABLE {table} (id bigint, who text, note text)",
               f"INSERT INTO {table} SELECT g, 'person' || g || '@example.com', repeat('memo ', 12) || g"
               f" FROM generate_series(1, {rows}) g")
    if tail is not None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"INSERT INTO {table} VALUES ({rows + 1}, $1, 'last')", tail)
        finally:
            await conn.close()


async def test_a_byte_budget_stops_each_run_and_later_runs_resume_to_the_end(seeded: Seeded) -> None:
    """With a 40-block byte budget each run touches at most 40 blocks, stops with 'max_bytes' and saves
    where it stopped; the runs that follow resume there and the one that reaches a canary placed in
    the last row of a 20,000-row table raises it. No block is read twice on the way."""
    s = seeded
    await _ledger(s.shop.dsn, 20_000, tail=s.emails[0])
    budget = Budget(max_seconds=30, max_bytes=40 * 8192, blocks=16)
    total, runs, found = 0, 0, []
    for runs in range(1, 60):
        events, summary = await _sweep(s.rt, budget)
        assert summary.bytes <= budget.max_bytes and summary.io_measured
        if events:
            found = events
            break
        total += summary.blocks
        assert summary.stopped == "max_bytes"
        position = await checkpoints.load(s.rt.pool, "sweep:shop")
        assert position and position["listed_at"]
        state = await s.rt.pool.fetchrow("SELECT scanned_to FROM sweep_relations WHERE rel_name = 'ledger'")
        assert state["scanned_to"] == total  # resumes exactly where the previous run stopped
    nblocks = await s.rt.pool.fetchval("SELECT scanned_to FROM sweep_relations WHERE rel_name = 'ledger'")
    assert found and found[0].evidence["object"] == "public.ledger" and found[0].evidence["complete"]
    assert runs == nblocks // 40 + 1 and nblocks - 40 < total < nblocks  # each block once, in budget-sized steps


async def test_a_time_budget_and_the_rate_limit_bound_a_run(seeded: Seeded) -> None:
    """With 0.6 s and 64 KiB/s the run stops on time ('max_seconds') having touched about what the rate
    allows, not the whole table; the next run picks up from there."""
    s = seeded
    await _ledger(s.shop.dsn, 20_000)
    budget = Budget(max_seconds=0.6, max_bytes=1 << 30, blocks=64, max_bytes_per_second=64 * 1024)
    _, summary = await _sweep(s.rt, budget)
    assert summary.stopped == "max_seconds"
    assert summary.seconds < 0.6 + 0.5
    assert 0 < summary.bytes <= 64 * 1024 * 0.6 + 8 * 8192
    first = await s.rt.pool.fetchval("SELECT scanned_to FROM sweep_relations WHERE rel_name = 'ledger'")
    _, again = await _sweep(s.rt, budget)
    assert await s.rt.pool.fetchval("SELECT scanned_to FROM sweep_relations WHERE rel_name = 'ledger'") > first > 0
    assert again.stopped == "max_seconds"


async def test_a_new_copy_is_found_on_the_next_run_while_the_first_pass_is_unfinished(seeded: Seeded) -> None:
    """A run reads part of a large table and stops on its budget; a copy made after that run is read
    first by the next run (new relations before the unfinished pass) and raised there, while the large
    table still has unread blocks."""
    s = seeded
    await _ledger(s.shop.dsn, 30_000)
    budget = Budget(max_seconds=30, max_bytes=30 * 8192, blocks=16)
    _, first = await _sweep(s.rt, budget)
    assert first.stopped == "max_bytes" and first.backlog_blocks > 100
    await _sql(s.shop.dsn, "CREATE TABLE public.export_tmp AS SELECT email FROM public.customers ORDER BY id DESC")
    events, second = await _sweep(s.rt, budget)
    assert [e.evidence["object"] for e in events] == ["public.export_tmp"]
    assert second.backlog_blocks > 50


async def test_the_sql_the_sweep_sends_never_holds_a_canary_value(seeded: Seeded, pg_server: PostgresServer,
                                                                   open_test_runtime: OpenRuntime,
                                                                   make_config: MakeConfig) -> None:
    """With log_statement = 'all' for the sweep's own role (BYPASSRLS, pg_read_all_data), every
    statement it sends (listing, ranges, checks) is in the server log, and none of them holds a
    canary e-mail, phone or any spelling of one, although the sweep found the copy."""
    s = seeded
    role, password = f"sweeper_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await _sql(s.shop.dsn, f"CREATE ROLE {role} LOGIN BYPASSRLS PASSWORD '{password}'",
               f"GRANT pg_read_all_data TO {role}", f"ALTER ROLE {role} SET log_statement = 'all'",
               "CREATE TABLE public.mailing AS SELECT email, phone FROM public.customers")
    try:
        rt = await open_test_runtime(_config(make_config, pg_server.dsn(s.shop.db, user=role, password=password)))
        log = JsonLog(pg_server)
        log.mark()
        events, _ = await _sweep(rt)
        await asyncio.sleep(0.3)
        mine = [ln for ln in log.lines() if ln.get("user") == role]
    finally:
        await _sql(s.shop.dsn, f"DROP OWNED BY {role}")
        await _sql(pg_server.dsn(), f"DROP ROLE {role}")
    assert [e.evidence["object"] for e in events] == ["public.mailing"]
    statements = [ln.get("message", "") for ln in mine]  # "execute <unnamed>: ..." (and parameters in "detail")
    assert any("ctid >=" in st for st in statements) and any("pg_stat_get_xact_blocks_fetched" in st for st in statements)
    _no_values(s, mine)


async def test_hostile_identifiers_are_read_and_named_exactly(seeded: Seeded) -> None:
    """A schema, table and column named with quotes, dots, spaces, a semicolon and non-ASCII letters
    are quoted correctly: the copy inside is found and the event names the object as the catalog does."""
    s = seeded
    schema, table, col = 'we"ird sch.ema', 'Ünï "côdé". x;--', 'e"mail; DROP TABLE x'
    await _sql(s.shop.dsn, f"CREATE SCHEMA {ident(schema)}",
               f"CREATE TABLE {qualified(schema, table)} AS SELECT email AS {ident(col)}, city FROM public.customers")
    _, summary = await _sweep(s.rt)
    (ev,) = await _events(s.rt)
    assert ev["evidence"]["object"] == f"{schema}.{table}" and ev["evidence"]["columns"] == [col]
    assert summary.problems == []


async def test_a_table_dropped_mid_sweep_is_skipped_and_the_sweep_goes_on(seeded: Seeded) -> None:
    """Three one-block tables are read smallest-oid first, throttled to one block a second; the second
    is dropped while the sweep waits after the first: it is counted as 'vanished', its state is
    forgotten, and the third (a copy) is still read and raised."""
    s = seeded
    await _sql(s.shop.dsn, "CREATE TABLE public.t_a AS SELECT 'a' || g AS x FROM generate_series(1, 5) g",
               "CREATE TABLE public.t_b AS SELECT 'b' || g AS x FROM generate_series(1, 5) g",
               "CREATE TABLE public.t_c AS SELECT email FROM public.customers WHERE id % 50 = 0 OR email LIKE '%northwind%'")
    budget = Budget(max_seconds=30, max_bytes=1 << 30, blocks=64, max_bytes_per_second=8192)
    task = asyncio.create_task(_sweep(s.rt, budget))
    conn = await asyncpg.connect(s.shop.dsn)
    try:
        for _ in range(400):  # until the sweep has committed its first range (t_a) and sleeps
            pids = [r["pid"] for r in await s.rt.pool.fetch("SELECT pid FROM own_sessions WHERE purpose = 'sweep'"
                                                            " AND closed_at IS NULL")]
            if pids and await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])"
                                            " AND query = 'COMMIT;'", pids):
                break
            await asyncio.sleep(0.01)
        await conn.execute("DROP TABLE public.t_b")
    finally:
        await conn.close()
    events, summary = await task
    assert summary.skipped.get("vanished") == 1
    assert {"database": s.shop.db, "object": "public.t_b", "problem": "vanished"} in summary.problems
    assert [e.evidence["object"] for e in events] == ["public.t_c"]
    assert not await s.rt.pool.fetchval("SELECT count(*) FROM sweep_relations WHERE rel_name = 't_b'")


async def test_blind_spots_are_counted_and_the_sweep_carries_on(seeded: Seeded, pg_server: PostgresServer,
                                                                 open_test_runtime: OpenRuntime,
                                                                 make_config: MakeConfig) -> None:
    """Swept as an ordinary role: a database it may not connect to, a table it may not read and a table
    whose own row-level security would apply to it are each counted (refused, permission_denied,
    row_security; the RLS table's policies never run) while a copy it can read is still raised."""
    s = seeded
    role, password = f"sweeplo_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    async with fresh_database(pg_server, "closed") as closed_dsn:
        await _sql(closed_dsn, "REVOKE CONNECT ON DATABASE " + ident(closed_dsn.rsplit("/", 1)[1]) + " FROM PUBLIC")
        await _sql(s.shop.dsn, f"CREATE ROLE {role} LOGIN PASSWORD '{password}'",
                   "CREATE TABLE public.secret_copy AS SELECT * FROM public.customers",
                   "CREATE TABLE public.rls_copy AS SELECT * FROM public.customers",
                   "ALTER TABLE public.rls_copy ENABLE ROW LEVEL SECURITY",
                   "CREATE POLICY p ON public.rls_copy USING (pg_catalog.pg_sleep(1) IS NOT NULL)",
                   f"GRANT SELECT ON public.rls_copy TO {role}",
                   "CREATE TABLE public.open_copy AS SELECT email FROM public.customers",
                   f"GRANT SELECT ON public.open_copy TO {role}")
        try:
            cfg = _config(make_config, pg_server.dsn(s.shop.db, user=role, password=password))
            rt = await open_test_runtime(cfg)
            events, summary = await _sweep(rt)
        finally:
            await _sql(s.shop.dsn, f"DROP OWNED BY {role}")
            await _sql(pg_server.dsn(), f"DROP ROLE {role}")
    assert [e.evidence["object"] for e in events] == ["public.open_copy"]
    assert summary.databases_refused == 1
    assert any(p["problem"].startswith("connection_refused") for p in summary.problems)
    assert {"database": s.shop.db, "object": "public.secret_copy", "problem": "permission_denied"} in summary.problems
    assert {"database": s.shop.db, "object": "public.rls_copy", "problem": "row_security"} in summary.problems
    assert summary.seconds < 5  # the policy's pg_sleep never ran


async def test_the_scheduler_finds_a_copy_within_one_sweep_interval(seeded: Seeded, open_test_runtime: OpenRuntime,
                                                                    make_config: MakeConfig) -> None:
    """With coverage.sweep on, the scheduler component starts (even with checks off) and runs the sweep
    job every interval: a copy made while it runs is committed within one interval plus one run."""
    s = seeded
    cfg = _config(make_config, s.shop.dsn, sweep_interval="1s")
    assert [type(c).__name__ for c in scheduler_mod.SOURCE.components(cfg)] == ["CoverageScheduler"]
    rt = await open_test_runtime(cfg)
    sched = CoverageScheduler()
    await sched.start(rt)
    try:
        assert [name for name, _, _ in sched.jobs()] == ["sweep"]
        await asyncio.sleep(0.3)
        await _sql(s.shop.dsn, "CREATE TABLE public.late_copy AS SELECT phone FROM public.customers")
        made = asyncio.get_running_loop().time()
        rows: list[Any] = []
        while not rows and asyncio.get_running_loop().time() - made < 6:
            rows = await rt.pool.fetch("SELECT * FROM events WHERE source = 'sweep'")
            await asyncio.sleep(0.05)
        took = asyncio.get_running_loop().time() - made
    finally:
        await sched.stop()
    assert rows and rows[0]["evidence"]["object"] == "public.late_copy"
    assert took < 1.0 + 2.0
    assert sched.runs["sweep"] >= 1


async def test_the_cli_sweeps_once_and_prints_a_summary_without_values(
        seeded: Seeded, tmp_path: Path, data_dir: Path, control_dsn: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``canary coverage sweep --max-seconds 20`` commits the copy's incident, prints the summary as
    JSON (relations, rows, bytes, hits without values, where it will resume) and exits 1."""
    s = seeded
    await _sql(s.shop.dsn, "CREATE TABLE public.dump_2025 AS SELECT * FROM public.customers")
    monkeypatch.setenv("CANARY_MASTER_KEY", base64.b64encode(bytes(range(32))).decode())
    path = tmp_path / "canary.toml"
    path.write_text(f'[canary]\ndata_dir = "{data_dir}"\nlog_level = "warning"\n[control]\ndsn = "{control_dsn}"\n'
                    f'[coverage]\nsweep = true\n[[datastores]]\nname = "shop"\ndsn = "{s.shop.dsn}"\n')
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, ["-c", str(path), "coverage", "sweep", "--max-seconds", "20"])
    structlog.reset_defaults()
    out = capsys.readouterr().out
    assert code == 1
    report = json.loads(out)
    (ds,) = report["datastores"]
    assert ds["datastore"] == "shop" and ds["stopped"] == "done" and ds["rows"] > 0 and ds["bytes"] > 0
    assert [h["object"] for h in ds["hits"]] == ["public.dump_2025"] and report["events"] == 1
    assert ds["resume"]["database"] and "block" in ds["resume"]
    assert len(await _events(s.rt)) == 1
    _no_values(s, out)


async def test_created_at_is_the_copys_commit_time_when_commit_timestamps_are_tracked(
        canary_rows: CanaryRows, open_test_runtime: OpenRuntime, make_config: MakeConfig) -> None:
    """On a server with track_commit_timestamp = on the event's created_at is the commit time of the
    transaction that created the copy (its catalog row), between the moments before and after it."""
    tmp = Path(tempfile.mkdtemp(prefix="canary-pg-ts-"))
    server = PostgresServer(tmp, settings={"track_commit_timestamp": True})
    await asyncio.to_thread(server.start)
    try:
        (cid,) = await canary_rows(customer_canary(1, values=[("email", "ts.canary@mail.northwind-post.com")]))
        rt = await open_test_runtime(make_config(datastores=[{"name": "ts", "dsn": server.dsn()}], coverage={"sweep": True}))
        conn = await asyncpg.connect(server.dsn())
        try:
            before = await conn.fetchval("SELECT clock_timestamp()")
            await conn.execute("CREATE TABLE crm_export AS SELECT 'TS.Canary@mail.northwind-post.com'::text AS mail")
            after = await conn.fetchval("SELECT clock_timestamp()")
        finally:
            await conn.close()
        events, _ = await _sweep(rt)
    finally:
        await asyncio.to_thread(server.destroy)
    (ev,) = events
    assert ev.canary_id == cid and "created_at_unknown" not in ev.evidence
    assert before <= dt.datetime.fromisoformat(ev.evidence["created_at"]) <= after


# -- the matcher: what is hashed, what matches ------------------------------------------------------

E, P = "Jane.Doe@mail.northwind-post.com", "+15550100001"
KR = "+821055500123"


@pytest.fixture
def matcher() -> ValueMatcher:
    k = TEST_KEYRING
    index = {k.blind_index(E, value_purpose("email")): (1, "email"), k.blind_index(P, value_purpose("phone")): (2, "phone"),
             k.blind_index(KR, value_purpose("phone")): (3, "phone")}
    return ValueMatcher(k, index, codes=("1", "82"))


@pytest.mark.parametrize("text, expected", [
    (E, [1]), ("  jane.doe@MAIL.northwind-post.com ", [1]), (f"Jane <{E}>", [1]),
    (json.dumps({"a": [{"mail": E, "tel": "555-010-0001"}]}), [1, 2]), (f"{{{E}}}", [1]),
    ("555-010-0001", [2]), ("(555) 010-0001", [2]), ("+1 555 010 0001", [2]), ("15550100001", [2]),
    ("5550100001", [2]), ("call 555.010.0001 after 5", [2]), ("010-5550-0123", [3]), ("+82 10 5550 0123", [3]),
])
def test_canary_values_match_in_any_spelling(matcher: ValueMatcher, text: str, expected: list[int]) -> None:
    """Addresses match whatever their case, padding or surrounding text; phones in national,
    international, spaced or dotted form; JSON documents are searched inside."""
    assert [cid for cid, _ in matcher.match(text)] == expected


@pytest.mark.parametrize("text", [
    "jane.doe@mail.northwind-post.co", "jane.doe@mail.northwind-post.com.evil", "xjane.doe@mail.northwind-post.com",
    "555-010-0002", "+1 555 010 00011", "+44 555 010 0001", "Jane Doe", "", "a@b", "12345", "2024-03-01",
    P.replace("+", "00 "), "mail.northwind-post.com", "x5550100001", "5550100001x",
])
def test_near_misses_do_not_match(matcher: ValueMatcher, text: str) -> None:
    """Other addresses and numbers, fragments and look-alikes never match (exact blind-index equality)."""
    if text == P.replace("+", "00 "):  # 00 is the international prefix: the same number
        assert matcher.match(text) == [(2, "phone")]
        return
    assert matcher.match(text) == []


def test_the_prefilter_skips_the_hmac_for_cells_that_cannot_be_values(matcher: ValueMatcher) -> None:
    """Names, cities and short codes cost no HMAC; the same rows with the prefilter off are hashed
    cell by cell and give the same matches."""
    rows = [("Jane Doe", "Springfield", "gold", E, "555-010-0001", None)] * 10
    with_pf = matcher.scan(rows)
    off = ValueMatcher(TEST_KEYRING, matcher._index, codes=matcher.codes, prefilter=False)
    without = off.scan(rows)
    assert with_pf.canaries == without.canaries == {1: 10, 2: 10}
    assert with_pf.columns == without.columns == {3: 10, 4: 10}
    assert with_pf.hashed == 10 * (1 + 3)  # the address; the number as international, +1 and +82
    assert without.hashed >= 2 * with_pf.hashed
    assert "northwind" not in repr(matcher)


def test_the_blind_indexer_equals_blind_index_and_country_codes_follow_the_seeder() -> None:
    """The precomputed indexer gives Keyring.blind_index's digests; the sweep's country codes are the
    ones the seeder formats phone numbers with."""
    k = TEST_KEYRING
    ix = k.blind_indexer(value_purpose("email"))
    for v in ("a@b.co", " Ünï@Exämple.com ", "ﬁ@x.io"):
        assert ix(v) == k.blind_index(v, value_purpose("email"))
    assert dict(COUNTRY_CODES) == seeding_contacts._COUNTRY_CODES


async def test_value_indexes_lists_active_canaries_only(seeded: Seeded) -> None:
    """value_indexes reads digests of active canaries' e-mails and phones, key-free; a retired canary's
    values are gone from it."""
    s = seeded
    idx = await value_indexes(s.rt.pool, ("email", "phone"))
    assert {kind for _, kind in idx.values()} == {"email", "phone"}
    assert TEST_KEYRING.blind_index(s.emails[0], value_purpose("email")) in idx
    victim = (await s.rt.registry.active("shop"))[0]
    async with s.rt.pool.acquire() as conn:
        await s.rt.registry.retire(conn, [victim.id])
    assert victim.id not in {cid for cid, _ in (await value_indexes(s.rt.pool, ("email", "phone"))).values()}


def test_sweep_settings_are_validated(make_config: MakeConfig) -> None:
    """Durations take units; a zero interval, a budget below one block and an unknown key are errors."""
    cfg = make_config(coverage={"sweep": True, "sweep_interval": "2h", "sweep_max_seconds": "90s",
                                "sweep_max_bytes": 1 << 20, "sweep_blocks": 128})
    cov = cfg.coverage
    assert (cov.sweep_interval, cov.sweep_max_seconds, cov.sweep_max_bytes, cov.sweep_blocks) == (7200, 90, 1 << 20, 128)
    for bad in ({"sweep_interval": "0s"}, {"sweep_max_bytes": 100}, {"sweep_blocks": 0}, {"sweep_budget": 1}):
        with pytest.raises(ConfigError):
            make_config(coverage=bad)


async def test_huge_cells_are_read_only_up_to_the_cell_limit(seeded: Seeded) -> None:
    """A table of 5 MB text values (what an insider could plant to exhaust the sweep's memory) is read
    in bounded batches, each cell cut at MAX_CELL characters: a canary address at the start of a huge
    cell is found, one placed beyond the limit is not (a documented limit), and the run completes."""
    s = seeded
    first, second = s.emails[0], s.emails[1]
    await _sql(s.shop.dsn, "CREATE TABLE public.blobs (id int, doc text)",
               f"INSERT INTO public.blobs SELECT g, '{first} ' || repeat('x', 5000000) FROM generate_series(1, 8) g",
               "CREATE TABLE public.deep (id int, doc text)",
               f"INSERT INTO public.deep SELECT 1, repeat('y', {MAX_CELL + 10}) || ' {second}'")
    events, summary = await _sweep(s.rt)
    assert summary.stopped == "done"
    assert [e.evidence["object"] for e in events] == ["public.blobs"]
