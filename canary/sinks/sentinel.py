"""Microsoft Sentinel: incidents and events into Log Analytics tables through the Azure Monitor Logs
Ingestion API (``type = "sentinel"``).

Wire format, as Microsoft documents it:

* Token (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow): ``POST
  {authority}/{tenant_id}/oauth2/v2.0/token``, form-encoded ``client_id``, ``client_secret``, ``scope`` and
  ``grant_type=client_credentials``; ``200 {"token_type": "Bearer", "expires_in": <seconds>, "access_token"}``,
  or ``400`` / ``401 {"error", "error_description", "error_codes": [AADSTS number, ...]}``. No refresh token is
  issued in this flow: a new token is requested when the old one nears expiry. The scope is the Azure Monitor
  audience + ``/.default`` (``https://monitor.azure.com//.default`` in the Logs Ingestion tutorial;
  ``monitor.azure.us`` / ``monitor.azure.cn`` in the sovereign clouds, whose ``authority`` differs too).
* Upload (https://learn.microsoft.com/azure/azure-monitor/logs/logs-ingestion-api-overview and the
  2023-01-01 REST reference "Logs Ingestion - Upload"): ``POST {endpoint}/dataCollectionRules/{DCR immutable
  id}/streams/{stream}?api-version=2023-01-01`` with ``Authorization: Bearer``, ``Content-Type:
  application/json``, optional ``Content-Encoding: gzip`` and ``x-ms-client-request-id`` (a GUID for
  Microsoft's troubleshooting); the body is a JSON array of objects shaped like the DCR's stream
  declaration. ``204`` on success; errors are ``{"error": {"code", "message"}}`` with an ``x-ms-error-code``
  header. The endpoint is the DCR's own logs ingestion endpoint or a data collection endpoint (DCE).
* Limits (https://learn.microsoft.com/azure/azure-monitor/fundamentals/service-limits#logs-ingestion-api and
  the tutorial's troubleshooting table, tutorial-logs-ingestion-code): 1 MB per call, compressed or not (413
  beyond); field values beyond 64 KB are truncated; throttling is 429 with ``Retry-After``; 403 means the
  app lacks the "Monitoring Metrics Publisher" role on the DCR (granting it takes up to 30 minutes).
  ``Title``, ``id``, ``Type``, ``TenantId``, ``_ResourceId``, ``_SubscriptionId`` and ``UniqueId`` are
  reserved column names, so the incident's title is ``IncidentTitle``.

What this sink does with it: one token per app, cached until a tenth of its life (at most 5 minutes)
before it expires; a 401 from the upload drops it and asks once more (a second 401 is permanent). Records
are packed into requests of at most ``max_request_bytes`` of JSON (then gzip), a 413 splits the request in
halves (a single record refused alone is permanent), a 429 / 5xx / timeout is retryable (with the
receiver's ``Retry-After``), any other 4xx permanent; error texts carry the status, Azure's error code and
the request id, never a record, the secret or a token. Log Analytics does not deduplicate: a batch the feed
resends after a failure skips the records this process already delivered from it, and ``EventId`` (the
store's id) / ``DedupKey`` + ``Sequence`` let KQL drop what a crash made twice
(``CanaryEvents_CL | summarize arg_max(TimeGenerated, *) by EventId``).

Records (``format = "ocsf"``, the default, puts the OCSF record in ``Details``; ``"canary"`` the alert's or
event's own JSON). A field longer than 64 KB would be cut by Azure (a cut ``dynamic`` is no JSON): text is
cut here with a marker, an object becomes ``{"truncated": true, "bytes": n, "text": <its JSON, cut>}``.

DCR (``kind: Direct``) stream declarations and data flows, for custom tables ``CanaryFindings_CL`` and
``CanaryEvents_CL`` created with the same columns (``transformKql`` "source" passes records unchanged)::

    "streamDeclarations": {
      "Custom-CanaryFindings_CL": {"columns": [
        {"name": "TimeGenerated", "type": "datetime"}, {"name": "IncidentId", "type": "long"},
        {"name": "DedupKey", "type": "string"}, {"name": "Action", "type": "string"},
        {"name": "Sequence", "type": "int"}, {"name": "Kind", "type": "string"},
        {"name": "Severity", "type": "string"}, {"name": "IncidentTitle", "type": "string"},
        {"name": "Summary", "type": "string"}, {"name": "Source", "type": "string"},
        {"name": "ClientIP", "type": "string"}, {"name": "Actor", "type": "string"},
        {"name": "CanaryCount", "type": "int"}, {"name": "EventCount", "type": "int"},
        {"name": "Canaries", "type": "dynamic"}, {"name": "FirstSeen", "type": "datetime"},
        {"name": "LastSeen", "type": "datetime"}, {"name": "AttackTechniques", "type": "dynamic"},
        {"name": "Enrichment", "type": "dynamic"}, {"name": "Drill", "type": "string"},
        {"name": "Link", "type": "string"}, {"name": "DetailsFormat", "type": "string"},
        {"name": "ClassUid", "type": "int"}, {"name": "Details", "type": "dynamic"}]},
      "Custom-CanaryEvents_CL": {"columns": [
        {"name": "TimeGenerated", "type": "datetime"}, {"name": "EventId", "type": "long"},
        {"name": "IncidentId", "type": "long"}, {"name": "Kind", "type": "string"},
        {"name": "Severity", "type": "string"}, {"name": "Source", "type": "string"},
        {"name": "ClientIP", "type": "string"}, {"name": "Actor", "type": "string"},
        {"name": "CanaryUid", "type": "string"}, {"name": "CanaryLabel", "type": "string"},
        {"name": "CanaryKind", "type": "string"}, {"name": "SuppressedBy", "type": "string"},
        {"name": "Drill", "type": "string"}, {"name": "DetectedAt", "type": "datetime"},
        {"name": "AttackTechniques", "type": "dynamic"}, {"name": "DetailsFormat", "type": "string"},
        {"name": "ClassUid", "type": "int"}, {"name": "Details", "type": "dynamic"}]}},
    "dataFlows": [
      {"streams": ["Custom-CanaryFindings_CL"], "destinations": ["workspace"], "transformKql": "source",
       "outputStream": "Custom-CanaryFindings_CL"},
      {"streams": ["Custom-CanaryEvents_CL"], "destinations": ["workspace"], "transformKql": "source",
       "outputStream": "Custom-CanaryEvents_CL"}]

``TimeGenerated``: an event's observed time; a trigger's first seen, an update's last seen, an
acknowledge's or resolve's delivery time.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import datetime as dt
import gzip
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Literal

import aiohttp
from pydantic import BaseModel, Field, field_validator

from canary.alerts import Alert, AlertAction
from canary.attack import techniques
from canary.errors import DeliveryError
from canary.events import StoredEvent
from canary.secret import Secret, required_secret
from canary.sinks import ocsf
from canary.sinks._http import RETRYABLE, HttpSink, describe_client_error, parse_retry_after, validate_http_url
from canary.sinks._siem import EventFeedOptions

API_VERSION = "2023-01-01"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
DEFAULT_SCOPE = "https://monitor.azure.com//.default"
#: "Maximum size of API call: 1 MB, both compressed and uncompressed data" (service limits)
MAX_CALL_BYTES = 1_000_000
#: Azure truncates field values beyond 64 KB; kept below it with room for the JSON quoting
FIELD_MAX_BYTES = 60_000
#: a token is renewed this share of its lifetime before it expires, at most REFRESH_MAX seconds before
REFRESH_SHARE = 0.1
REFRESH_MAX = 300.0
TOKEN_MAX_LIFETIME = 86_400

_MARK = "…[truncated]"
_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_HINTS = {
    403: "the app lacks the Monitoring Metrics Publisher role on the DCR (a new grant takes up to 30 minutes)",
    404: "no such DCR or stream at this endpoint",
}


class SentinelOptions(EventFeedOptions):
    tenant_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")  # GUID or domain name
    client_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")  # the app registration's (client) id
    client_secret: Secret
    authority: str = DEFAULT_AUTHORITY  # sovereign clouds: https://login.microsoftonline.us, ...chinacloudapi.cn
    scope: str = Field(default=DEFAULT_SCOPE, min_length=1, max_length=512)
    endpoint: str  # the DCR's logs ingestion endpoint or a DCE, https://<name>.<region>-1.ingest.monitor.azure.com
    dcr_immutable_id: str = Field(pattern=r"^dcr-[0-9a-fA-F]{32}$")
    stream: str = Field(default="Custom-CanaryFindings_CL", pattern=r"^[A-Za-z0-9_-]{1,128}$")  # incidents
    event_stream: str = Field(default="Custom-CanaryEvents_CL", pattern=r"^[A-Za-z0-9_-]{1,128}$")  # events
    format: Literal["ocsf", "canary"] = "ocsf"
    gzip: bool = True
    max_request_bytes: int = Field(default=MAX_CALL_BYTES, ge=FIELD_MAX_BYTES * 2, le=1_048_576)
    timeout: float = Field(default=10.0, gt=0, le=120)

    _secret = field_validator("client_secret", mode="before")(required_secret("client secret"))
    _urls = field_validator("authority", "endpoint")(validate_http_url)


@dataclasses.dataclass(frozen=True, slots=True)
class _Token:
    value: str
    renew_at: float  # time.monotonic()


def _iso(when: dt.datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _cut(text: str, limit: int) -> str:
    """``text`` cut (on a character boundary) to at most ``limit`` bytes of UTF-8."""
    return text.encode("utf-8", "surrogatepass")[:limit].decode("utf-8", "ignore")


def _fit(value: Any) -> Any:
    """``value`` kept under Azure's field limit: text cut with a marker, an object too long as JSON
    replaced by ``{"truncated": true, "bytes": n, "text": <its JSON, cut>}`` (Azure would cut it into
    something that is no JSON)."""
    if isinstance(value, str):
        if len(value.encode("utf-8", "surrogatepass")) <= FIELD_MAX_BYTES:
            return value
        return _cut(value, FIELD_MAX_BYTES - 16) + _MARK
    if isinstance(value, Mapping | list):
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
        size = len(text.encode("utf-8", "surrogatepass"))
        if size <= FIELD_MAX_BYTES:
            return value
        budget = FIELD_MAX_BYTES - 100
        cut = _cut(text, budget)
        while len(json.dumps(cut, ensure_ascii=False).encode("utf-8", "surrogatepass")) > FIELD_MAX_BYTES - 100:
            budget = budget * 3 // 4  # quotes and backslashes grow when the cut JSON is quoted again
            cut = _cut(text, budget)
        return {"truncated": True, "bytes": size, "text": cut + _MARK}
    return value


def _actor(actor: Mapping[str, Any]) -> str | None:
    who = actor.get("user") or actor.get("sender") or actor.get("caller")
    return str(who) if who else None


def _client(origin: Mapping[str, Any]) -> str | None:
    addr = origin.get("client_addr")
    return str(addr) if addr else None


def _details(record: Mapping[str, Any] | None, fallback: Mapping[str, Any], fmt: str) -> dict[str, Any]:
    if fmt == "ocsf" and record is not None:
        uid = record.get("class_uid")
        return {"DetailsFormat": f"ocsf/{ocsf.OCSF_VERSION}", "ClassUid": uid if isinstance(uid, int) else None,
                "Details": record}
    return {"DetailsFormat": "canary", "ClassUid": None, "Details": dict(fallback)}


def finding_record(alert: Alert, fmt: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """The ``stream`` row for one incident notification."""
    if alert.action is AlertAction.TRIGGER:
        when = alert.first_seen
    elif alert.action is AlertAction.UPDATE:
        when = alert.last_seen
    else:
        when = now or dt.datetime.now(dt.timezone.utc)
    row: dict[str, Any] = {
        "TimeGenerated": _iso(when),
        "IncidentId": alert.incident_id,
        "DedupKey": alert.dedup_key,
        "Action": str(alert.action),
        "Sequence": alert.sequence,
        "Kind": str(alert.kind),
        "Severity": str(alert.severity),
        "IncidentTitle": alert.title,
        "Summary": alert.summary,
        "Source": alert.source,
        "ClientIP": _client(alert.origin),
        "Actor": _actor(alert.actor),
        "CanaryCount": alert.canary_count,
        "EventCount": alert.event_count,
        "Canaries": [str(c.get("label")) for c in alert.canaries if c.get("label")],
        "FirstSeen": _iso(alert.first_seen),
        "LastSeen": _iso(alert.last_seen),
        "AttackTechniques": [str(t.get("id")) for t in alert.attack if t.get("id")],
        "Enrichment": dict(alert.enrichment),
        "Drill": alert.drill,
        "Link": alert.link,
    }
    row.update(_details(ocsf.detection_finding(alert) if fmt == "ocsf" else None, alert.to_json(), fmt))
    return {k: _fit(v) for k, v in row.items()}


def event_record(stored: StoredEvent, fmt: str) -> dict[str, Any]:
    """The ``event_stream`` row for one committed event."""
    event = stored.event
    canary = stored.canary or {}
    own = {"id": stored.id, "incident_id": stored.incident_id, "canary": dict(canary),
           "suppressed_by": stored.suppressed_by, "event": event.to_json()}
    row: dict[str, Any] = {
        "TimeGenerated": _iso(event.observed_at),
        "EventId": stored.id,
        "IncidentId": stored.incident_id,
        "Kind": str(event.kind),
        "Severity": str(event.severity),
        "Source": event.source,
        "ClientIP": _client(event.origin),
        "Actor": _actor(event.actor),
        "CanaryUid": str(canary["uid"]) if canary.get("uid") else None,
        "CanaryLabel": str(canary["label"]) if canary.get("label") else None,
        "CanaryKind": str(canary["kind"]) if canary.get("kind") else None,
        "SuppressedBy": stored.suppressed_by,
        "Drill": event.drill,
        "DetectedAt": _iso(event.detected_at),
        "AttackTechniques": [t.uid for t in techniques(event.kind, event.source, event.evidence)],
    }
    row.update(_details(ocsf.event_record(stored) if fmt == "ocsf" else None, own, fmt))
    return {k: _fit(v) for k, v in row.items()}


def _encode(row: Mapping[str, Any]) -> bytes:
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")


def _error_code(body: bytes, header: str | None) -> str:
    """Azure's error code (``error.code`` or ``x-ms-error-code``), only if it looks like one: the text
    around it is the receiver's and is not echoed."""
    code: object = header
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            code = parsed["error"].get("code") or code
    except (ValueError, UnicodeDecodeError):
        pass
    return code if isinstance(code, str) and _CODE.fullmatch(code) else "no error code"


@dataclasses.dataclass(frozen=True, slots=True)
class _Row:
    key: int | None  # the event id (None for an incident notification)
    data: bytes


class SentinelSink(HttpSink):
    type: ClassVar[str] = "sentinel"
    Options: ClassVar[builtins.type[BaseModel]] = SentinelOptions

    options: SentinelOptions

    def __init__(self, name: str, options: SentinelOptions, http: aiohttp.ClientSession) -> None:
        super().__init__(name, options, http)
        self.events = options.events
        self.event_batch = options.event_batch
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()
        #: event ids of the batch being delivered that Azure already accepted (a resend skips them)
        self._accepted: set[int] = set()
        base = options.endpoint.rstrip("/")
        self._urls = {s: f"{base}/dataCollectionRules/{options.dcr_immutable_id}/streams/{s}"
                      for s in (options.stream, options.event_stream)}
        self._token_url = f"{options.authority.rstrip('/')}/{options.tenant_id}/oauth2/v2.0/token"

    async def send(self, alert: Alert) -> None:
        row = _Row(None, _encode(finding_record(alert, self.options.format)))
        await self._upload(self.options.stream, [row], lambda rows: None)

    async def send_events(self, events: Sequence[StoredEvent]) -> None:
        ids = {e.id for e in events}
        self._accepted &= ids  # what is remembered belongs to this batch only
        rows = [_Row(e.id, _encode(event_record(e, self.options.format))) for e in events if e.id not in self._accepted]
        await self._upload(self.options.event_stream, rows,
                           lambda done: self._accepted.update(r.key for r in done if r.key is not None))
        self._accepted.clear()

    # -- upload --------------------------------------------------------------------------------------

    def _requests(self, rows: Sequence[_Row]) -> Iterator[list[_Row]]:
        """Rows packed in order into JSON arrays of at most ``max_request_bytes``."""
        limit, batch, size = self.options.max_request_bytes, list[_Row](), 2
        for row in rows:
            if batch and size + len(row.data) + 1 > limit:
                yield batch
                batch, size = [], 2
            batch.append(row)
            size += len(row.data) + 1
        if batch:
            yield batch

    async def _upload(self, stream: str, rows: Sequence[_Row], accepted: Callable[[list[_Row]], None]) -> None:
        for batch in self._requests(rows):
            await self._deliver(stream, batch, accepted)

    async def _deliver(self, stream: str, rows: list[_Row], accepted: Callable[[list[_Row]], None]) -> None:
        """One request; a 413 sends each half on its own (down to a single record)."""
        status = await self._post(stream, b"[" + b",".join(r.data for r in rows) + b"]")
        if status == 413:
            if len(rows) == 1:
                raise DeliveryError(self.name, "HTTP 413: a single record is larger than Azure accepts",
                                    permanent=True, status=413)
            half = len(rows) // 2
            await self._deliver(stream, rows[:half], accepted)
            await self._deliver(stream, rows[half:], accepted)
            return
        accepted(rows)

    async def _post(self, stream: str, payload: bytes) -> int:
        """POST one JSON array: the status when it is 2xx or 413, else a DeliveryError. A 401 gets one
        more try with a fresh token."""
        body = gzip.compress(payload, compresslevel=6) if self.options.gzip else payload
        for attempt in (1, 2):
            token = await self._bearer()
            request_id = str(uuid.uuid4())
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                       "x-ms-client-request-id": request_id}
            if self.options.gzip:
                headers["Content-Encoding"] = "gzip"
            try:
                async with self._http.post(self._urls[stream], params={"api-version": API_VERSION}, data=body,
                                           headers=headers,
                                           timeout=aiohttp.ClientTimeout(total=self.options.timeout)) as resp:
                    text = await resp.content.read(4096)
                    status = resp.status
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                    code = _error_code(text, resp.headers.get("x-ms-error-code"))
            except TimeoutError:
                raise DeliveryError(self.name, f"no response within {self.options.timeout:.1f}s") from None
            except aiohttp.ClientError as exc:
                raise DeliveryError(self.name, describe_client_error(exc, self._urls[stream])) from None
            if 200 <= status < 300 or status == 413:
                return status
            if status == 401 and attempt == 1:
                self._drop(token)
                continue
            retryable = status in RETRYABLE or status >= 500
            hint = _HINTS.get(status, "the token was refused twice" if status == 401 else "")
            raise DeliveryError(
                self.name, f"HTTP {status} {code} (x-ms-client-request-id {request_id})" + (f": {hint}" if hint else ""),
                retry_after=retry_after, permanent=not retryable and 400 <= status < 500, status=status)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- token ---------------------------------------------------------------------------------------

    def _drop(self, token: str) -> None:
        """Forget ``token`` after Azure refused it (unless another request already replaced it)."""
        if self._token is not None and self._token.value == token:
            self._token = None

    async def _bearer(self) -> str:
        async with self._token_lock:
            if self._token is not None and time.monotonic() < self._token.renew_at:
                return self._token.value
            self._token = await self._fetch_token()
            return self._token.value

    async def _fetch_token(self) -> _Token:
        form = {"client_id": self.options.client_id, "client_secret": self.options.client_secret.reveal(),
                "scope": self.options.scope, "grant_type": "client_credentials"}
        started = time.monotonic()
        try:
            async with self._http.post(self._token_url, data=form,
                                       timeout=aiohttp.ClientTimeout(total=self.options.timeout)) as resp:
                raw = await resp.content.read(65536)
                status = resp.status
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        except TimeoutError:
            raise DeliveryError(self.name, f"token endpoint: no response within {self.options.timeout:.1f}s") from None
        except aiohttp.ClientError as exc:
            raise DeliveryError(self.name, "token endpoint: " + describe_client_error(exc, self._token_url)) from None
        try:
            answer = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            answer = None
        if not isinstance(answer, dict):
            answer = {}
        if status == 200:
            token, kind, lifetime = answer.get("access_token"), answer.get("token_type"), answer.get("expires_in")
            if isinstance(lifetime, str) and lifetime.isascii() and lifetime.isdigit():
                lifetime = int(lifetime)
            if (isinstance(token, str) and token and isinstance(kind, str) and kind.lower() == "bearer"
                    and isinstance(lifetime, int) and not isinstance(lifetime, bool) and lifetime > 0):
                lifetime = min(lifetime, TOKEN_MAX_LIFETIME)
                return _Token(token, started + lifetime - min(lifetime * REFRESH_SHARE, REFRESH_MAX))
            raise DeliveryError(self.name, "token endpoint: HTTP 200 without a bearer token and its lifetime", status=200)
        error = answer.get("error")
        error = error if isinstance(error, str) and _CODE.fullmatch(error) else "no error code"
        codes = answer.get("error_codes")
        sts = ", ".join(f"AADSTS{c}" for c in codes[:3] if isinstance(c, int) and not isinstance(c, bool)) \
            if isinstance(codes, list) else ""
        retryable = status in RETRYABLE or status >= 500
        raise DeliveryError(self.name, f"token endpoint: HTTP {status} {error}" + (f" ({sts})" if sts else ""),
                            retry_after=retry_after, permanent=not retryable and 400 <= status < 500, status=status)


Options = SentinelOptions
SINK = SentinelSink
