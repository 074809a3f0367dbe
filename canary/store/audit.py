"""The audit log (table ``audit_log``, migration 0080; this module is its only owner): every state
change made through the API or the CLI (acknowledge, resolve, note, replay, token create / revoke) and
every reveal of a canary's values, with who (``token:<id> (<name>)`` or ``cli:<user>``), what (action,
target, details), when and from where (the client address behind trusted proxies). Details never hold
a secret value: a reveal records which canary was revealed, not what."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import asyncpg


async def record(db: asyncpg.Pool | asyncpg.Connection, *, actor: str, action: str, target: str | None = None,
                 details: Mapping[str, Any] | None = None, client: str | None = None) -> int:
    """Append one entry; returns its id. Call it in the transaction of the change it records."""
    entry_id: int = await db.fetchval(
        "INSERT INTO audit_log (actor, client, action, target, details) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        actor, client, action, target, dict(details or {}))
    return entry_id


async def page(db: asyncpg.Pool | asyncpg.Connection, *, before: int | None, limit: int,
               action: str | None = None) -> list[asyncpg.Record]:
    """Entries newest first, those older than the entry ``before`` (keyset on id), at most ``limit``."""
    return list(await db.fetch(
        "SELECT id, at, actor, client, action, target, details FROM audit_log"
        " WHERE ($1::bigint IS NULL OR id < $1) AND ($2::text IS NULL OR action = $2) ORDER BY id DESC LIMIT $3",
        before, action, limit))


async def since(db: asyncpg.Pool | asyncpg.Connection, at: dt.datetime) -> list[asyncpg.Record]:
    """Entries recorded at or after ``at``, oldest first (tests, `canary status`)."""
    return list(await db.fetch("SELECT * FROM audit_log WHERE at >= $1 ORDER BY id", at))
