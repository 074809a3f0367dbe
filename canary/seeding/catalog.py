"""Introspection of a PostgreSQL table through the system catalog, with parameterised queries only.

The result is a frozen :class:`TableInfo`: columns (type, NOT NULL, default, identity, generated),
primary key, unique / check / foreign-key constraints, row-level-security state, existing policies,
dependent views and the tables that reference it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import asyncpg

from canary.errors import DatastoreError
from canary.postgres.sql import parse_target


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str  # format_type(): valid SQL type text, e.g. "character varying(40)"
    category: str  # pg_type.typcategory of the (domain's base) type: N S D B U A E ...
    base_type: str  # base type name, e.g. "varchar", "int8", "timestamptz", "uuid"
    not_null: bool
    default: str | None
    identity: str  # '' | 'a' (ALWAYS) | 'd' (BY DEFAULT)
    generated: bool
    max_length: int | None  # varchar(n) / char(n)
    numeric_precision: int | None
    numeric_scale: int | None
    enum_labels: tuple[str, ...] = ()

    @property
    def has_default(self) -> bool:
        return self.default is not None or bool(self.identity)


@dataclass(frozen=True, slots=True)
class Constraint:
    name: str
    kind: str  # p u c f x (exclusion) or 'i' for a unique index without a constraint
    columns: tuple[str, ...]
    definition: str
    ref_target: str | None = None  # for 'f': referenced "schema.table"
    ref_columns: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Reference:
    """A foreign key of another table that points at this one (a child table)."""

    child_target: str
    constraint: str
    columns: tuple[str, ...]
    ref_columns: tuple[str, ...]


class Policy(NamedTuple):
    """A row-level security policy of the table as the catalog holds it."""

    name: str
    permissive: bool
    cmd: str  # r (SELECT), a, w, d, * (ALL)
    qual: str | None  # its USING expression, as pg_get_expr renders it
    roles: tuple[str, ...]  # 'public' or role names


@dataclass(frozen=True, slots=True)
class TableInfo:
    schema: str
    name: str
    oid: int
    kind: str  # relkind
    owner: str
    rls_enabled: bool
    rls_forced: bool
    columns: tuple[Column, ...]
    constraints: tuple[Constraint, ...]
    policies: tuple[Policy, ...]
    views: tuple[tuple[str, str, bool], ...]  # (view, relkind, security_invoker)
    children: tuple[Reference, ...] = ()
    triggers: tuple[str, ...] = ()
    estimated_rows: int = 0
    pk_sequence: str | None = None  # sequence behind a serial / identity primary key
    _by_name: dict[str, Column] = field(default_factory=dict, compare=False, repr=False)

    @property
    def target(self) -> str:
        return f"{self.schema}.{self.name}"

    def column(self, name: str) -> Column:
        if not self._by_name:
            self._by_name.update({c.name: c for c in self.columns})
        return self._by_name[name]

    @property
    def primary_key(self) -> tuple[str, ...]:
        for c in self.constraints:
            if c.kind == "p":
                return c.columns
        return ()

    def unique_sets(self) -> list[tuple[str, ...]]:
        return [c.columns for c in self.constraints if c.kind in ("p", "u", "i")]

    def foreign_keys(self) -> list[Constraint]:
        return [c for c in self.constraints if c.kind == "f"]

    def checks(self) -> list[Constraint]:
        return [c for c in self.constraints if c.kind == "c"]


async def introspect(conn: asyncpg.Connection, target: str, *, datastore: str = "") -> TableInfo:
    """Describe ``schema.table``; :class:`UnsafeIdentifierError` / :class:`DatastoreError` otherwise."""
    schema, name = parse_target(target)
    rel = await conn.fetchrow(
        """
        SELECT c.oid, c.relkind::text AS relkind, c.relrowsecurity, c.relforcerowsecurity,
               pg_catalog.pg_get_userbyid(c.relowner) AS owner, greatest(c.reltuples, 0)::bigint AS est
        FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = $2
        """,
        schema, name,
    )
    where = f" in datastore {datastore!r}" if datastore else ""
    if rel is None:
        raise DatastoreError(f"table {schema}.{name} does not exist{where}", target=f"{schema}.{name}")
    if rel["relkind"] not in ("r", "p"):
        raise DatastoreError(f"{schema}.{name}{where} is not a table (relkind {rel['relkind']!r})", target=f"{schema}.{name}")
    oid = rel["oid"]
    cols = await conn.fetch(
        """
        SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type,
               coalesce(bt.typcategory, t.typcategory)::text AS category,
               coalesce(bt.typname, t.typname) AS base_type,
               coalesce(bt.oid, t.oid) AS base_oid,
               a.atttypmod, a.attnotnull OR coalesce(t.typnotnull, false) AS not_null,
               coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid), CASE WHEN t.typtype = 'd' THEN t.typdefault END) AS dflt,
               a.attidentity::text AS identity, a.attgenerated::text AS generated,
               CASE WHEN coalesce(bt.typtype, t.typtype) = 'e' THEN
                    ARRAY(SELECT e.enumlabel::text FROM pg_catalog.pg_enum e
                          WHERE e.enumtypid = coalesce(bt.oid, t.oid) ORDER BY e.enumsortorder) END AS labels
        FROM pg_catalog.pg_attribute a
        JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_catalog.pg_type bt ON t.typtype = 'd' AND bt.oid = t.typbasetype
        LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        oid,
    )
    columns = tuple(_column(r) for r in cols)
    names_by_num = {
        r["attnum"]: r["attname"]
        for r in await conn.fetch(
            "SELECT attnum, attname FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped", oid
        )
    }
    cons = await conn.fetch(
        """
        SELECT con.conname, con.contype::text AS kind, con.conkey, con.confkey,
               pg_catalog.pg_get_constraintdef(con.oid) AS def, fn.nspname AS ref_schema, fc.relname AS ref_table,
               ARRAY(SELECT fa.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o)
                     JOIN pg_catalog.pg_attribute fa ON fa.attrelid = con.confrelid AND fa.attnum = k.n ORDER BY k.o) AS ref_cols
        FROM pg_catalog.pg_constraint con
        LEFT JOIN pg_catalog.pg_class fc ON fc.oid = con.confrelid
        LEFT JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace
        WHERE con.conrelid = $1 AND con.contype IN ('p', 'u', 'c', 'f', 'x')
        ORDER BY con.contype, con.conname
        """,
        oid,
    )
    constraints = [
        Constraint(
            name=r["conname"], kind=r["kind"], columns=tuple(names_by_num[n] for n in (r["conkey"] or ())),
            definition=r["def"],
            ref_target=f"{r['ref_schema']}.{r['ref_table']}" if r["ref_table"] else None,
            ref_columns=tuple(r["ref_cols"] or ()),
        )
        for r in cons
    ]
    idx = await conn.fetch(
        """
        SELECT ic.relname, i.indkey::int2[] AS keys, i.indexprs IS NOT NULL OR i.indpred IS NOT NULL AS partial
        FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
        WHERE i.indrelid = $1 AND i.indisunique
          AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c WHERE c.conindid = i.indexrelid)
        """,
        oid,
    )
    for r in idx:
        if not r["partial"] and all(k > 0 for k in r["keys"]):
            constraints.append(Constraint(r["relname"], "i", tuple(names_by_num[k] for k in r["keys"]), "unique index"))
    policies = await conn.fetch(
        "SELECT polname, polpermissive, polcmd::text AS cmd, pg_catalog.pg_get_expr(polqual, polrelid) AS qual,"
        " ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END FROM unnest(polroles) AS r ORDER BY 1) AS roles"
        " FROM pg_catalog.pg_policy WHERE polrelid = $1 ORDER BY polname", oid
    )
    views = await conn.fetch(
        """
        SELECT DISTINCT v.oid::regclass::text AS view, v.relkind::text AS kind,
               coalesce(v.reloptions::text[] && ARRAY['security_invoker=true', 'security_invoker=on',
                                                        'security_invoker=1', 'security_invoker=yes'], false) AS invoker
        FROM pg_catalog.pg_depend d
        JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid
        JOIN pg_catalog.pg_class v ON v.oid = r.ev_class
        WHERE d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.refobjid = $1 AND v.oid <> $1
        ORDER BY 1
        """,
        oid,
    )
    children = await conn.fetch(
        """
        SELECT n.nspname || '.' || c.relname AS child, con.conname,
               ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o)
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o) AS cols,
               ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o)
                     JOIN pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o) AS refcols
        FROM pg_catalog.pg_constraint con
        JOIN pg_catalog.pg_class c ON c.oid = con.conrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE con.confrelid = $1 AND con.contype = 'f' AND con.conrelid <> $1
        ORDER BY 1, 2
        """,
        oid,
    )
    triggers = await conn.fetch(
        "SELECT tgname FROM pg_catalog.pg_trigger WHERE tgrelid = $1 AND NOT tgisinternal ORDER BY tgname", oid
    )
    pk_cols = next((c.columns for c in constraints if c.kind == "p"), ())
    seq = None
    if len(pk_cols) == 1:
        seq = await conn.fetchval(
            """
            SELECT s.oid::regclass::text FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class s ON s.oid = d.objid
            JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
            WHERE d.refobjid = $1 AND a.attname = $2 AND s.relkind = 'S' AND d.deptype IN ('a', 'i')
            """,
            oid, pk_cols[0],
        )
    return TableInfo(
        schema=schema, name=name, oid=oid, kind=rel["relkind"], owner=rel["owner"],
        rls_enabled=rel["relrowsecurity"], rls_forced=rel["relforcerowsecurity"],
        columns=columns, constraints=tuple(constraints),
        policies=tuple(Policy(r["polname"], r["polpermissive"], r["cmd"], r["qual"], tuple(r["roles"])) for r in policies),
        views=tuple((r["view"], r["kind"], r["invoker"]) for r in views),
        children=tuple(Reference(r["child"], r["conname"], tuple(r["cols"]), tuple(r["refcols"])) for r in children),
        triggers=tuple(r["tgname"] for r in triggers),
        estimated_rows=int(rel["est"]),
        pk_sequence=seq,
    )


def _column(r: asyncpg.Record) -> Column:
    typmod = r["atttypmod"]
    base = r["base_type"]
    max_len = typmod - 4 if base in ("varchar", "bpchar") and typmod > 4 else None
    prec = scale = None
    if base == "numeric" and typmod > 4:
        prec, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
    return Column(
        name=r["attname"], type=r["type"], category=r["category"], base_type=base, not_null=r["not_null"],
        default=r["dflt"], identity=r["identity"] or "", generated=bool(r["generated"]),
        max_length=max_len, numeric_precision=prec, numeric_scale=scale, enum_labels=tuple(r["labels"] or ()),
    )


def unsupported_reason(info: TableInfo) -> str | None:
    """Why canary cannot seed this table, or None."""
    if len(info.primary_key) != 1:
        return "has no single-column primary key (canary rows are addressed by one key column)"
    if info.kind == "p":
        return "is partitioned (read detection must be installed per partition)"
    return None


def column_names(cols: Sequence[Column]) -> list[str]:
    return [c.name for c in cols]


@dataclass(frozen=True, slots=True)
class CheckHint:
    """What a single-column CHECK constraint allows, when it is a simple list or range."""

    allowed: tuple[str, ...] = ()  # col IN ('a', 'b')  /  col = ANY (ARRAY[...])
    low: float | None = None
    high: float | None = None
    low_strict: bool = False
    high_strict: bool = False


_ANY_ARRAY = re.compile(r"=\s*ANY\s*\(+ARRAY\[(.*)\]", re.S)
_LITERAL = re.compile(r"'((?:[^']|'')*)'")
_BOUND = re.compile(r"\(?\"?([A-Za-z_][\w$]*)\"?\)?(?:::[\w ]+)?\s*(>=|<=|>|<)\s*\(?'?(-?\d+(?:\.\d+)?)'?\)?")


def check_hints(info: TableInfo) -> dict[str, CheckHint]:
    """Allowed values and numeric bounds of each column from its single-column CHECK constraints
    (``pg_get_constraintdef`` text); anything more complex is left to the insert-and-regenerate loop."""
    out: dict[str, CheckHint] = {}
    for con in info.checks():
        if len(con.columns) != 1:
            continue
        col = con.columns[0]
        hint = out.get(col, CheckHint())
        if " OR " in con.definition:
            continue
        m = _ANY_ARRAY.search(con.definition)
        if m:
            hint = CheckHint(tuple(v.replace("''", "'") for v in _LITERAL.findall(m.group(1))), hint.low, hint.high,
                             hint.low_strict, hint.high_strict)
        for name, op, num in _BOUND.findall(con.definition):
            if name != col:
                continue
            value = float(num)
            if op in (">", ">=") and (hint.low is None or value > hint.low):
                hint = CheckHint(hint.allowed, value, hint.high, op == ">", hint.high_strict)
            elif op in ("<", "<=") and (hint.high is None or value < hint.high):
                hint = CheckHint(hint.allowed, hint.low, value, hint.low_strict, op == "<")
        out[col] = hint
    return out
