"""HTTP token honeypot: an internal-looking API on its own port where canary tokens get tried.

Credentials are taken from ``Authorization`` (``Bearer``, ``token``, ``Basic``, AWS SigV4's
``Credential=AKIA…``), configured API-key headers and configured query parameters. Every request
gets the same answer (status, headers, body shape) whether or not it carried a canary, and the answer
is sent after a fixed floor (``min_response_time``); the lookup starts as the answer is written and
runs in the background (not during the floor, where its I/O would make canary answers faster): the
response is not an acknowledgement to anyone, so answering first and committing right after is
fine; a failed commit is retried with backoff and counted (:class:`BackgroundReporter`).

A canary credential raises ``EventKind.USED`` with the caller's address, user agent, method, path and
headers; the credential itself is never stored, only a keyed fingerprint. Presented to one of the
``probe_paths`` (who-am-I and introspection endpoints, which only check a token), it is a *probe*:
the same event at ERROR instead of CRITICAL, grouped per peer. The honeypot runs on its own port with
its own bounds, so hostile clients cannot reach the listener's webhooks or /metrics: header size and
count are limited (aiohttp answers 400, counted here), connections that do not complete a request
within ``idle_timeout`` are closed and counted (slow-loris), and beyond ``max_connections_per_peer``
connections from one peer or ``max_connections`` in all the connection idle the longest is closed to
admit the new one (:class:`~canary.credentials.recognise.ConnectionGate`); a new connection is
refused only while every held one is being answered. Sheds and refusals are counted, and an episode
of them raises one HEALTH event.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import logging
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

import structlog
from aiohttp import HttpVersion11, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine, LineTooLong
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict

from canary.credentials.recognise import ConnectionGate, fingerprint, presented_candidates
from canary.events import DetectionEvent, EventKind, Severity, event_key
from canary.plugins import SourceType
from canary.pressure import BackgroundReporter, PressureWatch
from canary.proxies import peer_key
from canary.store.registry import ValueKind, recognise
from canary.tarpit import Pace, Tarpit
from canary.typing import SourceContext

log = structlog.get_logger("canary.sources.token_honeypot")

EVENT_SOURCE = "token_honeypot"
HANDLED = web.RequestKey("canary_honeypot_handled", bool)
_SIGV4 = re.compile(r"Credential=([A-Z0-9]{16,128})/", re.I)
_MAX_HEADER_EVIDENCE = 512
_DROP_HEADERS = {"authorization", "cookie", "proxy-authorization"}
TARPIT_PEERS = 10_000  # peers whose allowance is remembered (the least recent forgotten first)


def extract_credentials(
    headers: Mapping[str, str], query: Mapping[str, str], api_key_headers: Sequence[str], query_params: Sequence[str]
) -> list[tuple[str, str]]:
    """(where, value) of every credential a request presents, in a fixed order."""
    found: list[tuple[str, str]] = []
    auth = headers.get("Authorization", "").strip()
    scheme, _, rest = auth.partition(" ")
    rest = rest.strip()
    s = scheme.lower()
    if s in ("bearer", "token") and rest:
        found.append((f"authorization:{s}", rest))
    elif s == "basic" and rest:
        try:
            user, _, password = base64.b64decode(rest, validate=True).decode("utf-8", "replace").partition(":")
        except (binascii.Error, ValueError):
            found.append(("authorization:basic-undecodable", rest))
        else:
            if user:
                found.append(("authorization:basic-user", user))
            if password:
                found.append(("authorization:basic-password", password))
    elif s == "aws4-hmac-sha256":
        m = _SIGV4.search(rest)
        if m:
            found.append(("authorization:aws-sigv4", m.group(1)))
    elif auth and not rest:
        found.append(("authorization:raw", auth))  # "Authorization: <token>" without a scheme
    for name in api_key_headers:
        value = headers.get(name, "").strip()
        if value:
            found.append((f"header:{name.lower()}", value))
    for name in query_params:
        value = query.get(name, "").strip()
        if value:
            found.append((f"query:{name}", value))
    return found


class _Guard(asyncio.Protocol):
    """Wraps aiohttp's per-connection protocol: admits it through the honeypot's connection gate
    (sheds or refusals counted) and closes connections that do not complete a request in time."""

    def __init__(self, honeypot: TokenHoneypot, inner: asyncio.Protocol) -> None:
        self.hp = honeypot
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.refused = False
        self.busy = 0  # requests of this connection being answered (waiting out the floor)
        self.pending_bytes = 0  # bytes received since the last completed request

    @property
    def sheddable(self) -> bool:
        """Waiting for its client or closing anyway (not while one of its requests is being answered)."""
        return not self.busy or self.transport is None or self.transport.is_closing()

    def shed(self) -> bool:
        """Abort to make room for a new connection; False if it was closing anyway."""
        if self.transport is None or self.transport.is_closing():
            return False
        self.transport.abort()
        return True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("",)
        if not self.hp.guards.admit(self, peer_key(str(peer[0]))):
            self.refused = True
            transport.abort()
            return
        self.hp.by_transport[transport] = self
        self.inner.connection_made(transport)
        self.arm()

    def arm(self) -> None:
        self.pending_bytes = 0
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(self.hp.options.idle_timeout, self._expired)

    def _expired(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if self.pending_bytes:  # a request started and never finished: slow-loris
                peer = self.transport.get_extra_info("peername") or ("",)
                self.hp.count_reject("slow_request", f"peer={peer[0]} bytes={self.pending_bytes}")
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self.pending_bytes += len(data)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.hp.guards.release(self)
        if self.transport is not None and self.hp.by_transport.get(self.transport) is self:
            del self.hp.by_transport[self.transport]
        if not self.refused:
            self.inner.connection_lost(exc)


#: What nginx names a header refusal in its error page (its title and an extra line).
HEADER_TOO_LARGE = "Request Header Or Cookie Too Large"


def refusal(status: int, exc: BaseException | None, line_limit: int) -> tuple[int, str]:
    """The status nginx answers a request aiohttp could not parse with (and the refusal's name its page
    adds, or ""), from aiohttp's complaint: a request line over ``line_limit`` is 414; a header line too
    long or too many headers is nginx's 400 "Request Header Or Cookie Too Large"; an unknown
    Transfer-Encoding 501; an HTTP version it does not speak 505; anything else 400."""
    if isinstance(exc, LineTooLong):
        return (414, "") if len(exc.args) > 1 and exc.args[1] == line_limit else (400, HEADER_TOO_LARGE)
    text = str(exc or "").lower()
    if isinstance(exc, BadHttpMessage) and "too many headers" in text:
        return 400, HEADER_TOO_LARGE
    if isinstance(exc, BadHttpMessage) and "invalid `transfer-encoding`" in text:
        return 501, ""
    if isinstance(exc, BadStatusLine) and "invalid http version" in text:
        return 505, ""
    return (status if status in (413, 414, 501, 505) else 400), ""


def nginx_headers(configured: Mapping[str, str], content_type: str, length: int, *, keep_alive: bool) -> CIMultiDict[str]:
    """An answer's headers as nginx writes them in front of an application: Server, Date, Content-Type
    (verbatim: aiohttp would add a charset), Content-Length, Connection (nginx names keep-alive too;
    aiohttp leaves it out), then the rest of ``configured`` in its order."""
    headers = CIMultiDict[str]()
    server = next((v for k, v in configured.items() if k.lower() == "server"), None)
    if server:
        headers["Server"] = server
    headers["Date"] = formatdate(usegmt=True)
    headers["Content-Type"] = content_type
    headers["Content-Length"] = str(length)
    headers["Connection"] = "keep-alive" if keep_alive else "close"
    for k, v in configured.items():
        if k.lower() != "server":
            headers[k] = v
    return headers


def speak_http11(request: web.BaseRequest) -> None:
    """Answer in HTTP/1.1 whatever version the request named: aiohttp echoes the request's version in
    its status line ("HTTP/2.0 401", "HTTP/1.0 401"); nginx always says HTTP/1.1."""
    request._version = HttpVersion11
    request._cache.pop("version", None)


class _DisguisedHandler(RequestHandler):
    """aiohttp's connection handler, except for the answer to a request it cannot parse (oversized or
    too many headers, a bad request line or Transfer-Encoding). aiohttp makes that one itself, with
    ``Server: Python/3.x aiohttp/3.x`` and a diagnostic text no nginx sends: one bad request would tell
    whoever sent it that the API is a trap. Here it is the honeypot's :meth:`TokenHoneypot.error_response`:
    the same status, the configured headers and error page, as the imitated server words its own."""

    __slots__ = ("_error_response",)

    def __init__(self, error_response: Callable[[int, BaseException | None], web.Response], manager: web.Server,
                 **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._error_response = error_response

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:  # part of an answer is out: the connection is broken
            raise ConnectionError("response already started")
        speak_http11(request)  # aiohttp's placeholder for an unread request says HTTP/1.0
        return self._error_response(status, exc)


class TokenHoneypot:
    """The honeypot as a listener Component (own aiohttp server; no routes on the listener)."""

    def __init__(self, options: Any) -> None:
        self.options = options
        self.name = f"token_honeypot:{options.port}"
        self.port = int(options.port)
        self.guards: ConnectionGate[_Guard] = ConnectionGate(options.max_connections, options.max_connections_per_peer,
                                                             self._pressure)
        self.by_transport: dict[asyncio.BaseTransport, _Guard] = {}
        self.runtime: SourceContext  # set by start()
        self.reporter: BackgroundReporter
        self.pressure: PressureWatch
        self._runner: web.AppRunner | None = None
        self._server: asyncio.base_events.Server | None = None
        self._prefixes = tuple(options.paths)
        self._headers = {k: v for k, v in options.headers.items()}
        self._api_headers = tuple(options.api_key_headers)
        self._drop = _DROP_HEADERS | {h.lower() for h in options.api_key_headers}
        self._probe_paths = frozenset(options.probe_paths)
        self.tarpit = Tarpit(options.probe_limit, options.probe_window, options.tarpit_step, options.tarpit_max,
                             TARPIT_PEERS, kinds=("credential",))

    def routes(self) -> list[web.RouteDef]:
        return []

    async def start(self, runtime: SourceContext) -> None:
        self.runtime = runtime
        self.reporter = BackgroundReporter(runtime, EVENT_SOURCE)
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        honeypot = self

        class _Access(AbstractAccessLogger):
            def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
                if not request.get(HANDLED):  # answered by aiohttp itself: unparseable or oversized request
                    honeypot.count_reject("bad_http_request", f"status={response.status} peer={request.remote}")

        handler_args: dict[str, Any] = dict(
            access_log_class=_Access, access_log=logging.getLogger("canary.token_honeypot"),
            max_field_size=self.options.max_field_size, max_line_size=self._line_limit,
            max_headers=self.options.max_headers, keepalive_timeout=2 * self.options.idle_timeout,
        )
        self._runner = web.AppRunner(app, handle_signals=False, **handler_args)
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()

        def protocol() -> _Guard:
            return _Guard(self, _DisguisedHandler(self.error_response, server, loop=loop, **handler_args))

        self._server = await loop.create_server(protocol, self.options.host, self.port, reuse_address=True)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.pressure = PressureWatch(self.reporter, f"token_honeypot:{self.port}", f"{self.options.host}:{self.port}",
                                      quiet=self.options.pressure_quiet)
        log.info("token_honeypot.listening", host=self.options.host, port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for guard in list(self.guards):
                if guard.transport is not None:
                    guard.transport.abort()
            await self._server.wait_closed()
            self._server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.reporter.drain(timeout=5.0)

    @property
    def _line_limit(self) -> int:
        """The request line's limit: one byte under the header lines' (``max_field_size``), so the
        parser's complaint says which of the two was too long (nginx answers them differently)."""
        return int(self.options.max_field_size) - 1

    def error_response(self, status: int, exc: BaseException | None = None) -> web.Response:
        """The answer to a request that could not be read, as the imitated server words it: the status
        it gives that refusal (:func:`refusal`), its reason phrase (``error_reasons``), the configured
        headers (``Server``) in nginx's order, and ``error_body`` (nginx's own error page by default),
        closing the connection as aiohttp does."""
        status, text = refusal(status, exc, self._line_limit)
        reason = self.options.error_reasons.get(status)
        if reason is None:
            try:
                reason = HTTPStatus(status).phrase
            except ValueError:
                reason = ""
        phrase = f"{status} {reason}".rstrip()
        configured = {k: v for k, v in self._headers.items() if k.lower() != "www-authenticate"}
        server = next((v for k, v in configured.items() if k.lower() == "server"), "")
        detail = self.options.error_detail.replace("{text}", text) if text else ""
        title = f"{status} {text}" if text else phrase
        body = (self.options.error_body.replace("{title}", title).replace("{status}", phrase)
                .replace("{detail}", detail).replace("{server}", server)).encode()
        headers = nginx_headers(configured, self.options.error_content_type, len(body), keep_alive=False)
        response = web.Response(status=status, reason=reason or None, body=body, headers=headers)
        response.force_close()
        return response

    def count_reject(self, reason: str, sample: str) -> None:
        self.reporter.spawn(lambda: self.runtime.reject(EVENT_SOURCE, reason, sample))

    def _pressure(self, reason: str, peer: str) -> None:
        self.count_reject(reason, f"peer={peer}")
        self.pressure.note(reason, peer)

    # -- requests -------------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        started = loop.time()
        if request.version.major != 1:  # aiohttp reads "HTTP/2.0" as HTTP/1 framing; nginx refuses it
            speak_http11(request)
            return self.error_response(505)  # not HANDLED: counted as a bad request
        speak_http11(request)
        request[HANDLED] = True
        guard = self.by_transport.get(request.transport) if request.transport is not None else None
        if guard is not None:
            guard.busy += 1
        try:
            return await self._answer(request, loop, started)
        finally:
            if guard is not None:  # a completed request re-arms its connection's idle timer
                guard.busy -= 1
                if guard.transport is not None and not guard.transport.is_closing():
                    guard.arm()
                    self.guards.progress(guard)

    async def _answer(self, request: web.Request, loop: asyncio.AbstractEventLoop, started: float) -> web.Response:
        observed = dt.datetime.now(dt.timezone.utc)
        request_id = uuid.uuid4().hex
        creds = extract_credentials(request.headers, request.query, self._api_headers, self.options.query_params)
        snapshot = self._snapshot(request, request_id, observed) if creds else None
        known = request.path.startswith(self._prefixes)
        status = self.options.status if known else 404
        body = (self.options.body if known else self.options.not_found_body).replace("{request_id}", request_id)
        headers = {**self._headers, "X-Request-Id": request_id}
        if not known:
            headers.pop("WWW-Authenticate", None)
        self.runtime.metrics.requests.labels(component=EVENT_SOURCE, code=str(status)).inc()
        # a peer presenting credentials beyond its allowance waits longer, whatever they are (a tarpit,
        # the same for canaries and other values), and its flood is reported once per window
        pace = self.tarpit.count(request.remote, "credential") if creds else None
        if pace is not None and pace.crossed:
            self.reporter.spawn(lambda: self._flood(pace, request.remote or ""))
        wait = self.options.min_response_time - (loop.time() - started)
        try:
            if wait > 0:
                await asyncio.sleep(wait)
            if pace is not None:
                await self.tarpit.wait(pace)
        finally:  # even if the wait is cancelled (a client that leaves, a shutdown): nothing is lost
            if snapshot is not None:
                # The lookup starts only now, as the answer is written: run during the floor, its database
                # round trips wake the event loop near the floor's end, which answered canary tokens
                # measurably sooner (about 0.3 ms in 11) than other tokens.
                self.reporter.spawn(lambda: self._events_for(creds, snapshot))
        payload = body.encode()
        response = web.Response(status=status, body=payload, headers=nginx_headers(
            headers, self.options.content_type, len(payload), keep_alive=request.keep_alive))
        if not request.keep_alive:
            response.force_close()
        return response

    async def _flood(self, pace: Pace, remote: str) -> list[DetectionEvent]:
        """The report that a peer presented more credentials than its allowance in one window (counts
        only; whether any was a canary is for the events of each request), in the peer's probe incident."""
        return [DetectionEvent(
            kind=EventKind.USED, source=EVENT_SOURCE, key=event_key("token-honeypot-flood", pace.peer, pace.window_start.isoformat()),
            group=f"token-honeypot-probe:{pace.peer}", canary_id=None, observed_at=dt.datetime.now(dt.timezone.utc),
            severity=Severity.WARNING, origin={"client_addr": remote},
            evidence={"signal": "probe_flood", "peer": pace.peer, "counts": pace.counts, "limit": self.tarpit.limit,
                      "window": self.tarpit.window},
        )]

    def _snapshot(self, request: web.Request, request_id: str, observed: dt.datetime) -> dict[str, Any]:
        headers = {
            k: v[:_MAX_HEADER_EVIDENCE] for k, v in request.headers.items() if k.lower() not in self._drop
        }
        query = {k: v[:_MAX_HEADER_EVIDENCE] for k, v in request.query.items() if k not in self.options.query_params}
        peer = request.transport.get_extra_info("peername") if request.transport else None
        return {
            "request_id": request_id, "observed": observed, "remote": request.remote or "",
            "client_port": peer[1] if peer else None, "method": request.method, "path": request.path[:512],
            "host": request.host[:256], "user_agent": request.headers.get("User-Agent", "")[:512],
            "headers": headers, "query": query,
        }

    async def _events_for(self, creds: list[tuple[str, str]], snap: dict[str, Any]) -> list[DetectionEvent]:
        kinds = [ValueKind.TOKEN, ValueKind.AWS_KEY_ID, ValueKind.AWS_SECRET, ValueKind.DSN_USER]
        candidates = presented_candidates([v for _, v in creds], kinds)
        found = await recognise(self.runtime.registry, candidates)
        probe = (snap["path"].rstrip("/") or "/") in self._probe_paths  # an endpoint that only checks a token
        events: list[DetectionEvent] = []
        seen: set[int] = set()
        for where, value in creds:
            for kind in kinds:
                match = found.get((kind, value))
                if match is None or match.canary_id in seen:
                    continue
                seen.add(match.canary_id)
                user = next((v for w, v in creds if w == "authorization:basic-user" and v != value), None)
                if probe:
                    group, severity = f"token-honeypot-probe:{peer_key(snap['remote'])}", Severity.ERROR
                else:
                    group, severity = f"token-honeypot:{snap['remote']}:{match.canary_id}", Severity.CRITICAL
                events.append(DetectionEvent(
                    kind=EventKind.USED, source=EVENT_SOURCE, key=event_key("token-honeypot", snap["request_id"], match.canary_id),
                    group=group, canary_id=match.canary_id, observed_at=snap["observed"], severity=severity,
                    actor={"user": user or snap["user_agent"] or "unknown", "user_agent": snap["user_agent"]},
                    origin={"client_addr": snap["remote"], "client_port": snap["client_port"], "user_agent": snap["user_agent"],
                            "method": snap["method"], "path": snap["path"], "host": snap["host"]},
                    evidence={"credential": str(kind), "presented_in": where, "canary": match.uid,
                              "signal": "probe" if probe else "used",
                              "credential_fingerprint": fingerprint(self.runtime.keyring, value),
                              "headers": snap["headers"], "query": snap["query"], "request_id": snap["request_id"]},
                ))
        return events


SOURCE = SourceType("token_honeypot", lambda config: [TokenHoneypot(config.honeypot.http)] if config.honeypot.http.enabled else [])
