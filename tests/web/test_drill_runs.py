"""Running a drill from the API and the console (POST /api/v1/drills, the Drills page's Run form) on a
real listener and control store: operate scope only; playbooks by name only (never a path); 409 when
this listener cannot run it now (no datastore, no insider DSN for insider steps, one already running);
a run against the configured shop datastore is detected through the listener's own jsonlog source and
its report is served by GET /api/v1/drills/{id}; who started it is audited; a failure inside the run,
or the listener stopping, is recorded in the run and the listener keeps serving."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from seeder_helpers import Shop
from testkit import MakeConfig, OpenRuntime
from web_support import ApiUnderTest, make_api

from canary.config import Config
from canary.crypto import write_key_file
from canary.drills.deployment import ENV_INSIDER_DSN
from canary.listener import Listener
from canary.runtime import Runtime
from canary.seeding.postgres import PostgresSeeder
from canary.store import api_tokens
from canary.store.embedded import PostgresServer
from canary.web.api import PREFIX, ApiComponent

PUBLIC_URL = "https://canary.example.com"
#: the key of the ``keyring`` fixture (testkit.TEST_KEYRING): the drill's deployment loads it from the key file
TEST_KEY = bytes(range(32))
#: a playbook of the operator's own (<data_dir>/playbooks): one session paging slowly, for as long as it is let
SLOW_PLAYBOOK = """
name = "slow-read"
description = "An ordinary role reads customers one row a second."

[[steps]]
name = "slow paged read"
action = "pg_read_pages"
table = "public.customers"
page_size = 1
pages = 10000
interval = "1s"
expect = "read"
timeout = "1h"
"""


@dataclasses.dataclass
class Served:
    """A listener on loopback and tokens of the read and operate scopes."""

    base: str
    http: aiohttp.ClientSession
    rt: Runtime
    server: TestServer
    tokens: dict[str, str]

    async def call(self, method: str, path: str, token: str | None, body: Any = None) -> tuple[int, Any, Any]:
        """status, JSON (or None), headers."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(method, self.base + path, json=body, headers=headers, allow_redirects=False) as resp:
            data = await resp.json() if resp.content_type == "application/json" else await resp.text()
            return resp.status, data, resp.headers


@asynccontextmanager
async def serve(rt: Runtime, components: list[Any] | None = None) -> AsyncIterator[Served]:
    """``rt``'s listener (default: every component its configuration asks for) and two tokens."""
    now = await rt.pool.fetchval("SELECT clock_timestamp()")
    tokens = {}
    for scope in ("read", "operate"):
        _, tokens[scope] = await api_tokens.create(rt.pool, scope, [scope], now + dt.timedelta(hours=1), "test")
    server = TestServer(Listener(rt, components).app(), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield Served(str(server.make_url("")).rstrip("/"), http, rt, server, tokens)
    finally:
        await server.close()


def shop_config(make_config: MakeConfig, shop: Shop, pg_server: PostgresServer) -> Config:
    """The shop datastore as a deployment configures it: its jsonlog tailed by the listener, one sink."""
    return make_config(
        datastores=[{"name": "shop", "dsn": shop.dsn, "node": "api-primary", "jsonlog_dir": str(pg_server.log_dir),
                     "tables": [{"table": "public.customers", "count": 8}]}],
        listener={"jsonlog_poll": "50ms", "public_url": PUBLIC_URL}, alerting={"retry_initial": "200ms"},
        sinks=[{"name": "oncall", "type": "stdout"}])


@asynccontextmanager
async def shop_listener(open_test_runtime: OpenRuntime, make_config: MakeConfig, shop: Shop,
                        pg_server: PostgresServer) -> AsyncIterator[Served]:
    """The configured deployment: the shop seeded with canaries, the master key in its key file, and
    the listener with every component the configuration asks for (jsonlog source, API, ...)."""
    cfg = shop_config(make_config, shop, pg_server)
    write_key_file(cfg.canary.key_file, TEST_KEY)
    rt = await open_test_runtime(cfg)
    await PostgresSeeder.from_config(cfg, "shop", rt.registry).apply()
    async with serve(rt) as s:
        yield s


async def finished(call: Any, run_id: str, token: str, timeout: float = 30.0) -> dict[str, Any]:
    """GET the run until it is no longer running."""
    deadline = time.monotonic() + timeout
    while True:
        status, data, *_ = await call("GET", f"{PREFIX}/drills/{run_id}", token)
        assert status == 200, data
        if data["run"]["status"] != "running":
            return dict(data)
        assert time.monotonic() < deadline, data
        await asyncio.sleep(0.1)


async def test_only_operate_tokens_start_drills_and_only_by_a_known_name(api: ApiUnderTest) -> None:
    """No token is 401, a read token 403; an unknown playbook, a path to a file (even a shipped
    playbook's), a missing or non-string name, an unknown field or datastore is 400; none of them
    registers a run or writes an audit entry."""
    assert (await api.call("POST", f"{PREFIX}/drills", None, {"playbook": "insider-export"}))[0] == 401
    status, data, _ = await api.call("POST", f"{PREFIX}/drills", api.tokens["read"], {"playbook": "insider-export"})
    assert status == 403 and "operate" in data["error"]
    for body in ({"playbook": "nope"}, {"playbook": "../../../../etc/passwd"}, {"playbook": "/etc/passwd"},
                 {"playbook": "privileged-dump.toml"}, {"playbook": "canary/playbooks/privileged-dump.toml"},
                 {"playbook": "x" * 5000}, {}, {"playbook": 7}, {"playbook": ["breach"]},
                 {"playbook": "privileged-dump", "path": "/etc/passwd"},
                 {"playbook": "privileged-dump", "datastore": "nowhere"}, {"playbook": "privileged-dump", "datastore": 1}):
        status, data, _ = await api.call("POST", f"{PREFIX}/drills", api.tokens["operate"], body)
        assert status == 400, (body, status, data)
    status, data, _ = await api.call("POST", f"{PREFIX}/drills", api.tokens["operate"], {"playbook": "nope"})
    assert "privileged-dump" in data["error"]  # the answer lists the names there are
    assert await api.rt.pool.fetchval("SELECT count(*) FROM drill_runs") == 0
    assert await api.rt.pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'drill.run'") == 0


async def test_without_a_datastore_the_listener_runs_no_drill(open_test_runtime: OpenRuntime,
                                                               make_config: MakeConfig) -> None:
    """With no datastore configured (the demo deployment is not stood up inside a listener) a known
    playbook is 409, saying why, and nothing is registered."""
    rt = await open_test_runtime(make_config(listener={"public_url": PUBLIC_URL}))
    async with serve(rt, [ApiComponent()]) as s:
        status, data, _ = await s.call("POST", f"{PREFIX}/drills", s.tokens["operate"], {"playbook": "privileged-dump"})
        assert status == 409 and "no datastore is configured" in data["error"]
        assert await rt.pool.fetchval("SELECT count(*) FROM drill_runs") == 0


async def test_insider_steps_without_the_insider_dsn_are_409(api: ApiUnderTest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A playbook whose steps read as an ordinary role, with $CANARY_DRILL_INSIDER_DSN unset in the
    listener, is 409 naming the variable and the steps (they would only be skipped)."""
    monkeypatch.delenv(ENV_INSIDER_DSN, raising=False)
    status, data, _ = await api.call("POST", f"{PREFIX}/drills", api.tokens["operate"], {"playbook": "insider-export"})
    assert status == 409, data
    assert ENV_INSIDER_DSN in data["error"] and "'paged read of customers'" in data["error"]
    assert "'COPY export of customers'" in data["error"]
    assert await api.rt.pool.fetchval("SELECT count(*) FROM drill_runs") == 0


async def test_a_failure_inside_the_run_is_recorded_and_the_listener_keeps_serving(api: ApiUnderTest) -> None:
    """A run that fails inside (here: the deployment has no master key file to load) is 202 at once, then
    recorded as an error with the reason in its report (which still renders); the listener keeps
    answering and takes the next run."""
    status, data, text = await api.call("POST", f"{PREFIX}/drills", api.tokens["operate"], {"playbook": "privileged-dump"})
    assert status == 202, text
    got = await finished(api.call, data["id"], api.tokens["read"])
    assert got["run"]["status"] == "error" and got["run"]["playbook"] == "privileged-dump"
    assert "MasterKeyError" in got["report"]["error"] and got["report"]["status"] == "error"
    assert got["report"]["error"] in got["report"]["notes"] and got["report"]["steps"] == []
    status, _, html = await api.call("GET", f"{PREFIX}/drills/{data['id']}?format=html", api.tokens["read"])
    assert status == 200 and "privileged-dump" in html
    assert (await api.call("GET", f"{PREFIX}/health", api.tokens["read"]))[0] == 200
    status, again, text = await api.call("POST", f"{PREFIX}/drills", api.tokens["operate"], {"playbook": "privileged-dump"})
    assert status == 202 and again["id"] != data["id"], text
    await finished(api.call, again["id"], api.tokens["read"])


async def test_a_run_against_the_configured_shop_is_detected_reported_and_audited(
        open_test_runtime: OpenRuntime, make_config: MakeConfig, shop: Shop, pg_server: PostgresServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """insider-export (the shortest shipped playbook that reads: a paged read, then COPY) started by an
    operate token against the configured shop: 202 with the run's id and its Location; a second start
    while it runs is 409; both steps are detected by the listener's own jsonlog source and paged; the
    report is served at the Location (JSON and HTML); the audit log names the token, client, playbook
    and datastore; the listener still serves after."""
    monkeypatch.setenv(ENV_INSIDER_DSN, shop.reader_dsn)
    async with shop_listener(open_test_runtime, make_config, shop, pg_server) as s:
        op = s.tokens["operate"]
        status, data, headers = await s.call("POST", f"{PREFIX}/drills", op, {"playbook": "insider-export"})
        assert status == 202, data
        run_id = data["id"]
        assert re.fullmatch(r"dr-[0-9a-f]{12}", run_id) and data["datastore"] == "shop" and data["status"] == "running"
        assert headers["Location"] == f"{PREFIX}/drills/{run_id}" == data["report"]
        status, busy, _ = await s.call("POST", f"{PREFIX}/drills", op, {"playbook": "insider-export"})
        assert status == 409 and run_id in busy["error"] and "one at a time" in busy["error"]
        got = await finished(s.call, run_id, s.tokens["read"])
        run, report = got["run"], got["report"]
        assert run["status"] == "passed" and run["mode"] == "configured" and run["detected"] == 2, report
        assert [st["status"] for st in report["steps"]] == ["passed", "passed"]
        assert all(st["paged_sinks"] == ["oncall"] and st["incidents"][0]["actor"]["user"] == shop.reader
                   for st in report["steps"])
        assert report["steps"][0]["incidents"][0]["origin"]["node"] == "api-primary"
        assert f"started in the listener by token:{op.split('_')[2]} (operate) (POST /api/v1/drills)" in report["notes"]
        status, html, _ = await s.call("GET", headers["Location"] + "?format=html", s.tokens["read"])
        assert status == 200 and "insider-export" in html
        [entry] = await s.rt.pool.fetch("SELECT * FROM audit_log WHERE action = 'drill.run'")
        tid = op.split("_")[2]
        assert entry["actor"] == f"token:{tid} (operate)" and entry["client"] == "127.0.0.1"
        assert entry["target"] == f"drill:{run_id}" and entry["details"] == {"playbook": "insider-export", "datastore": "shop"}
        status, listing, _ = await s.call("GET", f"{PREFIX}/drills", s.tokens["read"])
        assert status == 200 and [d["id"] for d in listing["items"]] == [run_id]


async def test_stopping_the_listener_records_the_running_drill(
        open_test_runtime: OpenRuntime, make_config: MakeConfig, shop: Shop, pg_server: PostgresServer,
        monkeypatch: pytest.MonkeyPatch, control_dsn: str) -> None:
    """An operator's own playbook (<data_dir>/playbooks, the CLI's search path) that is still paging
    when the listener stops: the run is cancelled within the shutdown and recorded as an error saying
    the listener stopped, never left running."""
    monkeypatch.setenv(ENV_INSIDER_DSN, shop.reader_dsn)
    async with shop_listener(open_test_runtime, make_config, shop, pg_server) as s:
        books = s.rt.config.canary.data_dir / "playbooks"
        books.mkdir()
        (books / "slow-read.toml").write_text(SLOW_PLAYBOOK)
        status, data, _ = await s.call("POST", f"{PREFIX}/drills", s.tokens["operate"], {"playbook": "slow-read"})
        assert status == 202, data
        deadline = time.monotonic() + 15
        while not await s.rt.pool.fetchval("SELECT count(*) FROM drill_markers WHERE run_id = $1", data["id"]):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        began = time.monotonic()
        await s.server.close()  # stops the listener: the API component stops the run
        assert time.monotonic() - began < 10
    conn = await asyncpg.connect(control_dsn)
    try:
        row = await conn.fetchrow("SELECT status, finished_at, result FROM drill_runs WHERE id = $1", data["id"])
    finally:
        await conn.close()
    assert row["status"] == "error" and row["finished_at"] is not None
    assert json.loads(row["result"])["error"] == "the listener stopped during the run"  # a plain connection: jsonb as text


async def test_the_console_runs_a_playbook_from_the_drills_page(open_test_runtime: OpenRuntime, make_config: MakeConfig,
                                                               canary_rows: Any, shop: Shop,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """An operate session's Drills page has a Run form (CSRF token, a select of playbook names); a read
    session's has none and its POST is 403; a POST without the CSRF token is 403; a known playbook
    redirects to the new run's page (which says why the run ended as an error); an unknown one is 400 and
    a run the listener cannot do is 409, each with the reason; the start is audited as the session."""
    monkeypatch.delenv(ENV_INSIDER_DSN, raising=False)
    async with make_api(open_test_runtime, make_config, canary_rows, shop, with_console=True) as c:
        here = {"Origin": c.base}

        async def fetch(method: str, path: str, cookie: str, data: Any = None) -> tuple[int, Any, str]:
            async with c.http.request(method, c.base + path, data=data, headers={"Cookie": cookie, **here},
                                      allow_redirects=False) as resp:
                return resp.status, resp.headers, await resp.text()

        async def sign_in(token: str) -> tuple[str, str]:
            async with c.http.post(c.base + "/signin", data={"token": c.tokens[token], "next": "/drills"}, headers=here,
                                   allow_redirects=False) as resp:
                assert resp.status == 303
                cookie = resp.headers.getall("Set-Cookie")[0].split(";", 1)[0]
            _, _, page = await fetch("GET", "/drills", cookie)
            m = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
            assert m is not None
            return cookie, m.group(1)

        reader, reader_csrf = await sign_in("read")
        _, _, page = await fetch("GET", "/drills", reader)
        assert 'action="/drills/run"' not in page
        status, _, text = await fetch("POST", "/drills/run", reader, {"csrf": reader_csrf, "playbook": "privileged-dump"})
        assert status == 403 and "operate" in text
        cookie, csrf = await sign_in("operate")
        _, _, page = await fetch("GET", "/drills", cookie)
        assert 'action="/drills/run"' in page and '<select name="playbook"' in page
        assert all(f'<option value="{n}">' in page for n in ("insider-export", "privileged-dump", "breach"))
        status, _, text = await fetch("POST", "/drills/run", cookie, {"playbook": "privileged-dump"})
        assert status == 403 and "CSRF" in text
        assert await c.rt.pool.fetchval("SELECT count(*) FROM drill_runs") == 0
        status, _, text = await fetch("POST", "/drills/run", cookie, {"csrf": csrf, "playbook": "../etc/passwd"})
        assert status == 400 and "no playbook named" in text
        status, _, text = await fetch("POST", "/drills/run", cookie, {"csrf": csrf, "playbook": "insider-export"})
        assert status == 409 and ENV_INSIDER_DSN in text
        status, headers, _ = await fetch("POST", "/drills/run", cookie, {"csrf": csrf, "playbook": "privileged-dump"})
        assert status == 303
        run_id = headers["Location"].removeprefix("/drills/")
        assert re.fullmatch(r"dr-[0-9a-f]{12}", run_id)
        entry = await c.rt.pool.fetchrow("SELECT actor, details FROM audit_log WHERE action = 'drill.run'")
        assert entry["actor"].startswith("session:") and entry["details"]["playbook"] == "privileged-dump"
        await finished(c.call, run_id, c.tokens["read"])  # an error: this deployment has no master key file
        status, _, page = await fetch("GET", headers["Location"], cookie)
        assert status == 200 and run_id in page and "<dt>error</dt><dd>MasterKeyError: no master key" in page
