"""The one event type that flows from detection sources to the router.

A :class:`DetectionEvent` is immutable. ``key`` makes ingestion idempotent: the same signal seen twice
(two listeners tailing one log, a push path and a log path, a replay after a crash) has the same key
and is stored once. ``group`` names the incident-grouping unit chosen by the source (one query, one
sender, one session); the router combines it with a time window.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

#: Longest string kept in an event's facts; depth beyond which nested evidence is summarised.
MAX_TEXT = 16 * 1024
MAX_DEPTH = 8
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class EventKind(enum.StrEnum):
    """What happened to a canary."""

    READ = "read"  # a query returned a canary
    EXPORTED = "exported"  # COPY, dump, or a file holding canary values
    CONTACTED = "contacted"  # an e-mail, SMS or call reached a canary address or number
    USED = "used"  # a canary credential was presented
    TAMPER = "tamper"  # canary's own detection or rows were altered or removed
    HEALTH = "health"  # liveness / dead man's switch / delivery dead-letter


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2, Severity.CRITICAL: 3}


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


#: the range event times are kept in (clamped): wide enough for any time a source believes, narrow
#: enough that a window of days around it never overflows a datetime
EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.timezone.utc)
LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.timezone.utc)


def plausible_time(when: dt.datetime) -> dt.datetime:
    """``when`` with a time zone (UTC for a naive one), clamped to [EARLIEST, LATEST]."""
    if when.tzinfo is None or when.utcoffset() is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    try:
        return min(max(when, EARLIEST), LATEST)
    except OverflowError:  # comparing an aware time whose UTC value is outside datetime's range
        return EARLIEST if when.year < 1900 else LATEST


@dataclasses.dataclass(frozen=True, slots=True)
class DetectionEvent:
    """One detection: what happened to which canary, who did it, from where, when, and the evidence.

    ``canary_id`` is the registry id (``None`` for events that are not about one canary, e.g. a
    dead man's switch). ``actor`` holds who (role, session user, e-mail sender, caller number);
    ``origin`` holds where (client address, node, application name, user agent). ``evidence`` holds
    the raw facts (query text, headers, message ids) and must never contain canary's own secrets.
    """

    kind: EventKind
    source: str
    key: str
    group: str
    canary_id: int | None
    observed_at: dt.datetime
    actor: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    origin: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    evidence: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    severity: Severity = Severity.CRITICAL
    detected_at: dt.datetime = dataclasses.field(default_factory=_utcnow)
    drill: str | None = None

    def __post_init__(self) -> None:
        # What sources put here comes from hostile input: keep it storable (jsonb refuses NUL and
        # lone surrogates, text refuses NUL), bounded and plain JSON, so one event cannot fail a batch.
        for name in ("source", "key", "group"):
            object.__setattr__(self, name, storable_text(getattr(self, name)))
        if self.drill is not None:
            object.__setattr__(self, "drill", storable_text(self.drill))
        for name in ("actor", "origin", "evidence"):
            object.__setattr__(self, name, storable(getattr(self, name)))
        # a time an input claimed is kept, but inside the range where the pipeline's windows (and
        # PostgreSQL) can count around it: year 1 or 9999 would overflow a window and fail the batch
        object.__setattr__(self, "observed_at", plausible_time(self.observed_at))

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "source": self.source,
            "key": self.key,
            "group": self.group,
            "canary_id": self.canary_id,
            "observed_at": self.observed_at.isoformat(),
            "detected_at": self.detected_at.isoformat(),
            "actor": dict(self.actor),
            "origin": dict(self.origin),
            "evidence": dict(self.evidence),
            "severity": str(self.severity),
            "drill": self.drill,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class StoredEvent:
    """A committed event as the event feed (``canary/feed.py``) hands it to sinks that take every
    event (SIEMs): the store's id (stable: the receiver's idempotency key), the incident it joined,
    the canary it is about (``{"uid", "label", "kind"}``, never a value) and, when a rule suppressed
    it, the rule's name."""

    id: int
    event: DetectionEvent
    incident_id: int | None = None
    canary: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    suppressed_by: str | None = None
    #: what is known about the client address (canary.enrich), added by the feed; empty when nothing is
    enrichment: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def event_key(*parts: object) -> str:
    """A stable idempotency key from the parts that identify one signal."""
    blob = json.dumps([str(p) for p in parts], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def storable_text(value: object, limit: int = MAX_TEXT) -> str:
    """``value`` as text PostgreSQL accepts in text and jsonb: NUL and lone surrogates become U+FFFD,
    and text longer than ``limit`` is cut (with a marker)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = text[:limit] + "…[truncated]"
    return _UNSTORABLE.sub("\ufffd", text)


def storable(value: Any, depth: int = 0) -> Any:
    """A JSON value built from ``value`` that jsonb accepts whatever it holds: strings made storable,
    keys made text, non-finite floats and foreign types turned into text, nesting beyond
    :data:`MAX_DEPTH` summarised."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, Mapping | list | tuple) and depth >= MAX_DEPTH:
        return f"[{type(value).__name__} nested deeper than {MAX_DEPTH}]"
    if isinstance(value, Mapping):
        return {storable_text(k, 256): storable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v, depth + 1) for v in value]
    return storable_text(value)
