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
from canary.postgres.tripwire import key_type_supported


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
class Partition:
    """A partition of a partitioned table, at any depth (a sub-partitioned one too). A query that names
    it directly is checked against its own row-level security, never the partitioned table's."""

    schema: str
    name: str
    oid: int
    kind: str  # relkind: 'r' a leaf, 'p' partitioned itself, 'f' a foreign table
    owner: str
    rls_enabled: bool
    rls_forced: bool
    policies: tuple[Policy, ...]
    constraint: str | None  # the rows it may hold (pg_get_partition_constraintdef, ancestors' included); None: any
    estimated_rows: int = 0

    @property
    def target(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def leaf(self) -> bool:
        return self.kind != "p"


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
    key_sequences: tuple[tuple[str, str], ...] = ()  # (key column, its sequence) for serial / identity key columns
    partitions: tuple[Partition, ...] = ()  # every partition below a partitioned table (relkind 'p'), parents first
    partition_of: str | None = None  # the partitioned table this table is a partition of
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


_POLICIES = (
    "SELECT polrelid, polname, polpermissive, polcmd::text AS cmd, pg_catalog.pg_get_expr(polqual, polrelid) AS qual,"
    " ARRAY(SELECT CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END FROM unnest(polroles) AS r ORDER BY 1) AS roles"
    " FROM pg_catalog.pg_policy WHERE polrelid = ANY($1::oid[]) ORDER BY polrelid, polname"
)


async def introspect(conn: asyncpg.Connection, target: str, *, datastore: str = "") -> TableInfo:
    """Describe ``schema.table``; :class:`UnsafeIdentifierError` / :class:`DatastoreError` otherwise."""
    schema, name = parse_target(target)
    rel = await conn.fetchrow(
        """
        SELECT c.oid, c.relkind::text AS relkind, c.relrowsecurity, c.relforcerowsecurity,
               pg_catalog.pg_get_userbyid(c.relowner) AS owner, greatest(c.reltuples, 0)::bigint AS est,
               (SELECT pn.nspname || '.' || pc.relname FROM pg_catalog.pg_inherits i
                JOIN pg_catalog.pg_class pc ON pc.oid = i.inhparent JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
                WHERE c.relispartition AND i.inhrelid = c.oid) AS parent
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
          -- not the clones PostgreSQL adds per partition of a partitioned referenced table
          AND NOT (con.contype = 'f' AND con.conparentid <> 0 AND fc.relispartition)
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
    policies = await conn.fetch(_POLICIES, [oid])
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
          AND con.conparentid = 0  -- a partitioned child table once, not each of its partitions
        ORDER BY 1, 2
        """,
        oid,
    )
    triggers = await conn.fetch(
        "SELECT tgname FROM pg_catalog.pg_trigger WHERE tgrelid = $1 AND NOT tgisinternal ORDER BY tgname", oid
    )
    pk_cols = next((c.columns for c in constraints if c.kind == "p"), ())
    sequences = await conn.fetch(
        """
        SELECT a.attname::text AS col, s.oid::regclass::text AS seq
        FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class s ON s.oid = d.objid
        JOIN pg_catalog.pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
        WHERE d.refobjid = $1 AND a.attname = ANY($2::text[]) AND s.relkind = 'S' AND d.deptype IN ('a', 'i')
        ORDER BY 1, 2
        """,
        oid, list(pk_cols),
    ) if pk_cols else []
    key_sequences = tuple(dict((r["col"], r["seq"]) for r in sequences).items())
    partitions = await _partitions(conn, oid) if rel["relkind"] == "p" else ()
    estimated = int(rel["est"])
    if partitions:  # a partitioned table holds no rows itself: its leaves' estimates (it may never have been analysed)
        estimated = max(estimated, sum(p.estimated_rows for p in partitions if p.leaf))
    return TableInfo(
        schema=schema, name=name, oid=oid, kind=rel["relkind"], owner=rel["owner"],
        rls_enabled=rel["relrowsecurity"], rls_forced=rel["relforcerowsecurity"],
        columns=columns, constraints=tuple(constraints),
        policies=tuple(_policy(r) for r in policies),
        views=tuple((r["view"], r["kind"], r["invoker"]) for r in views),
        children=tuple(Reference(r["child"], r["conname"], tuple(r["cols"]), tuple(r["refcols"])) for r in children),
        triggers=tuple(r["tgname"] for r in triggers),
        estimated_rows=estimated,
        pk_sequence=dict(key_sequences).get(pk_cols[0]) if len(pk_cols) == 1 else None,
        key_sequences=key_sequences,
        partitions=partitions,
        partition_of=rel["parent"],
    )


async def _partitions(conn: asyncpg.Connection, oid: int) -> tuple[Partition, ...]:
    """Every partition below the partitioned table ``oid`` (sub-partitions too), parents first."""
    rows = await conn.fetch(
        """
        SELECT c.oid, n.nspname::text AS schema, c.relname::text AS name, c.relkind::text AS kind,
               pg_catalog.pg_get_userbyid(c.relowner) AS owner, c.relrowsecurity, c.relforcerowsecurity,
               pg_catalog.pg_get_partition_constraintdef(c.oid) AS bound, greatest(c.reltuples, 0)::bigint AS est
        FROM pg_catalog.pg_partition_tree($1::oid::regclass) t
        JOIN pg_catalog.pg_class c ON c.oid = t.relid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid <> $1::oid
        ORDER BY t.level, n.nspname, c.relname
        """,
        oid,
    )
    policies: dict[int, list[Policy]] = {}
    for r in await conn.fetch(_POLICIES, [r["oid"] for r in rows]):
        policies.setdefault(r["polrelid"], []).append(_policy(r))
    return tuple(
        Partition(r["schema"], r["name"], r["oid"], r["kind"], r["owner"], r["relrowsecurity"], r["relforcerowsecurity"],
                  tuple(policies.get(r["oid"], ())), r["bound"], int(r["est"]))
        for r in rows
    )


def _policy(r: asyncpg.Record) -> Policy:
    return Policy(r["polname"], r["polpermissive"], r["cmd"], r["qual"], tuple(r["roles"]))


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
    if info.partition_of:
        return (f"is a partition of {info.partition_of} (reads through {info.partition_of} would not be detected): "
                f"seed {info.partition_of}")
    key = info.primary_key
    if not key:
        return "has no primary key (canary rows are addressed by their key)"
    for name in key:
        col = info.column(name)
        if not key_type_supported(col.base_type, col.category, len(key) > 1):
            return (f"has key column {name} of type {col.type}, whose text depends on the reading session's settings "
                    "(canary rows are addressed by their key's text)")
    if info.kind == "p":
        if not any(p.leaf for p in info.partitions):
            return "is partitioned and has no partition to hold rows"
        foreign = [p.target for p in info.partitions if p.kind == "f"]
        if foreign:
            return f"has partitions that are foreign tables ({', '.join(foreign)}): row-level security cannot be installed on them"
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
