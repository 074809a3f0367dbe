"""Fuzzing the gateway check (canary/credentials/gateway.py) over raw sockets: random methods, paths
under and outside the check's path (Envoy's prefix + original path and query), Authorization forms,
cookies, API-key headers, X-Original-URI / -Method, X-Forwarded-For / X-Real-IP and X-Request-Id as a
broken gateway or a forger might write them, bodies that lie. Every request is answered 200 (404
outside the path, or aiohttp's own 4xx for bytes that are no HTTP), never a 5xx, nothing escapes, no
commit is retried (an event that cannot be stored would be), and a canary token presented afterwards
is still detected."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from credential_support import register
from fuzz_harness import FuzzServer, fuzz_server, fuzz_settings, http_raw
from fuzz_strategies import text
from hypothesis import example, given
from hypothesis import strategies as st

from canary.config import GatewayConfig
from canary.credentials.gateway import GatewayCheck, authorization_values, cookie_values, query_values, redact_query
from canary.credentials.values import CredentialFactory
from canary.pressure import submit_failures
from canary.store.embedded import PostgresServer

GENUINE_EVERY = 40
OPTIONS = GatewayConfig(enabled=True, port=0)
NAMES = frozenset(OPTIONS.query_params) | frozenset(OPTIONS.cookies)


@pytest.fixture(scope="module")
def server(pg_server: PostgresServer) -> Iterator[FuzzServer]:
    def components(rt: Any) -> list[Any]:
        return [GatewayCheck(OPTIONS, node="fuzz")]

    async def setup(s: FuzzServer) -> None:
        tok = CredentialFactory(s.runtime.keyring).github_token()
        [tid] = await register(s.runtime, tok)
        await _gateway(s).load()
        s.canaries.update(token=tok.secret, token_id=tid)

    with fuzz_server(pg_server, "gateway", {}, components, setup) as s:
        yield s


def _gateway(s: FuzzServer) -> GatewayCheck:
    [gw] = s.listener.components
    assert isinstance(gw, GatewayCheck)
    return gw


def _enc(v: str) -> bytes:
    return v.encode("utf-8", "surrogatepass")


_b64 = st.builds(lambda b: base64.b64encode(b).decode(), st.binary(max_size=40) | text.map(_enc))
_auth = (st.builds(lambda scheme, v: f"{scheme} {v}", st.sampled_from(["Bearer", "token", "Basic", "Digest", "", "Bearer  "]), _b64 | text)
         | st.builds(lambda u, p: "Basic " + base64.b64encode(_enc(u) + b":" + _enc(p)).decode(), text, text) | text)
_pairs = st.lists(st.tuples(st.sampled_from(sorted(NAMES)) | text, text | _b64), max_size=5)
_query = _pairs.map(lambda ps: "&".join(f"{k}={v}" for k, v in ps))
_cookie = _pairs.map(lambda ps: "; ".join(f"{k}={v}" for k, v in ps))
_addr = st.sampled_from(["203.0.113.9", "::1", "[::1]:80", "unknown", "_hidden", "1.2.3.4, 5.6.7.8", "", "300.1.1.1",
                         ",,,", "127.0.0.1:99999"]) | text
_header = st.one_of(
    st.tuples(st.just("Authorization"), _auth), st.tuples(st.just("Cookie"), _cookie),
    st.tuples(st.sampled_from(["X-API-Key", "X-Auth-Token", "Api-Key", "Private-Token"]), text | _b64),
    st.tuples(st.just("X-Original-URI"), st.builds(lambda p, q: f"/{p}?{q}", text, _query) | text),
    st.tuples(st.just("X-Original-Method"), st.sampled_from(["GET", "DELETE", ""]) | text),
    st.tuples(st.sampled_from(["X-Forwarded-For", "X-Real-IP"]), _addr),
    st.tuples(st.sampled_from(["X-Request-Id", "User-Agent", "Host", "Content-Length", "Transfer-Encoding", "Expect"]),
              text | st.sampled_from(["chunked", "-1", "100-continue", "x" * 9000])),
)
_path = st.sampled_from([OPTIONS.path, OPTIONS.path + "/", OPTIONS.path + "/admin", "/", "/gateway", "/%00", "*"]) | st.builds(
    lambda p, q: f"{OPTIONS.path}/{p}?{q}", text, _query) | text.map(lambda t: "/" + t)
_method = st.sampled_from(["GET", "POST", "HEAD", "OPTIONS", "DELETE", "PATCH", "CONNECT", "G ET", ""]) | text


def _request(method: str, path: str, headers: list[tuple[str, str]], body: bytes, framing: str) -> bytes:
    head = [_enc(method) + b" " + _enc(path) + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    head += [_enc(k) + b": " + _enc(v) for k, v in headers]
    if framing == "length":
        head.append(b"Content-Length: %d" % len(body))
    elif framing == "chunked":
        head.append(b"Transfer-Encoding: chunked")
        body = (b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n") if body else b"0\r\n\r\n"
    return b"\r\n".join(head) + b"\r\n\r\n" + body


_requests = st.builds(_request, _method, _path, st.lists(_header, max_size=7), st.binary(max_size=64),
                      st.sampled_from(["length", "chunked", "none"])) | st.binary(max_size=200)
_FRAMED = b"\r\nConnection: close\r\n"


def _genuine(s: FuzzServer) -> None:
    before = s.fetchval("SELECT count(*) FROM events WHERE canary_id = $1", s.canaries["token_id"])
    s.tally.connections += 1
    answer = http_raw(_gateway(s).port, (
        f"GET {OPTIONS.path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {s.canaries['token']}\r\n"
        f"X-Original-URI: /v1/me\r\nX-Request-Id: genuine-{s.tally.examples}-{before}\r\nConnection: close\r\n\r\n").encode(),
        half_close=False)
    assert answer is not None and answer.status == 200
    s.wait_for("SELECT count(*) > $2 FROM events WHERE canary_id = $1", s.canaries["token_id"], before)


@fuzz_settings(200)
@example(raw=b"GET /gateway/check HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic %%%\r\n"
             b"X-Forwarded-For: ,,,\r\n\r\n")
@example(raw=b"GET /gateway/check/a?token=%FF%FE&api_key HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: token=\"\r\n\r\n")
@given(raw=_requests)
def test_fuzzed_checks_never_fail_the_gateway(server: FuzzServer, raw: bytes) -> None:
    """Any request bytes: 200 under the check's path, 404 elsewhere, aiohttp's 4xx for broken HTTP, or a
    close for bytes that are no HTTP; never a 5xx (which would make NGINX fall back, Envoy fail open)."""
    server.tally.examples += 1
    server.tally.connections += 1
    server.tally.messages += 1
    answer = http_raw(_gateway(server).port, raw, half_close=_FRAMED not in raw)
    assert answer is None or answer.status < 500, f"{answer.status}: {answer.body[:200]!r}"
    if server.tally.examples % GENUINE_EVERY == 0:
        _genuine(server)
    server.assert_clean()


@fuzz_settings(300)
@given(auth=st.lists(_auth, max_size=3), query=_query | text, cookies=st.lists(_cookie | text, max_size=3), route=text)
def test_carrier_parsers_never_raise(auth: list[str], query: str, cookies: list[str], route: str) -> None:
    """The carrier parsers return non-empty (where, value) pairs for any input and redaction keeps the path."""
    found = [*authorization_values(auth, ("bearer", "basic")), *query_values(query, NAMES), *cookie_values(cookies, NAMES)]
    assert all(isinstance(w, str) and isinstance(v, str) and v for w, v in found)
    assert redact_query(route, NAMES).partition("?")[0] == route.partition("?")[0]


def test_canary_token_is_detected_after_the_fuzzing_and_nothing_was_retried(server: FuzzServer) -> None:
    """After the fuzzing a canary token still raises an event, and no commit had to be retried."""
    _genuine(server)
    retried = sum(s.value for m in submit_failures(server.runtime.metrics).collect() for s in m.samples
                  if s.name.endswith("_total") and s.labels.get("source") == "gateway")
    assert retried == 0
    server.assert_clean()
