"""Enrichment of client addresses (canary/enrich.py) against real MaxMind-format databases written with
mmdb_writer and a real DNS server on a loopback UDP socket; and the dispatcher sending an alert enriched."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from alerting_servers import drained, make_alert
from hypothesis import given, settings
from hypothesis import strategies as st
from mmdb_writer import MMDBWriter
from netaddr import IPSet
from structlog.testing import capture_logs
from testkit import MakeConfig

from canary.config import EnrichmentConfig, from_mapping
from canary.enrich import Enricher, describe, parse_address
from canary.errors import ConfigError
from canary.events import DetectionEvent, EventKind, event_key
from canary.outbox import Dispatcher
from canary.pipeline import Pipeline
from canary.runtime import build_sinks
from canary.store import ControlStore

KR = {"country": {"iso_code": "KR", "names": {"en": "South Korea", "ko": "대한민국"}},
      "city": {"names": {"en": "Seoul"}}, "location": {"latitude": 37.5, "longitude": 127.0, "time_zone": "Asia/Seoul"}}
JP = {"country": {"iso_code": "JP", "names": {"en": "Japan"}}, "city": {"names": {"en": "Tokyo"}},
      "location": {"latitude": 35.6, "longitude": 139.7, "time_zone": "Asia/Tokyo"}}
# a record whose "country" is missing (an anycast or satellite block): the registered country is what is known
REGISTERED_ONLY = {"registered_country": {"iso_code": "US", "names": {"en": "United States"}}}


@pytest.fixture(scope="module")
def dbs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A GeoLite2-City-shaped and a GeoLite2-ASN-shaped database (IPv6 trees holding IPv4 too, as MaxMind ships
    them); 10.0.0.0/8 has a record so a test can prove internal addresses skip it."""
    tmp = tmp_path_factory.mktemp("mmdb")
    city = MMDBWriter(6, "GeoLite2-City", languages=["en", "ko"], description="test city", ipv4_compatible=True)
    city.insert_network(IPSet(["203.0.113.0/24"]), KR)
    city.insert_network(IPSet(["2001:db8::/32"]), JP)
    city.insert_network(IPSet(["198.51.100.0/24"]), REGISTERED_ONLY)
    city.insert_network(IPSet(["10.0.0.0/8"]), KR)
    city.to_db_file(str(tmp / "city.mmdb"))
    asn = MMDBWriter(6, "GeoLite2-ASN", languages=["en"], description="test asn", ipv4_compatible=True)
    asn.insert_network(IPSet(["203.0.113.0/24"]), {"autonomous_system_number": 4766,
                                                   "autonomous_system_organization": "Korea Telecom"})
    asn.insert_network(IPSet(["2001:db8::/32"]), {"autonomous_system_number": 2516,
                                                 "autonomous_system_organization": "KDDI CORPORATION"})
    asn.to_db_file(str(tmp / "asn.mmdb"))
    return tmp / "city.mmdb", tmp / "asn.mmdb"


class DnsServer(asyncio.DatagramProtocol):
    """An authoritative-style DNS server on a loopback UDP port: answers from ``records`` ((name, type) ->
    rdata texts), NXDOMAIN otherwise; ``silent`` drops every query (a resolver that never answers)."""

    def __init__(self, records: dict[tuple[str, str], list[str]], silent: bool = False) -> None:
        self.records = records
        self.silent = silent
        self.queries: list[tuple[str, str]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        key = (question.name.to_text().lower(), dns.rdatatype.to_text(question.rdtype))
        self.queries.append(key)
        if self.silent or self.transport is None:
            return
        response = dns.message.make_response(query)
        values = self.records.get(key)
        if values is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            response.answer.append(dns.rrset.from_text_list(question.name, 300, "IN", key[1], values))
        self.transport.sendto(response.to_wire(), addr)

    @property
    def address(self) -> str:
        assert self.transport is not None
        return "{}:{}".format(*self.transport.get_extra_info("sockname")[:2])


@pytest.fixture
async def dns_server() -> AsyncIterator[DnsServer]:
    records = {
        ("1.0.0.127.in-addr.arpa.", "PTR"): ["localhost."],
        ("localhost.", "A"): ["127.0.0.1"],
        ("7.113.0.203.in-addr.arpa.", "PTR"): ["ns.kt.example."],
        ("ns.kt.example.", "A"): ["198.51.100.1", "203.0.113.7"],
        # claims a bank's name, whose forward records do not include the address
        ("9.113.0.203.in-addr.arpa.", "PTR"): ["login.bank.example."],
        ("login.bank.example.", "A"): ["192.0.2.80"],
        # not a hostname at all (a space and an @ in a label), forward record present anyway
        ("10.113.0.203.in-addr.arpa.", "PTR"): ["evil\\032<b>@x.example."],
        ("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", "PTR"): ["v6.kddi.example."],
        ("v6.kddi.example.", "AAAA"): ["2001:db8::1"],
    }
    server = DnsServer(records)
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
    yield server
    transport.close()


@pytest.fixture
async def silent_dns() -> AsyncIterator[DnsServer]:
    server = DnsServer({}, silent=True)
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(lambda: server, local_addr=("127.0.0.1", 0))
    yield server
    transport.close()


def _enricher(dbs: tuple[Path, Path] | None = None, **options: Any) -> Enricher:
    data: dict[str, Any] = {"rdns": False, **options}
    if dbs is not None:
        data.update(city_db=str(dbs[0]), asn_db=str(dbs[1]))
    return Enricher(EnrichmentConfig.model_validate(data))


@pytest.fixture
def enricher(dbs: tuple[Path, Path]) -> Iterator[Enricher]:
    e = _enricher(dbs)
    yield e
    e.close()


async def test_ipv4_and_ipv6_lookups(enricher: Enricher) -> None:
    """Country (ISO code and English name), city and the autonomous system, for IPv4, IPv6, an IPv4-mapped
    IPv6 address, an IPv6 address with a zone, and a block with only a registered country."""
    kt = {"address": "203.0.113.7", "country": "KR", "country_name": "South Korea", "city": "Seoul", "asn": 4766,
          "as_org": "Korea Telecom", "internal": False}
    assert await enricher.enrich("203.0.113.7") == kt
    assert await enricher.enrich("::ffff:203.0.113.7") == kt
    assert await enricher.enrich(" 203.0.113.7 ") == kt
    v6 = {"address": "2001:db8::1", "country": "JP", "country_name": "Japan", "city": "Tokyo", "asn": 2516,
          "as_org": "KDDI CORPORATION", "internal": False}
    assert await enricher.enrich("2001:db8::1") == v6
    assert await enricher.enrich("2001:0db8:0::1%eth0") == v6
    assert await enricher.enrich("[2001:db8::1]") == v6
    assert await enricher.enrich("198.51.100.5") == {"address": "198.51.100.5", "country": "US",
                                                     "country_name": "United States", "internal": False}
    assert await enricher.enrich("192.0.2.1") == {"address": "192.0.2.1", "internal": False}  # in no database
    assert describe(kt) == "203.0.113.7 (KR, Seoul, AS4766 Korea Telecom)"


async def test_internal_networks_are_marked_and_not_looked_up(dbs: tuple[Path, Path]) -> None:
    """RFC 1918, loopback, link-local, carrier NAT and ULA are internal by default (a database record for 10/8
    is not consulted); internal_networks replaces the list; [local] (a Unix socket) is internal."""
    e = _enricher(dbs)
    for address in ("10.1.2.3", "172.16.0.1", "192.168.1.1", "127.0.0.1", "169.254.1.1", "100.64.0.1", "::1",
                    "fe80::1%eth0", "fd00::1"):
        got = await e.enrich(address)
        assert got["internal"] is True and "country" not in got, address
    assert await e.enrich("[local]") == {"address": "[local]", "internal": True}
    own = _enricher(dbs, internal_networks=["203.0.113.0/25"])
    assert await own.enrich("203.0.113.7") == {"address": "203.0.113.7", "internal": True}
    assert (await own.enrich("10.1.2.3"))["country"] == "KR"  # no longer internal: the database speaks
    e.close()
    own.close()


async def test_rdns_is_forward_confirmed_and_validated(dbs: tuple[Path, Path], dns_server: DnsServer) -> None:
    """127.0.0.1 reads as localhost; a PTR name is shown only when its A / AAAA records include the address
    (a forged bank name is not) and only when it is a hostname (a label with a space or markup is not)."""
    e = _enricher(dbs, rdns=True, rdns_external=True, rdns_nameservers=[dns_server.address], rdns_timeout=2)
    assert await e.enrich("127.0.0.1") == {"address": "127.0.0.1", "rdns": "localhost", "internal": True}
    assert (await e.enrich("203.0.113.7"))["rdns"] == "ns.kt.example"
    assert (await e.enrich("2001:db8::1"))["rdns"] == "v6.kddi.example"
    forged = await e.enrich("203.0.113.9")
    assert "rdns" not in forged and forged["country"] == "KR"
    assert ("login.bank.example.", "A") in dns_server.queries  # it was checked, and failed the check
    hostile = await e.enrich("203.0.113.10")
    assert "rdns" not in hostile
    assert not any(q[0].startswith("evil") for q in dns_server.queries)  # an invalid name is never looked up
    assert "rdns" not in await e.enrich("203.0.113.11")  # NXDOMAIN
    e.close()


async def test_outside_addresses_get_no_dns_query_by_default(dbs: tuple[Path, Path], dns_server: DnsServer) -> None:
    """Without rdns_external an outside address causes no DNS query at all (its reverse zone's owner would see
    it right after the alert: a canary oracle); internal addresses are still named."""
    e = _enricher(dbs, rdns=True, rdns_nameservers=[dns_server.address], rdns_timeout=2)
    assert "rdns" not in await e.enrich("203.0.113.7") and (await e.enrich("203.0.113.7"))["country"] == "KR"
    assert "rdns" not in await e.enrich("2001:db8::1")
    assert dns_server.queries == []
    assert (await e.enrich("127.0.0.1"))["rdns"] == "localhost"
    e.close()


async def test_rdns_timeout_bounds_the_caller_and_is_cached(silent_dns: DnsServer) -> None:
    """A resolver that never answers costs at most rdns_timeout, also for 100 addresses at once (more than
    the concurrent lookups allowed); the failure is cached, so the next alert does not wait again."""
    e = _enricher(rdns=True, rdns_external=True, rdns_nameservers=[silent_dns.address], rdns_timeout=0.3)
    start = time.monotonic()
    got = await e.enrich("203.0.113.7")
    first = time.monotonic() - start
    assert got == {"address": "203.0.113.7", "internal": False} and 0.25 < first < 0.8
    start = time.monotonic()
    assert await e.enrich("203.0.113.7") == got
    assert time.monotonic() - start < 0.05 and len(silent_dns.queries) >= 1
    start = time.monotonic()
    results = await asyncio.gather(*(e.enrich(f"198.51.100.{i}") for i in range(100)))
    elapsed = time.monotonic() - start
    assert all("rdns" not in r for r in results) and elapsed < 0.9, elapsed
    e.close()


@pytest.mark.parametrize("garbage", [
    None, 17, 1.5, b"203.0.113.7", ["203.0.113.7"], "", " ", "not an address", "203.0.113.7:5432", "999.1.1.1",
    "1.2.3", "::ffff:", "fe80::1%", "%eth0", "[", "[]", "\x00", "203.0.113.7\x00", "a" * 100_000, "ａ.ｂ",
    "localhost", "AWS Internal", "s3.amazonaws.com", "2001:db8::1/64", "[::1", "::1]",
])
async def test_garbage_never_raises(enricher: Enricher, garbage: object) -> None:
    """Anything that is not an IP address (types, host names, service names, prefixes, control characters,
    100 kB of text) yields an empty mapping, never an exception."""
    assert await enricher.enrich(garbage) == {}
    assert parse_address(garbage) is None


async def test_cache_is_bounded_lru(dns_server: DnsServer) -> None:
    """The cache holds at most cache_size addresses; a hit asks nothing of DNS and keeps the address recent,
    the least recently used is forgotten and looked up again."""
    e = _enricher(rdns=True, rdns_external=True, rdns_nameservers=[dns_server.address], rdns_timeout=2, cache_size=3)
    for i in range(1, 6):
        await e.enrich(f"192.0.2.{i}")
    assert e.cached == 3
    asked = len(dns_server.queries)
    await e.enrich("192.0.2.5")
    await e.enrich("192.0.2.3")
    assert len(dns_server.queries) == asked  # both still cached
    await e.enrich("192.0.2.6")  # evicts 192.0.2.4, the least recently used
    await e.enrich("192.0.2.3")
    assert len(dns_server.queries) == asked + 1
    await e.enrich("192.0.2.4")
    assert len(dns_server.queries) == asked + 2 and e.cached == 3
    e.close()


async def test_concurrent_lookups_of_one_address_share_one(dns_server: DnsServer) -> None:
    """Fifty alerts from one new address at once make one PTR query, not fifty."""
    e = _enricher(rdns=True, rdns_external=True, rdns_nameservers=[dns_server.address], rdns_timeout=2)
    results = await asyncio.gather(*(e.enrich("203.0.113.7") for _ in range(50)))
    assert all(r == results[0] for r in results) and results[0]["rdns"] == "ns.kt.example"
    assert dns_server.queries.count(("7.113.0.203.in-addr.arpa.", "PTR")) == 1
    e.close()


def test_bad_database_files_are_config_errors_naming_the_key(dbs: tuple[Path, Path], tmp_path: Path) -> None:
    """A missing file fails config validation at its key; a corrupt file, and an ASN database given as
    city_db, fail building the enricher with a ConfigError naming the key."""
    with pytest.raises(ConfigError) as missing:
        from_mapping({"enrichment": {"asn_db": str(tmp_path / "nope.mmdb")}})
    assert missing.value.key == "enrichment.asn_db" and "does not exist" in str(missing.value)
    corrupt = tmp_path / "corrupt.mmdb"
    corrupt.write_bytes(b"\x00" * 4096 + b"not a maxmind database")
    with pytest.raises(ConfigError) as bad:
        _enricher(None, city_db=str(corrupt))
    assert bad.value.key == "enrichment.city_db" and "not a readable MaxMind database" in str(bad.value)
    with pytest.raises(ConfigError) as swapped:
        _enricher(None, city_db=str(dbs[1]))
    assert swapped.value.key == "enrichment.city_db" and "GeoLite2-ASN" in str(swapped.value)
    with pytest.raises(ConfigError) as swapped_asn:
        _enricher(None, city_db=str(dbs[0]), asn_db=str(dbs[0]))
    assert swapped_asn.value.key == "enrichment.asn_db"
    with pytest.raises(ConfigError) as servers:
        from_mapping({"enrichment": {"rdns_nameservers": ["resolver.corp"]}})
    assert servers.value.key == "enrichment.rdns_nameservers"


async def test_enrich_event_and_alert_use_the_origin_client_address(enricher: Enricher) -> None:
    """enrich_event reads the event's origin.client_addr; enrich_alert returns the alert with enrichment,
    and the alert unchanged when its origin has no address."""
    event = DetectionEvent(kind=EventKind.USED, source="pg_honeypot", key=event_key("e", 1), group="g",
                           canary_id=None, observed_at=dt.datetime.now(dt.timezone.utc),
                           origin={"client_addr": "203.0.113.7", "client_port": 5000})
    assert (await enricher.enrich_event(event))["as_org"] == "Korea Telecom"
    alert = await enricher.enrich_alert(make_alert(origin={"client_addr": "2001:db8::1"}))
    assert alert.enrichment["city"] == "Tokyo" and alert.to_json()["enrichment"]["asn"] == 2516
    bare = make_alert(origin={"node": "db1"})
    assert await enricher.enrich_alert(bare) is bare


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=80), st.from_regex(r"[0-9a-fA-F:.%\[\] ]{0,45}", fullmatch=True),
                 st.ip_addresses().map(str)))
def test_enrich_never_raises(dbs: tuple[Path, Path], text: str) -> None:
    """For any text (and every valid address) enrich returns a mapping of known keys only, never raises."""
    async def run() -> dict[str, Any]:
        e = _enricher(dbs)
        try:
            return await e.enrich(text)
        finally:
            e.close()

    got = asyncio.run(run())
    assert set(got) <= {"address", "country", "country_name", "city", "asn", "as_org", "rdns", "internal"}


async def test_dispatcher_sends_the_alert_enriched(store: ControlStore, make_config: MakeConfig,
                                                   http: aiohttp.ClientSession, dbs: tuple[Path, Path],
                                                   silent_dns: DnsServer) -> None:
    """An incident from 203.0.113.7 reaches the sink with its enrichment beside its ATT&CK techniques, even
    when reverse DNS never answers (delivery waits at most rdns_timeout for it)."""
    cfg = make_config(sinks=[{"name": "out", "type": "stdout"}], alerting={"retry_initial": 0.05, "workers": 1},
                      enrichment={"city_db": str(dbs[0]), "asn_db": str(dbs[1]), "rdns_external": True,
                                  "rdns_nameservers": [silent_dns.address], "rdns_timeout": 0.2})
    event = DetectionEvent(kind=EventKind.USED, source="pg_honeypot", key=event_key("d", 1), group="d-1",
                           canary_id=None, observed_at=dt.datetime.now(dt.timezone.utc),
                           actor={"user": "mallory"}, origin={"client_addr": "203.0.113.7"})
    await Pipeline(store.pool, cfg).record([event])
    enricher = Enricher(cfg.enrichment)
    d = Dispatcher(store.pool, build_sinks(cfg, http), cfg.alerting, poll=0.05, enricher=enricher)
    with capture_logs() as logs:
        await d.start()
        try:
            await drained(store.pool, 10)
        finally:
            await d.stop()
            enricher.close()
    sent = [e for e in logs if e["event"] == "alert"]
    assert len(sent) == 1 and d.stats.delivered == 1 and d.stats.failed_attempts == 0
    assert sent[0]["enrichment"] == {"address": "203.0.113.7", "country": "KR", "country_name": "South Korea",
                                     "city": "Seoul", "asn": 4766, "as_org": "Korea Telecom", "internal": False}
    assert [t["id"] for t in sent[0]["attack"]] == ["T1078", "T1552"]
