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
import dataclasses
import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from canary.alerts import AlertAction, alert_for, incident_title
from canary.config import Config, SinkConfig
from canary.drilltags import attribute_drills
from canary.errors import EventRefused
from canary.events import DetectionEvent, Severity
from canary.rules import NO_DECISION, CanaryFacts, Decision, RuleSet, facts_from_rows
from canary.store import registry, sessions
from canary.typing import SuppressRule

log = structlog.get_logger("canary.pipeline")

OUTBOX_CHANNEL = "canary_outbox"
EVENTS_CHANNEL = "canary_events"  # notified when events are committed (the SIEM event feed listens)
DEAD_LETTER_SOURCE = "outbox"  # source of HEALTH events about undeliverable notifications
#: A suppression rule: returns the rule name that suppresses the event, or None.


@dataclass
class Stats:
    submitted: int = 0
    recorded: int = 0
    duplicates: int = 0
    incidents_opened: int = 0
    notifications: int = 0
    suppressed: int = 0
    batches: int = 0
    refused: int = 0
    by_kind: dict[str, int] = field(default_factory=lambda: defaultdict(int))


#: SQLSTATE classes that mean "this content cannot be stored", not "the store is unwell": data
#: exceptions, integrity violations, program limits (e.g. an index row too large).
_REFUSAL_CLASSES = frozenset({"22", "23", "54"})


def refused(exc: BaseException) -> bool:
    """Whether the store refused a batch for what it holds (retrying it can never succeed)."""
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "")[:2] in _REFUSAL_CLASSES
    # a value the driver cannot encode (asyncpg's client-side DataError is a ValueError too)
    return isinstance(exc, ValueError | TypeError | UnicodeError)


def _severity_at_least(severity: Severity, minimum: str) -> bool:
    return severity.rank >= Severity(minimum).rank


def sinks_for(
    sinks: Sequence[SinkConfig], severity: Severity, drill: str | None, only: Sequence[str] | None = None
) -> list[str]:
    """Which configured sinks receive an alert. Drill alerts go to drill-only sinks when any exist;
    ``only`` (a route rule's sinks) narrows on-call routing to those sinks."""
    eligible = [s for s in sinks if _severity_at_least(severity, s.min_severity)]
    if drill is not None:
        drill_sinks = [s.name for s in eligible if s.drill_only]
        if drill_sinks:
            return drill_sinks
    return [s.name for s in eligible if not s.drill_only and (only is None or s.name in only)]


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
        self.rules = RuleSet.from_config(config.alerting.rules, [s.name for s in config.sinks])
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
            fut0: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            await self._commit([(event, fut0)])
            return await fut0
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.stats.submitted += 1
        await self._queue.put((event, fut))
        await fut

    async def submit_many(self, events: Sequence[DetectionEvent]) -> None:
        """Commit ``events``; returns when all are committed. If the store refused some for their
        content (see :func:`refused`), the others are committed and :class:`EventRefused` names the
        refused ones; any other failure is raised as is (nothing to acknowledge: retry the input)."""
        results = await asyncio.gather(*(self.submit(e) for e in events), return_exceptions=True)
        failures = [(e, r) for e, r in zip(events, results) if isinstance(r, BaseException)]
        for _, exc in failures:
            if not isinstance(exc, EventRefused):
                raise exc
        if failures:
            raise EventRefused([(e, exc.refused[0][1] if isinstance(exc, EventRefused) else exc) for e, exc in failures])

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
                    await self._commit(real)
                except Exception as exc:  # noqa: BLE001 - intake must outlive any failure: fail what is pending
                    for _, f in real:
                        if not f.done():
                            f.set_exception(exc)
            if stop and self._queue.empty():
                return

    async def _commit(self, items: list[tuple[DetectionEvent, asyncio.Future[None]]]) -> None:
        """Record a batch; if the store refuses it for its content, record the halves separately, so
        one event the store cannot take fails alone (:class:`EventRefused`) and the rest commit."""
        try:
            await self.record([e for e, _ in items])
        except BaseException as exc:  # the submitters see the failure and keep their input
            if isinstance(exc, asyncio.CancelledError) or not refused(exc):
                for _, f in items:
                    if not f.done():
                        f.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return
            if len(items) == 1:
                self.stats.refused += 1
                if not items[0][1].done():
                    items[0][1].set_exception(EventRefused([(items[0][0], exc)]))
                log.error("pipeline.event_refused", source=items[0][0].source, kind=str(items[0][0].kind),
                          error=f"{type(exc).__name__}: {exc}"[:300])
                return
            mid = len(items) // 2
            await self._commit(items[:mid])
            await self._commit(items[mid:])
        else:
            for _, f in items:
                if not f.done():
                    f.set_result(None)

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
        """Set-based: a fixed number of round trips per batch, whatever the number of groups."""
        unique: dict[str, DetectionEvent] = {}
        for e in events:
            unique.setdefault(e.key, e)
        # 1. lock every group of the batch (several listeners may race), in one consistent order
        groups = sorted({e.group for e in unique.values()})
        await conn.execute(_LOCK_GROUPS, groups)
        # 2. drop signals already recorded (a replay after a crash, a second listener on the same log)
        seen = {r["key"] for r in await conn.fetch("SELECT key FROM events WHERE key = ANY($1::text[])", list(unique))}
        evs = [e for k, e in unique.items() if k not in seen]
        self.stats.duplicates += len(events) - len(evs)
        if not evs:
            return []
        evs = await attribute_drills(conn, evs)  # drill tags only as registered by a drill run
        decisions = await self._decide(conn, evs, await sessions.own_events(conn, evs))
        by_group: dict[str, list[int]] = defaultdict(list)
        for i, e in enumerate(evs):
            by_group[e.group].append(i)
        # 3. the open incident of each group within the window, or a new one
        window = dt.timedelta(seconds=self.config.alerting.group_window)
        group_list = list(by_group)
        since = [min(evs[i].observed_at for i in by_group[g]) - window for g in group_list]
        open_rows = await conn.fetch(_OPEN_INCIDENTS, group_list, since)
        incident_of = {r["group_key"]: r["id"] for r in open_rows}
        new_groups = [g for g in group_list if g not in incident_of]
        if new_groups:
            incident_of.update(await self._open_incidents(conn, new_groups, by_group, evs, decisions))
        # 4. the events, each with its incident
        rows = await conn.fetch(
            _INSERT_EVENTS,
            [e.key for e in evs], [str(e.kind) for e in evs], [e.source for e in evs],
            [e.canary_id for e in evs], [e.group for e in evs], [str(e.severity) for e in evs],
            [e.observed_at for e in evs], [e.detected_at for e in evs],
            [dict(e.actor) for e in evs], [dict(e.origin) for e in evs], [dict(e.evidence) for e in evs],
            [e.drill for e in evs], [d.rule if d.suppressed else None for d in decisions],
            [incident_of[e.group] for e in evs],
        )
        inserted = {r["key"] for r in rows}
        self.stats.duplicates += len(evs) - len(inserted)
        self.stats.recorded += len(inserted)
        # 5. grow the incidents by what was actually inserted
        ids, lasts, firsts, counts, all_sup, flat_inc, flat_canary = [], [], [], [], [], [], []
        for g, members in by_group.items():
            mine = [i for i in members if evs[i].key in inserted]
            if not mine:
                continue
            inc = incident_of[g]
            ids.append(inc)
            lasts.append(max(evs[i].observed_at for i in mine))
            firsts.append(min(evs[i].observed_at for i in mine))
            counts.append(len(mine))
            all_sup.append(all(decisions[i].suppressed for i in mine))
            for i in mine:
                self.stats.by_kind[str(evs[i].kind)] += 1
                if evs[i].canary_id is not None:
                    flat_inc.append(inc)
                    flat_canary.append(evs[i].canary_id)
        if not ids:
            return []
        await conn.execute(_GROW_INCIDENTS, ids, lasts, firsts, counts, all_sup, flat_inc, flat_canary)
        # 6. notifications
        notified = await self._enqueue(conn, ids)
        # delivered at commit (and once per transaction, however many batches it holds)
        if notified:
            await conn.execute("SELECT pg_notify($1, ''), pg_notify($2, '')", OUTBOX_CHANNEL, EVENTS_CHANNEL)
        else:
            await conn.execute("SELECT pg_notify($1, '')", EVENTS_CHANNEL)
        return notified

    async def _decide(self, conn: asyncpg.Connection, evs: Sequence[DetectionEvent], own: dict[int, str]) -> list[Decision]:
        """Suppression and routing of each event: canary's own sessions (``own``: index -> rule), the
        callables given to the pipeline, then the rules."""
        facts: dict[int, CanaryFacts] = {}
        if self.rules.needs_facts:
            ids = sorted({e.canary_id for e in evs if e.canary_id is not None})
            if ids:
                facts = facts_from_rows(await registry.summaries(conn, ids))
        out = []
        for i, e in enumerate(evs):
            name = own.get(i) or next((n for n in (rule(e) for rule in self.suppress) if n), None)
            if name:
                decision = Decision(name, suppressed=True)
            elif self.rules:
                decision = self.rules.decide(e, facts.get(e.canary_id) if e.canary_id is not None else None)
            else:
                decision = NO_DECISION
            if decision.suppressed:
                self.stats.suppressed += 1
            out.append(decision)
        return out

    async def _open_incidents(
        self,
        conn: asyncpg.Connection,
        groups: list[str],
        by_group: dict[str, list[int]],
        evs: Sequence[DetectionEvent],
        decisions: Sequence[Decision],
    ) -> dict[str, int]:
        cols: list[list[Any]] = [[] for _ in range(14)]
        for g in groups:
            members = by_group[g]
            head, decision = evs[members[0]], decisions[members[0]]
            worst = max((evs[i].severity for i in members), key=lambda s: s.rank)
            actor, origin, evidence = _merged([evs[i] for i in members])
            suppressed = decision.rule if all(decisions[i].suppressed for i in members) else None
            route = ",".join(decision.route) if decision.route else None
            for col, value in zip(cols, (
                dedup_key_for(g, head.key), g, str(head.kind), str(worst), incident_title(dataclasses.replace(head, actor=actor, origin=origin)), head.source,
                min(evs[i].observed_at for i in members), max(evs[i].observed_at for i in members),
                suppressed, head.drill, actor, origin, evidence, route,
            )):
                col.append(value)
        rows = await conn.fetch(_INSERT_INCIDENTS, *cols)
        self.stats.incidents_opened += len(rows)
        return {r["group_key"]: r["id"] for r in rows}

    async def _enqueue(self, conn: asyncpg.Connection, incident_ids: list[int]) -> list[int]:
        """A trigger for each new incident, an update for each that crossed an escalation threshold,
        and a trigger for a suppressed incident whose volume lifted its suppression."""
        incs = await conn.fetch(_INCIDENTS_FOR_ENQUEUE, incident_ids)
        due: list[tuple[asyncpg.Record, AlertAction, int, int, bool]] = []
        for inc in incs:
            count = len(inc["canary_ids"])
            lift = False
            if inc["suppressed_by"] is not None:
                if not self.rules.lifts(inc["suppressed_by"], count):
                    continue
                lift = True
            level = len([t for t in self.config.alerting.escalate_at if count >= t])
            last_seq = inc["last_seq"]
            if last_seq is not None and level <= inc["paged_level"]:
                continue
            action = AlertAction.TRIGGER if last_seq is None else AlertAction.UPDATE
            due.append((inc, action, 0 if last_seq is None else last_seq + 1, level, lift))
        if not due:
            return []
        labels = await registry.incident_labels(conn, [inc["id"] for inc, *_ in due])
        out_inc, out_sink, out_seq, out_action, out_payload = [], [], [], [], []
        notified = []
        for inc, action, sequence, _, lift in due:
            alert = alert_for(inc, labels.get(inc["id"], []), action, sequence, self.config.listener.public_url)
            targets = sinks_for(self.config.sinks, alert.severity, alert.drill, only=inc["route"])
            if inc["source"] == DEAD_LETTER_SOURCE:  # a dead letter about a sink goes to the others
                targets = [s for s in targets if s != inc["actor"].get("sink")]
            for s in targets:
                out_inc.append(inc["id"])
                out_sink.append(s)
                out_seq.append(sequence)
                out_action.append(str(action))
                out_payload.append(alert.to_json())
            if targets:
                notified.append(inc["id"])
        if out_inc:
            await conn.execute(INSERT_OUTBOX, out_inc, out_sink, out_seq, out_action, out_payload)
            self.stats.notifications += len(out_inc)
        await conn.execute(
            _MARK_PAGED, [inc["id"] for inc, *_ in due], [level for *_, level, _ in due], [lift for *_, lift in due]
        )
        return notified


_LOCK_GROUPS = """
SELECT pg_advisory_xact_lock(h)
FROM (SELECT DISTINCT hashtextextended(g, 0) AS h FROM unnest($1::text[]) AS g ORDER BY 1 OFFSET 0) AS ordered
"""

_OPEN_INCIDENTS = """
SELECT DISTINCT ON (i.group_key) i.id, i.group_key
FROM incidents i JOIN unnest($1::text[], $2::timestamptz[]) AS q(g, since) ON i.group_key = q.g
WHERE i.status <> 'resolved' AND i.last_seen >= q.since
ORDER BY i.group_key, i.last_seen DESC
"""

_INSERT_INCIDENTS = """
INSERT INTO incidents (dedup_key, group_key, kind, severity, title, source, first_seen, last_seen,
                       suppressed_by, drill, actor, origin, evidence, route)
SELECT d, g, k, sv, t, src, f, l, sup, dr, a, o, ev, string_to_array(r, ',')
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[],
            $8::timestamptz[], $9::text[], $10::text[], $11::jsonb[], $12::jsonb[], $13::jsonb[], $14::text[])
     AS n(d, g, k, sv, t, src, f, l, sup, dr, a, o, ev, r)
RETURNING id, group_key
"""

_INSERT_EVENTS = """
INSERT INTO events (key, kind, source, canary_id, group_key, severity, observed_at, detected_at,
                    actor, origin, evidence, drill, suppressed_by, incident_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[],
                     $7::timestamptz[], $8::timestamptz[], $9::jsonb[], $10::jsonb[], $11::jsonb[],
                     $12::text[], $13::text[], $14::bigint[])
ON CONFLICT (key) DO NOTHING
RETURNING key
"""

_GROW_INCIDENTS = """
WITH d AS (SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[], $4::int[], $5::bool[])
                    AS d(id, last, first, n, all_sup)),
     c AS (SELECT i AS id, array_agg(DISTINCT c) AS ids FROM unnest($6::bigint[], $7::bigint[]) AS x(i, c) GROUP BY i)
UPDATE incidents SET
    last_seen = greatest(incidents.last_seen, d.last),
    first_seen = least(incidents.first_seen, d.first),
    event_count = incidents.event_count + d.n,
    canary_ids = CASE WHEN c.ids IS NULL THEN incidents.canary_ids
                      WHEN cardinality(incidents.canary_ids) = 0 THEN c.ids
                      ELSE ARRAY(SELECT DISTINCT u FROM unnest(incidents.canary_ids || c.ids) AS u ORDER BY 1) END,
    suppressed_by = CASE WHEN d.all_sup THEN incidents.suppressed_by ELSE NULL END
FROM d LEFT JOIN c ON c.id = d.id
WHERE incidents.id = d.id
"""

_INCIDENTS_FOR_ENQUEUE = """
SELECT i.*, (SELECT max(o.sequence) FROM outbox o WHERE o.incident_id = i.id) AS last_seq
FROM incidents i WHERE i.id = ANY($1::bigint[]) ORDER BY i.id
"""

INSERT_OUTBOX = """
INSERT INTO outbox (incident_id, sink, sequence, action, payload)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[], $5::jsonb[])
ON CONFLICT DO NOTHING
"""

_MARK_PAGED = """
UPDATE incidents SET paged_level = x.level, suppressed_by = CASE WHEN x.lift THEN NULL ELSE suppressed_by END
FROM unnest($1::bigint[], $2::int[], $3::bool[]) AS x(id, level, lift)
WHERE incidents.id = x.id
"""


def _merged(members: Sequence[DetectionEvent]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Who/where/evidence of an incident: the first non-empty value of each key across its events
    (parallel-worker reads lack the client address that the leader's read has)."""
    actor: dict[str, Any] = {}
    origin: dict[str, Any] = {}
    evidence: dict[str, Any] = {}
    for e in members:
        for target, src in ((actor, e.actor), (origin, e.origin), (evidence, e.evidence)):
            for k, v in src.items():
                if v not in (None, "") and k not in target:
                    target[k] = v
    return actor, origin, evidence
