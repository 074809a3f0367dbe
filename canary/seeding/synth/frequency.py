"""How common a canary's values are: candidates drawn so that how many rows of the table hold each of
their values matches how many rows hold a real row's values."""

from __future__ import annotations

import bisect
import random
import re
import sys
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

from canary.seeding.synth.names import split_name
from canary.seeding.synth.relations import Tally
from canary.seeding.synth.shapes import MIN_SHARED

_COUNT_BINS = (2, 3, 5, 10, 30, 100, 300, 1000, 3000)


def count_bin(n: int) -> int:
    """Coarse class of "how many rows hold this value": 1, 2, 3-4, 5-9, 10-29, ... (log-like)."""
    return bisect.bisect_right(_COUNT_BINS, n)


def same(value: str | None) -> str | None:
    """The value itself (the derivation of a column's own counts)."""
    return value


_SHIFT = max(0, sys.hash_info.width - 32)  # a hash's top 32 bits


class ValueCounts:
    """Rows of a whole table per value of one column, in bounded memory: a value two or more rows hold
    is counted exactly; a value one row holds is only remembered by the top 32 bits of its hash, in
    sorted arrays (4 bytes a value: an all-distinct column of millions of rows costs a few MB, not a
    dictionary of every value); the counts of values derived from it (a name's surname, an address's
    digit-masked shape) are summed as rows stream by. A value no row holds whose 32 bits collide
    with one that a single row holds counts 1 (a lookup in 2^32 / rows: 0.02% on a million rows): it
    is then treated as one a real row holds (never copied), which errs on the safe side. Hashes, not
    a Bloom filter: every step of adding a batch is a C loop (hash, shift, sort), where setting a
    filter's bits took about 2 µs of Python per value; numpy arrays, not Python lists of ints:
    hashing, shifting and sorting a million-value column took 0.70 s as a list, 0.13 s in numpy."""

    RUN = 1 << 20  # hashes sorted into one array at a time

    def __init__(self, derivations: Sequence[Callable[[str | None], str | None]] = ()) -> None:
        self.multi: dict[str | None, int] = {}
        self.runs: list[array[int]] = []  # each sorted: hash(value) >> 32 of values one row holds
        self._pending: list[np.ndarray] = []  # the same, not sorted yet
        self._pended = 0  # values in _pending
        self.derivations = [fn for fn in derivations if fn is not same]
        self.derived_counts: dict[Any, Counter[str | None]] = {fn: Counter() for fn in self.derivations}

    def add(self, value: str | None, n: int) -> None:
        self.add_all(((value, n),))

    def add_all(self, rows: Iterable[tuple[str | None, int]]) -> None:
        """:meth:`add` for many (a batch of a streamed count: records or pairs). Costs a few Python
        operations per value, none of them a call: an all-distinct column of millions of rows streams
        through here, so values one row holds are hashed in C and their derived values counted by
        ``Counter.update``."""
        multi, derived = self.multi, list(self.derived_counts.items())
        singles: list[str | None] = []  # held by one row
        filtered: list[str | None] = []  # remembered as held once: those, and any count below 2 (a scaled-down sample's)
        for value, n in rows:
            if n == 1:
                singles.append(value)
                continue
            if n >= 2:
                multi[value] = n
            else:
                filtered.append(value)
            for fn, counter in derived:
                counter[fn(value)] += n
        self._pend(filtered)
        self.add_singles(singles)

    def add_singles(self, singles: Sequence[str | None]) -> None:
        """:meth:`add` for values one row holds each (most of an all-distinct column's): hashed in C,
        their derived values counted by ``Counter.update``, a derivation with a form over a whole batch
        (:data:`_BATCHED`) taking it (one regular expression over the batch joined, not a call per value)."""
        self._pend(singles)
        joined: str | None = None  # the values joined by newlines, when none is None or holds one
        if singles and any(fn in _BATCHED for fn in self.derived_counts) and None not in singles:
            joined = "\n".join(singles)  # type: ignore[arg-type]  # (no None: checked)
            if joined.count("\n") != len(singles) - 1:
                joined = None
        steps: dict[Any, list[Any]] = {}  # a step several derivations share (a name's split), taken once per value
        for fn, counter in self.derived_counts.items():
            batched = _BATCHED.get(fn)
            if batched is not None and joined is not None:
                counter.update(batched(joined))
                continue
            via = _VIA.get(fn)
            if via is None:
                counter.update(map(fn, singles))
                continue
            step, pick = via
            done = steps.get(step)
            if done is None:
                done = steps[step] = list(map(step, singles))
            counter.update(map(pick, done, singles))

    def _pend(self, values: Sequence[str | None]) -> None:
        if not values:
            return
        import numpy as np  # (here: only a seeding counts; the listener and the gateway never load it)

        hashes = np.fromiter(map(hash, values), np.int64, len(values))
        hashes >>= _SHIFT
        self._pending.append(hashes.astype(np.int32))  # the top 32 bits of a 64-bit hash fit a signed int
        self._pended += len(values)
        if self._pended >= self.RUN:
            self.seal()

    def seal(self) -> None:
        """Sort the hashes added since the last run into a run of their own."""
        if self._pending:
            import numpy as np

            run = np.concatenate(self._pending)
            run.sort()
            # looked up as an array of C ints by bisect (numpy's searchsorted with a Python int costs a
            # pass over the run: the lookups of one seeding took 30 s)
            self.runs.append(array("i", run.astype(np.intc).tobytes()))
            self._pending, self._pended = [], 0

    @property
    def nbytes(self) -> int:
        """Bytes the values one row holds take once sorted."""
        return sum(r.itemsize * len(r) for r in self.runs) + 4 * self._pended

    def __getitem__(self, value: str | None) -> int:
        n = self.multi.get(value)
        if n is not None:
            return n
        if self._pending:
            self.seal()
        h = hash(value) >> _SHIFT
        for run in self.runs:
            i = bisect.bisect_left(run, h)
            if i < len(run) and run[i] == h:
                return 1
        return 0

    def derived(self, fn: Callable[[str | None], str | None]) -> ValueCounts | Counter[str | None]:
        """The counts of ``fn``'s values (``same``: these counts)."""
        return self if fn is same else self.derived_counts[fn]


class Counts(Protocol):
    """Rows per value (a Counter, :class:`ValueCounts`)."""

    def __getitem__(self, value: str | None, /) -> int: ...


class _Remembered:
    """Counts looked up once per value (a value :class:`ValueCounts` holds once is a binary search)."""

    def __init__(self, counts: Counts) -> None:
        self.counts = counts
        self.seen: dict[str | None, int] = {}

    def __getitem__(self, value: str | None, /) -> int:
        got = self.seen.get(value)
        if got is None:
            got = self.seen[value] = self.counts[value]
        return got


def _moves(counts: Counts, added: Counter[str | None], value: str | None) -> bool:
    """Whether one more row holding ``value`` moves the canaries that hold it to another count class."""
    if not added[value]:
        return False
    n = counts[value] + added[value]
    return count_bin(n) != count_bin(n + 1)


def _split(name: str | None) -> tuple[str, str, str] | None:
    return split_name(name) if name else None


def _surname(split: tuple[str, str, str] | None, name: str | None) -> str | None:
    return split[1] if split else name


def _given(split: tuple[str, str, str] | None, name: str | None) -> str | None:
    return split[2] if split else name


def surname_key(name: str | None) -> str | None:
    return _surname(_split(name), name)


def given_key(name: str | None) -> str | None:
    return _given(_split(name), name)


#: derivations computed from one shared step (a name's split): :meth:`ValueCounts.add_all` takes the
#: step once per value for all of them (derivation -> (step, pick(step's result, value)))
_VIA: dict[Callable[[str | None], str | None], tuple[Callable[[str | None], Any], Callable[[Any, str | None], str | None]]] = {
    surname_key: (_split, _surname),
    given_key: (_split, _given),
}


def text_length(text: str | None) -> int:
    return len(text) if text else 0


def word_count(text: str | None) -> int:
    return len(text.split()) if text else 0


_DIGIT_RUNS = re.compile(r"\d+")


def shape_key(text: str | None) -> str | None:
    return _DIGIT_RUNS.sub("9", text) if text else text


_DIGIT_MASK = str.maketrans("0123456789", "9999999999")


def lead_key(text: str | None) -> str | None:
    """The first two words of a text, each digit masked (``2416 Oak Ave, ...`` -> ``9999 Oak``): an
    insider counts an address's leading words as well as its whole shape, and in a US address they
    are a house number's length with its street's first word. A canary whose shape is as common as
    a real row's can still pair its street with a number length no row of that street has (50
    Thomas Rd where Thomas streets' numbers run to four digits): 6.5% of canaries were alone in
    this against 3.7% of real rows."""
    if not text:
        return text
    return " ".join(text.split(None, 2)[:2]).translate(_DIGIT_MASK)  # the two words masked, not the whole text: half the time


_NOT_DIGITS = re.compile(r"\D+")


def area_key(code: str | None) -> str | None:
    """A postcode's first three digits (a US ZIP's sectional centre, ``62704`` -> ``627``), None for
    one with fewer: an insider counts how many rows share a canary's postal area, not only its
    postcode and the postcode's region."""
    if not code:
        return code
    digits = code if code.isdecimal() else _NOT_DIGITS.sub("", code)  # (isdecimal: the characters \d matches)
    return digits[:3] if len(digits) >= 3 else None


def _shapes(joined: str) -> list[str]:
    """:func:`shape_key` of each line of ``joined`` (texts joined by newlines, none holding one), over
    them all at once: ASCII text masked (every digit a 9) and its runs of 9s halved until single
    (a third of the time the substitution takes); other text (``\\d`` matches any script's digits)
    by the substitution."""
    if not joined.isascii():
        return _DIGIT_RUNS.sub("9", joined).split("\n")
    masked = joined.translate(_DIGIT_MASK)
    while "99" in masked:
        masked = masked.replace("99", "9")
    return masked.split("\n")


def _leads(joined: str) -> Iterable[str]:
    """:func:`lead_key` of each line of ``joined``: masked at once, then each line's first two words."""
    return (" ".join(t.split(None, 2)[:2]) for t in joined.translate(_DIGIT_MASK).split("\n"))


#: derivations with a form over a batch of values (:meth:`ValueCounts.add_singles`: joined by newlines)
_BATCHED: dict[Callable[[str | None], str | None], Callable[[str], Iterable[str | None]]] = {
    shape_key: _shapes,
    lead_key: _leads,
}


@dataclass(frozen=True, slots=True)
class Across:
    """A key derived from several columns of a candidate (its column in :attr:`FrequencyMatch.keys`
    is only a label): the joint value a :class:`Tally` counts, an address's first word with a
    postcode's leading digits."""

    tally: Tally
    at: int = 0  # which of the tally's feature sets

    def __call__(self, cand: Mapping[str, str | None]) -> str:
        return self.tally.value(cand, self.at)


@dataclass(frozen=True, slots=True)
class Rarest:
    """A key with several values per candidate, counted by the least common of them: a text's rarest
    word (``fn``: the words of a value)."""

    fn: Callable[[str | None], frozenset[str]]


def key_values(col: str, fn: Any, cand: Mapping[str, str | None]) -> tuple[str | None, ...]:
    """The values a key derives from a candidate (one, or with :class:`Rarest` each word)."""
    if isinstance(fn, Across):
        return (fn(cand),)
    if isinstance(fn, Rarest):
        return tuple(sorted(fn.fn(cand.get(col))))
    return (fn(cand.get(col)),)


def held(counts: Counts, added: Counter[str | None] | None, values: Sequence[str | None]) -> int:
    """Rows holding a key's values: the least held of them (0 for none)."""
    if added is None:
        return min((counts[v] for v in values), default=0)
    return min((counts[v] + added[v] for v in values), default=0)


#: candidate lists whose canary-held candidates are kept (:meth:`FrequencyMatch._held_among`): one per
#: bucket an owned contact point places rows in, and the shape splits of those
HELD_LISTS = 4096
#: other real rows' targets a draw that may not join canaries tries before it takes a join after all
UNJOINED_TRIES = 10


@dataclass(slots=True)
class _HeldAmong:
    """One candidate list's candidates whose primary value canaries hold, and how far the log was read."""

    among: Sequence[Mapping[str, str | None]]  # kept, so no other list takes its id
    ids: frozenset[int]
    held: list[Mapping[str, str | None]] = field(default_factory=list)
    read: int = 0


@dataclass
class FrequencyMatch:
    """Draws candidates (a person's names, a row's location columns) so that how many rows of the
    table hold each of their values matches how many rows hold a real row's values.

    ``keys``: (column, derivation) pairs an insider can count (the full name and its surname; the
    address, its digit-masked shape and the postcode; pairs of columns' features the table relates,
    :class:`Across`; an address's rarest word, :class:`Rarest`); ``counts``: rows of the whole table per
    derived value; ``targets``: the real rows' count classes (:func:`count_bin`) per key, one tuple per sampled
    row. Each canary takes a random real row's classes and the candidate closest to them (of those as
    close, one whose classes canaries have had least so far: :meth:`_lack`). The primary
    value (the first key) is taken only when no real row holds it or at least ``k`` do (never a value
    that identifies a person); values canaries already hold count too, so two canaries may share a
    fresh value where real rows come in pairs (a family's address).
    """

    keys: tuple[tuple[str, Any], ...]  # (column, derivation); an Across derivation reads several columns, Rarest several values
    counts: tuple[Counts, ...]
    targets: tuple[tuple[int, ...], ...]
    pool: list[Mapping[str, str | None]]
    traits: tuple[tuple[str, Any], ...] = ()  # (column, class function) compared as they are: word counts
    #: per key, how many times a class step away from the target counts in a candidate's distance (1 for
    #: keys not named): a key whose count a thief reads together with the primary one (an address's
    #: shape: "my address is my own, but my street and town are other rows'") weighs more
    weights: tuple[int, ...] = ()
    k: int = MIN_SHARED
    #: per target (the same sampled row), its key values at least k rows of the table hold (None for the
    #: others and a Rarest key's): :meth:`real_values`; empty, the classes alone decide
    shared: tuple[tuple[str | None, ...], ...] = ()
    added: tuple[Counter[str | None], ...] = ()
    #: per key, the values canaries hold in the order the first of them came to hold each (what a
    #: caller that split candidates by "a canary holds this" must look at again since it last did)
    taken: tuple[list[str | None], ...] = ()
    credit: Counter[int] = field(default_factory=Counter)  # primary count classes canaries reached by being joined
    owed: Counter[int] = field(default_factory=Counter)  # primary count classes canaries left by being joined
    _by_primary: dict[int, list[tuple[int, ...]]] = field(default_factory=dict)  # targets by primary class
    memo: dict[int, tuple[list[tuple[str | None, ...]], list[int]]] = field(default_factory=dict)  # id(candidate) -> key values, traits
    #: the pool by signature (count classes as if drawn now, then traits), kept up to date as canaries
    #: take values: a draw scores each distinct signature once instead of each candidate
    _buckets: dict[tuple[int, ...], list[int]] = field(default_factory=dict)
    _firsts: dict[int, dict[tuple[int, ...], None]] = field(default_factory=dict)  # signatures by primary class
    _sig: list[tuple[int, ...] | None] = field(default_factory=list)
    _slot: list[int] = field(default_factory=list)  # position of each candidate in its bucket
    _holders: list[dict[str | None, list[int]]] = field(default_factory=list)  # per key: value -> candidates
    _at: dict[int, int] = field(default_factory=dict)  # id(candidate) -> its place in the pool
    _scored: int = 0  # candidates of draws among some scored afresh, before the pool was indexed
    #: per place of a target (key classes, then traits): how many drawn canaries had each class when drawn
    drawn: list[Counter[int]] = field(default_factory=list)
    _shares: list[Counter[int]] = field(default_factory=list)  # the same for the targets (real rows)
    _holding: dict[str | None, Mapping[str, str | None]] = field(default_factory=dict)  # primary value -> the candidate canaries took it with
    _held_lists: dict[int, _HeldAmong] = field(default_factory=dict)  # id(among) -> its candidates canaries hold (_held_among)
    _shared_of: dict[tuple[int, ...], list[tuple[str | None, ...]]] = field(default_factory=dict)  # target -> its rows' shared values
    _weights: tuple[int, ...] = field(default=(), init=False)  # weights, one per key and trait

    def __post_init__(self) -> None:
        self._weights = tuple(self.weights[j] if j < len(self.weights) else 1 for j in range(len(self.keys) + len(self.traits)))
        self.added = tuple(Counter() for _ in self.keys)
        self.taken = tuple([] for _ in self.keys)
        self.counts = tuple(_Remembered(c) for c in self.counts)
        for t, values in zip(self.targets, self.shared, strict=False):
            if any(v is not None for v in values):
                self._shared_of.setdefault(t, []).append(values)

    def _signature(self, i: int) -> tuple[int, ...]:
        """Count classes as if drawn now, traits, then how many classes of canaries drawn before it
        would change: ``_bins(vals) + traits + (_disturbs(vals),)`` in one pass over the key values,
        each value's counts looked up once. Every draw signs again the candidates holding the values
        it took (10,000 canaries: tens of thousands of signatures, a third of the draws' time when
        the two passes each looked every value up)."""
        vals, traits = self._derived(self.pool[i])
        bins: list[int] = []
        disturbs = 0
        for j, (c, a, vs) in enumerate(zip(self.counts, self.added, vals)):
            least: int | None = None
            moves = False
            for v in vs:
                joined = a.get(v, 0)
                n = c[v] + joined
                if least is None or n < least:
                    least = n
                if joined and j and not moves:  # _moves (the primary key's joins are made up for: credit)
                    moves = bisect.bisect_right(_COUNT_BINS, n) != bisect.bisect_right(_COUNT_BINS, n + 1)
            bins.append(bisect.bisect_right(_COUNT_BINS, (least or 0) + 1))
            disturbs += moves
        return (*bins, *traits, disturbs)

    def _bins(self, vals: Sequence[tuple[str | None, ...]]) -> tuple[int, ...]:
        """Count classes of a candidate's key values as if it were drawn now."""
        return tuple(count_bin(held(c, a, v) + 1) for c, a, v in zip(self.counts, self.added, vals))

    def _disturbs(self, vals: Sequence[tuple[str | None, ...]]) -> int:
        """Keys (but the primary one, whose joins :attr:`credit` makes up for) on which drawing the
        candidate would move canaries drawn before it to another count class: a canary that matched
        a real row's "nobody else has this postcode" must not lose that to a later one."""
        return sum(1 for c, a, vs in zip(self.counts[1:], self.added[1:], vals[1:]) if any(_moves(c, a, v) for v in vs))

    def _index(self) -> None:
        """Bucket the pool once (candidates whose primary value fewer than k real rows hold are left out)."""
        self._holders = [{} for _ in self.keys]
        self._sig = [None] * len(self.pool)
        self._slot = [0] * len(self.pool)
        for i, cand in enumerate(self.pool):
            self._at.setdefault(id(cand), i)
            vals, _ = self._derived(cand)
            if 0 < self.counts[0][vals[0][0]] < self.k:
                continue
            for holders, vs in zip(self._holders, vals):
                for v in vs:
                    holders.setdefault(v, []).append(i)
            self._put(i, self._signature(i))

    def _put(self, i: int, sig: tuple[int, ...]) -> None:
        bucket = self._buckets.get(sig)
        if bucket is None:
            bucket = self._buckets[sig] = []
            self._firsts.setdefault(sig[0], {})[sig] = None
        self._sig[i], self._slot[i] = sig, len(bucket)
        bucket.append(i)

    def _move(self, i: int) -> None:
        old = self._sig[i]
        if old is None:
            return
        new = self._signature(i)
        if new == old:
            return
        bucket, at = self._buckets[old], self._slot[i]
        last = bucket.pop()
        if last != i:  # swap-remove: the last candidate takes i's place
            bucket[at], self._slot[last] = last, at
        if not bucket:
            del self._buckets[old]
            del self._firsts[old[0]][old]
        self._put(i, new)

    def _lack(self, sig: Sequence[int]) -> int:
        """How far a candidate's classes and traits (``sig``) are behind the real rows': per place, the
        real rows holding its class scaled to the canaries drawn so far less the canaries that had
        it, summed (in units of one target, so every place weighs alike). Among candidates as close
        to a target, the one whose classes canaries have had least so far: otherwise the closest
        ones tie often (a target nothing in the pool matches exactly), uniform among them favours
        the classes the pool is richest in, and every canary errs the same way (the table's
        addresses whose shape no other row has are few in the pool: 68% of canaries had one
        against 77% of real rows)."""
        self._tally_targets()
        n, total = sum(self.drawn[0].values()) + 1, len(self.targets)
        return sum(share[c] * n - drawn[c] * total for share, drawn, c in zip(self._shares, self.drawn, sig))

    def _tally_targets(self) -> None:
        """The targets' classes counted per place, once (and the drawn canaries' counters beside them)."""
        if not self._shares and self.targets:
            self._shares = [Counter(t[j] for t in self.targets) for j in range(len(self.targets[0]))]
            self.drawn = [Counter() for _ in self._shares]

    def _closest(self, rng: random.Random, want: tuple[int, ...], exact: bool = False) -> Mapping[str, str | None] | None:
        """A candidate of the whole pool at the least distance from ``want``, uniform among the
        closest whose classes canaries lack most (:meth:`_lack`; with ``exact``, only among those of
        its primary class)."""
        if not self._sig:
            self._index()
        if self._buckets.get((*want, 0)):  # candidates exactly like it (no other signature is as close)
            return self._pick(rng, want, [(*want, 0)])
        best: float | None = None
        tied: list[tuple[int, ...]] = []
        # primary classes nearest first: a signature is at least as far as its primary class
        firsts = ([want[0]] if want[0] in self._firsts else []) if exact else sorted(self._firsts, key=lambda f: (abs(f - want[0]), f))
        for first in firsts:
            if best is not None and abs(first - want[0]) > best:
                break
            for sig in self._firsts[first]:
                d = sig[-1]
                for x, w, m in zip(sig, want, self._weights):
                    d += (x - w if x >= w else w - x) * m
                    if best is not None and d > best:
                        break
                else:
                    if best is None or d < best:
                        best, tied = d, [sig]
                    elif d == best:
                        tied.append(sig)
        if tied:
            lacks = [self._lack(sig) for sig in tied]
            most = max(lacks)
            tied = [t for t, lack in zip(tied, lacks, strict=True) if lack == most]
        return self._pick(rng, want, tied)

    def _like(self, rng: random.Random, want: tuple[int, ...]) -> tuple[str | None, ...] | None:
        """The values at least k rows hold of one real row whose classes are ``want`` (drawn among
        them), or None."""
        rows = self._shared_of.get(want)
        return rows[rng.randrange(len(rows))] if rows else None

    def _pick(self, rng: random.Random, want: tuple[int, ...], sigs: Sequence[tuple[int, ...]]) -> Mapping[str, str | None] | None:
        """A candidate of the buckets ``sigs`` (all as close to ``want``): of those holding most of the
        shared values of a real row with ``want``'s classes (:meth:`_like`: its town, its postcode, its
        state's postcode area), uniform among them; else uniform among all. Classes say how common a
        value is, not which one: among candidates of one class (the towns of 300 to 999 rows) a
        uniform draw follows the pool, which composes more novel addresses in some towns than in
        others (bench: 4.6% of canaries in Los Angeles' 900 area against 2.0% of real rows); a real
        row's own values make canaries follow the real rows' mix of them."""
        total = sum(len(self._buckets[sig]) for sig in sigs)
        if not total:
            return None
        like = self._like(rng, want)
        if like is not None:
            matched: Counter[int] = Counter()
            lists = [holders.get(v, ()) for holders, v in zip(self._holders, like) if v is not None]
            if sum(map(len, lists)) <= total:  # the candidates holding its values are fewer: walk those
                inside = set(sigs)
                for held_by in lists:
                    for i in held_by:
                        if self._sig[i] in inside:
                            matched[i] += 1
            else:  # the tied candidates are fewer (a common surname's holders run to thousands)
                for sig in sigs:
                    for i in self._buckets[sig]:
                        n = self._alike(like, self.pool[i])
                        if n:
                            matched[i] = n
            if matched:
                most = max(matched.values())
                best = [i for i, n in matched.items() if n == most]
                return self.pool[best[rng.randrange(len(best))]]
        r = rng.randrange(total)
        for sig in sigs:
            bucket = self._buckets[sig]
            if r < len(bucket):
                return self.pool[bucket[r]]
            r -= len(bucket)
        return None

    def _alike(self, like: Sequence[str | None], cand: Mapping[str, str | None]) -> int:
        """How many of a real row's shared values (:meth:`_like`) the candidate holds."""
        return sum(1 for v, vs in zip(like, self._derived(cand)[0]) if v is not None and v in vs)

    def _values(self, cand: Mapping[str, str | None]) -> list[tuple[str | None, ...]]:
        return self._derived(cand)[0]

    def _derived(self, cand: Mapping[str, str | None]) -> tuple[list[tuple[str | None, ...]], list[int]]:
        hit = self.memo.get(id(cand))
        if hit is None:
            hit = self.memo[id(cand)] = ([key_values(col, fn, cand) for col, fn in self.keys], [fn(cand.get(col)) for col, fn in self.traits])
        return hit

    def target(self, rng: random.Random, among: bool = False) -> tuple[int, ...] | None:
        """A real row's classes for the next canary to match (None without targets): a caller that
        narrows the candidates by one key (an address shape no other row has) decides from the
        target it then hands to :meth:`draw`, not before it, or it narrows away what the target asks for.
        For a draw ``among`` some candidates, a class canaries left when another one joined them
        is made up first: a real row's of that class stands in (the whole pool's draw does this itself)."""
        if not self.targets:
            return None
        owed = sorted(b for b, n in self.owed.items() if n > 0) if among else []
        if owed:
            self.owed[owed[0]] -= 1
            return rng.choice(self.of_primary(owed[0]))
        want = rng.choice(self.targets)
        for _ in range(20):  # targets already met by canaries another one joined
            if not self.credit[want[0]]:
                break
            self.credit[want[0]] -= 1
            want = rng.choice(self.targets)
        return want

    def of_primary(self, cls: int) -> Sequence[tuple[int, ...]]:
        """The targets whose primary class is ``cls`` (all of them when none is)."""
        if not self._by_primary:
            for t in self.targets:
                self._by_primary.setdefault(t[0], []).append(t)
        return self._by_primary.get(cls) or self.targets

    def joined_only(self) -> set[int]:
        """Primary classes no candidate has unless canaries share its value (one other row holds it:
        a canary never takes a value fewer than k real rows hold)."""
        return {count_bin(n) for n in range(2, self.k + 1)} - {count_bin(self.k + 1)}

    def _held_among(self, among: Sequence[Mapping[str, str | None]]) -> list[Mapping[str, str | None]]:
        """The candidates of ``among`` whose primary value canaries hold, kept up to date as canaries take
        values (the :attr:`taken` log read from where this list last left it). A sample of a long list
        rarely has one, so a canary placed by its contact point would almost never share an address
        where real rows come in pairs (bench: 0% of canaries against 11% of real rows)."""
        known = self._held_lists.get(id(among))
        if known is None or known.among is not among:
            known = self._held_lists[id(among)] = _HeldAmong(among, frozenset(map(id, among)))
            if len(self._held_lists) > HELD_LISTS:
                self._held_lists.pop(next(iter(self._held_lists)))
        log = self.taken[0]
        for v in log[known.read:]:
            cand = self._holding.get(v)
            if cand is not None and id(cand) in known.ids:
                known.held.append(cand)
        known.read = len(log)
        return known.held

    def _primary_bin(self, cand: Mapping[str, str | None]) -> int:
        """``cand``'s primary count class as if drawn now."""
        v = self._values(cand)[0][0]
        return count_bin(self.counts[0][v] + self.added[0][v] + 1)

    def draw(self, rng: random.Random, tries: int = 600,
             among: Sequence[Mapping[str, str | None]] | None = None,
             want: tuple[int, ...] | None = None, joins: bool = True) -> Mapping[str, str | None] | None:
        """A candidate (of ``among``, when given: those that fit something else about the row) matching
        ``want`` (a real row's classes, :meth:`target`; drawn here when not given). Without ``joins``,
        not one whose primary value only canaries hold (the closest other one, as far as
        :data:`UNJOINED_TRIES` other targets find one: a row that cannot join them as they would be joined)."""
        if not self.targets or not self.pool:
            return None
        choice = self._drawn(rng, tries, among, want)
        for _ in range(0 if joins else UNJOINED_TRIES):
            if choice is None or not self.joins(choice):
                break
            want = rng.choice(self.targets)
            if want[0] in self.joined_only():
                continue
            if among is None:
                choice = self._closest(rng, want) or choice
            else:
                sample = among if len(among) <= tries else rng.sample(among, tries)
                choice = self._best_of(rng, [c for c in sample if not self.joins(c)], want) or choice
        if choice is None:
            return None
        return self._taken(choice)

    def joins(self, cand: Mapping[str, str | None]) -> bool:
        """Whether ``cand``'s primary value is one only canaries hold (drawing it joins them)."""
        v = self._values(cand)[0][0]
        return bool(self.added[0][v]) and not self.counts[0][v]

    def _drawn(self, rng: random.Random, tries: int, among: Sequence[Mapping[str, str | None]] | None,
               want: tuple[int, ...] | None) -> Mapping[str, str | None] | None:
        """The candidate :meth:`draw` takes, before it is counted."""
        want = want or self.target(rng, among=among is not None)
        assert want is not None
        choice: Mapping[str, str | None] | None = None
        if among is None:
            if not self._sig:
                self._index()
            owed = sorted(b for b, n in self.owed.items() if n > 0)
            if owed:  # a class canaries left when another one joined them: a real row's of that class stands in
                self.owed[owed[0]] -= 1
                stand_in = rng.choice(self.of_primary(owed[0]))
                choice = self._closest(rng, stand_in, exact=True)
                if choice is None:  # nothing of that class is left to draw (its values are the canaries' own now)
                    self.owed[owed[0]] = 0
            # a real row whose primary value one other row holds (a family's address) has no candidate
            # like it unless canaries share one (a canary never takes a value fewer than k rows hold):
            # its primary class is matched exactly or another real row's target stands in, since a
            # compromise there would only bend the other keys' classes
            joined_only = self.joined_only()
            for _ in range(20):
                if choice is not None or want[0] not in joined_only:
                    break
                choice = self._closest(rng, want, exact=True)
                if choice is not None:
                    break
                want = rng.choice(self.targets)
            if choice is None:
                choice = self._closest(rng, want)
        else:
            sample = among if len(among) <= tries else rng.sample(among, tries)
            if not self._sig and self._scored >= len(self.pool):  # indexing the pool costs what scoring it once does
                self._index()
            if want[0] in self.joined_only():  # as the whole pool's path: the primary class matched exactly when it can be
                choice = self._best_of(rng, [c for c in self._held_among(among) if self._primary_bin(c) == want[0]], want)
            choice = choice or self._best_of(rng, sample, want)
        return choice

    def _taken(self, choice: Mapping[str, str | None]) -> Mapping[str, str | None]:
        """``choice``, counted as drawn: its values' rows, the classes canaries now have, the
        candidates whose classes moved."""
        vals, traits = self._derived(choice)
        self._tally_targets()
        for drawn, cls in zip(self.drawn, self._bins(vals) + tuple(traits)):
            drawn[cls] += 1
        primary = vals[0][0]
        joined, real = self.added[0][primary], self.counts[0][primary]
        if joined and count_bin(real + joined) != count_bin(real + joined + 1):  # the canaries holding it move up, too
            self.credit[count_bin(real + joined + 1)] += joined
            self.owed[count_bin(real + joined)] += joined
        for j, (c, a, vs) in enumerate(zip(self.counts, self.added, vals)):
            for v in vs:
                moved = count_bin(c[v] + a[v] + 1) != count_bin(c[v] + a[v] + 2)
                was = _moves(c, a, v)
                if not a[v]:
                    self.taken[j].append(v)
                    if j == 0:
                        self._holding[v] = choice
                a[v] += 1
                if (moved or was != _moves(c, a, v)) and self._sig:  # the candidates holding v now count one more row
                    for i in self._holders[j].get(v, ()):
                        self._move(i)
        return choice

    def _best_of(self, rng: random.Random, sample: Sequence[Mapping[str, str | None]],
                 want: tuple[int, ...]) -> Mapping[str, str | None] | None:
        """A candidate of ``sample`` at the least distance from ``want``; of those as close, one whose
        classes canaries lack most (:meth:`_lack`, as :meth:`_closest`), then one holding most of a real
        row's shared values (as :meth:`_pick`), drawn uniformly among those left tied (those whose
        primary value fewer than k real rows hold are skipped). The pool's
        candidates are grouped by signature first: a signature is scored once per draw, its lack
        reckoned only when its score is the least, and one draw picks among the tied (10,000
        canaries placed by their contact point look at 600 candidates each)."""
        n_keys = len(self.keys)
        groups: dict[tuple[int, ...], list[Mapping[str, str | None]]] = {}
        alone: list[tuple[int, tuple[int, ...], Mapping[str, str | None]]] = []  # candidates outside the pool
        sigs = self._sig
        ats = list(map(self._at.get, map(id, sample))) if sigs else [None] * len(sample)
        for cand, at in zip(sample, ats):
            if at is not None:  # a candidate of the pool: its signature is kept current (_move)
                sig = sigs[at]
                if sig is None:  # its primary value fewer than k real rows hold
                    continue
                members = groups.get(sig)
                if members is None:
                    groups[sig] = [cand]
                else:
                    members.append(cand)
                continue
            vals, traits = self._derived(cand)
            real = self.counts[0][vals[0][0]]
            if 0 < real < self.k:
                continue
            classes = self._bins(vals) + tuple(traits)
            score = sum(abs(b - w) * m for b, w, m in zip(classes, want[:n_keys], self._weights)) + self._disturbs(vals)
            score += sum(abs(t - w) * m for t, w, m in zip(traits, want[n_keys:], self._weights[n_keys:]))
            self._scored += 1
            alone.append((score, classes, cand))
        scored: list[tuple[int, tuple[int, ...], Sequence[Mapping[str, str | None]]]] = [
            (sig[-1] + sum((x - w if x >= w else w - x) * m for x, w, m in zip(sig, want, self._weights)), sig, members)
            for sig, members in groups.items()]
        scored += [(score, classes, (cand,)) for score, classes, cand in alone]
        if not scored:
            return None
        least = min(s for s, _, _ in scored)
        closest = [(self._lack(classes), members) for s, classes, members in scored if s == least]
        most = max(lack for lack, _ in closest)
        tied = [c for lack, members in closest if lack == most for c in members]
        like = self._like(rng, want)
        if like is not None and len(tied) > 1:  # then those holding most of a real row's shared values, as _pick
            alike = [self._alike(like, c) for c in tied]
            top = max(alike)
            tied = [c for c, n in zip(tied, alike) if n == top]
        return tied[rng.randrange(len(tied))]

    @staticmethod
    def real_values(keys: Sequence[tuple[str, Any]], counts: Sequence[Counts], sample: Sequence[Mapping[str, str | None]],
                    nulls: bool = False, k: int = MIN_SHARED) -> tuple[tuple[str | None, ...], ...]:
        """Per sampled row (the rows of :meth:`real_targets`, in its order), its key values that at least
        ``k`` rows of the table hold (None for the others and for a :class:`Rarest` key's)."""
        first = keys[0][0]
        out = []
        for r in sample:
            if not nulls and r.get(first) is None:
                continue
            row: list[str | None] = []
            for (col, fn), c in zip(keys, counts):
                v = None if isinstance(fn, Rarest) else key_values(col, fn, r)[0]
                row.append(v if v is not None and c[v] >= k else None)
            out.append(tuple(row))
        return tuple(out)

    @staticmethod
    def real_targets(keys: Sequence[tuple[str, Any]], counts: Sequence[Counts],
                     sample: Sequence[Mapping[str, str | None]], traits: Sequence[tuple[str, Any]] = (),
                     nulls: bool = False) -> tuple[tuple[int, ...], ...]:
        """The sampled rows' count classes (and traits); rows whose primary column is NULL only with
        ``nulls`` (when candidates may have a NULL there, too: a location without an address)."""
        first = keys[0][0]
        return tuple(
            tuple(count_bin(held(c, None, key_values(col, fn, r))) for (col, fn), c in zip(keys, counts))
            + tuple(fn(r.get(col)) for col, fn in traits)
            for r in sample if nulls or r.get(first) is not None
        )
