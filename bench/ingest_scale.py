"""Log ingest into one listener vs three listeners on one control store, on this machine.

Starts an embedded PostgreSQL (pgserver) for the control store, registers canaries, and runs real
``canary listen`` subprocesses (same configuration, each its own loopback port). A shipper posts
batches of signed CY001 read records to ``/ingest/jsonlog`` round-robin over the listeners with
``--concurrency`` requests in flight, as Vector / Fluent Bit would behind a load balancer. Each batch
is one reader role, so each batch opens one incident: the latency measured is from the request being
sent to its incident being committed (the incident's ``created_at`` on the store's clock; the bench
and the store share this host's clock), and the request round trip (the answer comes after commit).

Prints records/s, loss check (events stored = records sent, one incident per batch) and p50/p99
latencies for 1 and 3 listeners side by side, with the ratio.

The request body is built by one small function per path (``--via``): :func:`jsonlog_request` (Vector /
Fluent Bit NDJSON to ``/ingest/jsonlog``) or :func:`firehose_request` (an Amazon Data Firehose HTTP
endpoint delivery: each Firehose record a gzip-compressed CloudWatch Logs subscription message of 100
log events, as RDS's log group subscription sends them, to ``/ingest/firehose``).

    python bench/ingest_scale.py [--records 40000] [--batch 400] [--concurrency 6] [--listeners 3] [--via firehose]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import gzip
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from canary.config import from_mapping
from canary.crypto import Keyring, write_key_file
from canary.postgres.http_ingest import PATH
from canary.postgres.read import line_key, line_mac
from canary.store import ControlStore
from canary.store.embedded import PostgresServer, free_port
from canary.store.registry import NewCanary, Registry, location_key

ROOT = Path(__file__).resolve().parents[1]
KEY = bytes(range(32))
TOKEN = "bench-ingest-token-0123456789"
FIREHOSE_KEY = "bench-firehose-access-key-0123"
LOG_GROUP = "/aws/rds/instance/shop-db/postgresql"
#: log events per CloudWatch Logs subscription message (one Firehose record)
EVENTS_PER_MESSAGE = 100
NODE = "primary"
CANARIES = 50


@dataclass(frozen=True)
class Request:
    """One shipper request: path with query, headers, body."""

    path: str
    headers: dict[str, str]
    body: bytes


#: (records, node) -> the request that carries them.
RequestBuilder = Callable[[Sequence[dict[str, Any]], str], Request]


def jsonlog_request(records: Sequence[dict[str, Any]], node: str) -> Request:
    """What Vector's http sink (NDJSON framing, gzip) or Fluent Bit's json_lines output sends."""
    body = gzip.compress(b"".join(json.dumps(r).encode() + b"\n" for r in records), compresslevel=1)
    return Request(f"{PATH}?node={node}", {"Authorization": f"Bearer {TOKEN}", "Content-Encoding": "gzip",
                                           "Content-Type": "application/x-ndjson"}, body)


def firehose_request(records: Sequence[dict[str, Any]], node: str) -> Request:
    """An Amazon Data Firehose HTTP endpoint delivery (docs: "HTTP Endpoint Delivery Request and Response
    Specifications"): gzip JSON body, each record's data base64 of a gzip CloudWatch Logs subscription
    message whose log events are the server's log lines (jsonlog here; the log group maps to the node)."""
    request_id = str(uuid.uuid4())
    now_ms = int(time.time() * 1000)
    out = []
    for start in range(0, len(records), EVENTS_PER_MESSAGE):
        chunk = records[start:start + EVENTS_PER_MESSAGE]
        message = {"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": LOG_GROUP,
                   "logStream": f"{node}.postgresql.log", "subscriptionFilters": ["canary"],
                   "logEvents": [{"id": f"{now_ms:020d}{start + i:036d}", "timestamp": now_ms, "message": json.dumps(r)}
                                 for i, r in enumerate(chunk)]}
        out.append({"data": base64.b64encode(gzip.compress(json.dumps(message).encode(), compresslevel=1)).decode()})
    body = gzip.compress(json.dumps({"requestId": request_id, "timestamp": now_ms, "records": out}).encode(), compresslevel=1)
    return Request("/ingest/firehose", {"X-Amz-Firehose-Request-Id": request_id, "X-Amz-Firehose-Access-Key": FIREHOSE_KEY,
                                        "X-Amz-Firehose-Protocol-Version": "1.0", "Content-Type": "application/json",
                                        "Content-Encoding": "gzip"}, body)


BUILDERS: dict[str, RequestBuilder] = {"jsonlog": jsonlog_request, "firehose": firehose_request}


def read_record(keyring: Keyring, pk: int, pid: int, role: str) -> dict[str, Any]:
    """A CY001 jsonlog record as the touch function writes it (detail signed with the datastore's line key)."""
    now = dt.datetime.now(dt.timezone.utc)
    detail = json.dumps({"v": 1, "ds": "shop", "t": "public.customers", "k": str(pk), "u": role, "q": "select * from customers",
                         "ts": now.isoformat(), "a": "10.1.2.3", "p": pid})
    return {"timestamp": now.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC", "user": role, "dbname": "shop", "pid": pid,
            "remote_host": "10.1.2.3", "session_id": f"6b045a9d.{pid:x}", "error_severity": "LOG", "state_code": "CY001",
            "message": "row access audit", "detail": detail, "hint": line_mac(line_key(keyring, "shop"), detail)}


async def prepare(dsn: str, keyring: Keyring) -> None:
    """Migrate the fresh control store and register the canaries the records read."""
    cfg = from_mapping({"canary": {"data_dir": tempfile.gettempdir()}, "control": {"dsn": dsn}})
    async with ControlStore(cfg) as store, store.pool.acquire() as conn:
        await Registry(store.pool, keyring).add(conn, [
            NewCanary(kind="customer", datastore="shop", label="shop/public.customers",
                      location={"target": "public.customers", "pk": str(pk)}, lookup=location_key("shop", "public.customers", pk))
            for pk in range(1, CANARIES + 1)], None)


def config_text(data_dir: Path, key_file: Path, dsn: str) -> str:
    return f'''
[canary]
data_dir = "{data_dir}"
master_key_file = "{key_file}"
log_level = "warning"
[control]
dsn = "{dsn}"
pool_max = 8
[coverage]
ingest_token = "{TOKEN}"
ingest_max_body = 67108864
[coverage.firehose]
access_key = "{FIREHOSE_KEY}"
[[coverage.firehose.streams]]
log_group = "{LOG_GROUP}"
datastore = "shop"
node = "{NODE}"
format = "jsonlog"
[[coverage.nodes]]
name = "{NODE}"
datastore = "shop"
[[datastores]]
name = "shop"
dsn = "postgresql://reader@127.0.0.1:1/shop"
'''


async def run(server: PostgresServer, tmp: Path, *, listeners: int, records: int, batch: int, concurrency: int,
              build: RequestBuilder) -> dict[str, Any]:
    keyring = Keyring(KEY)
    db = f"bench_{listeners}_{int(time.time())}"
    admin = await asyncpg.connect(server.dsn())
    await admin.execute(f'CREATE DATABASE "{db}"')
    await admin.close()
    dsn = server.dsn(db)
    await prepare(dsn, keyring)
    work = tmp / f"l{listeners}"
    work.mkdir()
    key_file = work / "master.key"
    write_key_file(key_file, KEY)
    (work / "canary.toml").write_text(config_text(work, key_file, dsn))
    ports = [free_port() for _ in range(listeners)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "canary", "--config", str(work / "canary.toml"), "listen", "--port", str(p)],
                              stdout=(work / f"listener-{i}.log").open("wb"), stderr=subprocess.STDOUT, env=env)
             for i, p in enumerate(ports)]
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            for p in ports:
                for _ in range(300):
                    try:
                        async with http.get(f"http://127.0.0.1:{p}/healthz") as r:
                            if r.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
                else:
                    raise RuntimeError((work / "listener-0.log").read_text()[-2000:])
            batches = []
            pid = 10_000
            for b in range(records // batch):
                recs = []
                for _ in range(batch):
                    pid += 1
                    recs.append(read_record(keyring, 1 + pid % CANARIES, pid, f"reader_{b}"))
                batches.append((f"reader_{b}", build(recs, NODE)))
            sent_at: dict[str, float] = {}
            rtts: list[float] = []
            queue = list(enumerate(batches))
            failures = 0

            async def worker() -> None:
                nonlocal failures
                while queue:
                    i, (role, req) = queue.pop(0)
                    port = ports[i % len(ports)]
                    sent_at[role] = time.time()
                    t0 = time.perf_counter()
                    async with http.post(f"http://127.0.0.1:{port}{req.path}", headers=req.headers, data=req.body) as r:
                        await r.read()
                        if r.status != 200:
                            failures += 1
                    rtts.append(time.perf_counter() - t0)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
        conn = await asyncpg.connect(dsn)
        try:
            stored = await conn.fetchval("SELECT count(*) FROM events")
            rows = await conn.fetch("SELECT actor->>'role' AS role, created_at FROM incidents")
        finally:
            await conn.close()
        lat = sorted(r["created_at"].timestamp() - sent_at[r["role"]] for r in rows if r["role"] in sent_at)
        rt = sorted(rtts)
        return {"listeners": listeners, "records": len(batches) * batch, "rate": len(batches) * batch / elapsed,
                "elapsed": elapsed, "stored": stored, "incidents": len(rows), "batches": len(batches), "failures": failures,
                "p50": statistics.median(lat) * 1000, "p99": lat[int(len(lat) * 0.99) - 1] * 1000 if lat else float("nan"),
                "rtt_p99": rt[int(len(rt) * 0.99) - 1] * 1000}
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=40_000)
    ap.add_argument("--batch", type=int, default=400, help="records per request")
    ap.add_argument("--concurrency", type=int, default=6, help="requests in flight")
    ap.add_argument("--listeners", type=int, default=3)
    ap.add_argument("--via", choices=sorted(BUILDERS), default="jsonlog", help="the ingest path and its wire format")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="canary-bench-ingest-"))
    server = PostgresServer(tmp / "pg")
    await asyncio.to_thread(server.start)
    try:
        print(f"ingest scale-out: {args.records:,} signed CY001 records, {args.batch} per request ({args.via}), "
              f"{args.concurrency} requests in flight, {os.cpu_count()} CPUs shared by PostgreSQL, listeners and shipper")
        results = [await run(server, tmp, listeners=n, records=args.records, batch=args.batch, concurrency=args.concurrency,
                             build=BUILDERS[args.via]) for n in (1, args.listeners)]
        print(f"  {'listeners':>9} {'records/s':>10} {'stored':>8} {'incidents':>10} {'non-200':>8} "
              f"{'p50 req->incident':>18} {'p99 req->incident':>18} {'p99 round trip':>15}")
        for r in results:
            ok = "ok" if r["stored"] == r["records"] and r["incidents"] == r["batches"] else "LOSS"
            print(f"  {r['listeners']:>9} {r['rate']:>10,.0f} {r['stored']:>8,} {r['incidents']:>10,} {r['failures']:>8} "
                  f"{r['p50']:>15.0f} ms {r['p99']:>15.0f} ms {r['rtt_p99']:>12.0f} ms  {ok}")
        print(f"  {args.listeners} listeners vs 1: {results[1]['rate'] / results[0]['rate']:.2f}x records/s")
    finally:
        await asyncio.to_thread(server.destroy)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
