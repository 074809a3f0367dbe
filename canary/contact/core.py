"""Contact detection shared by the mail and phone sources: MIME -> evidence, SPF/DKIM verdicts,
known-sender rules, encrypted raw evidence, a shared replay cache and event construction.

Evidence never holds the canary's own address or number (the registry keeps those encrypted; the
event names the canary by id). It holds what the sender controls: subject, URLs, attachment
hashes, the claimed Received chain head, verdicts, the sender and the peer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.errors
import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from typing import Any, Protocol

import asyncpg
import dkim
import spf
import structlog
from aiohttp import web

from canary.config import KnownSenderRule
from canary.errors import ParseError, SignatureError
from canary.events import DetectionEvent, EventKind, Severity, event_key
from canary.store.registry import CanaryRecord
from canary.typing import SourceContext

log = structlog.get_logger("canary.contact")

MAIL_EVIDENCE = "evidence:mail"
MAX_URLS = 50
MAX_ATTACHMENTS = 50
PREVIEW_CHARS = 280
#: Failures of the control store while committing: the input is not acknowledged (4xx/5xx, retry).
COMMIT_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, RuntimeError, asyncio.TimeoutError)

_URL = re.compile(r"""(?i)\bhttps?://[^\s<>"'`]+""")
_URL_TRAIL = ".,;:!?)]}'\""
_BRACKET_IP = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_FATAL_DEFECTS = (
    email.errors.MissingHeaderBodySeparatorDefect,
    email.errors.NoBoundaryInMultipartDefect,
    email.errors.StartBoundaryNotFoundDefect,
    email.errors.MultipartInvariantViolationDefect,
    email.errors.FirstHeaderLineIsContinuationDefect,
)


# -- MIME -> evidence ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str | None
    content_type: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {"filename": self.filename, "content_type": self.content_type, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True, slots=True)
class ParsedMail:
    """What one message says about its sender. ``malformed`` names why it is not a valid message."""

    message_id: str | None = None
    subject: str = ""
    from_addr: str | None = None
    date: str | None = None
    urls: tuple[str, ...] = ()
    attachments: tuple[Attachment, ...] = ()
    received_top: str | None = None
    received_count: int = 0
    recipients: tuple[str, ...] = ()  # To/Cc addresses (used to route webhooks, never put in evidence)
    preview: str = ""
    defects: tuple[str, ...] = ()
    malformed: str | None = None

    def evidence(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "subject": self.subject,
            "from": self.from_addr,
            "date": self.date,
            "urls": list(self.urls),
            "attachments": [a.to_json() for a in self.attachments],
            "received_claimed": self.received_top,
            "received_count": self.received_count,
            "preview": self.preview,
            "mime_defects": list(self.defects),
        }


def extract_urls(text: str, limit: int = MAX_URLS) -> list[str]:
    """http(s) URLs in order of appearance, de-duplicated, trailing punctuation stripped."""
    out: list[str] = []
    for m in _URL.finditer(text):
        url = m.group(0).rstrip(_URL_TRAIL)
        if url not in out:
            out.append(url)
            if len(out) >= limit:
                break
    return out


def _text_of(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):  # unknown charset or broken transfer encoding
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


def parse_mail(raw: bytes) -> ParsedMail:
    """Parse one RFC 5322 message into evidence. Never raises: problems end up in ``malformed``."""
    if b"\x00" in raw:
        return ParsedMail(malformed="message contains NUL bytes")
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    if not msg.keys():
        return ParsedMail(malformed="message has no header fields")
    defects: list[str] = []
    fatal: str | None = None
    try:
        parts = list(msg.walk())
        for part in parts:
            for d in part.defects:
                defects.append(type(d).__name__)
                if fatal is None and isinstance(d, _FATAL_DEFECTS):
                    fatal = f"MIME structure is broken ({type(d).__name__})"
        subject = str(msg.get("subject", "") or "")
        from_addr = parseaddr(str(msg.get("from", "") or ""))[1] or None
        message_id = str(msg.get("message-id", "") or "").strip() or None
        date = str(msg.get("date", "") or "") or None
        recipients = tuple(
            a.lower() for _, a in getaddresses([str(v) for k in ("to", "cc") for v in msg.get_all(k, [])]) if "@" in a
        )
        received = msg.get_all("received", [])
        urls: list[str] = extract_urls(subject)
        attachments: list[Attachment] = []
        preview = ""
        for part in parts:
            if part.is_multipart():
                continue
            ctype = part.get_content_type()
            if part.get_content_maintype() == "text" and not part.is_attachment():
                text = _text_of(part)
                if not preview and ctype == "text/plain":
                    preview = " ".join(text.split())[:PREVIEW_CHARS]
                for u in extract_urls(text, MAX_URLS - len(urls)):
                    if u not in urls:
                        urls.append(u)
            elif len(attachments) < MAX_ATTACHMENTS:
                payload = part.get_payload(decode=True)
                data = payload if isinstance(payload, bytes) else b""
                attachments.append(Attachment(part.get_filename(), ctype, len(data), hashlib.sha256(data).hexdigest()))
    except (ValueError, TypeError, IndexError, LookupError, email.errors.MessageError) as exc:
        return ParsedMail(malformed=f"unparseable header or part ({type(exc).__name__})", defects=tuple(defects))
    return ParsedMail(
        message_id=message_id, subject=subject[:998], from_addr=from_addr, date=date, urls=tuple(urls[:MAX_URLS]),
        attachments=tuple(attachments), received_top=" ".join(str(received[0]).split())[:998] if received else None,
        received_count=len(received), recipients=recipients, preview=preview, defects=tuple(defects[:20]),
        malformed=fatal,
    )


def received_ip(header: str | None) -> str | None:
    """The connecting IP a Received header records (``from host ([192.0.2.1])``), if it holds one."""
    if not header:
        return None
    for m in _BRACKET_IP.finditer(header):
        try:
            return str(ipaddress.ip_address(m.group(1)))
        except ValueError:
            continue
    return None


def mail_address(value: str) -> str | None:
    """``<Local@Example.test>`` -> ``local@example.test``; None when it is not an address."""
    addr = parseaddr(value)[1].strip().lower()
    if addr.count("@") != 1 or not all(addr.split("@")):
        return None
    return addr


def address_domain(address: str) -> str:
    return address.rsplit("@", 1)[-1].lower()


def in_domains(domain: str, domains: Iterable[str]) -> bool:
    domain = domain.lower().rstrip(".")
    return any(domain == d or domain.endswith("." + d) for d in domains)


def normalize_phone(number: str | None) -> str | None:
    """E.164 from what providers send (``+14155550100``, ``14155550100``, ``+1 (415) 555-0100``)."""
    if not number:
        return None
    digits = re.sub(r"[\s().-]", "", number)
    if not digits.startswith("+"):
        digits = "+" + digits.lstrip("0")
    return digits if _E164.match(digits) else None


REDACTED = "[canary]"


def _variants(point: str) -> set[str]:
    from urllib.parse import quote, quote_plus

    out = {point, quote(point, safe=""), quote_plus(point)}
    if point.startswith("+"):
        out.add(point[1:])
    if "@" in point:
        local, _, domain = point.partition("@")
        if "+" in local:
            out |= _variants(f"{local.split('+', 1)[0]}@{domain}")
    return {v for v in out if len(v) >= 6}


def redact(value: Any, points: Iterable[str]) -> Any:
    """Replace the canary's own contact points in evidence (plain, URL-encoded, case-insensitive):
    the registry keeps them encrypted, so events must not spell them out."""
    needles = sorted({v for p in points if p for v in _variants(p)}, key=len, reverse=True)
    if not needles:
        return value
    pattern = re.compile("|".join(re.escape(n) for n in needles), re.IGNORECASE)

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return pattern.sub(REDACTED, v)
        if isinstance(v, list):
            return [walk(x) for x in v]
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        return v

    return walk(value)


# -- SPF / DKIM --------------------------------------------------------------------------------
class Resolver(Protocol):
    """Blocking DNS lookups (run in a worker thread). Values: TXT -> tuples of byte strings,
    A/AAAA/PTR -> strings, MX -> (preference, exchange). Raises TimeoutError on temporary failure."""

    def lookup(self, name: str, qtype: str, timeout: float) -> list[Any]: ...


class DnspythonResolver:
    """The system resolver through dnspython."""

    def lookup(self, name: str, qtype: str, timeout: float) -> list[Any]:
        import dns.exception
        import dns.resolver

        try:
            answer = dns.resolver.resolve(name, qtype, lifetime=timeout, raise_on_no_answer=False, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.NoResolverConfiguration) as exc:
            raise TimeoutError(f"DNS {qtype} {name}: {type(exc).__name__}") from None
        out: list[Any] = []
        for rdata in answer.rrset or ():
            if qtype in ("A", "AAAA"):
                out.append(rdata.address)
            elif qtype == "MX":
                out.append((rdata.preference, rdata.exchange.to_text(True)))
            elif qtype == "PTR":
                out.append(rdata.target.to_text(True))
            elif qtype == "TXT":
                out.append(tuple(rdata.strings))
        return out


@dataclass(frozen=True, slots=True)
class Verdicts:
    spf: str = "none"
    spf_reason: str = ""
    dkim: str = "none"
    dkim_domain: str | None = None
    by: str = "canary"  # who computed them: canary, or the provider that received the mail

    def to_json(self) -> dict[str, Any]:
        return {"spf": self.spf, "spf_reason": self.spf_reason[:200], "dkim": self.dkim,
                "dkim_domain": self.dkim_domain, "verdicts_by": self.by}


class _SpfQuery(spf.query):  # type: ignore[misc]
    """pyspf with lookups through an injected resolver (pyspf's own DNS layer is module-global)."""

    def __init__(self, resolver: Resolver, **kw: Any) -> None:
        self._resolver = resolver
        self._answers: dict[tuple[str, str], list[Any]] = {}
        super().__init__(**kw)

    def dns(self, name: str, qtype: str, cnames: Any = None, ignore_void: bool = False) -> list[Any]:
        if not name:
            raise spf.PermError("empty DNS name")
        name = str(name).rstrip(".").lower()
        if not all(0 < len(label) < 64 for label in name.split(".")):
            return []
        key = (name, qtype)
        if key in self._answers:
            result = self._answers[key]
        else:
            try:
                result = self._resolver.lookup(name, qtype, self.timeout)
            except TimeoutError as exc:
                raise spf.TempError(str(exc)) from None
            self._answers[key] = result
        if not result and not ignore_void:
            self.void_lookups += 1
            if self.void_lookups > spf.MAX_VOID_LOOKUPS:
                raise spf.PermError(f"void lookup limit of {spf.MAX_VOID_LOOKUPS} exceeded")
        return result


def check_spf(resolver: Resolver, ip: str, mail_from: str, helo: str, timeout: float) -> tuple[str, str]:
    """SPF (RFC 7208) result and explanation for a client IP, envelope sender and HELO. Blocking."""
    q = _SpfQuery(resolver, i=ip, s=mail_from or f"postmaster@{helo}", h=helo or "unknown", timeout=timeout,
                   querytime=timeout)
    result, _code, explanation = q.check()
    return str(result), str(explanation)


_DKIM_D = re.compile(rb"(?:^|;)\s*d\s*=\s*([^;\s]+)")


def check_dkim(resolver: Resolver, raw: bytes, timeout: float) -> tuple[str, str | None]:
    """DKIM (RFC 6376) verdict of the first signature and its signing domain. Blocking."""
    msg = BytesParser(policy=policy.compat32).parsebytes(raw, headersonly=True)
    sig = msg.get("DKIM-Signature")
    if sig is None:
        return "none", None
    m = _DKIM_D.search(re.sub(rb"\s+", b"", str(sig).encode("utf-8", "replace")))
    domain = m.group(1).decode("ascii", "replace").lower() if m else None

    def dnsfunc(name: bytes, timeout: float = timeout) -> bytes | None:
        try:
            records = resolver.lookup(name.decode("ascii").rstrip("."), "TXT", timeout)
        except TimeoutError as exc:
            raise dkim.DnsTimeoutError(str(exc)) from None
        return b"".join(records[0]) if records else None

    try:
        ok = dkim.DKIM(raw, timeout=int(max(timeout, 1))).verify(dnsfunc=dnsfunc)
    except dkim.DnsTimeoutError:
        return "temperror", domain
    except dkim.ValidationError as exc:  # RFC 8601: a body that no longer matches its hash is a fail
        return ("fail" if "body hash mismatch" in str(exc) else "permerror"), domain
    except (dkim.DKIMException, ValueError, IndexError, KeyError):
        return "permerror", domain
    return ("pass" if ok else "fail"), domain


async def mail_verdicts(
    resolver: Resolver, raw: bytes, *, client_ip: str | None, mail_from: str, helo: str, timeout: float
) -> Verdicts:
    """SPF and DKIM in worker threads, each bounded by ``timeout`` (``temperror`` when it runs out)."""

    async def bounded(fn: Callable[..., Any], *args: Any, default: Any) -> Any:
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn, *args), timeout + 0.5)
        except asyncio.TimeoutError:
            return default

    dkim_task = bounded(check_dkim, resolver, raw, timeout, default=("temperror", None))
    if client_ip:
        spf_task = bounded(check_spf, resolver, client_ip, mail_from, helo, timeout, default=("temperror", "timed out"))
        (spf_result, spf_reason), (dkim_result, domain) = await asyncio.gather(spf_task, dkim_task)
    else:
        (dkim_result, domain), spf_result, spf_reason = await dkim_task, "none", "no client address"
    return Verdicts(spf=spf_result, spf_reason=spf_reason, dkim=dkim_result, dkim_domain=domain)


# -- known senders ----------------------------------------------------------------------------------
class KnownSenders:
    """Configurable rules marking expected contacts. An e-mail sender only matches when its domain is
    authenticated (SPF pass for the envelope domain or DKIM pass for the domain): a forged From of
    the company's own domain still pages. Caller numbers are taken as presented by the carrier."""

    def __init__(self, rules: Sequence[KnownSenderRule]) -> None:
        self.rules = list(rules)
        self._nets = {r.name: [ipaddress.ip_network(n, strict=False) for n in r.networks] for r in self.rules}

    @staticmethod
    def _sender_matches(pattern: str, sender: str) -> bool:
        pattern = pattern.lower()
        if pattern.startswith("@"):
            return in_domains(address_domain(sender), [pattern[1:]])
        return sender == pattern

    def match_mail(self, sender: str | None, ip: str | None, verdicts: Verdicts, spf_domain: str | None = None) -> str | None:
        """The rule that marks this mail expected. ``spf_domain`` is the identity SPF checked (the
        envelope sender's domain, or the HELO name for a bounce); default: the sender's domain."""
        authenticated: set[str] = set()
        if verdicts.spf == "pass" and (spf_domain or sender):
            authenticated.add((spf_domain or address_domain(sender or "")).lower())
        if verdicts.dkim == "pass" and verdicts.dkim_domain:
            authenticated.add(verdicts.dkim_domain)
        addr = ipaddress.ip_address(ip) if ip else None
        for rule in self.rules:
            if addr is not None and any(addr in n for n in self._nets[rule.name]):
                return rule.name
            if sender and any(self._sender_matches(p, sender) for p in rule.senders):
                if any(in_domains(address_domain(sender), [d]) or in_domains(d, [address_domain(sender)])
                       for d in authenticated):
                    return rule.name
        return None

    def match_caller(self, caller: str | None) -> str | None:
        if not caller:
            return None
        for rule in self.rules:
            for p in rule.callers:
                if (p.endswith("*") and caller.startswith(p[:-1])) or caller == p:
                    return rule.name
        return None


def expected_contact(event: DetectionEvent) -> str | None:
    """Suppression rule for the pipeline: contacts marked expected by a known-sender rule do not page."""
    if event.kind is EventKind.CONTACTED and event.evidence.get("expected") is True:
        rule = event.evidence.get("known_sender_rule")
        return f"known-sender:{rule}" if rule else "known-sender"
    return None


#: One-statement prefix: this statement's (implicit) transaction commits without waiting for its
#: WAL flush. Used for rows that an acknowledged, synchronously committed event always follows.
_ASYNC_COMMIT = "WITH cfg AS (SELECT set_config('synchronous_commit', 'off', true))"


# -- storage ----------------------------------------------------------------------------------------
async def store_raw(runtime: SourceContext, source: str, raw: bytes) -> int:
    """Keep the raw message encrypted; returns its id (a redelivered message keeps its first id).

    Committed without waiting for the WAL flush: the caller always commits the events that reference
    it synchronously before acknowledging, and that flush covers this earlier WAL record too, so the
    evidence is durable whenever the acknowledgement is, at one fsync per message instead of two."""
    digest = hashlib.sha256(raw).digest()
    blob = runtime.keyring.encrypt(raw, MAIL_EVIDENCE)
    row_id: int = await runtime.pool.fetchval(
        f"""
        {_ASYNC_COMMIT}
        INSERT INTO contact_messages (source, digest, raw_enc, size, key_id)
        SELECT $1, $2, $3, $4, $5 FROM cfg
        ON CONFLICT (digest) DO UPDATE SET digest = EXCLUDED.digest
        RETURNING id
        """,
        source, digest, blob, len(raw), runtime.keyring.key_id,
    )
    return row_id


async def load_raw(runtime: SourceContext, evidence_id: int) -> bytes | None:
    blob = await runtime.pool.fetchval("SELECT raw_enc FROM contact_messages WHERE id = $1", evidence_id)
    return runtime.keyring.decrypt(blob, MAIL_EVIDENCE) if blob is not None else None


@dataclass
class ReplayCache:
    """Seen provider tokens/nonces in the control store, shared by every listener, expiring."""

    provider: str
    ttl: float
    purge_every: int = 500
    _count: int = field(default=0, init=False)

    async def first_use(self, pool: asyncpg.Pool, token: str) -> bool:
        """True the first time ``token`` is presented within the TTL, False for a replay."""
        self._count += 1
        if self._count % self.purge_every == 0:
            await pool.execute("DELETE FROM contact_replay WHERE expires_at < now()")
        # no WAL flush wait: the event commit that follows flushes it; a token lost in a crash before
        # that commit belongs to a request that was not acknowledged (and events are idempotent)
        row = await pool.fetchval(
            f"""
            {_ASYNC_COMMIT}
            INSERT INTO contact_replay (provider, token, expires_at)
            SELECT $1, $2, now() + make_interval(secs => $3) FROM cfg
            ON CONFLICT (provider, token) DO UPDATE SET expires_at = EXCLUDED.expires_at
                WHERE contact_replay.expires_at < now()
            RETURNING 1
            """,
            self.provider, token[:200], self.ttl,
        )
        return row is not None

    async def forget(self, pool: asyncpg.Pool, token: str) -> None:
        """Drop a token whose request was not committed, so the provider's retry is accepted."""
        await pool.execute("DELETE FROM contact_replay WHERE provider = $1 AND token = $2", self.provider, token[:200])


# -- recipients ---------------------------------------------------------------------------------------
async def canary_for_address(runtime: SourceContext, address: str, domains: Sequence[str]) -> CanaryRecord | None:
    """The canary owning an address in a canary mail domain (``local+tag@`` also matches ``local@``)."""
    if not in_domains(address_domain(address), domains):
        return None
    found = await runtime.registry.by_value("email", address)
    if found is None:
        local, _, domain = address.partition("@")
        if "+" in local:
            found = await runtime.registry.by_value("email", f"{local.split('+', 1)[0]}@{domain}")
    return found


# -- events -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class MailFacts:
    """What a mail source knows about one delivery, beyond the message itself."""

    source: str
    raw: bytes
    mail_from: str  # envelope sender ("" for a bounce)
    client_ip: str | None
    helo: str | None
    verdicts: Verdicts
    provider_id: str | None = None  # provider's message id (webhooks)
    received: str | None = None  # the trusted hop: our own Received line, or the provider's topmost
    extra: Mapping[str, Any] = field(default_factory=dict)
    contact_points: Sequence[str] = ()  # the canary recipients' addresses: redacted from the evidence


async def parse_mail_async(raw: bytes) -> ParsedMail:
    """Parse in a worker thread for large messages so the loop keeps answering."""
    return parse_mail(raw) if len(raw) < 64 * 1024 else await asyncio.to_thread(parse_mail, raw)


async def record_mail(
    runtime: SourceContext, facts: MailFacts, canaries: Sequence[CanaryRecord], known: KnownSenders,
    parsed: ParsedMail | None = None,
) -> list[DetectionEvent]:
    """Store the raw message (encrypted) and commit one event per canary recipient. Returns after commit."""
    parsed = parsed or await parse_mail_async(facts.raw)
    evidence_id = await store_raw(runtime, facts.source, facts.raw)
    sender = mail_address(facts.mail_from) or parsed.from_addr or "<>"
    envelope = mail_address(facts.mail_from)
    rule = known.match_mail(envelope or parsed.from_addr, facts.client_ip, facts.verdicts,
                            spf_domain=address_domain(envelope) if envelope else (facts.helo or "").lower() or None)
    ident = facts.provider_id or parsed.message_id or hashlib.sha256(facts.raw).hexdigest()
    now = dt.datetime.now(dt.timezone.utc)
    evidence: dict[str, Any] = {
        **parsed.evidence(), **facts.verdicts.to_json(), "received": facts.received, "raw_evidence_id": evidence_id,
        "size": len(facts.raw), "provider_id": facts.provider_id, **facts.extra,
    }
    if parsed.malformed:
        evidence["malformed"] = parsed.malformed
    if rule:
        evidence.update(expected=True, known_sender_rule=rule)
    evidence = redact(evidence, facts.contact_points)
    events = [
        DetectionEvent(
            kind=EventKind.CONTACTED, source=facts.source, key=event_key("mail", ident, c.id), group=f"mail:{sender}",
            canary_id=c.id, observed_at=now,
            actor={"sender": sender, "from": parsed.from_addr},
            origin={"client_addr": facts.client_ip, "helo": facts.helo},
            evidence=evidence, severity=Severity.INFO if rule else Severity.CRITICAL,
        )
        for c in canaries
    ]
    await asyncio.gather(*(runtime.submit(e) for e in events))
    return events


async def record_phone(
    runtime: SourceContext, *, source: str, channel: str, canary: CanaryRecord, caller: str | None, ident: str,
    known: KnownSenders, country: str | None = None, text: str | None = None, call_status: str | None = None,
    recording_url: str | None = None, extra: Mapping[str, Any] | None = None, contact_point: str | None = None,
) -> DetectionEvent:
    """Commit one SMS / call event (returns after commit). ``contact_point`` (the canary number) is
    redacted from the evidence."""
    rule = known.match_caller(caller)
    evidence: dict[str, Any] = {
        "channel": channel, "provider_id": ident, "text": text, "call_status": call_status,
        "recording_url": recording_url, **(extra or {}),
    }
    evidence = {k: v for k, v in evidence.items() if v not in (None, "")}
    if rule:
        evidence.update(expected=True, known_sender_rule=rule)
    evidence = redact(evidence, [contact_point] if contact_point else [])
    event = DetectionEvent(
        kind=EventKind.CONTACTED, source=source, key=event_key(source, channel, ident, canary.id),
        group=f"phone:{caller or 'unknown'}", canary_id=canary.id, observed_at=dt.datetime.now(dt.timezone.utc),
        actor={"caller": caller}, origin={"country": country} if country else {}, evidence=evidence,
        severity=Severity.INFO if rule else Severity.CRITICAL,
    )
    await runtime.submit(event)
    return event


# -- HTTP answers -----------------------------------------------------------------------------------
def counted(runtime: SourceContext, component: str, response: web.Response) -> web.Response:
    runtime.metrics.requests.labels(component=component, code=str(response.status)).inc()
    return response


async def refuse(
    runtime: SourceContext, component: str, status: int, reason: str, detail: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Count and keep a rejected webhook request; answer it with ``status`` and a short reason."""
    await runtime.reject(component, reason, detail)
    return counted(runtime, component, web.Response(status=status, text=f"{reason}\n", headers=headers))




# -- webhook bodies ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FormFile:
    field: str
    filename: str | None
    content_type: str
    data: bytes


class BodyTooLarge(Exception):
    """The request body exceeded the configured limit (answered 413)."""


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The raw body, refusing more than ``limit`` bytes (independent of the app's client_max_size)."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(f"declared body of {request.content_length} bytes exceeds {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_form(content_type: str, body: bytes) -> tuple[list[tuple[str, str]], list[FormFile]]:
    """Fields (in order, repeats kept) and files of an urlencoded or multipart/form-data body.
    Raises ValueError when the body does not match its declared type."""
    from urllib.parse import parse_qsl

    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        return parse_qsl(body.decode("utf-8", "strict"), keep_blank_values=True, strict_parsing=bool(body)), []
    if ctype != "multipart/form-data":
        raise ValueError(f"unsupported content type {ctype or '(none)'}")
    msg = BytesParser(policy=policy.HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not msg.is_multipart() or any(isinstance(d, _FATAL_DEFECTS) for d in msg.defects):
        raise ValueError("multipart body is malformed")
    fields: list[tuple[str, str]] = []
    files: list[FormFile] = []
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise ValueError("multipart part without a field name")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            files.append(FormFile(name, filename, part.get_content_type(), data))
        else:
            charset = part.get_content_charset() or "utf-8"
            try:
                fields.append((name, data.decode(charset, "replace")))
            except LookupError:
                fields.append((name, data.decode("utf-8", "replace")))
    return fields, files


def fresh(timestamp: str | float | None, max_age: float, now: float | None = None) -> bool:
    """True when a provider timestamp (unix seconds) is within ``max_age`` of now (either side)."""
    import time

    try:
        ts = float(timestamp)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return abs((now if now is not None else time.time()) - ts) <= max_age


#: Request errors that are answered (and counted) rather than raised.
REFUSED = (BodyTooLarge, SignatureError, ParseError)


async def refusal(runtime: SourceContext, component: str, exc: Exception, signature_status: int = 403) -> web.Response:
    """Answer one of :data:`REFUSED`: 413 too big, ``signature_status`` (or the error's own status)
    for authentication failures by reason, 400 for malformed bodies."""
    if isinstance(exc, BodyTooLarge):
        return await refuse(runtime, component, 413, "too_big", str(exc))
    if isinstance(exc, SignatureError):
        status = exc.fields.get("status", signature_status)
        return await refuse(runtime, component, int(status) if isinstance(status, int) else signature_status,
                            str(exc.fields.get("reason", "bad_signature")), exc.message)
    if isinstance(exc, ParseError):
        return await refuse(runtime, component, 400, "malformed", exc.message)
    raise exc
