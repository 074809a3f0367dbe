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
from collections.abc import Mapping
from typing import Any


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


def event_key(*parts: object) -> str:
    """A stable idempotency key from the parts that identify one signal."""
    blob = json.dumps([str(p) for p in parts], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]
