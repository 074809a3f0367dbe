"""The pipeline records events idempotently, groups them into incidents and enqueues notifications."""

from __future__ import annotations

import asyncio
import datetime as dt
import random

import pytest
from testkit import MakeConfig

from canary.drilltags import register_markers, register_run
from canary.errors import EventRefused, IncidentError
from canary.events import EARLIEST, DetectionEvent, EventKind, event_key
from canary.incidents import change_status
from canary.pipeline import Pipeline
from canary.store import ControlStore


def _ev(i: int, group: str = "g1", canary_id: int | None = None) -> DetectionEvent:
    return DetectionEvent(
        kind=EventKind.READ, source="test", key=event_key("t", group, i), group=group, canary_id=canary_id,
        observed_at=dt.datetime.now(dt.timezone.utc), actor={"user": "mallory"}, origin={"client_addr": "10.0.0.9"},
    )


async def _canary_ids(store: ControlStore, n: int) -> list[int]:
    rows = await store.pool.fetch(
        "INSERT INTO canaries (uid, kind, datastore, label, location_enc, location_idx, key_id)"
        " SELECT 'u'||g, 'customer', 'shop', 'shop/public.customers', '\\x00', int8send(g), 'k'"
        " FROM generate_series(1, $1) g RETURNING id", n,
    )
    return [r["id"] for r in rows]


async def test_duplicate_events_are_stored_once(store: ControlStore, make_config: MakeConfig) -> None:
    """Submitting the same signal twice (same key) records one event and one incident."""
    cfg = make_config(sinks=[{"name": "out", "type": "stdout"}])
    p = Pipeline(store.pool, cfg)
    p.start()
    e = _ev(1)
    await p.submit(e)
    await p.submit(e)
    await p.stop()
    assert await store.pool.fetchval("SELECT count(*) FROM events") == 1
    assert await store.pool.fetchval("SELECT count(*) FROM incidents") == 1
    assert await store.pool.fetchval("SELECT count(*) FROM outbox") == 1


async def test_bulk_read_is_one_incident_with_escalations(store: ControlStore, make_config: MakeConfig) -> None:
    """10,000 canary hits of one group give one trigger plus one update per escalation threshold."""
    cfg = make_config(sinks=[{"name": "out", "type": "stdout"}], alerting={"escalate_at": [10, 100, 1000, 10000]})
    ids = await _canary_ids(store, 10_000)
    p = Pipeline(store.pool, cfg)
    p.start()
    await p.submit(_ev(0, canary_id=ids[0]))  # the first hit pages at once
    await p.submit_many([_ev(i, canary_id=cid) for i, cid in enumerate(ids[1:], start=1)])
    await p.stop()
    assert await store.pool.fetchval("SELECT count(*) FROM incidents") == 1
    actions = [r["action"] for r in await store.pool.fetch("SELECT action FROM outbox ORDER BY sequence")]
    assert actions[0] == "trigger"
    assert 1 <= actions.count("update") <= 4
    assert len(actions) <= 5
    inc = await store.pool.fetchrow("SELECT event_count, cardinality(canary_ids) AS n FROM incidents")
    assert (inc["event_count"], inc["n"]) == (10_000, 10_000)


async def test_drill_alerts_route_to_drill_only_sinks(store: ControlStore, make_config: MakeConfig) -> None:
    """With a drill-only sink configured, drill incidents go there and not to on-call."""
    cfg = make_config(sinks=[{"name": "oncall", "type": "stdout"}, {"name": "drills", "type": "stdout", "drill_only": True}])
    p = Pipeline(store.pool, cfg)
    await register_run(store.pool, "dr-d1", "test", "configured", 1)  # only a registered drill tag counts
    await register_markers(store.pool, "dr-d1", 1, [("drill", "drill", "dr-d1/1")], 60)
    e = _ev(1)
    drill = DetectionEvent(**{**{f: getattr(e, f) for f in e.__dataclass_fields__}, "drill": "dr-d1/1", "key": "k2", "group": "g2"})
    await p.record([e, drill])
    rows = {(r["sink"], r["drill"]) for r in await store.pool.fetch(
        "SELECT o.sink, i.drill FROM outbox o JOIN incidents i ON i.id = o.incident_id")}
    assert rows == {("oncall", None), ("drills", "dr-d1/1")}


async def test_concurrent_listeners_share_incidents(store: ControlStore, make_config: MakeConfig) -> None:
    """Two pipelines on separate pools (two listeners tailing the same logs) racing over the same
    groups record every event once and open exactly one incident per group, paged once."""
    cfg = make_config(sinks=[{"name": "out", "type": "stdout"}])
    other = ControlStore(cfg)
    await other.open()
    try:
        a, b = Pipeline(store.pool, cfg, max_batch=50), Pipeline(other.pool, cfg, max_batch=50)
        a.start()
        b.start()
        events = [_ev(i, group=f"g{i % 20}") for i in range(600)]
        await asyncio.gather(a.submit_many(events), b.submit_many(list(reversed(events))))
        await a.stop()
        await b.stop()
    finally:
        await other.close()
    assert await store.pool.fetchval("SELECT count(*) FROM events") == 600
    rows = await store.pool.fetch("SELECT group_key, event_count FROM incidents ORDER BY group_key")
    assert len(rows) == 20 and all(r["event_count"] == 30 for r in rows)
    assert await store.pool.fetchval("SELECT count(*) FROM outbox") == 20
    assert await store.pool.fetchval("SELECT count(*) FROM events WHERE incident_id IS NULL") == 0


async def test_window_closes_and_resolved_incidents_are_not_reused(store: ControlStore, make_config: MakeConfig) -> None:
    """An event after the group window opens a new incident; so does one after the incident was resolved."""
    cfg = make_config(sinks=[{"name": "out", "type": "stdout"}], alerting={"group_window": "60s"})
    p = Pipeline(store.pool, cfg)
    t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

    def at(i: int, seconds: int) -> DetectionEvent:
        return DetectionEvent(kind=EventKind.READ, source="test", key=event_key("w", i), group="w", canary_id=None,
                              observed_at=t + dt.timedelta(seconds=seconds))

    await p.record([at(1, 0), at(2, 30)])
    await p.record([at(3, 80)])  # 50 s after the last event: same incident
    await p.record([at(4, 200)])  # 120 s later: a new incident
    assert [r["event_count"] for r in await store.pool.fetch("SELECT event_count FROM incidents ORDER BY id")] == [3, 1]
    last = await store.pool.fetchval("SELECT max(id) FROM incidents")
    assert await change_status(store.pool, last, "resolved", by="alice") == 1
    await p.record([at(5, 210)])
    assert await store.pool.fetchval("SELECT count(*) FROM incidents") == 3


async def test_acknowledge_then_resolve_enqueue_in_sequence(store: ControlStore, make_config: MakeConfig) -> None:
    """ack and resolve add acknowledge/resolve notifications after the trigger, to the sinks that were
    paged, with the same dedup key; resolving twice adds nothing; a missing incident is an error."""
    cfg = make_config(sinks=[{"name": "a", "type": "stdout"}, {"name": "b", "type": "stdout"}])
    await Pipeline(store.pool, cfg).record([_ev(1)])
    inc = await store.pool.fetchval("SELECT id FROM incidents")
    assert await change_status(store.pool, inc, "acknowledged", by="bob") == 2
    assert await change_status(store.pool, inc, "resolved", by="bob", note="false positive") == 2
    assert await change_status(store.pool, inc, "resolved", by="bob") == 0
    rows = await store.pool.fetch("SELECT sink, sequence, action, payload FROM outbox ORDER BY sink, sequence")
    assert [(r["sink"], r["sequence"], r["action"]) for r in rows] == [
        ("a", 0, "trigger"), ("a", 1, "acknowledge"), ("a", 2, "resolve"),
        ("b", 0, "trigger"), ("b", 1, "acknowledge"), ("b", 2, "resolve")]
    assert len({r["payload"]["dedup_key"] for r in rows}) == 1
    assert rows[2]["payload"]["summary"].startswith("RESOLVED: ")
    with pytest.raises(IncidentError):
        await change_status(store.pool, inc + 1000, "resolved", by="bob")
    with pytest.raises(IncidentError):
        await change_status(store.pool, inc, "acknowledged", by="bob")


async def test_an_event_the_store_refuses_fails_alone(store: ControlStore, make_config: MakeConfig) -> None:
    """One event the store cannot take (its group is too large for the incidents index) in a batch
    with good ones: the batch is split, the good events commit, and only the bad one is refused, as
    EventRefused naming it, so its source can count it and move on instead of retrying forever."""
    cfg = make_config(sinks=[{"name": "out", "type": "stdout"}])
    p = Pipeline(store.pool, cfg)
    p.start()
    rng = random.Random(7)
    huge = "".join(chr(rng.randrange(0x4E00, 0x9FFF)) for _ in range(5000))  # incompressible, > btree limit
    good = [_ev(i, group=f"g{i}") for i in range(6)]
    bad = _ev(99, group=huge)
    with pytest.raises(EventRefused) as refused:
        await asyncio.wait_for(p.submit_many([*good[:3], bad, *good[3:]]), 60)
    await p.stop()
    assert [e.key for e, _ in refused.value.refused] == [bad.key]
    assert "54000" in str(refused.value) or "ProgramLimitExceeded" in str(refused.value)
    assert await store.pool.fetchval("SELECT count(*) FROM events") == 6
    assert p.stats.refused == 1


async def test_an_event_dated_at_the_start_of_time_commits_with_its_batch(store: ControlStore, make_config: MakeConfig) -> None:
    """An event whose time an input claimed as the earliest datetime there is (year 1) commits with the
    others of its batch, its time kept at the earliest the pipeline can window (1900), not an
    OverflowError failing them all."""
    cfg = make_config(sinks=[{"name": "out", "type": "stdout"}])
    p = Pipeline(store.pool, cfg)
    p.start()
    ancient = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    old = DetectionEvent(kind=EventKind.READ, source="test", key=event_key("t", "ancient"), group="ancient", canary_id=None,
                         observed_at=ancient, actor={}, origin={})
    await asyncio.wait_for(p.submit_many([_ev(1), old, _ev(2)]), 60)
    await p.stop()
    assert await store.pool.fetchval("SELECT count(*) FROM events") == 3
    assert await store.pool.fetchval("SELECT observed_at FROM events WHERE key = $1", old.key) == EARLIEST


def test_event_facts_are_made_storable() -> None:
    """NUL, lone surrogates, non-finite floats, foreign types, huge text and deep nesting in what a
    source reports become JSON that jsonb accepts, bounded."""
    deep: dict[str, object] = {}
    node = deep
    for _ in range(50):
        node["d"] = {}
        node = node["d"]  # type: ignore[assignment]
    e = DetectionEvent(
        kind=EventKind.READ, source="s\x00", key="k", group="g\ud800", canary_id=None,
        observed_at=dt.datetime.now(dt.timezone.utc),
        actor={"user\x00": "a\x00b", "n": float("nan"), "when": dt.date(2026, 1, 1)},
        evidence={"q": "x" * 100_000, "deep": deep, "list": ("\udfff", b"raw")},
    )
    assert e.source == "s\ufffd" and e.group == "g\ufffd"
    assert e.actor == {"user\ufffd": "a\ufffdb", "n": "nan", "when": "2026-01-01"}
    assert len(e.evidence["q"]) < 17_000 and e.evidence["list"] == ["\ufffd", "b'raw'"]
    depth, node = 0, e.evidence["deep"]
    while isinstance(node, dict):
        node, depth = node["d"], depth + 1
    assert depth < 10 and isinstance(node, str)
