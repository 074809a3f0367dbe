"""The canary MX is no recipient oracle: RCPT / VRFY / EXPN answer alike for canaries and other
addresses, in the same time; naming a canary without delivering to it is a probe event grouped per
peer; heavy probing is tarpitted per peer and reported once. Real SMTP dialogues over loopback
against the real listener runtime and control store."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator

import aiosmtplib
import pytest
from contact_support import (
    CANARY_EMAIL,
    MAIL_DOMAIN,
    OTHER_EMAIL,
    ContactEnv,
    SmtpDialogue,
    close_contact_env,
    contact_fixture,
    open_contact_env,
    serve_smtp,
    smtp_settled,
)
from testkit import MakeConfig

from canary.contact.smtp import RCPT_OK, VRFY_REPLY, SmtpSource
from canary.crypto import Keyring
from canary.errors import ConfigError
from canary.proxies import peer_key
from canary.tarpit import Tarpit

SENDER = "probe@phish.test"
NOBODY = f"nobody@{MAIL_DOMAIN}"

env = contact_fixture({"smtp": True, "smtp_port": 0, "smtp_probe_limit": 100_000})


async def _session(smtp: SmtpSource, source: str = "127.0.0.1", helo: str = "probe.test") -> SmtpDialogue:
    d = await SmtpDialogue.open(smtp.port or 0, source)
    assert (await d.say(f"EHLO {helo}")).startswith(b"250")
    assert (await d.say(f"MAIL FROM:<{SENDER}>")).startswith(b"250")
    return d


async def test_rcpt_reply_and_timing_do_not_tell_canaries_apart(env: ContactEnv) -> None:
    """200 RCPTs to canaries and 200 to unknown mailboxes, interleaved: every reply is the same
    ``250 2.1.5 OK``, the median reply times differ by less than noise, and RCPT does no lookup at
    all: with the canary values table locked against reads, the replies still come back at once
    (the lookup happens after the session, when the lock is gone, and the probe is recorded)."""
    smtp = await serve_smtp(env)
    d = await _session(smtp)
    times: dict[str, list[float]] = {"canary": [], "other": []}
    replies: set[bytes] = set()
    for i in range(200):
        pair = [("canary", (CANARY_EMAIL, OTHER_EMAIL)[i % 2]), ("other", f"user{i}@{MAIL_DOMAIN}")]
        for label, rcpt in pair if i % 2 else reversed(pair):
            reply, took = await d.timed(f"RCPT TO:<{rcpt}>")
            replies.add(reply)
            times[label].append(took)
        if i % 40 == 39:  # stay under the 100 recipients of one transaction
            assert (await d.say("RSET")).startswith(b"250") and (await d.say(f"MAIL FROM:<{SENDER}>")).startswith(b"250")
    assert replies == {RCPT_OK.encode() + b"\r\n"}
    med_c, med_o = statistics.median(times["canary"]), statistics.median(times["other"])
    print(f"RCPT median canary {med_c * 1e3:.3f} ms, other {med_o * 1e3:.3f} ms")
    assert abs(med_c - med_o) < max(0.0005, 0.25 * max(med_c, med_o))
    await d.close()
    await smtp_settled(smtp)

    async with env.runtime.pool.acquire() as conn, conn.transaction():
        await conn.execute("LOCK TABLE canary_values IN ACCESS EXCLUSIVE MODE")
        d = await _session(smtp)
        for rcpt in (CANARY_EMAIL, NOBODY):
            reply, took = await d.timed(f"RCPT TO:<{rcpt}>")
            assert reply == RCPT_OK.encode() + b"\r\n" and took < 2.0
        await d.close()
        await asyncio.sleep(0.2)
        assert smtp._tasks, "the probe lookup waits for the lock, behind the replies"
    await smtp_settled(smtp)
    probes = await env.runtime.pool.fetch(
        "SELECT canary_id, severity, evidence FROM events WHERE evidence->>'probe' = 'rcpt' ORDER BY id")
    assert {r["canary_id"] for r in probes} == {env.canary_id, env.other_id}
    assert {r["severity"] for r in probes} == {"warning"}


async def test_rcpt_without_data_is_one_warning_incident_per_peer(env: ContactEnv) -> None:
    """A session that names canaries by RCPT and quits (and one that RSETs) delivers nothing: each
    canary named becomes a warning probe event, all in one incident for the peer, with the peer,
    HELO and counts and no address; the unknown mailbox makes no event."""
    smtp = await serve_smtp(env)
    d = await _session(smtp, helo="enum.test")
    for rcpt in (CANARY_EMAIL, OTHER_EMAIL, NOBODY, CANARY_EMAIL.replace("@", "+x@")):
        assert (await d.say(f"RCPT TO:<{rcpt}>")).startswith(b"250")
    await d.close()
    d = await _session(smtp, helo="enum.test")
    assert (await d.say(f"RCPT TO:<{OTHER_EMAIL}>")).startswith(b"250")
    assert (await d.say("RSET")).startswith(b"250")
    assert (await d.say("NOOP")).startswith(b"250")
    await d.close()
    await smtp_settled(smtp)

    events = await env.events()
    assert sorted(e["canary_id"] for e in events) == sorted([env.canary_id, env.other_id, env.other_id])
    for e in events:
        assert (e["kind"], e["severity"], e["group_key"]) == ("contacted", "warning", "smtp-probe:127.0.0.1")
        assert e["evidence"]["probe"] == "rcpt" and e["evidence"]["peer"] == "127.0.0.1"
        assert e["evidence"]["helo"] == "enum.test" and e["origin"]["client_addr"] == "127.0.0.1"
        assert e["evidence"]["counts"]["rcpt"] in (4, 1)
        assert "minji" not in str(dict(e)) and "jiho" not in str(dict(e))
    [inc] = await env.runtime.pool.fetch("SELECT * FROM incidents")
    assert inc["severity"] == "warning" and inc["group_key"] == "smtp-probe:127.0.0.1"
    assert sorted(inc["canary_ids"]) == sorted([env.canary_id, env.other_id])


async def test_vrfy_and_expn_answer_alike_and_a_canary_named_is_a_probe(env: ContactEnv) -> None:
    """VRFY answers 252 and EXPN 502 whatever the address (canary, unknown, bare local part, another
    domain); a canary named by either is a probe event of that kind, a bare local part included."""
    smtp = await serve_smtp(env)
    d = await SmtpDialogue.open(smtp.port or 0)
    assert (await d.say("EHLO vrfy.test")).startswith(b"250")
    for cmd in ("VRFY", "EXPN"):
        answers = {await d.say(f"{cmd} {arg}") for arg in
                   (f"<{CANARY_EMAIL}>", f"<{NOBODY}>", "jiho.park", "nobody", "someone@elsewhere.test")}
        assert len(answers) == 1, answers
        assert answers.pop()[:3] == (b"252" if cmd == "VRFY" else b"502")
    assert (await d.say("EXPN <"))[:3] == b"502"
    assert (await d.say(f"VRFY <{CANARY_EMAIL}>")) == VRFY_REPLY.encode() + b"\r\n"
    await d.close()
    await smtp_settled(smtp)
    got = sorted((e["evidence"]["probe"], e["canary_id"]) for e in await env.events())
    assert got == sorted([("vrfy", env.canary_id), ("vrfy", env.other_id), ("expn", env.canary_id),
                          ("expn", env.other_id)])
    assert await env.runtime.pool.fetchval("SELECT count(*) FROM incidents") == 1


@pytest.fixture
async def tarpitted(make_config: MakeConfig, keyring: Keyring) -> AsyncIterator[ContactEnv]:
    e = await open_contact_env(make_config, keyring, {"smtp": True, "smtp_port": 0, "smtp_probe_limit": 5,
                                                       "smtp_probe_window": "1m", "smtp_tarpit_step": "200ms",
                                                       "smtp_tarpit_max": "600ms"})
    try:
        yield e
    finally:
        await close_contact_env(e)


async def test_flood_is_tarpitted_and_reported_once_other_peers_unaffected(tarpitted: ContactEnv) -> None:
    """Beyond 5 RCPTs a minute, each reply to the flooding peer waits longer (200 ms more each, at
    most 600 ms) while another peer is answered at once; the flood is reported once (counts, no
    address) in the peer's incident; a real message to a canary from the same peer afterwards is
    still delivered and recorded as a full-severity contact."""
    e = tarpitted
    smtp = await serve_smtp(e)
    a = await _session(smtp)
    b = await _session(smtp, source="127.0.0.2", helo="bystander.test")

    async def flood() -> list[float]:
        out = []
        for i in range(11):
            reply, took = await a.timed(f"RCPT TO:<{CANARY_EMAIL if i == 3 else f'u{i}@{MAIL_DOMAIN}'}>")
            assert reply == RCPT_OK.encode() + b"\r\n"
            out.append(took)
        return out

    async def bystander() -> list[float]:
        await asyncio.sleep(0.5)  # while the flood is being tarpitted
        out = []
        for i in range(5):
            reply, took = await b.timed(f"RCPT TO:<b{i}@{MAIL_DOMAIN}>")
            assert reply == RCPT_OK.encode() + b"\r\n"
            out.append(took)
        return out

    a_times, b_times = await asyncio.gather(flood(), bystander())
    print("flooder", [round(t, 3) for t in a_times], "bystander", [round(t, 3) for t in b_times])
    assert all(t < 0.15 for t in a_times[:5])
    assert [t >= s for t, s in zip(a_times[5:], (0.2, 0.4, 0.6, 0.6, 0.6, 0.6), strict=True)] == [True] * 6
    assert max(b_times) < 0.15
    await a.close()
    await b.close()
    await smtp_settled(smtp)

    floods = await e.runtime.pool.fetch("SELECT * FROM events WHERE evidence->>'probe' = 'rcpt_flood'")
    assert len(floods) == 1
    [f] = floods
    assert f["canary_id"] is None and f["severity"] == "warning" and f["group_key"] == "smtp-probe:127.0.0.1"
    assert f["evidence"]["counts"] == {"rcpt": 6, "vrfy": 0, "expn": 0} and f["evidence"]["limit"] == 5
    assert "@" not in str(dict(f))
    [inc] = await e.runtime.pool.fetch("SELECT * FROM incidents")
    assert inc["event_count"] == 2 and inc["canary_ids"] == [e.canary_id]  # the flood and the canary probed

    sent_at = time.perf_counter()
    errors, reply = await aiosmtplib.send(
        f"From: {SENDER}\r\nTo: {CANARY_EMAIL}\r\nSubject: held order\r\n\r\nhttps://x.phish.test/\r\n".encode(),
        sender=SENDER, recipients=[CANARY_EMAIL], hostname="127.0.0.1", port=smtp.port, timeout=10)
    assert errors == {} and reply == "2.0.0 OK" and time.perf_counter() - sent_at >= 0.6  # still tarpitted
    await smtp_settled(smtp)
    [contact] = await e.runtime.pool.fetch("SELECT * FROM events WHERE severity = 'critical'")
    assert contact["canary_id"] == e.canary_id and contact["group_key"] == f"mail:{SENDER}"
    assert contact["evidence"]["subject"] == "held order"
    assert await e.runtime.pool.fetchval("SELECT count(*) FROM incidents") == 2
    assert len(await e.runtime.pool.fetch("SELECT * FROM events WHERE evidence->>'probe' = 'rcpt_flood'")) == 1


def test_tarpit_state_is_bounded_and_windowed() -> None:
    """Peer state is kept for the most recent peers only (a flood of addresses cannot grow it); an
    IPv6 /64 is one peer; the next window starts from the last one's excess (still slowed, reported
    again at once), a window after a quiet one starts clean."""
    now = [0.0]
    pit = Tarpit(limit=3, window=60.0, step=0.1, max_delay=1.0, peers=16, kinds=("rcpt", "vrfy", "expn"), clock=lambda: now[0])
    for i in range(5000):
        pit.count(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", "rcpt")
    assert len(pit) == 16
    assert peer_key("2001:db8::1") == peer_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert peer_key("::ffff:192.0.2.7") == "192.0.2.7" and peer_key(None) == "unknown"
    paces = [pit.count(f"2001:db8::{i:x}", "vrfy") for i in range(6)]
    assert [p.delay for p in paces] == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3])
    assert [p.crossed for p in paces] == [False, False, False, True, False, False]
    now[0] = 61.0
    carried = [pit.count("2001:db8::9", "expn") for _ in range(2)]  # 3 over the limit carried over
    assert [(p.delay, p.crossed) for p in carried] == [(pytest.approx(0.1), True), (pytest.approx(0.2), False)]
    assert carried[-1].counts == {"rcpt": 0, "vrfy": 0, "expn": 2} and carried[-1].window_start > paces[0].window_start
    now[0] = 61.0 + 125.0  # nothing for a whole window
    fresh = [pit.count("2001:db8::9", "expn") for _ in range(4)]
    assert [p.crossed for p in fresh] == [False, False, False, True]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("smtp_tarpit_max", "2m", "at most 30s"),
    ("smtp_probe_window", "0s", "between 1s and 1d"),
    ("smtp_probe_limit", 0, "greater than or equal to 1"),
    ("smtp_tarpit_peers", 2, "greater than or equal to 16"),
])
def test_tarpit_settings_are_validated(make_config: MakeConfig, field: str, value: object, message: str) -> None:
    """A tarpit delay the session timeout would cut short, an empty window, a zero allowance or a
    peer table too small to hold a flood are refused with the key path."""
    with pytest.raises(ConfigError) as err:
        make_config(contact={"mail_domains": [MAIL_DOMAIN], field: value})
    assert f"contact.{field}" in str(err.value) and message in str(err.value)
