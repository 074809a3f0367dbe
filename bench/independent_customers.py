"""An en_US customers table for the distinguishability benchmark, independent of both the seeder and
:mod:`realistic_customers`: no Faker, nothing from ``canary.seeding``; built from published US
frequencies embedded in :mod:`us_frequencies` (Census 2010 surnames, SSA first names by decade, real
city / state / ZIP / area-code relations, street-name counts, e-mail provider shares).

What a seeder has to learn from it is mostly correlations between columns:

- people: sex and decade of birth choose the first name (a 1955 woman is a Linda, a 1995 one an
  Ashley); the state's Hispanic / Asian / Black shares choose surnames and heritage first names;
  nicknames, middle initials, Jr./Sr., double surnames, typed in lower or upper case;
- place: a state by population, a city / suburb / town of it with its own streets (common US street
  names by frequency, suffix shares, directionals, house-number ranges by kind of place), each street
  in one of the city's real ZIP codes; units, PO boxes and rural routes; several address formats;
  ZIP+4, lost leading zeros in the legacy import; households share address (and landline);
- phone: the area code of the city (overlay codes only for numbers taken after they came into
  service, so younger people hold them), of elsewhere in the state, or of where one used to live;
  mixed formats ``(212) 555-0134``, ``212-555-0134``, ``+12125550134``, dots, ``1-`` prefixes;
- e-mail: local parts as US users form them (first.last, flast, birth-year digits, area code,
  nicknames, handles) over provider shares skewed by age (aol, comcast, sbcglobal are older people's;
  ISP domains only in the states the ISP serves; universities for students in their state), company
  domains, typos;
- time: growth over eight years, the 2020 surge, Black Friday / Cyber Monday, the holiday season, a
  July sale, a viral day; the local daily cycle of each customer's time zone; a legacy import
  (date-only signup times at midnight Eastern, one import timestamp as ``updated_at``); ``updated_at``
  NULL before the column was filled, equal to ``created_at`` after, later updates and a backfill batch;
- keys: ids in signup order with gaps (rolled-back inserts, sequence cache loss, deleted accounts, a
  purged bot wave); orders heavy-tailed per customer, often at signup, in cents with .99 prices,
  discounts, shipping and the state's sales tax.

Deterministic for a seed and an anchor (the table's present: times end then; :data:`ANCHOR` unless given).
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar
from zoneinfo import ZoneInfo

import asyncpg
from us_frequencies import (
    COMPANY_TAILS,
    COMPANY_TLDS,
    COMPANY_WORDS,
    FIRST_BY_DECADE,
    FIRST_TAIL_FEMALE,
    FIRST_TAIL_MALE,
    FREEMAIL,
    HANDLE_WORDS,
    HERITAGE_FIRST,
    ISP_DOMAINS,
    NICKNAMES,
    NUMBERED,
    PLACES,
    STATES,
    STREET_NAMES,
    SUFFIXES,
    SURNAMES_MORE,
    SURNAMES_TOP,
    TAIL_PARTS,
    TYPO_DOMAINS,
    UNIVERSITIES,
)

from canary.drills.shop import SCHEMA

T = TypeVar("T")
CUSTOMER_COLUMNS = ["id", "full_name", "email", "phone", "address", "postal_code", "created_at", "updated_at"]
ORDER_COLUMNS = ["id", "customer_id", "ordered_at", "total", "status", "ship_to"]
EASTERN = ZoneInfo("America/New_York")
#: the table's present (its history ends then) unless given: fixed, so that a bench run repeats
ANCHOR = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
GRID_CITIES = {"Houston", "Phoenix", "Dallas", "San Antonio", "Mesa", "Chandler", "Scottsdale", "Gilbert", "Glendale",
               "Salt Lake City", "West Valley City", "Las Vegas", "Henderson", "Tucson", "Katy", "Sugar Land", "El Paso"}
QUADRANT_CITIES = {"Washington", "Seattle", "Portland", "Miami", "Oklahoma City", "Atlanta", "Albuquerque"}
DIRECTIONS = {"N": "North", "S": "South", "E": "East", "W": "West"}
SURNAME_ENDINGS = ("son sen ton ley ly er man mann s field ford wood well berg stein ski sky ett ington ard ing ham land "
                   "worth rick ridge by den don dale more ker ler ner ster ell ins ings lin kins ey ie ough ers")
# common US place names many states have a town of (small towns beyond :data:`PLACES`; _ is a space)
TOWN_NAMES = ("Springfield Franklin Clinton Greenville Salem Madison Georgetown Bristol Fairview Marion Chester "
              "Milford Riverside Centerville Lebanon Oxford Ashland Burlington Clayton Dayton Dover Hudson Jackson "
              "Kingston Lexington Manchester Milton Newport Oakland Plymouth Richmond Shelby Troy Warren Winchester "
              "Auburn Cleveland Columbia Hamilton Lancaster Monroe Mount_Vernon Oak_Grove Pleasant_Hill Princeton "
              "Arlington Farmington Glendale Hanover Jefferson Lincoln Marshall Middletown Newton Oakdale Pine_Bluff "
              "Quincy Rockport Sheridan Sterling Union Vernon Waverly Williamsburg Woodstock Benton Camden Carthage "
              "Dallas Elkton Florence Geneva Greenwood Hartford Hillsboro Jasper Lakewood Lewisburg Lodi Mansfield "
              "Mayfield Midway Morristown Newberry Orange Paris Perry Portland Riverview Rome Salisbury Sharon "
              "Somerset Sparta Summit Tyrone Vienna Washington Wayne Westfield Wilson Yorktown")


class Weighted(Generic[T]):
    """Weighted choice by cumulative weights (bisect)."""

    def __init__(self, items: Sequence[T], weights: Sequence[float]) -> None:
        self.items = list(items)
        self.cum: list[float] = []
        total = 0.0
        for w in weights:
            total += w
            self.cum.append(total)

    def pick(self, rng: random.Random) -> T:
        return self.items[bisect.bisect_left(self.cum, rng.random() * self.cum[-1])]


class Markov:
    """Character-level Markov chain over real names: rare names spelled the way the real ones are
    (the long tail nobody can list)."""

    def __init__(self, names: Sequence[str], order: int = 3) -> None:
        self.order = order
        self.known = {n.lower() for n in names}
        nexts: dict[str, list[str]] = {}
        for n in names:
            s = "^" * order + n.lower() + "$"
            for i in range(len(s) - order):
                nexts.setdefault(s[i:i + order], []).append(s[i + order])
        self.nexts = nexts

    def make(self, rng: random.Random, lo: int = 4, hi: int = 11, novel: bool = True) -> str:
        """A name of ``lo``..``hi`` letters (one no real name list here has, when ``novel``)."""
        while True:
            out, state = "", "^" * self.order
            while True:
                ch = rng.choice(self.nexts[state])
                if ch == "$":
                    break
                out += ch
                state = state[1:] + ch
            if lo <= len(out) <= hi and not (novel and out in self.known):
                return out[:1].upper() + out[1:]


@dataclass(frozen=True, slots=True)
class Place:
    city: str
    state: str
    zips: tuple[str, ...]
    codes: tuple[tuple[str, int], ...]  # (area code, year in service)
    pop: float
    kind: str  # c city, s suburb, t town


@dataclass(frozen=True, slots=True)
class Street:
    name: str  # "N Oak St" as printed, abbreviated
    spelled: str  # "North Oak Street"
    zip: str
    lo: int
    hi: int


@dataclass(slots=True)
class Person:
    first: str
    last: str
    full: str
    sex: str
    birth: dt.date
    group: str
    nick: str | None


def _zip_ranges(spec: str) -> list[tuple[int, int]]:
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.append((int(lo), int(hi or lo)))
    return out


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class IndependentUS:
    """One US population of customers; deterministic for a seed."""

    def __init__(self, seed: int = 23) -> None:
        self.rng = rng = random.Random(seed)
        self.import_at = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # set by customers()
        self._surnames(rng)
        self._first_names()
        self._places(rng)
        self._streets: dict[tuple[str, str], tuple[Weighted[Street], float]] = {}
        self.freemail = [(d, s, k) for d, s, k in FREEMAIL]
        companies = sorted({f"{rng.choice(COMPANY_WORDS)}{rng.choice(COMPANY_TAILS)}{rng.choice(COMPANY_TLDS)}"
                            for _ in range(3000)})
        rng.shuffle(companies)
        self.company = Weighted(companies, [1.0 / (j + 3) ** 0.8 for j in range(len(companies))])
        self.universities: dict[str, list[str]] = {}
        for dom, st in UNIVERSITIES:
            self.universities.setdefault(st, []).append(dom)

    # -- tables built once ----------------------------------------------------------------------
    def _surnames(self, rng: random.Random) -> None:
        by_group: dict[str, list[tuple[str, float]]] = {"g": [], "h": [], "a": []}
        seen: set[str] = set()
        for entry in SURNAMES_TOP.replace("\n", "").split("|"):
            name, share, group = entry.split()
            by_group[group].append((name, float(share)))
            seen.add(name)
        more = {g: [n for n in text.split() if n not in seen] for g, text in SURNAMES_MORE.items()}
        longest = max(len(v) for v in more.values())
        rank = 300
        for j in range(longest):  # interleaved: ranks 300..~2000 shared by the groups
            for g in ("g", "h", "a"):
                if j < len(more[g]) and more[g][j] not in seen:
                    rank += 1 if g == "g" else 3
                    seen.add(more[g][j])
                    by_group[g].append((more[g][j], 37.7 * (300 / rank) ** 0.95))
        self.top_general = [n for n, _ in by_group["g"]]
        self.surname = {g: Weighted([n for n, _ in v], [w for _, w in v]) for g, v in by_group.items()}
        black = {"Washington": 8.0, "Jefferson": 6.0, "Jackson": 2.2, "Williams": 1.8, "Johnson": 1.5, "Harris": 1.6,
                 "Robinson": 1.8, "Brown": 1.4, "Jones": 1.5, "Thomas": 1.4, "Davis": 1.3, "Mosley": 4, "Gaines": 3,
                 "Tillman": 3, "Dorsey": 3, "Coleman": 2.2, "Freeman": 2.2, "Banks": 2.5, "Bryant": 2}
        self.surname["b"] = Weighted([n for n, _ in by_group["g"]], [w * black.get(n, 1.0) for n, w in by_group["g"]])
        origins = ("english", "german", "italian", "polish", "irish", "scandinavian", "french", "greek", "slavic",
                   "armenian", "jewish")
        self.tail_origin = Weighted(origins, (40, 14, 9, 7, 8, 6, 5, 3, 3, 2, 3))
        self.surname_chain = {g: Markov([n for n, _ in by_group[g]]) for g in ("g", "h")}
        # real surnames cut at a common ending, recombined (Hutchin|son, Whit|ley...)
        ends = sorted(SURNAME_ENDINGS.split(), key=len, reverse=True)
        roots: set[str] = set()
        found: dict[str, int] = {}
        for n, _ in by_group["g"]:
            e = next((e for e in ends if n.lower().endswith(e) and len(n) - len(e) >= 3), None)
            roots.add(n[: len(n) - len(e)] if e else n)
            if e:
                found[e] = found.get(e, 0) + 1
        self.roots = sorted(r for r in roots if "'" not in r)
        self.spliceable = {g: [n for n, _ in by_group[g] if n.isalpha() and len(n) > 4] for g in ("g", "h")}
        self.endings = Weighted(list(found), list(found.values()))

    def _first_names(self) -> None:
        self.first_top: dict[tuple[int, str], tuple[Weighted[str], float]] = {}
        self.gender_of: dict[str, str] = {}
        for decade, (male_k, female_k, male, female) in FIRST_BY_DECADE.items():
            for sex, text, births in (("M", male, male_k), ("F", female, female_k)):
                toks = text.split()
                names, counts = toks[0::2], [float(c) for c in toks[1::2]]
                self.first_top[(decade, sex)] = (Weighted(names, counts), sum(counts) / births)
                for n in names:
                    self.gender_of.setdefault(n, sex)
        # beyond a decade's top 40: real names of the era (tail lists, other decades' heads) ranked on a
        # long curve, then coinages spelled like the sex's names (Markov), more of them for the young
        self.first_tail: dict[tuple[str, str], Weighted[str]] = {}
        self.first_chain: dict[str, Markov] = {}
        for sex, text in (("M", FIRST_TAIL_MALE), ("F", FIRST_TAIL_FEMALE)):
            entries = list(dict.fromkeys(text.split()))
            heads = {d: (v[2] if sex == "M" else v[3]).split()[0::2] for d, v in FIRST_BY_DECADE.items()}
            every = [e.split(":")[0] for e in entries] + [n for d in heads for n in heads[d]]
            self.first_chain[sex] = Markov(list(dict.fromkeys(every)))
            for era, decades in (("o", (1940, 1950, 1960)), ("m", (1960, 1970, 1980)), ("y", (1980, 1990, 2000))):
                tail = [e.split(":")[0] for e in entries if e.split(":")[1] in (era, "*")]
                random.Random(f"{sex}{era}").shuffle(tail)
                names = list(dict.fromkeys([n for d in decades for n in heads[d][10:]] + tail
                                           + [n for d in heads for n in heads[d][25:]]))
                self.first_tail[(sex, era)] = Weighted(names, [1.0 / (i + 25) ** 0.9 for i in range(len(names))])
        self.heritage = {(g, s): tuple(text.split()) for g, (m, f) in HERITAGE_FIRST.items() for s, text in (("M", m), ("F", f))}

    def _places(self, rng: random.Random) -> None:
        self.places_by_state: dict[str, list[Place]] = {}
        for line in PLACES.strip().splitlines():
            city, st, zr, codes, pop, kind = line.split("|")
            lo, hi = (int(x) for x in zr.split("-"))
            size = hi - lo + 1
            n_zips = max(1, min(size, int(float(pop) / 22) + 1))
            zips = tuple(sorted(f"{z:05d}" for z in rng.sample(range(lo, hi + 1), n_zips)))
            cs = tuple((c.split(":")[0], int(c.split(":")[1])) for c in codes.split())
            self.places_by_state.setdefault(st, []).append(Place(city, st, zips, cs, float(pop), kind))
        # small towns: common US place names and names composed the way US towns are named, ZIPs in the
        # state's ZIP3 ranges, the area code of the state's listed place with the nearest ZIP
        nature = ("Oak", "Cedar", "Pine", "Maple", "Willow", "Elm", "Green", "Rock", "Stone", "Clear", "Silver", "Spring",
                  "Fair", "River", "Sandy", "Pleasant", "Walnut", "Cherry", "Bay", "Brook", "Glen", "Forest", "Ash")
        patterns = ("{s}ville", "{s}ton", "{s}burg", "{s} City", "Lake {n}", "{n} Springs", "{n} Heights", "{n} Park",
                    "East {s}", "West {s}", "North {s}", "{n}wood", "Mount {s}", "Fort {s}", "{s} Falls", "{n} Valley",
                    "{n} Creek", "Port {s}", "{n} Hill", "{n}dale", "New {s}", "{s} Center", "{n} Grove", "{s} Junction")
        g_top = self.top_general[:250]
        for st, (_, pop_k, _, _, _, _, _, ranges) in STATES.items():
            listed = self.places_by_state[st]
            names = {p.city for p in listed}
            z3s = [z for lo, hi in _zip_ranges(ranges) for z in range(lo, hi + 1)]
            n_towns = max(15, min(150, pop_k // 150))
            towns = [t.replace("_", " ") for t in rng.sample(TOWN_NAMES.split(), 30) if t.replace("_", " ") not in names]
            while len(towns) < n_towns:
                t = rng.choice(patterns).format(s=rng.choice(g_top), n=rng.choice(nature))
                if t not in names and t not in towns:
                    towns.append(t)
            rng.shuffle(towns)
            listed_pop = sum(p.pop for p in listed)
            town_total = max(pop_k * 0.55 - listed_pop, pop_k * 0.25)
            weights = [1.0 / (i + 4) ** 0.7 for i in range(len(towns))]
            for t, w in zip(towns, weights, strict=True):
                z = rng.choice(z3s) * 100 + rng.randint(1, 99)
                near = min(listed, key=lambda p: abs(int(p.zips[0]) - z))
                town_codes = tuple(c for c in near.codes if c[1] < 2000) or near.codes[:1]
                extra = (f"{z + rng.randint(1, 3):05d}",) if w > weights[0] / 3 and rng.random() < 0.5 else ()
                self.places_by_state[st].append(Place(t, st, (f"{z:05d}", *extra), town_codes, town_total * w / sum(weights), "t"))
        self.states = Weighted(list(STATES), [v[1] for v in STATES.values()])
        self.place_in = {st: Weighted(ps, [p.pop for p in ps]) for st, ps in self.places_by_state.items()}
        self.zones = {st: ZoneInfo(v[2]) for st, v in STATES.items()}
        self.all_codes = Weighted([(c, y, st) for st, ps in self.places_by_state.items() for p in ps for c, y in p.codes],
                                  [p.pop / len(p.codes) for ps in self.places_by_state.values() for p in ps for _ in p.codes])
        street_items, street_w = [], []
        for entry in STREET_NAMES.replace("\n", "").split("|"):
            *words, w = entry.split()
            street_items.append(" ".join(words))
            street_w.append(float(w))
        self.street_names = Weighted(street_items, street_w)
        self.suffix = Weighted(SUFFIXES, [s[2] for s in SUFFIXES])

    def streets(self, place: Place) -> tuple[Weighted[Street], float]:
        """The place's streets (built on first use, deterministic per place) and its apartment share."""
        key = (place.city, place.state)
        if key in self._streets:
            return self._streets[key]
        r = random.Random(f"{place.city}|{place.state}")
        n = int(min(320, max(18, 6 * math.sqrt(place.pop) + r.randint(0, 10))))
        grid = place.city in GRID_CITIES
        quadrant = place.city in QUADRANT_CITIES
        out: list[Street] = []
        seen: set[str] = set()
        while len(out) < n:
            x = r.random()
            if x < 0.62:
                base = self.street_names.pick(r)
            elif x < 0.8:
                num = r.randint(1, 160 if grid or quadrant else 40)
                base = NUMBERED[num - 10] if 10 <= num <= 12 and r.random() < 0.5 else _ordinal(num)
            elif x < 0.93:
                base = self.surname["g"].pick(r)
            else:
                base = f"{r.choice(('Oak', 'Pine', 'Cedar', 'Willow', 'Maple', 'Fox', 'Deer', 'Quail', 'Eagle', 'Hidden', 'Autumn', 'Spring'))} " \
                       f"{r.choice(('Ridge', 'Creek', 'Hollow', 'Valley', 'Glen', 'Brook', 'Meadow', 'Pointe', 'Run', 'Crossing', 'Trace', 'Bend'))}"
            ab, spelled, _ = self.suffix.pick(r)
            if base in ("First", "Second", "Third", "Fourth", "Fifth", "Sixth", "Seventh", "Eighth", "Ninth") and r.random() < 0.35:
                base = _ordinal(("First", "Second", "Third", "Fourth", "Fifth", "Sixth", "Seventh", "Eighth", "Ninth").index(base) + 1)
            name, full = f"{base} {ab}", f"{base} {spelled}"
            if quadrant and r.random() < 0.7:
                q = r.choice(("NW", "NE", "SE", "SW"))
                name, full = f"{name} {q}", f"{full} {q}"
            elif r.random() < (0.22 if place.kind == "c" else 0.1):
                d = r.choice(("N", "S", "E", "W"))
                name = f"{d} {name}"
                full = f"{DIRECTIONS[d]} {full}"
            if name in seen:
                continue
            seen.add(name)
            lo = r.choice((1, 1, 2, 10, 100, 100, 200, 1000)) if not grid else r.choice((100, 1000, 2000, 5000, 10000))
            span = r.choice((60, 300, 1200, 3000)) if ab not in ("Ct", "Cir", "Pl", "Loop") else r.choice((20, 40, 80))
            if grid and ab not in ("Ct", "Cir", "Pl", "Loop"):
                span = r.choice((3000, 9000, 20000))
            out.append(Street(name, full, r.choice(place.zips), lo, lo + span))
        units = {"c": 0.34, "s": 0.2, "t": 0.09}[place.kind]
        if place.city in ("New York", "Brooklyn", "Bronx", "Flushing", "Astoria", "Jamaica", "Hoboken", "Jersey City"):
            units = 0.7
        result = (Weighted(out, [1.0 / (j + 2) ** 0.75 for j in range(len(out))]), units)
        self._streets[key] = result
        return result

    # -- people ---------------------------------------------------------------------------------
    def group_for(self, state: str) -> str:
        _, _, _, _, hisp, asian, black, _ = STATES[state]
        x = self.rng.random() * 100
        return "h" if x < hisp else "a" if x < hisp + asian else "b" if x < hisp + asian + black else "g"

    def rare_surname(self, group: str) -> str:
        r = self.rng
        if group == "h":
            if r.random() < 0.6:
                return self.splice("h")
            roots, ends = TAIL_PARTS["hispanic"]
            return r.choice(roots) + r.choice(ends)
        if group == "a":
            return r.choice(("Venkat", "Subra", "Krishna", "Rama", "Bala", "Raghu", "Nara", "Srini", "Gopal", "Chandra",
                             "Siva", "Ananth", "Vasu", "Hari", "Jaya")) + r.choice(
                ("raman", "murthy", "nathan", "krishnan", "vasan", "iah", "swamy", "an", "pillai", "reddy"))
        x = r.random()
        if x < 0.15:
            return self.surname_chain["g"].make(r, 5, 12)
        if x < 0.35:
            return r.choice(self.roots) + self.endings.pick(r)
        if x < 0.65:
            return self.splice("g")
        origin = self.tail_origin.pick(r)
        roots, ends = TAIL_PARTS[origin]
        mid = r.choice(("", "", "", "er", "ing", "en", "s")) if origin == "english" else ""
        return r.choice(roots) + mid + r.choice(ends)

    def splice(self, group: str) -> str:
        """The head of one real surname and the tail of another (Hutch|ington): a rare name most
        tables hold once."""
        r = self.rng
        names = self.spliceable[group]
        while True:
            a, b = r.choice(names), r.choice(names).lower()
            out = a[: r.randint(3, min(6, len(a) - 1))] + b[-r.randint(2, min(5, len(b) - 1)):]
            if 5 <= len(out) <= 13 and not re.search(r"(.)\1\1|[^aeiouy]{4}", out.lower()) and out.lower() not in self.surname_chain["g"].known:
                return out

    def person(self, birth: dt.date, state: str, sex: str | None = None, last: str | None = None) -> Person:
        r = self.rng
        group = self.group_for(state)
        sex = sex or ("F" if r.random() < 0.51 else "M")
        if last is None:
            sur_group = group if group in ("h", "a") or r.random() > 0.1 else r.choice(("h", "g"))
            base = "g" if sur_group == "b" and r.random() < 0.3 else sur_group
            named = {"g": 0.42, "b": 0.5, "h": 0.7, "a": 0.88}[base]
            last = self.surname[base].pick(r) if r.random() < named else self.rare_surname(base)
        first = self.first_name(sex, birth.year, group)
        nick = NICKNAMES.get(first)
        shown_first = r.choice(nick) if nick and r.random() < 0.07 else first
        x = r.random()
        if x < 0.07:
            full = f"{shown_first} {r.choice('ABCDEFGHJKLMNPRSTW')}. {last}"
        elif x < 0.09:
            full = f"{shown_first} {r.choice('ABCDEFGHJKLMNPRSTW')} {last}"
        elif group == "h" and x < 0.15:
            second = self.surname["h"].pick(r)
            full = f"{shown_first} {last}-{second}" if r.random() < 0.4 else f"{shown_first} {last} {second}"
        elif sex == "F" and x < 0.105:
            full = f"{shown_first} {last}-{self.surname['g'].pick(r)}"
        else:
            full = f"{shown_first} {last}"
        if sex == "M" and r.random() < 0.018:
            full += r.choice((" Jr.", " Jr", " Sr.", " II", " III"))
        y = r.random()
        if y < 0.025:
            full = full.lower()
        elif y < 0.032:
            full = full.upper()
        elif y < 0.035:
            full += " "
        return Person(first, last, full, sex, birth, group, nick[0] if nick else None)

    def first_name(self, sex: str, year: int, group: str) -> str:
        r = self.rng
        if group in ("h", "a", "b") and r.random() < {"h": 0.38, "a": 0.35, "b": 0.22}[group]:
            names = self.heritage[(group, sex)]
            return names[min(len(names) - 1, int(r.expovariate(1 / 7)))]
        decade = min(2000, max(1940, year // 10 * 10))
        if r.random() < 0.15:  # names outlive their decade
            decade = min(2000, max(1940, decade + r.choice((-10, 10))))
        top, share = self.first_top[(decade, sex)]
        if r.random() < share:
            return str(top.pick(r))
        era = "o" if year < 1963 else "m" if year < 1985 else "y"
        if r.random() < {"o": 0.06, "m": 0.1, "y": 0.18}[era]:  # rare spellings and coinages
            return self.first_chain[sex].make(r, 3, 10)
        return self.first_tail[(sex, era)].pick(r)

    # -- contact points -------------------------------------------------------------------------
    def email_local(self, p: Person, area_code: str | None = None) -> str:
        r = self.rng
        f = re.sub(r"[^a-z]", "", p.first.lower()) or "x"
        last = re.sub(r"[^a-z]", "", p.last.lower().split("-")[0]) or "x"
        yyyy, yy = str(p.birth.year), f"{p.birth.year % 100:02d}"
        nn = r.choice((yy, yy, str(r.randint(1, 99)), str(r.randint(1, 9)), "1", "7", "13", "23", "22", "123",
                       f"{p.birth.month}{p.birth.day}", str(r.randint(100, 999))))
        styles: tuple[tuple[float, Callable[[], str]], ...] = (
            (17, lambda: f"{f}.{last}"), (11, lambda: f"{f}{last}"), (10, lambda: f"{f[0]}{last}"),
            (3, lambda: f"{f}_{last}"), (3, lambda: f"{f}{last[0]}"), (5, lambda: f"{f}.{last}{nn}"),
            (6, lambda: f"{f}{last}{nn}"), (6, lambda: f"{f[0]}{last}{nn}"), (4, lambda: f"{f}{yyyy}"),
            (4, lambda: f"{f}{yy}"), (4, lambda: f"{f}{last}{yy}"), (3, lambda: f"{f[0]}{r.choice('abcdeghjklmnprstw')}{last}"),
            (2, lambda: f"{last}.{f}"), (2, lambda: f"{last}{f[0]}"),
            (4, lambda: f"{(p.nick or f).lower()}{r.choice(('', '.' + last, last, nn, nn))}"),
            (12, lambda: self._handle(nn)), (1.5, lambda: f"{f}{area_code or nn}"),
            (2, lambda: f"{f[0]}{last[0]}{r.randint(1, 9999)}"), (1, lambda: f"{f}.{last}.{yy}"),
        )
        local: str = Weighted([make for _, make in styles], [w for w, _ in styles]).pick(r)()
        local = re.sub(r"[^a-z0-9._]", "", local)[:32].strip("._") or f
        if r.random() < 0.04:
            local = local[:1].upper() + local[1:]
        elif r.random() < 0.005:
            local = local.upper()
        return local

    def _handle(self, nn: str) -> str:
        r = self.rng
        w = r.choice(HANDLE_WORDS)
        if w in ("momof", "mama", "mommy") and r.random() < 0.5:
            return f"{w}{r.randint(2, 5)}{r.choice(('', 'boys', 'girls', 'kids'))}"
        w2 = r.choice(HANDLE_WORDS) if r.random() < 0.3 else ""
        sep = r.choice(("", "", "", "_", "."))
        tail = r.choice((nn, nn, "", str(r.randint(1, 9999))))
        return f"{w}{sep}{w2}{tail}" if w2 else f"{w}{sep if tail else ''}{tail}"

    def domain(self, p: Person, state: str, now_year: int) -> str:
        r = self.rng
        age = now_year - p.birth.year
        x = r.random()
        if x < 0.004:
            return r.choice(TYPO_DOMAINS)
        if x < 0.03 and age < 27 and state in self.universities and r.random() < 0.8:
            return r.choice(self.universities[state])
        if x < 0.07 and 24 < age < 67:
            return self.company.pick(r)
        isps = [(d, s) for d, s, where in ISP_DOMAINS if where == "*" or state in where.split()]
        tilt = (age - 40) / 25
        names = [d for d, _, _ in self.freemail] + [d for d, _ in isps]
        weights = [s * k ** tilt for _, s, k in self.freemail] + [s * 2.2 ** tilt for _, s in isps]
        return str(Weighted(names, weights).pick(r))

    def area_code(self, place: Place, birth: dt.date, now_year: int) -> str:
        r = self.rng
        got = r.randint(max(birth.year + 15, 1996), max(now_year, birth.year + 16))  # when the number was taken
        x = r.random()
        if x < 0.78:
            codes = [c for c, y in place.codes if y <= got] or [place.codes[0][0]]
            return r.choice(codes)
        if x < 0.86:
            other = self.place_in[place.state].pick(r)
            return r.choice([c for c, y in other.codes if y <= got] or [other.codes[0][0]])
        while True:  # kept the number of a place one lived before
            code, year, _ = self.all_codes.pick(r)
            if year <= got:
                return code

    def phone(self, code: str) -> str:
        r = self.rng
        exchange = r.randint(200, 999)
        while exchange % 100 == 11 or exchange == 555:
            exchange = r.randint(200, 999)
        line = f"{r.randint(0, 9999):04d}"
        x = r.random()
        if x < 0.34:
            return f"({code}) {exchange}-{line}"
        if x < 0.64:
            return f"{code}-{exchange}-{line}"
        if x < 0.79:
            return f"{code}{exchange}{line}"
        if x < 0.87:
            return f"+1{code}{exchange}{line}"
        if x < 0.92:
            return f"{code}.{exchange}.{line}"
        if x < 0.95:
            return f"+1 {code}-{exchange}-{line}"
        if x < 0.97:
            return f"1-{code}-{exchange}-{line}"
        if x < 0.985:
            return f"{code} {exchange} {line}"
        return f"+1 ({code}) {exchange}-{line}"

    # -- places ---------------------------------------------------------------------------------
    def place(self, state: str | None = None) -> Place:
        st = state or self.states.pick(self.rng)
        p = self.place_in[st].pick(self.rng)
        return p

    def address(self, place: Place, legacy: bool = False) -> tuple[str, str]:
        """(address, postal code) in ``place``."""
        r = self.rng
        streets, units = self.streets(place)
        st = place.state
        state_name = STATES[st][0]
        x = r.random()
        if place.kind == "t" and x < 0.06:
            line = r.choice((f"{r.randint(100, 29999)} County Road {r.randint(1, 400)}",
                             f"RR {r.randint(1, 9)} Box {r.randint(1, 400)}",
                             f"{r.randint(1000, 99999)} State Route {r.randint(1, 300)}",
                             f"{r.randint(100, 9999)} Highway {r.randint(1, 99)}"))
            zipc = place.zips[0]
        elif x < 0.075:
            line = f"PO Box {r.randint(1, 9999) if r.random() < 0.7 else r.randint(10000, 999999)}"
            zipc = r.choice(place.zips)
        else:
            s = streets.pick(r)
            num = int(s.lo + (s.hi - s.lo) * r.random() ** 1.6)
            street = s.spelled if r.random() < 0.12 else s.name
            if r.random() < 0.06:
                street = street.replace(" St", " St.").replace(" Ave", " Ave.").replace(" Rd", " Rd.").replace(" Dr", " Dr.")
            line = f"{num} {street}"
            if r.random() < units:
                unit = r.choice((f"Apt {r.randint(1, 40)}{r.choice('ABCD') if r.random() < 0.3 else ''}", f"Apt {r.randint(101, 2412)}",
                                 f"Apt. {r.randint(1, 30)}", f"#{r.randint(1, 450)}", f"Unit {r.randint(1, 300)}",
                                 f"Apt {r.randint(1, 9)}{r.choice('ABCDEFGH')}", f"Ste {r.randint(100, 900)}"))
                line += f", {unit}" if r.random() < 0.55 else f" {unit}"
            zipc = s.zip
        postal = zipc
        if r.random() < 0.05:
            postal = f"{zipc}-{r.randint(1, 9999):04d}"
        if legacy and postal.startswith("0") and r.random() < 0.35:
            postal = postal.lstrip("0")  # lost to a spreadsheet on its way from the old system
        y = r.random()
        if y < 0.7:
            text = f"{line}, {place.city}, {st}"
        elif y < 0.8:
            text = f"{line}, {place.city}, {st} {zipc}"
        elif y < 0.88:
            text = f"{line}, {place.city} {st}"
        elif y < 0.91:
            text = f"{line}, {place.city}, {state_name}"
        elif y < 0.95:
            text = f"{line} {place.city} {st} {zipc}"
        else:
            text = f"{line}, {place.city}, {st.lower() if r.random() < 0.3 else st}"
        z = r.random()
        if legacy and z < 0.3:
            text = text.upper()
        elif z < 0.03:
            text = text.lower()
        return text, postal

    # -- the table ------------------------------------------------------------------------------
    def _day_weights(self, start: dt.datetime, now: dt.datetime) -> tuple[list[dt.date], list[float]]:
        r = self.rng
        days, weights = [], []
        d = start.date()
        total = (now.date() - d).days or 1
        viral = d + dt.timedelta(days=r.randint(total // 3, 2 * total // 3))
        while d <= now.date():
            w = math.exp(1.6 * (d - start.date()).days / total)
            w *= (1.12, 1.05, 1.0, 0.98, 0.9, 0.85, 1.05)[d.weekday()]
            thanksgiving = dt.date(d.year, 11, 1) + dt.timedelta(days=(3 - dt.date(d.year, 11, 1).weekday()) % 7 + 21)
            delta = (d - thanksgiving).days
            if delta == 1:
                w *= 5.0  # Black Friday
            elif delta == 4:
                w *= 4.5  # Cyber Monday
            elif -3 <= delta <= 6:
                w *= 1.8
            elif d.month == 12 and d.day <= 20:
                w *= 1.6
            elif d.month == 12 and d.day in (24, 25):
                w *= 0.55
            elif d.month == 12 and d.day == 26:
                w *= 1.4
            elif d.month == 7 and 11 <= d.day <= 12:
                w *= 2.4  # July sale
            elif d.month in (6, 7, 8):
                w *= 0.9
            if dt.date(2020, 3, 15) <= d <= dt.date(2020, 6, 30):
                w *= 2.2
            elif d.year == 2020 and d.month > 6:
                w *= 1.4
            if d == viral:
                w *= 15
            days.append(d)
            weights.append(w)
            d += dt.timedelta(days=1)
        return days, weights

    def customers(self, n: int, now: dt.datetime) -> tuple[list[tuple[object, ...]], dict[int, str]]:
        """Rows (id, full_name, email, phone, address, postal_code, created_at, updated_at) in id order,
        and each row's state (for orders' sales tax)."""
        r = self.rng
        start = now - dt.timedelta(days=8 * 365)
        self.import_at = import_at = (start + dt.timedelta(days=2)).replace(hour=9, minute=14, second=27, microsecond=318_402)
        filled_from = start + dt.timedelta(days=int(365 * 3.4))  # updated_at filled on insert from here on
        backfill = (start + dt.timedelta(days=int(365 * 5.6))).replace(hour=7, minute=2, second=51, microsecond=77_130)
        legacy_n = int(n * 0.09)
        days, dw = self._day_weights(start, now)
        day_pick = Weighted(days, dw)
        hour_w = (0.35, 0.2, 0.12, 0.08, 0.07, 0.1, 0.25, 0.45, 0.65, 0.8, 0.9, 0.95, 1.0, 1.0, 0.95, 0.95, 0.95, 0.95,
                  1.0, 1.15, 1.3, 1.3, 1.0, 0.65)
        hour_pick = Weighted(list(range(24)), hour_w)
        # (created, legacy, state, place) before ids are given
        plan: list[tuple[dt.datetime, bool, Place]] = []
        for _ in range(legacy_n):
            day = dt.date(start.year - r.randint(1, 8), 1, 1) + dt.timedelta(days=r.randint(0, 364))
            created = dt.datetime(day.year, day.month, day.day, tzinfo=EASTERN).astimezone(dt.UTC)
            plan.append((created, True, self.place()))
        legacy = sorted(plan, key=lambda t: t[0])
        fresh: list[tuple[dt.datetime, bool, Place]] = []
        bot_day = days[len(days) // 2 + r.randint(-200, 200)]
        bot_wave = int(n * 0.008)
        for _ in range(n - legacy_n):
            place = self.place()
            day = day_pick.pick(r)
            wall = dt.datetime(day.year, day.month, day.day, hour_pick.pick(r), r.randint(0, 59), r.randint(0, 59),
                               r.randint(0, 999_999), tzinfo=self.zones[place.state])
            created = wall.astimezone(dt.UTC)
            if start < created < now:
                fresh.append((created, False, place))
        fresh.sort(key=lambda t: t[0])
        rows: list[tuple[object, ...]] = []
        states: dict[int, str] = {}
        emails: set[str] = set()
        households: list[tuple[str, str, Place, str | None, str]] = []  # address, postal, place, landline, surname
        next_id = 20 + r.randint(0, 15)  # the first ids were test accounts, deleted
        bot_at = next(i for i, t in enumerate(fresh) if t[0].date() >= bot_day) + len(legacy)
        for i, (created, is_legacy, place) in enumerate(legacy + fresh):
            next_id += 1 if r.random() > 0.006 else r.randint(2, 4)  # rolled-back inserts
            if r.random() < 0.00005:
                next_id += 32  # sequence cache lost at a crash
            if i == bot_at:
                next_id += bot_wave  # a bot signup wave, purged the next day
            if r.random() < 0.02:
                next_id += 1  # account deleted on request
            pk = next_id
            year = created.year
            birth_year = min(year - 18, int(r.triangular(1940, 2006, 1984)))
            birth = dt.date(birth_year, r.randint(1, 12), r.randint(1, 28))
            address: str | None
            postal: str | None
            updated: dt.datetime | None
            if households and r.random() < 0.065:
                address, postal, place, landline, family = r.choice(households[-3000:])
                p = self.person(birth, place.state, last=family if r.random() < 0.75 else None)
            else:
                p = self.person(birth, place.state)
                address, postal = self.address(place, legacy=is_legacy)
                landline = self.phone(place.codes[0][0]) if r.random() < 0.35 else None
                households.append((address, postal, place, landline, p.last))
            code = self.area_code(place, birth, year)
            x = r.random()
            old = year - birth.year > 60
            if x < 0.05:
                phone = None
            elif x < (0.05 + (0.16 if old else 0.03)) and landline:
                phone = landline
            else:
                phone = self.phone(code)
            domain = self.domain(p, place.state, year)
            local = self.email_local(p, code)
            email = f"{local}@{domain}"
            while email.lower() in emails:
                local = f"{local}{r.randint(1, 99)}"
                email = f"{local}@{domain}"
            emails.add(email.lower())
            if r.random() < 0.035:
                address, postal = None, None  # never entered one (no physical order yet)
            elif r.random() < 0.015:
                postal = None
            if is_legacy:
                u = r.random()
                later = import_at + dt.timedelta(seconds=min(r.lognormvariate(16.0, 1.6), 3e9))
                updated = import_at if u < 0.62 or (u >= 0.75 and later > now) else backfill if u < 0.75 else later
                full = p.full.upper() if r.random() < 0.18 else p.full
                rows.append((pk, full, email, phone, address, postal, created, updated))
            else:
                u = r.random()
                later = created + dt.timedelta(seconds=min(r.lognormvariate(14.5, 2.2), 3e9))  # beyond ~95 years: never
                if u < 0.45 and later <= now:  # (an update not made yet leaves the row as inserted)
                    updated = later
                elif u < 0.55 and created < backfill:
                    updated = backfill
                else:
                    updated = created if created >= filled_from else None
                rows.append((pk, p.full, email, phone, address, postal, created, updated))
            states[pk] = place.state
        return rows, states

    def orders(self, customers: Sequence[tuple[object, ...]], states: dict[int, str], now: dt.datetime) -> list[tuple[object, ...]]:
        """Rows (id, customer_id, ordered_at, total, status, ship_to) in time order; totals in cents."""
        r = self.rng
        prices = Weighted((499, 799, 999, 1299, 1499, 1999, 2499, 2999, 3499, 3999, 4999, 5999, 7999, 9999, 12999, 14999,
                           19999, 24999, 1000, 2500, 5000, 1495, 2995, 349),
                          (3, 5, 8, 7, 7, 10, 7, 8, 4, 5, 6, 3, 3, 3, 1.5, 1.2, 0.8, 0.5, 1.5, 1.5, 1, 1, 1, 2))
        out: list[tuple[object, ...]] = []
        for pk, _, _, _, address, _, created, _ in customers:
            assert isinstance(created, dt.datetime) and isinstance(pk, int)
            age_days = (now - created).days
            p_none = 0.3 + (0.35 if age_days < 60 else 0.0)
            if r.random() < p_none or (address is None and r.random() < 0.7):
                continue
            k = 1 + min(80, int(r.paretovariate(1.25)) - 1 + (1 if r.random() < 0.25 else 0))
            when = max(created, self.import_at + dt.timedelta(days=2, hours=r.randint(0, 2000)))
            rate = STATES[states[pk]][3] / 100
            for j in range(k):
                if j == 0 and when == created and r.random() < 0.5:
                    when = created + dt.timedelta(seconds=r.lognormvariate(5.3, 0.9))  # checkout created the account
                else:
                    when = when + dt.timedelta(seconds=r.lognormvariate(15.3, 1.2))
                if when.month == 10 and r.random() < 0.2:  # waited for the sales
                    when = when.replace(month=11, day=r.randint(24, 30))
                if when > now:
                    break
                subtotal = sum(prices.pick(r) * (1 if r.random() < 0.85 else r.randint(2, 3))
                               for _ in range(1 + int(r.expovariate(0.9))))
                discount = round(subtotal * r.choice((0.1, 0.15, 0.2))) if r.random() < 0.15 else 0
                ship = 0 if subtotal - discount >= (5000 if when.year >= 2021 else 7500) else r.choice((599, 599, 799))
                total = subtotal - discount + ship + round((subtotal - discount) * rate)
                age = (now - when).days
                status = ("paid" if r.random() < 0.5 else "shipped") if age < 4 else ("returned" if r.random() < 0.06 else "delivered")
                y = r.random()
                ship_to = address if y < 0.82 else None if y < 0.88 else self.address(self.place())[0]
                out.append((pk, when, total, status, ship_to))
        out.sort(key=lambda o: o[1])  # type: ignore[arg-type, return-value]
        numbered, next_id = [], 1000
        for o in out:
            next_id += 1 if r.random() > 0.04 else r.randint(2, 3)  # failed payments
            numbered.append((next_id, *o))
        return numbered


def build(customers: int, seed: int = 23, now: dt.datetime = ANCHOR) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """(customer rows, order rows) for about ``customers`` customers, their history ending at ``now``."""
    gen = IndependentUS(seed)
    rows, states = gen.customers(customers, now)
    return rows, gen.orders(rows, states, now)


async def create_independent_shop(conn: asyncpg.Connection, customers: int, seed: int = 23, now: dt.datetime = ANCHOR) -> None:
    """The ``canary.shop`` schema filled with about ``customers`` US customers and their orders, their
    history ending at ``now``."""
    rows, orders = build(customers, seed, now)
    async with conn.transaction():
        await conn.execute(SCHEMA)
        await conn.copy_records_to_table("customers", records=rows, columns=CUSTOMER_COLUMNS)
        await conn.copy_records_to_table("orders", records=orders, columns=ORDER_COLUMNS)
        await conn.execute("SELECT setval(pg_get_serial_sequence('customers', 'id'), (SELECT max(id) FROM customers) + 3)")
        await conn.execute("SELECT setval(pg_get_serial_sequence('orders', 'id'), (SELECT max(id) FROM orders) + 1)")
    await conn.execute("ANALYZE customers; ANALYZE orders")
