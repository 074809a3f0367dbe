"""PostgreSQL wire-protocol honeypot: canary DSNs point here.

An ``asyncio.Protocol`` speaks the v3 startup handshake far enough to capture who tried to connect
(user, database, application_name and every other startup parameter) and how (cleartext password or
SCRAM-SHA-256), then rejects exactly as a real server does: ``FATAL 28P01 password authentication
failed for user "…"``. For canary users the password is derived from the user name, so the honeypot
computes the SCRAM server side itself and records whether the attempt used the canary password.

Every user gets the same answers in the same time: the SASL request, a server-first message with a
salt derived from the user name (as a real server mocks one for a role that does not exist) and the
same iteration count, a PBKDF2 of the same cost, and the same failure. Whether the user is a canary
is looked up only after the answer.

A connection that names a user and then leaves before presenting a password or SCRAM proof is a
*probe* (the credential was checked, not used): a canary user's probe is an ERROR, another user's an
INFO, both grouped per peer; a presented password or proof is USED (CRITICAL for a canary user).

Everything is bounded: startup packets at 10000 bytes (PostgreSQL's ``MAX_STARTUP_PACKET_LENGTH``),
authentication messages at 8 KiB, the time to send the startup packet by ``startup_timeout`` and
the rest of the handshake by ``auth_timeout`` (slow-loris). Held connections cannot starve real
probes: :class:`~canary.credentials.recognise.ConnectionGate` caps connections per peer and in all,
closing the connection idle the longest to admit a new one, and answers ``FATAL 53300 sorry, too
many clients already`` only when every held connection is being answered; every shed or refusal is
counted and an episode of them raises one HEALTH event. Malformed input is counted through
``runtime.reject`` and the connection closed; nothing a client sends can stop the listener.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import secrets
import struct
import uuid
from dataclasses import dataclass, field

import structlog
from aiohttp import web

from canary.config import Config
from canary.credentials.recognise import ConnectionGate, fingerprint
from canary.credentials.values import (
    SCRAM_ITERATIONS,
    CredentialFactory,
    scram_keys,
    scram_proof_matches,
    scram_salted_password,
)
from canary.crypto import same
from canary.events import DetectionEvent, EventKind, Severity, event_key
from canary.plugins import SourceType
from canary.pressure import BackgroundReporter, PressureWatch
from canary.proxies import peer_key
from canary.store.registry import ValueKind, recognise
from canary.typing import Component, SourceContext

log = structlog.get_logger("canary.sources.pg_honeypot")

EVENT_SOURCE = "pg_honeypot"
MAX_STARTUP_PACKET = 10000
MAX_AUTH_MESSAGE = 8192
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3 = 3 << 16
_MAX_PARAM = 256


class ProtocolViolation(ValueError):
    """The client sent something a PostgreSQL server would refuse; ``reason`` is the metric label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def error_response(code: str, message: str, *, severity: str = "FATAL", routine: str = "auth_failed",
                   file: str = "auth.c", line: str = "323") -> bytes:
    """An ``ErrorResponse`` ('E') with the fields a real server sends (S, V, C, M, F, L, R)."""
    body = b"".join(
        tag + value.encode() + b"\x00"
        for tag, value in ((b"S", severity), (b"V", severity), (b"C", code), (b"M", message),
                           (b"F", file), (b"L", line), (b"R", routine))
    ) + b"\x00"
    return b"E" + struct.pack("!I", len(body) + 4) + body


def auth_request(code: int, payload: bytes = b"") -> bytes:
    return b"R" + struct.pack("!II", len(payload) + 8, code) + payload


def _cstrings(data: bytes) -> list[str]:
    if not data.endswith(b"\x00"):
        raise ProtocolViolation("bad_startup_packet", "startup parameters are not NUL-terminated")
    return [p.decode("utf-8", "replace") for p in data[:-1].split(b"\x00")]


def parse_startup_params(payload: bytes) -> dict[str, str]:
    """The key/value list of a v3 StartupMessage (after length and version)."""
    parts = _cstrings(payload)
    if not parts or parts[-1] != "":
        raise ProtocolViolation("bad_startup_packet", "startup parameter list is not terminated")
    parts = parts[:-1]
    if len(parts) % 2:
        raise ProtocolViolation("bad_startup_packet", "startup parameter without a value")
    params: dict[str, str] = {}
    for k, v in zip(parts[::2], parts[1::2]):
        if not k:
            raise ProtocolViolation("bad_startup_packet", "empty startup parameter name")
        params[k[:64]] = v[:_MAX_PARAM]
    return params


def parse_scram_client_first(data: bytes) -> tuple[str, str, str]:
    """(gs2 header, client-first-message-bare, client nonce) of an RFC 5802 client-first-message."""
    text = data.decode("utf-8", "replace")
    parts = text.split(",", 2)
    if len(parts) != 3 or parts[0] not in {"n", "y"} or not parts[0]:
        raise ProtocolViolation("bad_scram", "malformed SCRAM client-first-message (channel binding not offered)")
    bare = parts[2]
    attrs = dict(a.split("=", 1) for a in bare.split(",") if "=" in a)
    nonce = attrs.get("r", "")
    if not nonce or not all(0x21 <= ord(c) <= 0x7E and c != "," for c in nonce):
        raise ProtocolViolation("bad_scram", "SCRAM client nonce missing or invalid")
    return parts[0] + "," + parts[1] + ",", bare, nonce


@dataclass
class Attempt:
    """What one connection revealed (no secret: a presented password is kept as a fingerprint only)."""

    conn_id: str
    peer: tuple[str, int]
    started: dt.datetime
    params: dict[str, str] = field(default_factory=dict)
    ssl_requested: bool = False
    gssenc_requested: bool = False
    method: str = ""
    stage: str = "connected"
    password_matches: bool | None = None
    password_fingerprint: str | None = None
    scram_user: str | None = None
    reported: bool = False
    ended: str = "client"  # who ended the connection: client | honeypot (verdict, bad input) | timeout | shed
    verified: asyncio.Event = field(default_factory=asyncio.Event)  # set once a SCRAM proof was checked

    @property
    def presented(self) -> bool:
        """A password or SCRAM proof reached the honeypot (use, not a probe)."""
        return self.stage in ("password", "scram_final")


class PgHoneypotProtocol(asyncio.Protocol):
    def __init__(self, honeypot: PgHoneypot) -> None:
        self.hp = honeypot
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.state = "startup"
        self.attempt: Attempt | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._scram: dict[str, str] = {}
        self._closing = False
        self.peer = ""

    @property
    def sheddable(self) -> bool:
        """Waiting for its client or closing anyway (not while a SCRAM proof is being checked)."""
        return self._closing or self.state != "verifying"

    def shed(self) -> bool:
        """Close to make room for a new connection (counted by the gate's owner unless already closing)."""
        if self._closing:
            return False
        if self.attempt is not None:
            self.attempt.ended = "shed"
        self._close()
        return True

    # -- asyncio.Protocol ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("", 0)
        self.attempt = Attempt(uuid.uuid4().hex, (str(peer[0]), int(peer[1])), dt.datetime.now(dt.timezone.utc))
        self.peer = peer_key(str(peer[0]))
        if not self.hp.connections.admit(self, self.peer):
            self._fail(error_response("53300", "sorry, too many clients already", routine="ProcessStartupPacket",
                                      file="postmaster.c", line="2441"), report=False)
            return
        self._timer = asyncio.get_running_loop().call_later(self.hp.startup_timeout, self._timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.hp.connections.release(self)
        if self._timer is not None:
            self._timer.cancel()
        self._report()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self.buf += data
        try:
            while not self._closing and self._step():
                pass
        except ProtocolViolation as exc:
            self.hp.count_reject(exc.reason, f"{exc} | {bytes(self.buf[:200])!r}")
            self._close()

    # -- state machine ----------------------------------------------------------------------------
    def _step(self) -> bool:
        if self.state in ("startup", "startup_after_ssl"):
            return self._startup_packet()
        if self.state in ("password", "sasl_initial", "sasl_response"):
            return self._auth_message()
        raise ProtocolViolation("unexpected_data", f"data received in state {self.state}")

    def _startup_packet(self) -> bool:
        if len(self.buf) < 4:
            return False
        (length,) = struct.unpack_from("!I", self.buf)
        if length < 8 or length > MAX_STARTUP_PACKET:
            raise ProtocolViolation("bad_startup_length", f"invalid length of startup packet: {length}")
        if len(self.buf) < length:
            return False
        packet = bytes(self.buf[4:length])
        del self.buf[:length]
        self.hp.connections.progress(self)
        (code,) = struct.unpack_from("!I", packet)
        assert self.attempt is not None and self.transport is not None
        if code in (SSL_REQUEST, GSSENC_REQUEST):
            ssl = code == SSL_REQUEST
            if length != 8 or (self.attempt.ssl_requested if ssl else self.attempt.gssenc_requested):
                raise ProtocolViolation("bad_startup_packet", "repeated or malformed encryption request")
            if ssl:
                self.attempt.ssl_requested = True
            else:
                self.attempt.gssenc_requested = True
            self.transport.write(b"N")
            self.state = "startup_after_ssl"
            return True
        if code == CANCEL_REQUEST:
            if length != 16:
                raise ProtocolViolation("bad_startup_packet", "malformed CancelRequest")
            self.attempt.stage = "cancel"
            self._close()
            return False
        major, minor = code >> 16, code & 0xFFFF
        if major != 3:
            self.hp.count_reject("unsupported_protocol", f"protocol {major}.{minor}")
            self._fail(error_response("0A000", f"unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0",
                                      routine="ProcessStartupPacket", file="postmaster.c", line="2260"), report=False)
            return False
        params = parse_startup_params(packet[4:])
        self.attempt.params = params
        self.attempt.stage = "startup"
        if self._timer is not None:  # the startup packet is in: the handshake now has auth_timeout
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.hp.auth_timeout, self._timed_out)
        if not params.get("user"):
            self.hp.count_reject("no_user", "startup packet without user")
            self._fail(error_response("28000", "no PostgreSQL user name specified in startup packet",
                                      routine="ProcessStartupPacket", file="postmaster.c", line="2332"), report=False)
            return False
        unknown_opts = [k for k in params if k.startswith("_pq_.")]
        if minor > 0 or unknown_opts:
            opts = b"".join(k.encode() + b"\x00" for k in unknown_opts)
            payload = struct.pack("!II", 0, len(unknown_opts)) + opts
            self.transport.write(b"v" + struct.pack("!I", len(payload) + 4) + payload)
        if self.hp.auth_method == "password":
            self.attempt.method = "password"
            self.transport.write(auth_request(3))
            self.state = "password"
        else:
            self.attempt.method = "scram-sha-256"
            self.transport.write(auth_request(10, b"SCRAM-SHA-256\x00\x00"))
            self.state = "sasl_initial"
        return True

    def _auth_message(self) -> bool:
        if len(self.buf) < 5:
            return False
        tag = self.buf[0:1]
        (length,) = struct.unpack_from("!I", self.buf, 1)
        if tag != b"p":
            raise ProtocolViolation("unexpected_message", f"expected a password message, got {tag!r}")
        if length < 4 or length > MAX_AUTH_MESSAGE:
            raise ProtocolViolation("bad_auth_length", f"invalid password packet length {length}")
        if len(self.buf) < 1 + length:
            return False
        body = bytes(self.buf[5:1 + length])
        del self.buf[:1 + length]
        self.hp.connections.progress(self)
        assert self.attempt is not None
        if self.state == "password":
            if not body.endswith(b"\x00"):
                raise ProtocolViolation("bad_password_message", "password is not NUL-terminated")
            password = body[:-1].decode("utf-8", "replace")
            self.attempt.stage = "password"
            self._check_cleartext(password)
            return False
        if self.state == "sasl_initial":
            mech, sep, rest = body.partition(b"\x00")
            if not sep or mech != b"SCRAM-SHA-256" or len(rest) < 4:
                raise ProtocolViolation("bad_scram", "client selected an invalid SASL authentication mechanism")
            (n,) = struct.unpack_from("!i", rest)
            data = rest[4:]
            if n < 0 or n != len(data):
                raise ProtocolViolation("bad_scram", "malformed SASLInitialResponse length")
            gs2, bare, cnonce = parse_scram_client_first(data)
            user_attr = dict(a.split("=", 1) for a in bare.split(",") if "=" in a).get("n")
            self.attempt.scram_user = user_attr[:_MAX_PARAM] if user_attr else None
            self.attempt.stage = "scram_first"
            salt = self.hp.factory.scram_salt(self.attempt.params["user"])
            nonce = cnonce + base64.b64encode(secrets.token_bytes(18)).decode()
            server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i={SCRAM_ITERATIONS}"
            self._scram = {"bare": bare, "server_first": server_first, "nonce": nonce, "gs2": gs2}
            assert self.transport is not None
            self.transport.write(auth_request(11, server_first.encode()))
            self.state = "sasl_response"
            return True
        # sasl_response: client-final-message "c=biws,r=<nonce>,p=<proof>"
        final = body.decode("utf-8", "replace")
        without_proof, has_proof, proof_b64 = final.rpartition(",p=")
        attrs = dict(a.split("=", 1) for a in without_proof.split(",") if "=" in a)
        if not has_proof or attrs.get("r") != self._scram["nonce"]:
            raise ProtocolViolation("bad_scram", "malformed SCRAM client-final-message or nonce mismatch")
        try:
            proof = base64.b64decode(proof_b64, validate=True)
        except ValueError:
            raise ProtocolViolation("bad_scram", "SCRAM proof is not base64") from None
        self.attempt.stage = "scram_final"
        auth_message = f"{self._scram['bare']},{self._scram['server_first']},{without_proof}".encode()
        self.state = "verifying"
        self.hp.reporter.spawn(lambda: self._check_scram(auth_message, proof))
        return False

    # -- verdicts --------------------------------------------------------------------------------
    def _auth_failed(self) -> None:
        assert self.attempt is not None
        user = self.attempt.params.get("user", "")
        self._fail(error_response("28P01", f'password authentication failed for user "{user}"'))

    def _check_cleartext(self, password: str) -> None:
        assert self.attempt is not None
        expected = self.hp.factory.pg_password(self.attempt.params["user"])
        self.attempt.password_matches = same(password, expected)
        self.attempt.password_fingerprint = fingerprint(self.hp.factory.keyring, password)
        self._auth_failed()

    async def _check_scram(self, auth_message: bytes, proof: bytes) -> None:
        """Compute the canary's SCRAM keys (PBKDF2 off the loop) for whatever user was presented, so
        canary and non-canary users cost the same; then reject like a real server."""
        assert self.attempt is not None
        user = self.attempt.params["user"]
        salt = self.hp.factory.scram_salt(user)
        try:
            salted = await asyncio.to_thread(scram_salted_password, self.hp.factory.pg_password(user), salt)
            stored, _ = scram_keys(salted)
            self.attempt.password_matches = scram_proof_matches(stored, auth_message, proof)
        finally:
            self.attempt.verified.set()
        if not self._closing:
            self._auth_failed()

    def _timed_out(self) -> None:
        if self._closing:
            return
        assert self.attempt is not None
        self.attempt.ended = "timeout"
        reason = "startup_timeout" if self.state in ("startup", "startup_after_ssl") else "auth_timeout"
        self.hp.count_reject(reason, f"peer={self.attempt.peer[0]} stage={self.attempt.stage}")
        self._close()

    def _fail(self, message: bytes, *, report: bool = True) -> None:
        if self.attempt is not None:
            self.attempt.ended = "honeypot"
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(message)
        if not report and self.attempt is not None:
            self.attempt.reported = True
        self._close()

    def _close(self) -> None:
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _report(self) -> None:
        a = self.attempt
        if a is None or a.reported or not a.params.get("user"):
            return
        a.reported = True
        self.hp.reporter.spawn(lambda: self.hp.events_for(a))


class PgHoneypot:
    """The honeypot as a listener Component (its own TCP port, no HTTP routes)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6543,
        *,
        auth_method: str = "scram-sha-256",
        max_connections: int = 64,
        auth_timeout: float = 60.0,
        alert_unknown_users: bool = True,
        startup_timeout: float = 60.0,
        max_connections_per_peer: int = 8,
        pressure_quiet: float = 300.0,
    ) -> None:
        if auth_method not in ("scram-sha-256", "password"):
            raise ValueError(f"unsupported auth method {auth_method!r}")
        self.name = f"pg_honeypot:{port}"
        self.host = host
        self.port = port
        self.auth_method = auth_method
        self.max_connections = max_connections
        self.auth_timeout = auth_timeout
        self.startup_timeout = startup_timeout
        self.alert_unknown_users = alert_unknown_users
        self.pressure_quiet = pressure_quiet
        self.connections: ConnectionGate[PgHoneypotProtocol] = ConnectionGate(
            max_connections, max_connections_per_peer, self._pressure)
        self.runtime: SourceContext  # set by start()
        self.factory: CredentialFactory
        self.reporter: BackgroundReporter
        self.pressure: PressureWatch
        self._server: asyncio.base_events.Server | None = None

    def routes(self) -> list[web.RouteDef]:
        return []

    async def start(self, runtime: SourceContext) -> None:
        self.runtime = runtime
        self.factory = CredentialFactory(runtime.keyring)
        self.reporter = BackgroundReporter(runtime, EVENT_SOURCE)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: PgHoneypotProtocol(self), self.host, self.port,
                                                reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.pressure = PressureWatch(self.reporter, f"pg_honeypot:{self.port}", f"{self.host}:{self.port}",
                                      quiet=self.pressure_quiet)
        log.info("pg_honeypot.listening", host=self.host, port=self.port, auth=self.auth_method)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for proto in list(self.connections):
                proto._close()
            await self._server.wait_closed()
            self._server = None
        await self.reporter.drain(timeout=5.0)

    def count_reject(self, reason: str, sample: str) -> None:
        self.reporter.spawn(lambda: self.runtime.reject(EVENT_SOURCE, reason, sample))

    def _pressure(self, reason: str, peer: str) -> None:
        self.count_reject(reason, f"peer={peer}")
        self.pressure.note(reason, peer)

    async def events_for(self, a: Attempt) -> list[DetectionEvent]:
        """USED when a password or proof was presented (CRITICAL for a canary user, WARNING for another
        user); a probe otherwise (ERROR / INFO), grouped per peer so a sweep of users is one incident."""
        user = a.params["user"]
        matches = await recognise(self.runtime.registry, [(ValueKind.DSN_USER, user), (ValueKind.PG_ROLE, user)])
        match = next(iter(matches.values()), None)
        if match is None and not self.alert_unknown_users:
            return []
        if a.presented and a.password_matches is None and a.stage == "scram_final":
            try:  # the client left while its proof was being checked: wait for the verdict
                await asyncio.wait_for(a.verified.wait(), 30)
            except TimeoutError:
                pass
        params = {k: v for k, v in a.params.items() if k not in ("user", "database", "application_name")
                  and "pass" not in k.lower()}
        if a.presented:
            group, severity = f"pg-honeypot:{a.peer[0]}:{user}", Severity.CRITICAL if match else Severity.WARNING
        else:
            group, severity = f"pg-honeypot-probe:{peer_key(a.peer[0])}", Severity.ERROR if match else Severity.INFO
        return [
            DetectionEvent(
                kind=EventKind.USED, source=EVENT_SOURCE, key=event_key("pg-honeypot", a.conn_id),
                group=group, canary_id=match.canary_id if match else None,
                observed_at=a.started, severity=severity,
                actor={"user": user, "scram_user": a.scram_user},
                origin={"client_addr": a.peer[0], "client_port": a.peer[1], "database": a.params.get("database", user),
                        "application_name": a.params.get("application_name"), "honeypot": f"{self.host}:{self.port}"},
                evidence={k: v for k, v in {
                    "credential": "postgres_login", "canary": match.uid if match else None, "auth_method": a.method,
                    "signal": "used" if a.presented else "probe", "ended_by": a.ended,
                    "stage": a.stage, "password_matches_canary": a.password_matches,
                    "password_fingerprint": a.password_fingerprint, "ssl_requested": a.ssl_requested,
                    "gssenc_requested": a.gssenc_requested, "startup_params": params,
                }.items() if v is not None},
            )
        ]


def _honeypot(config: Config) -> list[Component]:
    pg = config.honeypot.postgres
    if not pg.enabled:
        return []
    return [PgHoneypot(pg.host, pg.port, auth_method=pg.auth, max_connections=pg.max_connections,
                       auth_timeout=pg.auth_timeout, alert_unknown_users=pg.alert_unknown_users,
                       startup_timeout=pg.startup_timeout, max_connections_per_peer=pg.max_connections_per_peer,
                       pressure_quiet=pg.pressure_quiet)]


SOURCE = SourceType("pg_honeypot", _honeypot)
