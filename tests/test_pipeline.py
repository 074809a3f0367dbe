"""The pipeline records events idempotently, groups them into incidents and enqueues notifications."""

from __future__ import annotations

import datetime as dt

from canary.events import DetectionEvent, EventKind, event_key
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


async def test_duplicate_events_are_stored_once(store: ControlStore, make_config) -> None:
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


async def test_bulk_read_is_one_incident_with_escalations(store: ControlStore, make_config) -> None:
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


async def test_drill_alerts_route_to_drill_only_sinks(store: ControlStore, make_config) -> None:
    """With a drill-only sink configured, drill incidents go there and not to on-call."""
    cfg = make_config(sinks=[{"name": "oncall", "type": "stdout"}, {"name": "drills", "type": "stdout", "drill_only": True}])
    p = Pipeline(store.pool, cfg)
    e = _ev(1)
    drill = DetectionEvent(**{**{f: getattr(e, f) for f in e.__dataclass_fields__}, "drill": "d1", "key": "k2", "group": "g2"})
    await p.record([e, drill])
    rows = {(r["sink"], r["drill"]) for r in await store.pool.fetch(
        "SELECT o.sink, i.drill FROM outbox o JOIN incidents i ON i.id = o.incident_id")}
    assert rows == {("oncall", None), ("drills", "d1")}
