"""Managed PostgreSQL: what canary's detection needs from a server whose admin role is not a superuser,
and where the provider lets it be set.

On Amazon RDS / Aurora, Cloud SQL and Azure Database for PostgreSQL nobody gets a superuser. The admin
role has CREATEROLE and CREATEDB and is a member of the provider's role (``rds_superuser``,
``cloudsqlsuperuser``, ``azure_pg_admin``); server-level settings (``log_*``, ``shared_preload_libraries``,
``pgaudit.*``) come from the provider's parameter group, database flags or server parameters, never from
``ALTER SYSTEM``, and ``pgaudit.*`` are superuser-only settings, so the admin cannot ``SET`` them either.
What that changes for canary, measured on PostgreSQL 15 as a role like the providers' admin:

* the tripwire works unchanged when the role owns the canary tables (or is a member of their owner): the
  schema, the touch function (SECURITY DEFINER, owned by that role), the policies, FORCE row security
  and the credential canaries' roles need no superuser. ``pg_read_all_data`` does not bypass row
  security, so it neither lets the seeder read quietly nor hides a read from the tripwire;
* ``canary coverage audit`` creates the audit role and its grants, and the pgaudit extension where the
  provider allows the admin to (all three do; a self-managed server needs a superuser: pgaudit is not a
  trusted extension), but ``pgaudit.role``, ``pgaudit.log`` and ``pgaudit.log_parameter`` are for the
  provider's console: :func:`requirements` names each with its value;
* the DDL guard's event trigger: PostgreSQL lets only superusers create event triggers; RDS and Cloud SQL
  let their admin role do it, Azure and a self-managed server do not. Without it, DDL on the detection
  objects is reported from pgaudit's DDL session lines (``pgaudit.log`` includes ``ddl``; not
  ``log_statement = 'ddl'``, which writes the passwords of ``CREATE ROLE`` - credential canaries - in
  clear) and the scheduled verify confirms the damage;
* ``shared_preload_libraries`` is readable only with ``pg_read_all_settings`` (or ``pg_monitor``); the
  providers' pages do not list which predefined roles their admin holds, so canary reads the role's
  memberships from the catalog and, without that one, takes pgaudit's own settings in ``pg_settings`` as
  the sign that the library is loaded (a placeholder an unloaded library leaves is not listed there);
  likewise a role outside ``pg_read_all_stats`` is told the replication watch cannot see other roles'
  WAL senders in full.

The provider (:func:`provider`) only chooses the words: which console, which parameter names (Cloud SQL
loads pgaudit with the flag ``cloudsql.enable_pgaudit``, Azure also allow-lists it in ``azure.extensions``,
RDS accepts only ``rds_pgaudit`` as ``pgaudit.role``). What canary does follows the role's own rights,
read from the catalog: a role named ``rds_superuser`` created on a self-managed server changes a message,
never what is installed or checked.

Sources (documentation):

* PostgreSQL: https://www.postgresql.org/docs/14/predefined-roles.html (``pg_read_all_data`` /
  ``pg_write_all_data`` do not have BYPASSRLS), https://www.postgresql.org/docs/current/sql-createeventtrigger.html
  (only superusers create event triggers);

* RDS: https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Appendix.PostgreSQL.CommonDBATasks.Roles.rds_superuser.html
  (``postgres`` is NOSUPERUSER CREATEDB CREATEROLE, member of rds_superuser),
  https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Appendix.PostgreSQL.CommonDBATasks.pgaudit.auditing.html
  (object audit: ``pgaudit.role`` in the custom parameter group, whose only allowed value is ``rds_pgaudit``),
  https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/PostgreSQL.Concepts.General.FeatureSupport.EventTriggers.html
  (the main user creates event triggers);
* Cloud SQL: https://cloud.google.com/sql/docs/postgres/users (cloudsqlsuperuser: extensions that need a
  superuser, event triggers), https://cloud.google.com/sql/docs/postgres/pg-audit (flag
  ``cloudsql.enable_pgaudit``, then CREATE EXTENSION, then the ``pgaudit.log`` flag),
  https://cloud.google.com/alloydb/docs/pgaudit/configure-log-behavior (``pgaudit.role`` as a flag);
* Azure: https://learn.microsoft.com/en-us/training/modules/secure-azure-database-for-postgresql/3-describe-built-server-roles
  (admin: NOSUPERUSER CREATEDB CREATEROLE REPLICATION, member of azure_pg_admin),
  https://learn.microsoft.com/en-us/azure/postgresql/flexible-server/concepts-audit (``azure.extensions``
  and ``shared_preload_libraries`` in the server parameters, CREATE EXTENSION; ``pgaudit.log`` without
  the ``-class`` form).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

from canary.postgres.tamper import EVENT_TRIGGER
from canary.seeder import ServerSetting

PROVIDERS = ("self", "rds", "aurora", "cloudsql", "azure")
#: the provider's admin group role -> provider
PROVIDER_ROLES = {"rds_superuser": "rds", "cloudsqlsuperuser": "cloudsql", "azure_pg_admin": "azure"}
WHERE = {
    "self": "postgresql.conf (or ALTER SYSTEM as a superuser), then reload",
    "rds": "the DB instance's custom DB parameter group (aws rds modify-db-parameter-group)",
    "aurora": "the DB cluster parameter group (aws rds modify-db-cluster-parameter-group)",
    "cloudsql": "the instance's database flags (gcloud sql instances patch --database-flags)",
    "azure": "the server parameters (az postgres flexible-server parameter set)",
}
#: providers whose admin role may create event triggers (PostgreSQL itself: superusers only)
EVENT_TRIGGER_ADMINS = frozenset({"rds", "aurora", "cloudsql"})
RDS_AUDIT_ROLE = "rds_pgaudit"
_SETTINGS = ("shared_preload_libraries", "log_connections", "log_error_verbosity", "log_min_messages", "log_destination",
             "log_line_prefix", "log_statement", "pgaudit.role", "pgaudit.log", "pgaudit.log_parameter", "pgaudit.log_level")


@dataclass(frozen=True, slots=True)
class ServerRole:
    """The rights of the role canary connects as, and where the server runs."""

    name: str
    superuser: bool
    bypassrls: bool
    createrole: bool
    read_settings: bool  # superuser or pg_read_all_settings: may read shared_preload_libraries
    read_stats: bool  # superuser or pg_read_all_stats (pg_monitor): sees other roles' WAL senders in full
    provider: str
    detected: bool  # provider read from the server's roles (not configured)

    @property
    def managed(self) -> bool:
        return not self.superuser

    @property
    def event_triggers(self) -> bool:
        """Whether this role can be expected to create an event trigger."""
        return self.superuser or self.provider in EVENT_TRIGGER_ADMINS


async def provider(conn: asyncpg.Connection, configured: str = "auto") -> tuple[str, bool]:
    """(provider, detected): the configured one, or the one whose admin group role the server has (Aurora:
    RDS's roles and the ``aurora_version()`` function); "self" when none."""
    if configured != "auto":
        return configured, False
    names = {r["rolname"] for r in await conn.fetch(
        "SELECT rolname FROM pg_catalog.pg_roles WHERE rolname = ANY($1::text[])", list(PROVIDER_ROLES))}
    for role, name in PROVIDER_ROLES.items():
        if role in names:
            if name == "rds" and await conn.fetchval("SELECT pg_catalog.to_regproc('aurora_version') IS NOT NULL"):
                return "aurora", True
            return name, True
    return "self", True


async def server_role(conn: asyncpg.Connection, configured: str = "auto") -> ServerRole:
    """The connected role's rights (from the catalog) and the provider."""
    r = await conn.fetchrow(
        "SELECT rolname, rolsuper, rolbypassrls, rolcreaterole,"
        " rolsuper OR pg_catalog.pg_has_role(current_user, 'pg_read_all_settings', 'USAGE') AS read_settings,"
        " rolsuper OR pg_catalog.pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS read_stats"
        " FROM pg_catalog.pg_roles WHERE rolname = current_user")
    name, detected = await provider(conn, configured)
    return ServerRole(r["rolname"], r["rolsuper"], r["rolbypassrls"], r["rolcreaterole"], r["read_settings"],
                      r["read_stats"], name, detected)


async def read_settings(conn: asyncpg.Connection) -> dict[str, str]:
    """The settings detection relies on, as far as this role may read them (a superuser-only one it may
    not read is absent)."""
    rows = await conn.fetch("SELECT name, setting FROM pg_catalog.pg_settings WHERE name = ANY($1::text[])", list(_SETTINGS))
    return {r["name"]: str(r["setting"]) for r in rows}


def pgaudit_loaded(settings: Mapping[str, str]) -> bool | None:
    """Whether pgaudit is in shared_preload_libraries (None: unknown). A role that may not read that
    setting still sees pgaudit's own settings, which ``pg_settings`` lists only for a loaded library."""
    libs = settings.get("shared_preload_libraries")
    if libs is not None:
        return "pgaudit" in [x.strip().strip('"') for x in libs.split(",")]
    return "pgaudit.log_level" in settings


def audit_classes(setting: object) -> frozenset[str]:
    """The session classes ``pgaudit.log`` enables (``all`` expanded, ``-class`` removed)."""
    every = {"read", "write", "function", "role", "ddl", "misc", "misc_set"}
    items = [i.strip() for i in str(setting or "").lower().split(",")]
    out: set[str] = set(every) if "all" in items else set()
    out |= {i for i in items if i in every}
    out -= {i[1:].strip() for i in items if i.startswith("-")}
    return frozenset(out)


async def requirements(conn: asyncpg.Connection, role: ServerRole, audit_role: str, *,
                       audit_configured: bool | None = None) -> tuple[list[ServerSetting], list[str]]:
    """(settings, notes): the server settings detection relies on that are not as they must be, each with
    where ``role.provider`` sets it, and how detection works differently under this role.

    ``audit_configured``: whether object audit was set up (default: the audit role exists in the
    datastore); until it is, pgaudit's settings are advice, afterwards they are required."""
    s = await read_settings(conn)
    where = WHERE[role.provider]
    out: list[ServerSetting] = []
    notes: list[str] = []
    if audit_configured is None:
        audit_configured = bool(await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)", audit_role))

    def need(setting: str, value: str, why: str, required: bool = True, at: str = where) -> None:
        out.append(ServerSetting(setting, value, s.get(setting, f"unreadable by {role.name}"), at, why, required))

    if s.get("log_min_messages") in ("fatal", "panic"):
        need("log_min_messages", "warning", "the tripwire's read lines (CY001) and pgaudit's are written at level LOG")
    if s.get("log_error_verbosity") == "terse":
        need("log_error_verbosity", "default", "terse drops DETAIL and HINT: the read line's detail and its MAC")
    if s.get("log_connections") != "on":
        need("log_connections", "on", "logins of credential canaries' roles, and who each session is (client address, "
             "user) for every read it makes")
    dest = {d.strip() for d in s.get("log_destination", "stderr").split(",")}
    prefix = s.get("log_line_prefix", "")
    if not dest & {"jsonlog", "csvlog"} and "%e" not in prefix and s.get("log_error_verbosity") != "verbose":
        need("log_line_prefix", f"includes %e (now {prefix!r})", "stderr lines carry no SQLSTATE: canary's own lines are "
             "then known by their text and MAC alone, and other records by their text; with %e (or log_error_verbosity "
             "= verbose, or log_destination = csvlog) every record carries its SQLSTATE", required=False)
    out.extend(_pgaudit(s, role, audit_role, audit_configured, where))
    note, ddl = await _ddl_guard(conn, s, role)
    notes.extend(note)
    classes = audit_classes(s.get("pgaudit.log"))
    missing = ({"role"} if pgaudit_loaded(s) else set()) | ({"ddl"} if ddl else set())
    if missing - classes:
        why = []
        if "role" in missing - classes:
            why.append("role changes (GRANT, ALTER ROLE) refresh the backstop's view of who row security binds")
        if "ddl" in missing - classes:
            why.append("without the DDL guard, DDL log lines report a dropped policy or disabled row security as it happens "
                       "(not log_statement = 'ddl': it logs CREATE ROLE statements whole, the credential canaries' secrets with them)")
        need("pgaudit.log", "includes " + ", ".join(sorted(missing | classes)), "; ".join(why), required=False)
    if not role.read_stats:
        out.append(ServerSetting(
            "role membership", "pg_monitor", f"{role.name} is not a member of pg_read_all_stats",
            f"GRANT pg_monitor TO {role.name} (as the provider's admin)",
            "pg_stat_replication hides other roles' WAL senders' client addresses and replay positions from it: the "
            "replication watch cannot tell a configured standby from an unknown one", False))
    if role.managed:
        notes.append(f"{role.name} is not a superuser (provider {role.provider}{', detected' if role.detected else ''}): "
                     f"server settings above are set in {where}, never by canary; the tripwire needs {role.name} to own "
                     "each canary table (or be a member of its owner): pg_read_all_data does not bypass row security")
    return out, notes


def _pgaudit(s: Mapping[str, str], role: ServerRole, audit_role: str, configured: bool, where: str) -> list[ServerSetting]:
    """pgaudit's settings: object audit speaks for the sessions row security cannot bind."""
    why_audit = ("pgaudit object audit reports reads and pg_dump by superusers, BYPASSRLS roles and the tables' "
                 "owners, which row security never sees")
    out: list[ServerSetting] = []

    def need(setting: str, value: str, why: str, required: bool = configured, at: str = where) -> None:
        out.append(ServerSetting(setting, value, s.get(setting, f"unreadable by {role.name}"), at, why, required))

    loaded = pgaudit_loaded(s)
    if not loaded:
        if role.provider == "cloudsql":
            need("cloudsql.enable_pgaudit", "on", why_audit + " (then canary coverage audit creates the extension)")
        elif role.provider == "azure":
            need("azure.extensions", "includes PGAUDIT", why_audit + " (allow-list, then load it)")
            need("shared_preload_libraries", "includes pgaudit", why_audit + " (restart; then canary coverage audit)")
        else:
            need("shared_preload_libraries", "includes pgaudit", why_audit + " (restart; then canary coverage audit)")
        return out
    if role.provider in ("rds", "aurora") and audit_role != RDS_AUDIT_ROLE:
        need("coverage.pgaudit_role", RDS_AUDIT_ROLE, "RDS accepts only rds_pgaudit as pgaudit.role",
             at="canary's configuration ([coverage] pgaudit_role), then canary coverage audit")
    want = RDS_AUDIT_ROLE if role.provider in ("rds", "aurora") else audit_role
    if s.get("pgaudit.role") != want:
        need("pgaudit.role", want, why_audit)
    if s.get("pgaudit.log_parameter", "off") != "off":
        need("pgaudit.log_parameter", "off", "bind parameters can hold canary values: the log must not keep them", True)
    return out


async def _ddl_guard(conn: asyncpg.Connection, s: Mapping[str, str], role: ServerRole) -> tuple[list[str], bool]:
    """(notes, wants DDL lines): the DDL guard (event trigger) and what covers DDL tampering without it."""
    names = [f"{EVENT_TRIGGER}_end", f"{EVENT_TRIGGER}_drop"]
    present = int(await conn.fetchval(
        "SELECT count(*) FROM pg_catalog.pg_event_trigger WHERE evtname = ANY($1::text[]) AND evtenabled <> 'D'", names))
    if present == len(names):
        return [], False
    if role.event_triggers:
        why = "the DDL guard event trigger is not installed (canary coverage audit installs it)"
    elif role.provider == "self":
        why = f"the DDL guard event trigger cannot be installed: PostgreSQL lets only superusers create event triggers ({role.name} is not one)"
    else:
        why = (f"the DDL guard event trigger cannot be installed: PostgreSQL lets only superusers create event triggers "
               f"and {role.provider} does not let its admin role")
    if "ddl" in audit_classes(s.get("pgaudit.log")) or s.get("log_statement") in ("ddl", "mod", "all"):
        return [why + "; DDL on the detection objects is reported from the DDL log lines instead, and the scheduled "
                "verify confirms any damage"], False
    return [why + "; until pgaudit.log includes ddl, DDL tampering (a dropped policy, row security disabled) is found "
            "only by the scheduled verify"], True
