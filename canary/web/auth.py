"""Who calls the API: :meth:`Authenticator.authenticate` turns a request into a :class:`Principal` or
answers 401, the same answer (and a 401 body naming no reason) for a missing, malformed, unknown, wrong,
expired or revoked token. It is the one place a session cookie (the console, part 2) will be added.

Scopes: ``read`` < ``operate`` < ``admin`` (each includes the ones before it); ``reveal`` is separate:
it lets a caller ask for canary values (``?reveal=true``), never anything else.

Guessing tokens is slow and loud: every failure is counted per peer (an IPv4 address or IPv6 /64, behind
``listener.trusted_proxies`` only) in the kernel :class:`~canary.tarpit.Tarpit`; beyond
``api.auth_fail_limit`` per ``api.auth_fail_window`` each further failure waits longer before its 401,
and failures are rejects (``canary_rejects_total{source="api"}``) whose sample names the peer, never the
token.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
from aiohttp import web

from canary.config import ApiConfig
from canary.proxies import TrustedProxies
from canary.store import api_tokens
from canary.tarpit import Tarpit

IMPLIES = {"admin": ("admin", "operate", "read"), "operate": ("operate", "read"), "read": ("read",), "reveal": ("reveal",)}
UNAUTHORIZED = json.dumps({"error": "unauthorized"})
#: most peers whose failures are remembered (LRU): rotating addresses evict the oldest
_PEERS = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    kind: str  # "token" (part 2 adds "session")
    id: str
    name: str
    scopes: frozenset[str]

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"{self.kind}:{self.id} ({self.name})"

    def has(self, scope: str) -> bool:
        return scope in self.scopes


def effective(scopes: tuple[str, ...]) -> frozenset[str]:
    return frozenset(s for granted in scopes for s in IMPLIES.get(granted, ()))


def unauthorized() -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(text=UNAUTHORIZED, content_type="application/json",
                                headers={"WWW-Authenticate": 'Bearer realm="canary"', "Cache-Control": "no-store"})


class Authenticator:
    def __init__(self, pool: asyncpg.Pool, config: ApiConfig, proxies: TrustedProxies,
                 reject: Callable[[str, str, str], Awaitable[None]]) -> None:
        self.pool = pool
        self.proxies = proxies
        self._reject = reject
        self.tarpit = Tarpit(config.auth_fail_limit, config.auth_fail_window, config.auth_fail_step,
                             config.auth_fail_max, _PEERS, kinds=("auth",))

    async def authenticate(self, request: web.Request) -> Principal:
        """The caller of ``request``, or raise 401 (after the peer's tarpit delay, if any)."""
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        token = None
        if scheme.lower() == "bearer" and presented.strip():
            token = await api_tokens.verify(self.pool, presented.strip())
        if token is None:
            client = self.proxies.client(request)
            pace = self.tarpit.count(client, "auth")
            await self._reject("api", "bad_token" if header else "no_token", f"peer={pace.peer}")
            await Tarpit.wait(pace)
            raise unauthorized()
        return Principal("token", token.id, token.name, effective(token.scopes))
