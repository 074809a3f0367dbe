"""Contact detection latency: time from the end of SMTP DATA / webhook receipt to the alert being
committed and handed to the outbox (the 250 / 2xx is sent only after that commit).

Runs a real listener (SMTP server + Twilio and Mailgun webhooks) on an embedded PostgreSQL and sends
N messages per channel, sequentially and with concurrency, printing p50/p99 side by side and the
ratio to the 100 ms p99 target. The load generator runs in a separate process (as real senders and
providers are remote), so its own work does not queue on the listener's event loop. SPF and DKIM are evaluated on every SMTP message through a static
resolver (no network): the DKIM message is really signed and verified.

    python bench/contact_latency.py [--messages 1000] [--concurrency 20]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import multiprocessing
import shutil
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from canary.config import from_mapping
from canary.contact.mail_webhooks import MailgunInbound
from canary.contact.phone import TwilioInbound, twilio_signature
from canary.contact.smtp import SmtpSource
from canary.crypto import Keyring, generate_key
from canary.listener import Listener
from canary.logs import configure
from canary.runtime import open_runtime
from canary.store.embedded import PostgresServer
from canary.store.registry import NewCanary

DOMAIN = "canary-mail.test"
PUBLIC = "https://canary.example.com"
TOKEN = "bench-twilio-token"
MG_KEY = "bench-mailgun-key"
TARGET_P99 = 0.100


class StaticResolver:
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[Any]] = {}

    def lookup(self, name: str, qtype: str, timeout: float) -> list[Any]:
        return list(self.records.get((name.lower().rstrip("."), qtype), []))


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


async def smtp_session(port: int, messages: list[bytes], rcpt: str, out: list[float]) -> None:
    """One SMTP connection; for each message, time from the final '.' to the 250 reply."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> bytes:
        while True:
            line = await reader.readline()
            if line[3:4] != b"-":
                return line

    await reply()
    writer.write(b"EHLO bench.phish.test\r\n")
    await reply()
    for msg in messages:
        writer.write(b"MAIL FROM:<security@phish.test>\r\n" + f"RCPT TO:<{rcpt}>\r\n".encode() + b"DATA\r\n")
        for expect in (b"250", b"250", b"354"):
            assert (await reply()).startswith(expect)
        body = msg.replace(b"\r\n.", b"\r\n..")
        writer.write(body + b"\r\n.\r\n")
        await writer.drain()
        t0 = time.perf_counter()
        line = await reply()
        out.append(time.perf_counter() - t0)
        assert line.startswith(b"250"), line
    writer.write(b"QUIT\r\n")
    await reply()
    writer.close()


async def _http_load(url: str, payloads: list[Any], width: int, twilio: bool) -> list[float]:
    out: list[float] = []
    sem = asyncio.Semaphore(width)
    async with aiohttp.ClientSession() as http:
        async def one(payload: Any) -> None:
            data, headers = (payload[0], {"X-Twilio-Signature": payload[1]}) if twilio else (payload, {})
            async with sem:
                t0 = time.perf_counter()
                async with http.post(url, data=data, headers=headers) as r:
                    await r.read()
                out.append(time.perf_counter() - t0)
                assert r.status == 200, r.status

        await asyncio.gather(*(one(p) for p in payloads))
    return out


async def _smtp_load(port: int, rcpt: str, messages: list[bytes], width: int) -> list[float]:
    out: list[float] = []
    await asyncio.gather(*(smtp_session(port, messages[k::width], rcpt, out) for k in range(width)))
    return out


def load(kind: str, target: Any, payloads: list[Any], width: int) -> list[float]:
    """Client side, run in a separate process: send the payloads ``width`` at a time; latencies."""
    if kind == "smtp":
        port, rcpt = target
        return asyncio.run(_smtp_load(port, rcpt, payloads, width))
    return asyncio.run(_http_load(target, payloads, width, twilio=kind == "twilio"))


async def run(n: int, concurrency: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="canary-bench-contact-"))
    server = PostgresServer(tmp / "pg", bin_dir=None, settings={})
    server.start()
    try:
        admin = await asyncpg.connect(server.dsn())
        await admin.execute("CREATE DATABASE bench_contact")
        await admin.close()
        cfg = from_mapping({
            "canary": {"data_dir": str(tmp)}, "control": {"dsn": server.dsn("bench_contact"), "pool_max": 20},
            "listener": {"public_url": PUBLIC}, "sinks": [{"name": "oncall", "type": "stdout", "min_severity": "critical"}],
            "contact": {"mail_domains": [DOMAIN], "smtp": True, "smtp_port": 0, "twilio_auth_token": TOKEN,
                        "mailgun_signing_key": MG_KEY},
        })
        configure("error")
        runtime = await open_runtime(cfg, keyring=Keyring(generate_key()))
        async with runtime.pool.acquire() as conn, conn.transaction():
            await runtime.registry.add(conn, [NewCanary(
                kind="customer", datastore="shop", label="shop/public.customers", location={"target": "t", "pk": 1},
                lookup="shop|t|1", values=[("email", f"minji.kim@{DOMAIN}"), ("phone", "+821012345678")])], None)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
        spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        resolver = StaticResolver()
        resolver.records[("s1._domainkey.phish.test", "TXT")] = [(b"v=DKIM1; k=rsa; p=" + base64.b64encode(spki),)]
        resolver.records[("phish.test", "TXT")] = [(b"v=spf1 ip4:127.0.0.0/8 -all",)]
        smtp = SmtpSource(cfg.contact, resolver=resolver)
        listener = Listener(runtime, [smtp, TwilioInbound(cfg.contact, PUBLIC), MailgunInbound(cfg.contact)])
        from aiohttp import web

        runner = web.AppRunner(listener.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        assert smtp.port is not None

        def mail(i: int) -> bytes:
            raw = (f"From: Coupang <security@phish.test>\r\nTo: minji.kim@{DOMAIN}\r\nSubject: Order {i} held\r\n"
                   f"Message-ID: <{uuid.uuid4().hex}@phish.test>\r\n\r\n"
                   f"Confirm at https://coupang.phish.test/o/{i} now.\r\n").encode()
            return dkim.sign(raw, b"s1", b"phish.test", pem) + raw

        rcpt = f"minji.kim@{DOMAIN}"

        def twilio_payload(i: int) -> tuple[dict[str, str], str]:
            p = {"MessageSid": f"SM{uuid.uuid4().hex}", "From": f"+8210555{i % 997:05d}", "To": "+821012345678",
                 "Body": f"[Web] parcel {i} held https://dlvr.phish.test/{i}", "FromCountry": "KR"}
            return p, twilio_signature(TOKEN, PUBLIC + "/twilio/sms", list(p.items()))

        def mailgun_payload(i: int) -> dict[str, str]:
            ts, tok = str(int(time.time())), uuid.uuid4().hex
            return {"recipient": rcpt, "sender": "security@phish.test", "timestamp": ts, "token": tok,
                    "signature": hmac.new(MG_KEY.encode(), (ts + tok).encode(), hashlib.sha256).hexdigest(),
                    "body-mime": mail(i).decode(), "message-headers": "[]"}

        results: dict[str, list[float]] = {}
        loop = asyncio.get_running_loop()
        # the load generator runs in its own process, so client work does not queue on the listener's loop
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            for label, kind, target, make in (
                ("smtp", "smtp", (smtp.port, rcpt), mail),
                ("twilio sms", "twilio", base + "/twilio/sms", twilio_payload),
                ("mailgun", "mailgun", base + "/inbound/mailgun", mailgun_payload),
            ):
                for width in (1, concurrency):
                    payloads = [make(i) for i in range(n)]
                    name = f"{label} " + ("sequential" if width == 1 else f"x{width}")
                    results[name] = await loop.run_in_executor(pool, load, kind, target, payloads, width)

        events = await runtime.pool.fetchval("SELECT count(*) FROM events")
        await runner.cleanup()
        print("contact latency: end of DATA / webhook receipt -> event committed and queued to the outbox")
        print(f"{n} messages per row; {events} events committed; target p99 < {TARGET_P99 * 1000:.0f} ms\n")
        print(f"{'channel':<24}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'mean ms':>9}{'p99/target':>12}")
        for label, vals in results.items():
            print(f"{label:<24}{pct(vals, 50) * 1000:9.2f}{pct(vals, 99) * 1000:9.2f}{max(vals) * 1000:9.2f}"
                  f"{statistics.mean(vals) * 1000:9.2f}{pct(vals, 99) / TARGET_P99:12.2f}")
        s_seq, s_conc = results["smtp sequential"], results[f"smtp x{concurrency}"]
        print(f"\nsmtp x{concurrency} p99 / sequential p99: {pct(s_conc, 99) / pct(s_seq, 99):.2f}")
        tw = results["twilio sms sequential"]
        print(f"twilio sms p99 / smtp p99 (sequential): {pct(tw, 99) / pct(s_seq, 99):.2f}")
    finally:
        server.destroy()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=20)
    args = ap.parse_args()
    asyncio.run(run(args.messages, args.concurrency))


if __name__ == "__main__":
    main()
