"""What a column is and the shape of its values: semantics from column names, character-class shapes
and scripts, the small weighted distributions profiles are made of, and drawing from them (shape
templates, shared digit prefixes, empirical quantiles)."""

from __future__ import annotations

import bisect
import datetime as dt
import enum
import random
import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from canary.seeding.catalog import Column

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
            out.append(script_class(ch) or ch)
    return "".join(out)


def script_class(ch: str) -> str | None:
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
            cls = script_class(ch)
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


def fill_shape(template: str, rng: random.Random) -> str:
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


_LOCAL_TOKEN = re.compile(r"[A-Za-z]+|[0-9]+|[^A-Za-z0-9]")


def local_shape(local: str) -> str:
    """``kim.minji92`` -> ``w.w9``: words, digit runs (one 9 per digit) and separators."""
    return "".join("w" if t[0].isalpha() else ("9" * len(t) if t[0].isdigit() else t) for t in _LOCAL_TOKEN.findall(local))


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


def draw_digits(template: str, prefixes: Mapping[str, int], rng: random.Random, start: str = "") -> str:
    """Fill the 9s of ``template`` digit by digit (after the digits ``start``), following shared
    prefixes as often as the values do, then uniformly at random: the values with a prefix whose next
    digits fewer than k of them share take one of those other digits (a prefix is not followed more
    often than the values follow it, so a block of numbers is as crowded as the table's are)."""
    n = template.count("9")
    digits = start[:n]
    while len(digits) < n and (digits in prefixes or not digits):
        nxt = {d: prefixes.get(digits + d, 0) for d in string.digits}
        total = sum(nxt.values())
        if not total:
            break
        rest = max(0, prefixes.get(digits, total) - total) if digits else 0
        x = rng.random() * (total + rest)
        if x >= total:
            digits += rng.choice([d for d, c in nxt.items() if not c] or string.digits)
            break
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


def quantile(sorted_values: Sequence[float], rng: random.Random) -> float:
    """A draw from the empirical distribution, interpolated between neighbours (never a copy)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = rng.random() * (len(sorted_values) - 1)
    i = int(pos)
    return sorted_values[i] + (sorted_values[min(i + 1, len(sorted_values) - 1)] - sorted_values[i]) * (pos - i)
