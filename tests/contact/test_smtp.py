"""The canary SMTP server, driven by a real SMTP client over TCP against the real listener and store."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import tempfile
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
import dkim
import pytest
from contact_support import (
    CANARY_EMAIL,
    MAIL_DOMAIN,
    OTHER_EMAIL,
    ContactEnv,
    StaticResolver,
    close_contact_env,
    contact_fixture,
    dkim_keys,
    metric,
    open_contact_env,
    smtp_settled,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from testkit import MakeConfig

from canary.contact.evidence import load_raw
from canary.contact.smtp import SmtpSource
from canary.crypto import Keyring

SENDER_DOMAIN = "phish.test"
SENDER = f"security@{SENDER_DOMAIN}"

env = contact_fixture({"smtp": True, "smtp_port": 0, "max_message_size": 64 * 1024, "smtp_probe_limit": 100_000,
                       "known_senders": [{"name": "own-esp", "senders": ["@corp.test"]},
                                         {"name": "relay", "networks": ["198.51.100.0/24"]}]})


def _message(to: str = CANARY_EMAIL, sender: str = SENDER, subject: str = "Your Coupang order was held",
             attachment: bytes | None = b"%PDF-1.4 invoice") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Coupang Security <{sender}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{dt.datetime.now().timestamp()}-{id(msg)}@{sender.split('@')[1]}>"
    msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0000"
    msg["Received"] = "from evil.example (evil.example [192.0.2.66]) by mx.phish.test; Mon, 23 Nov 2026 09:59:00 +0000"
    msg.set_content("Confirm your account at https://coupang-verify.phish.test/login?id=42 within 24 hours.")
    msg.add_alternative('<p>Click <a href="https://coupang-verify.phish.test/html">here</a></p>', subtype="html")
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="pdf", filename="invoice.pdf")
    return msg


async def _serve(env: ContactEnv, resolver: StaticResolver) -> SmtpSource:
    smtp = SmtpSource(env.runtime.config.contact, resolver=resolver)
    await env.serve([smtp])
    assert smtp.port
    return smtp


async def test_signed_mail_to_canary_raises_alert_with_evidence(env: ContactEnv) -> None:
    """A DKIM-signed message from an SPF-authorised peer to a canary is accepted (250) only after the
    event is committed; the alert carries sender, peer, HELO, subject, URLs, attachment hash, SPF
    and DKIM pass, our Received line, and the raw message stored encrypted."""
    pem, txt = dkim_keys()
    resolver = StaticResolver()
    resolver.publish_dkim("s1", SENDER_DOMAIN, txt)
    resolver.publish_spf(SENDER_DOMAIN, "v=spf1 ip4:127.0.0.0/8 -all")
    smtp = await _serve(env, resolver)
    raw = _message().as_bytes()
    signed = dkim.sign(raw, b"s1", SENDER_DOMAIN.encode(), pem, include_headers=[b"from", b"to", b"subject"]) + raw
    reply = await aiosmtplib.send(signed, sender=SENDER, recipients=[CANARY_EMAIL], hostname="127.0.0.1",
                                  port=smtp.port, local_hostname="mx.phish.test", timeout=10)
    assert reply[1] == "2.0.0 OK"
    [ev] = await env.events()
    assert ev["canary_id"] == env.canary_id and ev["kind"] == "contacted" and ev["severity"] == "critical"
    e = ev["evidence"]
    assert e["subject"] == "Your Coupang order was held"
    assert "https://coupang-verify.phish.test/login?id=42" in e["urls"] and "https://coupang-verify.phish.test/html" in e["urls"]
    import hashlib

    assert e["attachments"][0]["sha256"] == hashlib.sha256(b"%PDF-1.4 invoice").hexdigest()
    assert (e["spf"], e["dkim"], e["dkim_domain"]) == ("pass", "pass", SENDER_DOMAIN)
    assert e["received"].startswith("from mx.phish.test ([127.0.0.1])")
    assert "192.0.2.66" in e["received_claimed"]
    assert ev["actor"]["sender"] == SENDER and ev["origin"] == {"client_addr": "127.0.0.1", "helo": "mx.phish.test"}
    assert CANARY_EMAIL not in str(dict(ev))  # the canary's own address is not in the event
    stored = await load_raw(env.runtime, e["raw_evidence_id"])
    assert stored is not None and stored.replace(b"\r\n", b"\n") == signed.replace(b"\r\n", b"\n")
    blob = await env.runtime.pool.fetchval("SELECT raw_enc FROM contact_messages")
    assert b"Coupang" not in blob
    inc = await env.runtime.pool.fetchrow("SELECT * FROM incidents")
    assert inc["title"] == f"Canary contact point reached by {SENDER} from 127.0.0.1"
    assert await env.runtime.pool.fetchval("SELECT count(*) FROM outbox") == 1


async def test_tampered_dkim_and_spf_fail_are_reported(env: ContactEnv) -> None:
    """A body altered after signing gives DKIM fail; a peer outside the SPF record gives SPF fail."""
    pem, txt = dkim_keys()
    resolver = StaticResolver()
    resolver.publish_dkim("s1", SENDER_DOMAIN, txt)
    resolver.publish_spf(SENDER_DOMAIN, "v=spf1 ip4:192.0.2.0/24 -all")
    smtp = await _serve(env, resolver)
    raw = _message(attachment=None).as_bytes()
    signed = dkim.sign(raw, b"s1", SENDER_DOMAIN.encode(), pem) + raw.replace(b"24 hours", b"2 hours")
    await aiosmtplib.send(signed, sender=SENDER, recipients=[CANARY_EMAIL], hostname="127.0.0.1", port=smtp.port, timeout=10)
    [ev] = await env.events()
    assert (ev["evidence"]["spf"], ev["evidence"]["dkim"]) == ("fail", "fail")


async def test_non_canary_recipients_are_accepted_and_discarded(env: ContactEnv) -> None:
    """An unknown mailbox in the canary domain gets the same 250 as a canary at RCPT and at the end of
    DATA, and the message is discarded (no event, no probe, no reject that would tell it apart);
    another domain is refused as relaying (550 5.7.1) and counted; a mixed envelope is recorded for
    the canary only."""
    smtp = await _serve(env, StaticResolver())
    errors, reply = await aiosmtplib.send(_message(to=f"nobody@{MAIL_DOMAIN}").as_bytes(), sender=SENDER,
                                          recipients=[f"nobody@{MAIL_DOMAIN}"], hostname="127.0.0.1",
                                          port=smtp.port, timeout=10)
    assert errors == {} and reply == "2.0.0 OK"
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as info:
        await aiosmtplib.send(_message(to="someone@elsewhere.test").as_bytes(), sender=SENDER,
                              recipients=["someone@elsewhere.test"], hostname="127.0.0.1", port=smtp.port, timeout=10)
    assert (info.value.recipients[0].code, info.value.recipients[0].message) == (550, "5.7.1 Relay access denied")
    errors, _ = await aiosmtplib.send(_message().as_bytes(), sender=SENDER, recipients=[CANARY_EMAIL, f"x@{MAIL_DOMAIN}"],
                                      hostname="127.0.0.1", port=smtp.port, timeout=10)
    assert errors == {}
    await smtp_settled(smtp)
    assert [(e["canary_id"], e["severity"]) for e in await env.events()] == [(env.canary_id, "critical")]
    text = await env.metrics()
    assert metric(text, "canary_rejects_total", source="smtp", reason="relay_denied") == 1
    assert metric(text, "canary_rejects_total", source="smtp", reason="unknown_recipient") == 0
    assert metric(text, "canary_requests_total", component="smtp", code="550") == 1


async def test_plus_address_and_two_canaries_in_one_message(env: ContactEnv) -> None:
    """``local+tag@`` reaches the canary ``local@``; one message to two canaries gives two events in
    one incident (one sender)."""
    smtp = await _serve(env, StaticResolver())
    plus = CANARY_EMAIL.replace("@", "+promo@")
    await aiosmtplib.send(_message().as_bytes(), sender=SENDER, recipients=[plus, OTHER_EMAIL], hostname="127.0.0.1",
                          port=smtp.port, timeout=10)
    assert sorted(e["canary_id"] for e in await env.events()) == sorted([env.canary_id, env.other_id])
    assert await env.runtime.pool.fetchval("SELECT count(*) FROM incidents") == 1


async def test_oversized_message_gets_552(env: ContactEnv) -> None:
    """A message over max_message_size is refused with 552 after DATA, counted, and not recorded."""
    smtp = await _serve(env, StaticResolver())
    big = _message(attachment=b"A" * (80 * 1024)).as_bytes()
    with pytest.raises(aiosmtplib.SMTPResponseException) as info:  # 552 at MAIL FROM SIZE= or after DATA
        await aiosmtplib.send(big, sender=SENDER, recipients=[CANARY_EMAIL], hostname="127.0.0.1", port=smtp.port, timeout=10)
    assert info.value.code == 552
    assert await env.events() == []
    text = await env.metrics()
    assert metric(text, "canary_rejects_total", source="smtp", reason="message_too_big") == 1


async def test_malformed_mime_is_refused_but_contact_recorded(env: ContactEnv) -> None:
    """A multipart message without its boundary gets 554 5.6.0 and is counted; because it did reach a
    canary, the contact is still recorded (with the defect) rather than lost."""
    smtp = await _serve(env, StaticResolver())
    raw = (b"From: x@phish.test\r\nTo: " + CANARY_EMAIL.encode() + b"\r\nSubject: broken\r\n"
           b"Content-Type: multipart/mixed\r\n\r\nno boundary here\r\n")
    with pytest.raises(aiosmtplib.SMTPDataError) as info:
        await aiosmtplib.send(raw, sender=SENDER, recipients=[CANARY_EMAIL], hostname="127.0.0.1", port=smtp.port, timeout=10)
    assert info.value.code == 554
    [ev] = await env.events()
    assert "NoBoundaryInMultipartDefect" in ev["evidence"]["malformed"]
    assert metric(await env.metrics(), "canary_rejects_total", source="smtp", reason="malformed_mime") == 1


async def test_known_sender_needs_authentication(env: ContactEnv) -> None:
    """Mail from the company's own domain with SPF pass is recorded as expected (severity info, no
    page); the same From with SPF fail is a forgery and pages; a known relay network matches by IP."""
    resolver = StaticResolver()
    resolver.publish_spf("corp.test", "v=spf1 ip4:127.0.0.1 -all")
    resolver.publish_spf("forged.corp.test", "v=spf1 ip4:192.0.2.1 -all")
    smtp = await _serve(env, resolver)
    await aiosmtplib.send(_message(sender="newsletter@corp.test").as_bytes(), sender="newsletter@corp.test",
                          recipients=[CANARY_EMAIL], hostname="127.0.0.1", port=smtp.port, timeout=10)
    await aiosmtplib.send(_message(sender="ceo@forged.corp.test").as_bytes(), sender="ceo@forged.corp.test",
                          recipients=[CANARY_EMAIL], hostname="127.0.0.1", port=smtp.port, timeout=10)
    ok, forged = await env.events()
    assert ok["severity"] == "info" and ok["evidence"]["expected"] is True and ok["evidence"]["known_sender_rule"] == "own-esp"
    assert ok["suppressed_by"] == "known-sender:own-esp"
    assert forged["severity"] == "critical" and "expected" not in forged["evidence"]
    paged = await env.runtime.pool.fetch("SELECT i.group_key FROM outbox o JOIN incidents i ON i.id = o.incident_id")
    assert [r["group_key"] for r in paged] == ["mail:ceo@forged.corp.test"]


async def _dialogue(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, lines: list[bytes]) -> list[bytes]:
    replies = []
    for line in lines:
        writer.write(line)
        await writer.drain()
        while True:
            reply = await asyncio.wait_for(reader.readline(), 10)
            if reply[3:4] != b"-":
                break
        replies.append(reply)
    return replies


async def test_proxy_protocol_client_address(make_config: MakeConfig, keyring: Keyring) -> None:
    """Behind a load balancer, the client address comes from the PROXY v1 header; a connection
    without a valid header is dropped and counted."""
    e = await open_contact_env(make_config, keyring, {"smtp": True, "smtp_port": 0, "proxy_protocol": True,
                                                       "proxy_from": ["127.0.0.0/8"]})
    try:
        smtp = await _serve(e, StaticResolver())
        reader, writer = await asyncio.open_connection("127.0.0.1", smtp.port)
        writer.write(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 25\r\n")
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"220")
        body = _message().as_bytes().replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")
        replies = await _dialogue(reader, writer, [b"EHLO lb.test\r\n", f"MAIL FROM:<{SENDER}>\r\n".encode(),
                                                   f"RCPT TO:<{CANARY_EMAIL}>\r\n".encode(), b"DATA\r\n",
                                                   body + b"\r\n.\r\n", b"QUIT\r\n"])
        assert [r[:3] for r in replies] == [b"250", b"250", b"250", b"354", b"250", b"221"]
        writer.close()
        [ev] = await e.events()
        assert ev["origin"]["client_addr"] == "203.0.113.7"
        reader, writer = await asyncio.open_connection("127.0.0.1", smtp.port)
        writer.write(b"EHLO no-proxy.test\r\n")
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed without a banner
        writer.close()
        assert metric(await e.metrics(), "canary_rejects_total", source="smtp", reason="bad_proxy_header") == 1
    finally:
        await close_contact_env(e)


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.canary-mail.test")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    return tmp / "cert.pem", tmp / "key.pem"


async def test_starttls_required(make_config: MakeConfig, keyring: Keyring) -> None:
    """With a certificate configured and require_starttls on, mail is accepted over STARTTLS and the
    evidence says so; a plaintext MAIL FROM is refused."""
    tmp = Path(tempfile.mkdtemp(prefix="canary-tls-"))
    cert, key = _self_signed(tmp)
    e = await open_contact_env(make_config, keyring, {"smtp": True, "smtp_port": 0, "tls_cert": str(cert),
                                                       "tls_key": str(key), "require_starttls": True})
    try:
        smtp = await _serve(e, StaticResolver())
        with pytest.raises(aiosmtplib.SMTPException):
            await aiosmtplib.send(_message().as_bytes(), sender=SENDER, recipients=[CANARY_EMAIL], hostname="127.0.0.1",
                                  port=smtp.port, start_tls=False, timeout=10)
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        await aiosmtplib.send(_message().as_bytes(), sender=SENDER, recipients=[CANARY_EMAIL], hostname="127.0.0.1",
                              port=smtp.port, start_tls=True, tls_context=ctx, timeout=10)
        [ev] = await e.events()
        assert ev["evidence"]["tls"] is True and " with ESMTPS; " in ev["evidence"]["received"]
        await smtp_settled(smtp)
        assert smtp.caps.open == {}  # a session that turned to TLS gave its connection back to the peer's allowance
    finally:
        await close_contact_env(e)


async def test_flood_of_1000_messages(env: ContactEnv) -> None:
    """1,000 messages over 20 concurrent connections (a third to unknown mailboxes, accepted and
    discarded like canary mail, some oversized or malformed): every reply code is right, /metrics
    counts them, the listener stays healthy, and every genuine contact is recorded exactly once."""
    smtp = await _serve(env, StaticResolver())
    expected = {"250": 0, "550": 0, "552": 0, "554": 0}
    plan = []
    discarded = 0
    for i in range(1000):
        if i % 3 == 0:
            discarded += 1
            plan.append(("250", f"unknown{i}@{MAIL_DOMAIN}", _message(to="x", subject=f"m{i}").as_bytes()))
        elif i % 50 == 1:
            plan.append(("552", CANARY_EMAIL, _message(subject=f"m{i}", attachment=b"B" * 70_000).as_bytes()))
        elif i % 50 == 2:
            plan.append(("554", CANARY_EMAIL, f"Subject: m{i}\r\nContent-Type: multipart/mixed\r\n\r\nx\r\n".encode()))
        else:
            plan.append(("250", [CANARY_EMAIL, OTHER_EMAIL][i % 2], _message(subject=f"m{i}").as_bytes()))
    got: dict[str, int] = {k: 0 for k in expected}
    for code, _, _ in plan:
        expected[code] += 1

    async def worker(items: list[tuple[str, str, bytes]]) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp.port, timeout=30)
        await client.connect()
        for code, rcpt, body in items:
            try:
                await client.sendmail(SENDER, [rcpt], body)
                got["250"] += 1
            except aiosmtplib.SMTPRecipientsRefused as exc:
                got[str(exc.recipients[0].code)] += 1
                await client.rset()
            except (aiosmtplib.SMTPDataError, aiosmtplib.SMTPSenderRefused) as exc:
                got[str(exc.code)] += 1
                if isinstance(exc, aiosmtplib.SMTPSenderRefused):
                    await client.rset()
        await client.quit()

    await asyncio.gather(*(worker(plan[i::20]) for i in range(20)))
    assert got == expected and expected["550"] == 0
    genuine = expected["250"] - discarded + expected["554"]
    await smtp_settled(smtp)
    assert await env.runtime.pool.fetchval("SELECT count(*) FROM events WHERE source = 'smtp'") == genuine
    text = await env.metrics()
    assert metric(text, "canary_events_total", source="smtp", kind="contacted") == genuine
    assert metric(text, "canary_rejects_total", source="smtp", reason="message_too_big") == expected["552"]
    assert metric(text, "canary_rejects_total", source="smtp", reason="malformed_mime") == expected["554"]
    async with __import__("aiohttp").ClientSession() as s, s.get(env.base_url + "/healthz") as r:
        assert r.status == 200 and (await r.json())["components"] == {"smtp": True}


async def test_oversized_data_without_size_parameter_gets_552(env: ContactEnv) -> None:
    """A client that does not declare SIZE and streams too much DATA gets 552 after the final dot;
    the session stays usable and the reject is counted. No message was delivered, so the canary
    named by RCPT is recorded as a probe (warning), not as a contact."""
    smtp = await _serve(env, StaticResolver())
    reader, writer = await asyncio.open_connection("127.0.0.1", smtp.port)
    assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"220")
    big = b"Subject: big\r\n\r\n" + (b"X" * 998 + b"\r\n") * 80
    replies = await _dialogue(reader, writer, [b"HELO big.test\r\n", f"MAIL FROM:<{SENDER}>\r\n".encode(),
                                               f"RCPT TO:<{CANARY_EMAIL}>\r\n".encode(), b"DATA\r\n",
                                               big + b".\r\n", b"NOOP\r\n", b"QUIT\r\n"])
    assert [r[:3] for r in replies] == [b"250", b"250", b"250", b"354", b"552", b"250", b"221"]
    writer.close()
    await smtp_settled(smtp)
    [ev] = await env.events()
    assert (ev["canary_id"], ev["severity"], ev["evidence"]["probe"]) == (env.canary_id, "warning", "rcpt")
    assert metric(await env.metrics(), "canary_rejects_total", source="smtp", reason="message_too_big") == 1


async def test_canary_address_is_redacted_from_evidence(env: ContactEnv) -> None:
    """Phishing often echoes the victim's address (greeting, tracking URL, Received 'for'): the
    canary's own address never appears in the event, plain or URL-encoded; the raw message keeps it."""
    smtp = await _serve(env, StaticResolver())
    msg = _message(subject=f"Account {CANARY_EMAIL.upper()} suspended")
    msg.replace_header("Received", f"from x (x [192.0.2.9]) by mx.phish.test for <{CANARY_EMAIL}>; Mon, 23 Nov 2026 09:59:00 +0000")
    msg.get_body(("plain",)).set_content(  # type: ignore[union-attr]
        f"Dear {CANARY_EMAIL}, verify at https://v.phish.test/?u={CANARY_EMAIL.replace('@', '%40')}&x=1")
    await aiosmtplib.send(msg.as_bytes(), sender=SENDER, recipients=[CANARY_EMAIL.replace("@", "+x@")],
                          hostname="127.0.0.1", port=smtp.port, timeout=10)
    [ev] = await env.events()
    text = str(dict(ev)).lower()
    assert "minji.kim" not in text
    assert ev["evidence"]["subject"] == "Account [canary] suspended"
    assert "https://v.phish.test/?u=[canary]&x=1" in ev["evidence"]["urls"]
    assert "for <[canary]>" in ev["evidence"]["received_claimed"]
    raw = await load_raw(env.runtime, ev["evidence"]["raw_evidence_id"])
    assert raw is not None and CANARY_EMAIL.encode() in raw
