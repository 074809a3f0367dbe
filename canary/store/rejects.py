"""Samples of rejected input (``rejects``): what a source could not parse or verify, kept truncated
for inspection and pruned after ``listener.reject_retention``. The runtime counts every reject and
decides which are sampled; this module only stores, prunes and summarises them."""

from __future__ import annotations

import asyncpg


async def insert(db: asyncpg.Pool | asyncpg.Connection, source: str, reason: str, sample: str) -> None:
    """Store one sample (already truncated by the caller)."""
    await db.execute("INSERT INTO rejects (source, reason, sample) VALUES ($1, $2, $3)", source, reason, sample)


async def prune(db: asyncpg.Pool | asyncpg.Connection, retention: float) -> int:
    """Delete samples older than ``retention`` seconds; returns how many."""
    status = await db.execute("DELETE FROM rejects WHERE received_at < now() - make_interval(secs => $1)", retention)
    return int(status.split()[-1])


async def summary(db: asyncpg.Pool | asyncpg.Connection) -> list[asyncpg.Record]:
    """(source, reason, n) of the last 24 hours, most frequent first, at most 20."""
    return list(await db.fetch(
        "SELECT source, reason, count(*) AS n FROM rejects WHERE received_at > clock_timestamp() - interval '24 hours'"
        " GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 20"))
