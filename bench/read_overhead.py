"""Read overhead of canary's row-level-security detection, measured side by side.

On its own embedded PostgreSQL: two identical 1,000,000-row tables, ``plain`` (no detection) and
``guarded`` (the seeder's exact touch function and RESTRICTIVE policy). For each variant of the
policy the benchmark alternates between the two tables (interleaved repetitions, medians) and prints

* scan:   ``SELECT count(*) FROM t WHERE name LIKE '%zz%'`` (a full seq scan; the non-leakproof LIKE
          makes the policy run on every row, the worst case), as an ordinary login role;
* lookup: 20,000 primary-key lookups in one server-side plpgsql loop (no network: the strictest
          measure), and sequential prepared lookups from the client (what an application sees);
* planning time of one lookup (the planner estimates selectivity over every array element).

Usage: ``python bench/read_overhead.py [--rows 1000000] [--reps 7]``. Targets: scan <= 1.2x, lookup <= 1.05x.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from canary.pg.server import PostgresServer
from seeders.pg_catalog import introspect
from seeders.postgres import FUNCTION, function_sql, policy_sql
from seeders.sql import array_literal, literal

SCHEMA = "rowsec_audit"
LOOKUPS = 20_000


@dataclass(frozen=True)
class Variant:
    name: str
    canaries: int
    spread: str = "random"  # "random": keys anywhere; "cluster": keys in one narrow range
    range_check: bool = False  # cheap min/max comparison before the membership test
    cost: int | None = None  # function COST (default 100)
    parallel: bool = True
    mode: str = "any"  # "any": the seeder's policy; "bitmap": get_bit pre-check; "floor": RLS on, no restrictive policy


VARIANTS = (
    Variant("floor: RLS on, only the permissive policy", 0, mode="floor"),
    Variant("100 canaries, hashed ANY (default)", 100),
    Variant("8 canaries (linear ANY, < 9 elements)", 8),
    Variant("1,000 canaries, hashed ANY", 1000),
    Variant("10,000 canaries, hashed ANY", 10000),
    Variant("100 clustered canaries + range pre-check", 100, spread="cluster", range_check=True),
        Variant("100 canaries, function COST 1", 100, cost=1),
    Variant("100 canaries, no parallel workers", 100, parallel=False),
    Variant("100 canaries, bitmap pre-check", 100, mode="bitmap"),
)


async def build(server: PostgresServer, rows: int) -> tuple[str, str]:
    admin = await asyncpg.connect(server.dsn())
    try:
        await admin.execute("DROP DATABASE IF EXISTS bench")
        await admin.execute("CREATE DATABASE bench")
        await admin.execute("DROP ROLE IF EXISTS bench_reader")
        await admin.execute("CREATE ROLE bench_reader LOGIN PASSWORD 'bench-reader-pw'")
    finally:
        await admin.close()
    conn = await asyncpg.connect(server.dsn("bench"))
    try:
        for t in ("plain", "guarded"):
            await conn.execute(
                f"CREATE TABLE {t} (id bigint PRIMARY KEY, name text NOT NULL, email text NOT NULL, created_at timestamptz NOT NULL)"
            )
            await conn.execute(
                f"INSERT INTO {t} SELECT g, md5(g::text), 'user' || g || '@example.com', "
                f"timestamptz '2020-01-01' + g * interval '1 minute' FROM generate_series(1, $1) g", rows
            )
            await conn.execute(f"GRANT SELECT ON {t} TO bench_reader")
            await conn.execute(f"VACUUM ANALYZE {t}")
        await conn.execute(f"CREATE SCHEMA {SCHEMA}")
        await conn.execute(function_sql(SCHEMA, "bench"))
        await conn.execute(f"GRANT USAGE ON SCHEMA {SCHEMA} TO PUBLIC")
        await conn.execute("ALTER TABLE guarded ENABLE ROW LEVEL SECURITY")
        await conn.execute("ALTER TABLE guarded FORCE ROW LEVEL SECURITY")
        await conn.execute("CREATE POLICY p ON guarded AS PERMISSIVE FOR ALL TO PUBLIC USING (true) WITH CHECK (true)")
    finally:
        await conn.close()
    return server.dsn("bench"), server.dsn("bench", user="bench_reader", password="bench-reader-pw")


async def install(admin: asyncpg.Connection, v: Variant, rows: int) -> None:
    import random

    await admin.execute("DROP POLICY IF EXISTS rowsec_audit_r ON guarded")
    if v.mode == "floor":
        return
    rng = random.Random(v.canaries)
    if v.spread == "cluster":
        start = rng.randint(1, rows - v.canaries * 3)
        keys = sorted(rng.sample(range(start, start + v.canaries * 3), v.canaries))
    else:
        keys = sorted(rng.sample(range(1, rows + 1), v.canaries))
    await admin.execute(f"ALTER FUNCTION {SCHEMA}.{FUNCTION}(text, text, text) COST {v.cost or 100}")
    info = await introspect(admin, "public.guarded")
    sql = policy_sql(info, SCHEMA, "bigint", [str(k) for k in keys])
    if v.mode == "bitmap":
        bits = 1 << max(13, (v.canaries * 16 - 1).bit_length())
        bitmap = bytearray(bits // 8)
        for k in keys:
            r = k % bits
            bitmap[r // 8] |= 1 << (r % 8)
        arr = f"{literal(array_literal([str(k) for k in keys]))}::bigint[]"
        sql = sql.replace(
            f"USING (NOT (\"id\" = ANY({arr}))",
            f"USING (get_bit('\\x{bitmap.hex()}'::bytea, (((\"id\" % {bits}) + {bits}) % {bits})::int) = 0 "
            f"OR NOT (\"id\" = ANY({arr}))",
        )
    if v.range_check:
        lo, hi = keys[0], keys[-1]
        arr = f"{literal(array_literal([str(k) for k in keys]))}::bigint[]"
        sql = sql.replace(
            f"USING (NOT (\"id\" = ANY({arr}))",
            f"USING (\"id\" < {lo} OR \"id\" > {hi} OR NOT (\"id\" = ANY({arr}))",
        )
    await admin.execute(sql)


async def timed(conn: asyncpg.Connection, sql: str) -> float:
    t0 = time.perf_counter()
    await conn.execute(sql)
    return time.perf_counter() - t0


def lookup_sql(table: str, rows: int) -> str:
    return (
        f"DO $$ DECLARE r record; BEGIN FOR i IN 1..{LOOKUPS} LOOP "
        f"SELECT * INTO r FROM {table} WHERE id = 1 + (i::bigint * 48271) % {rows}; END LOOP; END $$"
    )


async def client_lookups(conn: asyncpg.Connection, table: str, rows: int, n: int) -> float:
    """n sequential prepared PK lookups from the client (what an application does)."""
    stmt = await conn.prepare(f"SELECT * FROM {table} WHERE id = $1")
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        await stmt.fetchrow(1 + (i * 48271) % rows)
    return time.perf_counter() - t0


async def planning_ms(conn: asyncpg.Connection, table: str) -> float:
    plan = await conn.fetch(f"EXPLAIN (ANALYZE, SUMMARY) SELECT * FROM {table} WHERE id = 4242")
    line = next(r[0] for r in plan if r[0].startswith("Planning Time"))
    return float(line.split(":")[1].split()[0])


@dataclass(frozen=True)
class Result:
    scan: tuple[float, float]
    loop: tuple[float, float]
    client: tuple[float, float]
    planning: tuple[float, float]


async def measure(reader: asyncpg.Connection, v: Variant, rows: int, reps: int, client_n: int) -> Result:
    await reader.execute("RESET max_parallel_workers_per_gather" if v.parallel else "SET max_parallel_workers_per_gather = 0")
    runs: dict[str, dict[str, list[float]]] = {k: {"plain": [], "guarded": []} for k in ("scan", "loop", "client", "plan")}
    for t in ("plain", "guarded"):  # warm-up
        await reader.execute(f"SELECT count(*) FROM {t} WHERE name LIKE '%zz%'")
        await reader.execute(lookup_sql(t, rows))
    for i in range(reps):
        order = ("plain", "guarded") if i % 2 == 0 else ("guarded", "plain")
        for t in order:
            runs["scan"][t].append(await timed(reader, f"SELECT count(*) FROM {t} WHERE name LIKE '%zz%'"))
            runs["loop"][t].append(await timed(reader, lookup_sql(t, rows)))
            runs["client"][t].append(await client_lookups(reader, t, rows, client_n))
            runs["plan"][t].append(await planning_ms(reader, t))

    def pair(k: str) -> tuple[float, float]:
        return statistics.median(runs[k]["plain"]), statistics.median(runs[k]["guarded"])

    return Result(pair("scan"), pair("loop"), pair("client"), pair("plan"))


async def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--client", type=int, default=5000, help="client-side prepared lookups per repetition")
    ap.add_argument("--only", type=int, nargs="*", help="variant numbers to run (default: all)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="canary-bench-"))
    # the default log_min_messages keeps LOG lines: every canary row read writes one jsonlog line
    server = PostgresServer(tmp, settings={"shared_buffers": "256MB", "max_parallel_workers_per_gather": 2})
    await asyncio.to_thread(server.start)
    try:
        t0 = time.perf_counter()
        admin_dsn, reader_dsn = await build(server, args.rows)
        print(f"built 2 x {args.rows:,} rows in {time.perf_counter() - t0:.1f}s; {args.reps} interleaved repetitions, medians")
        print(f"{'variant':<46} {'seq scan':>17} {'ratio':>6} | {'20k lookups, server loop':>24} {'ratio':>6} | "
              f"{f'{args.client:,} client lookups':>22} {'ratio':>6} | {'planning ms':>12}")
        admin = await asyncpg.connect(admin_dsn)
        reader = await asyncpg.connect(reader_dsn)
        try:
            for i, v in enumerate(VARIANTS):
                if args.only and i not in args.only:
                    continue
                await install(admin, v, args.rows)
                r = await measure(reader, v, args.rows, args.reps, args.client)
                cells = []
                for (plain, guarded), width in ((r.scan, 17), (r.loop, 24), (r.client, 22)):
                    cells.append(f"{f'{plain * 1000:.1f} / {guarded * 1000:.1f} ms':>{width}} {guarded / plain:>5.2f}x")
                print(f"{i:>2}. {v.name:<42} " + " | ".join(cells) + f" | {r.planning[0]:.2f} / {r.planning[1]:.2f}", flush=True)
        finally:
            await reader.close()
            await admin.close()
        print("targets: scan <= 1.20x, lookup <= 1.05x")
    finally:
        await asyncio.to_thread(server.destroy)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
