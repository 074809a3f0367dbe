"""What is known about a client address, for the analyst reading an alert: country and city, the
autonomous system, a reverse-DNS name, and whether it is one of our own networks.

Lookups are local: MaxMind-format databases (GeoLite2 / GeoIP2 City or Country for ``city_db``,
GeoLite2-ASN / GeoIP2-ISP for ``asn_db``) read through ``maxminddb`` with the memory-mapped reader
(record layout: https://dev.maxmind.com/geoip/docs/databases/city-and-country and
https://dev.maxmind.com/geoip/docs/databases/asn). A file that is missing, corrupt or of the other
kind is a :class:`~canary.errors.ConfigError` naming its key when the enricher is built, never a
surprise at the first alert; a key left unset turns that lookup off.

Reverse DNS is asked only for internal addresses unless ``rdns_external`` is set: a PTR query for an
outside address ends at the DNS server of whoever holds its reverse zone, possibly the attacker, and a
query arriving right after they touched some rows would tell them a canary was among them.
It goes through dnspython's asyncio resolver rather than ``getnameinfo`` in a thread: a
lookup is cancelled for real when ``rdns_timeout`` ends (a thread would keep running to the system
resolver's own timeout), so an attacker whose PTR zone never answers cannot hold threads or delay an
alert beyond the timeout; at most :data:`RDNS_CONCURRENCY` lookups run at once. The PTR answer is
text the address's owner chose: it must be a hostname (LDH labels, at most 253 characters) and it is
shown only when forward-confirmed (the name's A / AAAA records include the address), so nobody can
make their address read as ``vpn.example-bank.com``. Answers, negative ones included, are cached
(LRU, ``cache_size`` entries, ``cache_ttl``; a timeout or resolver failure for at most
:data:`FAILURE_TTL`), and concurrent lookups of one address share one.

:meth:`Enricher.enrich` never raises: anything that is not an IP address (``[local]`` for a Unix
socket, a host name, garbage) yields what can be said about it, usually nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import ipaddress
import re
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.resolver
import dns.reversename
import maxminddb
import structlog

from canary.alerts import Alert
from canary.config import EnrichmentConfig, split_server
from canary.errors import ConfigError
from canary.events import DetectionEvent

log = structlog.get_logger("canary.enrich")

#: reverse-DNS lookups in flight at once (each a UDP query, a second for forward confirmation)
RDNS_CONCURRENCY = 32
#: a lookup that timed out or whose resolver failed is retried after at most this long
FAILURE_TTL = 60.0
#: PTR names tried for forward confirmation (a hostile zone may answer with hundreds)
PTR_NAMES_MAX = 3
#: the longest text taken from a database record (names are short; a broken file is not)
TEXT_MAX = 128
#: the origin keys that hold the client's address, first found wins
ADDRESS_KEYS = ("client_addr",)

_LABEL = re.compile(rb"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_CITY_TYPES = ("City", "Country", "Enterprise")
_ASN_TYPES = ("ASN", "ISP")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(text: object) -> IpAddress | None:
    """The IP address in ``text`` (IPv4-mapped IPv6 as IPv4, an IPv6 zone dropped, ``[v6]`` brackets
    removed), or None for anything else."""
    if not isinstance(text, str) or not 2 <= len(text) <= 64:
        return None
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:  # fe80::1%eth0: the zone is our interface
        ip = ipaddress.IPv6Address(int(ip))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def hostname(name: dns.name.Name) -> str | None:
    """``name`` as a lower-case hostname if it is one (LDH labels, at most 253 characters), else None."""
    labels = [label for label in name.labels if label]
    if not labels or not all(_LABEL.match(label) for label in labels):
        return None
    text = b".".join(labels).decode("ascii").lower()
    return text if len(text) <= 253 else None


def _text(value: object) -> str | None:
    return value[:TEXT_MAX] if isinstance(value, str) and value else None


def _open(path: Path, key: str, kinds: tuple[str, ...]) -> maxminddb.Reader:
    """Open a MaxMind database memory-mapped, or raise ConfigError naming ``key``."""
    try:
        reader = maxminddb.open_database(str(path), maxminddb.MODE_AUTO)
    except FileNotFoundError:
        raise ConfigError(key, f"database file {path} does not exist") from None
    except (maxminddb.InvalidDatabaseError, ValueError, OSError) as exc:
        raise ConfigError(key, f"{path} is not a readable MaxMind database: {type(exc).__name__}: {exc}") from None
    kind = str(reader.metadata().database_type)
    if not any(k in kind for k in kinds):
        reader.close()
        raise ConfigError(key, f"{path} is a {kind[:60]!r} database; expected one of {', '.join(kinds)}")
    return reader


@dataclasses.dataclass(slots=True)
class _Entry:
    expires: float
    value: dict[str, Any]


class Enricher:
    """Enrichment of client addresses from ``[enrichment]``; build once per process, :meth:`close` at
    shutdown. Raises :class:`ConfigError` when a configured database cannot be used."""

    def __init__(self, config: EnrichmentConfig) -> None:
        self.config = config
        self.timeout = config.rdns_timeout
        self._networks = tuple(ipaddress.ip_network(n, strict=False) for n in config.internal_networks)
        self._city = _open(config.city_db, "enrichment.city_db", _CITY_TYPES) if config.city_db else None
        try:
            self._asn = _open(config.asn_db, "enrichment.asn_db", _ASN_TYPES) if config.asn_db else None
        except ConfigError:
            self.close()
            raise
        self._resolver = self._make_resolver(config) if config.rdns else None
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[dict[str, Any]]] = {}
        self._rdns_slots: asyncio.Semaphore | None = None  # made on first use, inside the running loop

    @staticmethod
    def _make_resolver(config: EnrichmentConfig) -> dns.asyncresolver.Resolver | None:
        try:
            resolver = dns.asyncresolver.Resolver(configure=not config.rdns_nameservers)
        except (dns.resolver.NoResolverConfiguration, OSError) as exc:
            log.warning("enrich.rdns_unavailable", error=type(exc).__name__)
            return None
        if config.rdns_nameservers:
            servers: list[str | dns.nameserver.Nameserver] = []
            for server in config.rdns_nameservers:
                host, port = split_server(server)
                servers.append(dns.nameserver.Do53Nameserver(host, port))
            resolver.nameservers = servers
        resolver.timeout = resolver.lifetime = config.rdns_timeout
        resolver.search = []
        resolver.use_search_by_default = False
        return resolver

    def close(self) -> None:
        for reader in (getattr(self, "_city", None), getattr(self, "_asn", None)):
            if reader is not None:
                reader.close()
        self._city = self._asn = None

    @property
    def cached(self) -> int:
        return len(self._cache)

    async def enrich(self, address: object) -> dict[str, Any]:
        """``{"address", "country", "country_name", "city", "asn", "as_org", "rdns", "internal"}`` with
        only the keys known for ``address`` (empty for what is not an address). Never raises; takes at
        most about ``rdns_timeout``."""
        try:
            if isinstance(address, str) and address.strip() == "[local]":
                return {"address": "[local]", "internal": True}  # PostgreSQL's Unix-socket client
            ip = parse_address(address)
            if ip is None:
                return {}
            key = str(ip)
            now = time.monotonic()
            entry = self._cache.get(key)
            if entry is not None and entry.expires > now:
                self._cache.move_to_end(key)
                return dict(entry.value)
            task = self._inflight.get(key)
            if task is None:
                task = asyncio.ensure_future(self._lookup(ip))
                self._inflight[key] = task
                task.add_done_callback(functools.partial(self._landed, key))
            return dict(await asyncio.shield(task))
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - enrichment decorates an alert; a bug in it must never cost one
            log.exception("enrich.failed")
            return {}

    def _landed(self, key: str, _task: asyncio.Task[dict[str, Any]]) -> None:
        self._inflight.pop(key, None)

    async def enrich_alert(self, alert: Alert) -> Alert:
        """``alert`` with ``enrichment`` about its origin's client address (unchanged without one)."""
        found = await self.enrich(_origin_address(alert.origin))
        return dataclasses.replace(alert, enrichment=found) if found else alert

    async def enrich_event(self, event: DetectionEvent) -> Mapping[str, Any]:
        """The enrichment of an event's client address (what the SIEM event feed attaches)."""
        return await self.enrich(_origin_address(event.origin))

    async def _lookup(self, ip: IpAddress) -> dict[str, Any]:
        internal = any(ip.version == net.version and ip in net for net in self._networks)
        out: dict[str, Any] = {"address": str(ip)}
        if not internal:
            out.update(self._geo(ip))
        ttl = self.config.cache_ttl
        if self._resolver is not None and (internal or self.config.rdns_external):
            try:
                name = await asyncio.wait_for(self._rdns(ip), self.timeout)
            except (asyncio.TimeoutError, dns.exception.DNSException, OSError, ValueError) as exc:
                log.debug("enrich.rdns_failed", error=type(exc).__name__)
                name, ttl = None, min(ttl, FAILURE_TTL)
            if name:
                out["rdns"] = name
        out["internal"] = internal
        self._remember(str(ip), out, ttl)
        return out

    def _geo(self, ip: IpAddress) -> dict[str, Any]:
        out: dict[str, Any] = {}
        city = self._get(self._city, ip)
        country = city.get("country") or city.get("registered_country")
        if isinstance(country, Mapping):
            code = _text(country.get("iso_code"))
            if code and len(code) == 2 and code.isalpha():
                out["country"] = code.upper()
            names = country.get("names")
            if isinstance(names, Mapping) and _text(names.get("en")):
                out["country_name"] = _text(names.get("en"))
        names = city.get("city", {}).get("names") if isinstance(city.get("city"), Mapping) else None
        if isinstance(names, Mapping) and _text(names.get("en")):
            out["city"] = _text(names.get("en"))
        asn = self._get(self._asn, ip)
        number = asn.get("autonomous_system_number")
        if isinstance(number, int) and not isinstance(number, bool) and 0 < number < 2**32:
            out["asn"] = number
        org = _text(asn.get("autonomous_system_organization")) or _text(asn.get("isp"))
        if org:
            out["as_org"] = org
        return out

    @staticmethod
    def _get(reader: maxminddb.Reader | None, ip: IpAddress) -> Mapping[str, Any]:
        if reader is None:
            return {}
        try:
            record = reader.get(ip)
        except (ValueError, maxminddb.InvalidDatabaseError, OSError) as exc:  # IPv6 in an IPv4 file; a broken file
            log.debug("enrich.db_lookup_failed", error=type(exc).__name__)
            return {}
        return record if isinstance(record, Mapping) else {}

    async def _rdns(self, ip: IpAddress) -> str | None:
        """The forward-confirmed PTR name of ``ip``, or None."""
        assert self._resolver is not None
        if self._rdns_slots is None:
            self._rdns_slots = asyncio.Semaphore(RDNS_CONCURRENCY)
        async with self._rdns_slots:
            try:
                answer = await self._resolver.resolve(dns.reversename.from_address(str(ip)), "PTR",
                                                      raise_on_no_answer=False, lifetime=self.timeout, search=False)
            except dns.resolver.NXDOMAIN:  # a definite answer: no name (cached like any other)
                return None
            names = [hostname(r.target) for r in (answer.rrset or ())][:PTR_NAMES_MAX]
            for name in names:
                if name is None:
                    continue
                rdtype = "A" if ip.version == 4 else "AAAA"
                try:
                    forward = await self._resolver.resolve(name + ".", rdtype, raise_on_no_answer=False,
                                                           lifetime=self.timeout, search=False)
                except (dns.resolver.NXDOMAIN, dns.resolver.NoNameservers):
                    continue
                if any(parse_address(r.address) == ip for r in (forward.rrset or ())):
                    return name
        return None

    def _remember(self, key: str, value: dict[str, Any], ttl: float) -> None:
        self._cache[key] = _Entry(time.monotonic() + ttl, value)
        self._cache.move_to_end(key)
        while len(self._cache) > self.config.cache_size:
            self._cache.popitem(last=False)


def _origin_address(origin: Mapping[str, Any]) -> object:
    for key in ADDRESS_KEYS:
        if origin.get(key):
            return origin[key]
    return None


def describe(enrichment: Mapping[str, Any]) -> str:
    """One line about a client address: ``203.0.113.7 (KR, Seoul, AS4766 Korea Telecom, host.example)``;
    empty when nothing is known."""
    address = enrichment.get("address")
    if not address:
        return ""
    parts = [str(enrichment[k]) for k in ("country", "city") if enrichment.get(k)]
    if enrichment.get("asn") or enrichment.get("as_org"):
        parts.append(" ".join(p for p in (f"AS{enrichment['asn']}" if enrichment.get("asn") else "",
                                          str(enrichment.get("as_org") or "")) if p))
    if enrichment.get("rdns"):
        parts.append(str(enrichment["rdns"]))
    if enrichment.get("internal"):
        parts.append("internal")
    return f"{address} ({', '.join(parts)})" if parts else str(address)
