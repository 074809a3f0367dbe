"""The detection policy's form: bitmap pre-check for integer keys, exact check, tamper check."""

from __future__ import annotations

from urllib.parse import urlparse

import asyncpg
import pytest
from seeder_helpers import JsonLog

from canary.crypto import Keyring, generate_key
from canary.postgres.read import function_sql, install_key, key_table_sql
from canary.seeding.catalog import introspect
from canary.seeding.postgres import _prefilter_intact, policy_sql, prefilter
from canary.store.embedded import PostgresServer


def test_prefilter_sets_exactly_the_canary_bits_as_get_bit_reads_them() -> None:
    """Bit ``key & (bits - 1)`` (byte n // 8, bit n % 8) is set for each key, negative keys included,
    and nothing else; pending sequence keys ("") set no bit."""
    bits, bitmap = prefilter(["5", "-7", "8197", ""])
    assert bits == 8192 and len(bitmap) == 1024
    on = {n for n in range(bits) if bitmap[n // 8] >> (n % 8) & 1}
    assert on == {5, -7 & 8191}  # 8197 & 8191 == 5
    assert prefilter([str(k) for k in range(1000)])[0] == 1 << 18


def test_tampered_prefilter_is_recognised() -> None:
    """The catalog rendering of an intact bitmap passes; a cleared bit, another mask or comparison fails."""
    keys = ["-7", "5", "1000"]
    bits, bitmap = prefilter(keys)
    qual = f"((get_bit('\\x{bitmap.hex()}'::bytea, (id & ({bits - 1})::bigint)) <> 1) OR CASE WHEN ..."
    assert _prefilter_intact(qual, keys)
    assert not _prefilter_intact(qual.replace(bitmap.hex(), "00" * len(bitmap)), keys)
    assert not _prefilter_intact(qual.replace(f"({bits - 1})", "(0)"), keys)
    assert not _prefilter_intact(qual.replace("<> 1", "<> 2"), keys)


@pytest.mark.parametrize("pk_type", ["bigint", "integer", "smallint", "text"])
async def test_policy_fires_for_canaries_only(pg_server: PostgresServer, target_dsn: str, pk_type: str) -> None:
    """Every canary key (negative too) logs exactly one CY001 line with su/db/an; real rows that share
    a canary's bitmap bit (same low bits) stay silent, and every row is still returned."""
    db = urlparse(target_dsn).path.lstrip("/")
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute("CREATE SCHEMA rowsec_audit")
        for stmt in key_table_sql("rowsec_audit"):
            await conn.execute(stmt)
        await install_key(conn, "rowsec_audit", "shop", Keyring(generate_key()))
        await conn.execute(function_sql("rowsec_audit", "shop"))
        await conn.execute(f"CREATE TABLE t (id {pk_type} PRIMARY KEY, v text NOT NULL)")
        await conn.execute(f"INSERT INTO t SELECT g::text::{pk_type}, 'x' FROM generate_series(-100, 20000) g")
        info = await introspect(conn, "public.t")
        canaries = ["-7", "5", "4096"]
        await conn.execute(policy_sql(info, "rowsec_audit", info.column("id").type, canaries))
        await conn.execute("ALTER TABLE t ENABLE ROW LEVEL SECURITY; ALTER TABLE t FORCE ROW LEVEL SECURITY")
        await conn.execute("CREATE POLICY p ON t AS PERMISSIVE FOR ALL TO PUBLIC USING (true)")
        reader = f"reader_{db}"[:63]
        await conn.execute(f'CREATE ROLE "{reader}"; GRANT SELECT ON t TO "{reader}"; GRANT USAGE ON SCHEMA rowsec_audit TO "{reader}"')
        await conn.execute(f"SET application_name = 'etl'; SET ROLE \"{reader}\"")
        tail = JsonLog(pg_server)
        tail.mark()
        # real rows whose low 13 bits equal a canary's (the bitmap has 8,192 bits) are logged first, if at all
        assert await conn.fetchval(f"SELECT count(*) FROM t WHERE id = ANY('{{8197,8185,12288}}'::{pk_type}[]) AND v LIKE 'x%'") == 3
        assert await conn.fetchval("SELECT count(*) FROM t WHERE v LIKE 'x%'") == 20101
        hits = await tail.wait_hits(db, minimum=3)
        assert sorted(h["k"] for h in hits) == sorted(canaries)
        assert all(h["u"] == reader and h["su"] == "postgres" and h["db"] == db and h["an"] == "etl" for h in hits)
        await conn.execute(f'RESET ROLE; DROP OWNED BY "{reader}"; DROP ROLE "{reader}"')
    finally:
        await conn.close()
