"""Full names the way a table writes them (layouts, shared surnames and given names, composed given
names for the long tail), learned k-anonymously, and how e-mail local parts spell a row's own name."""

from __future__ import annotations

import random
import re
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from faker import Faker
from faker.providers.person import Provider as PersonProvider

from canary.seeding.synth.romanize import SURNAME_SPELLINGS, spellings
from canary.seeding.synth.shapes import MIN_SHARED, Weighted, local_shape, shared_digit_prefixes

_TWO_SYLLABLE_SURNAMES = frozenset(k for k in SURNAME_SPELLINGS if len(k) == 2)
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_WORD = re.compile(r"[A-Za-z]+")
_DIGIT_RUN = re.compile(r"[0-9]+")
_KANA_HAN = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")  # the characters shapes.script_class calls あ and 漢


def split_name(name: str) -> tuple[str, str, str] | None:
    """(layout, surname, given name) of a full name: ``ko`` 김민준, ``ko_sp`` 김 민준, ``ja`` 佐藤 健,
    ``en`` John Smith; None for a single word in a Latin script or anything else."""
    words = name.split()
    if not words:
        return None
    if name.isascii():  # neither Hangul nor kana/han (a whole-table count splits every distinct name)
        return ("en", words[-1], " ".join(words[:-1])) if len(words) >= 2 else None
    hangul = _HANGUL.search(name) is not None
    if hangul and len(words) == 1:
        text = words[0]
        cut = 2 if len(text) >= 4 and text[:2] in _TWO_SYLLABLE_SURNAMES else 1
        return ("ko", text[:cut], text[cut:]) if len(text) > cut else None
    if len(words) < 2:
        return None
    if hangul:
        return ("ko_sp", words[0], "".join(words[1:]))
    if _KANA_HAN.search(name) is not None:
        return ("ja", words[0], " ".join(words[1:]))
    return ("en", words[-1], " ".join(words[:-1]))


def join_name(layout: str, surname: str, given: str) -> str:
    if layout == "ko":
        return f"{surname}{given}"
    if layout == "en":
        return f"{given} {surname}"
    return f"{surname} {given}"


_SUFFIXES = frozenset(("jr", "jr.", "sr", "sr.", "ii", "iii", "iv"))
_INITIAL = re.compile(r"[A-Za-z]\.?")


class Style(tuple[str, str, str, bool, bool]):
    """How a Latin-script table decorates a ``Given Surname`` name: letter case (``title`` / ``lower`` /
    ``upper``), a middle initial (``""``, ``"I."`` or ``"I"``), a suffix as written (``Jr.``, ``III``),
    a hyphenated second surname, a trailing space. Learnt per name (:meth:`of`) and kept when ``k``
    rows share it (a style never identifies anyone), so canaries carry "John A. Smith", "SMITH" and
    "Jr." as often as real rows do rather than always "John Smith"."""

    __slots__ = ()

    def __new__(cls, case: str, middle: str, suffix: str, double: bool, trail: bool) -> Style:
        return super().__new__(cls, (case, middle, suffix, double, trail))

    @classmethod
    def of(cls, name: str) -> tuple[Style | None, str, str]:
        """(style, the name without it as ``Given Surname``, the middle initial's letter) of a Latin
        name of two to four words; (None, name, "") for any other (a single word, another script)."""
        if not name.isascii() or not re.search("[A-Za-z]", name):
            return None, name, ""
        trail = name.endswith(" ")
        words = name.split()
        if not 2 <= len(words) <= 4:
            return None, name, ""
        letters = [c for c in name if c.isalpha()]
        case = "lower" if all(c.islower() for c in letters) else "upper" if all(c.isupper() for c in letters) else "title"
        suffix = words.pop() if len(words) > 2 and words[-1].lower() in _SUFFIXES else ""
        middle, initial = "", ""
        if len(words) == 3 and _INITIAL.fullmatch(words[1]):
            middle, initial = ("I." if words[1].endswith(".") else "I"), words[1][0].upper()
            words.pop(1)
        if len(words) != 2:
            return None, name, ""
        double = "-" in words[1].strip("-")
        surname = words[1].split("-")[0] if double else words[1]
        given = words[0].capitalize() if case != "title" else words[0]
        return cls(case, middle, suffix, double, trail), f"{given} {surname.capitalize() if case != 'title' else surname}", initial

    def dress(self, given: str, surname: str, rng: random.Random, initials: Weighted, surnames: Weighted, fake: Faker) -> str:
        """``given surname`` in this style: a middle initial from the table's own (``initials``), a
        second surname from the table's shared ones (else Faker's) for a hyphenated one."""
        case, middle, suffix, double, trail = self
        words = [given]
        if middle:
            letter = str(initials.pick(rng)) if initials else rng.choice("ABCDEFGHJKLMNPRSTW")
            words.append(letter + ("." if middle == "I." else ""))
        last = surname
        if double:
            other = str(surnames.pick(rng)) if surnames else str(fake.last_name())
            last = f"{surname}-{other}" if other != surname else surname
        words.append(last)
        if suffix:
            words.append(suffix)
        full = " ".join(words)
        full = full.lower() if case == "lower" else full.upper() if case == "upper" else full
        return full + (" " if trail else "")


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


_FAKER_SURNAMES: weakref.WeakKeyDictionary[Faker, Weighted] = weakref.WeakKeyDictionary()


def _faker_surnames(fake: Faker) -> Weighted:
    """Faker's surnames for ``fake``'s locale at Faker's weights, where its ``last_name`` draws them
    from one weighted list (empty otherwise: ask Faker): drawn by :class:`Weighted`, not by Faker,
    which sums the weights of its thousand US surnames anew on every call (125 µs; a name match draws
    thousands of people)."""
    got = _FAKER_SURNAMES.get(fake)
    if got is None:
        got = Weighted((), ())
        for provider in fake.providers:
            names = getattr(provider, "last_names", None)
            if names is not None:
                if type(provider).last_name is PersonProvider.last_name and isinstance(names, Mapping) and names:
                    got = Weighted.of({str(k): float(v) for k, v in names.items()})
                break
        _FAKER_SURNAMES[fake] = got
    return got


@dataclass(frozen=True, slots=True)
class NameModel:
    """Full names the way the table writes them, learned k-anonymously from the sample: the mix of
    layouts, the table's own surname and given-name frequencies (only parts ``k`` rows share) and
    composed given names for the long tail. Replaces Faker's weights, which are not the table's."""

    layouts: Weighted
    parts: Mapping[str, NameParts]
    k: int = MIN_SHARED
    #: Latin names' decorations (:class:`Style`) as often as the table has them, and the middle initials
    styles: Weighted = Weighted((), ())
    initials: Weighted = Weighted((), ())

    @classmethod
    def of(cls, names: Sequence[str], k: int = MIN_SHARED) -> NameModel | None:
        styled = [Style.of(n) for n in names]
        styles = Counter(st for st, _, _ in styled if st is not None)
        initials = Counter(ini for st, _, ini in styled if st is not None and ini)
        names = [plain if st is not None else n for n, (st, plain, _) in zip(names, styled, strict=True)]
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
        return cls(Weighted.of(shared_layouts), parts, k, Weighted.of({st: c for st, c in styles.items() if c >= k}),
                   Weighted.of({i: c for i, c in initials.items() if c >= k}))

    def draw(self, rng: random.Random, fake: Faker, latin: Faker) -> tuple[str, str, str]:
        """(given, surname, full name) of a new person."""
        layout = str(self.layouts.pick(rng))
        p = self.parts[layout]
        f = latin if layout == "en" else fake
        surname = str(p.surnames.pick(rng)) if p.surnames and rng.random() < p.surname_rate else ""
        faker_surnames = _faker_surnames(f)
        for _ in range(20):
            if surname:
                break
            cand = str(faker_surnames.pick(rng)) if faker_surnames else f.last_name()
            surname = cand if cand not in p.surnames.values or not p.surnames else ""
        given = str(p.givens.pick(rng)) if p.givens and rng.random() < p.given_rate else ""
        shared = set(p.givens.values)
        for _ in range(20):
            if given:
                break
            cand = self._compose(p, rng) if layout in ("ko", "ko_sp") else f.first_name()
            given = cand if cand and cand not in shared else ""
        given = given or f.first_name()
        full = join_name(layout, surname, given)
        if layout == "en" and self.styles:
            full = Style(*self.styles.pick(rng)).dress(given, surname, rng, self.initials, p.surnames, f)
        return given, surname, full

    @staticmethod
    def _compose(p: NameParts, rng: random.Random) -> str:
        if not p.lengths:
            return ""
        n = int(p.lengths.pick(rng))
        if n > len(p.syllables) or not all(p.syllables[i] for i in range(n)):
            return ""
        return "".join(str(p.syllables[i].pick(rng)) for i in range(n))


#: how likely a run of letters of a local part is a handle word that no ``MIN_SHARED`` rows of the
#: table use (a made-up one, of countless people make up): one in a billion people's, below any
#: name reading of two known names (jeremybanks: one in four thousand times one in four thousand);
#: a handle word the table's rows use is as likely as they use it (:func:`handle_odds`)
HANDLE_UNSEEN = 1e-9
#: runs of letters of a local part read, at most (the rest are taken as handle words)
_READ_RUNS = 3
#: letters a middle initial may be, each as likely
_LETTERS = 26


#: a word no candidate's name spells, read as a name (:meth:`Spelled.read`): marked so, at least this long
_UNSEEN = "?"
_UNSEEN_MIN = 3


class Reading(NamedTuple):
    """A local part read as its owner's names (:meth:`Spelled.read`): the candidates the surname and
    the given name may be (empty: any), and a surname or given name written as a word no
    candidate's name spells ("" for none)."""

    surnames: frozenset[int]
    givens: frozenset[int]
    surname_word: str
    given_word: str


@dataclass(frozen=True, slots=True)
class Spelled:
    """People (positions in a list of candidates) by how e-mail local parts spell their names: each
    surname spelling (two letters or more), each given-name spelling (three or more), the given
    name's initials (a letter per syllable of a Hangul given name, the first letter of another) and
    the surname's first letter. How many candidates share a spelling is how common it is among
    people (the candidates are drawn as the table's names are)."""

    surnames: Mapping[str, Sequence[int]]
    givens: Mapping[str, Sequence[int]]
    initials: Mapping[str, Sequence[int]]
    surname_initials: Mapping[str, Sequence[int]]
    size: int
    #: names people have beyond the candidates' (lower case), each read as likely as a candidate's
    given_words: frozenset[str] = frozenset()
    surname_words: frozenset[str] = frozenset()

    @classmethod
    def of(cls, people: Sequence[tuple[str, str]], given_words: Iterable[str] = (), surname_words: Iterable[str] = ()) -> Spelled:
        """The index of ``people`` as (surname, given name) pairs, and names beyond theirs."""
        surs: dict[str, list[int]] = {}
        givens: dict[str, list[int]] = {}
        inits: dict[str, list[int]] = {}
        sur_inits: dict[str, list[int]] = {}
        for i, (last, first) in enumerate(people):
            for sp in spellings(last, surname=True):
                if len(sp) > 1:
                    surs.setdefault(sp, []).append(i)
            for letter in {sp[0] for sp in spellings(last, surname=True) if sp}:
                sur_inits.setdefault(letter, []).append(i)
            given = first.replace(" ", "")
            for sp in spellings(given):
                if len(sp) > 2:
                    givens.setdefault(sp, []).append(i)
            ini = "".join(sp[:1] for sp in (spellings(ch)[0] if spellings(ch) else "" for ch in given)) if _HANGUL.search(given) else given[:1].lower()
            if ini and ini.isalpha() and ini.isascii():
                inits.setdefault(ini, []).append(i)
        return cls(surs, givens, inits, sur_inits, len(people), frozenset(w.lower() for w in given_words if len(w) >= _UNSEEN_MIN),
                   frozenset(w.lower() for w in surname_words if len(w) >= _UNSEEN_MIN))

    def known_given(self, word: str) -> bool:
        """Whether a word is a given name some candidate has or a name list holds."""
        return word in self.givens or word in self.given_words

    def known_surname(self, word: str) -> bool:
        """Whether a word is a surname some candidate has or a name list holds."""
        return word in self.surnames or word in self.surname_words

    def _options(self, run: str, handle: float) -> list[tuple[float, str, str, str, str]]:
        """Readings of one run of letters: (weight, surname spelling, given spelling, initials,
        surname's first letter); the first is the handle word."""
        n = self.size
        out: list[tuple[float, str, str, str, str]] = [(handle, "", "", "", "")]
        s, g, ini, sur_ini = self.surnames, self.givens, self.initials, self.surname_initials
        if run in s:
            out.append((len(s[run]) / n, run, "", "", ""))
        if run in g:
            out.append((len(g[run]) / n, "", run, "", ""))
        elif run in self.given_words:
            out.append((1 / n, "", _UNSEEN + run, "", ""))

        def given(x: str) -> tuple[float, str]:
            return (len(g[x]) / n, x) if x in g else (1 / n, _UNSEEN + x) if x in self.given_words else (0.0, "")

        def surname(x: str) -> tuple[float, str]:
            return (len(s[x]) / n, x) if x in s else (1 / n, _UNSEEN + x) if x in self.surname_words else (0.0, "")

        for cut in range(1, len(run)):
            a, b = run[:cut], run[cut:]
            for giv, sur in ((a, b), (b, a)):
                (wg, gk), (ws, sk) = given(giv), surname(sur)
                if wg and ws:
                    out.append((wg * ws, sk, gk, "", ""))
                # a given name of three letters or more and a word no list has of three or more
                # (loisadams): that word is the surname, as likely as one a single candidate has (a
                # given name is a word of a small set, the surnames' long tail is not: the other way
                # round, any word before a surname would make a given name: Pwens Ford)
                elif wg and len(giv) >= _UNSEEN_MIN and len(sur) >= _UNSEEN_MIN:
                    out.append((wg / n, _UNSEEN + sur, gk, "", ""))
            if a in s and len(b) <= 3 and b in ini:
                out.append((len(s[a]) * len(ini[b]) / n / n, a, "", b, ""))
            if b in s and len(a) <= 3 and a in ini:
                out.append((len(ini[a]) * len(s[b]) / n / n, b, "", a, ""))
            elif b in s and len(a) <= 3 and a[:1] in ini:  # the given name's initial and middle initials: jasmith
                out.append((len(ini[a[:1]]) * len(s[b]) / n / n / _LETTERS ** (len(a) - 1), b, "", a[:1], ""))
            if a in g and len(b) == 1 and b in sur_ini:  # the given name and the surname's initial: johns
                out.append((len(g[a]) * len(sur_ini[b]) / n / n, "", a, "", b))
        if 2 <= len(run) <= 4 and run[0] in sur_ini and run[1:] in ini:
            out.append((len(sur_ini[run[0]]) * len(ini[run[1:]]) / n / n, "", "", run[1:], run[0]))
        if 2 <= len(run) <= 4 and run[-1] in sur_ini and run[:-1] in ini:
            out.append((len(sur_ini[run[-1]]) * len(ini[run[:-1]]) / n / n, "", "", run[:-1], run[-1]))
        return out

    def read(self, local: str, rng: random.Random, handle: Callable[[str], float]) -> Reading | None:
        """What a local part says of its owner's names, drawn in proportion to how likely each reading
        is: every run of letters is a handle word (as likely as ``handle`` says, :func:`handle_odds`)
        or spells a surname, a given name, both, a surname and the given name's initials (a middle
        initial after them allowed: jasmith), the given name and the surname's first letter
        (johns), or the initials of both (either order), each as likely as people have those names
        (a surname one in five people have against one in two thousand have). A local part's runs
        name one surname and one given name at most. A word no name list has after a given name
        (loisadams) is read as the surname itself, as likely as a name one candidate has. None for
        a handle."""
        if self.size == 0:
            return None
        runs = re.findall("[a-z]+", local.lower())[:_READ_RUNS]
        readings: list[tuple[float, tuple[str, str, str, str]]] = [(1.0, ("", "", "", ""))]
        for run in runs:
            grown: list[tuple[float, tuple[str, str, str, str]]] = []
            for w0, (s0, g0, i0, f0) in readings:
                for w, s, g, ini, first in self._options(run, handle(run)):
                    if (s and (s0 or f0)) or (first and (s0 or f0)) or ((g or ini) and (g0 or i0)):
                        continue
                    grown.append((w0 * w, (s0 or s, g0 or g, i0 or ini, f0 or first)))
            readings = grown
        total = sum(w for w, _ in readings)
        if total <= 0:
            return None
        pick = rng.random() * total
        for w, (s, g, ini, first) in readings:
            pick -= w
            if pick <= 0:
                break
        if not (s or g or ini or first):
            return None
        surname = self.surnames.get(s, ()) if s else self.surname_initials[first] if first else ()
        given = self.givens.get(g, ()) if g else self.initials[ini] if ini else ()
        return Reading(frozenset(surname), frozenset(given), s[1:] if s.startswith(_UNSEEN) else "",
                       g[1:] if g.startswith(_UNSEEN) else "")


def handle_odds(uses: Weighted, words: Weighted) -> Callable[[str], float]:
    """How likely a person's local part has a given run of letters as a handle word: the table's share
    of handles (``uses``: :func:`email_uses`) times the share of handle words that word is among the
    table's (``words``), :data:`HANDLE_UNSEEN` for a word the table's handles do not share."""
    total = uses.cum[-1] if uses else 0.0
    at = uses.values.index("none") if "none" in uses.values else -1
    none = (uses.cum[at] - (uses.cum[at - 1] if at > 0 else 0.0)) / total if at >= 0 and total else 0.5
    shares = dict(zip(words.values, (c - p for c, p in zip(words.cum, (0.0, *words.cum), strict=False)), strict=True))
    all_words = words.cum[-1] if words else 0.0
    return lambda run: none * shares[run] / all_words if run in shares else none * HANDLE_UNSEEN


def email_uses(sample: Sequence[Mapping[str, str | None]], email_col: str, name_col: str | None) -> dict[str, Any]:
    """How e-mail local parts use the row's own name (surname and given name spelled in Latin
    letters), and the local-part shapes of each kind: name-based addresses and handles differ; the
    words of handles (those ``MIN_SHARED`` rows use, with how many do) and their lengths."""
    uses: Counter[str] = Counter()
    shapes: dict[str, Counter[str]] = {}
    lengths: Counter[int] = Counter()
    words: Counter[str] = Counter()  # words of handles, by the rows using each
    if not name_col:
        return {}
    for r in sample:
        email, name = r.get(email_col), r.get(name_col)
        if not email or not name:
            continue
        split = split_name(Style.of(name)[1])  # "John A. Smith Jr.": John and Smith
        if split is None:
            continue
        local = email.rpartition("@")[0].split("+", 1)[0]
        use = email_use(local, split[1], split[2])
        uses[use] += 1
        shapes.setdefault(use, Counter())[local_shape(local)] += 1
        if use == "none":
            found = _WORD.findall(local)
            lengths.update(len(w) for w in found)
            words.update({w.lower() for w in found})
    if sum(uses.values()) < 10 * MIN_SHARED:
        return {}
    return {"email_uses": Weighted.of(uses), "email_locals_by_use": {u: Weighted.of(c) for u, c in shapes.items()},
            "handle_lengths": Weighted.of({n: c for n, c in lengths.items() if c >= MIN_SHARED}),
            "handle_words": Weighted.of({w: c for w, c in words.items() if c >= MIN_SHARED})}


def email_use(local: str, surname: str, given: str) -> str:
    """Which of a person's names a local part spells: ``both``, ``surname``, ``given`` or ``none``."""
    low = local.lower()
    has_s = any(len(sp) > 1 and sp in low for sp in spellings(surname, surname=True))
    has_g = any(len(sp) > 1 and sp in low for sp in spellings(given.replace(" ", "")))
    return "both" if has_s and has_g else "surname" if has_s else "given" if has_g else "none"


def email_digits(sample: Sequence[Mapping[str, str | None]], email_col: str, name_col: str | None,
                 k: int = MIN_SHARED) -> dict[str, dict[str, int]]:
    """The digits e-mail local parts carry, as shared digit prefixes (:func:`shared_digit_prefixes`)
    per run length (``"99"``: two digits) and, where the row's name tells which of its names the
    local part spells, per that use too (``"both:99"``): a birth year's two digits after a name,
    a month and day after a given name, anything at all after a handle. Drawn digit by digit from
    these (:func:`draw_digits`), a canary's ``92`` or ``1988`` is as common in the table as real
    rows' are, where uniform digits would make ``4821`` (nobody's) and ``07`` (few people's) a tell.
    Only prefixes ``k`` rows share are kept: never a whole run that identifies one person."""
    runs: list[str] = []
    for r in sample:
        email = r.get(email_col)
        if not email:
            continue
        local = email.rpartition("@")[0].split("+", 1)[0]
        found = _DIGIT_RUN.findall(local)
        if not found:
            continue
        name = r.get(name_col) if name_col else None
        split = split_name(Style.of(name)[1]) if name else None
        use = email_use(local, split[1], split[2]) if split is not None else ""
        for run in found:
            runs.append(f"{'9' * len(run)}|{run}")
            if use:
                runs.append(f"{use}:{'9' * len(run)}|{run}")
    by_key: dict[str, list[str]] = {}
    for item in runs:
        key, _, run = item.partition("|")
        by_key.setdefault(key, []).append(run)
    out: dict[str, dict[str, int]] = {}
    for key, values in by_key.items():
        shared = shared_digit_prefixes(values, k).get("9" * len(values[0]))
        if shared:
            out[key] = shared
    return out
