"""The PostgreSQL family's registered sources, in start order: one line per source module, each exposing
``SOURCE`` (a :class:`canary.plugins.SourceType`). The kernel's registry loads this list by name."""

from __future__ import annotations

from collections.abc import Sequence

from canary.config import Config
from canary.plugins import SourceType, build_components
from canary.postgres import http_ingest, jsonlog, syslog
from canary.typing import Component

SOURCES: tuple[SourceType, ...] = (
    jsonlog.SOURCE,
    syslog.SOURCE,
    http_ingest.SOURCE,
)


def components(config: Config) -> Sequence[Component]:
    """The components of this family that ``config`` asks for."""
    return build_components(SOURCES, config)
