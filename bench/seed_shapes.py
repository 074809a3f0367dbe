"""Seeding cost on tables of every shape: time and peak memory of ``PostgresSeeder.apply()``.

On its own embedded PostgreSQL, one table per shape, each seeded in its own process (so its peak RSS
is its own):

- ``distinct``: every name, e-mail, phone, address and postcode distinct;
- ``equal``: every text column holds one value for all rows;
- ``longtext``: a free-text column of 2-8 KB per row (fewer rows: ``--long-rows``);
- ``nullheavy``: nine columns in ten are NULL;
- ``wide``: 60 columns of mixed types;
- ``uuidkey`` / ``textkey``: a uuid or a text primary key.

Each gets ``--canaries`` canaries (100); the ``distinct`` table also gets ``--many`` (10,000) in a
second run. Targets (issue 14): 100 canaries into a 1 M-row table < 20 s, 10,000 < 60 s, no shape
over 30 s for 100 canaries; peak RSS and the seeding process's CPU seconds printed (the wall time on a
shared machine also counts waiting for a core; the database's own work is in the wall time only).

``bench/seed_speed.py`` runs these (and a 10 M-row table for memory) and prints the three targets.

Usage: ``python bench/seed_shapes.py [--rows 1000000] [--long-rows 100000] [--canaries 100] [--many 10000]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from canary.config import from_mapping
from canary.crypto import Keyring, generate_key
from canary.seeding.postgres import PostgresSeeder
from canary.store import ControlStore
from canary.store.embedded import PostgresServer
from canary.store.registry import Registry

_PEOPLE = """
CREATE TABLE t (id bigserial PRIMARY KEY, full_name text NOT NULL, email text NOT NULL UNIQUE, phone text,
  address text, city text, postal_code text, created_at timestamptz NOT NULL DEFAULT now());
"""

SHAPES: dict[str, tuple[str, str]] = {
    "distinct": (_PEOPLE, """
INSERT INTO t (id, full_name, email, phone, address, city, postal_code, created_at)
SELECT g, 'Person ' || g, 'p' || g || '@example.com', '555-' || lpad((g * 7919 % 10000)::text, 4, '0') || '-' || g,
  g || ' ' || (ARRAY['Oak','Pine','Maple','Cedar','Elm'])[1 + g % 5] || ' St Unit ' || g,
  'City ' || g, lpad(g::text, 7, '0'), timestamptz '2020-01-01' + g * interval '2 minutes'
FROM generate_series(1::bigint, $1::bigint) g WHERE g % 10 <> 3"""),
    "equal": (_PEOPLE, """
INSERT INTO t (id, full_name, email, phone, address, city, postal_code, created_at)
SELECT g, 'Kim Minsu', 'u' || g || '@example.com', '555-0100', '1 Main St', 'Springfield', '12345',
  timestamptz '2020-01-01' + g * interval '2 minutes'
FROM generate_series(1::bigint, $1::bigint) g WHERE g % 10 <> 3"""),
    "longtext": ("""
CREATE TABLE t (id bigserial PRIMARY KEY, full_name text NOT NULL, email text NOT NULL UNIQUE, notes text,
  created_at timestamptz NOT NULL);""", """
INSERT INTO t (id, full_name, email, notes, created_at)
SELECT g, 'Person ' || (g % 5000), 'p' || g || '@example.com',
  repeat('lorem ipsum dolor sit amet ' || (g % 97) || ' ', (80 + g % 220)::int), timestamptz '2020-01-01' + g * interval '5 minutes'
FROM generate_series(1::bigint, $1::bigint) g WHERE g % 10 <> 3"""),
    "nullheavy": (_PEOPLE, """
INSERT INTO t (id, full_name, email, phone, address, city, postal_code, created_at)
SELECT g, 'Person ' || (g % 20000), 'p' || g || '@example.com',
  CASE WHEN g % 10 = 0 THEN '555-' || lpad((g % 10000)::text, 4, '0') END,
  CASE WHEN g % 10 = 1 THEN g || ' Elm St' END, CASE WHEN g % 10 = 2 THEN 'City ' || (g % 300) END,
  CASE WHEN g % 10 = 4 THEN lpad((g % 99999)::text, 5, '0') END, timestamptz '2020-01-01' + g * interval '2 minutes'
FROM generate_series(1::bigint, $1::bigint) g WHERE g % 10 <> 3"""),
    "wide": ("CREATE TABLE t (id bigserial PRIMARY KEY, full_name text NOT NULL, email text NOT NULL UNIQUE, created_at timestamptz NOT NULL, "
             + ", ".join(f"c{i} {('text', 'integer', 'numeric(10,2)', 'boolean', 'date', 'varchar(40)')[i % 6]}" for i in range(56))
             + ");", """
INSERT INTO t SELECT g, 'Person ' || (g % 30000), 'p' || g || '@example.com', timestamptz '2020-01-01' + g * interval '2 minutes', """
             + ", ".join(("'v' || (g % 1000)", "(g % 7919)::int", "(g % 1000) / 7.0", "g % 2 = 0", "date '2000-01-01' + (g % 9000)::int",
                          "'x' || (g % 50)")[i % 6] for i in range(56)) + """
FROM generate_series(1::bigint, $1::bigint) g WHERE g % 10 <> 3"""),
    "uuidkey": ("""
CREATE TABLE t (id uuid PRIMARY KEY, full_name text NOT NULL, email text NOT NULL UNIQUE, phone text, city text,
  created_at timestamptz NOT NULL);""", """
INSERT INTO t SELECT md5(g::text)::uuid, 'Person ' || (g % 20000), 'p' || g || '@example.com',
  '555-' || lpad((g % 10000)::text, 4, '0'), 'City ' || (g % 300), timestamptz '2020-01-01' + g * interval '2 minutes'
FROM generate_series(1::bigint, $1::bigint) g"""),
    "textkey": ("""
CREATE TABLE t (id text PRIMARY KEY, full_name text NOT NULL, email text NOT NULL UNIQUE, phone text, city text,
  created_at timestamptz NOT NULL);""", """
INSERT INTO t SELECT 'C' || lpad(g::text, 9, '0'), 'Person ' || (g % 20000), 'p' || g || '@example.com',
  '555-' || lpad((g % 10000)::text, 4, '0'), 'City ' || (g % 300), timestamptz '2020-01-01' + g * interval '2 minutes'
FROM generate_series(1::bigint, $1::bigint) g"""),
}


async def one(dsn: str, control: str, count: int) -> None:
    """Seed ``count`` canaries into ``public.t`` (run in its own process; prints JSON)."""
    cfg = from_mapping({"control": {"dsn": control},
                        "datastores": [{"name": "bench", "dsn": dsn, "tables": [{"table": "public.t", "count": count}]}]})
    store = ControlStore(cfg)
    await store.open()
    try:
        t, cpu = time.perf_counter(), _cpu()
        result = await PostgresSeeder.from_config(cfg, "bench", Registry(store.pool, Keyring(generate_key()))).apply()
        took, cpu = time.perf_counter() - t, _cpu() - cpu
    finally:
        await store.close()
    print(json.dumps({"seconds": took, "cpu_seconds": cpu, "added": sum(result.added.values()),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _cpu() -> float:
    """CPU seconds of this process, all threads (on a shared machine the wall time also counts waiting
    for a core; this does not)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--long-rows", type=int, default=100_000)
    ap.add_argument("--canaries", type=int, default=100)
    ap.add_argument("--many", type=int, default=10_000)
    ap.add_argument("--shapes", default=",".join(SHAPES))
    ap.add_argument("--one", nargs=3, metavar=("DSN", "CONTROL", "COUNT"), help=argparse.SUPPRESS)
    return ap


def target_of(shape: str, rows: int, count: int) -> float | None:
    """Issue 14's target for one run: 10,000 canaries < 60 s, 100 into the 1 M-row (distinct) table < 20 s,
    any other shape < 30 s for 100; None for a run it sets no time for (a 10 M-row table: memory only)."""
    if rows > 2_000_000:
        return None
    if count > 1000:
        return 60.0
    return 20.0 if shape == "distinct" else 30.0


async def run(args: argparse.Namespace, runs: list[tuple[str, int, int]] | None = None) -> list[dict[str, Any]]:
    """Build each (shape, rows, canaries) table on one embedded server, seed it in its own process,
    print a line per run and return the results (seconds, cpu_seconds, peak_rss_mb, target, met)."""
    if runs is None:
        runs = [(s, args.long_rows if s == "longtext" else args.rows, args.canaries) for s in args.shapes.split(",")]
        runs += [("distinct", args.rows, args.many)] if args.many else []
    tmp = Path(tempfile.mkdtemp(prefix="canary-shapes-"))
    server = PostgresServer(tmp, settings={"shared_buffers": "256MB"})
    await asyncio.to_thread(server.start)
    out: list[dict[str, Any]] = []
    print(f"{'shape':<10} {'rows':>10} {'canaries':>9} {'seconds':>8} {'CPU':>7} {'peak RSS':>9}  target")
    try:
        for shape, rows, count in runs:
            ddl, fill = SHAPES[shape]
            db = f"{shape}_{count}"
            admin = await asyncpg.connect(server.dsn())
            await admin.execute(f'CREATE DATABASE "{db}"')
            await admin.execute(f'CREATE DATABASE "{db}_ctl"')
            await admin.close()
            conn = await asyncpg.connect(server.dsn(db))
            await conn.execute(ddl)
            await conn.execute(fill, rows)
            await conn.execute("ANALYZE t")
            real = await conn.fetchval("SELECT count(*) FROM t")
            await conn.close()
            done = await asyncio.to_thread(
                subprocess.run, [sys.executable, __file__, "--one", server.dsn(db), server.dsn(f"{db}_ctl"), str(count)],
                capture_output=True, text=True, timeout=1800, check=False)
            target = target_of(shape, rows, count)
            if done.returncode != 0:
                print(f"{shape:<10} {real:>10,} {count:>9,}   FAILED: {done.stderr.strip().splitlines()[-1][:200]}")
                out.append({"shape": shape, "rows": real, "canaries": count, "failed": True, "target": target, "met": False})
            else:
                r = json.loads(done.stdout.strip().splitlines()[-1])
                met = target is None or r["seconds"] < target
                verdict = f"< {target:.0f}s {'met' if met else 'NOT met'}" if target is not None else "memory only"
                print(f"{shape:<10} {real:>10,} {r['added']:>9,} {r['seconds']:>7.1f}s {r['cpu_seconds']:>6.1f}s {r['peak_rss_mb']:>7.0f}MB  "
                      f"{verdict}", flush=True)
                out.append({"shape": shape, "rows": real, "canaries": count, **r, "target": target, "met": met})
            admin = await asyncpg.connect(server.dsn())
            await admin.execute(f'DROP DATABASE "{db}" WITH (FORCE)')
            await admin.execute(f'DROP DATABASE "{db}_ctl" WITH (FORCE)')
            await admin.close()
    finally:
        await asyncio.to_thread(server.destroy)
        shutil.rmtree(tmp, ignore_errors=True)
    return out


async def main(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    if args.one:
        await one(args.one[0], args.one[1], int(args.one[2]))
        return
    await run(args)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
