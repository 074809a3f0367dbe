"""``canary seed`` moves a deployment of canary 0.x (keys in the open: a policy listing them, a touch
function every role may call, a schema with USAGE for PUBLIC) to the tripwire in one transaction;
verify understands the result and retire still leaves the table byte-identical."""

from __future__ import annotations

import asyncpg
from seeder_helpers import JsonLog, Shop, checksum
from testkit import MakeConfig

from canary.crypto import Keyring
from canary.postgres.sql import array_literal, literal
from canary.seeding.postgres import PostgresSeeder
from canary.store import ControlStore
from canary.store.embedded import PostgresServer
from canary.store.registry import Registry

COUNT = 8


def _seeder(make_config: MakeConfig, store: ControlStore, keyring: Keyring, dsn: str, **names: str) -> PostgresSeeder:
    cfg = make_config(datastores=[{"name": "shop", "dsn": dsn, **names, "tables": [{"table": "public.customers", "count": COUNT}]}])
    return PostgresSeeder(cfg.datastores[0], Registry(store.pool, keyring), seed=11)


async def _make_legacy(dsn: str, keys: list[str]) -> None:
    """Turn a fresh install under the old names into the 0.x form: the open policy and public schema."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP POLICY rowsec_audit_r ON public.customers")
        arr = literal(array_literal(keys))
        await conn.execute(
            "CREATE POLICY rowsec_audit_r ON public.customers AS RESTRICTIVE FOR SELECT TO PUBLIC USING ("
            f"NOT (id = ANY({arr}::bigint[])) OR rowsec_audit.row_access('public.customers', id::text, current_user::text))")
        await conn.execute("GRANT USAGE ON SCHEMA rowsec_audit TO PUBLIC")
    finally:
        await conn.close()


async def test_seed_upgrades_an_open_deployment_to_the_tripwire(shop: Shop, make_config: MakeConfig, store: ControlStore,
                                                                keyring: Keyring, pg_server: PostgresServer) -> None:
    before = await checksum(shop.dsn)
    old = _seeder(make_config, store, keyring, shop.dsn, detection_schema="rowsec_audit", detection_function="row_access")
    await old.apply()
    keys = sorted(str(r.location["pk"]) for r in await old.registry.active("shop"))
    await _make_legacy(shop.dsn, keys)
    new = _seeder(make_config, store, keyring, shop.dsn)
    assert {f.problem for f in (await new.verify()).findings} >= {"detection_policy_missing"}
    plan = await new.plan()
    assert plan.targets[0].statements and not any(k in " ".join(plan.targets[0].statements) for k in keys[:3])
    result = await new.apply()
    assert result.added == {"public.customers": 0}
    report = await new.verify()
    assert report.ok, report.findings
    conn = await asyncpg.connect(shop.dsn)
    try:
        policies = sorted(r["polname"] for r in await conn.fetch("SELECT polname FROM pg_policy WHERE polrelid = 'public.customers'::regclass"))
        assert policies == ["rowsec_p", "rowsec_r"]
        assert await conn.fetchval("SELECT count(*) FROM pg_proc WHERE proname = 'row_access'") == 0
        qual = await conn.fetchval("SELECT pg_get_expr(polqual, polrelid) FROM pg_policy WHERE polname = 'rowsec_r'")
        assert not any(k in qual for k in keys if len(k) > 3)
    finally:
        await conn.close()
    # a read by an ordinary role still fires, for exactly the canaries
    reader = await asyncpg.connect(shop.reader_dsn)
    log = JsonLog(pg_server)
    log.mark()
    try:
        await reader.fetch("SELECT * FROM customers")
        hits = await log.wait_hits(shop.db, minimum=COUNT)
    finally:
        await reader.close()
    assert sorted(h["k"] for h in hits) == keys
    await new.retire()
    assert await checksum(shop.dsn) == before
