"""What sinks deliver: one :class:`Alert` per incident notification (trigger, update, resolve), built
from an incident row by :func:`alert_for`; :func:`incident_title` is the one line an incident is known by."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from typing import Any

from canary.attack import attack_json
from canary.events import DetectionEvent, EventKind, Severity


class AlertAction(enum.StrEnum):
    TRIGGER = "trigger"  # a new incident
    UPDATE = "update"  # the incident grew past an escalation threshold
    ACKNOWLEDGE = "acknowledge"  # acknowledged by a person via `canary alerts ack`
    RESOLVE = "resolve"  # acknowledged/resolved by a person via `canary alerts resolve`


@dataclasses.dataclass(frozen=True, slots=True)
class Alert:
    """One notification about one incident.

    ``dedup_key`` is stable for the incident's lifetime: sinks that deduplicate (PagerDuty,
    Opsgenie alias) turn retries and updates into one page. ``canaries`` describes the canaries
    involved by label (``shop/public.customers``), never by their secret values.
    """

    incident_id: int
    dedup_key: str
    action: AlertAction
    kind: EventKind
    severity: Severity
    title: str
    summary: str
    canary_count: int
    event_count: int
    first_seen: dt.datetime
    last_seen: dt.datetime
    actor: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    origin: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    canaries: Sequence[Mapping[str, Any]] = ()
    evidence: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    drill: str | None = None
    source: str = ""
    sequence: int = 0  # notification number within the incident (0 = trigger)
    #: the incident's page, <listener.public_url>/incidents/<id> (None when public_url is not set)
    link: str | None = None
    #: ATT&CK techniques this incident is evidence of (canary.attack: {"id", "name", "url", "tactics"})
    attack: Sequence[Mapping[str, Any]] = ()
    #: what is known about the client address (canary.enrich: {"address", "country", "city", "asn",
    #: "as_org", "rdns", "internal"}); empty when nothing is
    enrichment: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "dedup_key": self.dedup_key,
            "action": str(self.action),
            "kind": str(self.kind),
            "severity": str(self.severity),
            "title": self.title,
            "summary": self.summary,
            "canary_count": self.canary_count,
            "event_count": self.event_count,
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "actor": dict(self.actor),
            "origin": dict(self.origin),
            "canaries": [dict(c) for c in self.canaries],
            "evidence": dict(self.evidence),
            "drill": self.drill,
            "source": self.source,
            "sequence": self.sequence,
            "link": self.link,
            "attack": [dict(t) for t in self.attack],
            "enrichment": dict(self.enrichment),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Alert:
        return cls(
            incident_id=int(data["incident_id"]),
            dedup_key=str(data["dedup_key"]),
            action=AlertAction(data["action"]),
            kind=EventKind(data["kind"]),
            severity=Severity(data["severity"]),
            title=str(data["title"]),
            summary=str(data["summary"]),
            canary_count=int(data["canary_count"]),
            event_count=int(data["event_count"]),
            first_seen=dt.datetime.fromisoformat(data["first_seen"]),
            last_seen=dt.datetime.fromisoformat(data["last_seen"]),
            actor=dict(data.get("actor") or {}),
            origin=dict(data.get("origin") or {}),
            canaries=tuple(data.get("canaries") or ()),
            evidence=dict(data.get("evidence") or {}),
            drill=data.get("drill"),
            source=str(data.get("source") or ""),
            sequence=int(data.get("sequence") or 0),
            link=str(data["link"]) if data.get("link") else None,
            attack=tuple(data.get("attack") or ()),
            enrichment=dict(data.get("enrichment") or {}),
        )


_VERBS = {
    EventKind.READ: "Canary data read",
    EventKind.EXPORTED: "Canary data exported",
    EventKind.CONTACTED: "Canary contact point reached",
    EventKind.USED: "Canary credential used",
    EventKind.TAMPER: "Canary detection tampered with",
    EventKind.HEALTH: "Canary health check failed",
}


def incident_title(event: DetectionEvent) -> str:
    """One line for on-call: what happened, by whom, from where (health events: which check, where)."""
    where = event.origin.get("client_addr") or event.origin.get("node") or event.origin.get("datastore") or ""
    who = event.actor.get("user") or event.actor.get("sender") or event.actor.get("caller")
    problem = event.evidence.get("problem")
    if event.evidence.get("signal") == "copy_sweep":
        obj, db = event.evidence.get("object") or "an object", event.origin.get("database")
        text = (f"Canary data copied into {obj}" + (f", owned by role {who}," if who else "")
                + (f" in database {db}" if db else "") + (f" on {where}" if where else ""))
    elif event.kind is EventKind.HEALTH and event.evidence.get("signal") == "heartbeat":
        text = f"Canary log heartbeat received from {where or 'a node'}"
    elif event.kind is EventKind.HEALTH and event.actor.get("sink"):
        text = f"Canary alerts undeliverable to sink {event.actor['sink']}"
    elif event.kind in (EventKind.HEALTH, EventKind.TAMPER) and not who:
        text = _VERBS[event.kind] + (f": {problem}" if problem else "") + (f" on {where}" if where else "")
    else:
        text = f"{_VERBS[event.kind]} by {who or 'unknown'}" + (f" from {where}" if where else "")
    return ("[DRILL] " if event.drill else "") + text


_PREFIXES = {AlertAction.TRIGGER: "", AlertAction.UPDATE: "ESCALATED: ", AlertAction.ACKNOWLEDGE: "ACKNOWLEDGED: ",
             AlertAction.RESOLVE: "RESOLVED: "}


def incident_link(public_url: str, incident_id: int) -> str | None:
    """The incident's page: ``<public_url>/incidents/<id>`` (the console's; None without a public URL)."""
    return f"{public_url.rstrip('/')}/incidents/{int(incident_id)}" if public_url else None


def alert_for(inc: Mapping[str, Any], canaries: Sequence[Mapping[str, Any]], action: AlertAction, sequence: int,
              public_url: str = "") -> Alert:
    """The notification for an incident row (``incidents.*``) and its canary labels; with ``public_url``
    (``listener.public_url``) it links to the incident's page."""
    count = len(inc["canary_ids"])
    where = ", ".join(str(c["label"]) for c in canaries[:3])
    summary = f"{inc['title']}: {count} canar{'y' if count == 1 else 'ies'} in {inc['event_count']} event(s)"
    if where:
        summary += f" ({where})"
    return Alert(
        incident_id=inc["id"],
        dedup_key=inc["dedup_key"],
        action=action,
        kind=EventKind(inc["kind"]),
        severity=Severity(inc["severity"]),
        title=inc["title"],
        summary=_PREFIXES[action] + summary,
        canary_count=count,
        event_count=inc["event_count"],
        first_seen=inc["first_seen"],
        last_seen=inc["last_seen"],
        actor=inc["actor"],
        origin=inc["origin"],
        canaries=list(canaries),
        evidence=inc["evidence"],
        drill=inc["drill"],
        source=inc["source"],
        sequence=sequence,
        link=incident_link(public_url, inc["id"]),
        attack=tuple(attack_json(inc["kind"], inc["source"], inc["evidence"])),
    )
