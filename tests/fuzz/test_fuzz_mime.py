"""Fuzzing the MIME parser (canary/contact/mime.py parse_mail) that reads every mail the SMTP server and
the inbound-mail webhooks receive: whatever the bytes, it returns a ParsedMail (never raises), within
bounded time and with bounded evidence; and the evidence of any message commits as a contact event
that names the canary without spelling out its address."""

from __future__ import annotations

import time
from typing import Any

from contact_support import CANARY_EMAIL
from fuzz_harness import fuzz_settings, rss_mib
from fuzz_strategies import deep_multipart, deep_rfc822, messages
from hypothesis import example, given
from testkit import CanaryRows, MakeConfig, OpenRuntime, customer_canary

from canary.contact.evidence import MailFacts, record_mail
from canary.contact.mime import MAX_ATTACHMENTS, MAX_URLS, PREVIEW_CHARS, ParsedMail, parse_mail
from canary.contact.senders import KnownSenders
from canary.contact.verdicts import Verdicts
from canary.runtime import Runtime

#: Seconds one message of at most ~10 MB may take to parse on this (loaded, 2-core) machine.
PARSE_BOUND = 5.0
TRIED = {"examples": 0, "rss_before": 0.0}


def _many_parts(n: int) -> bytes:
    return (b'From: a@phish.test\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
            + b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nhttps://x.test/%d\r\n" % i for i in range(n)) + b"--b--\r\n")


@fuzz_settings(400)
@example(deep_multipart(3000))  # RecursionError escaped parse_mail (nesting past the recursion limit)
@example(deep_rfc822(20_000))
@example(b"Subject: " + b"=?utf-8?q?a?= " * 200_000 + b"\r\n\r\nx")  # quadratic header parse: minutes per message
@example(b"To: " + b"a@b.test, " * 300_000 + b"\r\n\r\nx")
@example(b"".join(b"To: " + b"a@b.test, " * 1600 + b"\r\n" for _ in range(300)) + b"\r\nx")
@example(b"From: a@b.test\r\n" + b"Received: from x ([192.0.2.1]) by y; Mon, 23 Nov 2026\r\n" * 100_000 + b"\r\nx")
@example(_many_parts(50_000))  # the parser is superlinear in parts: 50k parts took ~50 s
@given(raw=messages)
def test_parse_mail_never_raises_and_is_bounded(raw: bytes) -> None:
    """Any message: a ParsedMail within PARSE_BOUND seconds, evidence within its limits, and
    ``malformed`` set for a message no mail client would read."""
    TRIED["examples"] += 1
    TRIED["rss_before"] = TRIED["rss_before"] or rss_mib()
    t0 = time.perf_counter()
    parsed = parse_mail(raw)
    took = time.perf_counter() - t0
    assert isinstance(parsed, ParsedMail)
    assert took < PARSE_BOUND, f"{len(raw)} bytes took {took:.1f}s"
    assert len(parsed.urls) <= MAX_URLS and len(parsed.attachments) <= MAX_ATTACHMENTS
    assert len(parsed.subject) <= 998 and len(parsed.preview) <= PREVIEW_CHARS and len(parsed.defects) <= 20
    assert parsed.received_top is None or len(parsed.received_top) <= 998


def test_report_mime_tally() -> None:
    """Prints how many messages the property above parsed (run with -s) and the process RSS."""
    print(f"\nfuzz[mime] examples={TRIED['examples']} rss_before={TRIED['rss_before']:.1f}MiB rss_after={rss_mib():.1f}MiB")


def _collect(n: int) -> list[bytes]:
    out: list[bytes] = []

    @fuzz_settings(n)
    @given(raw=messages)
    def draw(raw: bytes) -> None:
        out.append(raw)

    draw()
    return out


async def test_fuzzed_mail_evidence_commits_and_names_no_canary_address(
    open_test_runtime: OpenRuntime, make_config: MakeConfig, canary_rows: CanaryRows
) -> None:
    """Hostile messages recorded as contacts of a canary (what the SMTP server and the webhooks do):
    every one commits an event, and no event spells out the canary's address."""
    rt: Runtime = await open_test_runtime(make_config(contact={"mail_domains": ["canary-mail.test"]}))
    [cid] = await canary_rows(customer_canary(1, values=[("email", CANARY_EMAIL)]))
    canary = await rt.registry.by_value("email", CANARY_EMAIL)
    assert canary is not None and canary.id == cid
    rss_before = rss_mib()
    raws = _collect(120) + [deep_multipart(1200), b"Subject: " + CANARY_EMAIL.upper().encode() + b"\r\n\r\nx",
                               b"From: Minji <" + CANARY_EMAIL.encode() + b">\r\n\r\nx"]
    verdicts = Verdicts(spf="none", dkim="none")
    for i, raw in enumerate(raws):
        body = raw + b"\r\n" + CANARY_EMAIL.encode()  # the address inside the content must be redacted
        facts = MailFacts(source="fuzz", raw=body, mail_from="x@phish.test", client_ip="192.0.2.1", helo="h",
                          verdicts=verdicts, provider_id=f"fuzz-{i}", contact_points=[CANARY_EMAIL])
        events = await record_mail(rt, facts, [canary], KnownSenders(()))
        assert len(events) == 1
    rows: list[Any] = await rt.pool.fetch("SELECT evidence::text AS e, actor::text AS a FROM events WHERE source = 'fuzz'")
    assert len(rows) == len(raws)
    assert not [r for r in rows if CANARY_EMAIL in (r["e"] + r["a"]).lower()]
    print(f"\nfuzz[mime-commit] messages={len(raws)} rss_before={rss_before:.1f}MiB rss_after={rss_mib():.1f}MiB")
