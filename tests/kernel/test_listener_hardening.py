"""The listener against a caller who has read its source: /healthz names no component, port or trap
to strangers; /metrics and the /healthz detail go only to allowed networks, judged through trusted
reverse proxies, never through a forwarding header a stranger wrote."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from testkit import MakeConfig, OpenRuntime

from canary.listener import Listener
from canary.proxies import ProxyHeader, client_address, networks, resolve_hops
from canary.runtime import Runtime
from canary.typing import SourceContext

TRAP = "token_honeypot:18443"

# (trusted proxies, header believed, headers sent, client address expected); the peer is 127.0.0.1
CLIENTS: list[tuple[tuple[str, ...], ProxyHeader, dict[str, str] | list[tuple[str, str]], str]] = [
    ((), "x-forwarded-for", {"X-Forwarded-For": "10.9.9.9"}, "127.0.0.1"),  # no proxy trusted: a forgery
    (("10.0.0.0/8",), "x-forwarded-for", {"X-Forwarded-For": "10.9.9.9"}, "127.0.0.1"),  # peer is no proxy of ours
    (("127.0.0.1/32",), "x-forwarded-for", {"X-Forwarded-For": "203.0.113.7"}, "203.0.113.7"),
    (("127.0.0.1/32", "10.0.0.0/8"), "x-forwarded-for", {"X-Forwarded-For": "203.0.113.7, 10.0.0.2"}, "203.0.113.7"),
    (("127.0.0.1/32",), "x-forwarded-for", {"X-Forwarded-For": "10.1.1.1, 203.0.113.7"}, "203.0.113.7"),  # client's own hop ignored
    (("127.0.0.1/32",), "x-forwarded-for", {"X-Forwarded-For": "not-an-ip, 203.0.113.7"}, "203.0.113.7"),
    (("127.0.0.1/32",), "x-forwarded-for", {"X-Forwarded-For": "203.0.113.7, junk"}, "127.0.0.1"),  # proxy wrote junk
    (("127.0.0.1/32",), "x-forwarded-for", {"X-Forwarded-For": ""}, "127.0.0.1"),
    (("127.0.0.1/32",), "x-forwarded-for", {"X-Forwarded-For": "203.0.113.7:4711"}, "203.0.113.7"),
    (("127.0.0.1/32",), "x-forwarded-for", {"X-Forwarded-For": "[2001:db8::1]:80"}, "2001:db8::1"),
    (("127.0.0.1/32",), "x-forwarded-for", {"X-Forwarded-For": "2001:db8::2"}, "2001:db8::2"),
    (("127.0.0.1/32",), "x-forwarded-for", {"X-Forwarded-For": "::ffff:198.51.100.1"}, "198.51.100.1"),
    (("127.0.0.1/32",), "x-forwarded-for", [("X-Forwarded-For", "198.51.100.1"), ("X-Forwarded-For", "198.51.100.2")],
     "198.51.100.2"),
    (("127.0.0.1/32",), "x-forwarded-for", {"Forwarded": "for=198.51.100.3"}, "127.0.0.1"),  # header not believed
    (("127.0.0.1/32", "10.0.0.0/8"), "x-forwarded-for", {"X-Forwarded-For": ", ".join(["10.0.0.1"] * 40)}, "127.0.0.1"),
    (("127.0.0.1/32",), "forwarded", {"Forwarded": "for=192.0.2.60;proto=http;by=203.0.113.43"}, "192.0.2.60"),
    (("127.0.0.1/32",), "forwarded", {"Forwarded": 'for="[2001:db8:cafe::17]:4711"'}, "2001:db8:cafe::17"),
    (("127.0.0.1/32",), "forwarded", {"Forwarded": "For=unknown"}, "127.0.0.1"),
    (("127.0.0.1/32",), "forwarded", {"Forwarded": 'for="_hidden", for=198.51.100.9'}, "198.51.100.9"),
    (("127.0.0.1/32",), "forwarded", {"Forwarded": 'for="x, for=198.51.100.9'}, "198.51.100.9"),  # client's broken quote
    (("127.0.0.1/32",), "forwarded", {"Forwarded": 'for="198.51.100.9'}, "127.0.0.1"),
    (("127.0.0.1/32",), "forwarded", {"Forwarded": "for=198.51.100.9;for=198.51.100.8"}, "127.0.0.1"),
    (("127.0.0.1/32",), "forwarded", {"X-Forwarded-For": "198.51.100.4"}, "127.0.0.1"),  # header not believed
]


@pytest.fixture
async def who() -> AsyncIterator[str]:
    """A real server on loopback answering the client address of each request for the trusted
    proxies and header given in the query."""

    async def handle(request: web.Request) -> web.Response:
        trusted = networks(filter(None, request.query.get("trusted", "").split(" ")))
        header: ProxyHeader = "forwarded" if request.query.get("header") == "forwarded" else "x-forwarded-for"
        return web.Response(text=client_address(request, trusted, header))

    app = web.Application()
    app.router.add_get("/who", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/who"))
    await server.close()


@pytest.mark.parametrize(("trusted", "header", "headers", "expected"), CLIENTS)
async def test_client_address_through_trusted_proxies(who: str, trusted: tuple[str, ...], header: ProxyHeader,
                                                      headers: Any, expected: str) -> None:
    """The client is the right-most hop not written by a trusted proxy; hops a client wrote, headers
    from an untrusted peer, the header not configured, and hops a proxy wrote that are not addresses
    are never believed (the peer is recorded instead)."""
    async with aiohttp.ClientSession() as http:
        async with http.get(who, params={"trusted": " ".join(trusted), "header": header}, headers=headers) as resp:
            assert resp.status == 200
            assert await resp.text() == expected


_TRUSTED = networks(["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"])


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.text(max_size=80), max_size=4), header=st.sampled_from(["x-forwarded-for", "forwarded"]))
def test_any_header_resolves_without_raising(values: list[str], header: ProxyHeader) -> None:
    """Whatever a client puts in the forwarding header, resolving it never raises: it gives an address
    or nothing (an untrusted peer is always its own answer, header or not)."""
    got = resolve_hops("127.0.0.1", values, _TRUSTED, header)
    assert got is None or isinstance(got, ipaddress.IPv4Address | ipaddress.IPv6Address)
    assert resolve_hops("198.51.100.1", values, _TRUSTED, header) == ipaddress.ip_address("198.51.100.1")


@settings(max_examples=200, deadline=None)
@given(forged=st.lists(st.text(max_size=40), max_size=3), client=st.ip_addresses(v=4))
def test_the_hop_our_proxy_wrote_decides(forged: list[str], client: ipaddress.IPv4Address) -> None:
    """Whatever the client wrote before it, the hop our proxy appended decides who the client is
    (unless that hop is itself one of our proxies: then the walk goes on left)."""
    got = resolve_hops("127.0.0.1", [*forged, str(client)], _TRUSTED)
    if not any(client in n for n in _TRUSTED if n.version == 4):
        assert got == client


class Trap:
    """A component named like a honeypot and its port: what /healthz must not reveal to strangers."""

    name = TRAP

    def routes(self) -> list[web.RouteDef]:
        return []

    async def start(self, runtime: SourceContext) -> None:
        return None

    async def stop(self) -> None:
        return None


@dataclass
class Client:
    """A caller on loopback of one listener app."""

    server: TestServer
    runtime: Runtime

    async def get(self, path: str, headers: Mapping[str, str] | None = None) -> tuple[int, str]:
        async with aiohttp.ClientSession() as http:
            async with http.get(self.server.make_url(path), headers=dict(headers or {})) as resp:
                return resp.status, await resp.text()


MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def client(open_test_runtime: OpenRuntime, make_config: MakeConfig) -> AsyncIterator[MakeClient]:
    """Factory: a listener app (with the :class:`Trap` component) on loopback for a ``[listener]``
    section, and a client of it."""
    servers: list[TestServer] = []

    async def make(**listener: object) -> Client:
        rt = await open_test_runtime(make_config(listener=listener))
        server = TestServer(Listener(rt, [Trap()]).app(), host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return Client(server, rt)

    yield make
    for server in servers:
        await server.close()


async def test_healthz_tells_strangers_only_the_status(client: MakeClient) -> None:
    """A caller outside health_detail_allow gets {"status": "ok"} and nothing else (no component, port
    or count); a wrong token changes nothing and is counted; the right token gets the detail."""
    c = await client(health_detail_allow=["10.0.0.0/8"], health_token="h3alth-t0ken-for-tests")
    get = c.get
    status, text = await get("/healthz")
    assert (status, json.loads(text)) == (200, {"status": "ok"})
    assert "18443" not in text and "honeypot" not in text
    status, text = await get("/healthz", {"Authorization": "Bearer wrong-token"})
    assert (status, json.loads(text)) == (200, {"status": "ok"})
    status, text = await get("/healthz", {"Authorization": "Bearer h3alth-t0ken-for-tests"})
    body = json.loads(text)
    assert status == 200 and body["components"] == {TRAP: True} and body["control_store"] == "ok"
    # the wrong token was counted, never shown; the right one was not counted
    text = c.runtime.metrics.render().decode()
    assert 'canary_rejects_total{reason="bad_health_token",source="listener"} 1.0' in text
    assert "wrong-token" not in "".join(r["sample"] for r in await c.runtime.pool.fetch("SELECT sample FROM rejects"))


async def test_healthz_detail_for_allowed_networks_through_trusted_proxies(client: MakeClient) -> None:
    """Behind a trusted proxy the detail goes to clients in health_detail_allow only; the same header
    from a peer that is not a trusted proxy is a forgery and earns the status alone."""
    behind = (await client(health_detail_allow=["10.0.0.0/8"], trusted_proxies=["127.0.0.1/32"])).get
    status, text = await behind("/healthz", {"X-Forwarded-For": "10.1.2.3"})
    assert status == 200 and json.loads(text)["components"] == {TRAP: True}
    status, text = await behind("/healthz", {"X-Forwarded-For": "203.0.113.5"})
    assert json.loads(text) == {"status": "ok"}
    forged = (await client(health_detail_allow=["10.0.0.0/8"])).get
    status, text = await forged("/healthz", {"X-Forwarded-For": "10.1.2.3"})
    assert json.loads(text) == {"status": "ok"}


async def test_metrics_refuses_a_forged_forwarded_for(client: MakeClient) -> None:
    """/metrics from an untrusted peer claiming an allowed address in X-Forwarded-For is refused (403),
    and so is a loopback caller that says it forwards for someone (a proxy nobody configured); through
    a trusted proxy the forwarded client decides."""
    forged = (await client(metrics_allow=["10.0.0.0/8"])).get
    assert (await forged("/metrics", {"X-Forwarded-For": "10.1.2.3"}))[0] == 403
    assert (await forged("/metrics", {"Forwarded": "for=10.1.2.3"}))[0] == 403
    default = (await client()).get
    assert (await default("/metrics"))[0] == 200
    assert (await default("/metrics", {"X-Forwarded-For": "127.0.0.1"}))[0] == 403
    assert (await default("/metrics", {"X-Real-IP": "127.0.0.1"}))[0] == 403
    behind = (await client(metrics_allow=["10.0.0.0/8"], trusted_proxies=["127.0.0.1/32"])).get
    assert (await behind("/metrics", {"X-Forwarded-For": "10.1.2.3"}))[0] == 200
    assert (await behind("/metrics", {"X-Forwarded-For": "10.1.2.3, 198.51.100.7"}))[0] == 403
    assert (await behind("/metrics", {"X-Forwarded-For": "10.1.2.3, junk"}))[0] == 403
    assert (await behind("/metrics"))[0] == 403  # the proxy itself is not in metrics_allow
