"""SIEM sinks end to end through a running listener: an incident reaches Splunk HEC (indexer
acknowledgement on) and Elasticsearch as a Detection Finding / ECS alert, every committed event follows
through the event feed as an OCSF record / ECS event (enriched, valid against the OCSF schema), and
events committed while no listener runs arrive after the restart, each once."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

from aiohttp.test_utils import TestServer
from elastic_server import ElasticServer
from hec_server import HecServer
from ocsf_support import validate_ocsf
from testkit import MakeConfig

from canary.crypto import Keyring
from canary.events import DetectionEvent, EventKind, event_key
from canary.listener import Listener
from canary.pipeline import Pipeline
from canary.runtime import open_runtime
from canary.store import ControlStore

TOKEN = "8f2c1b7e-3d4a-4c5b-9e6f-0a1b2c3d4e5f"
KEY_ID, KEY = "VuaCfGcBCdbkQm-e5aOx", "ui2lp2axTNmsyakw9tvNnw"
ALERTS, EVENTS = "logs-canary.alerts-default", "logs-canary.events-default"


def _events(prefix: str, n: int) -> list[DetectionEvent]:
    now = dt.datetime.now(dt.timezone.utc)
    return [DetectionEvent(kind=EventKind.READ, source="jsonlog:shop", key=event_key(prefix, i), group=f"{prefix}-q",
                           canary_id=None, observed_at=now, actor={"user": "mallory"},
                           origin={"client_addr": "10.20.30.40", "database": "shop"},
                           evidence={"query": f"SELECT * FROM customers -- {prefix} {i}", "table": "public.customers"})
            for i in range(n)]


async def _until(check: Callable[[], bool], seconds: float = 20.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not reached in time")


async def _running(cfg: Any, keyring: Keyring, store: ControlStore) -> tuple[Listener, TestServer]:
    runtime = await open_runtime(cfg, keyring=keyring, store=store)
    listener = Listener(runtime, [])
    server = TestServer(listener.app(), host="127.0.0.1")
    await server.start_server()
    # the feed starts each sink at the present: wait until both cursors exist before committing events
    for _ in range(200):
        if await store.pool.fetchval("SELECT count(*) FROM feed_cursors") == 2:
            break
        await asyncio.sleep(0.05)
    return listener, server


async def test_incidents_and_every_event_reach_splunk_and_elasticsearch(
        store: ControlStore, make_config: MakeConfig, keyring: Keyring) -> None:
    async with HecServer(TOKEN, use_ack=True) as hec, ElasticServer(api_key=(KEY_ID, KEY)) as es:
        cfg = make_config(
            sinks=[{"name": "splunk", "type": "splunk_hec", "url": hec.base, "token": TOKEN, "ack": True,
                    "ack_poll": 0.05, "event_batch": 7},
                   {"name": "elastic", "type": "elasticsearch", "url": es.url, "api_key": f"{KEY_ID}:{KEY}"}],
            enrichment={"rdns": False},
        )
        listener, server = await _running(cfg, keyring, store)
        try:
            await listener.runtime.submit_many(_events("first", 20))
            await _until(lambda: len(es.docs(EVENTS)) == 20 and len(es.docs(ALERTS)) >= 1
                         and sum(1 for e in hec.events if e["metadata"]["log_name"] == "events") == 20)
        finally:
            await server.close()
        # a second batch committed while no listener runs: the next listener's feed sends it
        await store.open()  # the listener closed it on its way out
        await Pipeline(store.pool, cfg).record(_events("while-down", 5))
        listener, server = await _running(cfg, keyring, store)
        try:
            await _until(lambda: len(es.docs(EVENTS)) == 25)
            await _until(lambda: sum(1 for e in hec.events if e["metadata"]["log_name"] == "events") == 25)
        finally:
            await server.close()

    records = hec.events
    for record in records:
        validate_ocsf(record)
    findings = [r for r in records if r["metadata"]["log_name"] == "incidents"]
    events = [r for r in records if r["metadata"]["log_name"] == "events"]
    assert findings and {f["class_uid"] for f in findings} == {2004}
    assert len({e["metadata"]["uid"] for e in events}) == 25 == len(events)  # each event once
    assert {e["class_uid"] for e in events} == {6005}
    ev = events[0]
    assert ev["src_endpoint"]["ip"] == "10.20.30.40" and ev["enrichments"][0]["data"]["internal"] is True
    assert {a["technique"]["uid"] for a in ev["unmapped"]["attacks"]} == {"T1213"}
    assert findings[0]["finding_info"]["attacks"][0]["technique"]["uid"] == "T1213"
    docs = list(es.docs(EVENTS).values())
    assert {d["event"]["kind"] for d in docs} == {"event"} and docs[0]["source"]["ip"] == "10.20.30.40"
    assert all(n == 1 for n in es.creates.values())  # nothing created twice
    await store.open()
    status = {r["sink"]: r for r in await store.pool.fetch("SELECT sink, delivered FROM feed_cursors")}
    assert status["splunk"]["delivered"] == status["elastic"]["delivered"] == 25
