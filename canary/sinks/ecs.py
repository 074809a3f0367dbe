"""canary's alerts and events as Elastic Common Schema (ECS) documents, for the Elasticsearch / OpenSearch
sink (``canary/sinks/elastic.py``) and any other sink that speaks ECS.

Field names and types follow the ECS field reference (https://www.elastic.co/docs/reference/ecs, release
:data:`ECS_VERSION`; the types checked against the ECS repository's ``generated/csv/fields.csv`` of v8.17.0
and v9.4.0; allowed categorisation values: https://elastic.co/docs/reference/ecs/ecs-allowed-values-event-kind
and .../ecs-allowed-values-event-type): ``@timestamp`` date,
``event.severity`` long, ``source.ip`` ip, ``source.as.number`` long, the rest keyword. ``event.kind`` is
``alert`` for incident notifications ("an alert or notable event, triggered by a detection rule executing
externally to the Elastic Stack") and ``event`` for single detections; categorisation uses the allowed
values of ``event.category`` / ``event.type``. ATT&CK goes into ``threat.*`` with ``threat.framework:
"MITRE ATT&CK"``; a sub-technique (T1078.004) is ``threat.technique.subtechnique.*`` under its parent
(T1078), as ECS splits them.

An index's mapping is fixed by its first documents, and whoever sends canary a query, a mail or a request
chooses most of what an event holds. A field an attacker could give a value of the wrong type would make
the index refuse every later document with the right one (``mapper_parsing_exception``): a detection
hidden by poisoning the mapping. So only canary decides field names and types here: ``source.ip`` only
for a real IP address, numbers only when they are numbers, and the free-form facts (``actor``, ``origin``,
``evidence``) travel as one JSON text each under ``canary.*`` (a custom field set: ECS reserves no field
named ``canary``), never as objects whose keys an attacker would name.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from canary.alerts import Alert, AlertAction, incident_title
from canary.attack import attack_json
from canary.events import EventKind, Severity, StoredEvent, storable, storable_text

#: the ECS release these documents conform to (every field used here has the same name and type in 9.x)
ECS_VERSION = "8.17.0"
ALERTS_DATASET = "canary.alerts"
EVENTS_DATASET = "canary.events"
FRAMEWORK = "MITRE ATT&CK"

#: event.severity (long): ECS leaves the scale to the source; canary's ranks, higher is worse
SEVERITY_NUMBER = {Severity.INFO: 1, Severity.WARNING: 2, Severity.ERROR: 3, Severity.CRITICAL: 4}

_RULES = {
    EventKind.READ: "Canary data read",
    EventKind.EXPORTED: "Canary data exported",
    EventKind.CONTACTED: "Canary contact point reached",
    EventKind.USED: "Canary credential used",
    EventKind.TAMPER: "Canary detection tampered with",
    EventKind.HEALTH: "Canary health check",
}
_ISO_COUNTRY = re.compile(r"[A-Z]{2}")
_ASN = re.compile(r"(?:AS)?([0-9]{1,10})", re.IGNORECASE)


def _text(value: object, limit: int = 8192) -> str:
    """Any value as text a keyword field and a JSON encoder take (no NUL, no lone surrogate, bounded)."""
    return storable_text(value, limit)


def _ip(value: object) -> str | None:
    """``value`` when it is an IPv4 or IPv6 address (ECS ``ip``), else None: a hostname, a unix socket or
    attacker text in ``client_addr`` must not reach an ip field."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return str(ipaddress.ip_address(value.strip().split("%", 1)[0]))
    except ValueError:
        return None


def _int(value: object, low: int = 0, high: int = 2**63 - 1) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
    else:
        return None
    return number if low <= number <= high else None


def _asn(value: object) -> int | None:
    """An autonomous system number (``15169`` or ``"AS15169"``) as ECS's long, within 32 bits."""
    if isinstance(value, str):
        m = _ASN.fullmatch(value.strip())
        return _int(m.group(1), 0, 2**32 - 1) if m else None
    return _int(value, 0, 2**32 - 1)


def _json_text(value: Mapping[str, Any]) -> str:
    """A free-form mapping as one compact JSON text (its keys are the sender's, so never field names)."""
    return json.dumps(storable(dict(value)), ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _iso(when: dt.datetime) -> str:
    """RFC 3339 / ISO 8601 with an offset (what a ``date`` field parses); naive times are UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.isoformat()


def _category(kind: EventKind, evidence: Mapping[str, Any]) -> tuple[list[str], list[str], str]:
    """(event.category, event.type, event.outcome) for a detection of ``kind``."""
    if kind is EventKind.READ:
        return ["database", "intrusion_detection"], ["access", "info"], "success"
    if kind is EventKind.EXPORTED:
        if evidence.get("signal") == "export_file":
            return ["file", "intrusion_detection"], ["access", "info"], "success"
        return ["database", "intrusion_detection"], ["access", "info"], "success"
    if kind is EventKind.CONTACTED:
        if evidence.get("channel") in ("sms", "voice"):
            return ["network", "intrusion_detection"], ["connection", "info"], "success"
        return ["email", "intrusion_detection"], ["info"], "success"
    if kind is EventKind.USED:
        return ["authentication", "intrusion_detection"], ["start", "info"], "unknown"
    if kind is EventKind.TAMPER:
        return ["configuration", "intrusion_detection"], ["change", "info"], "unknown"
    return ["configuration"], ["info"], "unknown"


def _threat(attack: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """``threat.*`` from canary's ATT&CK list: techniques, sub-techniques under their parents, tactics."""
    tech: dict[str, list[str]] = {"id": [], "name": [], "reference": []}
    sub: dict[str, list[str]] = {"id": [], "name": [], "reference": []}
    tactic: dict[str, list[str]] = {"id": [], "name": [], "reference": []}

    def add(into: dict[str, list[str]], uid: str, name: str, reference: str) -> None:
        if uid not in into["id"]:
            into["id"].append(uid)
            into["name"].append(name)
            into["reference"].append(reference)

    for t in attack:
        uid, name = _text(t.get("id") or "", 64), _text(t.get("name") or "", 256)
        if not uid:
            continue
        if "." in uid:
            parent_id = uid.split(".", 1)[0]
            parent_name, _, sub_name = name.partition(": ")
            add(tech, parent_id, parent_name, f"https://attack.mitre.org/techniques/{parent_id}/")
            add(sub, uid, sub_name or name, _text(t.get("url") or "", 256))
        else:
            add(tech, uid, name, _text(t.get("url") or "", 256))
        for ta in t.get("tactics") or ():
            ta_id = _text(ta.get("id") or "", 64)
            if ta_id:
                add(tactic, ta_id, _text(ta.get("name") or "", 256), f"https://attack.mitre.org/tactics/{ta_id}/")
    if not tech["id"]:
        return None
    technique: dict[str, Any] = dict(tech)
    if sub["id"]:
        technique["subtechnique"] = sub
    out: dict[str, Any] = {"framework": FRAMEWORK, "technique": technique}
    if tactic["id"]:
        out["tactic"] = tactic
    return out


def _source(origin: Mapping[str, Any], enrichment: Mapping[str, Any]) -> dict[str, Any]:
    """``source.*``: the client address (``ip`` only when it is one), and what enrichment knows of it."""
    out: dict[str, Any] = {}
    raw = origin.get("client_addr") or enrichment.get("address")
    if raw not in (None, ""):
        out["address"] = _text(raw, 256)
        ip = _ip(raw)
        if ip:
            out["ip"] = ip
    country, city = enrichment.get("country"), enrichment.get("city")
    geo: dict[str, str] = {}
    if isinstance(country, str) and country:
        geo["country_iso_code" if _ISO_COUNTRY.fullmatch(country) else "country_name"] = _text(country, 128)
    if isinstance(city, str) and city:
        geo["city_name"] = _text(city, 256)
    if geo:
        out["geo"] = geo
    asn, org = _asn(enrichment.get("asn")), enrichment.get("as_org")
    if asn is not None or (isinstance(org, str) and org):
        out["as"] = {}
        if asn is not None:
            out["as"]["number"] = asn
        if isinstance(org, str) and org:
            out["as"]["organization"] = {"name": _text(org, 256)}
    rdns = enrichment.get("rdns")
    if isinstance(rdns, str) and rdns:
        out["domain"] = _text(rdns, 256)
    return out


def _people(doc: dict[str, Any], kind: EventKind, actor: Mapping[str, Any], origin: Mapping[str, Any],
            evidence: Mapping[str, Any]) -> None:
    """``user.*``, ``email.*``, ``user_agent.*`` and ``related.*`` from who and where."""
    users = [_text(actor[k], 1024) for k in ("user", "role") if isinstance(actor.get(k), str) and actor[k]]
    if users:
        doc["user"] = {"name": users[0]}
    sender = actor.get("sender")
    if kind is EventKind.CONTACTED and "channel" not in evidence and isinstance(sender, str) and sender:
        email: dict[str, Any] = {"from": {"address": [_text(sender, 1024)]}}
        if isinstance(evidence.get("subject"), str):
            email["subject"] = _text(evidence["subject"], 1024)
        if isinstance(evidence.get("message_id"), str) and evidence["message_id"]:
            email["message_id"] = _text(evidence["message_id"], 1024)
        doc["email"] = email
        users.append(_text(sender, 1024))
    agent = origin.get("user_agent")
    if isinstance(agent, str) and agent:
        doc["user_agent"] = {"original": _text(agent, 1024)}
    related: dict[str, list[str]] = {}
    if users:
        related["user"] = list(dict.fromkeys(users))
    ip = doc.get("source", {}).get("ip")
    if ip:
        related["ip"] = [ip]
    if related:
        doc["related"] = related


def _common(kind: EventKind, severity: Severity, source: str, dataset: str) -> dict[str, Any]:
    return {
        "ecs": {"version": ECS_VERSION},
        "event": {"module": "canary", "provider": _text(source, 256), "dataset": dataset,
                  "severity": SEVERITY_NUMBER[severity]},
        "rule": {"id": f"canary.{kind}", "name": _RULES[kind], "ruleset": "canary"},
        "observer": {"vendor": "canary", "product": "canary", "type": "deception"},
        "agent": {"type": "canary", "name": "canary"},
        "log": {"level": str(severity)},
        "labels": {"canary_kind": str(kind), "canary_source": _text(source, 256)},
    }


def _canaries(canaries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The canaries an alert involves by label and kind (never a value), with fixed types."""
    out = []
    for c in canaries[:100]:
        item: dict[str, Any] = {"label": _text(c.get("label") or "", 512), "kind": _text(c.get("kind") or "", 128)}
        count = _int(c.get("count"))
        if count is not None:
            item["count"] = count
        out.append(item)
    return out


def alert_document(alert: Alert, now: dt.datetime | None = None) -> dict[str, Any]:
    """The ECS document of one incident notification (``event.kind: alert``). ``@timestamp`` is the
    incident's last activity for trigger / update, the time of sending for acknowledge / resolve."""
    kinds, types, outcome = _category(alert.kind, alert.evidence)
    stamp = alert.last_seen if alert.action in (AlertAction.TRIGGER, AlertAction.UPDATE) else (
        now or dt.datetime.now(dt.timezone.utc))
    doc = _common(alert.kind, alert.severity, alert.source, ALERTS_DATASET)
    doc["@timestamp"] = _iso(stamp)
    doc["message"] = _text(alert.summary, 4096)
    doc["event"].update(
        kind="alert", category=kinds, type=types, outcome=outcome, action=f"incident-{alert.action}",
        id=alert_id(alert), start=_iso(alert.first_seen), end=_iso(alert.last_seen))
    if alert.link:
        doc["event"]["url"] = _text(alert.link, 2048)
    source = _source(alert.origin, alert.enrichment)
    if source:
        doc["source"] = source
    _people(doc, alert.kind, alert.actor, alert.origin, alert.evidence)
    threat = _threat(alert.attack)
    if threat:
        doc["threat"] = threat
    if alert.drill:
        doc["labels"]["drill"] = _text(alert.drill, 256)
    canary: dict[str, Any] = {
        "incident_id": alert.incident_id, "dedup_key": _text(alert.dedup_key, 512), "action": str(alert.action),
        "sequence": alert.sequence, "kind": str(alert.kind), "severity": str(alert.severity),
        "title": _text(alert.title, 4096), "canary_count": alert.canary_count, "event_count": alert.event_count,
        "canaries": _canaries(alert.canaries), "actor": _json_text(alert.actor), "origin": _json_text(alert.origin),
        "evidence": _json_text(alert.evidence),
    }
    if alert.drill:
        canary["drill"] = _text(alert.drill, 256)
    if isinstance(alert.enrichment.get("internal"), bool):
        canary["client_internal"] = alert.enrichment["internal"]
    doc["canary"] = canary
    return doc


def event_document(stored: StoredEvent) -> dict[str, Any]:
    """The ECS document of one committed detection (``event.kind: event``), suppressed ones marked with
    the rule that suppressed them (``canary.suppressed_by``)."""
    e = stored.event
    kinds, types, outcome = _category(e.kind, e.evidence)
    doc = _common(e.kind, e.severity, e.source, EVENTS_DATASET)
    doc["@timestamp"] = _iso(e.observed_at)
    doc["message"] = _text(incident_title(e), 4096)
    doc["event"].update(kind="event", category=kinds, type=types, outcome=outcome, action=f"canary-{e.kind}",
                        id=event_id(stored), created=_iso(e.detected_at))
    source = _source(e.origin, {})
    if source:
        doc["source"] = source
    _people(doc, e.kind, e.actor, e.origin, e.evidence)
    threat = _threat(attack_json(e.kind, e.source, e.evidence))
    if threat:
        doc["threat"] = threat
    if e.drill:
        doc["labels"]["drill"] = _text(e.drill, 256)
    canary: dict[str, Any] = {
        "event_id": stored.id, "event_key": _text(e.key, 512), "group": _text(e.group, 1024), "kind": str(e.kind),
        "severity": str(e.severity), "suppressed": stored.suppressed_by is not None,
        "actor": _json_text(e.actor), "origin": _json_text(e.origin), "evidence": _json_text(e.evidence),
    }
    if stored.incident_id is not None:
        canary["incident_id"] = stored.incident_id
    if stored.suppressed_by is not None:
        canary["suppressed_by"] = _text(stored.suppressed_by, 256)
    if stored.canary:
        canary["canary"] = {k: _text(stored.canary[k], 512) for k in ("uid", "label", "kind") if stored.canary.get(k)}
    if e.drill:
        canary["drill"] = _text(e.drill, 256)
    doc["canary"] = canary
    return doc


def alert_id(alert: Alert) -> str:
    """The document id of a notification: the incident's dedup key and the notification's number, so a
    resend is the same document (and ``create`` answers 409 instead of storing it twice)."""
    return f"{alert.dedup_key}-{alert.sequence}"


def event_id(stored: StoredEvent) -> str:
    """The document id of a committed event: the store's id, the feed's idempotency key."""
    return f"event-{stored.id}"
