"""Detection and page latency of canary row reads, on this machine: a real PostgreSQL (embedded), a
seeded shop, the listener tailing the server's jsonlog with its default settings, and a pager sink.

Each read is one statement by one of ``--roles`` ordinary roles, of one canary (by primary key, or a
page of rows that holds one): detection latency is the time from sending the statement to its event
being committed in the control store; page latency (one per role: later reads of the same role join
its open incident) is the time to the page being delivered. With ``--hostile`` the same reads run
while other sessions keep attacking the signal: forged detection lines, poisoned details, 1 MiB padded
queries that read canaries, and full-table reads, so the reads compete with everything an insider can
throw at the log.

    python bench/read_detection.py [--reads 300] [--roles 30] [--hostile]

Target (issue 12): detection p99 < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import asyncpg

from canary.config import from_mapping
from canary.crypto import Keyring, generate_key
from canary.drills.shop import create_shop
from canary.listener import Listener
from canary.runtime import close_runtime, open_runtime
from canary.seeding.postgres import PostgresSeeder
from canary.store.embedded import PostgresServer


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def line(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:<22} (none)"
    ms = [v * 1000 for v in values]
    return (f"{name:<22} n={len(ms):<4} p50 {pct(ms, 50):7.1f} ms  p95 {pct(ms, 95):7.1f} ms  "
            f"p99 {pct(ms, 99):7.1f} ms  max {max(ms):7.1f} ms")


async def hostile(dsn: str, stop: asyncio.Event, keys: list[int]) -> int:
    """Forged and poisoned lines, padded canary reads and full scans, until ``stop``."""
    conn = await asyncpg.connect(dsn)
    n = 0
    forged = json.dumps({"v": 1, "ds": "shop", "t": "public.customers", "k": str(keys[0]), "u": "ceo", "q": "x",
                         "ts": "2026-11-23T15:24:13+00:00", "a": "10.66.66.66", "p": 1})
    nested = "[" * 5000 + "]" * 5000
    try:
        while not stop.is_set():
            k = random.choice(keys)
            for sql in (
                f"DO $x$ BEGIN RAISE LOG USING MESSAGE = 'row visibility', ERRCODE = 'CY001', DETAIL = '{forged}'; END $x$",
                f"DO $x$ BEGIN RAISE LOG USING MESSAGE = 'row visibility', ERRCODE = 'CY001', DETAIL = '{nested}'; END $x$",
                f"SELECT * FROM customers WHERE id = {k} /* {'x' * (1 << 20)} */",
                "SELECT count(*) FROM customers WHERE full_name LIKE '%zz%'",
            ):
                await conn.execute(sql)
                n += 1
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    return n


async def main(reads: int, roles: int, hostile_mode: bool, customers: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="canary-bench-"))
    server = PostgresServer(tmp / "pg", settings={"log_connections": True})
    await asyncio.to_thread(server.start)
    out = io.StringIO()
    try:
        admin = await asyncpg.connect(server.dsn())
        await admin.execute("CREATE DATABASE control")
        await admin.execute("CREATE DATABASE shop")
        await admin.close()
        shop = await asyncpg.connect(server.dsn("shop"))
        await create_shop(shop, customers)
        names = [f"analyst_{i}" for i in range(roles)] + ["intruder"]
        for r in names:
            await shop.execute(f"CREATE ROLE {r} LOGIN PASSWORD 'pw-{r}'")
            await shop.execute(f"GRANT SELECT ON customers, orders TO {r}")
        await shop.close()
        cfg = from_mapping({
            "canary": {"data_dir": str(tmp / "data")}, "control": {"dsn": server.dsn("control")},
            "datastores": [{"name": "shop", "dsn": server.dsn("shop"), "node": "primary", "jsonlog_dir": str(server.log_dir),
                            "tables": [{"table": "public.customers", "count": 100}]}],
            "sinks": [{"name": "oncall", "type": "stdout"}],
        })
        keyring = Keyring(generate_key())
        rt = await open_runtime(cfg, keyring=keyring)
        with contextlib.redirect_stdout(out):
            await PostgresSeeder(cfg.datastore("shop"), rt.registry, keyring).apply()
            keys = [int(c.location["pk"]) for c in await rt.registry.active("shop") if c.kind == "customer"]
            listener = Listener(rt)
            await listener.start()
            readers = [await asyncpg.connect(server.dsn("shop", user=r, password=f"pw-{r}")) for r in names[:-1]]
            stop = asyncio.Event()
            attack = asyncio.create_task(hostile(server.dsn("shop", user="intruder", password="pw-intruder"), stop, keys)) if hostile_mode else None
            detect: list[float] = []
            page: list[float] = []
            paged_roles: set[int] = set()
            rng = random.Random(7)
            for i in range(reads):
                who = i % roles
                k = rng.choice(keys)
                mark = f"bench-read-{i}"
                sql = (f"SELECT * FROM customers WHERE id = {k} /* {mark} */" if i % 2 else
                       f"SELECT * FROM customers WHERE id BETWEEN {k - 25} AND {k + 25} /* {mark} */")
                t0 = time.monotonic()
                await readers[who].fetch(sql)
                got_event = got_page = None
                while time.monotonic() - t0 < 10 and (got_event is None or (who not in paged_roles and got_page is None)):
                    row = await rt.pool.fetchrow(
                        "SELECT e.incident_id, o.status FROM events e LEFT JOIN outbox o ON o.incident_id = e.incident_id"
                        " AND o.sequence = 0 WHERE e.evidence->>'query' LIKE $1 LIMIT 1", f"%{mark}%")
                    now = time.monotonic()
                    if row is not None and got_event is None:
                        got_event = now - t0
                    if row is not None and row["status"] == "delivered" and got_page is None:
                        got_page = now - t0
                    await asyncio.sleep(0.005)
                if got_event is None:
                    raise SystemExit(f"read {i} was not detected within 10 s")
                detect.append(got_event)
                if who not in paged_roles and got_page is not None:
                    page.append(got_page)
                    paged_roles.add(who)
                await asyncio.sleep(rng.uniform(0, 0.05))
            stop.set()
            sent = await attack if attack is not None else 0
            for c in readers:
                await c.close()
            await listener.stop()
        await close_runtime(rt)
        print(f"{reads} canary reads by {roles} roles, shop of {customers:,} customers, 100 canaries; "
              f"listener defaults (jsonlog poll {cfg.listener.jsonlog_poll:g} s)"
              + (f"; {sent} hostile statements alongside" if hostile_mode else ""))
        print(line("read -> event committed", detect))
        print(line("read -> page delivered", page))
        print(f"mean detection {statistics.mean(detect) * 1000:.1f} ms; target p99 < 1000 ms: "
              f"{'met' if pct(detect, 99) < 1.0 else 'NOT met'}")
    finally:
        await asyncio.to_thread(server.stop, "fast")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reads", type=int, default=300)
    ap.add_argument("--roles", type=int, default=30)
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--hostile", action="store_true")
    a = ap.parse_args()
    asyncio.run(main(a.reads, a.roles, a.hostile, a.customers))
