"""A canary's contact point goes with its location the way the whole table's rows do (synth/relations.py
Kind.AREA and Relations.weak, synth/synthesizer.py Apart): an area code is one value whatever format a
row wrote it in, a dependence too sparse to draw from (a few landlines among mobiles) is still found,
and a canary's (region, area code) pair is one the table has, whichever of the two is made first, or
one nobody has only as often as real rows' are."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence

import pytest
from seeder_helpers import customers_info

from canary.seeding.synth.contacts import ContactAllocator
from canary.seeding.synth.profile import profile
from canary.seeding.synth.relations import Feature, Kind, words
from canary.seeding.synth.shapes import MIN_SHARED
from canary.seeding.synth.synthesizer import RowContext, Synthesizer

Row = dict[str, str | None]
LANDLINES = {"서울특별시": "02", "부산광역시": "051", "대구광역시": "053", "인천광역시": "032", "광주광역시": "062", "대전광역시": "042",
             "울산광역시": "052", "세종특별자치시": "044", "경기도": "031", "강원특별자치도": "033", "충청북도": "043", "충청남도": "041",
             "전북특별자치도": "063", "전라남도": "061", "경상북도": "054", "경상남도": "055", "제주특별자치도": "064"}
ROADS = ("중앙로", "희망로", "평화로", "시청로", "번영로", "태평로")






def _matched(synth: Synthesizer, table: Sequence[Mapping[str, str | None]], sample: Sequence[Row]) -> None:
    """Feed the synthesizer the whole table's counts and tallies, as the seeder counts them in SQL."""
    counts = {c: Counter(r.get(c) for r in table) for c in synth.frequency_columns()}
    tallies: dict[str, Counter[str | None]] = {}
    for t in synth.tallies():
        if t.each_word is not None:
            tallies[t.name] = Counter(w for r in table for w in words(r.get(t.each_word)))
        else:
            tallies[t.name] = Counter(t.value(r, at) for r in table for at in range(len(t.sets)))
    synth.match_frequencies(counts, sample, candidates=1500, tallies=tallies)  # type: ignore[arg-type]


@pytest.mark.parametrize(("phone", "area"), [
    ("(406) 555-0100", "406"), ("406-555-0100", "406"), ("4065550100", "406"), ("+14065550100", "406"), ("+1 (406) 555-0100", "406"),
    ("1-406-555-0100", "406"), ("010-1234-5678", "101"), ("+82 10-1234-5678", "101"), ("+821012345678", "101"),
    ("02-312-4567", "231"), ("+44 20 7946 0000", "207"), ("+7 495 123-45-67", "495"), ("+380 44 123 4567", "441"), ("", ""),
    ("no digits", ""), ("555-0100", "555"),
])
def test_area_is_the_area_code_whatever_the_format(phone: str, area: str) -> None:
    """The area feature reads the digits after a country calling code (one to three digits, by the
    E.164 list), a trunk 0 or a North American long-distance 1: one area code, one value."""
    assert Feature("phone", Kind.AREA).of(phone) == area


def _korean(n: int, seed: int) -> list[Row]:
    """Mobiles (96%) that say nothing of the region, and landlines whose area code is the region's."""
    rng = random.Random(seed)
    rows: list[Row] = []
    for i in range(n):
        region = rng.choices(list(LANDLINES), weights=(19, 6, 5, 6, 3, 3, 2, 1, 27, 3, 3, 4, 3, 3, 5, 6, 1))[0]
        if rng.random() < 0.04:
            phone = f"{LANDLINES[region]}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"
        else:
            phone = f"010-{rng.randint(2000, 9999)}-{rng.randint(0, 9999):04d}"
        rows.append({"id": str(i), "phone": phone,
                     "address": f"{region} {rng.choice(ROADS)} {rng.randint(1, 300)}, {rng.randint(101, 112)}동 {rng.randint(1, 20)}0{rng.randint(1, 4)}호"})
    return rows


def test_a_landline_among_mobiles_goes_with_its_region() -> None:
    """A few landlines among mobiles: too little information to relate the phone to the region, but
    a dependence beyond chance (Relations.weak); a canary's phone, made after its address, is a
    landline as often as real rows' are and then one of its own region (a (region, area code) pair at
    least k rows of the table hold), never another region's."""
    table = _korean(6000, seed=3)
    sample = table[:2000]
    info = customers_info("address", "phone")
    prof = profile(info, sample)
    assert not prof.relations.on("phone", ["address"]), prof.relations
    assert prof.relations.dependence("phone", ["address"]) is not None, prof.relations.weak
    synth = Synthesizer(info, prof, locale="ko_KR", contacts=ContactAllocator(), seed=4)
    _matched(synth, table, sample)
    rows = [synth.row(RowContext(pk=str(10_000 + i))).values for i in range(300)]
    region, lead3 = Feature("address", Kind.HEAD), Feature("phone", Kind.LEAD3)
    pairs = Counter((region.of(r["address"]), lead3.of(r["phone"])) for r in table)
    held = [pairs[(region.of(r["address"]), lead3.of(r["phone"]))] for r in rows if r["phone"] and r["address"]]
    assert len(held) >= 250
    assert min(held) >= MIN_SHARED, sorted(held)[:5]
    landlines = sum(not (r["phone"] or "").startswith("010") for r in rows)
    assert 3 <= landlines <= 30  # real rows: 4%


def test_a_phone_goes_with_its_region_by_its_area_code_not_by_whether_it_is_null() -> None:
    """Phones that are NULL far more often on some streets (the address's last word) than elsewhere:
    that dependence is stronger than the landline codes' with the region (the address's first word),
    but says nothing of where a number is. The pair a canary's phone keeps as common as real rows' is
    the area code's with the region (synthesizer.py WHERE_KINDS), so a canary's (region, area code) is
    one k rows of the table hold about as often as real rows' is: paired with the NULLs, 11% of
    canaries (none of the real rows) had an area code fewer than k rows of their region hold."""
    rng = random.Random(31)
    quiet = [f"{w}{n}길" for w in ("가람", "나래", "다온", "라온", "마루", "바름") for n in ("", "새", "큰", "작은", "윗")]  # streets whose rows seldom give a phone
    table: list[Row] = []
    for i in range(6000):
        region = rng.choices(list(LANDLINES), weights=(19, 6, 5, 6, 3, 3, 2, 1, 27, 3, 3, 4, 3, 3, 5, 6, 1))[0]
        street = rng.choice(quiet) if rng.random() < 0.3 else rng.choice(ROADS)
        if street in quiet and rng.random() < 0.7:
            phone = None
        elif rng.random() < 0.12:
            phone = f"{LANDLINES[region]}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}"
        else:
            phone = f"010-{rng.randint(2000, 9999)}-{rng.randint(0, 9999):04d}"
        table.append({"id": str(i), "phone": phone, "address": f"{region} {rng.randint(1, 300)}, {street}"})
    sample = table[:2000]
    info = customers_info("address", "phone")
    prof = profile(info, sample)
    assert prof.relations.dependence("phone", ["address"])[0].kind == Kind.NULL  # type: ignore[index]  # the strongest
    synth = Synthesizer(info, prof, locale="ko_KR", contacts=ContactAllocator(), seed=32)
    _matched(synth, table, sample)
    rows = [synth.row(RowContext(pk=str(10_000 + i))).values for i in range(300)]
    region, lead3 = Feature("address", Kind.HEAD), Feature("phone", Kind.LEAD3)
    pairs = Counter((region.of(r["address"]), lead3.of(r["phone"])) for r in table if r["phone"])
    held = [pairs[(region.of(r["address"]), lead3.of(r["phone"]))] for r in rows if r["phone"] and r["address"]]
    real = sum(pairs[(region.of(r["address"]), lead3.of(r["phone"]))] < MIN_SHARED for r in table if r["phone"] and r["address"])
    assert len(held) >= 150
    assert sum(h < MIN_SHARED for h in held) / len(held) <= 2 * real / len(table) + 0.02, (sorted(held)[:10], real)


def test_an_owned_number_of_an_area_code_rare_in_the_sample_gets_its_region() -> None:
    """An owned number whose area code too few sampled rows hold to have a bucket of its own (631, one
    row in a hundred of New York's) still gets a region the table's rows have it in: the whole
    table's (area code, state) pairs decide, not the relation's catch-all bucket."""
    rng = random.Random(7)
    codes = {"NY": ("212", "718"), "IL": ("312", "773"), "TX": ("214", "512"), "OR": ("503", "541"), "FL": ("305", "407")}
    table: list[Row] = []
    for i in range(5000):
        st = rng.choice(list(codes))
        code = "631" if st == "NY" and rng.random() < 0.03 else rng.choice(codes[st])
        table.append({"id": str(i), "phone": f"({code}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
                      "address": f"{rng.randint(1, 999)} {rng.choice(['Oak', 'Elm', 'Pine', 'Main'])} St, Town{rng.randint(1, 40)}, {st}"})
    sample = [r for r in table if not (r["phone"] or "").startswith("(631)")][:1500] + [r for r in table if (r["phone"] or "").startswith("(631)")][:2]
    info = customers_info("phone", "address")
    prof = profile(info, sample)
    relation = prof.relations.on("address", ["phone"])[0]
    assert relation.bucket("phone", "(631) 555-0100") != "631"  # the catch-all bucket
    owned = [f"+1631555{n:04d}" for n in range(120)]
    synth = Synthesizer(info, prof, locale="en_US", contacts=ContactAllocator(phone_numbers=owned), seed=5)
    _matched(synth, table, sample)
    rows = [synth.row(RowContext(pk=str(10_000 + i))).values for i in range(100)]
    states = Counter((r["address"] or "")[-2:] for r in rows if r["phone"])
    assert states["NY"] >= 0.9 * sum(states.values()), states  # by chance: a fifth


def test_an_area_code_written_after_a_country_code_goes_with_its_state() -> None:
    """A US-like table writing a third of its numbers with the country code (+1 (503) ..., 1-503-...): the
    area code is related to the state whatever the format, and canaries take an area code of their
    state in the table's own mix of formats."""
    rng = random.Random(4)
    states = [f"{a}{b}" for a in "ACGIMNOTVW" for b in "AKLZ"]
    codes = {st: tuple(str(201 + 3 * i + j) for j in range(3)) for i, st in enumerate(states)}
    formats = ("({a}) {x}-{n}", "{a}-{x}-{n}", "+1 ({a}) {x}-{n}", "1-{a}-{x}-{n}", "+1{a}{x}{n}")
    sample: list[Row] = []
    for i in range(2000):
        st = rng.choice(list(codes))
        phone = rng.choices(formats, weights=(40, 25, 15, 10, 10))[0].format(a=rng.choice(codes[st]), x=rng.randint(200, 999),
                                                                              n=f"{rng.randint(0, 9999):04d}")
        sample.append({"id": str(i), "phone": phone, "address": f"{rng.randint(1, 999)} Oak St, Town{rng.randint(1, 60)}, {st}"})
    info = customers_info("address", "phone")
    prof = profile(info, sample)
    assert prof.relations.dependence("phone", ["address"]) == (Feature("phone", Kind.AREA), Feature("address", Kind.TAIL))
    synth = Synthesizer(info, prof, locale="en_US", contacts=ContactAllocator(), seed=6)
    rows = [synth.row(RowContext(pk=str(10_000 + i))).values for i in range(200)]
    state = {c: st for st, cs in codes.items() for c in cs}
    area = Feature("phone", Kind.AREA)
    fits = sum(state.get(area.of(r["phone"] or "")) == (r["address"] or "")[-2:] for r in rows if r["phone"])
    assert fits >= 0.9 * len(rows), fits  # by chance: one in forty
    international = sum((r["phone"] or "").startswith(("+", "1")) for r in rows)
    assert 0.2 * len(rows) <= international <= 0.5 * len(rows), international  # real rows: 35%


def test_a_pair_nobody_has_as_often_as_real_rows_have_one() -> None:
    """Where one customer in ten moved and kept a number from another state, a canary's (state, area
    code) pair is one nobody in the table has about as often as a real row's is, and otherwise one at
    least k rows hold: never one that one or two real rows hold (it would copy a rare combination)."""
    rng = random.Random(8)
    states = [f"{a}{b}" for a in "ACGIMNO" for b in "AKL"]
    codes = {st: tuple(str(201 + 3 * i + j) for j in range(3)) for i, st in enumerate(states)}
    every = [c for cs in codes.values() for c in cs]
    table: list[Row] = []
    for i in range(6000):
        st = rng.choice(states)
        code = rng.choice(every) if rng.random() < 0.1 else rng.choice(codes[st])
        table.append({"id": str(i), "phone": f"({code}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
                      "address": f"{rng.randint(1, 999)} {rng.choice(['Oak', 'Elm', 'Pine', 'Main'])} St, Town{rng.randint(1, 40)}, {st}"})
    sample = table[:2000]
    info = customers_info("address", "phone")
    prof = profile(info, sample)
    synth = Synthesizer(info, prof, locale="en_US", contacts=ContactAllocator(), seed=9)
    _matched(synth, table, sample)
    rows = [synth.row(RowContext(pk=str(10_000 + i))).values for i in range(400)]
    pair = Counter(((r["address"] or "")[-2:], (r["phone"] or "")[1:4]) for r in table)
    real_alone = sum(pair[((r["address"] or "")[-2:], (r["phone"] or "")[1:4])] == 1 for r in table) / len(table)
    held = [pair[((r["address"] or "")[-2:], (r["phone"] or "")[1:4])] for r in rows]
    alone = sum(h == 0 for h in held) / len(held)
    assert 0.4 * real_alone <= alone <= 1.6 * real_alone, (alone, real_alone)
    assert not [h for h in held if 0 < h < MIN_SHARED]


def test_a_pair_nobody_has_takes_an_area_code_the_table_has_elsewhere() -> None:
    """A canary alone in its (state, area code) pair is someone who moved and kept their number: its
    area code is one the table's rows hold in another state, as often as they hold it, never digits no
    row has. Three hundred codes written in five formats leave most (format, code) pairs to fewer than k
    sampled rows, and a number made from the formats alone had a code no row has half the time."""
    rng = random.Random(21)
    states = [f"{a}{b}" for a in "ACDGIKLMNOTVW" for b in "AEKLZ"][:60]
    spread = [str(c) for c in rng.sample(range(200, 1000), 5 * len(states))]  # every other code unused, as the country's
    codes = {st: tuple(spread[5 * i:5 * i + 5]) for i, st in enumerate(states)}
    every = [c for cs in codes.values() for c in cs]
    formats = ("({a}) {x}-{n}", "{a}-{x}-{n}", "{a}.{x}.{n}", "1-{a}-{x}-{n}", "+1{a}{x}{n}")
    table: list[Row] = []
    for i in range(8000):
        st = rng.choice(states)
        code = rng.choice(every) if rng.random() < 0.15 else rng.choice(codes[st])
        phone = rng.choice(formats).format(a=code, x=rng.randint(200, 999), n=f"{rng.randint(0, 9999):04d}")
        table.append({"id": str(i), "phone": phone,
                      "address": f"{rng.randint(1, 999)} {rng.choice(['Oak', 'Elm', 'Pine', 'Main'])} St, Town{rng.randint(1, 40)}, {st}"})
    sample = table[:2000]
    info = customers_info("address", "phone")
    prof = profile(info, sample)
    assert prof.relations.dependence("phone", ["address"]) is not None
    synth = Synthesizer(info, prof, locale="en_US", contacts=ContactAllocator(), seed=22)
    _matched(synth, table, sample)
    rows = [synth.row(RowContext(pk=str(10_000 + i))).values for i in range(400)]
    area = Feature("phone", Kind.AREA)
    held = Counter(area.of(r["phone"]) for r in table)
    pair = Counter(((r["address"] or "")[-2:], area.of(r["phone"])) for r in table)
    moved = [area.of(r["phone"]) for r in rows if r["phone"] and r["address"] and pair[((r["address"] or "")[-2:], area.of(r["phone"]))] == 0]
    assert len(moved) >= 20, len(moved)  # real rows: about one in eight
    assert all(held[code] >= MIN_SHARED for code in moved), sorted(code for code in moved if held[code] < MIN_SHARED)


def test_a_location_placed_by_an_owned_number_has_a_shape_of_its_own_as_often_as_real_rows() -> None:
    """Where most real rows' address shape (digits masked) is the only one of its kind, the canaries
    whose state their owned number decides have one no row holds about as often (in the state their
    number goes with): the candidates of one state are decided first to be of a new shape or of one
    some row holds, as the real row the canary matches (its target) has (synthesizer.py _shaped), new-shape ones made in the
    bucket where the pool has few (_fresh_places); the frequency match would otherwise trade the
    shape against the other keys (the town's, the rarest word's: bench, 59% against 77%)."""
    rng = random.Random(11)
    codes = {"NY": "212", "IL": "312", "TX": "214", "OR": "503", "FL": "305", "OH": "614"}
    streets = [f"{a}{b}" for a in ("Oak", "Elm", "Pine", "Maple", "Cedar", "Birch", "Ash", "Hill", "Lake", "Mill", "Park", "Spring")
               for b in ("", "wood", "field", "view", "crest", "dale", "brook", "ridge", "ton", "side", "more", "land", "gate", "haven",
                         "shire", "wick", "stone", "hurst", "ford", "mont")]
    towns = {st: [f"{st.title()}{t}" for t in ("ville", "burg", "port", " City", "field", "ton")] for st in codes}
    table: list[Row] = []
    for i in range(6000):
        st = rng.choice(list(codes))
        table.append({"id": str(i), "phone": f"({codes[st]}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
                      "address": f"{rng.randint(1, 999)} {rng.choice(streets)} {rng.choice(['St', 'Ave', 'Dr'])}, "
                                 f"{rng.choice(towns[st])}, {st}"})
    sample = table[:2000]
    info = customers_info("phone", "address")
    prof = profile(info, sample)
    owned = [f"+1{code}555{n:04d}" for code in codes.values() for n in range(60)]
    synth = Synthesizer(info, prof, locale="en_US", contacts=ContactAllocator(phone_numbers=owned), seed=12)
    _matched(synth, table, sample)
    rows = [synth.row(RowContext(pk=str(10_000 + i))).values for i in range(150)]
    shapes = Counter(re.sub(r"\d+", "9", r["address"] or "") for r in table)
    real = sum(shapes[re.sub(r"\d+", "9", r["address"] or "")] == 1 for r in table) / len(table)
    placed = [r for r in rows if r["address"] and r["phone"]]
    state = {code: st for st, code in codes.items()}
    assert sum(state.get(Feature("phone", Kind.AREA).of(r["phone"] or "")) == (r["address"] or "")[-2:] for r in placed) >= 0.9 * len(placed)
    alone = sum(shapes[re.sub(r"\d+", "9", r["address"] or "")] == 0 for r in placed) / len(placed)
    assert alone >= 0.8 * real, (alone, real)
    match = synth._match_places
    assert match is not None
    among = list(match.pool)
    new = 0
    for _ in range(400):
        target = match.target(synth.rng)
        assert target is not None
        got = synth._shaped(among, target)
        sides = {match.counts[1][re.sub(r"\d+", "9", c["address"] or "")] + match.added[1][re.sub(r"\d+", "9", c["address"] or "")] == 0
                 for c in got if c["address"]}
        assert sides == {target[1] == 0} and len(got) < len(among)  # the side the real row matched has
        new += sides == {True}
    assert abs(new / 400 - real) < 0.1, (new / 400, real)


def test_the_split_by_shape_is_handed_out_again_until_a_canary_takes_a_new_shape_of_it() -> None:
    """_shaped hands out the same list for a bucket's side (new shapes / shapes some row has) until a
    canary takes a shape of the bucket's new ones (FrequencyMatch.taken), and it is then what
    filtering the bucket afresh gives, in the same order (the draw samples from it): 10,000 canaries
    no longer filter a bucket of thousands of candidates each."""
    rng = random.Random(3)
    codes = {"NY": "212", "IL": "312", "TX": "214"}
    table: list[Row] = []
    for i in range(3000):
        st = rng.choice(list(codes))
        table.append({"id": str(i), "phone": f"({codes[st]}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
                      "address": f"{rng.randint(1, 999)} {rng.choice(['Oak', 'Elm', 'Pine', 'Ash', 'Lake'])}{rng.choice(['', 'wood', 'field'])} "
                                 f"{rng.choice(['St', 'Ave', 'Dr'])}, {rng.choice('BCDFGHKLMN')}{rng.choice('aeiou')}{rng.choice('rstn')}ton, {st}"})
    sample = table[:1500]
    info = customers_info("phone", "address")
    synth = Synthesizer(info, profile(info, sample), locale="en_US", contacts=ContactAllocator(), seed=4)
    _matched(synth, table, sample)
    match = synth._match_places
    assert match is not None
    among = list(match.pool)
    shape = synth._shape_key
    text = "address"
    new_shapes = {shape(c, text) for c in among if not match.counts[1][shape(c, text)]}
    handed: dict[bool, tuple[int, list[Mapping[str, str | None]]]] = {}
    again = remade = 0
    for i in range(300):
        target = match.target(rng)
        assert target is not None
        got = synth._shaped(among, target)
        alone = [c for c in among if shape(c, text) in new_shapes and not match.added[1][shape(c, text)]]
        held = [c for c in among if shape(c, text) not in new_shapes] + [c for c in among if shape(c, text) in new_shapes
                                                                          and match.added[1][shape(c, text)]]
        side = target[1] == 0
        assert got == (alone if side else held)
        before = handed.get(side)
        if before is not None and new_shapes.isdisjoint(match.taken[1][before[0]:]):
            assert got is before[1]
            again += 1
        elif before is not None:
            assert got is not before[1]
            remade += 1
        handed[side] = (len(match.taken[1]), got)
        if i % 2:
            match.draw(rng, among=got, tries=40, want=target)
    assert again >= 50 and remade >= 5, (again, remade)


def _rare_codes_table(seed: int) -> tuple[list[Row], set[str]]:
    """10,000 US-like rows over 10 states: in each, two area codes most rows have, and 25 that hold ten
    rows each (a quarter of the state's rows): in a 2,000-row sample each of those has about two rows,
    too few for a bucket of the relation of its own."""
    rng = random.Random(seed)
    states = ["NY", "IL", "TX", "OR", "FL", "CA", "WA", "MA", "GA", "OH"]
    common = {st: (str(201 + 2 * i), str(202 + 2 * i)) for i, st in enumerate(states)}
    rare = {st: tuple(str(300 + 25 * i + j) for j in range(25)) for i, st in enumerate(states)}
    table: list[Row] = []
    for st in states:
        codes = [c for c in rare[st] for _ in range(10)] + [rng.choice(common[st]) for _ in range(750)]
        for code in codes:
            table.append({"phone": f"({code}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
                          "address": f"{rng.randint(1, 999)} {rng.choice(['Oak', 'Elm', 'Pine', 'Main'])} St, Town{rng.randint(1, 40)}, {st}"})
    rng.shuffle(table)
    for i, r in enumerate(table):
        r["id"] = str(i)
    return table, {c for cs in rare.values() for c in cs}


def test_area_codes_rare_in_the_sample_are_drawn_as_often_as_the_table_has_them() -> None:
    """A canary's area code, made after its state, is drawn from the whole table's (area code, state)
    pairs that at least k rows hold, each as often as the table has it: the codes too rare in the
    sample for a bucket of the relation (a quarter of the rows) are a quarter of the canaries', not
    left to the relation's catch-all, which draws codes from anywhere, mostly another state's, so that
    canaries crowded into the common pairs."""
    table, rare = _rare_codes_table(seed=8)
    sample = table[:2000]
    info = customers_info("address", "phone")
    prof = profile(info, sample)
    assert prof.relations.on("phone", ["address"]), prof.relations
    synth = Synthesizer(info, prof, locale="en_US", contacts=ContactAllocator(), seed=9)
    _matched(synth, table, sample)
    rows = [synth.row(RowContext(pk=str(20_000 + i))).values for i in range(400)]
    area, state = Feature("phone", Kind.AREA), Feature("address", Kind.TAIL)
    pairs = Counter((area.of(r["phone"]), state.of(r["address"])) for r in table)
    held = [pairs[(area.of(r["phone"]), state.of(r["address"]))] for r in rows if r["phone"] and r["address"]]
    assert len(held) >= 380
    assert min(held) >= MIN_SHARED, sorted(held)[:5]  # never a pair fewer than k rows hold (none is alone in this table)
    in_rare = sum(area.of(r["phone"]) in rare for r in rows if r["phone"] and r["address"]) / len(held)
    assert 0.19 <= in_rare <= 0.31, in_rare  # real rows: 0.25 (the old way: 0.14)


def test_owned_numbers_are_handed_out_as_often_as_the_table_has_their_area_codes() -> None:
    """Owned numbers in as many blocks of area codes few customers have as of common ones, and of codes
    no customer has: a canary's number is drawn by its area code as often as the table's rows have that
    code, so canaries' area codes are as common in the table as real rows' (spread evenly over the
    pool's blocks, three in five canaries had a code few or none of the table's rows have), while no
    block holds two canaries before every block holds one."""
    table, rare = _rare_codes_table(seed=8)
    sample = table[:2000]
    info = customers_info("address", "phone")
    prof = profile(info, sample)
    codes = [str(201 + 2 * i) for i in range(10)] + sorted(rare)[::25] + ["900", "901", "902", "903", "904"]
    owned = [f"+1{code}{exchange}{n:04d}" for code in codes for exchange in range(520, 540) for n in range(2)]
    synth = Synthesizer(info, prof, locale="en_US", contacts=ContactAllocator(phone_numbers=owned), seed=10)
    _matched(synth, table, sample)
    rows = [synth.row(RowContext(pk=str(20_000 + i))).values for i in range(100)]
    area = Feature("phone", Kind.AREA)
    got = Counter(area.of(r["phone"]) for r in rows if r["phone"])
    assert sum(got.values()) >= 90
    assert not any(c.startswith("90") for c in got), got  # no customer has them
    common = sum(n for c, n in got.items() if c not in rare) / sum(got.values())
    assert common >= 0.88, got  # the table's rows: 0.97 of those with the pool's codes; evenly over the blocks: 0.4
    blocks = Counter(re.sub(r"[^0-9]", "", r["phone"] or "")[-10:-4] for r in rows if r["phone"])
    assert max(blocks.values()) == 1, blocks.most_common(3)  # still no block holding two while another is unused


@pytest.mark.parametrize("make", ["korean", "us"])
def test_a_phone_made_after_the_location_is_empty_as_often_as_the_tables(make: str) -> None:
    """With 10% of the table's phones empty, a canary's phone made after its location is empty about
    10% of the time: the emptiness is decided once (it was decided again by the draw that follows, and
    canaries had about twice the table's empty phones)."""
    table = _korean(6000, seed=3) if make == "korean" else _rare_codes_table(seed=8)[0]
    rng = random.Random(11)
    for r in table:
        if rng.random() < 0.10:
            r["phone"] = None
    sample = table[:2000]
    info = customers_info("address", "phone")
    prof = profile(info, sample)
    synth = Synthesizer(info, prof, locale="ko_KR" if make == "korean" else "en_US", contacts=ContactAllocator(), seed=5)
    _matched(synth, table, sample)
    rows = [synth.row(RowContext(pk=str(30_000 + i))).values for i in range(600)]
    empty = sum(r["phone"] is None for r in rows) / len(rows)
    assert 0.06 <= empty <= 0.145, empty  # the table: 0.10
