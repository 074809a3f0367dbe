"""The canary MX: an SMTP server (aiosmtpd) on the listener's own event loop.

It accepts mail only for canary recipients in the configured mail domains (``550`` for anyone else),
enforces the size limit (``552``), offers STARTTLS when a certificate is configured and understands
the PROXY protocol (v1/v2) when it sits behind a load balancer. For each message it records the
envelope, the peer address and HELO, our own Received line (the only hop we can vouch for), the
claimed Received chain head, SPF and DKIM verdicts (computed in worker threads with a timeout),
subject, URLs and attachment hashes, and keeps the raw message encrypted. ``250`` is sent only
after the events are committed; a store failure answers ``451`` so the sender retries.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import ipaddress
import ssl
from typing import Any, AnyStr

import structlog
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from canary.config import ContactConfig
from canary.contact.evidence import COMMIT_ERRORS, MailFacts, canary_for_address, record_mail
from canary.contact.mime import mail_address, parse_mail_async
from canary.contact.senders import KnownSenders, expected_contact
from canary.contact.verdicts import DnspythonResolver, Resolver, mail_verdicts
from canary.plugins import SourceType
from canary.store.registry import CanaryRecord
from canary.typing import SourceContext

log = structlog.get_logger("canary.sources.smtp")

NAME = "smtp"
SESSION_TIMEOUT = 60.0
#: Replies aiosmtpd produces itself, without a handler hook: counted as rejects here.
_INTERNAL_REJECTS = {"552": "message_too_big", "500": "line_too_long"}


class _Envelope(Envelope):
    def __init__(self) -> None:
        super().__init__()
        self.canaries: list[CanaryRecord] = []


class _SMTP(SMTP):
    """aiosmtpd's protocol with canary envelopes, per-reply metrics and connection tracking."""

    def __init__(self, source: SmtpSource, handler: _Handler, **kwargs: Any) -> None:
        self._source = source
        self.proxied_ip: str | None = None  # from the PROXY header; survives STARTTLS (the session does not)
        self.proxy_ok = False
        super().__init__(handler, **kwargs)

    async def _handle_client(self) -> None:
        await super()._handle_client()
        if self._proxy_timeout is not None and not self.proxy_ok:
            # aiosmtpd drops a connection without a valid PROXY header before any hook runs
            await self._source.runtime.reject(NAME, "bad_proxy_header", "missing or invalid PROXY protocol header")

    def _create_envelope(self) -> Envelope:
        return _Envelope()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._source.connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._source.connections.discard(self)
        super().connection_lost(error)

    async def push(self, status: AnyStr) -> None:
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else str(status)
        code = text[:3]
        rt = self._source.runtime
        rt.metrics.requests.labels(component=NAME, code=code).inc()
        reason = _INTERNAL_REJECTS.get(code)
        if reason and (code != "500" or "too long" in text.lower()):
            await rt.reject(NAME, reason, f"{text[:120]} (peer {self.client_ip})")
        await super().push(status)

    @property
    def client_ip(self) -> str | None:
        if self.proxied_ip:
            return self.proxied_ip
        peer = self.session.peer if self.session else None
        return str(peer[0]) if isinstance(peer, tuple) and peer else None


class _Handler:
    """aiosmtpd hooks (discovered by their ``handle_`` names)."""

    def __init__(self, source: SmtpSource) -> None:
        self.src = source

    async def handle_PROXY(self, server: _SMTP, session: Session, envelope: Envelope, proxy_data: Any) -> bool:
        if proxy_data is None or not proxy_data.valid:
            return False  # counted when the connection ends (server.proxy_ok stays False)
        if proxy_data.src_addr is not None:
            try:
                server.proxied_ip = str(ipaddress.ip_address(proxy_data.src_addr))
            except ValueError:
                return False
        server.proxy_ok = True
        return True

    async def handle_RCPT(
        self, server: _SMTP, session: Session, envelope: _Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        rt = self.src.runtime
        addr = mail_address(address)
        if addr is None:
            await rt.reject(NAME, "bad_recipient", f"malformed recipient {address[:100]!r}")
            return "553 5.1.3 Malformed recipient address"
        try:
            canary = await canary_for_address(rt, addr, self.src.config.mail_domains)
        except COMMIT_ERRORS:
            log.exception("smtp.lookup_failed", peer=server.client_ip)
            return "451 4.3.0 Temporary lookup failure, try again later"
        if canary is None:
            await rt.reject(NAME, "unknown_recipient", f"{addr[:100]} from {server.client_ip}")
            return "550 5.1.1 Recipient address rejected: mailbox unavailable"
        if all(c.id != canary.id for c in envelope.canaries):
            envelope.canaries.append(canary)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: _SMTP, session: Session, envelope: _Envelope) -> str:
        src = self.src
        raw = bytes(envelope.original_content or b"")
        ip = server.client_ip
        helo = session.host_name or ""
        received_at = dt.datetime.now(dt.timezone.utc)
        parsed = await parse_mail_async(raw)
        verdicts = await mail_verdicts(
            src.resolver, raw, client_ip=ip, mail_from=envelope.mail_from or "", helo=helo,
            timeout=src.config.dns_timeout,
        )
        tls = "ESMTPS" if session.ssl else ("ESMTP" if session.extended_smtp else "SMTP")
        received = (
            f"from {helo or 'unknown'} ([{ip}]) by {server.hostname} (canary) with {tls}; "
            f"{email.utils.format_datetime(received_at)}"
        )
        facts = MailFacts(
            source=NAME, raw=raw, mail_from=envelope.mail_from or "", client_ip=ip, helo=helo, verdicts=verdicts,
            received=received, extra={"tls": bool(session.ssl), "proxied": server.proxied_ip is not None},
            contact_points=[a for a in (mail_address(r) for r in envelope.rcpt_tos) if a],
        )
        try:
            events = await record_mail(src.runtime, facts, envelope.canaries, src.known, parsed)
        except COMMIT_ERRORS:
            log.exception("smtp.commit_failed", peer=ip)
            return "451 4.3.0 Temporary failure, try again later"
        log.info("smtp.contact", peer=ip, canaries=[c.id for c in envelope.canaries], spf=verdicts.spf,
                 dkim=verdicts.dkim, expected=bool(events and events[0].evidence.get("expected")))
        if parsed.malformed:
            await src.runtime.reject(NAME, "malformed_mime", f"{parsed.malformed} (peer {ip})")
            return f"554 5.6.0 Message is malformed: {parsed.malformed}"
        return "250 2.0.0 OK"

    async def handle_exception(self, error: Exception) -> str:
        log.error("smtp.session_error", error=type(error).__name__)
        await self.src.runtime.reject(NAME, "internal_error", type(error).__name__)
        return "451 4.3.0 Internal error, try again later"


class SmtpSource:
    """Component: the SMTP server for the canary mail domains."""

    name = NAME

    def __init__(self, config: ContactConfig, *, resolver: Resolver | None = None) -> None:
        self.config = config
        self.resolver: Resolver = resolver or DnspythonResolver()
        self.known = KnownSenders(config.known_senders)
        self.connections: set[_SMTP] = set()
        self.port: int | None = None
        self._server: asyncio.Server | None = None
        self._runtime: Any = None

    @property
    def runtime(self) -> Any:
        return self._runtime

    def routes(self) -> list[web.RouteDef]:
        return []

    async def start(self, runtime: SourceContext) -> None:
        self._runtime = runtime
        cfg = self.config
        tls: ssl.SSLContext | None = None
        if cfg.tls_cert is not None and cfg.tls_key is not None:
            tls = await asyncio.to_thread(_tls_context, cfg)
        hostname = cfg.smtp_hostname or runtime.config.canary.node_name
        loop = asyncio.get_running_loop()
        handler = _Handler(self)

        def factory() -> _SMTP:
            return _SMTP(
                self, handler, data_size_limit=cfg.max_message_size, enable_SMTPUTF8=True, hostname=hostname,
                ident="canary ESMTP", tls_context=tls, require_starttls=cfg.require_starttls, timeout=SESSION_TIMEOUT,
                proxy_protocol_timeout=cfg.proxy_timeout if cfg.proxy_protocol else None, loop=loop,
            )

        self._server = await loop.create_server(factory, cfg.smtp_host, cfg.smtp_port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("smtp.listening", host=cfg.smtp_host, port=self.port, tls=tls is not None,
                 proxy_protocol=cfg.proxy_protocol, domains=list(cfg.mail_domains))

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        await self._server.wait_closed()
        self._server = None


def _tls_context(cfg: ContactConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    assert cfg.tls_cert is not None and cfg.tls_key is not None
    ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
    return ctx


SOURCE = SourceType("smtp", lambda config: [SmtpSource(config.contact)] if config.contact.smtp else [],
                    suppress_rules=(expected_contact,))
