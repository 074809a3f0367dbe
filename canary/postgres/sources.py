"""The PostgreSQL family's registered sources, in start order: one line per source module, each exposing
``SOURCE`` (a :class:`canary.plugins.SourceType`). The kernel's registry loads this list by name."""

from __future__ import annotations

from canary.plugins import SourceType
from canary.postgres import firehose, http_ingest, jsonlog, pubsub, syslog

SOURCES: tuple[SourceType, ...] = (
    jsonlog.SOURCE,
    syslog.SOURCE,
    http_ingest.SOURCE,
    firehose.SOURCE,
    pubsub.SOURCE,
)
