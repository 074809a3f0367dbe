"""The credential family's registered sources, in start order: one line per source module, each exposing
``SOURCE`` (a :class:`canary.plugins.SourceType`). The kernel's registry loads this list by name."""

from __future__ import annotations

from canary.credentials import cloudtrail, cloudtrail_s3, gateway, pg_honeypot, token_honeypot
from canary.plugins import SourceType

SOURCES: tuple[SourceType, ...] = (
    token_honeypot.SOURCE,
    pg_honeypot.SOURCE,
    cloudtrail.SOURCE,
    cloudtrail_s3.SOURCE,
    gateway.SOURCE,
)
