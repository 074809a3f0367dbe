"""What every PostgreSQL log-record handler shares: the record's context, the :class:`Detection` a
handler returns, and the helpers for timestamps, drill tags, exports and read grouping."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from canary.crypto import Keyring
from canary.events import EventKind, Severity, event_key
from canary.postgres.protocol import DRILL_APP_PREFIX

#: Longest statement text kept in an event's evidence.
MAX_QUERY = 2000
_COPY = re.compile(r"^\s*(?:(?:--[^\n]*\n)|(?:/\*.*?\*/)|\s)*copy\b", re.I | re.S)


@dataclass(frozen=True, slots=True)
class RecordContext:
    datastore: str
    node: str
    source: str
    #: checks that detection lines were written by canary's own function (the processor sets it)
    keyring: Keyring | None = field(default=None, repr=False, compare=False)
    #: names of the datastore's detection objects that DDL must not touch (the processor sets them
    #: from the configuration: a configured touch-function name, the pgaudit role)
    functions: tuple[str, ...] = ()
    audit_role: str | None = None
    #: addresses (CIDRs) the datastore's configured standbys replicate from
    replicas: tuple[str, ...] = ()


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
    """jsonlog timestamps look like ``2026-11-23 15:24:13.620 UTC`` (stderr's ``%t`` and csvlog's without
    the milliseconds). A record without one (a stderr ``log_line_prefix`` without ``%t`` / ``%m`` /
    ``%n``) happened about when canary reads it: now."""
    if value is None:
        return dt.datetime.now(dt.timezone.utc)
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


_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
#: The integer fields of PostgreSQL's jsonlog and the range each is written from (elog.c); every other
#: field it writes is a string.
INT_RANGES = {"pid": _INT32, "leader_pid": _INT32, "remote_port": (0, 65535), "txid": (0, 2**32 - 1),
              "internal_position": _INT32, "cursor_position": _INT32, "file_line_num": _INT32,
              "line_num": _INT64, "query_id": _INT64}


def well_typed(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with only the fields of the types PostgreSQL writes (numbers where it writes numbers,
    strings elsewhere): what arrives over a network may hold anything, and handlers trust the types.
    The decoders' own marks stay: ``_truncated``, ``_suspect`` (true) and ``_entry_id`` (text)."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key in INT_RANGES:
            if isinstance(value, int) and not isinstance(value, bool) and INT_RANGES[key][0] <= value <= INT_RANGES[key][1]:
                out[key] = value
        elif isinstance(value, str) or (key in ("_truncated", "_suspect") and value is True):
            out[key] = value
    return out


def entry_parts(record: Mapping[str, Any]) -> tuple[object, ...]:
    """What tells one record from another where the format has no session id and line number (a
    stderr prefix without ``%c`` / ``%l``): the digest of the entry's own text (its time and pid
    included), for event keys that stay the same when the entry is read again. Nothing for records
    that have them, so their keys are what they always were."""
    entry = record.get("_entry_id")
    return (entry,) if isinstance(entry, str) and entry else ()


def suspect(record: Mapping[str, Any]) -> bool:
    """Whether the record came right after a broken stderr line: its prefix may have been written by
    a client-chosen name (canary.postgres.stderr), so only a MAC-signed detail is believed."""
    return record.get("_suspect") is True


def raised_by_plpgsql(record: Mapping[str, Any]) -> bool:
    """Whether a PL/pgSQL ``RAISE`` wrote this record (anyone who may run ``DO`` can): its innermost
    context line says so, and the server sets the context, not the writer."""
    context = record.get("context")
    if not isinstance(context, str):
        return False
    return context.split("\n", 1)[0].rstrip().endswith(" at RAISE")


def forged_detection(record: Mapping[str, Any], ctx: RecordContext, claimed: str, why: str, *,
                     severity: Severity = Severity.ERROR) -> Detection:
    """A log record that imitates one of canary's signals without being one: a TAMPER event named by
    the server-set facts of the session that wrote it, one incident per forging session."""
    session = record.get("session_id") or f"{record.get('pid')}"
    observed = _timestamp_or_now(record.get("timestamp"))
    return Detection(
        kind=EventKind.TAMPER,
        key=event_key("pg-forged", ctx.node, session, record.get("line_num"), record.get("timestamp"), claimed,
                      *entry_parts(record)),
        group=f"pg-forged:{ctx.node}:{session}",
        observed_at=observed,
        actor={"user": record.get("user"), "application_name": record.get("application_name")},
        origin={"client_addr": record.get("remote_host"), "node": ctx.node, "datastore": ctx.datastore,
                "database": record.get("dbname"), "pid": record.get("pid")},
        evidence={"signal": "forged_log_line", "claimed": claimed, "reason": why,
                  "state_code": record.get("state_code"), "message": str(record.get("message") or "")[:200],
                  "session_id": record.get("session_id"), "line_num": record.get("line_num")},
        severity=severity,
        require_canary=False,
    )


def _timestamp_or_now(value: object) -> dt.datetime:
    try:
        return parse_pg_timestamp(value)
    except (ValueError, TypeError):
        return dt.datetime.now(dt.timezone.utc)


def is_export(query: str) -> bool:
    return bool(_COPY.match(query or ""))


def read_group(node: str, datastore: str, role: object, kind: EventKind) -> str:
    """The incident group of reads: one role reading one datastore's canaries on one node, whatever
    connection, statement or parallel worker it uses. A scraper that opens a connection per page, or a
    pool of ten, is one incident that escalates with the canaries it collects, not a page per
    connection. (Each handler that reports reads of tables uses this, so signals of one read merge.)"""
    return f"pg:{node}:{datastore}:{role or ''}:{kind}"
