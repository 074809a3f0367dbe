"""What the credential sources share: the secrets a honeypot was presented (as blind-index lookups
in :func:`canary.store.registry.recognise`), keyed fingerprints for evidence, the background
reporter that commits detections after an attacker-facing answer was already sent, and the admission
that keeps a honeypot reachable under a connection flood (:class:`ConnectionGate`: per-peer and global
caps that shed the connection idle the longest instead of refusing a new one) with the HEALTH event
that pages when it has to shed or refuse (:class:`PressureWatch`, one per episode)."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import structlog
from prometheus_client import Counter

from canary.crypto import Keyring
from canary.events import DetectionEvent, EventKind, Severity, event_key
from canary.store.registry import ValueKind
from canary.typing import SourceContext

log = structlog.get_logger("canary.credentials")

#: Value kinds a secret presented to a honeypot (header, query, password) may be.
PRESENTED_KINDS: tuple[ValueKind, ...] = (ValueKind.TOKEN, ValueKind.AWS_KEY_ID, ValueKind.AWS_SECRET)
_MAX_EPISODE_PEERS = 256  # distinct peers counted per pressure episode (the rest as "other")


def fingerprint(keyring: Keyring, value: str) -> str:
    """A keyed fingerprint of a presented secret for evidence: correlatable, not reversible offline."""
    return keyring.blind_index(value, "fingerprint:presented").hex()


def presented_candidates(values: Sequence[str], kinds: Sequence[str] = PRESENTED_KINDS, limit: int = 8) -> list[tuple[str, str]]:
    """Every (kind, value) pair to look up for secrets presented to a honeypot, bounded."""
    seen: list[str] = []
    for v in values:
        if v and v not in seen and len(v) <= 4096:
            seen.append(v)
    return [(kind, v) for v in seen[:limit] for kind in kinds]


# -- reporting use without blocking the answer ------------------------------------------------------
_FAILURES: weakref.WeakKeyDictionary[Any, Counter] = weakref.WeakKeyDictionary()


def submit_failures(metrics: Any) -> Counter:
    """``canary_submit_retries_total{source}``: background commits that failed and were retried."""
    counter = _FAILURES.get(metrics)
    if counter is None:
        counter = Counter("canary_submit_retries", "Background event commits that failed and were retried",
                          ["source"], registry=metrics.registry)
        _FAILURES[metrics] = counter
    return counter


class BackgroundReporter:
    """Runs detection work after an attacker-facing answer was sent, and commits what it finds with
    retries (exponential backoff, capped), so a control-store outage delays an alert but loses none.
    ``drain`` waits for everything in flight (used on stop)."""

    def __init__(self, runtime: SourceContext, source: str, *, retry_initial: float = 0.2, retry_max: float = 30.0) -> None:
        self.runtime = runtime
        self.source = source
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._tasks: set[asyncio.Task[None]] = set()
        self.log = log.bind(source=source)

    def spawn(self, work: Callable[[], Any]) -> None:
        """Schedule ``work`` (an async callable returning events to commit, or None)."""
        task = asyncio.get_running_loop().create_task(self._run(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, work: Callable[[], Any]) -> None:
        delay = self.retry_initial
        events: Sequence[DetectionEvent] | None = None
        while True:
            try:
                if events is None:
                    events = await work() or ()
                if events:
                    await self.runtime.submit_many(events)
                return
            except asyncio.CancelledError:
                if events:
                    self.log.error("honeypot.events_not_committed", count=len(events))
                raise
            except Exception as exc:  # noqa: BLE001 - the store may be down: keep the events, retry
                submit_failures(self.runtime.metrics).labels(source=self.source).inc()
                self.log.warning("honeypot.commit_retry", error=f"{type(exc).__name__}: {exc}"[:300], delay=delay)
                await asyncio.sleep(delay)
                delay = min(self.retry_max, delay * 2)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


# -- connection admission: honeypots that cannot be starved -----------------------------------------
class Sheddable(Protocol):
    """A connection the gate may close to make room: ``sheddable`` is false only while it is being
    answered (a SCRAM proof being checked, an HTTP request waiting out its floor), true while it waits
    for its client or is already closing. ``shed`` closes it; False if it was already closing (its
    slot was free anyway: not counted as a shed)."""

    @property
    def sheddable(self) -> bool: ...

    def shed(self) -> bool: ...


C = TypeVar("C", bound=Sheddable)


class ConnectionGate(Generic[C]):
    """Admission for a honeypot's connections. A new connection is never turned away while some held
    connection is waiting for its client: beyond ``max_per_peer`` connections from one peer (address or
    IPv6 /64) that peer's connection idle the longest is shed, beyond ``max_connections`` the one idle
    the longest of all. Idle means "since it opened or last completed a message", not "since its last
    byte", so trickling bytes does not keep a connection fresh, and a real client mid-handshake (it
    has just completed a message) is the last to go. An attacker holding N idle connections therefore
    only loses them; to push out a real probe it must open more than the cap's worth of connections
    within the probe's own few-millisecond handshake. Only when every held connection is being
    answered is the new one refused. ``on_pressure(reason, peer)`` hears of every shed and refusal.

    Connections are kept in order of last progress (``OrderedDict``), so finding the one idle the
    longest and recording progress cost O(1) apart from skipping connections being answered."""

    def __init__(self, max_connections: int, max_per_peer: int, on_pressure: Callable[[str, str], None]) -> None:
        self.max_connections = max_connections
        self.max_per_peer = max_per_peer
        self.on_pressure = on_pressure
        self._all: OrderedDict[C, str] = OrderedDict()
        self._peers: dict[str, OrderedDict[C, None]] = {}

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self) -> Iterator[C]:
        return iter(list(self._all))

    def peer_count(self, peer: str) -> int:
        return len(self._peers.get(peer, ()))

    def admit(self, conn: C, peer: str) -> bool:
        """Make room for ``conn`` from ``peer`` (shedding if need be) and hold it; False: refused."""
        held = self._peers.get(peer)
        if held is not None and len(held) >= self.max_per_peer and not self._shed(held, "shed_peer_cap", peer):
            self.on_pressure("refused_peer_cap", peer)
            return False
        if len(self._all) >= self.max_connections and not self._shed(self._all, "shed_global_cap", peer):
            self.on_pressure("refused_global_cap", peer)
            return False
        self._all[conn] = peer
        self._peers.setdefault(peer, OrderedDict())[conn] = None
        return True

    def _shed(self, held: Mapping[C, object], reason: str, peer: str) -> bool:
        victim = next((c for c in held if c.sheddable), None)
        if victim is None:
            return False
        victim_peer = self._all.get(victim, peer)
        self.release(victim)
        if victim.shed():
            self.on_pressure(reason, victim_peer)
        return True

    def progress(self, conn: C) -> None:
        """``conn`` completed a message: it becomes the last to be shed."""
        peer = self._all.get(conn)
        if peer is None:
            return
        self._all.move_to_end(conn)
        self._peers[peer].move_to_end(conn)

    def release(self, conn: C) -> None:
        """``conn`` is gone (idempotent)."""
        peer = self._all.pop(conn, None)
        if peer is None:
            return
        held = self._peers[peer]
        held.pop(conn, None)
        if not held:
            del self._peers[peer]


@dataclass
class _Episode:
    started: dt.datetime
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    peers: collections.Counter[str] = field(default_factory=collections.Counter)


class PressureWatch:
    """Turns shed and refused connections into one HEALTH event per episode: real probes may be
    failing to reach a honeypot, which must page rather than only count. An episode starts with the
    first shed or refusal and ends after ``quiet`` seconds without one; its event is committed
    ``summary_after`` seconds after it starts, carrying the counts by reason and the busiest peers so
    far (the counts of the whole episode are in ``canary_rejects_total``). Every event of a honeypot
    has the same group, so episodes close together join one incident."""

    def __init__(self, reporter: BackgroundReporter, honeypot: str, where: str, *, quiet: float,
                 summary_after: float = 1.0) -> None:
        self.reporter = reporter
        self.honeypot = honeypot
        self.where = where
        self.quiet = quiet
        self.summary_after = summary_after
        self._episode: _Episode | None = None
        self._last = 0.0

    def note(self, reason: str, peer: str) -> None:
        now = time.monotonic()
        episode = self._episode
        if episode is None or now - self._last > self.quiet:
            episode = self._episode = _Episode(dt.datetime.now(dt.timezone.utc))
            log.warning("honeypot.pressure", honeypot=self.honeypot, reason=reason, peer=peer)
            self.reporter.spawn(lambda: self._event(episode))
        self._last = now
        episode.counts[reason] += 1
        if peer in episode.peers or len(episode.peers) < _MAX_EPISODE_PEERS:
            episode.peers[peer] += 1
        else:
            episode.peers["other"] += 1

    async def _event(self, episode: _Episode) -> list[DetectionEvent]:
        await asyncio.sleep(self.summary_after)
        refused = sum(n for r, n in episode.counts.items() if r.startswith("refused"))
        shed = sum(n for r, n in episode.counts.items() if r.startswith("shed"))
        return [DetectionEvent(
            kind=EventKind.HEALTH, source=self.reporter.source,
            key=event_key("honeypot-pressure", self.honeypot, episode.started.isoformat()),
            group=f"honeypot-pressure:{self.honeypot}", canary_id=None, observed_at=episode.started,
            severity=Severity.ERROR, origin={"honeypot": self.where},
            evidence={"signal": "honeypot_pressure",
                      "problem": f"{self.honeypot} is shedding or refusing connections (connection caps reached)",
                      "refused": refused, "shed": shed, "by_reason": dict(episode.counts),
                      "peers": len(episode.peers), "top_peers": dict(episode.peers.most_common(5))},
        )]
