"""How common a canary's values are: candidates drawn so that how many rows of the table hold each of
their values matches how many rows hold a real row's values."""

from __future__ import annotations

import bisect
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from canary.seeding.synth.names import split_name
from canary.seeding.synth.shapes import MIN_SHARED

_COUNT_BINS = (2, 3, 5, 10, 30, 100, 300, 1000, 3000)


def count_bin(n: int) -> int:
    """Coarse class of "how many rows hold this value": 1, 2, 3-4, 5-9, 10-29, ... (log-like)."""
    return bisect.bisect_right(_COUNT_BINS, n)


def surname_key(name: str | None) -> str | None:
    split = split_name(name) if name else None
    return split[1] if split else name


def given_key(name: str | None) -> str | None:
    split = split_name(name) if name else None
    return split[2] if split else name


def text_length(text: str | None) -> int:
    return len(text) if text else 0


def word_count(text: str | None) -> int:
    return len(text.split()) if text else 0


def shape_key(text: str | None) -> str | None:
    return re.sub(r"\d+", "9", text) if text else text


@dataclass
class FrequencyMatch:
    """Draws candidates (a person's names, a row's location columns) so that how many rows of the
    table hold each of their values matches how many rows hold a real row's values.

    ``keys``: (column, derivation) pairs an insider can count (the full name and its surname; the
    address, its digit-masked shape and the postcode); ``counts``: rows of the whole table per derived
    value; ``targets``: the real rows' count classes (:func:`count_bin`) per key, one tuple per sampled
    row. Each canary takes a random real row's classes and the candidate closest to them. The primary
    value (the first key) is taken only when no real row holds it or at least ``k`` do (never a value
    that identifies a person); values canaries already hold count too, so two canaries may share a
    fresh value where real rows come in pairs (a family's address).
    """

    keys: tuple[tuple[str, Any], ...]
    counts: tuple[Counter[str | None], ...]
    targets: tuple[tuple[int, ...], ...]
    pool: list[Mapping[str, str | None]]
    traits: tuple[tuple[str, Any], ...] = ()  # (column, class function) compared as they are: word counts
    k: int = MIN_SHARED
    held: list[Mapping[str, str | None]] = field(default_factory=list)  # candidates canaries already hold
    added: tuple[Counter[str | None], ...] = ()
    credit: Counter[int] = field(default_factory=Counter)  # primary count classes canaries reached by being joined
    memo: dict[int, tuple[list[str | None], list[int]]] = field(default_factory=dict)  # id(candidate) -> key values, traits

    def __post_init__(self) -> None:
        self.added = tuple(Counter() for _ in self.keys)

    def _values(self, cand: Mapping[str, str | None]) -> list[str | None]:
        return self._derived(cand)[0]

    def _derived(self, cand: Mapping[str, str | None]) -> tuple[list[str | None], list[int]]:
        hit = self.memo.get(id(cand))
        if hit is None:
            hit = self.memo[id(cand)] = ([fn(cand.get(col)) for col, fn in self.keys], [fn(cand.get(col)) for col, fn in self.traits])
        return hit

    def draw(self, rng: random.Random, tries: int = 600,
             among: Sequence[Mapping[str, str | None]] | None = None) -> Mapping[str, str | None] | None:
        """A candidate (of ``among``, when given: those that fit something else about the row)."""
        if not self.targets or not self.pool:
            return None
        want = rng.choice(self.targets)
        for _ in range(20):  # targets already met by canaries another one joined
            if not self.credit[want[0]]:
                break
            self.credit[want[0]] -= 1
            want = rng.choice(self.targets)
        best: tuple[int, float] | None = None
        choice: Mapping[str, str | None] | None = None
        if among is not None:
            sample = list(among) if len(among) <= tries else rng.sample(list(among), tries)
        else:
            sample = [self.pool[rng.randrange(len(self.pool))] for _ in range(tries)] + self.held[-tries:]
        for cand in sample:
            vals, traits = self._derived(cand)
            real = self.counts[0][vals[0]]
            if 0 < real < self.k:
                continue
            score = sum(abs(count_bin(c[v] + a[v] + 1) - w) for c, a, v, w in zip(self.counts, self.added, vals, want[:len(vals)]))
            score += sum(abs(t - w) for t, w in zip(traits, want[len(vals):]))
            rank = (score, rng.random())
            if best is None or rank < best:
                best, choice = rank, cand
        if choice is None:
            return None
        vals = self._values(choice)
        joined, real = self.added[0][vals[0]], self.counts[0][vals[0]]
        if joined and count_bin(real + joined) != count_bin(real + joined + 1):  # the canaries holding it move up, too
            self.credit[count_bin(real + joined + 1)] += joined
        for a, v in zip(self.added, vals):
            a[v] += 1
        self.held.append(choice)
        return choice

    @staticmethod
    def real_targets(keys: Sequence[tuple[str, Any]], counts: Sequence[Counter[str | None]],
                     sample: Sequence[Mapping[str, str | None]], traits: Sequence[tuple[str, Any]] = ()) -> tuple[tuple[int, ...], ...]:
        first = keys[0][0]
        return tuple(
            tuple(count_bin(c[fn(r.get(col))]) for (col, fn), c in zip(keys, counts)) + tuple(fn(r.get(col)) for col, fn in traits)
            for r in sample if r.get(first) is not None
        )
