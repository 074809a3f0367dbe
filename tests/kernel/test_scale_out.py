"""Scale-out: several listener processes on one control store.

Three real ``canary listen`` subprocesses share the test's control database; a shipper posts signed
read records round-robin to ``/ingest/jsonlog`` and retries a batch that got no 200 at the next
listener; one listener is killed with SIGKILL mid-ingest. Every event is stored once, each incident
group has one incident, PagerDuty opens one alert per incident, and the once-per-cluster jobs run in
one listener at a time (the leader lease), taken over when the leader dies. Around it: the grouping
race in the pipeline made deterministic, a delivery repeated after a dispatcher died between the
sink's answer and its mark (one page: the dedup key), and the lease itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp
import pytest
from aiohttp import web
from alerting_servers import PagerDutyServer, drained
from testkit import TEST_KEYRING, CanaryRows, MakeConfig, customer_canary, read_record

from canary import crypto
from canary.events import DetectionEvent, EventKind, event_key
from canary.listener import Listener
from canary.outbox import Dispatcher
from canary.pipeline import Pipeline
from canary.postgres.http_ingest import PATH
from canary.runtime import build_sinks, open_runtime
from canary.store import ControlStore, leases
from canary.store.embedded import free_port
from canary.typing import SourceContext

ROOT = Path(__file__).resolve().parents[2]
KEY = "R0UT1NGK3Y000000000000000000000S"
TOKEN = "ingest-t0ken-for-scale-out-tests"
NODES = [f"n{i}" for i in range(6)]  # one incident group per node (same reader, same datastore)
CANARIES = 40
T0 = dt.datetime(2026, 3, 1, 3, 0, tzinfo=dt.timezone.utc)


# -- the listeners ----------------------------------------------------------------------------------

def _config_text(data_dir: Path, key_file: Path, control_dsn: str, pd: PagerDutyServer) -> str:
    nodes = "\n".join(f'[[coverage.nodes]]\nname = "{n}"\ndatastore = "shop"\n' for n in NODES)
    return textwrap.dedent(f'''
        [canary]
        data_dir = "{data_dir}"
        master_key_file = "{key_file}"
        log_level = "info"
        [control]
        dsn = "{control_dsn}"
        pool_max = 6
        [listener]
        host = "127.0.0.1"
        leader_lease = "3s"
        shutdown_grace = "2s"
        [alerting]
        retry_initial = 0.05
        retry_max = 0.5
        sink_timeout = 0.5
        workers = 2
        [coverage]
        ingest_token = "{TOKEN}"
        [[datastores]]
        name = "shop"
        dsn = "postgresql://reader@127.0.0.1:1/shop"
        [[sinks]]
        name = "pd"
        type = "pagerduty"
        routing_key = "{KEY}"
        url = "{pd.url}"
        timeout = 0.5
    ''') + nodes


class Cluster:
    """``canary listen`` subprocesses on one config, each on its own loopback port."""

    def __init__(self, config: Path, logs: Path, n: int) -> None:
        self.config, self.logs = config, logs
        self.ports = [free_port() for _ in range(n)]
        self.procs: list[subprocess.Popen[bytes]] = []
        self._files: list[BinaryIO] = []

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for i, port in enumerate(self.ports):
            out = (self.logs / f"listener-{i}.log").open("wb")
            self._files.append(out)
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "canary", "--config", str(self.config), "listen", "--port", str(port)],
                stdout=out, stderr=subprocess.STDOUT, env=env))

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    def output(self, i: int) -> str:
        return (self.logs / f"listener-{i}.log").read_text(errors="replace")

    async def ready(self, http: aiohttp.ClientSession, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for i in range(len(self.ports)):
            while True:
                assert self.procs[i].poll() is None, self.output(i)[-3000:]
                assert time.monotonic() < deadline, f"listener {i} not ready:\n{self.output(i)[-3000:]}"
                try:
                    async with http.get(self.url(i) + "/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)

    def kill(self, i: int) -> None:
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait(10)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for f in self._files:
            f.close()


@asynccontextmanager
async def cluster(tmp_path: Path, data_dir: Path, control_dsn: str, pd: PagerDutyServer, n: int = 3) -> AsyncIterator[Cluster]:
    key_file = tmp_path / "master.key"
    crypto.write_key_file(key_file, bytes(range(32)))  # TEST_KEYRING's key: the records below are signed with it
    cfg = tmp_path / "canary.toml"
    cfg.write_text(_config_text(data_dir, key_file, control_dsn, pd))
    c = Cluster(cfg, tmp_path, n)
    c.start()
    try:
        yield c
    finally:
        c.stop()


# -- the shipper ------------------------------------------------------------------------------------

def batches(total: int, size: int) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(node, records): ``total`` signed reads of the canaries, ``size`` per batch, nodes in turn; each
    record's backend pid is unique, so each is one event."""
    pid = 1000
    for b in range(total // size):
        records = []
        for _ in range(size):
            pid += 1
            records.append(read_record(1 + pid % CANARIES, pid, keyring=TEST_KEYRING))
        yield NODES[b % len(NODES)], records


class Shipper:
    """What Vector / Fluent Bit do: a batch that got no 200 (connection refused or reset, 5xx, 408)
    is sent again, to the next listener; ``first`` is where each batch goes first (round-robin)."""

    def __init__(self, http: aiohttp.ClientSession, c: Cluster) -> None:
        self.http, self.cluster = http, c
        self.retries = 0
        self.answers: dict[int, list[int]] = {}
        self.in_flight: dict[int, int] = {}  # listener -> requests being answered

    async def send(self, first: int, node: str, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        body = b"".join(json.dumps(r).encode() + b"\n" for r in records)
        target = first
        for _ in range(30):
            self.in_flight[target] = self.in_flight.get(target, 0) + 1
            try:
                async with self.http.post(self.cluster.url(target) + PATH, params={"node": node}, data=body,
                                          headers={"Authorization": f"Bearer {TOKEN}",
                                                   "Content-Type": "application/x-ndjson"}) as r:
                    self.answers.setdefault(target, []).append(r.status)
                    if r.status == 200:
                        return dict(await r.json())
                    assert r.status >= 500 or r.status == 408, (r.status, await r.text())
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError):
                pass
            finally:
                self.in_flight[target] -= 1
            self.retries += 1
            target = (target + 1) % len(self.cluster.ports)
            await asyncio.sleep(0.05)
        raise AssertionError("no listener took the batch")


async def _until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_three_listeners_one_killed_mid_ingest_store_each_event_once_and_page_once(
    store: ControlStore, canary_rows: CanaryRows, tmp_path: Path, data_dir: Path, control_dsn: str,
) -> None:
    """Three listeners share the control store; 6,000 signed reads of 6 nodes are shipped in batches of
    200 round-robin with 3 batches in flight; listener 1 is SIGKILLed while a batch is being posted to
    it. Every record is one stored event, each node's group is one incident (batches of one group
    committed concurrently by different listeners), PagerDuty opens one alert per incident, the
    outbox drains (the dead listener's leased rows are sent by another), one surviving listener holds
    the leader lease, and the ingest token appears in no listener's output."""
    await canary_rows(*(customer_canary(pk) for pk in range(1, CANARIES + 1)))
    total, size, parallel = 6000, 200, 3
    started = time.monotonic()
    async with PagerDutyServer(KEY) as pd, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
        async with cluster(tmp_path, data_dir, control_dsn, pd) as c:
            await c.ready(http)
            shipper = Shipper(http, c)
            work = list(batches(total, size))
            queue: asyncio.Queue[tuple[int, str, list[dict[str, Any]]]] = asyncio.Queue()
            for i, (node, records) in enumerate(work):
                queue.put_nowait((i % 3, node, records))
            results: list[dict[str, Any]] = []
            killed = asyncio.Event()

            async def worker() -> None:
                while not queue.empty():
                    first, node, records = queue.get_nowait()
                    results.append(await shipper.send(first, node, records))

            async def killer() -> None:
                # once a third of the batches are in and a request to listener 1 is being answered
                while not (len(results) >= len(work) // 3 and shipper.in_flight.get(1, 0) > 0):
                    await asyncio.sleep(0.002)
                c.kill(1)
                killed.set()

            kill_task = asyncio.create_task(killer())
            await asyncio.gather(*(worker() for _ in range(parallel)))
            assert killed.is_set() or await asyncio.wait_for(kill_task, 5) is None
            assert sum(r["events"] for r in results) >= total  # a batch retried elsewhere may be counted twice
            assert all(r["quarantined"] == 0 for r in results)
            ingested = time.monotonic()

            await _until(lambda: _delivered(store), 25, "outbox did not drain after the kill")
            alive = {c.procs[i].pid for i in (0, 2)}
            holder = await leases.holder(store.pool, "leader")
            await _until(lambda: _led_by(store, alive), 10, "no surviving listener took the leader lease")
            leaders = []
            for i in (0, 2):
                async with http.get(c.url(i) + "/healthz") as r:
                    leaders.append((await r.json())["leader"])
            outputs = [c.output(i) for i in range(3)]
        events = await store.pool.fetchrow("SELECT count(*) AS n, count(DISTINCT key) AS k FROM events")
        incidents = await store.pool.fetch("SELECT group_key, dedup_key, event_count FROM incidents ORDER BY group_key")
    assert shipper.retries >= 1  # the kill really cut a batch off
    assert events["n"] == events["k"] == total
    assert sorted(r["group_key"] for r in incidents) == sorted(f"pg:{n}:shop:mallory:read" for n in NODES)
    assert sum(r["event_count"] for r in incidents) == total
    assert set(pd.opened) == {r["dedup_key"] for r in incidents} and set(pd.opened.values()) == {1}
    assert sorted(leaders) == [False, True], (holder, leaders)
    assert all(TOKEN not in out for out in outputs)
    print(f"\nscale-out: {total} records in {ingested - started:.1f}s (with the kill), {shipper.retries} retries,"
          f" {len(pd.requests)} PagerDuty requests for {len(incidents)} incidents; answers {shipper.answers}")


async def _delivered(store: ControlStore) -> bool:
    row = await store.pool.fetchrow("SELECT count(*) FILTER (WHERE status <> 'delivered') AS p, count(*) AS n FROM outbox")
    return bool(row["n"] > 0 and row["p"] == 0)


async def _led_by(store: ControlStore, pids: set[int]) -> bool:
    holder = await leases.holder(store.pool, "leader")
    return holder is not None and int(holder.split(":")[-2]) in pids


# -- the grouping race, deterministic -----------------------------------------------------------------

def _events(prefix: str, n: int, group: str) -> list[DetectionEvent]:
    return [DetectionEvent(kind=EventKind.READ, source="race", key=event_key(prefix, i), group=group, canary_id=None,
                           observed_at=T0 + dt.timedelta(milliseconds=i), actor={"user": "mallory"})
            for i in range(n)]


async def test_two_listeners_committing_one_group_at_once_open_one_incident(make_config: MakeConfig) -> None:
    """Listener A has recorded the first events of a group (its new incident not yet committed) when
    listener B records more of the same group: B waits for A's commit and joins A's incident instead
    of opening a second one (the pipeline locks each group for the transaction; without the lock B
    sees no open incident and opens its own)."""
    cfg = make_config(sinks=[{"name": "out", "type": "stdout"}])
    a_store, b_store = await ControlStore(cfg).open(), await ControlStore(cfg).open()
    try:
        a, b = Pipeline(a_store.pool, cfg), Pipeline(b_store.pool, cfg)
        async with a_store.pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            await a._record(conn, _events("a", 3, "race-group"))
            joining = asyncio.create_task(b.record(_events("b", 3, "race-group")))
            await asyncio.sleep(0.5)
            assert not joining.done()  # B waits on the group lock A holds
            await tx.commit()
        await asyncio.wait_for(joining, 10)
        rows = await a_store.pool.fetch("SELECT id, event_count FROM incidents")
        outbox = await a_store.pool.fetchval("SELECT count(*) FROM outbox WHERE action = 'trigger'")
    finally:
        await a_store.close()
        await b_store.close()
    assert [r["event_count"] for r in rows] == [6]
    assert outbox == 1


async def test_many_groups_raced_by_three_pipelines_are_one_incident_each(make_config: MakeConfig) -> None:
    """Three pipelines on three pools (three listeners) record the same 600 events of 30 groups, each
    in its own order and batch sizes, at once: 600 events stored, one incident and one trigger per
    group."""
    cfg = make_config(sinks=[{"name": "out", "type": "stdout"}])
    stores = [await ControlStore(cfg).open() for _ in range(3)]
    try:
        events = [e for g in range(30) for e in _events(f"g{g}", 20, f"group-{g}")]
        orders = [events, events[::-1], events[1::2] + events[::2]]

        async def run(p: Pipeline, evs: list[DetectionEvent], size: int) -> None:
            for i in range(0, len(evs), size):
                await p.record(evs[i:i + size])

        await asyncio.gather(*(run(Pipeline(s.pool, cfg), o, size) for s, o, size in zip(stores, orders, (7, 13, 50))))
        pool = stores[0].pool
        n_events = await pool.fetchval("SELECT count(*) FROM events")
        per_group = await pool.fetch("SELECT group_key, count(*) AS n, sum(event_count) AS e FROM incidents GROUP BY 1")
        triggers = await pool.fetchval("SELECT count(*) FROM outbox WHERE action = 'trigger'")
    finally:
        for s in stores:
            await s.close()
    assert n_events == 600
    assert len(per_group) == 30 and {(r["n"], r["e"]) for r in per_group} == {(1, 20)}
    assert triggers == 30


# -- delivery when a dispatcher dies after the sink answered ---------------------------------------------

async def test_dispatcher_dead_after_the_sink_answered_is_resent_once_and_pages_once(
    make_config: MakeConfig, http: aiohttp.ClientSession,
) -> None:
    """Dispatcher A sends a trigger; PagerDuty takes it, and A dies before marking the row (its store
    connections cut). After A's lease ends dispatcher B sends it again: at-least-once, so PagerDuty
    sees the trigger twice, with one dedup key, and opens one alert."""
    async with PagerDutyServer(KEY) as pd:
        cfg = make_config(sinks=[{"name": "pd", "type": "pagerduty", "routing_key": KEY, "url": pd.url, "timeout": 0.5}],
                          alerting={"sink_timeout": 0.5, "workers": 1, "retry_initial": 0.05, "retry_max": 0.2})
        a_store, b_store = await ControlStore(cfg).open(), await ControlStore(cfg).open()
        try:
            await Pipeline(b_store.pool, cfg).record(_events("once", 1, "once-group"))
            pd.delay = 0.3  # the request is taken (recorded) before it is answered
            a = Dispatcher(a_store.pool, build_sinks(cfg, http), cfg.alerting, poll=0.05)
            await a.start()
            deadline = time.monotonic() + 10
            while not pd.requests:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            a_store.pool.terminate()  # A dies: nothing it does from now on reaches the store
            await asyncio.sleep(pd.delay + 0.2)  # PagerDuty answers A (and opens the alert)
            for t in a._tasks:
                t.cancel()
            await asyncio.gather(*a._tasks, return_exceptions=True)
            a._tasks, a._listen_conn = [], None
            assert await b_store.pool.fetchval("SELECT status FROM outbox") == "pending"
            b = Dispatcher(b_store.pool, build_sinks(cfg, http), cfg.alerting, poll=0.05)
            await b.start()
            try:
                await drained(b_store.pool, a.lease + 10)
            finally:
                await b.stop()
            resent_after = pd.requests[1].at - pd.requests[0].at
            key = await b_store.pool.fetchval("SELECT dedup_key FROM incidents")
        finally:
            await b_store.close()
    assert [r.json()["dedup_key"] for r in pd.requests] == [key, key]
    assert pd.opened == {key: 1}
    assert resent_after >= a.lease - 1.0  # not before A's lease ended


# -- the lease ------------------------------------------------------------------------------------

async def test_leader_lease_is_exclusive_renewable_and_taken_over_after_expiry(store: ControlStore) -> None:
    """One holder at a time: a second listener cannot take a live lease, the holder renews it, a
    released lease is free at once, and an expired one (its holder died) is taken over."""
    pool = store.pool
    assert await leases.acquire(pool, "leader", "a", 1.0)
    assert not await leases.acquire(pool, "leader", "b", 1.0)
    assert await leases.acquire(pool, "leader", "a", 1.0)  # renewed
    assert await leases.holder(pool, "leader") == "a"
    await asyncio.sleep(1.2)
    assert await leases.holder(pool, "leader") is None
    assert await leases.acquire(pool, "leader", "b", 5.0)  # a died: b takes over
    assert not await leases.release(pool, "leader", "a")
    assert await leases.release(pool, "leader", "b")
    assert await leases.acquire(pool, "leader", "a", 5.0)


async def test_listener_runs_cluster_singletons_only_while_leader(make_config: MakeConfig, store: ControlStore) -> None:
    """Two listeners on one store, each with a cluster-singleton component and an ordinary one: both
    run the ordinary one, only the leader runs the singleton; when the leader stops, the other
    listener starts it within the lease."""
    cfg = make_config(listener={"leader_lease": "1.5s", "shutdown_grace": "1s"})
    listeners, parts = [], []
    for _ in range(2):
        rt = await open_runtime(cfg, keyring=TEST_KEYRING, store=await ControlStore(cfg).open())
        comps = [Part("everywhere", False), Part("once", True)]
        parts.append(comps)
        listeners.append(Listener(rt, comps))
    for lst in listeners:
        await lst.start()
    stopped: list[Listener] = []
    try:
        await _until(lambda: _true(any(lst.leader for lst in listeners)), 5, "nobody took the lease")
        assert [lst.leader for lst in listeners].count(True) == 1
        lead = next(i for i, lst in enumerate(listeners) if lst.leader)
        assert [p[0].running for p in parts] == [True, True]
        assert [p[1].running for p in parts] == [i == lead for i in range(2)]
        await listeners[lead].stop()  # releases the lease
        stopped.append(listeners[lead])
        other = 1 - lead
        await _until(lambda: _true(parts[other][1].running), 3, "the other listener did not take over")
        assert listeners[other].leader and not parts[lead][1].running
    finally:
        for lst in listeners:
            if lst not in stopped:
                await lst.stop()


class Part:
    """A listener component that only records whether it runs."""

    def __init__(self, name: str, singleton: bool) -> None:
        self.name = name
        self.cluster_singleton = singleton
        self.running = False

    def routes(self) -> list[web.RouteDef]:
        return []

    async def start(self, runtime: SourceContext) -> None:
        self.running = True

    async def stop(self) -> None:
        self.running = False


async def _true(value: bool) -> bool:
    return value
