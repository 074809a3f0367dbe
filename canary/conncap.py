"""A per-peer cap on open connections to the listener's HTTP port.

The listener's one port serves everything that must stay reachable while someone attacks: provider
webhooks (mail, SMS, calls), log ingest (shippers, Firehose, Pub/Sub), the API and console, /healthz.
A peer that opens connections and sends nothing (or a header a byte a minute) holds a file descriptor
each; with enough of them ``accept`` fails for everyone and every detection that arrives over HTTP is
lost. So each peer (:func:`canary.proxies.peer_key`: an IPv4 address or an IPv6 /64) may hold at most
``listener.max_connections_per_peer`` open connections; the one beyond is closed at once, before aiohttp
sees it, and counted (``canary_connections_refused_total``, a reject sample naming the peer). Trusted
proxies (``listener.trusted_proxies``) carry many clients' connections and are not capped.

The cap wraps the protocol factory of the listener's server (:class:`CappedSite`), so it counts every
connection, including ones that never complete a request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from canary.proxies import Network, parse_address, peer_key, within


class PeerConnections:
    """Open connections per peer, and whether one more may open."""

    def __init__(self, per_peer: int, exempt: Sequence[Network] = (), refused: Callable[[str], None] | None = None) -> None:
        self.per_peer = per_peer
        self.exempt = tuple(exempt)
        self.refused = refused
        self.open: dict[str, int] = {}
        self.refusals = 0

    def admit(self, address: str | None) -> str | None:
        """The peer's key when a connection from ``address`` may open (counted), else None (refused)."""
        key = peer_key(address)
        if self.per_peer <= 0 or within(parse_address(address or ""), self.exempt):
            return ""  # not counted
        held = self.open.get(key, 0)
        if held >= self.per_peer:
            self.refusals += 1
            if self.refused is not None:
                self.refused(key)
            return None
        self.open[key] = held + 1
        return key

    def release(self, key: str) -> None:
        if not key:
            return
        left = self.open.get(key, 0) - 1
        if left > 0:
            self.open[key] = left
        else:
            self.open.pop(key, None)

    def factory(self, inner: Callable[[], Any]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory that admits each connection before ``inner``'s protocol sees it."""
        return lambda: _Capped(inner(), self)


class _Capped(asyncio.Protocol):
    """Forwards to the wrapped protocol (aiohttp's request handler) once the connection is admitted."""

    def __init__(self, inner: Any, cap: PeerConnections) -> None:
        self.inner = inner
        self.cap = cap
        self.key: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, (tuple, list)) and peer else None
        self.key = self.cap.admit(address if isinstance(address, str) else None)
        if self.key is None:
            if isinstance(transport, asyncio.Transport):
                transport.abort()  # a reset, not a FIN after a linger: nothing of this connection is kept
            else:
                transport.close()
            return
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.key is None:
            return
        self.cap.release(self.key)
        self.key = None
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.key is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.key is not None else None

    def pause_writing(self) -> None:
        if self.key is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.key is not None:
            self.inner.resume_writing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class CappedSite(web.TCPSite):
    """``web.TCPSite`` whose server admits connections through ``cap`` (the same start as aiohttp's,
    with the runner's protocol factory wrapped)."""

    def __init__(self, runner: web.BaseRunner, host: str | None, port: int | None, cap: PeerConnections) -> None:
        super().__init__(runner, host, port)
        self._cap = cap

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self._cap.factory(server), self._host, self._port, ssl=self._ssl_context, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port)
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port
