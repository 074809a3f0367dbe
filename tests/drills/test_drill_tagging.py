"""Drill attribution by the drill registry: a drill tag an attacker sets on their own traffic is not
honoured (their read pages on-call), a registered tag routes to the drill-only sink, and untagged
mail/SMS/honeypot traffic is a drill only when it carries every fact a running step declared.
End to end, contact and credential drill steps page the drill-only sink, not on-call."""

from __future__ import annotations

import datetime as dt
from typing import Any

from testkit import MakeConfig

from canary.drills import deployment, playbook
from canary.drills.runner import DrillRunner, StepStatus
from canary.drilltags import attribute_drills, register_markers, register_run
from canary.events import DetectionEvent, EventKind, event_key
from canary.pipeline import Pipeline
from canary.store import ControlStore

SINKS = [{"name": "oncall", "type": "stdout"}, {"name": "drills", "type": "stdout", "drill_only": True}]


def _ev(n: int, *, drill: str | None = None, at: dt.datetime | None = None, **sections: Any) -> DetectionEvent:
    return DetectionEvent(
        kind=EventKind.CONTACTED, source="test", key=event_key("tag", n), group=f"g{n}", canary_id=None,
        observed_at=at or dt.datetime.now(dt.timezone.utc), drill=drill, **sections,
    )


async def _routes(store: ControlStore) -> dict[str, tuple[str, str | None]]:
    rows = await store.pool.fetch(
        "SELECT i.group_key, o.sink, i.drill FROM outbox o JOIN incidents i ON i.id = o.incident_id")
    return {r["group_key"]: (r["sink"], r["drill"]) for r in rows}


async def test_unregistered_drill_tag_is_treated_as_an_attack(store: ControlStore, make_config: MakeConfig) -> None:
    """An event claiming drill 'canary-drill:whatever' with no registered run pages on-call, with the
    claim kept as evidence; the same claim for a registered tag goes to the drill-only sink."""
    await register_run(store.pool, "dr-aaaaaaaaaaaa", "t", "configured", 1)
    await register_markers(store.pool, "dr-aaaaaaaaaaaa", 1, [("drill", "drill", "dr-aaaaaaaaaaaa/1")], 60)
    p = Pipeline(store.pool, make_config(sinks=SINKS))
    await p.record([_ev(1, drill="whatever"), _ev(2, drill="dr-aaaaaaaaaaaa/1"), _ev(3, drill="dr-aaaaaaaaaaaa/2")])
    assert await _routes(store) == {"g1": ("oncall", None), "g2": ("drills", "dr-aaaaaaaaaaaa/1"), "g3": ("oncall", None)}
    claimed = await store.pool.fetchval("SELECT evidence->>'claimed_drill' FROM events WHERE group_key = 'g1'")
    assert claimed == "whatever"
    title = await store.pool.fetchval("SELECT title FROM incidents WHERE group_key = 'g1'")
    assert not title.startswith("[DRILL]")


async def test_untagged_events_match_a_step_by_all_of_its_facts(store: ControlStore) -> None:
    """A step's facts (sender; port and address) tag an event only when all of them match and the
    event falls inside the step's window; one matching fact is not enough."""
    await register_run(store.pool, "dr-bbbbbbbbbbbb", "t", "configured", 2)
    await register_markers(store.pool, "dr-bbbbbbbbbbbb", 1, [("actor", "sender", "drill-1@billing-notice.example")], 60)
    await register_markers(store.pool, "dr-bbbbbbbbbbbb", 2, [("origin", "client_port", "40001"),
                                                             ("origin", "client_addr", "127.0.0.1")], 60)
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    events = [
        _ev(1, actor={"sender": "drill-1@billing-notice.example"}),
        _ev(2, actor={"sender": "someone@else.example"}),
        _ev(3, origin={"client_port": 40001, "client_addr": "127.0.0.1"}),
        _ev(4, origin={"client_port": 40001, "client_addr": "10.9.8.7"}),
        _ev(5, actor={"sender": "drill-1@billing-notice.example"}, at=old),
    ]
    async with store.pool.acquire() as conn:
        tagged = await attribute_drills(conn, events)
    assert [e.drill for e in tagged] == ["dr-bbbbbbbbbbbb/1", None, "dr-bbbbbbbbbbbb/2", None, None]


async def test_no_running_drill_leaves_events_untouched(store: ControlStore) -> None:
    """With no drill markers at all, events pass through unchanged (same objects)."""
    events = [_ev(1), _ev(2, actor={"sender": "x@y.example"})]
    async with store.pool.acquire() as conn:
        out = await attribute_drills(conn, events)
    assert all(a is b for a, b in zip(out, events))


async def test_contact_and_credential_drill_pages_go_to_the_drill_sink() -> None:
    """Phishing mail, SMS, a canary API token and a canary DSN, played against the demo deployment with
    a drill-only sink: each is detected and paged through the drill sink only, titled [DRILL]."""
    book = playbook.parse_playbook({"name": "contact-and-credentials", "steps": [
        {"name": "mail", "action": "mail", "expect": "contacted", "count": 2},
        {"name": "sms", "action": "sms", "expect": "contacted", "count": 2},
        {"name": "token", "action": "token", "expect": "used"},
        {"name": "dsn", "action": "dsn", "expect": "used"},
    ]}, "test")
    async with deployment.demo(book, customers=1500, canaries=5, drill_sink=True) as target:
        result = await DrillRunner(target, book).run()
        assert target.receiver is not None
        paged_drills = {a["drill"] for _, a in target.receiver.received}
    for step in result.steps:
        assert step.status is StepStatus.PASSED, (step.name, step.reason)
        assert step.paged_sinks == ["drills"]
        inc = step.incidents[0]
        assert inc["drill"] == f"{result.run_id}/{step.number}" and inc["title"].startswith("[DRILL] ")
    assert paged_drills == {f"{result.run_id}/{n}" for n in range(1, 5)}
    assert result.steps[0].facts["recipients"] == 2 and result.steps[1].facts["messages"] == 2
    assert result.steps[3].facts["answer"].startswith("28P01")
