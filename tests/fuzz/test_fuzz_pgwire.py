"""Fuzzing the PostgreSQL wire-protocol honeypot (canary/credentials/pg_honeypot.py) over raw sockets:
startup packets with random parameters and versions, SSLRequest / GSSENCRequest / CancelRequest,
truncated and huge lengths, SASL (SCRAM) and password messages, in random splits. Whatever arrives,
the honeypot answers with well-formed protocol messages and closes, keeps no connection or task
behind, nothing escapes, and a real client with the canary DSN afterwards is still detected."""

from __future__ import annotations

import base64
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from credential_support import register
from fuzz_harness import FuzzServer, connect, fuzz_server, fuzz_settings, read_to_eof
from fuzz_strategies import text
from hypothesis import example, given
from hypothesis import strategies as st

from canary.credentials.pg_honeypot import CANCEL_REQUEST, GSSENC_REQUEST, SSL_REQUEST, PgHoneypot
from canary.credentials.values import CredentialFactory
from canary.store.embedded import PostgresServer

AUTH_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def server(pg_server: PostgresServer) -> Iterator[FuzzServer]:
    password = PgHoneypot("127.0.0.1", 0, auth_method="password", auth_timeout=AUTH_TIMEOUT, startup_timeout=AUTH_TIMEOUT)

    def components(rt: Any) -> list[Any]:
        return [PgHoneypot("127.0.0.1", 0, auth_timeout=AUTH_TIMEOUT, startup_timeout=AUTH_TIMEOUT)]

    async def setup(s: FuzzServer) -> None:
        await password.start(s.runtime)
        [scram] = s.listener.components
        assert isinstance(scram, PgHoneypot)
        cred = CredentialFactory(s.runtime.keyring).pg_dsn("127.0.0.1", scram.port, "billing")
        [cid] = await register(s.runtime, cred, table="public.settings")
        s.canaries.update(cred=cred, cid=cid, scram=scram, password=password)

    with fuzz_server(pg_server, "pgwire", {}, components, setup) as s:
        yield s
        s.call(password.stop())


def _cstr(v: str) -> bytes:
    return v.encode("utf-8", "surrogatepass").replace(b"\x00", b"") + b"\x00"


_params = st.lists(st.tuples(st.sampled_from(["user", "database", "application_name", "options", "_pq_.x", "", "replication"])
                             | text, text | st.sampled_from(["canary_user", "postgres", "x" * 500])), max_size=6)
_version = st.sampled_from([3 << 16, (3 << 16) | 1, (3 << 16) | 0xFFFF, 2 << 16, SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST, 0,
                            0xFFFFFFFF]) | st.integers(0, 2**32 - 1)


def _startup(version: int, params: list[tuple[str, str]], terminate: bool, length_delta: int | None) -> bytes:
    body = struct.pack("!I", version) + b"".join(_cstr(k) + _cstr(v) for k, v in params) + (b"\x00" if terminate else b"")
    length = len(body) + 4 if length_delta is None else max(0, min(2**32 - 1, len(body) + 4 + length_delta))
    return struct.pack("!I", length) + body


_length_delta = st.none() | st.integers(-12, 12) | st.sampled_from([2**31, 2**32 - 1, 10_001, 9_996])
_startups = st.builds(_startup, _version, _params, st.booleans(), _length_delta)


def _message(tag: bytes, body: bytes, length_delta: int | None = None) -> bytes:
    length = len(body) + 4 if length_delta is None else max(0, min(2**32 - 1, len(body) + 4 + length_delta))
    return tag + struct.pack("!I", length) + body


def _sasl_initial(mech: str, client_first: str, n_delta: int) -> bytes:
    data = client_first.encode("utf-8", "surrogatepass")
    return _message(b"p", _cstr(mech) + struct.pack("!i", len(data) + n_delta) + data)


_nonce = st.sampled_from(["rOprNGfwEbeRWgbNEkqO", "", "a,b", "\x7f"]) | st.from_regex(r"\A[!-~]{1,30}\Z")
_client_first = st.builds(lambda gs2, user, nonce, extra: f"{gs2}n={user},r={nonce}{extra}",
                          st.sampled_from(["n,,", "y,,", "p=tls-server-end-point,,", "", "n,a=x,"]), text, _nonce,
                          st.sampled_from(["", ",e=x", ",m=y"]) | text)
_sasl_initials = st.builds(_sasl_initial, st.sampled_from(["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "PLAIN", ""]) | text,
                           _client_first, st.sampled_from([0, 0, 0, -1, 1, -(2**31)]))
_client_final = st.builds(lambda nonce, proof, extra: f"c=biws,r={nonce}{extra},p={proof}".encode(),
                          _nonce, st.builds(lambda b: base64.b64encode(b).decode(), st.binary(max_size=40)) | text.map(repr),
                          st.sampled_from(["", ",x=1"]))
_auth = (
    st.builds(lambda pw: _message(b"p", _cstr(pw)), text)  # cleartext password
    | _sasl_initials
    | st.builds(lambda b: _message(b"p", b), _client_final)
    | st.builds(_message, st.sampled_from([b"p", b"Q", b"X", b"\x00"]), st.binary(max_size=64),
                st.none() | st.integers(-8, 8) | st.sampled_from([8189, 2**31, 2**32 - 1]))
    | st.binary(max_size=64)
)
_ssl = struct.pack("!II", 8, SSL_REQUEST)
_conversation = st.tuples(st.sampled_from([b"", _ssl, _ssl + _ssl, struct.pack("!II", 8, GSSENC_REQUEST)]),
                          _startups | st.binary(max_size=64), st.lists(_auth, max_size=3))
_splits = st.lists(st.integers(1, 40), max_size=6)


def _well_formed(answer: bytes) -> None:
    """The honeypot's answer is 'N' bytes (encryption refused) then complete backend messages."""
    i = 0
    while i < len(answer) and answer[i:i + 1] == b"N":
        i += 1
    while i < len(answer):
        assert answer[i:i + 1] in (b"E", b"R", b"v"), f"unexpected backend message {answer[i:i + 20]!r}"
        assert len(answer) >= i + 5, f"truncated backend message {answer[i:]!r}"
        (length,) = struct.unpack_from("!I", answer, i + 1)
        assert 4 <= length and i + 1 + length <= len(answer), f"bad backend message length {answer[i:i + 20]!r}"
        i += 1 + length


def _settle(hp: PgHoneypot, timeout: float = 5.0) -> None:
    """Every connection closed and every background report finished."""
    deadline = time.monotonic() + timeout
    while hp.connections or hp.reporter.pending:
        assert time.monotonic() < deadline, f"{len(hp.connections)} connection(s) / {hp.reporter.pending} task(s) left"
        time.sleep(0.01)


@fuzz_settings(200)
@example(conversation=(b"", _startup(3 << 16, [("user", "u")], True, None), [_sasl_initial("SCRAM-SHA-256", "n,,n=u,r=abc", 0),
                                                                               _message(b"p", b"c=biws,r=abc,p=AAAA")]),
         splits=[], password_mode=False)
@example(conversation=(_ssl, _startup(3 << 16, [("user", "u")], True, 2**31), []), splits=[1, 1], password_mode=True)
@given(conversation=_conversation, splits=_splits, password_mode=st.booleans())
def test_fuzzed_pg_wire_is_answered_and_closed(server: FuzzServer, conversation: tuple[bytes, bytes, list[bytes]],
                                               splits: list[int], password_mode: bool) -> None:
    """Any byte sequence (sent in random pieces, then EOF) is answered with well-formed backend messages
    and the connection closed within the socket timeout; no connection, task or escape is left."""
    hp: PgHoneypot = server.canaries["password" if password_mode else "scram"]
    data = b"".join([conversation[0], conversation[1], *conversation[2]])
    server.tally.examples += 1
    server.tally.connections += 1
    server.tally.messages += 2 + len(conversation[2])
    with connect(hp.port) as s:
        try:
            pos = 0
            for n in splits:
                s.sendall(data[pos:pos + n])
                pos += n
            s.sendall(data[pos:])
            s.shutdown(socket.SHUT_WR)
        except OSError:  # the server may close first (broken pipe, reset, not connected)
            pass
        answer = read_to_eof(s)
    _well_formed(answer)
    _settle(hp)
    server.assert_clean()


def test_slow_and_oversized_clients_are_cut_off(server: FuzzServer) -> None:
    """A client that stops mid-packet is closed after startup_timeout; one that floods after a valid
    startup is closed at its first invalid message (the buffer never holds the flood)."""
    hp: PgHoneypot = server.canaries["scram"]
    t0 = time.monotonic()
    with connect(hp.port) as s:
        s.sendall(struct.pack("!I", 200) + b"\x00\x03")  # a startup packet that never completes
        assert read_to_eof(s) == b""
    assert AUTH_TIMEOUT - 0.5 < time.monotonic() - t0 < AUTH_TIMEOUT + 3
    with connect(hp.port) as s:
        s.sendall(_startup(3 << 16, [("user", "flood")], True, None))
        try:
            for _ in range(64):
                s.sendall(b"\xff" * 65536)
        except OSError:  # the server may close first (broken pipe, reset, not connected)
            pass
        read_to_eof(s)
    server.tally.connections += 2
    _settle(hp)
    server.assert_clean()


def test_canary_dsn_is_detected_after_the_fuzzing(server: FuzzServer) -> None:
    """After the fuzzing, asyncpg with the canary DSN still gets 28P01 and raises a USED event for the
    canary promptly."""
    cred = server.canaries["cred"]

    async def attempt() -> None:
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(cred.secret, timeout=10)

    server.call(attempt())
    server.tally.connections += 1
    _, took = server.wait_for("SELECT count(*) FROM events WHERE kind = 'used' AND canary_id = $1", server.canaries["cid"])
    print(f"\nfuzz[pgwire] canary detected {took:.2f}s after the attempt")
    server.assert_clean()
