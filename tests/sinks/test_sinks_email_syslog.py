"""E-mail sink against a real aiosmtpd server with STARTTLS; syslog sink against real UDP/TCP/TLS
receivers that parse RFC 5424 with octet-counting framing; CEF escaping."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import ipaddress
import re
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from alerting_servers import make_alert
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from canary import plugins
from canary.alerts import AlertAction
from canary.attack import attack_json
from canary.config import SinkConfig
from canary.errors import DeliveryError
from canary.events import EventKind
from canary.sinks import syslog as syslog_sink


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    d = tmp_path_factory.mktemp("tls")
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return d / "cert.pem", d / "key.pem"


def _server_context(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(tls_files[0]), str(tls_files[1]))
    return ctx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    """aiosmtpd handler: keeps accepted messages; refuses recipients at refused.example with 550."""

    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, bool]] = []

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]) -> str:
        if address.endswith("@refused.example"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append((envelope, session.ssl is not None))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server(tls_files: tuple[Path, Path]) -> Iterator[tuple[Controller, Inbox]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port(), tls_context=_server_context(tls_files),
                            require_starttls=True)
    controller.start()
    yield controller, inbox
    controller.stop()


def _sink(type_: str, http: aiohttp.ClientSession, **options: object) -> Any:
    cfg = SinkConfig(name=f"{type_}-1", type=type_, **options)
    return plugins.sink_types()[type_](cfg.name, plugins.sink_options(cfg, 0), http)


async def test_email_is_sent_over_starttls_and_threads_updates(smtp_server: tuple[Controller, Inbox], tls_files: tuple[Path, Path], http: aiohttp.ClientSession) -> None:
    """The mail goes through STARTTLS (the server requires it), verified against the test CA; an
    update replies to the trigger's Message-ID so clients thread one incident."""
    controller, inbox = smtp_server
    sink = _sink("email", http, host="127.0.0.1", port=controller.port, ca_file=str(tls_files[0]),
                 from_addr="canary@corp.example", to=["oncall@corp.example", "soc@corp.example"])
    await sink.send(make_alert(actor={"user": "mallory\r\nBcc: victim@evil.example"}))
    await sink.send(make_alert(action=AlertAction.UPDATE, sequence=1))
    assert len(inbox.messages) == 2 and all(tls for _, tls in inbox.messages)
    env, _ = inbox.messages[0]
    assert sorted(env.rcpt_tos) == ["oncall@corp.example", "soc@corp.example"]
    first = email.message_from_bytes(env.content, policy=email.policy.default)  # type: ignore[arg-type]
    second = email.message_from_bytes(inbox.messages[1][0].content, policy=email.policy.default)  # type: ignore[arg-type]
    assert first["Subject"].startswith("[canary] Canary data read")
    assert first["Bcc"] is None and "victim@evil.example" in first.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert second["In-Reply-To"] == first["Message-ID"] and second["Subject"].startswith("[canary] [ESCALATED]")


async def test_email_refused_recipient_is_permanent(smtp_server: tuple[Controller, Inbox], tls_files: tuple[Path, Path], http: aiohttp.ClientSession) -> None:
    """A 550 for every recipient is a permanent DeliveryError (dead letter, not an endless retry)."""
    controller, _ = smtp_server
    sink = _sink("email", http, host="127.0.0.1", port=controller.port, ca_file=str(tls_files[0]),
                 from_addr="canary@corp.example", to=["nobody@refused.example"])
    with pytest.raises(DeliveryError) as info:
        await sink.send(make_alert())
    assert info.value.permanent and "550" in str(info.value)


async def test_email_untrusted_certificate_and_dead_server_are_retryable(smtp_server: tuple[Controller, Inbox], http: aiohttp.ClientSession) -> None:
    """Without the CA the certificate fails verification (retryable, never sent in clear); a closed
    port is retryable too."""
    controller, inbox = smtp_server
    sink = _sink("email", http, host="127.0.0.1", port=controller.port, from_addr="canary@corp.example",
                 to=["oncall@corp.example"], timeout=5)
    with pytest.raises(DeliveryError) as info:
        await sink.send(make_alert())
    assert not info.value.permanent and inbox.messages == []
    closed = _sink("email", http, host="127.0.0.1", port=_free_port(), from_addr="canary@corp.example",
                   to=["oncall@corp.example"], timeout=5)
    with pytest.raises(DeliveryError) as info2:
        await closed.send(make_alert())
    assert not info2.value.permanent


_RFC5424 = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) (?P<proc>\S+) (?P<msgid>\S+) "
    r"(?P<sd>\[(?:[^\]\\]|\\.)*\]) (?P<msg>.*)$", re.S,
)


class SyslogReceiver:
    """Receives syslog over UDP, or TCP/TLS with octet-counting framing (RFC 6587 / RFC 5425)."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.got = asyncio.Event()
        self.port = 0
        self.connections: list[asyncio.StreamWriter] = []

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections.append(writer)
        try:
            while True:
                length = await reader.readuntil(b" ")
                self.messages.append(await reader.readexactly(int(length[:-1])))
                self.got.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def start_stream(self, ctx: ssl.SSLContext | None = None) -> asyncio.Server:
        server = await asyncio.start_server(self._stream, "127.0.0.1", 0, ssl=ctx)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def start_udp(self) -> asyncio.DatagramTransport:
        receiver = self

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                receiver.messages.append(data)
                receiver.got.set()

        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        self.port = transport.get_extra_info("sockname")[1]
        return transport

    async def wait(self, n: int) -> None:
        async with asyncio.timeout(5):
            while len(self.messages) < n:
                self.got.clear()
                await self.got.wait()


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_syslog_rfc5424_over_each_transport(transport: str, tls_files: tuple[Path, Path], http: aiohttp.ClientSession) -> None:
    """Each transport delivers parseable RFC 5424 frames; TCP/TLS use octet counting so a multi-line
    summary stays one message; structured data carries the incident and dedup key."""
    rx = SyslogReceiver()
    server = await (rx.start_udp() if transport == "udp" else rx.start_stream(_server_context(tls_files) if transport == "tls" else None))
    try:
        sink = _sink("syslog", http, host="127.0.0.1", port=rx.port, transport=transport, ca_file=str(tls_files[0]),
                     facility="authpriv", hostname="canary-node")
        await sink.send(make_alert(summary='line one\nline "two" ] \\ end'))
        await sink.send(make_alert(action=AlertAction.UPDATE, sequence=1, severity="warning"))
        await rx.wait(2)
        if transport != "udp":
            await sink.close()
    finally:
        server.close()
    m = _RFC5424.match(rx.messages[0].decode())
    assert m, rx.messages[0]
    assert int(m["pri"]) == 10 * 8 + 2 and m["host"] == "canary-node" and m["app"] == "canary" and m["msgid"] == "incident.trigger"
    assert f'dedup="{make_alert().dedup_key}"' in m["sd"] and m["sd"].startswith("[canary@32473 ")
    assert m["msg"] == '\ufeffline one\nline "two" ] \\ end'
    assert int(_RFC5424.match(rx.messages[1].decode())["pri"]) == 10 * 8 + 4  # type: ignore[index]


async def test_syslog_tcp_reconnects_after_receiver_closed_connection(http: aiohttp.ClientSession) -> None:
    """When the receiver closes the kept-open connection, the next alert goes over a new one (not
    into the dead socket)."""
    rx = SyslogReceiver()
    server = await rx.start_stream()
    sink = _sink("syslog", http, host="127.0.0.1", port=rx.port, transport="tcp")
    try:
        await sink.send(make_alert())
        await sink.send(make_alert(sequence=1))
        await rx.wait(2)
        assert len(rx.connections) == 1  # kept open between alerts
        rx.connections[0].close()
        await asyncio.sleep(0.05)  # the FIN reaches the sink
        await sink.send(make_alert(sequence=2))
        await rx.wait(3)
    finally:
        await sink.close()
        server.close()
    assert len(rx.connections) == 2 and b'seq="2"' in rx.messages[2]


async def test_syslog_unreachable_tcp_is_retryable(http: aiohttp.ClientSession) -> None:
    """A refused TCP connection is a retryable DeliveryError."""
    sink = _sink("syslog", http, host="127.0.0.1", port=_free_port(), transport="tcp")
    with pytest.raises(DeliveryError) as info:
        await sink.send(make_alert())
    assert not info.value.permanent


@pytest.mark.parametrize(
    ("raw", "header", "value"),
    [
        ("a|b", "a\\|b", "a|b"),
        ("back\\slash", "back\\\\slash", "back\\\\slash"),
        ("k=v", "k=v", "k\\=v"),
        ("two\nlines", "two lines", "two\\nlines"),
        ("cr\rhere", "cr here", "cr\\rhere"),
    ],
)
def test_cef_escaping(raw: str, header: str, value: str) -> None:
    """CEF header fields escape | and \\; extension values escape \\ and = and encode line breaks."""
    assert syslog_sink.cef_header_escape(raw) == header
    assert syslog_sink.cef_value_escape(raw) == value


def test_cef_message_cannot_forge_fields() -> None:
    """A query containing ' act=resolve suser=admin' stays inside cs2; a | in the title stays in the Name field."""
    alert = make_alert(title="read | by x", evidence={"query": "SELECT 1 act=resolve suser=admin\nCEF:0|x"})
    opts = syslog_sink.Options.model_validate({"host": "127.0.0.1", "format": "cef"})
    line = syslog_sink.format_message(alert, opts).decode()
    cef = line[line.index("CEF:0|"):]
    parts = re.split(r"(?<!\\)\|", cef, maxsplit=7)
    assert parts[5] == "read \\| by x" and parts[6] == "10" and "\n" not in cef
    ext = parts[7]
    pairs = dict(re.findall(r"(\w+)=((?:[^=\\]|\\.)*?)(?=\s\w+=|$)", ext))
    assert pairs["act"] == "trigger" and pairs["suser"] == "mallory"
    assert pairs["cs2"] == "SELECT 1 act\\=resolve suser\\=admin\\nCEF:0|x"
    assert pairs["externalId"] == alert.dedup_key and pairs["cn1"] == "3"


ENRICHED = {"address": "203.0.113.7", "country": "KR", "city": "Seoul", "asn": 4766, "as_org": "Korea Telecom",
            "rdns": "ns.kt.example", "internal": False}
FROM = "203.0.113.7 (KR, Seoul, AS4766 Korea Telecom, ns.kt.example)"


def _attacked(**overrides: Any) -> Any:
    """A credential-use alert as the dispatcher sends it: ATT&CK from alert_for, enrichment from canary.enrich."""
    return make_alert(**{"kind": EventKind.USED, "enrichment": ENRICHED,
                         "attack": tuple(attack_json(EventKind.USED, "pg_honeypot", {})), **overrides})


async def test_email_text_and_html_bodies_name_attack_and_origin(smtp_server: tuple[Controller, Inbox], tls_files: tuple[Path, Path], http: aiohttp.ClientSession) -> None:
    """The mail is multipart/alternative; both bodies carry the ATT&CK line and the client address's
    enrichment, and the HTML body escapes attacker text (no markup, no link but the incident's)."""
    controller, inbox = smtp_server
    sink = _sink("email", http, host="127.0.0.1", port=controller.port, ca_file=str(tls_files[0]),
                 from_addr="canary@corp.example", to=["oncall@corp.example"])
    await sink.send(_attacked(actor={"user": '<a href="https://evil.example">reset</a><script>x()</script>'},
                              link="https://canary.corp.example/incidents/7"))
    msg = email.message_from_bytes(inbox.messages[0][0].content, policy=email.policy.default)  # type: ignore[arg-type]
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    page = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "ATT&CK: T1078 Valid Accounts, T1552 Unsecured Credentials" in text and f"From: {FROM}" in text
    assert "T1078 Valid Accounts" in page and "ATT&amp;CK" in page and FROM in page
    assert "<script" not in page and "evil.example\"" not in page and "&lt;script&gt;" in page
    assert re.findall(r'href="([^"]*)"', page) == ["https://canary.corp.example/incidents/7"]


def test_cef_and_structured_data_carry_attack_and_origin() -> None:
    """CEF: technique ids in cs5 (attackTechniques), the confirmed rDNS name in shost, the address's context
    in cs6 (sourceContext), escaped; RFC 5424 structured data: attack="T1078 T1552"."""
    alert = _attacked(enrichment={**ENRICHED, "as_org": "Evil=Org act=resolve"})
    cef_opts = syslog_sink.Options.model_validate({"host": "127.0.0.1", "format": "cef"})
    line = syslog_sink.format_message(alert, cef_opts).decode()
    ext = re.split(r"(?<!\\)\|", line[line.index("CEF:0|"):], maxsplit=7)[7]
    pairs = dict(re.findall(r"(\w+)=((?:[^=\\]|\\.)*?)(?=\s\w+=|$)", ext))
    assert pairs["cs5Label"] == "attackTechniques" and pairs["cs5"] == "T1078,T1552"
    assert pairs["shost"] == "ns.kt.example" and pairs["src"] == "10.0.0.9" and pairs["act"] == "trigger"
    assert pairs["cs6Label"] == "sourceContext"
    assert pairs["cs6"] == "203.0.113.7 (KR, Seoul, AS4766 Evil\\=Org act\\=resolve, ns.kt.example)"
    plain = syslog_sink.format_message(alert, syslog_sink.Options.model_validate({"host": "127.0.0.1"})).decode()
    m = _RFC5424.match(plain)
    assert m and 'attack="T1078 T1552"' in m["sd"]
