"""Staged log lines (``log_staging_groups`` / ``log_staging_lines``, migration 0090): the only SQL on them.

A cloud log delivery brings lines; a stderr entry is several, and its lines may come in other requests
to other listeners. Each line that may belong to an unfinished entry is staged here before its delivery
is acknowledged, in a *group*: one backend's lines (``entry`` = its pid) where the prefix numbers lines
(``%l``), else one stream's lines in delivery order (``entry`` = ''). Whoever processes a group holds
its row (``FOR UPDATE SKIP LOCKED``: two listeners never process one entry), commits the events, then
marks the lines done in the same transaction that held the row. A crash between the two replays the
same lines into the same event keys. A processed (or dropped) line keeps its row without its text for a
while (a tombstone), so that a redelivery of it is a no-op rather than a new, lone line.

Times are the store's ``clock_timestamp()``, so listeners with skewed clocks agree on what is quiet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True, slots=True)
class NewLine:
    """A line to stage: its group, its identity (a redelivery has the same), its order in the group."""

    entry: str
    line_id: str
    ord: str
    kind: str
    line_num: int | None
    text: str
    event_time: str | None


@dataclass(frozen=True, slots=True)
class StagedLine:
    id: int
    line_id: str
    ord: str
    kind: str
    line_num: int | None
    text: str
    event_time: str | None
    received_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Claim:
    """A group held by this transaction, and the store's time when it was claimed."""

    stream: str
    entry: str
    first_at: dt.datetime
    last_at: dt.datetime
    now: dt.datetime


_STAGE = """
WITH new AS (
    INSERT INTO log_staging_lines (source, stream, entry, line_id, ord, kind, line_num, text, event_time)
    SELECT $1, $2, l.entry, l.line_id, l.ord, l.kind, l.line_num, l.text, l.event_time
    FROM unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[], $9::text[])
         AS l(entry, line_id, ord, kind, line_num, text, event_time)
    ON CONFLICT (source, stream, line_id) DO NOTHING
    RETURNING entry
)
SELECT DISTINCT entry FROM new ORDER BY entry
"""

_TOUCH = """
INSERT INTO log_staging_groups (source, stream, entry, first_at, last_at)
SELECT $1, $2, e, clock_timestamp(), clock_timestamp() FROM unnest($3::text[]) AS e ORDER BY e
ON CONFLICT (source, stream, entry) DO UPDATE SET last_at = excluded.last_at
"""


async def stage(conn: asyncpg.Connection, source: str, stream: str, lines: Sequence[NewLine]) -> list[str]:
    """Stage ``lines`` of one stream (call inside a transaction); the groups that got a new line, in
    order. A line already staged or remembered (same ``line_id``) is skipped."""
    if not lines:
        return []
    rows = await conn.fetch(_STAGE, source, stream, [x.entry for x in lines], [x.line_id for x in lines],
                            [x.ord for x in lines], [x.kind for x in lines], [x.line_num for x in lines],
                            [x.text for x in lines], [x.event_time for x in lines])
    entries = [str(r["entry"]) for r in rows]
    if entries:
        await conn.execute(_TOUCH, source, stream, entries)
    return entries


_DROP_STREAM = """
WITH waiting AS (
    SELECT id FROM log_staging_lines WHERE source = $1 AND stream = $2 AND done_at IS NULL
), over AS (
    SELECT id FROM log_staging_lines WHERE id IN (SELECT id FROM waiting)
    ORDER BY id LIMIT greatest((SELECT count(*) FROM waiting) - $3, 0) FOR UPDATE SKIP LOCKED
)
UPDATE log_staging_lines SET done_at = clock_timestamp(), text = NULL WHERE id IN (SELECT id FROM over)
"""

_DROP_ALL = """
WITH waiting AS (
    SELECT id FROM log_staging_lines WHERE done_at IS NULL
), over AS (
    SELECT id FROM log_staging_lines WHERE id IN (SELECT id FROM waiting)
    ORDER BY id LIMIT greatest((SELECT count(*) FROM waiting) - $1, 0) FOR UPDATE SKIP LOCKED
)
UPDATE log_staging_lines SET done_at = clock_timestamp(), text = NULL WHERE id IN (SELECT id FROM over)
"""

#: Lines and groups another transaction holds are skipped: trimming never waits for a group being
#: processed (which may be waiting for these lines), so it cannot deadlock with it.
_EMPTY_GROUPS = """
DELETE FROM log_staging_groups WHERE ctid IN (
    SELECT g.ctid FROM log_staging_groups g WHERE NOT EXISTS (
        SELECT 1 FROM log_staging_lines l
        WHERE l.source = g.source AND l.stream = g.stream AND l.entry = g.entry AND l.done_at IS NULL)
    FOR UPDATE SKIP LOCKED)
"""


async def trim(conn: asyncpg.Connection, source: str, stream: str, stream_lines: int, max_lines: int) -> tuple[int, int]:
    """Drop the oldest waiting lines beyond ``stream_lines`` in the stream and ``max_lines`` in all
    (they become tombstones); how many were dropped (in the stream, in all)."""
    in_stream = int((await conn.execute(_DROP_STREAM, source, stream, stream_lines)).split()[-1])
    in_all = int((await conn.execute(_DROP_ALL, max_lines)).split()[-1])
    if in_stream or in_all:  # groups left with nothing waiting go too: a flood of one-line groups leaves no rows behind
        await conn.execute(_EMPTY_GROUPS)
    return in_stream, in_all


_GROUP = "SELECT stream, entry, first_at, last_at, clock_timestamp() AS now FROM log_staging_groups"


async def claim(conn: asyncpg.Connection, source: str, stream: str, entry: str) -> Claim | None:
    """Hold one group (inside a transaction), or None when it is gone or another transaction holds it."""
    row = await conn.fetchrow(f"{_GROUP} WHERE source = $1 AND stream = $2 AND entry = $3 FOR UPDATE SKIP LOCKED",
                              source, stream, entry)
    return None if row is None else Claim(**dict(row))


async def claim_due(conn: asyncpg.Connection, source: str, quiet: float, max_age: float) -> Claim | None:
    """Hold the group of ``source`` quiet longest (no line for ``quiet`` seconds) or holding a line
    older than ``max_age``; None when no such group is free."""
    row = await conn.fetchrow(
        f"{_GROUP} WHERE source = $1 AND (last_at < clock_timestamp() - make_interval(secs => $2)"
        " OR first_at < clock_timestamp() - make_interval(secs => $3)) ORDER BY last_at LIMIT 1 FOR UPDATE SKIP LOCKED",
        source, float(quiet), float(max_age))
    return None if row is None else Claim(**dict(row))


async def waiting(conn: asyncpg.Connection, source: str, stream: str, entry: str) -> list[StagedLine]:
    """The group's waiting lines in order."""
    rows = await conn.fetch(
        "SELECT id, line_id, ord, kind, line_num, text, event_time, received_at FROM log_staging_lines"
        " WHERE source = $1 AND stream = $2 AND entry = $3 AND done_at IS NULL ORDER BY ord, id", source, stream, entry)
    return [StagedLine(**dict(r)) for r in rows]


async def settle(conn: asyncpg.Connection, source: str, stream: str, entry: str, done: Sequence[int]) -> None:
    """Mark ``done`` processed (tombstones) and update the group: gone when nothing waits in it."""
    if done:
        await conn.execute("UPDATE log_staging_lines SET done_at = clock_timestamp(), text = NULL WHERE id = ANY($1::bigint[])",
                           list(done))
    first = await conn.fetchval("SELECT min(received_at) FROM log_staging_lines"
                                " WHERE source = $1 AND stream = $2 AND entry = $3 AND done_at IS NULL", source, stream, entry)
    if first is None:
        await conn.execute("DELETE FROM log_staging_groups WHERE source = $1 AND stream = $2 AND entry = $3", source, stream, entry)
    else:
        await conn.execute("UPDATE log_staging_groups SET first_at = $4 WHERE source = $1 AND stream = $2 AND entry = $3",
                           source, stream, entry, first)


async def prune(db: asyncpg.Pool | asyncpg.Connection, remember: float, keep: int) -> int:
    """Forget tombstones older than ``remember`` seconds, and all but the newest ``keep``; how many."""
    aged = await db.execute("DELETE FROM log_staging_lines WHERE done_at < clock_timestamp() - make_interval(secs => $1)",
                            float(remember))
    over = await db.execute("DELETE FROM log_staging_lines WHERE id IN (SELECT id FROM log_staging_lines"
                            " WHERE done_at IS NOT NULL ORDER BY done_at DESC, id DESC OFFSET $1)", keep)
    return int(aged.split()[-1]) + int(over.split()[-1])


async def counts(db: asyncpg.Pool | asyncpg.Connection, source: str | None = None) -> tuple[int, int, int]:
    """(lines waiting, tombstones, groups), of ``source`` or of all."""
    row = await db.fetchrow(
        "SELECT count(*) FILTER (WHERE done_at IS NULL) AS waiting, count(*) FILTER (WHERE done_at IS NOT NULL) AS done,"
        " (SELECT count(*) FROM log_staging_groups WHERE $1::text IS NULL OR source = $1) AS groups"
        " FROM log_staging_lines WHERE $1::text IS NULL OR source = $1", source)
    assert row is not None
    return int(row["waiting"]), int(row["done"]), int(row["groups"])
