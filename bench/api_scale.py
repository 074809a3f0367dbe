"""API latency on a year of data: 100,000 incidents and 10,000,000 events in the control store.

Fills an embedded control store (pgserver) with INSERT ... SELECT generate_series: incidents opened over
a year (mostly resolved, a few open, 2% drills, 10% suppressed, six kinds, four severities, eight
datastores) and events spread over them, every thousandth incident holding tens of thousands (30% of all events). Then serves the
real listener with the API and times, through HTTP on loopback with a read token, ``--calls`` calls of
each: the first page of the list, filtered lists (status, kind + severity, datastore, a week, drills),
deep pages (following cursors), incident detail, and the first and a deep page of the biggest
incident's events. Prints p50 / p99 / max per query and whether each p99 is under a second.

    python bench/api_scale.py                       # 100,000 incidents, 10 M events
    python bench/api_scale.py --events 2000000      # a smaller fill
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestServer

from canary.config import from_mapping
from canary.crypto import Keyring
from canary.listener import Listener
from canary.logs import configure
from canary.runtime import open_runtime
from canary.store import ControlStore, api_tokens
from canary.store.embedded import PostgresServer
from canary.web.api import PREFIX, ApiComponent

KINDS = ("read", "exported", "contacted", "used", "tamper", "health")
SEVERITIES = ("info", "warning", "error", "critical")
CHUNK = 1_000_000


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def fill(dsn: str, incidents: int, events: int) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)
    took: dict[str, float] = {}
    try:
        await conn.execute("SET synchronous_commit = off; SET maintenance_work_mem = '512MB'")
        t0 = time.monotonic()
        await conn.execute(
            f"""
            INSERT INTO incidents (dedup_key, group_key, kind, severity, status, title, source, first_seen, last_seen,
                                   created_at, event_count, canary_ids, drill, suppressed_by, actor, origin, evidence,
                                   resolved_at)
            SELECT 'bench-' || g, 'group-' || g,
                   (ARRAY{list(KINDS)})[1 + (g * 7) % 6], (ARRAY{list(SEVERITIES)})[1 + (g * 13) % 4],
                   CASE WHEN g % 50 = 0 THEN 'open' WHEN g % 50 = 1 THEN 'acknowledged' ELSE 'resolved' END,
                   'Canary data read by role_' || (g % 400) || ' from 10.' || (g % 250) || '.0.9', 'jsonlog', t, t, t,
                   0, ARRAY[g % 5000 + 1]::bigint[],
                   CASE WHEN g % 50 = 7 THEN 'dr-' || lpad(to_hex(g), 12, '0') END,
                   CASE WHEN g % 10 = 3 THEN 'nightly-backup' END,
                   jsonb_build_object('user', 'role_' || (g % 400)),
                   jsonb_build_object('client_addr', '10.' || (g % 250) || '.0.9', 'datastore', 'ds' || (g % 8)),
                   jsonb_build_object('query', 'select * from customers where id = ' || g),
                   CASE WHEN g % 50 > 1 THEN t + interval '1 hour' END
            FROM generate_series(1, $1) AS g,
                 LATERAL (SELECT now() - interval '365 days' + (g::float8 / $1) * interval '365 days' AS t) AS ts
            """, incidents)
        took["incidents_s"] = time.monotonic() - t0
        first = await conn.fetchval("SELECT min(id) FROM incidents")
        t0 = time.monotonic()
        # events: most incidents a handful, every 1000th a big one (the skew a real year has)
        done = 0
        while done < events:
            n = min(CHUNK, events - done)
            await conn.execute(
                """
                INSERT INTO events (key, kind, source, canary_id, group_key, incident_id, severity, observed_at,
                                    detected_at, recorded_at, actor, origin, evidence)
                SELECT 'ev-' || g, 'read', 'jsonlog', NULL, 'group-' || i, $3::bigint + i - 1, 'critical', at, at, at,
                       '{"user": "role_1"}', '{"datastore": "ds1", "client_addr": "10.0.0.9"}',
                       '{"query": "select * from customers", "table": "public.customers"}'
                FROM generate_series($1::bigint, $1::bigint + $2::bigint - 1) AS g,
                     LATERAL (SELECT CASE WHEN g % 10 < 3 THEN ((g / 10) % ($4::bigint / 1000)) * 1000 + 1
                                          ELSE 1 + (g * 7919) % $4::bigint END AS i) AS pick,
                     LATERAL (SELECT now() - interval '365 days' + (i::float8 / $4::bigint) * interval '365 days'
                                     + (g % 1000) * interval '1 second' AS at) AS ts
                """, done, n, first, incidents)
            done += n
            print(f"  events: {done:,} / {events:,} ({time.monotonic() - t0:.0f} s)", flush=True)
        took["events_s"] = time.monotonic() - t0
        t0 = time.monotonic()
        await conn.execute("UPDATE incidents i SET event_count = c.n FROM (SELECT incident_id, count(*) AS n FROM events"
                           " GROUP BY 1) c WHERE c.incident_id = i.id")
        await conn.execute("VACUUM ANALYZE incidents")
        await conn.execute("VACUUM ANALYZE events")
        took["analyze_s"] = time.monotonic() - t0
    finally:
        await conn.close()
    return took


async def measure(base: str, token: str, calls: int, rng: random.Random, ids: list[int], big: int) -> list[tuple[str, list[float]]]:
    headers = {"Authorization": f"Bearer {token}"}
    week = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=200)).replace(microsecond=0)
    until = week + dt.timedelta(days=7)
    q = lambda t: t.isoformat().replace("+", "%2B")  # noqa: E731
    async with aiohttp.ClientSession(headers=headers) as http:

        async def get(path: str) -> Any:
            async with http.get(base + PREFIX + path) as resp:
                body = await resp.json()
                assert resp.status == 200, (path, resp.status, body)
                return body

        async def timed(path: str) -> tuple[float, Any]:
            t0 = time.perf_counter()
            body = await get(path)
            return time.perf_counter() - t0, body

        deep_cursor = None  # the cursor 100 pages (5,000 incidents) in
        body = await get("/incidents?limit=50")
        for _ in range(100):
            body = await get(f"/incidents?limit=50&cursor={body['next_cursor']}")
        deep_cursor = body["next_cursor"]
        events_deep = None
        body = await get(f"/incidents/{big}/events?limit=100")
        for _ in range(50):
            body = await get(f"/incidents/{big}/events?limit=100&cursor={body['next_cursor']}")
        events_deep = body["next_cursor"]
        queries: list[tuple[str, Any]] = [
            ("list, first page (50)", lambda: "/incidents?limit=50"),
            ("list incl. suppressed", lambda: "/incidents?limit=50&suppressed=true"),
            ("filter status=open", lambda: "/incidents?limit=50&status=open"),
            ("filter kind+severity", lambda: f"/incidents?limit=50&kind={rng.choice(KINDS)}&severity={rng.choice(SEVERITIES)}"),
            ("filter datastore", lambda: f"/incidents?limit=50&datastore=ds{rng.randrange(8)}"),
            ("filter one week", lambda: f"/incidents?limit=50&since={q(week)}&until={q(until)}"),
            ("filter drills", lambda: "/incidents?limit=50&drill=true"),
            ("filter open, not drill, datastore", lambda: f"/incidents?limit=50&status=open&drill=false&datastore=ds{rng.randrange(8)}"),
            ("page 101 (cursor)", lambda: f"/incidents?limit=50&cursor={deep_cursor}"),
            ("incident detail", lambda: f"/incidents/{rng.choice(ids)}"),
            ("events, first page (100)", lambda: f"/incidents/{rng.choice(ids)}/events?limit=100"),
            ("big incident events, page 51", lambda: f"/incidents/{big}/events?limit=100&cursor={events_deep}"),
        ]
        out = []
        for name, make in queries:
            await get(make())  # warm
            times = []
            for _ in range(calls):
                t, _ = await timed(make())
                times.append(t)
            out.append((name, times))
        return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--incidents", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--calls", type=int, default=200, help="timed calls per query")
    args = ap.parse_args()
    configure("warning", "console")
    tmp = Path(tempfile.mkdtemp(prefix="canary-api-bench-"))
    server = PostgresServer(tmp / "pg", settings={"shared_buffers": "512MB", "max_wal_size": "8GB",
                                                  "checkpoint_timeout": "30min"})
    await asyncio.to_thread(server.start)
    try:
        admin = await asyncpg.connect(server.dsn())
        await admin.execute('CREATE DATABASE "bench_api"')
        await admin.close()
        cfg = from_mapping({"canary": {"data_dir": str(tmp), "log_level": "warning"},
                            "control": {"dsn": server.dsn("bench_api")}, "api": {"page_max": 500}})
        store = await ControlStore(cfg).open()
        print(f"filling: {args.incidents:,} incidents, {args.events:,} events")
        took = await fill(server.dsn("bench_api"), args.incidents, args.events)
        print("  " + ", ".join(f"{k} {v:.0f}" for k, v in took.items()))
        size = await store.pool.fetchval("SELECT pg_size_pretty(pg_database_size('bench_api'))")
        rt = await open_runtime(cfg, keyring=Keyring(secrets.token_bytes(32)), store=store)
        now = await rt.pool.fetchval("SELECT clock_timestamp()")
        _, token = await api_tokens.create(rt.pool, "bench", ["read"], now + dt.timedelta(hours=1), "bench")
        ids = [r["id"] for r in await rt.pool.fetch("SELECT id FROM incidents TABLESAMPLE SYSTEM (5) LIMIT 2000")]
        big = await rt.pool.fetchval("SELECT id FROM incidents ORDER BY event_count DESC LIMIT 1")
        big_n = await rt.pool.fetchval("SELECT event_count FROM incidents WHERE id = $1", big)
        listener = Listener(rt, [ApiComponent()])
        server_http = TestServer(listener.app(), host="127.0.0.1")
        await server_http.start_server()
        try:
            results = await measure(str(server_http.make_url("")).rstrip("/"), token, args.calls, random.Random(7), ids, big)
        finally:
            await server_http.close()  # stops the listener, closes the runtime and the store
        print(f"\nAPI latency through HTTP (loopback), {args.incidents:,} incidents, {args.events:,} events "
              f"(control store {size}; biggest incident {big_n:,} events), {args.calls} calls each:")
        print(f"  {'query':<36} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  < 1 s")
        for name, times in results:
            p99 = pct(times, 99)
            print(f"  {name:<36} {pct(times, 50) * 1000:>8.1f} {p99 * 1000:>8.1f} {max(times) * 1000:>8.1f}  "
                  f"{'yes' if p99 < 1 else 'NO'}")
    finally:
        await asyncio.to_thread(server.destroy)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
