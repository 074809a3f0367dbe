"""Give a bulk-loaded ``customers`` / ``orders`` table the physical history a production table has.

A generator COPYs its rows in one transaction: every row then shares one ``xmin`` and sits in key
order in the heap, which no production table does. :func:`replay` rewrites the table as it would have
been written: each signup, order and later update in its own transaction in time order (a legacy
import in one), accounts deleted (the key gaps) inserted and deleted later, the tables vacuumed from
time to time so that later rows reuse freed space. Inserting an order locks its customer (FOR KEY
SHARE), which leaves ``xmax`` set as in production. The values of the rows do not change.

Which page a row lands in depends on the connection that writes it: a backend keeps filling the page
it last inserted into, and only a backend without one (new, or its page full, or after VACUUM) asks
the free-space map, which points at the room VACUUM found in old pages. An application does not write
years of sign-ups through one backend: a pooled connection idle longer than ``idle`` (10 minutes:
HikariCP's default idle timeout) is closed, so a write after a longer lull comes from a new backend.
The replay gives such a transaction a new backend's state (it invalidates the tables' cached state
with a no-op ``ALTER TABLE ... SET (autovacuum_enabled = off)``, which the exit resets anyway).

It runs in a PL/pgSQL procedure that commits after each event (``synchronous_commit`` off), about
15,000 events a second. :class:`Replay` runs the same history in steps (``run_until``), so that another
writer (a trickle seeder) can write between them; with ``renumber`` the rows take their keys from the
tables' sequences as the application's inserts would, so that writer's rows get the keys they would
have had in production.
"""

from __future__ import annotations

import bisect
import datetime as dt
import random
import time
from collections import Counter
from typing import Self

import asyncpg

_PROCEDURE = """
CREATE PROCEDURE bench_replay(lo int, hi int) LANGUAGE plpgsql AS $$
DECLARE
    e record;
    cur int := -1;
    nid bigint;
BEGIN
    FOR e IN SELECT * FROM bench_ev WHERE seq >= lo AND seq < hi ORDER BY seq LOOP
        IF e.txn <> cur THEN
            IF cur <> -1 THEN
                COMMIT;
            END IF;
            cur := e.txn;
        END IF;
        -- the first write of a new application connection to this table: no page cached for its inserts
        IF e.fresh = 'customers' THEN
            ALTER TABLE customers SET (autovacuum_enabled = off);
        ELSIF e.fresh = 'orders' THEN
            ALTER TABLE orders SET (autovacuum_enabled = off);
        END IF;
        IF {renumber} THEN  -- keys from the sequences, as the application takes them (bench_map: generator id -> key)
            IF e.skip > 0 THEN  -- values taken by inserts rolled back (or rows purged) before this one
                PERFORM nextval(CASE WHEN e.kind = 'o' THEN '{oseq}' ELSE '{cseq}' END::regclass) FROM generate_series(1, e.skip);
            END IF;
            IF e.kind = 'c' THEN
                INSERT INTO customers (full_name, email, phone, address, postal_code, created_at, updated_at)
                SELECT full_name, email, phone, address, postal_code, created_at, CASE WHEN e.flag THEN updated_at END
                FROM bench_hc WHERE id = e.ref RETURNING id INTO nid;
                INSERT INTO bench_map VALUES (e.ref, nid);
            ELSIF e.kind = 'u' THEN
                UPDATE customers SET updated_at = (SELECT updated_at FROM bench_hc WHERE id = e.ref)
                WHERE id = (SELECT new FROM bench_map WHERE old = e.ref);
            ELSIF e.kind = 'o' THEN
                INSERT INTO orders (customer_id, ordered_at, total, status, ship_to)
                SELECT m.new, o.ordered_at, o.total, o.status, o.ship_to
                FROM bench_ho o JOIN bench_map m ON m.old = o.customer_id WHERE o.id = e.ref;
            ELSIF e.kind = 'x' THEN
                INSERT INTO customers (full_name, email, created_at)
                VALUES ('deleted', 'deleted-' || e.ref || '@deleted.invalid', e.at) RETURNING id INTO nid;
                INSERT INTO bench_map VALUES (e.ref, nid);
            ELSIF e.kind = 'd' THEN
                DELETE FROM customers WHERE id = (SELECT new FROM bench_map WHERE old = e.ref);
            END IF;
        ELSIF e.kind = 'c' THEN
            INSERT INTO customers SELECT id, full_name, email, phone, address, postal_code, created_at,
                                         CASE WHEN e.flag THEN updated_at END
                                  FROM bench_hc WHERE id = e.ref;
        ELSIF e.kind = 'u' THEN
            UPDATE customers SET updated_at = (SELECT updated_at FROM bench_hc WHERE id = e.ref) WHERE id = e.ref;
        ELSIF e.kind = 'o' THEN
            INSERT INTO orders SELECT * FROM bench_ho WHERE id = e.ref;
        ELSIF e.kind = 'x' THEN
            INSERT INTO customers (id, full_name, email, created_at)
            VALUES (e.ref, 'deleted', 'deleted-' || e.ref || '@deleted.invalid', e.at);
        ELSIF e.kind = 'd' THEN
            DELETE FROM customers WHERE id = e.ref;
        END IF;
    END LOOP;
    COMMIT;
END $$
"""

#: seconds an idle application connection lives (HikariCP's default idle timeout; pgbouncer's
#: server_idle_timeout is the same order): a write after a longer lull comes from a new backend
IDLE = 600.0

# events of one instant sort: inserts of customers, then their updates, orders, deletions
_PRIORITY = {"x": 0, "c": 1, "u": 2, "o": 3, "d": 4}


async def bulk_hint(conn: asyncpg.Connection, sql: str | None) -> tuple[int | None, dt.datetime | None]:
    """(last id, time) of the rows a generator loaded in one bulk transaction, from its ``sql`` (a query
    returning those two), or (None, None)."""
    if sql is None:
        return None, None
    row = await conn.fetchrow(sql)
    return (int(row[0]), row[1]) if row is not None and row[0] is not None else (None, None)


async def replay(conn: asyncpg.Connection, *, bulk_upto: int | None = None, bulk_at: dt.datetime | None = None,
                 chunks: int = 8, seed: int = 3, idle: float | None = IDLE) -> dict[str, float]:
    """Rewrite ``customers`` and ``orders`` (the ``canary.shop`` schema) in the order their rows were
    written: customers with ``id <= bulk_upto`` in one transaction at ``bulk_at``, everyone else at
    ``created_at``, updates (``updated_at`` later than the insert) and orders at their times, one
    transaction each (updates sharing one exact time in one), key gaps of up to 4 as accounts inserted
    and deleted later. VACUUM after each of ``chunks`` parts. Returns counts and seconds."""
    async with Replay(conn, bulk_upto=bulk_upto, bulk_at=bulk_at, chunks=chunks, seed=seed, idle=idle) as history:
        await history.run_until(None)
    return history.stats()


class Replay:
    """A write history replayed in steps: ``run_until(t)`` writes every event up to ``t`` (something
    else, a trickle seeder, may write between steps), ``run_until(None)`` the rest; VACUUM wherever
    the history crosses one of ``chunks`` equal parts, whatever the steps. Used as an async context
    manager (the table is empty after entry; the helpers are dropped and the tables analysed on exit).

    With ``renumber``, rows take their keys from the tables' sequences when written, as the
    application's inserts do (the generator's ids are mapped to them in ``bench_map``, orders follow
    their customer's key): another writer taking values from the same sequences between steps then
    gets the keys the application would have given it. Gaps in the generator's ids are kept: deleted
    accounts (as without ``renumber``) and, for other gaps, sequence values taken before the next
    insert. Without it every row keeps its generator id (:func:`replay`)."""

    def __init__(self, conn: asyncpg.Connection, *, bulk_upto: int | None = None, bulk_at: dt.datetime | None = None,
                 chunks: int = 8, seed: int = 3, renumber: bool = False, idle: float | None = IDLE) -> None:
        self.conn = conn
        self.idle = idle
        self.fresh = 0  # transactions opened on a new connection
        self.bulk_upto, self.bulk_at = bulk_upto, bulk_at
        self.chunks, self.seed, self.renumber = chunks, seed, renumber
        self.times: list[dt.datetime] = []  # of the events, in replay order
        self.pos = 0  # events written
        self.step = 1  # events per chunk
        self.transactions = 0
        self.t0 = time.perf_counter()

    def stats(self) -> dict[str, float]:
        return {"events": len(self.times), "transactions": self.transactions, "fresh": self.fresh,
                "seconds": time.perf_counter() - self.t0}

    @property
    def end(self) -> dt.datetime | None:
        """The last event's time."""
        return self.times[-1] if self.times else None

    async def _events(self) -> list[tuple[int, int, str, int, bool, dt.datetime, int, str | None]]:
        """(seq, txn, kind, ref, flag, at, skip, fresh) of every write, in time order; ``fresh`` names the
        table a new connection writes for the first time."""
        conn, bulk_upto, bulk_at = self.conn, self.bulk_upto, self.bulk_at
        rng = random.Random(self.seed)
        customers = await conn.fetch("SELECT id, created_at, updated_at FROM customers ORDER BY id")
        orders = await conn.fetch("SELECT id, customer_id, ordered_at FROM orders ORDER BY id")
        # at, priority, order, kind, ref, flag, txn key, skip
        events: list[tuple[dt.datetime, int, int, str, int, bool, str, int]] = []
        inserted: dict[int, dt.datetime] = {}
        update_times = Counter(r["updated_at"] for r in customers if r["updated_at"] is not None)
        prev: asyncpg.Record | None = None
        for r in customers:
            pk, created, updated = int(r["id"]), r["created_at"], r["updated_at"]
            bulk = bulk_upto is not None and bulk_at is not None and pk <= bulk_upto
            at = bulk_at if bulk else created
            assert at is not None
            inserted[pk] = at
            # the insert writes updated_at when the row's final value is its insert time (or before it)
            flag = updated is not None and (updated <= at or updated == created)
            deleted = prev is not None and not bulk and 1 < pk - int(prev["id"]) <= 5  # deleted accounts / rolled-back signups
            skip = 0 if deleted or not self.renumber or prev is None else pk - int(prev["id"]) - 1
            events.append((at, 1, pk, "c", pk, flag, "bulk" if bulk else f"c{pk}", skip))
            if updated is not None and not flag:
                key = f"u@{updated.isoformat()}" if update_times[updated] >= 20 else f"u{pk}"
                events.append((updated, 2, pk, "u", pk, False, key, 0))
            if prev is not None and deleted:
                base = inserted[int(prev["id"])]
                span = max((at - base).total_seconds(), 0.002)
                for gap_id in range(int(prev["id"]) + 1, pk):
                    born = base + dt.timedelta(seconds=span * rng.random())
                    events.append((born, 0, gap_id, "x", gap_id, False, f"x{gap_id}", 0))
                    gone = born + dt.timedelta(seconds=rng.lognormvariate(13.0, 2.0))
                    events.append((gone, 4, gap_id, "d", gap_id, False, f"d{gap_id}", 0))
            prev = r
        prev_order: int | None = None
        for o in orders:
            at = max(o["ordered_at"], inserted[int(o["customer_id"])] + dt.timedelta(microseconds=1))
            oid = int(o["id"])
            skip = oid - prev_order - 1 if self.renumber and prev_order is not None else 0
            events.append((at, 3, oid, "o", oid, False, f"o{oid}", skip))
            prev_order = oid
        events.sort(key=lambda e: (e[0], e[1], e[2]))
        txn, last_key, records = -1, None, []
        last_at: dt.datetime | None = None
        uncached: set[str] = set()  # tables the current connection has not written yet (it has no page of theirs)
        for seq, (at, _, _, kind, ref, flag, key, skip) in enumerate(events):
            if key != last_key:
                txn, last_key = txn + 1, key
                # the application's connection idled out since its last write: this one comes from a new one
                if self.idle is not None and last_at is not None and (at - last_at).total_seconds() > self.idle:
                    self.fresh += 1
                    uncached = {"customers", "orders"}
            table = "orders" if kind == "o" else None if kind == "d" else "customers"  # a delete asks for no page
            fresh = table if table in uncached else None
            uncached.discard(table or "")
            records.append((seq, txn, kind, ref, flag, at, skip, fresh))
            last_at = at
        self.transactions = txn + 1
        return records

    async def __aenter__(self) -> Self:
        conn = self.conn
        records = await self._events()
        self.times = [r[5] for r in records]
        first_c = await conn.fetchval("SELECT min(id) FROM customers")
        first_o = await conn.fetchval("SELECT min(id) FROM orders")
        cseq = await conn.fetchval("SELECT pg_get_serial_sequence('customers', 'id')")
        oseq = await conn.fetchval("SELECT pg_get_serial_sequence('orders', 'id')")
        await conn.execute("SET synchronous_commit = off")
        await conn.execute(
            "CREATE TEMP TABLE bench_hc AS SELECT * FROM customers; ALTER TABLE bench_hc ADD PRIMARY KEY (id);"
            "CREATE TEMP TABLE bench_ho AS SELECT * FROM orders; ALTER TABLE bench_ho ADD PRIMARY KEY (id);"
            "CREATE TEMP TABLE bench_ev (seq int PRIMARY KEY, txn int, kind text, ref bigint, flag bool, at timestamptz, skip int, fresh text);"
            "CREATE TEMP TABLE bench_map (old bigint PRIMARY KEY, new bigint)"
        )
        await conn.copy_records_to_table("bench_ev", records=records, columns=["seq", "txn", "kind", "ref", "flag", "at", "skip", "fresh"])
        await conn.execute("TRUNCATE orders, customers")
        if self.renumber:  # the sequences start where the generator's ids did
            for seq, first in ((cseq, first_c), (oseq, first_o)):
                if seq is not None and first is not None:
                    await conn.execute("SELECT setval($1::regclass, $2, false)", seq, int(first))
        await conn.execute("ALTER TABLE customers SET (autovacuum_enabled = off); ALTER TABLE orders SET (autovacuum_enabled = off)")
        await conn.execute(_PROCEDURE.format(renumber="true" if self.renumber else "false", cseq=cseq, oseq=oseq))
        self.step = len(records) // self.chunks + 1
        return self

    async def run_until(self, at: dt.datetime | None) -> None:
        """Write every event up to ``at`` (inclusive; None: to the end), vacuuming at the chunk bounds."""
        hi = len(self.times) if at is None else bisect.bisect_right(self.times, at)
        while self.pos < hi:
            bound = (self.pos // self.step + 1) * self.step
            upto = min(hi, bound, len(self.times))
            await self.conn.execute(f"CALL bench_replay({self.pos}, {upto})")
            self.pos = upto
            if upto == bound or upto == len(self.times):
                await self.conn.execute("VACUUM customers, orders")

    async def __aexit__(self, *exc: object) -> None:
        conn = self.conn
        try:
            await conn.execute("DROP PROCEDURE bench_replay(int, int); DROP TABLE bench_hc, bench_ho, bench_ev, bench_map")
            await conn.execute("ALTER TABLE customers RESET (autovacuum_enabled); ALTER TABLE orders RESET (autovacuum_enabled)")
            await conn.execute("RESET synchronous_commit")
        finally:
            if exc[0] is None:
                await conn.execute("ANALYZE customers; ANALYZE orders")
