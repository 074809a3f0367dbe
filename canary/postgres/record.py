"""What every PostgreSQL log-record handler shares: the record's context, the :class:`Detection` a
handler returns, and the helpers for timestamps, drill tags, exports and read grouping."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from canary.events import EventKind, Severity
from canary.postgres.protocol import DRILL_APP_PREFIX

#: Longest statement text kept in an event's evidence.
MAX_QUERY = 2000
_COPY = re.compile(r"^\s*(?:(?:--[^\n]*\n)|(?:/\*.*?\*/)|\s)*copy\b", re.I | re.S)


@dataclass(frozen=True, slots=True)
class RecordContext:
    datastore: str
    node: str
    source: str


@dataclass(slots=True)
class Detection:
    """What a handler found; the processor turns it into a DetectionEvent."""

    kind: EventKind
    key: str
    group: str
    observed_at: dt.datetime
    lookup: str | None = None  # registry location key, resolved to canary_id in batch
    canary_id: int | None = None
    actor: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    severity: Severity = Severity.CRITICAL
    drill: str | None = None
    require_canary: bool = True
    #: (value kind, value) pairs resolved in batch by blind index (e.g. ("pg_role", user)); the first
    #: active match names the canary, and a detection none of whose values match is dropped silently
    values: tuple[tuple[str, str], ...] = ()


#: A record handler: returns a Detection, or None when the record is not its concern.
RecordHandler = Callable[[Mapping[str, Any], RecordContext], Detection | None]


def parse_pg_timestamp(value: object) -> dt.datetime:
    """jsonlog timestamps look like ``2026-11-23 15:24:13.620 UTC``."""
    if not isinstance(value, str) or not value:
        raise ValueError("missing timestamp")
    text = value.strip()
    tz = dt.timezone.utc
    if text.endswith(" UTC"):
        text = text[:-4]
    elif " " in text and text.rsplit(" ", 1)[1].isalpha():
        text = text.rsplit(" ", 1)[0]  # other zone abbreviations: treat as UTC, noted in evidence
    parsed = dt.datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def drill_tag(application_name: object) -> str | None:
    if isinstance(application_name, str) and application_name.startswith(DRILL_APP_PREFIX):
        return application_name[len(DRILL_APP_PREFIX):][:64] or None
    return None


def is_export(query: str) -> bool:
    return bool(_COPY.match(query or ""))


def read_group(node: str, datastore: str, role: object, kind: EventKind) -> str:
    """The incident group of reads: one role reading one datastore's canaries on one node, whatever
    connection, statement or parallel worker it uses. A scraper that opens a connection per page, or a
    pool of ten, is one incident that escalates with the canaries it collects, not a page per
    connection. (Each handler that reports reads of tables uses this, so signals of one read merge.)"""
    return f"pg:{node}:{datastore}:{role or ''}:{kind}"
