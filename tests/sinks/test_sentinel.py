"""The Sentinel sink (Azure Monitor Logs Ingestion API) against a local Entra ID token endpoint and a local
ingestion endpoint that check what Microsoft documents (tests/azure_servers.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from alerting_servers import make_alert
from azure_servers import EntraServer, IngestionServer
from ocsf_support import validate_ocsf
from structlog.testing import capture_logs

from canary import plugins
from canary.alerts import AlertAction
from canary.config import SinkConfig
from canary.errors import ConfigError, DeliveryError
from canary.events import DetectionEvent, EventKind, Severity, StoredEvent
from canary.sinks import sentinel

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "535fb089-9ff3-47b6-9bfb-4f1264799865"
SECRET = "Aa1Bb~2Cc3.-Dd4Ee5Ff6Gg7Hh8Ii9_Jj0Kk1Ll2"
DCR = "dcr-000a00a000a00000a000000aa000a0aa"
FINDINGS, EVENTS = "Custom-CanaryFindings_CL", "Custom-CanaryEvents_CL"


def declared_streams() -> dict[str, dict[str, str]]:
    """The stream declarations the module documents for operators, so the test server accepts exactly
    the columns the documentation tells them to create."""
    doc = sentinel.__doc__ or ""
    block = doc[doc.index('"streamDeclarations"'):doc.index('"dataFlows"')].rstrip().rstrip(",")
    declared = json.loads("{" + block + "}")["streamDeclarations"]
    return {name: {c["name"]: c["type"] for c in spec["columns"]} for name, spec in declared.items()}


@pytest.fixture
async def azure() -> AsyncIterator[tuple[EntraServer, IngestionServer]]:
    async with EntraServer(TENANT, CLIENT, SECRET) as entra, IngestionServer(entra, DCR, declared_streams()) as ingest:
        yield entra, ingest


def _sink(http: aiohttp.ClientSession, entra: EntraServer, ingest: IngestionServer, **options: Any) -> Any:
    fields: dict[str, Any] = dict(tenant_id=TENANT, client_id=CLIENT, client_secret=SECRET, authority=entra.base,
                                  endpoint=ingest.base, dcr_immutable_id=DCR)
    fields.update(options)
    cfg = SinkConfig(name="sentinel-1", type="sentinel", **fields)
    return plugins.sink_types()["sentinel"](cfg.name, plugins.sink_options(cfg, 0), http)


def _event(n: int, *, kind: EventKind = EventKind.READ, evidence: dict[str, Any] | None = None,
           suppressed_by: str | None = None) -> StoredEvent:
    when = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=n)
    event = DetectionEvent(kind=kind, source="jsonlog", key=f"k{n}", group="g", canary_id=3, observed_at=when,
                           actor={"user": "mallory"}, origin={"client_addr": "10.0.0.9"},
                           evidence=evidence if evidence is not None else {"query": f"SELECT {n}"},
                           severity=Severity.CRITICAL)
    return StoredEvent(id=1000 + n, event=event, incident_id=7, canary={"uid": "c-1", "label": "shop/public.customers",
                                                                         "kind": "customer"}, suppressed_by=suppressed_by)


def test_registered_and_options_validated() -> None:
    """The sink type is registered; a malformed DCR id, a non-URL endpoint, an empty secret or an unsafe
    stream name is a config error at its key path; the secret never appears in the options' repr."""
    assert "sentinel" in plugins.sink_types()
    base: dict[str, Any] = dict(tenant_id=TENANT, client_id=CLIENT, client_secret=SECRET, endpoint="https://x.eastus-1.ingest.monitor.azure.com",
                dcr_immutable_id=DCR)
    good = plugins.sink_options(SinkConfig(name="s", type="sentinel", **base), 0)
    assert (good.events, good.event_batch, good.format, good.gzip) == ("unsuppressed", 500, "ocsf", True)
    assert SECRET not in repr(good)
    for key, value in [("dcr_immutable_id", "dcr-xyz"), ("endpoint", "not a url"), ("client_secret", " "),
                       ("stream", "Custom-../../x"), ("max_request_bytes", 5_000_000)]:
        with pytest.raises(ConfigError) as info:
            plugins.sink_options(SinkConfig(name="s", type="sentinel", **{**base, key: value}), 0)
        assert info.value.key == f"sinks[0].{key}"


async def test_one_token_for_many_sends_and_documented_request(http: aiohttp.ClientSession,
                                                              azure: tuple[EntraServer, IngestionServer]) -> None:
    """A trigger, a resolve and an event batch reuse one cached token; each upload is a gzip JSON array to
    /dataCollectionRules/<dcr>/streams/<stream>?api-version=2023-01-01 with a bearer token and a GUID
    request id, and the records fit the documented stream declarations."""
    entra, ingest = azure
    sink = _sink(http, entra, ingest)
    await sink.send(make_alert())
    await sink.send(make_alert(action=AlertAction.RESOLVE, sequence=2))
    await sink.send_events([_event(1), _event(2, suppressed_by="expected_contact")])
    assert entra.issued == 1 and ingest.statuses == [204, 204, 204]
    token_form = dict(re.findall(r"([a-z_]+)=([^&]*)", entra.requests[0].body.decode()))
    assert token_form["grant_type"] == "client_credentials" and token_form["scope"] == "https%3A%2F%2Fmonitor.azure.com%2F%2F.default"
    for req in ingest.requests:
        assert req.path.startswith(f"/dataCollectionRules/{DCR}/streams/") and req.query == {"api-version": "2023-01-01"}
        assert req.headers["Content-Encoding"] == "gzip" and req.headers["Authorization"].startswith("Bearer eyJ")
        assert re.fullmatch(r"[0-9a-f-]{36}", req.headers["x-ms-client-request-id"])
        assert isinstance(json.loads(gzip.decompress(req.body)), list)
    trigger, resolve = ingest.records(FINDINGS)
    assert (trigger["Action"], resolve["Action"]) == ("trigger", "resolve")
    assert trigger["IncidentId"] == 7 and trigger["DedupKey"] == make_alert().dedup_key
    assert trigger["TimeGenerated"] == "2026-05-01T12:00:00.000000Z" and trigger["ClientIP"] == "10.0.0.9"
    assert trigger["Actor"] == "mallory" and trigger["IncidentTitle"] == make_alert().title
    assert trigger["DetailsFormat"].startswith("ocsf/") and trigger["ClassUid"] == 2004
    assert trigger["Details"]["class_uid"] == 2004 and "metadata" in trigger["Details"]
    assert resolve["TimeGenerated"] > trigger["TimeGenerated"]  # a resolve is dated when it is delivered
    first, second = ingest.records(EVENTS)
    assert (first["EventId"], second["EventId"]) == (1001, 1002)
    assert first["TimeGenerated"] == "2026-05-01T12:00:01.000000Z" and first["Kind"] == "read"
    assert first["CanaryLabel"] == "shop/public.customers" and first["SuppressedBy"] is None
    assert second["SuppressedBy"] == "expected_contact" and first["AttackTechniques"]
    assert isinstance(first["Details"]["time"], int) and "metadata" in first["Details"]
    for record in (trigger, resolve, first, second):  # the OCSF record each row carries is valid OCSF
        validate_ocsf(record["Details"])


async def test_canary_format_and_plain_json(http: aiohttp.ClientSession, azure: tuple[EntraServer, IngestionServer]) -> None:
    """format = "canary" carries canary's own JSON in Details; gzip = false sends plain JSON without
    Content-Encoding."""
    entra, ingest = azure
    sink = _sink(http, entra, ingest, format="canary", gzip=False)
    await sink.send(make_alert())
    await sink.send_events([_event(5)])
    assert all("Content-Encoding" not in r.headers for r in ingest.requests)
    assert json.loads(ingest.requests[0].body)[0]["IncidentId"] == 7
    (finding,), (event,) = ingest.records(FINDINGS), ingest.records(EVENTS)
    assert finding["DetailsFormat"] == "canary" and finding["Details"]["dedup_key"] == make_alert().dedup_key
    assert event["Details"]["id"] == 1005 and event["Details"]["event"]["evidence"] == {"query": "SELECT 5"}


async def test_expired_token_is_renewed_before_use(http: aiohttp.ClientSession) -> None:
    """A token is renewed before it expires (here it lives one second): the next upload asks for a new
    one instead of being refused with 401."""
    async with EntraServer(TENANT, CLIENT, SECRET, lifetime=1) as entra, \
            IngestionServer(entra, DCR, declared_streams()) as ingest:
        sink = _sink(http, entra, ingest)
        await sink.send(make_alert())
        await asyncio.sleep(1.05)
        await sink.send(make_alert())
    assert entra.issued == 2 and ingest.statuses == [204, 204]


async def test_refused_token_is_replaced_once(http: aiohttp.ClientSession, azure: tuple[EntraServer, IngestionServer]) -> None:
    """A token Azure refuses before its advertised expiry (401) is dropped and a new one fetched for one
    more try; when the new one is refused too, the error is permanent and names no token."""
    entra, ingest = azure
    sink = _sink(http, entra, ingest)
    await sink.send(make_alert())
    entra.revoke_all()
    await sink.send(make_alert())
    assert entra.issued == 2 and ingest.statuses == [204, 401, 204]
    entra.lifetime, entra.advertised = 0, 3599  # every new token is refused, though it claims an hour
    entra.revoke_all()
    with pytest.raises(DeliveryError) as info:
        await sink.send(make_alert())
    assert info.value.permanent and info.value.status == 401 and "InvalidToken" in str(info.value)
    assert entra.issued == 3 and ingest.statuses[-2:] == [401, 401]
    assert not any(t in str(info.value) for t in entra.tokens)


async def test_bad_secret_is_permanent_and_never_echoed(http: aiohttp.ClientSession,
                                                        azure: tuple[EntraServer, IngestionServer]) -> None:
    """A wrong client secret gets Entra's 401 invalid_client (AADSTS7000215): a permanent error that names
    the code, never the secret (nor in logs or repr); nothing is uploaded."""
    entra, ingest = azure
    wrong = "Zz9Yy~8Xx7.-Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp9Oo8"
    sink = _sink(http, entra, ingest, client_secret=wrong)
    with capture_logs() as logs, pytest.raises(DeliveryError) as info:
        await sink.send_events([_event(1)])
    assert info.value.permanent and info.value.status == 401
    assert "invalid_client" in str(info.value) and "AADSTS7000215" in str(info.value)
    assert wrong not in str(info.value) + repr(sink) + repr(sink.options) + repr(logs)
    assert ingest.requests == []


async def test_token_endpoint_trouble_is_retryable(http: aiohttp.ClientSession,
                                                   azure: tuple[EntraServer, IngestionServer]) -> None:
    """A 503 from the token endpoint is retryable with its Retry-After; the next try gets a token."""
    entra, ingest = azure
    entra.faults.append((503, {"Retry-After": "3"}))
    sink = _sink(http, entra, ingest)
    with pytest.raises(DeliveryError) as info:
        await sink.send(make_alert())
    assert not info.value.permanent and info.value.retry_after == 3.0
    await sink.send(make_alert())
    assert len(ingest.records(FINDINGS)) == 1


async def test_413_splits_the_batch_and_every_record_arrives_once(http: aiohttp.ClientSession) -> None:
    """Past the receiver's size limit (413) the batch is sent in halves until each part fits: every event
    arrives exactly once, in order; a single record larger than the limit is a permanent error."""
    async with EntraServer(TENANT, CLIENT, SECRET) as entra, \
            IngestionServer(entra, DCR, declared_streams(), max_bytes=8_000) as ingest:
        sink = _sink(http, entra, ingest, gzip=False, format="canary")  # sizes from canary's own JSON
        batch = [_event(n, evidence={"query": f"SELECT {n} " + "x" * 900}) for n in range(40)]
        await sink.send_events(batch)
        assert [r["EventId"] for r in ingest.records(EVENTS)] == [e.id for e in batch]
        assert 413 in ingest.statuses and all(len(r.body) <= 8_000 for r, s in zip(ingest.requests, ingest.statuses, strict=True)
                                              if s == 204)
        with pytest.raises(DeliveryError) as info:
            await sink.send_events([_event(99, evidence={"query": "y" * 20_000})])
        assert info.value.permanent and info.value.status == 413 and "y" * 50 not in str(info.value)


async def test_requests_are_packed_under_max_request_bytes(http: aiohttp.ClientSession,
                                                           azure: tuple[EntraServer, IngestionServer]) -> None:
    """A batch is packed into requests of at most max_request_bytes of JSON before sending, so the
    receiver's 1 MB limit is not met with a 413 first."""
    entra, ingest = azure
    sink = _sink(http, entra, ingest, max_request_bytes=200_000, format="canary")
    batch = [_event(n, evidence={"query": "z" * 9_000}) for n in range(100)]
    await sink.send_events(batch)
    sizes = [len(gzip.decompress(r.body)) for r in ingest.requests]
    assert len(sizes) >= 5 and max(sizes) <= 200_000 and 413 not in ingest.statuses
    assert sorted(r["EventId"] for r in ingest.records(EVENTS)) == [e.id for e in batch]


async def test_resent_batch_skips_what_was_accepted(http: aiohttp.ClientSession) -> None:
    """When a split batch fails halfway (first half 204, second half 429), the feed's resend of the same
    batch uploads only the rest: Log Analytics, which does not deduplicate, holds each event once."""
    async with EntraServer(TENANT, CLIENT, SECRET) as entra, \
            IngestionServer(entra, DCR, declared_streams(), max_bytes=9_000) as ingest:
        sink = _sink(http, entra, ingest, gzip=False, format="canary")
        batch = [_event(n, evidence={"query": "q" * 600}) for n in range(10)]
        ingest.fault_at[3] = (429, {"Retry-After": "2"})  # 1: whole batch 413, 2: first half 204
        with pytest.raises(DeliveryError) as info:
            await sink.send_events(batch)
        assert not info.value.permanent and info.value.retry_after == 2.0
        assert ingest.statuses[:2] == [413, 204]
        await sink.send_events(batch)
    ids = [r["EventId"] for r in ingest.records(EVENTS)]
    assert sorted(ids) == [e.id for e in batch] and len(ids) == len(set(ids))


@pytest.mark.parametrize(
    ("status", "headers", "permanent", "retry_after", "says"),
    [(429, {"Retry-After": "7"}, False, 7.0, "TooManyRequests"), (503, {}, False, None, "ServiceError"),
     (500, {}, False, None, "ServiceError"), (400, {}, True, None, "ServiceError")],
)
async def test_status_translation(http: aiohttp.ClientSession, azure: tuple[EntraServer, IngestionServer], status: int,
                                  headers: dict[str, str], permanent: bool, retry_after: float | None, says: str) -> None:
    """429 (with Retry-After) and 5xx are retryable, 400 permanent; the error names Azure's code and the
    request id."""
    entra, ingest = azure
    ingest.faults.append((status, headers))
    sink = _sink(http, entra, ingest)
    with pytest.raises(DeliveryError) as info:
        await sink.send(make_alert())
    assert (info.value.status, info.value.permanent, info.value.retry_after) == (status, permanent, retry_after)
    assert says in str(info.value) and ingest.requests[0].headers["x-ms-client-request-id"] in str(info.value)


async def test_forbidden_and_undeclared_columns_are_permanent(http: aiohttp.ClientSession,
                                                              azure: tuple[EntraServer, IngestionServer]) -> None:
    """403 (no Monitoring Metrics Publisher role) is permanent with a hint; a 400 for a record that does not
    fit the stream names Azure's code but never the record's content."""
    entra, ingest = azure
    sink = _sink(http, entra, ingest)
    ingest.forbidden = True
    with pytest.raises(DeliveryError) as info:
        await sink.send(make_alert())
    assert info.value.permanent and info.value.status == 403 and "Monitoring Metrics Publisher" in str(info.value)
    ingest.forbidden = False
    del ingest.streams[EVENTS].columns["SuppressedBy"]
    with pytest.raises(DeliveryError) as info:
        await sink.send_events([_event(1, evidence={"query": "SELECT secret_marker_4711"})])
    assert info.value.permanent and info.value.status == 400 and "InvalidPayload" in str(info.value)
    assert "secret_marker_4711" not in str(info.value)


async def test_oversized_fields_are_cut_to_stay_json(http: aiohttp.ClientSession,
                                                     azure: tuple[EntraServer, IngestionServer]) -> None:
    """Evidence larger than Azure's 64 KB field limit is replaced by a marked, cut copy (Azure would cut a
    dynamic column into broken JSON); every field stays under the limit and the record is accepted."""
    entra, ingest = azure
    sink = _sink(http, entra, ingest, format="canary")
    huge = {f"k{i}": "é" * 10_000 for i in range(20)}
    alert = make_alert(title="t" * 70_000, evidence=huge)
    await sink.send(alert)
    (row,) = ingest.records(FINDINGS)
    assert row["Details"]["truncated"] is True and row["Details"]["bytes"] > 64 * 1024
    assert row["IncidentTitle"].endswith("…[truncated]")
    assert all(len(json.dumps(v, ensure_ascii=False).encode()) < 64 * 1024 for v in row.values())


async def test_unreachable_endpoint_is_retryable(http: aiohttp.ClientSession, azure: tuple[EntraServer, IngestionServer]) -> None:
    """A refused connection to the ingestion endpoint is retryable and names only its origin."""
    entra, _ = azure
    sink = _sink(http, entra, azure[1], endpoint="http://127.0.0.1:9")
    with pytest.raises(DeliveryError) as info:
        await sink.send(make_alert())
    assert not info.value.permanent and "127.0.0.1:9" in str(info.value) and SECRET not in str(info.value)


def test_example_config_block_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """The commented sentinel block in config/canary.example.toml, uncommented, is a valid sink."""
    monkeypatch.setenv("AZURE_CLIENT_SECRET", SECRET)
    text = (Path(__file__).parents[2] / "config" / "canary.example.toml").read_text()
    start = text.index('# name = "sentinel"')
    lines = []
    for line in text[start:].splitlines():
        if not line.startswith("#") or line.strip() in ("#", "# [[sinks]]"):
            break
        lines.append(line.removeprefix("# "))
    sink = tomllib.loads("\n".join(lines))
    options = plugins.sink_options(SinkConfig(**sink), 0)
    assert options.dcr_immutable_id.startswith("dcr-") and options.event_stream == EVENTS
