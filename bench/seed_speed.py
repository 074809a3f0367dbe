"""Seeding speed on every table shape (issue 14): the three targets and peak memory in one run.

1. Every shape of ``seed_shapes.py`` (all-distinct values, all-equal values, long text, NULL-heavy
   columns, 60 columns, uuid and text keys), ``--rows`` (1,000,000; long text ``--long-rows``) rows, 100
   canaries each: the distinct table < 20 s, no shape over 30 s.
2. 10,000 canaries into the distinct table: < 60 s.
3. Memory bounded: 100 canaries into a distinct table of ``--big`` (10,000,000) rows (whole-table
   counts are skipped above ``COUNT_ALL_ROWS``; gaps and samples are read by the server); peak RSS printed.
4. With ``--customers``: the demo shop's customers (~2% of keys free) with ~2 orders each, 10,000
   canaries with their child orders, then ``verify()`` and ``retire()`` (< 30 s for seeding).

Each seeding runs in its own process (``seed_shapes.py --one``), so its CPU seconds are its own and so is
its peak RSS as far as Linux tells (a child's ru_maxrss starts at its parent's: this script imports little
for that reason); the wall time on a shared machine also counts waiting for a core and the database's work.

Usage: ``python bench/seed_speed.py [--rows 1000000] [--canaries 100] [--many 10000] [--big 10000000]
[--customers 0] [--shapes distinct,equal,...]`` (``--big 0`` skips the 10 M-row table: it takes a few minutes
to build)
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import asyncpg
import seed_shapes

from canary.config import from_mapping
from canary.crypto import Keyring, generate_key
from canary.drills.shop import create_shop
from canary.seeding.postgres import PostgresSeeder
from canary.store import ControlStore
from canary.store.embedded import PostgresServer
from canary.store.registry import Registry


async def shop(customers: int, canaries: int) -> None:
    """The demo shop with child orders: seeding, verify and retire, each timed."""
    tmp = Path(tempfile.mkdtemp(prefix="canary-seedspeed-"))
    server = PostgresServer(tmp, settings={"shared_buffers": "256MB"})
    await asyncio.to_thread(server.start)
    try:
        admin = await asyncpg.connect(server.dsn())
        for name in ("shop", "control"):
            await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        conn = await asyncpg.connect(server.dsn("shop"))
        t0 = time.perf_counter()
        await create_shop(conn, customers)
        real = await conn.fetchval("SELECT count(*) FROM customers")
        orders = await conn.fetchval("SELECT count(*) FROM orders")
        print(f"shop: {real:,} customers, {orders:,} orders built in {time.perf_counter() - t0:.1f}s")
        cfg = from_mapping({
            "control": {"dsn": server.dsn("control")},
            "seeding": {"email_domains": ["hanmir-mail.co.kr", "post.dasom.kr"], "phone_numbers": ["+821055500000-+821055519999"]},
            "datastores": [{"name": "shop", "dsn": server.dsn("shop"), "tables": [{"table": "public.customers", "count": canaries}]}],
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


async def main(argv: Sequence[str] | None = None) -> None:
    ap = seed_shapes.parser()
    ap.description = __doc__.splitlines()[0]
    ap.add_argument("--big", type=int, default=10_000_000, help="rows of the memory check's distinct table (0: skip)")
    ap.add_argument("--customers", type=int, default=0, help="customers of the shop run with child orders (0: skip)")
    ap.add_argument("--shop-canaries", type=int, default=10_000)
    args = ap.parse_args(argv)
    shapes = args.shapes.split(",")
    runs = [(s, args.long_rows if s == "longtext" else args.rows, args.canaries) for s in shapes]
    roles = ["shape"] * len(runs)
    if args.many:
        runs.append(("distinct", args.rows, args.many))
        roles.append("many")
    if args.big:
        runs.append(("distinct", args.big, args.canaries))
        roles.append("big")
    results = await seed_shapes.run(args, runs)
    for r, role in zip(results, roles, strict=True):
        r["role"] = role

    def verdict(rs: list[dict[str, object]], limit: float) -> str:
        if not rs:
            return "not run"
        seconds = [float(str(r["seconds"])) if not r.get("failed") else float("inf") for r in rs]
        worst = max(range(len(rs)), key=lambda i: seconds[i])
        ok = all(t < limit for t in seconds)
        return f"{'met' if ok else 'NOT met'} (slowest: {rs[worst]['shape']} {seconds[worst]:.1f}s)"

    shaped = [r for r in results if r["role"] == "shape"]
    print()
    print(f"target: {args.canaries} canaries into the {args.rows:,}-row distinct table < 20 s: "
          f"{verdict([r for r in shaped if r['shape'] == 'distinct'], 20.0)}")
    print(f"target: {args.many:,} canaries < 60 s: {verdict([r for r in results if r['role'] == 'many'], 60.0)}")
    print(f"target: no shape over 30 s for {args.canaries} canaries: {verdict(shaped, 30.0)}")
    for r in results:
        if r["role"] == "big" and not r.get("failed"):
            print(f"memory: {int(str(r['rows'])):,}-row table, {r['canaries']} canaries: peak RSS {float(str(r['peak_rss_mb'])):.0f} MB "
                  f"in {float(str(r['seconds'])):.1f}s")
    if results:
        print(f"peak RSS over all runs: {max(float(str(r.get('peak_rss_mb', 0))) for r in results):.0f} MB")
    if args.customers:
        print()
        await shop(args.customers, args.shop_canaries)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
