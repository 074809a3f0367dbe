"""Canary times drawn from the table's own habits: a time between two neighbours falls in the hours
and weekdays rows arrive in (Rates), and an update column is what rows created about then have
(Updates): NULL before the column was filled, the creation time, a batch's instant, or an update of
its own whose delay and hour of day are the real updates'."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter

import asyncpg
from testkit import MakeConfig

from canary.crypto import Keyring
from canary.seeding.postgres import PostgresSeeder
from canary.seeding.synth.times import Precision, Rates, Updates, between
from canary.store import ControlStore
from canary.store.registry import Registry

UTC = dt.timezone.utc
DAY0 = dt.datetime(2024, 1, 1, tzinfo=UTC)
#: business hours: nine in ten events between 13:00 and 21:00 UTC
BUSY = tuple(range(13, 21))


def _business_epochs(rng: random.Random, n: int) -> list[float]:
    out = []
    for _ in range(n):
        hour = rng.choice(BUSY) if rng.random() < 0.9 else rng.randrange(24)
        out.append((DAY0 + dt.timedelta(days=rng.randrange(300), hours=hour, seconds=rng.randrange(3600))).timestamp())
    return out


def test_a_time_between_neighbours_falls_in_the_tables_busy_hours() -> None:
    """Between neighbours a day and a half apart, a uniform draw puts a third of the rows in the
    busy eight hours; drawn at the table's rates, about as many as the table has there (90%), never
    outside the neighbours."""
    rng = random.Random(3)
    rates = Rates.of(_business_epochs(rng, 2000))
    hours: Counter[int] = Counter()
    for i in range(3000):
        lo = DAY0 + dt.timedelta(days=i % 200, hours=rng.randrange(24))
        hi = lo + dt.timedelta(hours=36)
        t = between(lo, hi, rng, rates)
        assert lo <= t <= hi
        hours[t.hour] += 1
    busy = sum(hours[h] for h in BUSY) / 3000
    assert busy > 0.8, busy
    uniform = sum(1 for _ in range(3000) if (DAY0 + dt.timedelta(hours=36 * rng.random())).hour in BUSY) / 3000
    assert uniform < 0.45


def test_a_table_without_rates_keeps_the_uniform_draw() -> None:
    rng = random.Random(4)
    lo, hi = DAY0, DAY0 + dt.timedelta(hours=24)
    hours = Counter(between(lo, hi, rng).hour for _ in range(4800))
    assert max(abs(hours[h] / 4800 - 1 / 24) for h in range(24)) < 0.02


def _history(rng: random.Random) -> tuple[list[tuple[dt.datetime, dt.datetime | None]], dt.datetime, dt.datetime]:
    """2,000 rows over 600 days: before day 200 the update column is NULL unless the backfill of
    day 400 at 07:02:51 touched them (30%); from then it is the creation time (55%) or an update of
    its own days later in the afternoon (UTC 14-16h, whole seconds)."""
    filled = DAY0 + dt.timedelta(days=200)
    backfill = DAY0 + dt.timedelta(days=400, hours=7, minutes=2, seconds=51)
    rows: list[tuple[dt.datetime, dt.datetime | None]] = []
    for _ in range(2000):
        c = DAY0 + dt.timedelta(days=rng.uniform(0, 600))
        if c < filled:
            rows.append((c, backfill if rng.random() < 0.3 else None))
        elif rng.random() < 0.55:
            rows.append((c, c))
        else:
            u = (c + dt.timedelta(days=rng.uniform(2, 40))).replace(hour=rng.choice((14, 15, 16)), microsecond=0)
            rows.append((c, u))
    return rows, filled, backfill


def test_updates_follow_the_habits_of_rows_created_about_then() -> None:
    """NULL only where rows of that time have it and as often; the backfill's very instant shared by as
    many early canaries as real rows; the later ones' own updates in the table's afternoon hours, whole
    seconds, after the creation and never after now."""
    rng = random.Random(5)
    rows, filled, backfill = _history(rng)
    updates = Updates.of(rows)
    assert updates is not None
    now = DAY0 + dt.timedelta(days=640)
    early = [updates.draw(DAY0 + dt.timedelta(days=rng.uniform(0, 190)), now, rng) for _ in range(1000)]
    nulls = sum(u is None for u in early) / 1000
    assert 0.62 <= nulls <= 0.78, nulls
    assert 0.22 <= sum(u == backfill for u in early) / 1000 <= 0.38
    late: list[tuple[dt.datetime, dt.datetime | None]] = []
    for _ in range(1000):
        c = DAY0 + dt.timedelta(days=rng.uniform(210, 590))
        late.append((c, updates.draw(c, now, rng)))
    assert all(u is not None and c <= u <= now for c, u in late)
    same = sum(u == c for c, u in late) / 1000
    assert 0.47 <= same <= 0.63, same
    own = [u for c, u in late if u is not None and u != c]
    hours = Counter(u.hour for u in own)
    assert sum(hours[h] for h in (14, 15, 16)) / len(own) > 0.9, hours
    assert all(u.microsecond == 0 for u in own)
    assert not any(u == backfill for _, u in late)  # the backfill came before them


def test_a_young_row_is_not_updated_in_the_future() -> None:
    rng = random.Random(6)
    rows, _, _ = _history(rng)
    updates = Updates.of(rows)
    assert updates is not None
    now = DAY0 + dt.timedelta(days=600)
    for _ in range(500):
        c = now - dt.timedelta(hours=rng.uniform(0, 72))
        u = updates.draw(c, now, rng)
        assert u is not None and c <= u <= now


UPDATED = """
CREATE TABLE public.accounts (id bigserial PRIMARY KEY, full_name text NOT NULL, created_at timestamptz NOT NULL,
                              updated_at timestamptz);
SELECT setseed(0.21);
INSERT INTO public.accounts (id, full_name, created_at, updated_at)
SELECT g, 'Account ' || g, c,
       CASE WHEN g < 1000 THEN CASE WHEN u < 0.4 THEN timestamptz '2024-06-01 07:02:51+00' END
            WHEN u < 0.5 THEN c
            ELSE date_trunc('day', c) + (3 + (u * 20)::int) * interval '1 day' + (14 + (u * 1000)::int % 3) * interval '1 hour'
                 + (u * 3599)::int * interval '1 second' END
FROM (SELECT g, random() AS u, timestamptz '2023-01-01 00:00+00' + g * interval '3 hours' + (random() * 7200)::int * interval '1 second' AS c
      FROM generate_series(1, 3000) g) s
WHERE g % 5 <> 0;
"""


async def test_canaries_updated_at_follows_the_tables_habits(
    target_dsn: str, make_config: MakeConfig, store: ControlStore, keyring: Keyring
) -> None:
    """A table whose first rows have updated_at NULL or the instant of one backfill, and whose later rows
    either were never updated or were updated at 14-16h UTC days after: canaries among the early rows
    share the backfill or have NULL, never an afternoon update; later ones' own updates fall at 14-16h."""
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute(UPDATED)
    finally:
        await conn.close()
    cfg = make_config(datastores=[{"name": "shop", "dsn": target_dsn, "tables": [{"table": "public.accounts", "count": 120}]}])
    await PostgresSeeder.from_config(cfg, "shop", Registry(store.pool, keyring), seed=11).apply()
    pks = [int(c.location["pk"]) for c in await Registry(store.pool, keyring).active("shop")]
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute("SET row_security = off")
        rows = await conn.fetch("SELECT id, created_at, updated_at FROM public.accounts WHERE id = ANY($1::bigint[])", pks)
    finally:
        await conn.close()
    assert len(rows) == 120
    backfill = dt.datetime(2024, 6, 1, 7, 2, 51, tzinfo=UTC)
    early = [r for r in rows if r["id"] < 990]
    late = [r for r in rows if r["id"] > 1010]
    assert len(early) >= 20 and len(late) >= 40
    assert all(r["updated_at"] in (None, backfill) for r in early)
    assert any(r["updated_at"] == backfill for r in early) and any(r["updated_at"] is None for r in early)
    own = [r["updated_at"] for r in late if r["updated_at"] is not None and r["updated_at"] != r["created_at"]]
    assert len(own) >= 15
    assert sum(u.astimezone(UTC).hour in (14, 15, 16) for u in own) >= 0.85 * len(own)
    assert all(r["updated_at"] is not None and r["updated_at"] >= r["created_at"] for r in late)


def test_an_even_sample_gives_flat_rates() -> None:
    """Creation times spread evenly over the hours: sampling noise is no profile (the draw stays uniform)."""
    rng = random.Random(8)
    even = Rates.of((DAY0 + dt.timedelta(seconds=rng.uniform(0, 300 * 86_400))).timestamp() for _ in range(2000))
    assert even.flat
    assert not Rates.of(_business_epochs(rng, 2000)).flat


GAPPY = """
CREATE TABLE public.members (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, created_at timestamptz NOT NULL);
SELECT setseed(0.33);
INSERT INTO public.members (id, email, created_at)
SELECT id, 'member' || id || '@example.org', timestamptz '2023-01-01 00:00+00' + id * interval '1 hour'
FROM (SELECT g + 3 * (g / 60) AS id, g FROM generate_series(1, 6000) g) s  -- a run of three rolled-back keys every 60 rows
WHERE g % 25 <> 7;  -- and a deleted row every 25
SELECT setval('public.members_id_seq', 7000);
ANALYZE public.members;
"""


async def test_keys_beside_a_canary_look_like_the_keys_beside_a_real_row(
    target_dsn: str, make_config: MakeConfig, store: ControlStore, keyring: Keyring
) -> None:
    """A table with a deleted row every 25 (one free key) and three rolled-back keys every 60: a real
    row has more than one free key beside it about 1 time in 40 (the two rows beside each run); drawn
    in proportion to free keys, 45% of canaries sat beside a run. Their share must be about the real one."""
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute(GAPPY)
    finally:
        await conn.close()
    cfg = make_config(datastores=[{"name": "shop", "dsn": target_dsn, "tables": [{"table": "public.members", "count": 120}]}])
    await PostgresSeeder.from_config(cfg, "shop", Registry(store.pool, keyring), seed=12).apply()
    canaries = {int(c.location["pk"]) for c in await Registry(store.pool, keyring).active("shop")}
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute("SET row_security = off")
        rows = await conn.fetch("SELECT id, id - lag(id) OVER (ORDER BY id) AS before, lead(id) OVER (ORDER BY id) - id AS after"
                                " FROM public.members ORDER BY id")
    finally:
        await conn.close()
    placed = [r for r in rows if r["id"] in canaries and r["before"] is not None and r["after"] is not None]
    real = [r for r in rows if r["id"] not in canaries and r["before"] is not None and r["after"] is not None]
    assert len(placed) >= 110

    def wide(rs: list[asyncpg.Record]) -> float:
        return sum(r["before"] > 2 or r["after"] > 2 for r in rs) / len(rs)

    assert wide(placed) <= wide(real) + 0.06, (wide(placed), wide(real))


def test_a_cut_rounds_up_as_often_as_its_distance_says() -> None:
    """Whole days between two neighbours a day apart: the earlier one's day about as often as the later
    one's (always the earlier, a canary shared its day with the row before it far more than real rows)."""
    rng = random.Random(9)
    days = Precision.of([(DAY0 + dt.timedelta(days=d)).timestamp() for d in range(50)])
    lo, hi = DAY0 + dt.timedelta(days=3), DAY0 + dt.timedelta(days=4)
    cuts = Counter(days.cut(between(lo, hi, rng), rng, lo, hi) for _ in range(2000))
    assert set(cuts) == {lo, hi}
    assert 0.45 <= cuts[lo] / 2000 <= 0.55, cuts


def test_updates_of_naive_times_stay_naive_and_keep_the_batch_instant() -> None:
    """A timestamp-without-time-zone table: the batch instant comes back naive and equal to the real one."""
    rng = random.Random(10)
    rows, _, backfill = _history(rng)
    naive = [(c.replace(tzinfo=None), None if u is None else u.replace(tzinfo=None)) for c, u in rows]
    updates = Updates.of(naive)
    assert updates is not None
    now = (DAY0 + dt.timedelta(days=640)).replace(tzinfo=None)
    got = [updates.draw((DAY0 + dt.timedelta(days=rng.uniform(0, 190))).replace(tzinfo=None), now, rng) for _ in range(300)]
    assert any(u == backfill.replace(tzinfo=None) for u in got)
    assert all(u is None or (u.tzinfo is None and u <= now) for u in got)
