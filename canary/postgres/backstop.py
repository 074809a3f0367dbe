"""The quiet backstop: pgaudit object-audit lines speak only for sessions the tripwire cannot cover.

pgaudit object audit logs every read of a canary table by anyone, so on its own it would page for
each lookup of a *real* customer by the application. Operators would then silence the application
and ETL roles: exactly the roles whose leftover tokens an insider holds. The tripwire (row-level
security) already reports every canary row those roles read, row by row. So an object-audit line on
an armed table is kept only when the tripwire could not have seen the read:

* the session's login role is a superuser or has BYPASSRLS (row security never applies);
* it can become such a role: a member of one (``SET ROLE``), an ADMIN of one (it may grant itself
  membership), or, before PostgreSQL 16, a CREATEROLE role (it may grant itself any role);
* it can act as the owner of the table while FORCE ROW LEVEL SECURITY is off;
* row security, FORCE or canary's policy is missing on the table (a tamper event says so too);
* the login role is unknown to the last catalog snapshot, or the snapshot cannot be read (fail loud).

Lines on anything but an armed table (the views that run without row security, copies covered by
object audit) always speak. What privileged sessions' lines do is configured:
``coverage.privileged_reads = "all"`` (every read and export, the default) or ``"exports"`` (whole
tables, COPY and dumps only).

The role snapshot is the datastore's catalog, read with the datastore's DSN, cached for
:data:`TTL` and read again before the next classification once a line shows that roles or a canary
table's row security may have changed (pgaudit ROLE / DDL session lines, ``log_statement`` lines,
canary's DDL guard). Re-reads are at most one per :data:`MIN_REFRESH`, so a flood of GRANTs delays
classification by at most that long and cannot stall the source.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from canary.config import DatastoreConfig
from canary.events import EventKind
from canary.postgres.audit import parse_audit
from canary.postgres.record import Detection, raised_by_plpgsql
from canary.store import detection_objects

log = structlog.get_logger("canary.backstop")

#: How long a catalog snapshot is trusted without a sign that roles changed.
TTL = 60.0
#: The least time between two catalog reads.
MIN_REFRESH = 1.0
#: After a failed catalog read, lines speak (fail loud) for this long before the next attempt.
RETRY_AFTER_FAILURE = 30.0
CONNECT_TIMEOUT = 5.0

_ROLE_CHANGE = re.compile(
    r"^\s*(?:grant|revoke|(?:create|alter|drop)\s+(?:role|user|group)|reassign\s+owned"
    r"|alter\s+table\b[^;]*\b(?:owner\s+to|row\s+level\s+security)|drop\s+policy|alter\s+policy)\b",
    re.I | re.S,
)

#: How long a role granted membership (or a privileged attribute) in the log stays uncovered whatever
#: the catalog says later: the grant and its revoke can both happen before the line is judged.
RECENT = 15 * 60.0
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_LIST = _IDENT + r"(?:\s*,\s*" + _IDENT + r")*"
_GRANT_ROLE = re.compile(r"\bgrant\s+(" + _LIST + r")\s+to\s+(" + _LIST + r")", re.I)
_ALTER_ATTR = re.compile(r"\balter\s+(?:role|user)\s+(" + _IDENT + r")\s+(?:with\s+)?[^;]{0,300}?\b(superuser|bypassrls|createrole)\b", re.I)
_CREATE_WITH = re.compile(r"\bcreate\s+(?:role|user|group)\s+(" + _IDENT + r")([^;]{0,2000})", re.I)
_MEMBERS = re.compile(r"\b(?:role|admin|user)\s+(" + _LIST + r")", re.I)
_PRIVILEGES = re.compile(r"^(?:all|select|insert|update|delete|truncate|references|trigger|usage|create|connect|temp|temporary"
                         r"|execute|maintain|set|alter\s+system)$", re.I)


def _names(text: str) -> list[str]:
    return [n[1:-1].replace('""', '"') if n.startswith('"') else n.lower() for n in re.findall(_IDENT, text)]


def escalations(statement: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(role, why, roles it was given) for each role a statement may make privileged: membership
    granted (``GRANT a TO b``, ``CREATE ROLE a ... ROLE b``), or SUPERUSER / BYPASSRLS / CREATEROLE
    given (``ALTER ROLE b BYPASSRLS``). Over-matching only makes the backstop louder."""
    out: list[tuple[str, str, tuple[str, ...]]] = []
    for m in _GRANT_ROLE.finditer(statement):
        granted = tuple(_names(m.group(1)))
        if any(_PRIVILEGES.match(g) for g in granted) or re.search(r"\bon\b", m.group(0), re.I):
            continue  # GRANT SELECT ON ... TO: an object privilege, not a role
        out += [(g, "granted_role:" + ",".join(granted), granted) for g in _names(m.group(2))]
    for m in _ALTER_ATTR.finditer(statement):
        out += [(n, "given:" + m.group(2).lower(), ()) for n in _names(m.group(1))]
    for m in _CREATE_WITH.finditer(statement):
        created = tuple(_names(m.group(1)))
        for mm in _MEMBERS.finditer(m.group(2)):
            out += [(n, "granted_role:" + ",".join(created), created) for n in _names(mm.group(1))]
    return out


_ROLES = """
SELECT r.rolname, r.rolsuper, r.rolbypassrls, r.rolcreaterole,
       ARRAY(SELECT p.rolname FROM pg_catalog.pg_roles p
             WHERE (p.rolsuper OR p.rolbypassrls) AND p.oid OPERATOR(pg_catalog.<>) r.oid
               AND pg_catalog.pg_has_role(r.oid, p.oid, 'MEMBER') ORDER BY 1) AS can_become,
       ARRAY(SELECT p.rolname FROM pg_catalog.pg_roles p
             WHERE (p.rolsuper OR p.rolbypassrls) AND p.oid OPERATOR(pg_catalog.<>) r.oid
               AND pg_catalog.pg_has_role(r.oid, p.oid, 'USAGE WITH ADMIN OPTION') ORDER BY 1) AS admin_of
FROM pg_catalog.pg_roles r
"""

_TABLES = """
SELECT t.target, c.relrowsecurity, c.relforcerowsecurity, o.rolname AS owner,
       EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid OPERATOR(pg_catalog.=) c.oid
               AND p.polname OPERATOR(pg_catalog.=) t.policy) AS policy
FROM ROWS FROM (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[])) AS t(target, policy)
JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(t.target)
JOIN pg_catalog.pg_roles o ON o.oid OPERATOR(pg_catalog.=) c.relowner
"""

_OWNER_MEMBERS = """
SELECT r.rolname FROM pg_catalog.pg_roles r, pg_catalog.pg_roles o
WHERE o.rolname OPERATOR(pg_catalog.=) $1 AND pg_catalog.pg_has_role(r.oid, o.oid, 'MEMBER')
"""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Which login roles the tripwire cannot cover, per armed table, read from one datastore."""

    #: role -> why row security does not bind it anywhere ("superuser", "member_of:dba", ...); a role
    #: absent from ``roles`` is unknown
    uncovered: Mapping[str, str]
    roles: frozenset[str]
    #: armed table -> why no session is covered there (row security off, policy gone), or None
    tables: Mapping[str, str | None]
    #: armed table -> roles that act as its owner while FORCE is off
    owners: Mapping[str, frozenset[str]]
    at: float

    def why(self, user: str, table: str) -> str | None:
        """Why the tripwire cannot see ``user`` reading the armed ``table``; None when it does."""
        if table not in self.tables:
            return "table_not_armed"
        if self.tables[table]:
            return self.tables[table]
        if user not in self.roles:
            return "unknown_role"
        if user in self.uncovered:
            return self.uncovered[user]
        if user in self.owners.get(table, frozenset()):
            return "owner_without_force"
        return None


async def read_snapshot(conn: asyncpg.Connection, policies: Mapping[str, str], at: float) -> Snapshot:
    """The datastore's roles and the row-security state of the armed tables (``policies``: table ->
    canary's policy name). Reads catalogs only: nothing here reaches pgaudit object audit."""
    version = int(await conn.fetchval("SELECT pg_catalog.current_setting('server_version_num')::int"))
    uncovered: dict[str, str] = {}
    roles: set[str] = set()
    for r in await conn.fetch(_ROLES):
        name = r["rolname"]
        roles.add(name)
        if r["rolsuper"]:
            uncovered[name] = "superuser"
        elif r["rolbypassrls"]:
            uncovered[name] = "bypassrls"
        elif r["can_become"]:
            uncovered[name] = f"member_of:{r['can_become'][0]}"
        elif r["admin_of"]:
            uncovered[name] = f"admin_of:{r['admin_of'][0]}"
        elif r["rolcreaterole"] and version < 160000:
            uncovered[name] = "createrole"
    targets = sorted(policies)
    tables: dict[str, str | None] = {t: "table_missing" for t in targets}
    owners: dict[str, frozenset[str]] = {}
    for r in await conn.fetch(_TABLES, targets, [policies[t] for t in targets]):
        t = r["target"]
        if not r["relrowsecurity"]:
            tables[t] = "row_security_off"
        elif not r["policy"]:
            tables[t] = "policy_missing"
        else:
            tables[t] = None
        if not r["relforcerowsecurity"]:
            owners[t] = frozenset(m["rolname"] for m in await conn.fetch(_OWNER_MEMBERS, r["owner"]))
    return Snapshot(uncovered, frozenset(roles), tables, owners, at)


def changes_roles(record: Mapping[str, Any]) -> bool:
    """A log record after which the snapshot may be wrong: a role or privilege change, or a change
    to row security or policies, seen as a pgaudit session line, a ``log_statement`` line or a line
    of canary's DDL guard."""
    message = record.get("message")
    if not isinstance(message, str):
        return False
    if message.startswith("AUDIT: SESSION,"):
        parts = message.split(",", 5)
        return len(parts) > 4 and parts[3] in ("ROLE", "DDL")
    if message.startswith("statement: "):
        return bool(_ROLE_CHANGE.match(message[11:]))
    return record.get("state_code") == "CY002"


def _audit_statement(message: str) -> str:
    try:
        return parse_audit(message).statement
    except ValueError:
        return message


class Backstop:
    """Decides which object-audit detections of one datastore speak (see the module docstring)."""

    def __init__(self, pool: asyncpg.Pool, datastore: str, dsn: str | None, *, privileged_reads: str = "all",
                 ttl: float = TTL, min_refresh: float = MIN_REFRESH) -> None:
        self.pool = pool
        self.datastore = datastore
        self.dsn = dsn
        self.privileged_reads = privileged_reads
        self.ttl = ttl
        self.min_refresh = min_refresh
        self.snapshot: Snapshot | None = None
        self.stale = False
        self.failed_at: float | None = None
        self.refreshes = 0
        #: role -> (why, roles given, until): escalations seen in the log (see :func:`escalations`)
        self.recent: dict[str, tuple[str, tuple[str, ...], float]] = {}
        #: roles created or altered lately: what the catalog says of them now may not have held then
        self.touched: dict[str, float] = {}

    def observe(self, record: Mapping[str, Any]) -> None:
        # a RAISE can imitate a GRANT line; believing it would let anyone make the application role
        # page (and get it silenced). Genuine lines of statements run inside functions are not RAISEs.
        if not changes_roles(record) or raised_by_plpgsql(record):
            return
        self.stale = True
        message = str(record.get("message"))
        statement = message[11:] if message.startswith("statement: ") else _audit_statement(message)
        now = asyncio.get_running_loop().time()
        self.recent = {k: v for k, v in self.recent.items() if v[2] > now}
        self.touched = {k: v for k, v in self.touched.items() if v > now}
        for role, why, given in escalations(statement[:20_000]):
            self.recent[role] = (why, given, now + RECENT)
        for m in re.finditer(r"\b(?:create|alter)\s+(?:role|user|group)\s+(" + _IDENT + r")", statement[:20_000], re.I):
            self.touched.update((n, now + RECENT) for n in _names(m.group(1)))

    async def keep(self, detection: Detection) -> bool:
        """Whether ``detection`` becomes an event (see :meth:`judge`)."""
        return await self.judge(detection) is None

    async def judge(self, detection: Detection) -> str | None:
        """Why ``detection`` is left quiet (``"tripwire"``: row security covers the session;
        ``"privileged_reads"``: the setting keeps a privileged session's filtered reads quiet), or None
        when it becomes an event. Only object-audit lines on tables are judged; the evidence of a kept
        one says why the tripwire could not cover it (``uncovered``)."""
        ev = detection.evidence
        if ev.get("signal") != "pgaudit" or ev.get("object_type") != "TABLE":
            return None
        user = detection.actor.get("user")
        why = await self._why(str(user), str(ev.get("table") or "")) if user else "no_user"
        if why == "table_not_armed":
            return None  # a copy or another object granted to the audit role: object audit is its only cover
        if why is None:
            return "tripwire"
        ev["uncovered"] = why
        if self.privileged_reads == "exports" and detection.kind is EventKind.READ:
            return "privileged_reads"
        return None

    async def _why(self, user: str, table: str) -> str | None:
        snap = await self._current(user)
        if snap is None:
            return "privileges_unknown"
        why = snap.why(user, table)
        if why is not None or user not in self.recent:
            return why
        reason, given, until = self.recent[user]
        now = asyncio.get_running_loop().time()
        if until <= now:
            return None
        # a grant of roles that exist, are ordinary and were not created or altered lately is harmless
        if given and all(g in snap.roles and g not in snap.uncovered and self.touched.get(g, 0) <= now for g in given):
            return None
        return reason

    async def _current(self, user: str) -> Snapshot | None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        snap = self.snapshot
        due = snap is None or self.stale or now - snap.at > self.ttl or user not in snap.roles
        if not due:
            return snap
        if snap is None and self.failed_at is not None and now - self.failed_at < RETRY_AFTER_FAILURE:
            return None  # the datastore did not answer a moment ago: speak now, never wait on it
        last = snap.at if snap is not None else None
        if last is not None and now - last < self.min_refresh:
            if snap is not None and not self.stale and user not in snap.roles:
                return snap  # an unknown role was re-read a moment ago: it stays unknown
            await asyncio.sleep(self.min_refresh - (now - last))
        return await self._refresh()

    async def _refresh(self) -> Snapshot | None:
        loop = asyncio.get_running_loop()
        self.stale = False
        if self.dsn is None:
            return None
        try:
            policies = await detection_objects.policies(self.pool, self.datastore)
            conn = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT, command_timeout=CONNECT_TIMEOUT)
            try:
                self.snapshot = await read_snapshot(conn, policies, loop.time())
            finally:
                await conn.close()
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("backstop.snapshot_failed", datastore=self.datastore, error=type(exc).__name__)
            self.failed_at = loop.time()
            self.snapshot = None
            return None
        self.refreshes += 1
        return self.snapshot


def for_datastore(pool: asyncpg.Pool, ds: DatastoreConfig | None, name: str, privileged_reads: str) -> Backstop:
    """The backstop of datastore ``name`` (``ds`` its configuration; without one every line speaks)."""
    return Backstop(pool, name, ds.dsn.reveal() if ds is not None else None, privileged_reads=privileged_reads)
