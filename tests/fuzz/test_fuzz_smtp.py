"""Fuzzing the canary MX (canary/contact/smtp.py, aiosmtpd on the listener's loop) over raw sockets:
random SMTP command sequences (known verbs with hostile arguments, unknown verbs, 8-bit and over-long
lines), message bodies from the MIME strategies, a PROXY-protocol listener fed random headers. Every
command gets a well-formed reply, never the "internal error" answer of an exception in a hook, each
session ends when the client does, nothing escapes, and a genuine mail to a canary afterwards is
accepted (250 only after commit) and detected."""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from contact_support import CANARY_EMAIL, MAIL_DOMAIN, OTHER_EMAIL, StaticResolver
from fuzz_harness import FuzzServer, connect, fuzz_server, fuzz_settings, read_to_eof
from fuzz_strategies import deep_multipart, deep_rfc822, messages, text
from hypothesis import example, given
from hypothesis import strategies as st

from canary.config import ContactConfig
from canary.contact.smtp import SmtpSource
from canary.store.embedded import PostgresServer
from canary.store.registry import NewCanary

MAX_SIZE = 1024 * 1024
GENUINE_EVERY = 40
_REPLY = re.compile(rb"^[2-5]\d\d[ -]")


@pytest.fixture(scope="module")
def server(pg_server: PostgresServer) -> Iterator[FuzzServer]:
    contact = {"mail_domains": [MAIL_DOMAIN], "smtp": True, "smtp_port": 0, "max_message_size": MAX_SIZE,
               "dns_timeout": 1.0}
    resolver = StaticResolver({("phish.test", "TXT"): [(b"v=spf1 ip4:127.0.0.0/8 -all",)]})
    proxied = SmtpSource(ContactConfig(**{**contact, "proxy_protocol": True, "proxy_timeout": 0.25,
                                        "proxy_from": ["127.0.0.0/8"]}), resolver=resolver)

    def components(rt: Any) -> list[Any]:
        return [SmtpSource(rt.config.contact, resolver=resolver)]

    async def setup(s: FuzzServer) -> None:
        async with s.runtime.pool.acquire() as conn:
            [(cid, _), _] = await s.runtime.registry.add(conn, [
                NewCanary(kind="customer", datastore="shop", label="shop/public.customers", location={"pk": 1},
                          lookup="shop|public.customers|1", values=[("email", CANARY_EMAIL)]),
                NewCanary(kind="customer", datastore="shop", label="shop/public.customers", location={"pk": 2},
                          lookup="shop|public.customers|2", values=[("email", OTHER_EMAIL)])], None)
        await proxied.start(s.runtime)
        s.canaries.update(cid=cid, proxied=proxied)

    with fuzz_server(pg_server, "smtp", {"contact": contact}, components, setup) as s:
        yield s
        s.call(proxied.stop())


def _port(s: FuzzServer) -> int:
    [smtp] = s.listener.components
    assert isinstance(smtp, SmtpSource) and smtp.port
    return smtp.port


class _Session:
    """A raw SMTP client: one reply (its last line) per command, None once the server closed."""

    def __init__(self, sock: socket.socket) -> None:
        self.s = sock
        self.buf = b""

    def reply(self) -> bytes | None:
        while True:
            while b"\r\n" in self.buf:
                line, self.buf = self.buf.split(b"\r\n", 1)
                assert _REPLY.match(line), f"malformed reply {line[:100]!r}"
                if line[3:4] == b" ":
                    return line
            try:
                chunk = self.s.recv(65536)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.buf += chunk

    def send(self, data: bytes) -> bool:
        try:
            self.s.sendall(data)
            return True
        except OSError:
            return False


def _dot_stuffed(body: bytes) -> bytes:
    lines = body.replace(b"\r\n", b"\n").split(b"\n")
    return b"\r\n".join(b"." + x if x.startswith(b".") else x for x in lines) + b"\r\n.\r\n"


def _converse(s: FuzzServer, port: int, commands: list[bytes], body: bytes, prefix: bytes = b"") -> list[bytes]:
    """Run a session; returns the replies. Every reply is well-formed and none is the internal-error answer."""
    replies: list[bytes] = []
    with connect(port) as sock:
        s.tally.connections += 1
        session = _Session(sock)
        if prefix and not session.send(prefix):
            return replies
        banner = session.reply()
        if banner is None:
            return replies
        for cmd in [*commands, b"QUIT"]:
            if not session.send(cmd + b"\r\n"):
                break
            s.tally.messages += 1
            reply = session.reply()
            if reply is None:
                break
            replies.append(reply)
            assert not reply.startswith(b"451 4.3.0 Internal error"), f"{cmd[:80]!r} -> {reply!r}"
            if reply.startswith(b"354"):
                if not session.send(_dot_stuffed(body)):
                    break
                reply = session.reply()
                if reply is None:
                    break
                replies.append(reply)
                assert not reply.startswith(b"451"), f"DATA -> {reply!r}"
            if reply.startswith(b"221"):
                break
        read_to_eof(sock)  # the server closes after QUIT (or already did)
    return replies


def _genuine(s: FuzzServer) -> None:
    mid = f"<{uuid.uuid4().hex}@phish.test>"
    before = s.fetchval("SELECT count(*) FROM events WHERE canary_id = $1", s.canaries["cid"])
    body = (f"From: Coupang <security@phish.test>\r\nTo: {CANARY_EMAIL}\r\nSubject: held\r\nMessage-ID: {mid}\r\n\r\n"
            "Confirm at https://phish.test/login\r\n").encode()
    replies = _converse(s, _port(s), [b"EHLO mx.phish.test", b"MAIL FROM:<security@phish.test>", f"RCPT TO:<{CANARY_EMAIL}>".encode(),
                                      b"DATA"], body)
    assert replies[-2].startswith(b"250 2.0.0"), replies
    s.wait_for("SELECT count(*) > $2 FROM events WHERE canary_id = $1", s.canaries["cid"], before)


_addr = st.sampled_from([CANARY_EMAIL, CANARY_EMAIL.upper(), "minji.kim+tag@" + MAIL_DOMAIN, OTHER_EMAIL, f"nobody@{MAIL_DOMAIN}",
                         "x@elsewhere.test", "", "@", "a@b@c", '"q u"@' + MAIL_DOMAIN, "<>", "@relay:x@" + MAIL_DOMAIN,
                         "x@[127.0.0.1]", "x@" + "a" * 300]) | text
_param = st.sampled_from(["", " SIZE=10", " SIZE=99999999999999999999", " SIZE=-1", " BODY=8BITMIME", " SMTPUTF8", " BODY=x",
                          " AUTH=<>", " RET=FULL", " X=" + "y" * 600])
_command = (
    st.builds(lambda a, p: f"MAIL FROM:<{a}>{p}", _addr, _param)
    | st.builds(lambda a, p: f"RCPT TO:<{a}>{p}", _addr, _param)
    | st.builds(lambda v, a: f"{v} {a}", st.sampled_from(["HELO", "EHLO", "helo", "VRFY", "EXPN", "HELP", "NOOP", "AUTH", "BDAT",
                                                         "XCLIENT", "STARTTLS", "MAIL", "RCPT", "RSET", "DATA", "mail from:",
                                                         "rcpt to:", "PROXY"]), text)
    | st.sampled_from(["DATA", "RSET", "NOOP", "STARTTLS", "AUTH PLAIN AGZvbwBiYXI=", "AUTH LOGIN", "EHLO", "HELO", "",
                       " ", "MAIL FROM:", "RCPT TO:", "BDAT 10 LAST", "X" * 3000])
    | text
).map(lambda c: c.encode("utf-8", "surrogatepass").replace(b"\r", b"").replace(b"\n", b""))
_body = messages | st.just(deep_multipart(900)) | st.just(deep_rfc822(20_000))


@fuzz_settings(120)
@example(commands=[b"EHLO x", b"MAIL FROM:<a@phish.test>", f"RCPT TO:<{CANARY_EMAIL}>".encode(), b"DATA"],
         body=deep_rfc822(20_000))  # the MIME parser's RecursionError became the 451 internal-error answer
@example(commands=[b"EHLO x", b"MAIL FROM:<a@phish.test>", b"RCPT TO:<\xed\xa0\x80@canary-mail.test>", b"VRFY \xed\xa0\x80",
                   b"QUIT"], body=b"")  # lone surrogates from surrogateescape crashed the probe lookup's blind index
@example(commands=[b"EHLO x", b"MAIL FROM:<a@", b"MAIL FROM:<a@phish.test>", b"RCPT TO:<@a:", b"RCPT TO:a@", b"VRFY <a@",
                   b"QUIT"], body=b"")  # the email package's address parser raised IndexError: the internal-error answer
@given(commands=st.lists(_command, max_size=10), body=_body)
def test_fuzzed_smtp_sessions_get_well_formed_replies(server: FuzzServer, commands: list[bytes], body: bytes) -> None:
    """Any command sequence (and DATA body): well-formed replies, never the internal-error answer, the
    session closes after QUIT; nothing escapes; every few sessions a genuine mail is detected."""
    server.tally.examples += 1
    _converse(server, _port(server), commands, body)
    if server.tally.examples % GENUINE_EVERY == 0:
        _genuine(server)
    server.assert_clean()


_proxy_header = (
    st.builds(lambda fam, src, dst, sp, dp: f"PROXY {fam} {src} {dst} {sp} {dp}\r\n".encode("utf-8", "surrogatepass"),
              st.sampled_from(["TCP4", "TCP6", "UNKNOWN", "tcp4", "X"]), st.sampled_from(["192.0.2.1", "::1", "999.1.1.1", ""]) | text,
              st.sampled_from(["127.0.0.1", "::1"]), st.integers(-1, 70000), st.integers(-1, 70000))
    | st.builds(lambda body, n: b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + n.to_bytes(2, "big") + body,
                st.binary(max_size=40), st.integers(0, 65535))
    | st.binary(max_size=120)
)


@fuzz_settings(40)
@given(header=_proxy_header)
def test_fuzzed_proxy_headers_are_answered_or_closed(server: FuzzServer, header: bytes) -> None:
    """Any PROXY header on the PROXY-protocol listener: either a session that answers well-formed, or
    a counted close, within the proxy timeout; nothing escapes."""
    server.tally.examples += 1
    proxied: SmtpSource = server.canaries["proxied"]
    assert proxied.port
    with connect(proxied.port) as sock:
        server.tally.connections += 1
        try:
            sock.sendall(header + b"QUIT\r\n")
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        for line in read_to_eof(sock).split(b"\r\n"):
            assert not line or _REPLY.match(line), f"malformed reply {line[:100]!r}"
    server.assert_clean()


def test_genuine_mail_is_detected_after_the_fuzzing(server: FuzzServer) -> None:
    """After the fuzzing, a mail to a canary is accepted with 250 and its event is committed."""
    _genuine(server)
    server.assert_clean()
