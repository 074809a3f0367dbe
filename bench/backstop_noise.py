"""Noise of the pgaudit backstop, on this machine: Debian PostgreSQL 15 with pgaudit object audit on a
seeded shop, the listener tailing its jsonlog. The same ``--lookups`` lookups of *real* customers
(by primary key, prepared) run as the application role and as a superuser, under each setting of
``coverage.privileged_reads``; for each run it prints the AUDIT lines the server wrote, the events,
incidents and pages canary made, and how fast the listener consumed the lines (audit lines per
second from the first lookup to the last line processed).

    python bench/backstop_noise.py [--lookups 10000]

Target (issue 13): zero events for the application role; the superuser's follow the setting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import shutil
import tempfile
import time
from pathlib import Path

import asyncpg

from canary.config import from_mapping
from canary.crypto import Keyring, generate_key
from canary.drills.shop import create_shop
from canary.postgres.audit import configure_object_audit
from canary.postgres.jsonlog import JsonlogSource
from canary.runtime import close_runtime, open_runtime
from canary.seeding.postgres import PostgresSeeder
from canary.store.embedded import PostgresServer

BIN = Path("/usr/lib/postgresql/15/bin")


def _quiet(rt: object) -> float:
    reg = rt.metrics.registry  # type: ignore[attr-defined]
    return sum(reg.get_sample_value("canary_backstop_quiet_total", {"source": "jsonlog:primary", "why": w}) or 0.0
               for w in ("tripwire", "privileged_reads"))


async def _settled(rt: object, pool: asyncpg.Pool) -> None:
    """Wait until the tail has consumed what the log already holds (counts stop moving for 1 s)."""
    last, still = None, 0.0
    while still < 1.0:
        now = (_quiet(rt), await pool.fetchval("SELECT count(*) FROM events"))
        still = still + 0.1 if now == last else 0.0
        last = now
        await asyncio.sleep(0.1)


async def run(server: PostgresServer, tmp: Path, n: int, who: str, setting: str, keyring: Keyring,
              real: list[int]) -> str:
    cfg = from_mapping({
        "canary": {"data_dir": str(tmp / "data")}, "control": {"dsn": server.dsn("control")},
        "coverage": {"privileged_reads": setting},
        "datastores": [{"name": "shop", "dsn": server.dsn("shop"), "node": "primary", "jsonlog_dir": str(server.log_dir),
                        "tables": [{"table": "public.customers", "count": 100}]}],
        "sinks": [{"name": "oncall", "type": "stdout"}],
    })
    rt = await open_runtime(cfg, keyring=keyring)
    rt.pipeline.start()
    tail = JsonlogSource("shop", "primary", server.log_dir, poll=0.05)
    await tail.start(rt)
    try:
        await _settled(rt, rt.pool)
        before = await rt.pool.fetchval("SELECT count(*) FROM events")
        before_inc = await rt.pool.fetchval("SELECT count(*) FROM incidents")
        before_pages = await rt.pool.fetchval("SELECT count(*) FROM outbox")
        quiet0 = _quiet(rt)
        dsn = server.dsn("shop", user="shop_api", password="pw-api") if who == "app" else server.dsn("shop")
        conn = await asyncpg.connect(dsn)
        stmt = await conn.prepare("SELECT full_name, email, phone FROM customers WHERE id = $1")
        t0 = time.perf_counter()
        for i in range(n):
            await stmt.fetchrow(real[i % len(real)])
        await conn.close()
        sent = time.perf_counter() - t0
        deadline = time.perf_counter() + 120
        while time.perf_counter() < deadline:
            if _quiet(rt) - quiet0 + await rt.pool.fetchval("SELECT count(*) FROM events") - before >= n:
                break
            await asyncio.sleep(0.05)
        done = time.perf_counter() - t0
        await _settled(rt, rt.pool)
        events = await rt.pool.fetchval("SELECT count(*) FROM events") - before
        incidents = await rt.pool.fetchval("SELECT count(*) FROM incidents") - before_inc
        pages = await rt.pool.fetchval("SELECT count(*) FROM outbox") - before_pages
        quiet = _quiet(rt) - quiet0
        role = "application role" if who == "app" else "superuser"
        return (f"{role:<17} privileged_reads={setting:<8} lookups {n:>6}  quiet {int(quiet):>6}  events {events:>6}  "
                f"incidents {incidents:>3}  pages {pages:>3}  sent in {sent:5.1f}s, all processed after {done:5.1f}s "
                f"({n / done:,.0f} lines/s)")
    finally:
        await tail.stop()
        await close_runtime(rt)


async def main(n: int) -> None:
    if not (BIN / "postgres").exists() or not Path("/usr/lib/postgresql/15/lib/pgaudit.so").exists():
        raise SystemExit("needs Debian PostgreSQL 15 with pgaudit (postgresql-15 postgresql-15-pgaudit)")
    tmp = Path(tempfile.mkdtemp(prefix="canary-bench-"))
    server = PostgresServer(tmp / "pg", bin_dir=BIN, settings={"shared_preload_libraries": "pgaudit"})
    await asyncio.to_thread(server.start)
    out = io.StringIO()
    try:
        admin = await asyncpg.connect(server.dsn())
        await admin.execute("CREATE DATABASE shop")
        await admin.execute("CREATE DATABASE control")
        await admin.close()
        shop = await asyncpg.connect(server.dsn("shop"))
        await create_shop(shop, 20_000)
        await shop.execute("CREATE ROLE shop_api LOGIN PASSWORD 'pw-api'; GRANT SELECT ON customers, orders TO shop_api")
        keyring = Keyring(generate_key())
        cfg = from_mapping({
            "canary": {"data_dir": str(tmp / "data")}, "control": {"dsn": server.dsn("control")},
            "datastores": [{"name": "shop", "dsn": server.dsn("shop"), "tables": [{"table": "public.customers", "count": 100}]}],
        })
        with contextlib.redirect_stdout(out):
            rt = await open_runtime(cfg, keyring=keyring)
            await PostgresSeeder(cfg.datastore("shop"), rt.registry, keyring).apply()
            canaries = {int(c.location["pk"]) for c in await rt.registry.active("shop")}
            await close_runtime(rt)
        # before object audit is on: the superuser's listing is neither audited nor seen by row security
        real = [r["id"] for r in await shop.fetch("SELECT id FROM customers ORDER BY id LIMIT 2000") if r["id"] not in canaries]
        await configure_object_audit(shop, "canary_auditor", ["public.customers", "public.orders"])
        await shop.close()
        print(f"pgaudit object audit on customers and orders (20,000 customers, 100 canaries), {n:,} lookups of "
              f"{len(real):,} real customers each:")
        with contextlib.redirect_stdout(out):
            rows = [await run(server, tmp, n, who, setting, keyring, real)
                    for who, setting in (("app", "all"), ("su", "all"), ("su", "exports"))]
        for r in rows:
            print(r)
    finally:
        await asyncio.to_thread(server.stop, "fast")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lookups", type=int, default=10_000)
    asyncio.run(main(ap.parse_args().lookups))
