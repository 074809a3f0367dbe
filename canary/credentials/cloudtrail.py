"""AWS access-key canaries: CloudTrail records whose ``userIdentity.accessKeyId`` is a canary.

Two inputs, one processor:

* :class:`CloudTrailDirectorySource` polls a directory (a synced bucket prefix such as
  ``AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/``) for CloudTrail log files — ``{"Records":
  [...]}`` JSON, gzip'd (``.json.gz``, as CloudTrail delivers them) or not. A file is marked done in
  ``cloudtrail_files`` only after its events are committed; a file that does not parse is retried
  while it may still be being written and rejected (counted) once it is older than ``settle``.
* :class:`CloudTrailFirehose` receives a trail sent to CloudWatch Logs: a subscription filter on the
  trail's log group feeds an Amazon Data Firehose stream whose HTTP endpoint is ``firehose_path`` on the
  listener (:mod:`canary.firehose`: the stream's access key in constant time, 200 only after commit,
  503 while the store is down). Each log event's message is one CloudTrail record; a record that is
  not one is rejected (counted) and the rest committed.
* :class:`CloudTrailWebhook` accepts EventBridge events (``"detail-type": "AWS API Call via
  CloudTrail"``, the record in ``detail``), one or a JSON array, POSTed by an EventBridge API
  destination with an API-key header. It answers 200 only after commit (so EventBridge retries
  otherwise), 401 for a wrong key, 400 for malformed bodies (both counted).

Each matching record raises ``EventKind.USED`` with eventName, eventSource, sourceIPAddress,
userAgent, awsRegion and errorCode/errorMessage; the key is CloudTrail's ``eventID``. The caller's
``sourceIPAddress`` becomes the incident's client address only when it is an IP address: for calls an
AWS service makes on the caller's behalf CloudTrail writes the service's name there (e.g.
``athena.amazonaws.com``; see "CloudTrail record contents",
https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html),
which is kept as ``origin.aws_service`` instead.
"""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
import gzip
import ipaddress
import json
import os
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from aiohttp import web

from canary import firehose
from canary.config import Config
from canary.crypto import same
from canary.events import DetectionEvent, EventKind, Severity, event_key
from canary.pipeline import refused
from canary.plugins import SourceType
from canary.secret import Secret
from canary.store.registry import ValueKind, recognise
from canary.tasks import stop_task, wait_or_stop
from canary.typing import Component, SourceContext

log = structlog.get_logger("canary.sources.cloudtrail")

EVENT_SOURCE = "cloudtrail"
CLOUDTRAIL_DETAIL_TYPES = {
    "AWS API Call via CloudTrail",
    "AWS Console Sign In via CloudTrail",
    "AWS Service Event via CloudTrail",
    "AWS Console Action via CloudTrail",
}
MAX_FILE_BYTES = 256 * 1024 * 1024  # decompressed
_MAX_FIELD = 512


class CloudTrailFormatError(ValueError):
    """A document is neither a CloudTrail log file nor EventBridge CloudTrail event(s)."""


def records_from_document(doc: Any) -> list[Mapping[str, Any]]:
    """CloudTrail records from a log file (``{"Records": [...]}``), one EventBridge event or a list of them."""
    if isinstance(doc, Mapping) and "Records" in doc:
        records = doc["Records"]
        if not isinstance(records, list):
            raise CloudTrailFormatError('"Records" is not a list')
        return [r for r in records if isinstance(r, Mapping)]
    events = doc if isinstance(doc, list) else [doc]
    out: list[Mapping[str, Any]] = []
    for ev in events:
        if not isinstance(ev, Mapping) or "detail-type" not in ev:
            raise CloudTrailFormatError("expected a CloudTrail log file or EventBridge events")
        if not isinstance(ev["detail-type"], str) or ev["detail-type"] not in CLOUDTRAIL_DETAIL_TYPES:
            continue  # other EventBridge events are not CloudTrail records (a list or object here was a TypeError: 500)
        detail = ev.get("detail")
        if not isinstance(detail, Mapping):
            raise CloudTrailFormatError("EventBridge CloudTrail event without a detail object")
        out.append(detail)
    return out


def _text(value: Any) -> str | None:
    return str(value)[:_MAX_FIELD] if value not in (None, "") else None


#: eventTime before CloudTrail existed, or over a day ahead of ours, is not believed (the event is
#: observed now): a time near datetime's limits overflowed the pipeline's grouping window, which
#: answered the webhook 503 forever and stopped the directory scan at that file.
EARLIEST_EVENT_TIME = dt.datetime(2006, 1, 1, tzinfo=dt.timezone.utc)


def parse_event_time(value: Any) -> dt.datetime:
    now = dt.datetime.now(dt.timezone.utc)
    if isinstance(value, str) and value:
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            parsed = parsed.astimezone(dt.timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
        except (ValueError, OverflowError):
            return now
        if EARLIEST_EVENT_TIME <= parsed <= now + dt.timedelta(days=1):
            return parsed
    return now


def _source_address(value: Any) -> tuple[str | None, str | None]:
    """(client IP, AWS service name) from ``sourceIPAddress``: one of them, or neither."""
    text = _text(value)
    if text is None:
        return None, None
    try:
        return str(ipaddress.ip_address(text)), None
    except ValueError:
        return None, text


class CloudTrailProcessor:
    """Turns CloudTrail records into committed USED events for canary access keys."""

    def __init__(self, runtime: SourceContext, source: str = EVENT_SOURCE) -> None:
        self.runtime = runtime
        self.source = source

    async def events_for(self, records: Sequence[Mapping[str, Any]], origin: str) -> list[DetectionEvent]:
        keyed: list[tuple[str, Mapping[str, Any]]] = []
        for rec in records:
            ident = rec.get("userIdentity")
            key_id = ident.get("accessKeyId") if isinstance(ident, Mapping) else None
            if isinstance(key_id, str) and 16 <= len(key_id) <= 128:
                keyed.append((key_id, rec))
        if not keyed:
            return []
        found = await recognise(self.runtime.registry, sorted({(ValueKind.AWS_KEY_ID, k) for k, _ in keyed}))
        events = []
        for key_id, rec in keyed:
            match = found.get((ValueKind.AWS_KEY_ID, key_id))
            if match is None:
                continue
            ident = rec["userIdentity"]
            ip, service = _source_address(rec.get("sourceIPAddress"))
            eid = _text(rec.get("eventID")) or event_key(json.dumps(rec, sort_keys=True, default=str))
            events.append(DetectionEvent(
                kind=EventKind.USED, source=self.source, key=event_key("cloudtrail", eid), group=f"cloudtrail:{match.canary_id}:{ip or service}",
                canary_id=match.canary_id, observed_at=parse_event_time(rec.get("eventTime")), severity=Severity.CRITICAL,
                # never the key id: it is the canary's own value (the evidence names the canary by uid)
                actor={"user": _text(ident.get("userName")) or _text(ident.get("arn")) or "unknown", "arn": _text(ident.get("arn")),
                       "account_id": _text(ident.get("accountId")), "identity_type": _text(ident.get("type"))},
                origin={k: v for k, v in {"client_addr": ip, "aws_service": service, "user_agent": _text(rec.get("userAgent")),
                                          "aws_region": _text(rec.get("awsRegion"))}.items() if v is not None or k == "client_addr"},
                evidence={k: v for k, v in {
                    "credential": "aws_key_id", "canary": match.uid, "event_name": _text(rec.get("eventName")),
                    "event_source": _text(rec.get("eventSource")), "error_code": _text(rec.get("errorCode")),
                    "error_message": _text(rec.get("errorMessage")), "event_id": _text(rec.get("eventID")),
                    "request_id": _text(rec.get("requestID")), "event_time": _text(rec.get("eventTime")),
                    "recipient_account_id": _text(rec.get("recipientAccountId")), "via": origin,
                }.items() if v is not None},
            ))
        return events

    async def process(self, records: Sequence[Mapping[str, Any]], origin: str) -> int:
        """Commit the events of ``records``; returns how many were submitted (raises if the store fails)."""
        events = await self.events_for(records, origin)
        if events:
            await self.runtime.submit_many(events)
        return len(events)


def read_log_file(path: Path) -> Any:
    """Parse one CloudTrail log file (gzip by magic number, whatever its name says)."""
    with open(path, "rb") as fh:
        head = fh.read(2)
        fh.seek(0)
        if head == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=fh) as gz:
                data = gz.read(MAX_FILE_BYTES + 1)
        else:
            data = fh.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise CloudTrailFormatError(f"larger than {MAX_FILE_BYTES} bytes")
    return json.loads(data)


class CloudTrailDirectorySource:
    def __init__(self, directory: Path, *, poll: float = 5.0, settle: float = 60.0) -> None:
        self.directory = Path(directory)
        self.name = f"cloudtrail:{self.directory}"
        self.poll = poll
        self.settle = settle
        self.runtime: SourceContext  # set by start()
        self.processor: CloudTrailProcessor | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def routes(self) -> list[web.RouteDef]:
        return []

    def attach(self, runtime: SourceContext) -> None:
        """Bind to a runtime without starting the poll loop (``scan`` can then be called directly)."""
        self.runtime = runtime
        self.processor = CloudTrailProcessor(runtime)

    async def start(self, runtime: SourceContext) -> None:
        self.attach(runtime)
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        await stop_task(self._task, self._stopping)
        self._task = None

    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                await self.scan()
                failures = 0
                delay = self.poll
            except Exception as exc:  # noqa: BLE001 - store down: files stay pending, retried
                failures += 1
                log.error("cloudtrail.scan_failed", source=self.name, error=f"{type(exc).__name__}: {exc}"[:300])
                delay = min(60.0, self.poll * 2 ** min(failures, 5))
            await wait_or_stop(self._stopping, delay)

    def _candidates(self) -> list[tuple[str, int, float]]:
        out = []
        for root, _, files in os.walk(self.directory):
            for fname in files:
                if fname.endswith((".json", ".json.gz")):
                    p = os.path.join(root, fname)
                    try:
                        st = os.stat(p)
                    except OSError:
                        continue
                    out.append((p, st.st_size, st.st_mtime))
        return sorted(out)

    async def scan(self) -> int:
        """Process every new file once; returns the number of files finished in this scan."""
        assert self.processor is not None
        candidates = await asyncio.to_thread(self._candidates)
        if not candidates:
            return 0
        done = await files_done(self.runtime.pool, self.name, [p for p, _, _ in candidates])
        finished = 0
        for path, size, mtime in candidates:
            if path in done or self._stopping.is_set():
                continue
            try:
                doc = await asyncio.to_thread(read_log_file, Path(path))
                records = records_from_document(doc)
            except (OSError, EOFError, zlib.error, ValueError, RecursionError) as exc:  # JSON (deep nesting too), gzip, format
                if time.time() - mtime < self.settle:
                    continue  # may still be being written; try again on the next scan
                await self.runtime.reject(self.name, "malformed_cloudtrail_file", f"{path}: {type(exc).__name__}: {exc}"[:400])
                await mark_file(self.runtime.pool, self.name, path, size, "rejected", 0)
                finished += 1
                continue
            await self.processor.process(records, f"file:{os.path.relpath(path, self.directory)}")
            await mark_file(self.runtime.pool, self.name, path, size, "done", len(records))
            finished += 1
        return finished



async def files_done(pool: asyncpg.Pool, source: str, paths: Sequence[str]) -> set[str]:
    """Which of ``paths`` (files, s3:// URIs) ``source`` has finished (done or rejected)."""
    if not paths:
        return set()
    rows = await pool.fetch("SELECT path FROM cloudtrail_files WHERE source = $1 AND path = ANY($2::text[])",
                            source, list(paths))
    return {r["path"] for r in rows}


async def mark_file(pool: asyncpg.Pool, source: str, path: str, size: int, status: str, records: int) -> None:
    """Record a file as finished (after its events are committed): ``done`` or ``rejected``."""
    await pool.execute(
        "INSERT INTO cloudtrail_files (source, path, size, status, records) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (source, path) DO UPDATE SET size = excluded.size, status = excluded.status,"
        " records = excluded.records, processed_at = now()",
        source, path, size, status, records,
    )


class _CloudTrailEndpoint(abc.ABC):
    """A POST route on the listener whose deliveries hold CloudTrail records (EventBridge, Firehose); the
    repr names the path only (the key is a secret)."""

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = path
        self.runtime: SourceContext  # set by start()
        self.processor: CloudTrailProcessor | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={self.path!r})"

    def routes(self) -> list[web.RouteDef]:
        return [web.post(self.path, self._handle)]

    async def start(self, runtime: SourceContext) -> None:
        self.runtime = runtime
        self.processor = CloudTrailProcessor(runtime, EVENT_SOURCE)

    async def stop(self) -> None:
        return None

    @abc.abstractmethod
    async def _handle(self, request: web.Request) -> web.Response:
        """Answer one delivery."""


class CloudTrailWebhook(_CloudTrailEndpoint):
    """EventBridge API-destination endpoint on the listener (``POST <http_path>``)."""

    def __init__(self, path: str, api_key: str, header: str = "X-Canary-Api-Key") -> None:
        super().__init__(f"cloudtrail-http:{path}", path)
        self._key = api_key.encode()
        self.header = header

    async def _handle(self, request: web.Request) -> web.Response:
        rt = self.runtime
        if not same(request.headers.get(self.header, ""), self._key):
            await rt.reject(EVENT_SOURCE, "bad_api_key", f"peer={request.remote}")
            return web.json_response({"error": "unauthorized"}, status=401)
        timeout = rt.config.listener.body_timeout
        try:
            async with asyncio.timeout(timeout):
                raw = await request.read()
        except web.RequestPayloadError as exc:  # a body not in its Content-Encoding (was a 500)
            await rt.reject(EVENT_SOURCE, "malformed_eventbridge_event", f"unreadable body: {str(exc).strip()[:200]}")
            return web.json_response({"error": "malformed body: cannot be decoded"}, status=400)
        except TimeoutError:  # trickled, or never decodable: aiohttp would wait until the client hangs up
            await rt.reject(EVENT_SOURCE, "body_timeout", f"body not received within {timeout:g}s")
            return web.json_response({"error": f"body not received within {timeout:g}s"}, status=408)
        try:
            records = records_from_document(json.loads(raw))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: JSON nested too deep
            await rt.reject(EVENT_SOURCE, "malformed_eventbridge_event", f"{type(exc).__name__}: {exc} | {raw[:300]!r}")
            return web.json_response({"error": f"malformed body: {exc}"[:200]}, status=400)
        assert self.processor is not None
        try:
            n = await self.processor.process(records, "eventbridge")
        except Exception as exc:  # noqa: BLE001 - not committed: tell EventBridge to retry
            log.error("cloudtrail.commit_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            return web.json_response({"error": "temporarily unavailable"}, status=503, headers={"Retry-After": "5"})
        rt.metrics.requests.labels(component="cloudtrail", code="200").inc()
        return web.json_response({"records": len(records), "events": n})


class CloudTrailFirehose(_CloudTrailEndpoint):
    """The HTTP endpoint of a Firehose stream fed by a CloudWatch Logs subscription on a trail's log group
    (``POST <firehose_path>``)."""

    def __init__(self, path: str, access_key: Secret, *, max_body: int = firehose.MAX_BODY) -> None:
        super().__init__(f"cloudtrail-firehose:{path}", path)
        self._key = access_key.reveal().encode("utf-8", "surrogatepass")
        self.max_body = max_body

    def _answer(self, request_id: str, status: int, error: str | None = None, headers: Mapping[str, str] | None = None) -> web.Response:
        self.runtime.metrics.requests.labels(component="cloudtrail-firehose", code=str(status)).inc()
        return firehose.answer(request_id, status, error, headers)

    async def _handle(self, request: web.Request) -> web.Response:
        rt = self.runtime
        request_id = firehose.header_request_id(request)
        if not firehose.authorized(request, self._key):
            await rt.reject(self.name, "bad_access_key", f"peer={request.remote}")
            return self._answer(request_id, 401, "invalid or missing X-Amz-Firehose-Access-Key")
        try:
            raw = await firehose.read_body(request, self.max_body, rt.config.listener.body_timeout)
        except firehose.BodyError as exc:
            await rt.reject(self.name, exc.reason, exc.detail)
            return self._answer(request_id, exc.status, exc.detail)
        items, problem, body_id = firehose.request_records(raw)
        request_id = request_id or body_id
        if items is None:
            await rt.reject(self.name, "bad_request", f"{problem} | {raw[:200]!r}")
            return self._answer(request_id, 400, f"not a Firehose delivery request: {problem}")
        records, groups = await self._records(items)
        assert self.processor is not None
        try:
            await self.processor.process(records, "firehose:" + ",".join(sorted(groups))[:200])
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, RuntimeError) as exc:
            if refused(exc):  # the store refused what these records made: no retry gets past it
                await rt.reject(self.name, "refused_by_store", f"{type(exc).__name__}: {str(exc)[:200]}")
                return self._answer(request_id, 200)
            log.error("cloudtrail.firehose_store_failed", request_id=request_id, error=type(exc).__name__)
            return self._answer(request_id, 503, "control store unavailable; retry", {"Retry-After": "5"})
        return self._answer(request_id, 200)

    async def _records(self, items: Sequence[object]) -> tuple[list[Mapping[str, Any]], set[str]]:
        """The CloudTrail records of a request's Firehose records (each a subscription message whose log
        events are records), and their log groups; anything else rejected with its reason."""
        out: list[Mapping[str, Any]] = []
        groups: set[str] = set()
        for index, item in enumerate(items):
            reason, message = firehose.decode_record(item)
            if reason:
                await self.runtime.reject(self.name, reason, f"record {index}: {str(message)[:300]}")
                continue
            parsed = firehose.subscription_message(message)
            if parsed == "control":
                continue
            if isinstance(parsed, str):
                await self.runtime.reject(self.name, "bad_message", f"record {index}: {parsed[:300]}")
                continue
            group, _, events = parsed
            groups.add(group[:100])
            for event in events:
                try:
                    record = json.loads(event.message)
                except (ValueError, RecursionError) as exc:
                    await self.runtime.reject(self.name, "not_a_cloudtrail_record", f"{type(exc).__name__}: {event.message[:200]}")
                    continue
                if not isinstance(record, Mapping) or not isinstance(record.get("eventVersion"), str):
                    await self.runtime.reject(self.name, "not_a_cloudtrail_record", event.message[:200])
                    continue
                out.append(record)
        return out, groups


def _sources(config: Config) -> list[Component]:
    ct = config.credentials.cloudtrail
    out: list[Component] = []
    if ct.directory is not None:
        out.append(CloudTrailDirectorySource(ct.directory, poll=ct.poll))
    if ct.http_path and ct.api_key is not None:
        out.append(CloudTrailWebhook(ct.http_path, ct.api_key.reveal(), ct.api_key_header))
    if ct.firehose_access_key is not None and ct.firehose_access_key.reveal():
        out.append(CloudTrailFirehose(ct.firehose_path, ct.firehose_access_key))
    return out


SOURCE = SourceType("cloudtrail", _sources)
