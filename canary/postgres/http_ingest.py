"""HTTP ingest for log shippers (Vector ``http`` sink with NDJSON framing, Fluent Bit ``http`` output
with ``json_lines``, rsyslog ``omhttp``): ``POST /ingest/jsonlog?node=<node>`` with
``Authorization: Bearer <coverage.ingest_token>`` and a body of newline-delimited PostgreSQL jsonlog
records (``Content-Encoding: gzip`` accepted).

``POST /ingest/pglog?node=<node>[&format=jsonlog|stderr|csvlog]`` takes the server's log lines as it
writes them in any format canary reads (:mod:`canary.postgres.formats`), by default the node's
configured ``log_format`` (stderr lines are parsed by the node's ``log_line_prefix``; a shipper cannot
choose another). An entry spanning lines (stderr's DETAIL / STATEMENT lines, csvlog's quoted
newlines) must arrive whole in one request: each request's decoder is flushed at its end, and a csvlog
record cut off there is rejected. A line that belongs to no entry is rejected and quarantined like a
line that is not JSON.

The node must be known (a datastore's node name or ``[[coverage.nodes]]``); its datastore and name go
into every event. The answer comes only after the events are committed: 200 with counts
``{"node", "lines", "events", "quarantined"}``, so a shipper retries on anything else (401 bad token,
400 unknown node or nothing usable in the body, 408 body not received within ``listener.body_timeout``
(the complete lines that did arrive are committed), 413 too large, 503 store down).

Bad input is never a 5xx: a shipper retries a 5xx forever, and one poisoned line would block the
node's log (and hide the reads shipped with it). A line that is not JSON is rejected; a record
PostgreSQL could not have written, or one that fails for its content (a value the store refuses, a
value that cannot be hashed), is quarantined: rejected with its reason and counted in
``quarantined``, while the rest of the batch commits. 503 means the control store itself is
unavailable (connection refused or lost, pool closed, timeout, shutting down), never a record.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from canary.pipeline import refused
from canary.plugins import SourceType
from canary.postgres.formats import LogFormat, RecordDecoder, completed, record_decoder
from canary.postgres.lines import LineSplitter, LongLine
from canary.postgres.processor import PgLogProcessor
from canary.postgres.record import INT_RANGES, RecordContext, RecordHandler
from canary.proxies import TrustedProxies
from canary.secret import Secret
from canary.typing import SourceContext

log = structlog.get_logger("canary.sources.http_ingest")

PATH = "/ingest/jsonlog"
#: Any format: ``?format=`` or the node's ``log_format``.
PGLOG_PATH = "/ingest/pglog"
BATCH_LINES = 2000
READ_CHUNK = 256 * 1024
T = TypeVar("T")


class HttpIngest:
    """Component ``http-ingest``: the authenticated NDJSON endpoint."""

    name = "http-ingest"

    def __init__(self, token: Secret, nodes: Mapping[str, str], *, max_body: int = 16 * 1024 * 1024,
                 handlers: Sequence[RecordHandler] | None = None,
                 formats: Mapping[str, tuple[str, str | None]] | None = None) -> None:
        if not token:
            raise ValueError("the HTTP ingest endpoint needs a non-empty bearer token")
        self._token = token
        self.nodes = dict(nodes)
        #: node -> (its log_format, its log_line_prefix): what /ingest/pglog reads by default
        self.formats = {node: (LogFormat(f), prefix) for node, (f, prefix) in (formats or {}).items()}
        for fmt, prefix in self.formats.values():
            record_decoder(fmt, prefix)  # a prefix canary cannot parse by fails here, at start
        self.max_body = max_body
        self.handlers = handlers
        self.runtime: SourceContext  # set by start()
        self._processors: dict[str, PgLogProcessor] = {}
        self._proxies = TrustedProxies()

    def __repr__(self) -> str:
        return f"HttpIngest(nodes={sorted(self.nodes)!r})"

    @classmethod
    def from_config(cls, config: Any) -> HttpIngest:
        cov = config.coverage
        nodes = {ds.node_name: ds.name for ds in config.datastores}
        nodes.update({n.name: n.datastore for n in cov.nodes})
        formats = {ds.node_name: (ds.log_format, ds.log_line_prefix) for ds in config.datastores}
        formats.update({n.name: (n.log_format, n.log_line_prefix) for n in cov.nodes})
        return cls(cov.ingest_token, nodes, max_body=cov.ingest_max_body, formats=formats)

    def routes(self) -> list[web.RouteDef]:
        return [web.post(PATH, self.handle), web.post(PGLOG_PATH, self.handle)]

    async def start(self, runtime: SourceContext) -> None:
        self.runtime = runtime
        self._proxies = TrustedProxies.from_config(runtime.config.listener)

    async def stop(self) -> None:
        return None

    def _count(self, code: int) -> None:
        self.runtime.metrics.requests.labels(component=self.name, code=str(code)).inc()

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        return hmac.compare_digest(presented.strip().encode(), self._token.reveal().encode())

    async def handle(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            await self.runtime.reject(self.name, "bad_token", self._proxies.client(request))
            self._count(401)
            return web.json_response({"error": "invalid or missing bearer token"}, status=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="canary-ingest"'})
        node = request.query.get("node", "")
        if node not in self.nodes:
            await self.runtime.reject(self.name, "unknown_node", node[:100])
            self._count(400)
            return web.json_response({"error": f"unknown node {node[:100]!r}; configure it in [[coverage.nodes]]"}, status=400)
        fmt, prefix = self.formats.get(node, (LogFormat.JSONLOG, None))
        if request.path == PGLOG_PATH and "format" in request.query:
            try:
                fmt = LogFormat(request.query["format"])
            except ValueError:
                await self.runtime.reject(self.name, "unknown_format", request.query["format"][:100])
                self._count(400)
                return web.json_response({"error": f"unknown format; expected one of {', '.join(LogFormat)}"}, status=400)
        elif request.path != PGLOG_PATH:
            fmt = LogFormat.JSONLOG
        decoder = None if fmt is LogFormat.JSONLOG else record_decoder(fmt, prefix)
        if request.content_length is not None and request.content_length > self.max_body:
            self._count(413)
            return web.json_response({"error": f"body larger than {self.max_body} bytes"}, status=413)
        processor = self._processors.get(node)
        if processor is None:
            processor = PgLogProcessor(self.runtime, RecordContext(self.nodes[node], node, f"http:{node}"), self.handlers)
            self._processors[node] = processor
        source = f"http:{node}"
        splitter = LineSplitter("body")
        lines: list[bytes | LongLine] = []
        batch = Batch()
        total = 0
        timeout = self.runtime.config.listener.body_timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(request.content.read(READ_CHUNK), max(0.0, deadline - loop.time()))
                except (ValueError, HttpProcessingError, web.RequestPayloadError) as exc:  # a line over aiohttp's limit, bad gzip
                    await self.runtime.reject(source, "bad_body", f"{type(exc).__name__}: {str(exc)[:200]}")
                    batch.unreadable = True
                    batch.quarantined += 1  # the rest of the body, whatever it held
                    break
                except TimeoutError:  # trickled, or never decodable: the lines complete so far are kept
                    await self.runtime.reject(source, "body_timeout", f"body not received within {timeout:g}s ({total} bytes)")
                    batch.timed_out = True
                    break
                if not chunk:
                    lines += splitter.finish()
                    break
                total += len(chunk)
                if total > self.max_body:
                    self._count(413)
                    return web.json_response({"error": f"body larger than {self.max_body} bytes",
                                              "committed_events": batch.events}, status=413)
                for line in splitter.feed(chunk):
                    if isinstance(line, LongLine):  # counted; its detection fields are still read
                        await self.runtime.reject(source, "line_too_long", f"{line.length} bytes | {line.head[:200]!r}")
                    lines.append(line)
                if len(lines) >= BATCH_LINES:
                    await self._process(processor, source, lines, batch, decoder)
                    lines = []
            if lines or decoder is not None:  # an entry held when the body was cut off is not complete: not flushed
                await self._process(processor, source, lines, batch, decoder, final=not (batch.timed_out or batch.unreadable))
        except UNAVAILABLE as exc:
            if not unavailable(exc):  # a per-record error _process did not isolate: never the store's fault
                raise
            log.error("http_ingest.store_failed", node=node, error=type(exc).__name__)
            self._count(503)
            return web.json_response({"error": "control store unavailable; retry", "committed_events": batch.events},
                                     status=503, headers={"Retry-After": "5"})
        body = {"node": node, "lines": batch.lines, "events": batch.events, "quarantined": batch.quarantined}
        if batch.timed_out:  # what arrived is committed; the shipper sends the batch again (duplicates are no events)
            self._count(408)
            return web.json_response({**body, "error": f"body not received within {timeout:g}s"}, status=408)
        if batch.usable == 0 and (batch.lines or batch.unreadable):
            self._count(400)  # nothing a retry could make usable: the shipper should drop it, not resend it
            return web.json_response({**body, "error": f"body is not readable {'NDJSON jsonlog' if decoder is None else fmt}"},
                                     status=400)
        self._count(200)
        return web.json_response(body)

    async def _process(self, processor: PgLogProcessor, source: str, lines: Sequence[bytes | LongLine], batch: Batch,
                       decoder: RecordDecoder | None = None, *, final: bool = False) -> None:
        """Commit what ``lines`` hold. Lines that are not JSON go to the processor as such (rejected,
        one HEALTH event); records PostgreSQL could not have written (text no database can store) are
        quarantined before any work; the rest are processed together, and if a record still fails for
        its content the batch is halved until it stands alone and is quarantined. Raises only when the
        control store is unavailable. With a ``decoder`` (stderr, csvlog) lines become records through
        it (``final``: the request's last batch, whose held entry is complete)."""
        if decoder is not None:
            return await self._process_text(processor, source, lines, batch, decoder, final)
        records: list[Mapping[str, Any]] = []
        unparsable: list[bytes | LongLine] = []
        for line in lines:
            if isinstance(line, bytes) and not line.strip():
                continue
            batch.lines += 1
            try:
                record = processor.parse_line(line)
            except (ValueError, UnicodeDecodeError, RecursionError, TypeError):
                unparsable.append(line)
                continue
            why = unstorable(line, record)
            if why is not None:
                await self.runtime.reject(source, why[0], f"{why[1]} | {_record_sample(record)}")
                batch.quarantined += 1
                continue
            records.append(record)
        batch.usable += len(records)
        if unparsable:
            batch.quarantined += len(unparsable)
            batch.events += await self._isolated(source, unparsable, processor.process_lines, _line_sample, batch,
                                               counted=False)
        if records:
            batch.events += await self._isolated(source, records, processor.process_records, _record_sample, batch,
                                               counted=True)

    async def _process_text(self, processor: PgLogProcessor, source: str, lines: Sequence[bytes | LongLine], batch: Batch,
                            decoder: RecordDecoder, final: bool) -> None:
        """:meth:`_process` for a format whose entries span lines: a line that belongs to no entry is
        rejected and quarantined (one HEALTH event per batch), a record with a number PostgreSQL
        cannot write is quarantined, the rest are committed (isolated as in :meth:`_process`)."""
        found: list[Mapping[str, Any]] = []
        samples: list[str] = []
        for line in lines:
            if not (isinstance(line, bytes) and not line.strip()):
                batch.lines += 1
            try:
                found += decoder.feed(line)
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                found += completed(exc)
                samples.append(f"{type(exc).__name__}: {exc} | {_line_sample(line)}")
        if final:
            try:
                found += decoder.flush()
            except ValueError as exc:
                found += completed(exc)
                samples.append(f"{type(exc).__name__}: {exc}")
        records: list[Mapping[str, Any]] = []
        for record in found:
            why = unstorable(b"", record)
            if why is not None:
                await self.runtime.reject(source, why[0], f"{why[1]} | {_record_sample(record)}")
                batch.quarantined += 1
            else:
                records.append(record)
        batch.usable += len(records)
        if samples:
            batch.quarantined += len(samples)
            for sample in samples:
                await self.runtime.reject(source, "malformed_log_line", sample[:400])
            health = processor._unparsable_event(samples)
            batch.events += await self._isolated(source, [health], lambda items: processor.process_records([], items),
                                                 lambda e: e.group, batch, counted=False)
        if records:
            batch.events += await self._isolated(source, records, processor.process_records, _record_sample, batch,
                                                 counted=True)

    async def _isolated(self, source: str, items: Sequence[T], run: Callable[[Sequence[T]], Awaitable[int]],
                        sample: Callable[[T], str], batch: Batch, *, counted: bool) -> int:
        """``run(items)``; on a failure that is not the store's (see :func:`unavailable`), each half
        again, until the item that fails alone is quarantined (rejected with its error). Returns the
        events submitted. Rejects of the failed attempts' other items may be counted again."""
        try:
            return await run(items)
        except Exception as exc:  # noqa: BLE001 - what is not the store's fault is the input's: isolate it
            if unavailable(exc):
                raise
            failure: Exception = exc
        if len(items) == 1:
            why = f"{type(failure).__name__}: {str(failure)[:200]}".encode("utf-8", "backslashreplace").decode()
            await self.runtime.reject(source, "quarantined_record", f"{why} | {sample(items[0])}")
            if counted:
                batch.quarantined += 1
            log.warning("http_ingest.record_quarantined", source=source, error=type(failure).__name__)
            return 0
        mid = len(items) // 2
        return (await self._isolated(source, items[:mid], run, sample, batch, counted=counted)
                + await self._isolated(source, items[mid:], run, sample, batch, counted=counted))


@dataclass
class Batch:
    """What one request brought: lines (not blank), records usable, events submitted, lines quarantined."""

    lines: int = 0
    usable: int = 0
    events: int = 0
    quarantined: int = 0
    unreadable: bool = False  # the body stopped being readable (bad gzip, a line over aiohttp's limit)
    timed_out: bool = False  # the body did not arrive within listener.body_timeout


#: Exceptions that may mean the control store (or the listener) cannot take anything now.
UNAVAILABLE = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, RuntimeError)


def unavailable(exc: BaseException) -> bool:
    """Whether a failure is the control store's (connection refused or lost, pool closed, timeout, the
    pipeline stopping: answer 503, the shipper retries) rather than the input's: a data error,
    integrity violation or value the driver cannot encode (:func:`canary.pipeline.refused`), or a bug
    tripped by one record, which no retry would ever get past."""
    if refused(exc):
        return False
    return isinstance(exc, OSError | asyncpg.PostgresError | asyncpg.InterfaceError) or type(exc) is RuntimeError



def unstorable(line: bytes | LongLine, record: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, detail) when a record can be no PostgreSQL log line, for a value no database column
    could hold: a lone UTF-16 surrogate (only a ``\\u`` escape can make one; PostgreSQL writes text as
    UTF-8), or an integer outside the range PostgreSQL writes that field from. Such a value fails
    wherever it is hashed or stored, so it is set aside before it can fail a batch."""
    for key, value in record.items():
        if key in INT_RANGES and isinstance(value, int) and not isinstance(value, bool):
            low, high = INT_RANGES[key]
            if not low <= value <= high:
                return "quarantined_number", f"{key[:40]!r} out of range"
    if isinstance(line, bytes) and b"\\u" not in line:
        return None
    for key, value in record.items():
        for text in (key, value):
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    return "quarantined_text", f"lone surrogate in {key.encode('utf-8', 'backslashreplace').decode()[:40]!r}"
    return None


def _record_sample(record: Mapping[str, Any]) -> str:
    try:
        return json.dumps(record, default=str)[:300]  # ASCII: surrogates and NUL stay escapes
    except (ValueError, TypeError, RecursionError):
        return repr(sorted(map(str, record)))[:300]


def _line_sample(line: bytes | LongLine) -> str:
    head = line.head if isinstance(line, LongLine) else line
    return head[:300].decode("utf-8", "replace")


SOURCE = SourceType("http_ingest", lambda config: [HttpIngest.from_config(config)] if config.coverage.ingest_token is not None else [])
