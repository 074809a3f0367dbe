"""Canary e-mail values that blend in: the digits of a local part follow the table's own (per name
use and run length), and owned mailboxes are handed out at the table's own provider shares
(canary.seeding.synth.names.email_digits, canary.seeding.synth.contacts.ContactAllocator)."""

from __future__ import annotations

import random
import re
from collections import Counter

import asyncpg
from faker import Faker
from testkit import MakeConfig

from canary.crypto import Keyring
from canary.seeding.catalog import Column, Constraint, TableInfo
from canary.seeding.postgres import PostgresSeeder
from canary.seeding.synth.contacts import ContactAllocator, mailbox_needs
from canary.seeding.synth.names import NameModel, Style, email_digits, email_uses
from canary.seeding.synth.profile import profile
from canary.seeding.synth.shapes import MIN_SHARED
from canary.seeding.synth.synthesizer import RowContext, Synthesizer
from canary.store import ControlStore
from canary.store.registry import Registry

GIVEN = ("james", "mary", "john", "linda", "robert", "susan", "david", "karen", "paul", "nancy")
SURNAMES = ("smith", "jones", "brown", "miller", "davis", "wilson", "moore", "taylor", "clark", "lewis")


def _col(name: str, category: str = "S", base: str = "text") -> Column:
    return Column(name=name, type=base, category=category, base_type=base, not_null=name == "id", default=None, identity="",
                  generated=False, max_length=None, numeric_precision=None, numeric_scale=None)


def _info() -> TableInfo:
    return TableInfo("public", "customers", 1, "r", "owner", False, False, (_col("id", "N", "int8"), _col("full_name"), _col("email")),
                     (Constraint("customers_pkey", "p", ("id",), "PRIMARY KEY (id)"),), (), ())


def _sample(rng: random.Random, n: int = 2000) -> list[dict[str, str | None]]:
    """Name-based addresses end in a birth year's two digits (1975-1999) or its four; handles carry
    three digits anywhere in 100..999."""
    out: list[dict[str, str | None]] = []
    for i in range(n):
        first, last = rng.choice(GIVEN), rng.choice(SURNAMES)
        year = rng.randint(1975, 1999)
        x = rng.random()
        if x < 0.4:
            local = f"{first}.{last}{year % 100:02d}"
        elif x < 0.6:
            local = f"{first}{last}{year}"
        elif x < 0.8:
            local = f"{rng.choice(('sunny', 'tiger', 'blue', 'rocket'))}{rng.randint(100, 999)}"
        else:
            local = f"{first}.{last}"
        out.append({"id": str(i), "full_name": f"{first.title()} {last.title()}", "email": f"{local}@gmail.com"})
    return out


def test_email_digits_keep_only_shared_prefixes_per_use_and_length() -> None:
    """The digit model holds, per run length and per name use, only digit prefixes at least
    MIN_SHARED rows share: the 2-digit runs after a name start with 7, 8 or 9 (birth years), never
    a whole run only one row has."""
    sample = _sample(random.Random(3))
    sample.append({"id": "x", "full_name": "Zed Unique", "email": "zed.unique00@gmail.com"})
    digits = email_digits(sample, "email", "full_name")
    assert set(digits["both:99"]) >= {"7", "8", "9"} and not any(p.startswith(("0", "1", "2")) for p in digits["both:99"])
    assert "00" not in digits["99"]  # one row's run: not kept
    assert all(n >= MIN_SHARED for by in digits.values() for n in by.values())
    assert all(p.startswith("19") for p in digits["both:9999"] if len(p) >= 2)


def test_canary_email_digits_follow_the_tables_own() -> None:
    """Canaries' e-mail digits are drawn from the table's own: two digits after a name are a birth
    year's (75-99, as the table's), four are 19xx, and the digit tails are as common in the table
    as real rows' (uniform digits would give 0x / 4821: nobody's)."""
    rng = random.Random(4)
    sample = _sample(rng)
    info = _info()
    synth = Synthesizer(info, profile(info, sample), locale="en_US", contacts=ContactAllocator(), seed=9)
    emails = [str(synth.row(RowContext(pk=str(10_000 + i))).values["email"]) for i in range(300)]
    tails = [m.group(0) for m in (re.search(r"\d+(?=@)", e) for e in emails) if m]
    assert len(tails) > 100
    real = Counter(m.group(0) for m in (re.search(r"\d+(?=@)", str(r["email"])) for r in sample) if m)
    two = [t for t in tails if len(t) == 2]
    four = [t for t in tails if len(t) == 4]
    assert two and sum(75 <= int(t) <= 99 for t in two) >= 0.9 * len(two), two
    assert four and sum(t.startswith("19") for t in four) >= 0.9 * len(four), four
    # as common in the table as real rows' tails: the median count of the tail among real rows
    held = sorted(real[t] for t in tails)
    real_held = sorted(real[t] for t in real.elements())
    assert held[len(held) // 2] >= real_held[len(real_held) // 2] / 3, (held[len(held) // 2], real_held[len(real_held) // 2])


def test_mailboxes_follow_the_tables_provider_shares() -> None:
    """Owned mailboxes go to canaries as often as the table's rows have each provider: with 60% at
    naver.com and 30% at gmail.com, about 63% and 32% of the canaries take mailboxes there; the long
    tail of small domains (each fewer than MIN_SHARED sampled rows) gets pool-domain addresses (5%);
    a common provider without mailboxes (daum.net, 5%) lends its draws mostly to the provider nearest
    its size (gmail.com), and a mailbox is never handed out twice."""
    rows = {"naver.com": 600.0, "gmail.com": 300.0, "daum.net": 50.0} | {f"co{i}.co.kr": 1.0 for i in range(50)}
    boxes = [f"n{i}@naver.com" for i in range(240)] + [f"g{i}@gmail.com" for i in range(240)]
    pool = ContactAllocator(["owned-post.kr"], rng=random.Random(11), mailboxes=boxes)
    pool.follow(rows)
    got = Counter(pool.email(f"user{i}", "unused.example").rpartition("@")[2] for i in range(300))
    total = sum(got.values())
    # daum.net (50 rows) -> naver.com 600 * 50/600 = 50, gmail.com 300 * 50/300 = 50, the tail 50 / 50 = 1
    assert abs(got["naver.com"] / total - (0.60 + 0.05 * 50 / 101)) < 0.07, got
    assert abs(got["gmail.com"] / total - (0.30 + 0.05 * 50 / 101)) < 0.07, got
    assert abs(got["owned-post.kr"] / total - 0.05) < 0.04 and got["owned-post.kr"] > 0, got
    assert pool.beyond_mailboxes == 0 and len(pool.used) == 300


def test_mailboxes_without_shares_and_exhausted_pool() -> None:
    """Without the table's shares the mailboxes go in configured order; once all are taken, values
    go to the pool domains and are counted as beyond the mailboxes."""
    pool = ContactAllocator(["owned-post.kr"], rng=random.Random(2), mailboxes=["b@gmail.com", "a@naver.com"])
    assert pool.next_mailbox() == "b@gmail.com" and pool.next_mailbox() == "b@gmail.com"  # decided once per value
    got = [pool.email(f"u{i}", "x.example") for i in range(3)]
    assert got[:2] == ["b@gmail.com", "a@naver.com"] and got[2].endswith("@owned-post.kr") and pool.beyond_mailboxes == 1


def test_mailbox_needs_follow_the_shares_and_name_what_stands_out() -> None:
    """Sizing per provider: a provider holding 60% of the table needs 60% of the canaries' mailboxes;
    too few there stands out (and says where its canaries go), mailboxes at a domain no sampled row
    has stand out, and the long tail's share belongs at owned mail domains."""
    rows = {"gmail.com": 600.0, "yahoo.com": 300.0} | {f"co{i}.com": 1.0 for i in range(100)}
    boxes = [f"g{i}@gmail.com" for i in range(20)] + [f"y{i}@yahoo.com" for i in range(40)] + ["x@nowhere.example"]
    needs = mailbox_needs("public.customers", rows, 100, boxes)
    assert any(line.startswith("public.customers: gmail.com holds 60% of the table's addresses: 60 of 100 canaries' mailboxes")
               and line.endswith("20 configured: STANDS OUT") for line in needs.sizing), needs.sizing
    assert any("yahoo.com holds 30%" in line and "30 of 100" in line and line.endswith("40 configured: blends") for line in needs.sizing)
    assert any("10% of the table's addresses are at small domains" in line and "10 canaries belong at owned mail domains" in line
               for line in needs.sizing), needs.sizing
    assert any("gmail.com holds 60%" in w and "the other 40 go to the providers nearest its size" in w for w in needs.warnings), needs.warnings
    assert any("1 owned mailbox at nowhere.example STAND OUT" in w for w in needs.warnings), needs.warnings
    assert not any("yahoo.com" in w for w in needs.warnings)
    assert needs.on_domains == 10 + (100 - 10 - 61)  # 10% long tail, 29 beyond the 61 mailboxes
    assert mailbox_needs("t", rows, 100, []).on_domains == 100  # no mailboxes: every canary at an owned domain


async def test_plan_sizes_owned_mailboxes_by_the_tables_providers(target_dsn: str, make_config: MakeConfig, store: ControlStore,
                                                                   keyring: Keyring) -> None:
    """``plan`` says, per provider, how many of the canaries' mailboxes belong there at the table's own
    shares (70% gmail.com, 20% yahoo.com, 10% small company domains), that 5 gmail.com mailboxes for
    14 canaries and mailboxes at a domain no customer has stand out, and how many canaries go to owned
    domains; the mailboxes are then handed out by those shares."""
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute("CREATE TABLE customers (id bigserial PRIMARY KEY, full_name text, email text UNIQUE)")
        await conn.execute(
            "INSERT INTO customers (full_name, email) SELECT 'Pat Lee ' || g, 'pat' || g || '@' ||"
            " CASE WHEN g % 10 < 7 THEN 'gmail.com' WHEN g % 10 < 9 THEN 'yahoo.com' ELSE 'co' || g || '.com' END"
            " FROM generate_series(1, 1000) g")
    finally:
        await conn.close()
    boxes = ([{"address": f"sam.gray{i}@gmail.com", "forward_to": f"fw-g{i}@in.canary-mail.test"} for i in range(5)]
             + [{"address": f"kim.ray{i}@yahoo.com", "forward_to": f"fw-y{i}@in.canary-mail.test"} for i in range(10)]
             + [{"address": "lone.wolf@nowhere.example", "forward_to": "fw-n@in.canary-mail.test"}])
    cfg = make_config(datastores=[{"name": "shop", "dsn": target_dsn, "tables": [{"table": "public.customers", "count": 20}]}],
                      seeding={"mailboxes": boxes, "email_domains": [f"d{i}-post.test" for i in range(8)]})
    seeder = PostgresSeeder.from_config(cfg, "shop", Registry(store.pool, keyring), seed=3)
    plan = await seeder.plan()
    pools, warnings = plan.targets[0].pools, plan.targets[0].warnings
    assert any("gmail.com holds 70%" in p and "14 of 20 canaries' mailboxes" in p and p.endswith("5 configured: STANDS OUT")
               for p in pools), pools
    assert any("yahoo.com holds 20%" in p and "4 of 20" in p and p.endswith("10 configured: blends") for p in pools), pools
    assert any("10% of the table's addresses are at small domains" in p and "2 canaries belong at owned mail domains" in p
               for p in pools), pools
    assert any("gmail.com holds 70%" in w and "has 5 owned mailboxes" in w for w in warnings), warnings
    assert any("1 owned mailbox at nowhere.example STAND OUT" in w for w in warnings), warnings
    domains = Counter(str(r.values["email"]).rpartition("@")[2] for r in plan.targets[0].rows if r.target == "public.customers")
    # gmail.com's draws beyond its 5 mailboxes go to yahoo.com's mailboxes (the nearest in size) and a few
    # to owned domains (the long tail); the domain no customer has is never taken while those remain
    assert domains["gmail.com"] == 5 and domains["yahoo.com"] >= 6 and "nowhere.example" not in domains, domains
    assert sum(n for d, n in domains.items() if d.endswith("-post.test")) >= 2, domains


def test_mailbox_owner_is_written_the_way_the_table_writes_names() -> None:
    """A canary named by its ``first.last`` mailbox is written in the table's name layouts: with a
    middle initial about as often as real rows have one (here half of them), in upper case when the
    table writes names so; its given name and surname are always the mailbox's."""
    rng = random.Random(6)
    sample: list[dict[str, str | None]] = []
    for i in range(2000):
        first, last = rng.choice(GIVEN).title(), rng.choice(SURNAMES).title()
        full = f"{first} {rng.choice('ABCDEK')}. {last}" if i % 2 else f"{first} {last}"
        sample.append({"id": str(i), "full_name": full.upper() if i % 10 == 3 else full, "email": f"x{i}@gmail.com"})
    info = _info()
    boxes = [f"trevon.mcgowan{i}@gmail.com" for i in range(200)]
    synth = Synthesizer(info, profile(info, sample), locale="en_US", contacts=ContactAllocator(mailboxes=boxes), seed=4)
    names = [str(synth.row(RowContext(pk=str(10_000 + i))).values["full_name"]) for i in range(200)]
    assert all(n.split()[0].lower() == "trevon" and n.split()[-1].lower() == "mcgowan" for n in names), names[:10]
    initials = sum(len(n.split()) == 3 and re.fullmatch(r"[A-Z]\.", n.split()[1]) is not None for n in names)
    assert 60 <= initials <= 140, initials
    assert any(n == n.upper() for n in names) and any(n == "Trevon Mcgowan" for n in names)


def test_latin_names_carry_the_tables_decorations() -> None:
    """Canary names in a Latin-script table are decorated as often as the table's are (middle
    initials, lower / upper case, Jr., hyphenated surnames, learnt as styles k rows share), never
    always plain "Given Surname"; a style only one row has is not learnt, and a decorated name's
    e-mail spells both its names ("John A. Smith Jr." -> john.smith)."""
    rng = random.Random(8)
    names: list[str] = []
    for i in range(2000):
        first, last = rng.choice(GIVEN).title(), rng.choice(SURNAMES).title()
        x = i % 20
        full = (f"{first} {rng.choice('ABCDK')}. {last}" if x < 3 else f"{first} {last}".lower() if x == 3
                else f"{first} {last} Jr." if x == 4 else f"{first} {last}-{rng.choice(SURNAMES).title()}" if x == 5 else f"{first} {last}")
        names.append(full)
    names.append("Ann Lee III ")
    model = NameModel.of(names)
    assert model is not None and Style("title", "", "III", False, True) not in model.styles.values
    assert "Lee" not in "".join(str(v) for v in model.parts["en"].surnames.values)
    assert all(len(str(g).split()) == 1 for g in model.parts["en"].givens.values)  # "John A." is no given name
    drawn = [model.draw(rng, Faker("en_US"), Faker("en_US"))[2] for _ in range(1000)]
    initials = sum(re.fullmatch(r"\w+ [A-Z]\. \w+", n) is not None for n in drawn)
    assert 100 <= initials <= 200 and 20 <= sum(n.islower() for n in drawn) <= 90, (initials, drawn[:20])
    assert 20 <= sum(n.endswith(" Jr.") for n in drawn) <= 90 and 20 <= sum("-" in n for n in drawn) <= 90
    assert sum(re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", n) is not None for n in drawn) >= 650
    uses = email_uses([{"email": "john.smith@x.test", "full_name": "John A. Smith Jr."}] * 40, "email", "full_name")
    assert uses["email_uses"].values == ("both",)


def test_a_row_made_again_draws_its_e_mail_digits_uniformly() -> None:
    """A table whose local parts differ by their digits alone (member1000..member2199) has every run
    drawn like its own taken: the first makings of a row follow the table's digits, and a row made
    again more than REMADE_UNIFORM times for one placement (its address clashed with a real row's)
    draws them uniformly, so it can escape the clash."""
    info = _info()
    sample: list[dict[str, str | None]] = [
        {"id": str(i), "full_name": f"Member {i}", "email": f"member{i}@example.org"} for i in range(1000, 2200)]
    synth = Synthesizer(info, profile(info, sample), locale="en_US", contacts=ContactAllocator(), seed=3)
    ctx = RowContext(pk="5000")
    runs = [int(re.sub(r"\D", "", str(synth.row(ctx).values["email"]).rpartition("@")[0]) or 0) for _ in range(3)]
    assert all(1000 <= n < 2200 for n in runs), runs
    later = [int(re.sub(r"\D", "", str(synth.row(ctx).values["email"]).rpartition("@")[0]) or 0) for _ in range(12)]
    assert any(not 1000 <= n < 2200 for n in later), later
