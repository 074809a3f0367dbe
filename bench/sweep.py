"""The copy sweep on a 1,000,000-row copy of a customers table: throughput, I/O, budget and prefilter.

On its own PostgreSQL: 100 registered canary customers (e-mail + phone each) and, in another schema,
``analytics.customers_copy`` (id, full_name, email, phone, city, address; realistic real values) with
5 canary values planted at random rows (3 e-mails, 2 phones in the table's ``555-010-0042`` shape).
Measured, side by side in one run:

(a) unbounded sweeps, the prefilter on and off alternately (after a warm-up, so both read from the
    same cache): rows/s, heap blocks, buffer bytes the sweep measured in its own transactions
    (``pg_stat_get_xact_blocks_fetched``) against ``pg_statio_user_tables`` (heap_blks_read +
    heap_blks_hit deltas), HMACs per row, and the rows/s ratio prefilter on / off;
(b) runs with a budget smaller than the table (a fifth of its bytes, and a time cap): seconds and
    bytes per run against the budget, how many runs until every planted value was found, and whether
    a copy made after the first budgeted run is raised by the second (new relations first);
(c) a run bound by time (1 s) and one throttled to 8 MiB/s for 3 s.

    python bench/sweep.py [--rows 1000000] [--reps 2] [--budget-fraction 0.2] [--max-seconds 5] [--shared-buffers 32MB]

shared_buffers defaults to 32MB, smaller than the 118 MiB copy, so most pages come from outside
PostgreSQL's cache (the OS page cache stays warm: "read" means "not in shared buffers").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg

from canary.config import from_mapping
from canary.crypto import Keyring, generate_key
from canary.health.sweep import Budget, CopySweep, SweepSummary
from canary.runtime import Runtime, close_runtime, open_runtime
from canary.store.embedded import PostgresServer
from canary.store.registry import NewCanary, location_key

CANARIES = 100
TABLE = "analytics.customers_copy"

COPY_DDL = """
CREATE SCHEMA analytics;
CREATE TEMP TABLE plant (g bigint PRIMARY KEY, email text, phone text);
"""

COPY_ROWS = """
CREATE TABLE analytics.customers_copy AS
SELECT g AS id,
       (ARRAY['Ana','Ben','Chloe','Dev','Eun-ji','Farah','Goro','Hana'])[1 + g % 8] || ' '
           || (ARRAY['Kim','Lee','Park','Smith','Garcia','Tanaka','Novak'])[1 + g % 7] AS full_name,
       coalesce(p.email, 'user' || g || '.' || (g * 7919 % 100000) || '@example.net') AS email,
       coalesce(p.phone, '555-' || lpad((g * 37 % 1000)::text, 3, '0') || '-' || lpad((g % 10000)::text, 4, '0')) AS phone,
       (ARRAY['Springfield','Riverside','Franklin','Greenville','Bristol','Fairview'])[1 + g % 6] AS city,
       (g % 9000 + 1) || ' ' || (ARRAY['Main St','Oak Ave','Maple Rd','Cedar Ln'])[1 + g % 4] || ', Apt ' || (g % 40) AS address
FROM generate_series(1, $1::bigint) g LEFT JOIN plant p USING (g)
"""

STATIO = ("SELECT coalesce(sum(heap_blks_read + heap_blks_hit), 0)::bigint FROM pg_statio_user_tables"
          " WHERE schemaname = 'analytics'")


async def reset(rt: Runtime) -> None:
    """Forget what the sweep read (each measured run reads the whole table)."""
    await rt.pool.execute("DELETE FROM sweep_relations")
    await rt.pool.execute("DELETE FROM checkpoints WHERE source LIKE 'sweep:%'")


async def statio(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_stat_clear_snapshot()")
        return int(await conn.fetchval(STATIO))
    finally:
        await conn.close()


async def sweep(rt: Runtime, budget: Budget, prefilter: bool = True) -> tuple[SweepSummary, set[str], float]:
    """One sweep: its summary, the uids of the canaries it raised in the big copy, its wall time."""
    s = CopySweep(rt, budget=budget, prefilter=prefilter)
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        events = await s.sweep_once()
    took = time.perf_counter() - t
    uids = {u for e in events if e.evidence.get("object") == TABLE for u in e.evidence.get("canaries", [])}
    return s.summaries[0], uids, took


async def main(rows: int, reps: int, fraction: float, max_seconds: float, shared_buffers: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="canary-bench-sweep-"))
    server = PostgresServer(tmp / "pg", settings={"shared_buffers": shared_buffers})
    await asyncio.to_thread(server.start)
    rng = random.Random(7)
    try:
        admin = await asyncpg.connect(server.dsn())
        await admin.execute("CREATE DATABASE control")
        await admin.execute("CREATE DATABASE shop")
        await admin.close()
        cfg = from_mapping({
            "canary": {"data_dir": str(tmp / "data"), "log_level": "warning"}, "control": {"dsn": server.dsn("control")},
            "datastores": [{"name": "shop", "dsn": server.dsn("shop")}], "coverage": {"sweep": True},
        })
        keyring = Keyring(generate_key())
        with contextlib.redirect_stdout(io.StringIO()):
            rt = await open_runtime(cfg, keyring=keyring)
        values = [(f"canary.{i}.{rng.randrange(10**6)}@mail-canary.example", f"+1555010{i:04d}") for i in range(CANARIES)]
        async with rt.pool.acquire() as conn:
            ids = await rt.registry.add(conn, [
                NewCanary(kind="customer", datastore="shop", label="shop/public.customers",
                          location={"target": "public.customers", "pk": str(i)},
                          lookup=location_key("shop", "public.customers", i), values=[("email", e), ("phone", p)])
                for i, (e, p) in enumerate(values)], None)
        uid_of = dict(zip(range(CANARIES), (u for _, u in ids)))
        picks = rng.sample(range(CANARIES), 5)
        positions = sorted(rng.sample(range(1, rows + 1), 5))
        plant = [(g, values[c][0] if k < 3 else None, f"555-010-{c:04d}" if k >= 3 else None)
                 for k, (g, c) in enumerate(zip(positions, picks))]
        planted = {uid_of[c] for c in picks}

        shop_dsn = server.dsn("shop")
        conn = await asyncpg.connect(shop_dsn)
        t = time.perf_counter()
        await conn.execute(COPY_DDL)
        await conn.executemany("INSERT INTO plant VALUES ($1, $2, $3)", plant)
        await conn.execute(COPY_ROWS, rows)
        await conn.execute(f"VACUUM ANALYZE {TABLE}")
        nblocks = await conn.fetchval(f"SELECT pg_relation_size('{TABLE}') / 8192")
        await conn.close()
        size = nblocks * 8192
        print(f"{TABLE}: {rows:,} rows, {nblocks:,} blocks ({size / 2**20:.0f} MiB), built in {time.perf_counter() - t:.1f}s; "
              f"{CANARIES} canaries registered, 5 values planted at rows {positions}")

        # (a) unbounded, prefilter on / off alternately
        unbounded = Budget(max_seconds=3600, max_bytes=1 << 50, blocks=1024)
        await reset(rt)
        await sweep(rt, unbounded)  # warm-up: caches, connections
        rates: dict[bool, list[float]] = {True: [], False: []}
        first: SweepSummary | None = None
        found_all = True
        for _ in range(reps):
            for pf in (True, False):
                await reset(rt)
                before = await statio(shop_dsn)
                summary, uids, took = await sweep(rt, unbounded, prefilter=pf)
                await asyncio.sleep(1.2)  # the sweep's sessions have closed: their statistics are flushed
                stat_blocks = await statio(shop_dsn) - before
                rates[pf].append(summary.rows / took)
                found_all &= uids == planted
                if pf and first is None:
                    first = summary
                print(f"  prefilter {'on ' if pf else 'off'}: {summary.rows:,} rows in {took:.2f}s = {summary.rows / took:,.0f} rows/s; "
                      f"heap blocks {summary.blocks:,}; measured {summary.bytes / 2**20:.1f} MiB touched "
                      f"({summary.bytes // 8192:,} blocks, {summary.bytes_read / 2**20:.1f} MiB not in shared buffers); "
                      f"pg_statio {stat_blocks:,} blocks; {summary.hashed / max(summary.rows, 1):.2f} HMAC/row; "
                      f"canaries found {len(uids & planted)}/5")
        on, off = statistics.median(rates[True]), statistics.median(rates[False])
        print(f"(a) unbounded: {on:,.0f} rows/s with the prefilter, {off:,.0f} without: ratio {on / off:.2f}x; "
              f"all planted values found: {found_all}")

        # (b) a budget smaller than the table, several runs; a new copy after the first run
        await reset(rt)
        await rt.pool.execute("DELETE FROM events")
        budget = Budget(max_seconds=max_seconds, max_bytes=int(size * fraction), blocks=1024,
                        max_bytes_per_second=0)
        print(f"(b) budget per run: {budget.max_bytes / 2**20:.1f} MiB ({fraction:.0%} of the table), {max_seconds:g} s")
        got: set[str] = set()
        new_copy_run = None
        run = 0
        while got != planted and run < 60:
            run += 1
            summary, uids, took = await sweep(rt, budget)
            got |= uids & planted
            objects = [h["object"] for h in summary.hits]
            if "analytics.late_export" in objects and new_copy_run is None:
                new_copy_run = run
            print(f"  run {run}: {took:.2f}s (budget {max_seconds:g}s), {summary.bytes / 2**20:.1f} MiB "
                  f"(budget {budget.max_bytes / 2**20:.1f}), {summary.rows:,} rows, stopped: {summary.stopped}, "
                  f"hits {objects}, planted found so far {len(got)}/5")
            assert summary.bytes <= budget.max_bytes and took <= max_seconds + 1.0
            if run == 1:
                conn = await asyncpg.connect(shop_dsn)
                await conn.execute(f"CREATE TABLE analytics.late_export AS SELECT * FROM {TABLE} WHERE id = ANY($1::bigint[])"
                                   " OR id % 1000 = 0", positions)
                await conn.close()
        print(f"(b) all planted values found after {run} budgeted runs: {got == planted}; "
              f"copy made after run 1 raised in run {new_copy_run} (new relations first)")

        # (c) a time budget, and the rate limit
        for label, b in (("time budget 1 s", Budget(max_seconds=1.0, max_bytes=1 << 50, blocks=1024)),
                         ("3 s at 8 MiB/s", Budget(max_seconds=3.0, max_bytes=1 << 50, blocks=1024,
                                                    max_bytes_per_second=8 * 2**20))):
            await reset(rt)
            summary, _, took = await sweep(rt, b)
            print(f"(c) {label}: stopped {summary.stopped} after {took:.2f}s (sweep's own clock {summary.seconds:.2f}s), "
                  f"{summary.bytes / 2**20:.1f} MiB, {summary.rows:,} rows")
        if first is not None:
            print(f"I/O measured by the sweep itself: {first.io_measured} (track_counts on)")
        await close_runtime(rt, grace=1)
    finally:
        await asyncio.to_thread(server.stop, "fast")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--budget-fraction", type=float, default=0.2)
    ap.add_argument("--max-seconds", type=float, default=5.0)
    ap.add_argument("--shared-buffers", default="32MB", help="smaller than the copy, so reads are reads")
    a = ap.parse_args()
    asyncio.run(main(a.rows, a.reps, a.budget_fraction, a.max_seconds, a.shared_buffers))
