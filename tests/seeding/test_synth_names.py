"""Names and e-mail local parts learned from the table (canary.seeding.synth.names: NameModel, email uses)
and the romanisation behind them (canary.seeding.synth.romanize)."""

from __future__ import annotations

import random
from collections import Counter

from faker import Faker

from canary.seeding.catalog import Column, Constraint, TableInfo
from canary.seeding.synth.contacts import ContactAllocator
from canary.seeding.synth.names import NameModel, email_use, email_uses, split_name
from canary.seeding.synth.profile import profile
from canary.seeding.synth.romanize import rr, spell, spellings
from canary.seeding.synth.synthesizer import RowContext, Synthesizer


def test_revised_romanization_and_personal_spellings() -> None:
    """Hangul is written in the Revised Romanization syllable by syllable, surnames in their
    customary spelling first, and personal variants are offered (joon, yun)."""
    assert rr("서연") == "seoyeon" and rr("민준") == "minjun" and rr("김") == "gim"
    assert spellings("김", surname=True)[:2] == ("kim", "gim")
    assert spellings("박", surname=True)[0] == "park"
    assert "minjoon" in spellings("민준") and "seoyun" in spellings("서연")
    assert spellings("John") == ("john",)
    rng = random.Random(0)
    assert Counter(spell("이", rng, surname=True) for _ in range(200)).most_common(1)[0][0] == "lee"


def test_split_name_layouts() -> None:
    """Full names split into layout, surname and given name, two-syllable surnames included."""
    assert split_name("김민준") == ("ko", "김", "민준")
    assert split_name("남궁민수") == ("ko", "남궁", "민수")
    assert split_name("이 서연") == ("ko_sp", "이", "서연")
    assert split_name("John Smith") == ("en", "Smith", "John")
    assert split_name("Madonna") is None


def _real_names(rng: random.Random, n: int = 3000) -> list[str]:
    surnames = ["김"] * 40 + ["이"] * 30 + ["박"] * 15 + ["최"] * 10 + ["독"] * 1  # 독: rare
    givens = ["민준", "서연", "지훈", "하은", "도윤"]
    out = []
    for i in range(n):
        given = rng.choice(givens) if rng.random() < 0.5 else rng.choice("민서지하도예") + rng.choice("준연훈은윤우")
        out.append(f"{rng.choice(surnames)}{given}" if i % 50 else f"Person{i} Smith")
    return out


def test_name_model_follows_the_tables_frequencies_k_anonymously() -> None:
    """Canary names take the table's surname shares (not Faker's), its layouts, its shared given
    names at their rate, compose the rest from shared syllables, and never use a part fewer than k
    sampled rows share (the one-off Latin names and the rare surname)."""
    rng = random.Random(1)
    real = _real_names(rng)
    model = NameModel.of(real)
    assert model is not None
    fake, latin = Faker("ko_KR"), Faker("en_US")
    fake.seed_instance(1)
    latin.seed_instance(1)
    drawn = [model.draw(rng, fake, latin) for _ in range(3000)]
    surnames = Counter(s for _, s, _ in drawn)
    assert 0.33 < surnames["김"] / 3000 < 0.47 and 0.24 < surnames["이"] / 3000 < 0.36
    assert all(full == f"{s}{g}" for g, s, full in drawn if split_name(full) and split_name(full)[0] == "ko")  # type: ignore[index]
    layouts = Counter(split_name(full)[0] for _, _, full in drawn)  # type: ignore[index]
    assert 0.005 < layouts["en"] / 3000 < 0.04
    assert not any(full.startswith("Person") for _, _, full in drawn)  # a one-off name is no one's to copy
    common = sum(g in ("민준", "서연", "지훈", "하은", "도윤") for g, _, _ in drawn) / 3000
    assert 0.45 < common < 0.65


def test_email_local_parts_spell_the_rows_own_name_at_the_tables_rate() -> None:
    """The profile measures how often local parts spell the row's own surname / given name and the
    shapes of each kind; a local part of someone else's name counts as a handle."""
    sample = []
    for i in range(300):
        if i % 3 == 0:
            sample.append({"full_name": "김민준", "email": f"minjunkim{i}@naver.com"})
        elif i % 3 == 1:
            sample.append({"full_name": "박서연", "email": f"happy{i}@gmail.com"})
        else:
            sample.append({"full_name": "이지훈", "email": f"lee.dragon{i}@daum.net"})
    uses = email_uses(sample, "email", "full_name")
    counts = dict(zip(uses["email_uses"].values, (round(c) for c in uses["email_uses"].cum)))
    assert set(uses["email_uses"].values) == {"both", "none", "surname"}
    assert counts[uses["email_uses"].values[0]] == 100
    assert email_use("sooyeon.park", "박", "서연") == "surname"
    assert email_use("seoyun88", "박", "서연") == "given"
    assert uses["email_locals_by_use"]["both"].values == ("w999", "w99", "w9")


def test_canary_name_fits_its_owned_mailbox() -> None:
    """With owned mailboxes, each canary's name is one its mailbox's local part spells as fully as
    any candidate's (surname and given name when both are spelled); a handle mailbox gets a name
    drawn as usual."""

    def col(name: str, category: str = "S", base: str = "text") -> Column:
        return Column(name=name, type=base, category=category, base_type=base, not_null=name == "id", default=None, identity="",
                      generated=False, max_length=None, numeric_precision=None, numeric_scale=None)

    info = TableInfo("public", "customers", 1, "r", "owner", False, False, (col("id", "N", "int8"), col("full_name"), col("email")),
                     (Constraint("customers_pkey", "p", ("id",), "PRIMARY KEY (id)"),), (), ())
    rng = random.Random(5)
    names = [f"{rng.choice('김이박최정강조윤장임')}{rng.choice('민서지하도예시주건현수영')}{rng.choice('준연훈은윤우호아원희빈린')}" for _ in range(1500)]
    names += ["김민준", "박서연"] * 10
    sample = [{"id": str(i), "full_name": n, "email": f"user{i}@naver.com"} for i, n in enumerate(names)]
    boxes = ["minjun.kim88@naver.com", "parkseoyeon@gmail.com", "sunnyday77@daum.net"]
    synth = Synthesizer(info, profile(info, sample), locale="ko_KR", contacts=ContactAllocator(mailboxes=boxes), seed=2)
    rows = [synth.row(RowContext(pk=str(10_000 + i))).values for i in range(3)]
    assert [r["email"] for r in rows] == boxes
    assert rows[0]["full_name"] == "김민준"
    assert rows[1]["full_name"] == "박서연"
    assert email_use("sunnyday77", (split_name(str(rows[2]["full_name"])) or ("", "", ""))[1], "") in ("none", "surname")


def test_a_mailbox_is_read_as_names_as_likely_as_people_have_them() -> None:
    """An owned mailbox's local part is read as its owner's names as likely as people have them,
    against a handle word as often as the table's handles use it: ``sunny`` + digits, a handle many
    rows use, keeps canaries' surnames at the table's shares instead of making every one of them a
    선 (``sun``, one row in a hundred); ``kimminjun`` is still 김민준 and ``seoyeon.park`` 박서연."""
    rng = random.Random(11)
    surnames = ["김"] * 40 + ["이"] * 30 + ["박"] * 20 + ["최"] * 9 + ["선"]
    sample: list[dict[str, str | None]] = []
    for i in range(2000):
        sur = "김" if i < 10 else "박" if i < 20 else rng.choice(surnames)
        given = "민준" if i < 10 else "서연" if i < 20 else rng.choice("민서지하도예시주건현수영") + rng.choice("준연훈은윤우호아원희빈린") + rng.choice("가나다라마바사")
        local = f"{rng.choice(('sunny', 'happy', 'star'))}{rng.randint(10, 99)}" if i % 3 == 0 else \
            f"{spell(given, rng)}{spell(sur, rng, surname=True)}{rng.randint(70, 99)}"
        sample.append({"id": str(i), "full_name": f"{sur}{given}", "email": f"{local}@naver.com"})
    info = TableInfo("public", "customers", 1, "r", "owner", False, False,
                     (_col("id", "N", "int8"), _col("full_name"), _col("email")),
                     (Constraint("customers_pkey", "p", ("id",), "PRIMARY KEY (id)"),), (), ())
    boxes = [f"sunny{i}@naver.com" for i in range(100, 160)] + ["kimminjun88@naver.com", "seoyeon.park@naver.com"]
    synth = Synthesizer(info, profile(info, sample), locale="ko_KR", contacts=ContactAllocator(mailboxes=boxes), seed=3)
    rows = [synth.row(RowContext(pk=str(10_000 + i))).values for i in range(len(boxes))]
    assert [r["email"] for r in rows] == boxes
    handles = Counter(str(r["full_name"])[:1] for r in rows[:60])
    assert handles["선"] <= 6 and handles["김"] >= 12, handles
    assert rows[60]["full_name"] == "김민준" and rows[61]["full_name"] == "박서연"


def _col(name: str, category: str = "S", base: str = "text") -> Column:
    return Column(name=name, type=base, category=category, base_type=base, not_null=name == "id", default=None, identity="",
                  generated=False, max_length=None, numeric_precision=None, numeric_scale=None)


def test_a_latin_mailbox_names_its_owner_even_beyond_the_tables_names() -> None:
    """In a Latin-script table, a mailbox spelling names no candidate has is still read as names:
    ``jeremybanks`` (two names people have, though no sampled row) is Jeremy Banks, and
    ``adamszorvath7`` (a given name the table has, then a word no list has) is Adams Zorvath; a
    handle the table's rows use (``tiger``) is no one's name, nor is ``pwensford`` (a word before
    a surname) anyone's given name; ``banks.jeremy`` is written Jeremy Banks (last.first)."""
    rng = random.Random(12)
    fake = Faker("en_US")
    fake.seed_instance(12)
    givens = sorted({fake.first_name().lower() for _ in range(200)} - {"jeremy", "adam"})[:40]
    givens = givens[:39] + ["adams"]
    surnames = sorted({fake.last_name().lower() for _ in range(200)} - {"banks", "adams", "ford"})[:39] + ["ford"]
    sample: list[dict[str, str | None]] = []
    for i in range(2000):
        first, last = rng.choice(givens), rng.choice(surnames)
        local = f"tiger{rng.randint(10, 99)}" if i % 4 == 0 else f"{first[0]}{last}{rng.randint(1, 99)}"
        sample.append({"id": str(i), "full_name": f"{first.title()} {last.title()}", "email": f"{local}@gmail.com"})
    info = TableInfo("public", "customers", 1, "r", "owner", False, False,
                     (_col("id", "N", "int8"), _col("full_name"), _col("email")),
                     (Constraint("customers_pkey", "p", ("id",), "PRIMARY KEY (id)"),), (), ())
    boxes = ["jeremybanks@gmail.com", "adamszorvath7@gmail.com", "pwensford@gmail.com", "banks.jeremy@gmail.com"] + [
        f"tiger{i}@gmail.com" for i in range(100, 120)]
    synth = Synthesizer(info, profile(info, sample), locale="en_US", contacts=ContactAllocator(mailboxes=boxes), seed=5)
    rows = [synth.row(RowContext(pk=str(10_000 + i))).values for i in range(len(boxes))]
    assert [r["email"] for r in rows] == boxes
    assert rows[0]["full_name"] == "Jeremy Banks" and rows[1]["full_name"] == "Adams Zorvath", rows[:2]
    assert "pwens" not in str(rows[2]["full_name"]).lower() and rows[3]["full_name"] == "Jeremy Banks", rows[2:4]
    assert not any("tiger" in str(r["full_name"]).lower() for r in rows[4:])


def test_faker_surnames_are_drawn_at_fakers_own_weights() -> None:
    """Surnames beyond the table's shared ones come from Faker's list for the locale at Faker's weights,
    drawn from a list weighed once (Faker sums a thousand US weights on every call); a locale whose
    ``last_name`` is not one weighted list (ja_JP: a plain tuple) is left to Faker."""
    from faker.providers.person import Provider

    from canary.seeding.synth.names import _faker_surnames

    fake = Faker("en_US")
    weights: dict[str, float] = dict(next(p for p in fake.providers if isinstance(p, Provider)).last_names)  # type: ignore[arg-type]
    drawn = _faker_surnames(fake)
    assert set(drawn.values) == set(weights) and _faker_surnames(fake) is drawn
    rng = random.Random(3)
    got = Counter(drawn.pick(rng) for _ in range(40_000))
    share = weights["Smith"] / sum(weights.values())
    assert abs(got["Smith"] / 40_000 - share) < 0.2 * share
    assert not _faker_surnames(Faker("ja_JP"))
