"""Who calls the API: :meth:`Authenticator.authenticate` turns a request into a :class:`Principal` or
answers 401, the same answer (and a 401 body naming no reason) for a missing, malformed, unknown, wrong,
expired or revoked token or console session. A caller is either a token (``Authorization: Bearer``) or a
browser session (the console's cookie, :mod:`canary.store.browser_sessions`), which has its token's scopes
and ends when the token is revoked.

Cookie: ``__Host-canary_session`` with Secure, HttpOnly, SameSite=Strict and Path=/ (the ``__Host-``
prefix makes the browser refuse it with a Domain or from an insecure origin, so a sibling host cannot plant
one). Chromium (checked by tests/web/test_console_browser.py) and Firefox treat http://127.0.0.1 and
http://localhost as secure origins, so this works on a loopback listener too. Only
``listener.cookie_secure = false`` (plain http at another address, where a browser would drop a Secure
cookie) uses ``canary_session`` without Secure.

CSRF: a session's state-changing request must carry its synchronizer token (a hidden form field, or
``X-CSRF-Token`` on the JSON API), compared in constant time, and must not come from a foreign Origin
(:func:`same_origin`). A Bearer token needs neither: a browser never adds it by itself.

Scopes: ``read`` < ``operate`` < ``admin`` (each includes the ones before it); ``reveal`` is separate:
it lets a caller ask for canary values (``?reveal=true``), never anything else.

Guessing tokens is slow and loud: every failure is counted per peer (an IPv4 address or IPv6 /64, behind
``listener.trusted_proxies`` only) in the kernel :class:`~canary.tarpit.Tarpit`; beyond
``api.auth_fail_limit`` per ``api.auth_fail_window`` each further failure waits longer before its 401,
and failures are rejects (``canary_rejects_total{source="api"}``) whose sample names the peer, never the
token.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn
from urllib.parse import urlsplit

import asyncpg
from aiohttp import web

from canary.config import ApiConfig, ListenerConfig
from canary.proxies import TrustedProxies
from canary.store import api_tokens, browser_sessions
from canary.tarpit import Tarpit

IMPLIES = {"admin": ("admin", "operate", "read"), "operate": ("operate", "read"), "read": ("read",), "reveal": ("reveal",)}
UNAUTHORIZED = json.dumps({"error": "unauthorized"})
#: most peers whose failures are remembered (LRU): rotating addresses evict the oldest
_PEERS = 10_000
SESSION_COOKIE = "__Host-canary_session"
PLAIN_COOKIE = "canary_session"  # listener.cookie_secure = false only


def cookie_name(listener: ListenerConfig) -> str:
    return SESSION_COOKIE if listener.cookie_secure else PLAIN_COOKIE


def same_origin(request: web.Request, public_url: str = "") -> bool:
    """Whether a state-changing browser request comes from this console: its Origin names this host or
    ``listener.public_url``'s. Without an Origin (not a browser, or an old one) Sec-Fetch-Site must not say
    another site. ``Origin: null`` is what a browser sends for a form posted from a page with
    ``Referrer-Policy: no-referrer`` (the console's own pages: Fetch, "serializing a request origin"), so
    then Sec-Fetch-Site decides, which browsers send whatever the policy, but only to secure origins
    (HTTPS, loopback): on plain http elsewhere (``listener.cookie_secure = false``) there is nothing to
    tell, and the synchronizer token and SameSite=Strict alone stand against cross-site posts."""
    origin = request.headers.get("Origin")
    site = request.headers.get("Sec-Fetch-Site")
    if origin is None:
        return site in (None, "same-origin", "none")
    if origin == "null":
        return site in (None, "same-origin")
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    if public_url:
        own = urlsplit(public_url)
        if (parts.scheme, parts.netloc) == (own.scheme, own.netloc):
            return True
    return parts.netloc == request.host


def csrf_ok(principal: Principal, presented: str | None) -> bool:
    """Whether ``presented`` is the session's synchronizer token (constant time); a token caller needs none."""
    if principal.kind != "session":
        return True
    return presented is not None and hmac.compare_digest(presented.encode("utf-8", "surrogateescape"),
                                                         principal.csrf.encode())


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    kind: str  # "token" | "session" (the console; id and name are its token's)
    id: str
    name: str
    scopes: frozenset[str]
    csrf: str = ""  # a session's synchronizer token

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
                 reject: Callable[[str, str, str], Awaitable[None]], *, cookie: str = SESSION_COOKIE) -> None:
        self.pool = pool
        self.config = config
        self.proxies = proxies
        self.cookie = cookie
        self._reject = reject
        self.tarpit = Tarpit(config.auth_fail_limit, config.auth_fail_window, config.auth_fail_step,
                             config.auth_fail_max, _PEERS, kinds=("auth",))

    async def authenticate(self, request: web.Request) -> Principal:
        """The caller of ``request`` (a Bearer token, else the console's session cookie), or raise 401
        (after the peer's tarpit delay, if any)."""
        header = request.headers.get("Authorization", "")
        if not header and self.cookie in request.cookies:
            principal = await self.session(request)
            if principal is not None:
                return principal
            await self.fail(request, "bad_session")
        scheme, _, presented = header.partition(" ")
        token = None
        if scheme.lower() == "bearer" and presented.strip():
            token = await api_tokens.verify(self.pool, presented.strip())
        if token is None:
            await self.fail(request, "bad_token" if header else "no_token")
        return Principal("token", token.id, token.name, effective(token.scopes))

    async def fail(self, request: web.Request, reason: str) -> NoReturn:
        """Count a failure against the peer, wait its tarpit delay, raise 401."""
        client = self.proxies.client(request)
        pace = self.tarpit.count(client, "auth")
        await self._reject("api", reason, f"peer={pace.peer}")
        await Tarpit.wait(pace)
        raise unauthorized()

    async def session(self, request: web.Request) -> Principal | None:
        """The console session of ``request``'s cookie, if valid (no failure counted: pages redirect to sign-in)."""
        value = request.cookies.get(self.cookie)
        if not value:
            return None
        found = await browser_sessions.verify(self.pool, value, idle=self.config.session_idle)
        if found is None:
            return None
        t = found.token
        return Principal("session", t.id, t.name, effective(t.scopes), csrf=found.csrf)

    async def sign_in(self, request: web.Request, presented: str) -> tuple[Principal, str]:
        """A new session for the API token ``presented`` (its principal and cookie value), or 401 after
        the peer's tarpit delay: failed sign-ins count with failed API calls."""
        token = await api_tokens.verify(self.pool, presented.strip()) if presented.strip() else None
        if token is None:
            await self.fail(request, "bad_signin")
        value, found = await browser_sessions.create(self.pool, token, lifetime=self.config.session_max,
                                                     client=self.proxies.client(request))
        return Principal("session", token.id, token.name, effective(token.scopes), csrf=found.csrf), value

    async def sign_out(self, request: web.Request) -> None:
        value = request.cookies.get(self.cookie)
        if value:
            await browser_sessions.end(self.pool, value)
