"""The event feed: every committed event to the sinks that take events (SIEMs, :class:`canary.typing.EventSink`),
in commit-safe order, at least once, nothing lost.

Incidents reach SIEM sinks through the outbox like every sink (a Detection Finding per notification);
the events behind them come here. Per sink, one listener at a time (lease ``feed:<sink>``) reads the
events past the sink's cursor (``canary/store/feed.py``: ordered by inserting transaction and id, never
past a transaction still running), sends them in batches of the sink's ``event_batch`` and moves the
cursor only after the sink accepted the batch, compare-and-set so a listener whose lease lapsed cannot
move it. A listener killed mid-send resends that batch: ``StoredEvent.id`` is the receiver's idempotency
key (Elasticsearch ``_id``, Security Lake object name) or the documented duplicate (Splunk HEC, Sentinel).

Failures:
* retryable (timeouts, 429 with Retry-After, 5xx): the same batch again after backoff; nothing is
  dropped however long the sink is down. Past ``alerting.dead_letter_after`` one HEALTH event per episode
  says the sink has not taken events since when.
* permanent for a batch: the batch is split in halves until the refused events stand alone. A lone
  event the sink refuses while it accepted others is a poison event: recorded in ``feed_dead`` (with a
  HEALTH event) and passed. A refusal of the caller (401 / 403 / 404: a revoked token, a deleted index) is
  never split. When the sink accepts nothing, nothing is
  passed: the feed holds its cursor, backs off to ``retry_max`` and reports it once, and resumes where it
  stopped once the sink is fixed.

Held back: the feed never passes a transaction still running, so one left open on the control store's server
(by anyone who can write there, or a forgotten PREPARE TRANSACTION) holds every feed back; events are
delayed, never lost, and paging does not wait for the feed. Committed events held back longer than
``alerting.feed_held_after`` raise one HEALTH event per holding transaction, naming its session.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence

import asyncpg
import structlog

from canary import tasks
from canary.config import AlertingConfig
from canary.enrich import Enricher
from canary.errors import DeliveryError
from canary.events import DetectionEvent, EventKind, Severity, StoredEvent, event_key
from canary.metrics import Metrics
from canary.outbox import backoff
from canary.pipeline import EVENTS_CHANNEL
from canary.store import feed as store
from canary.store import leases
from canary.typing import EventSink, Sink

log = structlog.get_logger("canary.feed")

#: statuses that refuse the caller, not the data (a revoked token, a deleted index): the batch is held whole
SINK_REFUSALS = frozenset({401, 403, 404})

FEED_SOURCE = "feed"  # source of HEALTH events about the feed itself (never reported about again)

Submit = Callable[[DetectionEvent], Awaitable[None]]


def event_sinks(sinks: Mapping[str, Sink]) -> dict[str, EventSink]:
    """The sinks that take events (and have not turned the feed off)."""
    return {name: s for name, s in sinks.items() if isinstance(s, EventSink) and s.events != "none"}


class _Refused(Exception):
    """Every event of a batch was refused for good and none accepted: the sink is broken, not the data."""

    def __init__(self, error: DeliveryError) -> None:
        super().__init__(error.message)
        self.error = error


class EventFeed:
    def __init__(self, pool: asyncpg.Pool, sinks: Mapping[str, Sink], config: AlertingConfig, *, holder: str,
                 submit: Submit | None = None, metrics: Metrics | None = None, poll: float = 1.0,
                 enricher: Enricher | None = None) -> None:
        self.pool = pool
        self.sinks = event_sinks(sinks)
        self.config = config
        self.holder = holder
        self.submit = submit
        self.metrics = metrics
        self.poll = poll
        self.enricher = enricher
        self.delivered: dict[str, int] = {name: 0 for name in self.sinks}
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self._wake: dict[str, asyncio.Event] = {}  # per sink: events were committed since it last looked
        self._listen_conn: asyncpg.Connection | None = None
        self._rng = random.Random()
        self._held_checked = 0.0  # loop time of the last look for events held back (one look serves every sink)
        self._held_reported: set[str] = set()  # holding transactions reported (bounded: cleared when nothing is held)

    @property
    def lease(self) -> float:
        """How long a feed's lease lasts: past a whole send with room for the cursor write."""
        return self.config.sink_timeout * 2.4 + 10.0

    async def start(self) -> None:
        self._stop.clear()
        if not self.sinks:
            return
        try:  # woken when the pipeline commits events (else it looks every poll)
            self._listen_conn = await self.pool.acquire()
            await self._listen_conn.add_listener(EVENTS_CHANNEL, self._notified)
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
            log.warning("feed.listen_failed", error=type(exc).__name__)
            await self._release_listen()
        self._tasks = [asyncio.create_task(self._run(name, sink), name=f"feed-{name}") for name, sink in self.sinks.items()]

    def _notified(self, *_: object) -> None:
        for wake in self._wake.values():
            wake.set()

    async def _release_listen(self) -> None:
        conn, self._listen_conn = self._listen_conn, None
        if conn is None:
            return
        try:
            await conn.remove_listener(EVENTS_CHANNEL, self._notified)
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
            pass
        await self.pool.release(conn)

    async def _idle(self, name: str, delay: float) -> bool:
        """Wait ``delay`` seconds, or less when events are committed meanwhile; whether the feed stops."""
        wake = self._wake.setdefault(name, asyncio.Event())
        stop = asyncio.ensure_future(self._stop.wait())
        woken = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait((stop, woken), timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            woken.cancel()
        wake.clear()
        return self._stop.is_set()

    async def stop(self, grace: float = 5.0) -> None:
        self._stop.set()
        await self._release_listen()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for t in pending:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []
        for name in self.sinks:
            try:
                await asyncio.wait_for(leases.release(self.pool, f"feed:{name}", self.holder), 2.0)
            except Exception:  # noqa: BLE001 - shutting down: the lease expires by itself
                pass

    async def _run(self, name: str, sink: EventSink) -> None:
        failures = 0
        reported = False  # this failure episode was reported
        while not self._stop.is_set():
            delay = self.poll
            try:
                moved = await self.run_once(name, sink)
                failures, reported = 0, False
                delay = 0.0 if moved else self.poll
            except (DeliveryError, _Refused) as exc:
                error = exc.error if isinstance(exc, _Refused) else exc
                failures += 1
                delay = backoff(failures, self.config.retry_initial, self.config.retry_max, error.retry_after, self._rng)
                if isinstance(exc, _Refused):
                    delay = max(delay, min(self.config.retry_max, 60.0))
                reported = await self._failing(name, error, refused=isinstance(exc, _Refused), reported=reported)
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
                log.error("feed.store_failed", sink=name, error=type(exc).__name__)
            except Exception:  # noqa: BLE001 - the feed must outlive any bug: the cursor did not move
                log.exception("feed.worker_error", sink=name)
            if delay > 0 and await (self._idle(name, delay) if failures == 0 else tasks.wait_or_stop(self._stop, delay)):
                return

    async def run_once(self, name: str, sink: EventSink) -> int:
        """Deliver the next batch if this listener holds the sink's lease; how many events the cursor
        passed (0: nothing new, or another listener feeds this sink)."""
        if not await leases.acquire(self.pool, f"feed:{name}", self.holder, self.lease):
            return 0
        cursor = await store.start(self.pool, name)
        batch, end = await store.read(self.pool, cursor, sink.event_batch)
        wanted = await self._enriched([e for _, e in batch if sink.events == "all" or e.suppressed_by is None])
        dead: list[tuple[StoredEvent, DeliveryError]] = []
        if wanted:
            await self._deliver(name, sink, wanted, dead)
        if dead:
            await store.dead(self.pool, name, [e.id for e, _ in dead], dead[0][1].message)
            for e, err in dead:
                log.error("feed.event_refused", sink=name, event_id=e.id, error=err.message[:300])
                await self._report_dead(name, e, err)
        if len(batch) < sink.event_batch:  # the read reached the horizon: is anything waiting behind it?
            await self._look_for_held()
        if (end.txid, end.id) == (cursor.txid, cursor.id):
            return 0
        if not await store.advance(self.pool, name, cursor, end, len(wanted) - len(dead)):
            log.warning("feed.cursor_moved_elsewhere", sink=name)
            return 0
        self.delivered[name] = self.delivered.get(name, 0) + len(wanted) - len(dead)
        if self.metrics is not None and wanted:
            self.metrics.deliveries.labels(sink=name, outcome="event_delivered").inc(len(wanted) - len(dead))
        return len(batch)  # 0 when only the horizon moved (this feed's own writes move it): wait the poll

    async def _look_for_held(self) -> None:
        """Report committed events held back past ``feed_held_after`` by a transaction still running: one
        HEALTH event per holding transaction (keyed by its start and session, so every sink and listener
        reporting it makes one event), naming the session as far as the store's role may see it."""
        now = asyncio.get_running_loop().time()
        if now - self._held_checked < min(5.0, self.config.feed_held_after / 4):
            return
        self._held_checked = now
        found = await store.held(self.pool)
        if found is None:
            self._held_reported.clear()
            return
        if found.seconds < self.config.feed_held_after:
            return
        holder = found.holder
        who = str(holder.get("gid") or holder.get("pid") or "unknown")
        key = event_key("feed-held", who, str(holder.get("xact_start") or holder.get("prepared") or ""))
        if key in self._held_reported:
            return
        if len(self._held_reported) >= 1000:  # holders that keep taking over from one another: forget the oldest
            self._held_reported.clear()
        self._held_reported.add(key)
        what = (f"prepared transaction {holder['gid']!r}" if "gid" in holder else
                f"session pid {holder['pid']} ({holder.get('usename', '?')}@{holder.get('client_addr') or 'local'}, "
                f"application {holder.get('application_name', '')!r})" if "pid" in holder else
                "a transaction this role cannot see")
        log.warning("feed.held_back", waiting=found.waiting, seconds=round(found.seconds), **{
            k: v for k, v in holder.items() if k in ("pid", "usename", "application_name", "client_addr", "gid")})
        await self._health(key, "held", f"SIEM feeds held back {int(found.seconds)} s by a transaction left open "
                           f"on the control store's server: {what}; {found.waiting} events wait (kept, sent when it ends)",
                           {"waiting": found.waiting, "held_for_s": round(found.seconds, 1), "holder": holder},
                           actor={a: holder[k] for k, a in (("usename", "user"), ("prepared_by", "user"), ("pid", "pid"),
                                                            ("application_name", "application_name"), ("gid", "gid"))
                                  if k in holder},
                           origin={"client_addr": holder["client_addr"]} if holder.get("client_addr") else None)

    async def _enriched(self, events: list[StoredEvent]) -> list[StoredEvent]:
        """``events`` with what is known about their client addresses: one lookup per address of the
        batch (cached across batches), all within one ``rdns_timeout``; a lookup that fails or takes
        longer leaves its events as they are (a SIEM gets the event late never)."""
        if self.enricher is None or not events:
            return events
        addresses = {e.event.origin.get("client_addr") for e in events} - {None, ""}
        if not addresses:
            return events
        keys = list(addresses)
        try:
            found = await asyncio.wait_for(
                asyncio.gather(*(self.enricher.enrich(a) for a in keys)), self.enricher.timeout + 0.25)
        except Exception:  # noqa: BLE001 - enrichment is a nicety: never hold the feed for it
            return events
        known = {a: f for a, f in zip(keys, found, strict=True) if f}
        return [dataclasses.replace(e, enrichment=known[a]) if (a := e.event.origin.get("client_addr")) in known else e
                for e in events]

    async def _deliver(self, name: str, sink: EventSink, events: Sequence[StoredEvent],
                       dead: list[tuple[StoredEvent, DeliveryError]]) -> None:
        """Send ``events``; a permanent refusal splits the batch until the refused events stand alone
        (collected in ``dead`` when the sink accepted any other event of the batch, else the whole
        batch is held: :class:`_Refused`). Retryable errors propagate: the whole batch is sent again."""
        accepted = await self._send_split(name, sink, events, dead)
        if dead and not accepted:
            raise _Refused(dead[0][1])

    async def _send_split(self, name: str, sink: EventSink, events: Sequence[StoredEvent],
                          dead: list[tuple[StoredEvent, DeliveryError]]) -> int:
        try:
            await asyncio.wait_for(sink.send_events(events), self.config.sink_timeout * 1.2 + 0.5)
            return len(events)
        except asyncio.TimeoutError:
            raise DeliveryError(name, "send timed out") from None
        except DeliveryError as exc:
            if not exc.permanent:
                raise
            if exc.status in SINK_REFUSALS:  # the sink refuses us, not these events: splitting would only hammer it
                raise _Refused(exc) from None
            if len(events) == 1:
                dead.append((events[0], exc))
                return 0
            half = len(events) // 2
            left = await self._send_split(name, sink, events[:half], dead)
            return left + await self._send_split(name, sink, events[half:], dead)
        except Exception as exc:  # a sink bug: retried like a transient failure, the batch is kept
            log.exception("feed.sink_crashed", sink=name)
            raise DeliveryError(name, f"sink raised {type(exc).__name__}") from None

    async def _failing(self, name: str, error: DeliveryError, *, refused: bool, reported: bool) -> bool:
        """Record the failure; report the episode once it is old enough (refused: at once). Whether
        the episode has been reported."""
        log.warning("feed.delivery_failed", sink=name, error=error.message[:300], refused=refused)
        if self.metrics is not None:
            self.metrics.deliveries.labels(sink=name, outcome="event_failed").inc()
        try:
            await store.failing(self.pool, name, error.message)
            since = await self.pool.fetchval("SELECT failing_since FROM feed_cursors WHERE sink = $1", name)
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
            return reported
        if reported or since is None or self.submit is None:
            return reported
        age = (dt.datetime.now(dt.timezone.utc) - since).total_seconds()
        if not refused and age < self.config.dead_letter_after:
            return False
        problem = (f"SIEM sink {name} refuses every event ({error.message[:200]}); events are kept and sent when it accepts them"
                   if refused else f"SIEM sink {name} has not accepted events for {int(age)} s; events are kept")
        await self._health(event_key("feed-failing", name, since.isoformat()), name, problem,
                           {"error": error.message[:300], "failing_since": since.isoformat()})
        return True

    async def _report_dead(self, name: str, event: StoredEvent, error: DeliveryError) -> None:
        if event.event.source == FEED_SOURCE:  # a report about the feed refused by the feed: no loop
            return
        await self._health(event_key("feed-dead", name, event.id), name,
                           f"SIEM sink {name} refused event {event.id} for good",
                           {"event_id": event.id, "error": error.message[:300]})

    async def _health(self, key: str, name: str, problem: str, evidence: dict[str, object],
                      actor: dict[str, object] | None = None, origin: dict[str, object] | None = None) -> None:
        if self.submit is None:
            return
        now = dt.datetime.now(dt.timezone.utc)
        try:
            await self.submit(DetectionEvent(
                kind=EventKind.HEALTH, source=FEED_SOURCE, key=key, group=f"feed:{name}", canary_id=None,
                observed_at=now, severity=Severity.ERROR, actor=actor or {"sink": name}, origin=origin or {},
                evidence={"problem": problem, **evidence},
            ))
        except Exception:  # noqa: BLE001 - logged; the feed goes on
            log.exception("feed.health_event_failed", sink=name)
