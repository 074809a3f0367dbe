"""Read detection, both ends: the touch function that writes a ``CY001`` line when a canary row is
returned to a reader, and the record handler that turns the line into an event.

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

import asyncpg

from canary.crypto import Keyring
from canary.events import EventKind, Severity, event_key
from canary.postgres.protocol import FUNCTION, KEY_TABLE, LOG_MESSAGE, READ_SQLSTATE
from canary.postgres.record import (
    MAX_QUERY,
    Detection,
    RecordContext,
    drill_tag,
    forged_detection,
    is_export,
    parse_pg_timestamp,
    read_group,
)
from canary.postgres.sql import literal, qualified
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


def function_sql(schema: str, datastore: str) -> str:
    """The touch function: logs one authenticated JSON line per canary row read, never fails, parallel
    safe.

    No EXCEPTION block: it would start a subtransaction, which is an error inside parallel workers.
    'su', 'db' and 'an' are restored in parallel workers (unlike ``inet_client_addr()``), so a
    worker's line names the session user, database and drill tag even without the leader's lines.

    COST 1: the policy calls it for canary rows only, but the planner charges a function's COST on
    every row of the policy expression; the default 100 inflates scan costs enough to change plan
    shapes and to cross ``jit_above_cost`` on a 1,000,000-row table (see bench/read_overhead.py).
    """
    return f"""
CREATE OR REPLACE FUNCTION {qualified(schema, FUNCTION)}(target text, pk text, reader text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL SAFE SECURITY DEFINER COST 1
SET search_path = pg_catalog, pg_temp
SET client_min_messages = error
AS $canary${function_body(schema, datastore)}$canary$"""


def function_body(schema: str, datastore: str) -> str:
    """The touch function's source as ``pg_proc.prosrc`` holds it (compared to find an outdated one)."""
    return f"""
DECLARE
  d text;
  ik bytea;
  ok bytea;
BEGIN
  d := json_build_object('v', 1, 'ds', {literal(datastore)}, 't', target, 'k', pk, 'u', reader,
                         'q', left(current_query(), 2000), 'ts', statement_timestamp(),
                         'a', inet_client_addr(), 'p', pg_backend_pid(), 'su', session_user,
                         'db', current_database(), 'an', current_setting('application_name', true))::text;
  SELECT k.i, k.o INTO ik, ok FROM {qualified(schema, KEY_TABLE)} AS k LIMIT 1;
  RAISE LOG USING MESSAGE = {literal(LOG_MESSAGE)}, ERRCODE = {literal(READ_SQLSTATE)}, DETAIL = d,
    HINT = encode(sha256(ok || sha256(ik || convert_to(d, 'UTF8'))), 'hex');
  RETURN true;
END
"""


def key_table_sql(schema: str) -> list[str]:
    """The table that holds the line key: readable by its owner (the function's owner) only."""
    table = qualified(schema, KEY_TABLE)
    return [
        f"CREATE TABLE IF NOT EXISTS {table} (i bytea NOT NULL, o bytea NOT NULL)",
        f"REVOKE ALL ON TABLE {table} FROM PUBLIC",
        f"TRUNCATE {table}",
    ]


async def install_key(conn: asyncpg.Connection, schema: str, datastore: str, keyring: Keyring) -> None:
    """Put the datastore's line key in its table (after :func:`key_table_sql`), by ``COPY FROM STDIN``:
    no statement text or bind parameter that a server log could keep holds it."""
    inner, outer = hmac_pads(line_key(keyring, datastore))
    await conn.copy_records_to_table(KEY_TABLE, schema_name=schema, columns=["i", "o"], records=[(inner, outer)])


async def detection_problems(conn: asyncpg.Connection, schema: str, datastore: str, keyring: Keyring) -> list[str]:
    """What is missing or outdated in the touch function and its key (empty: all current)."""
    src = await conn.fetchval(
        "SELECT p.prosrc FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = $1 AND p.proname = $2 AND p.prosecdef",
        schema, FUNCTION,
    )
    if src is None:
        return ["detection_function_missing"]
    problems = [] if src == function_body(schema, datastore) else ["detection_function_outdated"]
    if await conn.fetchval("SELECT to_regclass($1)", qualified(schema, KEY_TABLE)) is None:
        return [*problems, "detection_key_missing"]
    if not await conn.fetchval("SELECT has_table_privilege($1, 'SELECT')", qualified(schema, KEY_TABLE)):
        return problems  # only the role that seeded (the function's owner) can check the key
    digests = await conn.fetch(f"SELECT sha256(i) AS d FROM {qualified(schema, KEY_TABLE)}")
    expected = hashlib.sha256(hmac_pads(line_key(keyring, datastore))[0]).digest()
    if [bytes(r["d"]) for r in digests] != [expected]:
        problems.append("detection_key_stale" if digests else "detection_key_missing")
    return problems


def read_detection(record: Mapping[str, Any], ctx: RecordContext) -> Detection | None:
    """A ``CY001`` line from the touch function: a canary row was returned to a reader."""
    if record.get("state_code") != READ_SQLSTATE:
        return None
    try:
        detail, why = _authentic_detail(record, ctx)
    except (ValueError, TypeError, RecursionError) as exc:
        detail, why = None, f"malformed detail ({type(exc).__name__})"
    if detail is None:
        return forged_detection(record, ctx, "read", why, severity=Severity.CRITICAL)
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


def _authentic_detail(record: Mapping[str, Any], ctx: RecordContext) -> tuple[dict[str, Any] | None, str]:
    """The detail object if the line is genuine, else (None, why not)."""
    raw, mac = record.get("detail"), record.get("hint")
    if not isinstance(raw, str):
        return None, "no detail"
    if len(raw) > MAX_DETAIL:
        return None, "detail longer than the function writes"
    if not isinstance(mac, str):
        return None, "no MAC"
    detail = json.loads(raw)
    if not isinstance(detail, dict) or detail.get("v") != 1:
        return None, "detail is not a version-1 object"
    datastore = detail.get("ds")
    if not isinstance(datastore, str) or not datastore:
        return None, "detail names no datastore"
    if ctx.keyring is None:
        return None, "no key to check the MAC with"
    if not hmac.compare_digest(mac.strip().lower(), line_mac(line_key(ctx.keyring, datastore), raw)):
        return None, "MAC does not verify"
    # genuine: written by the function, so the fields below are the server's own values
    if not isinstance(detail.get("t"), str) or detail.get("k") is None:
        return None, "detail lacks target or key"
    if record.get("pid") is not None and detail.get("p") is not None and str(record.get("pid")) != str(detail.get("p")):
        return None, "line replayed from another backend"
    return detail, ""
