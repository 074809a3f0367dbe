"""canary's own datastore sessions (``own_sessions``): which log lines are canary's own work.

The seeder, ``verify`` and the coverage audit read canary rows and change detection objects; their
lines must not page anyone, and nothing an attacker controls may make a line look like theirs. An
``application_name`` is chosen by the client (and shown to every role in ``pg_stat_activity``), so
canary never trusts one. Instead each of canary's sessions registers, right after it connects and
before it does anything, what the server sets on every line it logs: the backend pid and the session
id (``%c``: backend start time and pid, unique for the server's life). An event from a registered
session (the same datastore and pid; the same session id when the line has one, else inside the
session's lifetime) is recorded as a suppressed incident with rule ``canary_self:<purpose>``.

A session that is never closed (a crash) stays matchable by session id only: after
:data:`MAX_OPEN` its pid may belong to someone else, so id-less lines stop matching it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import asyncpg

from canary.events import DetectionEvent, EventKind

#: Rule name prefix of the suppression (``canary_self:seed``, ``canary_self:verify``, ...).
RULE = "canary_self"
#: Clock difference tolerated between the datastore (log timestamps) and the control store.
CLOCK_SLACK = dt.timedelta(seconds=60)
#: How long an unclosed session is matched by pid alone.
MAX_OPEN = dt.timedelta(hours=6)
#: Closed sessions are forgotten after this long.
KEEP = dt.timedelta(days=7)
#: Events that canary's own sessions cause.
KINDS = frozenset({EventKind.READ, EventKind.EXPORTED, EventKind.TAMPER})

_SESSION = ("SELECT pg_catalog.pg_backend_pid() AS pid, pg_catalog.to_hex(pg_catalog.trunc(pg_catalog.date_part("
            "'epoch', a.backend_start))::bigint) OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||)"
            " pg_catalog.to_hex(a.pid) AS session_id FROM pg_catalog.pg_stat_activity a"
            " WHERE a.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()")


async def server_session(conn: asyncpg.Connection) -> tuple[int, str]:
    """(pid, session id) of ``conn`` as the server logs them (``%p`` and ``%c``)."""
    row = await conn.fetchrow(_SESSION)
    if row is None:  # pg_stat_activity always lists the own backend; keep a usable id regardless
        pid = conn.get_server_pid()
        return pid, f"?.{pid:x}"
    return int(row["pid"]), str(row["session_id"])


async def open_session(db: asyncpg.Pool | asyncpg.Connection, datastore: str, conn: asyncpg.Connection, purpose: str) -> int:
    """Register ``conn`` (a session on ``datastore``) as canary's own; returns its id for :func:`close_session`."""
    pid, session_id = await server_session(conn)
    await db.execute("DELETE FROM own_sessions WHERE closed_at < now() - $1::interval", KEEP)
    return int(await db.fetchval(
        "INSERT INTO own_sessions (datastore, pid, session_id, purpose) VALUES ($1, $2, $3, $4) RETURNING id",
        datastore, pid, session_id, purpose,
    ))


async def close_session(db: asyncpg.Pool | asyncpg.Connection, session: int) -> None:
    await db.execute("UPDATE own_sessions SET closed_at = now() WHERE id = $1 AND closed_at IS NULL", session)


def _pid(event: DetectionEvent) -> int | None:
    """The server pid an event names, when it can be one (a positive int4: what own_sessions stores). A
    claimed pid beyond that (a forged syslog line's) is no session of ours, never a failed query that
    would refuse the event with it."""
    pid = event.origin.get("pid")
    try:
        value = int(pid) if pid is not None and not isinstance(pid, bool) else None
    except (TypeError, ValueError, OverflowError):
        return None
    return value if value is not None and 0 < value <= 2**31 - 1 else None


async def own_events(conn: asyncpg.Connection, events: Sequence[DetectionEvent]) -> dict[int, str]:
    """Index -> suppression rule of the events that canary's own sessions caused. One indexed query
    per batch that has datastore events; none otherwise."""
    keys: dict[int, tuple[str, int]] = {}
    for i, e in enumerate(events):
        ds, pid = e.origin.get("datastore"), _pid(e)
        if e.kind in KINDS and isinstance(ds, str) and pid is not None:
            keys[i] = (ds, pid)
    if not keys:
        return {}
    rows = await conn.fetch(
        "SELECT datastore, pid, session_id, purpose, opened_at, closed_at FROM own_sessions"
        " WHERE (datastore, pid) IN (SELECT * FROM unnest($1::text[], $2::int[]))",
        [k[0] for k in keys.values()], [k[1] for k in keys.values()],
    )
    if not rows:
        return {}
    by_key: dict[tuple[str, int], list[Any]] = {}
    for r in rows:
        by_key.setdefault((r["datastore"], r["pid"]), []).append(r)
    out: dict[int, str] = {}
    for i, key in keys.items():
        e = events[i]
        sid = e.evidence.get("session_id")
        worker = e.origin.get("backend_type") == "parallel worker"  # its session id is the worker's own
        for r in by_key.get(key, ()):
            if isinstance(sid, str) and sid and not worker:
                hit = sid == r["session_id"]
            else:
                end = r["closed_at"] or r["opened_at"] + MAX_OPEN
                hit = r["opened_at"] - CLOCK_SLACK <= e.observed_at <= end + CLOCK_SLACK
            if hit:
                out[i] = f"{RULE}:{r['purpose']}"
                break
    return out
