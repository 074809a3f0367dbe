"""Phone contact: Twilio inbound SMS and voice, Vonage inbound SMS.

Twilio requests are authenticated with ``X-Twilio-Signature`` = base64(HMAC-SHA1(auth token, full
public URL + every POST parameter sorted by name, as name+value)). The URL is the one Twilio called:
``listener.public_url`` + path and query. Twilio waits at most 15 s for TwiML; the event is
committed first (a few milliseconds: the pipeline group-commits) and then TwiML is returned, so a
page is never acknowledged before it is durable, and the paging itself (outbox -> sinks) runs
asynchronously. SMS gets ``<Response/>``; a call gets the configured voice TwiML (by default a
recording prompt), and the recording/status callbacks are recorded into the same incident.

Vonage inbound SMS is signed with the account signature secret: for each parameter except ``sig``,
sorted by name, ``&name=value`` (``&`` and ``=`` in values replaced by ``_``), then either
md5(string + secret) ("MD5 hash") or the HMAC (md5/sha1/sha256/sha512) of the string keyed with the
secret, hex. Stale timestamps and reused nonces are refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from base64 import b64encode
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import structlog
from aiohttp import web

from canary.config import Config, ContactConfig
from canary.contact.evidence import COMMIT_ERRORS, ReplayCache, record_phone
from canary.contact.http import REFUSED, counted, fresh, read_limited, refusal, refuse
from canary.contact.mime import normalize_phone
from canary.contact.senders import KnownSenders, expected_contact
from canary.crypto import same
from canary.errors import ConfigError, ParseError, SignatureError
from canary.plugins import SourceType
from canary.typing import Component, SourceContext

log = structlog.get_logger("canary.sources.phone")

MAX_BODY = 64 * 1024
TWIML = "text/xml"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
HANGUP_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup/></Response>'


# -- signatures -------------------------------------------------------------------------------------
def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's request signature of a URL and its POST parameters."""
    data = url + "".join(k + v for k, v in sorted(params))
    return b64encode(hmac.new(auth_token.encode(), data.encode("utf-8"), hashlib.sha1).digest()).decode()


def _url_variants(url: str) -> list[str]:
    """The URL as given, and with the default port added or removed (Twilio signs what it called)."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    out = [url]
    if default is None or not parts.hostname:
        return out
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parts.port is None:
        out.append(urlunsplit((parts.scheme, f"{host}:{default}", parts.path, parts.query, parts.fragment)))
    elif parts.port == default:
        out.append(urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment)))
    return out


def verify_twilio(auth_token: str, url: str, params: list[tuple[str, str]], signature: str | None) -> None:
    if not signature:
        raise SignatureError("no X-Twilio-Signature header", reason="missing_signature")
    for candidate in _url_variants(url):
        if same(twilio_signature(auth_token, candidate, params), signature):
            return
    raise SignatureError(f"X-Twilio-Signature does not verify for {url}", reason="bad_signature")


def vonage_signature(secret: str, method: str, params: dict[str, str]) -> str:
    """Vonage's signature of the parameters (``sig`` excluded) with the given method."""
    digest = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
    hasher: Any = hashlib.md5() if method == "md5hash" else hmac.new(secret.encode(), digestmod=digest[method])
    for key in sorted(params):
        if key == "sig":
            continue
        value = params[key].replace("&", "_").replace("=", "_")
        hasher.update(f"&{key}={value}".encode("utf-8"))
    if method == "md5hash":
        hasher.update(secret.encode())
    return str(hasher.hexdigest())


# -- components -------------------------------------------------------------------------------------
class _PhoneSource:
    name = ""

    def __init__(self, config: ContactConfig) -> None:
        self.config = config
        self.known = KnownSenders(config.known_senders)
        self._rt: SourceContext  # set by start()

    async def start(self, runtime: SourceContext) -> None:
        self._rt = runtime

    async def stop(self) -> None:
        return None

    async def _body(self, request: web.Request) -> bytes:
        return await read_limited(request, MAX_BODY, self._rt.config.listener.body_timeout)

    async def _canary(self, number: str | None) -> Any:
        e164 = normalize_phone(number)
        return await self._rt.registry.by_value("phone", e164) if e164 else None


class TwilioInbound(_PhoneSource):
    """Twilio Programmable Messaging and Voice webhooks."""

    name = "twilio"

    def __init__(self, config: ContactConfig, public_url: str) -> None:
        super().__init__(config)
        if config.twilio_auth_token is None:
            raise ConfigError("contact.twilio_auth_token", "required for the Twilio webhooks")
        if not public_url.startswith(("https://", "http://")):
            raise ConfigError("listener.public_url", "must be an http(s) URL (Twilio signs the URL it calls)")
        self._token = config.twilio_auth_token
        self.public_url = public_url.rstrip("/")

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/twilio/sms", self._sms), web.post("/twilio/voice", self._voice),
                web.post("/twilio/voice/status", self._status)]

    async def _params(self, request: web.Request) -> list[tuple[str, str]]:
        body = await self._body(request)
        ctype = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise ParseError(self.name, f"expected a form body, got {ctype or '(none)'}")
        try:
            params = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ParseError(self.name, f"form body: {exc}") from None
        verify_twilio(self._token.reveal(), self.public_url + request.path_qs, params,
                      request.headers.get("X-Twilio-Signature"))
        return params

    async def _answer(self, request: web.Request, channel: str) -> web.Response:
        rt = self._rt
        try:
            params = await self._params(request)
        except REFUSED as exc:
            return await refusal(rt, self.name, exc, 403)
        p = dict(params)
        sid = p.get("MessageSid") or p.get("SmsSid") or p.get("CallSid")
        if not sid:
            return await refuse(rt, self.name, 400, "malformed", f"{channel} webhook without MessageSid/CallSid")
        recording = p.get("RecordingUrl")
        status_only = channel == "voice-status"
        reply = EMPTY_TWIML if channel == "sms" else (HANGUP_TWIML if recording else self.config.twilio_voice_twiml)
        try:
            canary = await self._canary(p.get("To") or p.get("Called"))
            if canary is None:
                await rt.reject(self.name, "unknown_recipient", f"{channel} to a number that is not a canary")
            else:
                ident = sid if channel == "sms" or not (recording or status_only) else \
                    f"{sid}:{p.get('RecordingSid') or p.get('CallStatus', '')}"
                await record_phone(
                    rt, source=self.name, channel="sms" if channel == "sms" else "voice", canary=canary,
                    caller=normalize_phone(p.get("From") or p.get("Caller")) or p.get("From"), ident=ident,
                    known=self.known, country=p.get("FromCountry") or p.get("CallerCountry"), text=p.get("Body"),
                    call_status=p.get("CallStatus"), recording_url=recording,
                    contact_point=normalize_phone(p.get("To") or p.get("Called")),
                    extra={k: v for k, v in {
                        "media": [p[f"MediaUrl{i}"] for i in range(10) if f"MediaUrl{i}" in p] or None,
                        "from_city": p.get("FromCity"), "caller_name": p.get("CallerName"),
                        "call_duration": p.get("CallDuration") or p.get("RecordingDuration"),
                        "direction": p.get("Direction")}.items() if v},
                )
        except COMMIT_ERRORS:
            log.exception("twilio.commit_failed", channel=channel)
            return counted(rt, self.name, web.Response(status=503, text="try again\n"))
        if status_only:
            return counted(rt, self.name, web.Response(status=204))
        return counted(rt, self.name, web.Response(text=reply, content_type=TWIML))

    async def _sms(self, request: web.Request) -> web.Response:
        return await self._answer(request, "sms")

    async def _voice(self, request: web.Request) -> web.Response:
        return await self._answer(request, "voice")

    async def _status(self, request: web.Request) -> web.Response:
        return await self._answer(request, "voice-status")


class VonageInbound(_PhoneSource):
    """Vonage (Nexmo) SMS API inbound messages: GET query, POST form or POST JSON."""

    name = "vonage"

    def __init__(self, config: ContactConfig) -> None:
        super().__init__(config)
        if config.vonage_signature_secret is None:
            raise ConfigError("contact.vonage_signature_secret", "required for the Vonage webhook")
        self._secret = config.vonage_signature_secret
        self.replay = ReplayCache("vonage", ttl=2 * config.signature_max_age)

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/vonage/sms", self._sms), web.post("/vonage/sms", self._sms)]

    async def _params(self, request: web.Request) -> dict[str, str]:
        if request.method == "GET":
            return dict(request.query)
        body = await self._body(request)
        ctype = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        try:
            if ctype == "application/json":
                data = json.loads(body)
                if not isinstance(data, dict):
                    raise ValueError("JSON body is not an object")
                return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
            if ctype == "application/x-www-form-urlencoded":
                return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body)))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(self.name, f"body: {exc}") from None
        raise ParseError(self.name, f"unsupported content type {ctype or '(none)'}")

    def _verify(self, p: dict[str, str]) -> None:
        sig = p.get("sig")
        if not sig:
            raise SignatureError("no sig parameter", reason="missing_signature")
        expected = vonage_signature(self._secret.reveal(), self.config.vonage_signature_method, p)
        if not same(expected, sig.lower()):
            raise SignatureError("sig does not verify", reason="bad_signature")
        if not fresh(p.get("timestamp"), self.config.signature_max_age):
            raise SignatureError("timestamp is missing or stale", reason="stale")

    async def _sms(self, request: web.Request) -> web.Response:
        rt = self._rt
        try:
            p = await self._params(request)
            self._verify(p)
        except REFUSED as exc:
            return await refusal(rt, self.name, exc, 401)
        if not p.get("messageId") or not p.get("msisdn"):
            return await refuse(rt, self.name, 400, "malformed", "inbound SMS without messageId/msisdn")
        nonce = p.get("nonce") or p["sig"]
        try:
            if not await self.replay.first_use(rt.pool, nonce):
                return await refuse(rt, self.name, 401, "replayed", "nonce already used")
            canary = await self._canary(p.get("to"))
            if canary is None:
                await rt.reject(self.name, "unknown_recipient", "SMS to a number that is not a canary")
                return counted(rt, self.name, web.Response(status=204))
            await record_phone(
                rt, source=self.name, channel="sms", canary=canary, caller=normalize_phone(p["msisdn"]) or p["msisdn"],
                ident=p["messageId"], known=self.known, text=p.get("text"), contact_point=normalize_phone(p.get("to")),
                extra={k: v for k, v in {"sms_type": p.get("type"), "keyword": p.get("keyword"),
                                         "concat_ref": p.get("concat-ref"), "concat_part": p.get("concat-part"),
                                         "concat_total": p.get("concat-total"),
                                         "provider_timestamp": p.get("message-timestamp")}.items() if v},
            )
        except COMMIT_ERRORS:
            log.exception("vonage.commit_failed")
            try:
                await self.replay.forget(rt.pool, nonce)
            except COMMIT_ERRORS:
                log.warning("vonage.replay_forget_failed")
            return counted(rt, self.name, web.Response(status=503, text="try again\n"))
        return counted(rt, self.name, web.Response(status=204))


def _webhooks(config: Config) -> list[Component]:
    """The SMS / voice webhooks whose secrets are set."""
    c = config.contact
    out: list[Component] = []
    if c.twilio_auth_token is not None:
        if not config.listener.public_url:
            raise ConfigError("listener.public_url", "required by the Twilio webhooks (Twilio signs the URL it calls)")
        out.append(TwilioInbound(c, config.listener.public_url))
    if c.vonage_signature_secret is not None:
        out.append(VonageInbound(c))
    return out


SOURCE = SourceType("phone", _webhooks, suppress_rules=(expected_contact,))
