"""The copy sweep: canary data copied into other tables, materialized views and databases.

An insider who copies customers into ``analytics.customers_2025`` (``CREATE TABLE AS``, a materialized
view, a table in another database of the same server) has read the canary rows once, and that read
paged; the copy itself is silent from then on and may be what leaves the company. The sweep finds it:
on a schedule it reads the text of every relation in every database of each configured PostgreSQL
datastore and recognises canary e-mail addresses and phone numbers by blind index
(:class:`canary.health.valuematch.ValueMatcher`): values are never decrypted, never put in SQL text
and never logged. One incident per copied object names it, its owner and its creation time.

What is read, per database that allows connections (``datallowconn`` and not a template): tables
(partition leaves included) and populated materialized views with text-like columns (``text``,
``varchar``, ``char``, ``name``, ``citext``, domains over them, ``json`` / ``jsonb`` and arrays of
those), each column cast to text. Never read: views (they read other relations), foreign tables,
system schemas, canary's detection schemas, canary's control store when it lives on the same server,
and the tables canary armed: the datastore's recorded targets in its own database, and in any database
every table with a policy that calls a function in a detection schema (only canary's role or a
superuser can write such a policy: the schema grants no USAGE), because reading those would read the
canaries themselves.

How it reads: block ranges with a TID range scan (``ctid >= '(b,0)' AND ctid < '(e,0)'``; PostgreSQL
14 or later), ``sweep_blocks`` blocks per query, one short read-only transaction per range. The SQL
holds identifiers (quoted with :func:`canary.postgres.sql.ident`) and block numbers only. Sessions use
``search_path = pg_catalog, pg_temp`` (no operator or type of an untrusted schema is resolved) and
``row_security = off``: a table whose own row-level security would apply to the sweep's role is
reported and skipped rather than read through its policies (which would run code its owner wrote as
canary's role). Every session is registered in ``own_sessions`` (:mod:`canary.store.sessions`).

Budget, per datastore and run: ``sweep_max_seconds`` of wall time (listing included; each range query
runs with a ``statement_timeout`` of the time left) and ``sweep_max_bytes`` of buffer pages touched,
measured in the sweep's own transaction with ``pg_stat_get_xact_blocks_fetched`` on the relation, its
TOAST table and TOAST index (with ``track_counts`` off: the range's heap blocks, an estimate). Range
sizes adapt to the measured seconds and bytes per block so a run ends inside its budget;
``sweep_max_bytes_per_second`` throttles the reads. What was read is kept per relation
(``sweep_relations``: blocks ``[0, scanned_to)`` of its current file node) and the round-robin position
in ``checkpoints`` (``sweep:<datastore>``), so the next run resumes where this one stopped.

Order of work in a run: (1) new data: relations that appeared since the first listing (a new table,
or a new file node: ``REFRESH``, ``TRUNCATE`` and reload, ``VACUUM FULL``) and blocks appended to a
relation already read to its end, smallest first, so a fresh copy is found on the next run even while
a full pass takes many runs; (2) the first pass over what existed at the first listing; (3) the
round-robin pass, resumed from the saved position, that re-reads everything (rows updated in place).

A relation that vanishes, is rewritten or locked, or refuses the sweep (privileges, row-level
security) is skipped with a counted problem and retried by a later pass; a database that refuses the
connection likewise. Nothing of that stops the sweep.

A hit is one :class:`~canary.events.DetectionEvent` per object (EXPORTED / CRITICAL, key
``copy/datastore/database/oid``: finding the object again adds nothing), committed before the position
that covers it is saved.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from canary.config import CoverageConfig, DatastoreConfig
from canary.events import DetectionEvent, EventKind, Severity, event_key
from canary.health.valuematch import KINDS, Found, ValueMatcher, country_codes
from canary.postgres.sql import ident, qualified
from canary.store import checkpoints, detection_objects, registry, sessions
from canary.typing import SourceContext

log = structlog.get_logger("canary.sweep")

SOURCE = "sweep"
MIN_SERVER_VERSION = 140000  # TID range scans
CONNECT_TIMEOUT = 10.0
MAX_OPEN = 2  # datastore connections a run keeps open at once
CALIBRATE_BLOCKS = 16  # the first range of a run, before seconds per block are known
MAX_CANARIES_LISTED = 20
MAX_PROBLEMS_LISTED = 50
FLUSH_EVERY = 100  # relation states written to the control store per batch
SESSION_SETTINGS = {
    "search_path": "pg_catalog, pg_temp",
    "row_security": "off",
    "default_transaction_read_only": "on",
    "lock_timeout": "1s",
    "idle_in_transaction_session_timeout": "60s",
    "max_parallel_workers_per_gather": "0",
}
RELKINDS = {"r": "table", "m": "materialized view"}
#: Characters of one cell the sweep matches (a copied e-mail or phone sits well inside; a longer
#: document is matched in its first MAX_CELL characters)
MAX_CELL = 65536
#: Rows fetched and matched at a time within a range: with MAX_CELL, what a range can make the sweep hold
FETCH_ROWS = 256


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# -- configuration ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Budget:
    """What one run may spend on one datastore."""

    max_seconds: float
    max_bytes: int
    blocks: int = 1024  # heap blocks per range query
    max_bytes_per_second: int = 0  # 0: no throttle

    @classmethod
    def from_config(cls, cov: CoverageConfig, *, max_seconds: float | None = None, max_bytes: int | None = None) -> Budget:
        return cls(max_seconds=cov.sweep_max_seconds if max_seconds is None else max_seconds,
                   max_bytes=cov.sweep_max_bytes if max_bytes is None else max_bytes,
                   blocks=cov.sweep_blocks, max_bytes_per_second=cov.sweep_max_bytes_per_second)


# -- what a run sees and reports -------------------------------------------------------------------

@dataclass
class Relation:
    """A relation as listed in this run, with what the control store remembers of it."""

    database: str
    oid: int
    filenode: int
    schema: str
    name: str
    relkind: str
    owner: str
    nblocks: int
    columns: tuple[str, ...]
    stat_oids: tuple[int, ...]  # the relation, its TOAST table and TOAST index: the I/O of a range
    first_seen: dt.datetime
    appeared: bool = False
    scanned_to: int = 0
    completed: bool = False
    problem: str | None = None
    dirty: bool = False

    @property
    def key(self) -> tuple[str, int]:
        return (self.database, self.oid)

    @property
    def shown(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def remaining(self) -> int:
        return max(self.nblocks - self.scanned_to, 0)

    @property
    def new_data(self) -> bool:
        """Its unread blocks were written after the sweep began (a new relation, or appended rows)."""
        return self.appeared or self.completed


@dataclass
class SweepSummary:
    """One datastore's run, as ``canary coverage sweep`` prints it (names and counts, never values)."""

    datastore: str
    started_at: dt.datetime = field(default_factory=_now)
    seconds: float = 0.0
    stopped: str = "done"  # done | max_seconds | max_bytes | no_canaries | unreachable | unsupported
    databases: int = 0
    databases_refused: int = 0
    relations: int = 0
    relations_scanned: int = 0
    rows: int = 0
    blocks: int = 0  # heap blocks in the ranges read
    bytes: int = 0  # buffer pages touched (measured), in bytes
    bytes_read: int = 0  # of those, not found in shared buffers
    io_measured: bool = True
    hashed: int = 0
    hits: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    problems: list[dict[str, Any]] = field(default_factory=list)
    backlog_relations: int = 0
    backlog_blocks: int = 0
    passes: int = 0
    resume: dict[str, Any] | None = None

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n

    def problem(self, database: str | None, obj: str | None, problem: str) -> None:
        self.skip(problem)
        if len(self.problems) < MAX_PROBLEMS_LISTED:
            self.problems.append({"database": database, "object": obj, "problem": problem})

    def to_json(self) -> dict[str, Any]:
        return {
            "datastore": self.datastore, "started_at": self.started_at.isoformat(), "seconds": round(self.seconds, 3),
            "stopped": self.stopped, "databases": self.databases, "databases_refused": self.databases_refused,
            "relations": self.relations, "relations_scanned": self.relations_scanned, "rows": self.rows,
            "blocks": self.blocks, "bytes": self.bytes, "bytes_read": self.bytes_read, "io_measured": self.io_measured,
            "hashed": self.hashed, "hits": self.hits, "skipped": dict(sorted(self.skipped.items())),
            "problems": self.problems, "backlog": {"relations": self.backlog_relations, "blocks": self.backlog_blocks},
            "passes": self.passes, "resume": self.resume,
        }


class _Skip(Exception):
    """A relation or database cannot be read now (the reason is a short problem name)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class _Stop(Exception):
    """The run's budget is spent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- SQL sent to the datastore (identifiers and block numbers only) ---------------------------------

_SESSION_INFO = """
SELECT pg_catalog.current_database()::text AS db, pg_catalog.pg_postmaster_start_time()::text AS started,
       pg_catalog.current_setting('port') AS port, pg_catalog.current_setting('server_version_num')::int AS version,
       pg_catalog.current_setting('block_size')::int AS block_size,
       pg_catalog.current_setting('track_counts')::bool AS track_counts
"""

_DATABASES = ("SELECT datname::text AS name FROM pg_catalog.pg_database WHERE datallowconn AND NOT datistemplate"
              " ORDER BY datname")

_TEXT_TYPES = "('pg_catalog.json'::pg_catalog.regtype, 'pg_catalog.jsonb'::pg_catalog.regtype)"

# $1 detection schemas, $2 / $3 the armed targets' schemas / names (the datastore's own database only)
_LIST = f"""
WITH held AS MATERIALIZED (
    SELECT l.relation FROM pg_catalog.pg_locks l
    WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' AND l.relation IS NOT NULL
      AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
), guarded AS MATERIALIZED (
    SELECT DISTINCT p.polrelid AS rel
    FROM pg_catalog.pg_policy p
    JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass AND d.objid = p.oid
                               AND d.refclassid = 'pg_catalog.pg_proc'::pg_catalog.regclass
    JOIN pg_catalog.pg_proc f ON f.oid = d.refobjid
    JOIN pg_catalog.pg_namespace fn ON fn.oid = f.pronamespace
    WHERE fn.nspname = ANY($1::text[])
), textual AS MATERIALIZED (
    SELECT a.attrelid AS rel,
           pg_catalog.array_agg(a.attname::text ORDER BY a.attnum)
               FILTER (WHERE pg_catalog.has_column_privilege(a.attrelid, a.attnum, 'SELECT')) AS readable,
           pg_catalog.count(*) FILTER (WHERE NOT pg_catalog.has_column_privilege(a.attrelid, a.attnum, 'SELECT')) AS denied
    FROM pg_catalog.pg_attribute a
    JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
    LEFT JOIN pg_catalog.pg_type e ON t.typcategory = 'A' AND e.oid = t.typelem
    WHERE a.attnum > 0 AND NOT a.attisdropped
      AND (t.typcategory = 'S' OR e.typcategory = 'S' OR t.oid IN {_TEXT_TYPES} OR t.typbasetype IN {_TEXT_TYPES}
           OR e.oid IN {_TEXT_TYPES})
    GROUP BY a.attrelid
), rels AS (
    SELECT c.oid, n.nspname::text AS schema, c.relname::text AS name, c.relkind::text AS relkind,
           pg_catalog.pg_get_userbyid(c.relowner)::text AS owner, c.relispopulated AS populated, c.reltoastrelid,
           n.nspname = ANY($1::text[]) AS detection_schema,
           (c.oid IN (SELECT rel FROM guarded)
            OR (n.nspname::text, c.relname::text) IN (SELECT * FROM ROWS FROM (pg_catalog.unnest($2::text[]), pg_catalog.unnest($3::text[])))) AS armed,
           c.oid IN (SELECT relation FROM held) AS locked,
           x.readable, x.denied
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    JOIN textual x ON x.rel = c.oid
    WHERE c.relkind IN ('r', 'm') AND c.relpersistence <> 't'
      AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
)
SELECT r.oid::bigint AS oid, r.schema, r.name, r.relkind, r.owner, r.populated, r.detection_schema, r.armed, r.locked,
       r.readable, r.denied, pg_catalog.pg_relation_filenode(r.oid)::bigint AS filenode,
       CASE WHEN r.readable IS NULL OR r.armed OR r.detection_schema OR r.locked OR NOT r.populated THEN NULL
            ELSE pg_catalog.pg_relation_size(r.oid) / pg_catalog.current_setting('block_size')::bigint END AS nblocks,
       ARRAY[r.reltoastrelid::bigint,
             coalesce((SELECT i.indexrelid FROM pg_catalog.pg_index i WHERE i.indrelid = r.reltoastrelid
                                  ORDER BY i.indexrelid LIMIT 1), 0)::bigint] AS toast
FROM rels r ORDER BY r.oid
"""

# in a range's transaction, before the read: its statement timeout, then the I/O counters so far
_BEFORE = """
SELECT pg_catalog.set_config('statement_timeout', $1, true) AS timeout,
       (SELECT pg_catalog.sum(pg_catalog.pg_stat_get_xact_blocks_fetched(o)) FROM pg_catalog.unnest($2::oid[]) o)::bigint AS fetched,
       (SELECT pg_catalog.sum(pg_catalog.pg_stat_get_xact_blocks_hit(o)) FROM pg_catalog.unnest($2::oid[]) o)::bigint AS hit
"""

# after the read (the relation read is locked until commit): was it this relation and file node?
_AFTER = """
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
               WHERE c.oid = $1::oid AND n.nspname = $3 AND c.relname = $4
                 AND pg_catalog.pg_relation_filenode(c.oid) = $5) AS same,
       EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.oid = $1::oid) AS exists,
       (SELECT pg_catalog.sum(pg_catalog.pg_stat_get_xact_blocks_fetched(o)) FROM pg_catalog.unnest($2::oid[]) o)::bigint AS fetched,
       (SELECT pg_catalog.sum(pg_catalog.pg_stat_get_xact_blocks_hit(o)) FROM pg_catalog.unnest($2::oid[]) o)::bigint AS hit
"""

_CREATED = """
SELECT CASE WHEN pg_catalog.current_setting('track_commit_timestamp')::bool
            THEN pg_catalog.pg_xact_commit_timestamp(c.xmin) END AS created,
       pg_catalog.current_setting('track_commit_timestamp')::bool AS tracked
FROM pg_catalog.pg_class c WHERE c.oid = $1::oid
"""


def range_sql(rel: Relation, start: int, end: int) -> str:
    """The read of blocks ``[start, end)`` of ``rel``: its text columns as text, each cut at
    :data:`MAX_CELL` characters (a table of huge values cannot make the sweep hold them), nothing else."""
    cols = ", ".join(f"pg_catalog.left({ident(c)}::pg_catalog.text, {MAX_CELL})" for c in rel.columns)
    return (f"SELECT {cols} FROM ONLY {qualified(rel.schema, rel.name)}"
            f" WHERE ctid >= '({int(start)},0)'::pg_catalog.tid AND ctid < '({int(end)},0)'::pg_catalog.tid")


# -- the control store: sweep_relations (this module owns the table) ---------------------------------

async def load_states(db: asyncpg.Pool | asyncpg.Connection, datastore: str) -> dict[tuple[str, int], asyncpg.Record]:
    rows = await db.fetch(
        "SELECT database, oid, filenode, first_seen, appeared, scanned_to, completed, problem FROM sweep_relations"
        " WHERE datastore = $1", datastore)
    return {(r["database"], int(r["oid"])): r for r in rows}


async def save_states(db: asyncpg.Pool | asyncpg.Connection, datastore: str, rels: Sequence[Relation]) -> None:
    if not rels:
        return
    await db.execute(
        """
        INSERT INTO sweep_relations (datastore, database, oid, filenode, schema_name, rel_name, first_seen, appeared,
                                     scanned_to, completed, scanned_at, problem)
        SELECT $1, d, o, f, s, n, fs, a, st, c, now(), p
        FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::timestamptz[], $8::boolean[],
                    $9::bigint[], $10::boolean[], $11::text[]) AS t(d, o, f, s, n, fs, a, st, c, p)
        ON CONFLICT (datastore, database, oid) DO UPDATE SET
            filenode = EXCLUDED.filenode, schema_name = EXCLUDED.schema_name, rel_name = EXCLUDED.rel_name,
            first_seen = EXCLUDED.first_seen, appeared = EXCLUDED.appeared, scanned_to = EXCLUDED.scanned_to,
            completed = EXCLUDED.completed, scanned_at = EXCLUDED.scanned_at, problem = EXCLUDED.problem
        """,
        datastore, [r.database for r in rels], [r.oid for r in rels], [r.filenode for r in rels],
        [r.schema for r in rels], [r.name for r in rels], [r.first_seen for r in rels], [r.appeared for r in rels],
        [r.scanned_to for r in rels], [r.completed for r in rels], [r.problem for r in rels],
    )


async def forget_states(db: asyncpg.Pool | asyncpg.Connection, datastore: str, database: str,
                        keep: Sequence[int] | None) -> None:
    """Forget a database's relations except ``keep`` (all of them when ``keep`` is None)."""
    if keep is None:
        await db.execute("DELETE FROM sweep_relations WHERE datastore = $1 AND database = $2", datastore, database)
    else:
        await db.execute("DELETE FROM sweep_relations WHERE datastore = $1 AND database = $2 AND NOT (oid = ANY($3::bigint[]))",
                         datastore, database, list(keep))


async def forget_databases(db: asyncpg.Pool | asyncpg.Connection, datastore: str, existing: Sequence[str]) -> None:
    await db.execute("DELETE FROM sweep_relations WHERE datastore = $1 AND NOT (database = ANY($2::text[]))",
                     datastore, list(existing))


# -- datastore sessions ------------------------------------------------------------------------------

@dataclass
class _Session:
    conn: asyncpg.Connection
    own: int  # own_sessions id
    db: str
    server: tuple[str, str]  # (postmaster start, port): which server this is
    version: int
    block_size: int
    track_counts: bool


class _Sessions:
    """At most :data:`MAX_OPEN` datastore sessions, opened per database on demand (least recently used
    closed first), each registered as canary's own for as long as it is open."""

    def __init__(self, pool: asyncpg.Pool, ds: DatastoreConfig) -> None:
        self.pool = pool
        self.ds = ds
        self.open: dict[str, _Session] = {}
        self.home_db = ""  # the database the DSN names (known once :meth:`home` connected)

    async def home(self) -> _Session:
        """A session on the DSN's own database. Raises :class:`_Skip` when refused."""
        if self.home_db:
            return await self.get(self.home_db)
        s = await self._connect(None)
        self.home_db = s.db
        await self._make_room()
        self.open[s.db] = s
        return s

    async def get(self, database: str) -> _Session:
        """A session on ``database``. Raises :class:`_Skip` when refused."""
        s = self.open.pop(database, None)
        if s is None:
            await self._make_room()
            s = await self._connect(None if database == self.home_db else database)
        self.open[database] = s
        return s

    async def _make_room(self) -> None:
        while len(self.open) >= MAX_OPEN:
            await self._close(next(iter(self.open)))

    async def _connect(self, database: str | None) -> _Session:
        kwargs: dict[str, Any] = {} if database is None else {"database": database}
        try:
            conn = await asyncpg.connect(self.ds.dsn.reveal(), timeout=CONNECT_TIMEOUT, statement_cache_size=0,
                                         server_settings=dict(SESSION_SETTINGS), **kwargs)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise _Skip(f"connection_refused:{type(exc).__name__}") from None
        try:
            own = await sessions.open_session(self.pool, self.ds.name, conn, "sweep")
            info = await conn.fetchrow(_SESSION_INFO)
        except BaseException:
            conn.terminate()
            raise
        return _Session(conn, own, str(info["db"]), (str(info["started"]), str(info["port"])), int(info["version"]),
                        int(info["block_size"]), bool(info["track_counts"]))

    async def drop(self, database: str) -> None:
        if database in self.open:
            await self._close(database)

    async def _close(self, database: str) -> None:
        s = self.open.pop(database)
        try:
            await asyncio.wait_for(s.conn.close(), 5.0)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            s.conn.terminate()
        await sessions.close_session(self.pool, s.own)

    async def close(self) -> None:
        for database in list(self.open):
            await self._close(database)


# -- one datastore's run -----------------------------------------------------------------------------

class _Run:
    def __init__(self, runtime: SourceContext, ds: DatastoreConfig, matcher: ValueMatcher, budget: Budget,
                 control: tuple[tuple[str, str], str] | None) -> None:
        self.rt = runtime
        self.ds = ds
        self.matcher = matcher
        self.budget = budget
        self.control = control  # (server, database) of the control store
        self.summary = SweepSummary(ds.name)
        self.sessions = _Sessions(runtime.pool, ds)
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        self.read_t0: float | None = None  # when the first range was read (the throttle's clock)
        self.bytes_per_block = 0.0  # measured: buffer bytes per heap block of a range
        self.seconds_per_block = 0.0  # measured: wall time per heap block (read + match)
        self.events: list[DetectionEvent] = []
        self.pending: list[Relation] = []
        self.failed: set[tuple[str, int]] = set()  # relations that failed in this run: not retried in it
        self.position: dict[str, Any] = {}
        self.block_size = 8192

    # -- budget --------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return self.loop.time() - self.t0

    def range_blocks(self) -> int:
        """How many blocks the next range may cover (>= 1), or :class:`_Stop`."""
        b = self.budget
        left_s = b.max_seconds - self.elapsed()
        if left_s <= 0:
            raise _Stop("max_seconds")
        per_block = max(self.bytes_per_block, float(self.block_size))
        by_bytes = int((b.max_bytes - self.summary.bytes) // per_block)
        if by_bytes < 1:
            raise _Stop("max_bytes")
        n = min(b.blocks, by_bytes)
        if self.seconds_per_block > 0:
            by_time = int(left_s * 0.8 / self.seconds_per_block)
            if by_time < 1:
                raise _Stop("max_seconds")
            n = min(n, by_time)
        else:
            n = min(n, CALIBRATE_BLOCKS)
        if b.max_bytes_per_second:
            n = min(n, max(1, int(b.max_bytes_per_second // per_block)))
        return n

    async def throttle(self) -> None:
        rate = self.budget.max_bytes_per_second
        if not rate or self.read_t0 is None:
            return
        ahead = self.summary.bytes / rate - (self.loop.time() - self.read_t0)
        left = self.budget.max_seconds - self.elapsed()
        if ahead > 0:
            await asyncio.sleep(min(ahead, max(left, 0.0)))

    # -- the run -------------------------------------------------------------------------------
    async def run(self) -> SweepSummary:
        try:
            await self._run()
        finally:
            try:
                await self.flush()
            finally:
                await self.sessions.close()
            self.summary.seconds = self.elapsed()
        s = self.summary
        log.info("sweep.finished", datastore=self.ds.name, stopped=s.stopped, seconds=round(s.seconds, 3),
                 relations=s.relations, scanned=s.relations_scanned, rows=s.rows, blocks=s.blocks, bytes=s.bytes,
                 hits=len(s.hits), problems=sum(n for k, n in s.skipped.items() if k not in _QUIET),
                 backlog_relations=s.backlog_relations)
        return s

    async def _run(self) -> None:
        try:
            home = await self.sessions.home()
        except _Skip as exc:
            self.summary.stopped = "unreachable"
            self.summary.problem(None, None, exc.problem)
            log.warning("sweep.datastore_unreachable", datastore=self.ds.name, problem=exc.problem)
            return
        if home.version < MIN_SERVER_VERSION:
            self.summary.stopped = "unsupported"
            self.summary.problem(home.db, None, "server_older_than_14")
            log.warning("sweep.unsupported_server", datastore=self.ds.name, server_version=home.version)
            return
        self.block_size = home.block_size
        self.summary.io_measured = home.track_counts
        databases = [r["name"] for r in await home.conn.fetch(_DATABASES)]
        position = await checkpoints.load(self.rt.pool, f"{SOURCE}:{self.ds.name}") or {}
        first_listing = "listed_at" not in position
        self.position = {**position, "listed_at": position.get("listed_at") or _now().isoformat()}
        self.summary.passes = int(self.position.get("passes", 0))
        rels = await self._list_all(home, databases, first_listing)
        await forget_databases(self.rt.pool, self.ds.name, databases)
        await save_states(self.rt.pool, self.ds.name, [r for r in rels if r.dirty])
        for r in rels:
            r.dirty = False
        try:
            await self._work(rels)
            self.summary.stopped = "done"
        except _Stop as stop:
            self.summary.stopped = stop.reason
        backlog = [r for r in rels if r.remaining and r.problem is None]
        self.summary.backlog_relations = len(backlog)
        self.summary.backlog_blocks = sum(r.remaining for r in backlog)
        if backlog and any(r.new_data for r in backlog):
            log.warning("sweep.behind", datastore=self.ds.name, relations=len(backlog),
                        new_relations=sum(1 for r in backlog if r.new_data), blocks=self.summary.backlog_blocks)

    # -- listing -------------------------------------------------------------------------------
    async def _list_all(self, home: _Session, databases: Sequence[str], first_listing: bool) -> list[Relation]:
        pool = self.rt.pool
        schemas = sorted({d.detection_schema for d in self.rt.config.datastores}
                         | {s for d in self.rt.config.datastores for s in await detection_objects.schemas(pool, d.name)})
        armed = [t.split(".", 1) for t in await detection_objects.targets(pool, self.ds.name) if "." in t]
        states = await load_states(pool, self.ds.name)
        out: list[Relation] = []
        for db in databases:
            if self.control is not None and self.control == (home.server, db):
                self.summary.skip("control_store")
                continue
            self.summary.databases += 1
            try:
                s = await self.sessions.get(db)
            except _Skip as exc:
                self.summary.databases_refused += 1
                self.summary.problem(db, None, exc.problem)
                log.warning("sweep.database_refused", datastore=self.ds.name, database=db, problem=exc.problem)
                continue
            if s.server != home.server:  # a DSN that routes databases to different servers: not ours to read
                self.summary.problem(db, None, "other_server")
                continue
            try:
                rows = await self._list(s, schemas, armed if db == home.db else [])
            except _Skip as exc:
                self.summary.problem(db, None, exc.problem)
                log.warning("sweep.database_unlisted", datastore=self.ds.name, database=db, problem=exc.problem)
                await self.sessions.drop(db)
                continue
            listed = self._relations(db, rows, states, first_listing)
            await forget_states(pool, self.ds.name, db, [int(r["oid"]) for r in rows])
            out += listed
        self.summary.relations = len(out)
        return out

    async def _list(self, s: _Session, schemas: Sequence[str], armed: Sequence[Sequence[str]]) -> list[asyncpg.Record]:
        """The database's candidate relations (one catalog query; retried once if a lock got in the way)."""
        for attempt in (1, 2):
            try:
                return list(await s.conn.fetch(_LIST, list(schemas), [a[0] for a in armed], [a[1] for a in armed],
                                               timeout=max(self.budget.max_seconds, 10.0)))
            except asyncpg.LockNotAvailableError:
                if attempt == 2:
                    raise _Skip("listing_locked") from None
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError) as exc:
                raise _Skip(f"listing_failed:{type(exc).__name__}") from None
        raise AssertionError("unreachable")

    def _relations(self, db: str, rows: Sequence[asyncpg.Record], states: dict[tuple[str, int], asyncpg.Record],
                   first_listing: bool) -> list[Relation]:
        out: list[Relation] = []
        now = _now()
        for r in rows:
            shown = f"{r['schema']}.{r['name']}"
            if r["detection_schema"]:
                self.summary.skip("detection_schema")
                continue
            if r["armed"]:
                self.summary.skip("armed")
                continue
            if not r["readable"]:
                self.summary.problem(db, shown, "permission_denied")
                continue
            if r["denied"]:
                self.summary.skip("columns_denied", int(r["denied"]))
            if not r["populated"]:
                self.summary.skip("not_populated")
                continue
            if r["locked"] or r["nblocks"] is None:
                self.summary.problem(db, shown, "locked")
                continue
            rel = Relation(
                database=db, oid=int(r["oid"]), filenode=int(r["filenode"] or 0), schema=r["schema"], name=r["name"],
                relkind=r["relkind"], owner=r["owner"], nblocks=int(r["nblocks"]), columns=tuple(r["readable"]),
                stat_oids=tuple(o for o in (int(r["oid"]), *(int(t) for t in r["toast"])) if o), first_seen=now,
            )
            st = states.get(rel.key)
            if st is not None and int(st["filenode"]) == rel.filenode:
                rel.first_seen, rel.appeared, rel.completed = st["first_seen"], st["appeared"], st["completed"]
                rel.scanned_to, rel.problem = min(int(st["scanned_to"]), rel.nblocks), st["problem"]
            else:  # never seen, or a new file node: everything in it is unread
                rel.appeared, rel.dirty = not first_listing, True
            out.append(rel)
        return out

    # -- work ----------------------------------------------------------------------------------
    async def _work(self, rels: list[Relation]) -> None:
        """New data first, then the first pass, then relations that failed before (cheapest first
        within each), then the round-robin pass."""
        for r in rels:
            if not r.nblocks and not r.completed:  # empty: whatever is written to it later is new data
                r.completed, r.appeared, r.dirty = True, False, True

        def order(r: Relation) -> tuple[bool, bool, int, str, int]:
            return (r.problem is not None, not r.new_data, r.remaining, r.database, r.oid)

        whole: set[tuple[str, int]] = set()  # read from block 0 to its end in this run
        for rel in sorted((r for r in rels if r.remaining), key=order):
            start = rel.scanned_to
            phase = "new_data" if rel.new_data else "first_pass"
            if await self._relation(rel, start, rel.nblocks, phase=phase) >= rel.nblocks and start == 0:
                whole.add(rel.key)
        await self._round_robin(rels, whole)

    async def _round_robin(self, rels: list[Relation], whole: set[tuple[str, int]]) -> None:
        """Re-read every relation in (database, oid) order from the saved cursor, at most one turn per run
        (relations read whole earlier in this run are passed over)."""
        ordered = sorted(rels, key=lambda r: r.key)
        n = len(ordered)
        if not n:
            return
        cur = self.position.get("cursor") or {}
        at = (str(cur.get("database", "")), int(cur.get("oid", 0)))
        i = next((k for k, r in enumerate(ordered) if r.key >= at), 0)
        block = int(cur.get("block", 0)) if ordered[i].key == at and ordered[i].filenode == cur.get("filenode") else 0
        for step in range(n):
            k = (i + step) % n
            rel = ordered[k]
            start = min(block, rel.nblocks) if step == 0 else 0
            self._cursor(rel, start)
            if rel.key not in whole and rel.key not in self.failed:
                await self._relation(rel, start, rel.nblocks, phase="round_robin")  # raises _Stop when the budget is spent
            if k == n - 1:
                self._pass_done()
            self._cursor(ordered[(k + 1) % n], 0)

    def _pass_done(self) -> None:
        self.summary.passes = int(self.position.get("passes", 0)) + 1
        self.position["passes"] = self.summary.passes
        self.position["pass_completed_at"] = _now().isoformat()

    def _cursor(self, rel: Relation, block: int) -> None:
        self.position["cursor"] = {"database": rel.database, "oid": rel.oid, "filenode": rel.filenode, "block": block}
        self._resume(rel, block, "round_robin")

    def _resume(self, rel: Relation, block: int, phase: str) -> None:
        self.summary.resume = {"database": rel.database, "object": rel.shown, "block": block, "phase": phase}

    async def _relation(self, rel: Relation, start: int, end: int, *, phase: str) -> int:
        """Read blocks ``[start, end)`` of ``rel`` as far as the budget allows (moving the round-robin
        cursor along in the ``round_robin`` phase); returns the block reached. A hit is committed as an
        event before the relation's new position is saved; a spent budget is raised (:class:`_Stop`)
        after that."""
        if start >= end:
            return start
        found = Found()
        pos = start
        stop: _Stop | None = None
        self._resume(rel, pos, phase)
        try:
            s = await self.sessions.get(rel.database)
            while pos < end:
                upto = min(end, pos + self.range_blocks())
                found.add(await self._range(s, rel, pos, upto))
                if pos == start:
                    self.summary.relations_scanned += 1
                if start <= rel.scanned_to < upto:
                    rel.scanned_to = upto
                pos, rel.dirty = upto, True
                if phase == "round_robin":
                    self._cursor(rel, pos)
                else:
                    self._resume(rel, pos, phase)
                await self.throttle()
            if rel.scanned_to >= rel.nblocks:
                rel.completed, rel.appeared = True, False
            if rel.problem is not None:
                rel.problem, rel.dirty = None, True
        except _Stop as exc:
            stop = exc
        except _Skip as exc:
            rel.problem, rel.dirty = exc.problem, True
            self.failed.add(rel.key)
            self.summary.problem(rel.database, rel.shown, exc.problem)
            log.warning("sweep.relation_skipped", datastore=self.ds.name, database=rel.database, object=rel.shown,
                        problem=exc.problem)
            if exc.problem.startswith("connection"):
                await self.sessions.drop(rel.database)
        if found.canaries:
            await self._hit(rel, found, complete=pos >= rel.nblocks)
        self.pending.append(rel)
        if found.canaries or len(self.pending) >= FLUSH_EVERY or stop is not None:
            await self.flush()
        if stop is not None:
            raise stop
        return pos

    async def _range(self, s: _Session, rel: Relation, start: int, end: int) -> Found:
        """One range in one read-only transaction: its rows matched, its I/O measured."""
        t = self.loop.time()
        left = self.budget.max_seconds - self.elapsed()
        timeout_ms = max(int(left * 1000), 1)
        oids = list(rel.stat_oids)
        conn = s.conn
        wait = left + 10.0  # the server cancels at the statement timeout; this bounds a silent network
        try:
            found = Found()
            n_rows = 0
            async with conn.transaction(readonly=True):
                before = await conn.fetchrow(_BEFORE, f"{timeout_ms}ms", oids, timeout=wait)
                cursor = await conn.cursor(range_sql(rel, start, end), timeout=wait)
                while batch := await cursor.fetch(FETCH_ROWS, timeout=wait):
                    n_rows += len(batch)
                    found.add(await asyncio.to_thread(self.matcher.scan, batch) if len(batch) > 32 else self.matcher.scan(batch))
                after = await conn.fetchrow(_AFTER, rel.oid, oids, rel.schema, rel.name, rel.filenode, timeout=wait)
        except asyncpg.QueryCanceledError:
            raise _Stop("max_seconds") from None
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
            raise _Skip("vanished") from None
        except asyncpg.UndefinedColumnError:
            raise _Skip("altered") from None
        except asyncpg.InsufficientPrivilegeError as exc:
            raise _Skip("row_security" if "row-level security" in str(exc) else "permission_denied") from None
        except asyncpg.LockNotAvailableError:
            raise _Skip("locked") from None
        except (asyncpg.InterfaceError, OSError, asyncio.TimeoutError) as exc:
            raise _Skip(f"connection_lost:{type(exc).__name__}") from None
        except asyncpg.PostgresError as exc:
            raise _Skip(f"read_failed:{type(exc).__name__}") from None
        if self.read_t0 is None:
            self.read_t0 = t
        if before is None or after is None:  # a SELECT without FROM always returns its row
            raise _Skip("read_failed")
        if not after["same"]:
            raise _Skip("vanished" if not after["exists"] else "rewritten")
        blocks = min(end, rel.nblocks) - start
        if s.track_counts:
            fetched = int(after["fetched"] or 0) - int(before["fetched"] or 0)
            read = fetched - (int(after["hit"] or 0) - int(before["hit"] or 0))
        else:
            fetched = read = blocks
        took = self.loop.time() - t
        sm = self.summary
        sm.rows += n_rows
        sm.blocks += blocks
        sm.bytes += fetched * s.block_size
        sm.bytes_read += read * s.block_size
        sm.hashed += found.hashed
        if blocks > 0:
            rate = took / blocks
            self.seconds_per_block = rate if self.seconds_per_block == 0 else 0.5 * self.seconds_per_block + 0.5 * rate
            per = fetched * s.block_size / blocks
            self.bytes_per_block = per if self.bytes_per_block == 0 else 0.5 * self.bytes_per_block + 0.5 * per
        return found

    # -- hits ----------------------------------------------------------------------------------
    async def _hit(self, rel: Relation, found: Found, *, complete: bool) -> None:
        now = _now()
        ids = list(found.canaries)
        summaries = {r["id"]: r for r in await registry.summaries(self.rt.pool, ids[:MAX_CANARIES_LISTED])}
        created, unknown = await self._created(rel)
        columns = [rel.columns[i] for i in sorted(found.columns)]
        evidence: dict[str, Any] = {
            "signal": "copy_sweep", "object": rel.shown, "relkind": rel.relkind, "object_type": RELKINDS.get(rel.relkind),
            "owner": rel.owner, "created_at": created, "first_seen_by_sweep": rel.first_seen.isoformat(),
            "columns": columns, "matches": found.cells, "canary_count": len(ids),
            "canaries": [summaries[i]["uid"] for i in ids[:MAX_CANARIES_LISTED] if i in summaries],
            "oid": rel.oid, "scanned_to_block": rel.scanned_to, "blocks": rel.nblocks, "complete": complete,
        }
        if unknown:
            evidence["created_at_unknown"] = unknown
        event = DetectionEvent(
            kind=EventKind.EXPORTED, source=SOURCE, key=event_key("copy", self.ds.name, rel.database, rel.oid),
            group=f"copy:{self.ds.name}:{rel.database}:{rel.shown}", canary_id=ids[0], observed_at=now, detected_at=now,
            severity=Severity.CRITICAL, actor={"user": rel.owner},
            origin={"node": self.ds.node_name, "datastore": self.ds.name, "database": rel.database},
            evidence=evidence,
        )
        await self.flush_events([event])
        self.summary.hits.append({"database": rel.database, "object": rel.shown, "relkind": rel.relkind,
                                  "owner": rel.owner, "columns": columns, "matches": found.cells, "canaries": len(ids)})
        log.warning("sweep.copy_found", datastore=self.ds.name, database=rel.database, object=rel.shown,
                    owner=rel.owner, columns=columns, matches=found.cells, canaries=len(ids))

    async def _created(self, rel: Relation) -> tuple[str | None, str | None]:
        """When the object's catalog row was last written (its creation, or later DDL), if known."""
        try:
            s = await self.sessions.get(rel.database)
            row = await s.conn.fetchrow(_CREATED, rel.oid, timeout=10)
        except (_Skip, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            return None, f"lookup_failed:{type(exc).__name__}"
        if row is None:
            return None, "object_gone"
        if not row["tracked"]:
            return None, "track_commit_timestamp is off"
        if row["created"] is None:
            return None, "commit timestamp no longer available"
        return row["created"].isoformat(), None

    async def flush_events(self, events: Sequence[DetectionEvent]) -> None:
        await self.rt.submit_many(events)
        self.events.extend(events)

    async def flush(self) -> None:
        """Save relation states and the position (after the events they cover were committed)."""
        pending = list({r.key: r for r in self.pending}.values())
        self.pending = []
        gone = [r for r in pending if r.problem == "vanished"]
        live = [r for r in pending if r.dirty and r.problem != "vanished"]
        await save_states(self.rt.pool, self.ds.name, live)
        for r in live:
            r.dirty = False
        for r in gone:
            await self.rt.pool.execute("DELETE FROM sweep_relations WHERE datastore = $1 AND database = $2 AND oid = $3",
                                       self.ds.name, r.database, r.oid)
        if self.position:
            self.position["run_at"] = _now().isoformat()
            await checkpoints.save(self.rt.pool, f"{SOURCE}:{self.ds.name}", self.position)


#: skip reasons that are the sweep working as designed, not problems
_QUIET = frozenset({"armed", "detection_schema", "control_store", "not_populated", "columns_denied"})


# -- the public face ---------------------------------------------------------------------------------

class CopySweep:
    """Sweeps the configured PostgreSQL datastores for copies of canary values (see the module doc).

    :meth:`sweep_once` commits what it finds itself (each event before the position that covers it is
    saved) and returns those events; ``summaries`` holds the last run's :class:`SweepSummary` per
    datastore."""

    def __init__(self, runtime: SourceContext, *, budget: Budget | None = None, prefilter: bool = True) -> None:
        self.runtime = runtime
        self.budget = budget
        self.prefilter = prefilter
        self.summaries: list[SweepSummary] = []

    def _budget(self) -> Budget:
        return self.budget or Budget.from_config(self.runtime.config.coverage)

    async def matcher(self) -> ValueMatcher:
        """Active canaries' e-mail / phone blind indexes, and the country codes of every seeding locale."""
        cfg = self.runtime.config
        locales = [d.locale for d in cfg.datastores] + [t.locale for d in cfg.datastores for t in d.tables if t.locale]
        index = await registry.value_indexes(self.runtime.pool, KINDS)
        return ValueMatcher(self.runtime.keyring, index, codes=country_codes(locales), prefilter=self.prefilter)

    async def _control(self) -> tuple[tuple[str, str], str] | None:
        try:
            row = await self.runtime.pool.fetchrow(_SESSION_INFO)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            return None
        return ((str(row["started"]), str(row["port"])), str(row["db"])) if row else None

    async def sweep_once(self, datastore: str | None = None) -> list[DetectionEvent]:
        """One run over each configured PostgreSQL datastore (or only ``datastore``), each within the
        budget; returns the events committed."""
        self.summaries = []
        matcher = await self.matcher()
        control = await self._control()
        events: list[DetectionEvent] = []
        for ds in self.runtime.config.datastores:
            if ds.kind != "postgres" or (datastore is not None and ds.name != datastore):
                continue
            if matcher.empty:
                self.summaries.append(SweepSummary(ds.name, stopped="no_canaries"))
                continue
            run = _Run(self.runtime, ds, matcher, self._budget(), control)
            self.summaries.append(await run.run())
            events += run.events
        return events
