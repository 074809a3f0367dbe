"""canary's incidents and events in OCSF (Open Cybersecurity Schema Framework), for the SIEM sinks.

One version for everything, :data:`OCSF_VERSION` = 1.1.0: the version Amazon Security Lake writes its
own (source version 2) AWS sources in, and the first with Detection Finding (2004) and Datastore
Activity (6005) (https://docs.aws.amazon.com/security-lake/latest/userguide/open-cybersecurity-schema-framework.html;
custom sources must be OCSF: https://docs.aws.amazon.com/security-lake/latest/userguide/custom-sources.html).
Classes, objects and types are those of https://schema.ocsf.io/1.1.0/ (tests validate every record
against the 1.1.0 export with ``tests/ocsf_support.validate_ocsf``).

- :func:`detection_finding`: one incident notification -> Detection Finding (2004); ``finding_info.uid``
  is the incident's ``dedup_key`` (one finding across trigger, updates, acknowledgement and resolution),
  ``metadata.correlation_uid`` the incident id (the same on its events' records).
- :func:`event_record`: one committed event -> the activity class it is:

  ============================  ===============================================================
  read / exported               Datastore Activity 6005 (Read; an export is activity Other "Export")
  contacted, e-mail             Email Activity 4009 (Receive, Inbound), when the sender is an address
                                OCSF's ``email_t`` accepts (``email.from`` is required); ``email.to`` is
                                left empty: the recipient is the canary's address, a secret
  contacted, SMS / call, SMTP   Detection Finding 2004: OCSF 1.1.0 has no telephony or messaging class
  probe, unusable sender        (Email Activity needs an e-mail with a sender address; Network Activity
                                is an IP connection, which a call reaching a provider is not), so the
                                event is recorded as the detection it is, the caller in its evidence
  used, CloudTrail / gateway    API Activity 6003 (the AWS call or the gateway request)
  used, other                   Authentication 3002 (a logon at a honeypot, a presented token)
  tamper, health                Detection Finding 2004 (about canary itself; health has no technique)
  ============================  ===============================================================

ATT&CK techniques go to ``finding_info.attacks`` on findings (one attack per technique and tactic:
``attack.tactics`` is deprecated in 1.1.0) and, in the same shape, to ``unmapped.attacks`` on activity
classes (1.1.0 allows ``attacks`` there only with the ``security_control`` profile, which describes a
control that allows or blocks: canary does neither). Times are epoch milliseconds (``timestamp_t``).
Typed fields get only values their type accepts (an IP field only an address ``ipaddress`` parses, a
hostname or e-mail only what the OCSF pattern matches, strings at most 65,535 characters); everything
else canary knows stays in ``evidences[].data`` / ``unmapped.canary``. Suppressed events carry
``metadata.labels`` "suppressed" (findings: status Suppressed) and drills "drill".

Nothing here adds a canary value: alerts and events hold labels and fingerprints, never values, and the
one actor field a source fills with a credential's own value (CloudTrail's ``access_key_id``) is left out.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib.metadata
import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from canary.alerts import Alert, AlertAction, incident_title
from canary.attack import ATTACK_VERSION, Tactic, Technique, techniques
from canary.events import DetectionEvent, EventKind, Severity, StoredEvent, plausible_time

OCSF_VERSION = "1.1.0"

#: string_t's max_len in OCSF 1.1.0
MAX_STRING = 65_535
#: OCSF 1.1.0 email_t and hostname_t patterns (https://schema.ocsf.io/1.1.0/data_types)
_EMAIL = re.compile(r"^[a-zA-Z0-9_.+-]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+$")
_HOSTNAME = re.compile(r"^(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])\.)*([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9\-]*[A-Za-z0-9])$")
#: actor fields that hold a credential's own value (never copied anywhere)
_SECRET_ACTOR_KEYS = frozenset({"access_key_id"})

_SEVERITY = {Severity.INFO: (1, "Informational"), Severity.WARNING: (3, "Medium"), Severity.ERROR: (4, "High"),
             Severity.CRITICAL: (5, "Critical")}

# Detection Finding (2004): activity and status per notification
DETECTION_FINDING = 2004
_FINDING_ACTIVITY = {AlertAction.TRIGGER: (1, "Create"), AlertAction.UPDATE: (2, "Update"),
                     AlertAction.ACKNOWLEDGE: (2, "Update"), AlertAction.RESOLVE: (3, "Close")}
# an escalation may come before or after an acknowledgement: its status is "Escalated" (Other)
_FINDING_STATUS = {AlertAction.TRIGGER: (1, "New"), AlertAction.UPDATE: (99, "Escalated"),
                   AlertAction.ACKNOWLEDGE: (2, "In Progress"), AlertAction.RESOLVE: (4, "Resolved")}

DATASTORE_ACTIVITY = 6005
EMAIL_ACTIVITY = 4009
AUTHENTICATION = 3002
API_ACTIVITY = 6003
_CLASSES = {
    DETECTION_FINDING: ("Detection Finding", 2, "Findings"),
    DATASTORE_ACTIVITY: ("Datastore Activity", 6, "Application Activity"),
    EMAIL_ACTIVITY: ("Email Activity", 4, "Network Activity"),
    AUTHENTICATION: ("Authentication", 3, "Identity & Access Management"),
    API_ACTIVITY: ("API Activity", 6, "Application Activity"),
}
_API_SOURCES = ("cloudtrail", "gateway")
#: API Activity's activity by the first word of the operation (CloudTrail's eventName: GetObject, ...)
_API_VERBS = (("Get", 2, "Read"), ("List", 2, "Read"), ("Describe", 2, "Read"), ("Head", 2, "Read"),
              ("Create", 1, "Create"), ("Put", 3, "Update"), ("Update", 3, "Update"), ("Modify", 3, "Update"),
              ("Delete", 4, "Delete"), ("Remove", 4, "Delete"))
_HTTP_METHODS = frozenset({"OPTIONS", "GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "CONNECT"})


# -- values a typed field accepts --------------------------------------------------------------------

def _text(value: object, limit: int = MAX_STRING) -> str | None:
    """``value`` as a string_t (scalars only; None for nothing, containers and empty text)."""
    if value is None or isinstance(value, Mapping | list | tuple):
        return None
    text = value if isinstance(value, str) else str(value)
    return text[:limit] if text else None


def _ip(value: object) -> str | None:
    """An ``ip_t``: the address ``value`` spells (no zone, at most 40 characters), else None."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.scope_id:
        addr = ipaddress.IPv6Address(int(addr))
    return addr.compressed


def _email(value: object) -> str | None:
    return value if isinstance(value, str) and len(value) <= 320 and _EMAIL.fullmatch(value) else None


def _hostname(value: object) -> str | None:
    return value if isinstance(value, str) and len(value) <= 253 and _HOSTNAME.fullmatch(value) else None


def _port(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535 else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63 else None


def _ms(when: dt.datetime) -> int:
    """``timestamp_t``: epoch milliseconds."""
    return int(plausible_time(when).timestamp() * 1000)


def _compact(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None and v != {} and v != []}


# -- shared parts ---------------------------------------------------------------------------------

@functools.cache
def _product() -> dict[str, str]:
    try:
        version = importlib.metadata.version("canary")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"name": "canary", "vendor_name": "canary", "version": version}


def _metadata(uid: str, log_name: str, *, correlation: int | None, drill: str | None,
              suppressed: bool = False, sequence: int | None = None, processed: int | None = None) -> dict[str, Any]:
    labels = (["drill"] if drill else []) + (["suppressed"] if suppressed else [])
    return _compact({
        "version": OCSF_VERSION, "product": dict(_product()), "uid": _text(uid), "log_name": log_name,
        "log_provider": "canary", "correlation_uid": str(correlation) if correlation is not None else None,
        "sequence": sequence, "labels": labels, "processed_time": processed,
    })


def _head(class_uid: int, activity: tuple[int, str], severity: Severity, when: int) -> dict[str, Any]:
    name, category_uid, category_name = _CLASSES[class_uid]
    severity_id, severity_name = _SEVERITY[severity]
    return {
        "class_uid": class_uid, "class_name": name, "category_uid": category_uid, "category_name": category_name,
        "activity_id": activity[0], "activity_name": activity[1], "type_uid": class_uid * 100 + activity[0],
        "type_name": f"{name}: {activity[1]}", "severity_id": severity_id, "severity": severity_name, "time": when,
    }


def _attacks(found: Sequence[Technique]) -> list[dict[str, Any]]:
    """OCSF ``attack`` objects: one per technique and tactic; a sub-technique under its technique."""
    out = []
    for t in found:
        parent, _, sub = t.uid.partition(".")
        name, _, sub_name = t.name.partition(": ")
        base: dict[str, Any] = {"version": ATTACK_VERSION}
        if sub:
            base["technique"] = {"uid": parent, "name": name,
                                 "src_url": f"https://attack.mitre.org/techniques/{parent}/"}
            base["sub_technique"] = {"uid": t.uid, "name": sub_name or t.name, "src_url": t.url}
        else:
            base["technique"] = {"uid": t.uid, "name": t.name, "src_url": t.url}
        for tactic in t.tactics or (None,):
            attack = dict(base)
            if tactic is not None:
                attack["tactic"] = {"uid": tactic.uid, "name": tactic.name,
                                    "src_url": f"https://attack.mitre.org/tactics/{tactic.uid}/"}
            out.append(attack)
    return out


def _attacks_from_json(attack: Sequence[Mapping[str, Any]]) -> list[Technique]:
    """``Alert.attack`` (canary.attack's JSON) back as techniques (malformed entries skipped)."""
    from_json = []
    for t in attack:
        uid, name = _text(t.get("id"), 64), _text(t.get("name"), 512)
        if not uid or not name:
            continue
        tactics = tuple(
            Tactic(str(x["id"])[:64], str(x.get("name") or x["id"])[:256])
            for x in (t.get("tactics") or ()) if isinstance(x, Mapping) and _text(x.get("id"))
        )
        from_json.append(Technique(uid, name, tactics))
    return from_json


def _user(actor: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``user`` an actor mapping names (user, role, sender, caller), or None."""
    name = next((v for k in ("user", "role", "sender", "caller") if (v := _text(actor.get(k), 1024))), None)
    if name is None:
        return None
    user: dict[str, Any] = {"name": name}
    if (email := _email(actor.get("sender")) or _email(actor.get("from"))) is not None:
        user["email_addr"] = email
    if (arn := _text(actor.get("arn"), 2048)) is not None:
        user["uid"] = arn
    if (account := _text(actor.get("account_id"), 64)) is not None:
        user["account"] = {"uid": account, "type_id": 10, "type": "AWS Account"}
    if (kind := _text(actor.get("identity_type"), 256)) is not None:
        user["type"] = kind
    return user


def _endpoint(origin: Mapping[str, Any], enrichment: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The client as a ``network_endpoint``: ``ip`` only for an address, otherwise its text as ``name``
    (``[local]``, a socket path); location from the enrichment."""
    raw = origin.get("client_addr")
    ip = _ip(raw)
    endpoint: dict[str, Any] = {}
    if ip is not None:
        endpoint["ip"] = ip
    elif (name := _text(raw, 1024)) is not None:
        endpoint["name"] = name
    if (port := _port(origin.get("client_port"))) is not None:
        endpoint["port"] = port
    if enrichment:
        if (host := _hostname(enrichment.get("rdns"))) is not None:
            endpoint["hostname"] = host
        location = _compact({"country": _text(enrichment.get("country"), 256), "city": _text(enrichment.get("city"), 256),
                             "isp": _text(enrichment.get("as_org"), 1024)})
        if location.get("country") or location.get("city"):
            if isinstance(enrichment.get("internal"), bool):
                location["is_on_premises"] = enrichment["internal"]
            endpoint["location"] = location
    return endpoint or None


def _dst(origin: Mapping[str, Any]) -> dict[str, Any] | None:
    """Where it happened: the node / honeypot / host canary names in the origin."""
    name = next((v for k in ("node", "honeypot", "host") if (v := _text(origin.get(k), 1024))), None)
    return {"name": name} if name else None


def _observables(endpoint: Mapping[str, Any] | None, endpoint_at: str, user: Mapping[str, Any] | None,
                 user_at: str) -> list[dict[str, Any]]:
    out = []
    if endpoint and "ip" in endpoint:
        out.append({"name": f"{endpoint_at}.ip", "type_id": 2, "type": "IP Address", "value": endpoint["ip"]})
    if user:
        out.append({"name": f"{user_at}.name", "type_id": 4, "type": "User Name", "value": user["name"]})
        if "email_addr" in user:
            out.append({"name": f"{user_at}.email_addr", "type_id": 5, "type": "Email Address",
                        "value": user["email_addr"]})
    return out


def _actor_facts(actor: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in actor.items() if k not in _SECRET_ACTOR_KEYS}


# -- incidents ------------------------------------------------------------------------------------

def detection_finding(alert: Alert, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """One incident notification as a Detection Finding (2004): Create for the trigger, Update for an
    escalation or acknowledgement, Close for the resolution; ``time`` is the incident's last activity
    (trigger, update) or ``now`` (acknowledge, resolve; the time of mapping when not given)."""
    activity = _FINDING_ACTIVITY[alert.action]
    status_id, status = _FINDING_STATUS[alert.action]
    if alert.action in (AlertAction.TRIGGER, AlertAction.UPDATE):
        when = _ms(alert.last_seen)
    else:
        when = _ms(now or dt.datetime.now(dt.UTC))
    user = _user(alert.actor)
    endpoint = _endpoint(alert.origin, alert.enrichment)
    evidence: dict[str, Any] = {"data": {"actor": _actor_facts(alert.actor), "origin": dict(alert.origin),
                                         "evidence": dict(alert.evidence)}}
    if user:
        evidence["actor"] = {"user": user}
    if endpoint:
        evidence["src_endpoint"] = endpoint
    if (dst := _dst(alert.origin)) is not None:
        evidence["dst_endpoint"] = dst
    finding_info = _compact({
        "uid": alert.dedup_key[:MAX_STRING], "title": alert.title[:MAX_STRING] or str(alert.kind),
        "desc": alert.summary[:MAX_STRING] or None, "types": [f"Canary {str(alert.kind).capitalize()}"],
        "created_time": _ms(alert.first_seen), "first_seen_time": _ms(alert.first_seen),
        "last_seen_time": _ms(alert.last_seen), "modified_time": when if alert.sequence else None,
        "attacks": _attacks(_attacks_from_json(alert.attack)), "src_url": _text(alert.link),
        "data_sources": [s] if (s := _text(alert.source, 1024)) else [],
        "analytic": {"name": _text(alert.source, 1024) or str(alert.kind), "type_id": 1, "type": "Rule"},
    })
    record = _head(DETECTION_FINDING, activity, alert.severity, when)
    record.update(_compact({
        "metadata": _metadata(f"{alert.dedup_key}/{alert.sequence}/{alert.action}", "incidents",
                              correlation=alert.incident_id, drill=alert.drill, sequence=alert.sequence),
        "message": alert.summary[:MAX_STRING] or None, "status_id": status_id, "status": status,
        "confidence_id": 3, "confidence": "High", "count": _int(alert.event_count),
        "start_time": _ms(alert.first_seen), "end_time": _ms(alert.last_seen),
        "finding_info": finding_info, "evidences": [evidence],
        "observables": _observables(endpoint, "evidences.src_endpoint", user, "evidences.actor.user"),
        "resources": [_compact({"name": _text(c.get("label"), 1024), "type": _text(c.get("kind"), 256)})
                      for c in alert.canaries if isinstance(c, Mapping) and _text(c.get("label"))],
        "enrichments": _enrichments(alert.origin, alert.enrichment),
        "unmapped": {"canary": _compact({
            "incident_id": alert.incident_id, "action": str(alert.action), "kind": str(alert.kind),
            "source": alert.source, "sequence": alert.sequence, "canary_count": alert.canary_count,
            "event_count": alert.event_count, "canaries": [dict(c) for c in alert.canaries if isinstance(c, Mapping)], "drill": alert.drill,
        })},
    }))
    return record


def _enrichments(origin: Mapping[str, Any], enrichment: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What is known about the client address, as one ``enrichment`` of ``src_endpoint.ip``."""
    data = {k: v for k, v in enrichment.items() if k != "address" and v not in (None, "")}
    address = _text(enrichment.get("address"), 1024) or _text(origin.get("client_addr"), 1024)
    if not data or not address:
        return []
    return [{"name": "src_endpoint.ip", "value": address, "type": "Network", "provider": "canary", "data": data}]



# -- events ---------------------------------------------------------------------------------------

def event_record(stored: StoredEvent) -> dict[str, Any]:
    """One committed event in the OCSF class of what happened (the table in the module docstring);
    ``record["class_uid"]`` tells which."""
    event = stored.event
    if event.kind in (EventKind.READ, EventKind.EXPORTED):
        record = _datastore_activity(event)
    elif event.kind is EventKind.CONTACTED:
        record = _email_activity(event) or _event_finding(stored)
    elif event.kind is EventKind.USED:
        api = event.source.startswith(_API_SOURCES) or "event_source" in event.evidence
        record = _api_activity(event) if api else _authentication(event)
    else:
        record = _event_finding(stored)
    if record["class_uid"] != DETECTION_FINDING:
        attacks = _attacks(techniques(event.kind, event.source, event.evidence))
        user = record.get("actor", {}).get("user") or record.get("user")
        record["observables"] = _observables(record.get("src_endpoint"), "src_endpoint", user,
                                             "actor.user" if "actor" in record else "user")
        for field in ("from", "smtp_from"):  # Email Activity has no actor (without the host profile): the sender
            if (address := record.get("email", {}).get(field)) is not None:
                record["observables"].append({"name": f"email.{field}", "type_id": 5, "type": "Email Address",
                                              "value": address})
        record["unmapped"] = {"attacks": attacks, "canary": _event_facts(stored)}
        record = _compact(record)
    if stored.enrichment:
        src = record.get("src_endpoint")
        if isinstance(src, dict) and src.get("ip"):
            known = _endpoint(event.origin, stored.enrichment) or {}
            src.update({k: v for k, v in known.items() if k in ("hostname", "location")})
        if found := _enrichments(event.origin, stored.enrichment):
            record["enrichments"] = found
    record["metadata"] = _metadata(f"event/{stored.id}", "events", correlation=stored.incident_id, drill=event.drill,
                                   suppressed=stored.suppressed_by is not None, processed=_ms(event.detected_at))
    record["message"] = incident_title(event)[:MAX_STRING]
    return record


def _event_facts(stored: StoredEvent) -> dict[str, Any]:
    """Everything canary knows about the event, for ``unmapped.canary`` / a finding's evidence data."""
    event = stored.event
    return _compact({
        "event_id": stored.id, "incident_id": stored.incident_id, "kind": str(event.kind), "source": event.source,
        "key": event.key, "group": event.group, "canary": dict(stored.canary),
        "suppressed_by": stored.suppressed_by, "drill": event.drill, "actor": _actor_facts(event.actor),
        "origin": dict(event.origin), "evidence": dict(event.evidence),
    })


def _base(event: DetectionEvent, class_uid: int, activity: tuple[int, str]) -> dict[str, Any]:
    return _head(class_uid, activity, event.severity, _ms(event.observed_at))


def _actor(event: DetectionEvent) -> dict[str, Any]:
    """An ``actor`` (required by Datastore and API Activity): the user canary knows, else the session
    or process, else a user named "unknown" (as the incident title says)."""
    user = _user(event.actor)
    if user is not None:
        return {"user": user}
    if (session := _text(event.evidence.get("session_id"), 1024)) is not None:
        return {"session": {"uid": session}}
    if (pid := _int(event.origin.get("pid"))) is not None:
        return {"process": {"pid": pid}}
    return {"user": {"name": "unknown", "type_id": 0, "type": "Unknown"}}


def _src(event: DetectionEvent) -> dict[str, Any]:
    """A ``src_endpoint`` (required by Datastore and API Activity): the client, else "unknown"."""
    return _endpoint(event.origin) or {"name": "unknown"}


def _datastore_activity(event: DetectionEvent) -> dict[str, Any]:
    """Datastore Activity (6005): a query returned canary rows (Read) or canary data left (Other:
    Export; a COPY, a dump, values found in a file or a copied table)."""
    activity = (1, "Read") if event.kind is EventKind.READ else (99, "Export")
    record = _base(event, DATASTORE_ACTIVITY, activity)
    origin, evidence = event.origin, event.evidence
    database = _text(origin.get("database"), 1024) or _text(origin.get("datastore"), 1024)
    table = _text(evidence.get("table"), 1024) or _text(evidence.get("object"), 1024)
    query = _text(evidence.get("query"))
    record.update(_compact({
        "actor": _actor(event), "src_endpoint": _src(event), "dst_endpoint": _dst(origin),
        "database": _compact({"name": database or "unknown", "type_id": 1, "type": "Relational",
                              "uid": _text(origin.get("datastore"), 1024)}),
        "table": {"name": table} if table else None, "type_id": 3 if table else 1, "type": "Table" if table else "Database",
        "query_info": _compact({"query_string": query, "name": _text(evidence.get("command"), 256) or "query",
                                "uid": _text(evidence.get("vxid"), 256)}) if query else None,
        "status_id": 1, "status": "Success",
    }))
    return record


def _email_activity(event: DetectionEvent) -> dict[str, Any] | None:
    """Email Activity (4009) for a received message whose sender OCSF's ``email_t`` accepts; None for a
    call / SMS, an SMTP probe, or a sender it does not (recorded as a Detection Finding instead)."""
    actor, origin, evidence = event.actor, event.origin, event.evidence
    if evidence.get("channel") in ("sms", "voice") or "caller" in actor or evidence.get("probe"):
        return None
    envelope, header = _email(actor.get("sender")), _email(actor.get("from"))
    sender = header or envelope
    if sender is None:
        return None
    record = _base(event, EMAIL_ACTIVITY, (2, "Receive"))
    email = _compact({
        "from": sender, "to": [], "smtp_from": envelope, "subject": _text(evidence.get("subject")),
        "message_uid": _text(evidence.get("message_id"), 1024), "uid": _text(evidence.get("provider_id"), 1024),
        "size": _int(evidence.get("size")),
    })
    email.setdefault("to", [])  # required; the recipient is the canary's address, never sent
    auth = _compact({"spf": _text(evidence.get("spf"), 256), "dkim": _text(evidence.get("dkim"), 256),
                     "dkim_domain": _text(evidence.get("dkim_domain"), 1024)})
    record.update(_compact({
        "direction_id": 1, "direction": "Inbound", "email": email, "email_auth": auth,
        "smtp_hello": _text(origin.get("helo"), 1024), "src_endpoint": _endpoint(origin),
        "status_id": 1, "status": "Success",
    }))
    return record


def _http_request(origin: Mapping[str, Any]) -> dict[str, Any] | None:
    method = _text(origin.get("method"), 16)
    url = _compact({"path": _text(origin.get("path"), 8192), "hostname": _hostname(origin.get("host"))})
    request = _compact({
        "http_method": method.upper() if method and method.upper() in _HTTP_METHODS else None,
        "url": url if url.get("path") else None, "user_agent": _text(origin.get("user_agent"), 8192),
    })
    return request or None


def _api_activity(event: DetectionEvent) -> dict[str, Any]:
    """API Activity (6003): an AWS call made with a canary key (CloudTrail) or a request with a canary
    token at the gateway."""
    origin, evidence = event.origin, event.evidence
    operation = _text(evidence.get("event_name"), 1024) or _text(evidence.get("operation"), 1024)
    if operation is None and (path := _text(origin.get("path"), 4096)):
        operation = f"{_text(origin.get('method'), 16) or 'request'} {path}"
    activity = next(((uid, name) for verb, uid, name in _API_VERBS if operation and operation.startswith(verb)),
                    (99, "Other"))
    record = _base(event, API_ACTIVITY, activity)
    error = _text(evidence.get("error_code"), 1024)
    api = _compact({
        "operation": operation or "unknown",
        "service": {"name": svc} if (svc := _text(evidence.get("event_source"), 1024) or _text(origin.get("host"), 1024)) else None,
        "request": {"uid": rid} if (rid := _text(evidence.get("request_id"), 1024)) else None,
        "response": _compact({"error": error, "error_message": _text(evidence.get("error_message"))}),
    })
    record.update(_compact({
        "api": api, "actor": _actor(event), "src_endpoint": _src(event), "http_request": _http_request(origin),
        "status_id": 2 if error else 1, "status": "Failure" if error else "Success",
    }))
    return record


def _authentication(event: DetectionEvent) -> dict[str, Any]:
    """Authentication (3002): a canary credential presented at a honeypot (a PostgreSQL logon, a token
    in an HTTP request): a Logon attempt whose outcome canary does not decide (status Unknown)."""
    origin = event.origin
    user = _user(event.actor) or {"name": "unknown", "type_id": 0, "type": "Unknown"}
    dst = _dst(origin)
    service = "postgresql" if event.source.startswith("pg") or "database" in origin else "http"
    record = _base(event, AUTHENTICATION, (1, "Logon"))
    record.update(_compact({
        "user": user, "src_endpoint": _endpoint(origin), "dst_endpoint": dst, "service": {"name": service},
        "http_request": _http_request(origin), "is_remote": True, "status_id": 0, "status": "Unknown",
        "logon_type_id": 3, "logon_type": "Network",
    }))
    return record


def _event_finding(stored: StoredEvent) -> dict[str, Any]:
    """A Detection Finding (2004) for one event that no activity class describes: an SMS or call, an
    SMTP probe, a mail from a sender that is no e-mail address, tampering, a health problem. Its uid is
    the event's key (stable across resends); suppressed events have status Suppressed."""
    event = stored.event
    record = _base(event, DETECTION_FINDING, (1, "Create"))
    user, endpoint = _user(event.actor), _endpoint(event.origin)
    evidence: dict[str, Any] = {"data": _event_facts(stored)}
    if user:
        evidence["actor"] = {"user": user}
    if endpoint:
        evidence["src_endpoint"] = endpoint
    if (dst := _dst(event.origin)) is not None:
        evidence["dst_endpoint"] = dst
    observables = _observables(endpoint, "evidences.src_endpoint", user, "evidences.actor.user")
    if (caller := _text(event.actor.get("caller"), 256)) is not None:
        observables.append({"name": "evidences.actor.user.name", "type_id": 99, "type": "Phone Number", "value": caller})
    label = _text(stored.canary.get("label"), 1024)
    status = (3, "Suppressed") if stored.suppressed_by is not None else (1, "New")
    record.update(_compact({
        "finding_info": _compact({
            "uid": event.key or f"event/{stored.id}", "title": incident_title(event)[:MAX_STRING],
            "types": [f"Canary {str(event.kind).capitalize()}"], "created_time": _ms(event.detected_at),
            "first_seen_time": _ms(event.observed_at), "last_seen_time": _ms(event.observed_at),
            "attacks": _attacks(techniques(event.kind, event.source, event.evidence)),
            "data_sources": [s] if (s := _text(event.source, 1024)) else [],
            "analytic": {"name": _text(event.source, 1024) or str(event.kind), "type_id": 1, "type": "Rule"},
        }),
        "status_id": status[0], "status": status[1], "status_detail": _text(stored.suppressed_by, 1024),
        "confidence_id": 3, "confidence": "High", "evidences": [evidence], "observables": observables,
        "resources": [_compact({"name": label, "type": _text(stored.canary.get("kind"), 256)})] if label else [],
        "unmapped": {"canary": _compact({"event_id": stored.id, "incident_id": stored.incident_id,
                                         "suppressed_by": stored.suppressed_by, "drill": event.drill})},
    }))
    return record
