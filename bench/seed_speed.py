"""How long seeding 10,000 canary customers (with their orders) takes, and retiring them again.

On its own embedded PostgreSQL: a ``canary.shop`` of 500,000 customers (about 2% of keys free, so the
canaries interleave) and ~1,000,000 orders; then ``PostgresSeeder.apply()`` for 10,000 canaries with
child rows, ``verify()`` and ``retire()``, each timed. Target: seeding under 30 s.

Usage: ``python bench/seed_speed.py [--customers 500000] [--canaries 10000]``
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import asyncpg
from distinguishability import admin_each

from canary.config import from_mapping
from canary.crypto import Keyring, generate_key
from canary.drills.shop import create_shop
from canary.seeding.postgres import PostgresSeeder
from canary.store import ControlStore
from canary.store.embedded import PostgresServer
from canary.store.registry import Registry


async def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=500_000)
    ap.add_argument("--canaries", type=int, default=10_000)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="canary-seedspeed-"))
    server = PostgresServer(tmp, settings={"shared_buffers": "256MB"})
    await asyncio.to_thread(server.start)
    try:
        await admin_each(server, 'CREATE DATABASE "{name}"', ("shop", "control"))
        conn = await asyncpg.connect(server.dsn("shop"))
        t0 = time.perf_counter()
        await create_shop(conn, args.customers)
        real = await conn.fetchval("SELECT count(*) FROM customers")
        orders = await conn.fetchval("SELECT count(*) FROM orders")
        print(f"shop: {real:,} customers, {orders:,} orders built in {time.perf_counter() - t0:.1f}s")
        cfg = from_mapping({
            "control": {"dsn": server.dsn("control")},
            "seeding": {"email_domains": ["hanmir-mail.co.kr", "post.dasom.kr"], "phone_numbers": ["+821055500000-+821055519999"]},
            "datastores": [{"name": "shop", "dsn": server.dsn("shop"), "tables": [{"table": "public.customers", "count": args.canaries}]}],
        })
        store = ControlStore(cfg)
        await store.open()
        try:
            seeder = PostgresSeeder.from_config(cfg, "shop", Registry(store.pool, Keyring(generate_key())))
            t = time.perf_counter()
            result = await seeder.apply()
            seeding = time.perf_counter() - t
            children = sum(result.child_rows.values())
            print(f"seed:   {sum(result.added.values()):,} canaries + {children:,} child rows in {seeding:.1f}s "
                  f"(target < 30 s) {'OK' if seeding < 30 else 'MISSED'}")
            for w in result.warnings:
                print(f"        warning: {w}")
            t = time.perf_counter()
            report = await seeder.verify()
            print(f"verify: {report.checked:,} canaries checked in {time.perf_counter() - t:.1f}s, {len(report.findings)} findings")
            t = time.perf_counter()
            retired = await seeder.retire()
            print(f"retire: {sum(retired.removed.values()):,} canaries + {sum(retired.child_rows.values()):,} child rows "
                  f"removed in {time.perf_counter() - t:.1f}s")
        finally:
            await store.close()
        after = await conn.fetchval("SELECT count(*) FROM customers")
        print(f"customers after retire: {after:,} (before: {real:,})")
        await conn.close()
    finally:
        await asyncio.to_thread(server.destroy)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
