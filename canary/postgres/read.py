"""Read detection: the record handler for the ``CY001`` line the touch function
(:mod:`canary.postgres.tripwire`) writes when a canary row is returned to a reader, and the line's MAC.

Anyone who may run a ``DO`` block can make the server log any message with any SQLSTATE, so a line
is believed only if it carries a MAC (in its ``hint``) over its detail, under a key derived from the
master key for the datastore. The key sits in a table only the function's owner may read; the
function is ``SECURITY DEFINER``. The MAC is HMAC-SHA256, computed with the server's built-in
``sha256()`` (no extension needed): the table holds the two padded keys of the HMAC construction.
The key is installed with ``COPY FROM STDIN``, so neither ``log_statement`` nor pgaudit ever writes
it to the server log.

Who read, from where and in which session are taken from the fields the server sets on the record
(``user``, ``dbname``, ``remote_host``, ``pid``, ``session_id``); the detail's own copies of them
(restored in parallel workers, whose lines lack them) are used only once the MAC holds. A line with
``CY001`` whose MAC does not hold is a forgery: a TAMPER event, one incident per forging session.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from canary.crypto import Keyring, same
from canary.events import EventKind, Severity, event_key
from canary.postgres.protocol import LOG_MESSAGE, READ_SQLSTATE
from canary.postgres.record import (
    MAX_QUERY,
    Detection,
    RecordContext,
    drill_tag,
    forged_detection,
    is_export,
    parse_pg_timestamp,
    read_group,
    suspect,
)
from canary.store.registry import location_key

#: Derivation purpose of the per-datastore key that authenticates detection lines.
LINE_KEY_PURPOSE = "pg-line-mac"
#: Longest detail a genuine line can have (the query inside it is cut to 2000 characters).
MAX_DETAIL = 16 * 1024
_BLOCK = 64  # SHA-256 block size: HMAC pads the key to it


def line_key(keyring: Keyring, datastore: str) -> bytes:
    """The key that authenticates ``datastore``'s detection lines (derived, stored nowhere but there)."""
    return keyring.derive(LINE_KEY_PURPOSE, datastore)


def hmac_pads(key: bytes) -> tuple[bytes, bytes]:
    """(inner, outer) padded keys of HMAC-SHA256: ``sha256(outer || sha256(inner || msg))`` is the MAC."""
    padded = key.ljust(_BLOCK, b"\x00")
    return bytes(b ^ 0x36 for b in padded), bytes(b ^ 0x5C for b in padded)


def line_mac(key: bytes, detail: str) -> str:
    return hmac.new(key, detail.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def read_detection(record: Mapping[str, Any], ctx: RecordContext) -> Detection | None:
    """A ``CY001`` line from the touch function: a canary row was returned to a reader.

    A format that carries no SQLSTATE (stderr without ``%e`` and without ``log_error_verbosity =
    verbose``) still brings the line: the touch function's message with a detail whose MAC holds is
    the touch function's (any other ``row visibility`` line is anyone's ``RAISE``, and nothing).
    A suspect record (right after a broken stderr line) speaks only with a valid MAC, and then for
    who and where by its signed detail, never by its prefix."""
    code = record.get("state_code")
    if code != READ_SQLSTATE and (code is not None or record.get("message") != LOG_MESSAGE):
        return None
    detail, why = _authentic_detail(record, ctx)
    if detail is None:
        if code is None:
            return None
        if suspect(record):
            raise ValueError(f"CY001 line right after a broken log line is not genuine: {why}")
        return forged_detection(record, ctx, "read", why, severity=Severity.CRITICAL)
    if suspect(record):
        record = {k: v for k, v in record.items() if k not in ("user", "dbname", "remote_host", "application_name")}
    target, pk = detail["t"], detail["k"]
    datastore = detail["ds"]
    query = str(detail.get("q") or "")[:MAX_QUERY]
    kind = EventKind.EXPORTED if is_export(query) or record.get("ps") == "COPY" else EventKind.READ
    pid = record.get("leader_pid") or record.get("pid")
    stmt_ts = str(detail.get("ts") or "")
    # server-set fields first; the authenticated detail fills what a parallel worker's line lacks
    app = record.get("application_name") if record.get("application_name") is not None else detail.get("an")
    user = record.get("user") or detail.get("su")
    dbname = record.get("dbname") or detail.get("db")
    client = record.get("remote_host") or detail.get("a")
    return Detection(
        kind=kind,
        key=event_key("pg-read", ctx.node, pid, stmt_ts, target, pk),
        group=read_group(ctx.node, datastore, detail.get("u") or user, kind),
        observed_at=parse_pg_timestamp(record.get("timestamp")),
        lookup=location_key(datastore, target, pk),
        actor={"user": user, "role": detail.get("u"), "application_name": app},
        origin={
            "client_addr": client,
            "node": ctx.node,
            "datastore": datastore,
            "database": dbname,
            "pid": pid,
            "backend_type": record.get("backend_type"),
        },
        evidence={
            "query": query,
            "statement_started": stmt_ts,
            "table": target,
            "session_id": record.get("session_id"),
            "vxid": record.get("vxid"),
            **({"line_truncated": True} if record.get("_truncated") else {}),
        },
        drill=drill_tag(app),
    )


def authentic_detail(record: Mapping[str, Any], ctx: RecordContext) -> tuple[dict[str, Any] | None, str]:
    """The JSON detail of a line written by one of canary's functions (touch function, DDL event
    trigger), if its HINT is the detail's MAC under the datastore's line key; else (None, why not),
    a detail that is not JSON included."""
    raw, mac = record.get("detail"), record.get("hint")
    if not isinstance(raw, str):
        return None, "no detail"
    if len(raw) > MAX_DETAIL:
        return None, "detail longer than the function writes"
    if not isinstance(mac, str):
        return None, "no MAC"
    try:
        detail = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return None, f"malformed detail ({type(exc).__name__})"
    if not isinstance(detail, dict) or detail.get("v") != 1:
        return None, "detail is not a version-1 object"
    datastore = detail.get("ds")
    if not isinstance(datastore, str) or not datastore:
        return None, "detail names no datastore"
    if ctx.keyring is None:
        return None, "no key to check the MAC with"
    if not same(mac.strip().lower(), line_mac(line_key(ctx.keyring, datastore), raw)):
        return None, "MAC does not verify"
    if record.get("pid") is not None and detail.get("p") is not None and str(record.get("pid")) != str(detail.get("p")):
        return None, "line replayed from another backend"
    return detail, ""


def _authentic_detail(record: Mapping[str, Any], ctx: RecordContext) -> tuple[dict[str, Any] | None, str]:
    """The touch function's detail if the line is genuine, else (None, why not)."""
    detail, why = authentic_detail(record, ctx)
    if detail is None:
        return None, why
    # genuine: written by the function, so the fields below are the server's own values
    if not isinstance(detail.get("t"), str) or detail.get("k") is None:
        return None, "detail lacks target or key"
    return detail, ""
