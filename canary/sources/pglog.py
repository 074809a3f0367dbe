"""PostgreSQL jsonlog records -> detection events.

Shared by every way a server's log reaches canary (file tail, syslog, HTTP ingest from a shipper):
each record (one parsed jsonlog line) is offered to the record handlers in order; the first that
returns a :class:`Detection` wins. Handlers are plain, cheap, synchronous functions, one concern
each: read detection (``CY001`` lines from the touch function) lives here; login-attempt,
pgaudit and DDL-tamper handlers live in their own modules and are passed in.

A detection names the canary by a location lookup key (resolved in one batch through the registry's
blind index) or by canary id; detections that resolve to no active canary are rejected and counted.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from canary.events import DetectionEvent, EventKind, Severity, event_key
from canary.registry import location_key

READ_SQLSTATE = "CY001"
DRILL_APP_PREFIX = "canary-drill:"
_COPY = re.compile(r"^\s*(?:(?:--[^\n]*\n)|(?:/\*.*?\*/)|\s)*copy\b", re.I | re.S)
_MAX_QUERY = 2000


@dataclass(frozen=True, slots=True)
class RecordContext:
    datastore: str
    node: str
    source: str


@dataclass(slots=True)
class Detection:
    """What a handler found; the processor turns it into a DetectionEvent."""

    kind: EventKind
    key: str
    group: str
    observed_at: dt.datetime
    lookup: str | None = None  # registry location key, resolved to canary_id in batch
    canary_id: int | None = None
    actor: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    severity: Severity = Severity.CRITICAL
    drill: str | None = None
    require_canary: bool = True
    #: (value kind, value) pairs resolved in batch by blind index (e.g. ("pg_role", user)); the first
    #: active match names the canary, and a detection none of whose values match is dropped silently
    values: tuple[tuple[str, str], ...] = ()


#: A record handler: returns a Detection, or None when the record is not its concern.
RecordHandler = Callable[[Mapping[str, Any], RecordContext], Detection | None]


def parse_pg_timestamp(value: object) -> dt.datetime:
    """jsonlog timestamps look like ``2026-11-23 15:24:13.620 UTC``."""
    if not isinstance(value, str) or not value:
        raise ValueError("missing timestamp")
    text = value.strip()
    tz = dt.timezone.utc
    if text.endswith(" UTC"):
        text = text[:-4]
    elif " " in text and text.rsplit(" ", 1)[1].isalpha():
        text = text.rsplit(" ", 1)[0]  # other zone abbreviations: treat as UTC, noted in evidence
    parsed = dt.datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def drill_tag(application_name: object) -> str | None:
    if isinstance(application_name, str) and application_name.startswith(DRILL_APP_PREFIX):
        return application_name[len(DRILL_APP_PREFIX):][:64] or None
    return None


def is_export(query: str) -> bool:
    return bool(_COPY.match(query or ""))


def read_group(node: str, datastore: str, role: object, kind: EventKind) -> str:
    """The incident group of reads: one role reading one datastore's canaries on one node, whatever
    connection, statement or parallel worker it uses. A scraper that opens a connection per page, or a
    pool of ten, is one incident that escalates with the canaries it collects, not a page per
    connection. (Each handler that reports reads of tables uses this, so signals of one read merge.)"""
    return f"pg:{node}:{datastore}:{role or ''}:{kind}"


def read_detection(record: Mapping[str, Any], ctx: RecordContext) -> Detection | None:
    """A ``CY001`` line from the touch function: a canary row was returned to a reader."""
    if record.get("state_code") != READ_SQLSTATE:
        return None
    raw = record.get("detail")
    if not isinstance(raw, str):
        raise ValueError("CY001 record without a detail")
    detail = json.loads(raw)
    if not isinstance(detail, dict) or detail.get("v") != 1:
        raise ValueError("CY001 detail is not a version-1 object")
    target, pk = detail.get("t"), detail.get("k")
    if not isinstance(target, str) or pk is None:
        raise ValueError("CY001 detail lacks target or key")
    datastore = str(detail.get("ds") or ctx.datastore)
    query = str(detail.get("q") or record.get("statement") or "")[:_MAX_QUERY]
    kind = EventKind.EXPORTED if is_export(query) or record.get("ps") == "COPY" else EventKind.READ
    pid = record.get("leader_pid") or record.get("pid") or detail.get("p")
    stmt_ts = str(detail.get("ts") or "")
    app = detail.get("an") if detail.get("an") is not None else record.get("application_name")
    observed = parse_pg_timestamp(record.get("timestamp"))
    dbname = record.get("dbname") or detail.get("db")  # 'su'/'db': restored in parallel workers, whose lines lack them
    return Detection(
        kind=kind,
        key=event_key("pg-read", ctx.node, pid, stmt_ts, target, pk),
        group=read_group(ctx.node, datastore, detail.get("u") or record.get("user"), kind),
        observed_at=observed,
        lookup=location_key(datastore, target, pk),
        actor={"user": record.get("user") or detail.get("su"), "role": detail.get("u"), "application_name": app},
        origin={
            "client_addr": detail.get("a") or record.get("remote_host"),
            "node": ctx.node,
            "datastore": datastore,
            "database": dbname,
            "pid": pid,
            "backend_type": record.get("backend_type"),
        },
        evidence={
            "query": query,
            "statement_started": stmt_ts,
            "table": target,
            "session_id": record.get("session_id"),
            "vxid": record.get("vxid"),
        },
        drill=drill_tag(app),
    )


def default_handlers() -> tuple[RecordHandler, ...]:
    """Every built-in record handler, in order (modules import lazily to avoid cycles)."""
    from canary.sources.pglogin import login_detection

    handlers: list[RecordHandler] = [read_detection, login_detection]
    from canary.checks import heartbeat_detection
    from canary.sources import ddl_tamper, pgaudit

    handlers += [*pgaudit.HANDLERS, *ddl_tamper.HANDLERS, heartbeat_detection]
    return tuple(handlers)


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

    def __init__(self, runtime: Any, ctx: RecordContext, handlers: Sequence[RecordHandler] | None = None) -> None:
        self.runtime = runtime
        self.ctx = ctx
        self.handlers = tuple(handlers) if handlers is not None else default_handlers()
        self.sessions = SessionFacts()

    def parse_line(self, line: bytes | str) -> Mapping[str, Any]:
        record = json.loads(line)
        if not isinstance(record, dict):
            raise ValueError("log line is not a JSON object")
        return record

    async def process_lines(self, lines: Sequence[bytes | str]) -> int:
        records: list[Mapping[str, Any]] = []
        for line in lines:
            if isinstance(line, (bytes, str)) and not line.strip():
                continue
            try:
                records.append(self.parse_line(line))
            except (ValueError, UnicodeDecodeError) as exc:
                await self.runtime.reject(self.ctx.source, "malformed_log_line", _sample(line, exc))
        return await self.process_records(records)

    async def process_records(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Commit the events found in ``records``; returns how many were submitted."""
        detections: list[Detection] = []
        for record in records:
            self.sessions.remember(record)
        for record in records:
            for handler in self.handlers:
                try:
                    found = handler(record, self.ctx)
                except (ValueError, TypeError, KeyError) as exc:
                    await self.runtime.reject(self.ctx.source, f"bad_{handler.__name__}", _sample(json.dumps(record)[:400], exc))
                    break
                if found is not None:
                    self.sessions.fill(record, found)
                    detections.append(found)
                    break
        if not detections:
            return 0
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
                    observed_at=d.observed_at, detected_at=now, actor=_clean(d.actor), origin=_clean(d.origin),
                    evidence=_clean(d.evidence), severity=d.severity, drill=d.drill,
                )
            )
        if events:
            await self.runtime.submit_many(events)
        return len(events)


async def _resolve_values(registry: Any, detections: Sequence[Detection]) -> dict[tuple[str, str], int]:
    pairs = sorted({v for d in detections for v in d.values})
    if not pairs:
        return {}
    from canary.credentials import recognise

    return {k: m.canary_id for k, m in (await recognise(registry, pairs)).items()}


def _clean(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v not in (None, "")}


def _sample(line: bytes | str, exc: BaseException) -> str:
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else str(line)
    return f"{type(exc).__name__}: {exc} | {text[:300]}"
