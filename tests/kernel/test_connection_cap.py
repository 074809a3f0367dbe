"""The per-peer connection cap of the listener's HTTP port (canary/conncap.py): a peer holding idle
connections cannot make the port refuse everyone else (webhooks, ingest, the API would go unheard)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from testkit import MakeConfig, OpenRuntime

from canary.conncap import CappedSite, PeerConnections
from canary.listener import Listener, connection_cap
from canary.runtime import Runtime

CAP = 5


@pytest.fixture
async def port(open_test_runtime: OpenRuntime, make_config: MakeConfig) -> AsyncIterator[tuple[int, Runtime, Listener]]:
    """A listener (no components) served through the capped site, as `canary listen` serves it."""
    rt = await open_test_runtime(make_config(listener={"max_connections_per_peer": CAP}))
    listener = Listener(rt, [])
    runner = web.AppRunner(listener.app(), handle_signals=False, access_log=None)
    await runner.setup()
    site = CappedSite(runner, "127.0.0.1", 0, connection_cap(listener))
    await site.start()
    try:
        yield site.port, rt, listener
    finally:
        await runner.cleanup()


def _idle(port: int, source: str = "127.0.0.1") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    s.setblocking(False)
    return s


async def _status(port: int, source: str = "127.0.0.1") -> int | None:
    """/healthz's status from ``source``, or None when the connection is closed without an answer."""
    conn = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    try:
        async with aiohttp.ClientSession(connector=conn) as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                return resp.status
    except (aiohttp.ClientConnectionError, asyncio.TimeoutError):
        return None


async def test_a_peer_holding_its_cap_is_refused_and_others_are_served(port: tuple[int, Runtime, Listener]) -> None:
    """With CAP idle connections held from 127.0.0.1 (they never send a byte), a further connection
    from it is closed at once, while 127.0.0.2 is served; the refusal is counted and sampled with the
    peer, and the episode raises one HEALTH event; once the idle ones close, 127.0.0.1 is served again."""
    p, rt, listener = port
    assert await _status(p) == 200
    held = [_idle(p) for _ in range(CAP)]
    await asyncio.sleep(0.2)
    try:
        assert await _status(p) is None
        assert await _status(p, "127.0.0.2") == 200
    finally:
        for s in held:
            s.close()
    await asyncio.sleep(0.2)
    assert await _status(p) == 200
    refused = rt.metrics.connections_refused._value.get()  # the client may retry a reset GET once
    assert refused >= 1
    for _ in range(50):
        rows = await rt.pool.fetch("SELECT reason, sample FROM rejects WHERE source = 'listener'")
        if rows:
            break
        await asyncio.sleep(0.05)
    assert rows and {(r["reason"], r["sample"]) for r in rows} == {("connection_cap", "peer=127.0.0.1")}
    assert len(rows) == refused
    await listener.reporter.drain(timeout=10)  # the episode's HEALTH event: webhooks may go unheard
    [health] = await rt.pool.fetch("SELECT * FROM events WHERE kind = 'health'")
    evidence = json.loads(health["evidence"]) if isinstance(health["evidence"], str) else health["evidence"]
    assert (health["severity"], health["group_key"], evidence["signal"]) == ("error", "listener-pressure:listener", "listener_pressure")
    assert evidence["refused"] == refused and evidence["top_peers"] == {"127.0.0.1": refused}


def test_trusted_proxies_are_not_capped_and_zero_means_no_cap() -> None:
    """A trusted proxy carries many clients' connections: never capped; a cap of 0 caps nobody; IPv6
    peers count per /64."""
    cap = PeerConnections(1, (ipaddress.ip_network("10.0.0.0/8"),))
    assert cap.admit("10.1.2.3") == "" and cap.admit("10.1.2.3") == ""
    assert cap.admit("192.0.2.1") == "192.0.2.1" and cap.admit("192.0.2.1") is None
    cap.release("192.0.2.1")
    assert cap.admit("192.0.2.1") == "192.0.2.1"
    assert cap.admit("2001:db8::1") is not None and cap.admit("2001:db8::2") is None  # the same /64
    assert PeerConnections(0).admit("192.0.2.1") == ""
