"""Tamper detection from the datastore's own log: someone disables canary's detection.

Three inputs, one handler each (all record handlers for :mod:`canary.sources.pglog`):

* ``log_statement = 'ddl'`` lines (``statement: DROP POLICY ...``),
* pgaudit session DDL lines (``AUDIT: SESSION,...,DDL,DROP POLICY,...``) when ``pgaudit.log``
  includes ``ddl``,
* an event trigger installed by :func:`install_event_trigger` that ``RAISE LOG``s SQLSTATE
  ``CY002`` with a JSON detail for policy / function / extension / schema / event-trigger DDL and
  ``ALTER TABLE`` (it sees the objects, not just the text, and works without ``log_statement``),
  signed with the tripwire's line key like the touch function's lines (an unsigned or badly signed
  ``CY002`` line is a forgery by the session that wrote it).

What counts as tampering: DROP / ALTER POLICY, ``ALTER TABLE ... DISABLE`` or ``NO FORCE ROW LEVEL
SECURITY``, DROP / ALTER / CREATE OR REPLACE of the touch function, DROP EXTENSION pgaudit,
``ALTER SYSTEM`` or ``SET`` of ``pgaudit.*``, changes to the audit role, dropping or disabling
the event trigger itself, and creating or changing a publication or subscription (a path that streams
tables to another server; the replication watch, :mod:`canary.health.replication`, names the canary
tables a publication includes). Log text cannot say whether the table holds canaries, so these events are
severity ERROR with the statement in evidence; the scheduled detection check (:mod:`canary.checks`)
compares the catalog with what was installed and reports the confirmed damage as CRITICAL.

The seeder's own DDL (it briefly sets ``NO FORCE`` in rolled-back verify transactions) is reported
like anyone's; the pipeline records it as suppressed because the seeder registered its session (pid
and session id, which the server sets) in the control store (:mod:`canary.store.sessions`). An
``application_name`` is never trusted: any client can choose one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import asyncpg

from canary.errors import DatastoreError
from canary.events import EventKind, Severity, event_key
from canary.postgres.audit import parse_audit
from canary.postgres.protocol import FUNCTION, LEGACY_FUNCTION, TAMPER_SQLSTATE
from canary.postgres.read import authentic_detail
from canary.postgres.record import (
    MAX_QUERY,
    Detection,
    RecordContext,
    drill_tag,
    entry_parts,
    forged_detection,
    parse_pg_timestamp,
    suspect,
)
from canary.postgres.sql import ident, literal, qualified

EVENT_TRIGGER = "ddl_audit"  # an ordinary name: a reader can list event triggers
LEGACY_EVENT_TRIGGER = "canary_ddl_guard"  # canary 0.x; replaced by install_event_trigger
GUARD_FUNCTION = "ddl_log"
#: Objects named in one line (a DROP SCHEMA ... CASCADE can drop thousands; the line stays bounded).
MAX_OBJECTS = 40
LEGACY_GUARD_FUNCTION = "ddl_guard"
#: The message of the event trigger's lines (their detail holds the objects, the hint its MAC).
TRIGGER_MESSAGE = "ddl audit"
AUDIT_ROLE_DEFAULT = "canary_auditor"
_NOISE = re.compile(r"'(?:[^']|'')*'|\$([A-Za-z_]*)\$.*?\$\1\$|--[^\n]*|/\*.*?\*/", re.S)


@functools.lru_cache(maxsize=64)
def _rules(functions: tuple[str, ...], audit_role: str) -> tuple[tuple[str, re.Pattern[str]], ...]:
    fn = "(?:" + "|".join(re.escape(f) for f in sorted({*functions, FUNCTION, LEGACY_FUNCTION, GUARD_FUNCTION}) if f) + ")"
    roles = "(?:" + "|".join(re.escape(r) for r in sorted({audit_role, AUDIT_ROLE_DEFAULT})) + ")"
    return (
        ("policy_dropped", re.compile(r"^\s*drop\s+policy\b", re.I)),
        ("policy_altered", re.compile(r"^\s*alter\s+policy\b", re.I)),
        ("rls_disabled", re.compile(r"^\s*alter\s+table\b.*\bdisable\s+row\s+level\s+security\b", re.I | re.S)),
        ("rls_unforced", re.compile(r"^\s*alter\s+table\b.*\bno\s+force\s+row\s+level\s+security\b", re.I | re.S)),
        ("function_dropped", re.compile(r"^\s*drop\s+(?:function|routine)\b.*\b" + fn + r"\b", re.I | re.S)),
        ("function_altered", re.compile(r"^\s*(?:alter\s+(?:function|routine)|create\s+or\s+replace\s+function)\b.*\b"
                                        + fn + r"\b", re.I | re.S)),
        ("schema_dropped", re.compile(r"^\s*drop\s+schema\b.*\bcascade\b", re.I | re.S)),
        ("pgaudit_dropped", re.compile(r"^\s*drop\s+extension\b.*\bpgaudit\b", re.I | re.S)),
        ("pgaudit_setting_changed", re.compile(r"^\s*(?:alter\s+system\s+(?:set|reset)\s+\"?pgaudit\.|alter\s+system\s+reset\s+all\b"
                                               r"|set\s+(?:session\s+|local\s+)?\"?pgaudit\.|alter\s+(?:role|user|database)\b.*\bset\s+\"?pgaudit\.)",
                                               re.I | re.S)),
        ("audit_role_changed", re.compile(r"^\s*(?:drop\s+role|alter\s+role|revoke)\b.*\b" + roles + r"\b", re.I | re.S)),
        ("publication_changed", re.compile(r"^\s*(?:create|alter)\s+publication\b", re.I)),
        ("subscription_changed", re.compile(r"^\s*(?:create|alter)\s+subscription\b", re.I)),
        ("event_trigger_disabled", re.compile(r"^\s*(?:drop|alter)\s+event\s+trigger\b.*\b(?:" + EVENT_TRIGGER + "|" + LEGACY_EVENT_TRIGGER + r")\w*", re.I | re.S)),
    )


def classify(statement: str, functions: tuple[str, ...] = (), audit_role: str | None = None) -> list[str]:
    """The tamper findings of one SQL text (several statements separated by ``;`` are split).
    ``functions`` and ``audit_role``: the datastore's configured names, besides the defaults."""
    found: list[str] = []
    rules = _rules(tuple(sorted({f for f in functions if f})), audit_role or AUDIT_ROLE_DEFAULT)
    for part in _NOISE.sub(" ", statement or "").split(";"):
        for name, rx in rules:
            if rx.search(part) and name not in found:
                found.append(name)
    return found


def _detection(record: Mapping[str, Any], ctx: RecordContext, findings: list[str], query: str, signal: str,
               objects: list[dict[str, Any]] | None = None) -> Detection:
    pid = record.get("pid")
    app = record.get("application_name")
    return Detection(
        kind=EventKind.TAMPER,
        key=event_key("pg-ddl", signal, ctx.node, record.get("session_id"), pid, record.get("line_num"),
                      record.get("timestamp"), query[:200], *entry_parts(record)),
        group=f"tamper:{ctx.node}:{record.get('dbname') or ''}:{pid}",
        observed_at=parse_pg_timestamp(record.get("timestamp")),
        actor={"user": record.get("user"), "application_name": app},
        origin={"client_addr": record.get("remote_host"), "node": ctx.node, "datastore": ctx.datastore,
                "database": record.get("dbname"), "pid": pid},
        evidence={"signal": signal, "findings": findings, "query": query[:MAX_QUERY], "objects": objects or None,
                  "session_id": record.get("session_id")},
        severity=Severity.ERROR,
        drill=drill_tag(app),
        require_canary=False,
    )


def statement_detection(record: Mapping[str, Any], ctx: RecordContext) -> Detection | None:
    """``statement: ...`` lines (log_statement = 'ddl' or 'all') that disable detection."""
    message = record.get("message")
    if not isinstance(message, str) or not message.startswith("statement: "):
        return None
    query = message[len("statement: "):]
    findings = classify(query, ctx.functions, ctx.audit_role)
    return _detection(record, ctx, findings, query, "log_statement") if findings else None


def audit_ddl_detection(record: Mapping[str, Any], ctx: RecordContext) -> Detection | None:
    """pgaudit session lines of class DDL / ROLE / MISC that disable detection."""
    message = record.get("message")
    if not isinstance(message, str) or not message.startswith("AUDIT: SESSION,"):
        return None
    line = parse_audit(message)
    if line.audit_class not in ("DDL", "ROLE", "MISC", "MISC_SET"):
        return None
    query = line.statement if line.statement not in ("<previously logged>", "<not logged>") else str(record.get("statement") or "")
    findings = classify(query, ctx.functions, ctx.audit_role)
    return _detection(record, ctx, findings, query, "pgaudit_session") if findings else None


def _function_name(identity: str) -> str:
    """``row_visible`` of an object identity such as ``rowsec.row_visible(text,text,text)``."""
    name = identity.split("(", 1)[0].rsplit(".", 1)[-1]
    return name[1:-1].replace('""', '"') if name.startswith('"') and name.endswith('"') and len(name) > 1 else name


def trigger_detection(record: Mapping[str, Any], ctx: RecordContext) -> Detection | None:
    """``CY002`` lines from the event trigger: the objects touched by one DDL command. A line whose MAC
    does not verify (a ``RAISE`` imitating the trigger, or a trigger whose key table was dropped) is a
    forgery by the session that wrote it. Without SQLSTATEs (stderr without ``%e``, not verbose) the
    trigger's message is the sign: signed, or ``unsigned`` (the trigger lost its key table), or anyone's."""
    code = record.get("state_code")
    if code != TAMPER_SQLSTATE and (code is not None or record.get("message") != TRIGGER_MESSAGE):
        return None
    detail, why = authentic_detail(record, ctx)
    if detail is None or not isinstance(detail.get("event"), str):
        if suspect(record):
            raise ValueError(f"CY002 line right after a broken log line is not genuine: {why}")
        if code is None and record.get("hint") != "unsigned":
            return None
        return forged_detection(record, ctx, "tamper", why or "detail names no DDL event")
    query = str(detail.get("q") or "")
    objects = [o for o in detail.get("objs") or [] if isinstance(o, dict)]
    findings = classify(query, ctx.functions, ctx.audit_role)
    for o in objects:
        otype, oid = str(o.get("type") or ""), str(o.get("id") or "")
        if otype == "policy" and not any(f.startswith("policy_") for f in findings):
            findings.append("policy_dropped" if detail.get("event") == "sql_drop" else "policy_altered")
        elif otype == "function" and _function_name(oid) in {*ctx.functions, FUNCTION, LEGACY_FUNCTION, GUARD_FUNCTION} \
                and not any(f.startswith("function_") for f in findings):
            findings.append("function_dropped" if detail.get("event") == "sql_drop" else "function_altered")
        elif otype == "extension" and oid == "pgaudit" and "pgaudit_dropped" not in findings:
            findings.append("pgaudit_dropped")
        elif otype.startswith("publication") and detail.get("event") != "sql_drop" and "publication_changed" not in findings:
            findings.append("publication_changed")  # a path that streams tables (canary tables too) to a subscriber
        elif otype == "subscription" and detail.get("event") != "sql_drop" and "subscription_changed" not in findings:
            findings.append("subscription_changed")
    return _detection(record, ctx, findings, query, "event_trigger", objects) if findings else None


HANDLERS = (trigger_detection, statement_detection, audit_ddl_detection)


async def install_event_trigger(conn: asyncpg.Connection, schema: str, datastore: str) -> None:
    """Install (or refresh) the DDL guard event trigger in ``schema`` (superuser only), the schema of
    ``datastore``'s tripwire: its function signs each line with the tripwire's line key (the
    ``settings`` table the seeder filled), so a ``RAISE`` imitating it is reported as a forgery, not as
    the DDL it claims. Its function only RAISEs LOG; it never blocks a DDL command."""
    settings = qualified(schema, "settings")
    if await conn.fetchval("SELECT to_regclass($1)", settings) is None or not await conn.fetchval(f"SELECT EXISTS (SELECT FROM {settings})"):
        raise DatastoreError(f"datastore {datastore!r} has no line key in {schema}.settings yet: seed it first")
    fn = qualified(schema, GUARD_FUNCTION)
    await conn.execute(
        f"""
CREATE OR REPLACE FUNCTION {fn}() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET client_min_messages = error AS $canary$
DECLARE
  objs json;
  d text;
  ik bytea;
  ok bytea;
BEGIN
  IF TG_EVENT = 'sql_drop' THEN
    SELECT coalesce(json_agg(o), '[]'::json) INTO objs FROM (
      SELECT json_build_object('type', object_type, 'id', left(object_identity, 300)) AS o
        FROM pg_event_trigger_dropped_objects()
       WHERE object_type IN ('policy', 'function', 'extension', 'schema', 'event trigger', 'table') LIMIT {MAX_OBJECTS}) x;
  ELSE
    SELECT coalesce(json_agg(o), '[]'::json) INTO objs FROM (
      SELECT json_build_object('type', object_type, 'id', left(object_identity, 300), 'tag', command_tag) AS o
        FROM pg_event_trigger_ddl_commands()
       WHERE object_type IN ('policy', 'function', 'extension', 'schema', 'table', 'publication', 'publication relation',
                             'publication namespace', 'subscription') LIMIT {MAX_OBJECTS}) x;
  END IF;
  IF json_array_length(objs) > 0 THEN
    d := json_build_object('v', 1, 'ds', {literal(datastore)}, 'event', TG_EVENT, 'tag', TG_TAG, 'objs', objs,
                           'q', left(current_query(), 2000), 'p', pg_backend_pid())::text;
    BEGIN  -- dynamic, in its own block: dropping the key table (retire, DROP SCHEMA) must not fail the DROP
      EXECUTE {literal(f"SELECT k.i, k.o FROM {settings} AS k LIMIT 1")} INTO ik, ok;
    EXCEPTION WHEN OTHERS THEN
      ik := NULL;
    END;
    RAISE LOG USING MESSAGE = 'ddl audit', ERRCODE = '{TAMPER_SQLSTATE}', DETAIL = d,
      HINT = coalesce(encode(sha256(ok || sha256(ik || convert_to(d, 'UTF8'))), 'hex'), 'unsigned');
  END IF;
END
$canary$"""
    )
    for event in ("ddl_command_end", "sql_drop"):
        legacy = f"{LEGACY_EVENT_TRIGGER}_{'end' if event == 'ddl_command_end' else 'drop'}"
        await conn.execute(f"DROP EVENT TRIGGER IF EXISTS {ident(legacy)}")
        name = f"{EVENT_TRIGGER}_{'end' if event == 'ddl_command_end' else 'drop'}"
        exists = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger WHERE evtname = $1)", name)
        if not exists:
            await conn.execute(f"CREATE EVENT TRIGGER {ident(name)} ON {event} EXECUTE FUNCTION {fn}()")
        await conn.execute(f"ALTER EVENT TRIGGER {ident(name)} ENABLE ALWAYS")
    await conn.execute(f"DROP FUNCTION IF EXISTS {qualified(schema, LEGACY_GUARD_FUNCTION)}()")
