"""The HTTP token honeypot: canary credentials presented any usual way raise a USED event with the
caller's details; every answer looks the same and takes the same time; hostile clients are bounded."""

from __future__ import annotations

import asyncio
import base64
import statistics
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg
import pytest
from credential_support import register
from testkit import MakeConfig

from canary.config import HttpHoneypotConfig
from canary.credentials.token_honeypot import TokenHoneypot, extract_credentials
from canary.credentials.values import CredentialFactory
from canary.crypto import Keyring
from canary.runtime import Runtime, open_runtime
from canary.store import ControlStore


async def _honeypot(rt: Runtime, **kw: object) -> TokenHoneypot:
    hp = TokenHoneypot(HttpHoneypotConfig(enabled=True, port=0, **{"min_response_time": 0.01, "probe_limit": 100_000, **kw}))  # type: ignore[arg-type]
    await hp.start(rt)
    return hp


async def _events(rt: Runtime) -> list[asyncpg.Record]:
    return await rt.pool.fetch("SELECT * FROM events ORDER BY id")


@pytest.mark.parametrize(
    ("where", "request_kw"),
    [
        ("authorization:bearer", lambda t: {"headers": {"Authorization": f"Bearer {t}"}}),
        ("authorization:basic-password",
         lambda t: {"headers": {"Authorization": "Basic " + base64.b64encode(f"deploy:{t}".encode()).decode()}}),
        ("header:x-api-key", lambda t: {"headers": {"X-API-Key": t}}),
        ("query:access_token", lambda t: {"params": {"access_token": t, "page": "2"}}),
    ],
)
async def test_canary_token_raises_used_event_with_caller_details(runtime: Runtime, where: str,
                                                                 request_kw: Callable[[str], dict[str, Any]]) -> None:
    """A canary token presented as Bearer, Basic password, API-key header or query parameter gets the
    normal 401 and raises a USED event with address, user agent, path and headers, but never the token."""
    tok = CredentialFactory(runtime.keyring).github_token()
    [cid] = await register(runtime, tok)
    hp = await _honeypot(runtime)
    kw = request_kw(tok.secret)
    kw.setdefault("headers", {})["User-Agent"] = "curl/8.5.0"
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{hp.port}/api/v1/users", **kw) as r:
        assert r.status == 401 and (await r.json())["error"] == "invalid_token"
        assert r.headers["Server"] == "nginx" and "WWW-Authenticate" in r.headers
    await hp.stop()
    [ev] = await _events(runtime)
    assert (ev["kind"], ev["canary_id"], ev["source"]) == ("used", cid, "token_honeypot")
    assert ev["origin"]["client_addr"] == "127.0.0.1" and ev["origin"]["user_agent"] == "curl/8.5.0"
    assert ev["origin"]["path"] == "/api/v1/users" and ev["evidence"]["presented_in"] == where
    assert "Authorization" not in ev["evidence"]["headers"] and "X-API-Key" not in ev["evidence"]["headers"]
    assert tok.secret not in str(dict(ev)) and len(ev["evidence"]["credential_fingerprint"]) == 32
    if where == "query:access_token":
        assert ev["evidence"]["query"] == {"page": "2"}


async def test_curl_with_aws_sigv4_key_and_unknown_tokens_get_the_same_answer(runtime: Runtime) -> None:
    """curl presenting a canary AWS key id in a SigV4 Authorization header alerts; curl with an unknown
    token gets a byte-identical answer apart from the request id, and raises nothing."""
    aws = CredentialFactory(runtime.keyring).aws_key()
    [cid] = await register(runtime, aws)
    hp = await _honeypot(runtime)

    async def curl(auth: str) -> tuple[str, str]:
        proc = await asyncio.create_subprocess_exec(
            "curl", "-s", "-i", "-m", "10", "-H", f"Authorization: {auth}", f"http://127.0.0.1:{hp.port}/v1/objects",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        text = out.decode()
        rid = next(line.split(": ", 1)[1].strip() for line in text.splitlines() if line.lower().startswith("x-request-id"))
        lines = [ln for ln in text.replace(rid, "RID").splitlines() if not ln.lower().startswith("date:")]
        return "\n".join(lines), rid

    sigv4 = (f"AWS4-HMAC-SHA256 Credential={aws.secret}/20261123/us-east-1/s3/aws4_request, "
             "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64)
    canary_answer, _ = await curl(sigv4)
    other_answer, _ = await curl("Bearer ghp_" + "A" * 36)
    assert canary_answer == other_answer and canary_answer.startswith("HTTP/1.1 401")
    await hp.stop()
    [ev] = await _events(runtime)
    assert ev["canary_id"] == cid and ev["evidence"]["credential"] == "aws_key_id"
    assert ev["evidence"]["presented_in"] == "authorization:aws-sigv4"


async def test_timing_does_not_reveal_canaries(runtime: Runtime) -> None:
    """Over 200 interleaved tries each, the median answer time for a canary token and for an unknown
    token differ by less than max(2 ms, 10% of the median)."""
    tok = CredentialFactory(runtime.keyring).bearer()
    await register(runtime, tok)
    runtime.pipeline.start()
    hp = await _honeypot(runtime, min_response_time=0.01)
    url = f"http://127.0.0.1:{hp.port}/api/v1/me"
    times: dict[str, list[float]] = {"canary": [], "other": []}
    async with aiohttp.ClientSession() as s:
        for i in range(200):
            for label, token in (("canary", tok.secret), ("other", f"{tok.secret[:-6]}{i:06d}")):
                t0 = time.perf_counter()
                async with s.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
                    await r.read()
                    assert r.status == 401
                times[label].append(time.perf_counter() - t0)
    await hp.stop()
    await runtime.pipeline.stop()
    m_c, m_o = statistics.median(times["canary"]), statistics.median(times["other"])
    assert abs(m_c - m_o) < max(0.002, 0.1 * max(m_c, m_o)), (m_c, m_o)
    assert await runtime.pool.fetchval("SELECT count(*) FROM events") == 200


async def test_hostile_clients_are_bounded_and_counted(runtime: Runtime) -> None:
    """Huge headers get aiohttp's 400, a slow-loris connection is closed after idle_timeout, and
    beyond max_connections the connection idle the longest is closed to admit the new one, which is
    answered; all three are counted."""
    hp = await _honeypot(runtime, idle_timeout=0.4, max_connections=3)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{hp.port}/api/x", headers={"X-Big": "a" * 20000}) as r:
            assert r.status == 400
    idle_r, idle_w = await asyncio.open_connection("127.0.0.1", hp.port)
    slow_r, slow_w = await asyncio.open_connection("127.0.0.1", hp.port)
    slow_w.write(b"GET /api/v1 HTTP/1.1\r\nHost: x\r\nX-A: ")  # never finishes its headers
    other = await asyncio.open_connection("127.0.0.1", hp.port)
    await asyncio.sleep(0.05)
    new_r, new_w = await asyncio.open_connection("127.0.0.1", hp.port)
    new_w.write(b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await asyncio.wait_for(new_r.read(), 3)).startswith(b"HTTP/1.1 404")
    try:  # the first idle connection was aborted to make room
        assert await asyncio.wait_for(idle_r.read(), 0.3) == b""
    except ConnectionResetError:
        pass
    assert await asyncio.wait_for(slow_r.read(), 3) == b""
    for w in (idle_w, slow_w, other[1], new_w):
        w.close()
    await hp.stop()
    rejects = {r["reason"]: r["n"] for r in await runtime.pool.fetch("SELECT reason, count(*) AS n FROM rejects GROUP BY 1")}
    assert rejects["bad_http_request"] == 1 and rejects["shed_global_cap"] == 1 and rejects["slow_request"] == 1


@pytest.mark.parametrize(
    ("headers", "query", "expected"),
    [
        ({"Authorization": "token ghp_x"}, {}, [("authorization:token", "ghp_x")]),
        ({"Authorization": "Basic " + base64.b64encode(b"AKIAX:secret").decode()}, {},
         [("authorization:basic-user", "AKIAX"), ("authorization:basic-password", "secret")]),
        ({"Authorization": "Basic !!!"}, {}, [("authorization:basic-undecodable", "!!!")]),
        ({"Authorization": "sk_live_abc"}, {"key": "k1"}, [("authorization:raw", "sk_live_abc"), ("query:key", "k1")]),
        ({"X-Other": "v"}, {"q": "x"}, []),
    ],
)
def test_extract_credentials(headers: dict[str, str], query: dict[str, str], expected: list[tuple[str, str]]) -> None:
    """Credentials are found in every supported place and nowhere else."""
    assert extract_credentials(headers, query, ("X-API-Key",), ("key",)) == expected


async def test_listener_starts_enabled_honeypots(make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """With [honeypot.http] and [honeypot.postgres] enabled, the listener's default components
    include both honeypots; disabled (the default), neither."""
    from canary.listener import default_components

    rt = await open_runtime(make_config(honeypot={"http": {"enabled": True, "port": 0, "probe_limit": 100_000},
                                                  "postgres": {"enabled": True, "port": 0}}), keyring=keyring, store=store)
    names = [c.name.split(":")[0] for c in default_components(rt)]
    assert {"token_honeypot", "pg_honeypot"} <= set(names)
    rt2 = await open_runtime(make_config(), keyring=keyring, store=store)
    assert not any(c.name.startswith(("token_honeypot", "pg_honeypot")) for c in default_components(rt2))
    await rt.http.close()
    await rt2.http.close()


async def test_event_survives_a_failing_control_store(runtime: Runtime) -> None:
    """While the events table cannot be written, the caller still gets the usual answer at once; the
    commit is retried with backoff and counted, and the event lands once the store recovers."""
    tok = CredentialFactory(runtime.keyring).stripe_key()
    [cid] = await register(runtime, tok)
    hp = await _honeypot(runtime)
    hp.reporter.retry_initial, hp.reporter.retry_max = 0.05, 0.1
    await runtime.pool.execute("ALTER TABLE events RENAME TO events_offline")
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://127.0.0.1:{hp.port}/api/charges", headers={"Authorization": f"Bearer {tok.secret}"}) as r:
                assert r.status == 401
        for _ in range(100):
            if b'canary_submit_retries_total{source="token_honeypot"} 2.0' in runtime.metrics.render():
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("no retries counted")
        assert hp.reporter.pending == 1
    finally:
        await runtime.pool.execute("ALTER TABLE events_offline RENAME TO events")
    await hp.stop()  # drains the reporter
    assert [r["canary_id"] for r in await _events(runtime)] == [cid]
