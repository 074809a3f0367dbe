"""The distinguishability bench's write-history replay (bench/history.py), which the trickle measure
stands on: a sign-up after a lull comes from a new application connection, whose insert asks the
free-space map (as the seeder's own connection does) instead of filling the page a long-lived one was
filling. With one connection for the whole history, real rows stayed in key order in the heap while
every trickle canary went where the free-space map pointed, which no production table shows."""

from __future__ import annotations

import datetime as dt
import random
import sys
from pathlib import Path

import asyncpg
from testkit import fresh_database

from canary.drills.shop import SCHEMA
from canary.store.embedded import PostgresServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from history import Replay


async def _table(dsn: str) -> asyncpg.Connection:
    """1,500 customers signing up about three hours apart over half a year, a few accounts deleted
    later (their keys are gaps: the replay inserts and deletes them, VACUUM frees their room)."""
    rng = random.Random(5)
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    rows, pk, at = [], 0, start
    for i in range(1500):
        pk += 1 if rng.random() > 0.25 else rng.randint(2, 5)
        at += dt.timedelta(seconds=rng.expovariate(1 / 10800))
        rows.append((pk, f"Customer {i}", f"c{i}@example.org", "555-0100", f"{i} Main St", "10001", at, None))
    conn = await asyncpg.connect(dsn)
    await conn.execute(SCHEMA)
    await conn.copy_records_to_table("customers", records=rows, columns=[
        "id", "full_name", "email", "phone", "address", "postal_code", "created_at", "updated_at"])
    return conn


async def _far_share(dsn: str, idle: float | None) -> tuple[float, int]:
    """Share of the last half of the sign-ups whose heap block is out of key order (more than one
    block from where the keys before and after it sit), and the transactions on a new connection."""
    conn = await _table(dsn)
    try:
        async with Replay(conn, chunks=6, idle=idle) as history:
            await history.run_until(None)
        rows = await conn.fetch("SELECT id, (ctid::text::point)[0]::int AS block FROM customers ORDER BY id")
    finally:
        await conn.close()
    blocks = [r["block"] for r in rows]
    half = range(len(blocks) // 2, len(blocks) - 1)
    out = sum(1 for i in half if blocks[i] < min(blocks[i - 1], blocks[i + 1]) - 1)
    return out / len(half), int(history.stats()["fresh"])


async def test_a_signup_after_a_lull_asks_the_free_space_map(pg_server: PostgresServer) -> None:
    async with fresh_database(pg_server, "hist") as dsn:
        one, none_fresh = await _far_share(dsn, None)
    async with fresh_database(pg_server, "hist") as dsn:
        pooled, fresh = await _far_share(dsn, 600.0)
    assert none_fresh == 0
    assert fresh > 1000  # sign-ups three hours apart: nearly every one on a new connection
    # one long-lived connection keeps filling its page: almost no row sits back in the heap
    assert one < 0.01
    # new connections fill the room VACUUM found in old pages, one row here and there
    assert pooled > one + 0.02
