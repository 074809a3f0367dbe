"""Alert pipeline throughput and event -> page latency, on this machine.

Starts an embedded PostgreSQL (pgserver), a local PagerDuty Events API v2 endpoint (aiohttp, 202 and
dedup by ``dedup_key``), and the pipeline + outbox dispatcher. ``--sources`` concurrent submitters
push ``--events`` detection events (each awaiting its commit, as a source does before acknowledging
its input), grouped ``--per-incident`` events to an incident (one query reading that many canaries).

Prints: events/s committed, loss check (events stored, incidents paged, dedup keys opened once),
p50/p99 latency from an incident's first event being submitted to its page reaching the sink, and
the same for per-event commits (max_batch = 1) side by side, with the group-commit ratio.

    python bench/pipeline_throughput.py [--events 50000] [--sources 200] [--per-incident 50]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from canary.config import Config, from_mapping
from canary.events import DetectionEvent, EventKind, event_key
from canary.logs import configure
from canary.outbox import Dispatcher
from canary.pipeline import Pipeline
from canary.runtime import build_sinks
from canary.store import ControlStore
from canary.store.embedded import PostgresServer

ROUTING_KEY = "BENCHROUTINGKEY0000000000000000X"


class PagerDutyEndpoint:
    """Events API v2 enqueue: 202 for valid events; remembers when each dedup_key first arrived."""

    def __init__(self) -> None:
        self.first_seen: dict[str, float] = {}
        self.requests = 0
        self.opened: dict[str, int] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v2/enqueue", self.enqueue)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/v2/enqueue"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def enqueue(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        body = json.loads(await request.read())
        self.requests += 1
        if body.get("routing_key") != ROUTING_KEY or body.get("event_action") not in ("trigger", "acknowledge", "resolve"):
            return web.json_response({"status": "invalid event", "message": "Event object is invalid"}, status=400)
        key = body["dedup_key"]
        if key not in self.first_seen:
            self.first_seen[key] = now
            self.opened[key] = 1
        return web.json_response({"status": "success", "message": "Event processed", "dedup_key": key}, status=202)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(server: PostgresServer, data_dir: Path, *, label: str, events: int, sources: int, per_incident: int,
              max_batch: int, linger: float) -> dict[str, Any]:
    db = f"bench_{label}"
    admin = await asyncpg.connect(server.dsn())
    await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{db}"')
    await admin.close()
    pd = PagerDutyEndpoint()
    await pd.start()
    cfg: Config = from_mapping({
        "canary": {"data_dir": str(data_dir), "log_level": "warning"},
        "control": {"dsn": server.dsn(db), "pool_max": 20},
        "alerting": {"workers": 4, "escalate_at": [1000, 10000], "retry_initial": 0.05, "sink_timeout": 5},
        "sinks": [{"name": "pd", "type": "pagerduty", "routing_key": ROUTING_KEY, "url": pd.url}],
    })
    store = await ControlStore(cfg).open()
    canary_ids = [r["id"] for r in await store.pool.fetch(
        "INSERT INTO canaries (uid, kind, datastore, label, location_enc, location_idx, key_id)"
        " SELECT 'b'||g, 'customer', 'shop', 'shop/public.customers', '\\x00', int8send(g), 'k'"
        " FROM generate_series(1, $1) g RETURNING id", events)]
    t0 = dt.datetime.now(dt.UTC)
    evs = [DetectionEvent(kind=EventKind.READ, source="bench", key=event_key("bench", label, i),
                          group=f"{label}-q{i // per_incident}", canary_id=canary_ids[i],
                          observed_at=t0 + dt.timedelta(microseconds=i), actor={"user": "mallory"},
                          origin={"client_addr": "10.0.0.9", "application_name": "psql"},
                          evidence={"query": "SELECT * FROM customers"}) for i in range(events)]
    first_submit: dict[str, float] = {}
    async with aiohttp.ClientSession() as http:
        pipeline = Pipeline(store.pool, cfg, max_batch=max_batch, linger=linger)
        pipeline.start()
        dispatcher = Dispatcher(store.pool, build_sinks(cfg, http), cfg.alerting, poll=0.2, batch=100)
        await dispatcher.start()
        queue: asyncio.Queue[DetectionEvent] = asyncio.Queue()
        for e in evs:
            queue.put_nowait(e)

        async def source() -> None:
            while not queue.empty():
                e = queue.get_nowait()
                first_submit.setdefault(e.group, time.monotonic())
                await pipeline.submit(e)

        started = time.monotonic()
        await asyncio.gather(*(source() for _ in range(sources)))
        ingest_s = time.monotonic() - started
        await pipeline.stop()
        deadline = time.monotonic() + 120
        while await store.pool.fetchval("SELECT count(*) FROM outbox WHERE status = 'pending'") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        drained_s = time.monotonic() - started
        await dispatcher.stop()
    stored = await store.pool.fetchval("SELECT count(*) FROM events")
    incidents = {r["dedup_key"]: r["group_key"] for r in await store.pool.fetch("SELECT dedup_key, group_key FROM incidents")}
    pending = await store.pool.fetchval("SELECT count(*) FROM outbox WHERE status <> 'delivered'")
    await store.close()
    await pd.stop()
    latencies = [pd.first_seen[k] - first_submit[g] for k, g in incidents.items() if k in pd.first_seen]
    return {
        "label": label, "events": events, "stored": stored, "rate": events / ingest_s, "ingest_s": ingest_s,
        "drained_s": drained_s, "incidents": len(incidents), "paged": len(pd.first_seen), "requests": pd.requests,
        "undelivered": pending, "batches": pipeline.stats.batches,
        "p50_ms": pct(latencies, 50) * 1000, "p99_ms": pct(latencies, 99) * 1000,
    }


def show(r: dict[str, Any]) -> None:
    lost = r["events"] - r["stored"]
    print(f"  {r['label']:<14} {r['rate']:>9,.0f} ev/s  ({r['events']:,} events in {r['ingest_s']:.2f}s, "
          f"{r['batches']:,} commits)  lost {lost}  incidents {r['incidents']:,} paged {r['paged']:,} "
          f"undelivered {r['undelivered']}  page latency p50 {r['p50_ms']:.0f} ms p99 {r['p99_ms']:.0f} ms")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--sources", type=int, default=200, help="concurrent submitters")
    ap.add_argument("--per-incident", type=int, default=50, help="events per incident (canaries read by one query)")
    ap.add_argument("--serial-events", type=int, default=5_000, help="events for the per-event-commit baseline")
    ap.add_argument("--linger", type=float, default=0.002)
    ap.add_argument("--max-batch", type=int, default=1000)
    args = ap.parse_args()
    configure("warning", "console")
    tmp = Path(tempfile.mkdtemp(prefix="canary-bench-"))
    server = PostgresServer(tmp / "pg")
    await asyncio.to_thread(server.start)
    try:
        print(f"pipeline throughput: {args.sources} concurrent sources, {args.per_incident} events per incident, "
              f"PagerDuty-compatible sink on loopback")
        grouped = await run(server, tmp, label="group-commit", events=args.events, sources=args.sources,
                            per_incident=args.per_incident, max_batch=args.max_batch, linger=args.linger)
        show(grouped)
        scattered = await run(server, tmp, label="one-per-event", events=args.events // 5, sources=args.sources,
                              per_incident=1, max_batch=args.max_batch, linger=args.linger)
        show(scattered)
        serial = await run(server, tmp, label="max_batch=1", events=args.serial_events, sources=args.sources,
                           per_incident=args.per_incident, max_batch=1, linger=0.0)
        show(serial)
        print(f"group commit vs per-event commit: {grouped['rate'] / serial['rate']:.1f}x events/s")
        ok = grouped["stored"] == grouped["events"] and grouped["undelivered"] == 0 and grouped["paged"] == grouped["incidents"]
        print(f"target >= 5,000 events/s with zero loss: {'MET' if ok and grouped['rate'] >= 5000 else 'NOT MET'} "
              f"({grouped['rate']:,.0f} events/s, {grouped['events'] - grouped['stored']} lost, "
              f"p99 event->sink {grouped['p99_ms']:.0f} ms)")
        print(f"p50/p99 latency, grouped vs one-incident-per-event: {grouped['p50_ms']:.0f}/{grouped['p99_ms']:.0f} ms vs "
              f"{scattered['p50_ms']:.0f}/{scattered['p99_ms']:.0f} ms; "
              f"median of both rates {statistics.median([grouped['rate'], scattered['rate']]):,.0f} ev/s")
    finally:
        await asyncio.to_thread(server.destroy)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
