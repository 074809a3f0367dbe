"""Helpers of the API tests (tests/web): the API under test: a real listener (pipeline, dispatcher, the API component) on loopback over the
test's control store, a local PagerDuty, tokens of every scope, and canaries whose secret values the
tests know (so every answer can be searched for them)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from alerting_servers import PagerDutyServer
from seeder_helpers import Shop
from testkit import CanaryRows, MakeConfig, OpenRuntime, customer_canary

from canary.events import DetectionEvent, EventKind, event_key
from canary.listener import Listener
from canary.runtime import Runtime
from canary.store import api_tokens
from canary.web.api import ApiComponent
from canary.web.console import ConsoleComponent

PD_KEY = "R0UT1NGK3Y000000000000000000000C"
PUBLIC_URL = "https://canary.example.com"
#: the secret values of the test canaries: no answer may hold them without ?reveal=true and the reveal scope
EMAILS = ("quinn.okafor.7731@mailbox-canary.test", "r.vasquez.4410@mailbox-canary.test")
PHONES = ("+15550109876", "+15550104321")
ROW_KEYS = ("918273", "918274")


@dataclasses.dataclass
class ApiUnderTest:
    base: str
    http: aiohttp.ClientSession
    rt: Runtime
    pd: PagerDutyServer
    tokens: dict[str, str]  # name -> token text
    canary_ids: list[int]
    incident_ids: list[int]

    def headers(self, token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token is not None else {}

    async def call(self, method: str, path: str, token: str | None, body: Any = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any, str]:
        async with self.http.request(method, self.base + path, json=body,
                                     headers={**self.headers(token), **(headers or {})}) as resp:
            text = await resp.text()
            data: Any = None
            if resp.content_type == "application/json":
                data = await resp.json()
            return resp.status, data, text

    async def get(self, path: str, token: str | None) -> Any:
        status, data, text = await self.call("GET", path, token)
        assert status == 200, (path, status, text)
        return data


def secrets_in(text: str) -> list[str]:
    """Which of the test canaries' values (e-mail, phone, row key) ``text`` holds."""
    return [v for v in (*EMAILS, *PHONES, *ROW_KEYS) if v in text]


async def read_event(rt: Runtime, n: int, canary_id: int | None, *, group: str, user: str = "mallory",
                     at: dt.datetime | None = None) -> None:
    """A read of a canary submitted through the running pipeline, as the jsonlog source records it."""
    await rt.submit(DetectionEvent(
        kind=EventKind.READ, source="jsonlog", key=event_key("api-test", group, n), group=group, canary_id=canary_id,
        observed_at=at or dt.datetime.now(dt.timezone.utc), actor={"user": user, "role": user},
        origin={"client_addr": "10.1.2.3", "datastore": "shop", "node": "shop"},
        evidence={"query": "select * from customers", "table": "public.customers"}))


@asynccontextmanager
async def make_api(open_test_runtime: OpenRuntime, make_config: MakeConfig, canary_rows: CanaryRows, shop: Shop,
                   *, with_console: bool = False, listener_config: dict[str, Any] | None = None,
                   serve_public_url: bool = False, **api: Any) -> AsyncIterator[ApiUnderTest]:
    """A listener serving the API (config: ``api`` overrides [api], ``listener_config`` [listener]; with the
    console too if ``with_console``; ``serve_public_url``: listening at its own public_url, so alert links
    open), two canaries read (two incidents paged to a local PagerDuty), tokens of every scope and some
    that must fail."""
    port = 0
    public_url = PUBLIC_URL
    if serve_public_url:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        public_url = f"http://127.0.0.1:{port}"
    async with PagerDutyServer(PD_KEY) as pd:
        cfg = make_config(
            listener={"public_url": public_url, **(listener_config or {})},
            alerting={"retry_initial": 0.05, "retry_max": 0.2, "sink_timeout": 2},
            sinks=[{"name": "pd", "type": "pagerduty", "routing_key": PD_KEY, "url": pd.url}],
            datastores=[{"name": "shop", "dsn": shop.dsn, "tables": [{"table": "public.customers", "count": 5}]}],
            api={"auth_fail_limit": 1000, **api},
        )
        rt = await open_test_runtime(cfg)
        ids = await canary_rows(*(customer_canary(int(pk), values=[("email", e), ("phone", p)])
                                  for pk, e, p in zip(ROW_KEYS, EMAILS, PHONES, strict=True)))
        now = await rt.pool.fetchval("SELECT clock_timestamp()")
        tokens: dict[str, str] = {}
        for name, scopes, expires in (("read", ["read"], 3600), ("operate", ["operate"], 3600), ("admin", ["admin"], 3600),
                                      ("reveal-only", ["reveal"], 3600), ("reader-reveal", ["read", "reveal"], 3600),
                                      ("expired", ["admin"], -1), ("revoked", ["admin"], 3600)):
            token, text = await api_tokens.create(rt.pool, name, scopes, now + dt.timedelta(seconds=expires), "test")
            tokens[name] = text
            if name == "revoked":
                await api_tokens.revoke(rt.pool, token.id)
        rest = ApiComponent()
        listener = Listener(rt, [rest, ConsoleComponent(rest.api)] if with_console else [rest])
        server = TestServer(listener.app(), host="127.0.0.1", port=port or None)
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as http:
                under = ApiUnderTest(str(server.make_url("")).rstrip("/"), http, rt, pd, tokens, ids, [])
                for n, cid in enumerate(ids):
                    await read_event(rt, n, cid, group=f"session-{n}")
                under.incident_ids = [r["id"] for r in await rt.pool.fetch("SELECT id FROM incidents ORDER BY id")]
                yield under
        finally:
            await server.close()


