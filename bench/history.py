"""Give a bulk-loaded ``customers`` / ``orders`` table the physical history a production table has.

A generator COPYs its rows in one transaction: every row then shares one ``xmin`` and sits in key
order in the heap, which no production table does. :func:`replay` rewrites the table as it would have
been written: each signup, order and later update in its own transaction in time order (a legacy
import in one), accounts deleted (the key gaps) inserted and deleted later, the tables vacuumed from
time to time so that later rows reuse freed space. Inserting an order locks its customer (FOR KEY
SHARE), which leaves ``xmax`` set as in production. The values of the rows do not change.

It runs in a PL/pgSQL procedure that commits after each event (``synchronous_commit`` off), about
15,000 events a second.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections import Counter

import asyncpg

_PROCEDURE = """
CREATE PROCEDURE bench_replay(lo int, hi int) LANGUAGE plpgsql AS $$
DECLARE
    e record;
    cur int := -1;
BEGIN
    FOR e IN SELECT * FROM bench_ev WHERE seq >= lo AND seq < hi ORDER BY seq LOOP
        IF e.txn <> cur THEN
            IF cur <> -1 THEN
                COMMIT;
            END IF;
            cur := e.txn;
        END IF;
        IF e.kind = 'c' THEN
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
                 chunks: int = 8, seed: int = 3) -> dict[str, float]:
    """Rewrite ``customers`` and ``orders`` (the ``canary.shop`` schema) in the order their rows were
    written: customers with ``id <= bulk_upto`` in one transaction at ``bulk_at``, everyone else at
    ``created_at``, updates (``updated_at`` later than the insert) and orders at their times, one
    transaction each (updates sharing one exact time in one), key gaps of up to 4 as accounts inserted
    and deleted later. VACUUM after each of ``chunks`` parts. Returns counts and seconds."""
    t0 = time.perf_counter()
    rng = random.Random(seed)
    customers = await conn.fetch("SELECT id, created_at, updated_at FROM customers ORDER BY id")
    orders = await conn.fetch("SELECT id, customer_id, ordered_at FROM orders ORDER BY id")
    events: list[tuple[dt.datetime, int, int, str, int, bool, str]] = []  # at, priority, order, kind, ref, flag, txn key
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
        events.append((at, 1, pk, "c", pk, flag, "bulk" if bulk else f"c{pk}"))
        if updated is not None and not flag:
            key = f"u@{updated.isoformat()}" if update_times[updated] >= 20 else f"u{pk}"
            events.append((updated, 2, pk, "u", pk, False, key))
        if prev is not None and not bulk and 1 < pk - int(prev["id"]) <= 5:  # deleted accounts / rolled-back signups
            base = inserted[int(prev["id"])]
            span = max((at - base).total_seconds(), 0.002)
            for gap_id in range(int(prev["id"]) + 1, pk):
                born = base + dt.timedelta(seconds=span * rng.random())
                events.append((born, 0, gap_id, "x", gap_id, False, f"x{gap_id}"))
                gone = born + dt.timedelta(seconds=rng.lognormvariate(13.0, 2.0))
                events.append((gone, 4, gap_id, "d", gap_id, False, f"d{gap_id}"))
        prev = r
    for o in orders:
        at = max(o["ordered_at"], inserted[int(o["customer_id"])] + dt.timedelta(microseconds=1))
        events.append((at, 3, int(o["id"]), "o", int(o["id"]), False, f"o{o['id']}"))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    txn, last_key, records = -1, None, []
    for seq, (at, _, _, kind, ref, flag, key) in enumerate(events):
        if key != last_key:
            txn, last_key = txn + 1, key
        records.append((seq, txn, kind, ref, flag, at))
    await conn.execute("SET synchronous_commit = off")
    await conn.execute(
        "CREATE TEMP TABLE bench_hc AS SELECT * FROM customers; ALTER TABLE bench_hc ADD PRIMARY KEY (id);"
        "CREATE TEMP TABLE bench_ho AS SELECT * FROM orders; ALTER TABLE bench_ho ADD PRIMARY KEY (id);"
        "CREATE TEMP TABLE bench_ev (seq int PRIMARY KEY, txn int, kind text, ref bigint, flag bool, at timestamptz)"
    )
    await conn.copy_records_to_table("bench_ev", records=records, columns=["seq", "txn", "kind", "ref", "flag", "at"])
    await conn.execute("TRUNCATE orders, customers")
    await conn.execute("ALTER TABLE customers SET (autovacuum_enabled = off); ALTER TABLE orders SET (autovacuum_enabled = off)")
    await conn.execute(_PROCEDURE)
    try:
        step = len(records) // chunks + 1
        for lo in range(0, len(records), step):
            await conn.execute(f"CALL bench_replay({lo}, {lo + step})")
            await conn.execute("VACUUM customers, orders")
    finally:
        await conn.execute("DROP PROCEDURE bench_replay(int, int); DROP TABLE bench_hc, bench_ho, bench_ev")
        await conn.execute("ALTER TABLE customers RESET (autovacuum_enabled); ALTER TABLE orders RESET (autovacuum_enabled)")
        await conn.execute("RESET synchronous_commit")
    await conn.execute("ANALYZE customers; ANALYZE orders")
    return {"events": len(records), "transactions": txn + 1, "seconds": time.perf_counter() - t0}
