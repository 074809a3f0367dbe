"""The tripwire on a table, both ends: what canary installs in a datastore so that returning a canary
row writes an authenticated ``CY001`` line (parsed by :mod:`canary.postgres.read`), and nothing a
reader can see says which rows those are.

Objects, all in one *private* schema (configurable name; ``PUBLIC`` has no ``USAGE`` on it):

* ``members (t, k)``: the canary keys of each table (``k`` is the key as text). Readable by the
  owner only.
* ``state (t, seed, bm)``: per table a secret 63-bit seed and a Bloom filter ``bm`` of the keys
  under that seed (two bit positions from one keyed hash). Readable by the owner only.
* ``current_state``: a view over ``state`` with ``SELECT`` for ``PUBLIC``. It cannot be named by a
  reader (no ``USAGE`` on the schema: PostgreSQL checks that when it resolves a name), but a policy
  refers to it by OID, so the policy's scalar subqueries read it with the view owner's rights. A
  scalar subquery is an InitPlan: evaluated once per query, its value is a parameter (``$0``) that no
  catalog, ``EXPLAIN`` option or debug setting prints.
* ``settings (i, o)``: the key of the line MAC (see :mod:`canary.postgres.read`).
* the touch function (configurable name; ``SECURITY DEFINER``): true for every row; for a row in
  ``members`` it also logs the read. It is called only for rows the filter passes.

The RESTRICTIVE policy on a table with integer keys reads::

    get_bit((SELECT bm FROM s.current_state WHERE t = 'public.customers'),
            hashint8extended(id, (SELECT seed FROM ... )) & M) <> 1
    OR get_bit(..., (hashint8extended(id, ...) >> 21) & M) <> 1
    OR s.touch('public.customers', id::text, current_user::text)

A real row passes at the first or second probe (about 1 in 1,000 reaches the function, which finds
no member and logs nothing). Without the seed, which rows reach the function is unpredictable, and
the only rows that are canaries are those in ``members``: no predicate a reader can write avoids
them without reading them. What a reader can learn: that the table has row-level security, the
filter's size ``M + 1`` (within a factor of two of 64 bits per canary, so the canary count to within
a factor of two), and the mechanism (Kerckhoffs: the source is public).

``<> 1`` rather than ``= 0`` keeps the planner's selectivity estimate of the policy near 1, so plans
and row estimates stay as without canary.

A composite key (``(tenant_id, id)``, ``(id, created_at)``) is passed and hashed as the JSON array of
its columns' text (:func:`key_sql`), timestamps and dates in one fixed form (UTC, ISO), so that no
``TimeZone`` or ``DateStyle`` a reader sets changes which rows match. A partitioned table's policy
holds for queries through it only: a query naming a partition is checked against the partition's
policies, so every partition carries a copy of the policy, on the partitioned table's keys and filter.

A table with its own row-level security keeps its policies as they are (canary adds only its
RESTRICTIVE policy, which is true for every row, so what a role sees does not change). Because
PostgreSQL runs restrictive policies before permissive ones, a guard copied from the table's own
policies (:func:`visibility_guard`) sits between the filter and the function, so the function runs
only for rows those policies may return: a tenant's scan does not log another tenant's canaries.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import asyncpg

from canary.config import DatastoreConfig
from canary.crypto import Keyring
from canary.postgres.protocol import LOG_MESSAGE, READ_SQLSTATE
from canary.postgres.read import hmac_pads, line_key
from canary.postgres.sql import ident, literal, qualified

MEMBERS = "members"
STATE = "state"
VIEW = "current_state"
SETTINGS = "settings"
#: Bloom filter size: about 64 bits per key (1 real row in ~1,000 passes both probes), between
#: 2^13 bits and 2^18 bits (32 KiB: read once per query).
BITS_PER_KEY = 64
MIN_BITS = 1 << 13
MAX_BITS = 1 << 18
#: The second probe's bits of the 64-bit hash (the first probe uses the lowest).
SHIFT = 21
_INTEGER = frozenset({"int2", "int4", "int8", "smallint", "integer", "bigint"})


def key_text(key: str) -> str:
    """A row key as the policy passes it: the key's text, or for a composite key the JSON array of its
    columns' text as PostgreSQL's ``json_build_array(...)::text`` writes it (non-ASCII unescaped)."""
    if key.startswith("["):
        try:
            return json.dumps(json.loads(key), ensure_ascii=False)
        except ValueError:
            return key
    return key


#: Key column types whose text PostgreSQL writes the same whatever the reader's session settings.
STABLE_KEY_TYPES = frozenset({"int2", "int4", "int8", "numeric", "text", "varchar", "bpchar", "name", "citext", "uuid", "bool",
                              "oid", "inet", "cidr", "macaddr", "macaddr8", "time", "timetz"})
#: Types whose text follows ``TimeZone`` / ``DateStyle`` (a reader could set either so that no key
#: matched): a composite key writes them in one fixed form instead (:func:`key_sql`).
_FIXED_FORM = {
    "timestamptz": "pg_catalog.to_char(pg_catalog.timezone('UTC'::text, {c}), 'YYYY-MM-DD HH24:MI:SS.US') OPERATOR(pg_catalog.||) '+00'",
    "timestamp": "pg_catalog.to_char({c}, 'YYYY-MM-DD HH24:MI:SS.US')",
    "date": "pg_catalog.to_char(({c})::timestamp without time zone, 'YYYY-MM-DD')",
}


def key_type_supported(base_type: str, category: str, composite: bool) -> bool:
    """Whether a key column of this (base) type can address canary rows: its text in the policy must not
    depend on settings the reader chooses (an enum's label never does)."""
    return base_type in STABLE_KEY_TYPES or category == "E" or (composite and base_type in _FIXED_FORM)


def key_sql(columns: Sequence[str], types: Sequence[str], alias: str = "") -> str:
    """The text of a row's key as the policy passes it (``columns`` unquoted, ``types`` their base types,
    ``alias`` a table alias to qualify them with): one column's text, or for a composite key the JSON
    array of its columns' text, timestamps and dates in one form whatever the session's ``TimeZone``
    and ``DateStyle`` (UTC, ``YYYY-MM-DD HH24:MI:SS.US``): the form :func:`key_text` keeps."""
    if len(columns) != len(types):
        raise ValueError("key_sql needs the base type of every key column")
    refs = [f"{ident(alias)}.{ident(c)}" if alias else ident(c) for c in columns]
    if len(refs) == 1:
        return f"({refs[0]})::text"
    return f"(pg_catalog.json_build_array({', '.join(column_text_sql(r, b) for r, b in zip(refs, types))}))::text"


def column_text_sql(ref: str, base_type: str) -> str:
    """One column's text in a composite key (``ref`` an SQL column reference): timestamps and dates in
    the form :func:`key_sql` fixes, other types as PostgreSQL writes them. The text casts back to the
    column's type to the same value."""
    fixed = _FIXED_FORM.get(base_type)
    if fixed is None:
        return f"({ref})::text"
    return f"CASE WHEN pg_catalog.isfinite({ref}) THEN {fixed.format(c=ref)} ELSE ({ref})::text END"


def policy_masks(qual: str) -> list[int]:
    """The two filter masks (``bits - 1``) in a tripwire policy's USING text as the catalog renders it."""
    return [int(m) for m in re.findall(r"& \(?(\d+)\)?(?:::bigint)?\)", qual)]


def bits_for(n_keys: int) -> int:
    return min(max(1 << max(n_keys * BITS_PER_KEY - 1, 1).bit_length(), MIN_BITS), MAX_BITS)


def hash_sql(column: str, base_type: str, seed: str) -> str:
    """The keyed 64-bit hash of a key column (``column`` and ``seed`` are SQL expressions)."""
    if base_type in _INTEGER:
        return f"pg_catalog.hashint8extended(({column})::bigint, {seed})"
    if base_type == "uuid":
        return f"pg_catalog.uuid_hash_extended({column}, {seed})"
    return f"pg_catalog.hashtextextended(({column})::text, {seed})"


#: A table's own policy as :func:`visibility_guard` reads it: (name, permissive, command, USING text, roles).
PolicyRow = tuple[str, bool, str, "str | None", tuple[str, ...]]
_GUARD_SIG = re.compile(r"'g:([0-9a-f]{16})'")


def visibility_guard(policies: Sequence[PolicyRow], own: Collection[str]) -> tuple[str, str] | None:
    """(SQL, signature) of a condition that holds for every row the table's OWN policies (not canary's,
    named in ``own``) may let a reader SELECT, or None when there is nothing to copy.

    PostgreSQL evaluates RESTRICTIVE policies before the permissive ones (a lower security level),
    unless a permissive qual is leakproof and cheap; so on a table with its own non-leakproof policies
    (a tenant membership subquery) canary's function would otherwise run, and log a read, for rows the
    reader is never given. The guard puts the table's permissive SELECT quals (OR-ed, whatever their
    roles) and its PUBLIC restrictive quals in front of the function: always a superset of the rows
    returned (a role-limited restrictive qual is left out, every permissive one kept), so it can
    only spare the function rows no one sees. The signature names the policies it was built from:
    ``verify`` reports a guard whose table policies changed since."""
    others = sorted((p for p in policies if p[0] not in own and p[2] in ("r", "*")), key=lambda p: p[0])
    permissive = [p for p in others if p[1]]
    if not permissive or any(not p[3] for p in permissive):
        return None
    sql = "(" + " OR ".join(f"({p[3]})" for p in permissive) + ")"
    sql += "".join(f" AND ({p[3]})" for p in others if not p[1] and p[3] and "public" in p[4])
    return sql, hashlib.sha256(json.dumps(others, default=list).encode()).hexdigest()[:16]


def guard_signature(qual: str) -> str | None:
    """The signature of the guard inside a tripwire policy's USING text (None: no guard)."""
    m = _GUARD_SIG.search(qual)
    return m.group(1) if m else None


def tripwire_for(ds: DatastoreConfig) -> Tripwire:
    """The detection objects a datastore's configuration names."""
    schema = ds.detection_schema
    return Tripwire(ds.name, schema, ds.detection_function, ds.detection_policy or f"{schema}_r",
                    ds.permissive_policy or f"{schema}_p")


@dataclass(frozen=True)
class Tripwire:
    """The detection objects of one datastore (``schema``, ``function`` and policy names come from
    its configuration)."""

    datastore: str
    schema: str
    function: str
    policy: str
    permissive: str

    def qualified(self, name: str) -> str:
        return qualified(self.schema, name)

    @property
    def function_signature(self) -> str:
        return f"{self.qualified(self.function)}(text, text, text)"

    # -- install -------------------------------------------------------------------------------
    def setup_sql(self) -> list[str]:
        """The schema and its objects (idempotent; run by the role that will own them)."""
        s = self.qualified
        return [
            f"CREATE SCHEMA IF NOT EXISTS {ident(self.schema)}",
            f"REVOKE ALL ON SCHEMA {ident(self.schema)} FROM PUBLIC",
            f"CREATE TABLE IF NOT EXISTS {s(SETTINGS)} (i bytea NOT NULL, o bytea NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {s(STATE)} (t text PRIMARY KEY, seed bigint NOT NULL, bm bytea NOT NULL)",
            f"ALTER TABLE {s(STATE)} ALTER COLUMN bm SET STORAGE EXTERNAL",
            f"CREATE TABLE IF NOT EXISTS {s(MEMBERS)} (t text NOT NULL, k text NOT NULL, PRIMARY KEY (t, k))",
            f"REVOKE ALL ON TABLE {s(SETTINGS)}, {s(STATE)}, {s(MEMBERS)} FROM PUBLIC",
            # || '' reads a toasted filter once per query instead of once per row
            f"CREATE OR REPLACE VIEW {s(VIEW)} AS SELECT t, seed, bm OPERATOR(pg_catalog.||) ''::bytea AS bm FROM {s(STATE)}",
            f"REVOKE ALL ON TABLE {s(VIEW)} FROM PUBLIC",
            f"GRANT SELECT ON TABLE {s(VIEW)} TO PUBLIC",
            self.function_sql().strip(),
            f"REVOKE ALL ON FUNCTION {self.function_signature} FROM PUBLIC",
            f"GRANT EXECUTE ON FUNCTION {self.function_signature} TO PUBLIC",
        ]

    def function_sql(self) -> str:
        """The touch function: true for every row; logs one authenticated JSON line for a member row.

        No EXCEPTION block: it would start a subtransaction, which is an error inside parallel workers.
        'su', 'db' and 'an' are restored in parallel workers (unlike ``inet_client_addr()``), so a
        worker's line names the session user, database and drill tag even without the leader's lines.
        COST 1: the planner charges a function's COST on every row of the policy expression; the
        default 100 inflates scan costs enough to change plan shapes and to cross ``jit_above_cost``.
        """
        return f"""
CREATE OR REPLACE FUNCTION {self.qualified(self.function)}(target text, pk text, reader text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL SAFE SECURITY DEFINER COST 1
SET search_path = pg_catalog, pg_temp
SET client_min_messages = error
AS $fn${self.function_body()}$fn$"""

    def function_body(self) -> str:
        """The touch function's source as ``pg_proc.prosrc`` holds it (compared to find an outdated one)."""
        return f"""
DECLARE
  d text;
  ik bytea;
  ok bytea;
BEGIN
  -- COLLATE: the policy passes current_user (collation "C"), which would otherwise make this a scan
  PERFORM FROM {self.qualified(MEMBERS)} AS m WHERE m.t = target COLLATE "default" AND m.k = pk COLLATE "default";
  IF NOT FOUND THEN
    RETURN true;
  END IF;
  d := json_build_object('v', 1, 'ds', {literal(self.datastore)}, 't', target, 'k', pk, 'u', reader,
                         'q', left(current_query(), 2000), 'ts', statement_timestamp(),
                         'a', inet_client_addr(), 'p', pg_backend_pid(), 'su', session_user,
                         'db', current_database(), 'an', current_setting('application_name', true))::text;
  SELECT k.i, k.o INTO ik, ok FROM {self.qualified(SETTINGS)} AS k LIMIT 1;
  RAISE LOG USING MESSAGE = {literal(LOG_MESSAGE)}, ERRCODE = {literal(READ_SQLSTATE)}, DETAIL = d,
    HINT = encode(sha256(ok || sha256(ik || convert_to(d, 'UTF8'))), 'hex');
  RETURN true;
END
"""

    async def install_line_key(self, conn: asyncpg.Connection, keyring: Keyring) -> None:
        """Put the datastore's line key in place by ``COPY FROM STDIN``: no statement text or bind
        parameter that a server log could keep holds it."""
        inner, outer = hmac_pads(line_key(keyring, self.datastore))
        await conn.execute(f"TRUNCATE {self.qualified(SETTINGS)}")
        await conn.copy_records_to_table(SETTINGS, schema_name=self.schema, columns=["i", "o"], records=[(inner, outer)])

    async def set_members(self, conn: asyncpg.Connection, target: str, pk_type: str, base_type: str,
                          keys: Sequence[str]) -> int:
        """Make ``keys`` the canary keys of ``target``: a new secret seed and the filter built from it.
        Keys and seed travel by ``COPY FROM STDIN``; the filter is built in the server from them, so no
        statement text, bind parameter or log line holds either. Returns the filter's size in bits."""
        bits = bits_for(len(keys))
        t = literal(target)
        await conn.execute(f"DELETE FROM {self.qualified(MEMBERS)} WHERE t = {t}")
        await conn.execute(f"DELETE FROM {self.qualified(STATE)} WHERE t = {t}")
        await conn.copy_records_to_table(MEMBERS, schema_name=self.schema, columns=["t", "k"],
                                         records=[(target, k) for k in sorted({key_text(k) for k in keys})])
        await conn.copy_records_to_table(STATE, schema_name=self.schema, columns=["t", "seed", "bm"],
                                         records=[(target, secrets.randbits(63), bytes(bits // 8))])
        h = hash_sql(f"m.k::{pk_type}", base_type, "s.seed")
        await conn.execute(f"""
DO $b$
DECLARE
  f bytea;
  r record;
BEGIN
  SELECT s.bm INTO f FROM {self.qualified(STATE)} AS s WHERE s.t = {t};
  FOR r IN SELECT {h} AS h FROM {self.qualified(MEMBERS)} AS m JOIN {self.qualified(STATE)} AS s ON s.t = m.t WHERE m.t = {t} LOOP
    f := set_bit(f, r.h & {bits - 1}, 1);
    f := set_bit(f, (r.h >> {SHIFT}) & {bits - 1}, 1);
  END LOOP;
  UPDATE {self.qualified(STATE)} SET bm = f WHERE t = {t};
END
$b$""")
        # statistics, so the function's membership test is an index probe, not a scan of every key; and
        # a new pg_proc row, so every session recompiles the function: plans cached while the table was
        # small (a scan) are not kept (ANALYZE alone does not invalidate them)
        await conn.execute(f"ANALYZE {self.qualified(MEMBERS)}, {self.qualified(STATE)}")
        await conn.execute(f"ALTER FUNCTION {self.function_signature} COST 1")
        return bits

    async def remove(self, conn: asyncpg.Connection, target: str) -> None:
        """Forget ``target``'s keys (its policy is dropped by the caller)."""
        for table in (MEMBERS, STATE):
            await conn.execute(f"DELETE FROM {self.qualified(table)} WHERE t = {literal(target)}")

    def drop_sql(self) -> list[str]:
        """The schema's objects, once no table uses them (the schema itself is the caller's call)."""
        s = self.qualified
        return [f"DROP FUNCTION IF EXISTS {self.function_signature}", f"DROP VIEW IF EXISTS {s(VIEW)}",
                f"DROP TABLE IF EXISTS {s(MEMBERS)}, {s(STATE)}, {s(SETTINGS)}"]

    def policy_sql(self, table: str, target: str, key_columns: str | Sequence[str], base_type: str, bits: int,
                   guard: tuple[str, str] | None = None, key_types: Sequence[str] = ()) -> str:
        """The RESTRICTIVE policy on ``table`` (already quoted, schema-qualified; a partition of
        ``target`` takes the same policy, on ``target``'s keys). A composite key is the JSON array of
        its columns as text (:func:`key_sql`; ``key_types``: their base types). ``guard``
        (:func:`visibility_guard`) is checked after the filter, before the function: rows the table's
        own policies hide are spared."""
        t = literal(target)
        view = self.qualified(VIEW)
        seed = f"(SELECT v.seed FROM {view} AS v WHERE v.t = {t})"
        bm = f"(SELECT v.bm FROM {view} AS v WHERE v.t = {t})"
        cols = [key_columns] if isinstance(key_columns, str) else list(key_columns)
        if len(cols) == 1:
            key, kind = f"({ident(cols[0])})::text", base_type
            h = hash_sql(ident(cols[0]), base_type, seed)
        else:
            key, kind = key_sql(cols, key_types), "text"
            h = hash_sql(key, kind, seed)
        spare = f"OR NOT (coalesce({guard[0]}, false) AND 'g:{guard[1]}'::text <> '') " if guard else ""
        using = (f"get_bit({bm}, {h} & {bits - 1}) <> 1 "
                 f"OR get_bit({bm}, ({h} >> {SHIFT}) & {bits - 1}) <> 1 "
                 f"{spare}OR {self.qualified(self.function)}({t}, {key}, current_user::text)")
        return f"CREATE POLICY {ident(self.policy)} ON {table} AS RESTRICTIVE FOR SELECT TO PUBLIC USING ({using})"

    # -- verify --------------------------------------------------------------------------------
    def copy_altered(self, qual: str, target: str, masks: Sequence[int]) -> bool:
        """Whether a copy of ``target``'s policy (on one of its partitions; USING text ``qual``) no
        longer reads ``target``'s filter with the two ``masks`` of ``target``'s own policy and calls
        the touch function."""
        flat = qual.replace('"', "")
        return (self.qualified(self.function).replace('"', "") not in flat or VIEW not in qual
                or literal(target) not in qual or policy_masks(qual) != list(masks) or len(masks) != 2)

    async def problems(self, conn: asyncpg.Connection, keyring: Keyring) -> list[str]:
        """What is missing or outdated in the schema's shared objects (empty: all current). Checks
        that need the owner's rights are skipped for another role."""
        src = await conn.fetchval(
            "SELECT p.prosrc FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = $1 AND p.proname = $2 AND p.prosecdef",
            self.schema, self.function,
        )
        if src is None:
            return ["detection_function_missing"]
        problems = [] if src == self.function_body() else ["detection_function_outdated"]
        if await conn.fetchval(
            "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a"
            " WHERE n.nspname = $1 AND a.grantee = 0 AND a.privilege_type = 'USAGE')", self.schema,
        ):
            problems.append("detection_schema_public")
        if not await conn.fetchval("SELECT has_schema_privilege($1, 'USAGE')", self.schema):
            return problems  # only the role that seeded (the objects' owner) can look inside
        for name in (SETTINGS, STATE, MEMBERS, VIEW):
            if await conn.fetchval("SELECT to_regclass($1)", self.qualified(name)) is None:
                return [*problems, f"detection_{name}_missing"]
        if not await conn.fetchval("SELECT has_table_privilege($1, 'SELECT')", self.qualified(SETTINGS)):
            return problems  # only the role that seeded (the objects' owner) can check the keys
        digests = await conn.fetch(f"SELECT sha256(i) AS d FROM {self.qualified(SETTINGS)}")
        expected = hashlib.sha256(hmac_pads(line_key(keyring, self.datastore))[0]).digest()
        if [bytes(r["d"]) for r in digests] != [expected]:
            problems.append("detection_key_stale" if digests else "detection_key_missing")
        return problems

    async def table_problems(self, conn: asyncpg.Connection, target: str, pk_type: str, base_type: str,
                             keys: Sequence[str], qual: str) -> list[str]:
        """Whether ``target``'s policy (its USING text ``qual`` as the catalog renders it), keys and
        filter still catch every one of ``keys``."""
        out: list[str] = []
        if self.qualified(self.function).replace('"', "") not in qual.replace('"', "") or VIEW not in qual:
            out.append("detection_policy_altered")
        if not await conn.fetchval("SELECT has_schema_privilege($1, 'USAGE')", self.schema) or not await conn.fetchval(
                "SELECT has_table_privilege($1, 'SELECT')", self.qualified(MEMBERS)):
            return out
        members = {r["k"] for r in await conn.fetch(f"SELECT k FROM {self.qualified(MEMBERS)} WHERE t = $1", target)}
        missing = {key_text(k) for k in keys} - members
        if missing:
            out.append(f"detection_policy_misses_{len(missing)}_canaries")
        row = await conn.fetchrow(f"SELECT seed, length(bm) * 8 AS bits FROM {self.qualified(STATE)} WHERE t = $1", target)
        if row is None:
            return [*out, "detection_filter_missing"]
        bits = int(row["bits"])
        masks = re.findall(rf"& \(?{bits - 1}\)?(?:::bigint)?\)", qual)
        if bits & (bits - 1) or len(masks) != 2:
            out.append("detection_filter_altered")
            return out
        h = hash_sql(f"m.k::{pk_type}", base_type, "s.seed")
        unset = await conn.fetchval(
            f"SELECT count(*) FROM {self.qualified(MEMBERS)} AS m JOIN {self.qualified(STATE)} AS s ON s.t = m.t"
            f" WHERE m.t = $1 AND (get_bit(s.bm, {h} & {bits - 1}) = 0 OR get_bit(s.bm, ({h} >> {SHIFT}) & {bits - 1}) = 0)",
            target,
        )
        if unset:
            out.append("detection_filter_altered")
        return out
