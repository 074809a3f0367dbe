"""canary's incidents and events in OCSF 1.1.0: every record validates against the schema export
(``ocsf_support.validate_ocsf``), each kind lands in its class, hostile facts never make a field invalid."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Mapping
from typing import Any

import pytest
from alerting_servers import make_alert
from hypothesis import given, settings
from hypothesis import strategies as st
from ocsf_support import OcsfInvalid, validate_ocsf

from canary.alerts import AlertAction, alert_for
from canary.attack import attack_json
from canary.events import MAX_TEXT, DetectionEvent, EventKind, Severity, StoredEvent
from canary.sinks.ocsf import OCSF_VERSION, detection_finding, event_record

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
EARLIER = NOW - dt.timedelta(minutes=5)
AWS_KEY_ID = "AKIAIOSFODNN7CANARY1"


def _stored(kind: str, source: str, actor: Mapping[str, Any] | None = None, origin: Mapping[str, Any] | None = None,
            evidence: Mapping[str, Any] | None = None, *, suppressed_by: str | None = None, drill: str | None = None,
            severity: Severity = Severity.CRITICAL, event_id: int = 41) -> StoredEvent:
    event = DetectionEvent(kind=EventKind(kind), source=source, key=f"key-{event_id}", group="g", canary_id=3,
                           observed_at=EARLIER, detected_at=NOW, actor=actor or {}, origin=origin or {},
                           evidence=evidence or {}, severity=severity, drill=drill)
    return StoredEvent(id=event_id, event=event, incident_id=9, canary={"uid": "cy_1", "label": "shop/public.customers",
                                                                        "kind": "customer"}, suppressed_by=suppressed_by)


# the shapes the sources commit (canary/postgres/read.py, contact/evidence.py, credentials/*.py, health/*.py)
PG_READ = ("read", "jsonlog:node1", {"user": "mallory", "role": "app", "application_name": "psql"},
           {"client_addr": "10.0.0.9", "node": "node1", "datastore": "shop", "database": "shop", "pid": 4242},
           {"query": "SELECT * FROM customers", "table": "public.customers", "session_id": "66.1", "vxid": "3/7"})
PG_COPY = ("exported", "jsonlog:node1", {"user": "mallory"}, {"client_addr": "[local]", "node": "node1", "datastore": "shop"},
           {"query": "COPY customers TO STDOUT", "table": "public.customers"})
FILE_EXPORT = ("exported", "filescan", {}, {"node": "files1"}, {"signal": "export_file", "path": "/srv/dump.csv"})
MAIL = ("contacted", "smtp", {"sender": "eve@evil.example", "from": "Eve <eve@evil.example>"},
        {"client_addr": "203.0.113.5", "helo": "mx.evil.example"},
        {"message_id": "<1@evil.example>", "subject": "Invoice", "spf": "fail", "dkim": "none", "size": 812,
         "provider_id": None, "urls": ["http://evil.example/x"]})
BOUNCE = ("contacted", "smtp", {"sender": "<>", "from": None}, {"client_addr": "203.0.113.5"}, {"subject": "Undeliverable"})
PROBE = ("contacted", "smtp", {"sender": "eve@evil.example"}, {"client_addr": "203.0.113.5", "helo": "x"},
         {"probe": "rcpt", "peer": "203.0.113.5", "counts": {"rcpt": 9}})
SMS = ("contacted", "twilio", {"caller": "+15555550123"}, {"country": "US"}, {"channel": "sms", "text": "hi", "provider_id": "SM1"})
CALL = ("contacted", "twilio", {"caller": "+15555550123"}, {}, {"channel": "voice", "call_status": "completed"})
CLOUDTRAIL = ("used", "cloudtrail", {"user": "deploy", "arn": "arn:aws:iam::111122223333:user/deploy",
                                     "account_id": "111122223333", "identity_type": "IAMUser", "access_key_id": AWS_KEY_ID},
              {"client_addr": "198.51.100.7", "user_agent": "aws-cli/2.15", "aws_region": "eu-west-1"},
              {"credential": "aws_key_id", "event_name": "ListBuckets", "event_source": "s3.amazonaws.com",
               "error_code": "AccessDenied", "request_id": "R1", "event_id": "E1"})
GATEWAY = ("used", "gateway", {"user": "svc-app"}, {"client_addr": "2001:db8::7", "method": "post", "path": "/v1/orders",
                                                   "host": "api.example.com", "user_agent": "curl/8"},
           {"credential": "token", "signal": "used"})
TOKEN_HONEYPOT = ("used", "token_honeypot", {"user": "curl/8", "user_agent": "curl/8"},
                  {"client_addr": "198.51.100.8", "client_port": 51515, "method": "GET", "path": "/api", "host": "h:8080"},
                  {"credential": "token", "signal": "used", "credential_fingerprint": "fp"})
PG_HONEYPOT = ("used", "pg_honeypot", {"user": "backup"}, {"client_addr": "198.51.100.9", "client_port": 40000,
                                                          "database": "prod", "honeypot": "0.0.0.0:5432"},
               {"credential": "postgres_login", "signal": "used", "auth_method": "scram-sha-256"})
TAMPER = ("tamper", "jsonlog:node1", {"user": "mallory"}, {"client_addr": "10.0.0.9", "node": "node1"},
          {"signal": "forged_log_line", "claimed": "read"})
HEALTH = ("health", "checks", {}, {"node": "node1", "datastore": "shop"}, {"problem": "log_ingestion_stalled"})
DEAD_LETTER = ("health", "outbox", {"sink": "pagerduty"}, {}, {"incident_id": 3, "error": "HTTP 400"})

KINDS = {
    "pg read": (PG_READ, 6005), "pg copy": (PG_COPY, 6005), "file export": (FILE_EXPORT, 6005), "mail": (MAIL, 4009),
    "bounce": (BOUNCE, 2004), "rcpt probe": (PROBE, 2004), "sms": (SMS, 2004), "call": (CALL, 2004),
    "cloudtrail": (CLOUDTRAIL, 6003), "gateway": (GATEWAY, 6003), "token honeypot": (TOKEN_HONEYPOT, 3002),
    "pg honeypot": (PG_HONEYPOT, 3002), "tamper": (TAMPER, 2004), "health": (HEALTH, 2004),
    "dead letter": (DEAD_LETTER, 2004),
}


@pytest.mark.parametrize("name", list(KINDS))
def test_every_event_kind_maps_to_its_class_and_validates(name: str) -> None:
    """Each event kind (and channel) lands in its OCSF 1.1.0 class, with the common header right, and
    the record validates against the schema."""
    shape, class_uid = KINDS[name]
    record = event_record(_stored(*shape))
    validate_ocsf(record)
    assert record["class_uid"] == class_uid
    assert record["type_uid"] == class_uid * 100 + record["activity_id"]
    assert record["time"] == int(EARLIER.timestamp() * 1000)
    assert record["metadata"]["version"] == OCSF_VERSION == "1.1.0"
    assert record["metadata"]["uid"] == "event/41" and record["metadata"]["correlation_uid"] == "9"
    assert record["metadata"]["product"]["name"] == "canary"
    assert record["severity_id"] == 5


def test_datastore_activity_carries_who_where_and_what() -> None:
    """A read: actor, client address, database, table and the query in Datastore Activity's own fields;
    the technique in ``unmapped.attacks`` (the class has no attacks without a profile)."""
    record = event_record(_stored(*PG_READ))
    assert record["activity_name"] == "Read" and record["type_uid"] == 600501
    assert record["actor"]["user"]["name"] == "mallory"
    assert record["src_endpoint"] == {"ip": "10.0.0.9"}
    assert record["dst_endpoint"] == {"name": "node1"}
    assert record["database"]["name"] == "shop" and record["table"] == {"name": "public.customers"}
    assert record["query_info"]["query_string"] == "SELECT * FROM customers"
    assert [a["technique"]["uid"] for a in record["unmapped"]["attacks"]] == ["T1213"]
    assert {"name": "src_endpoint.ip", "type_id": 2, "type": "IP Address", "value": "10.0.0.9"} in record["observables"]
    assert record["unmapped"]["canary"]["canary"]["label"] == "shop/public.customers"


def test_email_activity_never_names_the_recipient() -> None:
    """A mail: sender (header and envelope), subject, message id, SPF / DKIM in Email Activity; ``email.to``
    is empty (the recipient is the canary's address)."""
    record = event_record(_stored(*MAIL))
    email = record["email"]
    assert record["direction_id"] == 1 and record["activity_name"] == "Receive"
    assert email["smtp_from"] == "eve@evil.example" and email["to"] == []
    assert email["subject"] == "Invoice" and email["message_uid"] == "<1@evil.example>" and email["size"] == 812
    assert record["email_auth"] == {"spf": "fail", "dkim": "none"}
    assert record["smtp_hello"] == "mx.evil.example"
    assert {"name": "email.smtp_from", "type_id": 5, "type": "Email Address", "value": "eve@evil.example"} in record["observables"]


def test_api_activity_for_cloudtrail_leaves_out_the_key_id() -> None:
    """An AWS call with a canary key: operation, service, request id, error, caller's ARN and account in
    API Activity; the key id itself (a canary value) appears nowhere in the record."""
    record = event_record(_stored(*CLOUDTRAIL))
    assert record["api"]["operation"] == "ListBuckets" and record["activity_name"] == "Read"
    assert record["api"]["service"] == {"name": "s3.amazonaws.com"}
    assert record["api"]["response"]["error"] == "AccessDenied" and record["status_id"] == 2
    assert record["actor"]["user"]["uid"] == "arn:aws:iam::111122223333:user/deploy"
    assert record["actor"]["user"]["account"]["uid"] == "111122223333"
    assert {a["sub_technique"]["uid"] for a in record["unmapped"]["attacks"]} == {"T1078.004"}
    assert AWS_KEY_ID not in json.dumps(record)
    alert = make_alert(actor=CLOUDTRAIL[2], source="cloudtrail", kind=EventKind.USED)
    assert AWS_KEY_ID not in json.dumps(detection_finding(alert))


def test_gateway_request_and_honeypot_logon() -> None:
    """A gateway token: the HTTP request (method, path, host, agent) in API Activity; a honeypot logon:
    Authentication with the user, the service and the honeypot as destination."""
    gateway = event_record(_stored(*GATEWAY))
    assert gateway["http_request"] == {"http_method": "POST", "url": {"path": "/v1/orders", "hostname": "api.example.com"},
                                       "user_agent": "curl/8"}
    assert gateway["api"]["operation"] == "post /v1/orders" and gateway["src_endpoint"]["ip"] == "2001:db8::7"
    logon = event_record(_stored(*PG_HONEYPOT))
    assert logon["user"]["name"] == "backup" and logon["service"] == {"name": "postgresql"}
    assert logon["dst_endpoint"] == {"name": "0.0.0.0:5432"} and logon["src_endpoint"] == {"ip": "198.51.100.9", "port": 40000}
    token = event_record(_stored(*TOKEN_HONEYPOT))
    assert token["service"] == {"name": "http"} and "hostname" not in token["http_request"]["url"]  # "h:8080" is no hostname_t


def test_sms_and_call_are_findings_with_the_caller() -> None:
    """An SMS or call (no OCSF 1.1.0 class describes one) is a Detection Finding about the event: its uid
    the event's key, the caller as an observable, phishing techniques in ``finding_info.attacks``."""
    sms, call = event_record(_stored(*SMS)), event_record(_stored(*CALL))
    assert sms["finding_info"]["uid"] == "key-41" and sms["metadata"]["log_name"] == "events"
    assert {"name": "evidences.actor.user.name", "type_id": 99, "type": "Phone Number", "value": "+15555550123"} in sms["observables"]
    assert [a["technique"]["uid"] for a in sms["finding_info"]["attacks"]] == ["T1566"]
    assert call["finding_info"]["attacks"][0]["sub_technique"]["uid"] == "T1566.004"
    assert event_record(_stored(*HEALTH))["finding_info"].get("attacks") is None  # health is no technique


@pytest.mark.parametrize("action, activity, status", [
    (AlertAction.TRIGGER, (1, "Create"), (1, "New")),
    (AlertAction.UPDATE, (2, "Update"), (99, "Escalated")),
    (AlertAction.ACKNOWLEDGE, (2, "Update"), (2, "In Progress")),
    (AlertAction.RESOLVE, (3, "Close"), (4, "Resolved")),
])
def test_every_action_is_a_detection_finding_activity(action: AlertAction, activity: tuple[int, str],
                                                      status: tuple[int, str]) -> None:
    """Trigger creates the finding, escalation and acknowledgement update it, resolution closes it;
    the status follows; time is the last activity (trigger, update) or the time of the change."""
    alert = make_alert(action=action, sequence=0 if action is AlertAction.TRIGGER else 2)
    record = detection_finding(alert, now=NOW + dt.timedelta(hours=1))
    validate_ocsf(record)
    assert (record["class_uid"], record["category_uid"]) == (2004, 2)
    assert (record["activity_id"], record["activity_name"]) == activity
    assert record["type_uid"] == 200400 + activity[0]
    assert (record["status_id"], record["status"]) == status
    expected = NOW if action in (AlertAction.TRIGGER, AlertAction.UPDATE) else NOW + dt.timedelta(hours=1)
    assert record["time"] == int(expected.timestamp() * 1000)
    assert record["finding_info"]["uid"] == alert.dedup_key


def _incident(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": 12, "dedup_key": "canary-inc-12", "canary_ids": [3, 4], "event_count": 5, "title": "Canary data read by mallory",
        "kind": "read", "severity": "critical", "first_seen": EARLIER, "last_seen": NOW, "actor": {"user": "mallory"},
        "origin": {"client_addr": "10.0.0.9"}, "evidence": {"query": "SELECT 1"}, "drill": None, "source": "jsonlog:node1",
    }
    row.update(overrides)
    return row


def test_finding_uid_is_stable_across_the_incidents_notifications() -> None:
    """Trigger, escalation, acknowledgement and resolution of one incident (as ``alert_for`` builds them)
    are one finding: same ``finding_info.uid`` and correlation uid, a distinct ``metadata.uid`` each."""
    labels = [{"label": "shop/public.customers", "kind": "customer"}]
    records = [detection_finding(alert_for(_incident(), labels, action, seq, "https://canary.example"), now=NOW)
               for seq, action in enumerate(AlertAction)]
    for record in records:
        validate_ocsf(record)
    assert {r["finding_info"]["uid"] for r in records} == {"canary-inc-12"}
    assert {r["metadata"]["correlation_uid"] for r in records} == {"12"}
    assert len({r["metadata"]["uid"] for r in records}) == 4
    first = records[0]["finding_info"]
    assert first["src_url"] == "https://canary.example/incidents/12"
    assert first["first_seen_time"] == first["created_time"] == int(EARLIER.timestamp() * 1000)
    assert records[0]["resources"] == [{"name": "shop/public.customers", "type": "customer"}]
    assert records[0]["count"] == 5


def test_finding_carries_attacks_enrichment_and_location() -> None:
    """ATT&CK techniques become ``finding_info.attacks`` (one per technique and tactic, a sub-technique
    under its technique); the client's enrichment becomes an ``enrichment`` and the evidence endpoint's
    location and hostname."""
    alert = make_alert(kind=EventKind.USED, source="cloudtrail", attack=attack_json("used", "cloudtrail", {}),
                       enrichment={"address": "10.0.0.9", "country": "DE", "city": "Berlin", "asn": 3320,
                                   "as_org": "Deutsche Telekom AG", "rdns": "p1.dip.example.net", "internal": False})
    record = detection_finding(alert)
    validate_ocsf(record)
    attacks = record["finding_info"]["attacks"]
    assert len(attacks) == 4 and {a["tactic"]["uid"] for a in attacks} == {"TA0001", "TA0003", "TA0004", "TA0005"}
    assert all(a["technique"]["uid"] == "T1078" and a["sub_technique"]["uid"] == "T1078.004" for a in attacks)
    assert attacks[0]["version"] == "16.1"
    endpoint = record["evidences"][0]["src_endpoint"]
    assert endpoint["ip"] == "10.0.0.9" and endpoint["hostname"] == "p1.dip.example.net"
    assert endpoint["location"] == {"country": "DE", "city": "Berlin", "isp": "Deutsche Telekom AG", "is_on_premises": False}
    assert record["enrichments"][0]["data"]["asn"] == 3320 and record["enrichments"][0]["value"] == "10.0.0.9"
    assert "enrichments" not in detection_finding(make_alert())


@pytest.mark.parametrize("client", ["[local]", "999.1.1.1", "10.0.0.9, 10.0.0.10", "fe80::1%eth0", " ", 12345,
                                    {"nested": "x"}, "::ffff:10.0.0.9", "a" * 70_000])
def test_a_client_address_that_is_no_ip_never_fills_an_ip_field(client: object) -> None:
    """Whatever a source stored as the client address, an ``ip`` field holds only an address (a zone
    dropped); other text is the endpoint's name (cut to a string_t), and the record stays valid."""
    stored = _stored("read", "jsonlog:n", {"user": "u"}, {"client_addr": client}, {"query": "q"})
    record = event_record(stored)
    validate_ocsf(record)
    finding = detection_finding(make_alert(origin={"client_addr": client}))
    validate_ocsf(finding)
    ip = record["src_endpoint"].get("ip")
    if client == "fe80::1%eth0":
        assert ip == "fe80::1"
    elif client == "::ffff:10.0.0.9":
        assert ip == "::ffff:a00:9"
    else:
        assert ip is None
    if client == "[local]":
        assert record["src_endpoint"] == {"name": "[local]"}


def test_hostile_and_huge_facts_stay_valid() -> None:
    """NUL and lone surrogates (made storable by the event), huge evidence, a title longer than OCSF's
    string limit and non-string facts where strings are expected all give valid records."""
    hostile = "a\x00b\ud800c\u202e"
    huge = {f"k{i}": "x" * (MAX_TEXT + 10) for i in range(8)}
    stored = _stored("contacted", "smtp", {"sender": hostile, "from": 7, "user": ["list"]},
                     {"client_addr": hostile, "helo": {"x": 1}, "client_port": 70_000},
                     {"subject": hostile * 10, "message_id": None, "size": "big", **huge})
    validate_ocsf(event_record(stored))
    for shape, _ in KINDS.values():
        kind, source, actor, origin, evidence = shape
        weird = {k: (hostile if isinstance(v, str) else v) for k, v in evidence.items()}
        validate_ocsf(event_record(_stored(kind, source, {k: hostile for k in actor}, {k: hostile for k in origin}, weird)))
    alert = make_alert(title="T" * 70_000, summary="S" * 70_000, dedup_key="d" * 70_000, actor={"user": hostile * 20_000},
                       evidence=huge, link=hostile, canaries=({"label": hostile, "kind": None}, {"no": "label"}, "junk"),
                       attack=({"id": "T1", "name": "n", "tactics": [{"id": None}, "x"]}, {"garbage": 1}))
    record = detection_finding(alert)
    validate_ocsf(record)
    assert len(record["finding_info"]["title"]) == 65_535


def test_suppressed_and_drill_events_are_marked() -> None:
    """A suppressed event carries the ``suppressed`` label and its rule (a finding: status Suppressed);
    a drill's records the ``drill`` label; an unsuppressed, real event neither."""
    read = event_record(_stored(*PG_READ, suppressed_by="expected_contact", drill="drill-7"))
    assert read["metadata"]["labels"] == ["drill", "suppressed"]
    assert read["unmapped"]["canary"]["suppressed_by"] == "expected_contact" and read["unmapped"]["canary"]["drill"] == "drill-7"
    sms = event_record(_stored(*SMS, suppressed_by="expected_contact"))
    assert (sms["status_id"], sms["status"], sms["status_detail"]) == (3, "Suppressed", "expected_contact")
    assert "labels" not in event_record(_stored(*PG_READ))["metadata"]
    assert detection_finding(make_alert(drill="drill-7"))["metadata"]["labels"] == ["drill"]


def test_the_validator_reports_paths() -> None:
    """``validate_ocsf`` refuses a record with a made-up attribute, a bad IP or a missing required field,
    naming each error's path (so the tests above can fail)."""
    record = detection_finding(make_alert())
    record["evidences"][0]["src_endpoint"]["ip"] = "[local]"
    record["made_up"] = 1
    del record["finding_info"]["title"]
    with pytest.raises(OcsfInvalid) as caught:
        validate_ocsf(record)
    paths = {path for path, _ in caught.value.errors}
    assert {"$", "$.evidences[0].src_endpoint.ip", "$.finding_info"} <= paths
    record = detection_finding(make_alert(attack=attack_json("read")))
    record["finding_info"]["attacks"][0]["tactics"] = [{"uid": "TA0009"}]  # valid, but deprecated in 1.1.0
    with pytest.raises(OcsfInvalid, match=r"attacks\[0\]\.tactics: deprecated"):
        validate_ocsf(record)


def test_mapping_is_fast() -> None:
    """Mapping needs no schema at run time: an incident notification or an event maps in well under a millisecond."""
    alert = make_alert(attack=attack_json("read"), enrichment={"address": "10.0.0.9", "country": "DE"})
    stored = _stored(*MAIL)
    started = time.perf_counter()
    for _ in range(500):
        detection_finding(alert)
        event_record(stored)
    per_pair = (time.perf_counter() - started) / 500
    assert per_pair < 0.001, f"{per_pair * 1e6:.0f} µs per alert + event"


# -- any alert, any event ---------------------------------------------------------------------------

_scalar = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=30) | st.sampled_from(
    ["", "\x00", "\ud800", "[local]", "10.0.0.1", "::1", "fe80::1%eth0", "a@b.co", "<>", "x" * 300, "ex.example"])
_facts = st.dictionaries(st.sampled_from(["user", "role", "sender", "from", "caller", "client_addr", "client_port", "node",
                                          "database", "datastore", "table", "query", "pid", "host", "path", "method",
                                          "helo", "channel", "probe", "event_name", "event_source", "error_code",
                                          "subject", "message_id", "size", "session_id", "honeypot", "arn", "account_id",
                                          "signal", "rdns", "country", "city", "internal", "other"]),
                         st.recursive(_scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                                      max_leaves=6), max_size=8)
_sources = st.sampled_from(["jsonlog:n1", "smtp", "twilio", "cloudtrail", "gateway", "pg_honeypot", "token_honeypot",
                            "checks", "filescan", ""])
_times = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31), timezones=st.just(dt.UTC))


@settings(max_examples=60)
@given(kind=st.sampled_from(list(EventKind)), source=_sources, actor=_facts, origin=_facts, evidence=_facts,
       severity=st.sampled_from(list(Severity)), suppressed=st.none() | st.text(max_size=10), drill=st.none() | st.text(max_size=10),
       observed=_times, event_id=st.integers(1, 2**62))
def test_any_event_maps_to_a_valid_record(kind: EventKind, source: str, actor: dict[str, Any], origin: dict[str, Any],
                                          evidence: dict[str, Any], severity: Severity, suppressed: str | None,
                                          drill: str | None, observed: dt.datetime, event_id: int) -> None:
    """Every event a source could commit, whatever its facts, maps to a record that validates."""
    event = DetectionEvent(kind=kind, source=source, key="k", group="g", canary_id=None, observed_at=observed,
                           actor=actor, origin=origin, evidence=evidence, severity=severity, drill=drill)
    record = event_record(StoredEvent(id=event_id, event=event, incident_id=None, suppressed_by=suppressed))
    validate_ocsf(record)


@settings(max_examples=30)
@given(kind=st.sampled_from(list(EventKind)), source=_sources, actor=_facts, origin=_facts, evidence=_facts,
       enrichment=_facts, severity=st.sampled_from(list(Severity)), title=st.text(max_size=50), key=st.text(min_size=1, max_size=40),
       first=_times, last=_times, drill=st.none() | st.text(max_size=10), link=st.none() | st.text(max_size=30))
def test_any_incident_maps_to_valid_findings_with_one_uid(
        kind: EventKind, source: str, actor: dict[str, Any], origin: dict[str, Any], evidence: dict[str, Any],
        enrichment: dict[str, Any], severity: Severity, title: str, key: str, first: dt.datetime, last: dt.datetime,
        drill: str | None, link: str | None) -> None:
    """Every notification of any incident validates, and all of an incident's notifications are one finding."""
    uids = set()
    for sequence, action in enumerate(AlertAction):
        alert = make_alert(action=action, sequence=sequence, kind=kind, source=source, actor=actor, origin=origin,
                           evidence=evidence, enrichment=enrichment, severity=severity, title=title, dedup_key=key,
                           first_seen=first, last_seen=last, drill=drill, link=link,
                           attack=attack_json(kind, source, evidence))
        record = detection_finding(alert)
        validate_ocsf(record)
        uids.add(record["finding_info"]["uid"])
    assert uids == {key}
