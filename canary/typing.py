"""Behavioural contracts, as small Protocols. Implementations live one per file in
``seeders/``, ``canary/sources/`` and ``canary/sinks/``."""

from __future__ import annotations

import builtins

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    import aiohttp
    from aiohttp import web
    from pydantic import BaseModel

    from canary.alerts import Alert
    from canary.events import DetectionEvent

#: What a source calls for each detection. Returns once the event is durably committed.
Submit = Callable[["DetectionEvent"], Awaitable[None]]


@runtime_checkable
class Sink(Protocol):
    """Delivers alerts to one destination. ``send`` raises :class:`canary.errors.DeliveryError`
    (with ``retry_after`` / ``permanent``) on failure; any return means delivered."""

    type: ClassVar[str]
    name: str

    async def send(self, alert: Alert) -> None: ...


class SinkFactory(Protocol):
    type: ClassVar[str]
    Options: ClassVar[builtins.type[BaseModel]]

    def __call__(self, name: str, options: Any, http: aiohttp.ClientSession) -> Sink: ...


@runtime_checkable
class Component(Protocol):
    """A part of the listener: a detection source (log tail, SMTP server, honeypot), a worker, or a
    set of HTTP routes. ``start`` gets the shared runtime; ``stop`` must finish within the grace."""

    name: str

    def routes(self) -> list[web.RouteDef]: ...

    async def start(self, runtime: Any) -> None: ...

    async def stop(self) -> None: ...
