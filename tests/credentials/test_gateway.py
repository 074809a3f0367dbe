"""The gateway check (canary/credentials/gateway.py): every request is answered 200 from memory; a
canary token in any configured carrier becomes one USED event with the gateway's facts, committed
afterwards; only gateways are believed; inputs are bounded; a full queue drops (counted) instead of
blocking; a time without the check is a HEALTH gap."""

from __future__ import annotations

import asyncio
import base64
import statistics
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import asyncpg
import pytest
from credential_support import register
from testkit import MakeConfig

from canary.config import GatewayConfig
from canary.credentials.gateway import GatewayCheck, authorization_values, cookie_values, query_values, redact_query
from canary.credentials.sources import SOURCES
from canary.credentials.values import CredentialFactory
from canary.crypto import Keyring, generate_key
from canary.errors import ConfigError
from canary.plugins import build_components
from canary.runtime import Runtime
from canary.seeding.credentials import Storage, stored_credential
from canary.store import checkpoints
from canary.store.registry import retired_value_indexes, value_purpose

PATH = "/gateway/check"


@pytest.fixture
async def started() -> AsyncIterator[list[GatewayCheck]]:
    """Gateway checks started by a test, stopped at its end if it did not stop them."""
    out: list[GatewayCheck] = []
    yield out
    for gw in out:
        if gw._runner is not None:
            await gw.stop()


async def _gateway(rt: Runtime, started: list[GatewayCheck], **kw: Any) -> GatewayCheck:
    gw = GatewayCheck(GatewayConfig(enabled=True, port=0, **kw), node="test-node")
    await gw.start(rt)
    started.append(gw)
    return gw


async def _settled(rt: Runtime, gw: GatewayCheck, n: int | None = None, timeout: float = 10.0) -> list[asyncpg.Record]:
    """The events once the gateway's queue is committed (and, with ``n``, once that many exist)."""
    deadline = time.monotonic() + timeout
    while True:
        await asyncio.wait_for(gw._queue.join(), timeout)
        rows = await rt.pool.fetch("SELECT * FROM events ORDER BY id")
        if n is None or len(rows) >= n or time.monotonic() > deadline:
            return list(rows)
        await asyncio.sleep(0.02)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(("where", "request_kw"), [
    ("authorization:bearer", lambda t: {"headers": {"Authorization": f"Bearer {t}"}}),
    ("authorization:token", lambda t: {"headers": {"Authorization": f"token {t}"}}),
    ("authorization:raw", lambda t: {"headers": {"Authorization": t}}),
    ("authorization:basic-password", lambda t: {"headers": {"Authorization": _basic("deploy", t)}}),
    ("authorization:basic-user", lambda t: {"headers": {"Authorization": _basic(t, "")}}),
    ("header:x-api-key", lambda t: {"headers": {"X-API-Key": t}}),
    ("cookie:access_token", lambda t: {"headers": {"Cookie": f"theme=dark; access_token={t}; lang=en"}}),
    ("query:api_key", lambda t: {"headers": {"X-Original-URI": f"/v1/orders?page=2&api_key={t}"}}),
])
async def test_canary_token_in_each_carrier_raises_one_used_event_with_the_gateways_facts(
        runtime: Runtime, started: list[GatewayCheck], where: str, request_kw: Callable[[str], dict[str, Any]]) -> None:
    """A canary token in any carrier is answered 200 and raises one critical USED event naming the
    client (from X-Forwarded-For), route and method NGINX forwarded, the user agent and host; the token
    is in no column of the event (the query value is redacted)."""
    tok = CredentialFactory(runtime.keyring).github_token()
    [cid] = await register(runtime, tok)
    gw = await _gateway(runtime, started)
    kw = request_kw(tok.secret)
    kw["headers"] = {"X-Original-URI": "/v1/orders/7", "X-Original-Method": "DELETE", "X-Forwarded-For": "203.0.113.7",
                     "X-Request-Id": "req-1", "User-Agent": "python-requests/2.31", "Host": "api.shop.test", **kw["headers"]}
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{gw.port}{PATH}", **kw) as r:
        assert r.status == 200 and await r.read() == b""
    [ev] = await _settled(runtime, gw, 1)
    assert (ev["kind"], ev["canary_id"], ev["source"], ev["severity"]) == ("used", cid, "gateway", "critical")
    assert ev["origin"]["client_addr"] == "203.0.113.7" and ev["origin"]["gateway"] == "127.0.0.1"
    assert ev["origin"]["method"] == "DELETE" and ev["origin"]["host"] == "api.shop.test"
    assert ev["origin"]["user_agent"] == "python-requests/2.31"
    assert ev["evidence"]["presented_in"] == where and ev["evidence"]["canary_status"] == "active"
    assert ev["group_key"] == "gateway:203.0.113.7" and ev["evidence"]["request_id"] == "req-1"
    assert tok.secret not in str(dict(ev)) and tok.secret.lower() not in str(dict(ev)).lower()
    if where == "query:api_key":
        assert ev["origin"]["path"] == "/v1/orders?page=2&api_key=-"
    else:
        assert ev["origin"]["path"] == "/v1/orders/7"


async def test_misses_and_malformed_credentials_are_allowed_and_raise_nothing(runtime: Runtime, started: list[GatewayCheck]) -> None:
    """Unknown tokens, broken Basic, empty headers and no credential at all: 200 each, no event."""
    tok = CredentialFactory(runtime.keyring).github_token()
    await register(runtime, tok)
    gw = await _gateway(runtime, started)
    variants = [{"Authorization": "Bearer ghp_" + "A" * 36}, {"Authorization": "Basic %%%"}, {"Authorization": ""},
                {"Cookie": "access_token"}, {"X-Original-URI": "/?api_key=&token"}, {}, {"Authorization": "Basic " + "=" * 9}]
    async with aiohttp.ClientSession() as s:
        for headers in variants:
            async with s.post(f"http://127.0.0.1:{gw.port}{PATH}", headers=headers) as r:
                assert r.status == 200
        async with s.get(f"http://127.0.0.1:{gw.port}/elsewhere", headers={"Authorization": f"Bearer {tok.secret}"}) as r:
            assert r.status == 404  # a gateway pointed at the wrong path fails visibly (NGINX logs the status)
    assert await _settled(runtime, gw) == []


async def test_envoy_request_shape_path_prefix_method_and_headers(runtime: Runtime, started: list[GatewayCheck]) -> None:
    """What Envoy's ext_authz HTTP service sends: the original method, ``path_prefix`` + the original path
    and query, the allowed headers, Content-Length 0. The route is the path after the prefix."""
    tok = CredentialFactory(runtime.keyring).bearer()
    [cid] = await register(runtime, tok)
    gw = await _gateway(runtime, started)
    async with aiohttp.ClientSession() as s:
        async with s.request("PATCH", f"http://127.0.0.1:{gw.port}{PATH}/admin/users/9?token={tok.secret}&x=1", headers={
                "Host": "internal.shop.test", "x-forwarded-for": "198.51.100.4,10.0.0.2", "x-request-id": "envoy-7",
                "user-agent": "curl/8.5.0", "Content-Length": "0"}) as r:
            assert r.status == 200
    [ev] = await _settled(runtime, gw, 1)
    assert ev["canary_id"] == cid and ev["origin"]["method"] == "PATCH"
    assert ev["origin"]["path"] == "/admin/users/9?token=-&x=1" and ev["evidence"]["presented_in"] == "query:token"
    # X-Forwarded-For right to left: 10.0.0.2 is not a gateway, so it is the client (198.51.100.4 was written by it)
    assert ev["origin"]["client_addr"] == "10.0.0.2" and ev["evidence"]["request_id"] == "envoy-7"


async def test_retired_canary_token_is_still_detected(runtime: Runtime, started: list[GatewayCheck]) -> None:
    """A retired canary's token is kept (as ciphertext and blind index) and still raises a critical USED
    event, marked retired; an active one beside it stays active."""
    f = CredentialFactory(runtime.keyring)
    old, live = f.github_token(), f.github_token()
    [old_id, live_id] = await register(runtime, old, live)
    async with runtime.pool.acquire() as conn:
        await runtime.registry.retire(conn, [old_id])
    assert await runtime.pool.fetchval("SELECT count(*) FROM canary_values WHERE canary_id = $1", old_id) == 0
    gw = await _gateway(runtime, started)
    async with aiohttp.ClientSession() as s:
        for i, tok in enumerate((old, live)):
            async with s.get(f"http://127.0.0.1:{gw.port}{PATH}", headers={"Authorization": f"Bearer {tok.secret}",
                                                                       "X-Request-Id": f"r{i}"}) as r:
                assert r.status == 200
    events = await _settled(runtime, gw, 2)
    assert {(e["canary_id"], e["evidence"]["canary_status"], e["severity"]) for e in events} == {
        (old_id, "retired", "critical"), (live_id, "active", "critical")}


async def test_one_request_is_one_event_and_a_clients_burst_is_one_incident(runtime: Runtime, started: list[GatewayCheck]) -> None:
    """The same canary in three carriers of one request is one event; a redelivered request id is the same
    event; five requests from one client are one incident, another client's are another."""
    tok = CredentialFactory(runtime.keyring).github_token()
    await register(runtime, tok)
    gw = await _gateway(runtime, started)
    url = f"http://127.0.0.1:{gw.port}{PATH}"
    async with aiohttp.ClientSession() as s:
        headers = {"Authorization": f"Bearer {tok.secret}", "X-API-Key": tok.secret, "X-Request-Id": "same",
                   "X-Original-URI": f"/?token={tok.secret}", "X-Forwarded-For": "192.0.2.1"}
        for _ in range(2):
            async with s.get(url, headers=headers) as r:
                assert r.status == 200
        for i in range(5):
            for client in ("192.0.2.1", "192.0.2.2"):
                async with s.get(url, headers={**headers, "X-Request-Id": f"{client}-{i}", "X-Forwarded-For": client}) as r:
                    assert r.status == 200
    events = await _settled(runtime, gw, 11)
    assert len(events) == 11
    incidents = await runtime.pool.fetch("SELECT group_key, event_count FROM incidents ORDER BY group_key")
    assert [(r["group_key"], r["event_count"]) for r in incidents] == [("gateway:192.0.2.1", 6), ("gateway:192.0.2.2", 5)]


async def test_untrusted_peer_gets_the_same_answer_and_is_only_counted(runtime: Runtime, started: list[GatewayCheck]) -> None:
    """A caller outside ``gateways`` presenting a canary (and forging X-Forwarded-For) gets the same 200 and
    raises nothing: nobody but a gateway can make use events; it is counted as untrusted_peer."""
    tok = CredentialFactory(runtime.keyring).github_token()
    await register(runtime, tok)
    gw = await _gateway(runtime, started, gateways=("10.0.0.0/8",))
    async with aiohttp.ClientSession() as s:
        for _ in range(20):
            async with s.get(f"http://127.0.0.1:{gw.port}{PATH}", headers={
                    "Authorization": f"Bearer {tok.secret}", "X-Forwarded-For": "10.1.1.1"}) as r:
                assert r.status == 200 and await r.read() == b""
    await asyncio.sleep(0.2)
    assert await _settled(runtime, gw) == []
    counted = sum(s.value for m in runtime.metrics.rejects.collect() for s in m.samples
                  if s.name.endswith("_total") and s.labels.get("reason") == "untrusted_peer")
    assert counted == 20


async def test_bounded_candidates_and_lengths(runtime: Runtime, started: list[GatewayCheck]) -> None:
    """At most ``max_candidates`` values are looked up per request (a canary placed after them is not
    reached) and values longer than ``max_value_length`` are skipped; huge inputs are still answered 200."""
    tok = CredentialFactory(runtime.keyring).github_token()
    [cid] = await register(runtime, tok)
    gw = await _gateway(runtime, started, max_candidates=4, max_value_length=64)
    url = f"http://127.0.0.1:{gw.port}{PATH}"
    crowd = "&".join(f"token=x{i}" for i in range(4))
    async with aiohttp.ClientSession() as s:
        async with s.get(url, headers={"X-Original-URI": f"/?{crowd}&api_key={tok.secret}", "X-Request-Id": "late"}) as r:
            assert r.status == 200
        async with s.get(url, headers={"Authorization": f"Bearer {tok.secret}{'x' * 64}", "X-Request-Id": "long"}) as r:
            assert r.status == 200
        many = "&".join(f"p{i}=v" for i in range(2000))
        async with s.get(url, headers={"X-Original-URI": f"/?{many}", "Cookie": "; ".join(f"c{i}=v" for i in range(500))}) as r:
            assert r.status == 200
        async with s.get(url, headers={"X-Original-URI": f"/?api_key={tok.secret}", "X-Request-Id": "ok"}) as r:
            assert r.status == 200
    [ev] = await _settled(runtime, gw, 1)
    assert ev["canary_id"] == cid and ev["evidence"]["request_id"] == "ok"


async def test_full_queue_drops_without_blocking_and_is_reported(runtime: Runtime, started: list[GatewayCheck]) -> None:
    """While the control store cannot take events (the events table locked), hits beyond ``max_pending``
    are dropped and counted, every answer still comes at once; once the store is back the queued hits
    commit together with one HEALTH event counting the drops."""
    tok = CredentialFactory(runtime.keyring).github_token()
    [cid] = await register(runtime, tok)
    gw = await _gateway(runtime, started, max_pending=3)
    url = f"http://127.0.0.1:{gw.port}{PATH}"
    locker = await asyncpg.connect(runtime.config.control.dsn.reveal())  # type: ignore[union-attr]
    tx = locker.transaction()
    await tx.start()
    await locker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
    slowest = 0.0
    try:
        async with aiohttp.ClientSession() as s:
            for i in range(20):
                t0 = time.perf_counter()
                async with s.get(url, headers={"Authorization": f"Bearer {tok.secret}", "X-Request-Id": f"q{i}"}) as r:
                    assert r.status == 200
                slowest = max(slowest, time.perf_counter() - t0)
        assert gw.dropped >= 20 - 3 - 1  # 3 waiting, at most one batch taken by the blocked worker
    finally:
        await tx.rollback()
        await locker.close()
    assert slowest < 0.5, slowest
    events = await _settled(runtime, gw, 20 - gw.dropped + 1)
    used = [e for e in events if e["kind"] == "used"]
    [health] = [e for e in events if e["kind"] == "health"]
    assert len(used) == 20 - gw.dropped and all(e["canary_id"] == cid for e in used)
    assert health["evidence"]["dropped"] == gw.dropped and health["evidence"]["signal"] == "gateway_queue_full"
    dropped = sum(s.value for m in runtime.metrics.rejects.collect() for s in m.samples
                  if s.name.endswith("_total") and s.labels.get("reason") == "queue_full")
    assert dropped == gw.dropped


async def test_hits_and_misses_take_the_same_check_time(runtime: Runtime, started: list[GatewayCheck]) -> None:
    """Measured in process (handler entry to answer), over 300 interleaved tries each, a canary token and
    an unknown one take the same time within max(30 µs, 25 %) at the median, and both well under 1 ms."""
    tok = CredentialFactory(runtime.keyring).bearer()
    await register(runtime, tok)
    gw = await _gateway(runtime, started, max_pending=100_000)
    url = f"http://127.0.0.1:{gw.port}{PATH}"
    times: dict[str, list[float]] = {"canary": [], "other": []}
    async with aiohttp.ClientSession() as s:
        for i in range(300):
            for label, token in (("canary", tok.secret), ("other", f"{tok.secret[:-6]}{i:06d}")):
                async with s.get(url, headers={"Authorization": f"Bearer {token}", "X-Request-Id": f"{label}{i}",
                                               "X-Original-URI": "/v1/orders", "User-Agent": "bench"}) as r:
                    assert r.status == 200
                times[label].append(gw.timings[-1])
    m_c, m_o = statistics.median(times["canary"]), statistics.median(times["other"])
    assert abs(m_c - m_o) < max(30e-6, 0.25 * max(m_c, m_o)), (m_c, m_o)
    assert max(m_c, m_o) < 0.001
    assert len(await _settled(runtime, gw, 300)) == 300


async def test_a_stop_longer_than_gap_after_is_one_health_gap(runtime: Runtime, started: list[GatewayCheck]) -> None:
    """A clean stop marks the time; a restart within ``gap_after`` reports nothing, one after it raises
    one HEALTH event naming the gap (from the stop to the restart) and saying the stop was clean."""
    gw = await _gateway(runtime, started, mark_interval=0.2, gap_after=1.0)
    await gw.stop()
    mark = await checkpoints.load(runtime.pool, "gateway-check:test-node")
    assert mark is not None and mark["state"] == "stopped"
    gw = await _gateway(runtime, started, mark_interval=0.2, gap_after=1.0)
    assert await _settled(runtime, gw) == []
    await gw.stop()
    stopped = await checkpoints.load(runtime.pool, "gateway-check:test-node")
    assert stopped is not None and stopped["at"] > mark["at"]
    await asyncio.sleep(1.3)
    gw = await _gateway(runtime, started, mark_interval=0.2, gap_after=1.0)
    [ev] = await _settled(runtime, gw, 1)
    assert ev["kind"] == "health" and ev["severity"] == "error" and ev["evidence"]["signal"] == "gateway_gap"
    assert ev["evidence"]["from"] == stopped["at"] and 1.0 < ev["evidence"]["seconds"] < 5.0
    assert ev["group_key"] == "gateway-gap:test-node"
    assert ev["evidence"]["ended_by"] == "clean stop" and "gateway check was down from" in ev["evidence"]["problem"]


@pytest.mark.parametrize(("values", "expected"), [
    (["Bearer abc"], [("authorization:bearer", "abc")]),
    (["bearer   abc  "], [("authorization:bearer", "abc")]),
    (["abc"], [("authorization:raw", "abc")]),
    (["Basic " + base64.b64encode(b"u:p:q").decode()], [("authorization:basic-user", "u"), ("authorization:basic-password", "p:q")]),
    (["Basic !!!"], []),
    (["Digest x=1"], []),
    (["Bearer"], [("authorization:raw", "Bearer")]),
])
def test_authorization_forms(values: list[str], expected: list[tuple[str, str]]) -> None:
    """Which Authorization forms yield which candidates."""
    assert authorization_values(values, ("bearer", "basic")) == expected


def test_query_cookie_parsing_and_redaction() -> None:
    """Configured query parameters (percent-decoded) and cookies (quoted or not) are candidates; the
    route kept as evidence has their values replaced."""
    names = frozenset({"api_key", "token"})
    assert query_values("a=1&api%5Fkey=k%2B1&token=&token=t", names) == [("query:api_key", "k+1"), ("query:token", "t")]
    assert cookie_values(['a=1; token="t1"', "token=t2"], names) == [("cookie:token", "t1"), ("cookie:token", "t2")]
    assert redact_query("/x?api_key=s3cr3t&b=2&token", names) == "/x?api_key=-&b=2&token"


def test_config_validation(make_config: MakeConfig) -> None:
    """A path without a leading slash, a gap_after not beyond mark_interval, a bad network: errors with the key path."""
    for bad, word in (({"path": "gateway"}, "path"), ({"mark_interval": "10s", "gap_after": "5s"}, "gap_after"),
                      ({"gateways": ["nope"]}, "gateways")):
        with pytest.raises(ConfigError) as err:
            make_config(credentials={"gateway": {"enabled": True, **bad}})
        assert word in str(err.value)
    cfg = make_config(credentials={"gateway": {"enabled": True, "refresh_interval": "1m"}})
    assert cfg.credentials.gateway.refresh_interval == 60.0


async def test_retired_tokens_survive_key_rotation(runtime: Runtime) -> None:
    """A key rotation re-encrypts and re-indexes retired canaries' kept tokens: after it the retired token
    is found under the new key's blind index, and the old index is gone."""
    tok = CredentialFactory(runtime.keyring).github_token()
    [cid] = await register(runtime, tok)
    async with runtime.pool.acquire() as conn:
        await runtime.registry.retire(conn, [cid])
    purpose = value_purpose("token")
    assert await retired_value_indexes(runtime.pool, ["token"]) == {runtime.keyring.blind_index(tok.secret, purpose): (cid, "token")}
    new = Keyring(generate_key())
    async with runtime.pool.acquire() as conn, conn.transaction():
        counts = await runtime.registry.rekey(conn, new, {})
    assert counts["retired_values"] == 1
    assert await retired_value_indexes(runtime.pool, ["token"]) == {new.blind_index(tok.secret, purpose): (cid, "token")}


def test_config_enables_the_gateway_component(make_config: MakeConfig) -> None:
    """The gateway check is off by default; ``[credentials.gateway] enabled = true`` starts one component
    on its own port (no routes on the listener), named after the node for its liveness mark."""
    assert not [c for c in build_components(SOURCES, make_config()) if isinstance(c, GatewayCheck)]
    cfg = make_config(canary={"node_name": "edge-7"}, credentials={"gateway": {"enabled": True, "port": 9191}})
    [gw] = [c for c in build_components(SOURCES, cfg) if isinstance(c, GatewayCheck)]
    assert gw.routes() == [] and gw.port == 9191 and gw.mark_source == "gateway-check:edge-7"


async def test_a_crash_leaves_a_running_mark_and_the_gap_says_so(runtime: Runtime, started: list[GatewayCheck]) -> None:
    """A check that dies without stopping (its loops and server torn down, no stopped mark: what a kill
    leaves) is reported at the next start from its last running mark, as ended by a crash."""
    gw = await _gateway(runtime, started, mark_interval=0.2, gap_after=1.0)
    await asyncio.sleep(0.3)
    for task in gw._tasks:
        task.cancel()
    await asyncio.gather(*gw._tasks, return_exceptions=True)
    await gw._unlisten()  # the dead process's connection ends with it (here: back to the test's pool)
    assert gw._runner is not None
    await gw._runner.cleanup()
    gw._runner = None
    last = await checkpoints.load(runtime.pool, "gateway-check:test-node")
    assert last is not None and last["state"] == "running"
    await asyncio.sleep(1.2)
    gw = await _gateway(runtime, started, mark_interval=0.2, gap_after=1.0)
    [ev] = await _settled(runtime, gw, 1)
    assert ev["evidence"]["from"] == last["at"] and ev["evidence"]["ended_by"].startswith("crash")


async def test_a_token_store_canary_fires_by_its_token_and_by_its_stolen_hash(runtime: Runtime, started: list[GatewayCheck]) -> None:
    """A canary in a token store that keeps sha256 hex of each token (the seeder writes the hash, the
    registry keeps the token): the token presented at the gateway pages, and so does the hash taken
    from a backup and presented as if it were the token."""
    cred = stored_credential(CredentialFactory(runtime.keyring).bearer(), Storage.SHA256_HEX)
    [cid] = await register(runtime, cred)
    gw = await _gateway(runtime, started)
    async with aiohttp.ClientSession() as s:
        for i, presented in enumerate((cred.secret, cred.fields["stored"])):
            headers = {"Authorization": f"Bearer {presented}", "X-Request-Id": f"ts-{i}", "X-Forwarded-For": "198.51.100.4"}
            async with s.get(f"http://127.0.0.1:{gw.port}{PATH}", headers=headers) as r:
                assert r.status == 200
    events = await _settled(runtime, gw, 2)
    assert [(e["canary_id"], e["kind"]) for e in events] == [(cid, "used"), (cid, "used")]


@pytest.mark.parametrize(("where", "request_kw"), [
    ("authorization:aws-sigv4", lambda k: {"Authorization": f"AWS4-HMAC-SHA256 Credential={k}/20260301/us-east-1/s3/aws4_request, "
                                                            "SignedHeaders=host;x-amz-date, Signature=" + "ab" * 32}),
    ("authorization:aws-sigv2", lambda k: {"Authorization": f"AWS {k}:frJIUN8DYpKDtOLCwo//yllqDzg="}),
    ("query:x-amz-credential", lambda k: {"X-Original-URI": f"/bucket/report.csv?X-Amz-Algorithm=AWS4-HMAC-SHA256&"
                                                           f"X-Amz-Credential={k}%2F20260301%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=ab"}),
])
async def test_a_canary_aws_key_signing_a_request_to_the_gateway_pages(runtime: Runtime, started: list[GatewayCheck], where: str,
                                                                      request_kw: Callable[[str], dict[str, str]]) -> None:
    """A canary AWS key used against the company's own S3-compatible or AWS-fronting API: its access key id
    in a SigV4 / SigV2 Authorization header or a presigned URL is a USED event; the key id is in no column."""
    cred = CredentialFactory(runtime.keyring).aws_key()
    key_id = cred.fields["access_key_id"]
    [cid] = await register(runtime, cred, table="public.integrations")
    gw = await _gateway(runtime, started)
    headers = {"X-Original-URI": "/bucket/report.csv", "X-Request-Id": f"aws-{where}", **request_kw(key_id)}
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{gw.port}{PATH}", headers=headers) as r:
        assert r.status == 200
    [ev] = await _settled(runtime, gw, 1)
    assert ev["canary_id"] == cid and ev["evidence"]["presented_in"] == where
    assert key_id not in str(dict(ev))


async def test_a_token_seeded_while_the_check_runs_is_recognised_at_once(runtime: Runtime, started: list[GatewayCheck]) -> None:
    """The registry notifies on commit (migration 0130): a canary registered after the check started is a hit
    within a second, not after refresh_interval (an hour here); a retired one stays a hit."""
    gw = await _gateway(runtime, started, refresh_interval=3600)
    tok = CredentialFactory(runtime.keyring).github_token()
    loaded = gw.loaded_at
    [cid] = await register(runtime, tok)
    deadline = time.monotonic() + 5
    while gw.loaded_at == loaded and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert gw.loaded_at != loaded, "no reload after the registry changed"
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{gw.port}{PATH}",
                                                   headers={"Authorization": f"Bearer {tok.secret}"}) as r:
        assert r.status == 200
    [ev] = await _settled(runtime, gw, 1)
    assert ev["canary_id"] == cid and ev["evidence"]["canary_status"] == "active"
    # the listening connection breaks: the next reload listens again (terminated by the server)
    old = gw._listen_conn
    assert old is not None
    await runtime.pool.execute("SELECT pg_terminate_backend($1)", old.get_server_pid())
    deadline = time.monotonic() + 5
    while (gw._listen_conn is None or gw._listen_conn is old) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert gw._listen_conn is not None and gw._listen_conn is not old
    other = CredentialFactory(runtime.keyring).github_token()
    loaded = gw.loaded_at
    await register(runtime, other)
    deadline = time.monotonic() + 5
    while gw.loaded_at == loaded and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert gw.loaded_at != loaded, "no reload after the listening connection was replaced"
