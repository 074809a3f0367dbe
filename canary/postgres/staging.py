"""Cloud log deliveries, shared by :mod:`canary.postgres.firehose` (Amazon RDS / Aurora through
CloudWatch Logs and Firehose) and :mod:`canary.postgres.pubsub` (Cloud SQL through Cloud Logging and
Pub/Sub push): decoding a stream's log events into records, committing them, and putting back together
the stderr entries the clouds deliver line by line.

PostgreSQL's stderr format writes one entry as several lines with the same prefix (``LOG:`` then
``DETAIL:``, ``HINT:``, ``QUERY:``, ``CONTEXT:``, ``LOCATION:``, ``STATEMENT:``; elog.c writes the prefix,
and counts ``%l`` one up, for every line). canary's read line needs its DETAIL (the JSON) and HINT (the
MAC) with it. Cloud SQL's Cloud Logging makes each line its own LogEntry, which Pub/Sub pushes one per
request, in no guaranteed order, sometimes twice; RDS publishes each line as a CloudWatch log event, and
a Firehose delivery can end inside an entry, the rest coming in the next request, maybe to another
listener. So a stderr line that may belong to an unfinished entry is *staged* in the control store
(:mod:`canary.store.log_staging`) in the request that brings it, before the 2xx: an acknowledged line is
never only in memory. Lines are grouped by backend where the prefix has ``%p`` and ``%l`` (ordered by
``%l``), else by stream (ordered by the delivery's time and event id; the logging collector writes an
entry's lines together, so in stream order they follow each other).

An entry is complete when the line after it starts a new entry (for its backend: the line numbered one
more; in stream order: the next line), when it holds a STATEMENT line (the last a server writes), or
when no line came for its group for ``quiet`` (``[coverage.log_staging]``); nothing waits longer than
``max_age``. Complete entries are processed by the request that completed them; every listener runs a
flusher for quiet and old groups. Whoever processes a group holds its row, commits the events, then
marks the lines done: a crash in between replays the same lines into the same event keys (records
without ``%l`` are numbered from the ids of their own lines, never from what else was processed with
them), so no event is doubled. A redelivered line (same event id, or same pid, ``%l`` and text) is a
no-op. A line right after a broken one (what a client's name with a newline makes) is processed in the
same pass as it, so the decoder still holds the entry after it suspect. A flood of partial lines is
bounded per stream and in all (the oldest dropped, counted as ``staging_overflow`` and raised as one
HEALTH event per stream and ten minutes). Lines a server cannot write (NUL, a lone surrogate) are never
staged: they are decoded at once and refused as before.

jsonlog and csvlog streams carry whole entries per event and are decoded directly.
"""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from canary.config import CloudLogTarget, Config, LogStagingConfig
from canary.errors import ConfigError
from canary.events import DetectionEvent, EventKind, Severity, event_key, storable_text
from canary.postgres.formats import LogFormat, completed, record_decoder
from canary.postgres.http_ingest import UNAVAILABLE, Batch, unavailable, unstorable
from canary.postgres.processor import PgLogProcessor
from canary.postgres.record import RecordContext, RecordHandler
from canary.postgres.stderr import FIELD_LINES, MalformedLine, Prefix, compile_prefix
from canary.proxies import TrustedProxies
from canary.store import log_staging
from canary.store.log_staging import NewLine, StagedLine
from canary.tasks import stop_task
from canary.typing import SourceContext

log = structlog.get_logger("canary.sources.staging")

#: Records committed per call: bounds memory and transaction size for a 10,000-record request.
COMMIT_BATCH = 2000
#: ``unstorable`` reads only lines holding an escape; decoded records are always checked in full.
_CHECK_ALL = b"\\u"
#: Longest text staged for one line and its continuations (the decoder keeps 64 KiB of a field).
MAX_STAGED = 80 * 1024
#: Groups processed per flusher round, and how often tombstones are pruned (rounds).
FLUSH_BATCH = 200
PRUNE_EVERY = 20
#: Overflow HEALTH events: one per stream and window.
OVERFLOW_WINDOW = 600
_STARTS = frozenset({"primary", "broken"})


@dataclass(frozen=True, slots=True)
class LogTarget:
    """Where one cloud log stream's lines come from, resolved from the configuration."""

    datastore: str
    node: str
    format: str
    prefix: str | None

    @classmethod
    def of(cls, config: Config, target: CloudLogTarget, where: str) -> LogTarget:
        """The target, its node defaulted to the datastore's; a format no decoder reads is a
        :class:`ConfigError` at start, not a stream of rejects later."""
        node = target.node or config.datastore(target.datastore).node_name
        try:
            record_decoder(target.format, target.log_line_prefix or None)
        except ValueError as exc:
            raise ConfigError(f"{where}.format", str(exc)) from None
        return cls(target.datastore, node, target.format, target.log_line_prefix or None)


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """One log event as the cloud delivered it: its id (CloudWatch event id, Cloud Logging insertId),
    its text, the delivery's time for it (a jsonlog-style timestamp, or None), and ``order``: a text
    that sorts the stream's events as the server wrote them (time, then id)."""

    id: str
    message: str
    timestamp: str | None = None
    order: str = ""


@dataclass
class Decoded:
    records: list[dict[str, Any]] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)  # samples of lines that belong to no record


class EventIds:
    """Ids for the records of one decoder stream, from the log events that made them.

    A decoder returns a record when its entry is complete, which for multi-line formats is when the
    next entry starts; which line began it is the decoder's business. What is certain: the lines fed
    since the previous emission (the current one included) are fed for no other emission. So a
    record's id is the hash of those lines' (event id, line index) pairs, and of its place among the
    records emitted together; the entry still held at the end is named by the last line. The same
    events in the same order (a retried delivery) give the same ids; different emissions never share
    one."""

    def __init__(self) -> None:
        self._pending: list[str] = []
        self._times: list[str | None] = []
        self._last = ""

    def line(self, event: CloudEvent, index: int) -> None:
        self._last = f"{event.id}#{index}"
        self._pending.append(self._last)
        self._times.append(event.timestamp)

    def emit(self, records: Sequence[Mapping[str, Any]], out: list[dict[str, Any]], *, final: bool = False) -> None:
        if records:
            parts = ["flush", *self._pending, self._last] if final else self._pending
            name_records(records, parts, self._times, out)
            self._pending, self._times = [], []


def name_records(records: Sequence[Mapping[str, Any]], parts: Sequence[str], times: Sequence[str | None],
                 out: list[dict[str, Any]]) -> None:
    """``records`` into ``out``, numbered (``line_num``) from ``parts`` where the prefix gave no ``%l``
    (63 bits: an int64), and timed by the first of ``times`` where the format gave no time."""
    base = hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).digest()
    fallback = next((t for t in times if t), None)
    for i, record in enumerate(records):
        r = dict(record)
        if type(r.get("line_num")) is not int:
            r["line_num"] = int.from_bytes(hashlib.sha256(base + i.to_bytes(4, "big")).digest()[:8], "big") >> 1
        if not r.get("timestamp") and fallback:
            r["timestamp"] = fallback
        out.append(r)


class StreamDecoder:
    """A decoder stream (one log stream of one target) with its :class:`EventIds`."""

    def __init__(self, target: LogTarget) -> None:
        self.target = target
        self._decoder = record_decoder(target.format, target.prefix)
        self._ids = EventIds()

    def feed(self, event: CloudEvent, out: Decoded) -> None:
        for index, line in enumerate(event.message.split("\n")):
            line = line.removesuffix("\r")
            if not line.strip():
                continue
            self._ids.line(event, index)
            try:
                records = self._decoder.feed(line)
            except Exception as exc:  # noqa: BLE001 - a line no record can hold is rejected, whatever the decoder raised
                out.malformed.append(f"{type(exc).__name__}: {str(exc)[:120]} | {line[:300]}")
                records = completed(exc)  # the entry held before the bad line is complete, not lost with it
            self._ids.emit(records, out.records)

    def flush(self, out: Decoded) -> None:
        try:
            records = self._decoder.flush()
        except Exception as exc:  # noqa: BLE001 - as in feed
            out.malformed.append(f"{type(exc).__name__}: {str(exc)[:200]} | (held entry)")
            return
        self._ids.emit(records, out.records, final=True)


def decode_events(target: LogTarget, events: Sequence[CloudEvent]) -> Decoded:
    """The records of ``events`` (one stream, in order), decoded in one stream and flushed."""
    out = Decoded()
    stream = StreamDecoder(target)
    for event in events:
        stream.feed(event, out)
    stream.flush(out)
    return out


class Processors:
    """One :class:`PgLogProcessor` per (datastore, node), made on first use: the backstop's catalog
    snapshot and the session facts of a node live in its processor."""

    def __init__(self, prefix: str, handlers: Sequence[RecordHandler] | None) -> None:
        self.prefix = prefix
        self.handlers = handlers
        self._by_node: dict[tuple[str, str], PgLogProcessor] = {}

    def source(self, target: LogTarget) -> str:
        return f"{self.prefix}:{target.node}"

    def get(self, runtime: SourceContext, target: LogTarget) -> PgLogProcessor:
        key = (target.datastore, target.node)
        processor = self._by_node.get(key)
        if processor is None:
            processor = PgLogProcessor(runtime, RecordContext(target.datastore, target.node, self.source(target)), self.handlers)
            self._by_node[key] = processor
        return processor


async def commit_records(runtime: SourceContext, processor: PgLogProcessor, source: str, decoded: Decoded, batch: Batch) -> None:
    """Commit ``decoded``: lines that belong to no record are rejected (``malformed_log_line``) and
    raise one HEALTH event (on a detection source such a line may have been a detection); records
    PostgreSQL could not have written are quarantined before any work; the rest are processed
    together, halved on a failure that is not the store's until the record that fails alone is
    quarantined. Raises only when the control store is unavailable (:func:`unavailable`)."""
    extra: list[DetectionEvent] = []
    if decoded.malformed:
        for sample in decoded.malformed:
            await runtime.reject(source, "malformed_log_line", sample)
        batch.quarantined += len(decoded.malformed)
        batch.lines += len(decoded.malformed)
        extra.append(_unparsable_event(processor.ctx, decoded.malformed))
    records: list[dict[str, Any]] = []
    for record in decoded.records:
        batch.lines += 1
        why = unstorable(_CHECK_ALL, record)
        if why is not None:
            await runtime.reject(source, why[0], f"{why[1]} | {_sample(record)}")
            batch.quarantined += 1
            continue
        records.append(record)
    batch.usable += len(records)
    if extra:
        batch.events += await _isolated(runtime, processor, source, [], batch, extra)
    for start in range(0, len(records), COMMIT_BATCH):
        batch.events += await _isolated(runtime, processor, source, records[start:start + COMMIT_BATCH], batch, ())


async def _isolated(runtime: SourceContext, processor: PgLogProcessor, source: str, records: Sequence[Mapping[str, Any]],
                    batch: Batch, extra: Sequence[DetectionEvent]) -> int:
    try:
        return await processor.process_records(records, extra)
    except Exception as exc:  # noqa: BLE001 - what is not the store's fault is the input's: isolate it
        if unavailable(exc):
            raise
        failure: Exception = exc
    if len(records) <= 1:
        why = f"{type(failure).__name__}: {str(failure)[:200]}".encode("utf-8", "backslashreplace").decode()
        await runtime.reject(source, "quarantined_record", f"{why} | {_sample(records[0]) if records else '(health event)'}")
        batch.quarantined += len(records)
        log.warning("cloudlog.record_quarantined", source=source, error=type(failure).__name__)
        return 0
    mid = len(records) // 2
    return (await _isolated(runtime, processor, source, records[:mid], batch, extra)
            + await _isolated(runtime, processor, source, records[mid:], batch, ()))


def _unparsable_event(ctx: RecordContext, samples: Sequence[str]) -> DetectionEvent:
    now = dt.datetime.now(dt.timezone.utc)
    return DetectionEvent(
        kind=EventKind.HEALTH, source=ctx.source, key=event_key("pg-unparsable", ctx.source, now.isoformat(), samples[0]),
        group=f"pg-unparsable:{ctx.source}", canary_id=None, observed_at=now, detected_at=now,
        origin={"node": ctx.node, "datastore": ctx.datastore},
        evidence={"problem": "log lines that belong to no record", "lines": len(samples), "sample": samples[0][:200]},
        severity=Severity.ERROR,
    )


def _sample(record: Mapping[str, Any]) -> str:
    try:
        return json.dumps(record, default=str)[:300]
    except (ValueError, TypeError, RecursionError):
        return repr(sorted(map(str, record)))[:300]


# -- staging ----------------------------------------------------------------------------------------
def stages(target: LogTarget) -> bool:
    """Whether ``target``'s lines are staged: stderr, whose entries span lines."""
    return target.format == LogFormat.STDERR


def by_backend(prefix: Prefix) -> bool:
    """Lines are grouped per backend, ordered by ``%l``, when the prefix writes both ``%p`` and ``%l``."""
    return {"pid", "line_num"} <= prefix.fields


def _writable(text: str) -> bool:
    """A server writes no NUL and no lone surrogate; such text is no line to stage."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def staged_lines(prefix: Prefix, events: Sequence[CloudEvent]) -> tuple[list[NewLine], list[CloudEvent]]:
    """The lines of ``events`` to stage (a prefixed line with the TAB continuation lines after it in the
    same event), and the events holding text no server writes (decoded at once, never staged)."""
    per_backend = by_backend(prefix)
    lines: list[NewLine] = []
    refused: list[CloudEvent] = []
    for event in events:
        if not _writable(event.message) or not _writable(event.id) or not _writable(event.order):
            refused.append(event)
            continue
        units: list[tuple[int, list[str]]] = []
        for index, raw in enumerate(event.message.split("\n")):
            raw = raw.removesuffix("\r")
            if not raw.strip():
                continue
            if raw.startswith("\t") and units:
                units[-1][1].append(raw)
            else:
                units.append((index, [raw]))
        for index, parts in units:
            text = "\n".join(parts)[:MAX_STAGED]
            kind, pid, num = _classify(prefix, parts[0])
            grouped = per_backend and pid is not None and num is not None
            entry = str(pid) if grouped else ""
            if grouped:
                line_id = f"l:{pid}:{num}:{_digest(text)}"
                ord_ = f"{num:020d}|{event.order}|{index:06d}"
            else:
                line_id = f"e:{event.id[:200]}#{index}" if event.id else f"t:{_digest(event.order, str(index), text)}"
                ord_ = f"{event.order}|{index:06d}"
            lines.append(NewLine(entry, storable_text(line_id, 300), storable_text(ord_, 400), kind, num, text,
                                 storable_text(event.timestamp, 64) if event.timestamp else None))
    return lines, refused


def _classify(prefix: Prefix, line: str) -> tuple[str, int | None, int | None]:
    """(kind, pid, %l) of a line: ``primary`` starts an entry, a field line's label (``DETAIL`` ...)
    continues one, ``cont`` a lone TAB continuation, ``broken`` a line no prefix reading explains."""
    if line.startswith("\t"):
        return "cont", None, None
    try:
        fields, severity, _ = prefix.parse(line)
    except MalformedLine:
        return "broken", None, None
    pid, num = fields.get("pid"), fields.get("line_num")
    pid = pid if isinstance(pid, int) and 0 <= pid < 2**31 else None
    num = num if isinstance(num, int) and 0 <= num < 2**63 else None
    return (severity if severity in FIELD_LINES else "primary"), pid, num


def split_entries(lines: Sequence[StagedLine], *, numbered: bool, final: bool, aged: dt.datetime | None = None,
                  ordered: bool = True) -> tuple[list[list[StagedLine]], list[StagedLine]]:
    """(complete entries in order, lines still waiting) of one group's waiting ``lines`` (in order).

    ``numbered``: a backend's lines by ``%l``; an entry continues only with the next number. Otherwise
    stream order, which says an entry is complete only where the delivery is ``ordered`` (a Pub/Sub
    push may bring a later line before an earlier one: there only quiet and age complete entries that
    ``%l`` does not number). ``final`` (the group is quiet): everything is processed as it stands.
    Entries whose lines all arrived before ``aged`` are processed however they stand."""
    entries: list[list[StagedLine]] = []
    for line in lines:
        gap = numbered and entries and (line.line_num is None or entries[-1][-1].line_num is None
                                        or line.line_num != entries[-1][-1].line_num + 1)
        if not entries or line.kind in _STARTS or gap:
            entries.append([line])
        else:
            entries[-1].append(line)
    if final:
        return entries, []
    done = [False] * len(entries)
    for i, entry in enumerate(entries):
        if aged is not None and all(x.received_at < aged for x in entry):
            done[i] = True
        elif not numbered and not ordered:
            done[i] = False
        elif entry[0].kind not in _STARTS:  # its first line may still come
            done[i] = False
        elif entry[0].kind == "broken" or any(x.kind == "STATEMENT" for x in entry):
            done[i] = True
        elif i + 1 < len(entries):
            after = entries[i + 1][0]
            done[i] = after.kind in _STARTS and (not numbered or after.line_num == (entry[-1].line_num or 0) + 1)
    if not numbered:  # a broken line goes with what follows it (the decoder holds that entry suspect)
        for i in range(len(entries) - 1, -1, -1):
            if done[i] and entries[i][0].kind == "broken" and (i + 1 == len(entries) or not done[i + 1]):
                done[i] = aged is not None and all(x.received_at < aged for x in entries[i])
    complete = [e for e, d in zip(entries, done) if d]
    waiting = [x for e, d in zip(entries, done) if not d for x in e]
    return complete, waiting


def decode_entries(target: LogTarget, entries: Sequence[Sequence[StagedLine]]) -> Decoded:
    """The records of staged ``entries`` (in order, one decoder: a broken line marks the entry after it
    suspect), each numbered from its own lines' ids where the prefix has no ``%l``."""
    decoder = record_decoder(target.format, target.prefix)
    out = Decoded()
    for entry in entries:
        records: list[Any] = []
        for line in entry:
            for text in line.text.split("\n"):
                try:
                    records += decoder.feed(text)
                except Exception as exc:  # noqa: BLE001 - a line no record can hold is rejected, whatever the decoder raised
                    out.malformed.append(f"{type(exc).__name__}: {str(exc)[:120]} | {text[:300]}")
                    records += completed(exc)
        try:
            records += decoder.flush()
        except Exception as exc:  # noqa: BLE001 - as above
            out.malformed.append(f"{type(exc).__name__}: {str(exc)[:200]} | (held entry)")
        name_records(records, [x.line_id for x in entry], [x.event_time for x in entry], out.records)
    return out


Resolver = Callable[[str], LogTarget | None]


class Staging:
    """Staged stderr lines of one component (``name``: firehose, pubsub): :meth:`receive` in a request,
    a flusher loop (:meth:`start`) for quiet and old groups. ``resolve`` maps a stream back to its
    target (the configuration may have changed since a line was staged); ``ordered``: whether a
    stream's lines arrive in the order written (CloudWatch, Firehose) or not (Pub/Sub)."""

    def __init__(self, name: str, settings: LogStagingConfig, processors: Processors, resolve: Resolver, *,
                 ordered: bool = True) -> None:
        self.name = name
        self.ordered = ordered
        self.settings = settings
        self.processors = processors
        self.resolve = resolve
        self.runtime: SourceContext  # set by start()
        self._prefixes: dict[str | None, Prefix] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._holding = asyncio.Semaphore(1)
        self.flushed = 0  # groups processed by the flusher (for tests and benchmarks)

    def prefix(self, target: LogTarget) -> Prefix:
        prefix = self._prefixes.get(target.prefix)
        if prefix is None:
            prefix = self._prefixes[target.prefix] = compile_prefix(target.prefix or "%m [%p] ")
        return prefix

    async def start(self, runtime: SourceContext, *, flusher: bool = True) -> None:
        self.runtime = runtime
        # a claim holds a connection while the events commit on another: never more claims than the
        # pool can serve twice over, or concurrent requests could wait for each other's connections
        self._holding = asyncio.Semaphore(max(1, runtime.config.control.pool_max // 3))
        self._stopping = asyncio.Event()
        if flusher:
            self._task = asyncio.create_task(self._run(), name=f"{self.name}.staging")

    async def stop(self) -> None:
        """Stop the flusher. Nothing is flushed: staged lines stay for any listener (this one when it
        starts again) to process."""
        await stop_task(self._task, self._stopping, grace=5.0)
        self._task = None

    async def receive(self, stream: str, target: LogTarget, events: Sequence[CloudEvent], batch: Batch) -> None:
        """Stage ``events`` of one stream (committed before this returns), then process the entries
        they complete. Raises only when the control store is unavailable."""
        runtime = self.runtime
        stream = storable_text(stream, 1000)
        lines, refused = staged_lines(self.prefix(target), events)
        processor, source = self.processors.get(runtime, target), self.processors.source(target)
        if refused:
            await commit_records(runtime, processor, source, decode_events(target, refused), batch)
        settings = self.settings
        async with runtime.pool.acquire() as conn, conn.transaction():
            entries = await log_staging.stage(conn, self.name, stream, lines)
            in_stream, in_all = (await log_staging.trim(conn, self.name, stream, settings.stream_lines, settings.max_lines)
                                 if entries else (0, 0))
        if in_stream:
            await self._overflow(processor, source, stream, in_stream)
        if in_all:
            await self._overflow(processor, source, None, in_all)
        for entry in entries:
            await self._settle(stream, entry, target)

    async def flush_due(self) -> int:
        """Process every free group that is quiet or holds a line older than ``max_age``; how many."""
        done = 0
        while done < FLUSH_BATCH:
            async with self._holding, self.runtime.pool.acquire() as conn, conn.transaction():
                claim = await log_staging.claim_due(conn, self.name, self.settings.quiet, self.settings.max_age)
                if claim is None:
                    return done
                await self._process(conn, claim)
            done += 1
            self.flushed += 1
        return done

    async def _settle(self, stream: str, entry: str, target: LogTarget) -> None:
        async with self._holding, self.runtime.pool.acquire() as conn, conn.transaction():
            claim = await log_staging.claim(conn, self.name, stream, entry)
            if claim is not None:  # None: another request or listener is processing it, and will see these lines
                await self._process(conn, claim, target)

    async def _process(self, conn: Any, claim: log_staging.Claim, target: LogTarget | None = None) -> None:
        """Process what is complete in the claimed group (everything, once it is quiet), then settle it."""
        lines = await log_staging.waiting(conn, self.name, claim.stream, claim.entry)
        target = target or self.resolve(claim.stream)
        if target is None:  # the stream is no longer configured: nothing can decode its lines
            await self.runtime.reject(self.name, "unknown_stream", f"{claim.stream[:200]} | {len(lines)} staged lines")
            await log_staging.settle(conn, self.name, claim.stream, claim.entry, [x.id for x in lines])
            return
        quiet = claim.last_at < claim.now - dt.timedelta(seconds=self.settings.quiet)
        aged = claim.now - dt.timedelta(seconds=self.settings.max_age)
        complete, _ = split_entries(lines, numbered=claim.entry != "", final=quiet, aged=aged, ordered=self.ordered)
        if complete:
            decoded = decode_entries(target, complete)
            await commit_records(self.runtime, self.processors.get(self.runtime, target), self.processors.source(target),
                                 decoded, Batch())
        await log_staging.settle(conn, self.name, claim.stream, claim.entry, [x.id for e in complete for x in e])

    async def _overflow(self, processor: PgLogProcessor, source: str, stream: str | None, dropped: int) -> None:
        """Count dropped lines and raise one HEALTH event per window: for ``stream`` (over
        ``stream_lines``) or, with None, for all streams (over ``max_lines``)."""
        where = f"stream {stream[:200]}" if stream is not None else "all streams"
        await self.runtime.reject(source, "staging_overflow", f"{dropped} staged lines dropped | {where}")
        now = dt.datetime.now(dt.timezone.utc)
        window = int(now.timestamp()) // OVERFLOW_WINDOW
        ctx = processor.ctx
        await self.runtime.submit(DetectionEvent(
            kind=EventKind.HEALTH, source=source, key=event_key("log-staging-overflow", source, stream or "*", window),
            group=f"log-staging:{source}", canary_id=None, observed_at=now, detected_at=now,
            origin={"node": ctx.node, "datastore": ctx.datastore},
            evidence={"problem": "partial log lines dropped: more waited than [coverage.log_staging] allows",
                      "dropped": dropped, "stream": stream[:200] if stream is not None else "*",
                      "limit": self.settings.stream_lines if stream is not None else self.settings.max_lines},
            severity=Severity.WARNING,
        ))

    async def _run(self) -> None:
        interval = min(max(self.settings.quiet / 4, 0.05), 1.0)
        rounds = 0
        while not self._stopping.is_set():
            try:
                await self.flush_due()
                rounds += 1
                if rounds % PRUNE_EVERY == 0:
                    await log_staging.prune(self.runtime.pool, self.settings.remember, self.settings.max_lines)
            except Exception as exc:  # noqa: BLE001 - recorded and retried next round; the loop must outlive it
                if isinstance(exc, UNAVAILABLE) and unavailable(exc):
                    log.warning("staging.flush_failed", component=self.name, error=type(exc).__name__)
                else:
                    log.error("staging.flush_error", component=self.name, error=f"{type(exc).__name__}: {str(exc)[:200]}")
            try:
                await asyncio.wait_for(self._stopping.wait(), interval)
            except TimeoutError:
                pass


class CloudEndpoint(abc.ABC):
    """What the cloud log endpoints share (:mod:`canary.postgres.firehose`, :mod:`canary.postgres.pubsub`):
    one POST route at ``path``, the client address behind trusted proxies, and their :class:`Staging`,
    whose flusher runs while the component does. A subclass sets ``name``, ``path`` and ``staging`` and
    writes :meth:`handle`."""

    name: str
    path: str
    staging: Staging
    runtime: SourceContext  # set by start()
    _proxies: TrustedProxies = TrustedProxies()

    def routes(self) -> list[web.RouteDef]:
        return [web.post(self.path, self.handle)]

    @abc.abstractmethod
    async def handle(self, request: web.Request) -> web.Response:
        """Answer one delivery (the subclass's wire format)."""

    async def start(self, runtime: SourceContext) -> None:
        self.runtime = runtime
        self._proxies = TrustedProxies.from_config(runtime.config.listener)
        await self.staging.start(runtime)

    async def stop(self) -> None:
        await self.staging.stop()
