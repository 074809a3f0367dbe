"""Fuzzing the REST API (canary/web/api.py) on the real listener: every route of its own table, called
with any method, path parameters, query parameters, JSON (or not) bodies and Authorization headers —
a valid token of every scope, tokens of the right shape but wrong, garbage, non-ASCII. Whatever
arrives the answer is never a 5xx (the store is up), nothing escapes, no answer without the reveal
scope holds a canary's secret value, and a genuine list afterwards still answers."""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from fuzz_harness import FuzzServer, fuzz_server, fuzz_settings, http_request
from fuzz_strategies import json_bytes, text
from hypothesis import example, given
from hypothesis import strategies as st
from testkit import customer_canary

from canary.store import api_tokens
from canary.store.embedded import PostgresServer
from canary.web.api import PREFIX, Api, ApiComponent

#: the canary's secret values: no answer may hold them (no token here has the reveal scope)
SECRET_EMAIL = "fuzz.canary.5512@mailbox-canary.test"
SECRET_ROW = "771234"
ROUTES = [(r.method, r.path) for r in Api().table()]


@pytest.fixture(scope="module")
def server(pg_server: PostgresServer) -> Iterator[FuzzServer]:
    # one peer sends every bad token here: the tarpit (tested in tests/web) would make each answer wait
    sections: dict[str, Any] = {"listener": {"public_url": "https://canary.example.com"}, "api": {"auth_fail_limit": 100_000}}

    async def setup(s: FuzzServer) -> None:
        rt = s.runtime
        async with rt.pool.acquire() as conn:
            await rt.registry.add(conn, [customer_canary(int(SECRET_ROW), values=[("email", SECRET_EMAIL)])], None)
        expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
        for scopes in (("read",), ("operate",), ("admin",)):
            _, token = await api_tokens.create(rt.pool, f"fuzz-{scopes[0]}", scopes, expires, "fuzz")
            s.canaries[scopes[0]] = token

    def components(rt: Any) -> list[Any]:
        return [ApiComponent()]

    with fuzz_server(pg_server, "api", sections, components, setup) as s:
        yield s


def _auth(s: FuzzServer, choice: str, junk: str) -> list[tuple[str, str]]:
    if choice in ("read", "operate", "admin"):
        return [("Authorization", f"Bearer {s.canaries[choice]}")]
    if choice == "wrong":
        return [("Authorization", "Bearer cy_api_" + "0" * 12 + "_" + "f" * 64)]
    if choice == "junk":
        return [("Authorization", junk)]
    return []


_param_value = st.sampled_from(["", "0", "-1", "1", "99999999999999999999", "1e9", "true", "false", "null", "open",
                                "'; DROP TABLE incidents; --", "%00", "\u0000", "é", "2026-13-45", "../..", "a" * 3000]) | text
_query = st.lists(st.tuples(st.sampled_from(["limit", "cursor", "status", "kind", "severity", "datastore", "since", "until",
                                             "drill", "reveal", "format", "suppressed", "refresh", "x"]) | text, _param_value), max_size=5)
_path_value = st.sampled_from(["1", "0", "-1", "99999999999999999999", "abc", "%2e%2e", "%00", "%ED%A0%80", "shop"]) | text


@fuzz_settings(150)
@example(route=("GET", "/incidents"), path_value="1", query=[("cursor", "\u0000")], auth="read", junk="", body=b"")
@example(route=("POST", "/incidents/{id}/notes"), path_value="1", query=[], auth="operate", junk="",
         body=b'{"text": "\\ud800"}')
@given(route=st.sampled_from(ROUTES), path_value=_path_value, query=_query,
       auth=st.sampled_from(["read", "operate", "admin", "wrong", "junk", "none"]), junk=text, body=json_bytes | st.binary(max_size=200))
def test_fuzzed_api_calls_never_answer_5xx(server: FuzzServer, route: tuple[str, str], path_value: str,
                                           query: list[tuple[str, str]], auth: str, junk: str, body: bytes) -> None:
    """Any call to any route: a 2xx, 4xx (or 3xx) answer, never a 5xx; no answer holds a canary value
    (no token here may reveal); nothing escapes."""
    server.tally.examples += 1
    method, path = route
    quoted = urllib.parse.quote(path_value.encode("utf-8", "surrogatepass"), safe="%")
    target = PREFIX + path.replace("{id}", quoted).replace("{name}", quoted)
    if query:
        target += "?" + urllib.parse.urlencode([(k.encode("utf-8", "surrogatepass"), v.encode("utf-8", "surrogatepass"))
                                                for k, v in query])
    headers = _auth(server, auth, junk.replace("\r", "").replace("\n", ""))
    if method == "POST":
        headers.append(("Content-Type", "application/json"))
    server.tally.connections += 1
    answer = http_request(server.port, method, target, headers, body if method == "POST" else b"")
    assert answer.status < 500, (method, target[:120], answer.status, answer.body[:300])
    assert SECRET_EMAIL.encode() not in answer.body and f'"{SECRET_ROW}"'.encode() not in answer.body
    server.assert_clean()


def test_the_api_still_answers_after_the_fuzzing(server: FuzzServer) -> None:
    """After the fuzzing a read token lists incidents and the inventory (200), and nothing escaped."""
    token = server.canaries["read"]
    for path in ("/incidents", "/canaries", "/health"):
        answer = http_request(server.port, "GET", PREFIX + path, [("Authorization", f"Bearer {token}")])
        assert answer.status == 200, (path, answer.body[:300])
        json.loads(answer.body)
    server.assert_clean()
