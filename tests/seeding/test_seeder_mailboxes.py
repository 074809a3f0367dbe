"""Owned free-mail mailboxes as canary e-mail values ([seeding].mailboxes): used before pool domains,
both the mailbox and its forwarding address registered, mail forwarded to us recognised."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib
import asyncpg
import pytest
from contact_support import MAIL_DOMAIN, StaticResolver, close_contact_env, open_contact_env
from seeder_helpers import Shop
from testkit import MakeConfig

from canary.contact.smtp import SmtpSource
from canary.crypto import Keyring
from canary.errors import ConfigError
from canary.seeding.postgres import PostgresSeeder
from canary.store import ControlStore
from canary.store.registry import Registry

MAILBOXES = [{"address": f"sky.walker{i:02d}@naver.com", "forward_to": f"fw-{i:02d}@{MAIL_DOMAIN}"} for i in range(4)]


def _message(to: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Naver Mail <noreply@naver.test>"
    msg["To"] = to
    msg["Subject"] = "Fwd: limited offer for valued customers"
    msg["Message-ID"] = "<fwd-1@naver.test>"
    msg.set_content("Claim your voucher at https://voucher.phish.test/claim today.")
    return msg.as_bytes()


async def test_mailboxes_come_first_and_forwarded_mail_names_the_canary(shop: Shop, make_config: MakeConfig, keyring: Keyring) -> None:
    """With a mailbox pool, canaries take the owned free-mail addresses (each once) before any pool
    domain, plan warns once the mailboxes run out, and a message the provider forwards to
    ``forward_to`` through the real SMTP source raises a CONTACTED event naming that canary."""
    env = await open_contact_env(
        make_config, keyring, {"smtp": True, "smtp_port": 0},
        datastores=[{"name": "shop", "dsn": shop.dsn, "tables": [{"table": "public.customers", "count": 8}]}],
        seeding={"mailboxes": MAILBOXES, "email_domains": [MAIL_DOMAIN], "phone_numbers": ["+15550100000-+15550100099"]},
    )
    try:  # the contact environment already registers two canaries there: six are added
        seeder = PostgresSeeder.from_config(env.runtime.config, "shop", env.runtime.registry, seed=5)
        plan = await seeder.plan()
        assert any("mailbox pool is exhausted" in w and "2 canaries" in w for t in plan.targets for w in t.warnings), [t.warnings for t in plan.targets]
        await seeder.apply()
        conn = await asyncpg.connect(shop.dsn)
        try:
            emails = [r["email"] for r in await conn.fetch(
                "SELECT c.email FROM public.customers c WHERE c.email LIKE 'sky.walker%' OR c.email LIKE $1", f"%@{MAIL_DOMAIN}")]
        finally:
            await conn.close()
        boxes = {m["address"] for m in MAILBOXES}
        assert boxes <= set(emails) and len(emails) == 6  # every mailbox once, then two at the pool domain
        owner = await env.runtime.registry.by_value("email", "sky.walker02@naver.com")
        assert owner is not None and owner.kind == "customer"
        assert (await env.runtime.registry.by_value("email", f"fw-02@{MAIL_DOMAIN}")) == owner

        smtp = SmtpSource(env.runtime.config.contact, resolver=StaticResolver())
        await env.serve([smtp])
        reply = await aiosmtplib.send(_message("sky.walker02@naver.com"), sender="forwarder@naver.test",
                                      recipients=[f"fw-02@{MAIL_DOMAIN}"], hostname="127.0.0.1", port=smtp.port, timeout=10)
        assert reply[1] == "2.0.0 OK"
        [ev] = await env.events()
        assert ev["kind"] == "contacted" and ev["canary_id"] == owner.id

        again = PostgresSeeder.from_config(env.runtime.config, "shop", env.runtime.registry, seed=6)
        more = await again.plan()  # the mailboxes are taken: a rerun does not hand them out twice
        assert all("sky.walker" not in str(r.values.get("email")) for t in more.targets for r in t.rows)
    finally:
        await close_contact_env(env)


def test_mailbox_entries_must_be_e_mail_addresses(make_config: MakeConfig) -> None:
    """Both ``address`` and ``forward_to`` are validated as e-mail addresses, with the key path."""
    with pytest.raises(ConfigError, match=r"seeding\.mailboxes\.0\.forward_to|seeding\.mailboxes\[0\]\.forward_to"):
        make_config(seeding={"mailboxes": [{"address": "a.b@naver.com", "forward_to": "not-an-address"}]})
    cfg = make_config(seeding={"mailboxes": [{"address": "A.b@NAVER.com", "forward_to": f"fw@{MAIL_DOMAIN}"}]})
    assert cfg.seeding.mailboxes[0].address == "A.b@naver.com"


async def test_a_canary_is_named_as_its_mailbox_reads(shop: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """An owned mailbox ``first.last@`` (digits after it allowed) names its canary in a Latin-script
    table: "trevon.mcgowan@gmail.com" belongs to Trevon Mcgowan, not to whoever the frequency match
    drew (a name that does not match its own address is a tell)."""
    boxes = [{"address": a, "forward_to": f"fw-{i}@{MAIL_DOMAIN}"}
             for i, a in enumerate(["trevon.mcgowan@gmail.com", "ines_okafor88@yahoo.com", "x9handle@gmail.com"])]
    cfg = make_config(seeding={"mailboxes": boxes, "email_domains": [MAIL_DOMAIN]},
                      datastores=[{"name": "shop", "dsn": shop.dsn, "tables": [{"table": "public.customers", "count": 3}]}])
    await PostgresSeeder.from_config(cfg, "shop", Registry(store.pool, keyring), seed=5).apply()
    conn = await asyncpg.connect(shop.dsn)
    try:
        await conn.execute("SET row_security = off")
        named = {r["email"]: r["full_name"] for r in await conn.fetch(
            "SELECT email, full_name FROM public.customers WHERE email = ANY($1::text[])", [b["address"] for b in boxes])}
    finally:
        await conn.close()
    assert named["trevon.mcgowan@gmail.com"] == "Trevon Mcgowan"
    assert named["ines_okafor88@yahoo.com"] == "Ines Okafor"
    assert "x9handle@gmail.com" in named
