"""The tripwire's form: a keyed Bloom filter read through InitPlans from a private schema, the exact
check in the touch function, and the checks verify makes of it."""

from __future__ import annotations

from urllib.parse import urlparse

import asyncpg
import pytest
from seeder_helpers import JsonLog

from canary.crypto import Keyring, generate_key
from canary.postgres.tripwire import MAX_BITS, MIN_BITS, Tripwire, bits_for, visibility_guard
from canary.seeding.catalog import introspect
from canary.store.embedded import PostgresServer

TW = Tripwire("shop", "rowsec", "row_visible", "rowsec_r", "rowsec_p")


def test_filter_size_grows_with_the_keys_within_bounds() -> None:
    assert bits_for(0) == MIN_BITS and bits_for(100) == 8192 and bits_for(1000) == 1 << 16
    assert bits_for(10_000) == MAX_BITS == 1 << 18


async def _armed_table(conn: asyncpg.Connection, pk_type: str, canaries: list[str], keyring: Keyring) -> str:
    for stmt in TW.setup_sql():
        await conn.execute(stmt)
    await TW.install_line_key(conn, keyring)
    await conn.execute(f"CREATE TABLE t (id {pk_type} PRIMARY KEY, v text NOT NULL)")
    await conn.execute(f"INSERT INTO t SELECT g::text::{pk_type}, 'x' FROM generate_series(-100, 20000) g")
    info = await introspect(conn, "public.t")
    col = info.column("id")
    bits = await TW.set_members(conn, "public.t", col.type, col.base_type, canaries)
    await conn.execute(TW.policy_sql("public.t", "public.t", "id", col.base_type, bits))
    await conn.execute("ALTER TABLE t ENABLE ROW LEVEL SECURITY; ALTER TABLE t FORCE ROW LEVEL SECURITY")
    await conn.execute("CREATE POLICY p ON t AS PERMISSIVE FOR ALL TO PUBLIC USING (true)")
    return col.type


@pytest.mark.parametrize("pk_type", ["bigint", "integer", "smallint", "text", "uuid"])
async def test_policy_fires_for_canaries_only(pg_server: PostgresServer, target_dsn: str, pk_type: str) -> None:
    """Every canary key (negative too) logs exactly one CY001 line with su/db/an; real rows stay
    silent (the ones that pass the filter find no member), and every row is still returned. The
    reader needs no USAGE on the private schema."""
    db = urlparse(target_dsn).path.lstrip("/")
    conn = await asyncpg.connect(target_dsn)
    try:
        if pk_type == "uuid":
            await conn.execute("CREATE FUNCTION pg_temp.u(int) RETURNS uuid LANGUAGE sql AS "
                               "$$ SELECT lpad(to_hex($1 & 1023), 32, '0')::uuid $$")
            canaries = ["00000000-0000-0000-0000-000000000005", "00000000-0000-0000-0000-0000000003ff"]
            for stmt in TW.setup_sql():
                await conn.execute(stmt)
            await TW.install_line_key(conn, Keyring(generate_key()))
            await conn.execute("CREATE TABLE t (id uuid PRIMARY KEY, v text NOT NULL)")
            await conn.execute("INSERT INTO t SELECT pg_temp.u(g), 'x' FROM generate_series(0, 1023) g")
            info = await introspect(conn, "public.t")
            bits = await TW.set_members(conn, "public.t", "uuid", "uuid", canaries)
            await conn.execute(TW.policy_sql("public.t", "public.t", "id", "uuid", bits))
            await conn.execute("ALTER TABLE t ENABLE ROW LEVEL SECURITY; ALTER TABLE t FORCE ROW LEVEL SECURITY")
            await conn.execute("CREATE POLICY p ON t AS PERMISSIVE FOR ALL TO PUBLIC USING (true)")
            total = 1024
        else:
            canaries = ["-7", "5", "4096"]
            await _armed_table(conn, pk_type, canaries, Keyring(generate_key()))
            total = 20101
        reader = f"reader_{db}"[:63]
        await conn.execute(f'CREATE ROLE "{reader}"; GRANT SELECT ON t TO "{reader}"')
        await conn.execute(f"SET application_name = 'etl'; SET ROLE \"{reader}\"")
        tail = JsonLog(pg_server)
        tail.mark()
        assert await conn.fetchval("SELECT count(*) FROM t WHERE v LIKE 'x%'") == total
        hits = await tail.wait_hits(db, minimum=len(canaries))
        assert sorted(h["k"] for h in hits) == sorted(canaries)
        assert all(h["u"] == reader and h["su"] == "postgres" and h["db"] == db and h["an"] == "etl" for h in hits)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM rowsec.current_state")
        await conn.execute(f'RESET ROLE; DROP OWNED BY "{reader}"; DROP ROLE "{reader}"')
    finally:
        await conn.close()


async def test_verify_sees_a_cleared_filter_a_lost_member_and_a_changed_policy(target_dsn: str) -> None:
    """table_problems is empty for an intact tripwire and names each kind of damage."""
    conn = await asyncpg.connect(target_dsn)
    try:
        keyring = Keyring(generate_key())
        canaries = ["-7", "5", "4096"]
        pk_type = await _armed_table(conn, "bigint", canaries, keyring)
        qual = await conn.fetchval("SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polname = 'rowsec_r'")
        assert await TW.table_problems(conn, "public.t", pk_type, "int8", canaries, qual) == []
        assert await TW.problems(conn, keyring) == []
        assert await TW.problems(conn, Keyring(generate_key())) == ["detection_key_stale"]
        altered = qual.replace("8191", "0")
        assert "detection_filter_altered" in await TW.table_problems(conn, "public.t", pk_type, "int8", canaries, altered)
        assert "detection_policy_altered" in await TW.table_problems(conn, "public.t", pk_type, "int8", canaries,
                                                                     qual.replace("row_visible", "other"))
        await conn.execute("UPDATE rowsec.state SET bm = decode(repeat('00', length(bm)), 'hex')")
        assert await TW.table_problems(conn, "public.t", pk_type, "int8", canaries, qual) == ["detection_filter_altered"]
        await conn.execute("DELETE FROM rowsec.members WHERE k = '5'")
        assert "detection_policy_misses_1_canaries" in await TW.table_problems(conn, "public.t", pk_type, "int8", canaries, qual)
        await conn.execute("GRANT USAGE ON SCHEMA rowsec TO PUBLIC")
        assert "detection_schema_public" in await TW.problems(conn, keyring)
    finally:
        await conn.close()


@pytest.mark.parametrize("style", ["setting", "membership"])
async def test_a_multi_tenant_table_keeps_its_semantics(pg_server: PostgresServer, target_dsn: str, style: str) -> None:
    """A table with its own row-level security (tenant isolation by a setting, or by a membership
    subquery, plus an insert check): after the tripwire is added as the seeder adds it (a RESTRICTIVE
    policy only; the table's own policies untouched), every tenant sees exactly the rows it saw
    before, inserts are checked as before, and a canary logs a read only when it is returned: another
    tenant's scan of the table does not touch it."""
    db = urlparse(target_dsn).path.lstrip("/")
    reader = f"tenant_{db}"[:63]
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute("CREATE TABLE t (id bigint PRIMARY KEY, tenant text NOT NULL, v text NOT NULL)")
        await conn.execute("INSERT INTO t SELECT g, (ARRAY['a', 'b', 'c'])[1 + g % 3], 'x' FROM generate_series(1, 3000) g")
        await conn.execute("CREATE TABLE memberships (member text NOT NULL, tenant text NOT NULL)")
        await conn.execute(f"CREATE ROLE \"{reader}\"; GRANT SELECT, INSERT ON t TO \"{reader}\"; GRANT SELECT ON memberships TO \"{reader}\"")
        await conn.execute(f"INSERT INTO memberships VALUES ('{reader}', 'a')")
        visible = ("tenant = current_setting('app.tenant', true)" if style == "setting" else
                   "tenant IN (SELECT m.tenant FROM memberships m WHERE m.member = current_user)")
        await conn.execute(f"CREATE POLICY tenant_read ON t AS PERMISSIVE FOR SELECT TO PUBLIC USING ({visible})")
        await conn.execute(f"CREATE POLICY tenant_write ON t AS PERMISSIVE FOR INSERT TO PUBLIC WITH CHECK ({visible})")
        await conn.execute("ALTER TABLE t ENABLE ROW LEVEL SECURITY")

        async def as_tenant() -> tuple[list[int], str]:
            await conn.execute(f"SET ROLE \"{reader}\"; SET app.tenant = 'a'")
            try:
                ids = [r[0] for r in await conn.fetch("SELECT id FROM t WHERE v LIKE 'x%' ORDER BY id")]
                try:
                    async with conn.transaction():
                        await conn.execute("INSERT INTO t VALUES (9999, 'b', 'x')")
                    inserted = "allowed"
                except asyncpg.InsufficientPrivilegeError:
                    inserted = "refused"
                return ids, inserted
            finally:
                await conn.execute("RESET ROLE; RESET app.tenant")

        before = await as_tenant()
        assert before[1] == "refused" and len(before[0]) == 1000
        canaries = ["3", "4", "5", "6"]  # tenant a: 3 and 6; b: 4; c: 5
        for stmt in TW.setup_sql():
            await conn.execute(stmt)
        await TW.install_line_key(conn, Keyring(generate_key()))
        bits = await TW.set_members(conn, "public.t", "bigint", "int8", canaries)
        guard = visibility_guard((await introspect(conn, "public.t")).policies, (TW.policy, TW.permissive))
        assert guard is not None
        await conn.execute(TW.policy_sql("public.t", "public.t", "id", "int8", bits, guard))
        tail = JsonLog(pg_server)
        tail.mark()
        assert await as_tenant() == before
        hits = await tail.wait_hits(db, minimum=2)
        assert sorted(h["k"] for h in hits) == ["3", "6"]
    finally:
        await conn.execute(f'RESET ROLE; DROP TABLE IF EXISTS t, memberships; DROP OWNED BY "{reader}"; DROP ROLE IF EXISTS "{reader}"')
        await conn.close()
