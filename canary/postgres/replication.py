"""Replication commands in the server log (``log_replication_commands = on``): data leaving by the
replication protocol, reported the moment it starts, with who and from where.

* ``BASE_BACKUP``: a copy of the whole cluster (``pg_basebackup``): EXPORTED / CRITICAL;
* ``CREATE_REPLICATION_SLOT``: a new slot is TAMPER / CRITICAL (a path that decodes every change); a
  subscriber's table-sync slot (``pg_<sub>_sync_<relid>_<sysid>``) starts a publication's initial copy
  of a table: EXPORTED / CRITICAL, in the group of the reads of that role (object audit's COPY line
  of the same copy lands in the same incident);
* ``START_REPLICATION ... LOGICAL``: decoded changes streamed to a client (``pg_recvlogical``, a
  subscriber): EXPORTED / CRITICAL;
* ``START_REPLICATION`` (physical): WAL streamed to a standby or ``pg_receivewal``: EXPORTED unless
  the client address is a configured node's ``replication_from``.

Only a WAL sender logs these lines; one written by any other backend (a ``RAISE``) is reported as a
forgery by the session that wrote it. Slot events share the group of :func:`slot_group` with the scheduled
replication watch (:mod:`canary.health.replication`), so one slot is one incident.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from canary.events import EventKind, Severity, event_key
from canary.postgres.record import (
    MAX_QUERY,
    Detection,
    RecordContext,
    drill_tag,
    entry_parts,
    forged_detection,
    parse_pg_timestamp,
    read_group,
)

PREFIX = "received replication command: "
_NAME = r'"((?:[^"]|"")+)"|([A-Za-z_][A-Za-z0-9_$]*)'
_CREATE = re.compile(r"^CREATE_REPLICATION_SLOT\s+(?:" + _NAME + r")\s*(TEMPORARY\s+)?(PHYSICAL|LOGICAL)?\s*(?:" + _NAME + ")?", re.I)
_START = re.compile(r"^START_REPLICATION\s+(?:SLOT\s+(?:" + _NAME + r")\s+)?(LOGICAL|PHYSICAL)?", re.I)
_SYNC_SLOT = re.compile(r"^pg_(\d+)_sync_(\d+)_(\d+)$")


def slot_group(datastore: str, slot: str) -> str:
    """The incident group of everything about one replication slot (log lines and the watch alike)."""
    return f"replication:{datastore}:slot:{slot}"


def _name(m: re.Match[str], first: int) -> str | None:
    quoted, plain = m.group(first), m.group(first + 1)
    if quoted is not None:
        return quoted.replace('""', '"')
    return plain.lower() if plain else None


def _known(addr: object, networks: tuple[str, ...]) -> bool:
    if not isinstance(addr, str) or not networks:
        return False
    try:
        ip = ipaddress.ip_address(addr.split("/")[0].strip("[]"))
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in networks)


def replication_detection(record: Mapping[str, Any], ctx: RecordContext) -> Detection | None:
    """A replication command that moves data out or opens a path for it."""
    message = record.get("message")
    if not isinstance(message, str) or not message.startswith(PREFIX):
        return None
    if record.get("backend_type") not in (None, "walsender"):
        return forged_detection(record, ctx, "replication_command", f"written by a {str(record.get('backend_type'))[:40]}, not a WAL sender")
    command = message[len(PREFIX):].strip()
    word = command.split(None, 1)[0].upper() if command else ""
    user, client = record.get("user"), record.get("remote_host")
    slot: str | None = None
    if word == "BASE_BACKUP":
        kind, severity, how = EventKind.EXPORTED, Severity.CRITICAL, "base_backup"
        group = f"replication:{ctx.datastore}:base_backup:{client or '?'}"
    elif word == "CREATE_REPLICATION_SLOT":
        m = _CREATE.match(command)
        slot = _name(m, 1) if m else None
        if not slot or (m and m.group(3) and slot.startswith("pg_basebackup_")):
            return None  # a base backup's own temporary slot: its BASE_BACKUP line is the event
        sync = _SYNC_SLOT.match(slot)
        if sync:
            kind, severity, how = EventKind.EXPORTED, Severity.CRITICAL, "publication_initial_copy"
            group = read_group(ctx.node, ctx.datastore, user, EventKind.EXPORTED)
        else:
            kind, severity, how = EventKind.TAMPER, Severity.CRITICAL, "replication_slot_created"
            group = slot_group(ctx.datastore, slot)
    elif word == "START_REPLICATION":
        m = _START.match(command)
        slot = _name(m, 1) if m else None
        logical = bool(m and (m.group(3) or "").upper() == "LOGICAL")
        if slot and slot.startswith("pg_basebackup_") and not logical:
            return None
        if logical:
            if slot and _SYNC_SLOT.match(slot):
                return None  # the table sync's stream: its slot creation was the event
            kind, severity, how = EventKind.EXPORTED, Severity.CRITICAL, "logical_decoding"
        else:
            if _known(client, ctx.replicas):
                return None  # a configured standby (re)connecting from its own address
            kind, severity, how = EventKind.EXPORTED, Severity.CRITICAL, "physical_replication"
        group = slot_group(ctx.datastore, slot) if slot else f"replication:{ctx.datastore}:{how}:{client or '?'}"
    else:
        return None
    pid = record.get("pid")
    app = record.get("application_name")
    sync_m = _SYNC_SLOT.match(slot) if slot else None
    return Detection(
        kind=kind,
        key=event_key("pg-replication", ctx.node, record.get("session_id"), pid, record.get("line_num"), record.get("timestamp"),
                      *entry_parts(record)),
        group=group,
        observed_at=parse_pg_timestamp(record.get("timestamp")),
        actor={"user": user, "application_name": app},
        origin={"client_addr": client, "node": ctx.node, "datastore": ctx.datastore, "database": record.get("dbname"),
                "pid": pid, "backend_type": record.get("backend_type")},
        evidence={
            "signal": "replication_command", "how": how, "command": command[:MAX_QUERY], "slot": slot,
            "relation_oid": int(sync_m.group(2)) if sync_m else None, "session_id": record.get("session_id"),
        },
        severity=severity,
        drill=drill_tag(app),
        require_canary=False,
    )


HANDLERS = (replication_detection,)
