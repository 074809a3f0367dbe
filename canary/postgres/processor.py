"""PostgreSQL jsonlog records -> detection events.

Shared by every way a server's log reaches canary (file tail, syslog, HTTP ingest from a shipper):
each record (one parsed jsonlog line) is offered to the record handlers in order; the first that
returns a :class:`Detection` wins. Handlers are plain, cheap, synchronous functions, one concern
each, one module each (read, login, audit, tamper, replication, heartbeat); this module imports them all and
none of them imports it.

A detection names the canary by a location lookup key (resolved in one batch through the registry's
blind index) or by canary id; detections that resolve to no active canary are rejected and counted.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from canary.errors import EventRefused
from canary.events import DetectionEvent, EventKind, Severity, event_key
from canary.postgres import audit, backstop, heartbeat, login, read, replication, tamper
from canary.postgres.lines import LongLine
from canary.postgres.record import (
    Detection,
    RecordContext,
    RecordHandler,
    drill_tag,
    forged_detection,
    raised_by_plpgsql,
    well_typed,
)
from canary.store.registry import recognise
from canary.typing import SourceContext

#: Handlers whose genuine records are written by a PL/pgSQL ``RAISE`` (canary's own functions and
#: heartbeat); a record any other handler recognises must not come from a ``RAISE``.
RAISED_SIGNALS = frozenset({"read_detection", "trigger_detection", "heartbeat_detection"})
_TAIL_KEYS = ("cursor_position", "func_name", "file_name", "file_line_num", "application_name",
              "backend_type", "leader_pid", "query_id")


def parse_long(line: LongLine) -> dict[str, Any]:
    """The fields of a jsonlog line that could be recovered from its head and tail.

    The head is read field by field until a value is cut off; the tail from its first field boundary
    that is structural (inside a JSON string every ``"`` is escaped, so ``,"backend_type":`` can only
    be a boundary). Marked ``_truncated``."""
    text = line.head.decode("utf-8", "replace")
    record: dict[str, Any] = {}
    decoder = json.JSONDecoder()
    pos = text.find("{") + 1
    if pos == 0:
        raise ValueError("long line is not a JSON object")
    while True:
        key_end = _next_key(decoder, text, pos)
        if key_end is None:
            break
        key, pos = key_end
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError):
            break
        record[key] = value
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos >= len(text) or text[pos] != ",":
            break
        pos += 1
    tail = line.tail.decode("utf-8", "replace").rstrip()
    starts = [i for i in (tail.find(f',"{k}":') for k in _TAIL_KEYS) if i >= 0]
    if starts and tail.endswith("}"):
        try:
            extra = json.loads("{" + tail[min(starts) + 1:])
        except (ValueError, RecursionError):
            extra = None
        if isinstance(extra, dict):
            for k, v in extra.items():
                record.setdefault(k, v)
    if not record:
        raise ValueError("nothing recoverable in a long line")
    record["_truncated"] = True
    return record


def _next_key(decoder: json.JSONDecoder, text: str, pos: int) -> tuple[str, int] | None:
    while pos < len(text) and text[pos] in " \t":
        pos += 1
    try:
        key, pos = decoder.raw_decode(text, pos)
    except ValueError:
        return None
    if not isinstance(key, str) or pos >= len(text) or text[pos] != ":":
        return None
    return key, pos + 1


def default_handlers() -> tuple[RecordHandler, ...]:
    """Every built-in record handler, in order."""
    return (read.read_detection, login.login_detection, *audit.HANDLERS, *tamper.HANDLERS,
            *replication.HANDLERS, heartbeat.heartbeat_detection)


class SessionFacts:
    """Who and where of each backend, learnt from its own log lines (incl. log_connections lines).

    A parallel worker's lines carry no user, database or client address, only ``leader_pid``; the
    leader's facts fill them in, so every event of a parallel scan says who read from where.
    Bounded: the oldest backends are forgotten first.
    """

    FIELDS = (("user", "actor", "user"), ("application_name", "actor", "application_name"),
              ("remote_host", "origin", "client_addr"), ("dbname", "origin", "database"))

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._facts: dict[object, dict[str, Any]] = {}

    def remember(self, record: Mapping[str, Any]) -> None:
        pid = record.get("pid")
        if pid is None or record.get("leader_pid") or not record.get("user"):
            return
        facts = {k: record[k] for k, _, _ in self.FIELDS if record.get(k) not in (None, "", "[unknown]")}
        self._facts.pop(pid, None)
        self._facts[pid] = facts
        if len(self._facts) > self.limit:
            self._facts.pop(next(iter(self._facts)))

    def fill(self, record: Mapping[str, Any], detection: Detection) -> None:
        leader = record.get("leader_pid")
        facts = self._facts.get(leader) if leader else None
        if not facts:
            return
        for key, section, name in self.FIELDS:
            target = detection.actor if section == "actor" else detection.origin
            if target.get(name) in (None, "") and key in facts:
                target[name] = facts[key]
        if detection.drill is None:
            detection.drill = drill_tag(detection.actor.get("application_name"))


class PgLogProcessor:
    """Turns batches of jsonlog records (or raw lines) into committed events."""

    def __init__(self, runtime: SourceContext, ctx: RecordContext, handlers: Sequence[RecordHandler] | None = None) -> None:
        self.runtime = runtime
        ds = next((d for d in runtime.config.datastores if d.name == ctx.datastore), None)
        self.ctx = dataclasses.replace(
            ctx, keyring=ctx.keyring or runtime.keyring,
            functions=ctx.functions or ((ds.detection_function,) if ds is not None else ()),
            audit_role=ctx.audit_role or runtime.config.coverage.pgaudit_role,
            replicas=ctx.replicas or tuple(net for node in runtime.config.coverage.nodes if node.datastore == ctx.datastore
                                           for net in node.replication_from),
        )
        self.handlers = tuple(handlers) if handlers is not None else default_handlers()
        self.sessions = SessionFacts()
        self.backstop = backstop.for_datastore(runtime.pool, ds, ctx.datastore, runtime.config.coverage.privileged_reads)

    def parse_line(self, line: bytes | str | LongLine) -> Mapping[str, Any]:
        if isinstance(line, LongLine):
            return parse_long(line)
        record = json.loads(line)
        if not isinstance(record, dict):
            raise ValueError("log line is not a JSON object")
        return record

    async def process_lines(self, lines: Sequence[bytes | str | LongLine]) -> int:
        """Parse and commit ``lines``. A line that cannot be parsed is rejected (counted, sampled) and
        raises one HEALTH event per call: on a detection source it may have been a detection."""
        records: list[Mapping[str, Any]] = []
        unparsable: list[str] = []
        for line in lines:
            if isinstance(line, (bytes, str)) and not line.strip():
                continue
            try:
                records.append(self.parse_line(line))
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                sample = _sample(line.head if isinstance(line, LongLine) else line, exc)
                if isinstance(line, LongLine):
                    sample = f"{line.length} bytes at {line.position or '?'} | {sample}"
                unparsable.append(sample)
                await self.runtime.reject(self.ctx.source, "malformed_log_line", sample)
        extra = [self._unparsable_event(unparsable)] if unparsable else []
        return await self.process_records(records, extra)

    def _unparsable_event(self, samples: list[str]) -> DetectionEvent:
        now = dt.datetime.now(dt.timezone.utc)
        return DetectionEvent(
            kind=EventKind.HEALTH, source=self.ctx.source, key=event_key("pg-unparsable", self.ctx.source, now.isoformat(), samples[0]),
            group=f"pg-unparsable:{self.ctx.source}", canary_id=None, observed_at=now, detected_at=now,
            origin={"node": self.ctx.node, "datastore": self.ctx.datastore},
            evidence={"problem": "log lines that cannot be parsed", "lines": len(samples), "sample": samples[0][:200]},
            severity=Severity.ERROR,
        )

    async def process_records(self, records: Sequence[Mapping[str, Any]], extra: Sequence[DetectionEvent] = ()) -> int:
        """Commit the events found in ``records`` (and ``extra``); returns how many were submitted."""
        detections: list[Detection] = []
        records = [well_typed(r) for r in records]
        for record in records:
            self.sessions.remember(record)
        for record in records:
            self.backstop.observe(record)
            found = await self._detect(record)
            if found is not None:
                self.sessions.fill(record, found)
                quiet = await self.backstop.judge(found)
                if quiet is None:
                    detections.append(found)
                else:
                    self.runtime.metrics.quiet.labels(self.ctx.source, quiet).inc()
        events = list(extra)
        if detections:
            events += await self._events(detections)
        if events:
            await self._submit(events)
        return len(events)

    async def _detect(self, record: Mapping[str, Any]) -> Detection | None:
        """The first handler's detection; a handler that fails on the record rejects it (counted,
        sampled) and the record is skipped: nothing in a record can stop the source."""
        for handler in self.handlers:
            try:
                found = handler(record, self.ctx)
            except Exception as exc:  # noqa: BLE001 - any failure on hostile input is a reject, never a stall
                await self.runtime.reject(self.ctx.source, f"bad_{getattr(handler, '__name__', 'handler')}", _sample(_dump(record), exc))
                return None
            if found is None:
                continue
            name = getattr(handler, "__name__", "")
            if name not in RAISED_SIGNALS and found.kind != EventKind.TAMPER and raised_by_plpgsql(record):
                return forged_detection(record, self.ctx, str(found.kind), f"a RAISE imitating {name}")
            return found
        return None

    async def _events(self, detections: Sequence[Detection]) -> list[DetectionEvent]:
        lookups = sorted({d.lookup for d in detections if d.lookup})
        resolved = await self.runtime.registry.by_location(lookups) if lookups else {}
        by_value = await _resolve_values(self.runtime.registry, detections)
        now = dt.datetime.now(dt.timezone.utc)
        events: list[DetectionEvent] = []
        for d in detections:
            canary_id = d.canary_id if d.canary_id is not None else (resolved.get(d.lookup) if d.lookup else None)
            if canary_id is None and d.values:
                canary_id = next((by_value[v] for v in d.values if v in by_value), None)
                if canary_id is None:
                    continue  # e.g. an ordinary role logging in: not a canary, not an input error
            if canary_id is None and d.require_canary:
                await self.runtime.reject(self.ctx.source, "unknown_canary", d.group)
                continue
            events.append(
                DetectionEvent(
                    kind=d.kind, source=self.ctx.source, key=d.key, group=d.group, canary_id=canary_id,
                    observed_at=_observed(d.observed_at, now), detected_at=now, actor=_clean(d.actor), origin=_clean(d.origin),
                    evidence=_clean(d.evidence), severity=d.severity, drill=d.drill,
                )
            )
        return events

    async def _submit(self, events: list[DetectionEvent]) -> None:
        """Commit; events the store refuses for their content are rejected (counted, sampled), the rest
        commit. Any other failure propagates: the caller keeps its input and retries."""
        try:
            await self.runtime.submit_many(events)
        except EventRefused as exc:
            for event, why in exc.refused:
                await self.runtime.reject(self.ctx.source, "event_refused", f"{type(why).__name__}: {str(why)[:200]} | {event.kind} {event.group[:100]}")


async def _resolve_values(registry: Any, detections: Sequence[Detection]) -> dict[tuple[str, str], int]:
    pairs = sorted({v for d in detections for v in d.values})
    if not pairs:
        return {}
    return {k: m.canary_id for k, m in (await recognise(registry, pairs)).items()}


def _clean(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v not in (None, "")}


def _dump(record: Mapping[str, Any]) -> str:
    try:
        return json.dumps(record, default=str)[:400]
    except (ValueError, TypeError, RecursionError):
        return repr(sorted(map(str, record)))[:400]


def _sample(line: bytes | str, exc: BaseException) -> str:
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else str(line)
    return f"{type(exc).__name__}: {exc} | {text[:300]}"


#: Claimed record times before this are not believed (nor are times over a day ahead of ours).
EARLIEST_OBSERVED = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _observed(at: dt.datetime, now: dt.datetime) -> dt.datetime:
    """A record's own time, or ``now`` when it is implausible: a line stamped 0001-01-01 made the
    pipeline's grouping window overflow and failed its whole batch (a tail retrying it forever)."""
    try:
        return at if EARLIEST_OBSERVED <= at <= now + dt.timedelta(days=1) else now
    except (TypeError, OverflowError):  # naive, or not comparable within datetime's range
        return now
