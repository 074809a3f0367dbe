"""What the credential sources share: the secrets a honeypot was presented (as blind-index lookups
in :func:`canary.store.registry.recognise`), keyed fingerprints for evidence, and the background
reporter that commits detections after an attacker-facing answer was already sent."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from prometheus_client import Counter

from canary.crypto import Keyring
from canary.events import DetectionEvent
from canary.store.registry import ValueKind
from canary.typing import SourceContext

log = structlog.get_logger("canary.credentials")

#: Value kinds a secret presented to a honeypot (header, query, password) may be.
PRESENTED_KINDS: tuple[ValueKind, ...] = (ValueKind.TOKEN, ValueKind.AWS_KEY_ID, ValueKind.AWS_SECRET)


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
