"""Behavioural contracts, as small Protocols. Implementations live one per file in the families:
sources (``Component``) in ``canary/postgres``, ``contact``, ``credentials`` and ``health``; sinks in
``canary/sinks``; seeders (:class:`canary.seeder.Seeder`) in ``canary/seeding``."""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    import aiohttp
    import asyncpg
    from aiohttp import web
    from pydantic import BaseModel

    from canary.alerts import Alert
    from canary.config import Config
    from canary.crypto import Keyring
    from canary.events import DetectionEvent, StoredEvent
    from canary.metrics import Metrics
    from canary.store.registry import Registry

#: What a source calls for each detection. Returns once the event is durably committed.
Submit = Callable[["DetectionEvent"], Awaitable[None]]

#: A pipeline suppression rule: the name of the rule that suppresses ``event`` (recorded, not paged),
#: or None.
SuppressRule = Callable[["DetectionEvent"], "str | None"]


@runtime_checkable
class Sink(Protocol):
    """Delivers alerts to one destination. ``send`` raises :class:`canary.errors.DeliveryError`
    (with ``retry_after`` / ``permanent``) on failure; any return means delivered."""

    type: ClassVar[str]
    name: str

    async def send(self, alert: Alert) -> None: ...


@runtime_checkable
class EventSink(Sink, Protocol):
    """A sink that also takes every committed event (SIEMs), through the event feed (``canary/feed.py``):
    ``send_events`` delivers one batch (at most ``event_batch``) or raises :class:`canary.errors.DeliveryError`,
    and the feed sends the same batch again (at-least-once: ``StoredEvent.id`` is the receiver's
    idempotency key). ``events`` selects what the feed sends: ``"unsuppressed"`` (the default),
    ``"all"`` (suppressed events too, with the rule's name) or ``"none"`` (incidents only)."""

    events: str
    event_batch: int

    async def send_events(self, events: Sequence[StoredEvent]) -> None: ...


class SinkFactory(Protocol):
    type: ClassVar[str]
    Options: ClassVar[builtins.type[BaseModel]]

    def __call__(self, name: str, options: Any, http: aiohttp.ClientSession) -> Sink: ...


class SourceContext(Protocol):
    """What a source gets from the listener (:class:`canary.runtime.Runtime` implements it): shared
    resources, and the three calls that turn input into committed events or counted rejects."""

    config: Config
    keyring: Keyring
    registry: Registry
    http: aiohttp.ClientSession
    metrics: Metrics

    @property
    def pool(self) -> asyncpg.Pool: ...

    async def submit(self, event: DetectionEvent) -> None:
        """Commit one event; returns after commit (only then acknowledge the input)."""

    async def submit_many(self, events: Sequence[DetectionEvent]) -> None:
        """Commit several events in one group commit."""

    async def reject(self, source: str, reason: str, sample: bytes | str | None = None) -> None:
        """Count input that could not be parsed or verified (sampled, never raises)."""

    def add_suppress(self, rule: SuppressRule) -> None:
        """Install a suppression rule for as long as the component that owns it runs."""

    def remove_suppress(self, rule: SuppressRule) -> None: ...


@runtime_checkable
class Component(Protocol):
    """A part of the listener: a detection source (log tail, SMTP server, honeypot), a worker, or a
    set of HTTP routes. ``start`` gets the source context; ``stop`` must finish within the grace."""

    name: str

    def routes(self) -> list[web.RouteDef]: ...

    async def start(self, runtime: SourceContext) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SourceLag:
    """How far a source is behind its input: bytes not yet read, and seconds since it last caught up
    or advanced while behind (0 when it is caught up)."""

    behind_bytes: int
    behind_seconds: float


@runtime_checkable
class Lagging(Protocol):
    """A component that reads an input which can run ahead of it (a log tail): the listener watches
    its lag, reports it in ``/healthz`` and ``/metrics``, and raises HEALTH when it stops advancing."""

    name: str

    def lag(self) -> SourceLag: ...


class SourceFactory(Protocol):
    """A registered source type (one module exposes one as ``SOURCE``): the components the
    configuration asks for, and the suppression rules its events need while it is registered."""

    type: str
    suppress_rules: tuple[SuppressRule, ...]

    def components(self, config: Config) -> Sequence[Component]: ...
