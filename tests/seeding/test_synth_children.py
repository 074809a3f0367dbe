"""Child-row histories (seeders.pg_children.History / Histories): drawn from real parents' joint
distribution of count, first delay and gaps, k-anonymously."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter

from canary.seeding.children import Histories, History, fit_first_children
from canary.seeding.synth.times import Rates

DAY = 86400.0


def _timelines(rng: random.Random, n: int = 600) -> list[list[float | None]]:
    """One-order customers buy within a day; repeat customers wait ~30 days, then every ~10."""
    out: list[list[float | None]] = []
    for _ in range(n):
        count = rng.choice((0, 0, 1, 1, 1, 3))
        if count == 1:
            out.append([rng.uniform(0, DAY)])
        elif count == 3:
            first = rng.uniform(29 * DAY, 31 * DAY)
            out.append([first, first + rng.uniform(9 * DAY, 11 * DAY), first + rng.uniform(19 * DAY, 22 * DAY)])
        else:
            out.append([])
    return out


def test_history_draws_count_first_delay_and_gaps_jointly() -> None:
    """A canary's number of children follows the real counts, its first delay comes from real parents
    with that count (not from all parents), and later gaps from the real gaps at that position."""
    rng = random.Random(1)
    real = _timelines(rng)
    hist = History.of(real)
    draws = [hist.draw(rng) for _ in range(3000)]
    counts = Counter(len(d) for d in draws)
    assert set(counts) == {0, 1, 3}
    assert 0.27 < counts[0] / 3000 < 0.40 and 0.42 < counts[1] / 3000 < 0.58
    for d in draws:
        if len(d) == 1:
            assert d[0] is not None and 0 <= d[0] <= DAY
        if len(d) == 3:
            assert d[0] is not None and d[1] is not None and d[2] is not None
            assert 29 * DAY <= d[0] <= 31 * DAY and 9 * DAY <= d[1] - d[0] <= 11 * DAY and d[0] < d[1] < d[2]


def test_history_never_copies_a_real_delay_and_pools_rare_counts() -> None:
    """Delays are interpolated between real ones (a drawn first delay is no real parent's own), and
    a count fewer than k parents have borrows delays from the nearest larger group."""
    rng = random.Random(2)
    real: list[list[float | None]] = [[rng.uniform(0, DAY)] for _ in range(200)] + [[5 * DAY, 6 * DAY], [7 * DAY, 9 * DAY]]
    hist = History.of(real, k=3)
    firsts = {d[0] for t in real for d in [t]}
    drawn = [hist.draw(rng) for _ in range(2000)]
    assert not {d[0] for d in drawn if d} & firsts
    assert hist.first[2] and len(hist.first[2]) >= 3  # two two-order parents pooled with the one-order ones


def test_histories_follow_the_parents_age() -> None:
    """Parents created recently have had less time to order: a canary draws from real parents of
    its own creation time, so a new account does not get a year-long history."""
    rng = random.Random(3)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    parents: list[tuple[float | None, list[float | None]]] = []
    for i in range(1000):
        created = now - 400 * DAY + i * 0.4 * DAY
        age = now - created
        parents.append((created, [min(age, rng.uniform(0, 300 * DAY)) * f for f in (0.1, 0.5, 0.9)]))
    hist = Histories.of(parents, size=100)
    assert len(hist.buckets) == 10
    young = dt.datetime.fromtimestamp(now - 5 * DAY, dt.timezone.utc)
    for _ in range(200):
        delays = hist.draw(rng, young)
        assert all(d is not None and d <= 40 * DAY for d in delays)


def _in_slot(when: dt.datetime, slots: list[tuple[dt.datetime, dt.datetime, int]]) -> bool:
    return any(lo <= when <= hi for lo, hi, _ in slots)


def test_quick_first_children_go_to_parents_that_can_be_created_before_a_free_key() -> None:
    """Child keys are free only every two days, for five minutes, where 30% of real parents have a
    first child within half an hour: drawn as they come, hardly any canary's quick first child falls
    in a gap (it would move days later); dealt out, the quick histories go to parents whose window
    (six hours between their key neighbours) lies just before such a gap, and those parents are
    created there, so most of the quick first children the table allows are kept. The histories stay
    the ones drawn (their multiset), each parent stays in its window, and a history goes to a parent
    of its own age group or the next."""
    rng = random.Random(5)
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
    n = 200
    windows: list[tuple[dt.datetime, dt.datetime] | None] = [
        (t0 + dt.timedelta(hours=8 * i), t0 + dt.timedelta(hours=8 * i + 6)) for i in range(n)]
    created: list[dt.datetime | None] = [w[0] + (w[1] - w[0]) * rng.random() for w in windows if w is not None]
    slots = [(t0 + dt.timedelta(hours=48 * j + rng.uniform(0, 40)), dt.timedelta(minutes=5), 1) for j in range(40)]
    slots_ = [(lo, lo + span, free) for lo, span, free in slots]
    draws: list[list[float | None]] = []
    for _ in range(n):
        x = rng.random()
        draws.append([rng.uniform(60, 1800)] if x < 0.3 else [rng.uniform(3, 300) * DAY] if x < 0.65 else [])
    groups = [i * 5 // n for i in range(n)]
    quick = sum(1 for d in draws if d and d[0] is not None and d[0] <= 1800)

    def landed(hs: list[list[float | None]], times: list[dt.datetime | None]) -> int:
        return sum(1 for h, c in zip(hs, times) if h and h[0] is not None and h[0] <= 1800 and c is not None
                   and _in_slot(c + dt.timedelta(seconds=h[0]), slots_))

    as_drawn = landed(draws, created)
    fitted, moved, _ = fit_first_children(windows, created, draws, groups, slots_, random.Random(6))
    now = [m or c for m, c in zip(moved, created)]
    # a parent can take a quick child only if its window ends within ~half an hour before a gap: ~14%
    assert as_drawn <= 3 and landed(fitted, now) >= 15, (as_drawn, landed(fitted, now), quick)
    assert sorted(map(repr, fitted)) == sorted(map(repr, draws))
    for w, m in zip(windows, moved):
        assert m is None or (w is not None and w[0] <= m <= w[1])
    source = {repr(d): groups[i] for i, d in enumerate(draws) if d}
    assert all(abs(source[repr(h)] - groups[i]) <= 1 for i, h in enumerate(fitted) if h)
    # one free key each: no two quick first children were sent to the same gap
    used = Counter(next(j for j, (lo, hi, _) in enumerate(slots_) if lo <= c + dt.timedelta(seconds=float(h[0] or 0)) <= hi)
                   for h, c in zip(fitted, now) if h and h[0] is not None and c is not None
                   and _in_slot(c + dt.timedelta(seconds=float(h[0] or 0)), slots_))
    assert max(used.values()) == 1


def test_a_quick_history_no_canary_can_take_moves_a_canary_to_a_spare_gap_that_can() -> None:
    """Child keys are free every two days for five minutes and the canaries' windows (between their key
    neighbours) all end hours before one: none can take a first child within half an hour, and drawn
    by the canaries alone the quick histories (30%) land days later. Gaps of the parent table no canary
    took (spares) whose windows end just before a free key take them: a canary of the spare's age
    group moves there (its new time inside the spare's window, each spare used once, its first child
    in a free key), and the histories stay the ones drawn."""
    rng = random.Random(7)
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    n = 100
    slots = [(t0 + dt.timedelta(hours=48 * j + 24), t0 + dt.timedelta(hours=48 * j + 24, minutes=5), 1) for j in range(60)]
    # canaries' windows: 6 hours ending 12 hours before a gap; spares: 6 hours ending 10 minutes before one
    windows: list[tuple[dt.datetime, dt.datetime] | None] = [
        (t0 + dt.timedelta(hours=48 * (i % 60) + 6), t0 + dt.timedelta(hours=48 * (i % 60) + 12)) for i in range(n)]
    created: list[dt.datetime | None] = [w[0] + (w[1] - w[0]) * rng.random() for w in windows if w is not None]
    spare_windows = [(t0 + dt.timedelta(hours=48 * j + 18, minutes=-10), t0 + dt.timedelta(hours=48 * j + 24, minutes=-10))
                     for j in range(60)]
    groups = [(i % 60) * 3 // 60 for i in range(n)]
    spares = [(w, j * 3 // 60) for j, w in enumerate(spare_windows)]
    draws: list[list[float | None]] = []
    for _ in range(n):
        x = rng.random()
        draws.append([rng.uniform(600, 1800)] if x < 0.3 else [rng.uniform(3, 300) * DAY] if x < 0.65 else [])
    quick = sum(1 for d in draws if d and d[0] is not None and d[0] <= 1800)

    def landed(hs: list[list[float | None]], times: list[dt.datetime | None]) -> int:
        return sum(1 for h, c in zip(hs, times) if h and h[0] is not None and h[0] <= 1800 and c is not None
                   and _in_slot(c + dt.timedelta(seconds=h[0]), slots))

    fitted, moved, regapped = fit_first_children(windows, created, draws, groups, slots, random.Random(8))
    assert landed(fitted, [m or c for m, c in zip(moved, created)]) == 0  # no spares: the canaries' windows alone
    fitted, moved, regapped = fit_first_children(windows, created, draws, groups, slots, random.Random(8), spares)
    now = [m or c for m, c in zip(moved, created)]
    assert quick >= 20 and landed(fitted, now) == quick, (landed(fitted, now), quick)
    assert sorted(map(repr, fitted)) == sorted(map(repr, draws))
    used = [j for j in regapped if j is not None]
    assert len(used) == len(set(used)) >= quick
    for i, j in enumerate(regapped):
        if j is not None:
            (lo, hi), group = spares[j]
            assert lo <= now[i] <= hi and abs(group - groups[i]) <= 1  # type: ignore[operator]


def test_a_canary_moved_for_a_quick_history_takes_a_time_at_the_tables_hours() -> None:
    """Real parents sign up between 09:00 and 18:00 UTC, and a spare gap spans two days with free child
    keys throughout: every time in it fits a quick first child. Drawn uniformly over the times that fit,
    a moved canary would sign up at night five times in eight (a tell on the hour of day); drawn at the
    table's rates (as placement draws a time between neighbours), it signs up in the day as real
    parents do. The histories learn those rates from the sampled parents' creation times."""
    rng = random.Random(11)
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    day = [t0.timestamp() + d * DAY + rng.uniform(9, 18) * 3600 for d in range(60) for _ in range(20)]
    rates = Histories.of([(c, [600.0]) for c in day]).rates
    assert not rates.flat and rates.hours[3] < 0.05 < rates.hours[12]
    n = 60
    windows: list[tuple[dt.datetime, dt.datetime] | None] = [
        (t0 + dt.timedelta(days=4 * i), t0 + dt.timedelta(days=4 * i, hours=1)) for i in range(n)]
    created: list[dt.datetime | None] = [w[0] for w in windows if w is not None]
    # child keys free only from day 2 of each four-day period on: the canaries' own windows cannot take a quick child
    slots = [(t0 + dt.timedelta(days=4 * j + 2), t0 + dt.timedelta(days=4 * j + 4), 5) for j in range(n)]
    spares = [((t0 + dt.timedelta(days=4 * j + 2, seconds=rng.randrange(1, 600)), t0 + dt.timedelta(days=4 * j + 3, hours=23, seconds=rng.randrange(1, 600))), 0)
              for j in range(n)]  # (neighbours at whole seconds: times are cut to seconds)
    draws: list[list[float | None]] = [[600.0] for _ in range(n)]

    def daytime(spread: Rates | None) -> float:
        _, moved, regapped = fit_first_children(windows, created, draws, [0] * n, slots, random.Random(12), spares, spread)
        times = [m for m, j in zip(moved, regapped) if m is not None and j is not None]
        assert len(times) == n
        return sum(1 for t in times if 9 <= t.astimezone(dt.UTC).hour < 18) / len(times)

    assert daytime(None) < 0.6  # uniformly: about 9 hours in 24
    assert daytime(rates) > 0.85


def test_a_late_first_child_goes_to_a_parent_at_random_not_to_a_long_window() -> None:
    """Child keys are free every two days for five minutes; half the canaries' windows (between their
    key neighbours) are twelve hours long, half one hour. A first child months after its parent goes
    to the next free key after its time whatever the parent, so it is dealt at random: fitted, it went
    to the few parents whose window, shifted by the delay, reaches a free key, nearly all of them long
    windows, leaving the short ones to canaries without children (a canary's time since the row before
    it told whether it had orders). Quick first children are still fitted."""
    rng = random.Random(11)
    t0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    n = 400
    slots = [(t0 + dt.timedelta(hours=48 * j + rng.uniform(0, 40)), dt.timedelta(minutes=5)) for j in range(400)]
    slots_ = [(lo, lo + span, 1) for lo, span in slots]
    windows: list[tuple[dt.datetime, dt.datetime] | None] = [
        (t0 + dt.timedelta(hours=13 * i), t0 + dt.timedelta(hours=13 * i + (12 if i % 2 else 1))) for i in range(n)]
    created: list[dt.datetime | None] = [w[0] + (w[1] - w[0]) * rng.random() for w in windows if w is not None]
    draws: list[list[float | None]] = []
    for _ in range(n):
        x = rng.random()
        draws.append([rng.uniform(60, 1800)] if x < 0.1 else [rng.uniform(30, 300) * DAY] if x < 0.3 else [])
    fitted, moved, _ = fit_first_children(windows, created, draws, [0] * n, slots_, random.Random(12))
    late = [i % 2 for i, h in enumerate(fitted) if h and h[0] is not None and h[0] > DAY]
    assert len(late) >= 60
    assert 0.35 <= sum(late) / len(late) <= 0.65, sum(late) / len(late)  # fitted: 0.92 in long windows
    now = [m or c for m, c in zip(moved, created)]
    quick = [i for i, h in enumerate(fitted) if h and h[0] is not None and h[0] <= 1800]
    assert sum(_in_slot(now[i] + dt.timedelta(seconds=float(fitted[i][0] or 0)), slots_) for i in quick) >= len(quick) * 3 // 4  # type: ignore[operator]
