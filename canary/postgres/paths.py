"""Privileged paths to canary tables: objects that read an armed table without row security.

Row security on a table is applied as the role that *reads* it. A view without ``security_invoker``
reads its tables as the view's owner, a SECURITY DEFINER function runs as its owner, and a
materialized view is a copy that has no row security at all. When that owner is a superuser, has
BYPASSRLS or can become such a role (see :mod:`canary.postgres.backstop`), the tripwire never sees
the rows any caller gets through the object. :func:`privileged_objects` lists them from the catalog:

* ``view``: covered by object audit once the audit role may SELECT the view (pgaudit then logs a
  ``VIEW`` line for every read through it, by anyone, and the backstop always lets it speak);
* ``materialized_view``: the same (a copy: object audit is its only cover);
* ``function``: **not covered**. pgaudit object audit does not log the statements inside a
  SECURITY DEFINER function (measured on PostgreSQL 15 with pgaudit 1.7: SQL and PL/pgSQL bodies
  alike), so the report lists each one as an open path. A function body is matched by the table's
  name, so the list may hold functions that only mention it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from canary.postgres.backstop import Snapshot

#: Views and materialized views that depend on an armed table (directly, or through other views),
#: with the view that reads the table itself.
_DEPENDENTS = """
WITH RECURSIVE dep(viewoid, depth) AS (
    SELECT DISTINCT r.ev_class, 1
    FROM pg_catalog.pg_depend d
    JOIN pg_catalog.pg_rewrite r ON r.oid OPERATOR(pg_catalog.=) d.objid
    WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass
      AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
      AND d.refobjid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])
      AND r.ev_class OPERATOR(pg_catalog.<>) d.refobjid
)
SELECT c.oid, n.nspname, c.relname, c.relkind::text AS relkind, o.rolname AS owner,
       coalesce(c.reloptions::text[] && ARRAY['security_invoker=true', 'security_invoker=on', 'security_invoker=1'],
                false) AS invoker
FROM dep JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) dep.viewoid
JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
JOIN pg_catalog.pg_roles o ON o.oid OPERATOR(pg_catalog.=) c.relowner
WHERE c.relkind IN ('v', 'm')
ORDER BY n.nspname, c.relname
"""

_FUNCTIONS = """
SELECT p.oid, n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid) AS args,
       o.rolname AS owner, p.prosrc,
       ARRAY(SELECT d.refobjid::pg_catalog.regclass::text FROM pg_catalog.pg_depend d
             WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
               AND d.objid OPERATOR(pg_catalog.=) p.oid
               AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
               AND d.refobjid OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.oid[])) AS deps
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
JOIN pg_catalog.pg_roles o ON o.oid OPERATOR(pg_catalog.=) p.proowner
WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND NOT (n.nspname = ANY ($2::text[]))
ORDER BY n.nspname, p.proname
"""

_OIDS = """
SELECT t.target, c.oid, c.relname FROM pg_catalog.unnest($1::text[]) AS t(target)
JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(t.target)
"""


@dataclass(frozen=True, slots=True)
class PrivilegedObject:
    """A view, materialized view or function that reads an armed table without row security."""

    kind: str  # "view" | "materialized_view" | "function"
    schema: str
    relname: str  # a function: its name with its argument types
    owner: str
    why: str  # why row security does not bind it ("owner superuser", "a copy", ...)
    cover: str  # "object_audit" or "none"

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.relname}"


async def privileged_objects(conn: asyncpg.Connection, tables: Sequence[str], snapshot: Snapshot,
                             private_schemas: Sequence[str] = ()) -> list[PrivilegedObject]:
    """The objects through which the armed ``tables`` are read without row security (catalog reads
    only). ``snapshot`` says which owners row security does not bind; ``private_schemas`` (canary's
    own detection schemas) are left out."""
    found = await conn.fetch(_OIDS, list(tables))
    oids = [r["oid"] for r in found]
    names = sorted({r["relname"] for r in found})
    if not oids:
        return []
    out: list[PrivilegedObject] = []
    for r in await conn.fetch(_DEPENDENTS, oids):
        at = (r["nspname"], r["relname"], r["owner"])
        if r["relkind"] == "m":
            out.append(PrivilegedObject("materialized_view", *at, "a copy: materialized views have no row security",
                                        "object_audit"))
        elif not r["invoker"] and (why := _owner_uncovered(snapshot, r["owner"])):
            out.append(PrivilegedObject("view", *at, f"reads as its {why}", "object_audit"))
    mention = re.compile(r"\b(?:" + "|".join(re.escape(n) for n in names) + r")\b", re.I)
    for r in await conn.fetch(_FUNCTIONS, oids, list(private_schemas)):
        why = _owner_uncovered(snapshot, r["owner"])
        if not why or not (r["deps"] or mention.search(r["prosrc"] or "")):
            continue
        out.append(PrivilegedObject("function", r["nspname"], f"{r['proname']}({r['args']})", r["owner"],
                                    f"SECURITY DEFINER as {why}: pgaudit does not log its statements", "none"))
    return out


def _owner_uncovered(snapshot: Snapshot, owner: str) -> str | None:
    why = snapshot.uncovered.get(owner)
    return f"owner {why}" if why else None


def audit_grants(objects: Sequence[PrivilegedObject]) -> list[tuple[str, str]]:
    """(schema, name) of the relations the audit role must be able to SELECT so that object audit
    covers them."""
    return [(o.schema, o.relname) for o in objects if o.cover == "object_audit"]


def by_kind(objects: Sequence[PrivilegedObject]) -> Mapping[str, list[PrivilegedObject]]:
    out: dict[str, list[PrivilegedObject]] = {}
    for o in objects:
        out.setdefault(o.kind, []).append(o)
    return out
