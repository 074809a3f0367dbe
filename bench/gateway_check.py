"""The gateway check's latency, alone and through NGINX, on this machine.

Starts an embedded PostgreSQL (pgserver) as the control store with ``--canaries`` canary tokens, a
runtime with its pipeline, the gateway check (canary/credentials/gateway.py) on a loopback port, and
one NGINX (Debian's /usr/sbin/nginx, own prefix in a temp directory) with three servers: the upstream
(``return 200``, so only the check is Python), a front that proxies to it directly, and a front that
asks the check first with ``auth_request`` exactly as the README configures it (keep-alive to canary,
fail open through ``error_page``). Requests carry a Bearer token; one in ``--canary-every`` is a canary.

Prints, for ``--requests`` sequential requests each (keep-alive clients):

* (a) the check endpoint alone: p50 / p99 as the client sees it, and the check's own time measured in
  process (handler entry to answer: ``GatewayCheck.timings``, also ``canary_gateway_check_seconds``);
* (b) through NGINX without and with ``auth_request``, interleaved one by one so both see the same
  machine, side by side, and the added latency at p50 / p99;
* that every canary request became an event (no loss) and that no request was answered unchecked.

    python bench/gateway_check.py [--requests 10000] [--canaries 1000] [--canary-every 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp

from canary.config import GatewayConfig, from_mapping
from canary.credentials.gateway import GatewayCheck
from canary.credentials.values import CredentialFactory, new_canary
from canary.crypto import Keyring
from canary.logs import configure
from canary.runtime import close_runtime, open_runtime
from canary.store.embedded import PostgresServer, free_port
from canary.store.registry import location_key

KEYRING = Keyring(bytes(range(32)))
NGINX = "/usr/sbin/nginx"


def nginx_conf(prefix: Path, upstream: int, direct: int, checked: int, check: int) -> str:
    user = "user root;" if os.geteuid() == 0 else ""
    temp = " ".join(f"{kind}_temp_path {prefix / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    proxy = 'proxy_http_version 1.1; proxy_set_header Connection "";'
    return f"""
{user}
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    {temp}
    log_format canary_unchecked '$time_iso8601 $remote_addr "$request_method $request_uri" $status $request_id';
    upstream app {{ server 127.0.0.1:{upstream}; keepalive 32; }}
    upstream canary_check {{ server 127.0.0.1:{check}; keepalive 32; }}
    server {{ listen 127.0.0.1:{upstream}; location / {{ return 200 "upstream ok\\n"; }} }}
    server {{ listen 127.0.0.1:{direct}; location / {{ proxy_pass http://app; {proxy} }} }}
    server {{
        listen 127.0.0.1:{checked};
        location / {{
            auth_request /_canary_check;
            error_page 500 502 503 504 = @canary_unchecked;
            proxy_pass http://app; {proxy}
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
            {proxy}
            proxy_connect_timeout 100ms; proxy_send_timeout 250ms; proxy_read_timeout 250ms;
        }}
        location @canary_unchecked {{
            access_log {prefix}/canary_unchecked.log canary_unchecked;
            proxy_pass http://app; {proxy}
        }}
    }}
}}
"""


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p))]


def _row(name: str, values: list[float]) -> str:
    return f"  {name:<34} p50 {statistics.median(values) * 1e6:8.0f} µs   p99 {_pct(values, 0.99) * 1e6:8.0f} µs"


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"nginx did not start: {(proc.stderr.read() if proc.stderr else b'').decode()[:500]}")
        time.sleep(0.05)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--canaries", type=int, default=1000)
    ap.add_argument("--canary-every", type=int, default=100)
    args = ap.parse_args()
    configure("warning", "console")
    tmp = Path(tempfile.mkdtemp(prefix="canary-bench-gw-"))
    server = PostgresServer(tmp / "pg")
    await asyncio.to_thread(server.start)
    proc: subprocess.Popen[bytes] | None = None
    try:
        cfg = from_mapping({"canary": {"data_dir": str(tmp / "data")}, "control": {"dsn": server.dsn()}})
        rt = await open_runtime(cfg, keyring=KEYRING)
        factory = CredentialFactory(KEYRING)
        tokens = [factory.github_token() for _ in range(args.canaries)]
        async with rt.pool.acquire() as conn:
            await rt.registry.add(conn, [new_canary(t, "shop", "shop/public.api_tokens", location={"target": "public.api_tokens", "pk": i},
                                                    lookup=location_key("shop", "public.api_tokens", i)) for i, t in enumerate(tokens)], None)
        rt.pipeline.start()
        check_port, upstream, direct, checked = free_port(), free_port(), free_port(), free_port()
        gw = GatewayCheck(GatewayConfig(enabled=True, port=check_port, max_pending=100_000), node="bench")
        await gw.start(rt)
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp / kind).mkdir()
        (tmp / "logs").mkdir()
        (tmp / "nginx.conf").write_text(nginx_conf(tmp, upstream, direct, checked, check_port))
        proc = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        await asyncio.to_thread(_wait_port, checked, proc)

        def auth(i: int) -> str:
            if i % args.canary_every == 0:
                return f"Bearer {tokens[i // args.canary_every % len(tokens)].secret}"
            return f"Bearer ghp_{i:036d}"  # a real-looking token that is no canary

        alone: list[float] = []
        through: dict[str, list[float]] = {"without the check": [], "with auth_request": []}
        canaries_sent = 0
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4)) as http:
            for i in range(200):  # warm up connections on every path
                for port, path in ((check_port, "/gateway/check"), (direct, "/v1/x"), (checked, "/v1/x")):
                    async with http.get(f"http://127.0.0.1:{port}{path}", headers={"Authorization": "Bearer warm"}) as r:
                        await r.read()
            gw.timings.clear()
            for i in range(args.requests):
                headers = {"Authorization": auth(i), "X-Original-URI": f"/v1/orders/{i}", "X-Original-Method": "GET",
                           "X-Forwarded-For": "198.51.100.7", "X-Request-Id": f"alone-{i}", "User-Agent": "bench"}
                t0 = time.perf_counter()
                async with http.get(f"http://127.0.0.1:{check_port}/gateway/check", headers=headers) as r:
                    await r.read()
                alone.append(time.perf_counter() - t0)
                canaries_sent += i % args.canary_every == 0
            own = list(gw.timings)
            for i in range(args.requests):
                for name, port in (("without the check", direct), ("with auth_request", checked)):
                    t0 = time.perf_counter()
                    async with http.get(f"http://127.0.0.1:{port}/v1/orders/{i}", headers={"Authorization": auth(i)}) as r:
                        assert r.status == 200
                        await r.read()
                    through[name].append(time.perf_counter() - t0)
                canaries_sent += i % args.canary_every == 0
        await asyncio.wait_for(gw._queue.join(), 60)
        events = await rt.pool.fetchval("SELECT count(*) FROM events WHERE kind = 'used'")
        unchecked = tmp / "canary_unchecked.log"
        n_unchecked = len(unchecked.read_text().splitlines()) if unchecked.exists() else 0
        print(f"gateway check: {args.requests} sequential requests per measurement, {args.canaries} canary tokens in memory, "
              f"one canary per {args.canary_every} requests")
        print("(a) the check endpoint alone")
        print(_row("client -> check -> client", alone))
        print(_row("in process (request read -> answer)", own))
        print("(b) through NGINX (interleaved)")
        for name, values in through.items():
            print(_row(name, values))
        added50 = statistics.median(through["with auth_request"]) - statistics.median(through["without the check"])
        added99 = _pct(through["with auth_request"], 0.99) - _pct(through["without the check"], 0.99)
        print(f"  added by the check                 p50 {added50 * 1e6:8.0f} µs   p99 {added99 * 1e6:8.0f} µs")
        print(f"canary requests {canaries_sent}, USED events committed {events} ({'no loss' if events == canaries_sent else 'LOSS'}); "
              f"dropped {gw.dropped}; answered unchecked by NGINX {n_unchecked}")
        await gw.stop()
        await close_runtime(rt, grace=1)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
            if proc.stderr is not None:
                proc.stderr.close()
        await asyncio.to_thread(server.destroy)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
