"""The listener: one aiohttp application hosting every detection component, the pipeline and the
outbox dispatcher, with ``/healthz`` and ``/metrics``.

Lifecycle (arq-style): startup opens shared resources, starts the pipeline and dispatcher, then each
component. SIGTERM/SIGINT stop intake first (components), flush the pipeline (every accepted event is
committed), give the dispatcher a bounded grace, then close the store.

Scale-out: several listener processes (same configuration, each its own port) may share one control
store; a log shipper can send to any of them. What every process may do alone is safe to repeat (the
pipeline dedupes events by key and locks each incident group, the dispatchers claim outbox rows with
``SKIP LOCKED``). A component that must run once per cluster declares ``cluster_singleton = True``
(the scheduled checks and heartbeat, retention): it is started only in the listener holding the
``leader`` lease in the control store (:mod:`canary.store.leases`), and stopped there as soon as the
lease cannot be renewed, before another listener can take it over. It must be restartable.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import os
import secrets
import signal
import socket
import time
from collections.abc import Sequence

import structlog
from aiohttp import web

from canary import plugins
from canary.conncap import CappedSite, PeerConnections
from canary.events import DetectionEvent, EventKind, Severity, event_key
from canary.feed import EventFeed
from canary.outbox import report_dead_letters
from canary.pressure import PRESSURE_QUIET, BackgroundReporter, PressureWatch
from canary.proxies import TrustedProxies, networks
from canary.runtime import Runtime, close_runtime
from canary.store import leases
from canary.tasks import stop_task
from canary.typing import Component, Lagging, SourceLag

log = structlog.get_logger("canary.listener")

RUNTIME_KEY = web.AppKey("runtime", Runtime)
#: The lease whose holder runs the cluster-singleton components.
LEADER_LEASE = "leader"


def cluster_singleton(component: Component) -> bool:
    """Whether ``component`` runs once per cluster (in the leader) rather than in every listener."""
    return getattr(component, "cluster_singleton", False) is True


def default_components(runtime: Runtime) -> list[Component]:
    """The components the configuration asks for, in start order: every registered source type
    (:func:`canary.plugins.source_types`) builds its own from the configuration."""
    return plugins.build_components(plugins.source_types().values(), runtime.config)


class Listener:
    def __init__(self, runtime: Runtime, components: Sequence[Component] | None = None) -> None:
        self.runtime = runtime
        self.components = list(default_components(runtime) if components is None else components)
        names = [c.name for c in self.components]
        if len(names) != len(set(names)):
            raise ValueError(f"duplicate component names: {names}")
        self._started: list[Component] = []
        self._stalled: dict[str, float] = {}  # component -> monotonic time its stall was reported
        self._watch: asyncio.Task[None] | None = None
        self._watch_stop = asyncio.Event()
        self.holder = f"{socket.gethostname()[:64]}:{os.getpid()}:{secrets.token_hex(4)}"
        self.feed: EventFeed | None = None  # SIEM sinks' event feed, while running
        self.leader = False
        self._lead: asyncio.Task[None] | None = None
        self._lead_stop = asyncio.Event()
        conf = runtime.config.listener
        self.proxies = TrustedProxies.from_config(conf)
        self._metrics_nets = networks(conf.metrics_allow)
        self._health_nets = networks(conf.health_detail_allow)
        self.reporter = BackgroundReporter(runtime, "listener")  # pressure events of the HTTP port

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        app[RUNTIME_KEY] = self.runtime
        app[LISTENER_KEY] = self  # the API's health route reads the detail /healthz gives allowed callers
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        for comp in self.components:
            app.router.add_routes(comp.routes())
        app.on_startup.append(self._startup)
        app.on_shutdown.append(self._shutdown)
        return app

    async def _startup(self, app: web.Application) -> None:
        await self.start()

    async def _shutdown(self, app: web.Application) -> None:
        await self.stop()

    async def start(self) -> None:
        rt = self.runtime
        rt.pipeline.start()
        rt.dispatcher.on_dead = report_dead_letters(rt.submit)
        await rt.dispatcher.start()
        self.feed = EventFeed(rt.pool, rt.sinks, rt.config.alerting, holder=self.holder, submit=rt.submit,
                              metrics=rt.metrics, enricher=rt.enricher)
        await self.feed.start()
        for comp in self.components:
            if not cluster_singleton(comp):
                await self._start_component(comp)
        self._watch_stop.clear()
        self._watch = asyncio.create_task(self._watch_lag(), name="lag-watch")
        if any(cluster_singleton(c) for c in self.components):
            self._lead_stop.clear()
            self._lead = asyncio.create_task(self._leadership(), name="leader-lease")

    async def stop(self) -> None:
        rt = self.runtime
        await stop_task(self._lead, self._lead_stop)
        self._lead = None
        await stop_task(self._watch, self._watch_stop)
        self._watch = None
        for comp in reversed(self._started):
            await self._stop_component(comp)
        self._started.clear()
        if self.feed is not None:
            await self.feed.stop(grace=rt.config.listener.shutdown_grace)
            self.feed = None
        if self.leader:
            self.leader = False
            try:
                await asyncio.wait_for(leases.release(rt.pool, LEADER_LEASE, self.holder), 5.0)
            except Exception as exc:  # noqa: BLE001 - shutting down: the lease expires by itself
                log.warning("leader.release_failed", error=type(exc).__name__)
        await self.reporter.drain(timeout=rt.config.listener.shutdown_grace)
        await close_runtime(rt)

    async def _start_component(self, comp: Component) -> None:
        await comp.start(self.runtime)
        self._started.append(comp)
        self.runtime.metrics.up.labels(component=comp.name).set(1)
        log.info("component.started", component=comp.name)

    async def _stop_component(self, comp: Component) -> None:
        try:
            await asyncio.wait_for(comp.stop(), self.runtime.config.listener.shutdown_grace)
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - keep stopping the rest
            log.exception("component.stop_failed", component=comp.name)
        self.runtime.metrics.up.labels(component=comp.name).set(0)

    # -- leadership -------------------------------------------------------------------------------
    async def _leadership(self) -> None:
        """Take or renew the leader lease every third of ``listener.leader_lease``; start the
        cluster-singleton components on taking it, stop them on losing it. A renewal that fails (the
        store is unreachable) counts as held only while the last successful one lasts, less one
        period: the singletons stop before any other listener can take the lease over."""
        ttl = self.runtime.config.listener.leader_lease
        period = ttl / 3
        held_until = 0.0  # monotonic time the last successful renewal lasts to
        while not self._lead_stop.is_set():
            asked = time.monotonic()
            try:
                held = await asyncio.wait_for(leases.acquire(self.runtime.pool, LEADER_LEASE, self.holder, ttl), period)
                if held:
                    held_until = asked + ttl
            except Exception as exc:  # noqa: BLE001 - the store may be down: decide by the last renewal
                log.warning("leader.renew_failed", error=type(exc).__name__)
                held = self.leader and time.monotonic() + period < held_until
            try:
                if held:
                    await self._lead_start()  # also what failed to start last time
                elif not held and self.leader:
                    await self._lead_end()
            except Exception:  # noqa: BLE001 - retried at the next period
                log.exception("leader.transition_failed")
            try:
                await asyncio.wait_for(self._lead_stop.wait(), period)
            except asyncio.TimeoutError:
                pass

    async def _lead_start(self) -> None:
        if not self.leader:
            self.leader = True
            self.runtime.metrics.leader.set(1)
            log.info("leader.acquired", holder=self.holder)
        for comp in self.components:
            if cluster_singleton(comp) and comp not in self._started:
                await self._start_component(comp)

    async def _lead_end(self) -> None:
        self.leader = False
        self.runtime.metrics.leader.set(0)
        log.warning("leader.lost", holder=self.holder)
        for comp in [c for c in reversed(self._started) if cluster_singleton(c)]:
            await self._stop_component(comp)
            self._started.remove(comp)

    # -- lag ------------------------------------------------------------------------------------
    def lags(self) -> dict[str, SourceLag]:
        """The lag of every started source that reads an input which can run ahead of it."""
        out: dict[str, SourceLag] = {}
        for comp in self._started:
            if isinstance(comp, Lagging):
                try:
                    out[comp.name] = comp.lag()
                except Exception:  # noqa: BLE001 - a lag that cannot be measured is reported as unknown
                    log.exception("source.lag_failed", component=comp.name)
        return out

    def stalled(self, lags: dict[str, SourceLag] | None = None) -> list[str]:
        limit = self.runtime.config.listener.stall_after
        return sorted(name for name, lag in (lags if lags is not None else self.lags()).items() if lag.behind_seconds >= limit)

    async def check_lag(self) -> list[str]:
        """Update the lag gauges and raise one HEALTH event per stall of a source (a stall ends when the
        source catches up). Returns the sources that are stalled now."""
        rt = self.runtime
        lags = self.lags()
        for name, lag in lags.items():
            rt.metrics.source_behind_bytes.labels(source=name).set(lag.behind_bytes)
            rt.metrics.source_behind_seconds.labels(source=name).set(lag.behind_seconds)
            if lag.behind_bytes == 0:
                self._stalled.pop(name, None)
        stalled = self.stalled(lags)
        for name in stalled:
            if name in self._stalled:
                continue
            lag = lags[name]
            now = dt.datetime.now(dt.timezone.utc)
            since = now - dt.timedelta(seconds=lag.behind_seconds)
            event = DetectionEvent(
                kind=EventKind.HEALTH, source=name, key=event_key("stalled", name, since.isoformat(timespec="seconds")),
                group=f"stalled:{name}", canary_id=None, observed_at=now, severity=Severity.ERROR,
                evidence={"problem": "source stopped advancing", "behind_bytes": lag.behind_bytes,
                          "behind_seconds": round(lag.behind_seconds, 1)},
            )
            try:
                await rt.submit(event)
            except Exception:  # noqa: BLE001 - reported again at the next check
                log.exception("source.stall_event_failed", component=name)
                continue
            log.error("source.stalled", component=name, behind_bytes=lag.behind_bytes, behind_seconds=round(lag.behind_seconds, 1))
            self._stalled[name] = time.monotonic()
        return stalled

    async def _watch_lag(self) -> None:
        interval = self.runtime.config.listener.watch_interval
        while not self._watch_stop.is_set():
            try:
                await self.check_lag()
            except Exception:  # noqa: BLE001 - the watch must outlive any one failure
                log.exception("source.lag_watch_failed")
            try:
                await asyncio.wait_for(self._watch_stop.wait(), interval)
            except asyncio.TimeoutError:
                pass

    def _health_detail_allowed(self, request: web.Request) -> bool:
        """Whether this caller may see /healthz in detail: from ``listener.health_detail_allow`` (through
        trusted proxies only), or presenting ``listener.health_token`` (compared in constant time)."""
        if self.proxies.allowed(request, self._health_nets):
            return True
        token = self.runtime.config.listener.health_token
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if not token or scheme.lower() != "bearer" or not presented.strip():
            return False
        # digests of equal length: the comparison takes the same time whatever the token's length
        digest = hashlib.sha256(presented.strip().encode("utf-8", "surrogateescape")).digest()
        return hmac.compare_digest(digest, hashlib.sha256(token.reveal().encode()).digest())

    async def health(self) -> tuple[bool, dict[str, object]]:
        """(healthy, the detail): control store, components, lag, stalls, leadership, pipeline counts. For
        allowed callers of /healthz and the API's health route only."""
        rt = self.runtime
        try:
            await rt.pool.fetchval("SELECT 1", timeout=2)
            db = "ok"
        except Exception as exc:  # noqa: BLE001 - health reports, never raises
            db = f"error: {type(exc).__name__}"
        lags = self.lags()
        stalled = self.stalled(lags)
        healthy = db == "ok" and not stalled
        return healthy, {
            "status": "ok" if healthy else "degraded",
            "control_store": db,
            "components": {c.name: c in self._started for c in self.components},
            "lag": {name: {"behind_bytes": lag.behind_bytes, "behind_seconds": round(lag.behind_seconds, 1)}
                    for name, lag in lags.items()},
            "stalled": stalled,
            "leader": self.leader,
            "pipeline": {"recorded": rt.pipeline.stats.recorded, "duplicates": rt.pipeline.stats.duplicates},
        }

    async def _healthz(self, request: web.Request) -> web.Response:
        """Overall status for anyone (200 ok / 503 degraded, nothing else: component names and ports
        would tell a caller which services are traps); the detail for allowed callers only."""
        healthy, detail = await self.health()
        status = 200 if healthy else 503
        if not self._health_detail_allowed(request):
            if "Authorization" in request.headers:
                await self.runtime.reject("listener", "bad_health_token", f"peer={self.proxies.client(request)}")
            return web.json_response({"status": detail["status"]}, status=status, headers={"Cache-Control": "no-store"})
        return web.json_response(detail, status=status, headers={"Cache-Control": "no-store"})

    async def _metrics(self, request: web.Request) -> web.Response:
        """Prometheus metrics, for clients in ``listener.metrics_allow`` (through trusted proxies only)."""
        if not self.proxies.allowed(request, self._metrics_nets):
            return web.Response(status=403, text="forbidden\n")
        rt = self.runtime
        try:
            row = await rt.pool.fetchrow(
                "SELECT count(*) FILTER (WHERE status='pending') AS p, count(*) FILTER (WHERE status='dead') AS d FROM outbox",
                timeout=2,
            )
            rt.metrics.outbox_pending.set(row["p"])
            rt.metrics.outbox_dead.set(row["d"])
        except Exception:  # noqa: BLE001 - stale gauges are better than no metrics
            pass
        return web.Response(body=rt.metrics.render(), headers={"Content-Type": rt.metrics.content_type})


#: the listener serving an app (set in :meth:`Listener.app`)
LISTENER_KEY = web.AppKey("listener", Listener)


def connection_cap(listener: Listener, where: str = "") -> PeerConnections:
    """The per-peer connection cap of ``listener``'s HTTP port (``listener.max_connections_per_peer``;
    trusted proxies exempt); each refusal is counted and sampled, and an episode of refusals raises one
    HEALTH event (webhooks, ingest and the API may be going unheard)."""
    rt = listener.runtime
    conf = rt.config.listener
    tasks: set[asyncio.Task[None]] = set()
    pressure = PressureWatch(listener.reporter, "listener", where, quiet=PRESSURE_QUIET, family="listener")

    def refused(peer: str) -> None:
        rt.metrics.connections_refused.inc()
        pressure.note("refused_peer_cap", peer)
        if len(tasks) < 16:  # samples are best effort; a flood must not become a flood of tasks
            task = asyncio.get_running_loop().create_task(rt.reject("listener", "connection_cap", f"peer={peer}"))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    return PeerConnections(conf.max_connections_per_peer, networks(conf.trusted_proxies), refused)


async def serve(listener: Listener, host: str, port: int, *, ready: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully."""
    app = listener.app()
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = CappedSite(runner, host, port, connection_cap(listener, f"{host}:{port}"))
    await site.start()
    log.info("listener.started", host=host, port=port, components=[c.name for c in listener.components])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        log.info("listener.stopping")
        await runner.cleanup()
        log.info("listener.stopped")
