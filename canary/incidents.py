"""Incident management by people: acknowledge or resolve an incident (``canary alerts ack|resolve``),
and tell every sink that was paged for it."""

from __future__ import annotations

import asyncpg
import structlog

from canary.alerts import AlertAction, alert_for
from canary.errors import IncidentError
from canary.pipeline import INSERT_OUTBOX, OUTBOX_CHANNEL
from canary.store import registry

log = structlog.get_logger("canary.incidents")

_STATUS_ACTIONS = {"acknowledged": AlertAction.ACKNOWLEDGE, "resolved": AlertAction.RESOLVE}


async def change_status(pool: asyncpg.Pool, incident_id: int, status: str, *, by: str, note: str | None = None) -> int:
    """Acknowledge or resolve an incident and enqueue the matching notification to every sink that
    was paged for it (PagerDuty/Opsgenie then acknowledge or close their alert). Idempotent: a second
    call with the same status changes nothing. Returns the number of notifications enqueued."""
    action = _STATUS_ACTIONS[status]
    async with pool.acquire() as conn, conn.transaction():
        inc = await conn.fetchrow("SELECT * FROM incidents WHERE id = $1 FOR UPDATE", incident_id)
        if inc is None:
            raise IncidentError(f"no incident {incident_id}", incident_id=incident_id)
        if inc["status"] == status:
            return 0
        if inc["status"] == "resolved":
            raise IncidentError(f"incident {incident_id} is already resolved", incident_id=incident_id)
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
        alert = alert_for(inc, labels.get(incident_id, []), action, last_seq + 1)
        payload = alert.to_json()
        await conn.execute(INSERT_OUTBOX, [incident_id] * len(sinks), sinks, [last_seq + 1] * len(sinks),
                           [str(action)] * len(sinks), [payload] * len(sinks))
        await conn.execute("SELECT pg_notify($1, '')", OUTBOX_CHANNEL)
        log.info("incident.status", incident_id=incident_id, status=status, by=by, notifications=len(sinks))
        return len(sinks)
