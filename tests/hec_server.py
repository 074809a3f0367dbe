"""A local Splunk HTTP Event Collector speaking HEC as Splunk documents it, for the splunk_hec sink's tests.

* ``POST /services/collector/event`` (also ``/services/collector`` and ``/event/1.0``): ``Authorization:
  Splunk <token>`` (missing: 401 code 2 "Token is required"; another scheme: 401 code 3 "Invalid
  authorization"; unknown token: 403 code 4 "Invalid token"; disabled: 403 code 1 "Token disabled"); a body
  over ``max_content_length``: 413; with ``use_ack`` the channel (``X-Splunk-Request-Channel`` or
  ``?channel=``) is required (400 code 10 "Data channel is missing") and must be a GUID (400 code 11
  "Invalid data channel"); an empty body: 400 code 5 "No data". The body is parsed as JSON objects one
  after another; the first bad one ends the request with 400 and ``invalid-event-number`` (code 6 "Invalid
  data format", 12 "Event field is required", 13 "Event field cannot be blank", 7 "Incorrect index"), the
  objects before it being indexed, as Splunk does. Success: ``{"text":"Success","code":0}``, with
  ``"ackId"`` (counting from 0 per channel) when the token has ``use_ack``.
* ``POST /services/collector/ack?channel=<GUID>`` with ``{"acks":[...]}``: ``{"acks":{"<id>": bool}}``,
  true once ``ack_lag`` seconds have passed since the request (never while ``ack_hold``); an id answered
  true is forgotten (asked again: false). A token without ``use_ack``: 400 code 14 "ACK is disabled".
* Anything else: 404 ``{"text":"The requested URL was not found on this server.","code":404}``.

Sources: the HEC REST API endpoint, format, indexer acknowledgment and troubleshooting pages of
help.splunk.com cited in ``canary/sinks/splunk.py``. ``answers`` queues canned answers (status, body,
headers) served to event requests before normal handling; ``poll_answers`` the same for ack polls.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import ssl
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from alerting_servers import RecordingServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_WS = re.compile(r"\s*")


@dataclass
class Channel:
    next_id: int = 0
    ready_at: dict[int, float] = field(default_factory=dict)  # ack id -> when the indexers have it


@dataclass
class Indexed:
    """One event the collector indexed: its envelope, the channel and the request it came in."""

    envelope: dict[str, Any]
    channel: str | None
    request: int

    @property
    def event(self) -> Any:
        return self.envelope["event"]


class HecServer(RecordingServer):
    def __init__(self, token: str, *, use_ack: bool = False, max_content_length: int = 838_860_800,
                 indexes: set[str] | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__()
        self.token = token
        self.use_ack = use_ack
        self.disabled = False
        self.max_content_length = max_content_length
        self.indexes = indexes  # None: any index
        self.ssl_context = ssl_context
        self.ack_lag = 0.0
        self.ack_hold = False
        self.indexed: list[Indexed] = []
        self.channels: dict[str, Channel] = {}
        self.answers: list[tuple[int, Any, dict[str, str]]] = []
        self.poll_answers: list[tuple[int, Any, dict[str, str]]] = []
        self.event_requests = 0

    @property
    def base(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    async def __aenter__(self) -> HecServer:
        app = web.Application(middlewares=[self._record], client_max_size=4 * max(self.max_content_length, 1 << 20))
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    def routes(self, app: web.Application) -> None:
        for path in ("/services/collector", "/services/collector/event", "/services/collector/event/1.0"):
            app.router.add_post(path, self.event)
        app.router.add_post("/services/collector/ack", self.ack)
        app.router.add_route("*", "/{tail:.*}", self.not_found)

    async def not_found(self, request: web.Request) -> web.Response:
        return _hec(404, "The requested URL was not found on this server.", 404)

    @property
    def events(self) -> list[Any]:
        return [i.event for i in self.indexed]

    def _auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization")
        if not header:
            return _hec(401, "Token is required", 2)
        scheme, _, token = header.partition(" ")
        if scheme != "Splunk" or not token:
            return _hec(401, "Invalid authorization", 3)
        if token != self.token:
            return _hec(403, "Invalid token", 4)
        if self.disabled:
            return _hec(403, "Token disabled", 1)
        return None

    def _channel(self, request: web.Request) -> tuple[str | None, web.Response | None]:
        channel = request.headers.get("X-Splunk-Request-Channel") or request.query.get("channel")
        if not channel:
            return None, _hec(400, "Data channel is missing", 10)
        try:
            uuid.UUID(channel)
        except ValueError:
            return None, _hec(400, "Invalid data channel", 11)
        return channel, None

    async def event(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        body = await request.read()
        if len(body) > self.max_content_length:
            return web.Response(status=413)
        if self.answers:
            status, answer, headers = self.answers.pop(0)
            return web.json_response(answer, status=status, headers=headers)
        channel = None
        if self.use_ack:
            channel, refused = self._channel(request)
            if refused is not None:
                return refused
        text = body.decode("utf-8", "replace")
        if not text.strip():
            return _hec(400, "No data", 5)
        self.event_requests += 1
        decoder = json.JSONDecoder()
        pos, number = _WS.match(text, 0).end(), 0  # type: ignore[union-attr]
        while pos < len(text):
            try:
                obj, pos = decoder.raw_decode(text, pos)
            except json.JSONDecodeError:
                return _hec(400, "Invalid data format", 6, number)
            if (refused := self._check(obj, number)) is not None:
                return refused
            self.indexed.append(Indexed(obj, channel, self.event_requests))
            pos = _WS.match(text, pos).end()  # type: ignore[union-attr]
            number += 1
        if not self.use_ack:
            return web.json_response({"text": "Success", "code": 0})
        assert channel is not None
        state = self.channels.setdefault(channel, Channel())
        ack_id, state.next_id = state.next_id, state.next_id + 1
        state.ready_at[ack_id] = time.monotonic() + self.ack_lag
        return web.json_response({"text": "Success", "code": 0, "ackId": ack_id})

    def _check(self, obj: Any, number: int) -> web.Response | None:
        """The refusal of one event object, or None (Splunk's per-object checks)."""
        if not isinstance(obj, dict):
            return _hec(400, "Invalid data format", 6, number)
        if "event" not in obj:
            return _hec(400, "Event field is required", 12, number)
        event = obj["event"]
        if isinstance(event, str) and not event.strip():
            return _hec(400, "Event field cannot be blank", 13, number)
        if event is None or event is False:
            return _hec(400, "Invalid data format", 6, number)
        when = obj.get("time")
        if when is not None and not (isinstance(when, int | float) and not isinstance(when, bool)):
            try:
                float(when)
            except (TypeError, ValueError):
                return _hec(400, "Invalid data format", 6, number)
        for key in ("host", "source", "sourcetype", "index"):
            if key in obj and not isinstance(obj[key], str):
                return _hec(400, "Invalid data format", 6, number)
        if self.indexes is not None and obj.get("index", "main") not in self.indexes:
            return _hec(400, "Incorrect index", 7, number)
        return None

    async def ack(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        if not self.use_ack:
            return _hec(400, "ACK is disabled", 14)
        channel, refused = self._channel(request)
        if refused is not None:
            return refused
        assert channel is not None
        if self.poll_answers:
            status, answer, headers = self.poll_answers.pop(0)
            return web.json_response(answer, status=status, headers=headers)
        try:
            asked = json.loads(await request.read())["acks"]
            ids = [int(i) for i in asked]
        except (ValueError, KeyError, TypeError):
            return _hec(400, "Invalid data format", 6)
        state = self.channels.get(channel, Channel())
        now = time.monotonic()
        answer: dict[str, bool] = {}
        for i in ids:
            ready = i in state.ready_at and not self.ack_hold and state.ready_at[i] <= now
            answer[str(i)] = ready
            if ready:
                del state.ready_at[i]  # Splunk forgets an id once it has answered true
        return web.json_response({"acks": answer})

    @property
    def polls(self) -> list[Any]:
        return [r for r in self.requests if r.path == "/services/collector/ack"]


def _hec(status: int, text: str, code: int, invalid: int | None = None) -> web.Response:
    body: dict[str, Any] = {"text": text, "code": code}
    if invalid is not None:
        body["invalid-event-number"] = invalid
    return web.json_response(body, status=status)


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost and its key, written to ``directory``."""
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
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return directory / "cert.pem", directory / "key.pem"


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx
