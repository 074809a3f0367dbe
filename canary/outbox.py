"""Delivery from the durable outbox to sinks: at-least-once, with backoff, Retry-After and dead letters.

A dispatcher claims due rows with ``FOR UPDATE SKIP LOCKED`` and leases them by pushing
``next_attempt_at`` past the send timeout, then sends outside the transaction. If the process dies
mid-send, the lease expires and any dispatcher (this one after a restart, or another listener) sends
again; the alert's dedup key makes that idempotent at PagerDuty/Opsgenie and the ``webhook-id`` at
webhook receivers. Notifications of one incident reach a sink in sequence order.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import asyncpg
import structlog

from canary.alerts import Alert
from canary.config import AlertingConfig
from canary.errors import DeliveryError
from canary.events import DetectionEvent, EventKind, Severity, event_key
from canary.metrics import Metrics
from canary.pipeline import DEAD_LETTER_SOURCE, OUTBOX_CHANNEL
from canary.typing import Sink

log = structlog.get_logger("canary.outbox")

#: Called with (sink, alert, error) when a notification is dead-lettered.
OnDead = Callable[[str, Alert, DeliveryError], Awaitable[None]]

_CLAIM = """
WITH due AS (
    SELECT o.id FROM outbox o
    WHERE o.status = 'pending' AND o.next_attempt_at <= clock_timestamp() AND o.sink = ANY($1::text[])
      AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.incident_id = o.incident_id AND p.sink = o.sink
                      AND p.sequence < o.sequence AND p.status = 'pending')
    ORDER BY o.next_attempt_at, o.id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox o SET attempts = o.attempts + 1,
                    next_attempt_at = clock_timestamp() + make_interval(secs => $3),
                    first_attempt_at = coalesce(o.first_attempt_at, clock_timestamp())
FROM due WHERE o.id = due.id
RETURNING o.id, o.sink, o.payload, o.attempts, o.first_attempt_at, o.created_at
"""


_MARK_DELIVERED = (
    "BEGIN; SET LOCAL synchronous_commit = off; "
    "UPDATE outbox SET status = 'delivered', delivered_at = clock_timestamp(), last_error = NULL WHERE id = {id}; "
    "COMMIT"
)


def backoff(attempts: int, initial: float, maximum: float, retry_after: float | None, rng: random.Random) -> float:
    """Exponential backoff with full jitter in [base/2, base], never sooner than Retry-After."""
    base = min(maximum, initial * (2.0 ** max(attempts - 1, 0)))
    delay = base / 2 + rng.random() * base / 2
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


@dataclass
class DispatchStats:
    delivered: int = 0
    failed_attempts: int = 0
    dead: int = 0
    latencies: list[float] = field(default_factory=list)  # created_at -> delivered, seconds (bounded)
    by_sink: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))


class Dispatcher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        sinks: Mapping[str, Sink],
        config: AlertingConfig,
        *,
        batch: int = 50,
        poll: float = 1.0,
        on_dead: OnDead | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.pool = pool
        self.sinks = dict(sinks)
        self.config = config
        self.batch = batch
        self.poll = poll
        self.on_dead = on_dead
        self.metrics = metrics
        self.stats = DispatchStats()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._listen_conn: asyncpg.Connection | None = None
        self._stopping = False
        self._rng = random.Random()
        self._sem = asyncio.Semaphore(max(config.workers, 1) * 8)
        self._paused: dict[str, float] = {}  # sink -> loop time until which it asked us to hold off

    @property
    def send_deadline(self) -> float:
        """How long one send may take before it counts as failed."""
        return self.config.sink_timeout * 1.2 + 0.5

    @property
    def lease(self) -> float:
        """How long a claimed row is invisible to other dispatchers: past the send deadline with room
        for recording the outcome, so a live dispatcher never loses its lease mid-send, and a dead
        one's rows are picked up again soon after."""
        return self.send_deadline * 2 + 5.0

    async def start(self) -> None:
        if not self.sinks:
            return
        self._listen_conn = await self.pool.acquire()
        await self._listen_conn.add_listener(OUTBOX_CHANNEL, self._notified)
        self._tasks = [asyncio.create_task(self._loop(i), name=f"dispatcher-{i}") for i in range(self.config.workers)]

    async def stop(self, grace: float = 5.0) -> None:
        self._stopping = True
        self._wake.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for t in pending:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []
        if self._listen_conn is not None:
            try:
                await self._listen_conn.remove_listener(OUTBOX_CHANNEL, self._notified)
            except (asyncpg.PostgresError, asyncpg.InterfaceError):
                pass
            await self.pool.release(self._listen_conn)
            self._listen_conn = None

    def wake(self) -> None:
        self._wake.set()

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def _loop(self, worker: int) -> None:
        while not self._stopping:
            try:
                n = await self.run_once()
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
                log.error("outbox.claim_failed", error=str(exc), worker=worker)
                n = 0
                await asyncio.sleep(self.poll)
            except Exception:  # noqa: BLE001 - a worker must outlive any bug: claimed rows come back when their lease ends
                try:
                    log.exception("outbox.worker_error", worker=worker)
                except Exception:  # noqa: BLE001 - even a broken log stream must not stop delivery
                    pass
                n = 0
                await asyncio.sleep(self.poll)
            if n == 0 and not self._stopping:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self.poll)
                except asyncio.TimeoutError:
                    pass

    async def run_once(self) -> int:
        """Claim and deliver one batch of due notifications; returns how many were claimed."""
        lease = self.lease
        active = [s for s in self.sinks if not self._paused_for(s)]
        if not active:
            return 0
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(_CLAIM, active, self.batch, lease)
        if rows:
            await asyncio.gather(*(self._deliver(r) for r in rows))
        return len(rows)

    async def _deliver(self, row: asyncpg.Record) -> None:
        sink = self.sinks[row["sink"]]
        alert = Alert.from_json(row["payload"])
        async with self._sem:
            hold = self._paused_for(row["sink"])
            if hold:  # a sibling in this batch was told 429 / Retry-After: do not hammer the sink
                await self._defer(row, hold)
                return
            try:
                await asyncio.wait_for(sink.send(alert), self.send_deadline)
            except DeliveryError as exc:
                await self._failed(row, alert, exc)
                return
            except asyncio.TimeoutError:
                await self._failed(row, alert, DeliveryError(row["sink"], "send timed out"))
                return
            except Exception as exc:  # a sink bug must not lose the alert: record and retry
                log.exception("outbox.sink_crashed", sink=row["sink"], outbox_id=row["id"])
                await self._failed(row, alert, DeliveryError(row["sink"], f"sink raised {type(exc).__name__}"))
                return
        async with self.pool.acquire() as conn:
            # One round trip, without waiting for the WAL flush: if this mark is lost in a crash the
            # notification is sent again, which the dedup key / webhook-id makes harmless.
            await conn.execute(_MARK_DELIVERED.format(id=int(row["id"])))
        self.stats.delivered += 1
        self._count(row["sink"], "delivered")
        latency = (dt.datetime.now(dt.timezone.utc) - row["created_at"]).total_seconds()
        if len(self.stats.latencies) < 100_000:
            self.stats.latencies.append(latency)
        log.info("outbox.delivered", sink=row["sink"], incident_id=alert.incident_id, sequence=alert.sequence,
                 attempts=row["attempts"], latency_s=round(latency, 4))

    def _count(self, sink: str, outcome: str) -> None:
        self.stats.by_sink[sink][outcome] += 1
        if self.metrics is not None:
            self.metrics.deliveries.labels(sink=sink, outcome=outcome).inc()

    def _paused_for(self, sink: str) -> float:
        """Seconds this sink still asked us to wait (0 when it may be called)."""
        until = self._paused.get(sink)
        if until is None:
            return 0.0
        left = until - asyncio.get_running_loop().time()
        if left <= 0:
            del self._paused[sink]
            return 0.0
        return left

    async def _defer(self, row: asyncpg.Record, delay: float) -> None:
        """Hand a claimed row back unsent (not counted as an attempt) until the sink's pause ends."""
        async with self.pool.acquire() as conn:
            await conn.execute(
                "UPDATE outbox SET attempts = greatest(attempts - 1, 0),"
                " next_attempt_at = clock_timestamp() + make_interval(secs => $2) WHERE id = $1",
                row["id"], delay,
            )
        self._count(row["sink"], "deferred")

    async def _failed(self, row: asyncpg.Record, alert: Alert, exc: DeliveryError) -> None:
        self.stats.failed_attempts += 1
        self._count(row["sink"], "failed")
        age = (dt.datetime.now(dt.timezone.utc) - row["first_attempt_at"]).total_seconds()
        dead = exc.permanent or age >= self.config.dead_letter_after
        delay = backoff(row["attempts"], self.config.retry_initial, self.config.retry_max, exc.retry_after, self._rng)
        if not dead and (exc.retry_after is not None or exc.status == 429):
            # the receiver is throttling this integration: hold every notification for it, not just this one
            until = asyncio.get_running_loop().time() + delay
            self._paused[row["sink"]] = max(self._paused.get(row["sink"], 0.0), until)
        async with self.pool.acquire() as conn:
            await conn.execute(
                """
                UPDATE outbox SET status = CASE WHEN $2 THEN 'dead' ELSE 'pending' END,
                       next_attempt_at = clock_timestamp() + make_interval(secs => $3), last_error = $4
                WHERE id = $1
                """,
                row["id"], dead, delay, exc.message[:1000],
            )
        log.warning("outbox.delivery_failed", sink=row["sink"], incident_id=alert.incident_id, attempts=row["attempts"],
                    error=exc.message[:300], retry_in_s=None if dead else round(delay, 2), dead=dead)
        if dead:
            self.stats.dead += 1
            self._count(row["sink"], "dead")
            if self.on_dead is not None:
                await self.on_dead(row["sink"], alert, exc)


def dead_letter_event(sink: str, alert: Alert, error: DeliveryError) -> DetectionEvent:
    """The HEALTH event about a notification that could not be delivered to ``sink`` (the pipeline
    routes it to every other sink)."""
    now = dt.datetime.now(dt.timezone.utc)
    return DetectionEvent(
        kind=EventKind.HEALTH, source=DEAD_LETTER_SOURCE, key=event_key("dead", sink, alert.dedup_key, alert.sequence),
        group=f"outbox-dead:{sink}", canary_id=None, observed_at=now, severity=Severity.ERROR,
        actor={"sink": sink}, evidence={"incident_id": alert.incident_id, "error": error.message[:300],
                                         "title": alert.title},
    )


def report_dead_letters(submit: Callable[[DetectionEvent], Awaitable[None]]) -> OnDead:
    """An ``on_dead`` handler: a notification that could not be delivered is itself an incident,
    submitted through ``submit`` (to the other sinks). Never raises."""

    async def on_dead(sink: str, alert: Alert, error: DeliveryError) -> None:
        try:
            await submit(dead_letter_event(sink, alert, error))
        except Exception:  # noqa: BLE001 - already logged by the dispatcher; keep running
            log.exception("outbox.dead_letter_event_failed", sink=sink)

    return on_dead
