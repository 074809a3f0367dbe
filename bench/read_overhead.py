"""Read overhead of canary's row-level-security detection, measured side by side.

On its own PostgreSQL: two identical 1,000,000-row tables, ``plain`` (no detection) and ``guarded``
(the seeder's exact touch function and RESTRICTIVE policy, or an older/alternative form). For each
variant the benchmark alternates between the two tables (interleaved repetitions, caches warmed
first) and prints the median and interquartile range of the per-repetition ratios guarded / plain:

* scan:   ``SELECT count(*) FROM t WHERE name LIKE '%zz%'`` (a full seq scan; the non-leakproof LIKE
          makes the policy run on every row, the worst case), as an ordinary login role, with
          parallel workers off and with 2 workers (the same setting on both sides);
* loop:   20,000 primary-key lookups in one server-side plpgsql loop (cached plan, no network: the
          strictest measure);
* prep:   sequential prepared lookups from the client (generic plan; what an application sees);
* simple: lookups with literal keys over the simple protocol (a custom plan per query, so the
          policy's planning cost shows);
* planning time of one lookup, and the planner's row estimate of ``SELECT *`` (policy selectivity).

Before timing, EXPLAIN (ANALYZE, BUFFERS) of each side must show the same plan shape, the same
number of workers and the same buffers touched, so both sides do the same work.

Variants: the tripwire canary installs (keys hidden: a keyed Bloom filter read through InitPlans,
see :mod:`canary.postgres.tripwire`), the open form of canary 0.x (keys in the policy text, for
comparison) and two floors.

Usage: ``python bench/read_overhead.py [--rows 1000000] [--reps 15] [--bin-dir /usr/lib/postgresql/15/bin]``.
Targets (issue 12): scan <= 1.15x, prepared lookups <= 1.05x, server-side lookup loop <= 1.10x.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from canary.crypto import Keyring, generate_key
from canary.postgres.sql import literal
from canary.postgres.tripwire import Tripwire
from canary.store.embedded import PostgresServer

TW = Tripwire("bench", "rowsec", "row_visible", "rowsec_r", "rowsec_p")
TOUCH = "rowsec.row_visible('public.guarded', id::text, current_user::text)"
LOOKUPS = 20_000
SCAN = "SELECT count(*) FROM {t} WHERE name LIKE '%zz%'"


def open_form(keys: list[str]) -> str:
    """canary 0.x's policy, keys in the open (any reader could list them): a bitmap of ``id & mask``
    and ``CASE WHEN id = ANY(<keys>)``. Kept to price what hiding the keys costs."""
    bits = min(max(1 << (len(keys) * 256 - 1).bit_length(), 1 << 13), 1 << 20)
    bitmap = bytearray(bits // 8)
    for k in map(int, keys):
        bitmap[(k & (bits - 1)) // 8] |= 1 << ((k & (bits - 1)) % 8)
    arr = "{" + ",".join(keys) + "}"
    return (f"CREATE POLICY rowsec_r ON guarded AS RESTRICTIVE FOR SELECT TO PUBLIC USING ("
            f"get_bit({literal(chr(92) + 'x' + bitmap.hex())}::bytea, id & {bits - 1}) <> 1 "
            f"OR CASE WHEN id = ANY({literal(arr)}::bigint[]) THEN {TOUCH} ELSE true END)")


def comparison_only(keys: list[str]) -> str:
    """One built-in comparison and nothing else: the floor of any RESTRICTIVE policy at all (it cannot
    log, so it detects nothing). Anything that can detect costs more than this."""
    return "CREATE POLICY rowsec_r ON guarded AS RESTRICTIVE FOR SELECT TO PUBLIC USING (id <> 0)"


def function_only(keys: list[str]) -> str:
    """One comparison and the touch function: the floor of any policy that can call the function."""
    return f"CREATE POLICY rowsec_r ON guarded AS RESTRICTIVE FOR SELECT TO PUBLIC USING (id <> 0 OR {TOUCH})"


TRIPWIRE = "tripwire"


@dataclass(frozen=True)
class Variant:
    name: str
    canaries: int
    policy: Callable[[list[str]], str] | str | None  # None: RLS on, only the permissive policy


VARIANTS = (
    Variant("floor: RLS on, only the permissive policy", 0, None),
    Variant("floor: id <> 0 (a policy that cannot detect)", 0, comparison_only),
    Variant("floor: id <> 0 OR touch() (no membership)", 0, function_only),
    Variant("100, tripwire (keys hidden)", 100, TRIPWIRE),
    Variant("100, open form of canary 0.x (keys visible)", 100, open_form),
    Variant("8, tripwire", 8, TRIPWIRE),
    Variant("1,000, tripwire", 1000, TRIPWIRE),
    Variant("10,000, tripwire", 10000, TRIPWIRE),
    Variant("10,000, open form of canary 0.x", 10000, open_form),
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
        for stmt in TW.setup_sql():
            await conn.execute(stmt)
        await TW.install_line_key(conn, Keyring(generate_key()))
        await conn.execute("ALTER TABLE guarded ENABLE ROW LEVEL SECURITY")
        await conn.execute("ALTER TABLE guarded FORCE ROW LEVEL SECURITY")
        await conn.execute("CREATE POLICY p ON guarded AS PERMISSIVE FOR ALL TO PUBLIC USING (true) WITH CHECK (true)")
    finally:
        await conn.close()
    return server.dsn("bench"), server.dsn("bench", user="bench_reader", password="bench-reader-pw")


async def install(admin: asyncpg.Connection, v: Variant, rows: int) -> None:
    await admin.execute("DROP POLICY IF EXISTS rowsec_r ON guarded")
    if v.policy is None:
        return
    keys = [str(k) for k in sorted(random.Random(v.canaries).sample(range(1, rows + 1), v.canaries))]
    bits = await TW.set_members(admin, "public.guarded", "bigint", "int8", keys)  # the function logs members only
    await admin.execute(TW.policy_sql("guarded", "public.guarded", "id", "int8", bits) if v.policy == TRIPWIRE
                        else v.policy(keys))  # type: ignore[operator]


async def timed(conn: asyncpg.Connection, sql: str) -> float:
    t0 = time.perf_counter()
    await conn.execute(sql)
    return time.perf_counter() - t0


def lookup_loop(table: str, rows: int) -> str:
    return (
        f"DO $$ DECLARE r record; BEGIN FOR i IN 1..{LOOKUPS} LOOP "
        f"SELECT * INTO r FROM {table} WHERE id = 1 + (i::bigint * 48271) % {rows}; END LOOP; END $$"
    )


async def prepared_lookups(conn: asyncpg.Connection, table: str, rows: int, n: int) -> float:
    stmt = await conn.prepare(f"SELECT * FROM {table} WHERE id = $1")
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        await stmt.fetchrow(1 + (i * 48271) % rows)
    return time.perf_counter() - t0


async def simple_lookups(conn: asyncpg.Connection, table: str, rows: int, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        await conn.execute(f"SELECT * FROM {table} WHERE id = {1 + (i * 48271) % rows}")
    return time.perf_counter() - t0


async def planning_ms(conn: asyncpg.Connection, table: str) -> float:
    times = []
    for _ in range(5):
        plan = json.loads(await conn.fetchval(f"EXPLAIN (ANALYZE, SUMMARY, FORMAT JSON) SELECT * FROM {table} WHERE id = 4242"))
        times.append(plan[0]["Planning Time"])
    return statistics.median(times)


def _shape(node: dict[str, Any]) -> tuple[Any, ...]:
    """The plan's shape, without the policy's InitPlans (they read the tripwire's state once per query)."""
    return (node["Node Type"], node.get("Workers Planned"), node.get("Workers Launched"),
            tuple(_shape(c) for c in node.get("Plans", ()) if c.get("Parent Relationship") != "InitPlan"))


async def same_work(conn: asyncpg.Connection, sql: str, buffers: bool) -> str:
    """'' when both sides run the same plan shape, workers and (serial) buffers; else what differs."""
    out = {}
    for t in ("plain", "guarded"):
        plan = json.loads(await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql.format(t=t)}"))[0]
        top = plan["Plan"]
        out[t] = (_shape(top), top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0), "JIT" in plan)
    (ps, pb, pj), (gs, gb, gj) = out["plain"], out["guarded"]
    problems = []
    if ps != gs:
        problems.append("plan shape or workers differ")
    if buffers and abs(pb - gb) > max(8, pb // 100):
        problems.append(f"buffers {pb} vs {gb}")
    if pj != gj:
        problems.append(f"JIT {pj} vs {gj}")
    return "; ".join(problems)


async def estimate(conn: asyncpg.Connection, table: str) -> float:
    plan = json.loads(await conn.fetchval(f"EXPLAIN (FORMAT JSON) SELECT * FROM {table}"))
    return float(plan[0]["Plan"]["Plan Rows"])


def spread(ratios: Sequence[float]) -> str:
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return f"{statistics.median(ratios):.2f}x [{q1:.2f}-{q3:.2f}]"


async def ratios(reps: int, run: Callable[[str], Any]) -> tuple[list[float], float]:
    """Interleaved repetitions (the order alternates); per-repetition ratios and the plain median."""
    for t in ("plain", "guarded"):  # warm caches and plan caches
        await run(t)
    out, plain = [], []
    for i in range(reps):
        got = {}
        for t in (("plain", "guarded") if i % 2 == 0 else ("guarded", "plain")):
            got[t] = await run(t)
        out.append(got["guarded"] / got["plain"])
        plain.append(got["plain"])
    return out, statistics.median(plain)


async def measure(reader: asyncpg.Connection, v: Variant, rows: int, reps: int, n_client: int) -> list[str]:
    cells = []
    for workers in (0, 2):
        await reader.execute(f"SET max_parallel_workers_per_gather = {workers}")
        # with workers: a parallel plan on both sides (the policy's cost estimate must not decide it)
        await reader.execute(f"SET parallel_setup_cost = {0 if workers else 1000}")
        await reader.execute(SCAN.format(t="guarded"))
        differs = await same_work(reader, SCAN, buffers=not workers)
        r, base = await ratios(reps, lambda t: timed(reader, SCAN.format(t=t)))
        cells.append(f"{spread(r)} {base * 1000:.0f}ms" + (f" (!{differs})" if differs else ""))
    await reader.execute("SET max_parallel_workers_per_gather = 0")
    await reader.execute("RESET parallel_setup_cost")
    for run in (lambda t: timed(reader, lookup_loop(t, rows)),
                lambda t: prepared_lookups(reader, t, rows, n_client),
                lambda t: simple_lookups(reader, t, rows, n_client)):
        r, _ = await ratios(reps, run)
        cells.append(spread(r))
    plain_ms, guarded_ms = await planning_ms(reader, "plain"), await planning_ms(reader, "guarded")
    cells.append(f"{plain_ms:.3f}/{guarded_ms:.3f}")
    cells.append(f"{await estimate(reader, 'guarded') / await estimate(reader, 'plain'):.4f}")
    await reader.execute("RESET max_parallel_workers_per_gather")
    return cells


async def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--client", type=int, default=2000, help="client-side lookups per repetition")
    ap.add_argument("--bin-dir", type=Path, help="PostgreSQL bin directory (default: the embedded pgserver build)")
    ap.add_argument("--only", type=int, nargs="*", help="variant numbers to run (default: all)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="canary-bench-"))
    # the default log_min_messages keeps LOG lines: every canary row read writes one jsonlog line
    server = PostgresServer(tmp, bin_dir=args.bin_dir, settings={"shared_buffers": "256MB", "max_parallel_workers_per_gather": 2})
    await asyncio.to_thread(server.start)
    try:
        t0 = time.perf_counter()
        admin_dsn, reader_dsn = await build(server, args.rows)
        admin = await asyncpg.connect(admin_dsn)
        reader = await asyncpg.connect(reader_dsn)
        try:
            version = await reader.fetchval("SHOW server_version")
            jit = await reader.fetchval("SELECT pg_jit_available()")
            print(f"PostgreSQL {version} (JIT available: {jit}); 2 x {args.rows:,} rows built in {time.perf_counter() - t0:.1f}s; "
                  f"{args.reps} interleaved repetitions: median ratio guarded/plain [IQR], plain median time")
            header = ["scan, no workers", "scan, 2 workers", "20k lookups, loop", f"{args.client} prepared",
                      f"{args.client} simple", "planning ms", "rows est."]
            print(f"{'variant':<48}" + " | ".join(f"{h:>24}" for h in header), flush=True)
            for i, v in enumerate(VARIANTS):
                if args.only and i not in args.only:
                    continue
                await install(admin, v, args.rows)
                cells = await measure(reader, v, args.rows, args.reps, args.client)
                print(f"{i:>2}. {v.name:<44}" + " | ".join(f"{c:>24}" for c in cells), flush=True)
        finally:
            await reader.close()
            await admin.close()
        print("targets: scan <= 1.15x, prepared lookups <= 1.05x, lookup loop <= 1.10x")
    finally:
        await asyncio.to_thread(server.destroy)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
