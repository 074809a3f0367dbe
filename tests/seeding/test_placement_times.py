"""Canary times a thief cannot compute: drawn between the real neighbours' times (never on the straight
line between them), in key order with them and with each other, and at the precision the rows
around them have (whole seconds among whole seconds, microseconds among microseconds)."""

from __future__ import annotations

import datetime as dt
import random

import asyncpg
from testkit import MakeConfig

from canary.crypto import Keyring
from canary.seeding.catalog import introspect
from canary.seeding.postgres import PostgresSeeder, _busy_sql
from canary.seeding.synth.profile import profile
from canary.seeding.synth.times import Precision, Rates, between
from canary.store import ControlStore
from canary.store.registry import Registry

MEMBERS = """
CREATE TABLE public.members (
    id bigserial PRIMARY KEY, full_name text NOT NULL, email text NOT NULL UNIQUE, created_at timestamptz NOT NULL
);
SELECT setseed(0.42);
INSERT INTO public.members (id, full_name, email, created_at)
SELECT g, 'Member ' || g, 'member' || g || '@example.org',
       timestamptz '2023-01-01 00:00+00' + g * interval '1 hour' + (random() * 1800)::int * interval '1 second'
         + CASE WHEN g > 1500 THEN (random() * 1000000)::int * interval '1 microsecond' ELSE interval '0' END
FROM generate_series(1, 3000) g WHERE g % 4 <> 0;
SELECT setval('public.members_id_seq', 3000);
"""


async def test_canary_times_are_drawn_in_order_at_the_neighbours_precision(
    target_dsn: str, make_config: MakeConfig, store: ControlStore, keyring: Keyring
) -> None:
    """40 canaries in a table whose times jitter (whole seconds in the older half, microseconds in the
    newer): each canary's time lies between its id-neighbours' (never before the previous row or after
    the next), hardly ever exactly on the line between them, and has the precision of its neighbours."""
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute(MEMBERS)
    finally:
        await conn.close()
    cfg = make_config(datastores=[{"name": "shop", "dsn": target_dsn, "tables": [{"table": "public.members", "count": 40}]}])
    await PostgresSeeder.from_config(cfg, "shop", Registry(store.pool, keyring), seed=3).apply()
    canaries = {int(c.location["pk"]) for c in await Registry(store.pool, keyring).active("shop")}
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute("SET row_security = off")
        rows = await conn.fetch("SELECT id, created_at FROM public.members ORDER BY id")
    finally:
        await conn.close()
    on_line = 0
    checked = 0
    for i in range(1, len(rows) - 1):
        if rows[i]["id"] not in canaries:
            continue
        prev, row, nxt = rows[i - 1], rows[i], rows[i + 1]
        assert prev["created_at"] <= row["created_at"] <= nxt["created_at"], (prev, row, nxt)
        span = (nxt["created_at"] - prev["created_at"]).total_seconds()
        k = (row["id"] - prev["id"]) / (nxt["id"] - prev["id"])
        if span and abs((row["created_at"] - prev["created_at"]).total_seconds() - span * k) < 1e-6:
            on_line += 1
        real = [r for r in (prev, nxt) if r["id"] not in canaries]
        if real and all(r["created_at"].microsecond == 0 for r in real):
            assert row["created_at"].microsecond == 0, "a canary among whole seconds has microseconds"
        checked += 1
    assert checked >= 35 and on_line <= 1


def test_whole_days_at_the_tables_own_hour_are_a_precision() -> None:
    """A legacy import at Seoul midnight (15:00 UTC) is whole days at phase 15:00: a time drawn
    between two of its rows is cut to a 15:00 between them; between live rows whole seconds stay
    whole seconds; a grain that does not fit between the neighbours gives way to a finer one."""
    base = dt.datetime(2020, 1, 1, 15, 0, tzinfo=dt.timezone.utc)
    legacy = Precision.of([(base + dt.timedelta(days=i)).timestamp() for i in range(40)])
    assert legacy.cumulative[0] == 1.0 and legacy.phases[0] == 15 * 3_600_000_000
    rng = random.Random(3)
    lo, hi = base + dt.timedelta(days=2), base + dt.timedelta(days=9)
    for _ in range(50):
        t = legacy.cut(between(lo, hi, rng), rng, lo, hi)
        assert lo <= t <= hi and (t.hour, t.minute, t.second, t.microsecond) == (15, 0, 0, 0)
    near = base + dt.timedelta(days=3, hours=2)
    cut = legacy.cut(near + dt.timedelta(seconds=90.5), rng, near, near + dt.timedelta(minutes=5))
    assert near <= cut <= near + dt.timedelta(minutes=5)  # no 15:00 fits: a finer grain
    live = Precision.of([1_700_000_001.0 + 37 * i for i in range(40)])
    assert live.cumulative[2] < 0.2 and live.cumulative[3] == 1.0


def test_precision_is_learnt_and_cut_inside_the_bounds() -> None:
    """Precision.of counts whole seconds, milliseconds and microseconds; a cut time stays within the
    given neighbours; between() never returns a point outside them."""
    whole = 1_700_000_000.0
    p = Precision.of([whole] * 6 + [whole + 0.25] * 2 + [whole + 0.123456] * 2)
    assert p.cumulative == (0.0, 0.0, 0.0, 0.6, 0.8, 1.0)
    rng = random.Random(1)
    lo = dt.datetime(2024, 1, 1, 10, 0, 0, 900_000, tzinfo=dt.timezone.utc)
    hi = dt.datetime(2024, 1, 1, 10, 0, 1, 100_000, tzinfo=dt.timezone.utc)
    for _ in range(200):
        t = between(lo, hi, rng)
        assert lo <= t <= hi
        assert lo <= Precision.of([whole]).cut(t, rng, lo, hi) <= hi
    assert Precision.of([whole]).cut(dt.datetime(2024, 1, 1, 10, 0, 0, 950_000, tzinfo=dt.timezone.utc), rng, lo, hi) \
        == dt.datetime(2024, 1, 1, 10, 0, 1, tzinfo=dt.timezone.utc)


async def test_plan_says_which_physical_traces_a_backdated_run_leaves(
    target_dsn: str, make_config: MakeConfig, store: ControlStore, keyring: Keyring
) -> None:
    """``plan`` lists, per table, the traces that no value shows but system columns and statistics do:
    one transaction id, heap position, statistics, rows never updated; keys past the end when the
    table's key gaps run out."""
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute(MEMBERS)
    finally:
        await conn.close()
    cfg = make_config(datastores=[{"name": "shop", "dsn": target_dsn, "tables": [{"table": "public.members", "count": 800}]}])
    plan = await PostgresSeeder.from_config(cfg, "shop", Registry(store.pool, keyring), seed=3).plan()
    (target,) = plan.targets
    text = " | ".join(target.traces)
    assert "transaction id (xmin)" in text and "ctid" in text and "pg_stat_user_tables" in text and "never updated" in text
    assert any(t.startswith("keys: ") and "of 800 take the next sequence values" in t for t in target.traces)


async def test_no_canary_is_updated_in_the_future(
    target_dsn: str, make_config: MakeConfig, store: ControlStore, keyring: Keyring
) -> None:
    """Real rows' (updated - created) gaps reach weeks; a canary created yesterday takes only gaps that
    end by now (or none), never an update time in the future."""
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute("""
            CREATE TABLE public.accounts (id bigserial PRIMARY KEY, full_name text NOT NULL, created_at timestamptz NOT NULL,
                                          updated_at timestamptz NOT NULL);
            SELECT setseed(0.3);
            INSERT INTO public.accounts (id, full_name, created_at, updated_at)
            SELECT g, 'Account ' || g, c, least(c + (random() * 60) * interval '1 day', now() - interval '1 minute')
            FROM (SELECT g, date_trunc('second', now() - (3000 - g) * interval '20 minutes') AS c FROM generate_series(1, 3000) g) s
            WHERE g % 3 <> 0;
        """)
    finally:
        await conn.close()
    cfg = make_config(datastores=[{"name": "shop", "dsn": target_dsn, "tables": [{"table": "public.accounts", "count": 60}]}])
    await PostgresSeeder.from_config(cfg, "shop", Registry(store.pool, keyring), seed=8).apply()
    pks = [int(c.location["pk"]) for c in await Registry(store.pool, keyring).active("shop")]
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute("SET row_security = off")
        rows = await conn.fetch("SELECT created_at, updated_at, now() AS now FROM public.accounts WHERE id = ANY($1::bigint[])", pks)
    finally:
        await conn.close()
    assert len(rows) == 60
    assert all(r["created_at"] <= r["updated_at"] <= r["now"] for r in rows)


ROLLBACKS = """
CREATE TABLE public.signups (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, created_at timestamptz NOT NULL);
SELECT setseed(0.17);
INSERT INTO public.signups (id, email, created_at)
SELECT g + 32 * (g / 400), 'user' || g || '@example.org', timestamptz '2022-01-01 00:00+00' + t * interval '1 second'
FROM (SELECT g, sum(CASE WHEN g % 10 <> 3 THEN -ln(1.0 - random()) * 600 ELSE 0 END) OVER (ORDER BY g) AS t
      FROM generate_series(1, 8000) g) s
WHERE g % 10 <> 3;
SELECT setval('public.signups_id_seq', 9000);
"""


async def test_canaries_keep_the_pace_of_the_rows_around_them(
    target_dsn: str, make_config: MakeConfig, store: ControlStore, keyring: Keyring
) -> None:
    """Sign-ups at a steady pace whose skipped keys are rolled-back inserts and, every 400 sign-ups, 32
    keys a restart lost from the sequence's cache (no sign-up behind any of them): a canary put in
    such a gap must not make its stretch busier than the table's. The time from the
    row before a canary is about as long as the time between real rows (median 0.65 to 1.5 times), where
    drawing gaps by free keys alone crowds canaries into the lost keys' stretches."""
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute(ROLLBACKS)
    finally:
        await conn.close()
    cfg = make_config(datastores=[{"name": "shop", "dsn": target_dsn, "tables": [{"table": "public.signups", "count": 150}]}])
    await PostgresSeeder.from_config(cfg, "shop", Registry(store.pool, keyring), seed=5).apply()
    canaries = {int(c.location["pk"]) for c in await Registry(store.pool, keyring).active("shop")}
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute("SET row_security = off")
        rows = await conn.fetch("SELECT id, extract(epoch FROM created_at - lag(created_at) OVER (ORDER BY id))::float8 AS since"
                                " FROM public.signups ORDER BY id")
    finally:
        await conn.close()
    canary = sorted(r["since"] for r in rows if r["id"] in canaries and r["since"] is not None)
    real = sorted(r["since"] for r in rows if r["id"] not in canaries and r["since"] is not None)
    assert len(canary) >= 140
    ratio = canary[len(canary) // 2] / real[len(real) // 2]
    assert 0.65 <= ratio <= 1.5, ratio  # gaps drawn by free keys alone: 0.32


CROWDED = """
CREATE TABLE public.visitors (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, created_at timestamptz NOT NULL);
SELECT setseed(0.29);
INSERT INTO public.visitors (id, email, created_at)
SELECT g, 'visitor' || g || '@example.org', timestamptz '2022-01-01 00:00+00' + t * interval '1 second'
FROM (SELECT g, sum(CASE WHEN g % 10 <> 3 THEN -ln(1.0 - random()) * 600 ELSE 0 END) OVER (ORDER BY g) AS t
      FROM generate_series(1, 10000) g) s
WHERE g % 10 <> 3;
SELECT setval('public.visitors_id_seq', 11000);
"""


async def test_canaries_filling_half_the_gaps_keep_the_pace(
    target_dsn: str, make_config: MakeConfig, store: ControlStore, keyring: Keyring
) -> None:
    """Sign-ups at a steady pace with a rolled-back key every ten (1,000 gaps, each between two
    consecutive sign-ups) and 450 canaries: drawn one after another by their lengths, the long
    stretches were taken first and the rest fell among short ones, so the median time from the row
    before a canary was 0.74 of a real row's. Each gap held with a chance in proportion to its length
    (capped at certainty: at this fill 15% of the gaps are) gives 0.83, near the 0.86 such a draw
    gives a Poisson stream."""
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute(CROWDED)
    finally:
        await conn.close()
    cfg = make_config(datastores=[{"name": "shop", "dsn": target_dsn, "tables": [{"table": "public.visitors", "count": 450}]}])
    await PostgresSeeder.from_config(cfg, "shop", Registry(store.pool, keyring), seed=7).apply()
    canaries = {int(c.location["pk"]) for c in await Registry(store.pool, keyring).active("shop")}
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute("SET row_security = off")
        rows = await conn.fetch("SELECT id, extract(epoch FROM created_at - lag(created_at) OVER (ORDER BY id))::float8 AS since"
                                " FROM public.visitors ORDER BY id")
    finally:
        await conn.close()
    canary = sorted(r["since"] for r in rows if r["id"] in canaries and r["since"] is not None)
    real = sorted(r["since"] for r in rows if r["id"] not in canaries and r["since"] is not None)
    assert len(canary) >= 440
    ratio = canary[len(canary) // 2] / real[len(real) // 2]
    assert ratio >= 0.8, ratio


async def test_busy_seconds_on_the_server_are_the_ones_rates_count(target_dsn: str) -> None:
    """The placement query weighs gaps by busy seconds computed on the server from date_part epochs
    (:func:`_busy_sql`); they are the busy seconds :meth:`Rates.busy` counts in Python, to the
    microsecond, before 1970, across a week's end and with the session in another time zone."""
    rates = Rates(hours=tuple(1.0 + (h % 5) for h in range(24)), weekdays=(1.0, 0.5, 2.0, 1.0, 1.5, 0.25, 3.0))
    stamps = [dt.datetime(1969, 12, 28, 23, 59, 59, 999999, dt.timezone.utc), dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc),
              dt.datetime(2023, 3, 26, 1, 30, 0, 123456, dt.timezone.utc), dt.datetime(2024, 12, 29, 23, 10, tzinfo=dt.timezone.utc),
              dt.datetime(2024, 12, 30, 0, 50, 0, 1, dt.timezone.utc)]
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute("SET TimeZone = 'Asia/Seoul'")
        busy = _busy_sql("e").replace("$5", "$2").replace("$6", "$3")  # the placement query's $5 and $6 here
        got = await conn.fetch(f"SELECT {busy} AS b FROM (SELECT date_part('epoch', t) AS e FROM unnest($1::timestamptz[]) t) s ORDER BY e",
                               stamps, list(rates.week), list(rates.week_before))
    finally:
        await conn.close()
    for a, b, ga, gb in zip(stamps, stamps[1:], got, got[1:]):
        assert abs((gb["b"] - ga["b"]) - rates.busy(a, b)) < 1e-6 * max(1.0, rates.busy(a, b)), (a, b)


SPARSE_ORDERS = """
CREATE TABLE public.orders (id bigserial PRIMARY KEY, total numeric NOT NULL, ordered_at timestamptz NOT NULL);
INSERT INTO public.orders (id, total, ordered_at)
SELECT g, 10 + g % 7, timestamptz '2024-03-01 00:00+00' + g * interval '1 minute'
FROM generate_series(1, 4000) g WHERE g % 20 <> 0;
SELECT setval('public.orders_id_seq', 4000);
"""


async def test_a_row_whose_gap_is_taken_goes_to_the_nearest_free_key_on_either_side(
    target_dsn: str, make_config: MakeConfig, store: ControlStore, keyring: Keyring
) -> None:
    """Orders every minute with one free key every twenty (a gap each 20 minutes), and three rows
    wanting each of 30 gaps' times: the second and third find their gap taken. Sent to the next free
    key later in time, rows came a gap's spacing (20 minutes) later than wanted on median, so
    canaries' first orders followed their sign-ups by days more than real customers' did; the
    nearest free key on either side keeps the median shift near zero. A row's key neighbours still
    bracket its time, and none is dated before its floor (its customer's creation) or sent to a gap
    that lies wholly before it."""
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute(SPARSE_ORDERS)
        info = await introspect(conn, "public.orders")
        prof = profile(info, [dict(r) for r in await conn.fetch("SELECT id::text, total::text, ordered_at::text FROM public.orders"
                                                                " ORDER BY random() LIMIT 500")])
        cfg = make_config(datastores=[{"name": "shop", "dsn": target_dsn, "tables": [{"table": "public.orders", "count": 1}]}])
        seeder = PostgresSeeder.from_config(cfg, "shop", Registry(store.pool, keyring), seed=11)
        start = dt.datetime(2024, 3, 1, tzinfo=dt.timezone.utc)
        times: list[dt.datetime | None] = []
        floors: list[dt.datetime | None] = []
        for k in range(30):
            gap = 20 * (10 + 4 * k)  # the missing key of a gap well inside the table
            want = start + dt.timedelta(minutes=gap, seconds=20)
            for j in range(3):
                times.append(want)
                floors.append(want if k % 5 == 0 else want - dt.timedelta(days=1))  # every fifth: nothing earlier
        async with conn.transaction():
            placed = await seeder._placements(conn, info, prof, [], len(times), [], times=times, floors=floors)
        assert len(placed) == len(times) and all(p.pk is not None and p.created is not None for p in placed)
        shifts = []
        for want, floor, p in zip(times, floors, placed):
            assert p.created is not None and want is not None and floor is not None
            assert p.created >= floor, (p, floor)
            before = await conn.fetchval("SELECT ordered_at FROM public.orders WHERE id < $1 ORDER BY id DESC LIMIT 1", int(p.pk or 0))
            after = await conn.fetchval("SELECT ordered_at FROM public.orders WHERE id > $1 ORDER BY id LIMIT 1", int(p.pk or 0))
            assert before <= p.created <= after, (p, before, after)
            shifts.append((p.created - want).total_seconds())
        assert len({p.pk for p in placed}) == len(placed)
        shifts.sort()
        assert abs(shifts[len(shifts) // 2]) < 300, shifts
        assert sum(s < -60 for s in shifts) >= 20, "rows go to earlier gaps too"
    finally:
        await conn.close()
