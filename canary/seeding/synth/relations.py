"""Relations between columns, learned from the table: which features derived from the columns (a
phone's leading digits, an address's first word, an e-mail's domain or the digits of its local
part, a date's year, a value's format, whether it is NULL, the value itself where many rows share
it) depend on each other, and how: the distribution of one given the other, over buckets that many
sampled rows share.

Nothing is hand-listed: every pair of features of two columns is measured on the sample (mutual
information over buckets at least ``k`` rows share, less what the same features share by chance), and
the pairs that depend on each other beyond chance are kept, the most informative pair per two
columns (and, where that is too little to draw one from the other, as a weak dependence: a few
landlines among mobiles, whose area codes still go with the region). The cost is bounded: at most :data:`MAX_FEATURES` features of a fixed small set of
extractors, each pair one pass over the sample.

Every feature has a Python form (for sampled and synthesised values, all PostgreSQL text) and the
same feature as an SQL expression (so the database can count a pair of features over the whole
table in bounded memory: :class:`Tally`).
"""

from __future__ import annotations

import enum
import math
import random
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from canary.seeding.catalog import TableInfo
from canary.seeding.synth.shapes import MIN_SHARED, Semantic, Weighted, semantic_of

#: at most this many features are compared pairwise (O(features² × sample))
MAX_FEATURES = 40
#: at most this many relations are kept (the strongest)
MAX_RELATIONS = 24
#: a relation is kept when its features share at least this much information beyond chance (nats) ...
MIN_INFORMATION = 0.05
#: ... and that is at least this share of the smaller feature's entropy
MIN_NORMALIZED = 0.1
#: shuffles of one side that measure the information of two features by chance: with 4, the spread of
#: chance was so uncertain that a real dependence (a Korean region's landline codes, 0.02-0.04 nats beyond
#: chance) failed the :data:`WEAK_SIGMAS` test in 3 of 20 samples of 2,000 rows, and a spurious one (whether
#: the phone is NULL, by the address's last word) passed in its place; with 8, none of the 20 did
PERMUTATIONS = 8
#: a pair of features too weakly related to draw one from the other is still a dependence
#: (:attr:`Relations.weak`) when its information exceeds chance by this many of chance's standard deviations
WEAK_SIGMAS = 4.0
#: a :class:`Tally` of a larger table counts a sample of its pages this many rows large
TALLY_ROWS = 200_000

_MASK = str.maketrans(string.digits, "9" * 10)
#: digits first: PostgreSQL's translate() walks its lists to each character's place (a phone's digits
#: then cost 10 steps, not 62: the all-distinct phones of a 200,000-row tally scanned 5x faster)
_FORM_FROM = string.digits + string.ascii_lowercase + string.ascii_uppercase
_FORM_TO = "9" * 10 + "a" * 26 + "A" * 26
_FORM = str.maketrans(_FORM_FROM, _FORM_TO)
_NON_DIGITS = re.compile(r"[^0-9]")
_LAST_DIGITS = re.compile(r"([0-9]+)[^0-9]*$")
#: the two-digit country calling codes (ITU-T E.164; 1 and 7 are the one-digit ones, all others have three)
_CC2 = ("20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47", "48", "49", "51", "52",
        "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65", "66", "81", "82", "84", "86", "90", "91", "92",
        "93", "94", "95", "98")
#: The last word without digits, followed only by words with digits (``…, Springfield, IL 62704`` ->
#: ``IL``), searched in " " + the value's last :data:`TAIL_CHARS` characters. One pattern for Python and
#: PostgreSQL's regular expressions: its match is unique (a whole word) and each word can match only
#: one way (no backtracking blow-up on hostile text), so both engines find the same one.
_TAIL_SQL = " ([^ 0-9]+)(?: +[^ 0-9]*[0-9][^ ]*)* *$"
TAIL_CHARS = 256
_TAIL = re.compile(_TAIL_SQL[:-1] + r"\Z")
#: joins the parts of a value derived from several columns; stands for NULL in such a value
SEP, NULL_PART = "\x1f", "\x1e"
#: the bucket of feature values fewer than ``k`` sampled rows share
OTHER = "\x1d"


class Kind(enum.StrEnum):
    """The fixed set of extractors."""

    NULL = "null"  # whether the value is NULL
    VALUE = "value"  # the value itself (columns whose values many rows share: status, gender, region)
    HEAD = "head"  # the first word, digits masked (an address's region, a Latin name's given name)
    TAIL = "tail"  # the last word without digits, trailing , . ; cut (a US address's state, before any ZIP)
    LEAD2 = "lead2"  # the first two digits (a postcode's area)
    LEAD3 = "lead3"  # the first three digits (a phone's area or mobile code)
    AREA = "area"  # a phone's first three digits as dialled within its country (the area code whatever the format)
    FORM = "form"  # ASCII letters and digits masked: 010-1234-5678 -> 999-9999-9999
    YEAR = "year"  # a date's year
    DOMAIN = "domain"  # an e-mail's domain
    DIGITS = "digits"  # the digits of an e-mail's local part, masked: "", "99", "9999"
    YY = "yy"  # the last two digits of an e-mail's local part (a birth year's)


@dataclass(frozen=True, slots=True)
class Feature:
    """A value derived from one column, in Python (:meth:`of`) and in SQL (:meth:`sql`), equal for
    every text value; NULL stays NULL (None) except for :attr:`Kind.NULL`."""

    column: str
    kind: Kind

    def __str__(self) -> str:
        return f"{self.kind}({self.column})"

    def of(self, value: str | None) -> str | None:
        if value is None:
            return None
        k = self.kind
        if k == Kind.NULL:
            return "set"
        if k == Kind.VALUE:
            return value
        if k == Kind.HEAD:
            return value.split(" ", 1)[0].translate(_MASK)
        if k == Kind.TAIL:
            m = _TAIL.search(" " + value[-TAIL_CHARS:])
            return m.group(1).rstrip(",.;") if m else None
        if k in (Kind.LEAD2, Kind.LEAD3):
            return _NON_DIGITS.sub("", value)[: 2 if k == Kind.LEAD2 else 3]
        if k == Kind.AREA:
            return _area(value)
        if k == Kind.FORM:
            return value.translate(_FORM)
        if k == Kind.YEAR:
            return value[:4]
        if "@" not in value:
            return None
        local, _, domain = value.rpartition("@")
        if k == Kind.DOMAIN:
            return domain.lower()
        if k == Kind.DIGITS:
            return _NON_DIGITS.sub("", local).translate(_MASK)
        m = _LAST_DIGITS.search(local)
        return m.group(1)[-2:] if m else ""

    def sql(self, expr: str) -> str:
        """The feature of ``expr`` (a text expression) in PostgreSQL."""
        k = self.kind
        if k == Kind.NULL:
            return f"(CASE WHEN {expr} IS NOT NULL THEN 'set' END)"
        if k == Kind.VALUE:
            return expr
        if k == Kind.HEAD:
            return f"translate(split_part({expr}, ' ', 1), '0123456789', '9999999999')"
        if k == Kind.TAIL:
            return f"rtrim(substring(' ' || right({expr}, {TAIL_CHARS}) from '{_TAIL_SQL}'), ',.;')"
        if k in (Kind.LEAD2, Kind.LEAD3):
            return f"left(translate({expr}, translate({expr}, '0123456789', ''), ''), {2 if k == Kind.LEAD2 else 3})"
        if k == Kind.AREA:
            d = f"translate({expr}, translate({expr}, '0123456789', ''), '')"
            cc2 = ", ".join(f"'{c}'" for c in _CC2)
            return (f"(CASE WHEN ltrim({expr}, ' ') LIKE '+%' THEN substr({d}, CASE WHEN left({d}, 1) IN ('1', '7') THEN 2"
                    f" WHEN left({d}, 2) IN ({cc2}) THEN 3 ELSE 4 END, 3)"
                    f" WHEN {d} LIKE '0%' OR (length({d}) = 11 AND {d} LIKE '1%') THEN substr({d}, 2, 3) ELSE left({d}, 3) END)")
        if k == Kind.FORM:
            return f"translate({expr}, '{_FORM_FROM}', '{_FORM_TO}')"
        if k == Kind.YEAR:
            return f"left({expr}, 4)"
        # before and after the last '@' (NULL without one), by position: a regular expression took 3-5x longer
        at = f"strpos(reverse({expr}), '@')"
        local = f"(CASE WHEN {at} > 0 THEN left({expr}, length({expr}) - {at}) END)"
        if k == Kind.DOMAIN:
            return f"lower(CASE WHEN {at} > 0 THEN right({expr}, {at} - 1) END)"
        if k == Kind.DIGITS:
            return f"translate(translate({local}, translate({local}, '0123456789', ''), ''), '0123456789', '9999999999')"
        return f"coalesce(right(substring({local} from '([0-9]+)[^0-9]*$'), 2), {_when_local(expr)})"


def _area(value: str) -> str:
    """The first three digits of a phone number as dialled within its country: after the country
    calling code of an international number (``+1 (406) 555-0100``, ``+82 10-1234-5678``), the trunk
    prefix 0 (``010-1234-5678``) or the North American long-distance 1 (``1-406-555-0100``), so that one
    area code is one value whatever format a row wrote it in."""
    cut = area_start(value)
    return _NON_DIGITS.sub("", value)[cut:cut + 3]


def area_start(value: str) -> int:
    """Where :attr:`Kind.AREA` starts among a phone number's digits (after the country calling code,
    the trunk 0 or the North American 1)."""
    digits = _NON_DIGITS.sub("", value)
    if value.lstrip(" ").startswith("+"):
        return 1 if digits[:1] in ("1", "7") else 2 if digits[:2] in _CC2 else 3
    return 1 if digits.startswith("0") or (len(digits) == 11 and digits.startswith("1")) else 0


def _when_local(expr: str) -> str:
    return f"(CASE WHEN strpos({expr}, '@') > 0 THEN '' END)"


def joint(features: Sequence[Feature], row: Mapping[str, str | None]) -> str:
    """The features of one row joined into one value."""
    return SEP.join(NULL_PART if v is None else v for v in (f.of(row.get(f.column)) for f in features))


def words(value: str | None) -> frozenset[str]:
    """The words of a text, digits masked (the tokens an insider counts: ``12 Main St`` -> 99, Main, St)."""
    if value is None:
        return frozenset()
    return frozenset(w for w in value.translate(_MASK).split(" ") if w)


@dataclass(frozen=True, slots=True)
class Tally:
    """Rows of the whole table per joint value of each set of features in ``sets`` (:meth:`value`:
    an address's first word with a postcode's leading digits), or with ``each_word``, per word of
    that column's values (:func:`words`, but a word one value holds twice counts twice here: words
    seldom repeat within an address, and counting them per row would cost the scan), counted by the
    database in one scan: the result is as large as the number of derived values, not the table. A
    table of more than :data:`TALLY_ROWS` rows (``rows``: its estimate) is counted on a sample of
    its pages and the counts scaled up, so the scan stays bounded: exact counts matter most for
    small tables, where one canary in a handful of rows moves them."""

    name: str
    sets: tuple[tuple[Feature, ...], ...] = ()
    each_word: str | None = None
    rows: int = 0

    def value(self, row: Mapping[str, str | None], at: int = 0) -> str:
        """The joint value of the features of ``sets[at]`` of one row, as :meth:`query` counts it."""
        return f"{at}{OTHER}{joint(self.sets[at], row)}"

    def query(self, table: str, text: Callable[[str], str]) -> str:
        """``SELECT v, n``: rows per derived value. ``table``: the quoted table; ``text(column)``: the
        quoted column as text."""
        source, count = table, "count(*)"
        if self.rows > TALLY_ROWS:
            share = TALLY_ROWS / self.rows
            source = f"{table} TABLESAMPLE SYSTEM ({100.0 * share:.6f}) REPEATABLE (0)"
            count = f"round(count(*) / {share:.9f})::bigint"
        if self.each_word is not None:
            return (f"SELECT w AS v, {count} AS n FROM {source}, unnest(string_to_array("
                    f"translate({text(self.each_word)}, '0123456789', '9999999999'), ' ')) AS w WHERE w <> '' GROUP BY 1")
        features = list(dict.fromkeys(f for fs in self.sets for f in fs))
        names = {f: f"x{i}" for i, f in enumerate(features)}
        derived = ", ".join(f"{f.sql(text(f.column))} AS {names[f]}" for f in features)
        cases = []
        for at, fs in enumerate(self.sets):
            mask = sum(1 << (len(features) - 1 - i) for i, f in enumerate(features) if f not in fs)  # GROUPING(): 1 = not grouped
            parts = f" || chr({ord(SEP)}) || ".join(f"coalesce({names[f]}, chr({ord(NULL_PART)}))" for f in fs)
            cases.append(f"WHEN {mask} THEN '{at}' || chr({ord(OTHER)}) || {parts}")
        grouping = ", ".join(names[f] for f in features)
        sets = ", ".join("(" + ", ".join(names[f] for f in fs) + ")" for fs in self.sets)
        return (f"SELECT CASE GROUPING({grouping}) {' '.join(cases)} END AS v, {count} AS n "
                f"FROM (SELECT {derived} FROM {source}) AS features GROUP BY GROUPING SETS ({sets})")


def candidate_features(info: TableInfo, sample: Sequence[Mapping[str, str | None]]) -> list[Feature]:
    """The features worth comparing for each column of the table, most telling kinds first."""
    out: list[Feature] = []
    n = max(len(sample), 1)
    for col in info.columns:
        if col.generated:
            continue
        values = [r.get(col.name) for r in sample]
        present = [v for v in values if v is not None]
        if not present:
            continue
        sem = semantic_of(col)
        distinct = len(set(present))
        kinds: list[Kind] = []
        if sem == Semantic.EMAIL:
            kinds = [Kind.DOMAIN, Kind.DIGITS, Kind.YY]
        elif col.category == "D":
            kinds = [Kind.YEAR]
        elif col.category in ("B", "E") or distinct <= max(2, n // (4 * MIN_SHARED)):
            kinds = [Kind.VALUE]
        elif col.category == "S":
            digits = sum(len(_NON_DIGITS.sub("", v)) for v in present[:200])
            length = sum(len(v) for v in present[:200])
            multiword = sum(" " in v.strip() for v in present[:200]) * 2 > len(present[:200])
            if sem == Semantic.PHONE or (digits * 2 > length and sem != Semantic.POSTCODE):
                kinds = [Kind.LEAD3, Kind.AREA, Kind.FORM] if sem == Semantic.PHONE else [Kind.LEAD3, Kind.FORM]
            elif sem == Semantic.POSTCODE or digits * 2 > length:
                kinds = [Kind.LEAD2, Kind.FORM]
            elif multiword:
                kinds = [Kind.HEAD, Kind.TAIL]
            elif sem in (Semantic.FIRST_NAME, Semantic.CITY, Semantic.STATE, Semantic.COUNTRY) or distinct * 2 <= len(present):
                kinds = [Kind.VALUE]
            elif sum(len(v) for v in present) <= 24 * len(present):
                kinds = [Kind.FORM]
        if not col.not_null and len(present) < n:
            kinds.append(Kind.NULL)
        out.extend(Feature(col.name, k) for k in kinds)
    return out


@dataclass(frozen=True, slots=True)
class _Encoded:
    feature: Feature
    codes: tuple[int, ...]  # bucket per sampled row
    buckets: tuple[str | None, ...]  # bucket per code (values k rows share, None for NULL, OTHER)
    entropy: float  # nats
    rows: Counter[int]  # sampled rows per code
    shuffled: tuple[tuple[int, ...], ...] = ()  # the codes in random orders (information by chance)


def _encode(feature: Feature, sample: Sequence[Mapping[str, str | None]], k: int) -> _Encoded | None:
    raw = [feature.of(r.get(feature.column)) for r in sample]
    counts = Counter(raw)
    kept = sorted((v for v, c in counts.items() if c >= k), key=lambda v: (v is None, v or ""))
    if any(c < k for c in counts.values()):
        kept.append(OTHER)
    if len(kept) < 2 or max(counts.values()) > len(raw) - k:  # one bucket (nearly) all rows fall in tells nothing
        return None
    index = {v: i for i, v in enumerate(kept)}
    other = index.get(OTHER, -1)
    codes = tuple(index.get(v, other) for v in raw)
    n = len(codes)
    rows = Counter(codes)
    entropy = -sum(c / n * math.log(c / n) for c in rows.values())
    return _Encoded(feature, codes, tuple(kept), entropy, rows)


def _information(a: Sequence[int], b: Sequence[int], rows: Mapping[int, int], cols: Mapping[int, int]) -> float:
    """Mutual information of two bucket sequences (``rows``, ``cols``: their counts), in nats."""
    n = len(a)
    return sum(o / n * math.log(o * n / (rows[i] * cols[j])) for (i, j), o in Counter(zip(a, b)).items())


@dataclass(frozen=True, slots=True)
class Relation:
    """Two dependent features and their joint distribution over the sample's shared buckets. Cells
    (pairs of buckets) fewer than ``k`` rows share are left out and their rows spread over the other
    side's buckets in proportion, so a relation holds no combination that identifies a person."""

    a: Feature
    b: Feature
    information: float  # mutual information beyond chance (nats)
    normalized: float  # that over the smaller entropy of the two features: 1 when one determines the other
    a_rows: Mapping[str | None, int]  # sampled rows per bucket of a (OTHER: values fewer than k rows share)
    b_rows: Mapping[str | None, int]
    cells: Mapping[tuple[str | None, str | None], int]  # (bucket of a, bucket of b) -> rows, cells k rows share
    rows: int
    smoothing: float = 1.0  # pseudo-rows of the other side's overall mix in every bucket's conditional
    _kept: dict[str | None, int] = field(default_factory=dict, compare=False, repr=False)
    _bounds: dict[tuple[bool, str | None], float] = field(default_factory=dict, compare=False, repr=False)
    _given: dict[tuple[bool, str | None], Weighted] = field(default_factory=dict, compare=False, repr=False)

    def __str__(self) -> str:
        return f"{self.a} ~ {self.b} (NMI {self.normalized:.2f})"

    @property
    def columns(self) -> tuple[str, str]:
        return self.a.column, self.b.column

    def _bucket(self, feature: Feature, buckets: Mapping[str | None, int], value: str | None) -> str | None:
        got = feature.of(value)
        return got if got in buckets else OTHER

    def side(self, column: str) -> Feature:
        """The feature of ``column`` (one of the two)."""
        return self.a if column == self.a.column else self.b

    def other(self, column: str) -> str:
        """The column on the other side of ``column``."""
        return self.b.column if column == self.a.column else self.a.column

    def bucket(self, column: str, value: str | None) -> str | None:
        """The bucket of ``column``'s side a value falls in (OTHER: one fewer than k rows share)."""
        return self._bucket(self.a, self.a_rows, value) if column == self.a.column else self._bucket(self.b, self.b_rows, value)

    def given(self, column: str, other: str | None) -> Weighted:
        """The distribution of ``column``'s buckets given the other side's value ``other``: the
        table's conditional distribution, smoothed towards ``column``'s own mix."""
        key = (column == self.b.column, self._bucket(self.a, self.a_rows, other) if column == self.b.column
               else self._bucket(self.b, self.b_rows, other))
        got = self._given.get(key)
        if got is None:
            if key[0]:
                got = Weighted.of({bb: self.lift(key[1], bb) * n for bb, n in self.b_rows.items()})
            else:
                got = Weighted.of({ba: self.lift(ba, key[1]) * n for ba, n in self.a_rows.items()})
            self._given[key] = got
        return got

    def lift(self, ba: str | None, bb: str | None) -> float:
        """P(a, b) / (P(a) P(b)) of two buckets, smoothed (1: as if independent)."""
        n_a, prior = self.a_rows.get(ba, 0), self.b_rows.get(bb, 0) / self.rows
        if not n_a or not prior:
            return 1.0  # a bucket the sample never had: no evidence either way
        kept = self._kept.get(ba)
        if kept is None:
            kept = self._kept[ba] = sum(c for (x, _), c in self.cells.items() if x == ba)
        conditional = (self.cells.get((ba, bb), 0) + (self.smoothing + n_a - kept) * prior) / (n_a + self.smoothing)
        return conditional / prior

    def fit(self, column: str, value: str | None, other: str | None) -> float:
        """How well ``value`` of ``column`` (either side) goes with ``other``, the other side's value:
        its lift over the best fitting value's, 1 for the best, near 0 for a pair the table lacks (the
        probability to accept ``value`` when drawing it from the table's conditional distribution by
        rejection from its marginal one)."""
        return self.fit_bucket(column, self.bucket(column, value), other)

    def fit_bucket(self, column: str, bucket: str | None, other: str | None) -> float:
        """:meth:`fit` of a value in ``bucket`` (one of ``column``'s side)."""
        if column == self.b.column:
            ba, bb = self._bucket(self.a, self.a_rows, other), bucket
            key = (True, ba)
        else:
            ba, bb = bucket, self._bucket(self.b, self.b_rows, other)
            key = (False, bb)
        bound = self._bounds.get(key)
        if bound is None:
            lifts = [self.lift(ba, x) for x in self.b_rows] if key[0] else [self.lift(x, bb) for x in self.a_rows]
            bound = self._bounds[key] = max(lifts, default=1.0) or 1.0
        return min(1.0, self.lift(ba, bb) / bound)


@dataclass(frozen=True, slots=True)
class Relations:
    """The relations a table's columns have, strongest first."""

    relations: tuple[Relation, ...] = ()
    #: pairs of features that no relation joins, whose dependence is beyond chance but too weak (or too
    #: sparse: a few landlines among mobiles) to draw one from the other: their pairs' whole-table counts
    #: are still followed (a canary's area code is one its region's rows have), most informative first;
    #: every such pair, not only the best of two columns, nor only of columns no relation joins (two
    #: columns may depend in two ways: a phone's NULLs by the street, its area code by the region;
    #: :meth:`coarsest` asks for features of some kinds only)
    weak: tuple[tuple[Feature, Feature], ...] = ()
    #: each feature's entropy over the sample's buckets (nats): how coarse it is
    entropy: Mapping[Feature, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.relations)

    def dependence(self, column: str, others: Iterable[str]) -> tuple[Feature, Feature] | None:
        """(feature of ``column``, feature of one of ``others``) of the strongest relation or weak
        dependence between them, or None."""
        cols = set(others)
        for a, b in [(r.a, r.b) for r in self.relations] + list(self.weak):
            if a.column == column and b.column in cols:
                return a, b
            if b.column == column and a.column in cols:
                return b, a
        return None

    def coarsest(self, column: str, other: str, kinds: Iterable[Kind]) -> tuple[Feature, Feature] | None:
        """(feature of ``column`` of one of ``kinds``, feature of ``other``) of the strongest relation
        between the two columns with such a feature, else of the weak dependence whose feature of
        ``other`` is the coarsest (the least :attr:`entropy`: a region rather than a street, both of which
        an area code depends on), or None."""
        wanted = set(kinds)
        pairs = [(a, b) if a.column == column else (b, a) for a, b in [(r.a, r.b) for r in self.relations] + list(self.weak)
                 if {a.column, b.column} == {column, other}]
        pairs = [(a, b) for a, b in pairs if a.kind in wanted]
        strong = {(r.a, r.b) for r in self.relations} | {(r.b, r.a) for r in self.relations}
        if pairs and pairs[0] in strong:
            return pairs[0]
        return min(pairs, key=lambda ab: self.entropy.get(ab[1], math.inf), default=None)

    def between(self, columns: Iterable[str]) -> list[Relation]:
        """Relations both of whose columns are in ``columns``."""
        cols = set(columns)
        return [r for r in self.relations if r.a.column in cols and r.b.column in cols]

    def on(self, column: str, given: Iterable[str]) -> list[Relation]:
        """The relations between ``column`` and the columns ``given``, strongest first."""
        done = set(given)
        return [r for r in self.relations if column == r.a.column and r.b.column in done or column == r.b.column and r.a.column in done]

    def fit(self, column: str, value: str | None, row: Mapping[str, str | None], given: Iterable[str],
            besides: Relation | None = None) -> float:
        """The product of :meth:`Relation.fit` of ``value`` for ``column`` over the relations with
        the columns ``given`` (values in ``row``), but ``besides``; 1.0 when there are none."""
        out = 1.0
        for r in self.on(column, given):
            if r is not besides:
                out *= r.fit(column, value, row.get(r.other(column)))
        return out

    @classmethod
    def learn(cls, info: TableInfo, sample: Sequence[Mapping[str, str | None]], k: int = MIN_SHARED) -> Relations:
        """The relations the sampled rows show (none from fewer than 10 k rows): per two columns, the
        most informative pair of their features that shares at least :data:`MIN_INFORMATION` beyond
        chance, and a :data:`MIN_NORMALIZED` share of the smaller feature's entropy. Chance is
        measured, not assumed: the information of the same features with one side shuffled (sparse
        buckets inflate it far beyond the asymptotic bias), a few times with a fixed seed. Pairs of
        columns left unrelated whose best pair of features still exceeds every shuffle, by
        :data:`WEAK_SIGMAS` of their spread, are :attr:`weak` dependences."""
        n = len(sample)
        if n < 10 * k:
            return cls()
        encoded = [e for e in (_encode(f, sample, k) for f in candidate_features(info, sample)) if e is not None][:MAX_FEATURES]
        shuffler = random.Random(0)
        encoded = [_Encoded(e.feature, e.codes, e.buckets, e.entropy, e.rows,
                            tuple(tuple(shuffler.sample(e.codes, n)) for _ in range(PERMUTATIONS))) for e in encoded]
        # the pairs whose information could be beyond chance, most informative first (less the
        # asymptotic bias: it ranks, but does not filter, since it overstates chance for sparse
        # buckets, such as 300 area codes against 50 states); chance is measured for them in that
        # order until MAX_RELATIONS pairs of columns are related
        candidates: list[tuple[float, float, int, int]] = []
        for i, a in enumerate(encoded):
            for j in range(i + 1, len(encoded)):
                b = encoded[j]
                if a.feature.column == b.feature.column:
                    continue
                observed = _information(a.codes, b.codes, a.rows, b.rows)
                bias = (len(a.buckets) - 1) * (len(b.buckets) - 1) / (2.0 * n)
                if observed >= MIN_INFORMATION:
                    candidates.append((observed - bias, observed, i, j))
        best: dict[tuple[str, str], Relation] = {}
        for _, observed, i, j in sorted(candidates, key=lambda c: (-c[0], c[2], c[3])):
            if len(best) >= MAX_RELATIONS:
                break
            a, b = encoded[i], encoded[j]
            pair = (a.feature.column, b.feature.column)
            if pair in best:
                continue
            chance = [_information(a.codes, shuffled, a.rows, b.rows) for shuffled in b.shuffled]
            excess = observed - sum(chance) / len(chance)
            normalized = excess / min(a.entropy, b.entropy)
            if observed <= max(chance) or excess < MIN_INFORMATION or normalized < MIN_NORMALIZED:
                continue
            cells = Counter(zip(a.codes, b.codes))
            best[pair] = Relation(
                a.feature, b.feature, excess, normalized,
                a_rows={a.buckets[x]: c for x, c in a.rows.items()},
                b_rows={b.buckets[y]: c for y, c in b.rows.items()},
                cells={(a.buckets[x], b.buckets[y]): c for (x, y), c in cells.items() if c >= k},
                rows=n,
            )
        ranked = sorted(best.values(), key=lambda r: (-r.information, str(r)))[:MAX_RELATIONS]
        related = {(r.a, r.b) for r in ranked}
        weak: list[tuple[float, Feature, Feature]] = []
        for _, observed, i, j in candidates:
            a, b = encoded[i], encoded[j]
            if (a.feature, b.feature) in related:
                continue
            chance = [_information(a.codes, shuffled, a.rows, b.rows) for shuffled in b.shuffled]
            mean = sum(chance) / len(chance)
            spread = math.sqrt(sum((c - mean) ** 2 for c in chance) / max(len(chance) - 1, 1))
            excess = observed - mean
            if observed > max(chance) and excess > WEAK_SIGMAS * spread and excess > 0:
                weak.append((excess, a.feature, b.feature))
        return cls(tuple(ranked), tuple((a, b) for _, a, b in sorted(weak, key=lambda w: (-w[0], str(w[1]), str(w[2])))),
                   {e.feature: e.entropy for e in encoded})
