"""The SIEM event feed (canary/feed.py): throughput, commit -> SIEM latency, and what it costs the pipeline.

Starts an embedded PostgreSQL (pgserver) for the control store and, per scenario, a fresh database, the
local SIEM servers the sink tests use (tests/hec_server.py: Splunk HEC with indexer acknowledgement;
tests/elastic_server.py: the ``_bulk`` API with ECS mappings and 409s; tests/azure_servers.py: the Entra ID
token endpoint and the Logs Ingestion API, with the stream declarations canary/sinks/sentinel.py documents),
and one listener in this process (:class:`canary.listener.Listener`: pipeline, outbox dispatcher, event
feed). ``--sources`` concurrent submitters commit ``--events`` detection events through the runtime (each
awaiting its commit, as a source does), ``--per-incident`` to an incident, their client addresses drawn
from ``--addresses`` public addresses.

Per scenario it prints:

* ``commit``: events/s the pipeline committed while the feed ran beside it;
* per SIEM sink, ``live``: events/s from the first commit to the SIEM server holding the last event, and
  p50 / p99 of each event's commit (its ``submit`` returning) -> the server indexing it (the request
  carrying it arriving: for HEC with ack that is before the acknowledgement the feed waits for);
* per SIEM sink, ``backlog``: events/s draining ``--events`` events committed while the feed was stopped
  (the pure feed rate, the pipeline idle);
* lost / duplicated events per sink (each event must arrive exactly once: the servers count by the
  event's id: HEC ``metadata.uid``, Elasticsearch ``_id``, Sentinel ``EventId``), and the process RSS.

Scenarios: no SIEM sink (the pipeline alone), two SIEM sinks taking incidents only (``events = "none"``),
splunk_hec with ack off and on (and on with a faster ``ack_poll``), elasticsearch, sentinel, all three
together, and two SIEM sinks (splunk_hec + elasticsearch) with ``[enrichment]`` off and on (City + ASN
.mmdb written with mmdb_writer, rdns off). Ratios are taken between scenarios of one run: the machine is
small and shared, absolute numbers move between runs.

    python bench/siem_feed.py [--events 20000] [--sources 100] [--per-incident 50] [--only hec,es]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime as dt
import json
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the local SIEM servers the sink tests use

from azure_servers import EntraServer, IngestionServer
from elastic_server import ElasticServer
from hec_server import HecServer
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from canary.config import Config, from_mapping
from canary.crypto import Keyring
from canary.events import DetectionEvent, EventKind, event_key
from canary.listener import Listener
from canary.logs import configure
from canary.runtime import close_runtime, open_runtime
from canary.sinks import sentinel
from canary.store import ControlStore
from canary.store import feed as feed_store
from canary.store.embedded import PostgresServer

KEY = bytes(range(32))
HEC_TOKEN = "8f2c1b7e-3d4a-4c5b-9e6f-0a1b2c3d4e5f"
ES_KEY_ID, ES_KEY = "VuaCfGcBCdbkQm-e5aOx", "ui2lp2axTNmsyakw9tvNnw"
ES_EVENTS = "logs-canary.events-default"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "535fb089-9ff3-47b6-9bfb-4f1264799865"
SECRET = "Aa1Bb~2Cc3.-Dd4Ee5Ff6Gg7Hh8Ii9_Jj0Kk1Ll2"
DCR = "dcr-000a00a000a00000a000000aa000a0aa"
SENTINEL_EVENTS = "Custom-CanaryEvents_CL"
CANARIES = 50

#: public networks the enrichment databases know (KR / JP / US), the events' client addresses are drawn from them
NETWORKS = [("175.192.0.0/10", "KR", "Seoul", 4766, "Korea Telecom"),
            ("126.0.0.0/8", "JP", "Tokyo", 17676, "SoftBank Corp."),
            ("23.32.0.0/11", "US", "Cambridge", 20940, "Akamai International B.V.")]
COUNTRIES = {"KR": "South Korea", "JP": "Japan", "US": "United States"}


# -- the SIEM servers, timed --------------------------------------------------------------------------

@dataclass
class Arrivals:
    """When each event (by its store id) reached a SIEM server, and how many arrived more than once."""

    at: dict[int, float] = field(default_factory=dict)
    duplicates: int = 0

    def mark(self, event_id: int, now: float) -> None:
        if event_id in self.at:
            self.duplicates += 1
        else:
            self.at[event_id] = now


class TimedHec(HecServer):
    """The local HEC, noting when each event record was indexed; it keeps nothing else (the recording
    server would hold every request body, which is not what a SIEM costs the process under test)."""

    def __init__(self, *, use_ack: bool) -> None:
        super().__init__(HEC_TOKEN, use_ack=use_ack)
        self.arrived = Arrivals()

    async def event(self, request: web.Request) -> web.Response:
        response = await super().event(request)
        now = time.monotonic()
        for item in self.indexed:
            meta = item.event.get("metadata", {}) if isinstance(item.event, dict) else {}
            if meta.get("log_name") == "events":
                self.arrived.mark(int(str(meta["uid"]).removeprefix("event/")), now)
        self.indexed.clear()
        self.requests.clear()
        return response


class TimedElastic(ElasticServer):
    """The local ``_bulk`` endpoint, noting when each event document was created (its body dropped)."""

    def __init__(self) -> None:
        super().__init__(api_key=(ES_KEY_ID, ES_KEY))
        self.arrived = Arrivals()

    async def bulk(self, request: web.Request) -> web.StreamResponse:
        response = await super().bulk(request)
        self.requests.clear()
        return response

    def _apply(self, action: str, meta: dict[str, Any], source: Any, pipeline: str | None) -> dict[str, Any]:
        item = super()._apply(action, meta, source, pipeline)
        body = next(iter(item.values()))
        if body["status"] == 201:
            self.indices[body["_index"]][body["_id"]] = {}  # the id stays known (a second create is 409)
            if body["_index"] == ES_EVENTS:
                self.arrived.mark(int(body["_id"].removeprefix("event-")), time.monotonic())
        return item


class TimedIngestion(IngestionServer):
    """The local Logs Ingestion endpoint, noting when each event record was accepted (records dropped)."""

    def __init__(self, entra: EntraServer) -> None:
        super().__init__(entra, DCR, declared_streams())
        self.arrived = Arrivals()

    async def upload(self, request: web.Request) -> web.Response:
        response = await super().upload(request)
        now = time.monotonic()
        records = self.streams[SENTINEL_EVENTS].records
        for record in records:
            self.arrived.mark(int(record["EventId"]), now)
        records.clear()
        self.requests.clear()
        self.statuses.clear()
        return response


def declared_streams() -> dict[str, dict[str, str]]:
    """The DCR stream declarations canary/sinks/sentinel.py documents for operators (as tests/sinks/test_sentinel.py reads them)."""
    doc = sentinel.__doc__ or ""
    block = doc[doc.index('"streamDeclarations"'):doc.index('"dataFlows"')].rstrip().rstrip(",")
    declared = json.loads("{" + block + "}")["streamDeclarations"]
    return {name: {c["name"]: c["type"] for c in spec["columns"]} for name, spec in declared.items()}


class Servers:
    """The SIEM servers a scenario needs, started and stopped together; their sink configurations."""

    def __init__(self) -> None:
        self.stack = contextlib.AsyncExitStack()
        self.arrivals: dict[str, Arrivals] = {}
        self.sinks: list[dict[str, Any]] = []

    async def add(self, kind: str, *, events: str = "unsuppressed", ack_poll: float = 1.0) -> None:
        name = f"{kind}-{len(self.sinks)}"
        if kind in ("hec", "hec_ack"):
            hec = TimedHec(use_ack=kind == "hec_ack")
            await self.stack.enter_async_context(hec)
            sink: dict[str, Any] = {"type": "splunk_hec", "url": hec.base, "token": HEC_TOKEN}
            if kind == "hec_ack":
                sink.update(ack=True, ack_poll=ack_poll)
            self.arrivals[name] = hec.arrived
        elif kind == "es":
            es = TimedElastic()
            await self.stack.enter_async_context(es)
            sink = {"type": "elasticsearch", "url": es.url, "api_key": f"{ES_KEY_ID}:{ES_KEY}"}
            self.arrivals[name] = es.arrived
        elif kind == "sentinel":
            entra = await self.stack.enter_async_context(EntraServer(TENANT, CLIENT, SECRET))
            ingest = await self.stack.enter_async_context(TimedIngestion(entra))
            sink = {"type": "sentinel", "tenant_id": TENANT, "client_id": CLIENT, "client_secret": SECRET,
                    "authority": entra.base, "endpoint": ingest.base, "dcr_immutable_id": DCR}
            self.arrivals[name] = ingest.arrived
        else:
            raise ValueError(kind)
        self.sinks.append({"name": name, "events": events, **sink})
        if events == "none":
            del self.arrivals[name]

    async def close(self) -> None:
        await self.stack.aclose()


# -- the enrichment databases ---------------------------------------------------------------------

def write_databases(directory: Path) -> tuple[Path, Path]:
    """A GeoLite2-City-shaped and a GeoLite2-ASN-shaped database covering :data:`NETWORKS` (as
    tests/kernel/test_enrich.py writes them: IPv6 trees holding IPv4)."""
    city = MMDBWriter(6, "GeoLite2-City", languages=["en"], description="bench city", ipv4_compatible=True)
    asn = MMDBWriter(6, "GeoLite2-ASN", languages=["en"], description="bench asn", ipv4_compatible=True)
    for net, country, town, number, org in NETWORKS:
        city.insert_network(IPSet([net]), {"country": {"iso_code": country, "names": {"en": COUNTRIES[country]}},
                                           "city": {"names": {"en": town}}})
        asn.insert_network(IPSet([net]), {"autonomous_system_number": number, "autonomous_system_organization": org})
    city.to_db_file(str(directory / "city.mmdb"))
    asn.to_db_file(str(directory / "asn.mmdb"))
    return directory / "city.mmdb", directory / "asn.mmdb"


def addresses(n: int, seed: int = 7) -> list[str]:
    """``n`` distinct public client addresses inside :data:`NETWORKS`."""
    rng = random.Random(seed)
    out: set[str] = set()
    bases = [(175 << 24 | 192 << 16, 1 << 22), (126 << 24, 1 << 24), (23 << 24 | 32 << 16, 1 << 21)]
    while len(out) < n:
        base, size = bases[len(out) % len(bases)]
        value = base + rng.randrange(1, size - 1)
        out.add(".".join(str(value >> s & 255) for s in (24, 16, 8, 0)))
    return sorted(out)


# -- one scenario ---------------------------------------------------------------------------------

def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def rss_mb() -> tuple[float, float]:
    """This process's resident set and its peak, MB."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


@dataclass
class Scenario:
    label: str
    sinks: list[str]  # hec | hec_ack | es | sentinel
    events: str = "unsuppressed"
    enrich: bool = False
    ack_poll: float = 1.0


@dataclass
class SinkResult:
    name: str
    live_rate: float
    p50_ms: float
    p99_ms: float
    backlog_rate: float
    lost: int
    duplicates: int


@dataclass
class Result:
    label: str
    commit_rate: float
    sinks: list[SinkResult]
    rss_mb: float


class Bench:
    def __init__(self, server: PostgresServer, tmp: Path, args: argparse.Namespace) -> None:
        self.server = server
        self.tmp = tmp
        self.args = args
        self.dbs = write_databases(tmp)
        self.addresses = addresses(args.addresses)
        self.run = 0

    def make_events(self, tag: str, n: int, canary_ids: list[int]) -> list[DetectionEvent]:
        now = dt.datetime.now(dt.UTC)
        per = self.args.per_incident
        return [DetectionEvent(kind=EventKind.READ, source="jsonlog:shop", key=event_key("bench", tag, i),
                               group=f"{tag}-q{i // per}", canary_id=canary_ids[i % len(canary_ids)],
                               observed_at=now + dt.timedelta(microseconds=i),
                               actor={"user": f"reader_{i // per}"},
                               origin={"client_addr": self.addresses[(i // per) % len(self.addresses)],
                                       "application_name": "psql", "database": "shop"},
                               evidence={"query": f"SELECT * FROM customers WHERE id > {i}", "table": "public.customers"})
                for i in range(n)]

    async def scenario(self, sc: Scenario) -> Result:
        self.run += 1
        db = f"siem_{self.run}"
        admin = await asyncpg.connect(self.server.dsn())
        await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{db}"')
        await admin.close()
        servers = Servers()
        try:
            for kind in sc.sinks:
                await servers.add(kind, events=sc.events, ack_poll=sc.ack_poll)
            enrichment: dict[str, Any] = {"rdns": False}
            if sc.enrich:
                enrichment.update(city_db=str(self.dbs[0]), asn_db=str(self.dbs[1]))
            cfg: Config = from_mapping({
                "canary": {"data_dir": str(self.tmp), "log_level": "warning"},
                "control": {"dsn": self.server.dsn(db), "pool_max": 20},
                "sinks": servers.sinks, "enrichment": enrichment,
            })
            return await self._measure(sc, cfg, servers)
        finally:
            await servers.close()
            admin = await asyncpg.connect(self.server.dsn())
            await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            await admin.close()

    async def _measure(self, sc: Scenario, cfg: Config, servers: Servers) -> Result:
        n = self.args.events
        store = await ControlStore(cfg).open()
        canary_ids = [r["id"] for r in await store.pool.fetch(
            "INSERT INTO canaries (uid, kind, datastore, label, location_enc, location_idx, key_id)"
            " SELECT 'b'||g, 'customer', 'shop', 'shop/public.customers', '\\x00', int8send(g), 'k'"
            " FROM generate_series(1, $1) g RETURNING id", CANARIES)]
        runtime = await open_runtime(cfg, keyring=Keyring(KEY), store=store)
        listener = Listener(runtime, [])
        await listener.start()
        try:
            fed = len(servers.arrivals)
            for _ in range(400):  # the feed starts each sink at the present: wait for every cursor
                if await store.pool.fetchval("SELECT count(*) FROM feed_cursors") >= fed:
                    break
                await asyncio.sleep(0.05)
            # live: the pipeline committing while the feed sends
            committed: dict[str, float] = {}
            live = self.make_events(f"live{self.run}", n, canary_ids)
            started = time.monotonic()
            await self._submit(runtime.submit, live, committed)
            commit_s = time.monotonic() - started
            await self._arrived(servers, n)
            ids = {r["key"]: r["id"] for r in await store.pool.fetch("SELECT id, key FROM events")}
            commit_at = {ids[k]: t for k, t in committed.items()}
            results = {name: self._live(name, arr, commit_at, started) for name, arr in servers.arrivals.items()}
            # backlog: events committed while the feed is stopped, then drained
            backlog: dict[str, float] = {}
            if servers.arrivals and listener.feed is not None and self.args.backlog:
                await listener.feed.stop()
                before = {name: set(arr.at) for name, arr in servers.arrivals.items()}
                await self._submit(runtime.submit, self.make_events(f"backlog{self.run}", n, canary_ids), {})
                resumed = time.monotonic()
                await listener.feed.start()
                await self._arrived(servers, 2 * n)
                for name, arr in servers.arrivals.items():
                    last = max(t for i, t in arr.at.items() if i not in before[name])
                    backlog[name] = n / (last - resumed)
            stored = await store.pool.fetchval("SELECT count(*) FROM events")
            await self._explain_losses(store, servers)
            sinks = [SinkResult(name, *results[name], backlog.get(name, float("nan")),
                                stored - len(arr.at), arr.duplicates) for name, arr in servers.arrivals.items()]
        finally:
            await listener.stop()
            await close_runtime(runtime)
            await store.close()
        return Result(sc.label, n / commit_s, sinks, rss_mb()[0])

    @staticmethod
    async def _explain_losses(store: ControlStore, servers: Servers) -> None:
        """For a sink that is missing events: which (kind, source, txid range) and its feed's state."""
        for name, arr in servers.arrivals.items():
            rows = await store.pool.fetch(
                "SELECT kind, source, count(*) AS n, min(id) AS first, max(id) AS last,"
                " min(txid::text::bigint) AS txmin, max(txid::text::bigint) AS txmax"
                " FROM events WHERE NOT (id = ANY($1::bigint[])) GROUP BY kind, source", list(arr.at))
            if rows:
                state = [dict(r) for r in await feed_store.status(store.pool) if r["sink"] == name]
                print(f"    {name} missing: {[dict(r) for r in rows]}; feed: {state}")

    async def _submit(self, submit: Callable[[DetectionEvent], Awaitable[None]], events: list[DetectionEvent],
                      committed: dict[str, float]) -> None:
        queue = list(reversed(events))

        async def source() -> None:
            while queue:
                e = queue.pop()
                await submit(e)
                committed[e.key] = time.monotonic()

        await asyncio.gather(*(source() for _ in range(self.args.sources)))

    async def _arrived(self, servers: Servers, n: int) -> None:
        deadline = time.monotonic() + self.args.timeout
        while any(len(a.at) < n for a in servers.arrivals.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    @staticmethod
    def _live(name: str, arr: Arrivals, commit_at: dict[int, float], started: float) -> tuple[float, float, float]:
        latencies = [arr.at[i] - t for i, t in commit_at.items() if i in arr.at]
        last = max((arr.at[i] for i in commit_at if i in arr.at), default=float("nan"))
        return len(latencies) / (last - started), pct(latencies, 50) * 1000, pct(latencies, 99) * 1000


def show(r: Result) -> None:
    print(f"  {r.label:<26} commit {r.commit_rate:>7,.0f} ev/s  RSS {r.rss_mb:,.0f} MB")
    for s in r.sinks:
        print(f"  {'':<26}   {s.name:<12} live {s.live_rate:>7,.0f} ev/s  p50 {s.p50_ms:>6,.0f} ms  p99 {s.p99_ms:>6,.0f} ms"
              f"  backlog {s.backlog_rate:>7,.0f} ev/s  lost {s.lost} dup {s.duplicates}")


SCENARIOS = {
    "none": Scenario("no SIEM sink", []),
    "incidents": Scenario("2 SIEM sinks, events=none", ["hec", "es"], events="none"),
    "hec": Scenario("splunk_hec ack off", ["hec"]),
    "hec_ack": Scenario("splunk_hec ack on", ["hec_ack"]),
    "hec_ack_fast": Scenario("splunk_hec ack, poll 0.05s", ["hec_ack"], ack_poll=0.05),
    "es": Scenario("elasticsearch", ["es"]),
    "sentinel": Scenario("sentinel", ["sentinel"]),
    "all": Scenario("all: hec ack, es, sentinel", ["hec_ack", "es", "sentinel"]),
    "two": Scenario("2 SIEM sinks (hec, es)", ["hec", "es"]),
    "two_enriched": Scenario("2 SIEM sinks, enrichment", ["hec", "es"], enrich=True),
}


async def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--sources", type=int, default=100, help="concurrent submitters")
    ap.add_argument("--per-incident", type=int, default=50, help="events per incident")
    ap.add_argument("--addresses", type=int, default=2_000, help="distinct client addresses")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for a scenario's events to arrive")
    ap.add_argument("--no-backlog", dest="backlog", action="store_false", help="skip the backlog drain")
    ap.add_argument("--only", default="", help=f"comma-separated scenarios of {','.join(SCENARIOS)}")
    ap.add_argument("--profile", default="", help="a scenario to run under cProfile (top functions printed)")
    args = ap.parse_args()
    configure("warning", "console")
    rss0 = rss_mb()[0]
    tmp = Path(tempfile.mkdtemp(prefix="canary-bench-"))
    server = PostgresServer(tmp / "pg")
    await asyncio.to_thread(server.start)
    bench = Bench(server, tmp, args)
    # the scenarios whose ratios the summary takes run twice, interleaved, and the median counts
    wanted = [s for s in args.only.split(",") if s] or [*SCENARIOS, "none", "two", "two_enriched", "incidents"]
    results: dict[str, list[Result]] = {}
    try:
        print(f"SIEM event feed: {args.events:,} events per scenario, {args.sources} concurrent sources, "
              f"{args.per_incident} events per incident, {args.addresses:,} client addresses; one listener in process; "
              f"RSS at start {rss0:,.0f} MB")
        for key in wanted:
            if key == args.profile:
                profiler = cProfile.Profile()
                profiler.enable()
                result = await bench.scenario(SCENARIOS[key])
                profiler.disable()
                pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
            else:
                result = await bench.scenario(SCENARIOS[key])
            results.setdefault(key, []).append(result)
            show(result)
        summary(results)
        now, peak = rss_mb()
        print(f"RSS: {rss0:,.0f} MB at start, {now:,.0f} MB after, peak {peak:,.0f} MB")
    finally:
        await asyncio.to_thread(server.destroy)
        shutil.rmtree(tmp, ignore_errors=True)


def summary(results: dict[str, list[Result]]) -> None:
    """The ratios, each between medians of the scenarios' runs."""
    def rate(key: str) -> float | None:
        return statistics.median(r.commit_rate for r in results[key]) if key in results else None

    def sink(key: str, i: int) -> SinkResult | None:
        if key not in results or len(results[key][0].sinks) <= i:
            return None
        runs = [r.sinks[i] for r in results[key]]
        def median(f: str) -> float:
            return float(statistics.median(getattr(s, f) for s in runs))

        return SinkResult(runs[0].name, median("live_rate"), median("p50_ms"), median("p99_ms"), median("backlog_rate"),
                          sum(s.lost for s in runs), sum(s.duplicates for s in runs))

    none, two, incidents = rate("none"), rate("two"), rate("incidents")
    if none and two:
        print(f"pipeline commit rate, 2 SIEM sinks feeding vs no SIEM sink: {two / none:.2f}x "
              f"({two:,.0f} vs {none:,.0f} ev/s)")
    if incidents and two:
        print(f"pipeline commit rate, 2 SIEM sinks feeding vs the same sinks taking incidents only: {two / incidents:.2f}x "
              f"({two:,.0f} vs {incidents:,.0f} ev/s)")
    enriched = rate("two_enriched")
    if two and enriched:
        print(f"pipeline commit rate, 2 SIEM sinks feeding, enrichment on vs off: {enriched / two:.2f}x "
              f"({enriched:,.0f} vs {two:,.0f} ev/s)")
    for i in range(2):
        plain, rich = sink("two", i), sink("two_enriched", i)
        if plain is None or rich is None:
            continue
        print(f"enrichment on vs off, {plain.name}: backlog {rich.backlog_rate / plain.backlog_rate:.2f}x "
              f"({rich.backlog_rate:,.0f} vs {plain.backlog_rate:,.0f} ev/s), live p99 {rich.p99_ms:,.0f} vs "
              f"{plain.p99_ms:,.0f} ms")
    slow, fast = sink("hec_ack", 0), sink("hec", 0)
    if slow and fast:
        print(f"splunk_hec ack on vs off: backlog {slow.backlog_rate / fast.backlog_rate:.2f}x "
              f"({slow.backlog_rate:,.0f} vs {fast.backlog_rate:,.0f} ev/s)")


if __name__ == "__main__":
    asyncio.run(main())
