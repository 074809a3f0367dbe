"""The gateway check behind a real NGINX (Debian's package) with ``auth_request``, configured as the
README's "Gateway check" section says: a canary token presented to the upstream pages and still
reaches the upstream; real tokens pass; with canary stopped, traffic keeps flowing through the
``error_page`` fallback (logged by NGINX), and canary reports the time it was not checking as a HEALTH
incident when it comes back."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from credential_support import NGINX, nginx_head, nginx_temps, register, running_nginx
from testkit import STDOUT_SINK, MakeConfig, OpenRuntime, incidents_when

from canary.config import GatewayConfig
from canary.credentials.gateway import GatewayCheck
from canary.credentials.values import CredentialFactory
from canary.store.embedded import free_port

pytestmark = pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is not installed")


def nginx_conf(prefix: Path, listen: int, app: int, check: int) -> str:
    """The README's NGINX configuration (fail open, unchecked requests logged), on loopback ports."""
    temp = nginx_temps(prefix)
    return nginx_head(prefix) + f"""
http {{
    access_log off;
    {temp}
    log_format canary_unchecked '$time_iso8601 $remote_addr "$request_method $request_uri" $status $request_id';
    upstream app {{ server 127.0.0.1:{app}; keepalive 16; }}
    upstream canary_check {{ server 127.0.0.1:{check}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{listen};
        location / {{
            auth_request /_canary_check;
            error_page 500 502 503 504 = @canary_unchecked;
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location = /_canary_check {{
            internal;
            proxy_pass http://canary_check/gateway/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header Host $host;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Request-Id $request_id;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 100ms;
            proxy_send_timeout 250ms;
            proxy_read_timeout 250ms;
        }}
        location @canary_unchecked {{
            access_log {prefix}/canary_unchecked.log canary_unchecked;
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


@dataclass
class Upstream:
    """The application behind NGINX: records what reached it."""

    port: int
    seen: list[tuple[str, str, str, bytes]] = field(default_factory=list)  # method, path, authorization, body


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = Upstream(free_port())

    async def handle(request: web.Request) -> web.Response:
        up.seen.append((request.method, request.path_qs, request.headers.get("Authorization", ""), await request.read()))
        return web.Response(text="upstream ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", up.port).start()
    yield up
    await runner.cleanup()


@dataclass
class Nginx:
    port: int
    prefix: Path

    async def unchecked(self, n: int = 0) -> list[str]:
        """The lines NGINX logged for requests it let through unchecked (waiting up to 5 s for ``n``: a
        request's log line is written after its answer)."""
        log = self.prefix / "canary_unchecked.log"
        deadline = time.monotonic() + 5
        while True:
            lines = log.read_text().splitlines() if log.exists() else []
            if len(lines) >= n or time.monotonic() > deadline:
                return lines
            await asyncio.sleep(0.02)


@pytest.fixture
def nginx(tmp_path: Path, upstream: Upstream) -> Iterator[tuple[Nginx, int]]:
    """NGINX on a free loopback port in front of ``upstream``, asking the gateway check on the port yielded
    with it; its own prefix, config, pid and logs in tmp_path; stopped (its own process) at the end."""
    check, listen = free_port(), free_port()
    with running_nginx(tmp_path, nginx_conf(tmp_path, listen, upstream.port, check), listen):
        yield Nginx(listen, tmp_path), check


async def test_nginx_auth_request_pages_on_canary_passes_real_tokens_and_fails_open_with_a_gap(
        open_test_runtime: OpenRuntime, make_config: MakeConfig, upstream: Upstream, nginx: tuple[Nginx, int]) -> None:
    """Through a real NGINX: a real token and a canary token both reach the upstream; only the canary raises a
    USED event (client, route, method, NGINX's request id) whose incident is queued for the sink (a page).
    With the check stopped every request, GET and POST with its body, still reaches the upstream, NGINX logs
    each as unchecked, and the restarted check raises one HEALTH incident naming the gap."""
    proxy, check_port = nginx
    runtime = await open_test_runtime(make_config(sinks=[STDOUT_SINK]))
    f = CredentialFactory(runtime.keyring)
    canary_tok, real_tok = f.github_token(), "ghp_" + "R" * 36
    [cid] = await register(runtime, canary_tok)
    options = GatewayConfig(enabled=True, port=check_port, mark_interval=0.2, gap_after=1.0)
    gw = GatewayCheck(options, node="edge-1")
    await gw.start(runtime)
    base = f"http://127.0.0.1:{proxy.port}"
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/v1/orders", headers={"Authorization": f"Bearer {real_tok}"}) as r:
            assert r.status == 200 and await r.text() == "upstream ok"
        async with s.get(f"{base}/v1/orders/5?expand=lines", headers={"Authorization": f"Bearer {canary_tok.secret}",
                                                                      "User-Agent": "exfil/1.0"}) as r:
            assert r.status == 200 and await r.text() == "upstream ok"  # canary never blocks
        await asyncio.wait_for(gw._queue.join(), 10)
        [ev] = await runtime.pool.fetch("SELECT * FROM events")
        assert (ev["kind"], ev["canary_id"], ev["severity"]) == ("used", cid, "critical")
        assert ev["origin"]["client_addr"] == "127.0.0.1" and ev["origin"]["gateway"] == "127.0.0.1"
        assert ev["origin"]["path"] == "/v1/orders/5?expand=lines" and ev["origin"]["method"] == "GET"
        assert ev["origin"]["user_agent"] == "exfil/1.0" and re.fullmatch(r"[0-9a-f]{32}", ev["evidence"]["request_id"])
        [incident] = await incidents_when(runtime, 1)
        assert await runtime.pool.fetchval("SELECT count(*) FROM outbox WHERE incident_id = $1 AND sink = 'out'", incident["id"]) == 1
        assert [m for m, *_ in upstream.seen] == ["GET", "GET"] and await proxy.unchecked() == []

        await gw.stop()  # canary is down: the gateway fails open
        down_from = time.monotonic()
        for i in range(4):
            async with s.get(f"{base}/v1/items/{i}", headers={"Authorization": f"Bearer {real_tok}"}) as r:
                assert r.status == 200 and await r.text() == "upstream ok"
        # its own connection, closed at once: NGINX logs a request with a body when its lingering close ends
        async with aiohttp.ClientSession() as once, once.post(f"{base}/v1/orders", data=b'{"sku": 7}', headers={
                "Authorization": f"Bearer {canary_tok.secret}"}) as r:
            assert r.status == 200
        assert upstream.seen[-1] == ("POST", "/v1/orders", f"Bearer {canary_tok.secret}", b'{"sku": 7}')
        assert len(upstream.seen) == 7 and len(await proxy.unchecked(5)) == 5
        await asyncio.sleep(max(0.0, 1.2 - (time.monotonic() - down_from)))

        gw = GatewayCheck(options, node="edge-1")
        await gw.start(runtime)
        try:
            async with s.get(f"{base}/v1/again", headers={"X-API-Key": canary_tok.secret}) as r:
                assert r.status == 200
            await asyncio.wait_for(gw._queue.join(), 10)
        finally:
            await gw.stop()
    assert len(await proxy.unchecked()) == 5  # checked again
    events = await runtime.pool.fetch("SELECT * FROM events ORDER BY id")
    assert [e["kind"] for e in events] == ["used", "health", "used"]  # the POST while down was not seen: that is the gap
    gap = events[1]
    assert gap["evidence"]["signal"] == "gateway_gap" and gap["evidence"]["seconds"] >= 1.0
    assert gap["evidence"]["problem"].startswith("gateway check was down from ")
    incidents = await incidents_when(runtime, 2)
    assert [(i["kind"], i["event_count"]) for i in incidents] == [("used", 2), ("health", 1)]  # one per client, one gap
    health = incidents[1:]
    assert [(i["group_key"], i["severity"]) for i in health] == [("gateway-gap:edge-1", "error")]


async def test_a_hung_check_costs_at_most_the_read_timeout(upstream: Upstream, nginx: tuple[Nginx, int]) -> None:
    """A check that accepts connections and never answers (a hung canary) delays requests by NGINX's
    proxy_read_timeout (250 ms here) and no more: they still reach the upstream, logged as unchecked."""
    proxy, check_port = nginx
    hung = socket.socket()
    hung.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hung.bind(("127.0.0.1", check_port))
    hung.listen(64)  # connections complete in the backlog; nothing reads or answers them
    try:
        async with aiohttp.ClientSession() as s:
            for i in range(3):
                t0 = time.monotonic()
                async with s.get(f"http://127.0.0.1:{proxy.port}/v1/slow/{i}") as r:
                    assert r.status == 200 and await r.text() == "upstream ok"
                took = time.monotonic() - t0
                assert 0.2 < took < 1.0, took
    finally:
        hung.close()
    assert len(upstream.seen) == 3 and len(await proxy.unchecked(3)) == 3
