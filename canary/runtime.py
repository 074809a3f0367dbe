"""Resources shared by every listener component, created in ``startup`` and released in ``shutdown``:
one asyncpg pool (control store), one aiohttp ClientSession, the keyring, registry, pipeline,
dispatcher and metrics. Components receive the runtime; they never create their own pools."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog

from canary import plugins
from canary.config import Config
from canary.crypto import Keyring, load_key
from canary.enrich import Enricher
from canary.events import DetectionEvent, storable_text
from canary.metrics import Metrics
from canary.outbox import Dispatcher
from canary.pipeline import Pipeline
from canary.store import ControlStore, rejects
from canary.store.registry import Registry
from canary.typing import Sink, SuppressRule

log = structlog.get_logger("canary.runtime")

REJECT_SAMPLE_BYTES = 512


class RejectSampler:
    """At most ``per_minute`` admissions per key in each 60-second window; counts what it refuses."""

    def __init__(self, per_minute: int, clock: Any = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._windows: dict[tuple[str, str], list[float]] = {}  # key -> [window start, admitted, skipped]

    def admit(self, key: tuple[str, str]) -> bool:
        now = self.clock()
        w = self._windows.get(key)
        if w is None or now - w[0] >= 60.0:
            skipped = w[2] if w else 0
            w = self._windows[key] = [now, 0, skipped]
        if w[1] < self.per_minute:
            w[1] += 1
            return True
        w[2] += 1
        return False

    def take_skipped(self, key: tuple[str, str]) -> int:
        w = self._windows.get(key)
        if not w:
            return 0
        skipped, w[2] = int(w[2]), 0
        return skipped


@dataclass
class Runtime:
    config: Config
    store: ControlStore
    keyring: Keyring
    registry: Registry
    pipeline: Pipeline
    dispatcher: Dispatcher
    http: aiohttp.ClientSession
    sinks: dict[str, Sink]
    metrics: Metrics = field(default_factory=Metrics)
    enricher: Enricher | None = None  # [enrichment]: what alerts and SIEM events say about client addresses
    _sampler: RejectSampler = field(default_factory=lambda: RejectSampler(60))

    def __post_init__(self) -> None:
        self._sampler = RejectSampler(self.config.listener.reject_samples_per_minute)

    def add_suppress(self, rule: SuppressRule) -> None:
        if rule not in self.pipeline.suppress:
            self.pipeline.suppress.append(rule)

    def remove_suppress(self, rule: SuppressRule) -> None:
        if rule in self.pipeline.suppress:
            self.pipeline.suppress.remove(rule)

    @property
    def pool(self) -> Any:
        return self.store.pool

    async def submit(self, event: DetectionEvent) -> None:
        """Commit one event (returns after commit); counted per source and kind."""
        await self.pipeline.submit(event)
        self._count(event)

    async def submit_many(self, events: Sequence[DetectionEvent]) -> None:
        """Commit several events (group-committed); returns after all are committed."""
        await self.pipeline.submit_many(events)
        for event in events:
            self._count(event)

    def _count(self, event: DetectionEvent) -> None:
        self.metrics.events.labels(source=event.source, kind=str(event.kind)).inc()
        lag = (event.detected_at - event.observed_at).total_seconds()
        self.metrics.detect_latency.labels(source=event.source).observe(max(lag, 0.0))

    async def reject(self, source: str, reason: str, sample: bytes | str | None = None) -> None:
        """Count an input that could not be parsed or verified, and keep a truncated sample of it.

        Every reject is counted (``canary_rejects_total``); samples are stored and logged at most
        ``listener.reject_samples_per_minute`` per source and reason, so a flood of garbage cannot fill
        the control store or the log. Never raises."""
        self.metrics.rejects.labels(source=source, reason=reason).inc()
        if not self._sampler.admit((source, reason)):
            return
        text = sample.decode("utf-8", "replace") if isinstance(sample, bytes) else sample
        # PostgreSQL text holds neither NUL (kept visible as \x00) nor lone surrogates (a path or header
        # aiohttp decoded with surrogateescape): either lost the sample
        text = storable_text((text or "").replace("\x00", "\\x00"), REJECT_SAMPLE_BYTES)
        skipped = self._sampler.take_skipped((source, reason))
        log.warning("input.rejected", source=source, reason=reason, **({"unsampled_since_last": skipped} if skipped else {}))
        try:
            await rejects.insert(self.pool, source, reason, (text or "")[:REJECT_SAMPLE_BYTES])
        except Exception:  # noqa: BLE001 - the counter above already recorded it
            log.exception("input.reject_not_stored", source=source)


def build_sinks(config: Config, http: aiohttp.ClientSession) -> dict[str, Sink]:
    types = plugins.sink_types()
    out: dict[str, Sink] = {}
    for i, sc in enumerate(config.sinks):
        options = plugins.sink_options(sc, i)
        out[sc.name] = types[sc.type](sc.name, options, http)
    return out


async def open_runtime(
    config: Config,
    *,
    keyring: Keyring | None = None,
    suppress: Sequence[SuppressRule] = (),
    store: ControlStore | None = None,
) -> Runtime:
    """Open the control store and create the shared resources (dispatcher not yet started)."""
    keyring = keyring or Keyring(load_key(config.canary.key_file))
    store = store or ControlStore(config)
    if store._pool is None:
        await store.open()
    enricher = Enricher(config.enrichment)  # a bad database file fails here, before anything starts
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=config.alerting.sink_timeout))
    sinks = build_sinks(config, http)
    metrics = Metrics()
    pipeline = Pipeline(store.pool, config, suppress=[*plugins.suppress_rules(), *suppress])
    runtime = Runtime(
        config=config, store=store, keyring=keyring, registry=Registry(store.pool, keyring), pipeline=pipeline,
        dispatcher=Dispatcher(store.pool, sinks, config.alerting, metrics=metrics, enricher=enricher), http=http,
        sinks=sinks, metrics=metrics, enricher=enricher,
    )
    return runtime


async def close_runtime(runtime: Runtime, *, grace: float | None = None) -> None:
    g = runtime.config.listener.shutdown_grace if grace is None else grace
    await runtime.pipeline.stop()
    await runtime.dispatcher.stop(grace=g)
    for name, sink in runtime.sinks.items():  # sinks that hold connections (syslog TCP/TLS) close them
        close = getattr(sink, "close", None)
        if close is None:
            continue
        try:
            await asyncio.wait_for(close(), 5.0)
        except Exception as exc:  # noqa: BLE001 - shutting down: report and go on
            log.warning("sink.close_failed", sink=name, error=f"{type(exc).__name__}: {exc}")
    await runtime.http.close()
    if runtime.enricher is not None:
        runtime.enricher.close()
    await asyncio.sleep(0)  # let aiohttp close its connectors
    await runtime.store.close()
