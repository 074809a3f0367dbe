"""Can a classifier tell canary customers from real ones?

On its own embedded PostgreSQL, for three stand-ins of production data, all deliberately unlike the
seeder's generator:

- ``realistic``: :mod:`realistic_customers` (Korean census surname shares, mostly-unique phones and
  addresses in mixed formats, a long tail of e-mail domains, seasonality, legacy batches, id gaps);
- ``independent``: :mod:`independent_customers`, en_US, from other real frequencies and another hand
  (Census surnames, SSA first names by decade and sex, city / ZIP / area-code relations, US e-mail
  providers by age and state, time zones, US seasonality): mostly cross-column correlations to learn;
- ``shop``: ``canary.shop`` (the demo's fast generator: few distinct names/phones/addresses reused
  20-30 times each; kept so the effect of the data on the measure stays visible),

1% canary customers are seeded by the real seeder (with child orders; datastore locale ko_KR for the
Korean tables, en_US for ``independent``). Per-customer features are computed the way an insider with
a full table dump would: shapes and lengths of every column, the frequency within the table of each
value and of its parts (name, surname, e-mail local part and domain, phone block, address, region,
road, locality, rarest address token), of cross-column pairs (region/postal code, locality/postal
code, region/phone area code, region/e-mail domain), e-mail/name consistency, id gaps to the
neighbours, timestamps (hour, weekday, sub-second part, update batches) and order counts and totals.
A gradient-boosting classifier (scikit-learn, stratified 5-fold) then tries to separate them; the
benchmark prints the ROC AUC (0.5 = indistinguishable; target <= 0.55), the five most telling single
features, and label-free rules a thief could apply without a classifier. A control run of the same
classifier, with as many real rows labelled canaries (the canaries left out), prints the measure's noise
floor: what a perfect seeder would score (about 0.48-0.49 at 20,000 rows). Beside it, the same
classifier with the rows of one address kept in one fold (``households in one fold``): two canaries
sharing an address (a household, as real rows share theirs) have the same address features, and
split across folds the second is recognised by the first's label: what knowing one canary tells a
thief about its housemates, not how canaries as such differ. The target is read on the first.

Each generator is measured without contact pools (synthesis quality alone) and with realistic pools
shaped like its data (what production uses: contact points must route back to us): 40 small domains
we would own and 800 owned numbers over 400 blocks (010 blocks for the Korean tables, exchanges in US
area codes for ``independent``); and with owned free-mail mailboxes at the table's own providers
where anyone can open one (naver.com, daum.net / gmail.com, yahoo.com, outlook.com...; not msn.com,
me.com or an ISP's att.net), as many at each as ``plan`` says its share of the table needs,
forwarding to us, used before those domains.

``--traces`` first rewrites each table the way production wrote it (:mod:`history`: a transaction per
signup, order and update, deleted accounts, vacuum) and adds physical-trace features (:mod:`traces`:
xmin, xmax, heap block against key order, neighbours' keys and times, the key sequence), printing the
AUC with and without them (and with the traces alone).

``--mode trickle`` measures trickle seeding (``mode = "trickle"``): the canaries arrive *during* the
replayed history (:mod:`trickled`): one sign-up per ``1 / rate`` real ones over the window holding the
last ``--window`` share of the table's sign-ups, each written by the seeder at its due time on a
simulated clock, with its later update and orders at theirs, while the real rows take their keys from
the same sequences. The control store runs on its own cluster (transaction ids are cluster-wide). The
measure is over the rows created in the window (features are still the whole table's); a line says
first what no write pattern hides: every trickle canary is younger than the window's start.

Usage: ``python bench/distinguishability.py [--customers 50000] [--rate 0.01] [--data realistic,shop,independent]
[--pools none,domains,mailboxes] [--traces] [--mode backdated|trickle] [--window 0.2] [--seed N]
[--anchor 2026-12-01]``: the tables' histories end at the anchor and the seeder draws from ``--seed``, so
the same arguments repeat a run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from history import Replay, bulk_hint, replay
from independent_customers import ANCHOR, IndependentUS, create_independent_shop
from realistic_customers import SURNAMES, RealisticKorea, create_realistic_shop
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from traces import fetch_traces, trace_features, trace_rules
from trickled import SimClock, trickle_through, trickle_window

from canary.config import from_mapping
from canary.crypto import Keyring, generate_key
from canary.drills.shop import create_shop
from canary.logs import configure
from canary.seeding.postgres import PostgresSeeder
from canary.seeding.synth.shapes import local_shape, shape
from canary.store import ControlStore
from canary.store.embedded import PostgresServer
from canary.store.registry import Registry


def korean_pools(seed: int = 5) -> dict[str, Any]:
    """40 plausible small-company / personal domains we would own (none of them a real customer's
    provider) and 800 owned mobile numbers scattered over 400 different 010 blocks."""
    rng = random.Random(seed)
    stems = ("haneulbit", "seorin", "daon", "mirae-on", "gaeul", "bomnal", "sae-eum", "ireum", "onnuri", "hansol",
             "purun", "dasol", "yerim", "chorok", "hamkke", "noeul", "sarang", "maru", "byeol", "saebyeok")
    tails = ("soft.co.kr", "net.kr", ".co.kr", "tech.com", "mall.com", "design.kr", "lab.net", "story.com")
    domains: list[str] = []
    while len(domains) < 40:
        d = f"{rng.choice(stems)}{rng.choice(tails)}".replace("-.", ".").replace("..", ".")
        if d not in domains:
            domains.append(d)
    blocks = rng.sample(range(2000, 10000), 400)
    phones = sorted({f"+8210{b}{rng.randint(0, 9999):04d}" for b in blocks for _ in range(2)})
    return {"email_domains": domains, "phone_numbers": phones}


#: free-mail providers where anyone (a company's security team too) can open new mailboxes today, and
#: so could own canary mailboxes; the others a table holds are legacy or closed to sign-ups (msn.com,
#: live.com, me.com / mac.com, ymail.com / rocketmail.com, yahoo.co.kr, paran.com, empal.com...) or
#: come only with an internet or phone subscription (comcast.net, att.net, sbcglobal.net...): no
#: operator can own a mailbox there, and the seeder must make do without
OBTAINABLE_US = frozenset({"gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "aol.com", "icloud.com", "gmx.com",
                           "mail.com", "proton.me", "protonmail.com", "zoho.com", "yandex.com"})
OBTAINABLE_KR = frozenset({"naver.com", "gmail.com", "hanmail.net", "daum.net", "nate.com", "kakao.com", "hotmail.com",
                           "outlook.com", "icloud.com", "yahoo.com"})


async def korean_mailboxes(conn: asyncpg.Connection, canaries: int, seed: int = 7) -> list[dict[str, str]]:
    """Owned mailboxes for ``canaries`` canaries at the table's obtainable free-mail providers, as many at
    each as ``plan`` says its share needs (:func:`owned_mailbox_sizes`; an operator opens them at
    naver.com, gmail.com, daum.net...), each forwarding to a canary mail domain. The operator makes
    local parts up the way people do: from a made-up persona's romanised name (with birth digits...)
    or a handle (another population of :class:`RealisticKorea`, not the table's); the seeder then
    names each canary to fit its mailbox."""
    rng = random.Random(seed)
    personas = RealisticKorea(seed=seed + 1000)

    def local() -> str:
        birth = dt.date(rng.randint(1955, 2005), rng.randint(1, 12), rng.randint(1, 28))
        _, sur, given, _ = personas.person(birth.year)
        return personas.email_local(sur, given, birth)

    return made_mailboxes(await owned_mailbox_sizes(conn, canaries, OBTAINABLE_KR), local)


def made_mailboxes(sizes: dict[str, int], local: Callable[[], str]) -> list[dict[str, str]]:
    """``sizes[d]`` mailboxes at each provider ``d``, local parts made by ``local``, each forwarding to
    a canary mail domain."""
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for domain, size in sizes.items():
        made = 0
        while made < size:
            address = f"{local()}@{domain}"
            if address.lower() not in seen:
                seen.add(address.lower())
                out.append({"address": address, "forward_to": f"fw-{len(out):05d}@inbound.canary-mail.test"})
                made += 1
    return out


async def owned_mailbox_sizes(conn: asyncpg.Connection, canaries: int, obtainable: frozenset[str]) -> dict[str, int]:
    """Mailboxes to own at each obtainable provider of the table, as ``plan`` sizes them
    (:func:`~canary.seeding.synth.contacts.mailbox_needs`): the provider's share of the table's
    addresses times the canaries, with room for a busy one (twice the square root more). The
    table's providers nobody can open a mailbox at get none (the seeder lends their share on)."""
    rows = await conn.fetch(
        "SELECT lower(split_part(email, '@', 2)) AS d, count(*) AS n FROM customers WHERE email IS NOT NULL"
        " GROUP BY 1 ORDER BY 2 DESC, 1"
    )
    total = sum(int(r["n"]) for r in rows)
    out: dict[str, int] = {}
    for r in rows:
        need = round(canaries * int(r["n"]) / total) if total else 0
        if r["d"] in obtainable and need:
            out[r["d"]] = need + math.ceil(2 * math.sqrt(need))
    return out


def us_pools(seed: int = 5) -> dict[str, Any]:
    """40 small domains we would own (family / studio / small-business names, none a real customer's
    provider) and 800 owned numbers over 400 exchanges in US area codes, the codes drawn by the
    population they serve (a VoIP provider sells numbers in any of them)."""
    rng = random.Random(seed)
    stems = ("maplecrest", "bluefinch", "harborlight", "tallpine", "quietbrook", "northfork", "redbarn", "copperkettle",
             "stillwater", "ironbridge", "sagebrush", "westwind", "brightleaf", "foxglove", "oakhollow", "silverlake",
             "goldenrod", "cobblestone", "driftwood", "wildflower")
    tails = ("mail.com", ".net", "home.com", "studio.com", "family.net", ".us", "design.com", "works.com", "media.net", "co.com")
    domains: list[str] = []
    while len(domains) < 40:
        d = f"{rng.choice(stems)}{rng.choice(tails)}".replace("..", ".")
        if d not in domains:
            domains.append(d)
    codes = IndependentUS(seed=seed + 2000).all_codes
    blocks: set[str] = set()
    while len(blocks) < 400:
        code, _, _ = codes.pick(rng)
        exchange = rng.randint(200, 999)
        if exchange % 100 != 11 and exchange != 555:
            blocks.add(f"+1{code}{exchange}")
    phones = sorted({f"{b}{rng.randint(0, 9999):04d}" for b in sorted(blocks) for _ in range(2)})
    return {"email_domains": domains, "phone_numbers": phones}


async def us_mailboxes(conn: asyncpg.Connection, canaries: int, seed: int = 7) -> list[dict[str, str]]:
    """Owned mailboxes for ``canaries`` canaries at the table's obtainable free-mail providers (gmail.com,
    yahoo.com, outlook.com...), as many at each as ``plan`` says its share needs
    (:func:`owned_mailbox_sizes`), each forwarding to a canary mail domain. Local parts are made up
    from personas of another US population (:class:`IndependentUS` with another seed) the way US
    users form them (first.last, birth years, nicknames, handles)."""
    rng = random.Random(seed)
    personas = IndependentUS(seed=seed + 1000)

    def local() -> str:
        birth = dt.date(rng.randint(1950, 2004), rng.randint(1, 12), rng.randint(1, 28))
        place = personas.place()
        person = personas.person(birth, place.state)
        return personas.email_local(person, personas.area_code(place, birth, 2024))

    return made_mailboxes(await owned_mailbox_sizes(conn, canaries, OBTAINABLE_US), local)


@dataclass(frozen=True)
class Generator:
    """A stand-in for production data, the datastore locale it is seeded with, and contact pools shaped
    like it (``pools``: owned domains and numbers; ``mailboxes``: owned free-mail mailboxes)."""

    create: Callable[[asyncpg.Connection, int, dt.datetime], Awaitable[None]]  # (conn, customers, the table's present)
    locale: str
    pools: Callable[[], dict[str, Any]]
    mailboxes: Callable[[asyncpg.Connection, int], Awaitable[list[dict[str, str]]]]
    pools_label: str
    bulk: str | None = None  # SQL: (last id, time) of the rows loaded in one bulk transaction (history.replay)


async def _create_shop(conn: asyncpg.Connection, customers: int, now: dt.datetime) -> None:
    await create_shop(conn, customers, locale="ko_KR")  # dated by the server's now() (the anchor does not apply)


async def _create_realistic(conn: asyncpg.Connection, customers: int, now: dt.datetime) -> None:
    await create_realistic_shop(conn, customers, now=now)


async def _create_independent(conn: asyncpg.Connection, customers: int, now: dt.datetime) -> None:
    await create_independent_shop(conn, customers, now=now)


# the launch migration: the rows created at the very first instant
_KOREAN_LAUNCH = ("SELECT max(id), min(created_at) FROM customers"
                  " WHERE created_at = (SELECT min(created_at) FROM customers)")
# the legacy import: rows created before the most common updated_at of the first ids (the import's now())
_US_IMPORT = ("WITH t AS (SELECT updated_at AS at FROM customers WHERE id < (SELECT min(id) + 100 FROM customers)"
              " AND updated_at IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC LIMIT 1)"
              " SELECT max(id), (SELECT at FROM t) FROM customers WHERE created_at < (SELECT at FROM t)")
GENERATORS: dict[str, Generator] = {
    "realistic": Generator(_create_realistic, "ko_KR", korean_pools, korean_mailboxes, "800 owned 010 numbers", _KOREAN_LAUNCH),
    "shop": Generator(_create_shop, "ko_KR", korean_pools, korean_mailboxes, "800 owned 010 numbers"),
    "independent": Generator(_create_independent, "en_US", us_pools, us_mailboxes, "800 owned numbers in US area codes",
                             _US_IMPORT),
}


QUERY = """
SELECT c.id, c.full_name, c.email, c.phone, c.address, c.postal_code,
       extract(epoch FROM c.created_at) AS created, extract(epoch FROM c.updated_at - c.created_at) AS upd_gap,
       extract(epoch FROM c.updated_at) AS updated,
       c.id - lag(c.id) OVER (ORDER BY c.id) AS gap_prev, lead(c.id) OVER (ORDER BY c.id) - c.id AS gap_next,
       extract(epoch FROM c.created_at - lag(c.created_at) OVER (ORDER BY c.id)) AS ts_prev,
       (SELECT count(*) FROM orders o WHERE o.customer_id = c.id) AS n_orders,
       (SELECT coalesce(avg(total), 0) FROM orders o WHERE o.customer_id = c.id) AS avg_total,
       (SELECT coalesce(min(extract(epoch FROM o.ordered_at - c.created_at)), -1) FROM orders o WHERE o.customer_id = c.id) AS first_order
FROM customers c ORDER BY c.id
"""


_STATE_AT_END = re.compile(r"(?:,\s*|\s)([A-Za-z]{2})\.?(?:\s+\d{5}(?:-\d{4})?)?\s*$")


def region_key(address: str) -> str:
    """The address's top-level region as written: a US state code at its end (``..., Springfield, IL
    62704`` -> ``IL``), else its first word (a Korean sido)."""
    m = _STATE_AT_END.search(address)
    if m:
        return m.group(1).upper()
    words = address.split()
    return words[0] if words else ""


def locality_key(address: str) -> str:
    """The address's last two comma-separated parts without digits, lower case (``springfield|il``):
    city and state in a US address, the detail in a Korean one."""
    parts = [re.sub(r"[\d-]+", "", p).strip().lower() for p in address.split(",")]
    return "|".join(parts[-2:]) if len(parts) > 1 else ""


def area_of(digits: str) -> str:
    """The area / trunk code of a phone number's digits (US: the three after an optional 1; else the
    first three)."""
    if len(digits) == 11 and digits.startswith("1"):
        return digits[1:4]
    return digits[:3]


def name_parts(full: str) -> tuple[str, str]:
    """(first, last) of a Latin-script name, lower-case letters only ('' for other scripts)."""
    words = [re.sub(r"[^a-z]", "", w.lower()) for w in full.split() if w.isascii()]
    words = [w for w in words if len(w) > 1 and w not in ("jr", "sr", "ii", "iii")]
    return (words[0], words[-1]) if len(words) >= 2 else ("", "")


def features(rows: Sequence[asyncpg.Record]) -> tuple[np.ndarray, list[str]]:
    """Per-customer features, frequency-encoded within the table (an insider sees the whole table)."""
    def freq(values: Sequence[object]) -> list[float]:
        counts = Counter(values)
        return [counts[v] / len(values) for v in values]

    email = [r["email"] or "" for r in rows]
    local = [e.rpartition("@")[0] for e in email]
    domain = [e.rpartition("@")[2].lower() for e in email]
    phone = [r["phone"] or "" for r in rows]
    digits = [re.sub(r"\D", "", p) for p in phone]
    name = [r["full_name"] or "" for r in rows]
    addr = [r["address"] or "" for r in rows]
    postal = [r["postal_code"] or "" for r in rows]
    tokens = [re.sub(r"\d", "9", a).split() for a in addr]
    token_counts = Counter(t for ts in tokens for t in set(ts))
    romanised = {rom for _, roms, _ in SURNAMES for rom in roms if len(rom) > 1}
    region = [region_key(a) for a in addr]
    locality = [locality_key(a) for a in addr]
    area = [area_of(d) for d in digits]
    parts = [name_parts(n) for n in name]
    digit_tail = [re.search(r"\d*$", x).group(0) for x in local]  # type: ignore[union-attr]
    created = [float(r["created"] or 0) for r in rows]
    updated = [r["updated"] for r in rows]
    when = [dt.datetime.fromtimestamp(c, dt.UTC) for c in created]
    cols: dict[str, list[float]] = {
        "name_len": [len(n) for n in name],
        "name_shape_freq": freq([shape(n) for n in name]),
        "name_freq": freq(name),
        "surname_freq": freq([n.split()[-1] if n.isascii() else n[:1] for n in name]),
        "given_freq": freq([n.split()[0] if n.isascii() else n[1:].strip() for n in name]),
        "email_local_len": [len(x) for x in local],
        "email_local_shape_freq": freq([local_shape(x) for x in local]),
        "email_local_digits": [sum(ch.isdigit() for ch in x) for x in local],
        "email_local_freq": freq([x.lower() for x in local]),
        "email_has_surname": [float(any(w in romanised for w in re.findall(r"[a-z]+", x.lower()))
                                    or any(x.lower().startswith(s) or x.lower().endswith(s) for s in ("kim", "lee", "park", "choi")))
                              for x in local],
        "email_has_name_part": [float(bool(f) and (f in x.lower() or la in x.lower() or x.lower().startswith(f[0] + la)))
                                    for x, (f, la) in zip(local, parts, strict=True)],
        "email_digit_tail_freq": freq(digit_tail),
        "email_domain_freq": freq(domain),
        "email_domain_region_pair_freq": freq(list(zip(domain, region, strict=True))),
        "email_tld_freq": freq([d.rsplit(".", 2)[-1] if d.endswith(".kr") else d.rsplit(".", 1)[-1] for d in domain]),
        "phone_null": [float(not p) for p in phone],
        "phone_shape_freq": freq([shape(p) for p in phone]),
        "phone_prefix_freq": freq([d[:3] for d in digits]),
        "phone_block_freq": freq([d[:7] for d in digits]),
        "phone_norm_block_freq": freq([d[-10:-4] for d in digits]),
        "phone_freq": freq(digits),
        "phone_area_region_pair_freq": freq(list(zip(area, region, strict=True))),
        "addr_null": [float(not a) for a in addr],
        "addr_len": [len(a) for a in addr],
        "addr_tokens": [len(a.split()) for a in addr],
        "addr_freq": freq(addr),
        "addr_shape_freq": freq([re.sub(r"\d+", "9", a) for a in addr]),
        "addr_region_freq": freq([" ".join(t[:2]) for t in tokens]),
        "addr_road_freq": freq([t[2] if len(t) > 2 else "" for t in tokens]),
        "addr_rarest_token": [float(min((token_counts[t] for t in ts), default=0)) for ts in tokens],
        "addr_postal_pair_freq": freq([f"{t[0] if t else ''}|{p[:2]}" for t, p in zip(tokens, postal)]),
        "addr_locality_freq": freq(locality),
        "addr_region_postal_pair_freq": freq([(g, p[:3]) for g, p in zip(region, postal, strict=True)]),
        "addr_locality_postal_pair_freq": freq([(c, p[:3]) for c, p in zip(locality, postal, strict=True)]),
        "postal_len": [len(p) for p in postal],
        "postal_freq": freq(postal),
        "created": created,
        "created_hour": [float(w.hour) for w in when],
        "created_weekday": [float(w.weekday()) for w in when],
        "created_subsecond": [float(c % 1 != 0) for c in created],
        "upd_null": [float(r["upd_gap"] is None) for r in rows],
        "upd_gap": [float(r["upd_gap"] if r["upd_gap"] is not None else -1) for r in rows],
        "upd_hour_freq": freq([str(int(u // 3600)) if u is not None else "" for u in updated]),
        "gap_prev": [float(r["gap_prev"] or 0) for r in rows],
        "gap_next": [float(r["gap_next"] or 0) for r in rows],
        "ts_vs_prev": [float(r["ts_prev"] or 0) for r in rows],
        "n_orders": [float(r["n_orders"]) for r in rows],
        "avg_total": [float(r["avg_total"]) for r in rows],
        "first_order_delay": [float(r["first_order"]) for r in rows],
    }
    names = list(cols)
    return np.array([cols[n] for n in names], dtype=float).T, names


ORDERS = "SELECT id, customer_id, extract(epoch FROM ordered_at) AS t FROM orders ORDER BY id"


def label_free(rows: Sequence[asyncpg.Record], orders: Sequence[asyncpg.Record]) -> dict[str, np.ndarray]:
    """Rules a thief applies without labels or a classifier, one or two columns each; per customer,
    1 when the rule flags it. A rule that flags canaries more often than real rows is a tell."""
    n = len(rows)
    ts = [r["created"] for r in rows]  # exact (numeric epoch)
    ids = [int(r["id"]) for r in rows]
    derived = np.zeros(n)
    out_of_order = np.zeros(n)
    for i in range(1, n - 1):
        a, b, c = ts[i - 1], ts[i], ts[i + 1]
        if a is None or b is None or c is None:
            continue
        if b < a or b > c:
            out_of_order[i] = 1
        if c != a:  # on the straight line between the id-neighbours' times (to the microsecond)
            k = (ids[i] - ids[i - 1]) / (ids[i + 1] - ids[i - 1])
            derived[i] = float(abs(float(b - a) - float(c - a) * k) < 1e-6)
    frac = [t is not None and t % 1 != 0 for t in ts]
    share = sum(frac) / max(n, 1)
    subsecond = np.array([float(f if share < 0.5 else not f) for f in frac])  # the precision most rows lack
    # orders: an order whose time is out of order with the orders next to it by id
    inverted: set[int] = set()
    for j in range(1, len(orders) - 1):
        a, b, c = orders[j - 1]["t"], orders[j]["t"], orders[j + 1]["t"]
        if b < a and b < c or b > a and b > c:  # a local extremum: real order ids follow time
            inverted.add(int(orders[j]["customer_id"]))
    order_inv = np.array([float(i in inverted) for i in ids])
    gaps = [r["upd_gap"] for r in rows]
    gap_counts = Counter(g for g in gaps if g is not None and g != 0)
    shared_gap = np.array([float(g is not None and g != 0 and gap_counts[g] > 1) for g in gaps])
    # cross-column pairs held by no other row: an area code nobody else in the state has, a ZIP3 no one
    # else in the city has (real rows have some: people move and keep their numbers)
    addr = [r["address"] or "" for r in rows]
    digits = [re.sub(r"\D", "", r["phone"] or "") for r in rows]
    area_pairs = Counter((region_key(a), area_of(d)) for a, d in zip(addr, digits, strict=True) if a and d)
    lonely_area = np.array([float(bool(a and d) and area_pairs[(region_key(a), area_of(d))] == 1)
                            for a, d in zip(addr, digits, strict=True)])
    postal = [r["postal_code"] or "" for r in rows]
    zip_pairs = Counter((locality_key(a), p[:3]) for a, p in zip(addr, postal, strict=True) if a and p)
    lonely_zip = np.array([float(bool(a and p) and zip_pairs[(locality_key(a), p[:3])] == 1)
                           for a, p in zip(addr, postal, strict=True)])
    # an address written in two cases at once ("153 county BLVD, Los ANGELES"): a word of 3+ capitals
    # beside a word of 3+ lower-case letters
    mixed = np.array([float(bool(re.search(r"\b[A-Z]{3,}\b", a)) and bool(re.search(r"\b[a-z]{3,}", a))) for a in addr])
    # a stub of a word in the address: a short run of letters (3 at most) no other row writes ("Wr", "Jle",
    # "Dd"), what a new word cut from two others' beginning and ending looks like; a real row's lone words
    # are whole ones (a surname a street is named after, a town)
    words = [[w.rstrip(",.;").casefold() for w in a.split()] for a in addr]
    word_rows = Counter(w for ws in words for w in set(ws))
    stub = np.array([float(any(w.isalpha() and len(w) <= 3 and word_rows[w] == 1 for w in ws)) for ws in words])
    # a lone word where few words ever stand: a word no other row writes, with fewer than 10 distinct
    # words of the table after its left neighbour or before its right one ("Santon Diego", "Glenwood
    # Avence", "Uniant 1850"): a misspelt street type, unit word or half of a two-word town; a real
    # row's lone words are streets and towns, slots many words share
    masked = [[re.sub(r"\d", "9", w).casefold() for w in a.split()] for a in addr]
    after: defaultdict[str, set[str]] = defaultdict(set)
    before: defaultdict[str, set[str]] = defaultdict(set)
    for ws in masked:
        for j, w in enumerate(ws):
            if "9" not in w:
                after[ws[j - 1] if j else "^"].add(w)
                before[ws[j + 1] if j + 1 < len(ws) else "$"].add(w)
    closed = np.array([float(any(
        w.rstrip(",.;").isalpha() and word_rows[w.rstrip(",.;")] == 1
        and min(len(after[ws[j - 1] if j else "^"]), len(before[ws[j + 1] if j + 1 < len(ws) else "$"])) < 10
        for j, w in enumerate(ws))) for ws in masked])
    # a street line that ends in a word few rows end theirs with (its unit's number and word aside): a
    # street without a type, a town's or a neighbourhood's name where the type goes ("247 6th Fischer
    # #411", "20 VIEW WALNUTDALE, MANSFIELD, MN"); a real row's are a handful of types, few misspelt
    line_ends = [_line_end(a) for a in addr]
    end_rows = Counter(e for e in line_ends if e)
    untyped = np.array([float(bool(e) and end_rows[e] <= 2) for e in line_ends])
    # a household without a family name: an address exactly 2-3 rows write, none of the others with the
    # row's surname (real rows at one address are mostly a family; two strangers are a shared flat)
    names = [r["full_name"] or "" for r in rows]
    surnames = [(full.split()[-1] if full.isascii() else full[:1]) if full.strip() else "" for full in names]
    homes: defaultdict[str, list[int]] = defaultdict(list)
    for i, a in enumerate(addr):
        if a:
            homes[a].append(i)
    strangers = np.zeros(n)
    for home in homes.values():
        if 2 <= len(home) <= 3:
            for i in home:
                strangers[i] = float(not any(surnames[j] == surnames[i] for j in home if j != i))
    upd_frac = [r["updated"] is not None and r["updated"] % 1 != 0 for r in rows]
    upd_share = sum(upd_frac) / max(n, 1)
    upd_precision = np.array([float(f if upd_share < 0.5 else not f) for f in upd_frac])
    return {"created_on_the_line": derived, "created_out_of_id_order": out_of_order,
            "created_precision_rare": subsecond, "order_time_against_id_order": order_inv,
            "update_gap_shared_exactly": shared_gap, "updated_precision_rare": upd_precision,
            "area_code_alone_in_region": lonely_area, "postal3_alone_in_locality": lonely_zip,
            "address_in_two_cases": mixed, "address_stub_word": stub,
            "closed_slot_word": closed, "street_line_end_rare": untyped, "address_shared_without_surname": strangers}


_UNIT_AT_END = re.compile(r"\s+(?:#\s*|(?:apt|unit|ste|suite|fl|rm|no)\.?\s+#?)[\w-]*\d[\w-]*$", re.I)


def _line_end(address: str) -> str:
    """The last word of an address's street line (its first comma field, a unit after it aside), case
    folded and without trailing dots; "" for an address without commas or whose line ends in a number
    (a highway's, a PO box's) or a parenthesised part (a Korean address's dong)."""
    if "," not in address:
        return ""
    line = _UNIT_AT_END.sub("", address.split(",")[0].strip())
    words = line.split()
    last = words[-1].rstrip(".").casefold() if len(words) > 1 else ""
    return "" if any(ch.isdigit() for ch in last) or last.startswith("(") else last


def auc(x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """The classifier's ROC AUC, stratified 5-fold (with ``groups``, each group's rows in one fold), and
    its out-of-fold scores."""
    scores = np.zeros(len(y))
    folds = (StratifiedKFold(n_splits=5, shuffle=True, random_state=0) if groups is None
             else StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0))
    for train, test in folds.split(x, y, groups):
        clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=0)
        clf.fit(x[train], y[train])
        scores[test] = clf.predict_proba(x[test])[:, 1]
    return float(roc_auc_score(y, scores)), scores


def grouped_auc(x: np.ndarray, y: np.ndarray, addresses: Sequence[str | None]) -> float:
    """:func:`auc` with the rows of one address (case folded; a row without one alone) kept in one
    fold. Two canaries of one household have the same address features; split across folds, the
    classifier recognises the second by the first's label, which measures what a thief who already
    knows one canary learns about its housemates, not how canaries differ from real rows (real
    housemates are recognised alike)."""
    groups = np.unique([(a or f"\x00{i}").casefold() for i, a in enumerate(addresses)], return_inverse=True)[1]
    return auc(x, y, groups)[0]


def single_feature_auc(x: np.ndarray, y: np.ndarray, names: list[str]) -> list[tuple[str, float]]:
    """How well each feature alone separates canaries (AUC folded to >= 0.5), most telling first."""
    out = []
    for i, n in enumerate(names):
        a = float(roc_auc_score(y, x[:, i])) if len(set(x[:, i])) > 1 else 0.5
        out.append((n, max(a, 1 - a)))
    return sorted(out, key=lambda kv: -kv[1])


async def admin_each(server: PostgresServer, sql: str, names: Sequence[str]) -> None:
    """Run ``sql`` (with ``{name}``) once per name as the superuser."""
    admin = await asyncpg.connect(server.dsn())
    try:
        for name in names:
            await admin.execute(sql.format(name=name))
    finally:
        await admin.close()


@dataclass(frozen=True)
class Outcome:
    auc: float
    auc_traces: float | None  # with the physical-trace features (``--traces``)
    grouped: float  # with the rows of one address (a household) in one fold (:func:`grouped_auc`)
    control: float  # the same classifier on as many real rows labelled canaries: the noise floor


def control_auc(x: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """The AUC of the same classifier when as many *real* rows as there are canaries are labelled
    canaries (the canaries left out): what a perfect seeder would score, the measure's noise floor."""
    real = np.flatnonzero(y == 0)
    pick = np.random.default_rng(seed).choice(real, size=int(y.sum()), replace=False)
    fake = np.zeros(len(real), dtype=int)
    fake[np.searchsorted(real, pick)] = 1
    score, _ = auc(x[real], fake)
    return score


def print_rules(rules: dict[str, np.ndarray], y: np.ndarray) -> None:
    for name, flags in rules.items():
        c, r = flags[y == 1].mean(), flags[y == 0].mean()
        verdict = "TELL" if c > max(2 * r, r + 0.02) else "ok"
        print(f"    {name:<30} canaries {c:6.1%}  real {r:6.1%}  {verdict}")


@dataclass(frozen=True)
class Mode:
    """How the canaries are written: ``backdated`` (all at once after the history, ``traces``: after a
    replayed one) or ``trickle`` (arriving during the replayed history over the window holding the
    last ``window`` share of sign-ups, the control store on ``control``, its own cluster: transaction
    ids are cluster-wide and production's control store is not the datastore's cluster)."""

    name: str = "backdated"
    traces: bool = False
    window: float = 0.2
    control: PostgresServer | None = None


async def run(
    server: PostgresServer, data: str, customers: int, rate: float, pools: dict[str, Any] | None, label: str,
    top_n: int = 5, mode: Mode = Mode(), seed: int | None = None, anchor: dt.datetime = ANCHOR,
) -> Outcome:
    gen = GENERATORS[data]
    trickle = mode.name == "trickle"
    traces = mode.traces or trickle
    db = f"dist_{int(time.time() * 1000) % 10**9}"
    ctl_server = mode.control if trickle and mode.control is not None else server
    await admin_each(server, 'CREATE DATABASE "{name}"', (db,))
    await admin_each(ctl_server, 'CREATE DATABASE "{name}"', (db + "_ctl",))
    conn = await asyncpg.connect(server.dsn(db))
    t0 = time.perf_counter()
    await gen.create(conn, customers, anchor)
    history = ""
    upto, at = await bulk_hint(conn, gen.bulk)
    if traces and not trickle:  # write the table the way production wrote it (its physical traces are the baseline)
        stats = await replay(conn, bulk_upto=upto, bulk_at=at)
        history = (f", history replayed: {stats['transactions']:,.0f} transactions ({stats['fresh']:,.0f} on a new connection) "
                   f"in {stats['seconds']:.1f}s")
    built = time.perf_counter() - t0
    real = await conn.fetchval("SELECT count(*) FROM customers")
    window = await trickle_window(conn, mode.window, rate) if trickle else None
    count = window.canaries if window is not None else max(1, round(real * rate))
    if pools is not None and pools.get("mailboxes") == "auto":
        pools = {**pools, "mailboxes": await gen.mailboxes(conn, count)}
    table: dict[str, Any] = {"table": "public.customers", "count": count}
    if window is not None:
        table |= {"mode": "trickle", "trickle_over": window.over}
    cfg = from_mapping({
        "control": {"dsn": ctl_server.dsn(db + "_ctl")},
        "seeding": pools or {},
        "datastores": [{"name": "shop", "dsn": server.dsn(db), "locale": gen.locale, "tables": [table]}],
    })
    store = ControlStore(cfg)
    await store.open()
    warnings: list[str] = []
    try:
        registry = Registry(store.pool, Keyring(generate_key()))
        t1 = time.perf_counter()
        if window is not None:
            clock = SimClock(window.start)
            seeder = PostgresSeeder.from_config(cfg, "shop", registry, clock=clock, seed=seed)
            async with Replay(conn, bulk_upto=upto, bulk_at=at, renumber=True) as hist:
                trickled = await trickle_through(hist, seeder, clock, window)
            stats = hist.stats()
            warnings = list(trickled.warnings)
            history = (f", history replayed with the canaries arriving: {stats['transactions']:,.0f} transactions "
                       f"({stats['fresh']:,.0f} on a new connection) in "
                       f"{stats['seconds'] - trickled.seconds:.1f}s")
            seeding = (f"trickle: {trickled.signups} sign-ups, {trickled.updates} updates, {trickled.children} orders in "
                       f"{trickled.calls} runs, {trickled.seconds:.1f}s; {trickled.left} slots due after the end not written")
        else:
            result = await PostgresSeeder.from_config(cfg, "shop", registry, seed=seed).apply()
            warnings = list(result.warnings)
            seeding = f"seeding {time.perf_counter() - t1:.1f}s"
        canary_ids = {int(r.location["pk"]) for r in await registry.active("shop")}
    finally:
        await store.close()
    rows = await conn.fetch(QUERY)
    orders = await conn.fetch(ORDERS)
    trace_rows, seq_last = await fetch_traces(conn) if traces else ([], None)
    await conn.close()
    await admin_each(server, 'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', (db,))
    await admin_each(ctl_server, 'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', (db + "_ctl",))
    x, names = features(rows)
    y = np.array([1 if r["id"] in canary_ids else 0 for r in rows])
    # the rows measured: all, or (trickle) those created in the window; features are the whole table's
    since = window.start.timestamp() if window is not None else -np.inf
    created = np.array([float(r["created"]) if r["created"] is not None else -np.inf for r in rows])
    keep = created >= since
    rules = {k: v[keep] for k, v in label_free(rows, orders).items()}
    x, y = x[keep], y[keep]
    score, _ = auc(x, y)
    grouped = grouped_auc(x, y, [r["address"] for r, k in zip(rows, keep, strict=True) if k])
    control = control_auc(x, y, seed or 0)
    top = single_feature_auc(x, y, names)[:top_n]
    if window is not None:
        print(f"{data} data ({gen.locale}), trickle, {label}: {int((y == 0).sum()):,} real + {int(y.sum()):,} canaries created in "
              f"the window {window.start:%Y-%m-%d %H:%M} .. {window.end:%Y-%m-%d %H:%M} UTC ({window.over / 86400:.0f} days, "
              f"the last {mode.window:.0%} of {real:,} real sign-ups) (built in {built:.1f}s{history}; {seeding})")
        younger = int((created[np.isin([r["id"] for r in rows], list(canary_ids))] >= since).sum())
        print(f"  deployment date: {younger} of {len(canary_ids)} canaries were created after the window start, as every trickle "
              f"canary is (no write pattern hides it); the window holds {int((y == 0).sum()) / real:.1%} of all real rows, "
              "so who knows or guesses when canary was deployed looks at those only (the measure below does too)")
    else:
        print(f"{data} data ({gen.locale}), {label}: {real:,} real + {int(y.sum()):,} canaries (built in {built:.1f}s{history}; "
              f"{seeding})")
    for w in warnings:
        if "configured" not in w:
            print(f"  seeder warning: {w}")
    print(f"  ROC AUC (5-fold, gradient boosting, {x.shape[1]} features): {score:.3f}   target <= 0.55   "
          f"(control, {int(y.sum())} real rows labelled canaries: {control:.3f}); households in one fold: {grouped:.3f}")
    print("  most telling single features (AUC alone): " + ", ".join(f"{n} {d:.3f}" for n, d in top))
    print("  label-free rules, share flagged (canaries vs real rows; a tell when canaries are flagged more):")
    print_rules(rules, y)
    score_t = None
    if traces:
        if [r["id"] for r in trace_rows] != [r["id"] for r in rows]:
            raise RuntimeError("trace rows and feature rows differ")
        tx, tnames = trace_features(trace_rows, seq_last)
        xt, all_names = np.hstack([x, tx[keep]]), names + tnames
        score_t, _ = auc(xt, y)
        alone, _ = auc(tx[keep], y)
        top_t = single_feature_auc(xt, y, all_names)[:top_n]
        print(f"  with physical traces ({tx.shape[1]} more features: xmin, xmax, ctid block, key and time neighbours, "
              f"sequence): ROC AUC {score_t:.3f} (the traces alone: {alone:.3f})")
        print("  most telling single features with traces: " + ", ".join(f"{n} {d:.3f}" for n, d in top_t))
        print("  most telling trace features: " + ", ".join(f"{n} {d:.3f}" for n, d in single_feature_auc(tx[keep], y, tnames)[:top_n]))
        print("  label-free trace rules:")
        print_rules({k: v[keep] for k, v in trace_rules(trace_rows).items()}, y)
    return Outcome(score, score_t, grouped, control)


POOLS = ("none", "domains", "mailboxes")


async def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=50_000)
    ap.add_argument("--rate", type=float, default=0.01)
    ap.add_argument("--data", default=",".join(GENERATORS), help=f"comma-separated: {', '.join(GENERATORS)}")
    ap.add_argument("--pools", default=",".join(POOLS), help=f"comma-separated: {', '.join(POOLS)}")
    ap.add_argument("--top", type=int, default=5, help="single features to print per run")
    ap.add_argument("--traces", action="store_true",
                    help="replay each table's write history first and add physical-trace features (xmin, ctid...)")
    ap.add_argument("--mode", choices=("backdated", "trickle"), default="backdated",
                    help="backdated: all canaries at once after the history; trickle: arriving during it (implies --traces)")
    ap.add_argument("--window", type=float, default=0.2,
                    help="trickle: the window is the last WINDOW share of the table's sign-ups, with RATE canaries per real one")
    ap.add_argument("--seed", type=int, default=None,
                    help="the seeder's random seed (default: a fresh one per run); with --repeat, runs use SEED, SEED+1, ...")
    ap.add_argument("--anchor", type=dt.date.fromisoformat, default=ANCHOR.date(),
                    help="the tables' present (UTC midnight; their histories end then): fixed, so that --seed repeats a run")
    ap.add_argument("--repeat", type=int, default=1,
                    help="seed each table REPEAT times (the data stays the same) and report mean +- sd of the AUCs: the "
                         "seeder's own randomness moves a single AUC by several hundredths")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    wanted = [d for d in args.data.split(",") if d]
    unknown = set(wanted) - set(GENERATORS)
    if unknown:
        ap.error(f"unknown data generator(s): {', '.join(sorted(unknown))}")
    kinds = [k for k in args.pools.split(",") if k]
    if set(kinds) - set(POOLS):
        ap.error(f"unknown pools: {', '.join(sorted(set(kinds) - set(POOLS)))}")
    if not 0 < args.window <= 1:
        ap.error("--window is a share of the sign-ups, in (0, 1]")
    tmp = Path(tempfile.mkdtemp(prefix="canary-dist-"))
    # no autovacuum: it takes transaction ids (ANALYZE of the catalogs the replay churns) at moments that
    # depend on timing, which moved the rows' xmin from run to run; the replay vacuums the tables itself
    server = PostgresServer(tmp / "data", settings={"autovacuum": False})
    control = PostgresServer(tmp / "control") if args.mode == "trickle" else None
    await asyncio.to_thread(server.start)
    if control is not None:
        configure("error", "console")  # not a line per sign-up
        await asyncio.to_thread(control.start)
    mode = Mode(args.mode, args.traces or args.mode == "trickle", args.window, control)
    results: list[tuple[str, dict[str, list[Outcome]]]] = []
    anchor = dt.datetime.combine(args.anchor, dt.time(), dt.UTC)
    try:
        for data in wanted:
            gen = GENERATORS[data]
            common = (args.customers, args.rate)
            outcomes: dict[str, list[Outcome]] = {}
            for i in range(args.repeat):
                seed = None if args.seed is None else args.seed + i
                tag = f" (run {i + 1} of {args.repeat}, seed {seed if seed is not None else 'fresh'})" if args.repeat > 1 else ""
                if "none" in kinds:
                    outcomes.setdefault("none", []).append(
                        await run(server, data, *common, None, "without contact pools" + tag, args.top, mode, seed, anchor))
                if "domains" in kinds:
                    outcomes.setdefault("domains", []).append(await run(
                        server, data, *common, gen.pools(), f"with 40 owned domains + {gen.pools_label}" + tag, args.top, mode, seed, anchor))
                if "mailboxes" in kinds:
                    outcomes.setdefault("mailboxes", []).append(await run(
                        server, data, *common, {**gen.pools(), "mailboxes": "auto"},
                        f"with owned mailboxes at the table's free-mail providers + {gen.pools_label}" + tag, args.top, mode, seed, anchor))
            results.append((data, outcomes))
    finally:
        for s in (server, control):
            if s is not None:
                await asyncio.to_thread(s.destroy)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nROC AUC ({args.mode}{', rows of the trickle window' if args.mode == 'trickle' else ''}; 0.5 = indistinguishable, "
          "target <= 0.55)" + ("; with physical traces after the slash" if mode.traces else ""))

    def spread(values: list[float]) -> str:
        if len(values) == 1:
            return f"{values[0]:.3f}"
        return f"{statistics.mean(values):.3f}±{statistics.stdev(values):.3f}"

    def cell(runs: list[Outcome] | None) -> str:
        if not runs:
            return "-"
        traces = [o.auc_traces for o in runs if o.auc_traces is not None]
        return spread([o.auc for o in runs]) + (f" / {spread(traces)}" if traces else "")

    width = 13 if args.repeat == 1 else 27
    if args.repeat > 1:
        print(f"  (mean ± sd over {args.repeat} seedings of the same data)")
    print(f"  {'data':<12} " + " ".join(f"{h:>{width}}" for h in ("no pools", "domains", "mailboxes")))
    for data, outcomes in results:
        print(f"  {data:<12} " + " ".join(f"{cell(outcomes.get(k)):>{width}}" for k in POOLS))
    print("  the same, households in one fold (the rows of an address never split between training and test):")
    for data, outcomes in results:
        print(f"  {data:<12} " + " ".join(f"{spread([o.grouped for o in outcomes[k]]) if outcomes.get(k) else '-':>{width}}" for k in POOLS))
    controls = [o.control for _, outcomes in results for runs in outcomes.values() for o in runs]
    print(f"  control (real rows labelled canaries, the measure's noise floor): {spread(controls)}")


if __name__ == "__main__":
    if os.environ.get("PYTHONHASHSEED") is None:  # a seed repeats a run only if set iteration order does too
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    asyncio.run(main())
