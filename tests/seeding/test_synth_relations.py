"""Relations between columns learned from the table (synth/relations.py) and joint matching: canaries
keep the dependencies the table really has (an area code and its region, a birth year and the digits
of an e-mail, an address's region and its postcode, an address without a postcode), nothing is learned
where columns are independent, and how common a canary's pairs of values and rarest address word are
follows the real rows."""

from __future__ import annotations

import datetime as dt
import random
import re
from collections import Counter

import asyncpg
import pytest
from testkit import MakeConfig

from canary.crypto import Keyring
from canary.seeding.catalog import Column, Constraint, TableInfo
from canary.seeding.postgres import PostgresSeeder
from canary.seeding.synth.contacts import ContactAllocator
from canary.seeding.synth.frequency import Across, FrequencyMatch, Rarest, same
from canary.seeding.synth.profile import profile
from canary.seeding.synth.relations import OTHER, TALLY_ROWS, Feature, Kind, Relations, Tally, words
from canary.seeding.synth.shapes import MIN_SHARED
from canary.seeding.synth.synthesizer import RowContext, Synthesizer
from canary.store import ControlStore
from canary.store.registry import Registry

AREAS = {"02": "서울", "031": "경기", "051": "부산", "053": "대구", "062": "광주"}
REGIONS = {"서울특별시": "0", "부산광역시": "4", "대구광역시": "41", "인천광역시": "2", "광주광역시": "6"}
POSTAL = {"서울특별시": "03", "부산광역시": "48", "대구광역시": "42", "인천광역시": "22", "광주광역시": "61"}


def _col(name: str, category: str = "S", base: str = "text") -> Column:
    return Column(name=name, type=base, category=category, base_type=base, not_null=False, default=None, identity="",
                  generated=False, max_length=None, numeric_precision=None, numeric_scale=None)


def _info(*cols: Column) -> TableInfo:
    pk = Column(name="id", type="int8", category="N", base_type="int8", not_null=True, default=None, identity="",
                generated=False, max_length=None, numeric_precision=None, numeric_scale=None)
    return TableInfo("public", "customers", 1, "r", "owner", False, False, (pk, *cols),
                     (Constraint("customers_pkey", "p", ("id",), "PRIMARY KEY (id)"),), (), ())


def _phones(n: int, seed: int = 3) -> list[dict[str, str | None]]:
    """Landlines whose area code determines the region column, and a status no column depends on."""
    rng = random.Random(seed)
    out: list[dict[str, str | None]] = []
    for i in range(n):
        area = rng.choice(list(AREAS))
        out.append({"id": str(i), "phone": f"{area}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}", "region": AREAS[area],
                    "status": rng.choice(("active", "dormant", "closed"))})
    return out


@pytest.mark.parametrize("order", [("phone", "region"), ("region", "phone")])
def test_area_code_determines_region_and_canaries_keep_it(order: tuple[str, str]) -> None:
    """Where the phone's area code determines the region, the relation is learned (and the
    independent status column relates to nothing); canaries keep it whichever of the two columns the
    table has first, while each column keeps the table's own mix."""
    sample = _phones(1500)
    info = _info(*(_col(c) for c in order), _col("status"))
    prof = profile(info, sample)
    assert any({r.a.column, r.b.column} == {"phone", "region"} for r in prof.relations.relations), prof.relations
    assert not any("status" in (r.a.column, r.b.column) for r in prof.relations.relations), prof.relations
    synth = Synthesizer(info, prof, locale="ko_KR", contacts=ContactAllocator(), seed=4)
    rows = [synth.row(RowContext(pk=str(10_000 + i))).values for i in range(300)]
    fits = sum(AREAS.get(re.split(r"-", r["phone"] or "")[0]) == r["region"] for r in rows)
    assert fits >= 0.95 * len(rows)
    regions = Counter(r["region"] for r in rows)
    assert set(regions) == set(AREAS.values()) and min(regions.values()) >= 0.1 * len(rows)
    assert {r["status"] for r in rows} == {"active", "dormant", "closed"}


def test_many_area_codes_per_state_at_the_end_of_an_address_are_related() -> None:
    """Fifty states written at the end of a US address, eight area codes each, in 2,000 rows: the
    sparse table's asymptotic chance (400 x 50 cells) exceeds what it observes, yet the relation of
    the phone's area code with the address's last word is learned (chance is measured by shuffling),
    and canaries take an area code of their own state."""
    rng = random.Random(6)
    states = [f"{a}{b}" for a in "ACGIMNOTVW" for b in "AKLTZ"]
    codes = {st: [str(200 + 8 * i + j) for j in range(8)] for i, st in enumerate(states)}
    sample: list[dict[str, str | None]] = []
    for i in range(2000):
        st = rng.choice(states)
        zipc = f" {rng.randint(10000, 99999)}" if rng.random() < 0.2 else ""
        sample.append({"id": str(i), "phone": f"({rng.choice(codes[st])}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
                       "address": f"{rng.randint(1, 999)} Oak St, Town{rng.randint(1, 400)}, {st}{zipc}"})
    info = _info(_col("phone"), _col("address"))
    prof = profile(info, sample)
    assert any({str(r.a), str(r.b)} == {"lead3(phone)", "tail(address)"} for r in prof.relations.relations), prof.relations
    synth = Synthesizer(info, prof, locale="en_US", contacts=ContactAllocator(), seed=4)
    rows = [synth.row(RowContext(pk=str(10_000 + i))).values for i in range(200)]
    state = {c: st for st, cs in codes.items() for c in cs}
    fits = sum(state.get((r["phone"] or "")[1:4]) == Feature("address", Kind.TAIL).of(r["address"]) for r in rows)
    assert fits >= 0.8 * len(rows), fits  # by chance: 2%


def test_a_location_goes_with_an_owned_number() -> None:
    """An owned number's area code is what it is: the location is drawn to go with it the way the
    table's rows do (a state whose customers have that area code), whichever column comes first."""
    rng = random.Random(2)
    states = {"IL": ("217", "309", "312"), "OR": ("503", "541", "971"), "TX": ("210", "214", "512"), "NY": ("212", "315", "518")}
    sample: list[dict[str, str | None]] = []
    for i in range(1200):
        st = rng.choice(list(states))
        sample.append({"id": str(i), "phone": f"({rng.choice(states[st])}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
                       "address": f"{rng.randint(1, 999)} {rng.choice(['Oak', 'Elm', 'Pine'])} St, Town{rng.randint(1, 30)}, {st}"})
    owned = [f"+1{code}555{n:04d}" for code in ("503", "212") for n in range(100)]
    area = {c: st for st, cs in states.items() for c in cs}
    info = _info(_col("phone"), _col("address"))
    prof = profile(info, sample)
    synth = Synthesizer(info, prof, locale="en_US", contacts=ContactAllocator(phone_numbers=owned), seed=5)
    rows = [synth.row(RowContext(pk=str(10_000 + i))).values for i in range(150)]
    fits = sum(area[re.sub(r"\D", "", r["phone"] or "")[-10:][:3]] == (r["address"] or "")[-2:] for r in rows)
    assert fits >= 0.8 * len(rows), fits  # by chance: a quarter


def test_independent_columns_relate_to_nothing() -> None:
    """Columns drawn independently of each other (region, status, a phone with random area codes, a
    signup date, an e-mail) yield no relation: chance is measured by shuffling, not assumed."""
    rng = random.Random(8)
    sample = [{"id": str(i), "region": rng.choice(list(AREAS.values())), "status": rng.choice(("a", "b", "c", "d")),
               "phone": f"{rng.choice(list(AREAS))}-{rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
               "created_at": f"{rng.randint(2015, 2024)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)} 10:00:00+00",
               "email": f"{rng.choice(('kim', 'lee', 'sky'))}{rng.randint(0, 99)}@{rng.choice(('a.kr', 'b.com', 'c.net'))}"}
              for i in range(2000)]
    info = _info(_col("region"), _col("status"), _col("phone"), _col("created_at", "D", "timestamptz"), _col("email"))
    assert not Relations.learn(info, sample)


def test_relations_hold_no_combination_fewer_than_k_rows_share() -> None:
    """A learned relation keeps only bucket pairs at least k sampled rows share; its conditional
    distribution still covers the rare rest (spread in proportion), and a value the sample never had
    is neither favoured nor refused."""
    sample = _phones(1500)
    sample[0]["region"] = "제주"  # one row's own combination
    prof = profile(_info(_col("phone"), _col("region")), sample)
    rel = next(r for r in prof.relations.relations if {r.a.column, r.b.column} == {"phone", "region"})
    assert all(n >= MIN_SHARED for n in rel.cells.values())
    assert not any("제주" in pair for pair in rel.cells)
    assert prof.relations.fit("region", "부산", {"phone": "051-300-1234"}, ["phone"]) == pytest.approx(1.0)
    assert prof.relations.fit("region", "서울", {"phone": "051-300-1234"}, ["phone"]) < 0.05
    assert prof.relations.fit("region", "서울", {"phone": "099-300-1234"}, ["phone"]) > 0.5  # an area code never seen
    assert prof.relations.fit("region", "서울", {"phone": "051-300-1234"}, []) == 1.0  # nothing given: no constraint


def test_birth_year_follows_the_digits_of_the_email() -> None:
    """Where e-mail local parts end in the birth year's last two digits, the relation between them is
    learned from the data (nobody listed it) and a canary's birth date is drawn to fit its e-mail."""
    rng = random.Random(2)
    sample = []
    for i in range(2000):
        born = dt.date(rng.randint(1960, 1999), rng.randint(1, 12), rng.randint(1, 28))
        sample.append({"id": str(i), "email": f"{rng.choice(('kim', 'lee', 'park', 'sky'))}{born.year % 100:02d}@mail{i % 5}.kr",
                       "birth_date": born.isoformat()})
    info = _info(_col("email"), _col("birth_date", "D", "date"))
    prof = profile(info, sample)
    assert any({(r.a.column, r.a.kind), (r.b.column, r.b.kind)} == {("email", Kind.YY), ("birth_date", Kind.YEAR)}
               for r in prof.relations.relations), prof.relations
    synth = Synthesizer(info, prof, locale="en_US", contacts=ContactAllocator(), seed=6)
    rows = [synth.row(RowContext(pk=str(10_000 + i))).values for i in range(300)]
    yy = [(m.group(1), r["birth_date"]) for r in rows if (m := re.search(r"(\d\d)@", r["email"] or ""))]
    related = [(y, b) for y, b in yy if 60 <= int(y) <= 99]  # digits the table pairs with a year
    assert len(related) >= 30
    assert sum(b is not None and b[2:4] == y for y, b in related) >= 0.9 * len(related)


def test_gender_follows_the_first_name() -> None:
    """A gender column that the first names determine is learned as related to them and drawn from
    the table's conditional distribution given a canary's first name."""
    names = {"James": "M", "Robert": "M", "John": "M", "David": "M", "Mary": "F", "Linda": "F", "Susan": "F", "Karen": "F"}
    rng = random.Random(4)
    sample = [{"id": str(i), "first_name": (first := rng.choice(list(names))), "last_name": rng.choice(("Smith", "Jones", "Brown")),
               "gender": names[first]} for i in range(1200)]
    info = _info(_col("first_name"), _col("last_name"), _col("gender"))
    prof = profile(info, sample)
    assert any({r.a.column, r.b.column} == {"first_name", "gender"} for r in prof.relations.relations), prof.relations
    synth = Synthesizer(info, prof, locale="en_US", contacts=ContactAllocator(), seed=3)
    rows = [synth.row(RowContext(pk=str(10_000 + i))).values for i in range(200)]
    known = [r for r in rows if r["first_name"] in names]
    assert len(known) >= 100 and sum(names[str(r["first_name"])] != r["gender"] for r in known) <= 0.02 * len(known), known
    assert {r["gender"] for r in rows} == {"M", "F"}


def test_rows_stay_deterministic_for_a_seed() -> None:
    """Drawing columns until they fit the table's relations keeps the synthesizer deterministic."""
    sample = _phones(1500)
    info = _info(_col("region"), _col("phone"), _col("status"))
    prof = profile(info, sample)
    made = [[Synthesizer(info, prof, locale="ko_KR", contacts=ContactAllocator(), seed=11).row(RowContext(pk=str(i))).values
             for i in range(40)] for _ in range(2)]
    assert made[0] == made[1]


async def test_feature_sql_counts_what_python_derives(target_dsn: str) -> None:
    """Every extractor's SQL gives what its Python form gives for the same text (NULLs, unicode,
    several '@', no digits), and a tally of several feature pairs in one GROUPING SETS scan counts
    exactly the joint values Python derives per row; the words tally counts each word's rows."""
    values = ["010-1234-5678", "+82 10-9876-5432", "02 300 1234", "서울특별시 강남구 테헤란로 12", " 12 Main St", "", "a b  c",
              "kim.minji92@naver.com", "x@y@Z.COM", "no-at-sign", "é1ü2@Ünï.kr", "1992-03-05", "2024-12-31 23:59:59+09",
              "12 Main St, Springfield, IL 62704", "PO Box 7 Dover DE 19901-0001", "4 Elm Rd, Troy, New York", "9 Oak Ave,", "IL\n",
              "x\ny 12", "a  b 1 x2 ", "a" * 300 + " " + "b" * 300 + " 1", "z " + "1a" * 150 + " q", "+1 (406) 555-0100",
              "1-406-555-0100", "  +380 44 123 4567", "\t+7 495 12", "+", "+9", "+82", "14065550100", "0", "tail@", "@", "@@x",
              "@lead9", "ü@ß@", "Jo-7 (x)", None]
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute("CREATE TABLE t (id serial PRIMARY KEY, a text, b text)")
        await conn.executemany("INSERT INTO t (a, b) VALUES ($1, $2)", [(v, values[(i * 5) % len(values)]) for i, v in enumerate(values)])
        for kind in Kind:
            feature = Feature("a", kind)
            got = await conn.fetch(f"SELECT a, {feature.sql('a')} AS f FROM t ORDER BY id")
            assert [r["f"] for r in got] == [feature.of(r["a"]) for r in got], kind
        rows = [dict(r) for r in await conn.fetch("SELECT a, b FROM t")]
        pairs = ((Feature("a", Kind.HEAD), Feature("b", Kind.LEAD2)), (Feature("b", Kind.DOMAIN), Feature("a", Kind.NULL)),
                 (Feature("a", Kind.FORM), Feature("b", Kind.YY)))
        tally = Tally("pairs", pairs)
        counted = {r["v"]: r["n"] for r in await conn.fetch(tally.query("t", lambda c: f"{c}::text"))}
        assert counted == Counter(tally.value(r, at) for r in rows for at in range(len(pairs)))
        counted = {r["v"]: r["n"] for r in await conn.fetch(Tally("w", each_word="a").query("t", lambda c: f"{c}::text"))}
        assert counted == Counter(w for r in rows for w in words(r["a"]))
    finally:
        await conn.close()


async def test_tally_of_a_large_table_counts_a_sample_of_its_pages(target_dsn: str) -> None:
    """A table beyond TALLY_ROWS is counted on a sample of its pages and the counts scaled, so the
    scan stays bounded; common joint values come out near their true counts."""
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute("CREATE TABLE t (id serial PRIMARY KEY, region text, postal text)")
        await conn.execute("INSERT INTO t (region, postal) SELECT (ARRAY['서울','부산','대구'])[1 + g % 3], lpad((g % 3)::text, 2, '0') || '123'"
                           " FROM generate_series(1, 60000) g")
        tally = Tally("pairs", ((Feature("region", Kind.VALUE), Feature("postal", Kind.LEAD2)),), rows=TALLY_ROWS * 5)
        assert "TABLESAMPLE SYSTEM" in tally.query("t", lambda c: c)
        counted = {r["v"]: r["n"] for r in await conn.fetch(tally.query("t", lambda c: f"{c}::text"))}
        assert len(counted) == 3
        assert all(0.7 * 20000 <= n <= 1.3 * 20000 for n in counted.values()), counted
    finally:
        await conn.close()


def test_pair_keys_match_how_common_real_pairs_are() -> None:
    """A key across columns (an address's first word with its postcode's leading digits) and a rarest-
    word key make canaries' pairs and words as common as real rows': a canary takes a region whose
    postcode is another region's only as often as real rows do, and a word nobody has as often."""
    rel = (Feature("address", Kind.HEAD), Feature("postal_code", Kind.LEAD2))
    tally = Tally("pairs", (rel,))
    real = []
    for i in range(2000):
        region = list(POSTAL)[i % 5]
        postal = POSTAL[region] if i % 50 else POSTAL[list(POSTAL)[(i + 1) % 5]]  # 2% a mismatched pair
        real.append({"address": f"{region} 중앙로 {i}" + (f" 희망{chr(0xAC00 + i)}동" if i % 10 == 0 else ""), "postal_code": f"{postal}{i % 1000:03d}"})
    pairs = Counter(tally.value(r) for r in real)
    word_counts = Counter(w for r in real for w in words(r["address"]))
    keys = (("address", same), ("pairs", Across(tally)), ("address", Rarest(words)))
    counts = (Counter(r["address"] for r in real), pairs, word_counts)
    targets = FrequencyMatch.real_targets(keys, counts, real[:1000])
    pool: list[dict[str, str | None]] = []
    for i in range(3000):
        region = list(POSTAL)[i % 5]
        postal = POSTAL[region] if i % 3 else POSTAL[list(POSTAL)[(i + 2) % 5]]  # a third mismatched
        pool.append({"address": f"{region} 중앙로 {5000 + i}" + (f" 새{chr(0xAC00 + i)}동" if i % 4 == 0 else ""), "postal_code": f"{postal}{i % 1000:03d}"})
    match = FrequencyMatch(keys, counts, targets, pool)
    rng = random.Random(5)
    drawn = [d for d in (match.draw(rng) for _ in range(300)) if d is not None]
    assert len(drawn) == 300
    mismatched = sum(pairs[tally.value(d)] < 100 for d in drawn)
    assert mismatched <= 0.06 * len(drawn)  # real rows: 2% (the pool offers a third)
    fresh = sum(any(word_counts[w] == 0 for w in words(d["address"])) for d in drawn)
    assert 0.04 * len(drawn) <= fresh <= 0.2 * len(drawn)  # real rows: 10% hold a word nobody else has (the pool: 25%)
    assert OTHER not in "".join(str(d) for d in drawn)


async def _seed(target_dsn: str, make_config: MakeConfig, store: ControlStore, keyring: Keyring, count: int) -> tuple[list[dict[str, str | None]], set[int]]:
    registry = Registry(store.pool, keyring)
    cfg = make_config(datastores=[{"name": "shop", "dsn": target_dsn, "tables": [{"table": "public.customers", "count": count}]}])
    await PostgresSeeder.from_config(cfg, "shop", registry, seed=1).apply()
    ids = {int(c.location["pk"]) for c in await registry.active("shop")}
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute("SET row_security = off")
        rows = [{k: (None if v is None else str(v)) for k, v in dict(r).items()} for r in await conn.fetch("SELECT * FROM customers")]
    finally:
        await conn.close()
    return rows, ids


async def test_seeded_canaries_keep_region_and_area_code(target_dsn: str, make_config: MakeConfig, store: ControlStore,
                                                          keyring: Keyring) -> None:
    """Seeded into a real table whose phones' area codes determine the region, canaries have the
    region of their area code."""
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute("CREATE TABLE customers (id bigserial PRIMARY KEY, full_name text NOT NULL, phone text, region text,"
                           " created_at timestamptz NOT NULL DEFAULT now())")
        await conn.executemany("INSERT INTO customers (id, full_name, phone, region, created_at) VALUES ($1, $2, $3, $4, $5)",
                               [(i * 2, f"Kim {i}", r["phone"], r["region"], dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(hours=i))
                                for i, r in enumerate(_phones(3000, seed=9), start=1)])
    finally:
        await conn.close()
    rows, ids = await _seed(target_dsn, make_config, store, keyring, 60)
    canaries = [r for r in rows if int(str(r["id"])) in ids]
    assert len(canaries) == 60
    assert sum(AREAS.get((r["phone"] or "").split("-")[0]) == r["region"] for r in canaries) >= 57


async def test_seeded_locations_keep_pairs_and_nulls_of_the_table(target_dsn: str, make_config: MakeConfig, store: ControlStore,
                                                                  keyring: Keyring) -> None:
    """Seeded into a table whose postcodes follow the address's region and where rows without an
    address have no postcode either: canaries' (region, postcode area) pairs are ones the table has
    many of, no canary has a postcode without an address, and about as many as real rows have
    neither."""
    rng = random.Random(12)
    real = []
    for i in range(1, 4001):
        region = rng.choices(list(REGIONS), weights=(40, 20, 15, 15, 10))[0]
        if rng.random() < 0.1:
            real.append((i * 2, f"Kim {i}", None, None))
            continue
        address = f"{region} {rng.choice(('중앙로', '희망로', '평화로', '시청로'))} {rng.randint(1, 300)}, {rng.randint(101, 112)}동 {rng.randint(1, 20)}0{rng.randint(1, 4)}호"
        real.append((i * 2, f"Kim {i}", address, f"{POSTAL[region]}{rng.randint(0, 999):03d}"))
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute("CREATE TABLE customers (id bigserial PRIMARY KEY, full_name text NOT NULL, address text, postal_code text)")
        await conn.executemany("INSERT INTO customers (id, full_name, address, postal_code) VALUES ($1, $2, $3, $4)", real)
    finally:
        await conn.close()
    rows, ids = await _seed(target_dsn, make_config, store, keyring, 80)
    canaries = [r for r in rows if int(str(r["id"])) in ids]
    assert len(canaries) == 80
    assert not [r for r in canaries if r["address"] is None and r["postal_code"] is not None]
    assert 1 <= sum(r["address"] is None for r in canaries) <= 20
    pairs = Counter(((r["address"] or "").split(" ")[0], (r["postal_code"] or "")[:2]) for r in rows)
    assert all(pairs[((r["address"] or "").split(" ")[0], (r["postal_code"] or "")[:2])] >= 100 for r in canaries)
    real_addresses = {r[2] for r in real}
    assert not [r for r in canaries if r["address"] is not None and r["address"] in real_addresses]
