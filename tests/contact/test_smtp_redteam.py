"""The canary MX attacked by an insider who has read its source: no spelling of a canary's address
reaches the mailbox unseen, and nothing the MX says tells it apart from an ordinary mail server.

An MTA delivers ``"minji.kim"@domain`` (a quoted local part stands for its content, RFC 5322
§3.2.4) and, from a sender without
SMTPUTF8, ``minji@xn--...`` (the A-label of an internationalised domain, RFC 5890) to the same mailbox
as the plain spelling; each must be the same contact (and the same probe) as the plain spelling.
Real SMTP dialogues over loopback against the real listener runtime and control store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from contact_support import (
    CANARY_EMAIL,
    MAIL_DOMAIN,
    ContactEnv,
    SmtpDialogue,
    close_contact_env,
    contact_fixture,
    metric,
    open_contact_env,
    serve_smtp,
    smtp_settled,
)
from testkit import MakeConfig

from canary.contact.smtp import RCPT_OK, SmtpSource
from canary.crypto import Keyring
from canary.errors import ConfigError
from canary.runtime import open_runtime
from canary.store.registry import NewCanary

env = contact_fixture({"smtp": True, "smtp_port": 0, "smtp_probe_limit": 100_000})

LOCAL = CANARY_EMAIL.split("@")[0]
#: Spellings of the canary's mailbox an MTA delivers to it, each a different text.
SPELLINGS = [
    f'"{LOCAL}"@{MAIL_DOMAIN}',  # quoted local part
    f'"{LOCAL.upper()}"@{MAIL_DOMAIN.upper()}',  # in capitals
    f'"{LOCAL}+tag"@{MAIL_DOMAIN}',  # quoted, plus-addressed
    f'@relay.test:"{LOCAL}"@{MAIL_DOMAIN}',  # source route (RFC 5321 §4.1.1.3: ignored)
]
IDN_DOMAIN = "메일.test"
IDN_A_LABEL = IDN_DOMAIN.encode("idna").decode()


async def _deliver(smtp: SmtpSource, rcpt: str, subject: str) -> bytes:
    d = await SmtpDialogue.open(smtp.port or 0)
    assert (await d.say("EHLO sender.test")).startswith(b"250")
    assert (await d.say("MAIL FROM:<phish@sender.test>")).startswith(b"250")
    assert await d.say(f"RCPT TO:<{rcpt}>") == RCPT_OK.encode() + b"\r\n", rcpt
    assert (await d.say("DATA")).startswith(b"354")
    reply = await d.say(f"From: <phish@sender.test>\r\nSubject: {subject}\r\nMessage-ID: <{subject}@sender.test>\r\n"
                        f"\r\nhello\r\n.")
    await d.close()
    return reply


async def test_every_spelling_of_a_canary_mailbox_is_a_contact(env: ContactEnv) -> None:
    """Mail to each spelling an MTA delivers to the canary's mailbox (quoted local part, capitals,
    plus tag, source route) is accepted like any mail and recorded as a critical contact of
    that canary; an RCPT naming a quoted spelling without a message is a probe of it."""
    smtp = await serve_smtp(env)
    for i, rcpt in enumerate(SPELLINGS):
        assert (await _deliver(smtp, rcpt, f"s{i}")).startswith(b"250 2.0.0")
    d = await SmtpDialogue.open(smtp.port or 0)
    assert (await d.say("EHLO enum.test")).startswith(b"250")
    assert (await d.say("MAIL FROM:<x@enum.test>")).startswith(b"250")
    assert (await d.say(f'RCPT TO:<"{LOCAL}"@{MAIL_DOMAIN}>')).startswith(b"250")
    await d.say(f'VRFY "{LOCAL}"@{MAIL_DOMAIN}')
    await d.close()
    await smtp_settled(smtp)
    events = await env.events()
    contacts = [e for e in events if e["severity"] == "critical"]
    assert sorted(e["evidence"]["subject"] for e in contacts) == sorted(f"s{i}" for i in range(len(SPELLINGS)))
    assert {e["canary_id"] for e in contacts} == {env.canary_id}
    probes = sorted(e["evidence"]["probe"] for e in events if e["severity"] == "warning")
    assert probes == ["rcpt", "vrfy"] and {e["canary_id"] for e in events} == {env.canary_id}
    assert LOCAL not in str([dict(e) for e in events])  # the address, in any spelling, is never stored


@pytest.fixture
async def idn_env(make_config: MakeConfig, keyring: Keyring) -> AsyncIterator[ContactEnv]:
    cfg = make_config(contact={"mail_domains": [IDN_DOMAIN], "smtp": True, "smtp_port": 0},
                      sinks=[{"name": "oncall", "type": "stdout"}])
    runtime = await open_runtime(cfg, keyring=keyring)
    async with runtime.pool.acquire() as conn, conn.transaction():
        [(cid, _)] = await runtime.registry.add(conn, [NewCanary(
            kind="customer", datastore="shop", label="shop/public.customers", location={"target": "public.customers", "pk": 1},
            lookup="shop|public.customers|1", values=[("email", f"{LOCAL}@{IDN_DOMAIN}")])], None)
    e = ContactEnv(runtime=runtime, canary_id=cid, other_id=cid)
    try:
        yield e
    finally:
        await close_contact_env(e)


async def test_an_internationalised_domain_is_ours_in_its_ascii_form(idn_env: ContactEnv) -> None:
    """With a Unicode mail domain configured, a sender without SMTPUTF8 writes the domain's A-label
    (``xn--…``): the MX accepts it as its own (no relay refusal) and mail to the canary spelt so is a
    contact; the other way round as well (A-label configured would be the same mailbox)."""
    smtp = await serve_smtp(idn_env)
    assert (await _deliver(smtp, f"{LOCAL}@{IDN_A_LABEL}", "ascii")).startswith(b"250 2.0.0")
    assert (await _deliver(smtp, f'"{LOCAL.upper()}"@{IDN_A_LABEL.upper()}', "ascii-caps")).startswith(b"250 2.0.0")
    await smtp_settled(smtp)
    events = await idn_env.events()
    assert sorted(e["evidence"]["subject"] for e in events) == ["ascii", "ascii-caps"]
    assert {(e["canary_id"], e["severity"]) for e in events} == {(idn_env.canary_id, "critical")}


async def test_the_mx_does_not_introduce_itself_as_a_canary(env: ContactEnv) -> None:
    """The greeting, EHLO, HELP and every reply of a session name no 'canary' (a banner saying so
    tells every prober the domain is a trap); the greeting is the configured banner."""
    smtp = await serve_smtp(env)
    reader, writer = await asyncio.open_connection("127.0.0.1", smtp.port)
    d = SmtpDialogue(reader, writer)
    greeting = await d.reply()
    assert greeting == f"220 {env.runtime.config.canary.node_name} ESMTP\r\n".encode()
    replies = [greeting]
    for line in ("EHLO a.test", "HELP", "HELP RCPT", "NOOP", f"MAIL FROM:<a@{MAIL_DOMAIN}>", f"RCPT TO:<{CANARY_EMAIL}>",
                 "RSET"):
        replies.append(await d.say(line))
    await d.close()
    assert not any(b"canary" in r.lower() for r in replies), replies
    await smtp_settled(smtp)


async def test_a_proxy_header_is_believed_only_from_the_load_balancers(make_config: MakeConfig, keyring: Keyring) -> None:
    """With the PROXY protocol on, a peer outside ``contact.proxy_from`` that sends a PROXY header
    naming another client is dropped before the greeting and counted (``untrusted_proxy_header``):
    it cannot name another peer in an event, nor spread its probes over forged peers to stay under
    the tarpit. Turning the PROXY protocol on without ``proxy_from`` is a configuration error."""
    with pytest.raises(ConfigError, match="proxy_from"):
        make_config(contact={"mail_domains": [MAIL_DOMAIN], "smtp": True, "proxy_protocol": True})
    e = await open_contact_env(make_config, keyring, {"smtp": True, "smtp_port": 0, "proxy_protocol": True,
                                                       "proxy_from": ["192.0.2.0/24"], "smtp_probe_limit": 100_000})
    try:
        smtp = await serve_smtp(e)
        reader, writer = await asyncio.open_connection("127.0.0.1", smtp.port)
        writer.write(b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 25\r\nEHLO forged.test\r\nMAIL FROM:<a@forged.test>\r\n"
                     + f"RCPT TO:<{CANARY_EMAIL}>\r\nQUIT\r\n".encode())
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed without a banner
        writer.close()
        await smtp_settled(smtp)
        assert await e.events() == []
        for _ in range(100):  # counted as the connection's handler ends, just after the close
            if metric(await e.metrics(), "canary_rejects_total", source="smtp", reason="untrusted_proxy_header"):
                break
            await asyncio.sleep(0.02)
        assert metric(await e.metrics(), "canary_rejects_total", source="smtp", reason="untrusted_proxy_header") == 1
    finally:
        await close_contact_env(e)


async def test_one_peer_cannot_hold_every_smtp_connection(make_config: MakeConfig, keyring: Keyring) -> None:
    """A peer holding ``smtp_max_connections_per_peer`` idle sessions gets no more: the next is closed
    before the greeting and counted (``connection_cap``), and the episode raises one HEALTH event naming
    the peer (mail from its network may be going unheard). Meanwhile mail to a canary from another
    peer is delivered and recorded, and once the peer closes a session it may open one again."""
    e = await open_contact_env(make_config, keyring, {"smtp": True, "smtp_port": 0, "smtp_max_connections_per_peer": 4})
    try:
        smtp = await serve_smtp(e)
        held = [await SmtpDialogue.open(smtp.port or 0) for _ in range(4)]  # each greeted, then silent
        reader, writer = await asyncio.open_connection("127.0.0.1", smtp.port)
        try:
            assert await asyncio.wait_for(reader.read(), 5) == b""
        except ConnectionResetError:
            pass
        writer.close()
        r2, w2 = await asyncio.open_connection("127.0.0.1", smtp.port, local_addr=("127.0.0.2", 0))
        d = SmtpDialogue(r2, w2)
        assert (await d.reply()).startswith(b"220")
        for line in ("EHLO other.test", "MAIL FROM:<a@other.test>", f"RCPT TO:<{CANARY_EMAIL}>"):
            assert (await d.say(line)).startswith(b"250")
        assert (await d.say("DATA")).startswith(b"354")
        assert (await d.say("Subject: held\r\n\r\nhi\r\n.")).startswith(b"250 2.0.0")
        await d.close()
        await held.pop().close()
        await asyncio.sleep(0.05)
        again = await SmtpDialogue.open(smtp.port or 0)  # the peer is back under its allowance
        for dialogue in [*held, again]:
            await dialogue.close()
        await smtp_settled(smtp)
        assert smtp.reporter is not None
        await smtp.reporter.drain(timeout=10)
        event, health = sorted(await e.events(), key=lambda r: r["kind"] == "health")
        assert (event["canary_id"], event["severity"], event["origin"]["client_addr"]) == (e.canary_id, "critical", "127.0.0.2")
        assert (health["kind"], health["severity"], health["group_key"]) == ("health", "error", f"contact-pressure:smtp:{smtp.port}")
        assert health["evidence"]["signal"] == "contact_pressure"
        assert (health["evidence"]["refused"], health["evidence"]["top_peers"]) == (1, {"127.0.0.1": 1})
        assert metric(await e.metrics(), "canary_rejects_total", source="smtp", reason="connection_cap") == 1
        assert smtp.caps.open == {}
    finally:
        await close_contact_env(e)
