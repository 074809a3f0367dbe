"""The distinguishability bench's contact pools (bench/distinguishability.py): the mailbox setting owns
what ``plan`` asks for, at providers an operator can open mailboxes at; its label-free rules read
what a thief reads."""

from __future__ import annotations

import sys
from pathlib import Path

import asyncpg
from testkit import fresh_database

from canary.drills.shop import SCHEMA
from canary.store.embedded import PostgresServer

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from distinguishability import OBTAINABLE_US, _line_end, owned_mailbox_sizes, us_mailboxes


async def test_owned_mailboxes_follow_the_shares_at_obtainable_providers_only(pg_server: PostgresServer) -> None:
    """1,000 customers: gmail.com 50%, outlook.com 20%, msn.com 20% (closed to sign-ups), 10% at one
    address each. For 40 canaries the bench owns mailboxes at gmail.com and outlook.com sized by their
    shares with room for a busy one (20 + 9, 8 + 6), none at msn.com nor at the long tail's domains
    (the top six domains by count would have put outlook.com's and msn.com's alike, and sized none by
    share)."""
    domains = ["gmail.com"] * 500 + ["outlook.com"] * 200 + ["msn.com"] * 200 + [f"d{i}.example" for i in range(100)]
    rows = [(i + 1, f"Customer {i}", f"c{i}@{d}", None, None, None) for i, d in enumerate(domains)]
    async with fresh_database(pg_server, "dist") as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(SCHEMA)
            await conn.copy_records_to_table("customers", records=rows, columns=[
                "id", "full_name", "email", "phone", "address", "postal_code"])
            sizes = await owned_mailbox_sizes(conn, 40, OBTAINABLE_US)
            boxes = await us_mailboxes(conn, 40)
        finally:
            await conn.close()
    assert sizes == {"gmail.com": 29, "outlook.com": 14}
    at = [b["address"].rpartition("@")[2] for b in boxes]
    assert at.count("gmail.com") == 29 and at.count("outlook.com") == 14 and len(at) == 43
    assert len({b["address"].lower() for b in boxes}) == 43


def test_the_street_line_rule_reads_the_word_where_the_type_goes() -> None:
    """street_line_end_rare counts the last word of an address's street line, its unit aside, and
    skips what ends in a number or a parenthesised part (a PO box, a highway, a Korean dong)."""
    assert _line_end("1037 8th Ter #376, Los Angeles, CA") == "ter"
    assert _line_end("247 6th Fischer #411, Los Angeles, CA") == "fischer"
    assert _line_end("56 LAUREL RD. APT 2291, STERLING HEIGHTS, MI") == "rd"
    assert _line_end("12 Oak St. Ste 4B, Dayton, OH") == "st"
    assert _line_end("PO Box 582745, Nashville, TN") == ""
    assert _line_end("7949 Highway 12, Carthage, SC") == ""
    assert _line_end("719 S Beiler St Jasper IA 51785") == ""
    assert _line_end("서울특별시 중구 송정대로 52 104동 901호 (남문동, 남문e편한세상)") == ""
