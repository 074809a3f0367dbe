"""Inbound-mail webhooks for teams that do not run their own MX: SendGrid Inbound Parse, Mailgun
routes and Amazon SES receipt notifications delivered by SNS.

Every request is authenticated before anything else is looked at, then its recipients are matched
against canary addresses and each canary recipient becomes a committed event; only then is 2xx
returned (a store failure answers 503 so the provider retries).

* SendGrid: ECDSA P-256/SHA-256 signature of ``timestamp + body`` in the
  ``X-Twilio-Email-Event-Webhook-Signature``/``-Timestamp`` headers (parse security policy), and/or
  HTTP Basic credentials embedded in the parse URL.
* Mailgun: ``signature`` = hex HMAC-SHA256(signing key, ``timestamp + token``); stale timestamps are
  refused and tokens are remembered in the control store (shared by listeners) so a replay fails.
* SES/SNS: RSA signature (SignatureVersion 1 = SHA1, 2 = SHA256) over the canonical string; the
  certificate is fetched only from ``https://sns.<region>.amazonaws.com/`` (any other host is
  refused before a request is made) and cached; topics must be on the allow-list; subscription
  confirmations are confirmed by GET to an SNS SubscribeURL.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import structlog
from aiohttp import web
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from canary.config import Config, ContactConfig
from canary.contact.evidence import COMMIT_ERRORS, MailFacts, ReplayCache, canary_for_address, record_mail
from canary.contact.http import REFUSED, counted, fresh, parse_form, read_limited, refusal, refuse
from canary.contact.mime import Attachment, extract_urls, mail_address, parse_mail_async, received_ip
from canary.contact.senders import KnownSenders, expected_contact
from canary.contact.verdicts import Verdicts
from canary.crypto import same
from canary.errors import ConfigError, ParseError, SignatureError
from canary.plugins import SourceType
from canary.store.registry import CanaryRecord
from canary.typing import Component, SourceContext

log = structlog.get_logger("canary.sources.mail_webhooks")

SNS_HOST = re.compile(r"^sns\.[a-z]{2}(?:-[a-z]+)+-\d\.amazonaws\.com(?:\.cn)?$")
CERT_TIMEOUT = 5.0
CERT_CACHE_MAX = 32


def _sig_error(reason: str, message: str, status: int = 403) -> SignatureError:
    return SignatureError(message, reason=reason, status=status)


@dataclasses.dataclass(frozen=True, slots=True)
class Delivery:
    """One inbound message as a provider describes it."""

    raw: bytes
    recipients: Sequence[str]
    mail_from: str
    client_ip: str | None
    verdicts: Verdicts
    provider_id: str | None = None
    helo: str | None = None
    html: str = ""
    files: Sequence[Attachment] = ()
    replay_token: str | None = None


def _top_received(raw_headers: bytes | str) -> str | None:
    """The topmost Received header of a header block: added by the provider's MX, so trusted."""
    from email import policy
    from email.parser import BytesParser

    data = raw_headers.encode("utf-8", "replace") if isinstance(raw_headers, str) else raw_headers
    msg = BytesParser(policy=policy.compat32).parsebytes(data, headersonly=True)
    value = msg.get("Received")
    return " ".join(str(value).split()) if value else None


class _MailWebhook(ABC):
    """Shared request handling: size limit, authentication, recipients, commit, answer."""

    name = ""
    path = ""
    unknown_recipient_status = 200  # what tells this provider "delivered, nothing to do"

    def __init__(self, config: ContactConfig) -> None:
        self.config = config
        self.known = KnownSenders(config.known_senders)
        self._rt: SourceContext  # set by start()

    def routes(self) -> list[web.RouteDef]:
        return [web.post(self.path, self._handle)]

    async def start(self, runtime: SourceContext) -> None:
        self._rt = runtime

    async def stop(self) -> None:
        return None

    @abstractmethod
    async def parse(self, request: web.Request, body: bytes) -> Delivery | web.Response:
        """Authenticate and parse one request (raise SignatureError / ParseError), or answer it directly."""

    async def _forget(self, delivery: Delivery) -> None:
        return None

    async def _handle(self, request: web.Request) -> web.Response:
        rt = self._rt
        try:
            body = await read_limited(request, 2 * self.config.max_message_size, rt.config.listener.body_timeout)
            delivery = await self.parse(request, body)
        except REFUSED as exc:
            return await refusal(rt, self.name, exc)
        except COMMIT_ERRORS:
            log.exception("webhook.replay_cache_failed", source=self.name)
            return counted(rt, self.name, web.Response(status=503, text="try again\n"))
        if isinstance(delivery, web.Response):
            return counted(rt, self.name, delivery)
        try:
            canaries = await self._canaries(delivery.recipients)
            if not canaries:
                await self._forget(delivery)
                return await refuse(rt, self.name, self.unknown_recipient_status, "unknown_recipient",
                                    f"{len(delivery.recipients)} recipient(s), none a canary")
            await self._record(delivery, canaries)
        except COMMIT_ERRORS:
            log.exception("webhook.commit_failed", source=self.name)
            await self._forget_quietly(delivery)
            return counted(rt, self.name, web.Response(status=503, text="try again\n"))
        return counted(rt, self.name, web.Response(status=200, text="ok\n"))

    async def _forget_quietly(self, delivery: Delivery) -> None:
        try:
            await self._forget(delivery)
        except COMMIT_ERRORS:
            log.warning("webhook.replay_forget_failed", source=self.name)

    async def _canaries(self, recipients: Sequence[str]) -> list[CanaryRecord]:
        found: dict[int, CanaryRecord] = {}
        for r in recipients:
            addr = mail_address(r)
            if addr is None:
                continue
            c = await canary_for_address(self._rt, addr, self.config.mail_domains)
            if c is not None:
                found.setdefault(c.id, c)
        return list(found.values())

    async def _record(self, d: Delivery, canaries: list[CanaryRecord]) -> None:
        parsed = await parse_mail_async(d.raw)
        if d.files:
            parsed = dataclasses.replace(parsed, attachments=tuple(d.files))
        if d.html:
            urls = list(parsed.urls) + [u for u in extract_urls(d.html) if u not in parsed.urls]
            parsed = dataclasses.replace(parsed, urls=tuple(urls[:50]))
        facts = MailFacts(
            source=self.name, raw=d.raw, mail_from=d.mail_from, client_ip=d.client_ip, helo=d.helo,
            verdicts=d.verdicts, provider_id=d.provider_id, received=_top_received(d.raw),
            contact_points=[a for a in (mail_address(r) for r in d.recipients) if a],
        )
        await record_mail(self._rt, facts, canaries, self.known, parsed)


def _field(fields: list[tuple[str, str]], name: str, default: str = "") -> str:
    for k, v in fields:
        if k == name:
            return v
    return default


def _form(request: web.Request, body: bytes, source: str) -> tuple[list[tuple[str, str]], list[Any]]:
    try:
        return parse_form(request.headers.get("Content-Type", ""), body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(source, f"form body: {exc}") from None


def _files(files: list[Any]) -> list[Attachment]:
    return [Attachment(f.filename, f.content_type, len(f.data), hashlib.sha256(f.data).hexdigest()) for f in files]


# -- SendGrid ---------------------------------------------------------------------------------------
_SG_DKIM = re.compile(r"@([A-Za-z0-9.-]+)\s*:\s*([a-z]+)")


class SendGridInbound(_MailWebhook):
    """SendGrid Inbound Parse (multipart/form-data; the ``email`` field when "send raw" is on)."""

    name = "sendgrid"
    path = "/inbound/sendgrid"
    SIG_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
    TS_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

    def __init__(self, config: ContactConfig) -> None:
        super().__init__(config)
        self._key: ec.EllipticCurvePublicKey | None = None
        if config.sendgrid_verification_key:
            try:
                key = serialization.load_der_public_key(base64.b64decode(config.sendgrid_verification_key))
            except (ValueError, binascii.Error):
                raise ConfigError("contact.sendgrid_verification_key", "not a base64 DER public key") from None
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise ConfigError("contact.sendgrid_verification_key", "not an ECDSA public key")
            self._key = key

    def _verify(self, request: web.Request, body: bytes) -> None:
        cfg = self.config
        if cfg.sendgrid_basic_auth is not None:
            auth = request.headers.get("Authorization", "")
            if not auth.startswith("Basic "):
                raise _sig_error("missing_signature", "no Basic credentials", 401)
            try:
                given = base64.b64decode(auth[6:], validate=True)
            except binascii.Error:
                raise _sig_error("bad_signature", "malformed Basic credentials", 401) from None
            if not hmac.compare_digest(given, cfg.sendgrid_basic_auth.reveal().encode()):
                raise _sig_error("bad_signature", "wrong Basic credentials", 401)
        if self._key is not None:
            sig, ts = request.headers.get(self.SIG_HEADER), request.headers.get(self.TS_HEADER)
            if not sig or not ts:
                raise _sig_error("missing_signature", f"no {self.SIG_HEADER} / {self.TS_HEADER}")
            if not fresh(ts, cfg.signature_max_age):
                raise _sig_error("stale", f"timestamp {ts[:20]!r} is outside {cfg.signature_max_age:.0f}s")
            try:
                self._key.verify(base64.b64decode(sig), ts.encode() + body, ec.ECDSA(hashes.SHA256()))
            except (InvalidSignature, binascii.Error, ValueError):
                raise _sig_error("bad_signature", "ECDSA signature does not verify") from None

    async def parse(self, request: web.Request, body: bytes) -> Delivery:
        self._verify(request, body)
        fields, files = _form(request, body, self.name)
        try:
            envelope = json.loads(_field(fields, "envelope", "{}"))
        except json.JSONDecodeError:
            raise ParseError(self.name, "envelope is not JSON") from None
        if not isinstance(envelope, dict) or not isinstance(envelope.get("to", []), list):
            raise ParseError(self.name, "envelope must be an object with a 'to' list")
        raw_field = _field(fields, "email")
        raw = raw_field.encode("utf-8", "surrogateescape") if raw_field else (
            _field(fields, "headers").encode() + b"\r\n" + _field(fields, "text").encode())
        if not raw.strip():
            raise ParseError(self.name, "neither 'email' nor 'headers' present")
        dkim_field = _field(fields, "dkim")
        m = _SG_DKIM.search(dkim_field)
        verdicts = Verdicts(spf=(_field(fields, "SPF") or "none").lower(), dkim=m.group(2).lower() if m else "none",
                            dkim_domain=m.group(1).lower() if m else None, by=self.name)
        return Delivery(
            raw=raw, recipients=[str(t) for t in envelope.get("to", [])], mail_from=str(envelope.get("from") or ""),
            client_ip=_field(fields, "sender_ip") or received_ip(_top_received(raw)), verdicts=verdicts,
            html=_field(fields, "html"), files=_files(files),
        )


# -- Mailgun ----------------------------------------------------------------------------------------
class MailgunInbound(_MailWebhook):
    """Mailgun routes ``forward()`` (parsed fields, or ``body-mime`` for URLs ending in ``mime``)."""

    name = "mailgun"
    path = "/inbound/mailgun"
    unknown_recipient_status = 406  # Mailgun: rejected, do not retry

    def __init__(self, config: ContactConfig) -> None:
        super().__init__(config)
        if config.mailgun_signing_key is None:
            raise ConfigError("contact.mailgun_signing_key", "required for the Mailgun webhook")
        self._signing_key = config.mailgun_signing_key
        self.replay = ReplayCache("mailgun", ttl=2 * config.signature_max_age)

    async def parse(self, request: web.Request, body: bytes) -> Delivery:
        fields, files = _form(request, body, self.name)
        ts, token, sig = _field(fields, "timestamp"), _field(fields, "token"), _field(fields, "signature")
        if not (ts and token and sig):
            raise _sig_error("missing_signature", "timestamp, token and signature are required", 406)
        expected = hmac.new(self._signing_key.reveal().encode(), (ts + token).encode("utf-8", "surrogatepass"),
                            hashlib.sha256).hexdigest()
        if not same(expected, sig.lower()):
            raise _sig_error("bad_signature", "HMAC-SHA256 of timestamp+token does not match", 406)
        if not fresh(ts, self.config.signature_max_age):
            raise _sig_error("stale", f"timestamp {ts[:20]!r} is outside {self.config.signature_max_age:.0f}s", 406)
        if not await self.replay.first_use(self._rt.pool, token):
            raise _sig_error("replayed", "token already used", 406)
        try:
            headers = json.loads(_field(fields, "message-headers", "[]"))
            header_map = {str(k).lower(): str(v) for k, v in headers} if isinstance(headers, list) else {}
        except (json.JSONDecodeError, TypeError, ValueError):
            raise ParseError(self.name, "message-headers is not a JSON list of pairs") from None
        mime = _field(fields, "body-mime")
        if mime:
            raw = mime.encode("utf-8", "surrogateescape")
        else:
            head = "".join(f"{k}: {v}\r\n" for k, v in (headers if isinstance(headers, list) else []))
            raw = (head + "\r\n" + _field(fields, "body-plain")).encode()
        recipients = [r.strip() for r in _field(fields, "recipient").split(",") if r.strip()]
        verdicts = Verdicts(spf=header_map.get("x-mailgun-spf", "none").lower(),
                            dkim=header_map.get("x-mailgun-dkim-check-result", "none").lower(), by=self.name)
        return Delivery(
            raw=raw, recipients=recipients, mail_from=_field(fields, "sender"),
            client_ip=received_ip(_top_received(raw)), verdicts=verdicts, provider_id=header_map.get("message-id"),
            html=_field(fields, "body-html"), files=_files(files), replay_token=token,
        )

    async def _forget(self, delivery: Delivery) -> None:
        if delivery.replay_token:
            await self.replay.forget(self._rt.pool, delivery.replay_token)


# -- SES via SNS ------------------------------------------------------------------------------------
_SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}


def sns_string_to_sign(msg: dict[str, Any]) -> bytes:
    """The canonical string SNS signs: ``Key\\nValue\\n`` for each signed key present, in order."""
    keys = _SIGNED_FIELDS[msg["Type"]]
    return "".join(f"{k}\n{msg[k]}\n" for k in keys if k in msg and (k != "Subject" or msg[k] is not None)).encode()


def sns_url_allowed(url: str) -> bool:
    """Only ``https://sns.<region>.amazonaws.com[.cn]/...`` (no userinfo, no port)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return (parts.scheme == "https" and parts.port is None and "@" not in parts.netloc
            and bool(SNS_HOST.match(parts.hostname or "")))


class SnsCertificates:
    """Fetches and caches SNS signing certificates. The host check runs before any request.
    ``fetch_base`` redirects the (already checked) request to a local server: for tests only."""

    def __init__(self, http: aiohttp.ClientSession, *, fetch_base: str | None = None) -> None:
        self.http = http
        self.fetch_base = fetch_base
        self.fetches = 0
        self._cache: dict[str, rsa.RSAPublicKey] = {}

    def _target(self, url: str) -> str:
        if self.fetch_base is None:
            return url
        parts = urlsplit(url)
        return self.fetch_base.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")

    async def get(self, url: str) -> rsa.RSAPublicKey:
        if not sns_url_allowed(url) or not urlsplit(url).path.endswith(".pem"):
            raise _sig_error("unknown_cert_host", f"signing certificate URL is not an SNS certificate: {url[:200]}")
        if url in self._cache:
            return self._cache[url]
        self.fetches += 1
        try:
            async with self.http.get(self._target(url), timeout=aiohttp.ClientTimeout(total=CERT_TIMEOUT),
                                     allow_redirects=False) as r:
                if r.status != 200:
                    raise _sig_error("cert_unavailable", f"certificate fetch answered {r.status}", 503)
                pem = await r.content.read(64 * 1024)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _sig_error("cert_unavailable", f"certificate fetch failed: {type(exc).__name__}", 503) from None
        try:
            cert = x509.load_pem_x509_certificate(pem)
        except ValueError:
            raise _sig_error("bad_signature", "signing certificate is not a PEM X.509 certificate") from None
        import datetime as dt

        now = dt.datetime.now(dt.timezone.utc)
        if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
            raise _sig_error("bad_signature", "signing certificate is not valid now")
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise _sig_error("bad_signature", "signing certificate does not hold an RSA key")
        if len(self._cache) >= CERT_CACHE_MAX:
            self._cache.pop(next(iter(self._cache)))
        self._cache[url] = key
        return key


class SesInbound(_MailWebhook):
    """Amazon SES receipt rule -> SNS topic -> HTTPS subscription to this endpoint."""

    name = "ses"
    path = "/inbound/ses"

    def __init__(self, config: ContactConfig, *, cert_fetch_base: str | None = None) -> None:
        super().__init__(config)
        self._cert_fetch_base = cert_fetch_base
        self.certs: SnsCertificates | None = None

    async def start(self, runtime: SourceContext) -> None:
        await super().start(runtime)
        self.certs = SnsCertificates(runtime.http, fetch_base=self._cert_fetch_base)

    async def _verify(self, msg: dict[str, Any]) -> None:
        assert self.certs is not None
        version = str(msg.get("SignatureVersion", ""))
        algo: hashes.HashAlgorithm
        if version == "1":
            algo = hashes.SHA1()
        elif version == "2":
            algo = hashes.SHA256()
        else:
            raise _sig_error("bad_signature", f"unsupported SignatureVersion {version[:10]!r}")
        if not msg.get("Signature") or not msg.get("SigningCertURL"):
            raise _sig_error("missing_signature", "Signature and SigningCertURL are required")
        key = await self.certs.get(str(msg["SigningCertURL"]))
        try:
            key.verify(base64.b64decode(str(msg["Signature"])), sns_string_to_sign(msg), padding.PKCS1v15(), algo)
        except (InvalidSignature, binascii.Error, ValueError):
            raise _sig_error("bad_signature", "SNS signature does not verify") from None

    async def parse(self, request: web.Request, body: bytes) -> Delivery | web.Response:
        try:
            msg = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ParseError(self.name, "body is not JSON") from None
        if not isinstance(msg, dict) or msg.get("Type") not in _SIGNED_FIELDS:
            raise ParseError(self.name, "not an SNS message (Type missing or unknown)")
        missing = [k for k in _SIGNED_FIELDS[msg["Type"]] if k != "Subject" and not isinstance(msg.get(k), str)]
        if missing:
            raise ParseError(self.name, f"SNS message lacks {', '.join(missing)}")
        if msg["TopicArn"] not in self.config.ses_topics:
            raise _sig_error("topic_not_allowed", f"topic {msg['TopicArn'][:200]} is not on contact.ses_topics")
        await self._verify(msg)
        if msg["Type"] == "SubscriptionConfirmation":
            return await self._confirm(msg)
        if msg["Type"] == "UnsubscribeConfirmation":
            log.warning("ses.unsubscribed", topic=msg["TopicArn"])
            return web.Response(status=200, text="ok\n")
        return self._notification(msg)

    async def _confirm(self, msg: dict[str, Any]) -> web.Response:
        url = msg["SubscribeURL"]
        if not self.config.ses_confirm_subscriptions:
            log.info("ses.subscription_pending", topic=msg["TopicArn"])
            return web.Response(status=200, text="ok\n")
        if not sns_url_allowed(url):
            raise _sig_error("unknown_cert_host", f"SubscribeURL is not an SNS URL: {url[:200]}")
        assert self.certs is not None
        try:
            async with self._rt.http.get(self.certs._target(url), timeout=aiohttp.ClientTimeout(total=CERT_TIMEOUT),
                                         allow_redirects=False) as r:
                status = r.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("ses.confirm_failed", error=type(exc).__name__)
            return web.Response(status=503, text="confirmation failed\n")
        if status != 200:
            log.warning("ses.confirm_refused", status=status)
            return web.Response(status=503, text="confirmation failed\n")
        log.info("ses.subscribed", topic=msg["TopicArn"])
        return web.Response(status=200, text="confirmed\n")

    def _notification(self, msg: dict[str, Any]) -> Delivery | web.Response:
        try:
            note = json.loads(msg["Message"])
        except json.JSONDecodeError:
            raise ParseError(self.name, "Message is not JSON") from None
        if not isinstance(note, dict):
            raise ParseError(self.name, "Message is not a JSON object")
        if note.get("notificationType") != "Received":
            log.info("ses.ignored", type=str(note.get("notificationType"))[:40])
            return web.Response(status=200, text="ignored\n")
        mail, receipt = note.get("mail"), note.get("receipt")
        if not isinstance(mail, dict) or not isinstance(receipt, dict):
            raise ParseError(self.name, "Received notification lacks mail/receipt")
        content = note.get("content")
        if isinstance(content, str):
            encoding = str(_obj(receipt.get("action")).get("encoding", "UTF8")).upper()
            try:
                raw = base64.b64decode(content, validate=True) if encoding == "BASE64" else content.encode("utf-8")
            except binascii.Error:
                raise ParseError(self.name, "content is not valid base64") from None
        else:  # no content (e.g. an S3 action): headers only
            hdrs = _list(mail.get("headers"))
            raw = "".join(f"{h.get('name')}: {h.get('value')}\r\n" for h in hdrs if isinstance(h, dict)).encode(
                "utf-8", "surrogatepass") + b"\r\n"
        verdicts = Verdicts(spf=str(_obj(receipt.get("spfVerdict")).get("status", "none")).lower(),
                            dkim=str(_obj(receipt.get("dkimVerdict")).get("status", "none")).lower(), by=self.name)
        recipients = _list(receipt.get("recipients")) or _list(mail.get("destination"))
        return Delivery(
            raw=raw, recipients=[str(r) for r in recipients], mail_from=str(mail.get("source") or ""),
            client_ip=received_ip(_top_received(raw)), verdicts=verdicts, provider_id=str(mail.get("messageId") or "") or None,
        )


def _obj(value: Any) -> dict[str, Any]:
    """A JSON object field of a notification, or {} when it is absent or something else."""
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    """A JSON array field of a notification, or [] when it is absent or something else."""
    return value if isinstance(value, list) else []


def _webhooks(config: Config) -> list[Component]:
    """The inbound-mail webhooks whose secrets are set."""
    c = config.contact
    out: list[Component] = []
    if c.sendgrid_verification_key or c.sendgrid_basic_auth is not None:
        out.append(SendGridInbound(c))
    if c.mailgun_signing_key is not None:
        out.append(MailgunInbound(c))
    if c.ses_topics:
        out.append(SesInbound(c))
    return out


SOURCE = SourceType("mail_webhooks", _webhooks, suppress_rules=(expected_contact,))
