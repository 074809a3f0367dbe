"""A local on-call endpoint for self-contained runs (``canary demo``, demo-deployment drills): it
receives canary's signed webhook pages and verifies every delivery's Standard Webhooks signature."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from canary.sinks.webhook import verify
from canary.store.embedded import free_port


class Receiver:
    """Collects ``(wall-clock receipt time, alert payload)`` of every verified page; counts forgeries."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.forged = 0
        self.event = asyncio.Event()
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/page"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/page", self._page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def received_for(self, incident_ids: set[int]) -> list[tuple[float, dict[str, Any]]]:
        return [(when, alert) for when, alert in self.received if alert.get("incident_id") in incident_ids]

    async def _page(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(self.secret, {k.lower(): v for k, v in request.headers.items()}, body):
            self.forged += 1
            return web.Response(status=401)
        self.received.append((time.time(), json.loads(body)["data"]))
        self.event.set()
        return web.Response(status=204)
