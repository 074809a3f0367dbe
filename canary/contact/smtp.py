"""The canary MX: an SMTP server (aiosmtpd) on the listener's own event loop.

No recipient oracle. An insider who can open a connection must not learn which addresses are
canaries, so every address in the canary mail domains gets the same ``250`` to RCPT (nothing is
looked up before replying: the reply and its timing depend on the address's domain only), VRFY
answers ``252`` (RFC 5321 §3.5.3: "cannot verify, will accept") and EXPN ``502`` for every address.
Addresses outside our domains are refused as relaying (``550 5.7.1``), which says nothing about
canaries. Whether a recipient is a canary is decided at the end of DATA: mail to canaries is recorded
(below); mail to no canary is accepted with the same ``250`` and discarded, as a catch-all domain
does. Refusing it (``550`` at end of DATA) would need refusing canary mail too, losing the phisher's
follow-ups, and a bounce would be backscatter and an oracle by mail. Both paths parse the message and
compute SPF / DKIM, as every MX does; what differs is the commit of a contact, which only a sender
who has just paged on-call can time.

A probe is a signal. Addresses named by RCPT (in a transaction that delivered no message: RSET, a
new HELO, a refused DATA, the session ending), VRFY or EXPN are looked up after the reply, in the
background, and each canary among them becomes a lower-severity (warning) CONTACTED event grouped
per peer (:func:`canary.contact.evidence.record_probes`). Every RCPT / VRFY / EXPN counts toward the
peer's allowance (:class:`Tarpit`): beyond it replies are delayed progressively and the flood is
reported once per window (counts only).

For each message it records the envelope, the peer address and HELO, our own Received line (the only
hop we can vouch for), the claimed Received chain head, SPF and DKIM verdicts (computed in worker
threads with a timeout), subject, URLs and attachment hashes, and keeps the raw message encrypted.
Each peer (IPv4 address / IPv6 /64; ``proxy_from`` exempt) may hold ``smtp_max_connections_per_peer``
open sessions; one beyond is closed before the greeting and counted, so no peer's idle sessions can
take the descriptors every other delivery (and the listener's HTTP port) needs.
It enforces the size limit (``552``), offers STARTTLS when a certificate is configured and
understands the PROXY protocol (v1/v2) when it sits behind a load balancer, believing it only from
``contact.proxy_from`` (anyone else sending one is dropped and counted: it would name another client).
``250`` is sent only after the events are committed; a store failure answers ``451`` so the sender
retries.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import ipaddress
import secrets
import ssl
import traceback
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, AnyStr

import structlog
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from canary.config import ContactConfig
from canary.conncap import PeerConnections
from canary.contact.evidence import (
    COMMIT_ERRORS,
    MailFacts,
    canary_for_address,
    record_flood,
    record_mail,
    record_probes,
)
from canary.contact.mime import address_domain, in_domains, mail_address, parse_mail_async
from canary.contact.senders import KnownSenders, expected_contact
from canary.contact.verdicts import DnspythonResolver, Resolver, mail_verdicts
from canary.plugins import SourceType
from canary.pressure import PRESSURE_QUIET, BackgroundReporter, PressureWatch
from canary.proxies import networks, parse_address, peer_key, within
from canary.store.registry import CanaryRecord
from canary.tarpit import Pace, Tarpit
from canary.typing import SourceContext

log = structlog.get_logger("canary.sources.smtp")

NAME = "smtp"
SESSION_TIMEOUT = 60.0
#: Replies aiosmtpd produces itself, without a handler hook: counted as rejects here.
_INTERNAL_REJECTS = {"552": "message_too_big", "500": "line_too_long"}
#: Recipients one transaction may name (RFC 5321 §4.5.3.1.8: at least 100 must be accepted).
MAX_RECIPIENTS = 100
#: Addresses a session names before they are looked up in the background (bounds its memory).
PROBE_BATCH = 256
#: Probe batches looked up at once, so a probing storm cannot starve deliveries of connections.
PROBE_CONCURRENCY = 4
RCPT_OK = "250 2.1.5 OK"
RELAY_DENIED = "550 5.7.1 Relay access denied"
VRFY_REPLY = "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery"
EXPN_REPLY = "502 5.5.1 EXPN not available"


# -- protocol -----------------------------------------------------------------------------------------
class _Envelope(Envelope):
    def __init__(self) -> None:
        super().__init__()
        self.settled = False  # delivered (or already handed over as probes)


class _SMTP(SMTP):
    """aiosmtpd's protocol with canary envelopes, per-reply metrics and connection tracking."""

    def __init__(self, source: SmtpSource, handler: _Handler, **kwargs: Any) -> None:
        self._source = source
        self.proxied_ip: str | None = None  # from the PROXY header; survives STARTTLS (the session does not)
        self.proxy_ok = False
        self.proxy_refusal = "bad_proxy_header"
        self.token = secrets.token_hex(8)  # names this connection in probe event keys
        self.counts = {"rcpt": 0, "vrfy": 0, "expn": 0}
        self.helo: str | None = None
        self.sender: str | None = None
        self._pending: dict[tuple[str, str], None] = {}  # (probe, address), in order, not yet looked up
        self._cap_key: str | None = None  # the peer this connection counts against (admitted), once
        self._refused = False  # closed at once: the peer holds its allowance of connections
        super().__init__(handler, **kwargs)

    async def _handle_client(self) -> None:
        await super()._handle_client()
        if self._proxy_timeout is not None and not self.proxy_ok:
            # aiosmtpd drops a connection without a valid PROXY header before any hook runs
            await self._source.runtime.reject(NAME, self.proxy_refusal,
                                              f"missing, invalid or untrusted PROXY protocol header (peer {self._peer_ip})")

    @property
    def _peer_ip(self) -> str | None:
        peer = self.session.peer if self.session else None
        return str(peer[0]) if isinstance(peer, tuple) and peer else None

    def _create_envelope(self) -> Envelope:
        # aiosmtpd makes a new envelope on RSET, HELO / EHLO, STARTTLS and after DATA: the recipients
        # of one that delivered nothing were probes
        self._abandon(getattr(self, "envelope", None))
        return _Envelope()

    def _abandon(self, envelope: Envelope | None) -> None:
        if isinstance(envelope, _Envelope) and not envelope.settled:
            envelope.settled = True
            for rcpt in envelope.rcpt_tos:
                self.note("rcpt", rcpt)

    def note(self, probe: str, address: str) -> None:
        """Remember an address named by ``probe`` for the lookup after the session (ours only)."""
        for addr in self._source.named(address):
            self._pending.setdefault((probe, addr), None)
        if len(self._pending) >= PROBE_BATCH:
            self.flush()

    def flush(self) -> None:
        """Hand the addresses named so far to the background lookup (never delays a reply)."""
        if not self._pending:
            return
        batch, self._pending = list(self._pending), {}
        self._source.spawn(self._source.settle_probes(
            batch, session=self.token, client_ip=self.client_ip, helo=self.helo, sender=self.sender,
            counts=dict(self.counts)))

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's address parser, with every way the email package's parser fails on hostile text
        answered as the syntax error it is (``RCPT TO:<a@``, ``MAIL FROM:<@a:`` raised IndexError there,
        which aiosmtpd turns into the internal-error answer)."""
        try:
            return super()._getaddr(arg)
        except (IndexError, ValueError, TypeError):
            return None, None

    async def smtp_EXPN(self, arg: str) -> None:
        """Same answer for every argument (aiosmtpd has no EXPN hook); a named address is a probe."""
        if arg:
            try:
                address, _ = self._getaddr(arg)
            except (IndexError, ValueError):  # aiosmtpd's parser fails on e.g. a lone "<"
                address = None
            await self._source.pace(self, "expn")
            if address:
                self.note("expn", address)
        await self.push(EXPN_REPLY)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # called again after STARTTLS (by the TLS layer): the connection was admitted the first time
        if self._cap_key is None:
            peer = transport.get_extra_info("peername")
            address = peer[0] if isinstance(peer, (tuple, list)) and peer else None
            self._cap_key = self._source.caps.admit(address if isinstance(address, str) else None)
            if self._cap_key is None:  # before aiosmtpd sees it: no greeting, no session, no timer
                self._refused = True
                if isinstance(transport, asyncio.Transport):
                    transport.abort()
                else:
                    transport.close()
                return
        self._source.connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        if self._cap_key is not None:
            self._source.caps.release(self._cap_key)
            self._cap_key = None
        self._source.connections.discard(self)
        if self.session is not None and self.session.host_name:
            self.helo = self.session.host_name
        self._abandon(self.envelope)
        self.flush()
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
        return self.proxied_ip or self._peer_ip


class _Handler:
    """aiosmtpd hooks (discovered by their ``handle_`` names)."""

    def __init__(self, source: SmtpSource) -> None:
        self.src = source

    async def handle_PROXY(self, server: _SMTP, session: Session, envelope: Envelope, proxy_data: Any) -> bool:
        if not within(parse_address(server._peer_ip or ""), self.src.proxy_nets):
            # only our load balancers may say whom they forward: from anyone else the header is a forgery
            server.proxy_refusal = "untrusted_proxy_header"
            return False  # counted when the connection ends (server.proxy_ok stays False)
        if proxy_data is None or not proxy_data.valid:
            return False
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
        """One answer for every address in our domains, before and without any lookup (see the module)."""
        rt = self.src.runtime
        await self.src.pace(server, "rcpt")
        addr = mail_address(address)
        if addr is None:
            await rt.reject(NAME, "bad_recipient", f"malformed recipient {address[:100]!r}")
            return "553 5.1.3 Malformed recipient address"
        if not in_domains(address_domain(addr), self.src.config.mail_domains):
            await rt.reject(NAME, "relay_denied", f"{addr[:100]} from {server.client_ip}")
            return RELAY_DENIED
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        server.helo, server.sender = session.host_name or server.helo, envelope.mail_from or server.sender
        envelope.rcpt_tos.append(address)
        return RCPT_OK

    async def handle_VRFY(self, server: _SMTP, session: Session, envelope: Envelope, address: str) -> str:
        """``252`` for every address (RFC 5321 §3.5.3); an address of ours is a probe."""
        await self.src.pace(server, "vrfy")
        server.helo = session.host_name or server.helo
        server.note("vrfy", address)
        return VRFY_REPLY

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
        try:
            canaries = await src.canaries_of(envelope.rcpt_tos)
        except COMMIT_ERRORS:
            log.exception("smtp.lookup_failed", peer=ip)
            return "451 4.3.0 Temporary lookup failure, try again later"
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
        if canaries:
            try:
                events = await record_mail(src.runtime, facts, canaries, src.known, parsed)
            except COMMIT_ERRORS:
                log.exception("smtp.commit_failed", peer=ip)
                return "451 4.3.0 Temporary failure, try again later"
            log.info("smtp.contact", peer=ip, canaries=[c.id for c in canaries], spf=verdicts.spf,
                     dkim=verdicts.dkim, expected=bool(events and events[0].evidence.get("expected")))
        envelope.settled = True  # delivered (or discarded: no canary among the recipients)
        if parsed.malformed:
            await src.runtime.reject(NAME, "malformed_mime", f"{parsed.malformed} (peer {ip})")
            return f"554 5.6.0 Message is malformed: {parsed.malformed}"
        return "250 2.0.0 OK"

    async def handle_exception(self, error: Exception) -> str:
        # where it failed (code locations only: the message may hold what the peer sent)
        frames = traceback.extract_tb(error.__traceback__)[-3:]
        where = " < ".join(f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in reversed(frames))
        log.error("smtp.session_error", error=type(error).__name__, where=where)
        await self.src.runtime.reject(NAME, "internal_error", f"{type(error).__name__} at {where}"[:300])
        return "451 4.3.0 Internal error, try again later"


class SmtpSource:
    """Component: the SMTP server for the canary mail domains."""

    name = NAME

    def __init__(self, config: ContactConfig, *, resolver: Resolver | None = None) -> None:
        self.config = config
        self.resolver: Resolver = resolver or DnspythonResolver()
        self.known = KnownSenders(config.known_senders)
        self.proxy_nets = networks(config.proxy_from)
        self.caps = PeerConnections(config.smtp_max_connections_per_peer, self.proxy_nets, self._cap_refused)
        self.connections: set[_SMTP] = set()
        self.port: int | None = None
        self.tarpit = Tarpit(config.smtp_probe_limit, config.smtp_probe_window, config.smtp_tarpit_step,
                             config.smtp_tarpit_max, config.smtp_tarpit_peers, kinds=("rcpt", "vrfy", "expn"))
        self._server: asyncio.Server | None = None
        self._runtime: Any = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._lookups: asyncio.Semaphore | None = None
        self.reporter: BackgroundReporter | None = None
        self.pressure: PressureWatch | None = None  # an episode of cap refusals pages (HEALTH)

    @property
    def runtime(self) -> Any:
        return self._runtime

    # -- probes and the tarpit ----------------------------------------------------------------------
    def named(self, address: str) -> Iterator[str]:
        """The addresses of ours that an RCPT / VRFY / EXPN argument names: an address in a canary mail
        domain, or a bare local part (``VRFY minji.kim``) in each of them."""
        domains = self.config.mail_domains
        if "@" not in address:
            local = address.strip().lower()
            if local and len(local) <= 64 and not any(c.isspace() or c in "<>,;" for c in local):
                yield from (f"{local}@{d}" for d in domains)
            return
        addr = mail_address(address)
        if addr is not None and in_domains(address_domain(addr), domains):
            yield addr

    async def pace(self, server: _SMTP, kind: str) -> None:
        """Count one RCPT / VRFY / EXPN against the peer, report a flood once, wait if over the limit."""
        server.counts[kind] += 1
        pace = self.tarpit.count(server.client_ip, kind)
        if pace.crossed:
            log.warning("smtp.probe_flood", peer=pace.peer, counts=pace.counts)
            self.spawn(self._report_flood(pace, server.client_ip, server.helo or
                                          (server.session.host_name if server.session else None)))
        await self.tarpit.wait(pace)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settled(self) -> None:
        """Wait until every probe batch and flood report handed to the background is committed (or failed)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def canaries_of(self, recipients: list[str]) -> list[CanaryRecord]:
        """The canaries among an envelope's recipients (each looked up the same way, once)."""
        found: list[CanaryRecord] = []
        for addr in dict.fromkeys(a for a in (mail_address(r) for r in recipients) if a):
            c = await canary_for_address(self.runtime, addr, self.config.mail_domains)
            if c is not None and all(c.id != f.id for f in found):
                found.append(c)
        return found

    async def settle_probes(self, batch: list[tuple[str, str]], *, session: str, client_ip: str | None,
                            helo: str | None, sender: str | None, counts: dict[str, int]) -> None:
        """Look up the addresses one session named without delivering to them; commit a probe event
        for each canary among them. Failures are logged (peer only, never an address)."""
        rt = self.runtime
        assert self._lookups is not None
        try:
            async with self._lookups:
                cache: dict[str, CanaryRecord | None] = {}
                named: list[tuple[str, CanaryRecord]] = []
                for probe, addr in batch:
                    if addr not in cache:
                        cache[addr] = await canary_for_address(rt, addr, self.config.mail_domains)
                    c = cache[addr]
                    if c is not None and (probe, c) not in named:
                        named.append((probe, c))
                if named:
                    await record_probes(rt, source=NAME, session=session, peer=peer_key(client_ip),
                                        client_ip=client_ip, helo=helo, sender=sender, named=named, counts=counts)
                    log.info("smtp.probe", peer=client_ip, canaries=sorted({c.id for _, c in named}), counts=counts)
        except COMMIT_ERRORS:
            log.exception("smtp.probe_unrecorded", peer=client_ip, addresses=len(batch))

    def _cap_refused(self, peer: str) -> None:
        """A connection beyond the peer's allowance was closed: counted and sampled (best effort: a
        flood of refusals must not become a flood of tasks), and an episode of refusals pages (real
        mail from that peer's network may be going unheard)."""
        if self.pressure is not None:
            self.pressure.note("refused_peer_cap", peer)
        if self._runtime is not None and len(self._tasks) < 16:
            self.spawn(self._runtime.reject(NAME, "connection_cap", f"peer={peer}"))

    async def _report_flood(self, pace: Pace, client_ip: str | None, helo: str | None) -> None:
        try:
            await record_flood(self.runtime, source=NAME, peer=pace.peer, client_ip=client_ip, helo=helo,
                               window_start=pace.window_start, counts=pace.counts, limit=self.tarpit.limit,
                               window=self.tarpit.window)
        except COMMIT_ERRORS:
            log.exception("smtp.flood_unrecorded", peer=pace.peer)

    def routes(self) -> list[web.RouteDef]:
        return []

    async def start(self, runtime: SourceContext) -> None:
        self._runtime = runtime
        self._lookups = asyncio.Semaphore(PROBE_CONCURRENCY)
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
                ident=cfg.smtp_banner, tls_context=tls, require_starttls=cfg.require_starttls, timeout=SESSION_TIMEOUT,
                proxy_protocol_timeout=cfg.proxy_timeout if cfg.proxy_protocol else None, loop=loop,
            )

        self._server = await loop.create_server(factory, cfg.smtp_host, cfg.smtp_port)
        self.port = self._server.sockets[0].getsockname()[1]
        self.reporter = BackgroundReporter(runtime, NAME)
        self.pressure = PressureWatch(self.reporter, f"smtp:{self.port}", f"{cfg.smtp_host}:{self.port}",
                                      quiet=PRESSURE_QUIET, family="contact")
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
        await asyncio.sleep(0)  # closed connections hand their probes over in connection_lost
        await self.settled()  # bounded by the listener's shutdown grace
        if self.reporter is not None:
            await self.reporter.drain(timeout=5.0)


def _tls_context(cfg: ContactConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    assert cfg.tls_cert is not None and cfg.tls_key is not None
    ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
    return ctx


SOURCE = SourceType("smtp", lambda config: [SmtpSource(config.contact)] if config.contact.smtp else [],
                    suppress_rules=(expected_contact,))
