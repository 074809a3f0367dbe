"""Source positions (``checkpoints``): where a source resumes after a restart.

A source saves its position only after the events of the input before it are committed, so a crash
re-reads some input (idempotently, by event key) and never skips any. Positions are JSON objects
that only their source interprets (jsonlog: file, inode, offset).
"""

from __future__ import annotations

from typing import Any

import asyncpg


async def load(db: asyncpg.Pool | asyncpg.Connection, source: str) -> dict[str, Any] | None:
    """The position ``source`` last saved, or None when it has none."""
    row = await db.fetchrow("SELECT position FROM checkpoints WHERE source = $1", source)
    return None if row is None else dict(row["position"])


async def save(db: asyncpg.Pool | asyncpg.Connection, source: str, position: dict[str, Any]) -> None:
    """Replace the position of ``source``."""
    await db.execute(
        """
        INSERT INTO checkpoints (source, position, updated_at) VALUES ($1, $2, now())
        ON CONFLICT (source) DO UPDATE SET position = excluded.position, updated_at = now()
        """,
        source, position,
    )


async def listing(db: asyncpg.Pool | asyncpg.Connection) -> list[asyncpg.Record]:
    """(source, position, updated_at) of every saved position, by source."""
    return list(await db.fetch("SELECT source, position, updated_at FROM checkpoints ORDER BY source"))
