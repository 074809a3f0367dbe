"""``canary demo``: the whole path on a fresh machine, measured.

One embedded PostgreSQL (jsonlog on) holds both the control database and a sample shop. The demo
seeds canaries with the real seeder, runs the real listener in-process (jsonlog tail -> pipeline ->
outbox -> a signed webhook to a local receiver that verifies the Standard Webhooks signature), then
plays an insider export as an ordinary role and reports, per incident, time-to-detect (statement
start -> incident committed) and time-to-page (statement start -> webhook received and verified).
Everything is removed afterwards; the master key is ephemeral and never written to disk.

``--keep`` leaves the listener running after the report with the console and API on
http://127.0.0.1:8088 (or a free port), alert links pointing at it, and prints an admin-scope API token made
for the demo (shown once; paste it into the sign-in page). Ctrl-C then retires the canaries and removes
everything as without ``--keep``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import secrets
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web

from canary.config import Config, from_mapping
from canary.crypto import Keyring, generate_key
from canary.drills.receiver import Receiver
from canary.drills.shop import create_shop
from canary.health.coverage_report import coverage_report, summary
from canary.listener import Listener
from canary.runtime import close_runtime, open_runtime
from canary.seeding.postgres import PostgresSeeder
from canary.store import ControlStore, api_tokens
from canary.store.embedded import PostgresServer

INSIDER_ROLE = "svc_reporting"
DEMO_MAIL_DOMAINS = [f"{name}.test" for name in (
    "hanmaeum-mail", "dasol-net", "bitnuri", "saeron-post", "gaon-inbox", "nuri-web", "mirae-mail", "haneul-net")]
DEMO_PHONES = [f"+1{area}55501{n:02d}" for area in (201, 202, 203, 205, 206, 207, 208, 209, 210, 212, 213, 214) for n in (10, 11)]
INSIDER_APP = "reporting-etl"
CONSOLE_PORT = 8088


@dataclass
class Step:
    name: str
    sql: str
    kind: str
    started: float = 0.0  # wall clock (time.time) when the statement was sent
    rows: int = 0
    incident: dict[str, Any] | None = None
    detected_s: float | None = None
    paged_s: float | None = None


def _print(*parts: object) -> None:
    print(*parts, flush=True)


async def run_demo(*, customers: int = 100_000, canaries: int = 20, slo: float = 1.0, keep: bool = False) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="canary-demo-"))
    server = PostgresServer(tmp / "pg", settings={"log_connections": True})
    t0 = time.perf_counter()
    _print(f"canary demo — data in {tmp}")
    try:
        await asyncio.to_thread(server.start)
        _print(f"  embedded PostgreSQL up on 127.0.0.1:{server.port} (jsonlog)        {time.perf_counter() - t0:5.1f}s")
        return await _run(server, tmp, customers=customers, canaries=canaries, slo=slo,
                          console_port=_free_port(CONSOLE_PORT) if keep else None)
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(tmp, ignore_errors=True)


def _free_port(preferred: int) -> int:
    """``preferred`` if nothing listens there on loopback, else a free port."""
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            got: int = probe.getsockname()[1]
            return got
    raise OSError("no free port on 127.0.0.1")


async def _run(server: PostgresServer, tmp: Path, *, customers: int, canaries: int, slo: float,
               console_port: int | None = None) -> int:
    admin = await asyncpg.connect(server.dsn())
    try:
        await admin.execute('CREATE DATABASE "canary"')
        await admin.execute('CREATE DATABASE "shop"')
        insider_pw = secrets.token_urlsafe(16)
        await admin.execute(f"CREATE ROLE {INSIDER_ROLE} LOGIN PASSWORD '{insider_pw}'")
    finally:
        await admin.close()
    webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    receiver = Receiver(webhook_secret)
    await receiver.start()
    cfg = from_mapping({
        "canary": {"data_dir": str(tmp), "node_name": "demo", "log_format": "console"},
        "control": {"dsn": server.dsn("canary")},
        "listener": {"jsonlog_poll": "50ms",
                     **({"public_url": f"http://127.0.0.1:{console_port}"} if console_port is not None else {})},
        "alerting": {"retry_initial": "200ms"},
        "datastores": [{
            "name": "shop", "dsn": server.dsn("shop"), "node": "shop-primary", "jsonlog_dir": str(server.log_dir),
            "locale": "ko_KR", "tables": [{"table": "public.customers", "count": canaries}],
        }],
        "sinks": [{"name": "oncall", "type": "webhook", "url": f"http://127.0.0.1:{receiver.port}/page", "secret": webhook_secret}],
        # contact points that would route back to canary (.test and 555-01xx numbers are reserved for examples)
        # spread over several domains and number blocks so they blend into the long tail
        "seeding": {"email_domains": DEMO_MAIL_DOMAINS, "phone_numbers": DEMO_PHONES},
    })
    keyring = Keyring(generate_key())
    shop = await asyncpg.connect(server.dsn("shop"))
    try:
        t = time.perf_counter()
        await create_shop(shop, customers)
        await shop.execute(f"GRANT SELECT ON customers, orders TO {INSIDER_ROLE}")
        before = await _checksum(shop)
        _print(f"  shop created: {customers:,} customers, {await shop.fetchval('SELECT count(*) FROM orders'):,} orders   {time.perf_counter() - t:5.1f}s")
    finally:
        await shop.close()

    store = ControlStore(cfg)
    await store.open()
    runtime = await open_runtime(cfg, keyring=keyring, store=store)
    listener = Listener(runtime)
    runner: web.AppRunner | None = None
    seeded = False
    try:
        t = time.perf_counter()
        result = await seed(cfg, runtime)
        seeded = True
        _print(f"  seeded {sum(result.added.values())} canary customers into shop/public.customers     {time.perf_counter() - t:5.1f}s")
        if console_port is None:
            await listener.start()
        else:  # the same listener, served over HTTP (its app's startup starts it)
            runner = web.AppRunner(listener.app(), handle_signals=False, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", console_port).start()
        steps = [
            Step("insider bulk read", "SELECT * FROM customers", "read"),
            Step("insider export", "COPY customers TO STDOUT", "exported"),
        ]
        insider = await asyncpg.connect(
            server.dsn("shop", user=INSIDER_ROLE, password=insider_pw), server_settings={"application_name": INSIDER_APP}
        )
        try:
            for step in steps:
                await _play(step, insider, runtime, receiver, slo)
        finally:
            await insider.close()
        ok = _report(steps, slo)
        doc = await coverage_report(cfg, runtime.pool)
        _print("\n  coverage of this deployment (canary coverage report):")
        for _, title, status in summary(doc):
            _print(f"    {status:<13} {title}")
        _print("")
        if console_port is not None:
            await _keep_serving(runtime, console_port)
        t = time.perf_counter()
        retired = await retire(cfg, runtime)
        async with _connect(server.dsn("shop")) as shop2:
            after = await _checksum(shop2)
        seeded = False
        identical = after == before
        _print(f"  retired {sum(retired.removed.values())} canaries; customers table identical to before seeding: "
               f"{'yes' if identical else 'NO'}   {time.perf_counter() - t:5.1f}s")
        if receiver.forged:
            _print(f"  {receiver.forged} webhook deliveries failed signature verification")
        return 0 if ok and identical and not receiver.forged else 1
    finally:
        if seeded:
            await retire(cfg, runtime)
        if runner is not None:
            await runner.cleanup()  # its shutdown stops the listener and closes the runtime
        else:
            await listener.stop() if listener._started else await _close(runtime)
        await receiver.stop()


async def _keep_serving(runtime: Any, port: int) -> None:
    """Print the console's address and a demo admin token (once), then wait for Ctrl-C / SIGTERM."""
    expires = await runtime.pool.fetchval("SELECT clock_timestamp()") + dt.timedelta(hours=12)
    _, token = await api_tokens.create(runtime.pool, "demo", ["admin"], expires, "demo")
    _print(f"  console:  http://127.0.0.1:{port}/incidents   (API: http://127.0.0.1:{port}/api/v1/openapi.json)")
    _print(f"  token:    {token}")
    _print("            admin scope, valid 12 hours, shown only now: paste it into the sign-in page")
    _print("  the listener keeps running (play more reads against the shop, acknowledge in the console); Ctrl-C ends the demo")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    _print("\n  stopping: retiring the canaries and removing the demo")


async def _close(runtime: Any) -> None:
    await close_runtime(runtime, grace=2)


class _connect:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    async def __aenter__(self) -> asyncpg.Connection:
        self.conn = await asyncpg.connect(self.dsn)
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        await self.conn.close()


async def _checksum(conn: asyncpg.Connection) -> str:
    return str(await conn.fetchval("SELECT md5(string_agg(c::text, ',' ORDER BY id)) FROM customers c"))


async def _play(step: Step, conn: asyncpg.Connection, runtime: Any, receiver: Receiver, slo: float) -> None:
    known = {r["id"] for r in await runtime.pool.fetch("SELECT id FROM incidents")}
    pages_before = len(receiver.received)
    step.started = time.time()
    if step.sql.startswith("COPY"):
        buf = io.BytesIO()
        await conn.copy_from_table("customers", output=buf)
        step.rows = buf.getvalue().count(b"\n")
    else:
        step.rows = len(await conn.fetch(step.sql))
    deadline = time.monotonic() + max(10.0, slo * 5)
    while time.monotonic() < deadline:
        row = await runtime.pool.fetchrow(
            "SELECT id, kind, title, created_at, cardinality(canary_ids) AS canaries, event_count, actor, origin, evidence"
            " FROM incidents WHERE kind = $1 AND NOT (id = ANY($2::bigint[])) ORDER BY id LIMIT 1",
            step.kind, list(known),
        )
        if row is not None:
            step.incident = dict(row)
            step.detected_s = row["created_at"].timestamp() - step.started
            break
        await asyncio.sleep(0.02)
    if step.incident is None:
        return
    while time.monotonic() < deadline:
        for when, alert in receiver.received[pages_before:]:
            if alert["incident_id"] == step.incident["id"]:
                step.paged_s = when - step.started
                return
        receiver.event.clear()
        try:
            await asyncio.wait_for(receiver.event.wait(), 0.2)
        except asyncio.TimeoutError:
            pass


def _report(steps: list[Step], slo: float) -> bool:
    ok = True
    _print("")
    _print(f"  {'step':<20} {'rows':>8}  {'incident':<9} {'canaries':>8}  {'detect':>8}  {'page':>8}  verdict")
    for s in steps:
        inc = s.incident
        detect = f"{s.detected_s * 1000:6.0f}ms" if s.detected_s is not None else "   —"
        page = f"{s.paged_s * 1000:6.0f}ms" if s.paged_s is not None else "   —"
        good = inc is not None and s.detected_s is not None and s.detected_s <= slo and s.paged_s is not None
        ok &= good
        _print(f"  {s.name:<20} {s.rows:>8,}  {('#' + str(inc['id'])) if inc else 'MISSED':<9} "
               f"{(inc['canaries'] if inc else 0):>8}  {detect:>8}  {page:>8}  {'ok' if good else 'FAILED'}")
    for s in steps:
        if s.incident:
            inc = s.incident
            _print(f"\n  #{inc['id']} {inc['title']}")
            _print(f"     who:   user={inc['actor'].get('user')} role={inc['actor'].get('role')} app={inc['actor'].get('application_name')}")
            _print(f"     where: client={inc['origin'].get('client_addr')} node={inc['origin'].get('node')} db={inc['origin'].get('database')} pid={inc['origin'].get('pid')}")
            _print(f"     what:  {inc['kind']}: {inc['canaries']} canaries in {inc['event_count']} events; query: {inc['evidence'].get('query')}")
    _print("")
    _print(f"  verdict: {'every step detected and paged within the ' + str(slo) + 's SLO' if ok else 'FAILED: an expected alert is missing or late'}")
    return ok


async def seed(cfg: Config, runtime: Any) -> Any:
    return await PostgresSeeder.from_config(cfg, "shop", runtime.registry, keyring=runtime.keyring).apply()


async def retire(cfg: Config, runtime: Any) -> Any:
    return await PostgresSeeder.from_config(cfg, "shop", runtime.registry, keyring=runtime.keyring).retire()
