"""GET /api/v1/coverage and the console's Coverage page against a real listener, control store and
seeded datastore: the route needs a token with the read scope (?refresh=true the operate scope); it
answers the coverage report of the listener's configuration (each path of each datastore with its
status and why) in the shape its OpenAPI schema declares; one report is computed at a time and kept
for api.coverage_ttl, so callers cannot load the datastores; a datastore that refuses or never answers
is reported unreachable in a 200; the console shows the report, grouped and escaped, above the source
health."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestServer
from jsonschema import Draft202012Validator
from seeder_helpers import Shop
from testkit import MakeConfig, OpenRuntime
from web_support import ApiUnderTest

from canary.config import Config
from canary.health.coverage_report import COVERED, OPEN, coverage_report
from canary.listener import Listener
from canary.runtime import Runtime
from canary.seeding.postgres import PostgresSeeder
from canary.store import api_tokens
from canary.store.embedded import PostgresServer
from canary.web.api import COVERAGE, PREFIX, ApiComponent
from canary.web.console import ConsoleComponent

PUBLIC_URL = "https://canary.example.com"
HOSTILE_VIEW = '<img src=x onerror=alert(1)>"'


@dataclass
class Served:
    base: str
    http: aiohttp.ClientSession
    rt: Runtime
    rest: ApiComponent
    tokens: dict[str, str]

    async def call(self, path: str, token: str | None) -> tuple[int, Any, str]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        async with self.http.get(self.base + path, headers=headers) as resp:
            text = await resp.text()
            return resp.status, await resp.json() if resp.content_type == "application/json" else None, text

    @property
    def computations(self) -> int:
        cache = self.rest.api.coverage_cache
        assert cache is not None
        return cache.computations

    async def page(self, path: str, token_name: str) -> tuple[int, dict[str, str], str]:
        """A console page for a session signed in with the named token."""
        async with self.http.post(self.base + "/signin", data={"token": self.tokens[token_name], "next": "/incidents"},
                                  allow_redirects=False) as resp:
            assert resp.status == 303
            cookie = resp.headers.getall("Set-Cookie")[0].split(";", 1)[0]
        async with self.http.get(self.base + path, headers={"Cookie": cookie}, allow_redirects=False) as resp:
            return resp.status, dict(resp.headers), await resp.text()


@asynccontextmanager
async def serving(rt: Runtime) -> AsyncIterator[Served]:
    """The listener with the API and the console over ``rt``, and tokens of the read, operate and
    reveal-only scopes."""
    now = await rt.pool.fetchval("SELECT clock_timestamp()")
    tokens: dict[str, str] = {}
    for name, scopes in (("read", ["read"]), ("operate", ["operate"]), ("reveal-only", ["reveal"])):
        _, tokens[name] = await api_tokens.create(rt.pool, name, scopes, now + dt.timedelta(hours=1), "test")
    rest = ApiComponent()
    server = TestServer(Listener(rt, [rest, ConsoleComponent(rest.api)]).app(), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield Served(str(server.make_url("")).rstrip("/"), http, rt, rest, tokens)
    finally:
        await server.close()


def _config(make_config: MakeConfig, *datastores: dict[str, Any], **api: Any) -> Config:
    return make_config(listener={"public_url": PUBLIC_URL}, api={"auth_fail_limit": 1000, **api},
                       datastores=list(datastores))


async def _seeded(shop: Shop, pg_server: PostgresServer, open_test_runtime: OpenRuntime,
                  make_config: MakeConfig) -> tuple[Config, Runtime]:
    """The shop armed (3 canaries, its log tailed), with a superuser-owned view over customers named with
    markup and a SECURITY DEFINER function reading it."""
    cfg = _config(make_config, {"name": "shop", "dsn": shop.dsn, "jsonlog_dir": str(pg_server.log_dir),
                                "tables": [{"table": "public.customers", "count": 3}]})
    rt = await open_test_runtime(cfg)
    await PostgresSeeder(cfg.datastores[0], rt.registry, seed=3).apply()
    conn = await asyncpg.connect(shop.dsn)
    try:
        await conn.execute(f"""
            CREATE VIEW public."{HOSTILE_VIEW.replace('"', '""')}" AS SELECT * FROM public.customers;
            CREATE FUNCTION public.export_customers() RETURNS SETOF public.customers LANGUAGE sql SECURITY DEFINER
                AS 'SELECT * FROM public.customers';
        """)
    finally:
        await conn.close()
    return cfg, rt


def _paths(store: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {p["path"]: (p["status"], p["why"]) for p in store["paths"]}


@contextmanager
def _closed_port() -> Iterator[int]:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield port


@contextmanager
def _silent_port() -> Iterator[int]:
    """A loopback port that takes connections (the kernel's backlog) and never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


async def test_coverage_needs_the_read_scope_and_refresh_the_operate_scope(api: ApiUnderTest) -> None:
    """No token or a bad one: 401; a token without the read scope: 403; read: 200 with the report;
    ?refresh=true with a read token: 403, with operate: 200; an unknown ?datastore= is 404 and a bad
    ?refresh= 400."""
    path = f"{PREFIX}/coverage"
    for token in (None, "nonsense", api.tokens["expired"], api.tokens["revoked"]):
        assert (await api.call("GET", path, token))[:2] == (401, {"error": "unauthorized"})
    status, data, _ = await api.call("GET", path, api.tokens["reveal-only"])
    assert status == 403 and "read" in data["error"]
    status, data, _ = await api.call("GET", path, api.tokens["read"])
    assert status == 200 and [s["datastore"] for s in data["datastores"]] == ["shop"]
    status, data, _ = await api.call("GET", path + "?refresh=true", api.tokens["read"])
    assert status == 403 and "operate" in data["error"]
    status, data, _ = await api.call("GET", path + "?refresh=true", api.tokens["operate"])
    assert status == 200 and data["datastores"][0]["reachable"] is True
    assert (await api.call("GET", path + "?datastore=elsewhere", api.tokens["read"]))[0] == 404
    assert (await api.call("GET", path + "?refresh=maybe", api.tokens["operate"]))[0] == 400


async def test_coverage_of_a_seeded_datastore(shop: Shop, pg_server: PostgresServer, open_test_runtime: OpenRuntime,
                                              make_config: MakeConfig) -> None:
    """The answer is the coverage report of the listener's configuration (the same paths, statuses and
    reasons `canary coverage report --json` gives), valid against the route's schema in the OpenAPI
    document: the armed table's direct paths covered, the privileged view and SECURITY DEFINER function
    not covered and named; it holds no DSN, password or canary row key."""
    cfg, rt = await _seeded(shop, pg_server, open_test_runtime, make_config)
    async with serving(rt) as srv:
        status, data, text = await srv.call(f"{PREFIX}/coverage", srv.tokens["read"])
        assert status == 200, text
        status, doc, _ = await srv.call(f"{PREFIX}/openapi.json", srv.tokens["read"])
        op = doc["paths"][f"{PREFIX}/coverage"]["get"]
        assert op["x-canary-scope"] == "read" and {p["name"] for p in op["parameters"]} == {"datastore", "refresh"}
        schema = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == COVERAGE
        Draft202012Validator.check_schema(schema)
        errors = [e.message for e in Draft202012Validator(schema).iter_errors(data)]
        assert errors == []
        (store,) = data["datastores"]
        paths = _paths(store)
        assert paths["direct_read"][0] == COVERED and "public.customers" in paths["direct_read"][1]
        assert paths["views"][0] == OPEN and HOSTILE_VIEW in paths["views"][1]
        assert paths["functions"][0] == OPEN and "public.export_customers()" in paths["functions"][1]
        assert store["reachable"] is True and store["error"] is None
        assert store["canaries"] == {"customers": 3, "credentials": 0}
        assert {o["name"] for o in store["privileged_objects"]} == {f"public.{HOSTILE_VIEW}",
                                                                    "public.export_customers()"}
        direct = await coverage_report(cfg, rt.pool)
        assert [(p["path"], p["status"], p["why"], p["claimed"]) for p in direct["datastores"][0]["paths"]] == \
            [(p["path"], p["status"], p["why"], p["claimed"]) for p in store["paths"]]
        assert data["open_claims"] == direct["open_claims"] == 0
        revealed = await rt.registry.reveal([r["id"] for r in await rt.pool.fetch("SELECT id FROM canaries")])
        values = [v for _, vs in revealed.values() for _, v in vs]
        assert len(revealed) == 3 and values
        assert shop.dsn not in text and "password" not in text.lower()
        assert not [v for v in values if v in text]
        one = await srv.call(f"{PREFIX}/coverage?datastore=shop", srv.tokens["read"])
        assert one[0] == 200 and one[1]["datastores"] == data["datastores"]


async def test_one_computation_at_a_time_kept_for_the_ttl(shop: Shop, open_test_runtime: OpenRuntime,
                                                         make_config: MakeConfig) -> None:
    """Eight callers arriving together with nothing kept cause one computation, and all get its answer;
    calls within api.coverage_ttl are served from it (same computed_at, no new computation, growing
    age_s); ?refresh=true (operate) computes again; past the TTL a plain call computes again."""
    rt = await open_test_runtime(_config(make_config, {"name": "shop", "dsn": shop.dsn}, coverage_ttl="2s"))
    async with serving(rt) as srv:
        assert srv.computations == 0
        t0 = time.monotonic()
        got = await asyncio.gather(*(srv.call(f"{PREFIX}/coverage", srv.tokens["read"]) for _ in range(8)))
        assert {g[0] for g in got} == {200} and srv.computations == 1
        assert len({g[1]["computed_at"] for g in got}) == 1
        first = got[0][1]
        assert first["max_age_s"] == 2.0 and first["datastores"][0]["reachable"] is True
        await asyncio.sleep(0.2)
        again = await srv.call(f"{PREFIX}/coverage", srv.tokens["read"])
        assert srv.computations == 1, "a call within the TTL must not read the datastore again"
        assert again[1]["computed_at"] == first["computed_at"] and again[1]["age_s"] >= 0.1
        assert time.monotonic() - t0 < 2.0, "the machine was too slow to observe the window"
        fresh = await srv.call(f"{PREFIX}/coverage?refresh=true", srv.tokens["operate"])
        assert srv.computations == 2 and fresh[1]["computed_at"] > first["computed_at"] and fresh[1]["age_s"] < 2.0
        await asyncio.sleep(2.1)
        later = await srv.call(f"{PREFIX}/coverage", srv.tokens["read"])
        assert srv.computations == 3 and later[1]["computed_at"] > fresh[1]["computed_at"]


async def test_a_caller_hanging_up_does_not_cancel_the_computation(shop: Shop, open_test_runtime: OpenRuntime,
                                                                   make_config: MakeConfig) -> None:
    """A caller that gives up while the report is computed (a datastore that never answers holds it for
    api.coverage_timeout) does not cancel it: the next caller gets that computation's answer, with no
    second one started."""
    with _silent_port() as port:
        silent = {"name": "silent", "dsn": f"postgresql://canary@127.0.0.1:{port}/shop"}
        rt = await open_test_runtime(_config(make_config, silent, coverage_timeout="1s"))
        async with serving(rt) as srv:
            try:
                async with srv.http.get(f"{srv.base}{PREFIX}/coverage",
                                        headers={"Authorization": f"Bearer {srv.tokens['read']}"},
                                        timeout=aiohttp.ClientTimeout(total=0.3)):
                    raise AssertionError("answered before the silent datastore's timeout")
            except asyncio.TimeoutError:
                pass
            status, data, _ = await srv.call(f"{PREFIX}/coverage", srv.tokens["read"])
            assert status == 200 and srv.computations == 1
            assert data["datastores"][0]["reachable"] is False


async def test_an_unreachable_datastore_is_reported_with_200(shop: Shop, open_test_runtime: OpenRuntime,
                                                             make_config: MakeConfig) -> None:
    """Beside a reachable datastore, one that refuses connections and one that never answers (held for
    api.coverage_timeout, not longer) are each reported unreachable with the error's class and a first
    path saying nothing below is verified; the answer is a 200 and names no DSN."""
    with _closed_port() as closed, _silent_port() as silent:
        gone = f"postgresql://canary:hunter2@127.0.0.1:{closed}/shop"
        mute = f"postgresql://canary:hunter2@127.0.0.1:{silent}/shop"
        cfg = _config(make_config, {"name": "shop", "dsn": shop.dsn, "tables": [{"table": "public.customers", "count": 2}]},
                      {"name": "gone", "dsn": gone}, {"name": "mute", "dsn": mute}, coverage_timeout="1s")
        rt = await open_test_runtime(cfg)
        async with serving(rt) as srv:
            t0 = time.monotonic()
            status, data, text = await srv.call(f"{PREFIX}/coverage", srv.tokens["read"])
            took = time.monotonic() - t0
        assert status == 200, text
        assert took < 6, took
        stores = {s["datastore"]: s for s in data["datastores"]}
        assert stores["shop"]["reachable"] is True and stores["shop"]["error"] is None
        assert stores["gone"]["reachable"] is False and stores["gone"]["error"] == "ConnectionRefusedError"
        assert stores["mute"]["reachable"] is False and stores["mute"]["error"] == "TimeoutError"
        for name in ("gone", "mute"):
            first = stores[name]["paths"][0]
            assert first["path"] == "datastore" and first["status"] == OPEN and "nothing below is verified" in first["why"]
            assert first["open_claim"] is True
        assert data["open_claims"] >= 2
        assert "hunter2" not in text and "127.0.0.1" not in text


async def test_console_shows_the_report_grouped_and_escaped(shop: Shop, pg_server: PostgresServer,
                                                           open_test_runtime: OpenRuntime, make_config: MakeConfig) -> None:
    """The Coverage page shows, per datastore, its paths under Not covered / Partly covered / Covered with
    their reasons, the objects without row security, then the source health (components, checkpoints);
    a view named with markup appears escaped; the page carries the strict policy and no inline script or
    style; it is served from the API's cache (no second computation); the recompute link is offered to
    operate sessions only, and a read session asking for it is refused."""
    _, rt = await _seeded(shop, pg_server, open_test_runtime, make_config)
    async with serving(rt) as srv:
        status, headers, text = await srv.page("/coverage", "read")
        assert status == 200, text
        assert "default-src 'none'" in headers["Content-Security-Policy"] and "unsafe-inline" not in headers["Content-Security-Policy"]
        assert re.findall(r"<script(?![^>]*\ssrc=)[^>]*>", text) == [] and not re.search(r"<[^>]*\s(style|on[a-z]+)=", text)
        assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
        sections = re.findall(r'<section class="card coverage">(.*?)</section>', text, re.S)
        assert len(sections) == 1 and "shop" in sections[0]
        shop_html = sections[0]
        heads = re.findall(r"<h3>(.*?)</h3>", shop_html)
        order = [label for label in ("Not covered", "Partly covered", "Covered") if any(label + " (" in h for h in heads)]
        assert order[0] == "Not covered" and "Covered" in order
        not_covered = shop_html.split("Not covered (", 1)[1].split("<h3>", 1)[0]
        assert "SECURITY DEFINER functions owned by privileged roles" in not_covered
        assert "public.export_customers()" in not_covered
        covered = shop_html.split("Covered (", 1)[1].split("<h3>", 1)[0]
        assert "SELECT and COPY TO by ordinary roles" in covered and "row security on public.customers" in covered
        assert "Objects that read canary tables without row security" in shop_html
        assert text.index('class="card coverage"') < text.index(">Components<") < text.index(">Checkpoints<")
        assert "Recompute now" not in text and srv.computations == 1
        status, _, _ = await srv.page("/coverage", "operate")
        assert status == 200 and srv.computations == 1
        status, _, text = await srv.page("/coverage", "operate")
        assert 'href="/coverage?refresh=true"' in text
        status, _, text = await srv.page("/coverage?refresh=true", "operate")
        assert status == 200 and srv.computations == 2
        status, _, text = await srv.page("/coverage?refresh=true", "read")
        assert status == 403 and "operate" in text and srv.computations == 2
