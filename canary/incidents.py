"""Incident management by people: acknowledge or resolve an incident (``canary alerts ack|resolve``, the
API) and tell every sink that was paged for it; replay dead letters; keep notes with an incident. Each
change can be recorded in the audit log (:mod:`canary.store.audit`) in its own transaction."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import structlog

from canary.alerts import AlertAction, alert_for
from canary.errors import IncidentError
from canary.pipeline import INSERT_OUTBOX, OUTBOX_CHANNEL
from canary.store import audit, registry

log = structlog.get_logger("canary.incidents")

#: who made a change and from where, for the audit log: (actor, client address or None)
AuditAs = tuple[str, str | None]

_STATUS_ACTIONS = {"acknowledged": AlertAction.ACKNOWLEDGE, "resolved": AlertAction.RESOLVE}


async def change_status(pool: asyncpg.Pool, incident_id: int, status: str, *, by: str, note: str | None = None,
                        public_url: str = "", audit_as: AuditAs | None = None) -> int:
    """Acknowledge or resolve an incident and enqueue the matching notification to every sink that
    was paged for it (PagerDuty/Opsgenie then acknowledge or close their alert). Idempotent: a second
    call with the same status changes nothing. Returns the number of notifications enqueued.

    ``public_url`` (``listener.public_url``) links the notification to the incident's page; ``audit_as``
    (actor, client address) records the change in the audit log, in the same transaction."""
    action = _STATUS_ACTIONS[status]
    async with pool.acquire() as conn, conn.transaction():
        inc = await conn.fetchrow("SELECT * FROM incidents WHERE id = $1 FOR UPDATE", incident_id)
        if inc is None:
            raise IncidentError(f"no incident {incident_id}", incident_id=incident_id)
        if inc["status"] == status:
            return 0
        if inc["status"] == "resolved":
            raise IncidentError(f"incident {incident_id} is already resolved", incident_id=incident_id)
        if audit_as is not None:
            await audit.record(conn, actor=audit_as[0], client=audit_as[1], action=f"incident.{action}",
                               target=f"incident:{incident_id}", details={"from": inc["status"], "note": note})
        column = "acknowledged" if status == "acknowledged" else "resolved"
        inc = await conn.fetchrow(
            f"UPDATE incidents SET status = $2, {column}_at = clock_timestamp(), {column}_by = $3,"
            " note = coalesce($4, note) WHERE id = $1 RETURNING *",
            incident_id, status, by, note,
        )
        sinks = [r["sink"] for r in await conn.fetch(
            "SELECT DISTINCT sink FROM outbox WHERE incident_id = $1 AND action IN ('trigger', 'update') ORDER BY 1",
            incident_id)]
        if not sinks:
            return 0
        last_seq = await conn.fetchval("SELECT max(sequence) FROM outbox WHERE incident_id = $1", incident_id)
        labels = await registry.incident_labels(conn, [incident_id])
        alert = alert_for(inc, labels.get(incident_id, []), action, last_seq + 1, public_url)
        payload = alert.to_json()
        await conn.execute(INSERT_OUTBOX, [incident_id] * len(sinks), sinks, [last_seq + 1] * len(sinks),
                           [str(action)] * len(sinks), [payload] * len(sinks))
        await conn.execute("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)
        log.info("incident.status", incident_id=incident_id, status=status, by=by, notifications=len(sinks))
        return len(sinks)


async def replay_dead(pool: asyncpg.Pool, ids: Sequence[int], *, every: bool = False, sink: str | None = None,
                      audit_as: AuditAs | None = None) -> list[int]:
    """Make dead letters pending again with a fresh retry horizon (``canary alerts replay``, the API);
    returns the ids replayed. With ``audit_as`` the replay is recorded in the audit log."""
    if not ids and not every:
        raise IncidentError("name the dead letters to replay (outbox ids) or use --all")
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            """
            UPDATE outbox SET status = 'pending', attempts = 0, first_attempt_at = NULL,
                              next_attempt_at = clock_timestamp()
            WHERE status = 'dead' AND ($1 OR id = ANY($2::bigint[])) AND ($3::text IS NULL OR sink = $3)
            RETURNING id
            """,
            every, list(ids), sink,
        )
        replayed = sorted(r["id"] for r in rows)
        missing = sorted(set(ids) - set(replayed))
        if missing:
            raise IncidentError(f"not dead letters (or not found): {', '.join(map(str, missing))}")
        if replayed:
            if audit_as is not None:
                await audit.record(conn, actor=audit_as[0], client=audit_as[1], action="outbox.replay",
                                   target=f"sink:{sink}" if sink else None, details={"ids": replayed, "all": every})
            await conn.execute("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)
    return replayed


async def add_note(pool: asyncpg.Pool, incident_id: int, body: str, *, author: str, audit_as: AuditAs | None = None) -> int:
    """Keep a note with an incident (table ``incident_notes``, owned here); returns its id."""
    async with pool.acquire() as conn, conn.transaction():
        if await conn.fetchval("SELECT 1 FROM incidents WHERE id = $1", incident_id) is None:
            raise IncidentError(f"no incident {incident_id}", incident_id=incident_id)
        note_id: int = await conn.fetchval(
            "INSERT INTO incident_notes (incident_id, author, body) VALUES ($1, $2, $3) RETURNING id",
            incident_id, author, body)
        if audit_as is not None:
            await audit.record(conn, actor=audit_as[0], client=audit_as[1], action="incident.note",
                               target=f"incident:{incident_id}", details={"note_id": note_id, "chars": len(body)})
    return note_id


async def notes(db: asyncpg.Pool | asyncpg.Connection, incident_id: int, *, after: int | None, limit: int) -> list[asyncpg.Record]:
    """An incident's notes, oldest first, those after the note ``after`` (keyset on id), at most ``limit``."""
    return list(await db.fetch(
        "SELECT id, author, body, created_at FROM incident_notes WHERE incident_id = $1 AND ($2::bigint IS NULL OR id > $2)"
        " ORDER BY id LIMIT $3", incident_id, after, limit))
