"""The event feed to SIEM sinks: every committed event once and in order, never past a transaction still
running, resent after a failure, a poison event recorded and passed, a sink that refuses everything
held (nothing lost) and resumed, one listener per sink, suppressed events only when asked."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Callable, Sequence
from typing import ClassVar

from testkit import MakeConfig

from canary.alerts import Alert
from canary.config import AlertingConfig
from canary.errors import DeliveryError
from canary.events import DetectionEvent, EventKind, StoredEvent, event_key
from canary.feed import EventFeed, event_sinks
from canary.pipeline import Pipeline
from canary.store import ControlStore
from canary.store import feed as feed_store
from canary.typing import EventSink

T0 = dt.datetime(2026, 3, 1, 3, 0, tzinfo=dt.timezone.utc)
CFG = AlertingConfig(retry_initial=0.02, retry_max=0.1, sink_timeout=2.0, dead_letter_after=0.2)


class SiemSink:
    """An in-process receiver with the EventSink contract; ``refuse(event)`` -> an error to raise."""

    type: ClassVar[str] = "test_siem"

    def __init__(self, name: str = "siem", events: str = "unsuppressed", batch: int = 50) -> None:
        self.name, self.events, self.event_batch = name, events, batch
        self.batches: list[list[int]] = []
        self.refuse: Callable[[StoredEvent], DeliveryError | None] = lambda e: None
        self.down = 0  # the next n sends fail retryably

    async def send(self, alert: Alert) -> None:
        return None

    async def send_events(self, events: Sequence[StoredEvent]) -> None:
        if self.down > 0:
            self.down -= 1
            raise DeliveryError(self.name, "HTTP 503: busy", status=503)
        for e in events:
            err = self.refuse(e)
            if err is not None:
                raise err
        self.batches.append([e.id for e in events])

    @property
    def ids(self) -> list[int]:
        return [i for b in self.batches for i in b]


def _events(n: int, prefix: str, **kw: object) -> list[DetectionEvent]:
    return [DetectionEvent(kind=EventKind.READ, source="feedtest", key=event_key(prefix, i), group=f"{prefix}-g",
                           canary_id=None, observed_at=T0 + dt.timedelta(seconds=i), actor={"user": "mallory"},
                           origin={"client_addr": "10.0.0.9"}, evidence={"n": i, **kw})
            for i in range(n)]


async def _ids(store: ControlStore, prefix: str) -> list[int]:
    rows = await store.pool.fetch("SELECT id FROM events WHERE source = 'feedtest' AND group_key = $1 ORDER BY id", f"{prefix}-g")
    return [int(r["id"]) for r in rows]


async def _drain(feed: EventFeed, sink: EventSink, rounds: int = 50) -> None:
    for _ in range(rounds):
        if not await feed.run_once(sink.name, sink):
            return


async def test_every_event_once_in_order_and_a_restart_resumes(store: ControlStore, make_config: MakeConfig) -> None:
    cfg = make_config()
    sink = SiemSink(batch=7)
    feed = EventFeed(store.pool, {"siem": sink}, CFG, holder="a")
    await feed_store.start(store.pool, "siem")  # the sink starts at the present: earlier events are not backfilled
    pipe = Pipeline(store.pool, cfg)
    await pipe.record(_events(30, "one"))
    await _drain(feed, sink)
    assert sink.ids == await _ids(store, "one")
    assert all(len(b) <= 7 for b in sink.batches)
    # a new feed (another process after a restart) goes on from the cursor: no event twice
    again = EventFeed(store.pool, {"siem": sink}, CFG, holder="a")
    await pipe.record(_events(5, "two"))
    await _drain(again, sink)
    assert sink.ids == await _ids(store, "one") + await _ids(store, "two")
    status = {r["sink"]: r for r in await feed_store.status(store.pool)}
    assert status["siem"]["delivered"] == 35 and status["siem"]["waiting"] == 0


async def test_an_event_of_a_transaction_still_running_is_never_passed(store: ControlStore, make_config: MakeConfig) -> None:
    """Ids are taken before commit: an event committed late with a lower id than one already fed would be
    skipped by an id cursor. The feed stops below the oldest running transaction instead."""
    cfg = make_config()
    sink = SiemSink()
    feed = EventFeed(store.pool, {"siem": sink}, CFG, holder="a")
    await feed_store.start(store.pool, "siem")
    slow = await store.pool.acquire()
    try:
        tx = slow.transaction()
        await tx.start()
        await slow.execute(
            "INSERT INTO events (key, kind, source, group_key, severity, observed_at, detected_at)"
            " VALUES ('late-1', 'read', 'feedtest', 'late-g', 'critical', now(), now())")
        await Pipeline(store.pool, cfg).record(_events(3, "early"))
        await _drain(feed, sink)
        assert sink.ids == []  # the early events wait behind the running transaction
        await tx.commit()
    finally:
        await store.pool.release(slow)
    await _drain(feed, sink)
    late = await store.pool.fetchval("SELECT id FROM events WHERE key = 'late-1'")
    assert sorted(sink.ids) == sorted([late, *await _ids(store, "early")])


async def test_a_sink_that_is_down_gets_the_same_batch_again(store: ControlStore, make_config: MakeConfig) -> None:
    sink = SiemSink()
    feed = EventFeed(store.pool, {"siem": sink}, CFG, holder="a", poll=0.02)
    await feed_store.start(store.pool, "siem")
    await Pipeline(store.pool, make_config()).record(_events(10, "down"))
    sink.down = 3
    await feed.start()
    try:
        for _ in range(200):
            if len(sink.ids) >= 10:
                break
            await asyncio.sleep(0.02)
    finally:
        await feed.stop()
    assert sink.ids == await _ids(store, "down")


async def test_a_poison_event_is_recorded_and_passed(store: ControlStore, make_config: MakeConfig) -> None:
    sink = SiemSink()
    health: list[DetectionEvent] = []

    async def submit(e: DetectionEvent) -> None:
        health.append(e)

    sink.refuse = lambda e: (DeliveryError("siem", "HTTP 400: mapper_parsing_exception", permanent=True, status=400)
                             if e.event.evidence.get("n") == 4 else None)
    feed = EventFeed(store.pool, {"siem": sink}, CFG, holder="a", submit=submit)
    await feed_store.start(store.pool, "siem")
    await Pipeline(store.pool, make_config()).record(_events(9, "poison"))
    await _drain(feed, sink)
    ids = await _ids(store, "poison")
    assert sorted(sink.ids) == sorted(i for i in ids if i != ids[4])
    dead = await store.pool.fetch("SELECT event_id, error FROM feed_dead WHERE sink = 'siem'")
    assert [r["event_id"] for r in dead] == [ids[4]] and "mapper_parsing" in dead[0]["error"]
    assert len(health) == 1 and health[0].kind is EventKind.HEALTH and health[0].evidence["event_id"] == ids[4]


async def test_a_sink_that_refuses_everything_loses_nothing(store: ControlStore, make_config: MakeConfig) -> None:
    """A revoked token: every event refused for good. Nothing is dead-lettered, one HEALTH event says
    so, and once the sink accepts again every event arrives."""
    sink = SiemSink()
    health: list[DetectionEvent] = []

    async def submit(e: DetectionEvent) -> None:
        health.append(e)

    attempts: list[int] = []

    def revoked(e: StoredEvent) -> DeliveryError:
        attempts.append(e.id)
        return DeliveryError("siem", "HTTP 403: invalid token", permanent=True, status=403)

    sink.refuse = revoked
    feed = EventFeed(store.pool, {"siem": sink}, CFG, holder="a", submit=submit, poll=0.02)
    await feed_store.start(store.pool, "siem")
    await Pipeline(store.pool, make_config()).record(_events(6, "revoked"))
    await feed.start()
    try:
        for _ in range(100):
            if health:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        assert sink.ids == [] and len(health) == 1 and "refuses every event" in health[0].evidence["problem"]
        assert await store.pool.fetchval("SELECT count(*) FROM feed_dead") == 0
        assert len(attempts) <= 10  # a refusal of the caller is not split event by event (one request per attempt)
    finally:
        await feed.stop()
    sink.refuse = lambda e: None
    await _drain(EventFeed(store.pool, {"siem": sink}, CFG, holder="a"), sink)
    assert sink.ids == await _ids(store, "revoked")


async def test_one_listener_feeds_a_sink_at_a_time(store: ControlStore, make_config: MakeConfig) -> None:
    a, b = SiemSink(), SiemSink()
    fa = EventFeed(store.pool, {"siem": a}, CFG, holder="listener-a")
    fb = EventFeed(store.pool, {"siem": b}, CFG, holder="listener-b")
    await feed_store.start(store.pool, "siem")
    await Pipeline(store.pool, make_config()).record(_events(12, "lease"))
    await fa.run_once("siem", a)
    assert await fb.run_once("siem", b) == 0  # a holds the lease
    await _drain(fa, a)
    assert a.ids == await _ids(store, "lease") and b.ids == []


async def test_suppressed_events_only_when_asked(store: ControlStore, make_config: MakeConfig) -> None:
    cfg = make_config()
    plain, everything = SiemSink("plain"), SiemSink("everything", events="all")
    off = SiemSink("off", events="none")
    assert set(event_sinks({"plain": plain, "everything": everything, "off": off})) == {"plain", "everything"}
    feed = EventFeed(store.pool, {"plain": plain, "everything": everything}, CFG, holder="a")
    for name in ("plain", "everything"):
        await feed_store.start(store.pool, name)
    pipe = Pipeline(store.pool, cfg, suppress=[lambda e: "ours" if e.evidence.get("n") == 1 else None])
    await pipe.record(_events(3, "sup"))
    await _drain(feed, plain)
    await _drain(feed, everything)
    ids = await _ids(store, "sup")
    assert plain.ids == [ids[0], ids[2]] and everything.ids == ids


class _CountingFeed(EventFeed):
    """The real feed, counting its rounds (each one takes the lease and reads the store)."""

    rounds = 0

    async def run_once(self, name: str, sink: EventSink) -> int:
        self.rounds += 1
        return await super().run_once(name, sink)


async def test_an_idle_feed_waits_its_poll_however_the_horizon_moves(store: ControlStore, make_config: MakeConfig) -> None:
    """With no events to send, a round that only moves the cursor up to the horizon reports nothing passed, so
    the feed waits ``poll`` before the next. Its own lease and cursor writes move the horizon every round: a
    feed that took that as progress read the store without pause (hundreds of rounds a second, two
    transaction ids each, when idle). Events committed meanwhile still arrive."""
    sink = SiemSink()
    await feed_store.start(store.pool, "siem")
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_current_xact_id()")  # another transaction ends: the horizon moves past the cursor
    probe = EventFeed(store.pool, {"siem": sink}, CFG, holder="a")
    assert await probe.run_once("siem", sink) == 0  # the cursor moved, but past no event
    feed = _CountingFeed(store.pool, {"siem": sink}, CFG, holder="a", poll=0.25)
    await feed.start()
    try:
        await asyncio.sleep(1.0)
        assert feed.rounds <= 8  # one round per poll (and a round after each round that moved events)
        await Pipeline(store.pool, make_config()).record(_events(3, "idle"))
        for _ in range(100):
            if len(sink.ids) == 3:
                break
            await asyncio.sleep(0.02)
    finally:
        await feed.stop()
    assert sink.ids == await _ids(store, "idle")


async def test_no_event_is_passed_while_its_transaction_commits_during_a_read(store: ControlStore) -> None:
    """A read that finds nothing below the horizon must move the cursor only to that same horizon: one taken
    by a later statement may be past a transaction that committed in between, whose events were never read
    and would be skipped for good. Transactions commit while the feed reads without pause; every event is
    read, none twice."""
    cursor = await feed_store.start(store.pool, "race")
    inserted: list[int] = []
    read: list[int] = []
    done = asyncio.Event()
    rng = random.Random(5)

    async def commit_slowly() -> None:
        for i in range(150):
            async with store.pool.acquire() as conn:
                tx = conn.transaction()
                await tx.start()
                inserted.append(await conn.fetchval(
                    "INSERT INTO events (key, kind, source, group_key, severity, observed_at, detected_at)"
                    " VALUES ($1, 'read', 'feedtest', 'race-g', 'critical', now(), now()) RETURNING id", f"race-{i}"))
                await asyncio.sleep(rng.random() * 0.003)
                await tx.commit()
        done.set()

    async def follow() -> None:
        nonlocal cursor
        while True:
            finished = done.is_set()
            batch, cursor = await feed_store.read(store.pool, cursor, 100)
            read.extend(e.id for _, e in batch)
            if finished and not batch:
                return

    await asyncio.gather(commit_slowly(), follow())
    assert sorted(read) == sorted(inserted)


async def test_committed_events_wake_an_idle_feed(store: ControlStore, make_config: MakeConfig) -> None:
    """The pipeline notifies when it commits events: a feed idle for a long poll sends them at once."""
    sink = SiemSink()
    feed = EventFeed(store.pool, {"siem": sink}, CFG, holder="a", poll=60.0)
    await feed.start()
    try:
        for _ in range(100):  # the feed has looked once and is idle
            if await store.pool.fetchval("SELECT count(*) FROM feed_cursors WHERE sink = 'siem'"):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        await Pipeline(store.pool, make_config()).record(_events(4, "wake"))
        for _ in range(150):
            if len(sink.ids) == 4:
                break
            await asyncio.sleep(0.02)
        assert sink.ids == await _ids(store, "wake")  # within 3 s, not the 60 s poll
    finally:
        await feed.stop()


async def test_a_transaction_left_open_is_reported_by_who_holds_the_feed_back(store: ControlStore, make_config: MakeConfig,
                                                                              ) -> None:
    """An insider who can write on the control store's server holds every feed back with one open transaction
    (the feed never passes it). Events are kept; past feed_held_after one HEALTH event names the session."""
    cfg = make_config()
    seen: list[DetectionEvent] = []

    async def submit(e: DetectionEvent) -> None:
        seen.append(e)

    sink = SiemSink()
    held_cfg = CFG.model_copy(update={"feed_held_after": 0.3})
    feed = EventFeed(store.pool, {"siem": sink}, held_cfg, holder="a", submit=submit)
    await feed_store.start(store.pool, "siem")
    slow = await store.pool.acquire()
    try:
        await slow.execute("SET application_name = 'mallory-batch'")
        tx = slow.transaction()
        await tx.start()
        await slow.execute("SELECT pg_current_xact_id()")  # holds the horizon from here on
        await Pipeline(store.pool, cfg).record(_events(4, "held"))
        await _drain(feed, sink)
        assert sink.ids == [] and seen == []  # held, but not yet for long
        for _ in range(3):
            await asyncio.sleep(0.35)
            feed._held_checked = 0.0  # each round looks (the feed looks at most every feed_held_after / 4)
            await _drain(feed, sink)
        assert len(seen) == 1  # once per holding transaction, however many rounds see it
        report = seen[0]
        assert report.kind is EventKind.HEALTH and report.evidence["waiting"] >= 4
        assert report.actor["application_name"] == "mallory-batch" and report.actor["pid"] == slow.get_server_pid()
        assert "mallory-batch" in report.evidence["problem"]
        await tx.commit()
    finally:
        await store.pool.release(slow)
    await _drain(feed, sink)
    assert sink.ids == await _ids(store, "held")  # nothing lost


async def test_a_prepared_transaction_holding_the_feed_is_named(store: ControlStore, make_config: MakeConfig) -> None:
    """A prepared transaction outlives its session: pg_stat_activity no longer shows it, pg_prepared_xacts does."""
    seen: list[DetectionEvent] = []

    async def submit(e: DetectionEvent) -> None:
        seen.append(e)

    feed = EventFeed(store.pool, {"siem": SiemSink()}, CFG.model_copy(update={"feed_held_after": 0.2}), holder="a",
                     submit=submit)
    conn = await store.pool.acquire()
    try:
        await conn.execute("BEGIN; SELECT pg_current_xact_id(); PREPARE TRANSACTION 'mallory-gid'")
    finally:
        await store.pool.release(conn)
    try:
        await Pipeline(store.pool, make_config()).record(_events(2, "prep"))
        await asyncio.sleep(0.3)
        await feed._look_for_held()
        assert len(seen) == 1 and seen[0].actor["gid"] == "mallory-gid"
        assert "prepared transaction 'mallory-gid'" in seen[0].evidence["problem"]
    finally:
        await store.pool.execute("ROLLBACK PREPARED 'mallory-gid'")
