"""Work done after an attacker-facing answer was sent, committed durably, and the HEALTH event that
pages when a listening surface under a connection flood has to shed or refuse connections.

Every surface an attacker can reach answers first and commits what it found afterwards
(:class:`BackgroundReporter`: retried with capped backoff, so a control-store outage delays an alert
but loses none). A surface with connection caps (the honeypots' :class:`~canary.credentials.recognise.ConnectionGate`,
the MX's and the HTTP port's :class:`~canary.conncap.PeerConnections`) tells a :class:`PressureWatch` of
each shed or refused connection: one HEALTH event per episode, because real probes, mail or webhooks
may be failing to reach us, which must page rather than only count."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import Counter

from canary.events import DetectionEvent, EventKind, Severity, event_key
from canary.typing import SourceContext

log = structlog.get_logger("canary.pressure")

#: Seconds without a shed or refusal that end an episode, where a surface has no setting of its own.
PRESSURE_QUIET = 300.0
_MAX_EPISODE_PEERS = 256  # distinct peers counted per pressure episode (the rest as "other")

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
                    self.log.error("background.events_not_committed", count=len(events))
                raise
            except Exception as exc:  # noqa: BLE001 - the store may be down: keep the events, retry
                submit_failures(self.runtime.metrics).labels(source=self.source).inc()
                self.log.warning("background.commit_retry", error=f"{type(exc).__name__}: {exc}"[:300], delay=delay)
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



@dataclass
class _Episode:
    started: dt.datetime
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    peers: collections.Counter[str] = field(default_factory=collections.Counter)


class PressureWatch:
    """Turns shed and refused connections into one HEALTH event per episode: real probes, mail or
    webhooks may be failing to reach ``surface``, which must page rather than only count. An episode starts with the
    first shed or refusal and ends after ``quiet`` seconds without one; its event is committed
    ``summary_after`` seconds after it starts, carrying the counts by reason and the busiest peers so
    far (the counts of the whole episode are in ``canary_rejects_total``). Every event of a surface
    has the same group, so episodes close together join one incident."""

    def __init__(self, reporter: BackgroundReporter, surface: str, where: str, *, quiet: float,
                 summary_after: float = 1.0, family: str = "honeypot") -> None:
        self.reporter = reporter
        self.surface = surface  # "pg_honeypot:6543", "smtp:25", "listener:8080"
        self.where = where
        self.family = family  # names the event's key, group, origin and signal: "honeypot", "contact", "listener"
        self.quiet = quiet
        self.summary_after = summary_after
        self._episode: _Episode | None = None
        self._last = 0.0

    def note(self, reason: str, peer: str) -> None:
        now = time.monotonic()
        episode = self._episode
        if episode is None or now - self._last > self.quiet:
            episode = self._episode = _Episode(dt.datetime.now(dt.timezone.utc))
            log.warning("pressure.episode", surface=self.surface, reason=reason, peer=peer)
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
            key=event_key(f"{self.family}-pressure", self.surface, episode.started.isoformat()),
            group=f"{self.family}-pressure:{self.surface}", canary_id=None, observed_at=episode.started,
            severity=Severity.ERROR, origin={self.family: self.where},
            evidence={"signal": f"{self.family}_pressure",
                      "problem": f"{self.surface} is shedding or refusing connections (connection caps reached)",
                      "refused": refused, "shed": shed, "by_reason": dict(episode.counts),
                      "peers": len(episode.peers), "top_peers": dict(episode.peers.most_common(5))},
        )]
