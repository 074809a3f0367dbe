"""Trickle seeding: canaries that arrive over days as new sign-ups would.

A backdated run writes all of a table's canaries at once, between real rows and with past dates; what
it leaves in the system columns (one transaction id, the heap's end, no later updates) is listed by
``canary plan``. A target with ``mode = "trickle"`` instead gets a *schedule*: ``count`` sign-up times
spread over ``trickle_over``, drawn from the hours of the week the table's own customers sign up at.
The listener's scheduler writes each one when due, in its own small transaction, with a key from the
table's sequence and the creation time of that transaction, as the application would. Real customers'
rows change later (``updated_at`` moves, their ``xmin`` moves on): each canary gets later updates drawn
from the real rows' (updated - created) gaps, in the share of real rows that have one.

The schedule lives in the control store (``trickle_slots``, owned by this module). A slot is
``pending`` until its work is recorded, ``inflight`` from the control-store commit until the datastore
commit is known, then ``done`` (or ``dropped``: an update of a row someone else changed). A run that
dies in between leaves ``inflight`` slots; the next run settles them by looking at the datastore: the
row is there (done) or not (its registry entries are withdrawn and the slot is pending again). So runs
can be interrupted and resumed without duplicates or orphans.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg

from canary.crypto import Keyring
from canary.seeding.synth.shapes import quantile

#: purpose of the encrypted sign-up payloads (rows made at scheduling; re-encrypted by key rotation)
PAYLOAD = "trickle:payload"
#: hours in a week: sign-up times follow the table's own hour-of-week profile
WEEK_HOURS = 168
#: a gap shorter than this between created and updated is the insert itself, not a later update
SAME_WRITE = 1.0


@dataclass(frozen=True, slots=True)
class Slot:
    datastore: str
    target: str
    slot: int
    kind: str  # signup | update | child
    due_at: dt.datetime
    state: str
    canary_id: int | None
    deployment_id: int | None
    fingerprint: bytes | None
    part: int | None = None  # child: the group of the deployment manifest's ``later`` rows
    payload: bytes | None = None  # signup: its row, made when scheduled (encrypted JSON, :data:`PAYLOAD`)


@dataclass(frozen=True, slots=True)
class TrickleResult:
    datastore: str
    signups: dict[str, int]  # target -> canaries written this run
    updates: dict[str, int]  # target -> canary rows updated this run
    children: dict[str, int]  # table -> rows written for canaries this run (orders, their lines)
    settled: int  # inflight slots of an interrupted run settled
    pending: dict[str, int]  # target -> slots still to come
    next_due: dt.datetime | None
    warnings: Sequence[str] = ()
    failed: dict[str, str] = field(default_factory=dict)  # target -> why its due slot was not written (retried next run)


def hour_of_week(when: dt.datetime) -> int:
    return when.weekday() * 24 + when.hour


def week_profile(epochs: Sequence[float]) -> list[float]:
    """Sign-ups per hour of the week (UTC) among the real rows, smoothed with one more in every hour
    (an hour nobody signed up in the sample is rare, not impossible)."""
    counts = [1.0] * WEEK_HOURS
    for e in epochs:
        counts[hour_of_week(dt.datetime.fromtimestamp(e, dt.timezone.utc))] += 1.0
    return counts


def arrival_times(rng: random.Random, start: dt.datetime, over: float, n: int, epochs: Sequence[float]) -> list[dt.datetime]:
    """``n`` sign-up times in ``[start, start + over)``, sorted: uniform in time, thinned by the real
    rows' hour-of-week profile (rejection sampling against its busiest hour)."""
    weights = week_profile(epochs)
    top = max(weights)
    out: list[dt.datetime] = []
    while len(out) < n:
        t = start + dt.timedelta(seconds=rng.random() * over)
        if rng.random() * top < weights[hour_of_week(t)]:
            out.append(t)
    return sorted(out)


@dataclass(frozen=True, slots=True)
class UpdateHabit:
    """How real rows of a table change after their insert: the share with a later update and its delays."""

    share: float
    delays: tuple[float, ...]  # sorted seconds (updated - created) of the rows updated later
    initial_null: bool  # rows not updated yet show NULL (else: updated = created)

    @classmethod
    def of(cls, gaps: Sequence[float], nulls: int) -> UpdateHabit:
        later = sorted(g for g in gaps if g > SAME_WRITE)
        seen = len(gaps) + nulls
        same = len(gaps) - len(later)
        return cls(len(later) / seen if seen else 0.0, tuple(later), nulls > same)

    def delay(self, rng: random.Random) -> float | None:
        """Seconds after sign-up of this canary's update, or None (not updated, like most rows?)."""
        if not self.delays or rng.random() >= self.share:
            return None
        return max(SAME_WRITE * 2, quantile(self.delays, rng))


# -- the schedule in the control store (this module owns trickle_slots) -------------------------------
_COLUMNS = "datastore, target, slot, kind, due_at, state, canary_id, deployment_id, fingerprint, part, payload"


def _slot(r: asyncpg.Record) -> Slot:
    return Slot(r["datastore"], r["target"], r["slot"], r["kind"], r["due_at"], r["state"], r["canary_id"],
                r["deployment_id"], None if r["fingerprint"] is None else bytes(r["fingerprint"]), r["part"],
                None if r["payload"] is None else bytes(r["payload"]))


async def signups_planned(db: asyncpg.Pool | asyncpg.Connection, datastore: str, target: str) -> int:
    return int(await db.fetchval(
        "SELECT count(*) FROM trickle_slots WHERE datastore = $1 AND target = $2 AND kind = 'signup'", datastore, target))


async def add_signups(pool: asyncpg.Pool, datastore: str, target: str, times: Sequence[dt.datetime],
                      payloads: Sequence[bytes | None] | None = None) -> None:
    """Append sign-up slots (numbered after the target's last slot), each with its prepared row."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"trickle:{datastore}:{target}")
        last = await conn.fetchval("SELECT coalesce(max(slot), 0) FROM trickle_slots WHERE datastore = $1 AND target = $2",
                                   datastore, target)
        rows = payloads if payloads is not None else [None] * len(times)
        await conn.executemany(
            "INSERT INTO trickle_slots (datastore, target, slot, kind, due_at, payload) VALUES ($1, $2, $3, 'signup', $4, $5)",
            [(datastore, target, last + i + 1, t, p) for i, (t, p) in enumerate(zip(times, rows))])


async def add_later(conn: asyncpg.Connection, datastore: str, target: str, canary_id: int, deployment_id: int | None,
                    work: Sequence[tuple[str, dt.datetime, int | None]]) -> None:
    """Slots for a canary's later work: (kind 'update' | 'child', due, part) each."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"trickle:{datastore}:{target}")
    last = await conn.fetchval("SELECT coalesce(max(slot), 0) FROM trickle_slots WHERE datastore = $1 AND target = $2",
                               datastore, target)
    await conn.executemany(
        "INSERT INTO trickle_slots (datastore, target, slot, kind, due_at, canary_id, deployment_id, part)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [(datastore, target, last + i + 1, kind, due, canary_id, deployment_id, part) for i, (kind, due, part) in enumerate(work)])


async def slots(db: asyncpg.Pool | asyncpg.Connection, datastore: str, *, states: Sequence[str], due_by: dt.datetime | None = None,
                target: str | None = None) -> list[Slot]:
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM trickle_slots WHERE datastore = $1 AND state = ANY($2::text[])"
        " AND ($3::timestamptz IS NULL OR due_at <= $3) AND ($4::text IS NULL OR target = $4) ORDER BY due_at, slot",
        datastore, list(states), due_by, target)
    return [_slot(r) for r in rows]


async def pending_counts(db: asyncpg.Pool | asyncpg.Connection, datastore: str) -> tuple[dict[str, int], dt.datetime | None]:
    rows = await db.fetch(
        "SELECT target, count(*) AS n, min(due_at) AS next FROM trickle_slots"
        " WHERE datastore = $1 AND state IN ('pending', 'inflight') GROUP BY target", datastore)
    nexts = [r["next"] for r in rows if r["next"] is not None]
    return {r["target"]: int(r["n"]) for r in rows}, (min(nexts) if nexts else None)


async def mark_inflight(conn: asyncpg.Connection, s: Slot, *, deployment_id: int | None = None,
                        fingerprint: bytes | None = None) -> None:
    await conn.execute(
        "UPDATE trickle_slots SET state = 'inflight', deployment_id = coalesce($4, deployment_id), fingerprint = $5"
        " WHERE datastore = $1 AND target = $2 AND slot = $3", s.datastore, s.target, s.slot, deployment_id, fingerprint)


async def mark(conn: asyncpg.Connection | asyncpg.Pool, s: Slot, state: str, *, canary_id: int | None = None) -> None:
    """Settle a slot: ``done`` / ``dropped`` (with the canary it wrote), or ``pending`` again."""
    await conn.execute(
        "UPDATE trickle_slots SET state = $4, canary_id = coalesce($5, canary_id),"
        " done_at = CASE WHEN $4 = 'pending' THEN NULL ELSE now() END,"
        " deployment_id = CASE WHEN $4 = 'pending' AND kind = 'signup' THEN NULL ELSE deployment_id END,"
        " fingerprint = CASE WHEN $4 = 'pending' THEN NULL ELSE fingerprint END"
        " WHERE datastore = $1 AND target = $2 AND slot = $3", s.datastore, s.target, s.slot, state, canary_id)


async def pending_fingerprints(db: asyncpg.Pool | asyncpg.Connection, datastore: str) -> dict[int, bytes]:
    """canary id -> the fingerprint its row has once an inflight update is committed (verify accepts
    either while the update is settling)."""
    rows = await db.fetch(
        "SELECT canary_id, fingerprint FROM trickle_slots WHERE datastore = $1 AND kind = 'update' AND state = 'inflight'"
        " AND fingerprint IS NOT NULL AND canary_id IS NOT NULL", datastore)
    return {r["canary_id"]: bytes(r["fingerprint"]) for r in rows}


async def summary(db: asyncpg.Pool | asyncpg.Connection) -> list[asyncpg.Record]:
    """Per datastore and target: sign-ups written / to come, later updates and rows to come, the next
    due time and the slots an interrupted run left inflight (``canary status``)."""
    return list(await db.fetch(
        "SELECT datastore, target,"
        " count(*) FILTER (WHERE kind = 'signup' AND state = 'done') AS arrived,"
        " count(*) FILTER (WHERE kind = 'signup' AND state IN ('pending', 'inflight')) AS to_come,"
        " count(*) FILTER (WHERE kind <> 'signup' AND state IN ('pending', 'inflight')) AS later,"
        " count(*) FILTER (WHERE state = 'inflight') AS inflight,"
        " min(due_at) FILTER (WHERE state IN ('pending', 'inflight')) AS next_due"
        " FROM trickle_slots GROUP BY 1, 2 ORDER BY 1, 2"))


async def drop_payload(db: asyncpg.Pool | asyncpg.Connection, s: Slot) -> None:
    """Forget a sign-up's prepared row (it could not be written): the next run makes one afresh."""
    await db.execute("UPDATE trickle_slots SET payload = NULL WHERE datastore = $1 AND target = $2 AND slot = $3",
                     s.datastore, s.target, s.slot)


async def rekey(conn: asyncpg.Connection, old: Keyring, new: Keyring) -> int:
    """Re-encrypt every stored payload from ``old`` to ``new`` (in the rotation's transaction)."""
    rows = await conn.fetch("SELECT datastore, target, slot, payload FROM trickle_slots WHERE payload IS NOT NULL FOR UPDATE")
    await conn.executemany(
        "UPDATE trickle_slots SET payload = $4 WHERE datastore = $1 AND target = $2 AND slot = $3",
        [(r["datastore"], r["target"], r["slot"], new.encrypt(old.decrypt(bytes(r["payload"]), PAYLOAD), PAYLOAD)) for r in rows])
    return len(rows)


async def forget(conn: asyncpg.Connection, datastore: str, targets: Sequence[str]) -> None:
    """Drop the schedule of retired targets (slots not yet written never will be)."""
    await conn.execute("DELETE FROM trickle_slots WHERE datastore = $1 AND target = ANY($2::text[])", datastore, list(targets))
