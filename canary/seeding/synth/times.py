"""Timestamps that look like the table's own.

A canary's time must not be computed from its neighbours: a time on the straight line between the
rows before and after it (by key) flags it to anyone with the table, and an interpolation leaves a
sub-second part where real rows have whole seconds. So a time between two neighbours is *drawn*
(:func:`between`), and every time written is cut to a precision drawn from the column's own
(:class:`Precision`: the shares of whole seconds, milliseconds and microseconds among its values).
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass

#: Units a timestamp may be written in, in microseconds: whole seconds, milliseconds, microseconds.
UNITS = (1_000_000, 1_000, 1)


@dataclass(frozen=True, slots=True)
class Precision:
    """How precise a column's times are: cumulative shares of :data:`UNITS` among its values."""

    cumulative: tuple[float, ...] = (1.0, 1.0, 1.0)  # no values seen: whole seconds

    @classmethod
    def of(cls, epochs: Iterable[float]) -> Precision:
        counts = [0, 0, 0]
        for e in epochs:
            if not math.isfinite(e):
                continue
            us = round((e - math.floor(e)) * 1e6) % 1_000_000
            counts[0 if us == 0 else 1 if us % 1000 == 0 else 2] += 1
        total = sum(counts)
        if not total:
            return cls()
        run, out = 0, []
        for c in counts:
            run += c
            out.append(run / total)
        return cls(tuple(out))

    def unit(self, rng: random.Random) -> int:
        """A unit drawn in the column's proportions (microseconds)."""
        return UNITS[min(bisect.bisect_right(self.cumulative, rng.random()), len(UNITS) - 1)]

    def cut(self, when: dt.datetime, rng: random.Random, lo: dt.datetime | None = None,
            hi: dt.datetime | None = None) -> dt.datetime:
        """``when`` written at a drawn precision, kept inside ``[lo, hi]`` when those are given (a unit
        that cannot fit there leaves ``when`` as it is)."""
        unit = self.unit(rng)
        if unit == 1:
            return when
        cut = when - dt.timedelta(microseconds=when.microsecond % unit)
        if lo is not None and cut < lo:
            cut += dt.timedelta(microseconds=unit)
        if (lo is not None and cut < lo) or (hi is not None and cut > hi):
            return when
        return cut


def between(lo: dt.datetime, hi: dt.datetime, rng: random.Random) -> dt.datetime:
    """A time drawn uniformly between two neighbours' (the arrival of one more event between two of a
    Poisson stream), never their interpolation by key."""
    return lo + (hi - lo) * rng.random()
