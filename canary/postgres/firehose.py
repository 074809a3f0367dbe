"""Amazon RDS / Aurora PostgreSQL logs delivered by Amazon Data Firehose: the HTTP endpoint
destination of a Firehose stream fed by a CloudWatch Logs subscription filter on the instance's log
group (``/aws/rds/instance/<id>/postgresql``, ``/aws/rds/cluster/<id>/postgresql``).

The wire format is Firehose's, as documented in "HTTP Endpoint Delivery Request and Response
Specifications" (https://docs.aws.amazon.com/firehose/latest/dev/httpdeliveryrequestresponse.html):

- ``POST <coverage.firehose.path>`` with ``X-Amz-Firehose-Request-Id`` (kept across retries),
  ``X-Amz-Firehose-Access-Key`` (the stream's access key, copied verbatim: compared in constant time),
  ``X-Amz-Firehose-Common-Attributes`` (metadata; not needed here, ignored), ``Content-Type:
  application/json``, ``Content-Encoding: gzip`` when the stream compresses, and a body
  ``{"requestId", "timestamp", "records": [{"data": <base64>}, ...]}``.
- The answer is ``application/json``, uncompressed, ``{"requestId": <echoed>, "timestamp": <ms>}``
  plus ``"errorMessage"`` on failure. Only 200 is a delivery; 413 is a permanent failure (the batch is
  dropped, not even written to the error bucket); every other status is retried with backoff until the
  stream's retry duration ends, then the batch goes to the S3 error bucket.

Each record's data is a CloudWatch Logs subscription message, gzip-compressed (CloudWatch Logs
"Subscription filters": "log events ... are Base64 encoded and compressed with the GZIP format"):
``{"messageType": "DATA_MESSAGE" | "CONTROL_MESSAGE", "owner", "logGroup", "logStream",
"subscriptionFilters", "logEvents": [{"id", "timestamp", "message"}]}``. A CONTROL_MESSAGE (sent when
the subscription is created, to check the destination) carries no log events and is skipped.

So we answer 200 only after every event of the request is committed, 503 (retried) when the control
store is down, 408 (retried) when the body is too slow, 401 for a wrong access key, 413 only past
``coverage.firehose.max_body`` (Firehose's own ceiling by default, so a genuine batch never is), 400
(retried, then kept in the error bucket) for a body that is no Firehose request at all. A bad record
inside a genuine request (not base64, not gzip, not a subscription message, a log group no
``[[coverage.firehose.streams]]`` maps) is rejected with its reason (counted, sampled) and the rest of
the request is committed and answered 200: no retry could make it better, and a retried batch would
hold back the reads shipped with it.

Each (log group, log stream) is a stream. A stderr stream's lines are staged in the control store
before the 200 (:mod:`canary.postgres.staging`): an entry whose DETAIL / HINT lines come in the next
request, maybe to another listener sharing the store, is put back together there, its lines ordered by
the CloudWatch event time and id. jsonlog and csvlog streams are decoded per request. Log event ids make
the records idempotent where the server's prefix gives no ``%l``: such a record's ``line_num`` is
derived from the ids of the log events that made it, so a retried batch yields the same event keys and
no duplicate events. The CloudWatch event time stands in for a record's own ``timestamp`` only when
the format has none.

The Firehose wire format itself (body reading, records, subscription messages, the answer) is
:mod:`canary.firehose`'s, shared with the CloudTrail receiver; :func:`canary.firehose.read_body` also
serves :mod:`canary.postgres.pubsub` (and, from :mod:`canary.postgres.staging`, :class:`LogTarget`,
:func:`decode_events`, :func:`commit_records`).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import structlog
from aiohttp import web

from canary.config import Config, LogStagingConfig
from canary.firehose import (
    BodyError,
    answer,
    authorized,
    decode_record,
    header_request_id,
    read_body,
    request_records,
    subscription_message,
)
from canary.plugins import SourceType
from canary.postgres.http_ingest import UNAVAILABLE, Batch, unavailable
from canary.postgres.record import RecordHandler
from canary.postgres.staging import (
    COMMIT_BATCH,
    CloudEndpoint,
    CloudEvent,
    Decoded,
    LogTarget,
    Processors,
    Staging,
    StreamDecoder,
    commit_records,
    stages,
)
from canary.secret import Secret

log = structlog.get_logger("canary.sources.firehose")

def millis_timestamp(ms: object) -> str | None:
    """A CloudWatch event time (ms since the epoch) as jsonlog writes times, or None."""
    if not isinstance(ms, int) or isinstance(ms, bool) or not 0 <= ms < 253402300800000:
        return None
    at = dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc)
    return at.strftime("%Y-%m-%d %H:%M:%S.") + f"{at.microsecond // 1000:03d} UTC"


# -- Firehose ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StreamRule:
    """A ``[[coverage.firehose.streams]]`` entry: a log group name or pattern and its target."""

    log_group: str
    target: LogTarget

    def matches(self, group: str) -> bool:
        return group == self.log_group or (any(c in self.log_group for c in "*?[") and fnmatch.fnmatchcase(group, self.log_group))


def firehose_staging(settings: LogStagingConfig) -> LogStagingConfig:
    """Staging for Firehose streams: ``quiet`` is ``firehose_quiet``, longer than Firehose's buffering
    interval, so an entry cut between two deliveries waits for its rest instead of being read half."""
    return settings.model_copy(update={"quiet": settings.firehose_quiet})


class FirehoseReceiver(CloudEndpoint):
    """Component ``firehose``: the HTTP endpoint destination of Firehose streams."""

    name = "firehose"

    def __init__(self, access_key: Secret, rules: Sequence[StreamRule], *, path: str = "/ingest/firehose",
                 max_body: int = 64 * 1024 * 1024, handlers: Sequence[RecordHandler] | None = None,
                 staging: LogStagingConfig | None = None) -> None:
        if not access_key or not access_key.reveal():
            raise ValueError("the Firehose endpoint needs a non-empty access key")
        self._key = access_key.reveal().encode("utf-8", "surrogatepass")
        self.rules = tuple(rules)
        self.path = path
        self.max_body = max_body
        self.processors = Processors("firehose", handlers)
        self.staging = Staging(self.name, staging or firehose_staging(LogStagingConfig()), self.processors, self._staged_target)

    def __repr__(self) -> str:
        return f"FirehoseReceiver(path={self.path!r}, log_groups={[r.log_group for r in self.rules]!r})"

    @classmethod
    def from_config(cls, config: Config) -> FirehoseReceiver:
        fh = config.coverage.firehose
        assert fh.access_key is not None
        rules = [StreamRule(s.log_group, LogTarget.of(config, s, f"coverage.firehose.streams[{i}]")) for i, s in enumerate(fh.streams)]
        return cls(fh.access_key, rules, path=fh.path, max_body=fh.max_body, staging=firehose_staging(config.coverage.log_staging))

    def target(self, group: str) -> LogTarget | None:
        return next((r.target for r in self.rules if r.matches(group)), None)

    def _staged_target(self, stream: str) -> LogTarget | None:
        """The target of a staging stream key (:func:`stream_key`), as configured now."""
        try:
            group = json.loads(stream)[0]
        except (ValueError, IndexError, KeyError, TypeError):
            return None
        return self.target(group) if isinstance(group, str) else None

    def _answer(self, request_id: str, status: int, error: str | None = None, headers: Mapping[str, str] | None = None) -> web.Response:
        self.runtime.metrics.requests.labels(component=self.name, code=str(status)).inc()
        return answer(request_id, status, error, headers)

    async def handle(self, request: web.Request) -> web.Response:
        request_id = header_request_id(request)
        if not authorized(request, self._key):
            await self.runtime.reject(self.name, "bad_access_key", self._proxies.client(request))
            return self._answer(request_id, 401, "invalid or missing X-Amz-Firehose-Access-Key")
        try:
            raw = await read_body(request, self.max_body, self.runtime.config.listener.body_timeout)
        except BodyError as exc:
            await self.runtime.reject(self.name, exc.reason, exc.detail)
            if exc.status == 413:  # permanent for Firehose: the batch is gone, so say so loudly
                log.warning("firehose.batch_too_large", request_id=request_id, limit=self.max_body)
            return self._answer(request_id, exc.status, exc.detail)
        records, problem, body_id = request_records(raw)
        request_id = request_id or body_id  # the header and the body carry the same id; echo whichever came
        if records is None:
            await self.runtime.reject(self.name, "bad_request", f"{problem} | {raw[:200]!r}")
            return self._answer(request_id, 400, f"not a Firehose delivery request: {problem}")
        batch = Batch()
        try:
            await self._process(records, batch)
        except UNAVAILABLE as exc:
            if not unavailable(exc):  # a per-record error the isolation did not catch: never the store's fault
                raise
            log.error("firehose.store_failed", request_id=request_id, error=type(exc).__name__)
            return self._answer(request_id, 503, "control store unavailable; retry", {"Retry-After": "5"})
        return self._answer(request_id, 200)

    async def _process(self, records: Sequence[object], batch: Batch) -> None:
        """Decode every record's subscription message; stage a stderr stream's events (its complete
        entries processed), feed another stream's to its decoder and commit the records as they
        complete (each target's in batches of :data:`COMMIT_BATCH`)."""
        streams: dict[tuple[LogTarget, str], StreamDecoder] = {}
        staged: dict[tuple[LogTarget, str], list[CloudEvent]] = {}
        ready: dict[LogTarget, Decoded] = {}
        for index, item in enumerate(records):
            message = await self._message(index, item, batch)
            if message is None:
                continue
            group, stream_name, events = message
            target = self.target(group)
            if target is None:
                await self.runtime.reject(self.name, "unknown_log_group", group[:200])
                batch.quarantined += 1
                continue
            if stages(target):
                staged.setdefault((target, stream_key(group, stream_name)), []).extend(events)
                continue
            decoder = streams.get((target, stream_name))
            if decoder is None:
                decoder = streams[(target, stream_name)] = StreamDecoder(target)
            out = ready.setdefault(target, Decoded())
            for event in events:
                decoder.feed(event, out)
            if len(out.records) + len(out.malformed) >= COMMIT_BATCH:
                await self._commit(target, ready.pop(target), batch)
        for (target, _), decoder in streams.items():
            decoder.flush(ready.setdefault(target, Decoded()))
        for target, out in ready.items():
            await self._commit(target, out, batch)
        for (target, key), events in staged.items():
            batch.lines += len(events)
            await self.staging.receive(key, target, events, batch)

    async def _commit(self, target: LogTarget, decoded: Decoded, batch: Batch) -> None:
        if decoded.records or decoded.malformed:
            await commit_records(self.runtime, self.processors.get(self.runtime, target), self.processors.source(target), decoded, batch)

    async def _message(self, index: int, item: object, batch: Batch) -> tuple[str, str, list[CloudEvent]] | None:
        """(log group, log stream, events) of one Firehose record; None for a CONTROL_MESSAGE or a
        record that is none (rejected with its reason, counted as quarantined)."""
        reason, detail = decode_record(item)
        if not reason:
            parsed = _subscription_message(detail)
            if not isinstance(parsed, str):
                return parsed
            if parsed == "control":
                return None
            reason, detail = "bad_message", parsed
        await self.runtime.reject(self.name, reason, f"record {index}: {str(detail)[:300]}")
        batch.quarantined += 1
        return None


def _subscription_message(message: object) -> tuple[str, str, list[CloudEvent]] | str:
    """(log group, log stream, events as staging's CloudEvents) of a DATA_MESSAGE; "control" for a
    CONTROL_MESSAGE; else why the message is none."""
    parsed = subscription_message(message)
    if isinstance(parsed, str):
        return parsed
    group, stream, events = parsed
    return group, stream, [
        CloudEvent(e.id, e.message, millis_timestamp(e.timestamp or None),
                   f"{e.timestamp:015d}|{e.id.rjust(64, '0') if e.id.isdigit() else e.id}") for e in events]


def stream_key(group: str, stream: str) -> str:
    """The staging stream of a CloudWatch log stream: its log group and name."""
    return json.dumps([group, stream], ensure_ascii=False)


SOURCE = SourceType("firehose", lambda config: [FirehoseReceiver.from_config(config)]
                    if config.coverage.firehose.access_key is not None else [])
