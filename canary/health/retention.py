"""Housekeeping in the control store: samples of rejected input expire after
``listener.reject_retention``. Events, incidents and the outbox are evidence and are kept."""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from canary.plugins import SourceType
from canary.store import rejects
from canary.tasks import stop_task
from canary.typing import SourceContext

log = structlog.get_logger("canary.retention")


class Retention:
    name = "retention"
    cluster_singleton = True  # once per cluster: only the listener holding the leader lease runs it

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def routes(self) -> list[web.RouteDef]:
        return []

    async def start(self, runtime: SourceContext) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(runtime), name=self.name)

    async def stop(self) -> None:
        await stop_task(self._task, self._stopping)
        self._task = None

    async def _run(self, runtime: SourceContext) -> None:
        cfg = runtime.config.listener
        while not self._stopping.is_set():
            try:
                removed = await rejects.prune(runtime.pool, cfg.reject_retention)
                if removed:
                    log.info("retention.pruned", rejects=removed)
            except Exception as exc:  # noqa: BLE001 - housekeeping retries next interval
                log.warning("retention.failed", error=f"{type(exc).__name__}: {exc}")
            try:
                await asyncio.wait_for(self._stopping.wait(), cfg.retention_interval)
            except asyncio.TimeoutError:
                pass


SOURCE = SourceType("retention", lambda config: [Retention()])
