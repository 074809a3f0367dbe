"""Fuzzing the HTTP token honeypot (canary/credentials/token_honeypot.py) over raw sockets: random
methods, paths, query parameters, Authorization forms (Bearer, token, Basic with good and broken
base64, SigV4, bare), API-key headers, header names and bytes aiohttp must refuse, oversized and
too many headers, lying bodies. Every request is answered without a 5xx, nothing escapes (a lookup
that raised would be retried forever in the background), and a canary token presented afterwards is
still detected."""

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

from canary.config import HttpHoneypotConfig
from canary.credentials.token_honeypot import TokenHoneypot, extract_credentials
from canary.credentials.values import CredentialFactory
from canary.store.embedded import PostgresServer

GENUINE_EVERY = 40
OPTIONS = HttpHoneypotConfig(enabled=True, port=0, min_response_time=0.005, idle_timeout=3.0, probe_limit=100_000)


@pytest.fixture(scope="module")
def server(pg_server: PostgresServer) -> Iterator[FuzzServer]:
    def components(rt: Any) -> list[Any]:
        return [TokenHoneypot(OPTIONS)]

    async def setup(s: FuzzServer) -> None:
        factory = CredentialFactory(s.runtime.keyring)
        tok, aws = factory.github_token(), factory.aws_key()
        [tid, aid] = await register(s.runtime, tok, aws)
        s.canaries.update(token=tok.secret, token_id=tid, aws=aws.secret, aws_id=aid)

    with fuzz_server(pg_server, "token_http", {}, components, setup) as s:
        yield s


def _port(s: FuzzServer) -> int:
    [hp] = s.listener.components
    assert isinstance(hp, TokenHoneypot)
    return hp.port


def _enc(v: str) -> bytes:
    return v.encode("utf-8", "surrogatepass")


_b64 = st.builds(lambda b: base64.b64encode(b).decode(), st.binary(max_size=40) | text.map(_enc))
_auth = (
    st.builds(lambda scheme, v: f"{scheme} {v}", st.sampled_from(["Bearer", "bearer", "token", "Basic", "AWS4-HMAC-SHA256",
                                                                 "Digest", "", "Bearer  "]), _b64 | text)
    | st.builds(lambda v: "AWS4-HMAC-SHA256 Credential=" + v + "/20260101/us-east-1/s3/aws4_request, Signature=x",
                st.from_regex(r"\A[A-Z0-9]{0,140}\Z"))
    | st.builds(lambda u, p: "Basic " + base64.b64encode(_enc(u) + b":" + _enc(p)).decode(), text, text)
    | text
)
_header_name = st.sampled_from(["Authorization", "X-API-Key", "X-Auth-Token", "Api-Key", "Private-Token", "User-Agent", "Cookie",
                                "Host", "Content-Length", "Transfer-Encoding", "Expect", "Connection", "Upgrade"]) | text
_header = st.tuples(_header_name, _auth | text | st.sampled_from(["chunked", "100-continue", "close", "websocket", "-1",
                                                                   "99999999999999999999", "x" * 9000]))
_path = st.sampled_from(["/api/v1/users", "/v1/", "/graphql", "/", "/%00", "/%zz", "//api/", "/api/" + "a" * 9000, "*",
                         "http://evil.test/api/", "/api/..%2f..%2f"]) | text.map(lambda t: "/" + t)
_query = st.lists(st.tuples(st.sampled_from(["api_key", "apikey", "access_token", "token", "key", "page", ""]) | text, text | _b64),
                  max_size=4)
_method = st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE", "CONNECT", "PRI", "G ET", ""]) | text


def _request(method: str, path: str, query: list[tuple[str, str]], headers: list[tuple[str, str]], body: bytes,
             version: str, framing: str) -> bytes:
    target = _enc(path)
    if query:
        target += b"?" + b"&".join(_enc(k) + b"=" + _enc(v) for k, v in query)
    head = [_enc(method) + b" " + target + b" " + _enc(version), b"Host: 127.0.0.1", b"Connection: close"]
    head += [_enc(k) + b": " + _enc(v) for k, v in headers]
    if framing == "length":
        head.append(b"Content-Length: %d" % len(body))
    elif framing == "chunked":
        head.append(b"Transfer-Encoding: chunked")
        body = (b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n") if body else b"0\r\n\r\n"
    return b"\r\n".join(head) + b"\r\n\r\n" + body


_requests = st.builds(_request, _method, _path, _query, st.lists(_header, max_size=6), st.binary(max_size=100),
                      st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 x", ""]), st.sampled_from(["length", "chunked", "none"]))
_requests = _requests | st.binary(max_size=200) | st.integers(65, 300).map(
    lambda n: b"GET /api/ HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(n)) + b"\r\n")
#: A request that ends its head with "Connection: close" is answered then closed by the server; other
#: bytes are followed by our EOF (aiohttp, like asyncio, closes on EOF and may not answer then).
_FRAMED = b"\r\nConnection: close\r\n"


def _genuine(s: FuzzServer) -> None:
    before = s.fetchval("SELECT count(*) FROM events WHERE canary_id = $1", s.canaries["token_id"])
    answer = http_raw(_port(s), f"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {s.canaries['token']}\r\n"
                                f"Connection: close\r\n\r\n".encode(), half_close=False)
    assert answer is not None and answer.status == OPTIONS.status
    s.tally.connections += 1
    s.wait_for("SELECT count(*) > $2 FROM events WHERE canary_id = $1", s.canaries["token_id"], before)


@fuzz_settings(250)
@example(raw=b"GET /api/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Basic %%%\r\n\r\n")
@example(raw=b"GET /api/?token=%FF%FE HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-API-Key: \xff\xfe\r\n\r\n")
@given(raw=_requests)
def test_fuzzed_requests_never_get_a_5xx(server: FuzzServer, raw: bytes) -> None:
    """Any request bytes: an answer that is not a 5xx (or a close without one, for bytes that are no
    HTTP at all), within the socket timeout; nothing escaped."""
    server.tally.examples += 1
    server.tally.connections += 1
    server.tally.messages += 1
    answer = http_raw(_port(server), raw, half_close=_FRAMED not in raw)
    assert answer is None or answer.status < 500, f"{answer.status}: {answer.body[:200]!r}"
    if server.tally.examples % GENUINE_EVERY == 0:
        _genuine(server)
    server.assert_clean()


@fuzz_settings(300)
@given(headers=st.dictionaries(_header_name, _auth | text, max_size=6), query=st.dictionaries(text, text | _b64, max_size=4))
def test_extract_credentials_never_raises(headers: dict[str, str], query: dict[str, str]) -> None:
    """The credential extractor returns (where, value) pairs for any headers and query, never raises."""
    found = extract_credentials(headers, query, OPTIONS.api_key_headers, OPTIONS.query_params)
    assert all(isinstance(w, str) and isinstance(v, str) and v for w, v in found)


def test_canary_token_is_detected_after_the_fuzzing(server: FuzzServer) -> None:
    """After the fuzzing, a canary token as Bearer and a canary AWS key in SigV4 still raise events."""
    _genuine(server)
    before = server.fetchval("SELECT count(*) FROM events WHERE canary_id = $1", server.canaries["aws_id"])
    auth = f"AWS4-HMAC-SHA256 Credential={server.canaries['aws']}/20260101/us-east-1/s3/aws4_request, Signature=0"
    http_raw(_port(server), f"GET /v1/objects HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n".encode(), half_close=False)
    server.tally.connections += 1
    server.wait_for("SELECT count(*) > $2 FROM events WHERE canary_id = $1", server.canaries["aws_id"], before)
    server.assert_clean()
