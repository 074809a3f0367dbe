"""Timestamps that look like the table's own.

A canary's time must not be computed from its neighbours: a time on the straight line between the
rows before and after it (by key) flags it to anyone with the table, and an interpolation leaves a
sub-second part where real rows have whole seconds. So a time between two neighbours is *drawn*
(:func:`between`), and every time written is cut to a precision drawn from the column's own
(:class:`Precision`: the shares of whole days, hours, minutes, seconds, milliseconds and microseconds
among its values, days and hours at the phase the values have).
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import itertools
import math
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from canary.seeding.synth.shapes import quantile

#: Grains a timestamp may be written at, in microseconds, coarsest first: a day (at the table's own hour
#: of day: a legacy import at local midnight), an hour, a minute, a whole second, a millisecond, a
#: microsecond. A time counts at the coarsest grain it lies on.
UNITS = (86_400_000_000, 3_600_000_000, 60_000_000, 1_000_000, 1_000, 1)
#: a daily or hourly phase is believed when this share of the times on the finer grain share it
PHASE_SHARE = 0.5


def _us(epoch: float) -> int:
    return round(epoch * 1_000_000)


@dataclass(frozen=True, slots=True)
class Precision:
    """How precise a column's times are: cumulative shares of :data:`UNITS` among its values, and the
    phase of the day and hour grains (a day at 15:00 UTC is midnight in Seoul)."""

    cumulative: tuple[float, ...] = (0.0, 0.0, 0.0, 1.0, 1.0, 1.0)  # no values seen: whole seconds
    phases: tuple[int, ...] = (0, 0, 0, 0, 0, 0)  # microseconds past the grain's multiple

    @classmethod
    def of(cls, epochs: Iterable[float]) -> Precision:
        stamps = [_us(e) for e in epochs if math.isfinite(e)]
        if not stamps:
            return cls()
        minutes = [u for u in stamps if u % UNITS[2] == 0]
        hour_phase = _phase(minutes, UNITS[1])
        hours = [u for u in minutes if (u - hour_phase) % UNITS[1] == 0]
        day_phase = _phase(hours, UNITS[0])
        phases = (day_phase, hour_phase, 0, 0, 0, 0)
        counts = [0] * len(UNITS)
        for u in stamps:
            counts[next(i for i, unit in enumerate(UNITS) if (u - phases[i]) % unit == 0)] += 1
        total = len(stamps)
        run, out = 0, []
        for c in counts:
            run += c
            out.append(run / total)
        return cls(tuple(out), phases)

    def grain(self, rng: random.Random) -> int:
        """A grain drawn in the column's proportions (its index in :data:`UNITS`)."""
        return min(bisect.bisect_right(self.cumulative, rng.random()), len(UNITS) - 1)

    def unit(self, rng: random.Random) -> int:
        """A unit drawn in the column's proportions (microseconds)."""
        return UNITS[self.grain(rng)]

    def cut(self, when: dt.datetime, rng: random.Random, lo: dt.datetime | None = None,
            hi: dt.datetime | None = None) -> dt.datetime:
        """``when`` written at a drawn grain, kept inside ``[lo, hi]`` when those are given: a grain
        that cannot fit there gives way to the next finer one that does (between two whole seconds, a
        whole second; ``when`` itself only when nothing coarser fits). Rounded up or down at random in
        proportion to the distance (unbiased): always down, a whole day drawn between two neighbours a
        day apart would always be the earlier one's, and a canary would share its day with the row
        before it far more often than real rows do."""
        for i in range(self.grain(rng), len(UNITS)):
            unit, phase = UNITS[i], self.phases[i]
            if unit == 1:
                return when
            offset = (_us(when.timestamp()) - phase) % unit
            down = when - dt.timedelta(microseconds=offset)
            up = down + dt.timedelta(microseconds=unit)
            for cut in ((up, down) if offset and rng.random() < offset / unit else (down, up)):
                if (lo is None or cut >= lo) and (hi is None or cut <= hi):
                    return cut
        return when


#: times kept as they are (already cut)
EXACT = Precision((0.0, 0.0, 0.0, 0.0, 0.0, 1.0))


def _phase(stamps: list[int], unit: int) -> int:
    """The offset (µs) within ``unit`` that most of ``stamps`` share, or 0."""
    if not stamps:
        return 0
    offset, n = Counter(u % unit for u in stamps).most_common(1)[0]
    return offset if n >= PHASE_SHARE * len(stamps) else 0




#: hours in a week; a creation time's intensity is read by hour of day and weekday
WEEK_HOURS = 24 * 7


@dataclass(frozen=True, slots=True)
class Rates:
    """When a table's rows arrive: the relative rate by hour of day and by weekday (UTC, so a table
    of several time zones keeps its own blend), learnt from sampled creation times with add-one
    smoothing, as their product (hour × weekday: a sample of 2,000 has too few rows per hour of the
    week to learn the 168 apart). Arrivals are a Poisson stream of this intensity: one more between
    two neighbours falls in a busy hour more often than in a quiet one."""

    hours: tuple[float, ...] = (1.0,) * 24
    weekdays: tuple[float, ...] = (1.0,) * 7

    @classmethod
    def of(cls, epochs: Iterable[float]) -> Rates:
        """Learnt from creation times; a profile the sample cannot tell from flat (chi-square below
        its 1% critical value) is flat: sampling noise would otherwise steer the draws."""
        hours, days = [0.0] * 24, [0.0] * 7
        for e in epochs:
            if math.isfinite(e):
                t = dt.datetime.fromtimestamp(e, dt.timezone.utc)
                hours[t.hour] += 1
                days[t.weekday()] += 1
        return cls(_shares(hours, CHI2_HOURS), _shares(days, CHI2_WEEKDAYS))

    @property
    def flat(self) -> bool:
        return min(self.hours) == 1.0 and min(self.weekdays) == 1.0

    def at(self, when: dt.datetime) -> float:
        """The rate at ``when`` relative to the busiest hour of the busiest weekday (0..1]."""
        t = when.astimezone(dt.timezone.utc) if when.tzinfo is not None else when
        return self.hours[t.hour] * self.weekdays[t.weekday()]

    @property
    def week(self) -> tuple[float, ...]:
        """The rate in each hour of the week (UTC, from Monday 00:00): what a stretch's busy seconds
        (:meth:`busy`) integrate."""
        return _week(self.hours, self.weekdays)

    @property
    def week_before(self) -> tuple[float, ...]:
        """The sums of :attr:`week` before each hour of the week (169: the last is the whole week's)."""
        return _week_sums(self.hours, self.weekdays)

    def busy(self, lo: dt.datetime, hi: dt.datetime) -> float:
        """The busy seconds from ``lo`` to ``hi``: the rate integrated over the stretch (at the
        busiest hour's rate a second is one), as many as the arrivals it holds: a night's eight
        hours hold fewer sign-ups than a busy evening's two."""
        return self._busy_seconds(hi.timestamp()) - self._busy_seconds(lo.timestamp())

    def _busy_seconds(self, epoch: float) -> float:
        """The busy seconds from the Unix epoch to ``epoch``, the rates integrated hour by hour."""
        rates, sums = self.week, self.week_before
        hour = math.floor(epoch / 3600.0)
        weeks, at = divmod(hour + EPOCH_HOUR_OF_WEEK, WEEK_HOURS)
        return 3600.0 * (weeks * sums[-1] + sums[at] + (epoch / 3600.0 - hour) * rates[at])


#: the hour of the week (from Monday 00:00 UTC) the Unix epoch fell in (a Thursday)
EPOCH_HOUR_OF_WEEK = 72


@functools.lru_cache(maxsize=16)
def _week(hours: tuple[float, ...], weekdays: tuple[float, ...]) -> tuple[float, ...]:
    """The rate in each hour of the week from Monday 00:00 UTC, computed once per rates."""
    return tuple(weekdays[d] * hours[h] for d in range(7) for h in range(24))


@functools.lru_cache(maxsize=16)
def _week_sums(hours: tuple[float, ...], weekdays: tuple[float, ...]) -> tuple[float, ...]:
    """The rates of the hours of the week before each hour (169: the last is the whole week's)."""
    return tuple(itertools.accumulate(_week(hours, weekdays), initial=0.0))


#: chi-square 1% critical values for 23 and 6 degrees of freedom (hours of a day, days of a week)
CHI2_HOURS, CHI2_WEEKDAYS = 41.64, 16.81


def _shares(counts: list[float], critical: float) -> tuple[float, ...]:
    """Counts as rates relative to the largest (add-one smoothed), or all 1 when they are as even as
    chance leaves them."""
    n = sum(counts)
    expected = n / len(counts)
    if not n or sum((c - expected) ** 2 / expected for c in counts) < critical:
        return (1.0,) * len(counts)
    top = max(counts) + 1
    return tuple((c + 1) / top for c in counts)


#: rejection rounds before a draw between two neighbours falls back to uniform (a stretch wholly in
#: hours the table never has rows in)
RATE_TRIES = 64


def between(lo: dt.datetime, hi: dt.datetime, rng: random.Random, rates: Rates | None = None) -> dt.datetime:
    """A time drawn between two neighbours' (the arrival of one more event between two of a Poisson
    stream), never their interpolation by key: uniformly, or with ``rates`` at the table's own
    intensity (a stretch over a night puts the row in the evening or the morning, as real rows are)."""
    if rates is not None and not rates.flat and hi > lo:
        for _ in range(RATE_TRIES):
            when = lo + (hi - lo) * rng.random()
            if rng.random() < rates.at(when):
                return when
    return lo + (hi - lo) * rng.random()


#: how a sampled row's update column stands against its creation
NULL, SAME, LATER = -1.0, -2.0, -3.0  # (else: the epoch of the batch that updated it)
#: sampled rows nearest in creation time whose update habit a new row takes one of
NEAREST = 24


@dataclass(frozen=True, slots=True)
class Updates:
    """How a table's rows were updated after their insert, learnt from sampled (created, updated)
    pairs, so that a new row's update column is what a real row *created about then* has: NULL
    (before the column was filled), the creation time (inserted, never updated), the instant of a
    batch many rows share (an import, a backfill: an update column shared by a tenth of the rows and
    by no canary is a tell), or an update of its own, its delay drawn from the real delays of rows
    updated on their own and its hour of day from their hours (an update at 4 a.m. where people
    update in the afternoon is a tell), at their precision. Never computed from one row."""

    created: tuple[float, ...] = ()  # sorted creation epochs of the sampled rows
    habits: tuple[float, ...] = ()  # per sampled row (same order): NULL, SAME, LATER or a batch epoch
    gaps: tuple[float, ...] = ()  # sorted delays (s) of the updates rows had on their own
    hours: tuple[float, ...] = ()  # cumulative shares of those updates' hour of day (UTC), 24
    precision: Precision = Precision()  # of those updates

    @classmethod
    def of(cls, pairs: Iterable[tuple[dt.datetime | None, dt.datetime | None]], k: int = 3) -> Updates | None:
        """From (created, updated) per sampled row (updated None: NULL); None without creation
        times. An update instant ``k`` or more rows share is a batch."""
        rows = sorted(((c.timestamp(), None if u is None else u.timestamp()) for c, u in pairs if c is not None),
                      key=lambda p: p[0])
        if not rows:
            return None
        shared = Counter(u for _, u in rows if u is not None)
        habits: list[float] = []
        own: list[float] = []
        for c, u in rows:
            if u is None:
                habits.append(NULL)
            elif u == c:
                habits.append(SAME)
            elif shared[u] >= k:
                habits.append(u)
            else:
                habits.append(LATER)
                own.append(u)
        hours = [1.0] * 24
        for u in own:
            hours[dt.datetime.fromtimestamp(u, dt.timezone.utc).hour] += 1
        total, run, cum = sum(hours), 0.0, []
        for h in hours:
            run += h
            cum.append(run / total)
        gaps = sorted(u - c for (c, u), h in zip(rows, habits) if h == LATER and u is not None)
        return cls(tuple(c for c, _ in rows), tuple(habits), tuple(g for g in gaps if g > 0), tuple(cum), Precision.of(own))

    def draw(self, created: dt.datetime, now: dt.datetime, rng: random.Random) -> dt.datetime | None:
        """The update column of a row created ``created``: the habit of one of the :data:`NEAREST`
        sampled rows created closest to it (a batch only if it came after the row)."""
        if not self.created:
            return created
        at = created.timestamp()
        i = bisect.bisect_left(self.created, at)
        lo = max(0, min(i - NEAREST // 2, len(self.created) - NEAREST))
        habit = self.habits[rng.randrange(lo, min(len(self.created), lo + NEAREST))]
        if habit == NULL:
            return None
        if habit >= 0:
            if at <= habit <= now.timestamp():  # (a naive time is read as local by timestamp(): back the same way)
                return (dt.datetime.fromtimestamp(habit, created.tzinfo) if created.tzinfo is not None
                        else dt.datetime.fromtimestamp(habit))
            habit = LATER
        if habit == SAME or not self.gaps:
            return created
        room = (now - created).total_seconds()
        gaps = self.gaps[:bisect.bisect_right(self.gaps, room)]
        if not gaps:
            return created  # too young for any real delay: not updated yet
        later = created + dt.timedelta(seconds=quantile(gaps, rng))
        if (later - created).total_seconds() > 86_400:  # the hour of day the table's updates have
            hour = min(bisect.bisect_right(self.hours, rng.random()), 23)
            moved = later + dt.timedelta(hours=hour - dt.datetime.fromtimestamp(later.timestamp(), dt.timezone.utc).hour)
            if created < moved <= now:
                later = moved
        return self.precision.cut(later, rng, created, now)
