"""Cluster leases (``leases``, migration 0070): one holder at a time per name, on the control store's clock.

Several listener processes share one control store. Most of their work is safe to do in each of them
(ingest and the pipeline dedupe by event key and lock per incident group; the outbox claims rows with
``SKIP LOCKED``), but some jobs are meant to run once per cluster: the scheduled coverage checks and
the heartbeat (one nonce per interval, not one per process), the copy sweep and retention. Those run
in whichever listener holds a lease. A lease is taken when it is free or expired, renewed by its holder
well before it expires, and released on a clean stop; a holder killed with SIGKILL loses it when it
expires. Expiry is decided by the store's ``clock_timestamp()``, never by a listener's clock.
"""

from __future__ import annotations

import asyncpg

_ACQUIRE = """
INSERT INTO leases (name, holder, expires_at, acquired_at)
VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3), clock_timestamp())
ON CONFLICT (name) DO UPDATE SET
    holder = excluded.holder,
    expires_at = excluded.expires_at,
    acquired_at = CASE WHEN leases.holder = excluded.holder THEN leases.acquired_at ELSE excluded.acquired_at END
WHERE leases.holder = excluded.holder OR leases.expires_at < clock_timestamp()
RETURNING holder
"""


async def acquire(db: asyncpg.Pool | asyncpg.Connection, name: str, holder: str, ttl: float) -> bool:
    """Take or renew lease ``name`` for ``ttl`` seconds; whether ``holder`` holds it now. Another
    holder's lease is taken only once it has expired."""
    return bool(await db.fetchval(_ACQUIRE, name, holder, float(ttl)) == holder)


async def release(db: asyncpg.Pool | asyncpg.Connection, name: str, holder: str) -> bool:
    """Give lease ``name`` up if ``holder`` holds it (a clean stop: the next listener need not wait
    for it to expire); whether it was held."""
    return await db.fetchval("DELETE FROM leases WHERE name = $1 AND holder = $2 RETURNING true", name, holder) is True


async def holder(db: asyncpg.Pool | asyncpg.Connection, name: str) -> str | None:
    """Who holds lease ``name`` now (None when nobody does or it has expired)."""
    value = await db.fetchval("SELECT holder FROM leases WHERE name = $1 AND expires_at >= clock_timestamp()", name)
    return None if value is None else str(value)
