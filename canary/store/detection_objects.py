"""Detection objects a seeder installed in a datastore (``detection_objects``), one row per target
table: the policy, the function, and the table's row-level-security state before the install, so
verify knows what to check and retire knows what to restore."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg


async def details(db: asyncpg.Pool | asyncpg.Connection, datastore: str, target: str) -> dict[str, Any] | None:
    """What was installed for one target, or None when nothing is recorded."""
    row = await db.fetchrow("SELECT details FROM detection_objects WHERE datastore = $1 AND target = $2", datastore, target)
    return None if row is None else dict(row["details"])


async def targets(db: asyncpg.Pool | asyncpg.Connection, datastore: str) -> list[str]:
    """The datastore's targets with detection installed, in name order."""
    rows = await db.fetch("SELECT DISTINCT target FROM detection_objects WHERE datastore = $1 ORDER BY 1", datastore)
    return [r["target"] for r in rows]


async def policies(db: asyncpg.Pool | asyncpg.Connection, datastore: str) -> dict[str, str]:
    """The datastore's armed targets and the name of canary's policy on each."""
    rows = await db.fetch("SELECT target, details->>'policy' AS policy FROM detection_objects WHERE datastore = $1"
                          " ORDER BY target", datastore)
    return {r["target"]: r["policy"] or "" for r in rows}


async def children(db: asyncpg.Pool | asyncpg.Connection, datastore: str) -> dict[str, dict[str, Any]]:
    """Tables armed for the rows written for canaries elsewhere (``details.child_of``): target -> details."""
    rows = await db.fetch("SELECT target, details FROM detection_objects WHERE datastore = $1 AND details ? 'child_of'"
                          " ORDER BY target", datastore)
    return {r["target"]: dict(r["details"]) for r in rows}


async def schemas(db: asyncpg.Pool | asyncpg.Connection, datastore: str) -> list[str]:
    """The detection schemas recorded for the datastore's targets (several while an upgrade is under way)."""
    rows = await db.fetch(
        "SELECT DISTINCT details->>'schema' AS s FROM detection_objects WHERE datastore = $1 AND details ? 'schema' ORDER BY 1",
        datastore,
    )
    return [r["s"] for r in rows if r["s"]]


async def count(db: asyncpg.Pool | asyncpg.Connection, datastore: str, *, excluding: Sequence[str] = ()) -> int:
    """How many targets of the datastore have detection installed, not counting ``excluding``."""
    n: int = await db.fetchval(
        "SELECT count(*) FROM detection_objects WHERE datastore = $1 AND NOT (target = ANY($2::text[]))",
        datastore, list(excluding),
    )
    return n


async def first_created_schema(db: asyncpg.Pool | asyncpg.Connection, datastore: str) -> bool:
    """Whether the datastore's first recorded install created the detection schema."""
    first = await db.fetchval(
        "SELECT details->>'schema_created' FROM detection_objects WHERE datastore = $1 ORDER BY id LIMIT 1", datastore
    )
    return bool(first == "true")


async def any_created_schema(db: asyncpg.Pool | asyncpg.Connection, datastore: str) -> bool:
    """Whether any recorded install of the datastore created the detection schema."""
    created = await db.fetchval(
        "SELECT bool_or((details->>'schema_created')::boolean) FROM detection_objects WHERE datastore = $1", datastore
    )
    return bool(created)


async def record(db: asyncpg.Pool | asyncpg.Connection, datastore: str, target: str, details: dict[str, Any]) -> None:
    """Record (or replace) what was installed for one target (inside the seeder's control-store transaction)."""
    await db.execute(
        """INSERT INTO detection_objects (datastore, target, details) VALUES ($1, $2, $3)
           ON CONFLICT (datastore, target) DO UPDATE SET details = EXCLUDED.details, installed_at = now()""",
        datastore, target, details,
    )


async def remove(db: asyncpg.Pool | asyncpg.Connection, datastore: str, targets: Sequence[str]) -> None:
    """Forget the detection of these targets (retired)."""
    await db.execute("DELETE FROM detection_objects WHERE datastore = $1 AND target = ANY($2::text[])", datastore, list(targets))


async def installed(db: asyncpg.Pool | asyncpg.Connection) -> list[asyncpg.Record]:
    """(datastore, target, installed_at) of every install, by datastore and target."""
    return list(await db.fetch("SELECT datastore, target, installed_at FROM detection_objects ORDER BY 1, 2"))
