"""Honeypots cannot be starved: connections held open by one peer or by many are shed (the one idle
the longest first) so a real probe still reaches the honeypot and alerts; silent connections are
cut off by the startup timeout; a new connection is refused only while every held one is being
answered; every episode of sheds and refusals pages once as a HEALTH event."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Any

import aiohttp
import asyncpg
import pytest
from credential_support import pg_login, read_message, register, startup_packet

from canary.config import HttpHoneypotConfig
from canary.credentials.pg_honeypot import PgHoneypot
from canary.credentials.token_honeypot import TokenHoneypot
from canary.credentials.values import CredentialFactory
from canary.pressure import BackgroundReporter, PressureWatch
from canary.proxies import peer_key
from canary.runtime import Runtime

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _pg(rt: Runtime, **kw: Any) -> PgHoneypot:
    hp = PgHoneypot("127.0.0.1", 0, **kw)
    await hp.start(rt)
    return hp


async def _events(rt: Runtime, kind: str) -> list[asyncpg.Record]:
    return await rt.pool.fetch("SELECT * FROM events WHERE kind = $1 ORDER BY id", kind)


async def _rejects(rt: Runtime) -> dict[str, int]:
    return {r["reason"]: r["n"] for r in await rt.pool.fetch("SELECT reason, count(*) AS n FROM rejects GROUP BY reason")}


def _counted(rt: Runtime, reason: str, source: str = "pg_honeypot") -> float:
    """``canary_rejects_total`` for ``reason`` (the rejects table keeps only samples)."""
    line = f'canary_rejects_total{{reason="{reason}",source="{source}"}} '
    return next((float(l.split(" ")[-1]) for l in rt.metrics.render().decode().splitlines() if l.startswith(line)), 0.0)


async def _hold(port: int, sources: list[str], *, startup_every: int = 0) -> tuple[list[Conn], list[asyncio.Task[bytes]]]:
    """Open one connection per entry of ``sources`` (the local address it binds); every
    ``startup_every``-th one sends a startup packet and then idles at the SASL step, the rest stay
    silent. Returns the connections and, per connection, a task reading it until the honeypot closes it."""
    conns: list[Conn] = []
    for i, host in enumerate(sources):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(host, 0))
        if startup_every and i % startup_every == 0:
            writer.write(startup_packet("app_reader", "billing"))
        conns.append((reader, writer))
    return conns, [asyncio.create_task(r.read()) for r, _ in conns]


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    ("sources", "shed_reason", "held"),
    [
        (["127.0.0.1"] * 100, "shed_peer_cap", 8),  # one peer: its own per-peer cap sheds
        ([f"127.0.0.{2 + i // 5}" for i in range(100)], "shed_global_cap", 64),  # 20 peers x 5: the global cap
    ],
    ids=["one-peer", "twenty-peers"],
)
async def test_held_connections_do_not_starve_a_real_probe(runtime: Runtime, sources: list[str], shed_reason: str,
                                                           held: int) -> None:
    """With 100 connections held open (silent, or idle after their startup packet) from one peer or
    from twenty, asyncpg with a canary DSN still reaches the PostgreSQL honeypot: it gets the usual
    28P01 and raises its USED event, the honeypot never holds more than its caps, and one HEALTH
    event reports the shed connections."""
    hp = await _pg(runtime, startup_timeout=60, auth_timeout=60)
    cred = CredentialFactory(runtime.keyring).pg_dsn("127.0.0.1", hp.port, "billing")
    [cid] = await register(runtime, cred, table="public.settings")
    conns, closed = await _hold(hp.port, sources, startup_every=2)
    await _until(lambda: sum(t.done() for t in closed) == 100 - held)
    assert len(hp.connections) == held and max(hp.connections.peer_count(peer_key(s)) for s in sources) <= 8

    started = time.perf_counter()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(cred.secret, timeout=5)
    probe_seconds = time.perf_counter() - started
    print(f"probe with {100 - held} shed / {held} held: answered in {probe_seconds * 1000:.1f} ms")
    assert probe_seconds < 2.0, probe_seconds
    assert len(hp.connections) == held - 1  # the probe's slot came from a held connection
    for _, writer in conns:
        writer.close()
    await asyncio.gather(*closed, return_exceptions=True)
    await hp.stop()

    [used] = [e for e in await _events(runtime, "used") if e["canary_id"] is not None]
    assert (used["canary_id"], used["severity"], used["evidence"]["password_matches_canary"]) == (cid, "critical", True)
    [health] = await _events(runtime, "health")
    assert health["source"] == "pg_honeypot" and health["severity"] == "error" and health["canary_id"] is None
    evidence = health["evidence"]
    assert evidence["signal"] == "honeypot_pressure" and evidence["shed"] >= 100 - held
    assert set(evidence["by_reason"]) == {shed_reason} and evidence["refused"] == 0
    assert _counted(runtime, shed_reason) == 100 - held + 1


async def test_startup_timeout_closes_a_silent_connection_quickly(runtime: Runtime) -> None:
    """A connection that sends nothing is closed after startup_timeout, long before auth_timeout; a
    connection that sent its startup packet gets the (longer) auth_timeout; both are counted apart."""
    hp = await _pg(runtime, startup_timeout=0.2, auth_timeout=1.5)
    silent_r, silent_w = await asyncio.open_connection("127.0.0.1", hp.port)
    started_r, started_w = await asyncio.open_connection("127.0.0.1", hp.port)
    started_w.write(startup_packet("someone"))
    t0 = time.perf_counter()
    assert await asyncio.wait_for(silent_r.read(), 3) == b""
    silent_after = time.perf_counter() - t0
    tag, _ = await read_message(started_r)  # the SASL request, then nothing more until the auth timeout
    assert tag == b"R"
    assert await asyncio.wait_for(started_r.read(), 3) == b""
    started_after = time.perf_counter() - t0
    silent_w.close()
    started_w.close()
    await hp.stop()
    assert 0.15 < silent_after < 0.8, silent_after
    assert 1.3 < started_after < 2.5, started_after
    rejects = await _rejects(runtime)
    assert (rejects["startup_timeout"], rejects["auth_timeout"]) == (1, 1)


async def test_refused_only_while_every_connection_is_being_answered(runtime: Runtime) -> None:
    """When the only slot holds a connection whose SCRAM proof is being checked (the PBKDF2 worker
    is busy), a new connection gets FATAL 53300 and is counted as refused; the HEALTH event says so,
    and the connection being answered still gets its verdict."""
    loop = asyncio.get_running_loop()
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    loop.set_default_executor(executor)
    hp = await _pg(runtime, max_connections=1)
    busy = loop.run_in_executor(None, time.sleep, 0.8)  # the one worker the proof check must wait for
    login = asyncio.create_task(pg_login(hp.port, "svc_report", "guess"))
    await _until(lambda: any(c.state == "verifying" for c in hp.connections))
    reader, writer = await asyncio.open_connection("127.0.0.1", hp.port)
    refusal = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert refusal.startswith(b"E") and b"53300" in refusal and b"sorry, too many clients already" in refusal
    transcript = await login
    assert transcript.messages[-1][0] == b"E" and b"28P01" in transcript.messages[-1][1]
    await busy
    await hp.stop()
    [health] = await _events(runtime, "health")
    assert health["evidence"]["refused"] == 1 and health["evidence"]["by_reason"] == {"refused_global_cap": 1}
    assert (await _rejects(runtime))["refused_global_cap"] == 1


async def test_token_honeypot_sheds_per_peer_and_still_alerts(runtime: Runtime) -> None:
    """Twenty idle connections from one peer against the HTTP token honeypot (4 per peer allowed):
    sixteen are shed, a request with a canary token from the same peer still gets the usual 401 and
    raises its USED event, and one HEALTH event reports the shedding."""
    tok = CredentialFactory(runtime.keyring).github_token()
    [cid] = await register(runtime, tok)
    hp = TokenHoneypot(HttpHoneypotConfig(enabled=True, port=0, probe_limit=100_000, min_response_time=0.01, idle_timeout=60,
                                          max_connections_per_peer=4))
    await hp.start(runtime)
    conns, closed = await _hold(hp.port, ["127.0.0.1"] * 20)
    await _until(lambda: sum(t.done() for t in closed) == 16)
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{hp.port}/api/v1/repos",
                                                   headers={"Authorization": f"Bearer {tok.secret}"}) as r:
        assert r.status == 401
    for _, writer in conns:
        writer.close()
    await asyncio.gather(*closed, return_exceptions=True)
    await hp.stop()
    [used] = await _events(runtime, "used")
    assert (used["canary_id"], used["severity"]) == (cid, "critical")
    [health] = await _events(runtime, "health")
    assert health["source"] == "token_honeypot" and health["evidence"]["shed"] >= 16
    assert health["evidence"]["top_peers"] == {"127.0.0.1": health["evidence"]["shed"]}


async def test_token_honeypot_refuses_only_while_every_connection_is_answered(runtime: Runtime) -> None:
    """With one slot held by a request waiting out its response floor, a new connection is refused
    (reset) and counted; the HEALTH event reports one refusal; the held request is answered."""
    hp = TokenHoneypot(HttpHoneypotConfig(enabled=True, port=0, probe_limit=100_000, min_response_time=0.6, max_connections=1))
    await hp.start(runtime)
    held_r, held_w = await asyncio.open_connection("127.0.0.1", hp.port)
    held_w.write(b"GET /api/v1/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await _until(lambda: any(g.busy for g in hp.guards))
    new_r, new_w = await asyncio.open_connection("127.0.0.1", hp.port)
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(new_r.readexactly(1), 3)
    assert (await asyncio.wait_for(held_r.read(), 3)).startswith(b"HTTP/1.1 401")
    held_w.close()
    new_w.close()
    await hp.stop()
    [health] = await _events(runtime, "health")
    assert health["evidence"]["by_reason"] == {"refused_global_cap": 1}


async def test_one_health_event_per_episode(runtime: Runtime) -> None:
    """Sheds and refusals close together are one episode (one HEALTH event, counted by reason and
    peer); after pressure_quiet without any, the next one starts a new episode with a new event in
    the same group, so both land in one incident."""
    reporter = BackgroundReporter(runtime, "pg_honeypot")
    watch = PressureWatch(reporter, "pg_honeypot:6543", "127.0.0.1:6543", quiet=0.3, summary_after=0.1)
    for peer in ("10.0.0.1", "10.0.0.1", "10.0.0.2"):
        watch.note("shed_peer_cap", peer)
    watch.note("refused_global_cap", "10.0.0.3")
    await asyncio.sleep(0.5)
    watch.note("shed_global_cap", "10.0.0.9")
    await reporter.drain(timeout=5)
    first, second = await _events(runtime, "health")
    assert first["evidence"]["by_reason"] == {"shed_peer_cap": 3, "refused_global_cap": 1}
    assert (first["evidence"]["shed"], first["evidence"]["refused"], first["evidence"]["peers"]) == (3, 1, 3)
    assert first["evidence"]["top_peers"]["10.0.0.1"] == 2
    assert second["evidence"]["by_reason"] == {"shed_global_cap": 1}
    assert first["group_key"] == second["group_key"] == "honeypot-pressure:pg_honeypot:6543"
    assert first["key"] != second["key"] and first["incident_id"] == second["incident_id"]


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_peer_key(address: str, key: str) -> None:
    """Per-peer caps count an IPv4 address, or an IPv6 /64 (a host holds a whole /64)."""
    assert peer_key(address) == key
