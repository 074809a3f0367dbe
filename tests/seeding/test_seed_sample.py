"""The seeder's sample of real rows is the same for the same seeder randomness (PostgresSeeder._sample):
``plan`` shows the rows ``apply`` writes and a bench with a fixed seed repeats, even on a table large
enough for PostgreSQL to synchronize sequential scans, where a scan starts wherever another session's
scan of the table is."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from testkit import MakeConfig, fresh_database

from canary.crypto import Keyring
from canary.seeding.postgres import PostgresSeeder
from canary.store import ControlStore
from canary.store.embedded import PostgresServer
from canary.store.registry import Registry

ROWS = 30_000
TABLE = """
CREATE TABLE public.customers (id bigserial PRIMARY KEY, full_name text NOT NULL, email text NOT NULL UNIQUE, phone text,
  address text, city text, postal_code text, created_at timestamptz NOT NULL);
INSERT INTO public.customers (id, full_name, email, phone, address, city, postal_code, created_at)
SELECT g, (ARRAY['Kim','Lee','Park','Choi','Jung'])[1 + g % 5] || ' ' || (ARRAY['Minsu','Jiwoo','Seoyeon','Hyunwoo','Jisoo','Yuna'])[1 + g % 4 + g % 3],
  'user' || g || '@example.com', '010-' || lpad((g * 7919 % 10000)::text, 4, '0') || '-' || lpad((g % 9973)::text, 4, '0'),
  (g % 700) || ' ' || (ARRAY['Oak','Pine','Maple','Cedar','Elm'])[1 + g % 5] || ' St', 'City ' || (g % 41),
  lpad((g % 997)::text, 5, '0'), timestamptz '2020-01-01' + g * interval '37 minutes'
FROM generate_series(1, ROWS) g WHERE g % 11 <> 4;
ANALYZE public.customers;
""".replace("ROWS", str(ROWS))


@pytest.fixture(scope="module")
def small_buffers() -> Iterator[PostgresServer]:
    """A server with 1 MB of shared buffers: a table of a few MB is "large" (over a quarter of them),
    so its sequential scans are synchronized with each other's."""
    tmp = Path(tempfile.mkdtemp(prefix="canary-syncscan-"))
    server = PostgresServer(tmp, settings={"shared_buffers": "1MB", "synchronize_seqscans": True})
    server.start()
    yield server
    server.destroy()


@pytest.fixture
async def big_table(small_buffers: PostgresServer) -> AsyncIterator[str]:
    async with fresh_database(small_buffers, "syncscan") as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(TABLE)
            pages = await conn.fetchval("SELECT relpages FROM pg_class WHERE oid = 'public.customers'::regclass")
            buffers = await conn.fetchval("SELECT setting::int FROM pg_settings WHERE name = 'shared_buffers'")
            assert pages > buffers // 4  # large enough for synchronized scans
        finally:
            await conn.close()
        yield dsn


async def _rows(seeder: PostgresSeeder) -> list[dict[str, str | None]]:
    plan = await seeder.plan()
    return [dict(r.values) for r in plan.targets[0].rows]


async def test_plan_with_a_fixed_seed_repeats_while_other_scans_of_the_table_run(
        big_table: str, make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """Plans of the same seed show the same rows, though between them another session's scan of the
    table stopped part-way (where the next synchronized scan would start): the sample is ordered by a
    keyed hash of the rows' keys, and the seeder's own scans start at the table's beginning."""
    cfg = make_config(datastores=[{"name": "shop", "dsn": big_table, "tables": [{"table": "public.customers", "count": 6}]}])
    first = await _rows(PostgresSeeder(cfg.datastores[0], Registry(store.pool, keyring), seed=11))
    other = await asyncpg.connect(big_table)
    try:
        seen = []
        for stop in (ROWS // 3, 2 * ROWS // 3):
            async with other.transaction():
                await other.execute("DECLARE part NO SCROLL CURSOR FOR SELECT * FROM public.customers")
                await other.execute(f"FETCH {stop} FROM part")
                seen.append(await _rows(PostgresSeeder(cfg.datastores[0], Registry(store.pool, keyring), seed=11)))
    finally:
        await other.close()
    assert len(first) == 6
    assert seen == [first, first]
    again = await _rows(PostgresSeeder(cfg.datastores[0], Registry(store.pool, keyring), seed=12))
    assert again != first  # another seed, another sample and other rows
