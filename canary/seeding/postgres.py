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
import collections
import dataclasses
import datetime as dt
import functools
import json
import random
import re
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar

import asyncpg
import structlog

from canary.config import Config, DatastoreConfig, TableTarget
from canary.credentials.aws import PooledKey
from canary.credentials.aws import place as place_pooled
from canary.credentials.values import CREDENTIAL_KIND, Credential, CredentialFactory, CredentialType
from canary.credentials.values import new_canary as new_credential_canary
from canary.crypto import Keyring
from canary.errors import CryptoError, DatastoreError, SeedError
from canary.postgres import managed
from canary.postgres.protocol import LEGACY_FUNCTION
from canary.postgres.sql import ident, parse_target, qualified
from canary.postgres.tamper import AUDIT_ROLE_DEFAULT
from canary.postgres.tripwire import (
    MEMBERS,
    SETTINGS,
    bits_for,
    column_text_sql,
    guard_signature,
    key_sql,
    key_text,
    policy_masks,
    tripwire_for,
    visibility_guard,
)
from canary.seeder import ApplyResult, Finding, Plan, PlannedRow, RetireResult, ServerSetting, TargetPlan, VerifyReport
from canary.seeding import trickle as trickling
from canary.seeding.catalog import Policy, TableInfo, introspect, unsupported_reason
from canary.seeding.children import Batch, created_column, plan_children
from canary.seeding.credentials import (
    SecretColumns,
    Storage,
    create_role_sql,
    credentials_for,
    fill,
    infer_storage,
    infer_type,
    secret_columns,
    stored_credential,
)
from canary.seeding.synth.contacts import ContactAllocator, mailbox_needs
from canary.seeding.synth.frequency import ValueCounts
from canary.seeding.synth.profile import FREEMAIL, TableProfile, profile
from canary.seeding.synth.relations import OTHER, Tally
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
from canary.seeding.synth.streams import Streams
from canary.seeding.synth.synthesizer import RowContext, Synthesizer, SynthRow, timestamp_text
from canary.seeding.synth.times import EPOCH_HOUR_OF_WEEK, EXACT, WEEK_HOURS, Precision, Rates, between
from canary.store import describe_error, detection_objects, sessions
from canary.store.registry import NewCanary, Registry, ValueKind, active_values, location_key, recognise, value_purpose

log = structlog.get_logger("canary.seeders.postgres")

SAMPLE_ROWS = 2000
#: tables up to this many rows are counted whole to match how common canary values are (names, addresses)
COUNT_ALL_ROWS = 5_000_000
INSERT_BATCH = 2000
MAX_ATTEMPTS = 20
#: gaps between real keys read for placement: a weighted sample of GAP_SAMPLE per row (at least MIN_GAPS)
#: or, for dated rows, TIME_GAPS around each row's time, streamed FETCH_GAPS at a time (memory bounded by
#: the rows placed, never by the table)
GAP_SAMPLE = 8
#: rows newest by key whose times show the precision rows written today have
RECENT_ROWS = 200
MIN_GAPS = 2000
TIME_GAPS = 50
#: stretches between neighbours on either side of a gap that give the local pace its length is weighed against
PACE_ROWS = 10
FETCH_GAPS = 2000
#: whole-table counts arrive as COPY text, counted COUNT_CHUNK bytes at a time by a worker thread; at most
#: BACKLOG_BYTES received wait for it (the server aggregates the next query meanwhile)
COUNT_CHUNK = 1 << 20
BACKLOG_BYTES = 16 << 20
MANY_CANARIES = 1000  # per table: above this, readers pay noticeably for the policy (see bench/read_overhead.py)
_INTEGER_TYPES = ("int2", "int4", "int8")
_CONSTRAINT_ERRORS = (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError)


class RowClash(SeedError):
    """A row could not be written without violating a constraint (its values are made again, or, for a
    row made ahead, made afresh); never a lock or a lost connection."""


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
    members_only: bool = False  # the policy is current: this run only adds keys to the tripwire's members
    habit: trickling.UpdateHabit | None = None  # how the table's real rows get updated after their insert
    later: list[dict[str, Any]] = field(default_factory=list)  # trickle: child row groups written when their time comes
    update_after: float | None = None  # trickle: seconds after sign-up of the canary's later update (None: none)
    pooled: list[PooledKey] = field(default_factory=list)  # AWS pool keys behind creds (same order), moved into the rows

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


_COPY_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_COPY_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def _copy_field(text: str) -> str | None:
    """One field of a COPY text line as the value it stands for (``\\N``: NULL; backslash escapes)."""
    if text == "\\N":
        return None
    if "\\" not in text:
        return text
    return _COPY_ESCAPE.sub(lambda m: _COPY_ESCAPES.get(m.group(1), m.group(1)), text)


def _copied(text: str) -> Iterable[tuple[str | None, int]]:
    """``(v, n)`` of COPY text lines ``v<TAB>n`` (whole lines, each ending in a newline; a raw TAB only
    ever separates fields, a raw newline only ends a line). Text without a backslash has no escape and
    no NULL: its fields are split in C, not line by line (most batches of most columns)."""
    fields = _plain_fields(text)
    if fields is not None:
        return zip(fields[0::2], map(int, fields[1::2]))
    text = text.removesuffix("\n")
    return _escaped(text.split("\n")) if text else ()


def _plain_fields(text: str) -> list[str] | None:
    """The fields of COPY text lines without a backslash (no escape, no NULL), split in C; None for
    text with one (or none at all)."""
    text = text.removesuffix("\n")
    return text.replace("\n", "\t").split("\t") if text and "\\" not in text else None


def _escaped(lines: list[str]) -> Iterator[tuple[str | None, int]]:
    for line in lines:
        v, _, n = line.rpartition("\t")
        yield _copy_field(v), int(n)


def _count_text(count: Callable[[str], None], text: bytes) -> None:
    count(text.decode())


def _seal(filled: Sequence[ValueCounts]) -> None:
    for counts in filled:
        counts.seal()


def _count_copied(counts: ValueCounts, text: str) -> None:
    fields = _plain_fields(text)
    if fields is not None and fields[1::2].count("1") == len(fields) // 2:  # every value one row's: no pairs made
        counts.add_singles(fields[0::2])
        return
    counts.add_all(_copied(text))


def _count_joint(owners: Sequence[Sequence[tuple[ValueCounts, int]]], text: str) -> None:
    """Lines of a query counting several tallies' sets at once (``i<OTHER>joint value``: the joint
    tally's set i) into each tally that has that set, under its own index there."""
    for v, n in _copied(text):
        if v is None:
            continue
        i, sep, rest = v.partition(OTHER)
        for counts, at in owners[int(i)] if sep and i.isdigit() and int(i) < len(owners) else ():
            counts.add(f"{at}{OTHER}{rest}", n)


def _as_text(column: str) -> str:
    return f"{ident(column)}::text"


def _key_types_of(info: TableInfo) -> list[str]:
    """Base types of the primary key's columns, in key order."""
    return [info.column(c).base_type for c in info.primary_key]


def _key_values(key: str, n: int) -> list[str | None] | None:
    """The column texts of a composite key's text (a JSON array of ``n`` texts), None if it is not one."""
    try:
        got = json.loads(key)
    except ValueError:
        return None
    if not isinstance(got, list) or len(got) != n or not all(v is None or isinstance(v, str) for v in got):
        return None
    return got


def _key_match(info: TableInfo, keys: Sequence[str], first: int = 1, alias: str = "",
               columns: Sequence[str] | None = None) -> tuple[str, list[Any]]:
    """A predicate true for the rows of ``info`` whose key text (:func:`key_sql`) is one of ``keys``, and
    its arguments (``$first``...). It compares typed values, so the primary key's index serves it.
    ``columns``: the key's columns (default: the primary key's)."""
    cols = list(info.primary_key if columns is None else columns)
    a = f"{ident(alias)}." if alias else ""
    if len(cols) == 1:
        col = info.column(cols[0])
        return f"{a}{ident(col.name)} = ANY(${first}::text[]::{col.type}[])", [list(keys)]
    # a key with a value still to come (from a sequence) is no row's: left out (a NULL would make NOT IN unknown)
    tuples = [t for t in (_key_values(k, len(cols)) for k in keys) if t is not None and None not in t]
    row = ", ".join(f"{a}{ident(c)}" for c in cols)
    casts = ", ".join(f"u.c{i}::{info.column(c).type}" for i, c in enumerate(cols))
    args = ", ".join(f"${first + i}::text[]" for i in range(len(cols)))
    names = ", ".join(f"c{i}" for i in range(len(cols)))
    return (f"({row}) IN (SELECT {casts} FROM unnest({args}) AS u({names}))",
            [[t[i] for t in tuples] for i in range(len(cols))])


def _rows_sql(info: TableInfo, columns: Sequence[str], expr: str) -> str:
    """A query of ``expr`` (over ``columns`` by name, or qualified by ``r``) for rows given as one text
    array per column (``$1``...), each cast to its column's type: one value per row, in order."""
    casts = ", ".join(f"u.c{i}::{info.column(c).type} AS {ident(c)}" for i, c in enumerate(columns))
    args = ", ".join(f"${i + 1}::text[]" for i in range(len(columns)))
    names = ", ".join(f"c{i}" for i in range(len(columns)))
    return (f"SELECT (SELECT {expr} FROM (SELECT {casts}) AS r) AS v"
            f" FROM unnest({args}) WITH ORDINALITY AS u({names}, n) ORDER BY u.n")


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
        clock: Callable[[], dt.datetime] | None = None,
        audit_role: str = AUDIT_ROLE_DEFAULT,
    ) -> None:
        self.ds = datastore
        self.audit_role = audit_role  # [coverage] pgaudit_role: whose settings plan / verify check
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
        self.arriving = False  # planning a trickle sign-up: child rows get no key until they are written
        #: trickle's time (default: the datastore transaction's now()); a simulated clock replays days in
        #: seconds (bench/distinguishability.py --traces)
        self.clock = clock

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
        kwargs.setdefault("audit_role", config.coverage.pgaudit_role)
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
        if not is_owner:  # pg_read_all_data / pg_write_all_data (a managed admin's) do not bypass row security
            raise SeedError(
                f"role {role.name} must own {info.target} (or be a member of its owner {info.owner}, or a superuser / "
                f"BYPASSRLS) to seed it: ALTER TABLE {info.target} OWNER TO {role.name}, or GRANT {info.owner} TO "
                f"{role.name}", target=info.target
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
                now = await self._now(conn)
                works = [await self._prepare(conn, t, role, arrivals=[now] if t.mode == "trickle" else None) for t in self.ds.tables]
            finally:
                await tr.rollback()
            settings, notes = await self._server(conn)
        finally:
            await self._close(conn)
        pending, _ = await trickling.pending_counts(self.registry.pool, self.ds.name)
        plans = []
        for w in works:
            p = self._target_plan(w)
            if w.target.mode == "trickle":
                waiting = await trickling.slots(self.registry.pool, self.ds.name, states=["pending", "inflight"], target=w.info.target)
                signups = [s for s in waiting if s.kind == "signup"]
                missing = max(0, w.target.count - len(w.existing) - len(signups))
                when = f", next due {min(s.due_at for s in waiting):%Y-%m-%d %H:%M} UTC" if waiting else ""
                p = dataclasses.replace(p, mode="trickle", traces=self._trickle_traces(w), schedule=(
                    f"{len(signups)} sign-ups and {len(waiting) - len(signups)} updates scheduled{when}; "
                    f"{missing} more to schedule over {w.target.trickle_over / 86400:g} days (`canary seed`); "
                    f"the row shown is what a sign-up now would write"))
            plans.append(p)
        return Plan(self.ds.name, plans, settings, notes)

    async def _server(self, conn: asyncpg.Connection) -> tuple[list[ServerSetting], list[str]]:
        """The server settings detection relies on that are not as they must be, worded for the datastore's
        provider, and how detection differs under the DSN's role (a managed admin is not a superuser)."""
        role = await managed.server_role(conn, self.ds.provider)
        return await managed.requirements(conn, role, self.audit_role)

    @staticmethod
    def _trickle_traces(w: _TargetWork) -> list[str]:
        """What trickle seeding leaves in the system columns and statistics (as any new customer does)."""
        out = ["one transaction per canary, at a time drawn from the hours its customers sign up at (its own xmin, "
               "like each sign-up's)",
               "key: the sequence's next value at that time and created at that transaction's time, at the table's "
               "precision (the end of the key range, as every new row)"]
        out.extend([f"statistics: each sign-up also writes the tripwire's membership table ({w.target.table} keys in "
                   "the detection schema); its n_tup_ins in pg_stat_user_tables, which every role may read, moves in the "
                   "same second as the table's, so a role polling both can tell which second a canary arrived in",
                   "reads: each sign-up's row is made when the schedule is (that samples and counts the table); at "
                   f"sign-up it reads the newest {RECENT_ROWS} rows by key and its own row (idx_scan moves then, seq_scan does not)"])
        h = w.habit
        if h is not None and h.delays:
            out.append(f"updates: {h.share:.0%} of real rows were updated after their insert; each canary gets one update "
                       "in that share, at a delay drawn from theirs")
        else:
            out.append("updates: the table has no update-time column to learn from; canaries are not updated afterwards")
        if w.info.children:
            out.append("child rows (orders and their lines): each arrives in its own transaction at a delay after sign-up "
                       "drawn from real customers' (first and later orders), keys from the sequences then")
        return out

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
        appended = sum(1 for c in (w.batches[0].contexts or ()) if c.pk is None or any(v is None for _, v in c.key)) if w.batches else 0
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

    async def _prepare(self, conn: asyncpg.Connection, target: TableTarget, role: Role,
                       arrivals: Sequence[dt.datetime] | None = None, prepared: Mapping[str, Any] | None = None) -> _TargetWork:
        """What seeding ``target`` writes; with ``arrivals`` (trickle sign-ups), one canary created at each
        of those times; with ``prepared`` (a sign-up's row made when it was scheduled), that row, created
        at ``arrivals[0]``, without reading the table again."""
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
        for part in info.partitions:
            own = [p for p in part.policies if p.name not in (self.tripwire.policy, self.tripwire.permissive)]
            if own and not part.rls_enabled:
                raise SeedError(
                    f"cannot seed {info.target}: its partition {part.target} has row-level security policies "
                    f"({', '.join(p.name for p in own)}) but RLS is disabled there; enabling RLS for detection would change "
                    "what they allow", target=info.target,
                )
        existing = await self._existing(info.target)
        warnings = self._coverage_warnings(info, role)
        if arrivals is not None:
            why = _trickle_unsupported(info)
            if why:
                raise SeedError(f"cannot seed {info.target} in trickle mode: it {why}", target=info.target)
        to_add = len(arrivals) if arrivals is not None else max(0, target.count - len(existing))
        streams = Streams.drawn(self._target_rng(info.target, len(existing)))
        self.rng = streams("placement")
        # the gap queries' random() is reproducible, too: seeded, and met in the same order (a synchronized
        # scan would start a large table wherever another scan of it is)
        await conn.execute("SET LOCAL synchronize_seqscans = off")
        await conn.execute("SELECT setseed($1)", streams("gap queries").uniform(-1.0, 1.0))
        forced_off = await self._quiet_reads(conn, info, role, may_alter=True)
        if prepared is not None and arrivals:
            top, contact = await self._prepared_row(conn, info, prepared, arrivals[0])
            start = top.contexts[0].created or arrivals[0]
            groups = [{**{k: v for k, v in g.items() if k != "after"},
                      "due": (start + dt.timedelta(seconds=float(g.get("after") or 0.0))).isoformat()}
                     for g in prepared.get("later") or () if isinstance(g, dict) and isinstance(g.get("rows"), list)]
            w = _TargetWork(target, info, existing, [top], [contact], [], warnings, forced_off, later=groups,
                            update_after=prepared.get("update_after"))
            return await self._detection_work(conn, w, legacy, upgrading, to_add, arriving=True)
        sample = await self._sample(conn, info, list(existing), streams("sample"))
        prof = await asyncio.to_thread(profile, info, sample)
        locale = target.locale or infer_locale(prof.script, self.ds.locale)
        if arrivals is not None:
            key = info.column(info.primary_key[0])
            placements = [await self._arrival(conn, info, None if key.base_type in _INTEGER_TYPES
                                              else self._random_key(key.base_type, prof, key.name), when) for when in arrivals]
        else:
            placements = await self._placements(conn, info, prof, list(existing), to_add, warnings, sample=sample) if to_add else []
        cred = self._credential_setup(info, target, sample) if target.credential else None
        pools = self.pools if cred is None else ContactPools()
        used = await self._used_contacts()
        contacts = ContactAllocator(pools.email_domains, pools.phone_numbers, used, streams("contacts"),
                                    mailboxes=[a for a, _ in pools.mailboxes])
        skipped = self._skipped(info, prof)
        reuse = await self._shared_values(conn, info, sample, skipped, pools)
        synth = Synthesizer(info, prof, locale=locale, contacts=contacts, seed=streams("rows").getrandbits(128), skip=skipped, reuse=reuse)
        if placements and info.estimated_rows <= COUNT_ALL_ROWS:
            counts, tallies = await self._whole_table_counts(conn, info, synth.frequency_keys(), synth.tallies())
            await asyncio.to_thread(synth.match_frequencies, counts, sample, tallies=tallies)
            asked = synth.households_asked(counts, sample)
            if asked is not None and asked[2]:
                synth.learn_households(sample, await self._co_residents(conn, info, *asked))
        creds: list[Credential] = []
        pooled: list[PooledKey] = []
        if cred is not None:
            factory, ctype, cols = cred
            creds, pooled, notes = await credentials_for(self.registry, factory, ctype, target, info.target, self.ds.dsn.reveal(),
                                                         self._cred_id, len(placements))
            warnings.extend(notes)
            if cols.storage is not Storage.PLAIN and ctype not in (CredentialType.AWS_KEY, CredentialType.PG_DSN):
                creds = [stored_credential(c, cols.storage) for c in creds]
                warnings.append(
                    f"{info.target}.{cols.secret} keeps {cols.storage} of each token"
                    f"{' (as most of its values do)' if target.stored_as == 'auto' else ''}: the rows get that hash, the "
                    "presentable tokens stay encrypted in the registry and fire when presented (gateway check, honeypot)")

        updated = next((c.name for c in info.columns if semantic_of(c) == Semantic.UPDATED), None)
        habit = trickling.UpdateHabit.of(prof.created_gap, sum(1 for r in sample if updated and r.get(updated) is None))

        def make(i: int) -> SynthRow:
            r = synth.row(placements[i])
            if arrivals is not None and updated and updated in r.values:  # a new sign-up: not updated since
                r.values[updated] = None if habit.initial_null else r.values.get(created_column(info) or "", r.values[updated])
            if creds:
                fill(r.values, cols, creds[i])
                r = SynthRow(r.values, None, None)
            return r

        rows = await asyncio.to_thread(lambda: [make(i) for i in range(len(placements))])
        top = Batch(info, [], top_index=list(range(len(rows))), contexts=placements, regenerate=make)
        top.rows = [PlannedRow(info.target, top.key_of(r.values), r.values) for r in rows]
        await self._key_texts(conn, top)
        batches = [top]
        later: list[dict[str, Any]] = []
        if self.follow_foreign_keys and rows:
            pk = info.primary_key[0]  # tables referencing a composite key get no rows (plan_children says so)
            sample_keys = [str(r[pk]) for r in sample if r.get(pk) is not None] if len(info.primary_key) == 1 else []
            self.arriving = arrivals is not None  # children of a sign-up take their keys when written (children._own_keys)
            try:
                children = await plan_children(
                    self, conn, role, top, sample_keys, locale, warnings, streams("children"))
            finally:
                self.arriving = False
            if arrivals is None:
                batches += children
            else:  # a new customer has no orders yet: each comes at its own time (trickle 'child' slots)
                later = _later_groups(children)
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
        w = _TargetWork(target, info, existing, batches, [(r.email, r.phone) for r in rows], [], warnings, forced_off, creds,
                        sizing, False, habit, later, pooled=pooled)
        w = await self._detection_work(conn, w, legacy, upgrading, to_add, arriving=arrivals is not None)
        if creds and cred is not None:
            w.statements = [sql for sql in (create_role_sql(cred[0], c) for c in creds) if sql] + w.statements
        return w

    async def _detection_work(self, conn: asyncpg.Connection, w: _TargetWork, legacy: tuple[str | None, str | None],
                              upgrading: bool, to_add: int, *, arriving: bool) -> _TargetWork:
        """The DDL ``w`` needs to put (or keep) the tripwire on its table: none when nothing is added and
        nothing is outdated; for one more trickle sign-up on a current policy whose filter keeps its
        size, only new members (no DDL, no lock)."""
        info, existing = w.info, w.existing
        all_pks = list(existing) + [p.pk for p in w.planned]
        if len(all_pks) > MANY_CANARIES:
            w.warnings.append(f"{info.target}: {len(all_pks)} canaries in one table; every statement on it rebuilds the "
                              f"membership test (bench/read_overhead.py: 10,000 keys make key lookups several times slower)")
        outdated = (not self._policy_present(info) or upgrading or self._guard_stale(info) or bool(self._partition_problems(info))
                    or bool(await self.tripwire.problems(conn, self.registry.keyring)))
        w.members_only = arriving and bool(existing) and not outdated and bits_for(len(all_pks)) == bits_for(len(existing))
        w.statements = (self._detection_statements(info, _key_types(info)[1], all_pks, legacy)
                        if (to_add or outdated) and all_pks and not w.members_only else [])
        return w

    async def _prepared_row(self, conn: asyncpg.Connection, info: TableInfo, payload: Mapping[str, Any],
                            when: dt.datetime) -> tuple[Batch, tuple[str | None, str | None]]:
        """A sign-up's row as made at scheduling (its payload), created ``when``: key from the sequence
        (or just above the largest one; a drawn uuid / text key as made), the creation time at the
        newest rows' precision, an update column as the table's new rows have it."""
        values: dict[str, str | None] = dict(payload["values"])
        key = info.column(info.primary_key[0])
        ctx = await self._arrival(conn, info, values.get(key.name), when)
        values[key.name] = ctx.pk
        created = created_column(info)
        if created and ctx.created is not None:
            before = values.get(created)
            values[created] = timestamp_text(info.column(created).base_type, ctx.created)
            updated = next((c.name for c in info.columns if semantic_of(c) == Semantic.UPDATED), None)
            if updated and values.get(updated) is not None and values.get(updated) == before:
                values[updated] = values[created]
        batch = Batch(info, [], top_index=[0], contexts=[ctx])
        batch.rows = [PlannedRow(info.target, batch.key_of(values), values)]
        await self._key_texts(conn, batch)
        return batch, (payload.get("email"), payload.get("phone"))

    async def _whole_table_counts(self, conn: asyncpg.Connection, info: TableInfo, keys: Mapping[str, Sequence[Any]],
                                  tallies: Sequence[Tally]) -> tuple[dict[str, ValueCounts], dict[str, ValueCounts]]:
        """Rows of the whole table per value of each column, and per value derived from it (what an
        insider with a dump counts), and per value derived from several columns (:class:`Tally`, counted
        by the database): each streamed in bounded memory (:class:`ValueCounts`, :meth:`_stream_counts`).
        The tallies of feature sets (not words) are one query: one scan of the table or its sample,
        each feature computed once however many tallies use it."""
        tbl = qualified(info.schema, info.name)
        counts = {name: ValueCounts(derivations) for name, derivations in keys.items()}
        tallied = {tally.name: ValueCounts() for tally in tallies}
        queries: list[tuple[str, Callable[[str], None], Sequence[ValueCounts]]] = [
            (f"SELECT {ident(name)}::text AS v, count(*) AS n FROM {tbl} GROUP BY 1", functools.partial(_count_copied, counts[name]),
             [counts[name]]) for name in keys]
        queries += [(t.query(tbl, _as_text), functools.partial(_count_copied, tallied[t.name]), [tallied[t.name]])
                    for t in tallies if t.each_word is not None]
        by_sets = [t for t in tallies if t.each_word is None and t.sets]
        for rows in sorted({t.rows for t in by_sets}):  # one query per sample (all share the table's estimate)
            group = [t for t in by_sets if t.rows == rows]
            sets = list(dict.fromkeys(fs for t in group for fs in t.sets))
            if len({frozenset(fs) for fs in sets}) < len(sets):  # one grouping, two orders of its features: each its own query
                queries += [(t.query(tbl, _as_text), functools.partial(_count_copied, tallied[t.name]), [tallied[t.name]]) for t in group]
                continue
            joint = Tally("+".join(t.name for t in group), tuple(sets), rows=rows)
            owners = [[(tallied[t.name], at) for t in group for at, fs in enumerate(t.sets) if fs == s] for s in sets]
            queries.append((joint.query(tbl, _as_text), functools.partial(_count_joint, owners), [tallied[t.name] for t in group]))
        await self._stream_counts(conn, queries)
        return counts, tallied

    async def _co_residents(self, conn: asyncpg.Connection, info: TableInfo, address: str, name: str,
                            addresses: Sequence[str]) -> list[tuple[str, str | None]]:
        """(address, full name) of every row at ``addresses`` (a few hundred: the sampled rows' whose
        address two or three rows hold, :class:`Households`): one scan, hashed against the list."""
        tbl = qualified(info.schema, info.name)
        rows = await conn.fetch(f"SELECT t.{ident(address)}::text AS a, t.{ident(name)}::text AS n FROM {tbl} AS t "
                                f"JOIN unnest($1::text[]) AS h(v) ON t.{ident(address)}::text = h.v", list(addresses))
        return [(r["a"], r["n"]) for r in rows]

    async def _stream_counts(self, conn: asyncpg.Connection,
                             queries: Sequence[tuple[str, Callable[[str], None], Sequence[ValueCounts]]]) -> None:
        """Each query's rows, as COPY text lines, to its counting function, then the counts it filled
        are sealed (:meth:`ValueCounts.seal`, one query's values waiting to be sorted at a time). One worker thread counts
        while the connection receives the next lines and the server aggregates the next query (its first
        line comes only once the whole aggregate is done): the two overlap instead of taking turns.
        At most :data:`BACKLOG_BYTES` of received text waits to be counted (then the connection stops
        reading and the server waits), so memory stays bounded on any table. COPY, not a cursor: the
        lines cost a fraction of records to receive, and nothing stays open for the seeder's DDL."""
        loop = asyncio.get_running_loop()
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="canary-counts")  # one: batches of one counts never race
        waiting: deque[tuple[asyncio.Future[None], int]] = deque()
        held = 0

        async def hand_over(count: Callable[[str], None], text: bytes) -> None:
            nonlocal held
            while waiting and held + len(text) > BACKLOG_BYTES:
                done, size = waiting.popleft()
                await done
                held -= size
            waiting.append((loop.run_in_executor(worker, _count_text, count, text), len(text)))
            held += len(text)

        try:
            for sql, count, filled in queries:
                pending = bytearray()

                async def received(chunk: bytes, count: Callable[[str], None] = count, pending: bytearray = pending) -> None:
                    pending.extend(chunk)
                    cut = pending.rfind(b"\n") + 1 if len(pending) >= COUNT_CHUNK else 0
                    if cut:  # whole lines only (a line's UTF-8 is whole, too)
                        text = bytes(pending[:cut])
                        del pending[:cut]
                        await hand_over(count, text)

                await conn.copy_from_query(sql, output=received)
                if pending:
                    await hand_over(count, bytes(pending))
                waiting.append((loop.run_in_executor(worker, _seal, filled), 0))
            while waiting:
                await waiting.popleft()[0]
        finally:
            worker.shutdown(wait=False, cancel_futures=True)  # on failure: never block the event loop on a batch

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
            needs = mailbox_needs(info.target, dict(zip(col.email_domains.values, weights, strict=True)), canaries,
                                  [a for a, _ in pools.mailboxes])
            sizing.extend(needs.sizing)
            out.extend(needs.warnings)
            on_domains = needs.on_domains if pools.mailboxes else on_domains  # mailboxes follow the providers' shares
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
                          + ("blends" if have >= need and sizes else "STANDS OUT"))
            if have and not sizes:  # every address at a big free-mail provider: no long tail to pass for
                out.append(f"{info.target}: the table has no small e-mail domains, only free-mail providers: canaries at an "
                           f"owned mail domain STAND OUT (no real customer is at one); give them owned mailboxes at the "
                           f"table's providers instead ([seeding].mailboxes)")
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
        probe = secret_columns(info, CredentialType.BEARER, target.column)
        existing = [str(r[probe.secret]) for r in sample if r.get(probe.secret)]
        storage = Storage(target.stored_as) if target.stored_as != "auto" else infer_storage(existing)
        if ctype == "auto":
            resolved = infer_type(existing) if storage is Storage.PLAIN else CredentialType.BEARER
        else:
            resolved = CredentialType(ctype)
        if resolved in (CredentialType.AWS_KEY, CredentialType.PG_DSN):
            storage = Storage.PLAIN  # presented as written: a hash of them would be no credential
        cols = dataclasses.replace(secret_columns(info, resolved, target.column), storage=storage)
        return CredentialFactory(self.registry.keyring), resolved, cols

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
        for part in info.partitions:
            if part.rls_enabled and not part.rls_forced and not any(p.name == self.tripwire.policy for p in part.policies):
                out.append(f"partition {part.target} of {info.target} already uses row-level security without FORCE: "
                           f"reads of it by its owner ({part.owner}) are not detected")
        return out

    def _skipped(self, info: TableInfo, prof: TableProfile) -> list[str]:
        """Columns left to their default: non-key unique columns with a default (a sequence), and
        defaulted columns of types canary does not synthesise. Key columns never are: canary writes every
        key explicitly (a sequence-backed one takes ``nextval`` when the rows are written), so that it
        knows each row's key."""
        unique_cols = {cols[0] for cols in info.unique_sets() if len(cols) == 1}
        out = []
        for c in info.columns:
            if c.name in info.primary_key or c.generated:
                continue
            if c.identity or (c.default is not None and "nextval(" in c.default):
                out.append(c.name)  # sequence-backed: the sequence's next value is what a real row gets
            elif c.has_default and c.name in unique_cols and c.category not in ("N", "S"):
                out.append(c.name)
            elif c.has_default and c.category not in ("N", "S", "D", "B", "E") and c.base_type not in ("uuid", "json", "jsonb"):
                out.append(c.name)
        return out

    async def _sample(self, conn: asyncpg.Connection, info: TableInfo, exclude: list[str],
                      rng: random.Random) -> list[dict[str, str | None]]:
        """Up to SAMPLE_ROWS real rows as text (canaries excluded by key; the caller has made the
        transaction's reads bypass row-level security, see _quiet_reads).

        The same for the same seeder randomness (``plan`` shows the rows ``apply`` writes; a bench
        with a fixed ``seed`` repeats): the pages' sample is REPEATABLE with a seed drawn from it, and
        the rows are ordered by a keyed hash (md5 of a secret drawn from it and their key). Not
        by ``random()``: its values follow the order the scan meets the rows, and a synchronized scan
        of a large table starts wherever another scan of it is, so even ``setseed`` picked other rows
        each run. The secret is the seeder's (keyed by the master key unless a seed is configured), so
        which rows were sampled stays as unpredictable as the rest of the plan; ordering the few
        thousand sampled rows by md5 costs what random() did."""
        cols = ", ".join(f"{ident(c.name)}::text" for c in info.columns)
        tbl = qualified(info.schema, info.name)
        if info.estimated_rows > SAMPLE_ROWS * 10:
            pct = min(100.0, SAMPLE_ROWS * 300.0 / info.estimated_rows)
            src = f"{tbl} TABLESAMPLE BERNOULLI ({pct:.4f}) REPEATABLE ({rng.randint(0, 2**31 - 1)})"
        else:
            src = tbl
        canaries, args = _key_match(info, exclude)
        order = f"pg_catalog.md5(${len(args) + 1}::text || {key_sql(info.primary_key, _key_types_of(info))})"
        secret = f"{rng.getrandbits(128):032x}"
        rows = await conn.fetch(f"SELECT {cols} FROM {src} WHERE NOT ({canaries}) ORDER BY {order} LIMIT {SAMPLE_ROWS}", *args, secret)
        names = [c.name for c in info.columns]
        return [dict(zip(names, r.values())) for r in rows]

    async def _placements(
        self, conn: asyncpg.Connection, info: TableInfo, prof: TableProfile, exclude: list[str], n: int, warnings: list[str],
        times: Sequence[dt.datetime | None] | None = None, sample: Sequence[Mapping[str, str | None]] = (),
        floors: Sequence[dt.datetime | None] | None = None,
    ) -> list[RowContext]:
        """Keys and creation times for n rows, interleaved with the real rows (:meth:`_interleaved`, or
        :meth:`_composite_placements` for a composite key). In a partitioned table a row must also fall
        in an existing partition: placements no partition would take are drawn again elsewhere (up to
        three rounds; one with ``times``), never written."""
        out: list[RowContext] = []
        refused: list[str] = []
        for attempt in range(3 if times is None else 1):
            notes: list[str] = []
            taken = [*exclude, *(c.pk for c in out if c.pk is not None), *refused]
            if len(info.primary_key) > 1:
                got = await self._composite_placements(conn, info, prof, taken, n - len(out), notes, sample)
            else:
                got = await self._interleaved(conn, info, prof, taken, n - len(out), notes, times, floors)
            if attempt == 0:
                warnings.extend(notes)
            fits = await self._routes(conn, info, got)
            out += [c for c, ok in zip(got, fits) if ok]
            refused += [c.pk for c, ok in zip(got, fits) if not ok and c.pk is not None]
            if all(fits) or len(out) >= n:
                break
        if len(out) < n and refused:
            warnings.append(f"{info.target}: {n - len(out)} of {n} rows found no place that a partition of the table would "
                            "take; they are not written")
        return out

    async def _interleaved(
        self, conn: asyncpg.Connection, info: TableInfo, prof: TableProfile, exclude: list[str], n: int, warnings: list[str],
        times: Sequence[dt.datetime | None] | None = None, floors: Sequence[dt.datetime | None] | None = None,
    ) -> list[RowContext]:
        """Keys and creation times for n rows of a table with a one-column key. A time is drawn between
        the real neighbours' times (never interpolated by key) at the column's own precision. With
        ``times`` (rows written for a canary, dated after it), each row takes a key whose neighbours'
        times bracket its time, so keys and dates agree the way real rows' do; where no free key is
        there, the nearest free one in time on either side, its time drawn there, never before the row's
        ``floors`` (the creation of the canary it belongs to)."""
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
        rates = Rates.of(prof.created_epochs)  # a row between two neighbours falls in the hours rows arrive in
        gaps = await self._gaps(conn, info, created, [int(x) for x in exclude], n, times, rates)
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
            return self._between(lo_c, hi_c, rates)

        placed: list[RowContext | None] = [None] * n
        gap_of: list[tuple[int, int] | None] = [None] * n
        if capacity and times is not None:
            dated = sorted(((lo, hi, lo_c, hi_c) for lo, hi, lo_c, hi_c in slots if lo_c is not None and hi_c is not None),
                           key=lambda s: s[2])
            starts = [s[2] for s in dated]
            for pos, want in enumerate(times):
                if want is None or not dated:
                    continue
                floor = floors[pos] if floors is not None else None
                i = bisect.bisect_right(starts, want)

                def off(s: tuple[int, int, dt.datetime, dt.datetime], want: dt.datetime = want) -> float:
                    return max((s[2] - want).total_seconds(), (want - s[3]).total_seconds(), 0.0)

                # the gap around its time, else the nearest one on either side (only later ones, a row
                # would come later than wanted by half the gaps' spacing on average: canaries' first
                # orders were 35 days after sign-up where real customers' were 26), never one wholly
                # before ``floor`` (what it belongs to was created then)
                near = sorted((s for s in dated[max(i - TIME_GAPS, 0):i + TIME_GAPS] if floor is None or s[3] >= floor), key=off)
                for lo, hi, lo_c, hi_c in near:
                    inside = lo_c <= want <= hi_c
                    start = max(lo_c, floor) if floor is not None else lo_c
                    if not inside and start > hi_c:
                        continue  # neighbours out of time order
                    key = free_key(lo, hi, False) or free_key(lo, hi, True)
                    if key is None:
                        continue
                    chosen.add(key)
                    local = Precision.of((lo_c.timestamp(), hi_c.timestamp()))
                    placed[pos] = RowContext(pk=str(key), created=self._cut(local, want, start, hi_c) if inside
                                             else self._cut(local, between(start, hi_c, self.rng, rates), start, hi_c))
                    gap_of[pos] = (lo, hi)
                    break
        elif capacity:
            want_n = min(n, capacity)
            attempts = 0
            while len(chosen) < want_n and attempts < max(want_n * 50, len(slots) * 2):
                # the gaps in the server's order (drawn by free keys): next to a real row, like a real row
                # beside a deleted one; once every gap was tried, anywhere in a gap
                a, b, a_c, b_c = slots[attempts % len(slots)]
                key = free_key(a, b, attempts >= len(slots))
                attempts += 1
                if key is None:
                    continue
                chosen.add(key)
                placed[len(chosen) - 1] = RowContext(pk=str(key), created=drawn(a_c, b_c))
                gap_of[len(chosen) - 1] = (a, b)
        _in_key_order(placed, gap_of)
        holes = [p for p in range(n) if placed[p] is None]
        now = dt.datetime.now(dt.timezone.utc)  # rows past the last key are the newest: dated now
        if holes and created:  # at the precision today's rows have (a legacy import's whole days are history)
            precision, newest = await self._recent_precision(conn, info, created)
            now = precision.cut(now, self.rng, newest if newest is not None and newest <= now else None, now)
            precision = EXACT
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

    async def _gaps(self, conn: asyncpg.Connection, info: TableInfo, created: str | None, exclude: list[int], n: int,
                    times: Sequence[dt.datetime | None] | None, rates: Rates | None = None) -> list[asyncpg.Record]:
        """Gaps between real keys (lo, hi and their times as text) where ``n`` rows may go, in memory
        bounded by ``n``, not by the table: without ``times`` a sample of GAP_SAMPLE × n gaps (at least
        MIN_GAPS) drawn by the server, the first ``n`` of them each with a chance in proportion to its
        weight (:meth:`_weighted_gaps`), in that random order; with ``times``, streamed in time order,
        for each wanted time the gap around it, the TIME_GAPS - 1 before it and as many after it."""
        if times is None:
            return await self._weighted_gaps(conn, info, created, exclude, n, rates or Rates())
        wanted = sorted(t for t in times if t is not None)
        if not wanted or created is None:
            return []
        pk, col = ident(info.primary_key[0]), ident(created)
        gaps = (f"SELECT lo, hi, at::text AS lo_c, hi_at::text AS hi_c"
                f" FROM (SELECT {pk} AS lo, lead({pk}) OVER w AS hi, {col} AS at, lead({col}) OVER w AS hi_at"
                f" FROM {qualified(info.schema, info.name)} WHERE NOT ({pk} = ANY($1::bigint[])) WINDOW w AS (ORDER BY {pk})) s"
                " WHERE hi - lo > 1")
        keep: dict[int, asyncpg.Record] = {}
        before: collections.deque[asyncpg.Record] = collections.deque(maxlen=TIME_GAPS)  # the last gaps passed
        w = 0
        tail = 0  # gaps still to keep after the last wanted time passed
        async for g in conn.cursor(f"{gaps} AND at IS NOT NULL AND hi_at IS NOT NULL ORDER BY at, lo", exclude, prefetch=FETCH_GAPS):
            start = parse_ts(g["lo_c"])
            if start is None:
                continue
            while w < len(wanted) and start > wanted[w]:
                keep.update((b["lo"], b) for b in before)
                tail = TIME_GAPS - 1
                w += 1
            if tail > 0:
                keep[g["lo"]] = g
                tail -= 1
            elif w >= len(wanted):
                break
            before.append(g)
        if w < len(wanted):  # wanted times after the last gap's start
            keep.update((b["lo"], b) for b in before)
        return list(keep.values())

    async def _weighted_gaps(self, conn: asyncpg.Connection, info: TableInfo, created: str | None, exclude: list[int], n: int,
                             rates: Rates) -> list[asyncpg.Record]:
        """GAP_SAMPLE × n gaps (at least MIN_GAPS) in a random order whose first ``n`` hold each gap
        with a chance in proportion to its weight (Pareto order sampling: a key u / (1 - u) over
        p / (1 - p), p the gap's share of ``n`` capped below 1). Drawing the first ``n`` one after
        another in proportion to their weights (-ln(u) / weight) would not: where the rows placed are
        a good part of the gaps (200 canaries into 440 gaps), every draw after the longest gaps were
        taken falls among the short ones, and a canary between two neighbours a moment apart is one.

        The weight: how long the stretch between the neighbours is against the PACE_ROWS stretches on
        either side as far as the table's gaps need it, in busy seconds (``rates``: at the table's hour
        × weekday intensity, :meth:`Rates.busy`, so that a stretch over a night, long in seconds but
        holding few arrivals, is not favoured and canaries are not created at night more often than
        real rows). A key freed by a deleted row sits in a stretch as long as two arrivals, where a
        row put there falls as real rows do; a key freed by a rollback sits between two consecutive
        arrivals, and a row put there makes that stretch twice as busy as the rows around. Where the
        gaps' stretches are as long as the ones beside them (ratio of sums m = 1: rollbacks), gaps
        are drawn length-biased (an interval so drawn from a Poisson stream is as long as two); where
        they are twice as long (m = 2: deletions), not; in between, by the power 2 - m. Relative to
        the local pace, so that quiet years are not favoured over busy ones.

        And by how many free keys a gap has, so that the keys beside a canary look like the keys
        beside a real row: a canary at lo + 1 of a gap with f free keys has a gap of f before the
        next row, which a real row has beside a gap of f - 1 free keys (2 N(f - 1) of the n rows).
        So gaps of f > 1 free keys take q(f) = 2 N(f - 1) / n of the canaries and single free keys
        the rest (a deleted row's place: a key on either side); drawn in proportion to free keys
        alone, every canary next to a rolled-back run or a lost sequence cache would show it.
        Without the table's row estimate (never analysed), in proportion to free keys."""
        pk = ident(info.primary_key[0])
        col = ident(created) if created else "NULL::timestamptz"

        def stamp(e: str) -> str:
            return f"{e}::timestamptz" if created else "NULL::timestamptz"

        # the window passes the raw times; texts, epochs and busy seconds are computed for the gaps alone
        # (a tenth of the rows of a table with a key in ten free, not every row), each epoch once
        # (OFFSET 0 keeps the planner from copying date_part into every use of it)
        gaps = (f"SELECT lo, hi, lo_c, hi_c, {_busy_sql('e_hi')} - {_busy_sql('e_lo')} AS span,"
                f" {_busy_sql('e_next')} - {_busy_sql('e_prev')} AS around"  # from PACE_ROWS rows before lo to as many after hi
                f" FROM (SELECT lo, hi, at::text AS lo_c, hi_at::text AS hi_c, date_part('epoch', {stamp('at')}) AS e_lo,"
                f" date_part('epoch', {stamp('hi_at')}) AS e_hi, date_part('epoch', nextk) AS e_next, date_part('epoch', prevk) AS e_prev"
                f" FROM (SELECT {pk} AS lo, lead({pk}) OVER w AS hi, {col} AS at, lead({col}) OVER w AS hi_at,"
                f" lead({stamp(col)}, {PACE_ROWS + 1}) OVER w AS nextk, lag({stamp(col)}, {PACE_ROWS}) OVER w AS prevk"
                f" FROM {qualified(info.schema, info.name)} WHERE NOT ({pk} = ANY($1::bigint[])) WINDOW w AS (ORDER BY {pk})) s"
                " WHERE hi - lo > 1 OFFSET 0) e")
        beside = f"((around - span) / {2.0 * PACE_ROWS})"  # the mean stretch beside the gap
        relative = f"coalesce(greatest(span, 1.0) / greatest({beside}, 1.0), 1.0)"
        return list(await conn.fetch(
            f"WITH g AS MATERIALIZED ({gaps}), m AS (SELECT coalesce(sum(span) FILTER (WHERE around > span)"
            f" / nullif(sum({beside}) FILTER (WHERE around > span), 0), 2.0) AS m FROM g),"
            f" c AS (SELECT hi - lo - 1 AS f, count(*)::float8 AS k FROM g GROUP BY 1),"
            f" r AS (SELECT (SELECT nullif(greatest(reltuples, 0), 0)::float8 FROM pg_class WHERE oid = to_regclass($3)) AS n),"
            f" s AS (SELECT c.f, c.k, 2.0 * coalesce(p.k, 0) / r.n AS q FROM c LEFT JOIN c p ON p.f = c.f - 1, r WHERE c.f > 1),"
            f" w AS (SELECT f, CASE WHEN q IS NOT NULL THEN greatest(q / k, 1e-9) END AS w FROM s UNION ALL"
            f" SELECT 1, CASE WHEN r.n IS NOT NULL THEN greatest(1.0 - coalesce((SELECT sum(q) FROM s), 0.0), 0.05) / c.k END"
            f" FROM c, r WHERE c.f = 1),"
            f" x AS (SELECT lo, hi, lo_c, hi_c, random() AS u, coalesce(w.w, (hi - lo - 1)::float8)"
            f" * power({relative}, greatest(0.0, least(1.0, 2.0 - m))) AS wt FROM g LEFT JOIN w ON w.f = g.hi - g.lo - 1, m),"
            f" p AS (SELECT lo, hi, lo_c, hi_c, u, least($4 * wt / sum(wt) OVER (), {1.0 - 1e-9}) AS p FROM x)"
            f" SELECT lo, hi, lo_c, hi_c FROM p ORDER BY u / (1.0 - u) * (1.0 - p) / p LIMIT $2",
            exclude, max(n * GAP_SAMPLE, MIN_GAPS), qualified(info.schema, info.name), float(n),
            list(rates.week), list(rates.week_before)))

    def _between(self, lo_c: dt.datetime | None, hi_c: dt.datetime | None, rates: Rates | None = None) -> dt.datetime | None:
        """A time between two neighbours', at their precision (whole seconds where they have whole
        seconds: a legacy import and today's rows differ, so the table-wide mix would not do), in
        the hours the table's rows arrive in (``rates``)."""
        if lo_c is None or hi_c is None or hi_c < lo_c:
            return None
        return Precision.of((lo_c.timestamp(), hi_c.timestamp())).cut(between(lo_c, hi_c, self.rng, rates), self.rng, lo_c, hi_c)

    async def _composite_placements(
        self, conn: asyncpg.Connection, info: TableInfo, prof: TableProfile, exclude: list[str], n: int, warnings: list[str],
        sample: Sequence[Mapping[str, str | None]],
    ) -> list[RowContext]:
        """Keys and times for ``n`` rows of a table with a composite key, never a real row's key.

        The key's free column is its last one that neither dates the row nor refers to another table
        (such columns take values of real rows). When that is an integer (``id`` of ``(tenant_id, id)``
        or of ``(id, created_at)``; of several integers, the one real rows repeat least), a row takes a
        free value of that column in a gap between two neighbouring real rows, keeps the other key
        columns of the lower one and is dated between their times (a dating column in the key takes
        that time). Where real rows repeat that column's values across their other key columns (a
        counter per tenant), the neighbours are rows of one tenant; where they do not (one sequence for
        all), the row's value is free in the whole table, as real rows' are. Rows placed in one gap
        take their values in the order of their times. Rows no gap holds take the column's next
        sequence values (or values past the largest), the other key columns of a sampled real row, and
        now as their time. Without such a column, see :meth:`_drawn_keys`."""
        key = list(info.primary_key)
        created = created_column(info)
        dated = created if created in key else None
        referring = {c for con in info.foreign_keys() for c in con.columns}
        free = [c for c in key if c != dated and c not in referring]
        if not free:
            raise SeedError(f"cannot seed {info.target}: each of its key columns refers to another table or dates the row, "
                            "so canary cannot choose a key no real row holds", target=info.target)
        ints = [c for c in free if info.column(c).base_type in _INTEGER_TYPES]
        if free[-1] not in ints:
            return await self._drawn_keys(conn, info, prof, exclude, n, warnings, sample, free[-1], dated)
        distinct = {c: len({r.get(c) for r in sample}) for c in ints}
        seq = max(reversed(ints), key=lambda c: distinct[c])  # an id, not a tenant; on a tie the later column
        lead = [c for c in key if c not in (seq, dated)]
        created_prof = prof.col(created) if created else None
        precision = Precision.of(prof.created_epochs or (created_prof.numbers if created_prof is not None else ()))
        tbl = qualified(info.schema, info.name)
        s = ident(seq)
        repeats = bool(lead) and await conn.fetchval(
            f"SELECT EXISTS (SELECT FROM (SELECT {s} AS v, lead({s}) OVER (ORDER BY {s}) AS nx FROM {tbl}) d WHERE d.nx = d.v)")
        grouping = lead if repeats else []  # the columns within whose values the free values are counted
        created_expr = f"{ident(created)}::text" if created else "NULL::text"
        leads = "".join(f", {column_text_sql(ident(c), info.column(c).base_type)} AS l{i}" for i, c in enumerate(lead))
        by = f"PARTITION BY {', '.join(ident(c) for c in grouping)} " if grouping else ""
        canaries, args = _key_match(info, exclude)
        gaps = await conn.fetch(
            f"""
            SELECT * FROM (
                SELECT {s} AS lo, lead({s}) OVER w AS hi, {created_expr} AS lo_c, lead({created_expr}) OVER w AS hi_c{leads}
                FROM {tbl} WHERE NOT ({canaries}) WINDOW w AS ({by}ORDER BY {s})) g
            WHERE hi - lo > 1 ORDER BY -ln(1.0 - random()) / (hi - lo - 1) LIMIT {int(max(n * GAP_SAMPLE, MIN_GAPS))}
            """,
            *args,
        )  # a sample drawn by free keys, in that order (see _gaps)
        at = {c: i for i, c in enumerate(key)}
        taken: dict[tuple[str | None, ...], list[int]] = {}  # group -> the values existing canaries hold in it
        for k in exclude:
            parts = _key_values(k, len(key))
            if parts is not None and parts[at[seq]] is not None:
                taken.setdefault(tuple(parts[at[c]] for c in grouping), []).append(int(str(parts[at[seq]])))
        for held in taken.values():
            held.sort()
        slots: list[_Gap] = []
        capacity = 0
        for g in gaps:
            others = tuple(g[f"l{i}"] for i in range(len(lead)))
            group = tuple(others[lead.index(c)] for c in grouping)
            lo, hi, lo_c, hi_c = int(g["lo"]), int(g["hi"]), parse_ts(g["lo_c"]), parse_ts(g["hi_c"])
            if dated and (lo_c is None or hi_c is None or hi_c < lo_c):
                continue  # the row's time is part of its key: only between two dated neighbours
            inside = taken.get(group, [])
            room = hi - lo - 1 - (bisect.bisect_left(inside, hi) - bisect.bisect_right(inside, lo))
            if room > 0:
                slots.append((group, others, lo, hi, lo_c, hi_c))
                capacity += room
        used = {(group, v) for group, held in taken.items() for v in held}
        picks: dict[int, list[tuple[int, dt.datetime | None]]] = {}  # slot -> (value, time)
        placed = 0
        want = min(n, capacity)
        if want:
            attempts = 0
            while placed < want and attempts < max(want * 50, len(slots) * 2):
                i = attempts % len(slots)
                attempts += 1
                group, _, lo, hi, lo_c, hi_c = slots[i]
                # next to a real row, like a real row beside a deleted one (once every gap was tried: anywhere in it)
                values = [lo + 1, hi - 1] if attempts <= len(slots) else [self.rng.randint(lo + 1, hi - 1)]
                self.rng.shuffle(values)
                value = next((v for v in values if (group, v) not in used), None)
                if value is None:
                    continue
                used.add((group, value))
                picks.setdefault(i, []).append((value, self._between(lo_c, hi_c)))
                placed += 1
        rows: list[tuple[tuple[str | None, ...], int | None, dt.datetime | None]] = []
        for i, members in picks.items():  # in one gap, values in the order of the rows' times
            times = sorted((t for _, t in members), key=lambda t: (t is None, t or dt.datetime.min.replace(tzinfo=dt.timezone.utc)))
            rows.extend((slots[i][1], v, t) for v, t in zip(sorted(v for v, _ in members), times))
        if len(rows) < n:
            rows += await self._appended(conn, info, seq, lead, grouping, n - len(rows), used, sample, precision, warnings, len(rows))
        out: list[RowContext] = []
        for others, value, when in rows:
            vals: dict[str, str | None] = dict(zip(lead, others))
            vals[seq] = None if value is None else str(value)
            if dated:
                vals[dated] = None if when is None else timestamp_text(info.column(dated).base_type, when)
            out.append(RowContext(pk=json.dumps([vals[c] for c in key]), created=when, key=tuple((c, vals[c]) for c in key)))
        return out

    async def _appended(
        self, conn: asyncpg.Connection, info: TableInfo, seq: str, lead: Sequence[str], grouping: Sequence[str], holes: int,
        used: set[tuple[tuple[str | None, ...], int]], sample: Sequence[Mapping[str, str | None]], precision: Precision,
        warnings: list[str], fitted: int,
    ) -> list[tuple[tuple[str | None, ...], int | None, dt.datetime | None]]:
        """Rows of a composite key that no gap holds: the other key columns of a sampled real row, ``seq``
        from its sequence when the rows are written (None here), else past the largest value of the
        group; dated now."""
        n = fitted + holes
        choices = [tuple(r.get(c) for c in lead) for r in sample] if lead else [()]
        sequence = dict(info.key_sequences).get(seq)
        if not choices:
            warnings.append(f"{info.target}: only {fitted} of {n} rows fit between existing keys, and no sampled row gives "
                            f"the others their {', '.join(lead)}")
            return []
        if sequence:
            warnings.append(f"{info.target}: only {fitted} of {n} rows fit between existing keys; {holes} take the next values "
                            f"of {sequence}, dated now")
        else:
            warnings.append(f"{info.target}: only {fitted} of {n} rows fit between existing keys; {holes} get values of {seq} "
                            f"above the largest one{' of their ' + ', '.join(grouping) if grouping else ''} (no sequence), dated now")
        now = self._cut(precision, dt.datetime.now(dt.timezone.utc))
        top: dict[tuple[str | None, ...], int] = {}
        out: list[tuple[tuple[str | None, ...], int | None, dt.datetime | None]] = []
        for _ in range(holes):
            others = self.rng.choice(choices)
            if sequence:
                out.append((others, None, now))
                continue
            group = tuple(others[list(lead).index(c)] for c in grouping)
            if group not in top:
                where = " AND ".join(f"{ident(c)} = ${i + 1}::{info.column(c).type}" for i, c in enumerate(grouping)) or "true"
                found = await conn.fetchval(f"SELECT max({ident(seq)}) FROM {qualified(info.schema, info.name)} WHERE {where}", *group)
                top[group] = max([int(found) if found is not None else self.rng.randint(0, 999), *(v for g, v in used if g == group)])
            top[group] += self.rng.randint(1, 3)
            out.append((others, top[group], now))
        return out

    async def _drawn_keys(
        self, conn: asyncpg.Connection, info: TableInfo, prof: TableProfile, exclude: list[str], n: int, warnings: list[str],
        sample: Sequence[Mapping[str, str | None]], last: str, dated: str | None,
    ) -> list[RowContext]:
        """Keys for a composite key whose free column ``last`` is not an integer to find gaps in
        (``(tenant_id, token)``): the other key columns of a sampled real row, ``last`` drawn like real
        rows' values (a UUID, or text in the shapes real values have), dated like real rows; a key a
        real row or another canary holds is drawn again."""
        key = list(info.primary_key)
        col = info.column(last)
        if col.base_type != "uuid" and col.category != "S":
            raise SeedError(f"cannot seed {info.target}: canary cannot choose free values of its key column {last} ({col.type})",
                            target=info.target)
        lead = [c for c in key if c not in (last, dated)]
        if lead and not sample:
            warnings.append(f"{info.target}: no sampled row gives canary rows their {', '.join(lead)}; none placed")
            return []
        created = created_column(info)
        created_prof = prof.col(created) if created else None
        precision = Precision.of(prof.created_epochs or (created_prof.numbers if created_prof is not None else ()))
        now = dt.datetime.now(dt.timezone.utc)
        held = {key_text(k) for k in exclude}
        types = _key_types_of(info)
        tbl = qualified(info.schema, info.name)
        exists = f"EXISTS (SELECT FROM {tbl} AS x WHERE {' AND '.join(f'x.{ident(c)} = r.{ident(c)}' for c in key)})"
        out: list[RowContext] = []
        for _ in range(5):  # rounds: candidates that collide are drawn again
            if len(out) >= n:
                break
            candidates: list[tuple[dict[str, str | None], dt.datetime | None]] = []
            for _ in range(n - len(out)):
                base = self.rng.choice(list(sample)) if sample else {}
                vals: dict[str, str | None] = {c: base.get(c) for c in lead}
                vals[last] = self._random_key(col.base_type, prof, last)
                when = self._cut(precision, self._created_like(prof, created)) if created else None
                if dated:
                    when = when or self._cut(precision, now)
                    vals[dated] = timestamp_text(info.column(dated).base_type, when) if when is not None else None
                candidates.append((vals, when))
            args = [[v.get(c) for v, _ in candidates] for c in key]
            found = await conn.fetch(_rows_sql(info, key, f"pg_catalog.json_build_array({key_sql(key, types, 'r')}, {exists})::text"),
                                     *args)
            for (vals, when), row in zip(candidates, found):
                text, taken = json.loads(row["v"])
                if taken or text in held:
                    continue
                held.add(text)
                out.append(RowContext(pk=text, created=when, key=tuple((c, vals[c]) for c in key)))
        if len(out) < n:
            warnings.append(f"{info.target}: only {len(out)} of {n} drawn keys were free")
        return out

    async def _routes(self, conn: asyncpg.Connection, info: TableInfo, placed: Sequence[RowContext]) -> list[bool]:
        """For each placement, whether a partition of ``info`` would take the row (always, for a plain
        table): its key's values tested against every leaf partition's bounds, in the server. A key
        column whose value a sequence gives later counts as unknown: where it decides, the row fits nowhere."""
        leaves = [p for p in info.partitions if p.leaf]
        if info.kind != "p" or not placed or any(p.constraint is None for p in leaves):
            return [True] * len(placed)  # a partition without bounds (the only one, a default) takes any row
        key = list(info.primary_key)
        rows = [dict(c.key) if c.key else {key[0]: c.pk} for c in placed]
        bounds = " OR ".join(f"({p.constraint})" for p in leaves) or "false"
        found = await conn.fetch(_rows_sql(info, key, f"coalesce(({bounds}), false)"), *[[r.get(c) for r in rows] for c in key])
        return [bool(r["v"]) for r in found]

    async def _recent_precision(self, conn: asyncpg.Connection, info: TableInfo, column: str) -> tuple[Precision, dt.datetime | None]:
        """The precision of ``column`` among the RECENT_ROWS newest rows by key (what the application
        writes today), and the latest of those times (read quietly by the caller's transaction)."""
        key = ", ".join(f"{ident(c)} DESC" for c in info.primary_key)
        rows = await conn.fetch(
            f"SELECT extract(epoch FROM {ident(column)})::float8 AS e, {ident(column)}::text AS t FROM {qualified(info.schema, info.name)}"
            f" WHERE {ident(column)} IS NOT NULL ORDER BY {key} LIMIT {RECENT_ROWS}")
        times = [t for t in (parse_ts(r["t"]) for r in rows) if t is not None]
        newest = max(times, default=None) if times and all(t.tzinfo is not None for t in times) else None
        return Precision.of(r["e"] for r in rows), newest

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
        """Owned phone numbers and mailboxes already handed to active canaries (found by blind index),
        or kept for trickle sign-ups still to come."""
        out: set[str] = set()
        for slot in await trickling.slots(self.registry.pool, self.ds.name, states=["pending", "inflight"]):
            payload = self._payload(slot) if slot.kind == "signup" else None
            if payload is not None:
                out |= {str(v).lower() for v in (payload.get("email"), payload.get("phone")) if v}
        for kind, owned in (("phone", self.pools.phone_numbers), ("email", tuple(a for a, _ in self.pools.mailboxes))):
            if not owned:
                continue
            held = await recognise(self.registry, [(kind, p) for p in owned])
            out |= {value.lower() for _, value in held}
        return out

    def _guard(self, policies: Sequence[Policy], legacy: Sequence[str | None] = ()) -> tuple[str, str] | None:
        """The guard that spares rows a table's own ``policies`` hide (:func:`visibility_guard`);
        ``legacy``: canary 0.x's names of its own policies on this table."""
        tw = self.tripwire
        ours = {tw.policy, tw.permissive, *filter(None, legacy)} | {  # canary's, under any (older) name: they call its function
            p.name for p in policies if p.qual and (f"{tw.function}(" in p.qual or f"{LEGACY_FUNCTION}(" in p.qual)}
        return visibility_guard(policies, ours)

    def _guard_stale(self, info: TableInfo) -> bool:
        """Whether the tripwire's guard no longer matches the table's own policies."""
        return self._stale(info.policies)

    def _stale(self, policies: Sequence[Policy]) -> bool:
        ours = next((p for p in policies if p.name == self.tripwire.policy), None)
        if ours is None:
            return False
        expected = self._guard(policies)
        return guard_signature(ours.qual or "") != (expected[1] if expected else None)

    def _partition_problems(self, info: TableInfo) -> list[str]:
        """Partitions of ``info`` whose tripwire is not as canary installs it: ``partition_unarmed:<partition>``
        (no policy, or row-level security off: a query that names the partition reads its canaries
        unseen), ``partition_policy_altered:<partition>`` (it no longer calls the touch function with
        ``info``'s filter) and ``partition_guard_stale:<partition>`` (its own policies changed)."""
        tw = self.tripwire
        ours = next((p for p in info.policies if p.name == tw.policy), None)
        masks = policy_masks(ours.qual or "") if ours is not None else []
        out = []
        for part in info.partitions:
            copy = next((p for p in part.policies if p.name == tw.policy), None)
            if copy is None or copy.permissive or copy.cmd != "r" or not part.rls_enabled:
                out.append(f"partition_unarmed:{part.target}")
            elif ours is not None and tw.copy_altered(copy.qual or "", info.target, masks):
                out.append(f"partition_policy_altered:{part.target}")
            elif self._stale(part.policies):
                out.append(f"partition_guard_stale:{part.target}")
        return out

    def _partition_state(self, info: TableInfo, prior: Mapping[str, Any] | None) -> dict[str, Any]:
        """Per partition of ``info`` (``schema.table``), its row-level-security state before canary armed
        it: kept from ``prior`` details for the partitions armed before, read now for the others."""
        out = dict((prior or {}).get("partitions") or {})
        for part in info.partitions:
            out.setdefault(part.target, {"rls_enabled_before": part.rls_enabled, "rls_forced_before": part.rls_forced,
                                         "permissive_policy": None if part.rls_enabled else self.tripwire.permissive})
        return out

    def _detection_statements(self, info: TableInfo, base_type: str, pks: Sequence[str],
                              legacy: tuple[str | None, str | None] = (None, None), key: str | None = None) -> list[str]:
        """The DDL that puts the tripwire on ``info`` for ``pks`` (whose membership and filter
        :meth:`Tripwire.set_members` writes by COPY: no key is in these statements), and a copy of its
        policy, on ``info``'s keys, on every partition (a query naming a partition is checked against
        the partition's policies only)."""
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
        cols = [key] if key else list(info.primary_key)
        types = [info.column(c).base_type for c in cols]
        bits = bits_for(len(pks))
        out.append(tw.policy_sql(tbl, info.target, cols, base_type, bits, self._guard(info.policies, legacy), types))
        out += self._rls_statements(tbl, info.rls_enabled, tw.permissive in present)
        for part in info.partitions:
            ptbl = qualified(part.schema, part.name)
            out.append(f"DROP POLICY IF EXISTS {ident(tw.policy)} ON {ptbl}")
            out.append(tw.policy_sql(ptbl, info.target, cols, base_type, bits, self._guard(part.policies), types))
            out += self._rls_statements(ptbl, part.rls_enabled, any(p.name == tw.permissive for p in part.policies))
        return out

    def _rls_statements(self, tbl: str, enabled: bool, ours: bool) -> list[str]:
        """Row-level security on for a table canary arms: where it was off, with canary's permissive policy
        (so the restrictive one hides nothing) and FORCE (so the owner's reads are checked too)."""
        if enabled and not ours:
            return []  # the table's own row-level security: left as it is
        out = [] if ours else [
            f"CREATE POLICY {ident(self.tripwire.permissive)} ON {tbl} AS PERMISSIVE FOR ALL TO PUBLIC USING (true) WITH CHECK (true)"]
        return [*out, f"ALTER TABLE {tbl} ENABLE ROW LEVEL SECURITY", f"ALTER TABLE {tbl} FORCE ROW LEVEL SECURITY"]

    # -- apply ----------------------------------------------------------------------------------
    async def apply(self) -> ApplyResult:
        """Seed every backdated table in one datastore transaction; idempotent. Trickle tables get
        their schedule (and what is due of it: :meth:`trickle`)."""
        backdated = [t for t in self.ds.tables if t.mode == "backdated"]
        result = ApplyResult(self.ds.name, {})
        if backdated or not self.ds.tables:
            conn = await self._connect()
            try:
                result = await self._apply(conn, backdated)
            finally:
                await self._close(conn)
        if any(t.mode == "trickle" for t in self.ds.tables):
            tr = await self.trickle(schedule=True)
            result = dataclasses.replace(result, added={**result.added, **tr.signups},
                                         warnings=[*result.warnings, *tr.warnings, *(f"{t}: {m}" for t, m in tr.failed.items())])
        return result

    async def _apply(self, conn: asyncpg.Connection, targets: Sequence[TableTarget], slot: trickling.Slot | None = None) -> ApplyResult:
        """Write ``targets``' missing canaries in one datastore transaction; with ``slot`` (a trickle
        sign-up), one canary of the one target, arriving now."""
        role = await self._role(conn)
        dtr = conn.transaction()
        await dtr.start()
        committed_control: list[int] = []
        try:
            await conn.execute(f"SET LOCAL lock_timeout = {int(self.lock_timeout * 1000)}")
            arrivals = [await self._now(conn)] if slot is not None else None
            prepared = self._payload(slot) if slot is not None else None
            works = [await self._prepare(conn, t, role, arrivals=arrivals, prepared=prepared) for t in targets]
            for w in works:
                await self._insert(conn, w)
                if w.statements:  # keys drawn from a sequence are only known now
                    roles = [st for st in w.statements if st.startswith("CREATE ROLE")]
                    w.statements = roles + self._detection_statements(
                        w.info, _key_types(w.info)[1], list(w.existing) + [p.pk for p in w.planned],
                        await self._legacy_policies(w.info.target))
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
                        if slot is not None:
                            await trickling.mark_inflight(ctl, slot, deployment_id=dep)
                        if w.statements:  # DDL refuses a table with pending deferred trigger events (deferred FKs)
                            await conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
                        for stmt in w.statements:
                            await conn.execute(stmt)
                        if w.statements or w.members_only:
                            await self._arm(conn, w.info, list(w.existing) + [p.pk for p in w.planned])
                        if w.forced_off and not any("FORCE ROW LEVEL SECURITY" in s for s in w.statements):
                            await conn.execute(f"ALTER TABLE {qualified(w.info.schema, w.info.name)} FORCE ROW LEVEL SECURITY")
                        for b in w.batches[1:]:
                            if b.forced_off:
                                await conn.execute(f"ALTER TABLE {qualified(b.info.schema, b.info.name)} FORCE ROW LEVEL SECURITY")
                            children[b.target] = children.get(b.target, 0) + len(b.rows)
                        added[w.info.target] = len(w.planned)
                    if slot is None:  # a sign-up writes no child rows (they come later, armed then)
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
            if slot is not None:
                await trickling.mark(self.registry.pool, slot, "pending")
            raise SeedError(f"datastore {self.ds.name!r} did not commit; registry entries were withdrawn: {_pg_message(exc)}") from None
        if slot is not None:
            await self._signed_up(slot, committed_control, works[0])
        warnings = [x for w in works for x in w.warnings]
        for x in warnings:
            self.log.warning("seed.warning", detail=x)
        self.log.info("seed.applied", added=added, deployments=committed_control)
        return ApplyResult(self.ds.name, added, children, committed_control, warnings)

    async def _arm(self, conn: asyncpg.Connection, info: TableInfo, pks: Sequence[str]) -> None:
        """After the tripwire's DDL: its line key, this table's keys and filter, and the functions of
        older installs that no policy uses any more."""
        pk_type, base_type = _key_types(info)
        await self.tripwire.install_line_key(conn, self.registry.keyring)
        await self.tripwire.set_members(conn, info.target, pk_type, base_type, pks)
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
            await self._arm_child_table(conn, ctl, target, pks, sorted({w.info.target for w in works}), armed.get(target))

    async def _arm_child_table(self, conn: asyncpg.Connection, ctl: asyncpg.Connection, target: str, pks: Collection[str],
                               child_of: Sequence[str], prior: Mapping[str, Any] | None, added: int = 0) -> None:
        """The tripwire on one table holding rows written for canaries of ``child_of``, for keys ``pks``.
        ``added`` of them new to a table armed before: when its policy is current and its filter keeps
        its size, only the members change (no DDL, no lock)."""
        info = await introspect(conn, target, datastore=self.ds.name)
        tw = self.tripwire
        foreign = [p for p in info.policies if p[0] not in (tw.policy, tw.permissive)]
        if foreign and not info.rls_enabled:
            self.log.warning("seed.child_not_armed", table=target, reason="its policies are disabled")
            return
        pk_type, base_type = _key_types(info)
        current = (prior is not None and 0 < added < len(pks) and self._policy_present(info) and not self._guard_stale(info)
                   and not self._partition_problems(info) and bits_for(len(pks)) == bits_for(len(pks) - added))
        if not current:
            for stmt in self._detection_statements(info, base_type, sorted(pks)):
                await conn.execute(stmt)
        await self.tripwire.set_members(conn, target, pk_type, base_type, sorted(pks))
        details: dict[str, Any] = dict(prior) if prior else {"rls_enabled_before": info.rls_enabled, "rls_forced_before": info.rls_forced,
                                             "permissive_policy": None if info.rls_enabled else tw.permissive, "schema_created": False}
        details.update(child_of=sorted(set(child_of)), schema=tw.schema, function=f"{tw.schema}.{tw.function}", policy=tw.policy)
        if info.partitions or details.get("partitions"):
            details["partitions"] = self._partition_state(info, details)
        await detection_objects.record(ctl, self.ds.name, target, details)

    # -- trickle ----------------------------------------------------------------------------------
    def _trickle_targets(self) -> dict[str, TableTarget]:
        return {".".join(parse_target(t.table)): t for t in self.ds.tables if t.mode == "trickle"}

    async def trickle(self, *, schedule: bool = False, now: dt.datetime | None = None) -> trickling.TrickleResult:
        """Write what is due of the trickle targets' schedules (:mod:`canary.seeding.trickle`), each
        sign-up and each update in its own transaction; settle first what an interrupted run left
        inflight. ``schedule`` (``canary seed``) first gives each trickle target the sign-up slots it
        lacks; the scheduler only runs schedules that exist (a retired target's is forgotten). One run
        per datastore at a time, across processes (a control-store advisory lock): another listener or
        `canary trickle` meanwhile returns at once."""
        pool = self.registry.pool
        async with pool.acquire() as lock:
            name = f"trickle:{self.ds.name}"
            if not await lock.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", name):
                pending, next_due = await trickling.pending_counts(pool, self.ds.name)
                return trickling.TrickleResult(self.ds.name, {}, {}, {}, 0, pending, next_due,
                                               ["another trickle run of this datastore is in progress; nothing done"])
            try:
                return await self._trickle(schedule, now)
            finally:
                await lock.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", name)

    async def _trickle(self, schedule: bool, now: dt.datetime | None) -> trickling.TrickleResult:
        targets = self._trickle_targets()
        pool = self.registry.pool
        warnings: list[str] = []
        signups: dict[str, int] = {}
        updates: dict[str, int] = {}
        children: dict[str, int] = {}
        conn = await self._connect()
        try:
            settled = await self._settle(conn)
            if schedule:
                for target, t in targets.items():
                    await self._schedule(conn, target, t)
            due = await trickling.slots(pool, self.ds.name, states=["pending"], due_by=now or await self._now(conn))
            failed: dict[str, str] = {}
            for slot in due:
                wanted = targets.get(slot.target)
                if wanted is None or slot.target in failed:
                    continue  # no longer a trickle target (left pending), or failing this run
                try:
                    if slot.kind == "signup":
                        try:
                            r = await self._apply(conn, [wanted], slot=slot)
                        except RowClash:
                            if slot.payload is None:
                                raise
                            # its row made ahead clashes with one written since: made afresh now
                            await trickling.drop_payload(pool, slot)
                            slot = dataclasses.replace(slot, payload=None)
                            r = await self._apply(conn, [wanted], slot=slot)
                        signups[slot.target] = signups.get(slot.target, 0) + r.added.get(slot.target, 0)
                        warnings.extend(r.warnings)
                    elif slot.kind == "child":
                        for table, n in (await self._trickle_child(conn, slot)).items():
                            children[table] = children.get(table, 0) + n
                    elif await self._trickle_update(conn, slot):
                        updates[slot.target] = updates.get(slot.target, 0) + 1
                except DatastoreError as exc:  # a SeedError too (a lock, the datastore down): the slot and the
                    # row made for it wait for the next run (a long SELECT must not make every run sample again)
                    failed[slot.target] = f"trickle {slot.kind} not written, retried next run: {exc.message}"
        finally:
            await self._close(conn)
        pending, next_due = await trickling.pending_counts(pool, self.ds.name)
        if signups or updates or children or settled:
            self.log.info("seed.trickled", signups=signups, updates=updates, children=children, settled=settled, pending=pending)
        return trickling.TrickleResult(self.ds.name, signups, updates, children, settled, pending, next_due, warnings, failed)

    async def _now(self, conn: asyncpg.Connection) -> dt.datetime:
        """Trickle's present: the simulated clock's, else the transaction's ``now()`` (what a column
        default would write)."""
        return self.clock() if self.clock is not None else await conn.fetchval("SELECT now()")

    async def _schedule(self, conn: asyncpg.Connection, target: str, t: TableTarget) -> None:
        """Sign-up slots for the canaries ``target`` lacks, spread over ``trickle_over`` from now at
        the hours of the week its real customers sign up (read quietly, written nowhere)."""
        existing = await self._existing(target)
        waiting = await trickling.slots(self.registry.pool, self.ds.name, states=["pending", "inflight"], target=target)
        missing = t.count - len(existing) - sum(1 for s in waiting if s.kind == "signup")
        if missing <= 0:
            return
        role = await self._role(conn)
        tr = conn.transaction()
        await tr.start()
        try:
            await conn.execute(f"SET LOCAL lock_timeout = {int(self.lock_timeout * 1000)}")
            info = await introspect(conn, target, datastore=self.ds.name)
            reason = unsupported_reason(info) or _trickle_unsupported(info)
            if reason:
                raise SeedError(f"cannot seed {info.target}: it {reason}", target=info.target)
            await self._quiet_reads(conn, info, role, may_alter=True)
            created = created_column(info)
            rng = self._target_rng(target, len(existing) + len(waiting))
            epochs: list[float] = []
            if created:
                sample = await self._sample(conn, info, list(existing), Streams.drawn(rng)("sample"))
                epochs = [ts.timestamp() for ts in (parse_ts(r.get(created)) for r in sample) if ts is not None]
            times = trickling.arrival_times(rng, await self._now(conn), t.trickle_over, missing, epochs)
            # every sign-up's row is made now, so that its arrival reads nothing (no scan in the statistics then)
            w = await self._prepare(conn, t, role, arrivals=times)
            await self._clash_free(conn, w)
            payloads = [self._keep_payload(w, i, rng) for i in range(len(w.planned))]
        except asyncpg.PostgresError as exc:
            raise SeedError(f"scheduling canaries for {target} in datastore {self.ds.name!r} failed: {_pg_message(exc)}") from None
        finally:
            await tr.rollback()
        await trickling.add_signups(self.registry.pool, self.ds.name, target, times[:len(payloads)], payloads)

    async def _clash_free(self, conn: asyncpg.Connection, w: _TargetWork) -> None:
        """Make rows made ahead of time hold no value a real row (or another of them) holds in a unique
        column: such a row is made again (up to MAX_ATTEMPTS times), read by the unique indexes only."""
        info, top = w.info, w.batches[0]
        uniques = [c.columns for c in info.constraints if c.kind in ("u", "i") and c.columns]
        if not uniques or top.regenerate is None:
            return
        tbl = qualified(info.schema, info.name)
        types = {c.name: c.type for c in info.columns}
        held: set[tuple[tuple[str, ...], tuple[str | None, ...]]] = set()
        for i in range(len(top.rows)):
            for _ in range(MAX_ATTEMPTS):
                clash = False
                for cols in uniques:
                    vals = tuple(top.rows[i].values.get(c) for c in cols)
                    if any(v is None for v in vals):
                        continue
                    where = " AND ".join(f"{ident(c)} = ${n + 1}::text::{types[c]}" for n, c in enumerate(cols))
                    if (cols, vals) in held or await conn.fetchval(f"SELECT EXISTS (SELECT FROM {tbl} WHERE {where})", *vals):
                        clash = True
                        break
                if not clash:
                    break
                fresh = await asyncio.to_thread(top.regenerate, i)
                top.rows[i] = PlannedRow(info.target, top.rows[i].pk, {**fresh.values, **{
                    c: top.rows[i].values.get(c) for c in info.primary_key}})
                w.contacts[i] = (fresh.email, fresh.phone)
            held |= {(cols, tuple(top.rows[i].values.get(c) for c in cols)) for cols in uniques}

    def _keep_payload(self, w: _TargetWork, i: int, rng: random.Random) -> bytes:
        """Sign-up ``i`` of a scheduling run as stored until it arrives (encrypted: it holds the canary's
        contact points): its values, its later rows (due so long after the sign-up) and update delay."""
        row, ctx = w.planned[i], w.batches[0].contexts[i]
        start = ctx.created
        later = [{**{k: v for k, v in g.items() if k not in ("due", "canary")},
                  "after": (parse_ts(g["due"]) - start).total_seconds() if g.get("due") and start else 0.0}  # type: ignore[operator]
                 for g in w.later if g.get("canary") == i]
        payload = {"values": dict(row.values), "email": w.contacts[i][0], "phone": w.contacts[i][1], "later": later,
                   "update_after": w.habit.delay(rng) if w.habit is not None else None}
        return self.registry.keyring.encrypt(json.dumps(payload, default=str), trickling.PAYLOAD)

    def _payload(self, slot: trickling.Slot) -> dict[str, Any] | None:
        """A sign-up's prepared row (None: none stored, or not readable with this key: made afresh)."""
        if slot.payload is None:
            return None
        try:
            doc = json.loads(self.registry.keyring.decrypt_text(slot.payload, trickling.PAYLOAD))
        except (CryptoError, ValueError):
            self.log.warning("trickle.payload_unreadable", target=slot.target, slot=slot.slot)
            return None
        return doc if isinstance(doc, dict) and isinstance(doc.get("values"), dict) else None

    async def _arrival(self, conn: asyncpg.Connection, info: TableInfo, drawn: str | None, when: dt.datetime) -> RowContext:
        """Key and creation time of a canary signing up ``when``: the next value of the key's sequence
        (or just above the largest key without one; ``drawn`` for uuid / text keys), created then at
        the precision the newest rows have, never before the newest one."""
        pk_col = info.column(info.primary_key[0])
        created = created_column(info)
        at = None
        if created:
            precision, newest = await self._recent_precision(conn, info, created)
            at = precision.cut(when, self.rng, newest if newest is not None and newest <= when else None, when)
        if pk_col.base_type not in _INTEGER_TYPES:
            return RowContext(pk=drawn, created=at)
        if info.pk_sequence:
            return RowContext(pk=None, created=at)
        top = await conn.fetchval(f"SELECT max({ident(pk_col.name)}) FROM {qualified(info.schema, info.name)}")
        return RowContext(pk=str((int(top) if top is not None else 0) + self.rng.randint(1, 3)), created=at)

    async def _signed_up(self, slot: trickling.Slot, deployments: Sequence[int], w: _TargetWork) -> None:
        """A sign-up committed in both stores: the slot is done, and the canary's later update (if the
        table's real rows get one) is scheduled."""
        async with self.registry.pool.acquire() as ctl, ctl.transaction():
            cid = await ctl.fetchval("SELECT min(id) FROM canaries WHERE deployment_id = ANY($1::bigint[])", list(deployments))
            await trickling.mark(ctl, slot, "done", canary_id=cid)
            if cid is None:
                return
            start = (w.batches[0].contexts[0].created if w.batches[0].contexts else None) or dt.datetime.now(dt.timezone.utc)
            work: list[tuple[str, dt.datetime, int | None]] = []
            delay = w.update_after if w.update_after is not None else w.habit.delay(self.rng) if w.habit is not None else None
            if delay is not None:
                work.append(("update", start + dt.timedelta(seconds=delay), None))
            for part, group in enumerate(w.later):
                work.append(("child", parse_ts(group["due"]) or start, part))
            await trickling.add_later(ctl, self.ds.name, slot.target, cid, deployments[0] if deployments else None, work)

    async def _settle(self, conn: asyncpg.Connection) -> int:
        """Settle the slots an interrupted run left inflight, by what the datastore holds: a sign-up
        whose row is there is done, one whose row is not is withdrawn from the registry and pending
        again; an update whose new row is there is done (the canary's fingerprint follows), one whose
        row is unchanged is pending again, one whose row someone else changed is dropped."""
        inflight = await trickling.slots(self.registry.pool, self.ds.name, states=["inflight"])
        if not inflight:
            return 0
        role = await self._role(conn)
        for slot in inflight:
            existing = await self._existing(slot.target)
            if slot.kind == "child":
                await self._settle_child(conn, role, slot)
                continue
            if slot.kind == "signup":
                rec = next(((pk, r) for pk, r in existing.items() if r.deployment_id == slot.deployment_id), None)
            else:
                rec = next(((pk, r) for pk, r in existing.items() if r.id == slot.canary_id), None)
            text = None
            if rec is not None:
                _, texts = await self._read_quietly(conn, role, slot.target, [rec[0]])
                text = texts.get(rec[0])
            async with self.registry.pool.acquire() as ctl, ctl.transaction():
                if slot.kind == "signup":
                    if rec is not None and text is not None:
                        await trickling.mark(ctl, slot, "done", canary_id=rec[1].id)
                    else:
                        if slot.deployment_id is not None:
                            await self.registry.withdraw_deployments(ctl, [slot.deployment_id])
                        await trickling.mark(ctl, slot, "pending")
                    continue
                fp = self._fingerprint(slot.target, rec[0], text) if rec is not None and text is not None else None
                if rec is not None and fp is not None and fp == slot.fingerprint:
                    await self.registry.set_fingerprint(ctl, rec[1].id, fp)
                    await trickling.mark(ctl, slot, "done")
                elif rec is not None and fp is not None and rec[1].fingerprint is not None and fp == bytes(rec[1].fingerprint):
                    await trickling.mark(ctl, slot, "pending")
                else:
                    await trickling.mark(ctl, slot, "dropped")
        return len(inflight)

    async def _trickle_child(self, conn: asyncpg.Connection, slot: trickling.Slot) -> dict[str, int]:
        """Write one group of a trickle canary's later rows (an order with its lines), planned at its
        sign-up and kept in its deployment manifest: keys from the sequences now, times now (at the
        planned values' precision, the lines as far after the order as planned), references to the
        canary and to the rows just written. The tables are armed for the new rows, the rows join the
        manifest (retire removes them) and the canary's values (a read of them is a read of it)."""
        dep = slot.deployment_id
        manifest = await self.registry.manifest(dep) if dep is not None else {}
        groups = manifest.get("later") or []
        existing = await self._existing(slot.target)
        rec = next(((pk, r) for pk, r in existing.items() if r.id == slot.canary_id), None)
        if rec is None or dep is None or slot.part is None or slot.part >= len(groups):
            await trickling.mark(self.registry.pool, slot, "dropped")  # retired meanwhile, or nothing planned
            return {}
        canary_pk, record = rec
        role = await self._role(conn)
        dtr = conn.transaction()
        await dtr.start()
        written: list[dict[str, Any]] = []
        try:
            await conn.execute(f"SET LOCAL lock_timeout = {int(self.lock_timeout * 1000)}")
            now = await self._now(conn)
            infos: dict[str, TableInfo] = {}
            forced: list[TableInfo] = []
            inserted: list[dict[str, str | None]] = []
            for row in groups[slot.part]["rows"]:
                info = infos.get(row["target"])
                if info is None:
                    info = infos[row["target"]] = await introspect(conn, row["target"], datastore=self.ds.name)
                    if await self._quiet_reads(conn, info, role, may_alter=True):
                        forced.append(info)
                fk, ref = row["fk"]
                parent = inserted[row["parent"]] if row.get("parent") is not None else {ref: canary_pk}
                values = _shifted(info, dict(row["values"]), now + dt.timedelta(seconds=float(row.get("after") or 0.0)))
                values[fk] = parent.get(ref)
                key = info.primary_key
                if len(key) == 1 and info.column(key[0]).base_type in _INTEGER_TYPES and fk not in key:
                    if info.pk_sequence:
                        values.pop(key[0], None)
                    else:
                        top = await conn.fetchval(f"SELECT max({ident(key[0])}) FROM {qualified(info.schema, info.name)}")
                        values[key[0]] = str((int(top) if top is not None else 0) + self.rng.randint(1, 3))
                types = {c.name: c.type for c in info.columns}
                cols = list(values)
                new = await conn.fetchrow(
                    f"INSERT INTO {qualified(info.schema, info.name)} ({', '.join(ident(c) for c in cols)}) OVERRIDING SYSTEM VALUE"
                    f" VALUES ({', '.join(f'${i + 1}::text::{types[c]}' for i, c in enumerate(cols))})"
                    f" RETURNING {', '.join(f'{ident(c.name)}::text' for c in info.columns)}", *[values[c] for c in cols])
                got: dict[str, str | None] = dict(zip([c.name for c in info.columns], new.values()))
                inserted.append(got)
                pk_text = str(got[key[0]]) if len(key) == 1 else json.dumps([got[c] for c in key])
                written.append({"target": info.target, "pk": pk_text, "key": list(key), "canary": canary_pk,
                                "depth": int(row["depth"]), "part": slot.part})
            await conn.execute("SET CONSTRAINTS ALL IMMEDIATE")  # arming is DDL: deferred checks first
            async with self.registry.pool.acquire() as ctl:
                ctr = ctl.transaction()
                await ctr.start()
                try:
                    manifest = await self.registry.manifest(dep, ctl)
                    manifest["child_rows"] = [*manifest.get("child_rows", ()), *written]
                    await self.registry.update_manifest(ctl, dep, manifest)
                    await self.registry.add_values(ctl, [
                        (record.id, ValueKind.CHILD_ROW.value, location_key(self.ds.name, w["target"], key_text(w["pk"]))) for w in written])
                    armed = await detection_objects.children(ctl, self.ds.name)
                    keys = await self._child_keys(await self._all_existing())
                    for target in sorted({w["target"] for w in written}):
                        new = {w["pk"] for w in written if w["target"] == target}
                        pks = {pk for _, pk, _ in keys.get(target, ())} | new
                        prior = armed.get(target)
                        await self._arm_child_table(conn, ctl, target, pks, [*(prior or {}).get("child_of", ()), slot.target], prior,
                                                    added=len(new))
                    await trickling.mark_inflight(ctl, slot)
                except BaseException:
                    await ctr.rollback()
                    raise
                await ctr.commit()
            await self.tripwire.install_line_key(conn, self.registry.keyring)
            for info in forced:
                await conn.execute(f"ALTER TABLE {qualified(info.schema, info.name)} FORCE ROW LEVEL SECURITY")
        except BaseException as exc:
            raise await self._abort(dtr, exc, "writing a trickle canary's rows in", "written") from None
        try:
            await dtr.commit()
        except (asyncpg.PostgresError, OSError) as exc:
            await self._unwrite_children(slot, record.id)
            raise SeedError(f"datastore {self.ds.name!r} did not commit a canary's rows; they were withdrawn: {_pg_message(exc)}") from None
        await trickling.mark(self.registry.pool, slot, "done")
        out: dict[str, int] = {}
        for w in written:
            out[w["target"]] = out.get(w["target"], 0) + 1
        return out

    async def _all_existing(self) -> dict[str, Any]:
        """Active canaries of every canary table of this datastore, by key (for their child rows)."""
        out: dict[str, Any] = {}
        for target in await self._targets():
            out.update(await self._existing(target))
        return out

    async def _unwrite_children(self, slot: trickling.Slot, canary_id: int) -> None:
        """Take the rows of a child slot that never committed out of the manifest and the canary's
        values again; the slot is pending (the tripwire members of rows that do not exist are harmless
        and go at the next arming)."""
        async with self.registry.pool.acquire() as ctl, ctl.transaction():
            if slot.deployment_id is not None:
                manifest = await self.registry.manifest(slot.deployment_id, ctl)
                gone = [r for r in manifest.get("child_rows", ()) if r.get("part") == slot.part]
                manifest["child_rows"] = [r for r in manifest.get("child_rows", ()) if r.get("part") != slot.part]
                await self.registry.update_manifest(ctl, slot.deployment_id, manifest)
                await self.registry.remove_values(ctl, canary_id, [
                    (ValueKind.CHILD_ROW.value, location_key(self.ds.name, r["target"], key_text(r["pk"]))) for r in gone])
            await trickling.mark(ctl, slot, "pending")

    async def _settle_child(self, conn: asyncpg.Connection, role: Role, slot: trickling.Slot) -> None:
        """An inflight child slot: its rows are in the datastore (done) or not (withdrawn, pending)."""
        manifest = await self.registry.manifest(slot.deployment_id) if slot.deployment_id is not None else {}
        rows = [r for r in manifest.get("child_rows", ()) if r.get("part") == slot.part]
        there = bool(rows) and await self._row_exists(conn, role, rows[0]["target"], rows[0]["pk"])
        if there:
            await trickling.mark(self.registry.pool, slot, "done")
        elif slot.canary_id is not None:
            await self._unwrite_children(slot, slot.canary_id)
        else:
            await trickling.mark(self.registry.pool, slot, "dropped")

    async def _row_exists(self, conn: asyncpg.Connection, role: Role, target: str, pk: str) -> bool:
        """Whether a row with this key text is in ``target``, read without firing detection."""
        tr = conn.transaction()
        await tr.start()
        try:
            info = await introspect(conn, target, datastore=self.ds.name)
            await self._quiet_reads(conn, info, role, may_alter=True)
            cols = info.primary_key
            expr = f"{ident(cols[0])}::text" if len(cols) == 1 else f"json_build_array({', '.join(f'{ident(c)}::text' for c in cols)})::text"
            return bool(await conn.fetchval(
                f"SELECT EXISTS (SELECT FROM {qualified(info.schema, info.name)} WHERE {expr} = $1)", key_text(pk)))
        finally:
            await tr.rollback()

    async def _trickle_update(self, conn: asyncpg.Connection, slot: trickling.Slot) -> bool:
        """A canary's later update, as its application would write it: the update column set to the
        transaction's time, in its own transaction (the row's ``xmin`` moves on like a real customer's).
        The row must still be the one fingerprinted (else the slot is dropped: verify reports it)."""
        existing = await self._existing(slot.target)
        rec = next(((pk, r) for pk, r in existing.items() if r.id == slot.canary_id), None)
        if rec is None:
            await trickling.mark(self.registry.pool, slot, "dropped")
            return False
        pk, record = rec
        role = await self._role(conn)
        dtr = conn.transaction()
        await dtr.start()
        try:
            await conn.execute(f"SET LOCAL lock_timeout = {int(self.lock_timeout * 1000)}")
            info = await introspect(conn, slot.target, datastore=self.ds.name)
            col = next((c for c in info.columns if semantic_of(c) == Semantic.UPDATED), None)
            forced_off = await self._quiet_reads(conn, info, role, may_alter=True)
            texts = await self._row_texts(conn, info, [pk])
            if col is None or pk not in texts or (
                    record.fingerprint is not None and self._fingerprint(slot.target, pk, texts[pk]) != bytes(record.fingerprint)):
                await dtr.rollback()
                await trickling.mark(self.registry.pool, slot, "dropped")
                return False
            tbl = qualified(info.schema, info.name)
            key = info.column(info.primary_key[0])
            precision, _ = await self._recent_precision(conn, info, col.name)
            now = await self._now(conn)
            at = precision.cut(now, self.rng, None, now)
            await conn.execute(f"UPDATE {tbl} SET {ident(col.name)} = $1::timestamptz::{col.type}"
                               f" WHERE {ident(key.name)} = $2::text::{key.type}", at, pk)
            fp = self._fingerprint(slot.target, pk, (await self._row_texts(conn, info, [pk]))[pk])
            if forced_off:
                await conn.execute(f"ALTER TABLE {tbl} FORCE ROW LEVEL SECURITY")
            async with self.registry.pool.acquire() as ctl:
                await trickling.mark_inflight(ctl, slot, fingerprint=fp)
        except BaseException as exc:
            raise await self._abort(dtr, exc, "updating a trickle canary in", "changed") from None
        try:
            await dtr.commit()
        except (asyncpg.PostgresError, OSError) as exc:
            await trickling.mark(self.registry.pool, slot, "pending")
            raise SeedError(f"datastore {self.ds.name!r} did not commit a canary's update: {_pg_message(exc)}") from None
        async with self.registry.pool.acquire() as ctl, ctl.transaction():
            await self.registry.set_fingerprint(ctl, record.id, fp)
            await trickling.mark(ctl, slot, "done")
        return True

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
        if info.partitions or details.get("partitions"):
            details["partitions"] = self._partition_state(info, details)
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
        written = False
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
                written = True
            except _CONSTRAINT_ERRORS:
                pass
        if not written:
            for level, batch in enumerate(w.batches):
                await self._insert_batch(conn, batch, w.contacts if level == 0 else None)
        for batch in w.batches:  # the values are final now
            await self._key_texts(conn, batch)

    async def _prepare_batch(self, conn: asyncpg.Connection, batch: Batch) -> None:
        """Give a batch's rows their parent's final key, and keys from the sequence where they need one."""
        if not batch.rows:
            return
        info = batch.info
        pk = info.primary_key
        for i, row in enumerate(batch.rows):
            batch.rows[i] = self._finish(batch, i, dict(row.values))
        sequences = dict(info.key_sequences)
        for col in pk:
            pending = [i for i, r in enumerate(batch.rows) if not r.values.get(col)]
            if not pending:
                continue
            if col not in sequences:
                if len(pk) == 1:
                    raise SeedError(f"cannot choose keys for {len(pending)} rows of {info.target}: no free keys and no sequence")
                continue  # a composite key's column left empty: the table's NOT NULL refuses the row
            keys = await conn.fetch("SELECT nextval($1::regclass)::text AS k FROM generate_series(1, $2)", sequences[col], len(pending))
            for i, k in zip(pending, keys):
                batch.rows[i] = self._finish(batch, i, {**batch.rows[i].values, col: k["k"]})

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
                            raise RowClash(
                                f"cannot write a row into {info.target} that satisfies its constraints "
                                f"after {attempt + 1} attempts: {_pg_message(exc)}", target=info.target,
                            ) from None
                        fresh = await asyncio.to_thread(batch.regenerate, i)
                        # the key stays where it was placed (a composite one too) and keeps its sequence values
                        keep = {c: batch.rows[i].values.get(c) for c in pk
                                if len(pk) == 1 or batch.parent is None or c in dict(info.key_sequences)}
                        batch.rows[i] = self._finish(batch, i, {**fresh.values, **keep})
                        if contacts is not None:
                            contacts[i] = (fresh.email, fresh.phone)

    async def _row_texts(self, conn: asyncpg.Connection, info: TableInfo, pks: Sequence[str]) -> dict[str, str]:
        """pk text (:func:`key_sql`) -> the row as PostgreSQL renders it (``t::text``), for fingerprints."""
        match, args = _key_match(info, pks, alias="t")
        key = key_sql(info.primary_key, _key_types_of(info), "t")
        rows = await conn.fetch(f"SELECT {key} AS k, t::text AS r FROM {qualified(info.schema, info.name)} t WHERE {match}", *args)
        return {r["k"]: r["r"] for r in rows}

    async def _key_texts(self, conn: asyncpg.Connection, batch: Batch) -> None:
        """Give the rows of a batch with a composite key the text of their key as the policy computes it
        (:func:`key_sql`), from their values as the table stores them (cast by the server)."""
        info = batch.info
        key = info.primary_key
        if len(key) < 2 or not batch.rows:
            return
        sql = _rows_sql(info, key, key_sql(key, _key_types_of(info), "r"))
        texts = await conn.fetch(sql, *[[row.values.get(c) for row in batch.rows] for c in key])
        batch.rows = [dataclasses.replace(row, pk=t["v"]) for row, t in zip(batch.rows, texts)]

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
        if info.partitions or details.get("partitions"):
            details["partitions"] = self._partition_state(info, details)
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
            "rls_before": {"enabled": details["rls_enabled_before"], "forced": details["rls_forced_before"],
                           "partitions": details.get("partitions", {})},
            "statements": w.statements,
            "roles": [{"role": c.fields["user"], "canary": p.pk} for p, c in zip(w.planned, w.creds) if c.type == CredentialType.PG_DSN],
            "later": w.later,
            "seeded_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        }
        dep_id = await self.registry.create_deployment(ctl, self.ds.name, info.target, manifest) if w.planned else None
        rows_of: dict[int, list[tuple[str, str]]] = {}  # canary index -> (kind, location key) of its child rows
        for b in w.batches[1:]:
            for j, r in enumerate(b.rows):
                rows_of.setdefault(b.top_index[j], []).append(
                    (ValueKind.CHILD_ROW.value, location_key(self.ds.name, b.target, key_text(r.pk))))
        canaries = []
        placed: list[tuple[PooledKey, NewCanary]] = []
        for i, (p, (email, phone)) in enumerate(zip(w.planned, w.contacts)):
            location = {"target": info.target, "pk": p.pk, "deployment": dep_id}
            lookup = location_key(self.ds.name, info.target, p.pk)
            fp = self._fingerprint(info.target, p.pk, texts[p.pk])
            if w.creds:
                entry = new_credential_canary(w.creds[i], self.ds.name, self._label(info.target), location=location, lookup=lookup)
                entry = dataclasses.replace(entry, fingerprint=fp, values=[*entry.values, *rows_of.get(i, [])])
                if w.pooled:  # an AWS pool key: its canary moves into this row
                    placed.append((w.pooled[i], entry))
                else:
                    canaries.append(entry)
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
        await place_pooled(self.registry, ctl, placed, dep_id)
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
            settling = await trickling.pending_fingerprints(self.registry.pool, self.ds.name)
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
                    elif rec.fingerprint is not None and self._fingerprint(target, pk, texts[pk]) not in (
                            bytes(rec.fingerprint), settling.get(rec.id)):
                        findings.append(Finding(rec.uid, target, "modified"))
                findings.extend(await self._check_detection(conn, info, list(existing)))
            findings.extend(await self._verify_children(conn, active))
            if active:  # the schema's shared objects: once, reported with the first canary table
                first = next(iter(active))
                findings.extend(Finding("-", first, p) for p in await self.tripwire.problems(conn, self.registry.keyring))
            settings, notes = await self._server(conn)
        finally:
            await self._close(conn)
        return VerifyReport(self.ds.name, checked, findings, settings, notes)

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
            tbl = qualified(info.schema, info.name)
            match, args = _key_match(info, keys, columns=key_cols[target])
            status = await conn.execute(f"DELETE FROM {tbl} WHERE {match}", *args)
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
        out.extend(Finding("-", info.target, p) for p in self._partition_problems(info))  # canary seed arms them
        return out

    # -- retire ---------------------------------------------------------------------------------
    async def _disarm_partitions(self, conn: asyncpg.Connection, info: TableInfo, details: Mapping[str, Any], policy: str) -> int:
        """Take the tripwire (policy ``policy``) off every partition of ``info``, and off former partitions
        canary armed, each back to the row-level-security state recorded before canary first armed it.
        Returns how many were armed."""
        recorded: Mapping[str, Any] = details.get("partitions") or {}
        armed = 0
        for target in sorted({p.target for p in info.partitions} | set(recorded)):
            tbl = qualified(*parse_target(target))
            if await conn.fetchval("SELECT to_regclass($1)", tbl) is None:
                continue  # dropped since
            await conn.execute(f"DROP POLICY IF EXISTS {ident(policy)} ON {tbl}")
            state = recorded.get(target)
            if state is None:
                continue  # attached after the last seeding: canary never armed it
            if state.get("permissive_policy"):
                await conn.execute(f"DROP POLICY IF EXISTS {ident(state['permissive_policy'])} ON {tbl}")
            await conn.execute(f"ALTER TABLE {tbl} {'ENABLE' if state['rls_enabled_before'] else 'DISABLE'} ROW LEVEL SECURITY")
            await conn.execute(f"ALTER TABLE {tbl} {'FORCE' if state['rls_forced_before'] else 'NO FORCE'} ROW LEVEL SECURITY")
            armed += 1
        return armed

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
                    if delete:
                        match, args = _key_match(info, delete)
                        n = await conn.execute(f"DELETE FROM {tbl} WHERE {match}", *args)
                        removed[target] = int(n.split()[-1])
                        await conn.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the ALTERs below refuse pending deferred checks
                    elif target not in armed:
                        removed[target] = 0
                    if keep:  # the modified canaries stay detected: the tripwire again, on them alone
                        pk_type, base_type = _key_types(info)
                        current = await introspect(conn, target, datastore=self.ds.name)
                        for stmt in self._detection_statements(current, base_type, keep):
                            await conn.execute(stmt)
                        await tw.install_line_key(conn, self.registry.keyring)
                        await tw.set_members(conn, target, pk_type, base_type, keep)
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
                    parts = await self._disarm_partitions(conn, info, details, restrictive)
                    if parts:
                        dropped.append(f"policy {restrictive} on {parts} partitions of {target}")
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
            await trickling.forget(ctl, self.ds.name, wanted)
        self.log.info("seed.retired", removed=removed, kept=len([k for k in kept if not force]))
        return RetireResult(self.ds.name, removed, kept if not force else [], child_rows, dropped)


def _busy_sql(epoch: str) -> str:
    """SQL for the busy seconds from the Unix epoch to ``epoch`` (float8 seconds: ``date_part``, which
    is extract's value without its numeric arithmetic) (:meth:`Rates.busy`), the week's hourly rates in
    $5 and their sums before each hour in $6."""
    hour = f"floor({epoch} / 3600.0)"
    at = f"(((({hour})::bigint + {EPOCH_HOUR_OF_WEEK}) % {WEEK_HOURS} + {WEEK_HOURS}) % {WEEK_HOURS} + 1)"
    return (f"(3600.0 * (floor(({hour} + {EPOCH_HOUR_OF_WEEK}) / {WEEK_HOURS}.0) * ($6::float8[])[{WEEK_HOURS + 1}]"
            f" + ($6::float8[])[{at}] + ({epoch} / 3600.0 - {hour}) * ($5::float8[])[{at}]))")


def _trickle_unsupported(info: TableInfo) -> str | None:
    """Why a table cannot take trickle canaries (it can take backdated ones), or None."""
    if len(info.primary_key) != 1 or info.kind == "p":
        return ("has a composite key or partitions: trickle mode writes single-key tables only for now "
                "(use mode = \"backdated\")")
    return None


def _later_groups(later: Sequence[Batch]) -> list[dict[str, Any]]:
    """A trickle sign-up's child rows as groups written together later: each row of a first-level
    batch (an order) with the rows of deeper batches that reference it (its lines), due at the
    order's planned time; each deeper row keeps how long after it its own time was planned."""
    groups: list[dict[str, Any]] = []
    for b in later:
        if b.depth != 1 or b.fk is None:
            continue
        for i, row in enumerate(b.rows):
            due = b.contexts[i].created if i < len(b.contexts) else None
            rows: list[dict[str, Any]] = [{"target": b.target, "depth": 1, "values": dict(row.values), "fk": list(b.fk),
                                           "parent": None, "after": 0.0}]
            for c in later:
                if c.parent is not b or c.fk is None:
                    continue
                for j, crow in enumerate(c.rows):
                    if c.parent_index[j] == i:
                        t = c.contexts[j].created if j < len(c.contexts) else None
                        rows.append({"target": c.target, "depth": c.depth, "values": dict(crow.values), "fk": list(c.fk),
                                     "parent": 0, "after": (t - due).total_seconds() if t and due else 0.0})
            groups.append({"due": due.isoformat() if due else None, "rows": rows,
                           "canary": b.top_index[i] if i < len(b.top_index) else 0})
    return groups


def _shifted(info: TableInfo, values: dict[str, Any], at: dt.datetime) -> dict[str, Any]:
    """A planned child row moved to ``at``: its creation time becomes ``at`` at the precision the planned
    value had, and its other times keep their distance to it (shipped a day after it was ordered)."""
    created = created_column(info)
    planned = parse_ts(values.get(created)) if created else None
    if created is None or planned is None:
        return values
    unit = 1_000_000 if planned.microsecond == 0 else 1000 if planned.microsecond % 1000 == 0 else 1
    at = at - dt.timedelta(microseconds=at.microsecond % unit)
    if planned.tzinfo is None:  # a timestamp without time zone: written as UTC wall time
        at = at.astimezone(dt.timezone.utc).replace(tzinfo=None)
    delta = at - planned
    for c in info.columns:
        if c.category != "D" or values.get(c.name) is None:
            continue
        when = parse_ts(values[c.name])
        if when is None:
            continue
        moved = when + delta
        values[c.name] = moved.date().isoformat() if c.base_type == "date" else moved.isoformat()
    return values

#: A gap between two neighbouring real rows of a composite key: (group, the lower row's other key
#: columns, the two rows' values of the integer key column, their times).
_Gap = tuple[tuple[str | None, ...], tuple[str | None, ...], int, int, dt.datetime | None, dt.datetime | None]


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
