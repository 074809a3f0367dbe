"""The event feed's tables (migration 0110): each SIEM sink's cursor over committed events
(``feed_cursors``), the events a sink refused for good (``feed_dead``), and the ordered read of
events past a cursor. The read never passes an event that may still commit: it stops below the oldest
transaction still running (``pg_snapshot_xmin``), and every inserting transaction's id is on its events.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from canary.events import DetectionEvent, EventKind, Severity, StoredEvent


@dataclasses.dataclass(frozen=True, slots=True)
class Cursor:
    """Everything at or before (txid, id) has been delivered (or skipped) for the sink."""

    txid: int
    id: int


_START = """
INSERT INTO feed_cursors (sink, txid, id) VALUES ($1, pg_snapshot_xmin(pg_current_snapshot()), 0)
ON CONFLICT (sink) DO NOTHING
"""

_LOAD = "SELECT txid::text::bigint AS txid, id FROM feed_cursors WHERE sink = $1"

#: One statement, so the rows and the horizon come from one snapshot: the horizon of a read that found nothing
#: must be the one its WHERE used (a later snapshot's may be past a transaction that committed meanwhile,
#: whose events this read did not see). With no rows the answer is one row of only the horizon.
_READ = """
SELECT s.horizon::text::bigint AS horizon, r.*
FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon) s
LEFT JOIN LATERAL (
    SELECT e.id, e.txid::text::bigint AS txid, e.key, e.kind, e.source, e.canary_id, e.group_key, e.incident_id,
           e.severity, e.observed_at, e.detected_at, e.actor, e.origin, e.evidence, e.drill, e.suppressed_by,
           c.uid AS canary_uid, c.label AS canary_label, c.kind AS canary_kind
    FROM events e LEFT JOIN canaries c ON c.id = e.canary_id
    WHERE e.txid IS NOT NULL AND (e.txid, e.id) > ($1::text::xid8, $2::bigint) AND e.txid < s.horizon
    ORDER BY e.txid, e.id
    LIMIT $3
) r ON true
ORDER BY r.txid, r.id
"""

_ADVANCE = """
UPDATE feed_cursors SET txid = $4::text::xid8, id = $5, delivered = delivered + $6, failing_since = NULL,
                        last_error = NULL, updated_at = clock_timestamp()
WHERE sink = $1 AND txid = $2::text::xid8 AND id = $3
RETURNING true
"""


async def start(db: asyncpg.Pool | asyncpg.Connection, sink: str) -> Cursor:
    """The sink's cursor; a sink fed for the first time starts at the present (no backfill)."""
    await db.execute(_START, sink)
    row = await db.fetchrow(_LOAD, sink)
    assert row is not None
    return Cursor(int(row["txid"]), int(row["id"]))


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else (value or {})


def _stored(r: asyncpg.Record) -> StoredEvent:
    event = DetectionEvent(
        kind=EventKind(r["kind"]), source=r["source"], key=r["key"], group=r["group_key"], canary_id=r["canary_id"],
        observed_at=r["observed_at"], detected_at=r["detected_at"], actor=_json(r["actor"]), origin=_json(r["origin"]),
        evidence=_json(r["evidence"]), severity=Severity(r["severity"]), drill=r["drill"],
    )
    canary = ({"uid": r["canary_uid"], "label": r["canary_label"], "kind": r["canary_kind"]}
              if r["canary_uid"] is not None else {})
    return StoredEvent(id=int(r["id"]), event=event, incident_id=r["incident_id"], canary=canary,
                       suppressed_by=r["suppressed_by"])


async def read(db: asyncpg.Pool | asyncpg.Connection, after: Cursor, limit: int,
               ) -> tuple[list[tuple[Cursor, StoredEvent]], Cursor]:
    """Up to ``limit`` events past ``after`` in feed order, each with its own position, and the
    position the cursor may move to when all of them are delivered: the last one's when the read was
    full, else the horizon (every event below it has been read)."""
    answer = await db.fetch(_READ, str(after.txid), after.id, limit)
    rows = [r for r in answer if r["id"] is not None]
    out = [(Cursor(int(r["txid"]), int(r["id"])), _stored(r)) for r in rows]
    if len(rows) >= limit:
        return out, out[-1][0]
    end = Cursor(int(answer[0]["horizon"]), 0)
    return out, (end if (end.txid, end.id) > (after.txid, after.id) else after)


async def advance(db: asyncpg.Pool | asyncpg.Connection, sink: str, old: Cursor, new: Cursor, delivered: int) -> bool:
    """Move the cursor from ``old`` to ``new`` (compare-and-set: a feed whose lease lapsed and was
    taken over cannot move it); whether it moved."""
    return bool(await db.fetchval(_ADVANCE, sink, str(old.txid), old.id, str(new.txid), new.id, delivered))


async def failing(db: asyncpg.Pool | asyncpg.Connection, sink: str, error: str) -> None:
    """Record a failed attempt (``failing_since`` keeps the first of the episode)."""
    await db.execute(
        "UPDATE feed_cursors SET failing_since = coalesce(failing_since, clock_timestamp()), last_error = $2,"
        " updated_at = clock_timestamp() WHERE sink = $1", sink, error[:1000])


async def dead(db: asyncpg.Pool | asyncpg.Connection, sink: str, event_ids: Sequence[int], error: str) -> None:
    await db.executemany("INSERT INTO feed_dead (sink, event_id, error) VALUES ($1, $2, $3)",
                         [(sink, int(i), error[:1000]) for i in event_ids])


#: Committed events the horizon holds back (their transaction ended after an older one that still runs), and
#: who holds the horizon: the backend whose transaction is the oldest running (pg_stat_activity shows what the
#: reading role may see of it), or a prepared transaction (which outlives its session).
_HELD = """
SELECT w.n, extract(epoch FROM clock_timestamp() - w.since) AS held_for,
       a.pid, a.usename, a.datname, a.application_name, a.client_addr::text AS client_addr, a.xact_start, a.state,
       p.gid, p.owner AS prepared_by, p.prepared
FROM (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon) h
CROSS JOIN LATERAL (SELECT count(*) AS n, min(detected_at) AS since
                    FROM (SELECT detected_at FROM events WHERE txid IS NOT NULL AND txid >= h.horizon
                          ORDER BY txid, id LIMIT 10000) first) w
LEFT JOIN pg_stat_activity a ON a.backend_xid = xid(h.horizon)
LEFT JOIN pg_prepared_xacts p ON p.transaction = xid(h.horizon)
WHERE w.n > 0
"""


@dataclasses.dataclass(frozen=True, slots=True)
class Held:
    """Events that wait behind a transaction still running: how many (the first 10,000 counted), for how
    long, and who holds them."""

    waiting: int
    seconds: float
    holder: dict[str, Any]


async def held(db: asyncpg.Pool | asyncpg.Connection) -> Held | None:
    """The committed events the oldest transaction still running holds back from every feed, or None."""
    row = await db.fetchrow(_HELD)
    if row is None:
        return None
    holder = {k: (v.isoformat() if hasattr(v, "isoformat") else v)
              for k in ("pid", "usename", "datname", "application_name", "client_addr", "xact_start", "state",
                        "gid", "prepared_by", "prepared") if (v := row[k]) is not None}
    return Held(int(row["n"]), float(row["held_for"] or 0.0), holder)


async def status(db: asyncpg.Pool | asyncpg.Connection) -> list[dict[str, Any]]:
    """Per sink: delivered count, events waiting (up to 100,000 counted), failing since, last error,
    dead events."""
    rows = await db.fetch(
        """
        SELECT f.sink, f.delivered, f.failing_since, f.last_error, f.updated_at,
               (SELECT count(*) FROM (SELECT 1 FROM events e WHERE e.txid IS NOT NULL
                                      AND (e.txid, e.id) > (f.txid, f.id) LIMIT 100000) w) AS waiting,
               (SELECT count(*) FROM feed_dead d WHERE d.sink = f.sink) AS dead
        FROM feed_cursors f ORDER BY f.sink
        """)
    return [dict(r) for r in rows]
