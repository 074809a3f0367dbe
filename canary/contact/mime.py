"""Mail as evidence: parse one RFC 5322 message into what the sender controls (subject, URLs,
attachment hashes, the claimed Received chain head), addresses and phone numbers in canonical form,
and redaction of the canary's own contact points.

Evidence never holds the canary's own address or number (the registry keeps those encrypted; the
event names the canary by id).
"""

from __future__ import annotations

import asyncio
import email.errors
import hashlib
import ipaddress
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import EmailPolicy
from email.utils import getaddresses, parseaddr
from typing import Any
from urllib.parse import quote, quote_plus

MAX_URLS = 50
MAX_ATTACHMENTS = 50
PREVIEW_CHARS = 280
#: Header values are parsed up to this many characters: the standard library's structured header
#: parser is quadratic in a value's length (a 700 KB subject of encoded words takes over a minute),
#: and RFC 5322 lines end at 998 characters anyway.
MAX_HEADER_CHARS = 8192
#: MIME parts read for evidence; a message whose body has more part boundaries than this is parsed
#: for its headers only (the parser itself is superlinear in the number of parts).
MAX_PARTS = 1000
#: To / Cc header fields read for recipients.
MAX_RECIPIENT_FIELDS = 20

_URL = re.compile(r"""(?i)\bhttps?://[^\s<>"'`]+""")
_URL_TRAIL = ".,;:!?)]}'\""
_BRACKET_IP = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
#: MIME defects that make a message (or a multipart form body) unusable.
FATAL_DEFECTS = (
    email.errors.MissingHeaderBodySeparatorDefect,
    email.errors.NoBoundaryInMultipartDefect,
    email.errors.StartBoundaryNotFoundDefect,
    email.errors.MultipartInvariantViolationDefect,
    email.errors.FirstHeaderLineIsContinuationDefect,
)


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


class _BoundedPolicy(EmailPolicy):
    """``policy.default`` parsing at most :data:`MAX_HEADER_CHARS` of each header value it is asked for
    (cut after the last comma before the limit, so an address list keeps whole addresses)."""

    def header_fetch_parse(self, name: str, value: str) -> Any:
        return super().header_fetch_parse(name, _bounded(value) if isinstance(value, str) else value)


def _bounded(value: str) -> str:
    if len(value) <= MAX_HEADER_CHARS:
        return value
    cut = value.rfind(",", 0, MAX_HEADER_CHARS)
    return value[:cut if cut > 0 else MAX_HEADER_CHARS]


_POLICY = _BoundedPolicy()


def parse_mail(raw: bytes) -> ParsedMail:
    """Parse one RFC 5322 message into evidence. Never raises: problems end up in ``malformed``.
    The work is bounded whatever the message holds (header lengths, part count, nesting depth)."""
    if b"\x00" in raw:
        return ParsedMail(malformed="message contains NUL bytes")
    defects: list[str] = []
    fatal: str | None = None
    try:
        too_many_parts = raw.count(b"\n--") > MAX_PARTS
        msg = BytesParser(policy=_POLICY).parsebytes(raw, headersonly=too_many_parts)
        assert isinstance(msg, EmailMessage)
        if not msg.keys():
            return ParsedMail(malformed="message has no header fields")
        if too_many_parts:
            defects.append("TooManyParts")
        parts = list(itertools.islice(msg.walk(), MAX_PARTS)) if not too_many_parts else [msg]
        for part in parts:
            for d in part.defects:
                defects.append(type(d).__name__)
                if fatal is None and isinstance(d, FATAL_DEFECTS):
                    fatal = f"MIME structure is broken ({type(d).__name__})"
        subject = str(msg.get("subject", "") or "")
        from_addr = parseaddr(str(msg.get("from", "") or ""))[1] or None
        message_id = str(msg.get("message-id", "") or "").strip() or None
        date = str(msg.get("date", "") or "") or None
        fields = [_bounded(str(v)) for k, v in itertools.islice(
            ((k, v) for k, v in msg.raw_items() if k.lower() in ("to", "cc")), MAX_RECIPIENT_FIELDS)]
        recipients = tuple(a.lower() for _, a in getaddresses(fields) if "@" in a)
        received_count = sum(1 for k in msg if k.lower() == "received")
        received_top = msg.get("received")
        urls: list[str] = extract_urls(subject)
        attachments: list[Attachment] = []
        preview = ""
        for part in parts:
            if part.is_multipart() or (too_many_parts and part is msg):
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
    except RecursionError:  # the parsers recurse once per level of MIME / message/rfc822 nesting
        return ParsedMail(malformed="MIME nesting is too deep", defects=tuple(defects[:20]))
    except (ValueError, TypeError, IndexError, LookupError, email.errors.MessageError) as exc:
        return ParsedMail(malformed=f"unparseable header or part ({type(exc).__name__})", defects=tuple(defects[:20]))
    return ParsedMail(
        message_id=message_id, subject=subject[:998], from_addr=from_addr, date=date, urls=tuple(urls[:MAX_URLS]),
        attachments=tuple(attachments), received_top=" ".join(str(received_top).split())[:998] if received_top else None,
        received_count=received_count, recipients=recipients, preview=preview, defects=tuple(defects[:20]),
        malformed=fatal,
    )


async def parse_mail_async(raw: bytes) -> ParsedMail:
    """Parse in a worker thread for large messages so the loop keeps answering."""
    return parse_mail(raw) if len(raw) < 64 * 1024 else await asyncio.to_thread(parse_mail, raw)


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


def domain_key(domain: str) -> str:
    """A domain as compared: lower case, no root dot, internationalised labels as their A-labels
    (``xn--…``, RFC 5890), so ``메일.test`` and ``XN--H32BQ4V.TEST.`` are one domain: a sender's MTA
    without SMTPUTF8 writes a Unicode domain in its A-label form, and the MX must know it as its own.
    Text the IDNA codec refuses (an empty or over-long label) is compared as it is."""
    domain = domain.lower().rstrip(".")
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def in_domains(domain: str, domains: Iterable[str]) -> bool:
    key = domain_key(domain)
    return any(key == k or key.endswith("." + k) for k in map(domain_key, domains))


def mailbox(address: str, domains: Iterable[str]) -> str:
    """The spelling under which the mailbox an address names is registered: a quoted local part by
    its content (RFC 5322 §3.2.4; ``"minji.kim"@`` is ``minji.kim@``) and the domain as configured in
    ``domains`` when it is one of them in another spelling (A-label, root dot, capitals)."""
    local, _, domain = address.rpartition("@")
    if len(local) >= 2 and local[0] == local[-1] == '"':
        local = local[1:-1]
    key = domain_key(domain)
    domain = next((d for d in domains if domain_key(d) == key), domain.lower().rstrip("."))
    return f"{local}@{domain}"


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
    out = {point, quote(point, safe=""), quote_plus(point)}
    if point.startswith("+"):
        out.add(point[1:])
    if "@" in point:
        local, _, domain = point.rpartition("@")
        if len(local) >= 2 and local[0] == local[-1] == '"':
            out |= _variants(f"{local[1:-1]}@{domain}")
        if "+" in local:
            out |= _variants(f"{local.split('+', 1)[0]}@{domain}")
        labels = domain_key(domain)
        if labels != domain.lower():  # the other IDNA spelling of the domain (A-label / Unicode)
            out.add(f"{local}@{labels}")
        elif "xn--" in labels:
            try:
                out.add(f"{local}@{labels.encode('ascii').decode('idna')}")
            except UnicodeError:
                pass
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
