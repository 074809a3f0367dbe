"""Writes each alert as one structlog JSON line (event ``alert``) to standard output."""

from __future__ import annotations

import builtins
from typing import Any, ClassVar

import aiohttp
import structlog
from pydantic import BaseModel, ConfigDict

from canary.alerts import Alert


class Options(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StdoutSink:
    type: ClassVar[str] = "stdout"
    Options: ClassVar[builtins.type[BaseModel]] = Options

    def __init__(self, name: str, options: Any, http: aiohttp.ClientSession) -> None:
        self.name = name
        self._log = structlog.get_logger("canary.alert").bind(sink=name)

    async def send(self, alert: Alert) -> None:
        self._log.warning("alert", **alert.to_json())


SINK = StdoutSink
