"""The heartbeat: canary makes a node's server log a ``CY009`` line with a fresh nonce, and the record
handler recognises it when the line arrives, whichever path the log takes. The scheduled check
(:mod:`canary.health.checks`) pages when a heartbeat does not arrive in time (the dead man's switch)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

import asyncpg

from canary.errors import DatastoreError
from canary.events import EventKind, Severity, event_key
from canary.postgres.protocol import HEARTBEAT_MESSAGE, HEARTBEAT_SQLSTATE
from canary.postgres.record import Detection, RecordContext, parse_pg_timestamp

_NONCE = re.compile(r"^[0-9a-f]{32}$")


def heartbeat_detection(record: Mapping[str, Any], ctx: RecordContext) -> Detection | None:
    """A ``CY009`` heartbeat line: this node's log reached canary (in a format without SQLSTATEs, the
    heartbeat's message: what makes it a heartbeat is the fresh nonce the check waits for)."""
    code = record.get("state_code")
    if code != HEARTBEAT_SQLSTATE and (code is not None or record.get("message") != HEARTBEAT_MESSAGE):
        return None
    nonce = record.get("detail")
    if not isinstance(nonce, str) or not _NONCE.match(nonce):
        raise ValueError("CY009 record without a heartbeat nonce")
    return Detection(
        kind=EventKind.HEALTH,
        key=event_key("heartbeat", ctx.node, nonce),
        group=f"heartbeat:{ctx.node}",
        observed_at=parse_pg_timestamp(record.get("timestamp")),
        actor={"user": record.get("user"), "application_name": record.get("application_name")},
        origin={"node": ctx.node, "datastore": ctx.datastore, "pid": record.get("pid")},
        evidence={"signal": "heartbeat", "nonce": nonce},
        severity=Severity.INFO,
        require_canary=False,
    )


async def emit_heartbeat(dsn: str, nonce: str, *, timeout: float = 10.0) -> None:
    """Make the server log a CY009 line carrying ``nonce`` (works on a read-only hot standby)."""
    if not _NONCE.match(nonce):
        raise ValueError("heartbeat nonce must be 32 hex digits")
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout, command_timeout=timeout)  # no telling application_name
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatastoreError(f"heartbeat: cannot connect: {type(exc).__name__}") from None
    try:
        await conn.execute(
            f"DO $canary$ BEGIN RAISE LOG USING MESSAGE = '{HEARTBEAT_MESSAGE}', ERRCODE = '{HEARTBEAT_SQLSTATE}', "
            f"DETAIL = '{nonce}'; END $canary$"
        )
    except asyncpg.PostgresError as exc:
        raise DatastoreError(f"heartbeat: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    finally:
        await conn.close()
