"""Which rows of a copy hold canary data, so the copy can be enrolled (``canary coverage enroll``).

The copy sweep (:mod:`canary.health.sweep`) says *that* ``analytics.customers_2025`` holds canary
values; enrolling it in the tripwire needs *which rows*, by a key column the tripwire can test. This
module reads the copy once (TID ranges, the sweep's session settings, registered as canary's own
session), matches every text cell by blind index, and returns key -> canary for the rows that hold a
canary's e-mail or phone. It refuses a key that would be unsafe:

* a column holding the canary values themselves (the key travels in detection lines and events; a
  contact value must not);
* a key that a row without canary data shares with a canary row (that real row would page);
* a canary row whose key is NULL (it could not be tripwired).

Values are never put in SQL text or logs; keys of canary rows are returned to the caller only.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from canary.config import DatastoreConfig
from canary.errors import DatastoreError
from canary.health.sweep import FETCH_ROWS, MAX_CELL, SESSION_SETTINGS
from canary.health.valuematch import ValueMatcher
from canary.postgres.sql import ident, parse_target, qualified
from canary.store import sessions
from canary.typing import SourceContext

RANGE_BLOCKS = 2048
CONNECT_TIMEOUT = 10.0

_COLUMNS = """
SELECT a.attname::text AS name,
       (t.typcategory = 'S' OR e.typcategory = 'S'
        OR t.oid IN ('pg_catalog.json'::pg_catalog.regtype, 'pg_catalog.jsonb'::pg_catalog.regtype)
        OR t.typbasetype IN ('pg_catalog.json'::pg_catalog.regtype, 'pg_catalog.jsonb'::pg_catalog.regtype)
        OR e.oid IN ('pg_catalog.json'::pg_catalog.regtype, 'pg_catalog.jsonb'::pg_catalog.regtype)) AS textual
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_type e ON t.typcategory = 'A' AND e.oid = t.typelem
WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


async def _read(conn: asyncpg.Connection, select: str, schema: str, name: str, nblocks: int,
                size: int) -> AsyncIterator[list[asyncpg.Record]]:
    """``select`` over the whole relation, in TID ranges of RANGE_BLOCKS (each its own read-only
    transaction), fetched ``size`` rows at a time."""
    for start in range(0, nblocks + 1, RANGE_BLOCKS):
        sql = (f"SELECT {select} FROM ONLY {qualified(schema, name)} WHERE ctid >= '({start},0)'::pg_catalog.tid"
               f" AND ctid < '({start + RANGE_BLOCKS},0)'::pg_catalog.tid")
        async with conn.transaction(readonly=True):
            cursor = await conn.cursor(sql)
            while batch := await cursor.fetch(size):
                yield batch


def _collect(batch: list[asyncpg.Record], text_cols: list[str], matcher: ValueMatcher, members: dict[str, int],
             matched_cols: set[str]) -> int:
    """Add the batch's canary rows (key in column 0) to ``members``; returns how many had no key."""
    nulls = 0
    for row in batch:
        hits: list[int] = []
        for i, text in enumerate(row[1:]):
            if text is not None:
                found = matcher.match(text)
                if found:
                    matched_cols.add(text_cols[i])
                    hits += [cid for cid, _ in found]
        if hits:
            if row[0] is None:
                nulls += 1
            else:
                members[row[0]] = hits[0]
    return nulls


@dataclass(frozen=True, slots=True)
class CopyRows:
    """The canary rows of one copy: key text -> canary id (secret: which rows), and where they matched."""

    target: str
    key: str
    members: dict[str, int]
    columns: tuple[str, ...]  # the columns that held canary values
    rows: int  # rows read


async def copy_rows(runtime: SourceContext, ds: DatastoreConfig, target: str, key: str,
                    matcher: ValueMatcher) -> CopyRows:
    """Read the copy ``target`` (in the datastore's own database) and find its canary rows by ``key``.
    Raises :class:`DatastoreError` with a clear reason when the copy cannot be read or the key is unsafe."""
    schema, name = parse_target(target)
    target = f"{schema}.{name}"
    try:
        conn = await asyncpg.connect(ds.dsn.reveal(), timeout=CONNECT_TIMEOUT, statement_cache_size=0,
                                     server_settings=dict(SESSION_SETTINGS))
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatastoreError(f"cannot connect to datastore {ds.name!r}: {type(exc).__name__}") from None
    own = None
    try:
        own = await sessions.open_session(runtime.pool, ds.name, conn, "enroll")
        cols = await conn.fetch(_COLUMNS, target)
        if not cols:
            raise DatastoreError(f"{target} does not exist in the datastore's database")
        names = [c["name"] for c in cols]
        if key not in names:
            raise DatastoreError(f"{target} has no column {key!r}")
        text_cols = [c["name"] for c in cols if c["textual"]]
        nblocks = int(await conn.fetchval("SELECT pg_catalog.pg_relation_size(pg_catalog.to_regclass($1))"
                                          " / pg_catalog.current_setting('block_size')::bigint", target))
        members: dict[str, int] = {}
        matched_cols: set[str] = set()
        nulls = rows = 0
        select = ", ".join([f"{ident(key)}::pg_catalog.text",
                            *(f"pg_catalog.left({ident(c)}::pg_catalog.text, {MAX_CELL})" for c in text_cols)])
        async for batch in _read(conn, select, schema, name, nblocks, FETCH_ROWS):
            rows += len(batch)
            nulls += _collect(batch, text_cols, matcher, members, matched_cols)
        # second pass, the key column only: does any other row share a canary row's key?
        keys: Counter[str] = Counter()
        async for batch in _read(conn, f"{ident(key)}::pg_catalog.text", schema, name, nblocks, FETCH_ROWS * 16):
            keys.update(r[0] for r in batch if r[0] in members)
    except asyncpg.PostgresError as exc:
        raise DatastoreError(f"{target}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    finally:
        await conn.close()
        if own is not None:
            await sessions.close_session(runtime.pool, own)
    if key in matched_cols:
        raise DatastoreError(f"{target}: column {key!r} holds canary contact values; key the tripwire on another column "
                             "(the original table's primary key, copied)")
    if nulls:
        raise DatastoreError(f"{target}: {nulls} canary row(s) have no {key!r}; key the tripwire on a column every row has")
    shared = sum(1 for k in members if keys[k] > 1)
    if shared:
        raise DatastoreError(f"{target}: {shared} canary row key(s) in {key!r} are shared with other rows, which would "
                             "page on real data; key the tripwire on a column that identifies rows")
    return CopyRows(target, key, members, tuple(sorted(matched_cols)), rows)
