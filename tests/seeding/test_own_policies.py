"""A table with its own row-level security keeps it, and canary's function runs only for rows those
policies may return: a tenant's scan does not log another tenant's canaries, even when the table's
policy is a subquery that PostgreSQL evaluates after canary's. When the table's policies change,
verify says so and ``canary seed`` re-arms."""

from __future__ import annotations

import asyncpg
from seeder_helpers import JsonLog, Shop
from testkit import MakeConfig

from canary.crypto import Keyring
from canary.seeding.postgres import PostgresSeeder
from canary.store import ControlStore
from canary.store.embedded import PostgresServer
from canary.store.registry import Registry


async def _scan(shop: Shop) -> int:
    reader = await asyncpg.connect(shop.reader_dsn)
    try:
        return int(await reader.fetchval("SELECT count(*) FROM public.customers WHERE email LIKE '%@%'"))
    finally:
        await reader.close()


async def test_own_policies_keep_their_rows_and_spare_hidden_canaries(
        shop: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring, pg_server: PostgresServer) -> None:
    admin = await asyncpg.connect(shop.dsn)
    try:
        await admin.execute("CREATE POLICY even_rows ON public.customers AS PERMISSIVE FOR SELECT TO PUBLIC "
                            "USING (id % 2 = 0 AND id NOT IN (SELECT 0))")  # a subquery: evaluated after canary's
        await admin.execute("ALTER TABLE public.customers ENABLE ROW LEVEL SECURITY")
    finally:
        await admin.close()
    visible_before = await _scan(shop)
    cfg = make_config(datastores=[{"name": "shop", "dsn": shop.dsn, "tables": [{"table": "public.customers", "count": 12}]}])
    seeder = PostgresSeeder(cfg.datastores[0], Registry(store.pool, keyring), seed=4)  # a seed whose canaries have even and odd keys
    await seeder.apply()
    assert (await seeder.verify()).ok
    keys = sorted(int(r.location["pk"]) for r in await seeder.registry.active("shop"))
    even = [k for k in keys if k % 2 == 0]
    assert even and len(even) < len(keys), keys
    tail = JsonLog(pg_server)
    tail.mark()
    assert await _scan(shop) == visible_before + len(even)
    hits = await tail.wait_hits(shop.db, minimum=len(even))
    assert sorted(int(h["k"]) for h in hits) == even

    admin = await asyncpg.connect(shop.dsn)
    try:
        await admin.execute("CREATE POLICY odd_rows ON public.customers AS PERMISSIVE FOR SELECT TO PUBLIC USING (id % 2 = 1)")
    finally:
        await admin.close()
    assert {f.problem for f in (await seeder.verify()).findings} == {"detection_guard_stale"}
    await seeder.apply()
    assert (await seeder.verify()).ok
    tail.mark()
    await _scan(shop)
    hits = await tail.wait_hits(shop.db, minimum=len(keys))
    assert sorted(int(h["k"]) for h in hits) == keys
    result = await seeder.retire()
    assert sum(result.removed.values()) == len(keys)
