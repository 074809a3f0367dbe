"""The listener application: health, metrics, signed webhook delivery, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from testkit import MakeConfig

from canary.crypto import Keyring
from canary.events import DetectionEvent, EventKind, event_key
from canary.listener import Listener
from canary.runtime import open_runtime
from canary.sinks.webhook import verify
from canary.store import ControlStore
from canary.store.embedded import free_port

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    got: list[tuple[dict[str, str], bytes]] = []

    async def page(request: web.Request) -> web.Response:
        got.append(({k.lower(): v for k, v in request.headers.items()}, await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", page)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/hook")), got
    await server.close()


async def test_health_metrics_and_signed_delivery(store: ControlStore, make_config: MakeConfig, keyring: Keyring,
                                                 receiver: tuple[str, list[tuple[dict[str, str], bytes]]]) -> None:
    """An event submitted to a running listener reaches the webhook sink signed per Standard Webhooks,
    /healthz reports the store in detail to loopback (only the status to a caller that says it forwards
    for someone), and /metrics counts the event (loopback only)."""
    url, got = receiver
    cfg = make_config(sinks=[{"name": "hook", "type": "webhook", "url": url, "secret": SECRET}])
    runtime = await open_runtime(cfg, keyring=keyring, store=store)
    listener = Listener(runtime, [])
    server = TestServer(listener.app(), host="127.0.0.1")
    await server.start_server()
    try:
        now = dt.datetime.now(dt.timezone.utc)
        await runtime.submit(DetectionEvent(kind=EventKind.READ, source="test", key=event_key("x"), group="g",
                                            canary_id=None, observed_at=now, actor={"user": "mallory"}))
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.05)
        headers, body = got[0]
        assert verify(SECRET, headers, body)
        assert not verify("whsec_" + base64.b64encode(b"x" * 32).decode(), headers, body)
        assert b'"canary.incident.trigger"' in body and b"mallory" in body
        async with aiohttp.ClientSession() as http:
            async with http.get(server.make_url("/healthz")) as resp:
                health = await resp.json()
                assert resp.status == 200 and health["control_store"] == "ok"
            async with http.get(server.make_url("/healthz"), headers={"X-Forwarded-For": "127.0.0.1"}) as resp:
                assert await resp.json() == {"status": "ok"}  # a forwarding stranger sees no detail
            async with http.get(server.make_url("/metrics")) as resp:
                text = await resp.text()
                assert resp.status == 200
                assert 'canary_events_total{kind="read",source="test"} 1.0' in text
                assert "canary_outbox_pending 0.0" in text
    finally:
        await server.close()


def test_sigterm_stops_the_listener_gracefully(control_dsn: str, data_dir: Path) -> None:
    """`canary listen` answers /healthz, and on SIGTERM stops intake, flushes and exits 0."""
    key_file = data_dir / "master.key"
    key_file.write_text(base64.b64encode(secrets.token_bytes(32)).decode())
    key_file.chmod(0o600)
    port = free_port()
    conf = data_dir / "canary.toml"
    conf.write_text(
        f'[canary]\ndata_dir = "{data_dir}"\nmaster_key_file = "{key_file}"\n'
        f'[control]\ndsn = "{control_dsn}"\n[listener]\nport = {port}\nshutdown_grace = "2s"\n'
    )
    proc = subprocess.Popen([sys.executable, "-m", "canary", "--config", str(conf), "listen"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        deadline = time.monotonic() + 90  # a loaded machine starts a Python process slowly
        status = None
        while time.monotonic() < deadline and status != 200:
            try:
                import urllib.request

                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as resp:
                    status = resp.status
            except OSError:
                time.sleep(0.1)
        assert status == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0
        text = out.decode()
        assert "listener.stopped" in text
        assert control_dsn.split("@")[0].split(":")[-1] not in text  # no DSN password in the logs
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_reject_flood_is_counted_but_sampled(store: ControlStore, make_config: MakeConfig, keyring: Keyring) -> None:
    """1,000 garbage inputs are all counted in /metrics, but only reject_samples_per_minute samples are
    stored, so a flood cannot fill the control store."""
    from canary.runtime import close_runtime

    runtime = await open_runtime(make_config(listener={"reject_samples_per_minute": 25}), keyring=keyring, store=store)
    try:
        for i in range(1000):
            await runtime.reject("jsonlog:x", "malformed_log_line", f"garbage {i}")
        await runtime.reject("jsonlog:x", "line_too_long", "other reason has its own budget")
        stored = await runtime.pool.fetch("SELECT reason, count(*) AS n FROM rejects GROUP BY reason ORDER BY reason")
        assert [(r["reason"], r["n"]) for r in stored] == [("line_too_long", 1), ("malformed_log_line", 25)]
        text = runtime.metrics.render().decode()
        assert 'canary_rejects_total{reason="malformed_log_line",source="jsonlog:x"} 1000.0' in text
    finally:
        await close_runtime(runtime, grace=1)


def test_reject_sampler_window_resets_and_reports_skips() -> None:
    """The sample budget renews each minute, and the number refused since the last sample is reported."""
    from canary.runtime import RejectSampler

    now = [0.0]
    sampler = RejectSampler(2, clock=lambda: now[0])
    key = ("s", "r")
    assert [sampler.admit(key) for _ in range(5)] == [True, True, False, False, False]
    now[0] = 61.0
    assert sampler.admit(key)
    assert sampler.take_skipped(key) == 3 and sampler.take_skipped(key) == 0


async def test_retention_prunes_old_reject_samples_only(store: ControlStore) -> None:
    """Reject samples older than the retention are deleted; recent ones and events are kept."""
    from canary.store.rejects import prune

    await store.pool.execute(
        "INSERT INTO rejects (source, reason, sample, received_at) VALUES"
        " ('s', 'old', 'x', now() - interval '8 days'), ('s', 'new', 'y', now() - interval '1 hour')")
    assert await prune(store.pool, 7 * 86400) == 1
    assert [r["reason"] for r in await store.pool.fetch("SELECT reason FROM rejects")] == ["new"]


async def test_shutdown_closes_sink_connections(store: ControlStore, make_config: MakeConfig, keyring: Keyring) -> None:
    """A syslog-over-TCP sink's connection is closed when the runtime shuts down, not left to the OS."""
    from canary.alerts import Alert, AlertAction
    from canary.events import Severity
    from canary.runtime import close_runtime

    got: list[bytes] = []
    closed = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            got.append(data)
        closed.set()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = make_config(sinks=[{"name": "siem", "type": "syslog", "transport": "tcp", "host": "127.0.0.1", "port": port}])
    runtime = await open_runtime(cfg, keyring=keyring, store=store)
    now = dt.datetime.now(dt.timezone.utc)
    alert = Alert(incident_id=1, dedup_key="canary-x", action=AlertAction.TRIGGER, kind=EventKind.READ,
                  severity=Severity.CRITICAL, title="t", summary="s", canary_count=1, event_count=1,
                  first_seen=now, last_seen=now)
    try:
        await runtime.sinks["siem"].send(alert)
    finally:
        await close_runtime(runtime, grace=1)
    await asyncio.wait_for(closed.wait(), 5)
    assert got and b"canary-x" in b"".join(got)
    server.close()
    await server.wait_closed()


async def test_dead_letter_is_paged_to_the_other_sinks(store: ControlStore, make_config: MakeConfig, keyring: Keyring) -> None:
    """When a notification to one sink is dead-lettered, the resulting health incident goes to every
    other sink, not back to the one that cannot deliver."""
    from canary.alerts import Alert, AlertAction
    from canary.errors import DeliveryError
    from canary.events import Severity
    from canary.outbox import report_dead_letters
    from canary.runtime import close_runtime

    cfg = make_config(sinks=[{"name": "pagerduty-down", "type": "stdout"}, {"name": "slack", "type": "stdout"}])
    runtime = await open_runtime(cfg, keyring=keyring, store=store)
    now = dt.datetime.now(dt.timezone.utc)
    alert = Alert(incident_id=7, dedup_key="canary-y", action=AlertAction.TRIGGER, kind=EventKind.READ,
                  severity=Severity.CRITICAL, title="t", summary="s", canary_count=1, event_count=1,
                  first_seen=now, last_seen=now)
    try:
        await report_dead_letters(runtime.submit)("pagerduty-down", alert, DeliveryError("pagerduty-down", "HTTP 503"))
        rows = await runtime.pool.fetch("SELECT o.sink, i.kind FROM outbox o JOIN incidents i ON i.id = o.incident_id")
        assert [(r["sink"], r["kind"]) for r in rows] == [("slack", "health")]
        assert await runtime.pool.fetchval("SELECT title FROM incidents") == "Canary alerts undeliverable to sink pagerduty-down"
    finally:
        await close_runtime(runtime, grace=1)


def test_titles_say_what_happened() -> None:
    """Incident titles read right for on-call: a read names who and where; an arrived heartbeat is not
    called a failure; a failed check names its problem and node."""
    from canary.alerts import incident_title

    now = dt.datetime.now(dt.timezone.utc)

    def ev(kind: EventKind, **kw: object) -> DetectionEvent:
        return DetectionEvent(kind=kind, source="t", key="k", group="g", canary_id=None, observed_at=now, **kw)  # type: ignore[arg-type]

    assert incident_title(ev(EventKind.READ, actor={"user": "mallory"}, origin={"client_addr": "10.0.0.9"})) == \
        "Canary data read by mallory from 10.0.0.9"
    assert incident_title(ev(EventKind.HEALTH, origin={"node": "shop"}, evidence={"signal": "heartbeat"})) == \
        "Canary log heartbeat received from shop"
    assert incident_title(ev(EventKind.HEALTH, origin={"node": "shop"}, evidence={"problem": "heartbeat_not_ingested"})) == \
        "Canary health check failed: heartbeat_not_ingested on shop"
    assert incident_title(ev(EventKind.TAMPER, origin={"node": "shop"}, evidence={"problem": "policy_missing"}, drill="d1")) == \
        "[DRILL] Canary detection tampered with: policy_missing on shop"
