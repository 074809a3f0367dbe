"""pgaudit object audit: exports and reads that row-level security cannot see.

RLS does not apply to superusers, BYPASSRLS roles, or a table owner without FORCE, and ``pg_dump``
turns row security off. pgaudit's *object* audit logs every SELECT / COPY of a table that the
``pgaudit.role`` role holds SELECT on, by anyone, superusers included. :func:`configure_object_audit`
creates that dedicated role and grants it SELECT on the canary tables (and nothing else), so every
AUDIT line names a canary table.

Record handlers (plain functions, see :mod:`canary.sources.pglog`):

* :func:`audit_detection`: ``AUDIT: OBJECT,...`` lines -> EXPORTED (COPY ... TO, pg_dump, or a
  SELECT with no WHERE clause: the whole table) or READ (a filtered SELECT; pgaudit cannot tell which
  rows it returned, so the severity is WARNING), with the statement and role.
* :func:`rls_error_detection`: pg_dump's ``query would be affected by row-level security policy``
  error: someone dumped a table with RLS as a role RLS applies to.

pgaudit lines carry no row identity: they name the table. The event therefore has ``canary_id =
None`` and carries the table and its registry label (``<datastore>/<schema>.<table>``) in evidence;
alerts show the table, and the RLS path (CY001, one event per canary row) adds the rows when it fires.
The group is the RLS read path's (``read_group``: node, datastore, role, kind), so both signals of
one read land in one incident.
"""

from __future__ import annotations

import asyncio
import csv
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from canary.errors import DatastoreError
from canary.events import EventKind, Severity, event_key
from canary.postgres.record import (
    MAX_QUERY,
    Detection,
    RecordContext,
    drill_tag,
    entry_parts,
    is_export,
    parse_pg_timestamp,
    read_group,
)
from canary.postgres.sql import qualified

AUDIT_PREFIX = "AUDIT: "
RLS_ERROR = "query would be affected by row-level security policy"
DUMP_APPS = ("pg_dump", "pg_dumpall")
_WHERE = re.compile(r"\bwhere\b", re.I)
_STRINGS = re.compile(r"'(?:[^']|'')*'|\$([A-Za-z_]*)\$.*?\$\1\$|--[^\n]*|/\*.*?\*/", re.S)
_RLS_TABLE = re.compile(r'policy for table "([^"]+)"')
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")


@dataclass(frozen=True, slots=True)
class AuditLine:
    """One pgaudit line: ``AUDIT_TYPE,STATEMENT_ID,SUBSTATEMENT_ID,CLASS,COMMAND,OBJECT_TYPE,
    OBJECT_NAME,STATEMENT,PARAMETER`` (CSV-quoted)."""

    audit_type: str
    statement_id: str
    substatement_id: str
    audit_class: str
    command: str
    object_type: str
    object_name: str
    statement: str


def parse_audit(message: str) -> AuditLine:
    """Parse the text after ``AUDIT: ``; ValueError when it is not a pgaudit line."""
    if not message.startswith(AUDIT_PREFIX):
        raise ValueError("not a pgaudit line")
    try:
        rows = list(csv.reader([message[len(AUDIT_PREFIX):]], strict=True))
    except csv.Error as exc:
        raise ValueError(f"pgaudit line is not valid CSV: {exc}") from None
    if not rows or len(rows[0]) < 8:
        raise ValueError(f"pgaudit line has {len(rows[0]) if rows else 0} fields, expected at least 8")
    f = rows[0]
    return AuditLine(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7])


def whole_table(statement: str) -> bool:
    """A SELECT without any WHERE clause (string literals and comments ignored) reads the whole table."""
    return not _WHERE.search(_STRINGS.sub(" ", statement or ""))


def _common(record: Mapping[str, Any], ctx: RecordContext, group_kind: EventKind) -> dict[str, Any]:
    """Who / where, and the group of the RLS read path for the same statement (READ, or EXPORTED
    for COPY), so an ordinary role's read gives one incident although both paths report it."""
    app = record.get("application_name")
    pid = record.get("leader_pid") or record.get("pid")
    dbname = record.get("dbname")
    return {
        "group": read_group(ctx.node, ctx.datastore, record.get("user"), group_kind),
        "observed_at": parse_pg_timestamp(record.get("timestamp")),
        "actor": {"user": record.get("user"), "application_name": app},
        "origin": {
            "client_addr": record.get("remote_host"), "node": ctx.node, "datastore": ctx.datastore,
            "database": dbname, "pid": pid, "backend_type": record.get("backend_type"),
        },
        "drill": drill_tag(app),
        "pid": pid,
    }


def audit_detection(record: Mapping[str, Any], ctx: RecordContext) -> Detection | None:
    """An ``AUDIT: OBJECT`` READ line on a canary table (the only tables the audit role can read)."""
    message = record.get("message")
    if not isinstance(message, str) or not message.startswith(AUDIT_PREFIX + "OBJECT,"):
        return None
    line = parse_audit(message)
    if line.audit_class != "READ":
        return None
    table = line.object_name
    statement = line.statement if line.statement not in ("<previously logged>", "<not logged>") else ""
    query = (statement or str(record.get("statement") or ""))[:MAX_QUERY]
    app = record.get("application_name")
    dump = isinstance(app, str) and app in DUMP_APPS
    if is_export(query) or dump:
        kind, severity, how = EventKind.EXPORTED, Severity.CRITICAL, "pg_dump" if dump else "copy"
    elif whole_table(query):
        kind, severity, how = EventKind.EXPORTED, Severity.CRITICAL, "select_all"
    else:
        kind, severity, how = EventKind.READ, Severity.WARNING, "select"
    c = _common(record, ctx, EventKind.EXPORTED if is_export(query) else EventKind.READ)
    return Detection(
        kind=kind,
        key=event_key("pgaudit", ctx.node, record.get("session_id"), c["pid"], line.statement_id, line.substatement_id,
                      table, record.get("timestamp")),
        group=c["group"],
        observed_at=c["observed_at"],
        actor=c["actor"],
        origin=c["origin"],
        evidence={
            "signal": "pgaudit", "how": how, "query": query, "command": line.command, "table": table,
            "object_type": line.object_type,
            "label": f"{ctx.datastore}/{table}", "session_id": record.get("session_id"),
            "statement_id": line.statement_id,
        },
        severity=severity,
        drill=c["drill"],
        require_canary=False,
    )


def rls_error_detection(record: Mapping[str, Any], ctx: RecordContext) -> Detection | None:
    """pg_dump (or any COPY / SELECT with ``row_security = off``) refused by RLS: an attempted export."""
    message = record.get("message")
    if not isinstance(message, str) or RLS_ERROR not in message or record.get("error_severity") != "ERROR":
        return None
    m = _RLS_TABLE.search(message)
    relname = m.group(1) if m else ""
    query = str(record.get("statement") or "")[:MAX_QUERY]
    table = _table_in(query, relname) or relname
    c = _common(record, ctx, EventKind.EXPORTED)
    return Detection(
        kind=EventKind.EXPORTED,
        key=event_key("pg-rls-error", ctx.node, record.get("session_id"), c["pid"], record.get("line_num"),
                      record.get("timestamp"), *entry_parts(record)),
        group=c["group"],
        observed_at=c["observed_at"],
        actor=c["actor"],
        origin=c["origin"],
        evidence={
            "signal": "rls_error", "how": "pg_dump" if record.get("application_name") in DUMP_APPS else "row_security_off",
            "query": query, "table": table, "label": f"{ctx.datastore}/{table}" if table else None,
            "message": message[:300], "session_id": record.get("session_id"),
        },
        severity=Severity.CRITICAL,
        drill=c["drill"],
        require_canary=False,
    )


def _table_in(query: str, relname: str) -> str | None:
    """``schema.table`` as pg_dump names it in its COPY / SELECT (``public.customers``)."""
    if not relname:
        return None
    m = re.search(r'(?:from|copy)\s+((?:"?[A-Za-z_][\w$]*"?\.)?"?' + re.escape(relname) + r'"?)', query, re.I)
    if not m:
        return None
    name = m.group(1).replace('"', "")
    return name if "." in name else f"public.{name}"


HANDLERS = (audit_detection, rls_error_detection)


# -- configuration of the datastore ---------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class AuditState:
    """What the datastore reports about object audit (compared by the detection check)."""

    loaded: bool  # pgaudit in shared_preload_libraries
    extension: bool  # CREATE EXTENSION pgaudit done in this database
    role_setting: str  # current pgaudit.role
    role_exists: bool
    audited: frozenset[str]  # schema.table the audit role may SELECT
    log_classes: frozenset[str] = frozenset()  # pgaudit.log (session classes): ROLE keeps the backstop's role snapshot fresh

    def problems(self, role: str, tables: Sequence[str]) -> list[str]:
        out = []
        if not self.loaded:
            out.append("pgaudit_not_loaded")
        if not self.extension:
            out.append("pgaudit_extension_missing")
        if self.role_setting != role:
            out.append("pgaudit_role_changed")
        if not self.role_exists:
            out.append("pgaudit_role_missing")
        if self.loaded and "role" not in self.log_classes:
            out.append("pgaudit_role_class_missing")
        out.extend(f"pgaudit_grant_missing:{t}" for t in tables if t not in self.audited)
        return out


def _quote(name: str) -> str:
    if not _IDENT.match(name):
        raise DatastoreError(f"{name[:70]!r} is not a plain identifier")
    return '"' + name + '"'


def _table(target: str) -> str:
    schema, _, table = target.rpartition(".")
    return f"{_quote(schema or 'public')}.{_quote(table)}"


async def pgaudit_loaded(conn: asyncpg.Connection) -> bool:
    """pgaudit is in ``shared_preload_libraries``. A role without ``pg_read_all_settings`` (a managed admin
    may lack it) cannot read that setting; it still sees pgaudit's own settings, which ``pg_settings`` lists
    only when the library is loaded (a placeholder left by ``SET pgaudit.x`` without it is not listed)."""
    libs = await conn.fetchval("SELECT setting FROM pg_catalog.pg_settings WHERE name = 'shared_preload_libraries'")
    if libs is not None:
        return "pgaudit" in [x.strip().strip('"') for x in str(libs).split(",")]
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_settings WHERE name = 'pgaudit.log_level')"))


async def audit_state(conn: asyncpg.Connection, role: str) -> AuditState:
    loaded = await pgaudit_loaded(conn)
    ext = bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pgaudit')"))
    setting = await conn.fetchval("SELECT current_setting('pgaudit.role', true)") if loaded else None
    classes = _classes(await conn.fetchval("SELECT current_setting('pgaudit.log', true)")) if loaded else frozenset()
    exists = bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)", role))
    audited: frozenset[str] = frozenset()
    if exists:
        rows = await conn.fetch(
            """
            SELECT n.nspname || '.' || c.relname AS t FROM pg_catalog.pg_class c
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p', 'v', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND pg_catalog.has_table_privilege($1, c.oid, 'SELECT')
            """,
            role,
        )
        audited = frozenset(r["t"] for r in rows)
    return AuditState(loaded, ext, str(setting or ""), exists, audited, classes)


_CLASSES = frozenset({"read", "write", "function", "role", "ddl", "misc", "misc_set"})


def _classes(setting: object) -> frozenset[str]:
    """The session classes ``pgaudit.log`` enables (``all`` expanded, ``-class`` removed, unknown
    words ignored)."""
    items = [i.strip() for i in str(setting or "").lower().split(",")]
    out: set[str] = set(_CLASSES) if "all" in items else set()
    out |= {i for i in items if i in _CLASSES}
    out -= {i[1:].strip() for i in items if i.startswith("-")}
    return frozenset(out)


async def configure_object_audit(
    conn: asyncpg.Connection, role: str, tables: Sequence[str], *, settle: float = 5.0,
    objects: Sequence[tuple[str, str]] = (),
) -> AuditState:
    """Create the audit role (NOLOGIN, no other rights), grant it SELECT on ``tables`` and on the
    (schema, name) relations in ``objects`` (views and copies that read canary rows without row
    security, :func:`canary.postgres.paths.audit_grants`), create the extension and, as a superuser, set
    ``pgaudit.role`` cluster-wide (ALTER SYSTEM + reload).

    A managed admin role (not a superuser: RDS, Cloud SQL, Azure) does the role and the grants, and the
    extension where the provider lets it; ``pgaudit.role``, ``pgaudit.log_parameter`` and ``pgaudit.log``
    come from the provider's console (:func:`canary.postgres.managed.requirements` names them), so the
    state returned says what is still missing. Raises :class:`DatastoreError` when pgaudit is not in
    ``shared_preload_libraries``."""
    if not await pgaudit_loaded(conn):
        raise DatastoreError(
            "pgaudit is not loaded: add it to shared_preload_libraries (and install postgresql-NN-pgaudit), then restart"
            " (on RDS / Aurora: the parameter group; Cloud SQL: the flag cloudsql.enable_pgaudit = on; Azure: azure.extensions"
            " and shared_preload_libraries in the server parameters)"
        )
    superuser = bool(await conn.fetchval("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user"))
    r = _quote(role)
    async with conn.transaction():
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)", role):
            await conn.execute(f"CREATE ROLE {r} NOLOGIN NOINHERIT")
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pgaudit')"):
            try:
                async with conn.transaction():  # a savepoint: a refusal leaves the grants below standing
                    await conn.execute("CREATE EXTENSION pgaudit")
            except asyncpg.InsufficientPrivilegeError:
                pass  # not a trusted extension here: audit_state reports pgaudit_extension_missing
        for t in tables:
            await conn.execute(f"GRANT SELECT ON {_table(t)} TO {r}")
        for schema, name in objects:
            await conn.execute(f"GRANT SELECT ON {qualified(schema, name)} TO {r}")
    if not superuser:
        return await audit_state(conn, role)
    await conn.execute(f"ALTER SYSTEM SET pgaudit.role = '{role}'")
    await conn.execute("ALTER SYSTEM SET pgaudit.log_parameter = off")  # parameters may hold canary values
    classes = _classes(await conn.fetchval("SELECT current_setting('pgaudit.log', true)"))
    if "role" not in classes:  # role changes (passwords redacted by pgaudit) refresh the backstop's snapshot
        setting = ", ".join(sorted(classes | {"role"}))
        await conn.execute(f"ALTER SYSTEM SET pgaudit.log = '{setting}'")
    await conn.execute("SELECT pg_catalog.pg_reload_conf()")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle
    while True:  # backends apply the reload asynchronously (SIGHUP between commands)
        state = await audit_state(conn, role)
        if state.role_setting == role or loop.time() > deadline:
            return state
        await asyncio.sleep(0.05)
