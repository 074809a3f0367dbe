"""PostgreSQL jsonlog records -> detection events.

Shared by every way a server's log reaches canary (file tail, syslog, HTTP ingest from a shipper):
each record (one parsed jsonlog line) is offered to the record handlers in order; the first that
returns a :class:`Detection` wins. Handlers are plain, cheap, synchronous functions, one concern
each, one module each (read, login, audit, tamper, heartbeat); this module imports them all and
none of them imports it.

A detection names the canary by a location lookup key (resolved in one batch through the registry's
blind index) or by canary id; detections that resolve to no active canary are rejected and counted.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from canary.events import DetectionEvent
from canary.postgres import audit, heartbeat, login, read, tamper
from canary.postgres.record import Detection, RecordContext, RecordHandler, drill_tag
from canary.store.registry import recognise
from canary.typing import SourceContext


def default_handlers() -> tuple[RecordHandler, ...]:
    """Every built-in record handler, in order."""
    return (read.read_detection, login.login_detection, *audit.HANDLERS, *tamper.HANDLERS,
            heartbeat.heartbeat_detection)


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
    return {k: m.canary_id for k, m in (await recognise(registry, pairs)).items()}


def _clean(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v not in (None, "")}


def _sample(line: bytes | str, exc: BaseException) -> str:
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else str(line)
    return f"{type(exc).__name__}: {exc} | {text[:300]}"
