"""Elasticsearch / OpenSearch through the ``_bulk`` API: incident notifications and committed events as
Elastic Common Schema documents (``canary/sinks/ecs.py``).

Wire format (Elasticsearch Bulk API, https://www.elastic.co/guide/en/elasticsearch/reference/current/docs-bulk.html,
and OpenSearch's, https://docs.opensearch.org/latest/api-reference/document-apis/bulk/): ``POST <url>/_bulk``
with ``Content-Type: application/x-ndjson``, one action line and one source line per document, the last
line ending in ``\\n``. The answer is ``{"took", "errors", "items": [{"create": {"_index", "_id", "status",
"error": {"type", "reason"}}}]}``, one item per action in order: the request as a whole succeeds while single
documents fail, so every item is read.

Idempotency: every document is written with ``create`` (data streams accept nothing else) and a
deterministic ``_id`` (a notification: dedup key + sequence; an event: ``event-<StoredEvent.id>``), so a
resend after a lost answer or a partial failure is answered ``409 version_conflict_engine_exception`` for
what already arrived, and 409 on create counts as delivered. Per item: any 429 / 5xx makes the batch
retryable (it is resent whole; the created ones answer 409), any other refusal (400 ``mapper_parsing_exception``
/ ``document_parsing_exception``, a missing pipeline) makes it permanent, named by count and the first
error's type, never by the document or the receiver's reason (which quotes the document). The request:
401 / 403 / other 4xx permanent, 429 / 5xx retryable with Retry-After, 413 (larger than
``http.max_content_length``) splits the batch in halves until a single document is refused, which is
permanent. Requests are cut at ``max_bytes`` before sending.

Authentication: ``api_key`` sends ``Authorization: ApiKey <base64(id:api_key)>`` (the ``encoded`` value the
create-API-key call returns, or ``id:api_key``, encoded here: https://elastic.co/docs/api/doc/elasticsearch/authentication);
``username`` / ``password`` send HTTP Basic. ``flavor = "opensearch"`` refuses ``api_key``: OpenSearch's
security plugin authenticates REST clients with HTTP Basic (https://docs.opensearch.org/1.2/security-plugin/index).

Targets: by default the data streams ``logs-canary.alerts-default`` and ``logs-canary.events-default``
(Elasticsearch's built-in ``logs-*-*`` template makes them data streams with ECS mappings; on OpenSearch
the same names are plain indices unless a data stream template exists; ``create`` suits both).
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import aiohttp
from pydantic import BaseModel, Field, field_validator, model_validator
from yarl import URL

from canary.alerts import Alert
from canary.errors import DeliveryError
from canary.events import StoredEvent
from canary.secret import Secret, required_secret
from canary.sinks._http import RETRYABLE, HttpSink, describe_client_error, parse_retry_after, validate_http_url
from canary.sinks._siem import EventFeedOptions
from canary.sinks._tls import client_tls_context
from canary.sinks.ecs import alert_document, alert_id, event_document, event_id

NDJSON = "application/x-ndjson"
#: Elasticsearch and OpenSearch (2.9+) refuse a longer ``_id``
ID_MAX_BYTES = 512
#: an answer's size allowed per document sent (an item is ~250 bytes; an error with its reason more)
_ANSWER_PER_ITEM = 4096
_ERROR_TYPE = re.compile(r"[A-Za-z0-9_.]{1,80}")
# Elasticsearch's index name rules: lowercase, none of these characters, not starting with - _ +
_BAD_INDEX = re.compile(r'[\\/*?"<>| ,#:A-Z]')


class ElasticOptions(EventFeedOptions):
    """``url``: the cluster (``https://host:9200``, a path prefix allowed; no credentials in it).
    ``alerts_index`` / ``events_index``: data streams, indices or aliases. ``pipeline``: an ingest pipeline
    for every document. ``max_bytes``: largest request body (keep below the cluster's
    ``http.max_content_length``, 100 MB by default). ``ca_file``: a CA bundle for a private CA."""

    url: str
    flavor: Literal["elasticsearch", "opensearch"] = "elasticsearch"
    api_key: Secret | None = None
    username: str = ""
    password: Secret | None = None
    alerts_index: str = "logs-canary.alerts-default"
    events_index: str = "logs-canary.events-default"
    pipeline: str = ""
    timeout: float = Field(default=10.0, gt=0, le=120)
    max_bytes: int = Field(default=5 * 1024 * 1024, ge=4096, le=100 * 1024 * 1024)
    ca_file: Path | None = None

    _key = field_validator("api_key", "password", mode="before")(required_secret("credential"))

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        validate_http_url(cls, v)
        u = URL(v)
        if u.user or u.password:
            raise ValueError("must not hold credentials (use api_key, or username and password)")
        if u.query_string or u.fragment:
            raise ValueError("must not have a query or fragment")
        return v

    @field_validator("alerts_index", "events_index")
    @classmethod
    def _index(cls, v: str) -> str:
        if not v or v in (".", "..") or v[0] in "-_+" or _BAD_INDEX.search(v) or len(v.encode()) > 255:
            raise ValueError("must be an index or data stream name (lowercase, at most 255 bytes, "
                             'none of \\ / * ? " < > | space , # :, not starting with - _ +)')
        return v

    @field_validator("pipeline")
    @classmethod
    def _pipeline(cls, v: str) -> str:
        if v and (len(v) > 512 or any(c.isspace() for c in v)):
            raise ValueError("must be an ingest pipeline id")
        return v

    @model_validator(mode="after")
    def _credentials(self) -> ElasticOptions:
        if self.api_key is not None and (self.username or self.password is not None):
            raise ValueError("give api_key or username and password, not both")
        if bool(self.username) != (self.password is not None):
            raise ValueError("username and password go together")
        if self.flavor == "opensearch" and self.api_key is not None:
            raise ValueError("OpenSearch authenticates with username and password (HTTP Basic), not api_key")
        return self


def authorization(options: ElasticOptions) -> dict[str, str]:
    """The ``Authorization`` header the options ask for (none for an open cluster)."""
    if options.api_key is not None:
        key = options.api_key.reveal().strip()
        if ":" in key:  # "id:api_key" as given; the encoded form is base64, which has no ':'
            key = base64.b64encode(key.encode()).decode()
        return {"Authorization": f"ApiKey {key}"}
    if options.password is not None:
        pair = f"{options.username}:{options.password.reveal()}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    return {}


def _doc_id(value: str) -> str:
    if len(value.encode()) <= ID_MAX_BYTES:
        return value
    return "sha256-" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()


def encode(index: str, doc_id: str, doc: dict[str, Any]) -> bytes:
    """One ``create`` action and its source, each one line: JSON escapes every newline inside a value, so
    no text in a document can start a line of its own."""
    action = json.dumps({"create": {"_index": index, "_id": _doc_id(doc_id)}}, separators=(",", ":"))
    source = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return (action + "\n" + source + "\n").encode("utf-8", "replace")


def _error_type(error: object) -> str:
    """The receiver's error type (``mapper_parsing_exception``) if it looks like one; never its reason."""
    kind = error.get("type") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) and _ERROR_TYPE.fullmatch(kind) else "unknown"


class _TooLarge(Exception):
    """The receiver answered 413 to one request."""


class _Outcome:
    """What the items of one batch came to: delivered (201, or 409 on create), retryable, refused."""

    def __init__(self) -> None:
        self.delivered = 0
        self.retryable: list[tuple[int, str]] = []  # (status, error type) of each
        self.refused: list[tuple[int, str]] = []

    def add(self, status: int, error: object) -> None:
        if 200 <= status < 300 or status == 409:  # 409 on create: the document is already there
            self.delivered += 1
        elif status in RETRYABLE or status >= 500:
            self.retryable.append((status, _error_type(error)))
        else:
            self.refused.append((status, _error_type(error)))

    @property
    def total(self) -> int:
        return self.delivered + len(self.retryable) + len(self.refused)


class ElasticSink(HttpSink):
    type: ClassVar[str] = "elasticsearch"
    Options: ClassVar[builtins.type[BaseModel]] = ElasticOptions

    options: ElasticOptions

    def __init__(self, name: str, options: Any, http: aiohttp.ClientSession) -> None:
        super().__init__(name, options, http)
        self.events = options.events
        self.event_batch = options.event_batch
        url = URL(options.url.rstrip("/") + "/_bulk")
        self._url = url.with_query(pipeline=options.pipeline) if options.pipeline else url

    async def send(self, alert: Alert) -> None:
        await self._bulk([encode(self.options.alerts_index, alert_id(alert), alert_document(alert))])

    async def send_events(self, events: Sequence[StoredEvent]) -> None:
        await self._bulk([encode(self.options.events_index, event_id(s), event_document(s)) for s in events])

    async def _bulk(self, docs: list[bytes]) -> None:
        """Send ``docs`` in requests of at most ``max_bytes``; raise once for the whole batch."""
        outcome = _Outcome()
        for chunk in self._chunks(docs):
            await self._send_chunk(chunk, outcome)
        if outcome.retryable:
            status, kind = outcome.retryable[0]
            # a 429 item is the cluster's write queue full: throttling, as the outbox understands it
            throttled = any(s == 429 for s, _ in outcome.retryable)
            raise DeliveryError(self.name, f"{len(outcome.retryable)} of {outcome.total} document(s) not stored yet "
                                f"(first: {status} {kind}); the batch is resent", status=429 if throttled else status)
        if outcome.refused:
            status, kind = outcome.refused[0]
            raise DeliveryError(self.name, f"{len(outcome.refused)} of {outcome.total} document(s) refused "
                                f"(first: {status} {kind})", permanent=True, status=status)

    def _chunks(self, docs: list[bytes]) -> list[list[bytes]]:
        chunks: list[list[bytes]] = []
        size = 0
        for doc in docs:
            if not chunks or size + len(doc) > self.options.max_bytes:
                chunks.append([])
                size = 0
            chunks[-1].append(doc)
            size += len(doc)
        return chunks

    async def _send_chunk(self, chunk: list[bytes], outcome: _Outcome) -> None:
        try:
            items = await self._request(chunk)
        except _TooLarge:
            if len(chunk) == 1:
                raise DeliveryError(self.name, f"one document of {len(chunk[0])} bytes is larger than the receiver "
                                    "accepts (HTTP 413)", permanent=True, status=413) from None
            half = len(chunk) // 2
            await self._send_chunk(chunk[:half], outcome)
            await self._send_chunk(chunk[half:], outcome)
            return
        for status, error in items:
            outcome.add(status, error)

    async def _ssl(self) -> Any:
        if self.options.ca_file is None:
            return True
        return await asyncio.to_thread(client_tls_context, self.options.ca_file)

    async def _request(self, chunk: list[bytes]) -> list[tuple[int, object]]:
        """POST one ``_bulk`` request; the (status, error) of each item, in order."""
        headers = {"Content-Type": NDJSON, "Accept": "application/json", **authorization(self.options)}
        origin = self.options.url
        try:
            async with self._http.post(self._url, data=b"".join(chunk), headers=headers, ssl=await self._ssl(),
                                       timeout=aiohttp.ClientTimeout(total=self.options.timeout)) as resp:
                if resp.status == 413:
                    raise _TooLarge
                if not 200 <= resp.status < 300:
                    text = await resp.content.read(4096)
                    raise DeliveryError(
                        self.name, f"HTTP {resp.status} ({_answer_error_type(text)})",
                        retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                        permanent=resp.status not in RETRYABLE and 400 <= resp.status < 500, status=resp.status)
                limit = 65536 + _ANSWER_PER_ITEM * len(chunk)
                raw = bytearray()
                async for piece in resp.content.iter_chunked(65536):  # read() may return a part only
                    raw += piece
                    if len(raw) > limit:
                        raise DeliveryError(self.name, f"bulk answer larger than {limit} bytes")
        except asyncio.TimeoutError:
            raise DeliveryError(self.name, f"no response within {self.options.timeout:.1f}s") from None
        except aiohttp.ClientError as exc:
            raise DeliveryError(self.name, describe_client_error(exc, origin)) from None
        return self._items(bytes(raw), len(chunk))

    def _items(self, raw: bytes, expected: int) -> list[tuple[int, object]]:
        try:
            answer = json.loads(raw)
        except ValueError:
            raise DeliveryError(self.name, "bulk answer is not JSON") from None
        items = answer.get("items") if isinstance(answer, dict) else None
        if not isinstance(items, list) or len(items) != expected:
            raise DeliveryError(self.name, f"bulk answer does not hold one item per document ({expected} sent)")
        out: list[tuple[int, object]] = []
        for item in items:
            result = next(iter(item.values())) if isinstance(item, dict) and len(item) == 1 else None
            status = result.get("status") if isinstance(result, dict) else None
            if not isinstance(result, dict) or not isinstance(status, int) or isinstance(status, bool):
                raise DeliveryError(self.name, "bulk answer has an item without a status")
            out.append((status, result.get("error")))
        return out


def _answer_error_type(body: bytes) -> str:
    """The error type of a refused request (``security_exception``), from Elasticsearch's
    ``{"error": {"type", ...}, "status"}``; ``no detail`` for anything else (a proxy's page, plain text)."""
    try:
        answer = json.loads(body)
    except ValueError:
        return "no detail"
    error = answer.get("error") if isinstance(answer, dict) else None
    kind = _error_type(error)
    return "no detail" if kind == "unknown" else kind


Options = ElasticOptions
SINK = ElasticSink
