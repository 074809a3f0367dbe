"""The whole-table counts seeding matches frequencies with (synth/frequency.py ValueCounts, synthesizer.py
Apart): derivations that share a step count what each computed alone would, and a contact point's
share of its location reads the count of the contact's feature alone whichever pair it belongs to."""

from __future__ import annotations

from collections import Counter

from canary.seeding.synth.frequency import ValueCounts, given_key, same, shape_key, surname_key
from canary.seeding.synth.relations import Feature, Kind, Tally
from canary.seeding.synth.synthesizer import Apart

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

