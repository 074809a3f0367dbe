"""Trickle canaries arriving *during* a replayed write history (bench/distinguishability.py ``--mode trickle``).

Production does not write a trickle canary into a finished table: it arrives while real customers sign
up, order and update, and real rows keep arriving after it. :func:`trickle_through` reproduces that: it
replays the history (:class:`history.Replay`, ``renumber``: real rows take their keys from the same
sequences the canaries use) up to the window's start, has the seeder schedule its sign-ups there (its
simulated clock set to that time), then alternates: real events up to the next due slot of the
schedule (``min(due_at)`` of the pending ``trickle_slots``: updates and orders of a canary appear once
it has signed up), the clock set to that time, ``seeder.trickle(now=...)``. Slots due after the
history's end are left pending (the table is dumped then); the rest of the history is written last.

:func:`trickle_window` picks the window: the last sign-ups of the table, ``1 / rate`` of them per canary.

Limits: the arrival times are drawn uniformly over the window (thinned by hour of week only), so a
long window does not follow the table's growth as the real sign-ups in it do. (The seeder opens a
connection per run, so its insert asks the free-space map where a page with room is; the replay's
real writes do so too after a lull longer than a pooled connection's idle timeout: :mod:`history`.)
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

import asyncpg
from history import Replay

from canary.seeding.postgres import PostgresSeeder


class SimClock:
    """The seeder's clock (``PostgresSeeder(clock=...)``): the simulated time, set by the driver."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass(frozen=True)
class Window:
    start: dt.datetime  # the first real sign-up of the window
    end: dt.datetime  # the history's end (its last sign-up: the dump is taken then)
    real: int  # real sign-ups in the window
    total: int  # real customers in the table
    canaries: int  # trickle canaries scheduled over it

    @property
    def over(self) -> float:
        return (self.end - self.start).total_seconds()


async def trickle_window(conn: asyncpg.Connection, share: float, rate: float) -> Window:
    """The window holding the last ``share`` of the table's sign-ups (by ``created_at``) and
    ``rate`` canaries per real sign-up in it (at least one)."""
    total = int(await conn.fetchval("SELECT count(*) FROM customers"))
    real = max(1, round(total * share))
    start = await conn.fetchval("SELECT created_at FROM customers ORDER BY created_at DESC OFFSET $1 LIMIT 1", real - 1)
    # the dump is taken after the last sign-up (later writes a generator dates in the future are replayed after it)
    end = await conn.fetchval("SELECT max(created_at) FROM customers")
    real = int(await conn.fetchval("SELECT count(*) FROM customers WHERE created_at >= $1", start))
    return Window(start, end, real, total, max(1, round(real * rate)))


@dataclass(frozen=True)
class TrickleRun:
    signups: int
    updates: int
    children: int  # rows (orders)
    calls: int  # seeder.trickle calls (one per due time)
    left: int  # slots due after the history's end (not written)
    seconds: float  # in seeder.trickle
    warnings: tuple[str, ...]  # the seeder's, each once


async def trickle_through(history: Replay, seeder: PostgresSeeder, clock: SimClock, window: Window) -> TrickleRun:
    """Replay ``history`` with ``seeder``'s trickle targets scheduled at ``window.start`` and written
    at their due times (see the module's docstring). ``seeder`` must use ``clock``. A slot the seeder
    fails to write stops the run (it would stay pending)."""
    pool = seeder.registry.pool
    await history.run_until(window.start)
    clock.now = window.start
    t0 = time.perf_counter()
    first = await seeder.trickle(schedule=True)
    spent = time.perf_counter() - t0
    signups, updates, children, calls = sum(first.signups.values()), 0, 0, 1
    warnings = dict.fromkeys(first.warnings)
    while True:
        due = await pool.fetchval("SELECT min(due_at) FROM trickle_slots WHERE state = 'pending'")
        if due is None or due > window.end:
            break
        await history.run_until(due)
        clock.now = due
        t0 = time.perf_counter()
        r = await seeder.trickle(now=due)
        spent += time.perf_counter() - t0
        calls += 1
        if r.failed:
            raise RuntimeError(f"trickle failed at {due}: {r.failed}")
        warnings |= dict.fromkeys(r.warnings)
        signups += sum(r.signups.values())
        updates += sum(r.updates.values())
        children += sum(n for t, n in r.children.items() if t.endswith("orders"))
    left = int(await pool.fetchval("SELECT count(*) FROM trickle_slots WHERE state = 'pending'"))
    await history.run_until(None)
    return TrickleRun(signups, updates, children, calls, left, spent, tuple(warnings))
