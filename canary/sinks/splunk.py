"""Splunk HTTP Event Collector (sink type ``splunk_hec``): incidents and every committed event.

Wire format, as Splunk documents it:

* Events go to ``POST <url>/services/collector/event`` with ``Authorization: Splunk <token>``; one request
  carries several events as JSON objects one after another (no array, no commas), each an envelope
  ``{"time": <epoch seconds>.<ms>, "host", "source", "sourcetype", "index", "event": {...}}``
  (https://help.splunk.com/splunk-enterprise/get-data-in/collect-http-event-data/format-events-for-http-event-collector,
  https://help.splunk.com/en/splunk-enterprise/get-data-in/collect-http-event-data/http-event-collector-rest-api-endpoints).
  ``host`` and ``index`` are left out when not configured, so the token's defaults apply.
* Answers are ``{"text", "code"}`` (plus ``invalid-event-number`` for a refused object of a batch, whose
  predecessors were indexed): 0 Success; 1 token disabled (403), 2 token required (401), 3 invalid
  authorization (401), 4 invalid token (403): permanent, retrying cannot fix them; 5 no data, 6 invalid data
  format, 7 incorrect index, 10 data channel is missing, 11 invalid data channel, 12 / 13 event field
  required / blank, 14 ACK is disabled (all 400, permanent); 8 internal error (500) and 9 server is busy
  (503, also 18-20 unhealthy): retried, honouring ``Retry-After``. 413 (the body is over the collector's
  ``max_content_length``) splits the request in halves; 429 from a proxy in front is retried
  (https://help.splunk.com/en/splunk-enterprise/get-data-in/collect-http-event-data/troubleshoot-http-event-collector).
* Indexer acknowledgement (``ack = true``; the token must have ``useACK``): every request names the sink's
  channel (a GUID) in ``X-Splunk-Request-Channel`` and is answered ``{"text":"Success","code":0,"ackId":N}``
  (ids count from 0 per channel); ``POST <url>/services/collector/ack?channel=<GUID>`` with ``{"acks":[N,...]}``
  answers ``{"acks":{"N":true|false}}``, and Splunk forgets an id once it has answered ``true``
  (https://help.splunk.com/splunk-enterprise/get-data-in/collect-http-event-data/about-http-event-collector-indexer-acknowledgment).
  A delivery returns only when every request of it is acknowledged; one not acknowledged within
  ``ack_timeout`` is a retryable :class:`DeliveryError`, and the whole batch is sent again. Delivery is
  therefore at least once: a resent event may be indexed twice, and ``id`` (canary format) or
  ``metadata.uid`` (OCSF) is the key to deduplicate on in searches.

``format = "ocsf"`` sends OCSF records (:mod:`canary.sinks.ocsf`: a Detection Finding per alert, the fitting
class per event); ``format = "canary"`` sends canary's own JSON (``Alert.to_json()``; an event's JSON with its
store ``id``, ``incident_id``, ``canary`` and ``suppressed_by``). A request holds at most ``max_bytes``
(default 1 MB: the limit Splunk Cloud Platform documents for HEC; Splunk Enterprise ships
``[http_input] max_content_length = 838860800`` in limits.conf); a batch over it goes as several requests.
An envelope that alone is over it has its evidence (then actor, origin and canaries) replaced by a note of
what was left out, so no input can make a detection undeliverable. The token is only ever placed in the
``Authorization`` header and is scrubbed from any text the collector answers.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import datetime as dt
import json
import math
import re
import ssl
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeGuard, TypeVar

import aiohttp
from pydantic import BaseModel, Field, field_validator, model_validator
from yarl import URL

from canary.alerts import Alert, AlertAction
from canary.errors import DeliveryError
from canary.events import StoredEvent
from canary.secret import Secret, required_secret
from canary.sinks import ocsf
from canary.sinks._http import RETRYABLE, HttpSink, describe_client_error, parse_retry_after, validate_http_url
from canary.sinks._siem import EventFeedOptions
from canary.sinks._tls import client_tls_context

EVENT_PATH = "/services/collector/event"
ACK_PATH = "/services/collector/ack"
DEFAULT_MAX_BYTES = 1_000_000  # Splunk Cloud Platform's HEC max content length
ENTERPRISE_MAX_BYTES = 838_860_800  # limits.conf [http_input] max_content_length (800 MiB)
MIN_MAX_BYTES = 65_536  # room for any event once its evidence, actor and origin are left out
_RESPONSE_MAX = 4096
_T = TypeVar("_T")

#: HEC codes whose cause the operator must fix in the configuration, worded for them
_ADVICE = {
    1: "the token is disabled",
    2: "the token is missing",
    3: "the Authorization header was refused",
    4: "the token is not known to the collector",
    7: "the index is not allowed for this token",
    10: "the token has indexer acknowledgement on: set ack = true",
    11: "the channel is not a GUID",
    14: "the token has indexer acknowledgement off: set ack = false",
}

#: Splunk index names: lowercase letters, digits, '_' and '-', not starting with '_' or '-'
_INDEX = re.compile(r"[a-z0-9][a-z0-9_-]*")


#: seconds before the first indexer-acknowledgement poll of a delivery (then doubling up to ack_poll)
FIRST_ACK_POLL = 0.05

class SplunkHecOptions(EventFeedOptions):
    url: str  # the collector's base URL, e.g. https://splunk.example.com:8088
    token: Secret
    index: str = ""  # empty: the token's default index
    source: str = "canary"
    sourcetype: str = ""  # empty: "ocsf:canary" (format ocsf), "canary:alert" / "canary:event" (format canary)
    host: str = ""  # empty: Splunk's default (the collector's view of the sender)
    format: Literal["ocsf", "canary"] = "ocsf"
    ack: bool = False
    ack_timeout: float = Field(default=30.0, gt=0, le=600)
    ack_poll: float = Field(default=1.0, gt=0, le=60)
    channel: str = ""  # a GUID; empty: a new one per sink process
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=MIN_MAX_BYTES, le=ENTERPRISE_MAX_BYTES)
    timeout: float = Field(default=10.0, gt=0, le=120)
    ca_file: Path | None = None  # a private CA for the collector's certificate (verification is never off)

    _token = field_validator("token", mode="before")(required_secret("HEC token"))

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        validate_http_url(cls, v)
        u = URL(v)
        if u.query_string or u.fragment:
            raise ValueError("must not have a query or fragment")
        if "/services/collector" in u.path:
            raise ValueError("give the collector's base URL (https://host:8088), without /services/collector")
        return v.rstrip("/")

    @field_validator("index")
    @classmethod
    def _index(cls, v: str) -> str:
        if v and not _INDEX.fullmatch(v):
            raise ValueError("a Splunk index name: lowercase letters, digits, '_' and '-', not starting with '_' or '-'")
        return v

    @field_validator("channel")
    @classmethod
    def _channel(cls, v: str) -> str:
        if not v:
            return v
        try:
            return str(uuid.UUID(v))
        except ValueError:
            raise ValueError("must be a GUID, e.g. 0e1c4d5a-7c43-4d8e-9a55-1f2a3b4c5d6e") from None

    @field_validator("ca_file")
    @classmethod
    def _ca(cls, v: Path | None) -> Path | None:
        if v is not None and not v.expanduser().is_file():
            raise ValueError(f"CA file {v} does not exist")
        return v.expanduser() if v is not None else None

    @model_validator(mode="after")
    def _poll_within_timeout(self) -> SplunkHecOptions:
        if self.ack_poll > self.ack_timeout:
            raise ValueError("ack_poll must not be longer than ack_timeout")
        return self


@dataclasses.dataclass(frozen=True, slots=True)
class _Envelope:
    """One serialized HEC event and what it is, for error messages (``event 1234``, ``alert 7 trigger``)."""

    label: str
    body: bytes


def _epoch(when: dt.datetime) -> float:
    return round(when.timestamp(), 3)


class SplunkHecSink(HttpSink):
    type: ClassVar[str] = "splunk_hec"
    Options: ClassVar[builtins.type[BaseModel]] = SplunkHecOptions

    options: SplunkHecOptions

    def __init__(self, name: str, options: SplunkHecOptions, http: aiohttp.ClientSession) -> None:
        super().__init__(name, options, http)
        self.events = options.events
        self.event_batch = options.event_batch
        #: the indexer-acknowledgement channel: configured, or one per sink process
        self.channel = options.channel or str(uuid.uuid4())
        self._event_url = options.url + EVENT_PATH
        self._ack_url = str(URL(options.url + ACK_PATH).with_query(channel=self.channel))
        self._ssl: ssl.SSLContext | bool = True

    # -- the Sink / EventSink protocol -------------------------------------------------------------

    async def send(self, alert: Alert) -> None:
        """Deliver one incident notification (acknowledged by the indexer when ``ack`` is on)."""
        await self._deliver([self._fit(alert, self._alert_envelope, _shrink_alert)])

    async def send_events(self, events: Sequence[StoredEvent]) -> None:
        """Deliver one batch of committed events in one request (several when over ``max_bytes``)."""
        if events:
            await self._deliver([self._fit(e, self._event_envelope, _shrink_event) for e in events])

    # -- envelopes ---------------------------------------------------------------------------------

    def _envelope(self, when: float, sourcetype: str, event: Mapping[str, Any]) -> bytes:
        o = self.options
        env: dict[str, Any] = {"time": when}
        if o.host:
            env["host"] = o.host
        env["source"] = o.source
        env["sourcetype"] = sourcetype
        if o.index:
            env["index"] = o.index
        env["event"] = event
        return _json_bytes(env)

    def _alert_envelope(self, alert: Alert) -> _Envelope:
        o = self.options
        label = f"alert {alert.incident_id} {alert.action}"
        if o.format == "ocsf":
            record = ocsf.detection_finding(alert)
            return _Envelope(label, self._envelope(_record_time(record, _alert_time(alert)),
                                                   o.sourcetype or "ocsf:canary", record))
        return _Envelope(label, self._envelope(_alert_time(alert), o.sourcetype or "canary:alert", alert.to_json()))

    def _event_envelope(self, stored: StoredEvent) -> _Envelope:
        o = self.options
        label = f"event {stored.id}"
        when = _epoch(stored.event.observed_at)
        if o.format == "ocsf":
            record = ocsf.event_record(stored)
            return _Envelope(label, self._envelope(_record_time(record, when), o.sourcetype or "ocsf:canary", record))
        body = {"id": stored.id, **stored.event.to_json(), "incident_id": stored.incident_id,
                "canary": dict(stored.canary), "suppressed_by": stored.suppressed_by}
        return _Envelope(label, self._envelope(when, o.sourcetype or "canary:event", body))

    def _fit(self, item: _T, build: Callable[[_T], _Envelope], shrink: Callable[[_T, int, int], _T | None]) -> _Envelope:
        """``item``'s envelope, made smaller step by step (``shrink``) while it alone is over ``max_bytes``."""
        envelope = build(item)
        step = 0
        while len(envelope.body) > self.options.max_bytes:
            step += 1
            smaller = shrink(item, step, len(envelope.body))
            if smaller is None:
                raise DeliveryError(self.name, f"{envelope.label} is {len(envelope.body)} bytes even without its "
                                    f"evidence, over max_bytes = {self.options.max_bytes}", permanent=True)
            item, envelope = smaller, build(smaller)
        return envelope

    # -- delivery ----------------------------------------------------------------------------------

    async def _deliver(self, envelopes: list[_Envelope]) -> None:
        if self.options.ca_file is not None and self._ssl is True:
            self._ssl = await asyncio.to_thread(client_tls_context, self.options.ca_file)
        ack_ids: list[int] = []
        for chunk in self._chunks(envelopes):
            ack_ids += await self._post(chunk)
        if self.options.ack:
            await self._await_acks(ack_ids)

    def _chunks(self, envelopes: list[_Envelope]) -> list[list[_Envelope]]:
        """Consecutive runs of envelopes whose bodies together stay within ``max_bytes``."""
        chunks: list[list[_Envelope]] = []
        size = 0
        for env in envelopes:
            if not chunks or size + len(env.body) > self.options.max_bytes:
                chunks.append([])
                size = 0
            chunks[-1].append(env)
            size += len(env.body)
        return chunks

    def _headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Splunk {self.options.token.reveal()}", "Content-Type": "application/json"}
        if self.options.ack:
            headers["X-Splunk-Request-Channel"] = self.channel
        return headers

    async def _request(self, url: str, body: bytes) -> tuple[int, dict[str, Any], str, float | None]:
        """POST ``body``; (status, the answer as a JSON object or {}, its text scrubbed of the token,
        Retry-After). Transport failures and timeouts are retryable :class:`DeliveryError`."""
        try:
            async with self._http.post(url, data=body, headers=self._headers(), ssl=self._ssl, allow_redirects=False,
                                       timeout=aiohttp.ClientTimeout(total=self.options.timeout)) as resp:
                raw = await resp.content.read(_RESPONSE_MAX)
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                status = resp.status
        except asyncio.TimeoutError:
            raise DeliveryError(self.name, f"no answer within {self.options.timeout:.1f}s") from None
        except aiohttp.ClientError as exc:
            raise DeliveryError(self.name, describe_client_error(exc, url)) from None
        text = raw.decode("utf-8", "replace").replace(self.options.token.reveal(), "[token]")
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        return status, answer if isinstance(answer, dict) else {}, text, retry_after

    async def _post(self, chunk: list[_Envelope]) -> list[int]:
        """Send one request; the ack ids it was given. A 413 splits it in halves (down to one event)."""
        status, answer, text, retry_after = await self._request(self._event_url, b"".join(e.body for e in chunk))
        if 200 <= status < 300:
            if not self.options.ack:
                return []
            ack_id = answer.get("ackId")
            if not _is_count(ack_id):
                raise DeliveryError(self.name, "the collector gave no ackId: the token has indexer acknowledgement "
                                    "off (set ack = false, or turn useACK on)", permanent=True, status=status)
            return [ack_id]
        if status == 413 and len(chunk) > 1:
            half = len(chunk) // 2
            return await self._post(chunk[:half]) + await self._post(chunk[half:])
        raise self._refused(status, answer, text, retry_after, chunk)

    def _refused(self, status: int, answer: dict[str, Any], text: str, retry_after: float | None,
                 chunk: list[_Envelope]) -> DeliveryError:
        """The DeliveryError for a refused request: HEC's code and text, which event it refused."""
        code = answer.get("code")
        said = answer.get("text")
        detail = f"{said} (code {code})" if isinstance(said, str) and _is_count(code) else text[:300]
        if _is_count(code) and code in _ADVICE:
            detail += f": {_ADVICE[code]}"
        number = answer.get("invalid-event-number")
        if _is_count(number) and number < len(chunk):
            detail += (f"; refused {chunk[number].label} (object {number} of {len(chunk)} in the request"
                       + (", the ones before it were indexed)" if number else ")"))
        if status == 413:
            detail += f"; one event is over the collector's max_content_length: lower max_bytes ({self.options.max_bytes})"
        permanent = status not in RETRYABLE and not status >= 500
        return DeliveryError(self.name, f"HTTP {status}: {detail[:600]}", retry_after=retry_after, permanent=permanent,
                             status=status)

    async def _await_acks(self, ack_ids: list[int]) -> None:
        """Poll the channel until every id is acknowledged: the first poll soon (:data:`FIRST_ACK_POLL`, an
        indexer often has a small batch by then), each next one twice as late up to ``ack_poll``, so one
        batch in flight is not held a whole ``ack_poll`` per delivery. Past ``ack_timeout`` a retryable
        error (the caller resends the whole delivery). Permanent refusals end it at once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.ack_timeout
        pending = set(ack_ids)
        trouble = ""
        wait = min(FIRST_ACK_POLL, self.options.ack_poll)
        while pending:
            now = loop.time()
            if now >= deadline:
                raise DeliveryError(self.name, f"{len(pending)} of {len(ack_ids)} request(s) not acknowledged by the "
                                    f"indexers within {self.options.ack_timeout:g}s{trouble}; the batch is sent again "
                                    "(at least once: it may be indexed twice)")
            await asyncio.sleep(min(wait, deadline - now))
            wait = min(wait * 2, self.options.ack_poll)
            body = json.dumps({"acks": sorted(pending)}).encode()
            status, answer, text, retry_after = await self._request_polled(body)
            if status is None:
                trouble = f" (last poll: {text})"
                continue
            if not 200 <= status < 300:
                error = self._refused(status, answer, text, retry_after, [])
                if error.permanent:
                    raise error
                trouble = f" (last poll: HTTP {status})"
                continue
            acks = answer.get("acks")
            if not isinstance(acks, dict):
                trouble = " (last poll: an answer without acks)"
                continue
            pending -= {i for i in pending if acks.get(str(i)) is True}

    async def _request_polled(self, body: bytes) -> tuple[int | None, dict[str, Any], str, float | None]:
        """One ack poll; a transport failure is reported as status None (the poll is tried again)."""
        try:
            return await self._request(self._ack_url, body)
        except DeliveryError as exc:
            return None, {}, str(exc).removeprefix(f"{self.name}: "), None


def _json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON that HEC parses whatever ``value`` holds: a non-finite float (which JSON
    cannot spell) becomes its name as text, a foreign type its ``str``, a lone surrogate U+FFFD."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str)
    except ValueError:
        value = json.loads(json.dumps(value, default=str), parse_constant=str)
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8", "replace")


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _alert_time(alert: Alert) -> float:
    """When the notification happened: the incident's start (trigger), its last event (update), now
    (acknowledge / resolve: a person's action, carried by the alert without a time)."""
    if alert.action is AlertAction.TRIGGER:
        return _epoch(alert.first_seen)
    if alert.action is AlertAction.UPDATE:
        return _epoch(alert.last_seen)
    return _epoch(dt.datetime.now(dt.timezone.utc))


def _record_time(record: Mapping[str, Any], fallback: float) -> float:
    """An OCSF record's ``time`` (epoch milliseconds) in HEC's seconds, so Splunk's _time matches it."""
    ms = record.get("time")
    if isinstance(ms, int | float) and not isinstance(ms, bool) and math.isfinite(ms) and abs(ms) < 1e15:
        return round(ms / 1000, 3)
    return fallback


def _left_out(what: str, size: int) -> dict[str, str]:
    return {"truncated": f"{what} left out: the event was {size} bytes, over the sink's max_bytes"}


def _shrink_alert(alert: Alert, step: int, size: int) -> Alert | None:
    if step == 1:
        return dataclasses.replace(alert, evidence=_left_out("evidence", size))
    if step == 2:
        return dataclasses.replace(alert, actor=_left_out("actor", size), origin=_left_out("origin", size),
                                   canaries=(), enrichment={}, summary=alert.summary[:1024], title=alert.title[:1024])
    return None


def _shrink_event(stored: StoredEvent, step: int, size: int) -> StoredEvent | None:
    event = stored.event
    if step == 1:
        return dataclasses.replace(stored, event=dataclasses.replace(event, evidence=_left_out("evidence", size)))
    if step == 2:
        return dataclasses.replace(stored, event=dataclasses.replace(
            event, actor=_left_out("actor", size), origin=_left_out("origin", size)), canary={})
    if step == 3:
        return dataclasses.replace(stored, event=dataclasses.replace(
            event, source=event.source[:256], key=event.key[:256], group=event.group[:256],
            drill=event.drill[:256] if event.drill else event.drill))
    return None


Options = SplunkHecOptions
SINK = SplunkHecSink
