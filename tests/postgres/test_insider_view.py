"""What an insider sees of the tripwire: an ordinary reader and a ``pg_read_all_stats`` reader query
every catalog and statistics view they may, read function sources and settings, run EXPLAIN with
every option and turn on every debug message, against a seeded shop. None of it holds the canary
key set, the seed or the filter, the private objects cannot be read or called, and predicates built
from what is visible do not avoid the canaries."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import asyncpg
import pytest
from testkit import incidents_when

from canary.runtime import Runtime
from canary.store.embedded import PostgresServer

CATALOG_QUERIES = (
    "SELECT * FROM pg_policies",
    "SELECT polname, pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid) FROM pg_policy",
    "SELECT p.proname, p.prosrc, p.proconfig::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
    " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')",
    "SELECT c.relname, c.reltuples, c.relacl::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')",
    "SELECT pg_get_viewdef(c.oid) FROM pg_class c WHERE c.relkind = 'v' AND c.relnamespace NOT IN"
    " (SELECT oid FROM pg_namespace WHERE nspname IN ('pg_catalog', 'information_schema'))",
    "SELECT name, setting FROM pg_settings",
    # statistics of the table itself sample its values (canary rows among them, unmarked): checked apart
    "SELECT * FROM pg_stats WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'public')",
    "SELECT * FROM pg_stats_ext",
    "SELECT * FROM pg_stat_user_tables",
    "SELECT * FROM pg_statio_user_tables",
    "SELECT * FROM pg_stat_user_functions",
    "SELECT * FROM pg_stat_activity",
    "SELECT d.* FROM pg_description d JOIN pg_class c ON c.oid = d.objoid",
    "SELECT nspname, nspacl::text FROM pg_namespace",
)
PRIVATE = ("SELECT * FROM rowsec.members", "SELECT * FROM rowsec.state", "SELECT * FROM rowsec.current_state",
           "SELECT * FROM rowsec.settings", "SELECT rowsec.row_visible('public.customers', '1', 'x')",
           "SELECT table_to_xml('rowsec.current_state'::regclass, true, false, '')")


async def _secrets(target_dsn: str) -> tuple[list[str], list[str]]:
    """(canary keys, the seed and filter as text) as the owner sees them."""
    conn = await asyncpg.connect(target_dsn)
    try:
        keys = [r["k"] for r in await conn.fetch("SELECT k FROM rowsec.members WHERE t = 'public.customers'")]
        row = await conn.fetchrow("SELECT seed, bm FROM rowsec.state WHERE t = 'public.customers'")
        filt = bytes(row["bm"]).hex().strip("0")[:24]
        return keys, [str(row["seed"]), filt]
    finally:
        await conn.close()


def _leaks(text: str, keys: list[str], secrets_: list[str]) -> list[str]:
    """The seed or filter anywhere, or a record (line) naming three or more canary keys: a number can
    appear by chance (a count, an OID, a house number), a key set cannot."""
    found = [s for s in secrets_ if s and s in text]
    for line in text.splitlines():
        listed = [k for k in keys if re.search(rf"(?<![\w.]){re.escape(k)}(?![\w.])", line)]
        if len(listed) > 2:
            found += listed
    return found


async def _insider_view(conn: asyncpg.Connection) -> str:
    """Everything the role may read of the catalogs, statistics, plans and debug messages."""
    messages: list[str] = []
    conn.add_log_listener(lambda _c, msg: messages.append(f"{msg!r} {getattr(msg, 'detail', '')} {getattr(msg, 'hint', '')}"))
    out = []
    for sql in CATALOG_QUERIES:
        out += [r[0] for r in await conn.fetch(f"SELECT to_json(x)::text FROM ({sql}) AS x")]
    await conn.execute("SET client_min_messages = debug5; SET debug_print_plan = on; SET debug_print_rewritten = on;"
                       " SET debug_print_parse = on; SET debug_pretty_print = on")
    real = await conn.fetchval("SELECT min(id) FROM customers WHERE id > 0")
    for sql in (f"SELECT * FROM customers WHERE id = {real}", "SELECT count(*) FROM customers WHERE full_name LIKE '%z%'"):
        plan = await conn.fetchval(f"EXPLAIN (ANALYZE, VERBOSE, SETTINGS, BUFFERS, WAL, COSTS, TIMING, SUMMARY, FORMAT JSON) {sql}")
        out.append(json.dumps(plan))
        out.append(json.dumps([dict(r) for r in await conn.fetch(sql)], default=str))
    await conn.execute("RESET ALL")
    for sql in PRIVATE:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch(sql)
    return "\n".join(out + messages)


@pytest.mark.parametrize("stats_role", [False, True], ids=["ordinary", "pg_read_all_stats"])
async def test_nothing_visible_names_the_canaries(deployed: dict[str, Any], pg_server: PostgresServer, target_dsn: str,
                                                  stats_role: bool) -> None:
    rt: Runtime = deployed["runtime"]
    keys, secrets_ = await _secrets(target_dsn)
    assert len(keys) == 10
    reader_dsn = deployed["reader_dsn"]
    if stats_role:
        admin = await asyncpg.connect(target_dsn)
        role = f"stats_{int(time.time() * 1000) % 10_000_000}"
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw' IN ROLE pg_read_all_stats; GRANT SELECT ON customers TO {role}")
        await admin.close()
        reader_dsn = pg_server.dsn(target_dsn.rsplit("/", 1)[1], user=role, password="pw")
    conn = await asyncpg.connect(reader_dsn)
    try:
        seen = await _insider_view(conn)
    finally:
        await conn.close()
    assert _leaks(seen, keys, secrets_) == []
    assert "rowsec" not in " ".join(line for line in seen.splitlines() if '"schemaname"' in line and '"attname"' in line)
    # the view above included a full scan: every canary was read, and paged
    incidents = await incidents_when(rt, 1, canaries=10)
    assert len(incidents[0]["canary_ids"]) == 10


async def test_predicates_from_what_is_visible_do_not_avoid_the_canaries(deployed: dict[str, Any]) -> None:
    """A reader who takes every number out of the policy text and the plans and excludes those rows,
    or uses the filter's hash with a guessed seed, still reads every canary (and is paged)."""
    rt, reader = deployed["runtime"], deployed["reader"]
    qual = " ".join(r["qual"] for r in await reader.fetch("SELECT qual FROM pg_policies"))
    numbers = sorted({int(n) for n in re.findall(r"\d+", qual)})
    await reader.fetch("SELECT * FROM customers WHERE id <> ALL($1::bigint[])", numbers)
    incidents = await incidents_when(rt, 1, canaries=10)
    assert len(incidents[0]["canary_ids"]) == 10
    before = await rt.pool.fetchval("SELECT count(*) FROM events")
    await reader.fetch("SELECT * FROM customers WHERE (hashint8extended(id, 0) & 8191) <> 0")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and await rt.pool.fetchval("SELECT count(*) FROM events") < before + 9:
        await asyncio.sleep(0.05)
    assert await rt.pool.fetchval("SELECT count(*) FROM events") >= before + 9


async def test_command_ids_do_not_set_canary_rows_apart(deployed: dict[str, Any], target_dsn: str) -> None:
    """``cmin`` is readable and comparable before the policy (leakproof): canary rows and their child rows
    are written in one statement, so they carry command id 0, as rows an application inserts in one
    statement do, and ``cmin = 0`` does not avoid them."""
    rt, reader = deployed["runtime"], deployed["reader"]
    keys = [int(c.location["pk"]) for c in await rt.registry.active("shop") if c.kind == "customer"]
    owner = await asyncpg.connect(target_dsn)
    try:
        await owner.execute("SET row_security = off")
        assert {r[0] for r in await owner.fetch("SELECT DISTINCT cmin::text FROM customers WHERE id = ANY($1::bigint[])", keys)} == {"0"}
        assert {r[0] for r in await owner.fetch("SELECT DISTINCT cmin::text FROM orders WHERE customer_id = ANY($1::bigint[])", keys)} == {"0"}
    finally:
        await owner.close()
    await reader.fetch("SELECT * FROM orders WHERE cmin = '0'")
    incidents = await incidents_when(rt, 1)
    assert incidents and incidents[0]["kind"] == "read"
