"""Firehose delivery throughput into one listener, on this machine.

Starts an embedded PostgreSQL (pgserver) as the control store, a runtime with its pipeline, and the
Firehose HTTP endpoint (canary/postgres/firehose.py) on a loopback port. ``--concurrency`` clients
POST ``--requests`` deliveries built as Firehose builds them (gzip body of base64 gzip CloudWatch Logs
subscription messages), each ``--records`` records of ``--events`` jsonlog log events, one in
``--canary-every`` of them a signed canary read (the rest ordinary duration lines).

Prints log events/s and records/s through the endpoint, and p50 / p99 request latency: the answer
comes only after the request's events are committed, so that is request -> events committed.

    python bench/firehose_ingest.py [--requests 200] [--records 10] [--events 100] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import json
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from aiohttp import web

from canary.config import from_mapping
from canary.crypto import Keyring
from canary.logs import configure
from canary.postgres.firehose import FirehoseReceiver
from canary.postgres.read import line_key, line_mac
from canary.runtime import close_runtime, open_runtime
from canary.store.embedded import PostgresServer
from canary.store.registry import NewCanary, location_key

KEY = "bench-firehose-access-key"
GROUP = "/aws/rds/instance/shop-db/postgresql"
KEYRING = Keyring(bytes(range(32)))


def canary(pk: int) -> NewCanary:
    return NewCanary(kind="customer", datastore="shop", label="shop/public.customers",
                     location={"target": "public.customers", "pk": str(pk)}, lookup=location_key("shop", "public.customers", pk))


def read_line(pk: int, pid: int) -> str:
    detail = json.dumps({"v": 1, "ds": "shop", "t": "public.customers", "k": str(pk), "u": "mallory", "q": "select * from customers",
                         "ts": f"2026-11-23T15:24:13.{pid % 1_000_000:06d}+00:00", "a": "10.1.2.3", "p": pid})
    return json.dumps({"timestamp": "2026-11-23 15:24:13.620 UTC", "user": "mallory", "dbname": "shop", "pid": pid,
                       "remote_host": "10.1.2.3", "session_id": f"6b045a9d.{pid:x}", "error_severity": "LOG", "state_code": "CY001",
                       "message": "row access audit", "detail": detail, "hint": line_mac(line_key(KEYRING, "shop"), detail)})


def plain_line(n: int) -> str:
    return json.dumps({"timestamp": "2026-11-23 15:24:13.620 UTC", "user": "app", "dbname": "shop", "pid": 1000 + n % 5000,
                       "session_id": f"6b045a9d.{n:x}", "line_num": n, "error_severity": "LOG", "state_code": "00000",
                       "message": f"duration: {n % 97}.{n % 1000:03d} ms  statement: select * from orders where id = {n}"})


def delivery(n: int, records: int, events: int, canary_every: int, canaries: int) -> tuple[bytes, int]:
    """A gzip Firehose body and how many canary reads it holds."""
    out, reads = [], 0
    for r in range(records):
        lines = []
        for e in range(events):
            seq = (n * records + r) * events + e
            if seq % canary_every == 0:
                lines.append(read_line(1 + seq // canary_every % canaries, 100_000 + seq))
                reads += 1
            else:
                lines.append(plain_line(seq))
        message = {"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": GROUP, "logStream": f"postgresql.log.{r % 3}",
                   "subscriptionFilters": ["canary"],
                   "logEvents": [{"id": f"{(n * records + r) * events + i:056d}", "timestamp": 1795965853620 + i, "message": m}
                                 for i, m in enumerate(lines)]}
        out.append({"data": base64.b64encode(gzip.compress(json.dumps(message).encode())).decode()})
    body = {"requestId": str(uuid.uuid4()), "timestamp": int(time.time() * 1000), "records": out}
    return gzip.compress(json.dumps(body).encode()), reads


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--records", type=int, default=10, help="Firehose records per request")
    ap.add_argument("--events", type=int, default=100, help="CloudWatch log events per record")
    ap.add_argument("--canary-every", type=int, default=500, help="one canary read per this many log events")
    ap.add_argument("--canaries", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    configure("warning", "console")
    tmp = Path(tempfile.mkdtemp(prefix="canary-bench-"))
    server = PostgresServer(tmp / "pg")
    await asyncio.to_thread(server.start)
    try:
        cfg = from_mapping({"canary": {"data_dir": str(tmp / "data")}, "control": {"dsn": server.dsn()},
                            "datastores": [{"name": "shop", "dsn": "postgresql://canary@127.0.0.1:1/shop"}],
                            "coverage": {"firehose": {"access_key": KEY, "streams": [
                                {"log_group": GROUP, "datastore": "shop", "node": "shop-db", "format": "jsonlog"}]}}})
        rt = await open_runtime(cfg, keyring=KEYRING)
        async with rt.pool.acquire() as conn:
            await rt.registry.add(conn, [canary(pk) for pk in range(1, args.canaries + 1)], None)
        rt.pipeline.start()
        app = web.Application(client_max_size=128 * 1024 * 1024)
        receiver = FirehoseReceiver.from_config(cfg)
        await receiver.start(rt)
        app.router.add_routes(receiver.routes())
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/ingest/firehose"
        bodies = [delivery(n, args.records, args.events, args.canary_every, args.canaries) for n in range(args.requests)]
        latencies: list[float] = []
        queue: asyncio.Queue[tuple[bytes, int]] = asyncio.Queue()
        for b in bodies:
            queue.put_nowait(b)
        statuses: dict[int, int] = {}

        async def client(http: aiohttp.ClientSession) -> None:
            while not queue.empty():
                body, _ = queue.get_nowait()
                headers = {"X-Amz-Firehose-Access-Key": KEY, "X-Amz-Firehose-Request-Id": str(uuid.uuid4()),
                           "X-Amz-Firehose-Protocol-Version": "1.0", "Content-Type": "application/json", "Content-Encoding": "gzip"}
                t0 = time.perf_counter()
                async with http.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        async with aiohttp.ClientSession() as http:
            await asyncio.gather(*(client(http) for _ in range(args.concurrency)))
        took = time.perf_counter() - t0
        reads = sum(r for _, r in bodies)
        stored = await rt.pool.fetchval("SELECT count(*) FROM events WHERE kind = 'read'")
        events = args.requests * args.records * args.events
        latencies.sort()
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"firehose ingest: {args.requests} requests x {args.records} records x {args.events} log events, "
              f"{args.concurrency} concurrent clients, one canary read per {args.canary_every} events")
        print(f"statuses {statuses}; canary reads sent {reads}, read events stored {stored} ({'no loss' if stored == reads else 'LOSS'})")
        print(f"{events / took:,.0f} log events/s, {args.requests * args.records / took:,.0f} Firehose records/s, "
              f"{args.requests / took:,.1f} requests/s ({took:.1f} s)")
        print(f"request -> events committed: p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms "
              f"(body {statistics.mean(len(b) for b, _ in bodies) / 1024:.0f} KiB gzip per request)")
        await runner.cleanup()
        await close_runtime(rt, grace=1)
    finally:
        await asyncio.to_thread(server.destroy)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
