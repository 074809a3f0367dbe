"""Delivery from the durable outbox to sinks: at-least-once, with backoff, Retry-After and dead letters.

A dispatcher claims due rows with ``FOR UPDATE SKIP LOCKED`` and leases them by pushing
``next_attempt_at`` past the send timeout, then sends outside the transaction. If the process dies
mid-send, the lease expires and any dispatcher (this one after a restart, or another listener) sends
again; the alert's dedup key makes that idempotent at PagerDuty/Opsgenie and the ``webhook-id`` at
webhook receivers. Notifications of one incident reach a sink in sequence order.

With several listeners every one runs a dispatcher on the same outbox. A row is sent by one of them
at a time (its lease); the guarantee is at-least-once, not exactly-once: a listener that dies after
the sink answered but before it marked the row leaves the row to be sent again when the lease ends,
and the receiver's dedup (PagerDuty ``dedup_key``, Opsgenie alias, Standard Webhooks ``webhook-id``)
makes that one page. ``attempts`` fences a lease: a dispatcher whose lease ended (a paused process)
cannot record a failure or hand back a row another dispatcher has claimed since (a delivery is still
recorded: it happened).

A sink that throttles (429, or any answer with Retry-After) is paced (:class:`Pace`): nothing is sent
to it until the pause ends, then exactly one probe; each round of requests that all succeed lets the
next round, at least ``pace_interval`` later, hold twice as many (slow start: 1, 2, 4, ...), until a
round of ``pace_limit`` succeeds and the sink is unpaced. Another 429 pauses it again and starts over
with a probe. Rows are claimed for a paced sink only as many as its round has room for, so a pause
never ends in a burst of everything that queued up during it. Pacing is per dispatcher process.
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
from canary.enrich import Enricher
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


_PENDING = "SELECT EXISTS (SELECT 1 FROM outbox WHERE sink = $1 AND status = 'pending')"

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


#: Seconds between the starts of two rounds of a paced sink, and the round size that ends pacing.
PACE_INTERVAL = 1.0
PACE_LIMIT = 32


@dataclass
class Pace:
    """The slow start of one throttled sink: the current round may send ``size`` requests, starting
    at ``start`` (loop time). A round ends when each request sent in it has an outcome and either it
    sent ``size`` or nothing is left pending for the sink."""

    start: float
    size: int = 1
    sent: int = 0  # claimed in this round (reserved before the claim)
    ok: int = 0
    failed: int = 0
    claimed_at: float = 0.0  # loop time of the round's last claim
    drained: bool = False  # a claim of this round found nothing pending for the sink

    def room(self, now: float) -> int:
        return 0 if now < self.start else self.size - self.sent

    @property
    def outstanding(self) -> int:
        return self.sent - self.ok - self.failed


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
        pace_interval: float = PACE_INTERVAL,
        pace_limit: int = PACE_LIMIT,
        enricher: Enricher | None = None,
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
        self.pace_interval = pace_interval
        self.pace_limit = max(pace_limit, 1)
        self._pace: dict[str, Pace] = {}  # throttled sinks and their slow start
        self.enricher = enricher  # what is known about the client address, added just before each send

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
                    await asyncio.wait_for(self._wake.wait(), self._idle())
                except asyncio.TimeoutError:
                    pass

    async def run_once(self) -> int:
        """Claim and deliver one batch of due notifications; returns how many were claimed. Sinks that
        are not paced share one claim of up to ``batch`` rows; a paced sink gets its own claim of at
        most the room left in its round, reserved before the claim."""
        lease = self.lease
        now = asyncio.get_running_loop().time()
        claims: list[tuple[list[str], int, Pace | None]] = []
        free = [s for s in self.sinks if s not in self._pace]
        if free:
            claims.append((free, self.batch, None))
        for sink, pace in list(self._pace.items()):
            self._expire_round(sink, pace, now)
            room = pace.room(now)
            if room > 0:
                pace.sent += room  # reserved now: another worker's run_once cannot take the same room
                pace.claimed_at = now
                claims.append(([sink], room, pace))
        if not claims:
            return 0
        rows: list[tuple[asyncpg.Record, Pace | None]] = []
        done: set[int] = set()  # claims made (index in claims)
        try:
            async with self.pool.acquire() as conn:
                for i, (sinks, limit, ticket) in enumerate(claims):
                    got = await conn.fetch(_CLAIM, sinks, limit, lease)
                    done.add(i)
                    rows += [(r, ticket) for r in got]
                    if ticket is not None and len(got) < limit:
                        ticket.sent -= limit - len(got)  # give back the room there was nothing to claim for
                        ticket.drained = not await conn.fetchval(_PENDING, sinks[0])
        finally:
            for i, (_, limit, ticket) in enumerate(claims):
                if ticket is not None and i not in done:  # the claim failed: nothing was taken
                    ticket.sent = max(ticket.sent - limit, 0)
        for sinks, _, ticket in claims:
            if ticket is not None:
                self._round_done(sinks[0], ticket, asyncio.get_running_loop().time())
        if rows:
            await asyncio.gather(*(self._deliver(r, ticket) for r, ticket in rows))
        return len(rows)

    def _idle(self) -> float:
        """How long an idle worker waits for a NOTIFY: the poll interval, or less when a paced sink's
        next round starts sooner."""
        now = asyncio.get_running_loop().time()
        starts = [p.start - now for p in self._pace.values() if p.start > now]
        return max(min([self.poll, *starts]), 0.01)

    def _expire_round(self, sink: str, pace: Pace, now: float) -> None:
        """A round whose requests never got an outcome (a worker died between claim and send: the rows
        come back when their lease ends) is closed as failed, so the sink is not held forever."""
        if pace.outstanding > 0 and now - pace.claimed_at > self.lease:
            log.warning("outbox.pace_round_lost", sink=sink, lost=pace.outstanding)
            pace.failed += pace.outstanding
            self._round_done(sink, pace, now)

    def _round_done(self, sink: str, pace: Pace, now: float) -> None:
        """End the round if it is over: unpace the sink after a clean round of ``pace_limit`` or with
        nothing left to send; else the next round, twice as large after a clean one."""
        if self._pace.get(sink) is not pace or pace.outstanding > 0 or not (pace.sent >= pace.size or pace.drained):
            return
        if pace.failed == 0 and (pace.drained or pace.size >= self.pace_limit):
            del self._pace[sink]
            log.info("outbox.sink_unpaced", sink=sink)
            self._wake.set()
            return
        if pace.sent == 0:  # drained before its first request, after a failure: nothing to learn
            pace.drained = False
            return
        size = pace.size * 2 if pace.failed == 0 else pace.size
        pace.start, pace.size = max(now, pace.start + self.pace_interval), size
        pace.sent = pace.ok = pace.failed = 0
        pace.drained = False
        self._wake.set()

    def _outcome(self, sink: str, pace: Pace | None, ok: bool) -> None:
        """Count a paced request's outcome in its round (a round of a pace since replaced is ignored)."""
        if pace is None or self._pace.get(sink) is not pace:
            return
        if ok:
            pace.ok += 1
        else:
            pace.failed += 1
        self._round_done(sink, pace, asyncio.get_running_loop().time())

    async def _deliver(self, row: asyncpg.Record, pace: Pace | None = None) -> None:
        sink = self.sinks[row["sink"]]
        alert = Alert.from_json(row["payload"])
        async with self._sem:
            hold = self._held(row["sink"], pace)
            if hold:  # the sink throttled since this row was claimed: do not hammer it
                await self._defer(row, hold)
                return
            alert = await self._enriched(alert)
            try:
                await asyncio.wait_for(sink.send(alert), self.send_deadline)
            except DeliveryError as exc:
                await self._failed(row, alert, exc, pace)
                return
            except asyncio.TimeoutError:
                await self._failed(row, alert, DeliveryError(row["sink"], "send timed out"), pace)
                return
            except Exception as exc:  # a sink bug must not lose the alert: record and retry
                log.exception("outbox.sink_crashed", sink=row["sink"], outbox_id=row["id"])
                await self._failed(row, alert, DeliveryError(row["sink"], f"sink raised {type(exc).__name__}"), pace)
                return
        self._outcome(row["sink"], pace, ok=True)
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

    async def _enriched(self, alert: Alert) -> Alert:
        """``alert`` with its enrichment (kept if it already has one). Enrichment is decoration: it gets
        at most ``rdns_timeout`` (plus a little), and a failure sends the alert as it is."""
        if self.enricher is None or alert.enrichment:
            return alert
        try:
            return await asyncio.wait_for(self.enricher.enrich_alert(alert), self.enricher.timeout + 0.25)
        except asyncio.TimeoutError:
            log.warning("outbox.enrichment_timed_out", incident_id=alert.incident_id)
        except Exception:  # noqa: BLE001 - never let decoration cost a delivery
            log.exception("outbox.enrichment_failed", incident_id=alert.incident_id)
        return alert

    def _count(self, sink: str, outcome: str) -> None:
        self.stats.by_sink[sink][outcome] += 1
        if self.metrics is not None:
            self.metrics.deliveries.labels(sink=sink, outcome=outcome).inc()

    def _held(self, sink: str, pace: Pace | None) -> float:
        """Seconds a row claimed under ``pace`` (None: claimed unpaced) must wait before it may be sent:
        0 unless the sink was throttled after the claim (its pace is not the one the row was claimed
        under). A row deferred this way is handed back and claimed again within a round."""
        current = self._pace.get(sink)
        if current is None or current is pace:
            return 0.0
        return max(current.start - asyncio.get_running_loop().time(), self.pace_interval, 0.05)

    async def _defer(self, row: asyncpg.Record, delay: float) -> None:
        """Hand a claimed row back unsent (not counted as an attempt) until the sink's pause ends."""
        async with self.pool.acquire() as conn:
            await conn.execute(
                "UPDATE outbox SET attempts = greatest(attempts - 1, 0),"
                " next_attempt_at = clock_timestamp() + make_interval(secs => $2)"
                " WHERE id = $1 AND attempts = $3 AND status = 'pending'",  # still our lease
                row["id"], delay, row["attempts"],
            )
        self._count(row["sink"], "deferred")

    async def _failed(self, row: asyncpg.Record, alert: Alert, exc: DeliveryError, pace: Pace | None = None) -> None:
        self.stats.failed_attempts += 1
        self._count(row["sink"], "failed")
        age = (dt.datetime.now(dt.timezone.utc) - row["first_attempt_at"]).total_seconds()
        dead = exc.permanent or age >= self.config.dead_letter_after
        delay = backoff(row["attempts"], self.config.retry_initial, self.config.retry_max, exc.retry_after, self._rng)
        if not dead and (exc.retry_after is not None or exc.status == 429):
            # the receiver is throttling this integration: hold every notification for it, then probe
            self._throttled(row["sink"], delay)
        else:
            self._outcome(row["sink"], pace, ok=False)
        async with self.pool.acquire() as conn:
            ours = await conn.fetchval(
                """
                UPDATE outbox SET status = CASE WHEN $2 THEN 'dead' ELSE 'pending' END,
                       next_attempt_at = clock_timestamp() + make_interval(secs => $3), last_error = $4
                WHERE id = $1 AND attempts = $5 AND status = 'pending'
                RETURNING true
                """,
                row["id"], dead, delay, exc.message[:1000], row["attempts"],
            )
        if not ours:  # our lease ended and another dispatcher claimed (or delivered) the row since
            log.warning("outbox.lease_lost", sink=row["sink"], incident_id=alert.incident_id, attempts=row["attempts"])
            return
        log.warning("outbox.delivery_failed", sink=row["sink"], incident_id=alert.incident_id, attempts=row["attempts"],
                    error=exc.message[:300], retry_in_s=None if dead else round(delay, 2), dead=dead)
        if dead:
            self.stats.dead += 1
            self._count(row["sink"], "dead")
            if self.on_dead is not None:
                await self.on_dead(row["sink"], alert, exc)


    def _throttled(self, sink: str, delay: float) -> None:
        """Pause ``sink`` for ``delay`` seconds, then slow-start it from one probe (a later pause end
        already set is kept: two 429s in flight together pause once)."""
        until = asyncio.get_running_loop().time() + delay
        current = self._pace.get(sink)
        if current is not None and current.size == 1 and current.sent == 0 and current.start >= until:
            return
        self._pace[sink] = Pace(start=until)
        log.warning("outbox.sink_throttled", sink=sink, pause_s=round(delay, 2))


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
