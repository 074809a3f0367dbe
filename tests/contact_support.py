"""Helpers for the contact tests: a runtime with registered canaries, a listener serving it on a real
port, a static DNS resolver (no DNS here) and DKIM keys published through it."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from testkit import MakeConfig

from canary.contact.smtp import SmtpSource
from canary.crypto import Keyring
from canary.listener import Listener
from canary.runtime import Runtime, open_runtime
from canary.store.registry import NewCanary
from canary.typing import Component

MAIL_DOMAIN = "canary-mail.test"
CANARY_EMAIL = f"minji.kim@{MAIL_DOMAIN}"
CANARY_PHONE = "+821012345678"
OTHER_EMAIL = f"jiho.park@{MAIL_DOMAIN}"
OTHER_PHONE = "+821098765432"


class StaticResolver:
    """DNS answers from a table: {(name, qtype): [values]} in the Resolver value shapes."""

    def __init__(self, records: Mapping[tuple[str, str], list[Any]] | None = None) -> None:
        self.records = {(n.lower().rstrip("."), t): v for (n, t), v in (records or {}).items()}
        self.queries: list[tuple[str, str]] = []

    def lookup(self, name: str, qtype: str, timeout: float) -> list[Any]:
        self.queries.append((name.lower(), qtype))
        return list(self.records.get((name.lower().rstrip("."), qtype), []))

    def publish_dkim(self, selector: str, domain: str, public_txt: bytes) -> None:
        self.records[(f"{selector}._domainkey.{domain}", "TXT")] = [(public_txt,)]

    def publish_spf(self, domain: str, policy: str) -> None:
        self.records[(domain, "TXT")] = [(policy.encode(),)]


def dkim_keys() -> tuple[bytes, bytes]:
    """(private key PEM, DKIM TXT record) for a fresh 2048-bit RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(spki)


@dataclass
class ContactEnv:
    runtime: Runtime
    canary_id: int
    other_id: int
    listener: Listener | None = None
    runner: web.AppRunner | None = None
    base_url: str = ""
    components: list[Component] = field(default_factory=list)

    async def serve(self, components: Sequence[Component] | None, port: int = 0) -> str:
        """Serve the listener on a real port; ``components=None`` uses default_components()."""
        self.listener = Listener(self.runtime, None if components is None else list(components))
        self.runner = web.AppRunner(self.listener.app(), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        sock_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{sock_port}"
        return self.base_url

    async def metrics(self) -> str:
        async with aiohttp.ClientSession() as s, s.get(self.base_url + "/metrics") as r:
            assert r.status == 200
            return await r.text()

    async def events(self) -> list[Any]:
        return await self.runtime.pool.fetch("SELECT * FROM events ORDER BY id")


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, _, value = line.rpartition(" ")
            got = head[len(name):].strip("{}")
            if ",".join(sorted(got.split(","))) == want or (not labels and not got):
                return float(value)
    return 0.0


async def open_contact_env(make_config: MakeConfig, keyring: Keyring, contact: Mapping[str, Any],
                           **sections: Any) -> ContactEnv:
    cfg = make_config(contact={"mail_domains": [MAIL_DOMAIN], **contact},
                      sinks=[{"name": "oncall", "type": "stdout"}], listener={"public_url": "https://canary.example.com"},
                      **sections)
    runtime = await open_runtime(cfg, keyring=keyring)
    async with runtime.pool.acquire() as conn, conn.transaction():
        (cid, _), (oid, _) = await runtime.registry.add(conn, [
            NewCanary(kind="customer", datastore="shop", label="shop/public.customers", location={"target": "public.customers", "pk": 1},
                      lookup="shop|public.customers|1", values=[("email", CANARY_EMAIL), ("phone", CANARY_PHONE)]),
            NewCanary(kind="customer", datastore="shop", label="shop/public.customers", location={"target": "public.customers", "pk": 2},
                      lookup="shop|public.customers|2", values=[("email", OTHER_EMAIL), ("phone", OTHER_PHONE)]),
        ], None)
    return ContactEnv(runtime=runtime, canary_id=cid, other_id=oid)


async def close_contact_env(env: ContactEnv) -> None:
    if env.runner is not None:
        await env.runner.cleanup()  # stops the listener, which closes the runtime
    else:
        from canary.runtime import close_runtime

        await close_runtime(env.runtime)


def contact_fixture(contact: Mapping[str, Any], **sections: Any) -> Any:
    """A pytest fixture yielding a ContactEnv with the given [contact] settings."""

    @pytest.fixture
    async def env(make_config: MakeConfig, keyring: Keyring) -> AsyncIterator[ContactEnv]:
        e = await open_contact_env(make_config, keyring, contact, **sections)
        try:
            yield e
        finally:
            await close_contact_env(e)

    return env


async def smtp_settled(smtp: SmtpSource) -> None:
    """Wait until the MX has seen every connection close and committed what they handed over."""
    for _ in range(500):
        if not smtp.connections:
            break
        await asyncio.sleep(0.01)
    await smtp.settled()


@dataclass
class SmtpDialogue:
    """A raw SMTP client (no client library rewrites what we send): one command, its whole reply, and how
    long the reply took."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @classmethod
    async def open(cls, port: int, source: str = "127.0.0.1") -> SmtpDialogue:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        d = cls(reader, writer)
        assert (await d.reply()).startswith(b"220")
        return d

    async def reply(self) -> bytes:
        lines = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            lines.append(line)
            if line[3:4] != b"-":
                return b"".join(lines)

    async def say(self, line: str) -> bytes:
        return (await self.timed(line))[0]

    async def timed(self, line: str) -> tuple[bytes, float]:
        t0 = time.perf_counter()
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()
        reply = await self.reply()
        return reply, time.perf_counter() - t0

    async def close(self) -> None:
        if not self.writer.is_closing():
            await self.say("QUIT")
        self.writer.close()
        await self.writer.wait_closed()


async def serve_smtp(e: ContactEnv) -> SmtpSource:
    """The MX of ``e``'s contact config on a free port, with a static resolver."""
    smtp = SmtpSource(e.runtime.config.contact, resolver=StaticResolver())
    await e.serve([smtp])
    assert smtp.port
    return smtp
