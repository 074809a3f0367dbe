"""The contact family's registered sources, in start order: one line per source module, each exposing
``SOURCE`` (a :class:`canary.plugins.SourceType`). The kernel's registry loads this list by name."""

from __future__ import annotations

from canary.contact import mail_webhooks, phone, smtp
from canary.plugins import SourceType

SOURCES: tuple[SourceType, ...] = (
    smtp.SOURCE,
    mail_webhooks.SOURCE,
    phone.SOURCE,
)
