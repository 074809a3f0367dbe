"""Profiles: a sample of real rows summarised per column (NULL rates, lengths, shapes, e-mail and
phone mix, numeric distributions, shared categorical values) without keeping any value that
identifies a person."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from canary.seeding.catalog import TableInfo
from canary.seeding.synth.names import NameModel, email_digits, email_uses
from canary.seeding.synth.places import Splicer
from canary.seeding.synth.relations import Relations
from canary.seeding.synth.shapes import (
    MIN_SHARED,
    Semantic,
    Weighted,
    local_shape,
    parse_ts,
    script_of,
    semantic_of,
    shape,
    shared_digit_prefixes,
)
from canary.seeding.synth.times import Updates


@dataclass(frozen=True, slots=True)
class ColumnProfile:
    name: str
    sampled: int
    null_rate: float
    categorical: Weighted  # shared values (each seen >= MIN_SHARED times); empty if high-cardinality
    shapes: Weighted  # character-class templates of string values
    lengths: tuple[int, ...]  # sorted lengths of string values
    numbers: tuple[float, ...]  # sorted numeric values
    integral: bool
    script: str | None
    email_locals: Weighted = Weighted((), ())  # local-part shape templates, e.g. "w.w", "w9"
    email_domains: Weighted = Weighted((), ())  # domain -> count (real mix, for reporting)
    email_uses: Weighted = Weighted((), ())  # which of the row's own names the local part spells: both / surname / given / none
    email_locals_by_use: Mapping[str, Weighted] = field(default_factory=dict)  # use -> local-part shape templates
    handle_lengths: Weighted = Weighted((), ())  # lengths of the words of handles (local parts that spell no name)
    handle_words: Weighted = Weighted((), ())  # words of handles MIN_SHARED rows use, by the rows using each
    freemail_rate: float = 0.0
    plus_rate: float = 0.0
    case_styles: Weighted = Weighted((), ())  # lower / upper / title / mixed
    prefixes: Weighted = Weighted((), ())  # leading digit groups shared by many values (area codes)
    granularity: float = 0.0  # numbers are multiples of this (e.g. 1000); 0: none detected
    digit_prefixes: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # shape -> digit prefix -> rows (>= MIN_SHARED)
    email_digits: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # [use:]run mask -> digit prefix -> rows (names.email_digits)


@dataclass(frozen=True, slots=True)
class TableProfile:
    columns: Mapping[str, ColumnProfile]
    rows: int  # sampled rows
    created_gap: tuple[float, ...] = ()  # sorted (updated - created) seconds
    created_epochs: tuple[float, ...] = ()  # sorted creation times (epoch seconds)
    script: str | None = None
    places: Splicer | None = None  # location columns (address, postcode, city...) composed together
    names: NameModel | None = None  # full names: layouts, shared surnames and given names, syllables
    relations: Relations = Relations()  # which columns' features depend on each other, and how
    updates: Updates | None = None  # how rows created at a time were updated after (NULL, never, a batch, their own)

    def col(self, name: str) -> ColumnProfile | None:
        return self.columns.get(name)


FREEMAIL = frozenset(
    "gmail.com yahoo.com hotmail.com outlook.com aol.com icloud.com naver.com daum.net hanmail.net nate.com "
    "kakao.com yahoo.co.jp docomo.ne.jp ezweb.ne.jp softbank.ne.jp proton.me protonmail.com live.com msn.com".split()
)

def _case_style(text: str) -> str:
    letters = [c for c in text if c.isascii() and c.isalpha()]
    if not letters:
        return "none"
    if all(c.islower() for c in letters):
        return "lower"
    if all(c.isupper() for c in letters):
        return "upper"
    return "title" if text[:1].isupper() else "mixed"


def profile(info: TableInfo, sample: Sequence[Mapping[str, str | None]]) -> TableProfile:
    """Summarise sampled rows (values as PostgreSQL text) per column; no identifying value is kept."""
    cols: dict[str, ColumnProfile] = {}
    n = len(sample)
    scripts = []
    name_col = next((c.name for c in info.columns if semantic_of(c) == Semantic.FULL_NAME), None)
    for col in info.columns:
        values = [r.get(col.name) for r in sample]
        present = [v for v in values if v is not None]
        counts = Counter(present)
        shared = {v: c for v, c in counts.items() if c >= MIN_SHARED}
        distinct_ratio = len(counts) / max(len(present), 1)
        categorical = Weighted.of(shared) if shared and (distinct_ratio <= 0.2 or sum(shared.values()) >= 0.8 * len(present)) else Weighted((), ())
        numbers: list[float] = []
        integral = True
        if col.category == "N":
            for v in present:
                try:
                    d = Decimal(v)
                except InvalidOperation:
                    continue
                if d.is_finite():
                    numbers.append(float(d))
                    integral = integral and d == d.to_integral_value()
        elif col.category == "D":
            numbers = [ts.timestamp() for ts in (parse_ts(v) for v in present) if ts is not None]
        sem = semantic_of(col)
        extra: dict[str, Any] = {}
        if sem == Semantic.EMAIL and present:
            extra.update(email_uses(sample, col.name, name_col), email_digits=email_digits(sample, col.name, name_col))
            locals_: Counter[str] = Counter()
            domains: Counter[str] = Counter()
            plus = free = 0
            cases: Counter[str] = Counter()
            for v in present:
                local, _, domain = v.rpartition("@")
                base = local.split("+", 1)[0]
                plus += "+" in local
                locals_[local_shape(base)] += 1
                domains[domain.lower()] += 1
                free += domain.lower() in FREEMAIL
                cases[_case_style(v)] += 1
            extra.update(
                email_locals=Weighted.of(locals_), email_domains=Weighted.of(domains),
                freemail_rate=free / len(present), plus_rate=plus / len(present), case_styles=Weighted.of(cases),
            )
        if sem == Semantic.PHONE and present:
            heads = Counter(m.group(0) for m in (re.match(r"\+?\d+", v) for v in present) if m)
            extra["prefixes"] = Weighted.of({h: c for h, c in heads.items() if c >= MIN_SHARED})
        if sem in (Semantic.PHONE, Semantic.POSTCODE) and present:
            extra["digit_prefixes"] = shared_digit_prefixes(present)
        if numbers and integral:
            ints = [int(n) for n in numbers if n]
            g = 1
            while ints and g < 10**9 and all(i % (g * 10) == 0 for i in ints):
                g *= 10
            extra["granularity"] = float(g) if g > 1 else 0.0
        script = script_of(present[:200]) if col.category == "S" else None
        if sem in (Semantic.FULL_NAME, Semantic.FIRST_NAME, Semantic.LAST_NAME, Semantic.ADDRESS, Semantic.CITY, Semantic.STREET):
            if script:
                scripts.append(script)
        cols[col.name] = ColumnProfile(
            name=col.name, sampled=n, null_rate=(n - len(present)) / n if n else (0.0 if col.not_null else 0.0),
            categorical=categorical,
            shapes=Weighted.of(Counter(shape(v) for v in present)) if col.category == "S" else Weighted((), ()),
            lengths=tuple(sorted(len(v) for v in present)) if col.category == "S" else (),
            numbers=tuple(sorted(numbers)), integral=integral, script=script, **extra,
        )
    gaps: list[float] = []
    epochs: list[float] = []
    created = next((c.name for c in info.columns if semantic_of(c) == Semantic.CREATED), None)
    updated = next((c.name for c in info.columns if semantic_of(c) == Semantic.UPDATED), None)
    if created:
        epochs = [ts.timestamp() for ts in (parse_ts(r.get(created)) for r in sample) if ts is not None]
    updates: Updates | None = None
    if created and updated:
        for r in sample:
            a, b = parse_ts(r.get(created)), parse_ts(r.get(updated))
            if a and b:
                gaps.append((b - a).total_seconds())
        updates = Updates.of((parse_ts(r.get(created)), parse_ts(r.get(updated))) for r in sample
                             if r.get(updated) is None or parse_ts(r.get(updated)) is not None)
    main_script = Counter(scripts).most_common(1)[0][0] if scripts else None
    return TableProfile(columns=cols, rows=n, created_gap=tuple(sorted(gaps)), created_epochs=tuple(sorted(epochs)), script=main_script,
                        places=Splicer.of(info, sample),
                        names=NameModel.of([str(r[name_col]) for r in sample if r.get(name_col)]) if name_col else None,
                        relations=Relations.learn(info, sample), updates=updates)
