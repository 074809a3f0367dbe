"""The Synthesizer: rows for one table from its profile, with names (:mod:`.names`), places
(:mod:`.places`, :mod:`.frequency`) and contact points (:mod:`.contacts`), and timestamps from the
placement the seeder chose. Deterministic for a given seed."""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import functools
import json
import math
import random
import re
import uuid
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from faker import Faker
from faker.config import AVAILABLE_LOCALES

from canary.errors import SeedError
from canary.seeding.catalog import Column, TableInfo, check_hints
from canary.seeding.synth.contacts import ContactAllocator, format_phone
from canary.seeding.synth.frequency import (
    Across,
    FrequencyMatch,
    Rarest,
    ValueCounts,
    area_key,
    given_key,
    lead_key,
    same,
    shape_key,
    surname_key,
    text_length,
    word_count,
)
from canary.seeding.synth.households import Households
from canary.seeding.synth.names import Spelled, handle_odds, join_name, split_name
from canary.seeding.synth.places import coarse_key
from canary.seeding.synth.profile import ColumnProfile, TableProfile
from canary.seeding.synth.relations import NULL_PART, OTHER, SEP, Feature, Kind, Relation, Tally, area_start, words
from canary.seeding.synth.romanize import spell, spellings
from canary.seeding.synth.shapes import (
    MIN_SHARED,
    Semantic,
    Weighted,
    draw_digits,
    fill_shape,
    parse_ts,
    quantile,
    script_class,
    semantic_of,
    shape,
)
from canary.seeding.synth.streams import Streams
from canary.seeding.synth.times import Precision

SUPPORTED_LOCALES = ("en_US", "ko_KR", "ja_JP")
#: tries, at most, to draw a column's value from the table's distribution given the columns made
#: before it (:meth:`Synthesizer.row`); then the best fitting one
RELATION_TRIES = 40
#: candidate locations scored when the location must fall in a bucket (go with an owned number or
#: mailbox): the best of a few would follow the pool's count classes (mostly composed addresses on a
#: street some row has), not the real rows'; scoring an indexed candidate costs a few additions
PLACE_TRIES = 600
#: candidate locations with a new street word made per bucket a location must fall in (see
#: :meth:`Synthesizer._fresh_places`)
PLACE_FRESH = 600
#: how much more an address shape's count class weighs than another key's in a location's distance to its
#: target (FrequencyMatch.weights): canaries with an address of their own whose shape (street and town)
#: two or three rows hold were 16.6% against 6.2% of real rows (bench, independent table, 8 seeds)
SHAPE_WEIGHT = 3
#: novel compositions tried per candidate location (:meth:`Synthesizer.match_frequencies`): 77% of a table's
#: addresses can be the only one of their shape, and with one try per candidate, 41% of the pool was (the
#: others compose on a street some row has there), so 63% of canaries took one where their target asked
#: for it 76% of the time; three tries make it 58% of the pool (canaries then 72%) for a few tenths of a
#: CPU second more on 100 canaries (bench/seed_speed.py)
NOVEL_TRIES = 3
#: pairs of related location features whose whole-table counts the match follows, at most
MAX_JOINT = 3
#: a row made more often than this for one placement (its e-mail clashed with real rows') draws its
#: e-mail digits uniformly (:meth:`Synthesizer.row`)
REMADE_UNIFORM = 3
#: pseudo-rows at the table's overall rate in the rate at which a contact point's pair with the
#: location is one nobody else has, given one side's value (:meth:`Apart.alone`)
ALONE_PRIOR = 10
#: results of :meth:`Synthesizer._apart_places` remembered (each a list of candidate locations)
APART_MEMO = 256
#: features of a contact point that say where it is (:meth:`Synthesizer._contact_pairs`): a phone's
#: area or leading digits, a postcode-like number's, an e-mail's domain (a regional provider)
WHERE_KINDS = (Kind.AREA, Kind.LEAD3, Kind.LEAD2, Kind.DOMAIN)


@dataclass(frozen=True, slots=True)
class RowContext:
    """Placement of one canary row chosen by the seeder."""

    pk: str | None  # primary key value as text (None: the column default assigns it)
    created: dt.datetime | None = None  # timestamp consistent with the neighbouring real rows
    key: tuple[tuple[str, str | None], ...] = ()  # a composite key's columns as placed (None: from the column's sequence)
    # values the row takes as they are where the table has one (a child's address copied from its parent):
    # only whether the column is NULL is drawn, at the table's rate, and nothing is composed for it
    given: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SynthRow:
    values: dict[str, str | None]
    email: str | None
    phone: str | None


@dataclass(slots=True)
class Apart:
    """How often a real row's pair of a contact point's feature and a location feature (a phone's area
    code and the address's region, by the strongest relation or weak dependence between the two
    columns) is one no other row of the table has, and how many rows of the whole table hold each
    pair (``counts``, set ``at`` of ``tally``). A canary's pair is one at least k rows of the table hold,
    or, as often as real rows are alone in theirs (:meth:`alone`), one no row holds: never one fewer
    than k rows hold (it would copy a rare combination), and never alone more often than real rows
    (an area code nobody in its region has is what a thief looks for)."""

    contact: Feature
    place: Feature
    tally: Tally
    at: int  # the set of ``tally`` counting the pairs; the set ``(contact,)`` counts the contact's feature alone
    counts: Counter[str | None] | ValueCounts
    overall: float  # the share of sampled rows (with both sides) alone in their pair
    by_place: dict[str | None, tuple[int, int]]  # the location's feature -> (sampled rows alone in their pair, sampled rows)
    related: bool  # a relation joins the two columns (a value drawn by it already goes with the other side)
    added: Counter[str] = field(default_factory=Counter)  # canaries' pairs so far
    _held_with: dict[str, Weighted] | None = None  # the location's feature -> the contact's, by rows of pairs k rows hold
    _everywhere: Weighted | None = None  # the contact's features, by the whole table's rows (:meth:`everywhere`)

    @classmethod
    def of(cls, contact: Feature, place: Feature, tally: Tally, at: int, counts: Counter[str | None] | ValueCounts,
           sample: Sequence[Mapping[str, str | None]], related: bool) -> Apart:
        by_place: dict[str | None, tuple[int, int]] = {}
        for r in sample:
            p = place.of(r.get(place.column))
            if contact.of(r.get(contact.column)) is None or p is None:
                continue
            a, n = by_place.get(p, (0, 0))
            by_place[p] = (a + int(counts[tally.value(r, at)] <= 1), n + 1)
        rows = sum(n for _, n in by_place.values())
        overall = sum(a for a, _ in by_place.values()) / rows if rows else 0.0
        return cls(contact, place, tally, at, counts, overall, by_place, related)

    def held(self, row: Mapping[str, str | None]) -> int | None:
        """Rows of the table (and canaries so far) holding ``row``'s pair; None when it lacks one side."""
        if self.contact.of(row.get(self.contact.column)) is None or self.place.of(row.get(self.place.column)) is None:
            return None
        v = self.tally.value(row, self.at)
        return self.counts[v] + self.added[v]

    def held_by(self, contact: str, place: str | None) -> int | None:
        """:meth:`held` of a row whose contact feature is ``contact`` and location feature ``place``,
        given as the features themselves (the pair's key as :meth:`Tally.value` joins it): a row's
        candidate locations are checked by their feature, once per feature, not rebuilt into a row
        each (every feature of every canary's row cost 10,000 canaries seconds)."""
        if place is None:
            return None
        v = f"{self.at}{OTHER}{contact}{SEP}{place}"
        return self.counts[v] + self.added[v]

    def alone(self, rng: random.Random, made: Mapping[str, str | None]) -> bool:
        """Whether this row's pair is to be one no other row holds. A contact point made after the
        location: at the rate of the sampled rows with the location's value, smoothed with
        :data:`ALONE_PRIOR` rows at the rate of all sampled rows (a rate from a handful of rows would
        overstate it as often as not). A location made after the contact point (an owned number, whose
        area codes are the pool's mix, not the table's): at the rate of all sampled rows, so that
        canaries are alone in their pair as often as real rows are."""
        if self.place.column not in made:
            return rng.random() < self.overall
        a, n = self.by_place.get(self.place.of(made.get(self.place.column)), (0, 0))
        return rng.random() < (a + ALONE_PRIOR * self.overall) / (n + ALONE_PRIOR)

    def share(self, row: Mapping[str, str | None]) -> float:
        """Of the table's rows with ``row``'s contact feature (an area code), the share that hold its
        location feature, too (the region): drawn from the contact's own distribution and kept in
        proportion to it, a contact point follows the location the way the table's do."""
        lone = self.tally.sets.index((self.contact,))  # the set counting the contact's feature alone
        return self.counts[self.tally.value(row, self.at)] / max(self.counts[self.tally.value(row, lone)], 1)

    def held_with(self, row: Mapping[str, str | None]) -> Weighted | None:
        """The contact's features (area codes) the whole table holds with ``row``'s location feature
        (its state) in pairs at least k rows hold, weighted by those rows: drawn from, canaries' pairs
        are as common in the table as real rows' are (a relation learnt from the sample holds only the
        pairs many sampled rows share, and leaves the rarer ones to a catch-all that draws from the
        whole country). None when the location lacks the feature or the table has no such pair with it."""
        if self._held_with is None:
            prefix = f"{self.at}{OTHER}"
            by_place: dict[str, dict[str, int]] = {}
            items = self.counts.multi.items() if isinstance(self.counts, ValueCounts) else self.counts.items()
            for key, n in items:
                if n < MIN_SHARED or key is None or not key.startswith(prefix):
                    continue
                contact, _, where = key[len(prefix):].partition(SEP)
                if NULL_PART not in (contact, where):
                    by_place.setdefault(where, {})[contact] = n
            self._held_with = {p: Weighted.of(dict(sorted(held.items()))) for p, held in by_place.items()}
        place = self.place.of(row.get(self.place.column))
        got = self._held_with.get(place) if place is not None else None
        return got or None

    def everywhere(self) -> Weighted:
        """The contact's features (area codes) the whole table holds, each weighted by its rows: where
        someone who moved and kept their number comes from. A number made from the column's formats
        alone puts digits no row has where the area code goes as often as not (bench: 28% of canaries
        alone in their pair had an area code no row of the table has, against 0.5% of real rows)."""
        if self._everywhere is None:
            prefix = f"{self.tally.sets.index((self.contact,))}{OTHER}"
            items = self.counts.multi.items() if isinstance(self.counts, ValueCounts) else self.counts.items()
            self._everywhere = Weighted.of({key[len(prefix):]: n for key, n in items
                                            if n >= MIN_SHARED and key is not None and key.startswith(prefix)
                                            and key[len(prefix):] not in (NULL_PART, "")})
        return self._everywhere

    def rows_with(self, value: str) -> int:
        """The whole table's rows whose contact feature is ``value``'s (an area code's rows)."""
        return self.counts[self.tally.value({self.contact.column: value}, self.tally.sets.index((self.contact,)))]

    @staticmethod
    def fits(held: int | None, alone: bool) -> bool:
        return held is None or (held == 0 if alone else held >= MIN_SHARED)

    def add(self, row: Mapping[str, str | None]) -> None:
        if self.held(row) is not None:
            self.added[self.tally.value(row, self.at)] += 1


@dataclass
class _ShapeSplit:
    """One bucket's candidate locations (``among``) split by whether a row of the table has their
    address shape (``new``: none does; ``old``), with their shape keys, and the list
    :meth:`Synthesizer._shaped` last handed out for each side with how many values canaries held then
    (:attr:`FrequencyMatch.taken`): the list stays right until a canary takes a shape of ``new``, so it
    is made again only then instead of for every row (10,000 canaries in buckets of thousands of
    candidates: seconds)."""

    among: Sequence[Mapping[str, str | None]]
    new: list[tuple[Mapping[str, str | None], str | None]]
    old: list[tuple[Mapping[str, str | None], str | None]]
    new_keys: frozenset[str | None]
    handed: dict[bool, tuple[int, list[Mapping[str, str | None]]]] = field(default_factory=dict)


def timestamp_text(base_type: str, value: dt.datetime) -> str:
    """``value`` as the text written into a ``date`` / ``timestamp`` / ``timestamptz`` column."""
    if base_type == "date":
        return value.date().isoformat()
    if base_type == "timestamp":
        return value.replace(tzinfo=None).isoformat(sep=" ")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.isoformat(sep=" ")


class Synthesizer:
    """Generates rows for one table from its profile. Deterministic for a given ``seed``."""

    def __init__(
        self,
        info: TableInfo,
        prof: TableProfile,
        *,
        locale: str,
        contacts: ContactAllocator,
        seed: int | None = None,
        skip: Iterable[str] = (),
        reuse: Mapping[str, tuple[Weighted, float]] | None = None,
        dated_by: str | None = None,
    ) -> None:
        self.info = info
        self.profile = prof
        self.locale = locale if locale in SUPPORTED_LOCALES or _faker_has(locale) else "en_US"
        streams = Streams(seed)
        self.rng = streams("values")  # what is not a person or a location: categories, numbers, times, phones
        self._people = streams("people")  # names and the e-mail addresses made of them
        self._places = streams("places")  # locations: the candidates, and which one a row gets
        self._precisions: dict[str, Precision] = {}
        self.fake = Faker(self.locale)
        self.fake.seed_instance(self._people.getrandbits(64))
        self.latin = Faker("en_US")
        self.latin.seed_instance(self._people.getrandbits(64))
        self.contacts = contacts
        self.skip = set(skip)
        pk = info.primary_key
        self.pk = pk[0] if len(pk) == 1 else None
        self.semantics = {c.name: semantic_of(c) for c in info.columns}
        if dated_by is not None:  # the column that takes the row's time (RowContext.created)
            self.semantics[dated_by] = Semantic.CREATED
        self.hints = check_hints(info)
        self.reuse = dict(reuse or {})
        self.unique = {cols[0] for cols in info.unique_sets() if len(cols) == 1}
        self._place: dict[str, str | None] | None = None  # this row's composed location columns
        self._match_people: FrequencyMatch | None = None
        self._match_places: FrequencyMatch | None = None
        self._place_index: dict[int, dict[str | None, list[Mapping[str, str | None]]]] = {}  # by relation: bucket -> locations
        self._fresh_index: dict[tuple[int, str | None], list[Mapping[str, str | None]]] = {}  # (relation, bucket) -> new-word locations
        # (relation, bucket) -> the bucket's candidates with its fresh ones: one list per bucket, so that
        # _apart_places's memo (keyed by the list's identity) finds it again on the next row
        self._bucket_places: dict[tuple[int, str | None], list[Mapping[str, str | None]]] = {}
        self._shape_keys: dict[int, tuple[Mapping[str, str | None], str | None]] = {}  # id(candidate) -> (it, its shape key)
        self._shape_parts: dict[int, _ShapeSplit] = {}  # id(among) -> its candidates split by their shape's rows
        self._spelled: tuple[Sequence[Mapping[str, str | None]], Spelled] | None = None  # people by spellings
        self._has_email = any(self.semantics[c.name] == Semantic.EMAIL for c in info.columns)
        self._fits: dict[tuple[str, int], Weighted] = {}  # phone formats an owned number fits, by its start and length
        mail = next((prof.col(c.name) for c in info.columns if self.semantics[c.name] == Semantic.EMAIL), None)
        self._handle_lengths = mail.handle_lengths if mail is not None else Weighted((), ())
        self._handle_odds = handle_odds(mail.email_uses, mail.handle_words) if mail is not None else handle_odds(Weighted((), ()), Weighted((), ()))
        if mail is not None and mail.email_domains and contacts.mailboxes:  # owned mailboxes at the table's provider shares
            contacts.follow(dict(zip(mail.email_domains.values, _weights(mail.email_domains), strict=True)))
        self._words: dict[int, list[str]] | None = None  # Faker's dictionary words by length
        self._apart: list[Apart] = []  # contact points' pairs with the location (match_frequencies)
        # by Apart: (place feature -> locations, id(location) -> its place feature)
        self._apart_index: dict[int, tuple[dict[str | None, list[Mapping[str, str | None]]], dict[int, str | None]]] = {}
        # (id(among), filters applied) -> (among, the locations left): _apart_places's recent results
        self._apart_memo: OrderedDict[tuple[int, tuple[tuple[int, frozenset[str | None]], ...]],
                                      tuple[Sequence[Mapping[str, str | None]] | None, Sequence[Mapping[str, str | None]] | None]] = OrderedDict()
        self._remade: Counter[tuple[object, ...]] = Counter()  # rows made per placement (:data:`REMADE_UNIFORM`)
        self._rare: dict[str, ColumnProfile | None] = {}  # :meth:`_rare_numbers` per column
        self._households: Households | None = None  # co-residents' surnames (match_frequencies, learn_households)
        self._kin = streams("households")  # which co-resident's surname a canary takes, and its spelling
        self._box: str | None = None  # this row's owned mailbox (its address is handed out whole, never respelt)
        self._boxed = False  # this row's person is the one its owned mailbox names (its name is fixed)
        # joins into a household boxed canaries left (:meth:`_unjoined`) by primary class, for canaries
        # whose name is free to take a co-resident's surname; and whether this row takes one of them
        self._kin_owed: Counter[int] = Counter()
        self._kin_join = False
        self._joins = True  # whether this row may join canaries' address (:meth:`_unjoined`)

    def frequency_columns(self) -> list[str]:
        """Columns whose per-value row counts :meth:`match_frequencies` needs (full name, address,
        postcode...)."""
        out = [c.name for c in self.columns() if self.semantics[c.name] == Semantic.FULL_NAME][:1]
        places = self.profile.places
        if places is not None:
            out += [c for c in places.columns if c in {x.name for x in self.columns()}]
        return out

    def frequency_keys(self) -> dict[str, list[Any]]:
        """Per column of :meth:`frequency_columns`, the derivations whose counts :meth:`match_frequencies` uses."""
        out: dict[str, list[Any]] = {c: [same] for c in self.frequency_columns()}
        for c in out:
            if self.semantics[c] == Semantic.FULL_NAME:
                out[c] += [surname_key, given_key]
            elif self.profile.places is not None and c == self.profile.places.columns[self.profile.places.text_index]:
                out[c] += [shape_key, coarse_key, lead_key]
            elif self.profile.places is not None and c in self.profile.places.columns and self.semantics[c] == Semantic.POSTCODE:
                out[c] += [area_key]
        return out

    def tallies(self) -> list[Tally]:
        """Counts over the whole table that :meth:`match_frequencies` uses besides single columns'
        (``tallies`` there, by :attr:`Tally.name`): for the location columns composed together, the
        pairs of their features the table relates (an address's first word with a postcode's leading
        digits) and the words of the address (how common its rarest word is)."""
        places = self.profile.places
        if places is None:
            return []
        written = {c.name for c in self.columns()}
        cols = [c for c in places.columns if c in written]
        text = places.columns[places.text_index]
        if text not in written:
            return []
        related = self.profile.relations.between(cols)[:MAX_JOINT]
        out = [Tally(f"words({text})", each_word=text, rows=self.info.estimated_rows)]
        if related:
            out.append(Tally("related(" + ", ".join(cols) + ")", tuple((r.a, r.b) for r in related), rows=self.info.estimated_rows))
        pairs = self._contact_pairs(cols)
        if pairs:
            # each pair, then each contact feature alone once (a set counted twice costs the scan twice, and
            # the query names a repeated set by its first place only)
            sets = tuple((c, p) for c, p in pairs) + tuple(dict.fromkeys((c,) for c, _ in pairs))
            out.append(Tally("apart(" + ", ".join(cols) + ")", sets, rows=self.info.estimated_rows))
        return out

    def _contact_pairs(self, places: Sequence[str]) -> tuple[tuple[Feature, Feature], ...]:
        """(contact point's feature, location feature) of each contact column (phone, e-mail) and each
        location column the table relates it to, even weakly (:attr:`Relations.weak`), by the contact's
        feature that says where it is (:data:`WHERE_KINDS`) and, unless a relation joins them, the
        coarsest location feature it depends on (:meth:`Relations.coarsest`): the pair a thief counts
        is an area code's with the region (a state, a sido), and one decision (:meth:`Apart.alone`)
        cannot hold for a street too. Whether a phone is NULL is no place: paired with the address's
        last word, its "alone" share (9%) drew numbers from the column's formats alone, with area codes
        of no region (bench, realistic table, seed 103: 3.0% of canaries alone in their (sido, area
        code) pair, 0.3% of real rows)."""
        out = []
        for c in self.columns():
            if self.semantics[c.name] in (Semantic.PHONE, Semantic.EMAIL) and c.name not in places:
                for p in places:
                    got = self.profile.relations.coarsest(c.name, p, WHERE_KINDS)
                    if got is not None:
                        out.append(got)
        return tuple(out)

    def match_frequencies(self, counts: Mapping[str, Counter[str | None] | ValueCounts], sample: Sequence[Mapping[str, str | None]],
                          candidates: int = 4000, tallies: Mapping[str, Counter[str | None] | ValueCounts] | None = None) -> None:
        """From now on, draw names and locations so that how many rows of the table share each of
        their values (``counts``: rows of the whole table per value of the columns
        :meth:`frequency_columns` names; ``tallies``: the counts :meth:`tallies` describes, by name)
        follows the sampled real rows' distribution, for single columns and for the pairs of
        location features and the rarest address word, too."""
        name_col = next((c for c in self.frequency_columns() if self.semantics[c] == Semantic.FULL_NAME), None)
        if name_col is not None and name_col in counts and self.profile.names is not None:
            keys: tuple[tuple[str, Any], ...] = ((name_col, same), (name_col, surname_key), (name_col, given_key))
            derived = tuple(_derive(counts[col], fn) for col, fn in keys)
            people: list[Mapping[str, str | None]] = []
            for _ in range(candidates):
                p = self._person()
                people.append({name_col: p["full"], "first": p["first"], "last": p["last"]})
            traits: tuple[tuple[str, Any], ...] = ((name_col, text_length),)
            self._match_people = FrequencyMatch(keys, derived, FrequencyMatch.real_targets(keys, derived, sample, traits), people, traits,
                                                shared=FrequencyMatch.real_values(keys, derived, sample))
        places = self.profile.places
        if places is not None:
            text = places.columns[places.text_index]
            if text in counts:
                keys = ((text, same), (text, shape_key), (text, coarse_key), (text, lead_key)) + tuple((c, same) for c in places.columns if c != text and c in counts)
                keys += tuple((c, area_key) for c in places.columns if c != text and c in counts and self.semantics[c] == Semantic.POSTCODE)
                derived = tuple(_derive(counts[col], fn) for col, fn in keys)
                for tally in self.tallies():
                    got = (tallies or {}).get(tally.name)
                    if got is None:
                        continue
                    if tally.name.startswith("apart("):
                        related = self.profile.relations
                        self._apart = [Apart.of(fs[0], fs[1], tally, at, got, sample,
                                                any(r.side(fs[0].column) == fs[0] for r in related.on(fs[0].column, [fs[1].column])))
                                       for at, fs in enumerate(tally.sets) if len(fs) == 2]
                        continue
                    if tally.each_word is not None:
                        keys += ((tally.each_word, Rarest(words)),)
                        derived += (got,)
                    for at, fs in enumerate(tally.sets):
                        keys += ("|".join(str(f) for f in fs), Across(tally, at)),
                        derived += (got,)
                pool: list[Mapping[str, str | None]] = [p for p in (places.compose(self._places) for _ in range(candidates)) if p]
                # addresses on a street no row of the table has in that place (most real rows' street is
                # the only one of its kind in its town: the table holds a few of a town's people), in
                # any town: a novel address whose shape some row holds is one more composed one
                shapes = derived[1]
                pool += [p for p in (places.compose(self._places, novel=True) for _ in range(NOVEL_TRIES * candidates)) if p and shapes[shape_key(p.get(text))] == 0]
                # and locations with a word or postcode no sampled row has, for the real rows whose own
                # are that rare in the table
                def unseen(col: str, value: str) -> bool:
                    return col not in counts or counts[col][value] == 0

                pool += [f for f in (places.freshen(self._places.choice(pool), self._places, word=i % 3 == 0, unseen=unseen)
                                     for i in range(candidates // 2 if pool else 0)) if f]
                # locations that at least k rows of the table share (a building many customers live in) are
                # candidates too, each as often as sampled rows hold it
                cols = [c for c in places.columns if c in counts]
                pool += [{c: r.get(c) for c in cols} for r in sample
                         if r.get(text) is not None and all(counts[c][r.get(c)] >= MIN_SHARED for c in cols)]
                traits = ((text, word_count), (text, places.coarse_number), (text, places.comma_less), (text, places.coarse_short))
                # rows without an address are targets, too: the composed locations decide where a
                # canary has none (and then no postcode either, when the table's rows have none)
                targets = FrequencyMatch.real_targets(keys, derived, sample, traits, nulls=True)
                self._match_places = FrequencyMatch(keys, derived, targets, pool, traits, weights=(1, SHAPE_WEIGHT),
                                                    shared=FrequencyMatch.real_values(keys, derived, sample, nulls=True))

    def columns(self) -> list[Column]:
        """Columns the seeder writes: all but generated ones and those it leaves to their default."""
        out = []
        for c in self.info.columns:
            if c.generated or c.name in self.skip:
                continue
            out.append(c)
        return out

    def row(self, ctx: RowContext) -> SynthRow:
        """One row. Values that come with the row's person, location, contact points or placement
        are made first (their NULLs where the table relates them to a column made before, at the
        table's rate given it); every other column is then drawn from the table's distribution
        given the columns made before it, the way the table relates them (:meth:`_fitted`)."""
        person = self._matched_person()
        self._place = None
        self._kin_join = False
        values: dict[str, str | None] = {}
        email = phone = None
        placed = dict(ctx.key)
        given = dict(ctx.given)
        free: list[Column] = []
        # contact points first: an owned number or mailbox is what it is, and the location is then
        # drawn to go with it the way the table's rows do (an area code's state) rather than the reverse
        contact = (Semantic.EMAIL, Semantic.PHONE)
        for col in sorted(self.columns(), key=lambda c: self.semantics[c.name] not in contact):
            if col.name in placed:
                values[col.name] = placed[col.name]
                continue
            if col.name == self.pk:
                values[col.name] = ctx.pk
                continue
            sem = self.semantics[col.name]
            prof = self.profile.col(col.name)
            if col.name in given:
                values[col.name] = None if self._null(col, prof, values) else given[col.name]
                continue
            if sem == Semantic.EMAIL:
                # a row made again and again (its address clashed with real rows' in a unique column: a
                # table whose local parts differ by their digits alone, member1..member1200, has every
                # run drawn like its own taken) draws its digits uniformly from then on
                made = (ctx.pk, ctx.key, ctx.created)
                self._remade[made] += 1
                email = self._email(person, prof, uniform=self._remade[made] > REMADE_UNIFORM)
                values[col.name] = email
                continue
            if sem == Semantic.PHONE and self.contacts.phone_numbers:
                if self._null(col, prof):  # as many rows without a number as the table has (none is handed out)
                    values[col.name] = None
                    continue
                apart = next((a for a in self._apart if a.contact.column == col.name), None)
                phone_e164 = self.contacts.phone(None if apart is None else functools.partial(self._owned_area, apart, prof=prof))
                phone = phone_e164 or None
                values[col.name] = self._phone(phone_e164, prof)
                continue
            if self._bound(col.name, sem):
                values[col.name] = self._drawn(col, sem, prof, person, ctx, values)
                continue
            free.append(col)
        for col in free:
            values[col.name] = self._apart_fitted(col, person, ctx, values)
        email = self._moved_in(person, values, email, placed.keys() | given.keys())
        for apart in self._apart:
            apart.add(values)
        return SynthRow({c.name: values.get(c.name) for c in self.columns()}, email, phone)

    def _apart_fitted(self, col: Column, person: Mapping[str, str], ctx: RowContext, values: Mapping[str, str | None]) -> str | None:
        """:meth:`_fitted`, and for a contact point made after the location, drawn again until its pair
        with the location is as common as a real row's (:class:`Apart`; one no row has is drawn from
        the column's own distribution, the relation aside). Where no relation joins the
        two (the value comes from the column's own distribution), :data:`RELATION_TRIES` values are
        drawn and one of those that fit is kept in proportion to :meth:`Apart.share` (a landline of
        the row's region as often as the region's rows have one); with none fitting, the most common
        pair of them."""
        aparts = [a for a in self._apart if a.contact.column == col.name and a.place.column in values]
        if not aparts:
            return self._fitted(col, person, ctx, values)
        alone = [aparts[0].alone(self.rng, values)] * len(aparts)  # one decision: someone who moved is new to both
        sem, prof = self.semantics[col.name], self.profile.col(col.name)
        if self._null(col, prof, values):
            return None  # as many rows without one as the table has (decided here, once)
        made = self._moved(col, prof, aparts, values) if alone[0] else self._tallied(col, prof, aparts, values)
        if made is not None:
            return made
        best: tuple[tuple[int, int], str | None] | None = None
        fitting: dict[str, float] = {}
        for _ in range(RELATION_TRIES):
            # a pair no row has: a number from anywhere, as someone who moved keeps theirs
            value = self._drawn(col, sem, prof, person, ctx, values) if any(alone) else self._fitted(col, person, ctx, values)
            if value is None:  # NULL was decided above: a NULL drawn again would double the table's rate
                continue
            row = {**values, col.name: value}
            held = [a.held(row) for a in aparts]
            fits = sum(Apart.fits(h, al) for h, al in zip(held, alone, strict=True))
            if fits == len(aparts):
                weighed = [a for a, h, al in zip(aparts, held, alone, strict=True) if not (a.related or al or h is None)]
                if not weighed:
                    return value
                fitting[value] = math.prod(a.share(row) for a in weighed)
            rank = (fits, sum(-(h or 0) if al else (h or 0) for h, al in zip(held, alone, strict=True)))
            if best is None or rank > best[0]:
                best = (rank, value)
        if fitting and sum(fitting.values()) > 0:
            return str(Weighted.of(fitting).pick(self.rng))
        return best[1] if best is not None else None

    def _moved(self, col: Column, prof: ColumnProfile | None, aparts: Sequence[Apart], values: Mapping[str, str | None]) -> str | None:
        """A contact point whose pair with every location feature no row of the table holds, as someone's
        who moved and kept their number: its feature (an area code) drawn among those the whole table
        holds, each as often as the table's rows have it (:meth:`Apart.everywhere`), in one of the
        column's formats. None (draw as :meth:`_drawn` does) when the table holds no such feature or
        none fits in :data:`RELATION_TRIES` tries."""
        apart = aparts[0]
        everywhere = apart.everywhere()
        if not everywhere:
            return None
        for _ in range(RELATION_TRIES):
            bucket = str(everywhere.pick(self.rng))
            made, value = self._in_bucket(col, apart.contact, bucket, prof)
            if not made or value is None or apart.contact.of(value) != bucket:
                continue
            row = {**values, col.name: value}
            if all(Apart.fits(a.held(row), True) for a in aparts):
                return value
        return None

    def _tallied(self, col: Column, prof: ColumnProfile | None, aparts: Sequence[Apart], values: Mapping[str, str | None]) -> str | None:
        """A contact point whose feature goes with the row's location the way the whole table's rows'
        do (:meth:`Apart.held_with`, by the narrowest location feature a relation joins it to: an area code drawn
        among those the table has in the row's postcode area, each as often as the table has it there), whose pairs
        with every location feature at least k rows hold, kept with the probability the column's other
        relations give it; None (draw as :meth:`_fitted` does) when no relation joins the contact point
        to the location or no value fits in :data:`RELATION_TRIES` tries."""
        relations = self.profile.relations
        on = relations.on(col.name, values) if relations else []
        groups = [(a, g) for a in aparts if a.related and any(r.side(col.name) == a.contact and r.other(col.name) == a.place.column for r in on)
                  for g in (a.held_with(values),) if g is not None]
        if not groups:
            return None
        # drawn by the narrowest location (a postcode's area within its state: the fewest rows): the
        # wider ones then mostly fit too; drawn by a wide one and kept where a narrower pair has k rows,
        # rare codes would fail more often than common ones, and canaries crowd into the common ones
        apart, group = min(groups, key=lambda ag: ag[1].cum[-1])
        others = [r for r in on if r.other(col.name) not in {a.place.column for a in aparts}]
        for _ in range(RELATION_TRIES):
            bucket = str(group.pick(self.rng))
            made, value = self._in_bucket(col, apart.contact, bucket, prof)
            if not made and apart.contact.kind in (Kind.LEAD2, Kind.LEAD3):  # leading digits too few sampled rows have
                made, value = self._digits_in(prof, bucket, area=False)
            if not made or value is None or apart.contact.of(value) != bucket:
                continue
            row = {**values, col.name: value}
            if all(Apart.fits(a.held(row), False) for a in aparts) and \
                    self.rng.random() < math.prod(r.fit(col.name, value, values.get(r.other(col.name))) for r in others):
                return value
        return None

    def _fitted(self, col: Column, person: Mapping[str, str], ctx: RowContext, values: Mapping[str, str | None]) -> str | None:
        """A column's value drawn from the table's distribution given the columns made before it
        (``values``): the bucket of the strongest relation's feature from its conditional
        distribution (a region given the area code, a birth year given an e-mail's digits), kept
        with the probability the other relations on that feature give it, then a value in that
        bucket (the bucket itself for a column of shared values, a date of that year, a number
        of that format or leading digits, else drawn until one falls in it), kept with the
        probability the relations on other features give it; after :data:`RELATION_TRIES` tries,
        the best fitting one (columns made before may contradict each other)."""
        sem, prof = self.semantics[col.name], self.profile.col(col.name)
        relations = self.profile.relations
        on = relations.on(col.name, values) if relations else []
        if not on:
            return self._drawn(col, sem, prof, person, ctx, values)
        lead, name = on[0], col.name
        feature = lead.side(name)
        given = lead.given(name, values.get(lead.other(name)))
        alike = [r for r in on[1:] if r.side(name) == feature]  # judged by the bucket alone
        others = [r for r in on[1:] if r.side(name) != feature]
        best: tuple[bool, float, str | None] | None = None
        best_bucket: tuple[float, str | None] | None = None
        for _ in range(RELATION_TRIES):
            bucket = given.pick(self.rng)
            fit = math.prod(r.fit_bucket(name, bucket, values.get(r.other(name))) for r in alike)
            if best_bucket is None or fit > best_bucket[0]:
                best_bucket = (fit, bucket)
            if self.rng.random() >= fit:
                continue
            made, value = self._in_bucket(col, feature, bucket, prof)
            if not made:
                value = self._drawn(col, sem, prof, person, ctx, values)
            hit = lead.bucket(name, value) == bucket
            fit = math.prod(r.fit(name, value, values.get(r.other(name))) for r in others)
            if hit and self.rng.random() < fit:
                return value
            if best is None or (hit, fit) > best[:2]:
                best = (hit, fit, value)
        if best is None and best_bucket is not None:  # no bucket was kept: a value in the best fitting one
            made, value = self._in_bucket(col, feature, best_bucket[1], prof)
            return value if made else self._drawn(col, sem, prof, person, ctx, values)
        return best[2] if best is not None else None

    def _in_bucket(self, col: Column, feature: Feature, bucket: str | None, prof: ColumnProfile | None) -> tuple[bool, str | None]:
        """(True, a value of ``col`` whose ``feature`` is ``bucket``) when one can be made directly,
        else (False, None): draw and see. Made directly: NULL for the NULL bucket of a nullable
        column, the bucket itself for a column's shared values, a number with the bucket's leading
        digits or area code in one of the column's formats, a date of the bucket's year from the
        column's own dates."""
        if bucket is None:
            return (True, None) if not col.not_null else (False, None)
        if bucket is OTHER:
            return False, None
        if feature.kind == Kind.VALUE:
            return True, self._fit(col, bucket)
        if feature.kind in (Kind.LEAD2, Kind.LEAD3, Kind.FORM) and prof is not None and prof.digit_prefixes:
            # numbers (a phone, a postcode): a format of the column's, its digits from the bucket on
            formats = {str(t): w for t, w in zip(prof.shapes.values, _weights(prof.shapes)) if set(str(t)) <= set("9+-(). x")}
            if feature.kind == Kind.FORM:
                return (True, draw_digits(bucket, prof.digit_prefixes.get(bucket, {}), self.rng)) if bucket in formats else (False, None)
            held = {t: prof.digit_prefixes.get(t, {}).get(bucket, 0) for t in formats}
            if any(held.values()):
                template = str(Weighted.of({t: n for t, n in held.items() if n}).pick(self.rng))
                return True, draw_digits(template, prof.digit_prefixes[template], self.rng, start=bucket)
            return False, None
        if feature.kind == Kind.AREA:
            return self._digits_in(prof, bucket, area=True)
        if feature.kind == Kind.YEAR and prof is not None and prof.numbers and bucket.isdigit() and dt.MINYEAR <= int(bucket) < dt.MAXYEAR:
            lo = dt.datetime(int(bucket), 1, 1, tzinfo=dt.timezone.utc).timestamp()
            hi = dt.datetime(int(bucket) + 1, 1, 1, tzinfo=dt.timezone.utc).timestamp()
            inside = prof.numbers[bisect.bisect_left(prof.numbers, lo):bisect.bisect_left(prof.numbers, hi)]
            if inside:
                return True, self._ts(col, dt.datetime.fromtimestamp(quantile(inside, self.rng), dt.timezone.utc))
        return False, None

    def _digits_in(self, prof: ColumnProfile | None, bucket: str, area: bool) -> tuple[bool, str | None]:
        """(True, a number in one of the column's formats (its country code or trunk prefix as the table
        writes them) with ``bucket``'s digits put where the format has its area code (``area``) or
        first digits), else (False, None)."""
        if prof is None or not prof.shapes or not bucket.isdigit():
            return False, None
        formats = {str(t): w for t, w in zip(prof.shapes.values, _weights(prof.shapes)) if set(str(t)) <= set("9+-(). x")}
        if formats:
            template = str(Weighted.of(formats).pick(self.rng))
            drawn = draw_digits(template, prof.digit_prefixes.get(template, {}), self.rng)
            at = [i for i, ch in enumerate(drawn) if ch.isdigit()][area_start(drawn) if area else 0:]
            if len(at) >= len(bucket):
                chars = list(drawn)
                for i, d in zip(at, bucket, strict=False):
                    chars[i] = d
                return True, "".join(chars)
        return False, None

    def _bound(self, name: str, sem: Semantic) -> bool:
        """Whether a column's value comes with something else about the row (its person, location,
        placement, its creation time) rather than from the column's own distribution."""
        if sem in (Semantic.FIRST_NAME, Semantic.LAST_NAME, Semantic.FULL_NAME, Semantic.CREATED, Semantic.UPDATED):
            return True
        places = self.profile.places
        return places is not None and name in places.columns

    def _drawn(self, col: Column, sem: Semantic, prof: ColumnProfile | None, person: Mapping[str, str], ctx: RowContext,
               done: Mapping[str, str | None]) -> str | None:
        """A column's value: NULL at the column's rate (for location columns, where the composed
        location has none), a value many real rows share at their rate, else a synthetic one."""
        places = self.profile.places
        if places is not None and col.name in places.columns:
            place = self._composed(done)
            if place:
                got = place.get(col.name)
                return self._fit(col, got) if got is not None else None
        if sem == Semantic.PHONE:
            shared = self.reuse.get(col.name)
            if shared is not None and shared[0] and self.rng.random() < shared[1]:
                return str(shared[0].pick(self.rng))
            return None if self._null(col, prof, done) else self._phone(None, prof)
        if self._null(col, prof, done) and not (sem == Semantic.UPDATED and self.profile.updates is not None):
            return None  # (an update column's NULLs go with the creation time: Updates.draw)
        shared = self.reuse.get(col.name)
        composed = (places is not None and col.name in places.columns  # shares consistently itself
                    or (self._match_people is not None and col.name == self._match_people.keys[0][0]))
        if shared is not None and shared[0] and not composed and self.rng.random() < shared[1]:
            return str(shared[0].pick(self.rng))
        hint = self.hints.get(col.name)
        if hint is not None and hint.allowed:
            observed = [v for v in (prof.categorical.values if prof and prof.categorical else ()) if v in hint.allowed]
            return str(prof.categorical.pick(self.rng)) if observed and len(observed) == len(prof.categorical.values) else self.rng.choice(hint.allowed)  # type: ignore[union-attr]
        return self._value(col, sem, prof, person, ctx, done)

    def _composed(self, done: Mapping[str, str | None]) -> dict[str, str | None]:
        """This row's location columns, composed once per row (empty when nothing new came up), going
        with the columns made before (``done``: an owned phone number's area code) where the table
        relates them: the bucket of the strongest such relation's location feature is drawn from the
        table's conditional distribution given that column, and the location from those in it."""
        if self._place is None:
            places = self.profile.places
            want = self._place_bucket(done)
            matched = None
            if self._match_places is not None:
                among = self._places_in(*want) if want is not None else None
                if want is not None and among:
                    among = self._with_fresh(want, among)
                among = self._apart_places(done, among or None) or among
                target = self._unjoined(self._match_places.target(self._places, among=bool(among)))
                if want is not None and among and target is not None:
                    among = self._shaped(among, target)
                matched = self._match_places.draw(self._places, among=among or None, tries=PLACE_TRIES, want=target,
                                                  joins=self._joins)
            if matched is None and places is not None:
                for _ in range(RELATION_TRIES if want is not None else 1):
                    matched = places.compose(self._places)
                    if want is None or matched is None or want[0].bucket(want[1], matched.get(want[1])) == want[2]:
                        break
            self._place = dict(matched or {})
        return self._place

    def households_asked(self, counts: Mapping[str, Counter[str | None] | ValueCounts],
                         sample: Sequence[Mapping[str, str | None]]) -> tuple[str, str, list[str]] | None:
        """(address column, full-name column, addresses) whose rows' names :meth:`learn_households`
        needs (:meth:`Households.asked`), the households started; None when the table has no names and
        addresses matched (no canary is then renamed)."""
        if self._match_people is None or self._match_places is None:
            return None
        address, name = self._match_places.keys[0][0], self._match_people.keys[0][0]
        if address not in counts:
            return None
        self._households = Households(address, name)
        return address, name, self._households.asked(counts[address], sample)

    def learn_households(self, sample: Sequence[Mapping[str, str | None]], residents: Iterable[tuple[str, str | None]]) -> None:
        """The co-residents' names at the addresses :meth:`households_asked` named (:meth:`Households.learn`)."""
        if self._households is not None:
            self._households.learn(sample, residents)

    def _moved_in(self, person: dict[str, str], values: dict[str, str | None], email: str | None,
                  kept: Iterable[str]) -> str | None:
        """The row's e-mail once its person has moved in: a canary drawn to an address only canaries
        hold takes a co-resident's surname at the table's rate (:class:`Households`), in its name
        columns (those not ``kept``: given or placed) and in an e-mail local part that spells it;
        one an owned mailbox names keeps its own. The row's surname is then counted at its address for
        the canaries drawn there after it."""
        homes = self._households
        if homes is None or self._match_places is None or not self._place:
            return email
        address = self._place.get(homes.address)
        real = self._match_places.counts[0][address] if address is not None else 0
        last = None if self._boxed else homes.surname_for(self._kin, address, real, sure=self._kin_join)
        renamed = self._with_surname(person, last) if last is not None and last != person["last"] else None
        new = email
        if renamed is not None and email is not None:
            new = self._respelled(email, person["last"], renamed["last"])
            if new is None or (self._box is not None and new != email):
                # its e-mail cannot follow (the address it would spell is taken, or it is an owned
                # mailbox, handed out whole, whose handle happens to spell the old surname): a stranger after all
                new, renamed = email, None
        if renamed is not None:
            fixed = set(kept)
            for col in self.columns():
                sem, now = self.semantics[col.name], values.get(col.name)
                part = _PERSON_PART.get(sem)
                if part is not None and col.name not in fixed and now == self._fit(col, person[part]):
                    values[col.name] = self._fit(col, renamed[part])
                elif sem == Semantic.EMAIL and email is not None and now == email:
                    values[col.name] = new
            email = new
            person.update(renamed)
        homes.add(address, person["last"])
        return email

    def _unjoined(self, target: tuple[int, ...] | None) -> tuple[int, ...] | None:
        """The location classes this row matches (``target``, a real row's) once households are
        decided. A canary whose name its owned mailbox fixes cannot take a co-resident's surname, so
        it may join canaries' address (:attr:`_joins`) only at the table's rate of strangers; a
        household class it drew otherwise is left to a later canary whose name is free, which then
        joins as kin (:attr:`_kin_owed`), and this one matches another real row's classes. Without
        this, the canaries of mailbox-heavy tables were strangers at their addresses: "an address
        two or three rows hold and no co-resident of my surname" flagged 7-12% of canaries against
        4% of real rows (bench, independent table)."""
        self._kin_join, self._joins = False, True
        match, homes = self._match_places, self._households
        if target is None or match is None or homes is None or homes.rate is None:
            return target
        joined = match.joined_only()
        if not self._boxed:
            owed = sorted(c for c, n in self._kin_owed.items() if n > 0)
            if owed:
                self._kin_owed[owed[0]] -= 1
                self._kin_join = True
                return self._kin.choice(match.of_primary(owed[0]))
            return target
        self._joins = self._kin.random() >= homes.rate
        if self._joins or target[0] not in joined:
            return target
        self._kin_owed[target[0]] += 1
        for _ in range(20):
            target = match.target(self._places)
            if target is None or target[0] not in joined:
                break
        return target

    def _with_surname(self, person: Mapping[str, str], last: str) -> dict[str, str] | None:
        """``person`` with surname ``last`` in the layout of its full name (case and suffix kept);
        None when the name has no surname to replace or real rows, fewer than ``k``, have the new one."""
        split = split_name(person["full"])
        if split is None:
            return None
        if split[0] == "en":
            words = person["full"].split(" ")
            own = person["last"].lower()
            at = next((i for i in range(len(words) - 1, -1, -1) if own and words[i].lower().startswith(own)), None)
            if at is None:
                return None
            words[at] = _styled(last, words[at][:len(own)]) + words[at][len(own):]
            full = " ".join(words)
        else:
            full = join_name(split[0], last, split[2])
        held = self._match_people.counts[0][full] if self._match_people is not None else 0
        return None if 0 < held < MIN_SHARED else {"first": person["first"], "last": last, "full": full}

    def _respelled(self, email: str, old: str, new: str) -> str | None:
        """``email`` with the spelling of surname ``old`` in its local part (at an end of a run of
        letters: ``jsmith``, ``smith.j``, not the ``li`` in ``olivia``) replaced by one of ``new``,
        in its case (:meth:`ContactAllocator.renamed`); ``email`` itself when it spells no such surname;
        None when the new address is taken (a co-resident's ``jsmith`` already)."""
        local = email.rpartition("@")[0]
        low = local.lower()
        for spelt in sorted(spellings(old, surname=True), key=len, reverse=True):
            hits = [m.start() for m in re.finditer(re.escape(spelt), low)
                    if m.start() == 0 or not low[m.start() - 1].isalpha() or m.end() == len(low) or not low[m.end()].isalpha()]
            if hits:
                at, size = hits[-1], len(spelt)
                break
        else:
            return email
        word = local[at:at + size]
        made = spell(new, self._kin, surname=True)
        made = made.upper() if word.isupper() else made.capitalize() if word[:1].isupper() else made
        if not made:
            return email
        got = self.contacts.renamed(email, local[:at] + made + local[at + size:])
        return None if got == email else got

    def _place_bucket(self, done: Mapping[str, str | None]) -> tuple[Relation, str, str | None] | None:
        """(relation, location column, bucket) a location should fall in given ``done``, or None."""
        places, relations = self.profile.places, self.profile.relations
        if places is None or not relations or not done:
            return None
        on = sorted((r for c in places.columns for r in relations.on(c, [n for n in done if n not in places.columns])),
                    key=lambda r: -r.information)
        if not on:
            return None
        r = on[0]
        col = r.a.column if r.a.column in places.columns else r.b.column
        return r, col, r.given(col, done.get(r.other(col))).pick(self._places)

    def _apart_places(self, done: Mapping[str, str | None],
                      among: Sequence[Mapping[str, str | None]] | None) -> list[Mapping[str, str | None]] | None:
        """Of the candidate locations (``among``; all of them when none of those fits), those whose pair
        with each contact point made before (``done``: an owned number) that a relation joins to the
        location is as common as a real row's
        (:class:`Apart`): an area code too rare in the sample to have a bucket of its own still goes
        with a region the table's rows have it in. None when there is no such contact point, or when
        every candidate fits or none does (the frequency match then draws from all of them as usual)."""
        assert self._match_places is not None
        out: Sequence[Mapping[str, str | None]] | None = among
        decided: dict[str, bool] = {}  # by contact column: one decision for all its pairs
        steps: list[tuple[int, frozenset[str | None]]] = []  # the filters applied so far: (Apart, its fitting place features)
        for apart in self._apart:
            if not apart.related or apart.contact.of(done.get(apart.contact.column)) is None:
                continue  # a weak dependence: restricting the locations would bend how common they are more than it helps
            indexed = self._apart_index.get(id(apart))
            if indexed is None:
                indexed = self._apart_index[id(apart)] = ({}, {})
                for cand in self._match_places.pool:
                    place = indexed[1][id(cand)] = apart.place.of(cand.get(apart.place.column))
                    indexed[0].setdefault(place, []).append(cand)
            index, place_of = indexed
            if apart.contact.column not in decided:
                decided[apart.contact.column] = apart.alone(self._places, done)
            alone = decided[apart.contact.column]
            contact = apart.contact.of(done.get(apart.contact.column))
            assert contact is not None  # (skipped above otherwise)
            fitting = {v for v in index if Apart.fits(apart.held_by(contact, v), alone)}
            if len(fitting) == len(index) or fitting <= {None}:
                continue  # every location fits (a mobile number), or none does: the match draws as it would
            # the locations left are a function of ``among`` and the filters so far, which repeat from row to
            # row: remembered (filtering the pool afresh on every row cost 10,000 canaries minutes)
            steps.append((id(apart), frozenset(fitting)))
            key = (id(among) if among is not None else 0, tuple(steps))
            hit = self._apart_memo.get(key)
            if hit is not None:
                self._apart_memo.move_to_end(key)
                out = hit[1]
                continue
            got = [c for c in out if (place_of[id(c)] if id(c) in place_of else apart.place.of(c.get(apart.place.column))) in fitting] \
                if out is not None else []
            if not got:
                got = [c for v in fitting for c in index[v]]
            if got:
                out = got
            self._apart_memo[key] = (among, out)  # ``among`` kept, so no other list takes its id
            if len(self._apart_memo) > APART_MEMO:
                self._apart_memo.popitem(last=False)
        # the remembered list itself (nothing mutates it): the next row's _shaped finds its split again
        if out is None or out is among:
            return None
        return out if isinstance(out, list) else list(out)

    def _fresh_places(self, r: Relation, col: str, bucket: str | None) -> list[Mapping[str, str | None]]:
        """Up to :data:`PLACE_FRESH` tries at locations in ``bucket`` of ``r`` whose address shape no
        row of the table has (:meth:`Splicer.compose` with ``novel``, walking the sampled rows in the
        bucket), made once per bucket. Most real rows' address shape is the only one of its kind
        (a street of their town few customers live on) with every word of it common; the pool's
        candidates that fit one bucket (an owned number's state) are mostly composed ones on a
        street some row has there, so canaries placed by their contact point would share their
        shape with a real row far more often. New words would not do: they make the rarest word
        rarer than real rows'."""
        key = (id(r), bucket)
        got = self._fresh_index.get(key)
        places = self.profile.places
        if got is None and places is not None and self._match_places is not None:
            got = self._fresh_index[key] = []
            text = places.columns[places.text_index]
            shapes = self._match_places.counts[1]
            within = frozenset(i for i in range(len(places.rows)) if r.bucket(col, places.value(i, col)) == bucket)
            for _ in range(PLACE_FRESH if within else 0):
                made = places.compose(self._places, novel=True, within=within)
                if made is not None and r.bucket(col, made.get(col)) == bucket and shapes[shape_key(made.get(text))] == 0:
                    got.append(made)
        return got or []

    def _with_fresh(self, want: tuple[Relation, str, str | None], among: list[Mapping[str, str | None]],
                    ) -> list[Mapping[str, str | None]]:
        """The bucket's candidates (``among``) and its fresh ones (:meth:`_fresh_places`), made once per bucket."""
        key = (id(want[0]), want[2])
        got = self._bucket_places.get(key)
        if got is None:
            got = self._bucket_places[key] = among + self._fresh_places(*want)
        return got

    def _shape_key(self, cand: Mapping[str, str | None], text: str) -> str | None:
        """``cand``'s address shape key, computed once per candidate (candidates live as long as the synthesizer)."""
        known = self._shape_keys.get(id(cand))
        if known is None or known[0] is not cand:
            known = self._shape_keys[id(cand)] = (cand, shape_key(cand.get(text)))
        return known[1]

    def _shaped(self, among: list[Mapping[str, str | None]], target: tuple[int, ...]) -> list[Mapping[str, str | None]]:
        """Of the candidate locations of one bucket (``among``), those whose address shape no row of
        the table (nor canary) has when the real row's classes this canary matches (``target``) say
        its shape is the only one of its kind, else those whose shape some row (or canary) has; all of them when the side decided on has fewer than
        :data:`MIN_SHARED` candidates. Within a bucket the frequency match trades the shape's count
        against the other keys' (the town's, the rarest word's), and the few candidates there with
        a new shape rarely fit those as well: canaries placed by their contact point shared their
        shape with a real row far more often than real rows (bench: 59% alone against 77%). Decided
        from the target, not a coin of its own: a target whose address other rows hold has a shared
        shape, and a coin left the addresses canaries hold out of the list for it 77% of the time."""
        match, places = self._match_places, self.profile.places
        if match is None or places is None or not match.targets:
            return among
        text = places.columns[places.text_index]
        alone = target[1] == 0

        counts, added, log = match.counts[1], match.added[1], match.taken[1]
        part = self._shape_parts.get(id(among))
        if part is None or part.among is not among:  # the table's counts split ``among`` once; canaries' shapes per row
            new: list[tuple[Mapping[str, str | None], str | None]] = []
            old: list[tuple[Mapping[str, str | None], str | None]] = []
            for c in among:
                k = self._shape_key(c, text)
                (old if counts[k] else new).append((c, k))
            part = self._shape_parts[id(among)] = _ShapeSplit(among, new, old, frozenset(k for _, k in new))
        got = part.handed.get(alone)
        if got is None or (got[0] < len(log) and not part.new_keys.isdisjoint(log[got[0]:])):
            taken = added.get
            if alone:
                got = (len(log), [c for c, k in part.new if not taken(k)])
            else:
                got = (len(log), [c for c, _ in part.old] + [c for c, k in part.new if taken(k)])
        part.handed[alone] = (len(log), got[1])
        return got[1] if len(got[1]) >= MIN_SHARED else among

    def _places_in(self, r: Relation, col: str, bucket: str | None) -> list[Mapping[str, str | None]]:
        """The candidate locations whose ``col`` falls in ``bucket`` of ``r`` (indexed once per relation)."""
        assert self._match_places is not None
        index = self._place_index.get(id(r))
        if index is None:
            index = self._place_index[id(r)] = {}
            for cand in self._match_places.pool:
                index.setdefault(r.bucket(col, cand.get(col)), []).append(cand)
        return index.get(bucket, [])

    # -- helpers --------------------------------------------------------------------------------
    def _null(self, col: Column, prof: ColumnProfile | None, done: Mapping[str, str | None] | None = None) -> bool:
        """Whether a value is NULL: at the column's rate, or where the table relates the column's
        NULLs to a column made before it (``done``: an update time that rows of the launch year lack
        more often), at the rate the table has given that column's value."""
        if col.not_null or prof is None or not prof.sampled:
            return False
        made = done or {}
        for r in self.profile.relations.on(col.name, made) if made and self.profile.relations else ():
            given = r.given(col.name, made.get(r.other(col.name)))
            if None in given.values:
                at = given.values.index(None)
                return self.rng.random() < (given.cum[at] - (given.cum[at - 1] if at else 0.0)) / given.cum[-1]
        return self.rng.random() < prof.null_rate

    def _matched_person(self) -> dict[str, str]:
        box = self._box = self.contacts.next_mailbox() if self._has_email else None
        self._boxed = False
        if box is not None:
            local = box.rpartition("@")[0]
            fitted = self._person_for(local)
            named = self._named_by(local)
            self._boxed = fitted is not None or named is not None
            if named is not None and (fitted is None or (fitted["first"].lower(), fitted["last"].lower()) != (
                    named["first"].lower(), named["last"].lower())):
                return named  # first.last of the mailbox, in a Latin-script table: the owner's name as it reads
            if fitted is not None:
                return fitted
        if self._match_people is not None:
            got = self._match_people.draw(self._people)
            if got is not None:
                col = self._match_people.keys[0][0]
                return {"first": str(got["first"]), "last": str(got["last"]), "full": str(got[col])}
        return self._person()

    def _named_by(self, local: str) -> dict[str, str] | None:
        """The person a Latin-script mailbox names as ``first.last`` / ``first_last`` / ``first-last``
        (digits after it allowed; ``last.first`` where only that order has a known name), written
        the way the table writes names (:meth:`_dressed`); None otherwise (a handle, a single word,
        or a table whose names are not in Latin letters)."""
        m = re.fullmatch(r"([a-z]{2,})[._-]([a-z]{2,})\d*", local.lower())
        if m is None or self.profile.script not in (None, "latin") or self._spelled is None:
            return None
        a, b = m.groups()
        spelled = self._spelled[1]
        given, surname = spelled.known_given, spelled.known_surname
        if not (given(a) or surname(b)) and (given(b) or surname(a)):  # last.first: william.everhurst
            a, b = b, a
        first, last = a.capitalize(), b.capitalize()
        return {"first": first, "last": last, "full": self._dressed(first, last)}

    def _dressed(self, first: str, last: str) -> str:
        """``first last`` in the layout of a name drawn as for any row (from the frequency match's
        candidates): its middle initial, second surname, suffix and letter case kept, its given name
        and surname replaced. Every mailbox owner written "First Last" where real rows also have
        "John A. Smith", "SMITH-LOPEZ" and "Jr." would make the plain form a tell."""
        got = self._match_people.draw(self._people) if self._match_people is not None else None
        if got is not None:
            assert self._match_people is not None
            cand = {"first": str(got["first"]), "last": str(got["last"]), "full": str(got[self._match_people.keys[0][0]])}
        else:
            cand = self._person()
        words = cand["full"].split(" ")
        given = cand["first"].split(" ")[0].lower()
        at_first = next((i for i, w in enumerate(words) if w.lower() == given), None)
        at_last = next((i for i in range(len(words) - 1, -1, -1) if words[i].lower().startswith(cand["last"].lower())), None)
        # only initials between the two ("John A. Smith"): "John Smith Jr." (surname "Jr.") is written plainly
        if (not given or not cand["last"] or at_first is None or at_last is None or at_last <= at_first
                or any(len(w.strip(".")) > 1 for w in words[at_first + 1:at_last])):
            return f"{first} {last}"
        words[at_first] = _styled(first, words[at_first])
        words[at_last] = _styled(last, words[at_last][:len(cand["last"])]) + words[at_last][len(cand["last"]):]
        return " ".join(words)

    def _person_for(self, local: str) -> dict[str, str] | None:
        """A person the mailbox's local part names, as :meth:`Spelled.read` reads it (a reading as
        likely as people have those names, against a handle word): drawn among the candidates the
        frequency match uses that hold the surname and given name read (their names stay as common
        as real ones); where no candidate holds both, the surname's holder drawn so with the given
        name of one holding it (as common as candidates have it); in a Latin-script table, a name
        read as a word no candidate has (loisadams) written as that word. Not where real rows,
        fewer than ``k``, have the full name made so. None when it reads as a handle (the person is
        then drawn as for any row)."""
        if self._spelled is None:
            pool: Sequence[Mapping[str, str | None]] = self._match_people.pool if self._match_people is not None else [
                {"full": p["full"], "first": p["first"], "last": p["last"]} for p in (self._person() for _ in range(4000))]
            names = [pr for pr in self.latin.get_providers() if hasattr(pr, "first_names") and hasattr(pr, "last_names")]
            latin = self.profile.script in (None, "latin") and names
            self._spelled = (pool, Spelled.of([(str(c["last"]), str(c["first"])) for c in pool],
                                              getattr(names[0], "first_names", ()) if latin else (),
                                              getattr(names[0], "last_names", ()) if latin else ()))
        pool, spelled = self._spelled
        read = spelled.read(local, self._people, self._handle_odds)
        if read is None:
            return None
        surnames, givens, surname_word, given_word = read
        known = surnames & givens if surnames and givens else surnames or givens
        got = self._drawn_among([pool[i] for i in sorted(known)]) if known else None
        if got is None and surnames and givens:  # nobody holds both: the surname's holder, another's given name
            got = self._drawn_among([pool[i] for i in sorted(surnames)])
            if got is not None:
                got = self._renamed(got, str(pool[self._people.choice(sorted(givens))]["first"]), got["last"])
        elif (surname_word or given_word) and self.profile.script in (None, "latin"):
            if got is None and not known:  # names only the word lists have (jeremybanks): the rest as for any row
                drawn = self._match_people.draw(self._people) if self._match_people is not None else None
                got = self._person() if drawn is None else {
                    "first": str(drawn["first"]), "last": str(drawn["last"]), "full": str(drawn.get(self._name_key()))}
            if got is not None:
                got = self._renamed(got, given_word.capitalize() or got["first"], surname_word.capitalize() or got["last"])
        return got

    def _renamed(self, person: dict[str, str], first: str, last: str) -> dict[str, str]:
        """``person`` with these names, written in its layout (a Latin one as :meth:`_dressed` writes
        it); ``person`` itself when real rows, fewer than ``k``, have that full name (never copied)."""
        split = split_name(person["full"])
        if split is not None and split[0] != "en":
            full = join_name(split[0], last, first)
        elif self.profile.script in (None, "latin"):
            full = self._dressed(first, last)
        else:
            return person
        held = self._match_people.counts[0][full] if self._match_people is not None else 0
        return person if 0 < held < MIN_SHARED else {"first": first, "last": last, "full": full}

    def _name_key(self) -> str:
        return self._match_people.keys[0][0] if self._match_people is not None else "full"

    def _drawn_among(self, fitting: Sequence[Mapping[str, str | None]]) -> dict[str, str] | None:
        """A candidate of ``fitting`` drawn by the frequency match (its count classes a real row's)."""
        got = self._match_people.draw(self._people, among=fitting) if self._match_people is not None else self._people.choice(fitting)
        if got is None:
            return None
        return {"first": str(got["first"]), "last": str(got["last"]), "full": str(got.get(self._name_key()))}

    def _person(self) -> dict[str, str]:
        if self.profile.names is not None:
            first, last, full = self.profile.names.draw(self._people, self.fake, self.latin)
            return {"first": first, "last": last, "full": full}
        f = self.fake
        first, last = f.first_name(), f.last_name()
        if self.locale in ("ko_KR", "ja_JP"):
            full = f"{last}{first}" if self.locale == "ko_KR" else f"{last} {first}"
        else:
            full = f"{first} {last}"
        return {"first": first, "last": last, "full": full}

    def _latin_words(self, person: Mapping[str, str]) -> tuple[str, str]:
        if self.locale == "ja_JP":
            return self.fake.first_romanized_name().lower(), self.fake.last_romanized_name().lower()
        if self.locale == "ko_KR":
            words = re.findall(r"[a-z]+", self.fake.user_name().lower())
            w = words[0] if words else "kim"
            cut = max(2, min(len(w) - 2, len(w) // 2)) if len(w) > 4 else len(w)
            return w[:cut], w[cut:] or self.fake.user_name()[:3].lower()
        return person["first"].lower(), person["last"].lower()

    def _handle(self) -> str:
        """A handle word that spells no one's name (Faker's user names are built from names), as long
        as the words of the table's handles are."""
        if self._handle_lengths:
            if self._words is None:
                self._words = {}
                for w in sorted({re.sub(r"[^a-z]", "", w.lower()) for w in self.latin.get_words_list()}):
                    self._words.setdefault(len(w), []).append(w)
            fitting = self._words.get(int(self._handle_lengths.pick(self._people)))
            if fitting:
                return self._people.choice(fitting)
        return re.sub(r"[^a-z]", "", self.latin.word().lower()) or "user"

    def _name_words(self, person: Mapping[str, str], use: str, slots: int) -> list[str]:
        """Words of a local part that spells the person's own names the way ``use`` says, for a
        template with ``slots`` words (one slot: the parts run together, ``minjunkim``)."""
        r = self._people
        sur = spell(person["last"], r, surname=True) or self._handle()
        given_text = person["first"].replace(" ", "")
        giv = spell(given_text, r) or self._handle()
        initials = "".join(x[:1] for x in (spell(ch, r) for ch in given_text) if x) if script_class(given_text[:1]) else giv[:1]
        if use == "both":
            parts = [sur, giv] if r.random() < 0.5 else [giv, sur]
        elif use == "surname":
            parts = ([initials, sur] if r.random() < 0.5 else [sur, initials]) if slots == 1 else [sur, self._handle()]
        else:
            parts = [giv, self._handle()]
            if slots == 1:
                parts = [giv]
        return ["".join(parts)] if slots == 1 else parts

    def _email(self, person: Mapping[str, str], prof: ColumnProfile | None, uniform: bool = False) -> str:
        use = str(prof.email_uses.pick(self._people)) if prof and prof.email_uses else ""
        by_use = prof.email_locals_by_use.get(use) if prof and use else None
        if by_use:
            template = str(by_use.pick(self._people))
        else:
            template = prof.email_locals.pick(self._people) if prof and prof.email_locals else "w.w"
        if use in ("both", "surname", "given"):
            w1, w2, *_ = [*self._name_words(person, use, template.count("w")), ""]
            w2 = w2 or w1
        elif use == "none":  # handles, as people pick them
            w1, w2 = self._handle(), self._handle()
        elif template.count("w") == 1:  # one word: a whole handle, as people pick them
            w1 = re.sub(r"[^a-z]", "", self.fake.user_name().lower()) or "user"
            w2 = w1
        else:
            w1, w2 = self._latin_words(person)
        w1 = re.sub(r"[^a-z]", "", w1) or "user"
        w2 = re.sub(r"[^a-z]", "", w2) or "mail"
        words = iter([w1, w2, w2[:1], w1[:1]])
        local = []
        for tok in re.findall(r"w|9+|[^w9]", template):
            if tok == "w":
                local.append(next(words, w1))
            elif tok[0] == "9":  # digits as the table's local parts carry them (a birth year's, not uniform)
                local.append(self._local_digits(None if uniform else prof, use, tok))
            else:
                local.append(tok)
        text = "".join(local)
        if prof and prof.case_styles:
            style = prof.case_styles.pick(self._people)
            text = text.upper() if style == "upper" else (text[:1].upper() + text[1:] if style == "title" else text)
        fallback = self.fake.free_email_domain()
        if prof and prof.email_domains:
            fallback = prof.email_domains.pick(self._people) if prof.email_domains.cum[0] >= MIN_SHARED else fallback
        return self.contacts.email(text, fallback, None if uniform else lambda taken: self._redigit(prof, use, taken))

    def _local_digits(self, prof: ColumnProfile | None, use: str, mask: str) -> str:
        """A run of ``len(mask)`` digits drawn from the table's own for local parts of this name use
        (:func:`names.email_digits`), else of that length, else uniform."""
        digits = prof.email_digits if prof else {}
        return draw_digits(mask, digits.get(f"{use}:{mask}") or digits.get(mask) or {}, self._people)

    def _redigit(self, prof: ColumnProfile | None, use: str, local: str) -> str:
        """Another local part for one already taken: its trailing digits drawn again (same length), or,
        without any, a run appended at a length the table's local parts of this use end in, as often."""
        m = re.search(r"\d+$", local)
        if m is not None:
            return local[:m.start()] + self._local_digits(prof, use, "9" * len(m.group(0)))
        digits = prof.email_digits if prof else {}
        runs = {mask: sum(n for p, n in by.items() if len(p) == 1) for key, by in digits.items()
                for u, _, mask in [key.rpartition(":")] if u == use} or {key: sum(n for p, n in by.items() if len(p) == 1)
                                                                         for key, by in digits.items() if ":" not in key}
        mask = str(Weighted.of(runs).pick(self._people)) if runs else "99"
        return local + self._local_digits(prof, use, mask)

    def _phone(self, e164: str | None, prof: ColumnProfile | None) -> str:
        template = prof.shapes.pick(self.rng) if prof and prof.shapes else None
        if e164 is None:
            if template and set(template) <= set("9+-(). x"):
                if prof and template in prof.digit_prefixes:
                    return draw_digits(template, prof.digit_prefixes[template], self.rng)
                text = fill_shape(template, self.rng)
                head = re.match(r"\+?9+", template)
                if head and prof and prof.prefixes:
                    fitting = [p for p in prof.prefixes.values if len(p) == len(head.group(0))]
                    if fitting:
                        text = self.rng.choice(fitting) + text[len(head.group(0)):]
                return text
            return str(self.fake.phone_number())
        formats = self._formats(e164, prof)
        if formats:  # a format of the table's that holds this number's digits (a landline's would not)
            template = str(formats.pick(self.rng))
        return format_phone(e164, template or "+" + "9" * (len(e164) - 1), self.locale)

    def _owned_area(self, apart: Apart, e164: str, *, prof: ColumnProfile | None) -> tuple[str | None, float]:
        """An owned number's contact feature (its area code) as the table writes it (in its most common
        format that fits the number), and the whole table's rows with that feature."""
        formats = self._formats(e164, prof)
        value = format_phone(e164, str(formats.values[0]) if formats else "+" + "9" * (len(e164) - 1), self.locale)
        return apart.contact.of(value), float(apart.rows_with(value))

    def _formats(self, e164: str, prof: ColumnProfile | None) -> Weighted:
        """The table's phone formats (as often as it has them) that an owned number fits exactly."""
        key = (e164[:5], len(e164))
        got = self._fits.get(key)
        if got is None:
            got = self._fits[key] = Weighted.of({t: w for t, w in zip(prof.shapes.values, _weights(prof.shapes))
                                                 if shape(format_phone(e164, str(t), self.locale)) == t}) if prof else Weighted((), ())
        return got

    def _value(
        self, col: Column, sem: Semantic, prof: ColumnProfile | None, person: Mapping[str, str], ctx: RowContext,
        done: Mapping[str, str | None],
    ) -> str | None:
        f = self.fake
        if col.enum_labels:
            if prof and prof.categorical:
                return str(prof.categorical.pick(self.rng))
            return self.rng.choice(col.enum_labels)
        if prof and prof.categorical and sem not in (Semantic.CREATED, Semantic.UPDATED, Semantic.BIRTHDATE):
            rare = self._rare_numbers(col, prof)
            if rare is not None and self.rng.random() < len(rare.numbers) / len(prof.numbers):
                return self._typed(col, rare)
            return self._fit(col, str(prof.categorical.pick(self.rng)))
        if sem == Semantic.CREATED:
            return self._ts(col, ctx.created or self._precision(col, prof).cut(self._sample_ts(prof), self.rng))
        if sem == Semantic.UPDATED:
            created = next((parse_ts(done.get(c.name)) for c in self.info.columns if self.semantics[c.name] == Semantic.CREATED and done.get(c.name)), None)
            base = created or ctx.created
            if base is not None and self.profile.updates is not None:  # as rows created about then were updated
                now = dt.datetime.now(base.tzinfo) if base.tzinfo is not None else dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
                drawn = self.profile.updates.draw(base, max(base, now), self.rng)
                return None if drawn is None and not col.not_null else self._ts(col, drawn or base)
            if base is not None and self.profile.created_gap:
                # a gap drawn from the real ones, interpolated: a copy of one row's exact gap would pair them;
                # only gaps that end by now (a row cannot have been updated in the future)
                now = dt.datetime.now(base.tzinfo) if base.tzinfo is not None else dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
                gaps = self.profile.created_gap[:bisect.bisect_right(self.profile.created_gap, (now - base).total_seconds())]
                if not gaps:
                    return self._ts(col, base)
                later = base + dt.timedelta(seconds=max(0.0, quantile(gaps, self.rng)))
                return self._ts(col, self._precision(col, prof).cut(later, self.rng, lo=base, hi=max(base, now)))
            return self._ts(col, base or self._precision(col, prof).cut(self._sample_ts(prof), self.rng))
        if sem == Semantic.BIRTHDATE:
            if prof and prof.numbers:
                return self._ts(col, self._sample_ts(prof))
            return self._ts(col, dt.datetime.combine(f.date_of_birth(minimum_age=18, maximum_age=85), dt.time()))
        if col.category == "S":
            text = {
                Semantic.FIRST_NAME: lambda: person["first"],
                Semantic.LAST_NAME: lambda: person["last"],
                Semantic.FULL_NAME: lambda: person["full"],
                Semantic.STREET: lambda: f.street_address(),
                Semantic.ADDRESS: lambda: f.address().replace("\n", ", "),
                Semantic.CITY: lambda: f.city(),
                Semantic.STATE: lambda: f.administrative_unit() if hasattr(f, "administrative_unit") else f.city(),
                Semantic.POSTCODE: lambda: f.postcode(),
                Semantic.COUNTRY: lambda: f.country(),
                Semantic.COMPANY: lambda: f.company(),
                Semantic.USERNAME: lambda: f.user_name(),
            }.get(sem)
            if text is not None:
                value = text()
                if sem == Semantic.POSTCODE and prof and prof.shapes:
                    template = prof.shapes.pick(self.rng)
                    if set(template) <= set("9- "):
                        value = draw_digits(template, prof.digit_prefixes.get(template, {}), self.rng)
                return self._fit(col, value)
            return self._fit(col, self._generic_text(prof))
        return self._typed(col, prof)

    def _fit(self, col: Column, value: str) -> str:
        if col.max_length is not None and len(value) > col.max_length:
            return value[: col.max_length]
        return value

    def _generic_text(self, prof: ColumnProfile | None) -> str:
        if prof and prof.shapes:
            template = prof.shapes.pick(self.rng)
            if " " in template and len(template) > 20:
                target = len(template)
                text = self.fake.text(max_nb_chars=max(target, 10)) if self.locale == "en_US" else self.fake.sentence()
                return text[:target]
            if any(script_class(ch) for ch in template):
                return self.fake.word() if hasattr(self.fake, "word") else fill_shape(template, self.rng)
            return fill_shape(template, self.rng)
        return self.fake.word()

    def _sample_ts(self, prof: ColumnProfile | None) -> dt.datetime:
        if prof is not None and prof.numbers:
            return dt.datetime.fromtimestamp(quantile(prof.numbers, self.rng), dt.timezone.utc)
        if self.profile.created_epochs:
            return dt.datetime.fromtimestamp(quantile(self.profile.created_epochs, self.rng), dt.timezone.utc)
        now = dt.datetime.now(dt.timezone.utc)
        return now - dt.timedelta(seconds=self.rng.uniform(0, 3 * 365 * 86400))

    def _precision(self, col: Column, prof: ColumnProfile | None) -> Precision:
        """The column's own precision (whole seconds, milliseconds, microseconds), learnt once."""
        got = self._precisions.get(col.name)
        if got is None:
            got = self._precisions[col.name] = Precision.of(prof.numbers if prof is not None else self.profile.created_epochs)
        return got

    def _ts(self, col: Column, value: dt.datetime) -> str:
        return timestamp_text(col.base_type, value)

    def _rare_numbers(self, col: Column, prof: ColumnProfile) -> ColumnProfile | None:
        """For a numeric column whose common values are drawn as categories (shared by ``k`` rows or
        more), the profile of its other values (None: it has none): drawn from those (interpolated,
        never copied) as often as real rows hold one, a canary's numbers have the table's tail. Drawn
        from the common values alone, canaries' order totals never exceeded the dearest single item
        (90th percentile 129,000 won against 148,800), and a customer's average total stood out."""
        if col.category != "N" or not prof.numbers:
            return None
        if col.name not in self._rare:
            common = set()
            for v in prof.categorical.values:
                try:
                    common.add(float(str(v)))
                except ValueError:
                    continue
            rare = tuple(x for x in prof.numbers if x not in common)
            self._rare[col.name] = dataclasses.replace(prof, numbers=rare, categorical=Weighted((), ())) if rare else None
        return self._rare[col.name]

    def _typed(self, col: Column, prof: ColumnProfile | None) -> str | None:
        r = self.rng
        if col.category == "N":
            integral = col.base_type in ("int2", "int4", "int8") or bool(prof and prof.numbers and prof.integral)
            x = quantile(prof.numbers, r) if prof and prof.numbers else r.uniform(0, 1000)
            if col.name in self.unique and (not prof or len(set(prof.numbers)) < 20):
                # too few sampled values to draw distinct ones from: spread beyond them
                lo = min(prof.numbers) if prof and prof.numbers else 0.0
                hi = max(prof.numbers) if prof and prof.numbers else 1000.0
                x = r.uniform(lo, hi + 1000.0)
            hint = self.hints.get(col.name)
            if hint is not None:
                step = 1.0 if integral else 10.0 ** -(col.numeric_scale if col.numeric_scale is not None else 2)
                if hint.low is not None and (x < hint.low or (hint.low_strict and x <= hint.low)):
                    x = hint.low + (step if hint.low_strict else 0.0) + (r.random() * 10 * step if hint.high is None else 0.0)
                if hint.high is not None and (x > hint.high or (hint.high_strict and x >= hint.high)):
                    x = hint.high - (step if hint.high_strict else 0.0)
            if prof and prof.granularity:
                x = max(prof.granularity, round(x / prof.granularity) * prof.granularity)
            if integral:
                return str(int(round(x)))
            scale = col.numeric_scale if col.numeric_scale is not None else 2
            return f"{x:.{scale}f}"
        if col.category == "B":
            rate = 0.5
            if prof and prof.categorical:
                counts = dict(zip(prof.categorical.values, _weights(prof.categorical)))
                total = sum(counts.values())
                rate = counts.get("true", 0) / total if total else 0.5
            return "true" if r.random() < rate else "false"
        if col.base_type == "uuid":
            return str(uuid.UUID(int=r.getrandbits(128), version=4))
        if col.base_type in ("json", "jsonb"):
            return json.dumps({})
        if col.category == "D":
            return self._ts(col, self._sample_ts(prof))
        if col.category == "A":
            return "{}"
        if col.has_default or not col.not_null:
            return None
        raise SeedError(f"cannot synthesise a value for column {col.name} of type {col.type}", column=col.name)


#: the person's part each name column writes (:meth:`Synthesizer._value`)
_PERSON_PART = {Semantic.FIRST_NAME: "first", Semantic.LAST_NAME: "last", Semantic.FULL_NAME: "full"}


def _styled(word: str, like: str) -> str:
    """``word`` in the letter case of ``like`` (upper, lower, or as it is)."""
    return word.upper() if like.isupper() else word.lower() if like.islower() else word


def _derive(counts: Counter[str | None] | ValueCounts, fn: Any) -> Counter[str | None] | ValueCounts:
    if isinstance(counts, ValueCounts):
        return counts.derived(fn)
    if fn is same:
        return counts
    out: Counter[str | None] = Counter()
    for v, n in counts.items():
        out[fn(v)] += n
    return out


def _weights(w: Weighted) -> list[float]:
    prev = 0.0
    out = []
    for c in w.cum:
        out.append(c - prev)
        prev = c
    return out


def _faker_has(locale: str) -> bool:
    return locale in AVAILABLE_LOCALES
