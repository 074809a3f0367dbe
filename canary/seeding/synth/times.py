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
import math
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

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
        whole second; ``when`` itself only when nothing coarser fits)."""
        for i in range(self.grain(rng), len(UNITS)):
            unit, phase = UNITS[i], self.phases[i]
            if unit == 1:
                return when
            cut = when - dt.timedelta(microseconds=(_us(when.timestamp()) - phase) % unit)
            if lo is not None and cut < lo:
                cut += dt.timedelta(microseconds=unit)
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


def between(lo: dt.datetime, hi: dt.datetime, rng: random.Random) -> dt.datetime:
    """A time drawn uniformly between two neighbours' (the arrival of one more event between two of a
    Poisson stream), never their interpolation by key."""
    return lo + (hi - lo) * rng.random()
