"""The listener component that runs scheduled coverage jobs with apscheduler's AsyncIOScheduler:

* ``checks``: every datastore's canaries and detection objects (``coverage.check_interval``),
* ``heartbeat:<node>``: the dead man's switch per node with a DSN (``coverage.heartbeat_interval``,
  bound ``coverage.heartbeat_timeout``),
* ``webhooks``: our mail / phone webhook URLs reachable (``coverage.check_interval``),
* ``replication``: new slots, publications of canary tables, subscriptions, WAL senders and standbys
  whose log nobody ingests, per datastore (``coverage.check_interval``, :mod:`canary.health.replication`),
* ``filescan``: new export files in watched directories and buckets (``coverage.scan_interval``),
* ``sweep``: the copy sweep over every PostgreSQL datastore (``coverage.sweep_interval``, within
  ``coverage.sweep_max_seconds`` / ``sweep_max_bytes`` per datastore; see :mod:`canary.health.sweep`),
* ``trickle:<datastore>``: the trickle canaries that are due (``seeding.trickle_interval``; see
  :mod:`canary.seeding.trickle`); a slot that cannot be written is a HEALTH event and is retried.

Jobs never overlap themselves (``max_instances=1``, ``coalesce``) and a failing job is logged and
reported as a HEALTH event, never allowed to stop the scheduler. It runs in one listener of a cluster
(``cluster_singleton``: the holder of the leader lease). Its heartbeats may be ingested by any listener,
so :class:`HeartbeatRecognition`, which runs in every listener, installs the
:class:`canary.health.checks.SelfActivity` suppression rule that recognises them by their MAC.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import structlog
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from canary import plugins
from canary.config import Config
from canary.errors import CanaryError
from canary.events import DetectionEvent, EventKind, Severity, event_key
from canary.health import checks, replication
from canary.health.filescan import ExportScanner
from canary.health.sweep import CopySweep
from canary.plugins import SourceType
from canary.seeder import Trickling
from canary.typing import Component, SourceContext

log = structlog.get_logger("canary.scheduler")

Job = Callable[[], Awaitable[list[DetectionEvent]]]


class CoverageScheduler:
    """Component ``scheduler``: runs the coverage jobs and submits what they find."""

    name = "scheduler"
    cluster_singleton = True  # once per cluster: only the listener holding the leader lease runs it

    def __init__(self, *, extra_jobs: Sequence[tuple[str, float, Job]] = ()) -> None:
        self.activity: checks.SelfActivity  # set by start() (it needs the runtime's keyring)
        self.extra_jobs = list(extra_jobs)
        self.runtime: SourceContext  # set by start()
        self._scheduler: AsyncIOScheduler | None = None
        self.runs: dict[str, int] = {}

    def routes(self) -> list[web.RouteDef]:
        return []

    def jobs(self) -> list[tuple[str, float, Job]]:
        rt = self.runtime
        cov = rt.config.coverage
        out: list[tuple[str, float, Job]] = []
        if cov.checks and rt.config.datastores:
            out.append(("checks", cov.check_interval, self._all_canaries))
        if cov.checks:
            for node, datastore, dsn in self._heartbeat_nodes():
                out.append((f"heartbeat:{node}", cov.heartbeat_interval, self._heartbeat_job(node, datastore, dsn)))
        if cov.checks and rt.config.datastores:
            out.append(("replication", cov.check_interval, self._replication))
        if cov.checks and cov.webhook_urls:
            out.append(("webhooks", cov.check_interval, self._webhooks))
        if cov.watch_dirs or cov.buckets:
            scanner = ExportScanner.from_config(rt)
            out.append(("filescan", cov.scan_interval, scanner.scan_once))
        if cov.sweep and any(ds.kind == "postgres" for ds in rt.config.datastores):
            out.append(("sweep", cov.sweep_interval, self._sweep_job(CopySweep(rt))))
        for ds in rt.config.datastores:
            if any(t.mode == "trickle" for t in ds.tables):
                out.append((f"trickle:{ds.name}", rt.config.seeding.trickle_interval, self._trickle_job(ds.name)))
        return out + self.extra_jobs

    def _trickle_job(self, name: str) -> Job:
        async def job() -> list[DetectionEvent]:
            ds = self.runtime.config.datastore(name)
            seeder = plugins.configured_seeder(self.runtime.config, ds, self.runtime.registry)
            if not isinstance(seeder, Trickling):
                return []
            result = await seeder.trickle()
            now = dt.datetime.now(dt.timezone.utc)
            return [DetectionEvent(
                kind=EventKind.HEALTH, source="checks", key=event_key("trickle-failed", name, target, now.isoformat()),
                group=f"trickle-failed:{name}:{target}", canary_id=None, observed_at=now, severity=Severity.WARNING,
                origin={"node": ds.node_name, "datastore": name},
                evidence={"problem": "trickle_failed", "target": target, "error": why[:300]},
            ) for target, why in result.failed.items()]
        return job

    @staticmethod
    def _sweep_job(sweep: CopySweep) -> Job:
        async def job() -> list[DetectionEvent]:
            await sweep.sweep_once()  # commits each hit itself, before saving the position that covers it
            return []
        return job

    def _heartbeat_nodes(self) -> list[tuple[str, str, str]]:
        cfg = self.runtime.config
        nodes = [(ds.node_name, ds.name, ds.dsn.reveal()) for ds in cfg.datastores if ds.jsonlog_dir is not None]
        nodes += [(n.name, n.datastore, n.dsn.reveal()) for n in cfg.coverage.nodes if n.dsn is not None]
        return nodes

    def _heartbeat_job(self, node: str, datastore: str, dsn: str) -> Job:
        async def job() -> list[DetectionEvent]:
            return await checks.check_heartbeat(self.runtime, self.activity, node, datastore, dsn,
                                                self.runtime.config.coverage.heartbeat_timeout)
        return job

    async def _all_canaries(self) -> list[DetectionEvent]:
        cov = self.runtime.config.coverage
        out: list[DetectionEvent] = []
        for ds in self.runtime.config.datastores:
            out += await checks.check_canaries(self.runtime, ds, cov.pgaudit_role,
                                               timeout=max(cov.check_interval * 4, 30.0))
        return out

    async def _replication(self) -> list[DetectionEvent]:
        out: list[DetectionEvent] = []
        timeout = max(self.runtime.config.coverage.check_interval, 30.0)
        for ds in self.runtime.config.datastores:
            try:
                out += await replication.watch(self.runtime.config, self.runtime.pool, ds, timeout=timeout)
            except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                now = dt.datetime.now(dt.timezone.utc)
                out.append(DetectionEvent(
                    kind=EventKind.HEALTH, source="replication", key=event_key("replication-watch", ds.name, now.isoformat()),
                    group=f"replication-watch:{ds.name}", canary_id=None, observed_at=now, severity=Severity.ERROR,
                    origin={"node": ds.node_name, "datastore": ds.name},
                    evidence={"problem": "replication_watch_failed", "error": type(exc).__name__}))
        return out

    async def _webhooks(self) -> list[DetectionEvent]:
        cov = self.runtime.config.coverage
        results = await asyncio.gather(*(checks.check_webhook(self.runtime.http, u, cov.webhook_timeout) for u in cov.webhook_urls))
        return [e for r in results for e in r]

    async def _run(self, name: str, job: Job) -> None:
        """One job run: submit its events; a failure becomes a HEALTH event (and is logged)."""
        self.runs[name] = self.runs.get(name, 0) + 1
        try:
            events = await job()
        except (CanaryError, OSError, asyncio.TimeoutError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.error("scheduler.job_failed", job=name, error=f"{type(exc).__name__}: {exc}")
            now = dt.datetime.now(dt.timezone.utc)
            events = [DetectionEvent(
                kind=EventKind.HEALTH, source="checks", key=event_key("job-failed", name, now.isoformat()),
                group=f"job-failed:{name}", canary_id=None, observed_at=now, severity=Severity.ERROR,
                evidence={"job": name, "error": f"{type(exc).__name__}: {str(exc)[:300]}"},
            )]
        if events:
            log.warning("scheduler.findings", job=name, events=len(events), kinds=sorted({str(e.kind) for e in events}))
            await self.runtime.submit_many(events)

    async def start(self, runtime: SourceContext) -> None:
        self.runtime = runtime
        self.activity = checks.SelfActivity(runtime.keyring)
        sched = AsyncIOScheduler(event_loop=asyncio.get_running_loop(), timezone=dt.timezone.utc)
        now = dt.datetime.now(dt.timezone.utc)
        for name, interval, job in self.jobs():
            sched.add_job(self._run, IntervalTrigger(seconds=interval, timezone=dt.timezone.utc), args=(name, job),
                          id=name, name=name, max_instances=1, coalesce=True, next_run_time=now,
                          misfire_grace_time=max(1, int(interval)))
        sched.start()
        self._scheduler = sched

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None


class HeartbeatRecognition:
    """Component ``heartbeat-rule`` (every listener): suppresses (records, never drops) the heartbeats
    canary issued, whichever listener of the cluster ingests them."""

    name = "heartbeat-rule"

    def __init__(self) -> None:
        self.rule: checks.SelfActivity | None = None
        self.runtime: SourceContext | None = None

    def routes(self) -> list[web.RouteDef]:
        return []

    async def start(self, runtime: SourceContext) -> None:
        self.runtime, self.rule = runtime, checks.SelfActivity(runtime.keyring)
        runtime.add_suppress(self.rule)

    async def stop(self) -> None:
        if self.runtime is not None and self.rule is not None:
            self.runtime.remove_suppress(self.rule)


def scheduler_components(config: Config) -> list[Component]:
    cov = config.coverage
    trickles = any(t.mode == "trickle" for ds in config.datastores for t in ds.tables)
    if not (cov.checks or cov.watch_dirs or cov.buckets or cov.sweep or trickles):
        return []
    return [HeartbeatRecognition(), CoverageScheduler()] if cov.checks else [CoverageScheduler()]


SOURCE = SourceType("scheduler", scheduler_components)
