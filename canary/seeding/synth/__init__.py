"""Synthetic customer rows that look like the rows already in a table.

:func:`profile` summarises a sample of real rows per column without keeping any real value that
identifies a person: NULL rates, length distributions, character-class shapes of strings, e-mail
local-part shapes and domain mix, phone formats, name scripts, numeric distributions and only those
categorical values that many rows share (``status``, ``country``, ``tier``). :class:`Synthesizer`
then produces rows from that profile: names, addresses and companies from Faker in the table's locale
(given, or inferred from the scripts in the data), contact points from :class:`ContactAllocator`
(pools that route back to us), timestamps from the placement the seeder chose.

Everything here is pure CPU work on plain values; the seeder runs it in a worker thread.
"""

from __future__ import annotations

import bisect
import datetime as dt
import enum
import json
import random
import re
import string
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from faker import Faker

from canary.errors import SeedError
from canary.seeding.catalog import Column, TableInfo, check_hints
from canary.seeding.synth.romanize import SURNAME_SPELLINGS, spell, spellings

SUPPORTED_LOCALES = ("en_US", "ko_KR", "ja_JP")
#: a categorical value must be shared by at least this many sampled rows to be reused
MIN_SHARED = 3


class Semantic(enum.StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    FIRST_NAME = "first_name"
    LAST_NAME = "last_name"
    FULL_NAME = "full_name"
    STREET = "street"
    ADDRESS = "address"
    CITY = "city"
    STATE = "state"
    POSTCODE = "postcode"
    COUNTRY = "country"
    COMPANY = "company"
    USERNAME = "username"
    BIRTHDATE = "birthdate"
    CREATED = "created"
    UPDATED = "updated"
    GENERIC = "generic"


_NAME_RULES: tuple[tuple[Semantic, re.Pattern[str]], ...] = tuple(
    (sem, re.compile(rx, re.I))
    for sem, rx in (
        (Semantic.EMAIL, r"e_?mail"),
        (Semantic.PHONE, r"phone|mobile|tel(ephone)?$|^tel_|cell"),
        (Semantic.FIRST_NAME, r"first_?name|given_?name|^fname$"),
        (Semantic.LAST_NAME, r"last_?name|family_?name|surname|^lname$"),
        (Semantic.FULL_NAME, r"^(full_?|display_?|customer_?|contact_?)?name$"),
        (Semantic.STREET, r"street|address_?line|addr(ess)?_?1$|line_?1$"),
        (Semantic.ADDRESS, r"^(postal_|mailing_|billing_|shipping_|home_)?addr(ess)?$|^ship(ping)?_?to$|^deliver(y)?_?(to|address)$"),
        (Semantic.CITY, r"city|town"),
        (Semantic.STATE, r"^state$|province|region|prefecture"),
        (Semantic.POSTCODE, r"zip|post_?code|postal_?code"),
        (Semantic.COUNTRY, r"country"),
        (Semantic.COMPANY, r"company|employer|organi[sz]ation"),
        (Semantic.USERNAME, r"user_?name|login|handle|nickname"),
        (Semantic.BIRTHDATE, r"birth|dob$"),
        (Semantic.CREATED, r"created|signup|registered|joined|inserted"),
        (Semantic.UPDATED, r"updated|modified|changed"),
    )
)


def semantic_of(col: Column) -> Semantic:
    if col.category == "D":
        for sem in (Semantic.CREATED, Semantic.UPDATED, Semantic.BIRTHDATE):
            if dict(_NAME_RULES)[sem].search(col.name):
                return sem
        return Semantic.GENERIC
    if col.category != "S":
        return Semantic.GENERIC
    for sem, rx in _NAME_RULES:
        if sem not in (Semantic.CREATED, Semantic.UPDATED, Semantic.BIRTHDATE) and rx.search(col.name):
            return sem
    return Semantic.GENERIC


# -- shapes ---------------------------------------------------------------------------------------


def shape(text: str) -> str:
    """Character-class shape: ``Ab-12`` -> ``Aa-99``; Hangul ``가``, kana ``あ``, Han ``漢`` kept as classes."""
    out = []
    for ch in text:
        if ch.isdigit() and ch.isascii():
            out.append("9")
        elif ch.isascii() and ch.isalpha():
            out.append("A" if ch.isupper() else "a")
        else:
            out.append(_script_class(ch) or ch)
    return "".join(out)


def _script_class(ch: str) -> str | None:
    o = ord(ch)
    if 0xAC00 <= o <= 0xD7A3:
        return "가"
    if 0x3040 <= o <= 0x30FF:
        return "あ"
    if 0x4E00 <= o <= 0x9FFF:
        return "漢"
    return None


def script_of(values: Iterable[str]) -> str | None:
    """Dominant non-Latin script of some strings: 'hangul', 'kana', 'han' or 'latin' (None if empty)."""
    counts: Counter[str] = Counter()
    for v in values:
        for ch in v:
            cls = _script_class(ch)
            if cls == "가":
                counts["hangul"] += 1
            elif cls == "あ":
                counts["kana"] += 1
            elif cls == "漢":
                counts["han"] += 1
            elif ch.isalpha():
                counts["latin"] += 1
    if not counts:
        return None
    if counts["kana"]:
        return "kana"
    return counts.most_common(1)[0][0]


def infer_locale(script: str | None, default: str) -> str:
    return {"hangul": "ko_KR", "kana": "ja_JP", "han": "ja_JP"}.get(script or "", default)


def _fill(template: str, rng: random.Random) -> str:
    out = []
    for ch in template:
        if ch == "9":
            out.append(rng.choice(string.digits))
        elif ch == "a":
            out.append(rng.choice(string.ascii_lowercase))
        elif ch == "A":
            out.append(rng.choice(string.ascii_uppercase))
        else:
            out.append(ch)
    return "".join(out)


# -- profiles -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Weighted:
    """A discrete distribution with cumulative weights for fast sampling."""

    values: tuple[Any, ...]
    cum: tuple[float, ...]

    @classmethod
    def of(cls, counts: Mapping[Any, int | float]) -> Weighted:
        items = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
        total, cum = 0.0, []
        for _, w in items:
            total += w
            cum.append(total)
        return cls(tuple(k for k, _ in items), tuple(cum))

    def __bool__(self) -> bool:
        return bool(self.values)

    def pick(self, rng: random.Random) -> Any:
        return self.values[bisect.bisect_left(self.cum, rng.random() * self.cum[-1])]


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
    freemail_rate: float = 0.0
    plus_rate: float = 0.0
    case_styles: Weighted = Weighted((), ())  # lower / upper / title / mixed
    prefixes: Weighted = Weighted((), ())  # leading digit groups shared by many values (area codes)
    granularity: float = 0.0  # numbers are multiples of this (e.g. 1000); 0: none detected
    digit_prefixes: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # shape -> digit prefix -> rows (>= MIN_SHARED)


@dataclass(frozen=True, slots=True)
class TableProfile:
    columns: Mapping[str, ColumnProfile]
    rows: int  # sampled rows
    created_gap: tuple[float, ...] = ()  # sorted (updated - created) seconds
    created_epochs: tuple[float, ...] = ()  # sorted creation times (epoch seconds)
    script: str | None = None
    places: Splicer | None = None  # location columns (address, postcode, city...) composed together
    names: NameModel | None = None  # full names: layouts, shared surnames and given names, syllables

    def col(self, name: str) -> ColumnProfile | None:
        return self.columns.get(name)


FREEMAIL = frozenset(
    "gmail.com yahoo.com hotmail.com outlook.com aol.com icloud.com naver.com daum.net hanmail.net nate.com "
    "kakao.com yahoo.co.jp docomo.ne.jp ezweb.ne.jp softbank.ne.jp proton.me protonmail.com live.com msn.com".split()
)
_LOCAL_TOKEN = re.compile(r"[A-Za-z]+|[0-9]+|[^A-Za-z0-9]")


def local_shape(local: str) -> str:
    """``kim.minji92`` -> ``w.w9``: words, digit runs (one 9 per digit) and separators."""
    return "".join("w" if t[0].isalpha() else ("9" * len(t) if t[0].isdigit() else t) for t in _LOCAL_TOKEN.findall(local))


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
            extra.update(_email_uses(sample, col.name, name_col))
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
    if created and updated:
        for r in sample:
            a, b = parse_ts(r.get(created)), parse_ts(r.get(updated))
            if a and b:
                gaps.append((b - a).total_seconds())
    main_script = Counter(scripts).most_common(1)[0][0] if scripts else None
    return TableProfile(columns=cols, rows=n, created_gap=tuple(sorted(gaps)), created_epochs=tuple(sorted(epochs)), script=main_script,
                        places=Splicer.of(info, sample),
                        names=NameModel.of([str(r[name_col]) for r in sample if r.get(name_col)]) if name_col else None)


_TWO_SYLLABLE_SURNAMES = frozenset(k for k in SURNAME_SPELLINGS if len(k) == 2)


def split_name(name: str) -> tuple[str, str, str] | None:
    """(layout, surname, given name) of a full name: ``ko`` 김민준, ``ko_sp`` 김 민준, ``ja`` 佐藤 健,
    ``en`` John Smith; None for a single word in a Latin script or anything else."""
    text = " ".join(name.split())
    if not text:
        return None
    hangul = bool(re.search(r"[\uac00-\ud7a3]", text))
    words = text.split(" ")
    if hangul and len(words) == 1:
        cut = 2 if len(text) >= 4 and text[:2] in _TWO_SYLLABLE_SURNAMES else 1
        return ("ko", text[:cut], text[cut:]) if len(text) > cut else None
    if len(words) < 2:
        return None
    if hangul:
        return ("ko_sp", words[0], "".join(words[1:]))
    if any(_script_class(ch) in ("あ", "漢") for ch in text):
        return ("ja", words[0], " ".join(words[1:]))
    return ("en", words[-1], " ".join(words[:-1]))


def join_name(layout: str, surname: str, given: str) -> str:
    if layout == "ko":
        return f"{surname}{given}"
    if layout == "en":
        return f"{given} {surname}"
    return f"{surname} {given}"


@dataclass(frozen=True, slots=True)
class NameParts:
    """One layout's names: surnames and given names at least ``k`` sampled rows share (and the share
    of rows holding one), and for names nobody shares, the syllables (by position) and lengths that
    ``k`` rows share, to compose new given names."""

    surnames: Weighted
    surname_rate: float
    givens: Weighted
    given_rate: float
    syllables: tuple[Weighted, ...]
    lengths: Weighted


@dataclass(frozen=True, slots=True)
class NameModel:
    """Full names the way the table writes them, learned k-anonymously from the sample: the mix of
    layouts, the table's own surname and given-name frequencies (only parts ``k`` rows share) and
    composed given names for the long tail. Replaces Faker's weights, which are not the table's."""

    layouts: Weighted
    parts: Mapping[str, NameParts]
    k: int = MIN_SHARED

    @classmethod
    def of(cls, names: Sequence[str], k: int = MIN_SHARED) -> NameModel | None:
        split = [x for x in (split_name(n) for n in names) if x is not None]
        layouts = Counter(x[0] for x in split)
        shared_layouts = {lay: n for lay, n in layouts.items() if n >= k}
        if not shared_layouts:
            return None
        parts: dict[str, NameParts] = {}
        for lay in shared_layouts:
            rows = [(sur, given) for la, sur, given in split if la == lay]
            surs = Counter(sur for sur, _ in rows)
            givens = Counter(g for _, g in rows)
            shared_s = {v: c for v, c in surs.items() if c >= k}
            shared_g = {v: c for v, c in givens.items() if c >= k}
            tail = [g for _, g in rows if g not in shared_g]
            lengths = Counter(len(g) for g in tail)
            syll: list[Weighted] = []
            for i in range(max((n for n, c in lengths.items() if c >= k), default=0)):
                at = Counter(g[i] for g in tail if len(g) > i)
                syll.append(Weighted.of({ch: c for ch, c in at.items() if c >= k}))
            parts[lay] = NameParts(
                Weighted.of(shared_s), sum(shared_s.values()) / len(rows), Weighted.of(shared_g), sum(shared_g.values()) / len(rows),
                tuple(syll), Weighted.of({n: c for n, c in lengths.items() if c >= k}),
            )
        return cls(Weighted.of(shared_layouts), parts, k)

    def draw(self, rng: random.Random, fake: Faker, latin: Faker) -> tuple[str, str, str]:
        """(given, surname, full name) of a new person."""
        layout = str(self.layouts.pick(rng))
        p = self.parts[layout]
        f = latin if layout == "en" else fake
        surname = str(p.surnames.pick(rng)) if p.surnames and rng.random() < p.surname_rate else ""
        for _ in range(20):
            if surname:
                break
            cand = f.last_name()
            surname = cand if cand not in p.surnames.values or not p.surnames else ""
        given = str(p.givens.pick(rng)) if p.givens and rng.random() < p.given_rate else ""
        shared = set(p.givens.values)
        for _ in range(20):
            if given:
                break
            cand = self._compose(p, rng) if layout in ("ko", "ko_sp") else f.first_name()
            given = cand if cand and cand not in shared else ""
        given = given or f.first_name()
        return given, surname, join_name(layout, surname, given)

    @staticmethod
    def _compose(p: NameParts, rng: random.Random) -> str:
        if not p.lengths:
            return ""
        n = int(p.lengths.pick(rng))
        if n > len(p.syllables) or not all(p.syllables[i] for i in range(n)):
            return ""
        return "".join(str(p.syllables[i].pick(rng)) for i in range(n))


def _email_uses(sample: Sequence[Mapping[str, str | None]], email_col: str, name_col: str | None) -> dict[str, Any]:
    """How e-mail local parts use the row's own name (surname and given name spelled in Latin
    letters), and the local-part shapes of each kind: name-based addresses and handles differ."""
    uses: Counter[str] = Counter()
    shapes: dict[str, Counter[str]] = {}
    if not name_col:
        return {}
    for r in sample:
        email, name = r.get(email_col), r.get(name_col)
        if not email or not name:
            continue
        split = split_name(name)
        if split is None:
            continue
        local = email.rpartition("@")[0].split("+", 1)[0]
        use = email_use(local, split[1], split[2])
        uses[use] += 1
        shapes.setdefault(use, Counter())[local_shape(local)] += 1
    if sum(uses.values()) < 10 * MIN_SHARED:
        return {}
    return {"email_uses": Weighted.of(uses), "email_locals_by_use": {u: Weighted.of(c) for u, c in shapes.items()}}


def email_use(local: str, surname: str, given: str) -> str:
    """Which of a person's names a local part spells: ``both``, ``surname``, ``given`` or ``none``."""
    low = local.lower()
    has_s = any(len(sp) > 1 and sp in low for sp in spellings(surname, surname=True))
    has_g = any(len(sp) > 1 and sp in low for sp in spellings(given.replace(" ", "")))
    return "both" if has_s and has_g else "surname" if has_s else "given" if has_g else "none"


def shared_digit_prefixes(values: Iterable[str], k: int = MIN_SHARED) -> dict[str, dict[str, int]]:
    """Per value shape (``999-9999-9999``), the leading digit strings at least ``k`` values share
    (``0``, ``01``, ``010``, ``0105``...): enough to draw numbers with the real prefix mix at every
    length without keeping any one value."""
    out: dict[str, Counter[str]] = {}
    for v in values:
        digits = re.sub(r"\D", "", v)
        c = out.setdefault(shape(v), Counter())
        for i in range(1, len(digits) + 1):
            c[digits[:i]] += 1
    return {sh: {p: n for p, n in c.items() if n >= k} for sh, c in out.items() if any(n >= k for n in c.values())}


def draw_digits(template: str, prefixes: Mapping[str, int], rng: random.Random) -> str:
    """Fill the 9s of ``template`` digit by digit, following shared prefixes as long as some
    continuation is shared, then uniformly at random."""
    n = template.count("9")
    digits = ""
    while len(digits) < n:
        nxt = {d: prefixes.get(digits + d, 0) for d in string.digits}
        total = sum(nxt.values())
        if not total:
            break
        x = rng.random() * total
        for d, c in nxt.items():
            x -= c
            if x < 0:
                digits += d
                break
    digits += "".join(rng.choice(string.digits) for _ in range(n - len(digits)))
    it = iter(digits)
    return "".join(next(it) if ch == "9" else ch for ch in template)


def parse_ts(text: str | None) -> dt.datetime | None:
    """A PostgreSQL timestamp / timestamptz / date text value as a datetime (None if not one)."""
    if not text:
        return None
    t = text.strip()
    if re.fullmatch(r".*[+-]\d\d$", t):
        t += ":00"
    try:
        return dt.datetime.fromisoformat(t)
    except ValueError:
        return None


def _quantile(sorted_values: Sequence[float], rng: random.Random) -> float:
    """A draw from the empirical distribution, interpolated between neighbours (never a copy)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = rng.random() * (len(sorted_values) - 1)
    i = int(pos)
    return sorted_values[i] + (sorted_values[min(i + 1, len(sorted_values) - 1)] - sorted_values[i]) * (pos - i)


# -- location columns composed from shared parts --------------------------------------------------

_PLACE_FIRST = (Semantic.STATE, Semantic.CITY)
_PLACE_TEXT = (Semantic.ADDRESS, Semantic.STREET)
_PLACE_LAST = (Semantic.POSTCODE,)
Token = tuple[int, str | None]  # (index into Splicer.columns, text; None for NULL)


@dataclass(frozen=True, slots=True)
class Splicer:
    """Composes a row's location columns (state, city, address / street, postcode) from parts of
    several sampled rows, so canaries have the table's own address grammar and region mix.

    Each sampled row becomes one token sequence, coarse to fine: state, city, the words of the
    address (reversed when the table writes addresses fine-first, "12 Main St, Springfield"), then the
    postcode. Generation follows a random row's tokens while at least ``k`` sampled rows share the
    prefix (country, region, district, street...); every later token comes from a randomly chosen row
    among those sharing that prefix and with the same token class (digits masked, or the word's
    ending), so parts stay consistent where many people share them (a postcode of the same district)
    and no one's address is copied: a result held by fewer than ``k`` sampled rows is rejected. The
    sequences live only in memory for one seeding run.
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[Token, ...], ...]
    reverse: bool
    text_index: int  # the column whose words are tokens (address / street)
    common: frozenset[Token]  # digit-masked tokens at least k sampled rows use
    held: Mapping[tuple[str | None, ...], int]  # address words -> sampled rows holding that address
    k: int = MIN_SHARED
    memo: dict[tuple[Token, ...], Mapping[Token, list[int]]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, info: TableInfo, sample: Sequence[Mapping[str, str | None]], k: int = MIN_SHARED) -> Splicer | None:
        sems = {c.name: semantic_of(c) for c in info.columns if c.category == "S"}
        first = [n for sem in _PLACE_FIRST for n, s in sems.items() if s == sem]
        text = [n for n, s in sems.items() if s in _PLACE_TEXT][:1]
        last = [n for sem in _PLACE_LAST for n, s in sems.items() if s == sem]
        columns = tuple(first + text + last)
        if not text or len(sample) < 10 * k:
            return None
        words = [(v or "").split(" ") for v in (r.get(text[0]) for r in sample) if v]
        if len(words) < 10 * k or sum(len(w) for w in words) < 3 * len(words):
            return None  # short values: nothing to compose from
        exact = Counter(w for ws in words for w in set(ws))  # the coarse end is the one whose words many rows share
        reverse = sum(exact[ws[-1]] for ws in words) > sum(exact[ws[0]] for ws in words)
        rows = []
        t_index = columns.index(text[0])
        for r in sample:
            seq: list[Token] = []
            for i, name in enumerate(columns):
                v = r.get(name)
                if i == t_index and v is not None:
                    parts = v.split(" ")
                    seq.extend((i, p) for p in (reversed(parts) if reverse else parts))
                else:
                    seq.append((i, v))
            rows.append(tuple(seq))
        counts = Counter((t[0], _mask(t[1])) for row in rows for t in set(row) if t[1] is not None)
        held = Counter(tuple(t for i, t in row if i == t_index) for row in rows)
        return cls(columns, tuple(rows), reverse, t_index, frozenset(t for t, n in counts.items() if n >= k), held, k)

    def _cls(self, tok: Token) -> Token:
        if tok[1] is None:
            return tok
        m = (tok[0], _mask(tok[1]))
        if m in self.common:
            return m
        return (tok[0], "(" * tok[1].startswith("(") + "~" + tok[1][-1:])

    def compose(self, rng: random.Random) -> dict[str, str | None] | None:
        """Values for the location columns, or None if no new combination came up."""
        for attempt in range(10):
            seq = self._walk(rng, redraw=attempt >= 3)
            words = tuple(t for i, t in seq if i == self.text_index)
            if 0 < self.held.get(words, 0) < self.k:
                continue  # a sampled row's own address
            out: dict[str, str | None] = {}
            for i, t in seq:
                if i != self.text_index:
                    out[self.columns[i]] = t
            if words and words[0] is not None:
                out[self.columns[self.text_index]] = " ".join(str(w) for w in (reversed(words) if self.reverse else words))
            else:
                out[self.columns[self.text_index]] = None
            return out
        return None

    def _walk(self, rng: random.Random, redraw: bool = False) -> tuple[Token, ...]:
        """One token sequence; with ``redraw``, the numbers of the rare part are drawn afresh (when
        the parts of other rows keep adding up to a sampled row's own address)."""
        rows = self.rows
        cands: Sequence[int] = range(len(rows))
        out: list[Token] = []
        i = 0
        while True:
            r = rows[rng.choice(cands)]
            if i >= len(r):
                return tuple(out)
            same = self._group(tuple(out), cands, i)[r[i]]
            if len(same) >= self.k:
                out.append(r[i])
                cands = same
                i += 1
                continue
            for j in range(i, len(r)):
                cls = self._cls(r[j])
                pool = [rows[c][j] for c in cands if len(rows[c]) > j and self._cls(rows[c][j]) == cls]
                col, text = rng.choice(pool)
                out.append((col, _redraw_digits(text, rng) if redraw and text is not None and col == self.text_index else text))
            return tuple(out)


    def _group(self, prefix: tuple[Token, ...], cands: Sequence[int], i: int) -> Mapping[Token, list[int]]:
        """Rows sharing ``prefix``, grouped by their next token (memoised: walks share prefixes)."""
        hit = self.memo.get(prefix)
        if hit is None:
            groups: dict[Token, list[int]] = {}
            for c in cands:
                if len(self.rows[c]) > i:
                    groups.setdefault(self.rows[c][i], []).append(c)
            hit = self.memo[prefix] = groups
        return hit


def _redraw_digits(text: str, rng: random.Random) -> str:
    """Digit runs replaced by random ones of the same length (a house number is no one's own)."""
    return re.sub(r"\d+", lambda m: str(rng.randint(10 ** (len(m.group(0)) - 1), 10 ** len(m.group(0)) - 1))
                  if m.group(0)[0] != "0" else "".join(rng.choice(string.digits) for _ in m.group(0)), text)


def _mask(text: str | None) -> str:
    return re.sub(r"\d", "9", text) if text else ""


# -- how common a canary's values are ----------------------------------------------------------

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


# -- contact points -------------------------------------------------------------------------------


@dataclass
class ContactAllocator:
    """Hands out unique canary contact points from pools that route back to us.

    ``email_domains``: domains whose mail canary receives; ``mailboxes``: owned free-mail addresses
    forwarding to us; ``phone_numbers``: E.164 numbers we own.
    ``used`` holds values already allocated (by earlier deployments); every value is handed out once.
    With empty pools, contact points are synthetic (they then cannot alert on contact).
    """

    email_domains: Sequence[str] = ()
    phone_numbers: Sequence[str] = ()
    used: set[str] = field(default_factory=set)
    rng: random.Random = field(default_factory=random.Random)
    mailboxes: Sequence[str] = ()  # owned free-mail addresses, handed out whole before any pool domain
    beyond_mailboxes: int = 0  # e-mail values handed out after the mailboxes ran out
    _blocks: dict[str, list[str]] | None = None  # free owned numbers by block (all but the last 4 digits)
    _block_use: Counter[str] = field(default_factory=Counter)
    _domain_use: Counter[str] = field(default_factory=Counter)

    def email(self, local: str, fallback_domain: str) -> str:
        """``local@domain``, unique; pool domains are used evenly (the least used so far first), so
        that each holds as few canaries as the pool allows. Owned mailboxes (``mailboxes``) come
        first, each once, in their configured order."""
        for box in self.mailboxes:
            if box.lower() not in self.used:
                self.used.add(box.lower())
                return box
        if self.mailboxes:
            self.beyond_mailboxes += 1
        for attempt in range(50):
            cand_local = local if attempt == 0 else f"{local}{self.rng.randint(1, 9999)}"
            domain = self._least_used_domain() if self.email_domains else fallback_domain
            value = f"{cand_local}@{domain}"
            if value.lower() not in self.used:
                self.used.add(value.lower())
                self._domain_use[domain] += 1
                return value
        raise SeedError("cannot allocate a unique canary e-mail address (pool of domains too small?)")

    def next_mailbox(self) -> str | None:
        """The owned mailbox :meth:`email` hands out next (None when none is left)."""
        return next((box for box in self.mailboxes if box.lower() not in self.used), None)

    def _least_used_domain(self) -> str:
        low = min(self._domain_use[d] for d in self.email_domains)
        return self.rng.choice([d for d in self.email_domains if self._domain_use[d] == low])

    def phone(self) -> str | None:
        """An owned E.164 number not used before, or None when no pool is configured. Numbers are
        spread over the pool's blocks evenly (the block with the fewest canaries so far first), so
        no block of the numbering plan fills up with canaries."""
        if not self.phone_numbers:
            return None
        if self._blocks is None:
            self._blocks = {}
            for p in self.phone_numbers:
                if p not in self.used:
                    self._blocks.setdefault(p[:-4], []).append(p)
            for numbers in self._blocks.values():
                self.rng.shuffle(numbers)
        free = [b for b, numbers in self._blocks.items() if numbers]
        if not free:
            raise SeedError(
                f"the phone pool is exhausted: all {len(self.phone_numbers)} owned numbers are already canary contact points"
            )
        low = min(self._block_use[b] for b in free)
        block = self.rng.choice(sorted(b for b in free if self._block_use[b] == low))
        self._block_use[block] += 1
        value = self._blocks[block].pop()
        self.used.add(value)
        return value


_COUNTRY_CODES = {"ko_KR": "82", "ja_JP": "81", "en_US": "1"}


def format_phone(e164: str, template: str, locale: str) -> str:
    """Render an owned E.164 number (``+821055500123``) in a table's phone shape (``999-9999-9999``).

    Digits of the template are filled from the international form when the template starts with
    ``+``, else from the national form (trunk prefix ``0`` for KR/JP). If the digit counts differ, the
    national form is returned with the template's separator style as far as it fits.
    """
    digits = re.sub(r"\D", "", e164)
    cc = _COUNTRY_CODES.get(locale, "")
    national = digits[len(cc):] if cc and digits.startswith(cc) else digits
    if locale in ("ko_KR", "ja_JP"):
        national = "0" + national
    source = digits if template.startswith("+") else national
    if template.count("9") == len(source):
        it = iter(source)
        return "".join(next(it) if ch == "9" else ch for ch in template)
    # different length: keep the template's separator style, fill its digit groups from the right and
    # put leftover digits in a leading group ("999-9999" + 5550100123 -> "555-010-0123")
    groups = re.findall(r"9+|[^9]+", template.lstrip("+"))
    seps = [g for g in groups if not g.startswith("9")]
    sizes = [len(g) for g in groups if g.startswith("9")]
    sep = seps[0] if seps else ""
    parts: list[str] = []
    rest = source
    for size in reversed(sizes):
        if not rest:
            break
        parts.insert(0, rest[-size:])
        rest = rest[:-size]
    if rest:
        parts.insert(0, rest)
    return ("+" if template.startswith("+") else "") + sep.join(parts)


# -- the synthesizer ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RowContext:
    """Placement of one canary row chosen by the seeder."""

    pk: str | None  # primary key value as text (None: the column default assigns it)
    created: dt.datetime | None = None  # timestamp consistent with the neighbouring real rows


@dataclass(frozen=True, slots=True)
class SynthRow:
    values: dict[str, str | None]
    email: str | None
    phone: str | None


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
        self.rng = random.Random(seed)
        self.fake = Faker(self.locale)
        self.fake.seed_instance(self.rng.getrandbits(64))
        self.latin = Faker("en_US")
        self.latin.seed_instance(self.rng.getrandbits(64))
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
        self._spelled: tuple[Sequence[Mapping[str, str | None]], dict[str, list[int]], dict[str, list[int]]] | None = None  # people by spellings
        self._has_email = any(self.semantics[c.name] == Semantic.EMAIL for c in info.columns)

    def frequency_columns(self) -> list[str]:
        """Columns whose per-value row counts :meth:`match_frequencies` needs (full name, address,
        postcode...)."""
        out = [c.name for c in self.columns() if self.semantics[c.name] == Semantic.FULL_NAME][:1]
        places = self.profile.places
        if places is not None:
            out += [c for c in places.columns if c in {x.name for x in self.columns()}]
        return out

    def match_frequencies(self, counts: Mapping[str, Counter[str | None]], sample: Sequence[Mapping[str, str | None]],
                          candidates: int = 4000) -> None:
        """From now on, draw names and locations so that how many rows of the table share each of
        their values (``counts``: rows of the whole table per value of the columns
        :meth:`frequency_columns` names) follows the sampled real rows' distribution."""
        name_col = next((c for c in self.frequency_columns() if self.semantics[c] == Semantic.FULL_NAME), None)
        if name_col is not None and name_col in counts and self.profile.names is not None:
            keys: tuple[tuple[str, Any], ...] = ((name_col, lambda v: v), (name_col, surname_key), (name_col, given_key))
            derived = tuple(_derive(counts[col], fn) for col, fn in keys)
            people: list[Mapping[str, str | None]] = []
            for _ in range(candidates):
                p = self._person()
                people.append({name_col: p["full"], "first": p["first"], "last": p["last"]})
            traits: tuple[tuple[str, Any], ...] = ((name_col, text_length),)
            self._match_people = FrequencyMatch(keys, derived, FrequencyMatch.real_targets(keys, derived, sample, traits), people, traits)
        places = self.profile.places
        if places is not None:
            text = places.columns[places.text_index]
            if text in counts:
                keys = ((text, lambda v: v), (text, shape_key)) + tuple((c, lambda v: v) for c in places.columns if c != text and c in counts)
                derived = tuple(_derive(counts[col], fn) for col, fn in keys)
                pool: list[Mapping[str, str | None]] = [p for p in (places.compose(self.rng) for _ in range(candidates)) if p]
                # locations that at least k rows of the table share (a building many customers live in) are
                # candidates too, each as often as sampled rows hold it
                cols = [c for c in places.columns if c in counts]
                pool += [{c: r.get(c) for c in cols} for r in sample
                         if r.get(text) is not None and all(counts[c][r.get(c)] >= MIN_SHARED for c in cols)]
                traits = ((text, word_count),)
                self._match_places = FrequencyMatch(keys, derived, FrequencyMatch.real_targets(keys, derived, sample, traits), pool, traits)

    def columns(self) -> list[Column]:
        """Columns the seeder writes: all but generated ones and those it leaves to their default."""
        out = []
        for c in self.info.columns:
            if c.generated or c.name in self.skip:
                continue
            out.append(c)
        return out

    def row(self, ctx: RowContext) -> SynthRow:
        person = self._matched_person()
        self._place = None
        values: dict[str, str | None] = {}
        email = phone = None
        for col in self.columns():
            if col.name == self.pk:
                values[col.name] = ctx.pk
                continue
            sem = self.semantics[col.name]
            prof = self.profile.col(col.name)
            if sem == Semantic.EMAIL:
                email = self._email(person, prof)
                values[col.name] = email
                continue
            if sem == Semantic.PHONE:
                shared = self.reuse.get(col.name)
                if not self.contacts.phone_numbers and shared is not None and shared[0] and self.rng.random() < shared[1]:
                    values[col.name] = str(shared[0].pick(self.rng))
                    continue
                phone_e164 = self.contacts.phone()
                phone = phone_e164 or None
                values[col.name] = self._phone(phone_e164, prof) if not self._null(col, prof) or phone_e164 else None
                if values[col.name] is None:
                    phone = None
                continue
            if self._null(col, prof):
                values[col.name] = None
                continue
            shared = self.reuse.get(col.name)
            composed = (self.profile.places is not None and col.name in self.profile.places.columns  # shares consistently itself
                        or (self._match_people is not None and col.name == self._match_people.keys[0][0]))
            if shared is not None and shared[0] and not composed and self.rng.random() < shared[1]:
                values[col.name] = str(shared[0].pick(self.rng))
                continue
            hint = self.hints.get(col.name)
            if hint is not None and hint.allowed:
                observed = [v for v in (prof.categorical.values if prof and prof.categorical else ()) if v in hint.allowed]
                values[col.name] = str(prof.categorical.pick(self.rng)) if observed and len(observed) == len(prof.categorical.values) else self.rng.choice(hint.allowed)  # type: ignore[union-attr]
                continue
            values[col.name] = self._value(col, sem, prof, person, ctx, values)
        return SynthRow(values, email, phone)

    # -- helpers --------------------------------------------------------------------------------
    def _null(self, col: Column, prof: ColumnProfile | None) -> bool:
        if col.not_null or prof is None or not prof.sampled:
            return False
        return self.rng.random() < prof.null_rate

    def _matched_person(self) -> dict[str, str]:
        box = self.contacts.next_mailbox() if self._has_email else None
        if box is not None:
            fitted = self._person_for(box.rpartition("@")[0])
            if fitted is not None:
                return fitted
        if self._match_people is not None:
            got = self._match_people.draw(self.rng)
            if got is not None:
                col = self._match_people.keys[0][0]
                return {"first": str(got["first"]), "last": str(got["last"]), "full": str(got[col])}
        return self._person()

    def _person_for(self, local: str) -> dict[str, str] | None:
        """A person whose names the mailbox's local part spells as fully as any candidate's (the
        longest surname spelling plus the longest whole given-name spelling in it), drawn from the
        candidates the frequency match uses (their names stay as common as real ones); None when
        the local part spells no one's name (a handle)."""
        if self._spelled is None:
            pool: Sequence[Mapping[str, str | None]] = self._match_people.pool if self._match_people is not None else [
                {"full": p["full"], "first": p["first"], "last": p["last"]} for p in (self._person() for _ in range(4000))]
            surs: dict[str, list[int]] = {}
            givens: dict[str, list[int]] = {}
            for i, cand in enumerate(pool):
                for sp in spellings(str(cand["last"]), surname=True):
                    if len(sp) > 1:
                        surs.setdefault(sp, []).append(i)
                for sp in spellings(str(cand["first"]).replace(" ", "")):
                    if len(sp) > 2:
                        givens.setdefault(sp, []).append(i)
            self._spelled = (pool, surs, givens)
        pool, surs, givens = self._spelled
        low = re.sub(r"[^a-z]", "", local.lower())
        cover: Counter[int] = Counter()
        for index in (surs, givens):
            best: dict[int, int] = {}
            for sp, ids in index.items():
                if sp in low:
                    for i in ids:
                        best[i] = max(best.get(i, 0), len(sp))
            cover.update(best)
        if not cover:
            return None
        top = max(cover.values())
        fitting = [pool[i] for i, c in cover.items() if c == top]
        got = self._match_people.draw(self.rng, among=fitting) if self._match_people is not None else self.rng.choice(fitting)
        if got is None:
            return None
        full = got.get(self._match_people.keys[0][0]) if self._match_people is not None else got.get("full")
        return {"first": str(got["first"]), "last": str(got["last"]), "full": str(full)}

    def _person(self) -> dict[str, str]:
        if self.profile.names is not None:
            first, last, full = self.profile.names.draw(self.rng, self.fake, self.latin)
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
        """A handle word that spells no one's name (Faker's user names are built from names)."""
        return re.sub(r"[^a-z]", "", self.latin.word().lower()) or "user"

    def _name_words(self, person: Mapping[str, str], use: str, slots: int) -> list[str]:
        """Words of a local part that spells the person's own names the way ``use`` says, for a
        template with ``slots`` words (one slot: the parts run together, ``minjunkim``)."""
        r = self.rng
        sur = spell(person["last"], r, surname=True) or self._handle()
        given_text = person["first"].replace(" ", "")
        giv = spell(given_text, r) or self._handle()
        initials = "".join(x[:1] for x in (spell(ch, r) for ch in given_text) if x) if _script_class(given_text[:1]) else giv[:1]
        if use == "both":
            parts = [sur, giv] if r.random() < 0.5 else [giv, sur]
        elif use == "surname":
            parts = ([initials, sur] if r.random() < 0.5 else [sur, initials]) if slots == 1 else [sur, self._handle()]
        else:
            parts = [giv, self._handle()]
            if slots == 1:
                parts = [giv]
        return ["".join(parts)] if slots == 1 else parts

    def _email(self, person: Mapping[str, str], prof: ColumnProfile | None) -> str:
        use = str(prof.email_uses.pick(self.rng)) if prof and prof.email_uses else ""
        by_use = prof.email_locals_by_use.get(use) if prof and use else None
        if by_use:
            template = str(by_use.pick(self.rng))
        else:
            template = prof.email_locals.pick(self.rng) if prof and prof.email_locals else "w.w"
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
            elif tok[0] == "9":
                local.append("".join(self.rng.choice(string.digits) for _ in tok))
            else:
                local.append(tok)
        text = "".join(local)
        if prof and prof.case_styles:
            style = prof.case_styles.pick(self.rng)
            text = text.upper() if style == "upper" else (text[:1].upper() + text[1:] if style == "title" else text)
        fallback = self.fake.free_email_domain()
        if prof and prof.email_domains:
            fallback = prof.email_domains.pick(self.rng) if prof.email_domains.cum[0] >= MIN_SHARED else fallback
        return self.contacts.email(text, fallback)

    def _phone(self, e164: str | None, prof: ColumnProfile | None) -> str:
        template = prof.shapes.pick(self.rng) if prof and prof.shapes else None
        if e164 is None:
            if template and set(template) <= set("9+-(). x"):
                if prof and template in prof.digit_prefixes:
                    return draw_digits(template, prof.digit_prefixes[template], self.rng)
                text = _fill(template, self.rng)
                head = re.match(r"\+?9+", template)
                if head and prof and prof.prefixes:
                    fitting = [p for p in prof.prefixes.values if len(p) == len(head.group(0))]
                    if fitting:
                        text = self.rng.choice(fitting) + text[len(head.group(0)):]
                return text
            return str(self.fake.phone_number())
        return format_phone(e164, template or "+" + "9" * (len(e164) - 1), self.locale)

    def _value(
        self, col: Column, sem: Semantic, prof: ColumnProfile | None, person: Mapping[str, str], ctx: RowContext,
        done: Mapping[str, str | None],
    ) -> str | None:
        f = self.fake
        if col.enum_labels:
            if prof and prof.categorical:
                return str(prof.categorical.pick(self.rng))
            return self.rng.choice(col.enum_labels)
        places = self.profile.places
        if places is not None and col.name in places.columns:
            if self._place is None:
                matched = self._match_places.draw(self.rng) if self._match_places is not None else None
                self._place = dict(matched) if matched is not None else (places.compose(self.rng) or {})
            if self._place.get(col.name) is not None:
                return self._fit(col, str(self._place[col.name]))
        if prof and prof.categorical and sem not in (Semantic.CREATED, Semantic.UPDATED, Semantic.BIRTHDATE):
            return self._fit(col, str(prof.categorical.pick(self.rng)))
        if sem == Semantic.CREATED:
            return self._ts(col, ctx.created or self._sample_ts(prof))
        if sem == Semantic.UPDATED:
            created = next((parse_ts(done.get(c.name)) for c in self.info.columns if self.semantics[c.name] == Semantic.CREATED and done.get(c.name)), None)
            base = created or ctx.created
            if base is not None and self.profile.created_gap:
                return self._ts(col, base + dt.timedelta(seconds=max(0.0, self.rng.choice(self.profile.created_gap))))
            return self._ts(col, base or self._sample_ts(prof))
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
            if any(_script_class(ch) for ch in template):
                return self.fake.word() if hasattr(self.fake, "word") else _fill(template, self.rng)
            return _fill(template, self.rng)
        return self.fake.word()

    def _sample_ts(self, prof: ColumnProfile | None) -> dt.datetime:
        if prof is not None and prof.numbers:
            return dt.datetime.fromtimestamp(_quantile(prof.numbers, self.rng), dt.timezone.utc)
        if self.profile.created_epochs:
            return dt.datetime.fromtimestamp(_quantile(self.profile.created_epochs, self.rng), dt.timezone.utc)
        now = dt.datetime.now(dt.timezone.utc)
        return now - dt.timedelta(seconds=self.rng.uniform(0, 3 * 365 * 86400))

    def _ts(self, col: Column, value: dt.datetime) -> str:
        if col.base_type == "date":
            return value.date().isoformat()
        if col.base_type == "timestamp":
            return value.replace(tzinfo=None).isoformat(sep=" ")
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.isoformat(sep=" ")

    def _typed(self, col: Column, prof: ColumnProfile | None) -> str | None:
        r = self.rng
        if col.category == "N":
            integral = col.base_type in ("int2", "int4", "int8") or bool(prof and prof.numbers and prof.integral)
            x = _quantile(prof.numbers, r) if prof and prof.numbers else r.uniform(0, 1000)
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


def _derive(counts: Counter[str | None], fn: Any) -> Counter[str | None]:
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
    from faker.config import AVAILABLE_LOCALES

    return locale in AVAILABLE_LOCALES
