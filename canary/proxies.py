"""Who is calling: the client address of an HTTP request, through the reverse proxies we trust.

Behind a reverse proxy every TCP peer is the proxy, so an allowlist on the peer (``/metrics``, the
detail of ``/healthz``) protects nothing and every recorded address names the proxy. A proxy tells us
its client in a header it appends to: ``X-Forwarded-For`` (nginx, HAProxy, most load balancers) or
RFC 7239 ``Forwarded``. Only one of the two is believed (``listener.proxy_header``): a proxy that
writes one passes the other through from the client untouched, so reading both would let a caller
forge its address.

The header is read right to left, starting at the peer: while the address reached is a trusted proxy
(``listener.trusted_proxies``), the hop to its left is the client that proxy saw; the first hop that is
not a trusted proxy is the client. Everything left of it was written by that client and is never
read. A hop a trusted proxy wrote that is not an address (``unknown``, an obfuscated ``_node``, junk)
ends the walk: the peer is recorded, never a value we could not check, and for an allowlist the
request comes from nowhere. A peer that is not a trusted proxy is the client, whatever it sends; if
it sends a forwarding header anyway (a proxy nobody configured, or a forger) no allowlist admits it.

aiohttp-remotes (XForwardedRelaxed / ForwardedRelaxed) rewrites ``request.remote`` for every route in
a middleware and trusts a fixed number of hops; its strict variants answer 400 on a header they
cannot read. Here detection routes must keep answering whatever arrives, and only a few places ask
who is calling, so this is a function they call, not a dependency.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from canary.config import ListenerConfig

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ProxyHeader = Literal["x-forwarded-for", "forwarded"]

#: Headers by which some proxy says whom it forwards for (X-Real-IP: nginx's usual alternative).
FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")
#: Hops read at most: a longer chain of trusted proxies is not a deployment, it is a header we stop at.
MAX_HOPS = 32


def networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """Parsed CIDRs (host bits allowed). Raises ValueError on a bad one (config validation uses it)."""
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def parse_address(text: str) -> IPAddress | None:
    """An IP address as proxies write it: ``1.2.3.4``, ``1.2.3.4:80``, ``::1``, ``[::1]``, ``[::1]:80``
    (IPv4-mapped IPv6 as its IPv4 address). None for anything else."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1:] and not _port(text[end + 1:])):
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port
        host, _, port = text.partition(":")
        if not port.isdigit() or len(port) > 5:
            return None
        text = host
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _port(suffix: str) -> bool:
    return suffix.startswith(":") and suffix[1:].isdigit() and len(suffix) <= 6


def within(addr: IPAddress | None, nets: Sequence[Network]) -> bool:
    """Whether ``addr`` is in any of ``nets`` (an address of the other IP version is in none)."""
    return addr is not None and any(addr.version == n.version and addr in n for n in nets)


def _forwarded_for(element: str) -> str | None:
    """The ``for=`` value of one RFC 7239 element (unquoted); None without exactly one."""
    found: list[str] = []
    for pair in element.split(";"):
        name, eq, raw = pair.partition("=")
        if not eq:
            if pair.strip():
                return None
            continue
        if name.strip().lower() == "for":
            raw = raw.strip()
            if raw.startswith('"') or raw.endswith('"'):
                if len(raw) < 2 or not (raw.startswith('"') and raw.endswith('"')):
                    return None
                raw = raw[1:-1]
            found.append(raw)
    return found[0] if len(found) == 1 else None


def resolve_hops(peer: str, values: Sequence[str], trusted: Sequence[Network],
                 header: ProxyHeader = "x-forwarded-for") -> IPAddress | None:
    """The client's address given the peer and the forwarding header's values in arrival order (see
    the module docstring), or None when the peer is not an IP address or a hop a trusted proxy wrote
    cannot be read. Never raises.

    Hops are split at every comma: an address never holds one, and a quoted comma a client wrote can
    only confuse hops left of the first one a trusted proxy wrote, which are never read."""
    current = parse_address(peer)
    if not within(current, trusted):
        return current
    hops = [hop for value in values for hop in value.split(",")]
    limited = len(hops) > MAX_HOPS
    for hop in reversed(hops[-MAX_HOPS:]):  # only the right-most can be reached through trusted proxies
        value = _forwarded_for(hop) if header == "forwarded" else hop
        addr = parse_address(value) if value is not None else None
        if addr is None:
            return None
        current = addr
        if not within(addr, trusted):
            return current
    return None if limited else current


def resolve(request: web.BaseRequest, trusted: Sequence[Network], header: ProxyHeader = "x-forwarded-for") -> IPAddress | None:
    """:func:`resolve_hops` of a request."""
    name = "Forwarded" if header == "forwarded" else "X-Forwarded-For"
    return resolve_hops(request.remote or "", request.headers.getall(name, []), trusted, header)


def client_address(request: web.BaseRequest, trusted: Sequence[Network], header: ProxyHeader = "x-forwarded-for") -> str:
    """The address of the client behind our trusted proxies, to record; the peer's address when it is
    not a trusted proxy or the header cannot be believed. Never raises."""
    peer = request.remote or ""
    if not trusted:
        return peer
    addr = resolve(request, trusted, header)
    return peer if addr is None else str(addr)


def forwarded_by_stranger(request: web.BaseRequest, trusted: Sequence[Network]) -> bool:
    """Whether the request says it was forwarded (any of :data:`FORWARDING_HEADERS`) by a peer that is
    not a trusted proxy: a proxy nobody configured (every caller behind it would share its address) or
    a caller forging its address. Such a request never counts as coming from an allowed network."""
    return any(h in request.headers for h in FORWARDING_HEADERS) and not within(parse_address(request.remote or ""), trusted)


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """``listener.trusted_proxies`` and ``listener.proxy_header``, parsed once."""

    nets: tuple[Network, ...] = ()
    header: ProxyHeader = "x-forwarded-for"

    @classmethod
    def from_config(cls, listener: ListenerConfig) -> TrustedProxies:
        return cls(networks(listener.trusted_proxies), listener.proxy_header)

    def client(self, request: web.BaseRequest) -> str:
        """:func:`client_address` of ``request``."""
        return client_address(request, self.nets, self.header)

    def allowed(self, request: web.BaseRequest, allow: Sequence[Network]) -> bool:
        """Whether the client is in ``allow``: never for a request forwarded by a stranger."""
        if forwarded_by_stranger(request, self.nets):
            return False
        return within(resolve(request, self.nets, self.header), allow)


def peer_key(address: str | None) -> str:
    """The unit a per-peer allowance counts (connection caps, the SMTP tarpit, probe incidents): an
    IPv4 address, or an IPv6 /64 (one host commonly holds a whole /64, so a cap per IPv6 address would
    cap nothing); IPv4-mapped IPv6 counts as IPv4. No address: ``unknown``; text that is not one: itself
    (cut to 64 characters)."""
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
