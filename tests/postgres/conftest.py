"""Fixtures of the PostgreSQL family's tests: a seeded shop with a running listener tailing the real
server's jsonlog, and a reader role."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from testkit import MakeConfig

from canary.crypto import Keyring
from canary.drills.shop import create_shop
from canary.listener import Listener
from canary.runtime import open_runtime
from canary.seeding.postgres import PostgresSeeder
from canary.store import ControlStore
from canary.store.embedded import PostgresServer


@pytest.fixture
async def deployed(pg_server: PostgresServer, target_dsn: str, store: ControlStore, make_config: MakeConfig, keyring: Keyring) -> AsyncIterator[dict[str, Any]]:
    """A shop with 3,000 customers and 10 canaries, a reader role, and a running listener."""
    shop = await asyncpg.connect(target_dsn)
    await create_shop(shop, 3000)
    role = f"reader_{int(time.time() * 1000) % 10_000_000}"
    await shop.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'")
    await shop.execute(f"GRANT SELECT ON customers, orders TO {role}")
    await shop.close()
    cfg = make_config(
        datastores=[{"name": "shop", "dsn": target_dsn, "node": "primary", "jsonlog_dir": str(pg_server.log_dir),
                     "tables": [{"table": "public.customers", "count": 10}]}],
        listener={"jsonlog_poll": "50ms"},
        sinks=[{"name": "log", "type": "stdout"}],
    )
    runtime = await open_runtime(cfg, keyring=keyring, store=store)
    seeder = PostgresSeeder(cfg.datastore("shop"), runtime.registry, keyring)
    await seeder.apply()
    listener = Listener(runtime)
    await listener.start()
    reader_dsn = pg_server.dsn(target_dsn.rsplit("/", 1)[1], user=role, password=f"pw-{role}")
    reader = await asyncpg.connect(reader_dsn, server_settings={"application_name": "etl-job"})
    yield {"runtime": runtime, "reader": reader, "role": role, "seeder": seeder, "reader_dsn": reader_dsn}
    await reader.close()
    await listener.stop()
