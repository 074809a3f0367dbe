"""From detection events to incidents and outbox rows, durably.

``Pipeline.submit(event)`` returns once the event is committed in the control store; only then may a
source acknowledge its input (advance a log checkpoint, answer a webhook 2xx). Concurrent submits are
group-committed: one transaction records a batch of events, updates their incidents and enqueues the
notifications, so throughput scales with batch size rather than fsyncs.

Grouping: events with the same ``group`` (one query, one session, one sender) within
``alerting.group_window`` of the incident's last event join that incident. A new incident enqueues a
``trigger``; growth past an ``alerting.escalate_at`` threshold of distinct canaries enqueues an
``update`` with the same dedup key, so a 10,000-row bulk read is one page plus a few updates.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from canary.alerts import Alert, AlertAction
from canary.config import Config, SinkConfig
from canary.events import DetectionEvent, EventKind, Severity

log = structlog.get_logger("canary.pipeline")

OUTBOX_CHANNEL = "canary_outbox"
#: A suppression rule: returns the rule name that suppresses the event, or None.
SuppressRule = Callable[[DetectionEvent], str | None]


@dataclass
class Stats:
    submitted: int = 0
    recorded: int = 0
    duplicates: int = 0
    incidents_opened: int = 0
    notifications: int = 0
    suppressed: int = 0
    batches: int = 0
    by_kind: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def _severity_at_least(severity: Severity, minimum: str) -> bool:
    return severity.rank >= Severity(minimum).rank


def sinks_for(sinks: Sequence[SinkConfig], severity: Severity, drill: str | None) -> list[str]:
    """Which configured sinks receive an alert. Drill alerts go to drill-only sinks when any exist."""
    eligible = [s for s in sinks if _severity_at_least(severity, s.min_severity)]
    if drill is not None:
        drill_sinks = [s.name for s in eligible if s.drill_only]
        if drill_sinks:
            return drill_sinks
    return [s.name for s in eligible if not s.drill_only]


def dedup_key_for(group: str, first_event_key: str) -> str:
    return "canary-" + hashlib.sha256(f"{group}\x00{first_event_key}".encode()).hexdigest()[:24]


class Pipeline:
    def __init__(
        self,
        pool: asyncpg.Pool,
        config: Config,
        *,
        suppress: Sequence[SuppressRule] = (),
        max_batch: int = 1000,
        linger: float = 0.002,
    ) -> None:
        self.pool = pool
        self.config = config
        self.suppress = list(suppress)
        self.max_batch = max_batch
        self.linger = linger
        self.stats = Stats()
        self._queue: asyncio.Queue[tuple[DetectionEvent, asyncio.Future[None]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pipeline")

    async def stop(self) -> None:
        """Stop intake and flush what was submitted (every pending submit is committed or fails)."""
        self._closing = True
        if self._task is not None:
            await self._queue.put((None, None))  # type: ignore[arg-type]  # wake-up sentinel
            await self._task
            self._task = None

    # -- intake ------------------------------------------------------------------------------
    async def submit(self, event: DetectionEvent) -> None:
        """Record one event; returns when it is committed. Raises if the store rejects the batch."""
        if self._closing:
            raise RuntimeError("pipeline is stopping")
        if self._task is None:
            await self.record([event])
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.stats.submitted += 1
        await self._queue.put((event, fut))
        await fut

    async def submit_many(self, events: Sequence[DetectionEvent]) -> None:
        await asyncio.gather(*(self.submit(e) for e in events))

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            batch = [item]
            deadline = asyncio.get_running_loop().time() + self.linger
            while len(batch) < self.max_batch:
                timeout = deadline - asyncio.get_running_loop().time()
                try:
                    batch.append(self._queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(self._queue.get(), timeout))
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
            real = [(e, f) for e, f in batch if e is not None]
            stop = len(real) != len(batch)
            if real:
                try:
                    await self.record([e for e, _ in real])
                except BaseException as exc:  # the submitters see the failure and keep their input
                    for _, f in real:
                        if not f.done():
                            f.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                else:
                    for _, f in real:
                        if not f.done():
                            f.set_result(None)
            if stop and self._queue.empty():
                return

    # -- recording --------------------------------------------------------------------------
    async def record(self, events: Sequence[DetectionEvent]) -> list[int]:
        """Record a batch in one transaction; returns the ids of incidents that got notifications."""
        if not events:
            return []
        async with self.pool.acquire() as conn, conn.transaction():
            notified = await self._record(conn, events)
        self.stats.batches += 1
        return notified

    async def _record(self, conn: asyncpg.Connection, events: Sequence[DetectionEvent]) -> list[int]:
        # 1. events, idempotent by key (duplicates inside the batch too)
        unique: dict[str, DetectionEvent] = {}
        for e in events:
            unique.setdefault(e.key, e)
        evs = list(unique.values())
        suppressed = [self._suppressed_by(e) for e in evs]
        rows = await conn.fetch(
            """
            INSERT INTO events (key, kind, source, canary_id, group_key, severity, observed_at, detected_at,
                                actor, origin, evidence, drill, suppressed_by)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[],
                                 $7::timestamptz[], $8::timestamptz[], $9::jsonb[], $10::jsonb[], $11::jsonb[],
                                 $12::text[], $13::text[])
            ON CONFLICT (key) DO NOTHING
            RETURNING id, key
            """,
            [e.key for e in evs], [str(e.kind) for e in evs], [e.source for e in evs],
            [e.canary_id for e in evs], [e.group for e in evs], [str(e.severity) for e in evs],
            [e.observed_at for e in evs], [e.detected_at for e in evs],
            [dict(e.actor) for e in evs], [dict(e.origin) for e in evs], [dict(e.evidence) for e in evs],
            [e.drill for e in evs], suppressed,
        )
        new_ids = {r["key"]: r["id"] for r in rows}
        self.stats.duplicates += len(events) - len(new_ids)
        self.stats.recorded += len(new_ids)
        if not new_ids:
            return []
        # 2. incidents, per group, under a per-group advisory lock (several listeners may race)
        by_group: dict[str, list[tuple[DetectionEvent, str | None]]] = defaultdict(list)
        for e, sup in zip(evs, suppressed):
            if e.key in new_ids:
                by_group[e.group].append((e, sup))
                self.stats.by_kind[str(e.kind)] += 1
        notified: list[int] = []
        window = dt.timedelta(seconds=self.config.alerting.group_window)
        for group in sorted(by_group):
            members = by_group[group]
            incident_id = await self._incident_for(conn, group, members, window)
            await conn.execute(
                "UPDATE events SET incident_id = $1 WHERE id = ANY($2::bigint[])",
                incident_id, [new_ids[e.key] for e, _ in members],
            )
            if await self._enqueue(conn, incident_id):
                notified.append(incident_id)
        if notified:
            await conn.execute("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)
        return notified

    def _suppressed_by(self, event: DetectionEvent) -> str | None:
        for rule in self.suppress:
            name = rule(event)
            if name:
                self.stats.suppressed += 1
                return name
        return None

    async def _incident_for(
        self,
        conn: asyncpg.Connection,
        group: str,
        members: list[tuple[DetectionEvent, str | None]],
        window: dt.timedelta,
    ) -> int:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", group)
        first = min(e.observed_at for e, _ in members)
        last = max(e.observed_at for e, _ in members)
        canary_ids = sorted({e.canary_id for e, _ in members if e.canary_id is not None})
        worst = max((e.severity for e, _ in members), key=lambda s: s.rank)
        all_suppressed = all(sup for _, sup in members)
        row = await conn.fetchrow(
            """
            SELECT id FROM incidents
            WHERE group_key = $1 AND status <> 'resolved' AND last_seen >= $2
            ORDER BY last_seen DESC LIMIT 1
            """,
            group, first - window,
        )
        head = members[0][0]
        if row is None:
            actor, origin, evidence = _merged(members)
            incident_id: int = await conn.fetchval(
                """
                INSERT INTO incidents (dedup_key, group_key, kind, severity, title, source, first_seen, last_seen,
                                       event_count, canary_ids, suppressed_by, drill, actor, origin, evidence)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                RETURNING id
                """,
                dedup_key_for(group, head.key), group, str(head.kind), str(worst), _title(head), head.source,
                first, last, len(members), canary_ids,
                members[0][1] if all_suppressed else None, head.drill, actor, origin, evidence,
            )
            self.stats.incidents_opened += 1
            return incident_id
        incident_id = row["id"]
        await conn.execute(
            """
            UPDATE incidents SET
                last_seen = greatest(last_seen, $2),
                first_seen = least(first_seen, $3),
                event_count = event_count + $4,
                canary_ids = ARRAY(SELECT DISTINCT unnest(canary_ids || $5::bigint[]) ORDER BY 1),
                suppressed_by = CASE WHEN $6 THEN suppressed_by ELSE NULL END
            WHERE id = $1
            """,
            incident_id, last, first, len(members), canary_ids, all_suppressed,
        )
        return incident_id

    async def _enqueue(self, conn: asyncpg.Connection, incident_id: int) -> bool:
        """Enqueue a trigger for a new incident, or an update when it crossed an escalation threshold."""
        inc = await conn.fetchrow("SELECT * FROM incidents WHERE id = $1", incident_id)
        if inc["suppressed_by"] is not None:
            return False
        count = len(inc["canary_ids"])
        thresholds = [t for t in self.config.alerting.escalate_at if count >= t]
        level = len(thresholds)
        last_seq = await conn.fetchval("SELECT max(sequence) FROM outbox WHERE incident_id = $1", incident_id)
        if last_seq is not None and level <= inc["paged_level"]:
            return False
        action = AlertAction.TRIGGER if last_seq is None else AlertAction.UPDATE
        sequence = 0 if last_seq is None else last_seq + 1
        alert = await build_alert(conn, inc, action, sequence)
        targets = sinks_for(self.config.sinks, alert.severity, alert.drill)
        if targets:
            await conn.executemany(
                "INSERT INTO outbox (incident_id, sink, sequence, action, payload) VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT DO NOTHING",
                [(incident_id, s, sequence, str(action), alert.to_json()) for s in targets],
            )
            self.stats.notifications += len(targets)
        await conn.execute("UPDATE incidents SET paged_level = $2 WHERE id = $1", incident_id, level)
        return bool(targets)


def _merged(members: list[tuple[DetectionEvent, str | None]]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Who/where/evidence of an incident: the first non-empty value of each key across its events
    (parallel-worker reads lack the client address that the leader's read has)."""
    actor: dict[str, Any] = {}
    origin: dict[str, Any] = {}
    evidence: dict[str, Any] = {}
    for e, _ in members:
        for target, src in ((actor, e.actor), (origin, e.origin), (evidence, e.evidence)):
            for k, v in src.items():
                if v not in (None, "") and k not in target:
                    target[k] = v
    return actor, origin, evidence


_VERBS = {
    EventKind.READ: "Canary data read",
    EventKind.EXPORTED: "Canary data exported",
    EventKind.CONTACTED: "Canary contact point reached",
    EventKind.USED: "Canary credential used",
    EventKind.TAMPER: "Canary detection tampered with",
    EventKind.HEALTH: "Canary health check failed",
}


def _title(event: DetectionEvent) -> str:
    who = event.actor.get("user") or event.actor.get("sender") or event.actor.get("caller") or "unknown"
    where = event.origin.get("client_addr") or event.origin.get("node") or ""
    text = f"{_VERBS[event.kind]} by {who}" + (f" from {where}" if where else "")
    return ("[DRILL] " if event.drill else "") + text


async def build_alert(conn: asyncpg.Connection, inc: asyncpg.Record, action: AlertAction, sequence: int) -> Alert:
    ids = list(inc["canary_ids"])
    labels = await conn.fetch(
        "SELECT label, kind, count(*) AS n FROM canaries WHERE id = ANY($1::bigint[]) GROUP BY label, kind ORDER BY n DESC LIMIT 20",
        ids,
    )
    canaries = [{"label": r["label"], "kind": r["kind"], "count": r["n"]} for r in labels]
    count = len(ids)
    where = ", ".join(c["label"] for c in canaries[:3])
    summary = f"{inc['title']}: {count} canar{'y' if count == 1 else 'ies'} in {inc['event_count']} event(s)"
    if where:
        summary += f" ({where})"
    if action is AlertAction.UPDATE:
        summary = f"ESCALATED: {summary}"
    return Alert(
        incident_id=inc["id"],
        dedup_key=inc["dedup_key"],
        action=action,
        kind=EventKind(inc["kind"]),
        severity=Severity(inc["severity"]),
        title=inc["title"],
        summary=summary,
        canary_count=count,
        event_count=inc["event_count"],
        first_seen=inc["first_seen"],
        last_seen=inc["last_seen"],
        actor=inc["actor"],
        origin=inc["origin"],
        canaries=canaries,
        evidence=inc["evidence"],
        drill=inc["drill"],
        source=inc["source"],
        sequence=sequence,
    )
