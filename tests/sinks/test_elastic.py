"""The Elasticsearch / OpenSearch sink (``canary/sinks/elastic.py``) and its ECS documents
(``canary/sinks/ecs.py``) against a local server speaking the ``_bulk`` API (tests/elastic_server.py)."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from alerting_servers import make_alert
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from elastic_server import ElasticServer
from structlog.testing import capture_logs

from canary import plugins
from canary.alerts import AlertAction
from canary.attack import CLOUD_ACCOUNTS
from canary.config import SinkConfig
from canary.errors import ConfigError, DeliveryError
from canary.events import DetectionEvent, EventKind, Severity, StoredEvent
from canary.sinks import ecs
from canary.typing import EventSink

KEY_ID, KEY = "VuaCfGcBCdbkQm-e5aOx", "ui2lp2axTNmsyakw9tvNnw"
ENCODED = base64.b64encode(f"{KEY_ID}:{KEY}".encode()).decode()
ALERTS, EVENTS = "logs-canary.alerts-default", "logs-canary.events-default"
T0 = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


def _sink(http: aiohttp.ClientSession, **options: object) -> Any:
    cfg = SinkConfig(name="siem", type="elasticsearch", **options)
    return plugins.sink_types()["elasticsearch"](cfg.name, plugins.sink_options(cfg, 0), http)


def _event(i: int, **overrides: Any) -> StoredEvent:
    fields: dict[str, Any] = dict(
        kind=EventKind.READ, source="jsonlog", key=f"k{i}", group="q:1", canary_id=3, observed_at=T0,
        actor={"user": "mallory", "role": "app"}, origin={"client_addr": "10.0.0.9", "application_name": "psql"},
        evidence={"query": f"SELECT * FROM customers WHERE id = {i}"})
    fields.update(overrides)
    return StoredEvent(id=1000 + i, event=DetectionEvent(**fields), incident_id=7,
                       canary={"uid": "c-1", "label": "shop/public.customers", "kind": "customer"})


def test_elasticsearch_sink_is_registered_and_takes_events(http: aiohttp.ClientSession) -> None:
    """The `elasticsearch` type is registered and its sink is an EventSink with the feed's options."""
    sink = _sink(http, url="http://127.0.0.1:9", api_key=ENCODED, event_batch=200, events="all")
    assert isinstance(sink, EventSink) and (sink.events, sink.event_batch) == ("all", 200)
    assert KEY not in repr(sink) + repr(sink.options)


@pytest.mark.parametrize(("options", "message"), [
    ({"api_key": ENCODED, "username": "u", "password": "p"}, "not both"),
    ({"username": "u"}, "go together"),
    ({"flavor": "opensearch", "api_key": ENCODED}, "HTTP Basic"),
    ({"url": "https://elastic:changeme@es.example:9200"}, "credentials"),
    ({"alerts_index": "Canary-Alerts"}, "index"),
    ({"events_index": "_canary"}, "index"),
    ({"api_key": ""}, "empty"),
    ({"max_bytes": 10}, "greater than or equal"),
])
def test_options_are_validated(options: dict[str, Any], message: str) -> None:
    """Conflicting credentials, an api_key for OpenSearch, credentials in the URL, bad index names and
    nonsense sizes are configuration errors naming the key, never the secret."""
    cfg = SinkConfig(name="siem", type="elasticsearch", **{"url": "https://es.example:9200", **options})
    with pytest.raises(ConfigError) as info:
        plugins.sink_options(cfg, 0)
    assert message in str(info.value) and "changeme" not in str(info.value)


def test_alert_document_is_ecs() -> None:
    """A notification becomes an ECS alert: typed fields as the ECS reference types them (ip, long, date),
    ATT&CK in threat.* with the sub-technique under its parent, enrichment in source.*, free-form facts as
    JSON text under canary.*."""
    alert = make_alert(kind=EventKind.USED, source="cloudtrail", attack=(CLOUD_ACCOUNTS.to_json(),),
                       origin={"client_addr": "2001:db8::7", "user_agent": "aws-cli/2.15"},
                       enrichment={"address": "2001:db8::7", "country": "KR", "city": "Seoul", "asn": "AS4766",
                                   "as_org": "Korea Telecom", "rdns": "host.example.kr", "internal": False},
                       link="https://canary.example/incidents/7")
    doc = ecs.alert_document(alert)
    assert doc["@timestamp"] == T0.isoformat() and doc["ecs"]["version"] == ecs.ECS_VERSION
    assert doc["event"]["kind"] == "alert" and doc["event"]["id"] == f"{alert.dedup_key}-0"
    assert doc["event"]["category"] == ["authentication", "intrusion_detection"] and doc["event"]["severity"] == 4
    assert doc["event"]["dataset"] == "canary.alerts" and doc["event"]["url"] == alert.link
    assert doc["source"] == {"address": "2001:db8::7", "ip": "2001:db8::7", "domain": "host.example.kr",
                             "geo": {"country_iso_code": "KR", "city_name": "Seoul"},
                             "as": {"number": 4766, "organization": {"name": "Korea Telecom"}}}
    assert doc["user"] == {"name": "mallory"} and doc["user_agent"] == {"original": "aws-cli/2.15"}
    assert doc["threat"]["framework"] == "MITRE ATT&CK"
    assert doc["threat"]["technique"]["id"] == ["T1078"] and doc["threat"]["technique"]["name"] == ["Valid Accounts"]
    assert doc["threat"]["technique"]["subtechnique"] == {
        "id": ["T1078.004"], "name": ["Cloud Accounts"], "reference": ["https://attack.mitre.org/techniques/T1078/004/"]}
    assert "TA0001" in doc["threat"]["tactic"]["id"]
    assert doc["threat"]["tactic"]["reference"][0].startswith("https://attack.mitre.org/tactics/TA")
    assert doc["canary"]["client_internal"] is False and json.loads(doc["canary"]["evidence"]) == dict(alert.evidence)
    assert doc["rule"]["name"] == "Canary credential used" and doc["observer"]["vendor"] == "canary"
    resolved = ecs.alert_document(make_alert(action=AlertAction.RESOLVE, sequence=2), now=T0 + dt.timedelta(hours=1))
    assert resolved["@timestamp"] == (T0 + dt.timedelta(hours=1)).isoformat()
    assert resolved["event"]["action"] == "incident-resolve" and resolved["event"]["id"].endswith("-2")


@pytest.mark.parametrize(("client_addr", "asn", "ip", "number"), [
    ("10.0.0.9", 64512, "10.0.0.9", 64512), ("fe80::1%eth0", "AS1", "fe80::1", 1),
    ("[local]", "ASX", None, None), ("evil.example\n{\"delete\":{}}", "99999999999", None, None),
    ("999.1.1.1", True, None, None), ("", "¹²", None, None),
])
def test_only_real_addresses_and_numbers_reach_typed_fields(client_addr: str, asn: object, ip: str | None,
                                                            number: int | None) -> None:
    """source.ip holds an address only when it is one and source.as.number a number only when it is one
    (32 bits): anything else would make the index refuse this and, once mapped wrongly, later documents."""
    doc = ecs.alert_document(make_alert(origin={"client_addr": client_addr}, enrichment={"asn": asn}))
    source = doc.get("source", {})
    assert source.get("ip") == ip and source.get("as", {}).get("number") == number
    if client_addr:
        assert source["address"] == client_addr
    assert doc.get("related", {}).get("ip") == ([ip] if ip else None)


def test_event_document_kinds() -> None:
    """Events are ECS `event` documents: mail gets email.*, health no threat, suppressed ones say by what."""
    mail = _event(1, kind=EventKind.CONTACTED, source="smtp", actor={"sender": "x@evil.example"},
                  evidence={"subject": "Invoice", "message_id": "<a@b>"}, origin={"client_addr": "192.0.2.1"})
    doc = ecs.event_document(mail)
    assert doc["event"]["kind"] == "event" and doc["event"]["id"] == "event-1001"
    assert doc["email"] == {"from": {"address": ["x@evil.example"]}, "subject": "Invoice", "message_id": "<a@b>"}
    assert doc["threat"]["technique"]["id"] == ["T1566"] and doc["event"]["category"][0] == "email"
    health = StoredEvent(id=5, event=DetectionEvent(
        kind=EventKind.HEALTH, source="heartbeat", key="h", group="h", canary_id=None, observed_at=T0,
        severity=Severity.ERROR, evidence={"problem": "heartbeat missing"}), suppressed_by="maintenance")
    doc = ecs.event_document(health)
    assert "threat" not in doc and doc["canary"]["suppressed_by"] == "maintenance" and doc["canary"]["suppressed"]
    assert doc["event"]["severity"] == 3 and doc["event"]["category"] == ["configuration"]
    assert "incident_id" not in doc["canary"] and "canary" not in doc["canary"]


async def test_alert_lands_once_and_a_resend_is_delivered(http: aiohttp.ClientSession) -> None:
    """A notification is one `create` in the alerts data stream with a deterministic _id, NDJSON with the
    ApiKey header; sending it again is answered 409 by the server and counts as delivered (one document)."""
    async with ElasticServer(api_key=(KEY_ID, KEY)) as es:
        sink = _sink(http, url=es.url, api_key=ENCODED)
        alert = make_alert()
        await sink.send(alert)
        await sink.send(alert)  # a resend after a lost answer
        await sink.send(make_alert(action=AlertAction.UPDATE, sequence=1))
    first, second = es.requests[0], es.requests[1]
    assert first.headers["Content-Type"] == "application/x-ndjson"
    assert first.headers["Authorization"] == f"ApiKey {ENCODED}" and first.body.endswith(b"\n")
    assert json.loads(first.body.split(b"\n")[0]) == {"create": {"_index": ALERTS, "_id": f"{alert.dedup_key}-0"}}
    assert first.body == second.body
    assert set(es.docs(ALERTS)) == {f"{alert.dedup_key}-0", f"{alert.dedup_key}-1"}
    assert es.creates[(ALERTS, f"{alert.dedup_key}-0")] == 1
    assert es.docs(ALERTS)[f"{alert.dedup_key}-0"]["source"]["ip"] == "10.0.0.9"


async def test_id_colon_key_form_is_encoded(http: aiohttp.ClientSession) -> None:
    """An api_key given as `id:api_key` is sent base64-encoded, as the ApiKey scheme wants."""
    async with ElasticServer(api_key=(KEY_ID, KEY)) as es:
        await _sink(http, url=es.url, api_key=f"{KEY_ID}:{KEY}").send(make_alert())
    assert es.requests[0].headers["Authorization"] == f"ApiKey {ENCODED}" and len(es.docs(ALERTS)) == 1


async def test_one_throttled_item_retries_the_batch_and_every_event_lands_once(http: aiohttp.ClientSession) -> None:
    """One item answered 429 (es_rejected_execution_exception) makes the batch retryable (status 429: the
    outbox's throttling); the resend stores it, the others answer 409, and each event is stored exactly once."""
    batch = [_event(i) for i in range(5)]
    async with ElasticServer(api_key=(KEY_ID, KEY)) as es:
        sink = _sink(http, url=es.url, api_key=ENCODED)
        es.item_faults = [None, None, (429, "es_rejected_execution_exception")]
        with pytest.raises(DeliveryError) as info:
            await sink.send_events(batch)
        assert len(es.docs(EVENTS)) == 4
        await sink.send_events(batch)
    assert not info.value.permanent and info.value.status == 429
    assert "1 of 5" in str(info.value) and "es_rejected_execution_exception" in str(info.value)
    assert set(es.docs(EVENTS)) == {f"event-{1000 + i}" for i in range(5)}
    assert all(es.creates[(EVENTS, f"event-{1000 + i}")] == 1 for i in range(5))
    assert es.requests[1].body == es.requests[0].body  # the same batch, resent whole


async def test_refused_items_are_permanent_and_never_quote_the_document(http: aiohttp.ClientSession) -> None:
    """Items the index refuses (400 document_parsing_exception: a field mapped as another type) make the
    batch permanent, naming how many and the first error type; the delivered ones stay; neither the
    document nor the receiver's reason (which quotes it) is in the error or the logs."""
    secret_text = "SELECT card_number FROM vault -- s3cr3t-evidence"
    batch = [_event(0), _event(1, group=secret_text), _event(2, group=secret_text)]
    async with ElasticServer() as es:
        sink = _sink(http, url=es.url)
        await sink.send_events(batch[:1])  # maps canary.group as keyword (dynamic mapping)
        es.mappings[EVENTS]["canary.group"] = "long"  # an index template that types it otherwise
        with capture_logs() as logs, pytest.raises(DeliveryError) as info:
            await sink.send_events(batch)
    assert info.value.permanent and info.value.status == 400
    assert "2 of 3 document(s) refused" in str(info.value) and "document_parsing_exception" in str(info.value)
    assert secret_text not in str(info.value) + repr(logs) and "s3cr3t" not in str(info.value)
    assert set(es.docs(EVENTS)) == {"event-1000"}


async def test_missing_pipeline_is_permanent_and_a_known_one_is_used(http: aiohttp.ClientSession) -> None:
    """`pipeline` goes to ?pipeline=; a pipeline the cluster lacks fails every item (permanent)."""
    async with ElasticServer(pipelines=("canary-geoip",)) as es:
        await _sink(http, url=es.url, pipeline="canary-geoip").send(make_alert())
        with pytest.raises(DeliveryError) as info:
            await _sink(http, url=es.url, pipeline="nope").send(make_alert(sequence=1))
    assert es.requests[0].query == {"pipeline": "canary-geoip"}
    assert "ingested" in next(iter(es.docs(ALERTS).values()))["event"]
    assert info.value.permanent and "illegal_argument_exception" in str(info.value)


async def test_bad_credentials_are_permanent_without_the_secret(http: aiohttp.ClientSession) -> None:
    """A wrong API key or password is 401 security_exception: permanent, and the error, the logs and the
    sink's repr hold neither the key nor the password."""
    wrong_key = base64.b64encode(b"VuaCfGcBCdbkQm-e5aOx:WRONG-wrong-WRONG-key").decode()
    async with ElasticServer(api_key=(KEY_ID, KEY), basic=("canary", "correct horse")) as es:
        with capture_logs() as logs:
            with pytest.raises(DeliveryError) as by_key:
                await _sink(http, url=es.url, api_key=wrong_key).send(make_alert())
            sink = _sink(http, url=es.url, username="canary", password="battery staple")
            with pytest.raises(DeliveryError) as by_password:
                await sink.send(make_alert())
            await _sink(http, url=es.url, username="canary", password="correct horse").send(make_alert())
    for info in (by_key, by_password):
        assert info.value.permanent and info.value.status == 401 and "security_exception" in str(info.value)
        text = str(info.value) + repr(logs) + repr(sink) + repr(sink.options)
        assert wrong_key not in text and "WRONG" not in text and "battery" not in text
    assert len(es.docs(ALERTS)) == 1


@pytest.mark.parametrize(("status", "headers", "permanent", "retry_after"), [
    (429, {"Retry-After": "7"}, False, 7.0), (503, {}, False, None), (502, {"Retry-After": "1.5"}, False, 1.5),
    (403, {}, True, None), (404, {}, True, None), (400, {}, True, None),
])
async def test_whole_request_status_translation(http: aiohttp.ClientSession, status: int, headers: dict[str, str],
                                                permanent: bool, retry_after: float | None) -> None:
    """The request as a whole: 429 / 5xx retryable with Retry-After, other 4xx permanent."""
    async with ElasticServer() as es:
        es.script.append((status, headers))
        with pytest.raises(DeliveryError) as info:
            await _sink(http, url=es.url).send_events([_event(0)])
    assert (info.value.status, info.value.permanent, info.value.retry_after) == (status, permanent, retry_after)


async def test_unreachable_cluster_is_retryable(http: aiohttp.ClientSession) -> None:
    """A refused connection is retryable and names only scheme, host and port."""
    with pytest.raises(DeliveryError) as info:
        await _sink(http, url="http://127.0.0.1:9/prefix", username="u", password="pw-xyz").send(make_alert())
    assert not info.value.permanent and "127.0.0.1:9" in str(info.value) and "pw-xyz" not in str(info.value)


async def test_batch_of_500_events_is_one_request(http: aiohttp.ClientSession) -> None:
    """The feed's default batch (500 events) is one _bulk request of 1000 lines, and all 500 are stored; the
    answer (one item each) is read whole even when it arrives in small pieces."""
    batch = [_event(i) for i in range(500)]
    async with ElasticServer(api_key=(KEY_ID, KEY), answer_piece=4096) as es:
        sink = _sink(http, url=es.url, api_key=ENCODED)
        assert sink.event_batch == 500
        started = time.perf_counter()
        await sink.send_events(batch)
        elapsed = time.perf_counter() - started
    assert len(es.requests) == 1 and es.requests[0].body.count(b"\n") == 1000
    assert len(es.docs(EVENTS)) == 500 and max(es.creates.values()) == 1
    print(f"500 events: {len(es.requests[0].body)} bytes in {elapsed * 1000:.0f} ms")


async def test_max_bytes_and_413_split_the_batch(http: aiohttp.ClientSession) -> None:
    """Requests are cut at max_bytes; a 413 from a smaller receiver limit halves the request until it fits;
    one document larger than the receiver accepts on its own is permanent."""
    batch = [_event(i) for i in range(40)]
    async with ElasticServer(max_content_length=12_000) as es:
        sink = _sink(http, url=es.url, max_bytes=8192)
        await sink.send_events(batch)
        assert all(len(r.body) <= 8192 for r in es.requests) and len(es.requests) > 1
        sizes_cut = len(es.requests)
        big = _sink(http, url=es.url)  # max_bytes 5 MB: the receiver's 12 kB limit answers 413
        more = [_event(100 + i) for i in range(40)]
        await big.send_events(more)
        with pytest.raises(DeliveryError) as info:
            await big.send_events([_event(999, evidence={"query": "x" * 16_000})])
    assert len(es.docs(EVENTS)) == 80 and max(es.creates.values()) == 1
    assert len(es.requests) > sizes_cut + 2  # the 413s and the halves
    assert info.value.permanent and info.value.status == 413 and "one document" in str(info.value)


async def test_opensearch_flavor_basic_auth_and_plain_index(http: aiohttp.ClientSession) -> None:
    """OpenSearch: HTTP Basic, its plain-text 401 handled, mapper_parsing_exception items permanent, and the
    default names are plain indices there (no built-in data stream template), which `create` also suits."""
    async with ElasticServer(flavor="opensearch", basic=("canary", "s3cret-pw")) as os_:
        sink = _sink(http, url=os_.url + "/", flavor="opensearch", username="canary", password="s3cret-pw")
        await sink.send(make_alert())
        await sink.send_events([_event(1), _event(2)])
        await sink.send_events([_event(1), _event(2)])  # resent: 409s
        with pytest.raises(DeliveryError) as unauthorized:
            await _sink(http, url=os_.url, flavor="opensearch", username="canary", password="nope").send(make_alert())
        os_.mappings[EVENTS]["canary.kind"] = "long"
        with pytest.raises(DeliveryError) as refused:
            await sink.send_events([_event(3)])
    assert os_.requests[0].path == "/_bulk" and os_.requests[0].headers["Authorization"].startswith("Basic ")
    assert len(os_.docs(ALERTS)) == 1 and set(os_.docs(EVENTS)) == {"event-1001", "event-1002"}
    assert unauthorized.value.permanent and unauthorized.value.status == 401 and "no detail" in str(unauthorized.value)
    assert refused.value.permanent and "mapper_parsing_exception" in str(refused.value)


HOSTILE = [
    'mallory"}\n{"delete":{"_index":"logs-canary.alerts-default","_id":"x"}}\n',
    "\u2028\u2029\r\n\x00\x1b[31m<script>alert(1)</script>",
    "\ud800 lone surrogate and 🐤 and ' OR 1=1 --",
    '{"create":{}}',
]


@pytest.mark.parametrize("hostile", HOSTILE)
async def test_hostile_strings_survive_as_json(http: aiohttp.ClientSession, hostile: str) -> None:
    """Attacker text in the user, the client address, the evidence and the group cannot frame an NDJSON line
    of its own, change a field's type or break the request: the documents stored are exactly those sent,
    and the text comes back (NUL and lone surrogates made storable, as the store keeps them)."""
    stored = _event(0, actor={"user": hostile}, origin={"client_addr": hostile}, group=hostile,
                     evidence={"query": hostile, hostile: [hostile, 1.5, None], "n": float("nan")})
    alert = make_alert(actor={"user": hostile}, summary=hostile, origin={"client_addr": hostile},
                       evidence={"query": hostile}, enrichment={"asn": hostile, "country": hostile, "rdns": hostile})
    async with ElasticServer() as es:
        sink = _sink(http, url=es.url)
        await sink.send_events([stored, _event(1)])
        await sink.send(alert)
        # the server's ip mapping is real: the same text as source.ip is refused
        raw = json.dumps({"create": {"_id": "probe"}}) + "\n" + json.dumps({"@timestamp": T0.isoformat(),
                                                                             "source": {"ip": hostile}}) + "\n"
        async with http.post(f"{es.url}/{EVENTS}/_bulk", data=raw.encode(),
                             headers={"Content-Type": "application/x-ndjson"}) as resp:
            probe = await resp.json()
    assert probe["items"][0]["create"]["status"] == 400
    assert set(es.docs(EVENTS)) == {"event-1000", "event-1001"} and len(es.docs(ALERTS)) == 1
    doc = es.docs(EVENTS)["event-1000"]
    clean = stored.event.actor["user"]
    assert doc["user"]["name"] == clean and doc["canary"]["group"] == stored.event.group
    assert json.loads(doc["canary"]["actor"]) == {"user": clean}
    assert json.loads(doc["canary"]["evidence"])["query"] == clean and "ip" not in doc["source"]
    alert_doc = next(iter(es.docs(ALERTS).values()))
    assert alert_doc["message"] == alert.summary.replace("\x00", "\ufffd").replace("\ud800", "\ufffd")
    assert "number" not in alert_doc["source"].get("as", {})
    for request in es.requests[:2]:
        lines = request.body.split(b"\n")[:-1]
        assert len(lines) % 2 == 0 and all("create" in json.loads(line) for line in lines[::2])


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (a cluster with its own CA, as Elasticsearch sets itself up)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "es-http")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    d = tmp_path_factory.mktemp("es-tls")
    (d / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return d / "ca.pem", d / "key.pem"


async def test_private_ca_is_trusted_only_through_ca_file(http: aiohttp.ClientSession,
                                                          tls_files: tuple[Path, Path]) -> None:
    """Over https the cluster's certificate is verified: with its CA in ca_file the batch is delivered;
    without it the connection is refused as untrusted (retryable, no secret in the error)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls_files[0]), str(tls_files[1]))
    async with ElasticServer(api_key=(KEY_ID, KEY), ssl_context=context) as es:
        await _sink(http, url=es.url, api_key=ENCODED, ca_file=str(tls_files[0])).send(make_alert())
        with pytest.raises(DeliveryError) as untrusted:
            await _sink(http, url=es.url, api_key=ENCODED).send(make_alert())
    assert es.url.startswith("https://") and len(es.docs(ALERTS)) == 1 and len(es.requests) == 1
    assert not untrusted.value.permanent and "Certificate" in str(untrusted.value) and KEY not in str(untrusted.value)
