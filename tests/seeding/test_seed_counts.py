"""The whole-table counts seeding matches frequencies with (synth/frequency.py ValueCounts, synthesizer.py
Apart): derivations that share a step count what each computed alone would, and a contact point's
share of its location reads the count of the contact's feature alone whichever pair it belongs to."""

from __future__ import annotations

from collections import Counter

import asyncpg
from testkit import MakeConfig

from canary.crypto import Keyring
from canary.seeding import postgres as pgseed
from canary.seeding.catalog import introspect
from canary.seeding.postgres import PostgresSeeder
from canary.seeding.synth.frequency import ValueCounts, given_key, same, shape_key, surname_key
from canary.seeding.synth.relations import Feature, Kind, Tally
from canary.seeding.synth.synthesizer import Apart
from canary.store import ControlStore
from canary.store.registry import Registry

NAMES = ["김민준", "김 서연", "John Smith", "Mary Smith", "Prince", None, "이 민준", "Jane Q Public", "佐藤 健", "김민준"]


def test_derivations_sharing_a_split_count_as_each_alone() -> None:
    """Surname and given-name counts taken from one split per value equal those of each derivation
    applied on its own, for values one row holds and values several rows hold."""
    counts = ValueCounts([same, surname_key, given_key, shape_key], expected=100)
    rows = Counter(NAMES)
    counts.add_all([(v, n) for v, n in rows.items()] + [("12 Oak St", 1), ("7 Oak St", 3)])
    for fn in (surname_key, given_key, shape_key):
        want: Counter[str | None] = Counter()
        for v, n in [*rows.items(), ("12 Oak St", 1), ("7 Oak St", 3)]:
            want[fn(v)] += n
        assert counts.derived(fn) == want
    assert counts["김민준"] == 2 and counts["Prince"] == 1 and counts["nobody"] in (0, 1)


def test_apart_share_reads_the_contact_feature_alone_for_every_pair() -> None:
    """With one contact feature paired with two location features, the tally counts the feature alone
    once, and each pair's share is count(pair) / count(feature alone) (the second pair too)."""
    area, region, city = Feature("phone", Kind.AREA), Feature("region", Kind.VALUE), Feature("city", Kind.VALUE)
    tally = Tally("apart(t)", ((area, region), (area, city), (area,)), rows=1000)
    row = {"phone": "02-555-0100", "region": "Seoul", "city": "Jongno"}
    counts: Counter[str | None] = Counter({tally.value(row, 0): 30, tally.value(row, 1): 12, tally.value(row, 2): 40})
    firsts = Apart.of(area, region, tally, 0, counts, [row], related=True)
    seconds = Apart.of(area, city, tally, 1, counts, [row], related=True)
    assert firsts.share(row) == 30 / 40
    assert seconds.share(row) == 12 / 40
    assert "GROUPING SETS ((x0, x1), (x0, x2), (x0))" in tally.query('"t"', lambda c: c)


HOSTILE = ["plain", "tab\there", "new\nline", "back\\slash", "\\N", "cr\rlf\r\n", "\\t literal", "한글 주소 12", "x\x1dy", "", " ",
           "ends with backslash\\", "bell\x07 and \x0b vt \x0c ff \x08 bs", "a" * 3000]


async def test_whole_table_counts_read_every_value_as_the_table_holds_it(
        target_dsn: str, make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """Values with tabs, newlines, backslashes, the text \\N, NULL and long text are counted exactly as the
    table holds them (the counts arrive as COPY text, streamed through a worker thread in chunks), and
    tallies counted in one joint query read what each counted alone would."""
    rows: list[tuple[str | None, str | None]] = []
    for i in range(4000):
        v = HOSTILE[i % len(HOSTILE)] if i % 3 else f"distinct value {i}"
        rows.append((v if i % 17 else None, f"{i % 7}-{v[:3] if v else ''}"))
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute("CREATE TABLE public.t (id int PRIMARY KEY, a text, b text)")
        await conn.executemany("INSERT INTO public.t VALUES ($1, $2, $3)", [(i, a, b) for i, (a, b) in enumerate(rows)])
        info = await introspect(conn, "public.t")
        a, b = Feature("a", Kind.VALUE), Feature("b", Kind.HEAD)
        tallies = [Tally("one", ((a, b), (b,)), rows=4000), Tally("two", ((b,), (a,)), rows=4000)]
        cfg = make_config(datastores=[{"name": "shop", "dsn": target_dsn, "tables": [{"table": "public.t", "count": 1}]}])
        seeder = PostgresSeeder(cfg.datastores[0], Registry(store.pool, keyring), seed=3)
        pgseed.COUNT_CHUNK = 4096  # many chunks, lines cut at their ends
        try:
            async with conn.transaction():
                counts, tallied = await seeder._whole_table_counts(conn, info, {"a": [same, shape_key], "b": [same]}, tallies)
        finally:
            pgseed.COUNT_CHUNK = 1 << 20
    finally:
        await conn.close()
    want_a = Counter(a for a, _ in rows)
    assert all(counts["a"][v] == n for v, n in want_a.items() if n >= 2)
    assert all(counts["a"][v] == 1 for v, n in want_a.items() if n == 1)
    assert counts["a"].derived(shape_key) == Counter(shape_key(v) for v, _ in rows)
    assert all(counts["b"][v] == n for v, n in Counter(b for _, b in rows).items() if n >= 2)
    for tally in tallies:
        for at in range(len(tally.sets)):
            want = Counter(tally.value({"a": x, "b": y}, at) for x, y in rows)
            assert all(tallied[tally.name][v] == n for v, n in want.items() if n >= 2), (tally.name, at)
