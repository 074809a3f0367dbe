"""PostgreSQL seeder: canary customer rows plus row-level-security read detection.

For each configured target table (``DatastoreConfig.tables``) the seeder

1. introspects the table through the catalog (parameterised queries only),
2. samples real rows (never the canaries themselves, and without triggering detection) to learn
   each column's shape, then synthesises rows that match (:mod:`canary.seeding.synth`),
3. places them in gaps between real primary keys with timestamps drawn between the neighbours' (never
   interpolated) at their precision,
4. inserts them in the datastore transaction, records them in the control store (registry entries
   with encrypted location and contact points, a deployment manifest, the detection state), and
5. installs read detection: a SECURITY DEFINER plpgsql function that ``RAISE LOG``s a JSON detail
   (SQLSTATE CY001) and a RESTRICTIVE ``FOR SELECT`` policy that calls it for canary keys only.

The control store commits first (so the listener knows a canary before anyone can read it), then the
datastore. ``retire`` removes exactly the recorded rows, checking each row's fingerprint first, and
restores the row-level-security state found before the first seeding.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import datetime as dt
import itertools
import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import asyncpg
import structlog

from canary.config import Config, DatastoreConfig, TableTarget
from canary.credentials.values import CREDENTIAL_KIND, Credential, CredentialFactory, CredentialType
from canary.credentials.values import new_canary as new_credential_canary
from canary.crypto import Keyring
from canary.errors import DatastoreError, SeedError
from canary.postgres.protocol import LEGACY_FUNCTION
from canary.postgres.sql import ident, parse_target, qualified
from canary.postgres.tripwire import (
    MEMBERS,
    SETTINGS,
    bits_for,
    guard_signature,
    key_text,
    tripwire_for,
    visibility_guard,
)
from canary.seeder import ApplyResult, Finding, Plan, PlannedRow, RetireResult, TargetPlan, VerifyReport
from canary.seeding.catalog import TableInfo, introspect, unsupported_reason
from canary.seeding.children import Batch, created_column, plan_children
from canary.seeding.credentials import SecretColumns, create_role_sql, fill, infer_type, make_credential, secret_columns
from canary.seeding.synth.contacts import ContactAllocator
from canary.seeding.synth.frequency import ValueCounts
from canary.seeding.synth.profile import FREEMAIL, TableProfile, profile
from canary.seeding.synth.relations import Tally
from canary.seeding.synth.shapes import (
    MIN_SHARED,
    Semantic,
    Weighted,
    fill_shape,
    infer_locale,
    parse_ts,
    quantile,
    semantic_of,
)
from canary.seeding.synth.synthesizer import RowContext, Synthesizer, SynthRow
from canary.seeding.synth.times import Precision, between
from canary.store import describe_error, detection_objects, sessions
from canary.store.registry import NewCanary, Registry, ValueKind, active_values, location_key, recognise, value_purpose

log = structlog.get_logger("canary.seeders.postgres")

SAMPLE_ROWS = 2000
#: tables up to this many rows are counted whole to match how common canary values are (names, addresses)
COUNT_ALL_ROWS = 5_000_000
INSERT_BATCH = 2000
MAX_ATTEMPTS = 20
MANY_CANARIES = 1000  # per table: above this, readers pay noticeably for the policy (see bench/read_overhead.py)
_INTEGER_TYPES = ("int2", "int4", "int8")
_CONSTRAINT_ERRORS = (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError)


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    superuser: bool
    bypassrls: bool

    @property
    def bypass(self) -> bool:
        return self.superuser or self.bypassrls


@dataclass(frozen=True, slots=True)
class ContactPools:
    """Contact points that route back to canary (see ``[seeding]`` in the configuration)."""

    email_domains: tuple[str, ...] = ()
    phone_numbers: tuple[str, ...] = ()
    mailboxes: tuple[tuple[str, str], ...] = ()  # (address, forward_to): owned free-mail mailboxes

    def forward_to(self, address: str | None) -> str | None:
        """Where the mailbox ``address`` forwards to (None if it is not an owned mailbox)."""
        low = (address or "").lower()
        return next((fw for a, fw in self.mailboxes if a.lower() == low), None) if low else None


@dataclass
class _TargetWork:
    """Everything computed for one target inside a seeding transaction."""

    target: TableTarget
    info: TableInfo
    existing: dict[str, Any]  # pk text -> CanaryRecord of active canaries
    batches: list[Batch]  # [0]: the canary rows; then child rows, parents before children
    contacts: list[tuple[str | None, str | None]]  # (email, phone) per canary row
    statements: list[str]
    warnings: list[str]
    forced_off: bool = False  # FORCE RLS was switched off for the seeder's own reads
    creds: list[Credential] = field(default_factory=list)  # credential canaries, one per canary row
    pools: list[str] = field(default_factory=list)  # how large the owned contact pools must be to blend

    @property
    def planned(self) -> list[PlannedRow]:
        return self.batches[0].rows

    def all_rows(self) -> list[PlannedRow]:
        return [r for b in self.batches for r in b.rows]



def _insert_sql(info: TableInfo, cols: Sequence[str], first: int = 1) -> str:
    """INSERT of ``cols`` into ``info``'s table from one text array per column, parameters ``$first``..."""
    types = {c.name: c.type for c in info.columns}
    return (
        f"INSERT INTO {qualified(info.schema, info.name)} ({', '.join(ident(c) for c in cols)}) OVERRIDING SYSTEM VALUE "
        f"SELECT {', '.join(f'u.c{i}::{types[c]}' for i, c in enumerate(cols))} "
        f"FROM unnest({', '.join(f'${first + i}::text[]' for i in range(len(cols)))}) AS u({', '.join(f'c{i}' for i in range(len(cols)))})"
    )


class PostgresSeeder:
    """Seeds one PostgreSQL datastore (all of its configured tables) in one transaction."""

    kind: ClassVar[str] = "postgres"

    def __init__(
        self,
        datastore: DatastoreConfig,
        registry: Registry,
        keyring: Keyring | None = None,
        *,
        pools: ContactPools = ContactPools(),
        seed: int | None = None,
        lock_timeout: float = 5.0,
        connect_timeout: float = 10.0,
        statement_timeout: float = 300.0,
        follow_foreign_keys: bool = True,
        max_children: int = 20,
    ) -> None:
        self.ds = datastore
        if keyring is not None and keyring.key_id != registry.keyring.key_id:
            raise SeedError("the keyring given to the seeder is not the registry's keyring")
        self.registry = registry
        self.pools = pools
        self.seed = seed
        self.rng = random.Random(seed)
        self.lock_timeout = lock_timeout
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.follow_foreign_keys = follow_foreign_keys
        self.max_children = max_children
        self.log = log.bind(datastore=datastore.name)
        self.tripwire = tripwire_for(datastore)
        self._sessions: dict[asyncpg.Connection, int] = {}  # open connection -> own_sessions id

    def __repr__(self) -> str:
        return f"PostgresSeeder(datastore={self.ds.name!r})"

    @classmethod
    def from_config(cls, config: Config, name: str, registry: Registry, **kwargs: Any) -> PostgresSeeder:
        """The seeder of datastore ``name`` with the ``[seeding]`` pools and limits applied."""
        s = config.seeding
        pools = ContactPools(tuple(s.email_domains or config.contact.mail_domains), s.phone_pool(),
                             tuple((m.address, m.forward_to) for m in s.mailboxes))
        kwargs.setdefault("lock_timeout", s.lock_timeout)
        kwargs.setdefault("follow_foreign_keys", s.follow_foreign_keys)
        kwargs.setdefault("max_children", s.max_children)
        return cls(config.datastore(name), registry, pools=pools, **kwargs)

    # -- connection ---------------------------------------------------------------------------
    async def _connect(self) -> asyncpg.Connection:
        try:
            # no application_name: every role sees it in pg_stat_activity, and canary's own lines are
            # recognised by the session registered below, not by a name any client can choose
            conn = await asyncpg.connect(
                self.ds.dsn.reveal(), timeout=self.connect_timeout, command_timeout=self.statement_timeout,
                server_settings={"bytea_output": "hex"},  # policy bitmaps as \x hex
            )
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise DatastoreError(f"cannot connect to datastore {self.ds.name!r}: {describe_error(exc)}", datastore=self.ds.name) from None
        try:
            scs = await conn.fetchval("SHOW standard_conforming_strings")
            if scs != "on":
                raise DatastoreError(f"datastore {self.ds.name!r} has standard_conforming_strings = {scs}; canary needs on")
            self._sessions[conn] = await sessions.open_session(self.registry.pool, self.ds.name, conn, "seeder")
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _close(self, conn: asyncpg.Connection) -> None:
        """Close a connection from :meth:`_connect` and end its registration as canary's own session."""
        try:
            await conn.close()
        finally:
            session = self._sessions.pop(conn, None)
            if session is not None:
                await sessions.close_session(self.registry.pool, session)

    async def _role(self, conn: asyncpg.Connection) -> Role:
        r = await conn.fetchrow("SELECT rolname, rolsuper, rolbypassrls FROM pg_catalog.pg_roles WHERE rolname = current_user")
        return Role(r["rolname"], r["rolsuper"], r["rolbypassrls"])

    def _label(self, target: str) -> str:
        return f"{self.ds.name}/{target}"

    async def _existing(self, target: str, conn: asyncpg.Connection | None = None) -> dict[str, Any]:
        records = await self.registry.active(self.ds.name, self._label(target), conn=conn)
        return {str(r.location["pk"]): r for r in records if r.kind in ("customer", CREDENTIAL_KIND)}

    # -- quiet reads ----------------------------------------------------------------------------
    async def _quiet_reads(self, conn: asyncpg.Connection, info: TableInfo, role: Role, *, may_alter: bool) -> bool:
        """Make this transaction's own reads of the table bypass row-level security, so the seeder's
        sampling, fingerprinting and deletes never fire detection. Returns True when FORCE was
        switched off (the caller restores it, or rolls back)."""
        if role.bypass:
            await conn.execute("SET LOCAL row_security = off")
            return False
        is_owner = await conn.fetchval("SELECT pg_catalog.pg_has_role(current_user, $1, 'USAGE')", info.owner)
        if not is_owner:
            raise SeedError(
                f"role {role.name} must own {info.target} (or be a superuser / BYPASSRLS) to seed it", target=info.target
            )
        if info.rls_forced:
            if not may_alter:
                return False
            await conn.execute(f"ALTER TABLE {qualified(info.schema, info.name)} NO FORCE ROW LEVEL SECURITY")
            await conn.execute("SET LOCAL row_security = off")
            return True
        await conn.execute("SET LOCAL row_security = off")
        return False

    # -- plan -----------------------------------------------------------------------------------
    async def plan(self) -> Plan:
        """Dry run: what ``apply`` would write; the transaction is always rolled back. Run by a table
        owner without BYPASSRLS on a FORCEd table, its reads switch FORCE off inside that transaction
        (a brief lock, bounded by lock_timeout) so that they do not fire detection."""
        conn = await self._connect()
        try:
            role = await self._role(conn)
            tr = conn.transaction()
            await tr.start()
            try:
                await conn.execute(f"SET LOCAL lock_timeout = {int(self.lock_timeout * 1000)}")
                works = [await self._prepare(conn, t, role) for t in self.ds.tables]
            finally:
                await tr.rollback()
        finally:
            await self._close(conn)
        return Plan(self.ds.name, [self._target_plan(w) for w in works])

    def _target_plan(self, w: _TargetWork) -> TargetPlan:
        rows = w.all_rows()
        if w.creds:  # a dry run never prints a credential: show its type and a masked form
            secrets_ = {v for c in w.creds for v in c.fields.values() if len(v) >= 16}
            rows = [
                dataclasses.replace(r, values={k: (_mask(v) if v in secrets_ else v) for k, v in r.values.items()}) if r.canary else r
                for r in rows
            ]
        return TargetPlan(
            target=w.info.target, present=len(w.existing), wanted=w.target.count, rows=rows,
            statements=[re.sub(r"PASSWORD '[^']*'", "PASSWORD '**********'", st) for st in w.statements], warnings=list(w.warnings),
            locks=[w.info.target] if w.statements else [], traces=self._traces(w), pools=list(w.pools),
        )

    @staticmethod
    def _traces(w: _TargetWork) -> list[str]:
        """The physical traces a backdated run leaves (no value of a row shows them; the system
        columns and statistics any reader of the table may query do)."""
        new = [r for r in w.all_rows() if r.canary]
        if not new:
            return []
        tables = sorted({r.target for r in w.all_rows()})
        appended = sum(1 for c in (w.batches[0].contexts or ()) if c.pk is None) if w.batches else 0
        out = [
            f"one transaction: the {len(w.all_rows())} rows this run writes ({', '.join(tables)}) share one transaction id"
            " (xmin), which any reader can select and group by",
            "heap position: they go where the tables have free space, usually together on their last pages (ctid)",
            "one statement per table: all carry command id 0 (cmin), like rows an application inserts",
            f"statistics: n_tup_ins of {', '.join(tables)} in pg_stat_user_tables jumps by the rows written at once",
            "afterwards: the rows are never updated, where real customers' rows are (their xmin moves on)",
        ]
        if appended:
            out.append(f"keys: {appended} of {len(new)} take the next sequence values and sit at the end of the key range")
        return out

    async def _prepare(self, conn: asyncpg.Connection, target: TableTarget, role: Role) -> _TargetWork:
        info = await introspect(conn, target.table, datastore=self.ds.name)
        reason = unsupported_reason(info)
        if reason:
            raise SeedError(f"cannot seed {info.target}: it {reason}", target=info.target)
        legacy = await self._legacy_policies(info.target)
        foreign = [p for p in info.policies if p[0] not in (self.tripwire.policy, self.tripwire.permissive, *filter(None, legacy))]
        upgrading = any(legacy)
        if foreign and not info.rls_enabled:
            raise SeedError(
                f"cannot seed {info.target}: it has row-level security policies ({', '.join(p[0] for p in foreign)}) "
                "but RLS is disabled; enabling RLS for detection would change what they allow",
                target=info.target,
            )
        existing = await self._existing(info.target)
        warnings = self._coverage_warnings(info, role)
        to_add = max(0, target.count - len(existing))
        pk_col = info.column(info.primary_key[0])
        self.rng = self._target_rng(info.target, len(existing))
        await conn.execute("SELECT setseed($1)", self.rng.uniform(-1.0, 1.0))  # the sample, too, is reproducible
        forced_off = await self._quiet_reads(conn, info, role, may_alter=True)
        sample = await self._sample(conn, info, list(existing))
        prof = await asyncio.to_thread(profile, info, sample)
        locale = target.locale or infer_locale(prof.script, self.ds.locale)
        placements = await self._placements(conn, info, prof, list(existing), to_add, warnings) if to_add else []
        cred = self._credential_setup(info, target, sample) if target.credential else None
        pools = self.pools if cred is None else ContactPools()
        used = await self._used_contacts()
        contacts = ContactAllocator(pools.email_domains, pools.phone_numbers, used, random.Random(self.rng.getrandbits(64)),
                                    mailboxes=[a for a, _ in pools.mailboxes])
        skipped = self._skipped(info, prof)
        reuse = await self._shared_values(conn, info, sample, skipped, pools)
        synth = Synthesizer(info, prof, locale=locale, contacts=contacts, seed=self.rng.getrandbits(64), skip=skipped, reuse=reuse)
        if placements and info.estimated_rows <= COUNT_ALL_ROWS:
            counts = await self._value_counts(conn, info, synth.frequency_keys())
            tallies = await self._tallies(conn, info, synth.tallies())
            await asyncio.to_thread(synth.match_frequencies, counts, sample, tallies=tallies)
        creds: list[Credential] = []
        if cred is not None:
            factory, ctype, cols = cred
            creds = [make_credential(factory, ctype, self.ds.dsn.reveal(), self._cred_id()) for _ in placements]

        def make(i: int) -> SynthRow:
            r = synth.row(placements[i])
            if creds:
                fill(r.values, cols, creds[i])
                r = SynthRow(r.values, None, None)
            return r

        rows = await asyncio.to_thread(lambda: [make(i) for i in range(len(placements))])
        top = Batch(info, [PlannedRow(info.target, r.values.get(pk_col.name) or "", r.values) for r in rows],
                    top_index=list(range(len(rows))), contexts=placements, regenerate=make)
        batches = [top]
        if self.follow_foreign_keys and rows:
            sample_keys = [str(r[pk_col.name]) for r in sample if r.get(pk_col.name) is not None]
            batches += await plan_children(
                self, conn, role, top, sample_keys, locale, warnings, random.Random(self.rng.getrandbits(64))
            )
        if contacts.beyond_mailboxes:
            warnings.append(f"{info.target}: the mailbox pool is exhausted ({len(pools.mailboxes)} configured, all in use); "
                            f"{contacts.beyond_mailboxes} canaries get addresses at "
                            + ("canary mail domains" if pools.email_domains else "made-up domains that cannot alert on contact")
                            + " ([seeding].mailboxes)")
        if not self.pools.email_domains and (not self.pools.mailboxes or contacts.beyond_mailboxes) and any(
            semantic_of(c) == Semantic.EMAIL for c in info.columns
        ):
            warnings.append(f"{info.target}: no canary mail domains configured ([seeding].email_domains); e-mail contact cannot alert")
        if not self.pools.phone_numbers and any(semantic_of(c) == Semantic.PHONE for c in info.columns):
            warnings.append(f"{info.target}: no owned phone numbers configured ([seeding].phone_numbers); phone contact cannot alert")
        sizing: list[str] = []
        if rows:
            total = len(existing) + len(rows)
            warnings.extend(await self._pool_warnings(conn, info, prof, total, pools, on_domains=max(0, total - len(pools.mailboxes)),
                                                      sizing=sizing))
        all_pks = list(existing) + [p.pk for p in top.rows]
        if len(all_pks) > MANY_CANARIES:
            warnings.append(f"{info.target}: {len(all_pks)} canaries in one table; every statement on it rebuilds the "
                            f"membership test (bench/read_overhead.py: 10,000 keys make key lookups several times slower)")
        outdated = (not self._policy_present(info) or upgrading or self._guard_stale(info)
                    or bool(await self.tripwire.problems(conn, self.registry.keyring)))
        statements = self._detection_statements(info, pk_col.base_type, all_pks, legacy) if (to_add or outdated) and all_pks else []
        if creds and cred is not None:
            roles = [sql for sql in (create_role_sql(cred[0], c) for c in creds) if sql]
            statements = roles + statements
        return _TargetWork(target, info, existing, batches, [(r.email, r.phone) for r in rows], statements, warnings, forced_off, creds,
                           sizing)

    async def _value_counts(self, conn: asyncpg.Connection, info: TableInfo, keys: Mapping[str, Sequence[Any]]) -> dict[str, ValueCounts]:
        """Rows of the whole table per value of each column, and per value derived from it (what an
        insider with a dump counts), streamed in bounded memory (:class:`ValueCounts`)."""
        out: dict[str, ValueCounts] = {}
        for name, derivations in keys.items():
            counts = out[name] = ValueCounts(derivations, expected=info.estimated_rows)
            await self._stream_counts(conn, f"SELECT {ident(name)}::text AS v, count(*) AS n FROM {qualified(info.schema, info.name)} GROUP BY 1",
                                      counts)
        return out

    async def _tallies(self, conn: asyncpg.Connection, info: TableInfo, tallies: Sequence[Tally]) -> dict[str, ValueCounts]:
        """Rows of the whole table per value derived from several columns (:class:`Tally`), counted by
        the database, streamed like :meth:`_value_counts`."""
        out: dict[str, ValueCounts] = {}
        for tally in tallies:
            out[tally.name] = ValueCounts(expected=info.estimated_rows)
            await self._stream_counts(conn, tally.query(qualified(info.schema, info.name), lambda c: f"{ident(c)}::text"), out[tally.name])
        return out

    async def _stream_counts(self, conn: asyncpg.Connection, sql: str, counts: ValueCounts) -> None:
        # an explicit cursor, closed before the seeder's DDL in the same transaction
        await conn.execute(f"DECLARE canary_counts NO SCROLL CURSOR FOR {sql}")
        try:
            while batch := await conn.fetch("FETCH 20000 FROM canary_counts"):
                await asyncio.to_thread(counts.add_all, [(r["v"], int(r["n"])) for r in batch])
        finally:
            await conn.execute("CLOSE canary_counts")

    async def _shared_values(
        self, conn: asyncpg.Connection, info: TableInfo, sample: list[dict[str, str | None]], skipped: Sequence[str], pools: ContactPools
    ) -> dict[str, tuple[Weighted, float]]:
        """Text values many real rows share (a family address, a switchboard number), and how often a
        real row holds one: canaries reuse such values at the same rate, so "every value is unique"
        does not single them out. Only values at least MIN_SHARED rows of the table hold are reused
        (never a value that identifies one person); never e-mail, pooled phones or unique columns."""
        unique_cols = {cols[0] for cols in info.unique_sets() if len(cols) == 1}
        out: dict[str, tuple[Weighted, float]] = {}
        for c in info.columns:
            sem = semantic_of(c)
            if c.category != "S" or c.name in unique_cols or c.name in skipped or sem == Semantic.EMAIL:
                continue
            if sem == Semantic.PHONE and pools.phone_numbers:
                continue
            values = [v for r in sample if (v := r.get(c.name)) is not None]
            if len(values) < 20:
                continue
            rows = await conn.fetch(
                f"SELECT {ident(c.name)}::text AS v, count(*) AS n FROM {qualified(info.schema, info.name)}"
                f" WHERE {ident(c.name)} = ANY($1::text[]::{c.type}[]) GROUP BY 1",
                sorted(set(values)),
            )
            counts = {r["v"]: int(r["n"]) for r in rows if r["n"] >= MIN_SHARED}
            rate = sum(1 for v in values if v in counts) / len(values)
            if counts:
                median = sorted(counts.values())[len(counts) // 2]
                if median < 50:  # the canary adds one more holder: take values held less often than typical
                    counts = {v: n for v, n in counts.items() if n <= median} or counts
            if counts and rate >= 0.05:
                out[c.name] = (Weighted.of(counts), rate)
        return out

    async def _pool_warnings(
        self, conn: asyncpg.Connection, info: TableInfo, prof: TableProfile, canaries: int, pools: ContactPools,
        on_domains: int | None = None, sizing: list[str] | None = None,
    ) -> list[str]:
        """Contact pools too small to blend in: a pool domain holding far more canaries than a typical
        small e-mail domain of the table has customers, or an owned-number block holding far more
        canaries than real customers share a block (an insider counting values would see them).
        ``sizing`` receives, whatever is configured, how large each pool must be to blend."""
        out: list[str] = []
        sizing = [] if sizing is None else sizing
        tbl = qualified(info.schema, info.name)
        email = next((c.name for c in info.columns if semantic_of(c) == Semantic.EMAIL), None)
        col = prof.col(email) if email else None
        on_domains = canaries if on_domains is None else on_domains  # owned mailboxes take the first canaries
        if email and col is not None and col.email_domains:
            cum = list(col.email_domains.cum)
            weights = [c - p for c, p in zip(cum, [0.0, *cum[:-1]])]
            free = sum(w for v, w in zip(col.email_domains.values, weights) if v in FREEMAIL) / max(sum(weights), 1e-9)
            sizing.append(f"{info.target}: {free:.0%} of the table's addresses are at free-mail providers: {round(canaries * free)} "
                          f"of {canaries} canaries blend best in owned mailboxes there ([seeding].mailboxes; "
                          f"{len(pools.mailboxes)} configured)")
        if on_domains and email and col is not None and col.email_domains:
            tail = [str(d) for d in col.email_domains.values if d not in FREEMAIL]
            domain = f"lower(split_part({ident(email)}::text, '@', 2))"
            rows = await conn.fetch(f"SELECT {domain} AS d, count(*) AS n FROM {tbl} WHERE {domain} = ANY($1::text[]) GROUP BY 1", tail)
            sizes = sorted(int(r["n"]) for r in rows)
            typical = sizes[len(sizes) // 2] if sizes else 1
            limit = max(MIN_SHARED, 3 * typical)
            need = -(-on_domains // limit)
            have = len(pools.email_domains)
            sizing.append(f"{info.target}: {on_domains} canaries on owned mail domains need at least {need} domains to blend "
                          f"(a typical small domain of the table has {typical} customers); {have} configured: "
                          + ("blends" if have >= need else "STANDS OUT"))
            if have and have < need:
                per_domain = -(-on_domains // have)
                out.append(
                    f"{info.target}: {have} canary mail domains put about {per_domain} canaries on each, but "
                    f"a typical small e-mail domain in the table has {typical} customers; configure at least "
                    f"{need} domains ([seeding].email_domains) so that they blend into the long tail"
                )
        phone = next((c.name for c in info.columns if semantic_of(c) == Semantic.PHONE), None)
        if pools.phone_numbers and phone:
            blocks = sorted({re.sub(r"\D", "", p)[-8:-4] for p in pools.phone_numbers})
            key = f"substr(regexp_replace({ident(phone)}::text, '\\D', '', 'g'), length(regexp_replace({ident(phone)}::text, '\\D', '', 'g')) - 7, 4)"
            rows = await conn.fetch(f"SELECT {key} AS b, count(*) AS n FROM {tbl} WHERE {key} = ANY($1::text[]) GROUP BY 1", blocks)
            real = {r["b"]: int(r["n"]) for r in rows}
            sizes = sorted(real.get(b, 0) for b in blocks)
            typical = sizes[len(sizes) // 2]
            limit = max(2, 3 * typical)
            need = -(-canaries // limit)
            sizing.append(f"{info.target}: {canaries} canaries need owned numbers in at least {need} number blocks to blend "
                          f"(real customers share a block {typical} at a time); {len(blocks)} configured: "
                          + ("blends" if len(blocks) >= need else "STANDS OUT"))
            per_block = -(-canaries // len(blocks))
            if per_block > limit:
                out.append(
                    f"{info.target}: the owned phone numbers lie in {len(blocks)} number block(s), about {per_block} canaries "
                    f"each, while real customers share a block {typical} at a time; spread the pool over at least "
                    f"{need} blocks ([seeding].phone_numbers)"
                )
        return out

    def _target_rng(self, target: str, present: int) -> random.Random:
        """Randomness for one target, reproducible so that ``plan`` shows the rows ``apply`` writes: from
        the explicit seed, else keyed by the master key (unpredictable without it)."""
        if self.seed is not None:
            return random.Random(f"{self.seed}/{self.ds.name}/{target}/{present}")
        material = self.registry.keyring.derive("seeding/rng", self.ds.name, target, str(present), length=16)
        return random.Random(int.from_bytes(material, "big"))

    def _cred_id(self) -> str:
        return "cr_" + "".join(self.rng.choice("0123456789abcdef") for _ in range(24))

    def _credential_setup(self, info: TableInfo, target: TableTarget, sample: list[dict[str, str | None]]) -> tuple[CredentialFactory, CredentialType, SecretColumns]:
        ctype = target.credential or "auto"
        if ctype == "auto":
            probe = secret_columns(info, CredentialType.BEARER, target.column)
            resolved = infer_type([str(r[probe.secret]) for r in sample if r.get(probe.secret)])
        else:
            resolved = CredentialType(ctype)
        return CredentialFactory(self.registry.keyring), resolved, secret_columns(info, resolved, target.column)

    def _policy_present(self, info: TableInfo) -> bool:
        return any(p[0] == self.tripwire.policy for p in info.policies) and info.rls_enabled

    async def _legacy_policies(self, target: str) -> tuple[str | None, str | None]:
        """(restrictive, permissive) names of canary's policies on ``target`` from an install under other
        names (an older canary, or a renamed configuration), None where the name is current or there is
        none: ``canary seed`` replaces them."""
        details = await detection_objects.details(self.registry.pool, self.ds.name, target) or {}
        restrictive, permissive = details.get("policy"), details.get("permissive_policy")
        return (restrictive if restrictive and restrictive != self.tripwire.policy else None,
                permissive if permissive and permissive != self.tripwire.permissive else None)

    def _coverage_warnings(self, info: TableInfo, role: Role) -> list[str]:
        out = []
        for view, kind, invoker in info.views:
            if kind == "m":
                out.append(f"materialized view {view} copies {info.target}: reads of it are not detected")
            elif not invoker:
                out.append(f"view {view} over {info.target} is not security_invoker: reads through it are not detected "
                           f"(ALTER VIEW {view} SET (security_invoker = true))")
        if info.rls_enabled and not info.rls_forced and not any(p[0] == self.tripwire.policy for p in info.policies):
            out.append(f"{info.target} already uses row-level security without FORCE: reads by its owner ({info.owner}) are not detected")
        return out

    def _skipped(self, info: TableInfo, prof: TableProfile) -> list[str]:
        """Columns left to their default: non-key unique columns with a default (a sequence), and
        defaulted columns of types canary does not synthesise."""
        pk = info.primary_key[0]
        unique_cols = {cols[0] for cols in info.unique_sets() if len(cols) == 1}
        out = []
        for c in info.columns:
            if c.name == pk or c.generated:
                continue
            if c.identity or (c.default is not None and "nextval(" in c.default):
                out.append(c.name)  # sequence-backed: the sequence's next value is what a real row gets
            elif c.has_default and c.name in unique_cols and c.category not in ("N", "S"):
                out.append(c.name)
            elif c.has_default and c.category not in ("N", "S", "D", "B", "E") and c.base_type not in ("uuid", "json", "jsonb"):
                out.append(c.name)
        return out

    async def _sample(self, conn: asyncpg.Connection, info: TableInfo, exclude: list[str]) -> list[dict[str, str | None]]:
        """Up to SAMPLE_ROWS real rows as text (canaries excluded by key; the caller has made the
        transaction's reads bypass row-level security, see _quiet_reads)."""
        pk = info.primary_key[0]
        pk_type = info.column(pk).type
        cols = ", ".join(f"{ident(c.name)}::text" for c in info.columns)
        tbl = qualified(info.schema, info.name)
        if info.estimated_rows > SAMPLE_ROWS * 10:
            pct = min(100.0, SAMPLE_ROWS * 300.0 / info.estimated_rows)
            src = f"{tbl} TABLESAMPLE BERNOULLI ({pct:.4f}) REPEATABLE ({self.rng.randint(0, 2**31 - 1)})"
        else:
            src = tbl
        rows = await conn.fetch(
            f"SELECT {cols} FROM {src} WHERE NOT ({ident(pk)} = ANY($1::text[]::{pk_type}[])) ORDER BY random() LIMIT {SAMPLE_ROWS}",
            exclude,
        )
        names = [c.name for c in info.columns]
        return [dict(zip(names, r.values())) for r in rows]

    async def _placements(
        self, conn: asyncpg.Connection, info: TableInfo, prof: TableProfile, exclude: list[str], n: int, warnings: list[str],
        times: Sequence[dt.datetime | None] | None = None,
    ) -> list[RowContext]:
        """Keys and creation times for n rows, interleaved with the real rows. A time is drawn between
        the real neighbours' times (never interpolated by key) at the column's own precision. With
        ``times`` (rows written for a canary, dated after it), each row takes a key whose neighbours'
        times bracket its time, so keys and dates agree the way real rows' do; where no free key is
        there, the next free one later in time, its time drawn there."""
        pk_col = info.column(info.primary_key[0])
        created = created_column(info)  # customers.created_at, orders.ordered_at
        created_prof = prof.col(created) if created else None
        precision = Precision.of(prof.created_epochs or (created_prof.numbers if created_prof is not None else ()))
        if pk_col.base_type not in _INTEGER_TYPES:
            return [RowContext(pk=self._random_key(pk_col.base_type, prof, pk_col.name),
                               created=self._cut(precision, times[i] if times else self._created_like(prof, created)))
                    for i in range(n)]
        pk = ident(pk_col.name)
        tbl = qualified(info.schema, info.name)
        created_expr = f"{ident(created)}::text" if created else "NULL::text"
        gaps = await conn.fetch(
            f"""
            SELECT lo, hi, lo_c, hi_c FROM (
                SELECT {pk} AS lo, lead({pk}) OVER w AS hi, {created_expr} AS lo_c, lead({created_expr}) OVER w AS hi_c
                FROM {tbl} WHERE NOT ({pk} = ANY($1::bigint[])) WINDOW w AS (ORDER BY {pk})) s
            WHERE hi - lo > 1
            """,
            [int(x) for x in exclude],
        )
        taken = {int(x) for x in exclude}
        ordered = sorted(taken)
        slots: list[tuple[int, int, dt.datetime | None, dt.datetime | None]] = []
        capacity = 0
        for g in gaps:
            inside = bisect.bisect_left(ordered, g["hi"]) - bisect.bisect_right(ordered, g["lo"])
            free = g["hi"] - g["lo"] - 1 - inside
            if free > 0:
                slots.append((g["lo"], g["hi"], parse_ts(g["lo_c"]), parse_ts(g["hi_c"])))
                capacity += free
        chosen: set[int] = set()

        def free_key(lo: int, hi: int, anywhere: bool) -> int | None:
            keys = [lo + 1, hi - 1] if not anywhere else [self.rng.randint(lo + 1, hi - 1)]
            self.rng.shuffle(keys)
            return next((k for k in keys if k not in chosen and k not in taken), None)

        def drawn(lo_c: dt.datetime | None, hi_c: dt.datetime | None) -> dt.datetime | None:
            """A time between the neighbours', at their precision (whole seconds where they have whole
            seconds: a legacy import and today's rows differ, so the table-wide mix would not do)."""
            if lo_c is None or hi_c is None or hi_c < lo_c:
                return None
            return Precision.of((lo_c.timestamp(), hi_c.timestamp())).cut(between(lo_c, hi_c, self.rng), self.rng, lo_c, hi_c)

        placed: list[RowContext | None] = [None] * n
        gap_of: list[tuple[int, int] | None] = [None] * n
        if capacity and times is not None:
            dated = sorted(((lo, hi, lo_c, hi_c) for lo, hi, lo_c, hi_c in slots if lo_c is not None and hi_c is not None),
                           key=lambda s: s[2])
            starts = [s[2] for s in dated]
            for pos, want in enumerate(times):
                if want is None or not dated:
                    continue
                i = max(bisect.bisect_right(starts, want) - 1, 0)
                for lo, hi, lo_c, hi_c in dated[i:i + 50]:  # the gap around its time, else the next ones
                    if hi_c < want:
                        continue  # wholly earlier: the row would be dated before what it belongs to
                    key = free_key(lo, hi, False) or free_key(lo, hi, True)
                    if key is None:
                        continue
                    chosen.add(key)
                    inside = lo_c <= want <= hi_c
                    local = Precision.of((lo_c.timestamp(), hi_c.timestamp()))
                    placed[pos] = RowContext(pk=str(key), created=self._cut(local, want, lo_c, hi_c) if inside
                                             else drawn(lo_c, hi_c))
                    gap_of[pos] = (lo, hi)
                    break
        elif capacity:
            want_n = min(n, capacity)
            cum = list(itertools.accumulate(s[1] - s[0] - 1 for s in slots))
            attempts = 0
            while len(chosen) < want_n and attempts < want_n * 50:
                attempts += 1
                a, b, a_c, b_c = slots[bisect.bisect_right(cum, self.rng.random() * cum[-1])]
                # next to a real row, like a real row beside a deleted one (attempts > want: anywhere in the gap)
                key = free_key(a, b, attempts > want_n * 2)
                if key is None:
                    continue
                chosen.add(key)
                placed[len(chosen) - 1] = RowContext(pk=str(key), created=drawn(a_c, b_c))
                gap_of[len(chosen) - 1] = (a, b)
        _in_key_order(placed, gap_of)
        holes = [p for p in range(n) if placed[p] is None]
        now = dt.datetime.now(dt.timezone.utc)  # rows past the last key are the newest: dated now
        if holes and not info.pk_sequence:
            top = await conn.fetchval(f"SELECT max({pk}) FROM {tbl}")
            key = int(top) if top is not None else self.rng.randint(0, 999)
            warnings.append(f"{info.target}: only {n - len(holes)} of {n} rows fit between existing keys; {len(holes)} get "
                            "keys above the largest one (the table has no sequence)")
            for p in holes:
                while True:
                    key += self.rng.randint(1, 3)
                    if key not in taken:
                        break
                placed[p] = RowContext(pk=str(key), created=self._cut(precision, now))
        elif holes:
            warnings.append(
                f"{info.target}: only {n - len(holes)} of {n} rows fit between existing keys; {len(holes)} take the next "
                f"values of {info.pk_sequence} (they sit at the end of the table)"
            )
            for p in holes:
                placed[p] = RowContext(pk=None, created=self._cut(precision, now))
        return [c for c in placed if c is not None]

    def _cut(self, precision: Precision, when: dt.datetime | None, lo: dt.datetime | None = None,
             hi: dt.datetime | None = None) -> dt.datetime | None:
        return None if when is None else precision.cut(when, self.rng, lo, hi)

    def _random_key(self, base_type: str, prof: TableProfile, pk: str) -> str:
        import uuid

        if base_type == "uuid":
            return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        col = prof.col(pk)
        if col and col.shapes:
            return fill_shape(col.shapes.pick(self.rng), self.rng)
        return "cy" + "".join(self.rng.choice("0123456789abcdef") for _ in range(14))

    def _created_like(self, prof: TableProfile, created: str | None) -> dt.datetime | None:
        """A creation time drawn from the real rows' distribution (interpolated, never a copy; the caller
        cuts it to the column's precision)."""
        if not created or not prof.created_epochs:
            return None
        return dt.datetime.fromtimestamp(quantile(prof.created_epochs, self.rng), dt.timezone.utc)

    async def _used_contacts(self) -> set[str]:
        """Owned phone numbers and mailboxes already handed to active canaries (found by blind index)."""
        out: set[str] = set()
        for kind, owned in (("phone", self.pools.phone_numbers), ("email", tuple(a for a, _ in self.pools.mailboxes))):
            if not owned:
                continue
            held = await recognise(self.registry, [(kind, p) for p in owned])
            out |= {value.lower() for _, value in held}
        return out

    def _guard(self, info: TableInfo, legacy: Sequence[str | None] = ()) -> tuple[str, str] | None:
        """The guard that spares rows the table's own policies hide (:func:`visibility_guard`);
        ``legacy``: canary 0.x's names of its own policies on this table."""
        tw = self.tripwire
        ours = {tw.policy, tw.permissive, *filter(None, legacy)} | {  # canary's, under any (older) name: they call its function
            p.name for p in info.policies if p.qual and (f"{tw.function}(" in p.qual or f"{LEGACY_FUNCTION}(" in p.qual)}
        return visibility_guard(info.policies, ours)

    def _guard_stale(self, info: TableInfo) -> bool:
        """Whether the tripwire's guard no longer matches the table's own policies."""
        ours = next((p for p in info.policies if p.name == self.tripwire.policy), None)
        if ours is None:
            return False
        expected = self._guard(info)
        return guard_signature(ours.qual or "") != (expected[1] if expected else None)

    def _detection_statements(self, info: TableInfo, base_type: str, pks: Sequence[str],
                              legacy: tuple[str | None, str | None] = (None, None), key: str | None = None) -> list[str]:
        """The DDL that puts the tripwire on ``info`` for ``pks`` (whose membership and filter
        :meth:`Tripwire.set_members` writes by COPY: no key is in these statements)."""
        tw = self.tripwire
        tbl = qualified(info.schema, info.name)
        present = {p[0] for p in info.policies}
        out = [*tw.setup_sql(), f"DROP POLICY IF EXISTS {ident(tw.policy)} ON {tbl}"]
        old_restrictive, old_permissive = legacy
        if old_restrictive in present:
            out.append(f"DROP POLICY {ident(old_restrictive)} ON {tbl}")
        if old_permissive in present:  # canary's own permissive policy under its old name
            if tw.permissive in present:
                out.append(f"DROP POLICY {ident(old_permissive)} ON {tbl}")
            else:
                out.append(f"ALTER POLICY {ident(old_permissive)} ON {tbl} RENAME TO {ident(tw.permissive)}")
                present.add(tw.permissive)
        out.append(tw.policy_sql(tbl, info.target, key or info.primary_key, base_type, bits_for(len(pks)), self._guard(info, legacy)))
        ours = tw.permissive in present
        if not info.rls_enabled or ours:
            if not ours:
                out.append(f"CREATE POLICY {ident(tw.permissive)} ON {tbl} AS PERMISSIVE FOR ALL TO PUBLIC USING (true) WITH CHECK (true)")
            out.append(f"ALTER TABLE {tbl} ENABLE ROW LEVEL SECURITY")
            out.append(f"ALTER TABLE {tbl} FORCE ROW LEVEL SECURITY")
        return out

    # -- apply ----------------------------------------------------------------------------------
    async def apply(self) -> ApplyResult:
        """Seed every configured table in one datastore transaction; idempotent."""
        conn = await self._connect()
        try:
            return await self._apply(conn)
        finally:
            await self._close(conn)

    async def _apply(self, conn: asyncpg.Connection) -> ApplyResult:
        role = await self._role(conn)
        dtr = conn.transaction()
        await dtr.start()
        committed_control: list[int] = []
        try:
            await conn.execute(f"SET LOCAL lock_timeout = {int(self.lock_timeout * 1000)}")
            works = [await self._prepare(conn, t, role) for t in self.ds.tables]
            for w in works:
                await self._insert(conn, w)
                if w.statements:  # keys drawn from a sequence are only known now
                    roles = [st for st in w.statements if st.startswith("CREATE ROLE")]
                    base_type = w.info.column(w.info.primary_key[0]).base_type
                    w.statements = roles + self._detection_statements(
                        w.info, base_type, list(w.existing) + [p.pk for p in w.planned], await self._legacy_policies(w.info.target))
            async with self.registry.pool.acquire() as ctl:
                ctr = ctl.transaction()
                await ctr.start()
                try:
                    added: dict[str, int] = {}
                    children: dict[str, int] = {}
                    deployments: list[int] = []
                    for w in works:
                        if not w.planned and not w.statements:
                            added[w.info.target] = 0
                            continue
                        dep = await self._record(conn, ctl, w)
                        if dep is not None:
                            deployments.append(dep)
                        for stmt in w.statements:
                            await conn.execute(stmt)
                        if w.statements:
                            await self._arm(conn, w.info, list(w.existing) + [p.pk for p in w.planned])
                        if w.forced_off and not any("FORCE ROW LEVEL SECURITY" in s for s in w.statements):
                            await conn.execute(f"ALTER TABLE {qualified(w.info.schema, w.info.name)} FORCE ROW LEVEL SECURITY")
                        for b in w.batches[1:]:
                            if b.forced_off:
                                await conn.execute(f"ALTER TABLE {qualified(b.info.schema, b.info.name)} FORCE ROW LEVEL SECURITY")
                            children[b.target] = children.get(b.target, 0) + len(b.rows)
                        added[w.info.target] = len(w.planned)
                    await self._arm_children(conn, ctl, works)
                except BaseException:
                    await ctr.rollback()
                    raise
                await ctr.commit()
                committed_control = deployments
        except BaseException as exc:
            raise await self._abort(dtr, exc, "seeding", "written") from None
        try:
            await dtr.commit()
        except (asyncpg.PostgresError, OSError) as exc:
            await self._undo_control(committed_control)
            raise SeedError(f"datastore {self.ds.name!r} did not commit; registry entries were withdrawn: {_pg_message(exc)}") from None
        warnings = [x for w in works for x in w.warnings]
        for x in warnings:
            self.log.warning("seed.warning", detail=x)
        self.log.info("seed.applied", added=added, deployments=committed_control)
        return ApplyResult(self.ds.name, added, children, committed_control, warnings)

    async def _arm(self, conn: asyncpg.Connection, info: TableInfo, pks: Sequence[str]) -> None:
        """After the tripwire's DDL: its line key, this table's keys and filter, and the functions of
        older installs that no policy uses any more."""
        col = info.column(info.primary_key[0])
        await self.tripwire.install_line_key(conn, self.registry.keyring)
        await self.tripwire.set_members(conn, info.target, col.type, col.base_type, pks)
        for schema in {self.tripwire.schema, *await detection_objects.schemas(self.registry.pool, self.ds.name)}:
            if (schema, LEGACY_FUNCTION) == (self.tripwire.schema, self.tripwire.function):
                continue
            try:
                async with conn.transaction():  # still used by a table not upgraded yet: kept
                    await conn.execute(f"DROP FUNCTION IF EXISTS {qualified(schema, LEGACY_FUNCTION)}(text, text, text)")
            except asyncpg.DependentObjectsStillExistError:
                pass

    async def _child_keys(self, existing: Mapping[str, Any], canaries: set[str] | None = None) -> dict[str, list[tuple[int, str, list[str]]]]:
        """Rows written for these canaries in other tables (all of ``existing`` when ``canaries`` is
        None), from their deployment manifests: target -> [(depth, pk, key columns)]."""
        out: dict[str, list[tuple[int, str, list[str]]]] = {}
        deps = {rec.deployment_id for pk, rec in existing.items() if (canaries is None or pk in canaries) and rec.deployment_id is not None}
        for dep in sorted(deps):
            for e in (await self.registry.manifest(dep)).get("child_rows", ()):
                if e["canary"] in existing and (canaries is None or e["canary"] in canaries):
                    out.setdefault(e["target"], []).append((int(e["depth"]), str(e["pk"]), list(e["key"])))
        return out

    async def _arm_children(self, conn: asyncpg.Connection, ctl: asyncpg.Connection, works: Sequence[_TargetWork]) -> None:
        """Put the tripwire on the tables holding rows written for canaries (orders, addresses): reading
        a canary customer's order is a read of the canary. Tables with a composite key are not armed.
        Nothing to do when this run writes no canary and changes no detection."""
        if not any(w.planned or w.statements for w in works):
            return
        keys: dict[str, set[str]] = {}
        infos: dict[str, TableInfo] = {}
        for w in works:
            for target, rows in (await self._child_keys(w.existing)).items():
                keys.setdefault(target, set()).update(pk for _, pk, _ in rows)
            for b in w.batches[1:]:
                infos[b.target] = b.info
                keys.setdefault(b.target, set()).update(r.pk for r in b.rows)
        armed = await detection_objects.children(ctl, self.ds.name)
        for target, pks in sorted(keys.items()):
            if not pks or (target not in infos and target not in armed):
                continue
            info = await introspect(conn, target, datastore=self.ds.name)
            tw = self.tripwire
            foreign = [p for p in info.policies if p[0] not in (tw.policy, tw.permissive)]
            if foreign and not info.rls_enabled:
                self.log.warning("seed.child_not_armed", table=target, reason="its policies are disabled")
                continue
            prior = armed.get(target)
            pk_type, base_type = _key_types(info)
            for stmt in self._detection_statements(info, base_type, sorted(pks)):
                await conn.execute(stmt)
            await self.tripwire.set_members(conn, target, pk_type, base_type, sorted(pks))
            details = prior or {"rls_enabled_before": info.rls_enabled, "rls_forced_before": info.rls_forced,
                                "permissive_policy": None if info.rls_enabled else tw.permissive, "schema_created": False}
            details.update(child_of=sorted({w.info.target for w in works}), schema=tw.schema,
                           function=f"{tw.schema}.{tw.function}", policy=tw.policy)
            await detection_objects.record(ctl, self.ds.name, target, details)

    # -- copies -----------------------------------------------------------------------------------
    async def enroll(self, target: str, key: str, members: Mapping[str, int]) -> EnrollResult:
        """Tripwire a copy of canary data (a table in the datastore's database that the copy sweep found):
        its rows whose ``key`` column holds a key of ``members`` (key text -> the canary whose values the
        row holds) fire like canary rows. Nothing in the copy is written or deleted; ``canary retire``
        of those canaries takes the tripwire off again and restores the copy's row-level-security
        state. The key must identify rows (a column the copy's rows do not share): the caller checks."""
        schema, name = parse_target(target)
        target = f"{schema}.{name}"
        armed = await detection_objects.details(self.registry.pool, self.ds.name, target)
        if armed is not None and not armed.get("copy"):
            raise SeedError(f"{target} holds canaries or rows written for them: it is armed already", target=target)
        if not members:
            raise SeedError(f"{target}: no row holds a canary value, nothing to enroll", target=target)
        conn = await self._connect()
        try:
            tr = conn.transaction()
            await tr.start()
            try:
                await conn.execute(f"SET LOCAL lock_timeout = {int(self.lock_timeout * 1000)}")
                info = await introspect(conn, target, datastore=self.ds.name)
                if info.kind not in ("r", "p"):
                    raise SeedError(f"{target} is not a table (row-level security cannot apply): cover it with object audit",
                                    target=target)
                if key not in {c.name for c in info.columns}:
                    raise SeedError(f"{target} has no column {key!r} to key the tripwire on", target=target)
                tw = self.tripwire
                foreign = [p for p in info.policies if p.name not in (tw.policy, tw.permissive)]
                if foreign and not info.rls_enabled:
                    raise SeedError(f"{target} has row-level security policies that are disabled: enrolling would enable "
                                    "them", target=target)
                pk_type, base_type = _key_types(info, key)
                pks = sorted(members)
                for stmt in self._detection_statements(info, base_type, pks, key=key):
                    await conn.execute(stmt)
                await tw.install_line_key(conn, self.registry.keyring)
                await tw.set_members(conn, target, pk_type, base_type, pks)
            except BaseException as exc:
                raise await self._abort(tr, exc, "enrolling", "enrolled") from None
            await tr.commit()
        finally:
            await self._close(conn)
        details = armed or {"rls_enabled_before": info.rls_enabled, "rls_forced_before": info.rls_forced,
                            "permissive_policy": None if info.rls_enabled else tw.permissive, "schema_created": False}
        sources = sorted({t for t in await self._targets() if t != target})
        details.update(copy=True, key=key, child_of=sorted(set(details.get("child_of", ())) | set(sources)),
                       schema=tw.schema, function=f"{tw.schema}.{tw.function}", policy=tw.policy)
        async with self.registry.pool.acquire() as ctl, ctl.transaction():
            added = await self.registry.add_values(
                ctl, [(cid, ValueKind.CHILD_ROW.value, location_key(self.ds.name, target, pk)) for pk, cid in members.items()])
            await detection_objects.record(ctl, self.ds.name, target, details)
        self.log.info("seed.copy_enrolled", datastore=self.ds.name, target=target, rows=len(members),
                      canaries=len(set(members.values())))
        return EnrollResult(self.ds.name, target, key, len(members), len(set(members.values())), added)

    async def _abort(self, tr: Any, exc: BaseException, doing: str, undone: str) -> BaseException:
        """Roll the datastore transaction back and turn a PostgreSQL error into one clear SeedError."""
        await tr.rollback()
        if isinstance(exc, asyncpg.LockNotAvailableError):
            return SeedError(f"datastore {self.ds.name!r}: a table is locked by another session; nothing was {undone} (retry later)")
        if isinstance(exc, asyncpg.PostgresError):
            return SeedError(f"{doing} datastore {self.ds.name!r} failed, nothing was {undone}: {_pg_message(exc)}")
        return exc

    async def _insert(self, conn: asyncpg.Connection, w: _TargetWork) -> None:
        """Write a target's canary rows and their child rows. First as ONE statement (a data-modifying
        WITH per table), so every row carries the same command id (``cmin``), 0 when nothing was written
        before in the transaction, as rows an application inserts in one statement do: a reader who
        knows canary could otherwise skip its rows with the leakproof ``cmin <> 1`` on a child table.
        A constraint violation falls back to batch by batch, row by row, regenerating values."""
        for batch in w.batches:
            await self._prepare_batch(conn, batch)
        live = [b for b in w.batches if b.rows]
        if live and sum(len(b.rows) for b in live) <= INSERT_BATCH:
            parts: list[str] = []
            args: list[list[str | None]] = []
            for n, b in enumerate(live):
                cols = list(b.rows[0].values)
                parts.append(f"w{n} AS ({_insert_sql(b.info, cols, len(args) + 1)})")
                args += [[r.values.get(c) for r in b.rows] for c in cols]
            try:
                async with conn.transaction():
                    await conn.execute(f"WITH {', '.join(parts)} SELECT 1", *args)
                return
            except _CONSTRAINT_ERRORS:
                pass
        for level, batch in enumerate(w.batches):
            await self._insert_batch(conn, batch, w.contacts if level == 0 else None)

    async def _prepare_batch(self, conn: asyncpg.Connection, batch: Batch) -> None:
        """Give a batch's rows their parent's final key, and keys from the sequence where they need one."""
        if not batch.rows:
            return
        info = batch.info
        pk = info.primary_key
        for i, row in enumerate(batch.rows):
            batch.rows[i] = self._finish(batch, i, dict(row.values))
        if len(pk) == 1 and any(not r.values.get(pk[0]) for r in batch.rows):
            pending = [i for i, r in enumerate(batch.rows) if not r.values.get(pk[0])]
            if not info.pk_sequence:
                raise SeedError(f"cannot choose keys for {len(pending)} rows of {info.target}: no free keys and no sequence")
            keys = await conn.fetch("SELECT nextval($1::regclass)::text AS k FROM generate_series(1, $2)", info.pk_sequence, len(pending))
            for i, k in zip(pending, keys):
                batch.rows[i] = self._finish(batch, i, {**batch.rows[i].values, pk[0]: k["k"]})

    @staticmethod
    def _finish(batch: Batch, i: int, values: dict[str, str | None]) -> PlannedRow:
        """Row ``i`` of ``batch`` with its parent's final key."""
        if batch.parent is not None and batch.fk is not None:
            values[batch.fk[0]] = batch.parent.rows[batch.parent_index[i]].values.get(batch.fk[1])
        return PlannedRow(batch.info.target, batch.key_of(values), values, batch.parent is None)

    async def _insert_batch(self, conn: asyncpg.Connection, batch: Batch, contacts: list[tuple[str | None, str | None]] | None) -> None:
        """Insert one batch; a row that violates a constraint is regenerated (new values, same
        placement) up to MAX_ATTEMPTS times, each attempt inside a savepoint."""
        if not batch.rows:
            return
        info = batch.info
        pk = info.primary_key
        await self._prepare_batch(conn, batch)  # again: a regenerated parent may have a new key
        cols = list(batch.rows[0].values)
        sql = _insert_sql(info, cols)

        async def insert(rows: Sequence[PlannedRow]) -> None:
            await conn.execute(sql, *[[r.values.get(c) for r in rows] for c in cols])

        for start in range(0, len(batch.rows), INSERT_BATCH):
            chunk = range(start, min(start + INSERT_BATCH, len(batch.rows)))
            try:
                async with conn.transaction():
                    await insert([batch.rows[i] for i in chunk])
                continue
            except _CONSTRAINT_ERRORS:
                pass
            for i in chunk:
                for attempt in range(MAX_ATTEMPTS):
                    try:
                        async with conn.transaction():
                            await insert([batch.rows[i]])
                        break
                    except _CONSTRAINT_ERRORS as exc:
                        if attempt == MAX_ATTEMPTS - 1 or batch.regenerate is None:
                            raise SeedError(
                                f"cannot write a row into {info.target} that satisfies its constraints "
                                f"after {attempt + 1} attempts: {_pg_message(exc)}", target=info.target,
                            ) from None
                        fresh = await asyncio.to_thread(batch.regenerate, i)
                        keep = {c: batch.rows[i].values.get(c) for c in pk} if len(pk) == 1 else {}
                        batch.rows[i] = self._finish(batch, i, {**fresh.values, **keep})
                        if contacts is not None:
                            contacts[i] = (fresh.email, fresh.phone)

    async def _row_texts(self, conn: asyncpg.Connection, info: TableInfo, pks: Sequence[str]) -> dict[str, str]:
        """pk text -> the row as PostgreSQL renders it (``t::text``), for fingerprints."""
        pk = ident(info.primary_key[0])
        pk_type = info.column(info.primary_key[0]).type
        rows = await conn.fetch(
            f"SELECT t.{pk}::text AS k, t::text AS r FROM {qualified(info.schema, info.name)} t WHERE t.{pk} = ANY($1::text[]::{pk_type}[])",
            list(pks),
        )
        return {r["k"]: r["r"] for r in rows}

    def _fingerprint(self, target: str, pk: str, row_text: str) -> bytes:
        return self.registry.keyring.mac(row_text.encode(), "fingerprint:" + location_key(self.ds.name, target, pk))

    async def _record(self, conn: asyncpg.Connection, ctl: asyncpg.Connection, w: _TargetWork) -> int | None:
        """Registry entries, deployment manifest and detection state for one target (control txn)."""
        info = w.info
        texts = await self._row_texts(conn, info, [p.pk for p in w.planned])
        tw = self.tripwire
        prior = await detection_objects.details(ctl, self.ds.name, info.target)
        schema_exists = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)", tw.schema)
        details: dict[str, Any] = prior if prior is not None else {
            "rls_enabled_before": info.rls_enabled,
            "rls_forced_before": info.rls_forced,
            "permissive_policy": None if info.rls_enabled else tw.permissive,
        }
        if prior is None or prior.get("schema") != tw.schema:  # first install here, or moved to another schema
            details["schema_created"] = not schema_exists
            if schema_exists and await detection_objects.count(ctl, self.ds.name, excluding=[info.target]):
                details["schema_owner_target"] = await detection_objects.first_created_schema(ctl, self.ds.name)
        details.update(schema=tw.schema, function=f"{tw.schema}.{tw.function}", policy=tw.policy,
                       permissive_policy=tw.permissive if details.get("permissive_policy") else None)
        manifest = {
            "datastore": self.ds.name,
            "target": info.target,
            "rows": [{"target": info.target, "pk": p.pk} for p in w.planned],
            "child_rows": [
                {"target": b.target, "pk": r.pk, "key": list(b.info.primary_key), "canary": w.planned[b.top_index[i]].pk, "depth": b.depth}
                for b in w.batches[1:] for i, r in enumerate(b.rows)
            ],
            "objects": {
                "schema": tw.schema, "function": details["function"], "policy": tw.policy,
                "permissive_policy": details["permissive_policy"],
            },
            "rls_before": {"enabled": details["rls_enabled_before"], "forced": details["rls_forced_before"]},
            "statements": w.statements,
            "roles": [{"role": c.fields["user"], "canary": p.pk} for p, c in zip(w.planned, w.creds) if c.type == CredentialType.PG_DSN],
            "seeded_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        }
        dep_id = await self.registry.create_deployment(ctl, self.ds.name, info.target, manifest) if w.planned else None
        rows_of: dict[int, list[tuple[str, str]]] = {}  # canary index -> (kind, location key) of its child rows
        for b in w.batches[1:]:
            for j, r in enumerate(b.rows):
                rows_of.setdefault(b.top_index[j], []).append(
                    (ValueKind.CHILD_ROW.value, location_key(self.ds.name, b.target, key_text(r.pk))))
        canaries = []
        for i, (p, (email, phone)) in enumerate(zip(w.planned, w.contacts)):
            location = {"target": info.target, "pk": p.pk, "deployment": dep_id}
            lookup = location_key(self.ds.name, info.target, p.pk)
            fp = self._fingerprint(info.target, p.pk, texts[p.pk])
            if w.creds:
                entry = new_credential_canary(w.creds[i], self.ds.name, self._label(info.target), location=location, lookup=lookup)
                canaries.append(dataclasses.replace(entry, fingerprint=fp, values=[*entry.values, *rows_of.get(i, [])]))
                continue
            values = [(k, v) for k, v in (("email", email), ("email", (self.pools.forward_to(email) or "").lower()), ("phone", phone)) if v]
            values += rows_of.get(i, [])
            canaries.append(
                NewCanary(
                    kind="customer", datastore=self.ds.name, label=self._label(info.target),
                    location=location, lookup=lookup, fingerprint=fp, values=values,
                )
            )
        await self.registry.add(ctl, canaries, dep_id)
        await detection_objects.record(ctl, self.ds.name, info.target, details)
        return dep_id

    async def _undo_control(self, deployments: Sequence[int]) -> None:
        if not deployments:
            return
        async with self.registry.pool.acquire() as ctl, ctl.transaction():
            await self.registry.withdraw_deployments(ctl, deployments)

    # -- verify ---------------------------------------------------------------------------------
    async def verify(self) -> VerifyReport:
        """Every active canary present and unmodified, and its detection installed. Writes nothing."""
        conn = await self._connect()
        findings: list[Finding] = []
        checked = 0
        active: dict[str, Mapping[str, Any]] = {}  # canary table -> its active canaries by key
        try:
            role = await self._role(conn)
            for target in await self._targets():
                existing = await self._existing(target)
                if not existing:
                    continue
                active[target] = existing
                try:
                    info, texts = await self._read_quietly(conn, role, target, list(existing))
                except DatastoreError:
                    findings.extend(Finding(r.uid, target, "missing") for r in existing.values())
                    checked += len(existing)
                    continue
                for pk, rec in existing.items():
                    checked += 1
                    if pk not in texts:
                        findings.append(Finding(rec.uid, target, "missing"))
                    elif rec.fingerprint is not None and bytes(rec.fingerprint) != self._fingerprint(target, pk, texts[pk]):
                        findings.append(Finding(rec.uid, target, "modified"))
                findings.extend(await self._check_detection(conn, info, list(existing)))
            findings.extend(await self._verify_children(conn, active))
            if active:  # the schema's shared objects: once, reported with the first canary table
                first = next(iter(active))
                findings.extend(Finding("-", first, p) for p in await self.tripwire.problems(conn, self.registry.keyring))
        finally:
            await self._close(conn)
        return VerifyReport(self.ds.name, checked, findings)

    async def _verify_children(self, conn: asyncpg.Connection, active: Mapping[str, Mapping[str, Any]]) -> list[Finding]:
        """The tripwire on tables holding rows written for active canaries catches all of those rows."""
        armed = await detection_objects.children(self.registry.pool, self.ds.name)
        if not armed:
            return []
        keys: dict[str, set[str]] = {}
        for existing in active.values():
            for child, rows in (await self._child_keys(existing)).items():
                keys.setdefault(child, set()).update(pk for _, pk, _ in rows)
        copies = await self._copy_keys([c for c, d in armed.items() if d.get("copy")])
        out: list[Finding] = []
        for child, details in armed.items():
            pks = sorted(copies.get(child, ())) if details.get("copy") else sorted(keys.get(child, ()))
            if pks:
                info = await introspect(conn, child, datastore=self.ds.name)
                out.extend(await self._check_detection(conn, info, pks, details.get("key")))
        return out

    async def _copy_keys(self, targets: Sequence[str]) -> dict[str, set[str]]:
        """The keys of the rows of enrolled copies that hold active canaries (from their ``child_row``
        values, decrypted: which rows they are is stored nowhere in the clear)."""
        if not targets:
            return {}
        prefixes = {location_key(self.ds.name, t, ""): t for t in targets}
        out: dict[str, set[str]] = {}
        for r in await active_values(self.registry.pool, ValueKind.CHILD_ROW.value):
            value = self.registry.keyring.decrypt_text(r["value_enc"], value_purpose(r["kind"]))
            for prefix, target in prefixes.items():
                if value.startswith(prefix):
                    out.setdefault(target, set()).add(value[len(prefix):])
        return out

    async def _read_quietly(self, conn: asyncpg.Connection, role: Role, target: str, pks: list[str]) -> tuple[TableInfo, dict[str, str]]:
        """The current text of some rows, read without firing detection, in a rolled-back transaction."""
        tr = conn.transaction()
        await tr.start()
        try:
            await conn.execute(f"SET LOCAL lock_timeout = {int(self.lock_timeout * 1000)}")
            info = await introspect(conn, target, datastore=self.ds.name)
            await self._quiet_reads(conn, info, role, may_alter=True)
            return info, await self._row_texts(conn, info, pks)
        finally:
            await tr.rollback()

    async def rekey_detection(self, keyring: Keyring) -> bool:
        """Put the line key of ``keyring`` (a new master key) in place of the installed one; False if
        this datastore has no detection key table canary may write."""
        conn = await self._connect()
        try:
            table = self.tripwire.qualified(SETTINGS)
            if await conn.fetchval("SELECT to_regclass($1)", table) is None or not await conn.fetchval(
                    "SELECT has_table_privilege($1, 'TRUNCATE') AND has_table_privilege($1, 'INSERT')", table):
                return False
            async with conn.transaction():
                await self.tripwire.install_line_key(conn, keyring)
            return True
        finally:
            await self._close(conn)

    async def current_rows(self, records: Sequence[Any]) -> dict[tuple[str, str], str]:
        """(target, pk) -> current row text of canary records (for re-fingerprinting at key rotation)."""
        by_target: dict[str, list[str]] = {}
        for rec in records:
            by_target.setdefault(str(rec.location["target"]), []).append(str(rec.location["pk"]))
        out: dict[tuple[str, str], str] = {}
        conn = await self._connect()
        try:
            role = await self._role(conn)
            for target, pks in by_target.items():
                try:
                    _, texts = await self._read_quietly(conn, role, target, pks)
                except DatastoreError:
                    continue
                out.update({(target, k): v for k, v in texts.items()})
        finally:
            await self._close(conn)
        return out

    async def _delete_children(self, conn: asyncpg.Connection, role: Role, existing: Mapping[str, Any], canaries: set[str]) -> dict[str, int]:
        """Delete the child rows recorded for these canaries (from their deployment manifests), deepest first."""
        deps = {rec.deployment_id for pk, rec in existing.items() if pk in canaries and rec.deployment_id is not None}
        entries: dict[tuple[int, str], list[Any]] = {}
        key_cols: dict[str, list[str]] = {}
        for target, rows in (await self._child_keys(existing, canaries)).items():
            for depth, pk, cols in rows:
                entries.setdefault((depth, target), []).append(pk)
                key_cols[target] = cols
        out: dict[str, int] = {}
        for dep in deps:
            for r in (await self.registry.manifest(dep)).get("roles", ()):
                if r["canary"] in canaries:
                    await conn.execute(f"DROP ROLE IF EXISTS {ident(r['role'])}")
        for (_, target), keys in sorted(entries.items(), key=lambda kv: -kv[0][0]):
            info = await introspect(conn, target, datastore=self.ds.name)
            forced_off = await self._quiet_reads(conn, info, role, may_alter=True)
            cols = key_cols[target]
            tbl = qualified(info.schema, info.name)
            if len(cols) == 1:
                status = await conn.execute(
                    f"DELETE FROM {tbl} WHERE {ident(cols[0])} = ANY($1::text[]::{info.column(cols[0]).type}[])", keys
                )
            else:
                tuples = [json.loads(k) for k in keys]
                row = ", ".join(f"{ident(c)}::text" for c in cols)
                args = ", ".join(f"${i + 1}::text[]" for i in range(len(cols)))
                status = await conn.execute(
                    f"DELETE FROM {tbl} WHERE ({row}) IN (SELECT * FROM unnest({args}))", *[[t[i] for t in tuples] for i in range(len(cols))]
                )
            if forced_off:
                await conn.execute(f"ALTER TABLE {tbl} FORCE ROW LEVEL SECURITY")
            out[target] = out.get(target, 0) + int(status.split()[-1])
        return out

    async def _targets(self) -> list[str]:
        return await detection_objects.targets(self.registry.pool, self.ds.name)

    async def _check_detection(self, conn: asyncpg.Connection, info: TableInfo, pks: Sequence[str],
                               key: str | None = None) -> list[Finding]:
        tw = self.tripwire
        out = []
        row = await conn.fetchrow(
            "SELECT pg_catalog.pg_get_expr(p.polqual, p.polrelid) AS qual, p.polpermissive, p.polcmd::text AS cmd"
            " FROM pg_catalog.pg_policy p WHERE p.polrelid = $1 AND p.polname = $2",
            info.oid, tw.policy,
        )
        if row is None or row["polpermissive"] or row["cmd"] != "r":
            out.append(Finding("-", info.target, "detection_policy_missing"))
        else:
            pk_type, base_type = _key_types(info, key)
            for problem in await tw.table_problems(conn, info.target, pk_type, base_type, pks, row["qual"]):
                out.append(Finding("-", info.target, problem))
        if not info.rls_enabled:
            out.append(Finding("-", info.target, "row_level_security_disabled"))
        if self._guard_stale(info):  # the table's own policies changed: canary seed re-arms
            out.append(Finding("-", info.target, "detection_guard_stale"))
        return out

    # -- retire ---------------------------------------------------------------------------------
    async def retire(self, *, force: bool = False, targets: Sequence[str] | None = None) -> RetireResult:
        """Remove exactly the seeded rows (fingerprint checked first) and the detection objects, and
        restore the table's row-level-security state. A modified canary is kept (and stays detected)
        unless ``force``. The datastore commits first, then the registry."""
        conn = await self._connect()
        removed: dict[str, int] = {}
        child_rows: dict[str, int] = {}
        kept: list[Finding] = []
        dropped: list[str] = []
        try:
            role = await self._role(conn)
            armed = await detection_objects.children(self.registry.pool, self.ds.name)
            wanted = [f"{s}.{t}" for s, t in (parse_target(x) for x in targets)] if targets else await self._targets()
            # tables armed for rows written for canaries go last, once every canary table they serve is retired
            wanted = [t for t in wanted if t not in armed] + sorted(
                c for c, d in armed.items() if c in wanted or set(d.get("child_of", ())) <= set(wanted))
            retired_ids: list[int] = []
            deployments: set[int] = set()
            cleanup: list[str] = []
            dtr = conn.transaction()
            await dtr.start()
            try:
                await conn.execute(f"SET LOCAL lock_timeout = {int(self.lock_timeout * 1000)}")
                for target in wanted:
                    if target in armed and not set(armed[target].get("child_of", ())) <= set(cleanup):
                        continue  # a canary table it serves keeps canaries (modified ones): stays armed
                    details = await detection_objects.details(self.registry.pool, self.ds.name, target)
                    existing = await self._existing(target)
                    info = await introspect(conn, target, datastore=self.ds.name)
                    tw = self.tripwire
                    restrictive = (details or {}).get("policy") or tw.policy
                    permissive = (details or {}).get("permissive_policy") or tw.permissive
                    tbl = qualified(info.schema, info.name)
                    await conn.execute(f"DROP POLICY IF EXISTS {ident(restrictive)} ON {tbl}")
                    forced_off = await self._quiet_reads(conn, info, role, may_alter=True)
                    texts = await self._row_texts(conn, info, list(existing)) if existing else {}
                    delete: list[str] = []
                    keep: list[str] = []
                    for pk, rec in existing.items():
                        if pk in texts and rec.fingerprint is not None and bytes(rec.fingerprint) != self._fingerprint(target, pk, texts[pk]):
                            kept.append(Finding(rec.uid, target, "modified"))
                            if not force:
                                keep.append(pk)
                                continue
                        if pk in texts:
                            delete.append(pk)
                        retired_ids.append(rec.id)
                        if rec.deployment_id is not None:
                            deployments.add(rec.deployment_id)
                    gone = set(delete) | {pk for pk in existing if pk not in texts}
                    for table, n_child in (await self._delete_children(conn, role, existing, gone)).items():
                        child_rows[table] = child_rows.get(table, 0) + n_child
                    if delete or keep:
                        pk_col = info.column(info.primary_key[0])
                    if delete:
                        n = await conn.execute(
                            f"DELETE FROM {tbl} WHERE {ident(pk_col.name)} = ANY($1::text[]::{pk_col.type}[])", delete
                        )
                        removed[target] = int(n.split()[-1])
                    elif target not in armed:
                        removed[target] = 0
                    if keep:
                        for stmt in tw.setup_sql():
                            await conn.execute(stmt)
                        if restrictive != tw.policy:
                            await conn.execute(f"DROP POLICY IF EXISTS {ident(tw.policy)} ON {tbl}")
                        guard = self._guard(await introspect(conn, target, datastore=self.ds.name))
                        await conn.execute(tw.policy_sql(tbl, target, pk_col.name, pk_col.base_type, bits_for(len(keep)), guard))
                        await tw.install_line_key(conn, self.registry.keyring)
                        await tw.set_members(conn, target, pk_col.type, pk_col.base_type, keep)
                        if forced_off:
                            await conn.execute(f"ALTER TABLE {tbl} FORCE ROW LEVEL SECURITY")
                        continue
                    details = details or {}
                    if details.get("permissive_policy"):
                        await conn.execute(f"DROP POLICY IF EXISTS {ident(permissive)} ON {tbl}")
                    enabled = details.get("rls_enabled_before", info.rls_enabled)
                    forced = details.get("rls_forced_before", info.rls_forced and not forced_off)
                    await conn.execute(f"ALTER TABLE {tbl} {'ENABLE' if enabled else 'DISABLE'} ROW LEVEL SECURITY")
                    await conn.execute(f"ALTER TABLE {tbl} {'FORCE' if forced else 'NO FORCE'} ROW LEVEL SECURITY")
                    dropped.append(f"policy {restrictive} on {target}")
                    if await conn.fetchval("SELECT to_regclass($1)", tw.qualified(MEMBERS)) is not None:
                        await tw.remove(conn, target)
                    cleanup.append(target)
                remaining = await detection_objects.count(self.registry.pool, self.ds.name, excluding=cleanup)
                if cleanup and not remaining:
                    schema = self.tripwire.schema
                    for stmt in self.tripwire.drop_sql():
                        await conn.execute(stmt)
                    await conn.execute(f"DROP FUNCTION IF EXISTS {qualified(schema, LEGACY_FUNCTION)}(text, text, text)")
                    dropped.append(f"function {schema}.{self.tripwire.function}")
                    dropped.append(f"tables and view of {schema}")
                    if await detection_objects.any_created_schema(self.registry.pool, self.ds.name):
                        try:
                            async with conn.transaction():
                                await conn.execute(f"DROP SCHEMA IF EXISTS {ident(schema)}")
                            dropped.append(f"schema {schema}")
                        except asyncpg.DependentObjectsStillExistError:
                            self.log.warning("retire.schema_kept", schema=schema, reason="other objects live in it")
            except BaseException as exc:
                raise await self._abort(dtr, exc, "retiring canaries in", "removed") from None
            await dtr.commit()
        finally:
            await self._close(conn)
        async with self.registry.pool.acquire() as ctl, ctl.transaction():
            await self.registry.retire(ctl, retired_ids)
            await self.registry.retire_emptied_deployments(ctl, deployments)
            await detection_objects.remove(ctl, self.ds.name, cleanup)
        self.log.info("seed.retired", removed=removed, kept=len([k for k in kept if not force]))
        return RetireResult(self.ds.name, removed, kept if not force else [], child_rows, dropped)


def _in_key_order(placed: list[RowContext | None], gap_of: Sequence[tuple[int, int] | None]) -> None:
    """Rows placed in the same gap between two real rows got their keys and times independently: give
    them their keys in the order of their times, as real rows have them (each keeps its own time, so a
    row written for a canary stays dated after it)."""
    groups: dict[tuple[int, int], list[tuple[int, RowContext]]] = {}
    for i, (gap, c) in enumerate(zip(gap_of, placed)):
        if gap is not None and c is not None and c.pk is not None and c.created is not None:
            groups.setdefault(gap, []).append((i, c))
    for members in groups.values():
        keys = sorted((c.pk for _, c in members if c.pk is not None), key=int)
        by_time = sorted(members, key=lambda m: m[1].created or dt.datetime.min.replace(tzinfo=dt.timezone.utc))
        for (i, c), key in zip(by_time, keys):
            placed[i] = RowContext(pk=key, created=c.created)


@dataclasses.dataclass(frozen=True, slots=True)
class EnrollResult:
    """What :meth:`PostgresSeeder.enroll` armed (counts only: which rows stays secret)."""

    datastore: str
    target: str
    key: str
    rows: int
    canaries: int
    values_added: int


def _key_types(info: TableInfo, key: str | None = None) -> tuple[str, str]:
    """(type, base type) of a table's row key as the tripwire hashes it: a composite key is text.
    ``key``: the column an enrolled copy is keyed on (copies have no primary key)."""
    if key is None and len(info.primary_key) != 1:
        return "text", "text"
    col = info.column(key or info.primary_key[0])
    return col.type, col.base_type


def _mask(secret: str | None) -> str | None:
    return None if secret is None else f"{secret[:4]}…({len(secret)} characters)"


def _pg_message(exc: BaseException) -> str:
    """A PostgreSQL error without any value from the row (DETAIL may hold column values)."""
    if isinstance(exc, asyncpg.PostgresError):
        name = getattr(exc, "constraint_name", None)
        msg = str(getattr(exc, "message", "") or exc).splitlines()[0]
        m = re.match(r"invalid input for query argument \$\d+", msg)
        if m:  # asyncpg echoes the argument values here: canary keys must not reach an error message
            msg = m.group(0)
        return f"{type(exc).__name__}: {msg}" + (f" (constraint {name})" if name and name not in msg else "")
    return type(exc).__name__


SEEDER = PostgresSeeder
