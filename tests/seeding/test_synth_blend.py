"""Canaries that blend in: composed addresses, k-anonymous digit prefixes, even use of contact pools,
and the plan's warning when a pool is too small to blend into the table."""

from __future__ import annotations

import random
import re
from collections import Counter

import asyncpg
from seeder_helpers import customers_info
from testkit import MakeConfig

from canary.crypto import Keyring
from canary.seeding.postgres import PostgresSeeder
from canary.seeding.synth.contacts import ContactAllocator
from canary.seeding.synth.frequency import FrequencyMatch, Rarest, ValueCounts, count_bin, same, surname_key
from canary.seeding.synth.places import Splicer
from canary.seeding.synth.profile import profile
from canary.seeding.synth.shapes import MIN_SHARED, draw_digits, shared_digit_prefixes
from canary.seeding.synth.synthesizer import RowContext, Synthesizer
from canary.store import ControlStore
from canary.store.registry import Registry

REGIONS = {"서울특별시 강남구": "06", "부산광역시 해운대구": "48", "경기도 성남시 분당구": "13"}
ROADS = ("테헤란로", "봉은사로", "센텀로", "판교역로", "수내로", "해운대로", "선릉로", "정자일로")






def _addresses(n: int, seed: int = 4) -> list[dict[str, str | None]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        region = rng.choice(list(REGIONS))
        road = rng.choice(ROADS)
        address = f"{region} {road} {rng.randint(1, 300)}, {rng.randint(101, 112)}동 {rng.randint(1, 25)}0{rng.randint(1, 4)}호"
        out.append({"id": str(i), "address": address, "postal_code": f"{REGIONS[region]}{rng.randint(0, 999):03d}"})
    return out


def test_addresses_are_composed_from_shared_parts_consistently() -> None:
    """Composed addresses follow the table's grammar (region, road, number, apartment dong/ho), keep
    the postcode consistent with the region (from rows of the same region), and never copy a sampled
    row's address."""
    sample = _addresses(600)
    info = customers_info("address", "postal_code")
    prof = profile(info, sample)
    assert prof.places is not None and prof.places.columns == ("address", "postal_code") and not prof.places.reverse
    synth = Synthesizer(info, prof, locale="ko_KR", contacts=ContactAllocator(), seed=9)
    real = {r["address"] for r in sample}
    rows = [synth.row(RowContext(pk=str(10_000 + i))).values for i in range(200)]
    shape = re.compile(r"(?P<region>\S+ \S+( 분당구)?) (?P<road>\S+로) \d+, 1\d\d동 \d+호")
    for v in rows:
        m = shape.fullmatch(v["address"] or "")
        assert m is not None, v["address"]
        assert m["region"] in REGIONS and m["road"] in ROADS
        assert (v["postal_code"] or "")[:2] == REGIONS[m["region"]]
    assert sum(v["address"] in real for v in rows) == 0


def test_fine_first_addresses_are_walked_from_the_coarse_end() -> None:
    """Addresses written house-number first ("12 Oak St Springfield") are composed from their end, so
    the city (shared by many) is kept and the rare parts vary."""
    rng = random.Random(3)
    sample = [{"id": str(i), "street": f"{rng.randint(1, 999)} {rng.choice(['Oak', 'Elm', 'Pine', 'Main', 'Lake'])} "
               f"{rng.choice(['St', 'Ave'])} {rng.choice(['Springfield', 'Riverside'])}"} for i in range(300)]
    splicer = Splicer.of(customers_info("street"), sample)
    assert splicer is not None and splicer.reverse
    made = [splicer.compose(random.Random(i)) for i in range(50)]
    assert all(m and re.fullmatch(r"\d+ (Oak|Elm|Pine|Main|Lake) (St|Ave) (Springfield|Riverside)", m["street"] or "") for m in made)


def test_a_new_word_is_never_the_region() -> None:
    """A location freshened with a word no sampled row has gets a new street or building word, never
    a new region (the address's coarse end: its first word, or a state at the end of a fine-first
    one): real rows' regions are a few that everybody shares."""
    rng = random.Random(4)
    syllables = "가나다라마바사아자차카타파하서부경"
    sample = [{"id": str(i), "address": f"{region} {rng.choice(syllables)}{rng.choice(syllables)}{rng.choice(('로', '길', '시', '도'))} "
               f"{rng.randint(1, 300)}"} for i, region in enumerate(rng.choice(list(REGIONS)) for _ in range(600))]
    splicer = Splicer.of(customers_info("address"), sample)
    assert splicer is not None and not splicer.reverse
    regions = {(r["address"] or "").split(" ")[0] for r in sample}
    made = [m for m in (splicer.freshen(splicer.compose(rng) or {}, rng, word=True) for _ in range(300)) if m]
    assert len(made) >= 60  # (a new word's parts are half a word each: of two-syllable words, most draws make none)
    assert all((m["address"] or "").split(" ")[0] in regions for m in made)
    rng = random.Random(6)
    # 20 of 30 street names: the others are words a new one may be (every run of its letters one 3 words have)
    names = rng.sample([a + b for a in ("Pine", "Stone", "Lone", "Dune", "Crane", "Shine")
                        for b in ("wood", "field", "brook", "dale", "view")], 20)
    # and a street in eight whose name only its row has: a new word goes only where real rows have such words
    tail = [a + b + c for a in ("Pine", "Stone", "Lone", "Dune", "Crane", "Shine") for b in ("wood", "field", "brook", "dale", "view")
            for c in ("s", "er", "ley")]
    us = [{"id": str(i), "street": f"{rng.randint(1, 999)} {rng.choice(names) if i % 8 else tail[i // 8]} "
           f"{rng.choice(['St', 'Ave', 'Rd'])}, {rng.choice(['Springfield', 'Riverside', 'Fairview'])}, {rng.choice(['IL', 'IN', 'IA'])}"}
          for i in range(600)]
    splicer = Splicer.of(customers_info("street"), us)
    assert splicer is not None and splicer.reverse
    made = [m for m in (splicer.freshen(splicer.compose(rng) or {}, rng, word=True) for _ in range(300)) if m]
    assert len(made) >= 10  # (the 10 names the sample lacks are all a new word can be)
    assert all((m["street"] or "").split(" ")[-1] in {"IL", "IN", "IA"} for m in made)


US_TOWNS = {("Springfield", "IL"): "627", ("Peoria", "IL"): "616", ("Walnut Creek", "CA"): "945", ("Fresno", "CA"): "937",
            ("Salem", "OR"): "973", ("Ashland", "OR"): "975", ("Mount Vernon", "WA"): "982", ("Tacoma", "WA"): "984"}


def test_cities_stay_whole_and_postcodes_stay_with_their_city() -> None:
    """Addresses written street line first with comma-separated city and state, in several spellings
    ("Springfield, IL", "SPRINGFIELD IL", "Springfield, IL 62704"): a composed address names a city the
    sample has in that state, whole (its words never spliced with another town's, even for a town
    fewer than k sampled rows hold), and its postcode comes from that city's rows, not the state's."""
    rng = random.Random(8)
    towns = list(US_TOWNS)
    sample = []
    for i in range(900):
        city, st = towns[0] if i % 300 == 7 else rng.choice(towns[1:])  # Springfield: 3 rows only
        zipc = f"{US_TOWNS[(city, st)]}{rng.randint(0, 99):02d}"
        line = f"{rng.randint(1, 9999)} {rng.choice(['Oak', 'Elm', 'Pine', 'Main', 'Lake', 'Cedar'])} {rng.choice(['St', 'Ave', 'Dr'])}"
        text = rng.choice((f"{line}, {city}, {st}", f"{line}, {city} {st}", f"{line}, {city}, {st} {zipc}"))
        sample.append({"id": str(i), "address": text.upper() if i % 9 == 0 else text, "postal_code": zipc})
    info = customers_info("address", "postal_code")
    splicer = Splicer.of(info, sample)
    assert splicer is not None and splicer.reverse
    town = re.compile(r".*, (?P<city>[A-Za-z ]+?),? (?P<st>[A-Z]{2})( \d{5})?", re.I)
    seen = 0
    for i in range(300):
        made = splicer.compose(random.Random(i))
        if not made or not made["address"]:
            continue
        m = town.fullmatch(made["address"])
        assert m is not None, made
        key = (m["city"].title(), m["st"].upper())
        assert key in US_TOWNS, made
        assert (made["postal_code"] or "")[:3] == US_TOWNS[key], made
        seen += 1
    assert seen > 200


def test_digit_prefixes_are_k_anonymous_and_followed() -> None:
    """Only digit prefixes at least MIN_SHARED values share are kept; drawn numbers follow the real
    prefix mix (mostly 010, some 02) and are not copies."""
    rng = random.Random(5)
    values = [f"010-{rng.randint(2000, 9999)}-{rng.randint(0, 9999):04d}" for _ in range(450)]
    values += [f"02-{rng.randint(2000, 9999)}-{rng.randint(0, 9999):04d}" for _ in range(50)]
    values.append("031-555-0000")
    prefixes = shared_digit_prefixes(values)
    assert "999-999-9999" not in prefixes  # one value of that shape: nothing shared
    assert all(n >= MIN_SHARED for by in prefixes.values() for n in by.values())
    assert not any(len(p) == 11 for p in prefixes["999-9999-9999"])  # no whole number survives
    drawn = [draw_digits("999-9999-9999", prefixes["999-9999-9999"], rng) for _ in range(300)]
    assert all(d.startswith("010-") for d in drawn) and len(set(drawn) & set(values)) == 0
    info = customers_info("phone")
    prof = profile(info, [{"id": str(i), "phone": v} for i, v in enumerate(values)])
    synth = Synthesizer(info, prof, locale="ko_KR", contacts=ContactAllocator(), seed=2)
    heads = Counter((synth.row(RowContext(pk=str(i))).values["phone"] or "x")[:3] for i in range(400))
    assert heads["010"] > 300 and heads["02-"] > 10 and sum(heads.values()) - heads["010"] - heads["02-"] < 20


def test_pools_are_used_evenly() -> None:
    """Canary e-mails spread evenly over the pool's domains and phones over its number blocks."""
    domains = [f"mail{i}.example-post.kr" for i in range(7)]
    phones = [f"+8210{b}{n:04d}" for b in range(2000, 2010) for n in range(20)]
    pool = ContactAllocator(domains, phones, rng=random.Random(8))
    used = Counter(pool.email(f"user{i}", "unused.example").split("@")[1] for i in range(50))
    assert set(used) == set(domains) and max(used.values()) - min(used.values()) <= 1
    blocks = Counter(str(pool.phone())[:-4] for _ in range(35))
    assert len(blocks) == 10 and max(blocks.values()) - min(blocks.values()) <= 1


async def test_plan_warns_when_a_pool_is_too_small_to_blend(target_dsn: str, make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """With two canary domains for 30 canaries (15 each, where small real domains have 3 customers)
    and one owned number block, the plan says so and how many are needed, and its pool sizing says
    plainly that both stand out; a pool of 20 domains over 30 blocks raises no warning and blends."""
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute("CREATE TABLE customers (id bigserial PRIMARY KEY, full_name text, email text, phone text)")
        await conn.execute(
            "INSERT INTO customers (id, full_name, email, phone) SELECT g * 2, 'Kim ' || g, 'u' || g || '@co' || (g % 200) || '.co.kr',"
            " '010-' || (2000 + (g * 7919) % 7000) || '-' || lpad((g % 10000)::text, 4, '0') FROM generate_series(1, 600) g"
        )
    finally:
        await conn.close()
    registry = Registry(store.pool, keyring)
    tables = [{"table": "public.customers", "count": 30}]
    small = make_config(datastores=[{"name": "shop", "dsn": target_dsn, "tables": tables}],
                        seeding={"email_domains": ["a-post.kr", "b-post.kr"], "phone_numbers": ["+821055500000-+821055500099"]})
    plan = await PostgresSeeder.from_config(small, "shop", registry, seed=1).plan()
    warnings = plan.targets[0].warnings
    assert any("2 canary mail domains put about 15 canaries on each" in w and "at least 4 domains" in w for w in warnings), warnings
    assert any("lie in 1 number block(s), about 30 canaries" in w for w in warnings), warnings
    sizing = plan.targets[0].pools
    assert any("need at least 4 domains to blend" in p and "2 configured: STANDS OUT" in p for p in sizing), sizing
    assert any("number blocks to blend" in p and "1 configured: STANDS OUT" in p for p in sizing), sizing
    assert any("0% of the table's addresses are at free-mail providers" in p for p in sizing), sizing
    wide = make_config(datastores=[{"name": "shop", "dsn": target_dsn, "tables": tables}],
                       seeding={"email_domains": [f"d{i}-post.kr" for i in range(20)],
                                "phone_numbers": [f"+8210{3000 + 7 * b}{n:04d}" for b in range(30) for n in (11, 4242)]})
    plan = await PostgresSeeder.from_config(wide, "shop", registry, seed=1).plan()
    assert not [w for w in plan.targets[0].warnings if "blend" in w or "number block" in w]
    assert plan.targets[0].pools and not any("STANDS OUT" in p for p in plan.targets[0].pools), plan.targets[0].pools
    assert any(p.endswith("blends") for p in plan.targets[0].pools)


def test_frequency_match_follows_real_count_classes_without_copying_rare_values() -> None:
    """Canaries take candidates whose values are as common in the table as real rows' values are
    (half the real rows hold a value no one else has, half one of 40 holders), and never a value
    that only one or two real rows hold (it would identify them)."""
    from collections import Counter

    table: Counter[str | None] = Counter({"shared": 40, "rare": 1, "pair": 2})
    table.update({f"own{i}": 1 for i in range(100)})
    sample = [{"v": f"own{i}"} for i in range(50)] + [{"v": "shared"}] * 50
    keys = (("v", lambda v: v),)
    targets = FrequencyMatch.real_targets(keys, (table,), sample)
    pool = [{"v": "shared"}, {"v": "rare"}, {"v": "pair"}] + [{"v": f"new{i}"} for i in range(300)]
    match = FrequencyMatch(keys, (table,), targets, pool)
    rng = random.Random(3)
    drawn = [match.draw(rng) for _ in range(200)]
    values = [d["v"] for d in drawn if d is not None]
    assert len(values) == 200
    assert not {"rare", "pair"} & set(values)
    shared = values.count("shared")
    assert 70 <= shared <= 130
    assert all(count_bin(table[v] + values.count(v)) in (count_bin(1), count_bin(2), count_bin(41 + shared - 1)) for v in values)


def test_frequency_match_breaks_ties_toward_the_classes_canaries_lack() -> None:
    """When nothing in the pool matches a target exactly, the candidates as close to it tie; among
    them the match takes the one whose classes canaries have had least so far, not the class the
    pool is richest in. Here 77% of real rows' addresses have a shape no other row has (in a town of
    300-999 rows): the pool's new shapes all lie in towns of 100-299 rows and ten times as many
    candidates share a real row's shape in a large town, so every draw for a new shape ties the
    two, and uniform ties gave canaries a new shape 5-9 times in 100. Balanced, the two keys' misses
    are shared: about 38 (2 x 38.5% new shapes in the smaller towns = the 77% owed), whether the
    draw is among the whole pool or some of it."""
    def street(v: str | None) -> str | None:
        return v.split("-")[0] if v else v

    def town(v: str | None) -> str | None:
        return v.split("-")[1] if v else v

    table: Counter[str | None] = Counter()
    streets: Counter[str | None] = Counter({f"s{i}": 1 for i in range(1500)})
    towns: Counter[str | None] = Counter({f"m{i}": 150 for i in range(150)} | {f"b{i}": 400 for i in range(1500)})
    keys = (("v", same), ("v", street), ("v", town))
    targets = ((0, 0, 7),) * 77 + ((0, 1, 7),) * 23
    pool = [{"v": f"n{i}-m{i}"} for i in range(150)] + [{"v": f"s{i}-b{i}"} for i in range(1500)]
    for among in (False, True):
        match = FrequencyMatch(keys, (table, streets, towns), targets, pool)
        rng = random.Random(4)
        drawn = [match.draw(rng, among=match.pool if among else None, tries=2000) for _ in range(100)]
        new = sum(1 for d in drawn if d is not None and str(d["v"]).startswith("n"))
        assert 30 <= new <= 46, (among, new)
        assert match.drawn[1][0] == new  # the classes the canaries had when drawn


def test_frequency_match_follows_the_real_rows_values_within_a_class() -> None:
    """Two towns of 400 rows each (one count class) hold half the real rows each, but the pool composed
    nine new addresses in the first for one in the second: within the class the draw follows a real
    row's own shared values (its town), not the pool's mix (uniform among the tied candidates gave
    the first town nine canaries in ten), whether among the whole pool or some of it."""
    def town(v: str | None) -> str | None:
        return v.split("-")[1] if v else v

    addresses: Counter[str | None] = Counter({f"r{i}-{t}": 1 for i in range(400) for t in ("A", "B")})
    towns: Counter[str | None] = Counter({"A": 400, "B": 400})
    keys = (("v", same), ("v", town))
    counts = (addresses, towns)
    sample = [{"v": f"r{i}-{'A' if i % 2 else 'B'}"} for i in range(200)]
    pool = [{"v": f"n{i}-{'B' if i % 10 == 0 else 'A'}"} for i in range(1000)]
    for among in (False, True):
        match = FrequencyMatch(keys, counts, FrequencyMatch.real_targets(keys, counts, sample), pool,
                               shared=FrequencyMatch.real_values(keys, counts, sample))
        rng = random.Random(5)
        drawn = [match.draw(rng, among=match.pool if among else None, tries=200) for _ in range(200)]
        in_a = sum(1 for d in drawn if d is not None and town(d["v"]) == "A")
        assert 70 <= in_a <= 130, (among, in_a)


def test_value_counts_batches_count_as_one_value_at_a_time() -> None:
    """A streamed batch (records or pairs: values one row holds, values many hold, a scaled-down
    sample's count below 1) holds what adding each value on its own holds, and sums each derived value
    weighted by its rows."""
    rows = [(f"Person {i} {('Kim', 'Lee', 'Park')[i % 3]}", 1) for i in range(5_000)] + [("Shared Name Park", 7), ("Scaled Kim", 0)]
    counts, alone = ValueCounts([same, surname_key]), ValueCounts([same, surname_key])
    counts.add_all(rows)
    for value, n in rows:
        alone.add(value, n)
    assert counts.multi == alone.multi == {"Shared Name Park": 7}
    probes = [v for v, _ in rows] + [f"nobody {i}" for i in range(2_000)]
    assert [counts[v] for v in probes] == [alone[v] for v in probes]
    assert all(counts[v] == 1 for v, n in rows if n < 2)
    surnames: Counter[str | None] = Counter()
    for value, n in rows:
        surnames[surname_key(value)] += n
    assert counts.derived(surname_key) == surnames == alone.derived(surname_key)


def test_draws_among_candidates_score_them_as_drawn_now() -> None:
    """A draw among some of the pool (the locations of one relation's bucket) scores each from its
    signature, kept current as canaries take values, once draws have scored as many candidates as
    the pool holds: over a run where canaries' values cross count classes, it picks what scoring
    each candidate afresh picks (candidates outside the pool are always scored afresh)."""
    table: Counter[str | None] = Counter({f"v{i}": i % 4 for i in range(60)})
    heads: Counter[str | None] = Counter()
    for v, n in table.items():
        heads[str(v)[:2]] += n
    sample = [{"v": f"v{i}"} for i in range(0, 60, 2)]

    def head(v: str | None) -> str | None:
        return v[:2] if v else v

    keys = (("v", same), ("v", head))
    traits = (("v", len),)

    def matcher() -> FrequencyMatch:
        pool = [{"v": f"v{i}"} for i in range(60)] + [{"v": f"n{i}"} for i in range(40)]
        return FrequencyMatch(keys, (table, heads), FrequencyMatch.real_targets(keys, (table, heads), sample, traits), pool, traits, k=2)

    indexed, afresh = matcher(), matcher()
    copies = [dict(c) for c in afresh.pool]  # not the pool's candidates (kept alive: candidates are memoised by id)
    pick, rng_a, rng_b = random.Random(5), random.Random(9), random.Random(9)
    got_a, got_b = [], []
    for _ in range(300):
        at = pick.sample(range(100), 45)
        a = indexed.draw(rng_a, among=[indexed.pool[i] for i in at], tries=40)
        b = afresh.draw(rng_b, among=[copies[i] for i in at], tries=40)
        got_a.append(a and a["v"])
        got_b.append(b and b["v"])
    assert got_a == got_b
    assert indexed._sig and indexed._scored < 300 * 40  # the first draws scored afresh, the rest by signature
    assert sum(count_bin(table[v] + n) > count_bin(table[v] + 1) for v, n in Counter(got_a).items()) >= 10  # classes crossed


def test_a_candidates_signature_is_its_classes_traits_and_disturbance_as_drawing_moves_them() -> None:
    """The signature a draw keeps each pool candidate under (one pass over its key values) is its
    count classes as if drawn now, its traits, then the keys on which it would move canaries drawn
    before it (:meth:`FrequencyMatch._bins`, :meth:`FrequencyMatch._disturbs`), for every candidate
    after each of many draws whose values cross count classes; a key with several values per
    candidate counts by the least held and moves canaries when any of them does."""
    table: Counter[str | None] = Counter({f"v{i}": i % 5 for i in range(40)})
    words: Counter[str | None] = Counter({f"w{i}": i % 4 for i in range(12)})

    def some_words(v: str | None) -> frozenset[str]:
        return frozenset(f"w{(int(v[1:]) * j) % 12}" for j in range(1, int(v[1:]) % 3 + 1)) if v and v[0] == "v" else frozenset()

    keys = (("v", same), ("v", Rarest(some_words)))
    traits = (("v", len),)
    sample = [{"v": f"v{i}"} for i in range(0, 40, 3)]
    pool = [{"v": f"v{i}"} for i in range(40)] + [{"v": f"n{i}"} for i in range(10)]
    match = FrequencyMatch(keys, (table, words), FrequencyMatch.real_targets(keys, (table, words), sample, traits), pool, traits, k=2)
    rng = random.Random(4)
    for _ in range(120):
        match.draw(rng)
        for i in range(len(pool)):
            vals, trait = match._derived(pool[i])
            assert match._signature(i) == match._bins(vals) + tuple(trait) + (match._disturbs(vals),)
    assert sum(1 for c in match.added[1].values() if c) >= 5 and max(match.added[0].values()) >= 3  # canaries joined values


def test_value_counts_are_exact_for_shared_values_and_bounded_for_distinct_ones() -> None:
    """ValueCounts keeps values two or more rows hold exactly and those one row holds by 32 bits of their
    hash (4 bytes each, also across several sorted runs), sums derived values as rows stream by, and
    says 0 for nearly every value no row holds (a false 1 only makes a candidate count as taken)."""
    counts = ValueCounts([same, surname_key])
    counts.RUN = 4_096  # several runs
    rows = [(f"Person {i} Kim" if i % 2 else f"Person {i} Lee", 1) for i in range(50_000)] + [("Shared Name Park", 7)]
    counts.add_all(rows[:10])
    for value, n in rows[10:]:
        counts.add(value, n)
    assert counts["Shared Name Park"] == 7 and counts["Person 3 Kim"] == 1 and counts["Person 4 Lee"] == 1
    assert sum(counts[f"nobody {i}"] for i in range(10_000)) < 10  # ~0.1 expected: 10,000 x 50,000 / 2^32
    assert counts.derived(same) is counts
    assert counts.derived(surname_key)[surname_key("Person 3 Kim")] == sum(1 for v, _ in rows if v.endswith("Kim"))
    assert len(counts.runs) > 1 and counts.nbytes == 4 * 50_000


def test_draws_among_a_long_list_join_canaries_where_real_rows_come_in_pairs() -> None:
    """A canary placed by its contact point draws among a long list of candidates (a sample of it):
    where the real row it matches shares its address with one other row, it takes an address
    another canary holds in that list (two canaries then share it, as a household's rows do), never
    one fewer than k real rows hold. A sample alone rarely held one: almost no canary shared."""
    table: Counter[str | None] = Counter({f"real {i}": 1 + i % 2 for i in range(400)})  # half of the rows' in pairs
    sample = [{"v": v} for v in table]
    keys = (("v", same),)
    targets = FrequencyMatch.real_targets(keys, (table,), sample)
    paired = sum(t[0] == count_bin(2) for t in targets) / len(targets)
    pool = [{"v": f"fresh {i}"} for i in range(20_000)] + [{"v": v} for v in table]
    match = FrequencyMatch(keys, (table,), targets, pool, k=3)
    rng = random.Random(3)
    got = [match.draw(rng, among=pool, tries=20) for _ in range(400)]
    held = Counter(c["v"] for c in got if c is not None)
    assert all(table[v] == 0 or table[v] >= 3 for v in held)  # never a value fewer than k real rows hold
    shared = sum(n for n in held.values() if n > 1) / len(got)
    assert abs(shared - paired) < 0.15, (shared, paired)


def test_names_draw_the_same_whatever_the_locations_take() -> None:
    """Each concern draws from its own random stream (:class:`Streams`): a table whose addresses differ
    (so composing a location takes other numbers) gets the same names and e-mail addresses for the
    same seed, and the same addresses when only the names differ. One shared stream would shift every
    name after the first location that took one number more; then no two versions of the location
    code could be compared on the same people."""
    names = ["김민준", "박서연", "이지훈", "최수아", "정도윤", "강하은"]

    def table(roads: tuple[str, ...], given: list[str]) -> list[dict[str, str | None]]:
        rng = random.Random(7)
        rows = _addresses(600)
        for i, r in enumerate(rows):
            r["address"] = (r["address"] or "").replace(next(w for w in ROADS if w in (r["address"] or "")), rng.choice(roads))
            r["full_name"] = given[i % len(given)]
            r["email"] = f"user{i}@naver.com"
        return rows

    info = customers_info("full_name", "email", "address", "postal_code")

    def made(sample: list[dict[str, str | None]]) -> list[dict[str, str | None]]:
        synth = Synthesizer(info, profile(info, sample), locale="ko_KR", contacts=ContactAllocator(), seed=11)
        return [synth.row(RowContext(pk=str(10_000 + i))).values for i in range(60)]

    base = made(table(ROADS, names))
    other_roads = made(table(ROADS[:3] + ("중앙로", "역삼로"), names))
    other_names = made(table(ROADS, names[::-1] + ["윤서준", "임지아"]))
    assert [r["address"] for r in base] != [r["address"] for r in other_roads]
    assert [(r["full_name"], r["email"]) for r in base] == [(r["full_name"], r["email"]) for r in other_roads]
    assert [r["full_name"] for r in base] != [r["full_name"] for r in other_names]
    assert [(r["address"], r["postal_code"]) for r in base] == [(r["address"], r["postal_code"]) for r in other_names]


def test_frequency_match_weighs_a_keys_class_as_it_is_told() -> None:
    """A candidate whose shape (the second key) matches the target and one whose third key does,
    each two classes off on the other: unweighted they tie and either is drawn; with the shape's
    class weighing 3 (SHAPE_WEIGHT), the one with the right shape always is (an address of its own
    whose street and town other rows hold: 16.6% of canaries against 6.2% of real rows)."""
    counts: Counter[str | None] = Counter({"held": 2})
    keys = (("a", same), ("b", same), ("c", same))
    want = (count_bin(1), count_bin(1), count_bin(1))
    drawn: dict[tuple[int, ...], Counter[str]] = {}
    for weights in ((), (1, 3)):
        got: Counter[str] = Counter()
        for seed in range(40):
            pool = [{"a": "new1", "b": "held", "c": "new"}, {"a": "new2", "b": "new", "c": "held"}]
            match = FrequencyMatch(keys, (counts, counts, counts), (want,), pool, weights=weights)
            choice = match.draw(random.Random(seed))
            assert choice is not None
            got[str(choice["a"])] += 1
        drawn[weights] = got
    assert drawn[()]["new1"] >= 5 and drawn[()]["new2"] >= 5, drawn
    assert drawn[(1, 3)] == Counter({"new2": 40}), drawn
