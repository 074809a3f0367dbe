"""Synthesis building blocks and the SQL quoting helper (checked against a real server)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from canary.errors import SeedError, UnsafeIdentifierError
from canary.postgres.sql import array_literal, ident, literal, parse_target
from canary.seeding.catalog import Column, Constraint, TableInfo, check_hints
from canary.seeding.synth.contacts import ContactAllocator, format_phone
from canary.seeding.synth.profile import profile
from canary.seeding.synth.shapes import MIN_SHARED, infer_locale, local_shape, script_of, shape
from canary.seeding.synth.synthesizer import RowContext, Synthesizer
from canary.store.embedded import PostgresServer


def _col(name: str, category: str = "S", base: str = "text", not_null: bool = False, **kw: object) -> Column:
    return Column(name=name, type=base, category=category, base_type=base, not_null=not_null, default=None, identity="",
                  generated=False, max_length=kw.get("max_length"), numeric_precision=None, numeric_scale=kw.get("scale"))  # type: ignore[arg-type]


def _info(cols: list[Column], checks: tuple[Constraint, ...] = ()) -> TableInfo:
    return TableInfo("public", "customers", 1, "r", "owner", False, False, (_col("id", "N", "int8", True), *cols),
                     (Constraint("customers_pkey", "p", ("id",), "PRIMARY KEY (id)"), *checks), (), ())


@pytest.mark.parametrize("name", ['customers"; DROP TABLE x; --', "a.b.c", "1abc", "", "tab le", "x" * 64, "public.t-1"])
def test_parse_target_refuses_non_plain_names(name: str) -> None:
    """Hostile, dotted-thrice, numeric-first, empty, spaced, over-long and dashed names are refused."""
    with pytest.raises(UnsafeIdentifierError):
        parse_target(name)


@pytest.mark.parametrize("name,expected", [("customers", ("public", "customers")), ("shop.orders", ("shop", "orders")), ("s$1._t", ("s$1", "_t"))])
def test_parse_target_accepts_plain_names(name: str, expected: tuple[str, str]) -> None:
    """Plain 'table' defaults to schema public; 'schema.table' splits."""
    assert parse_target(name) == expected


def test_ident_and_literal_refuse_nul_and_overlong() -> None:
    """NUL bytes and identifiers PostgreSQL would truncate are errors, never silently altered."""
    for bad in ("a\x00b", "é" * 32):
        with pytest.raises(UnsafeIdentifierError):
            ident(bad)
    with pytest.raises(UnsafeIdentifierError):
        literal("a\x00")


@pytest.fixture(scope="module")
def admin_dsn(pg_server: PostgresServer) -> Iterator[str]:
    yield pg_server.dsn()


_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


async def _roundtrip(dsn: str, name: str, value: str, items: list[str]) -> tuple[str, str, list[str]]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(f"SELECT 1 AS {ident(name)}, {literal(value)}::text AS v, {literal(array_literal(items))}::text[] AS a")
        return list(row.keys())[0], row["v"], list(row["a"])
    finally:
        await conn.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_TEXT.filter(lambda s: 0 < len(s.encode()) <= 63), value=_TEXT, items=st.lists(_TEXT, max_size=5))
def test_quoting_round_trips_through_postgresql(admin_dsn: str, name: str, value: str, items: list[str]) -> None:
    """Any identifier, literal and array element comes back from the server exactly as given."""
    assert asyncio.run(_roundtrip(admin_dsn, name, value, items)) == (name, value, items)


def test_shapes_and_scripts() -> None:
    """Shapes keep character classes and separators; scripts and locales are recognised."""
    assert shape("Ab-12 가あ漢") == "Aa-99 가あ漢"
    assert local_shape("kim.minji92") == "w.w99" and local_shape("j_smith") == "w_w"
    assert script_of(["김민지", "이서준"]) == "hangul" and script_of(["田中 さくら"]) == "kana" and script_of(["John"]) == "latin"
    assert infer_locale("hangul", "en_US") == "ko_KR" and infer_locale("kana", "en_US") == "ja_JP" and infer_locale("latin", "en_US") == "en_US"


@pytest.mark.parametrize("e164,template,locale,expected", [
    ("+821055500123", "999-9999-9999", "ko_KR", "010-5550-0123"),
    ("+819012345678", "999-9999-9999", "ja_JP", "090-1234-5678"),
    ("+15550100123", "(999) 999-9999", "en_US", "(555) 010-0123"),
    ("+15550100123", "+9 999 999 9999", "en_US", "+1 555 010 0123"),
    ("+15550100123", "999-9999", "en_US", "555-010-0123"),
    ("+13125550123", "9-999-999-9999", "en_US", "1-312-555-0123"),
    ("+13125550123", "99999999999", "en_US", "13125550123"),
    ("+821055500123", "99-99-9999-9999", "ko_KR", "82-10-5550-0123"),
])
def test_owned_numbers_take_the_tables_phone_format(e164: str, template: str, locale: str, expected: str) -> None:
    """An owned E.164 number is rendered in the table's own format (national or international)."""
    assert format_phone(e164, template, locale) == expected


def test_profile_keeps_only_shared_values() -> None:
    """The profile never keeps a value fewer than MIN_SHARED sampled rows share (no real person's data)."""
    info = _info([_col("email"), _col("tier"), _col("full_name")])
    sample = [{"id": str(i), "email": f"p{i}@gmail.com", "tier": ["gold", "basic", "basic"][i % 3], "full_name": f"Name {i}"} for i in range(60)]
    sample.append({"id": "99", "email": "x@y.com", "tier": "platinum", "full_name": "Unique Person"})
    prof = profile(info, sample)
    assert set(prof.columns["tier"].categorical.values) == {"gold", "basic"}
    assert not prof.columns["full_name"].categorical and not prof.columns["email"].categorical
    for col in prof.columns.values():
        assert all(str(v) not in ("Unique Person", "x@y.com", "platinum") for v in col.categorical.values)
    assert MIN_SHARED >= 3


def test_a_numeric_columns_tail_is_kept_beside_its_common_values() -> None:
    """Order totals of one or more items at twelve prices: single items are common values (drawn as
    categories), baskets of several make a tail of values few rows share. Canaries draw from the tail
    as often as real rows hold one, interpolated (never copying a total one row holds), so their
    upper quantiles are the table's: drawn from the common values alone, the 90th percentile was the
    dearest single item and a customer's average total gave canaries away."""
    rng = random.Random(4)
    prices = (9900, 12900, 15000, 19800, 23900, 29000, 35000, 49000, 89000, 129000, 4500, 7800)
    totals = [sum(rng.choice(prices) for _ in range(1 + int(rng.expovariate(0.8)))) for _ in range(3000)]
    info = _info([_col("total", "N", "int8", True)])
    prof = profile(info, [{"id": str(i), "total": str(t)} for i, t in enumerate(totals)])
    assert prof.columns["total"].categorical, "the single-item prices are common values"
    synth = Synthesizer(info, prof, locale="en_US", contacts=ContactAllocator(), seed=5)
    made = sorted(int(synth.row(RowContext(pk=str(10_000 + i))).values["total"] or 0) for i in range(3000))
    real = sorted(totals)
    for q in (0.5, 0.75, 0.9, 0.95):
        assert abs(made[int(q * 3000)] - real[int(q * 3000)]) <= 0.12 * real[int(q * 3000)], (q, made[int(q * 3000)], real[int(q * 3000)])
    held_once = {t for t in totals if totals.count(t) == 1}
    assert sum(m in held_once for m in made) <= 0.05 * len(made)


def test_korean_rows_from_pools_are_unique_and_consistent() -> None:
    """A Korean table yields Hangul names, pool e-mail domains with the table's local-part shape, and
    owned phones formatted like the table's; every contact point is unique."""
    info = _info([_col("full_name"), _col("email"), _col("phone")])
    sample = [{"id": str(i), "full_name": "김민지", "email": f"minji.kim{i:02d}@naver.com", "phone": f"010-1234-{i:04d}"} for i in range(50)]
    prof = profile(info, sample)
    pool = ContactAllocator(["mail.hanbit-post.kr"], [f"+8210555001{i:02d}" for i in range(40)], rng=random.Random(1))
    synth = Synthesizer(info, prof, locale="ko_KR", contacts=pool, seed=1)
    rows = [synth.row(RowContext(pk=str(1000 + i))) for i in range(30)]
    assert all(script_of([r.values["full_name"] or ""]) == "hangul" for r in rows)
    emails = [r.values["email"] or "" for r in rows]
    assert len(set(emails)) == 30 and all(e.endswith("@mail.hanbit-post.kr") and local_shape(e.split("@")[0]) == "w.w99" for e in emails)
    phones = [r.values["phone"] or "" for r in rows]
    assert len(set(phones)) == 30 and all(shape(p) == "999-9999-9999" and p.startswith("010-5550-") for p in phones)


def test_phone_pool_exhaustion_is_a_clear_error() -> None:
    """When every owned number is in use, seeding stops with a SeedError naming the pool."""
    pool = ContactAllocator([], ["+15550100001"], rng=random.Random(2))
    assert pool.phone() == "+15550100001"
    with pytest.raises(SeedError, match="phone pool is exhausted"):
        pool.phone()


def test_check_constraints_guide_values() -> None:
    """IN-lists and numeric bounds of CHECK constraints are parsed and honoured by the synthesizer."""
    checks = (
        Constraint("c_status", "c", ("status",), "CHECK ((status = ANY (ARRAY['new'::text, 'it''s'::text])))"),
        Constraint("c_qty", "c", ("qty",), "CHECK (((qty >= 1) AND (qty <= 20)))"),
        Constraint("c_bal", "c", ("balance",), "CHECK ((balance > (0)::numeric))"),
    )
    info = _info([_col("status", not_null=True), _col("qty", "N", "int4", True), _col("balance", "N", "numeric", True, scale=2)], checks)
    hints = check_hints(info)
    assert hints["status"].allowed == ("new", "it's") and (hints["qty"].low, hints["qty"].high) == (1.0, 20.0)
    assert hints["balance"].low == 0.0 and hints["balance"].low_strict
    synth = Synthesizer(info, profile(info, []), locale="en_US", contacts=ContactAllocator(), seed=3)
    for i in range(200):
        v = synth.row(RowContext(pk=str(i))).values
        assert v["status"] in ("new", "it's") and 1 <= int(v["qty"] or 0) <= 20 and float(v["balance"] or 0) > 0


def test_a_given_value_is_taken_as_it_is_with_the_tables_nulls() -> None:
    """A value given with the row (an order's ship-to address, copied from its customer) is written as
    given, nothing composed for it, and the column is NULL as often as the table's is; without one the
    column is made as any other."""
    info = _info([_col("address"), _col("status")])
    sample = [{"id": str(i), "address": None if i % 2 else f"{100 + i} Main St, Springfield, IL", "status": "paid"} for i in range(400)]
    synth = Synthesizer(info, profile(info, sample), locale="en_US", contacts=ContactAllocator(), seed=5)
    given = [synth.row(RowContext(pk=str(1000 + i), given=(("address", "7 Elm Rd, Dover, DE"),))).values["address"] for i in range(400)]
    assert set(given) == {"7 Elm Rd, Dover, DE", None}
    assert 0.4 < given.count(None) / 400 < 0.6
    made = [synth.row(RowContext(pk=str(2000 + i))).values["address"] for i in range(50)]
    assert "7 Elm Rd, Dover, DE" not in made and any(made)
