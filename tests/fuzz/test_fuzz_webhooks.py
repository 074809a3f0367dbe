"""Fuzzing every provider webhook on the real listener (canary/contact/mail_webhooks.py: SendGrid,
Mailgun, SES via SNS; canary/contact/phone.py: Twilio, Vonage): bodies, forms and headers that are
correctly signed (so the parsers behind the signature check see them) and unsigned garbage (random
content types, encodings, credentials). Whatever arrives, the answer is never a 5xx while the store
is up, nothing escapes, and a genuine mail and SMS to the canaries afterwards are detected."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from aiohttp import web
from contact_support import CANARY_EMAIL, CANARY_PHONE, MAIL_DOMAIN, OTHER_EMAIL
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from fuzz_harness import FuzzServer, fuzz_server, fuzz_settings, http_request
from fuzz_strategies import json_value, messages, text
from hypothesis import example, given
from hypothesis import strategies as st

from canary.contact.mail_webhooks import MailgunInbound, SendGridInbound, SesInbound, sns_string_to_sign
from canary.contact.phone import TwilioInbound, VonageInbound, twilio_signature, vonage_signature
from canary.store.embedded import PostgresServer
from canary.store.registry import NewCanary

SG_KEY = ec.generate_private_key(ec.SECP256R1())
SG_PUBLIC = base64.b64encode(SG_KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
SG_BASIC = "parse:s3cret-parse"
MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
TOPIC = "arn:aws:sns:us-east-1:123456789012:canary-inbound"
TWILIO_TOKEN = "12345abcdefauthtoken"
PUBLIC = "https://canary.example.com"
VONAGE_SECRET = "vonage-signature-secret"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc123.pem"
SNS_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
GENUINE_EVERY = 60


def _sns_pem() -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(SNS_KEY.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1)).sign(SNS_KEY, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def server(pg_server: PostgresServer) -> Iterator[FuzzServer]:
    contact = {"mail_domains": [MAIL_DOMAIN], "sendgrid_verification_key": SG_PUBLIC, "sendgrid_basic_auth": SG_BASIC,
               "mailgun_signing_key": MAILGUN_KEY, "ses_topics": [TOPIC], "ses_confirm_subscriptions": True,
               "twilio_auth_token": TWILIO_TOKEN, "vonage_signature_secret": VONAGE_SECRET, "vonage_signature_method": "sha256",
               "max_message_size": 256 * 1024}
    pem = _sns_pem()
    runners: list[web.AppRunner] = []

    def components(rt: Any) -> list[Any]:
        c = rt.config.contact
        return [SendGridInbound(c), MailgunInbound(c), SesInbound(c), TwilioInbound(c, PUBLIC), VonageInbound(c)]

    async def setup(s: FuzzServer) -> None:
        async def sns(request: web.Request) -> web.Response:  # stands in for sns.<region>.amazonaws.com
            if request.path.endswith(".pem"):
                return web.Response(body=pem)
            return web.Response(text="<ConfirmSubscriptionResponse/>")

        app = web.Application()
        app.router.add_get("/{tail:.*}", sns)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        ses = next(c for c in s.listener.components if isinstance(c, SesInbound))
        assert ses.certs is not None
        ses.certs.fetch_base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        async with s.runtime.pool.acquire() as conn:
            [(cid, _), _] = await s.runtime.registry.add(conn, [
                NewCanary(kind="customer", datastore="shop", label="shop/public.customers", location={"pk": 1},
                          lookup="shop|public.customers|1", values=[("email", CANARY_EMAIL), ("phone", CANARY_PHONE)]),
                NewCanary(kind="customer", datastore="shop", label="shop/public.customers", location={"pk": 2},
                          lookup="shop|public.customers|2", values=[("email", OTHER_EMAIL)])], None)
        s.canaries["cid"] = cid

    with fuzz_server(pg_server, "webhooks", {"contact": contact, "listener": {"public_url": PUBLIC}}, components, setup) as s:
        yield s
        for r in runners:
            s.call(r.cleanup())


# -- building requests --------------------------------------------------------------------------------
def _enc(v: str) -> bytes:
    return v.encode("utf-8", "surrogatepass")


def _multipart(fields: list[tuple[str, bytes, str | None]], boundary: str = "fuzzb0undary") -> tuple[bytes, str]:
    parts = []
    for name, value, filename in fields:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        parts.append(b"--" + boundary.encode() + b"\r\nContent-Disposition: " + _enc(disp) + b"\r\n\r\n" + value + b"\r\n")
    return b"".join(parts) + b"--" + boundary.encode() + b"--\r\n", f"multipart/form-data; boundary={boundary}"


def _sendgrid_headers(body: bytes, ctype: str) -> list[tuple[str, str]]:
    ts = str(int(time.time()))
    sig = base64.b64encode(SG_KEY.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()
    return [("Content-Type", ctype), ("X-Twilio-Email-Event-Webhook-Signature", sig), ("X-Twilio-Email-Event-Webhook-Timestamp", ts),
            ("Authorization", "Basic " + base64.b64encode(SG_BASIC.encode()).decode())]


def _mailgun_fields() -> list[tuple[str, str]]:
    ts, token = str(int(time.time())), uuid.uuid4().hex
    sig = hmac.new(MAILGUN_KEY.encode(), (ts + token).encode(), hashlib.sha256).hexdigest()
    return [("timestamp", ts), ("token", token), ("signature", sig)]


def _sns_signed(msg: dict[str, Any]) -> bytes:
    msg = {**msg, "SignatureVersion": "2", "SigningCertURL": CERT_URL}
    try:
        signed = sns_string_to_sign(msg)
    except (KeyError, TypeError, UnicodeEncodeError):  # what the server cannot sign-check either
        signed = b""
    msg["Signature"] = base64.b64encode(SNS_KEY.sign(signed, padding.PKCS1v15(), hashes.SHA256())).decode()
    return json.dumps(msg).encode("utf-8", "surrogatepass")


_to = st.sampled_from([CANARY_EMAIL, CANARY_EMAIL.upper(), f"minji.kim+x@{MAIL_DOMAIN}", OTHER_EMAIL, f"x@{MAIL_DOMAIN}", "a@b.test",
                       "", "@"]) | text
_raw_mail = messages | st.builds(lambda to, m: b"To: " + _enc(to) + b"\r\n" + m, _to, messages)
_field_value = text.map(_enc) | st.binary(max_size=60) | st.builds(lambda v: _enc(json.dumps(v)), json_value)
_extra_fields = st.lists(st.tuples(st.sampled_from(["to", "from", "subject", "html", "text", "headers", "dkim", "SPF", "charsets",
                                                     "sender_ip", "attachments", "recipient", "sender", "body-plain", "body-html",
                                                     "message-headers", "body-mime", "timestamp", "token", "signature", ""]) | text,
                                    _field_value, st.none() | st.sampled_from(["a.pdf", "", "../x", "\u202e.exe"])), max_size=5)


@st.composite
def _sendgrid(draw: Any) -> tuple[str, bytes, list[tuple[str, str]]]:
    to = draw(st.lists(_to, max_size=3))
    envelope = draw(st.sampled_from(["ok", "json", "garbage"]))
    env = _enc(json.dumps({"to": to, "from": "x@phish.test"})) if envelope == "ok" else (
        _enc(json.dumps(draw(json_value))) if envelope == "json" else draw(st.binary(max_size=30)))
    fields = [("envelope", env, None), ("email", draw(_raw_mail), None), *draw(_extra_fields)]
    body, ctype = _multipart(fields)
    return "/inbound/sendgrid", body, _sendgrid_headers(body, ctype)


@st.composite
def _mailgun(draw: Any) -> tuple[str, bytes, list[tuple[str, str]]]:
    fields = [(k, _enc(v), None) for k, v in _mailgun_fields()]
    fields += [("recipient", _enc(", ".join(draw(st.lists(_to, max_size=3)))), None), ("body-mime", draw(_raw_mail), None),
               *draw(_extra_fields)]
    if draw(st.booleans()):
        body, ctype = _multipart(fields)
    else:
        body, ctype = urlencode([(_enc(k), v) for k, v, _ in fields]).encode(), "application/x-www-form-urlencoded"
    return "/inbound/mailgun", body, [("Content-Type", ctype)]


@st.composite
def _ses(draw: Any) -> tuple[str, bytes, list[tuple[str, str]]]:
    to = draw(st.lists(_to, max_size=3))
    raw = draw(_raw_mail)
    encoding = draw(st.sampled_from(["BASE64", "UTF8", "base64", "x"]) | json_value)
    content = base64.b64encode(raw).decode() if encoding == "BASE64" else raw.decode("utf-8", "replace")
    note = draw(st.sampled_from(["received", "random"]))
    message: Any = {"notificationType": "Received", "mail": {"source": draw(text), "messageId": draw(json_value),
                                                              "destination": to, "headers": draw(json_value)},
                    "receipt": {"recipients": draw(st.sampled_from([to, None]) | json_value), "action": {"encoding": encoding},
                                "spfVerdict": draw(json_value), "dkimVerdict": draw(json_value)},
                    "content": draw(st.sampled_from([content, None]) | json_value)} if note == "received" else draw(json_value)
    kind = draw(st.sampled_from(["Notification", "Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]) | text)
    msg: dict[str, Any] = {"Type": kind, "MessageId": str(uuid.uuid4()), "TopicArn": draw(st.sampled_from([TOPIC, TOPIC, "arn:x"])),
                           "Message": json.dumps(message) if draw(st.booleans()) else draw(text), "Timestamp": "2026-11-23T10:00:01Z",
                           "Subject": draw(st.none() | text), "Token": "t",
                           "SubscribeURL": draw(st.sampled_from(["https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
                                                                 "https://evil.test/", "http://sns.us-east-1.amazonaws.com/"]) | text)}
    return "/inbound/ses", _sns_signed(msg), [("Content-Type", "text/plain; charset=UTF-8")]


_phone = st.sampled_from([CANARY_PHONE, CANARY_PHONE[1:], "+1 (415) 555-0100", "", "+", "0" * 20]) | text


@st.composite
def _twilio(draw: Any) -> tuple[str, bytes, list[tuple[str, str]]]:
    path = draw(st.sampled_from(["/twilio/sms", "/twilio/voice", "/twilio/voice/status"]))
    query = draw(st.sampled_from(["", "?a=1", "?x=%00"]))
    params = [("MessageSid", "SM" + uuid.uuid4().hex), ("To", draw(_phone)), ("From", draw(_phone)), ("Body", draw(text)),
              *draw(st.lists(st.tuples(st.sampled_from(["CallSid", "RecordingUrl", "RecordingSid", "CallStatus", "MediaUrl0",
                                                        "FromCountry", "Called", "Caller", "MessageSid", ""]) | text, text), max_size=5))]
    params = [(k.encode("utf-8", "replace").decode(), v.encode("utf-8", "replace").decode()) for k, v in params]
    sig = twilio_signature(TWILIO_TOKEN, PUBLIC + path + query, params)
    return path + query, urlencode(params).encode(), [("Content-Type", "application/x-www-form-urlencoded"), ("X-Twilio-Signature", sig)]


@st.composite
def _vonage(draw: Any) -> tuple[str, bytes, list[tuple[str, str]]]:
    params = {"msisdn": draw(_phone), "to": draw(_phone), "messageId": draw(text) or "m", "text": draw(text),
              "timestamp": str(int(time.time())), "nonce": uuid.uuid4().hex,
              **dict(draw(st.lists(st.tuples(st.sampled_from(["type", "keyword", "concat-ref", "concat", ""]) | text, text), max_size=4)))}
    params = {k.encode("utf-8", "replace").decode(): v.encode("utf-8", "replace").decode() for k, v in params.items() if k != "sig"}
    params["sig"] = vonage_signature(VONAGE_SECRET, "sha256", params)
    form = draw(st.sampled_from(["json", "form", "query"]))
    if form == "json":
        return "/vonage/sms", json.dumps(params).encode(), [("Content-Type", "application/json")]
    if form == "form":
        return "/vonage/sms", urlencode(params).encode(), [("Content-Type", "application/x-www-form-urlencoded")]
    return "/vonage/sms?" + urlencode(params), b"", [("X-Method", "GET")]


_signed = _sendgrid() | _mailgun() | _ses() | _twilio() | _vonage()
_paths = st.sampled_from(["/inbound/sendgrid", "/inbound/mailgun", "/inbound/ses", "/twilio/sms", "/twilio/voice",
                          "/twilio/voice/status", "/vonage/sms"])
_ctype = st.sampled_from(["multipart/form-data; boundary=b", "multipart/form-data", "multipart/form-data; boundary=\"\"",
                          "application/x-www-form-urlencoded", "application/json", "text/plain; charset=x-unknown", ""]) | text
_unsigned = st.builds(
    lambda path, body, ctype, extra: (path, body, [("Content-Type", ctype), *extra]), _paths,
    st.binary(max_size=300) | messages | st.builds(lambda v: _enc(json.dumps(v)), json_value),
    _ctype, st.lists(st.tuples(st.sampled_from(["Authorization", "X-Twilio-Signature", "Content-Encoding",
                                                 "X-Twilio-Email-Event-Webhook-Signature", "X-Twilio-Email-Event-Webhook-Timestamp"]),
                               st.sampled_from(["gzip", "Basic %%%", "Basic " + base64.b64encode(SG_BASIC.encode()).decode(), "",
                                                "9" * 30, "-1e999"]) | text), max_size=3))


def _send(s: FuzzServer, path: str, body: bytes, headers: list[tuple[str, str]]) -> int:
    method = "GET" if ("X-Method", "GET") in headers else "POST"
    clean = [(k, v.replace("\r", "").replace("\n", "")) for k, v in headers if k != "X-Method"]
    answer = http_request(s.port, method, path, clean, body)
    s.tally.connections += 1
    s.tally.messages += 1
    return answer.status


def _genuine(s: FuzzServer) -> None:
    before = s.fetchval("SELECT count(*) FROM events WHERE canary_id = $1", s.canaries["cid"])
    raw = (f"From: Coupang <notice@phish.test>\r\nTo: {CANARY_EMAIL}\r\nSubject: Refund\r\nMessage-ID: <{uuid.uuid4().hex}@phish.test>\r\n"
           "\r\nClaim it at https://refund.phish.test/claim now.\r\n").encode()
    body, ctype = _multipart([("envelope", json.dumps({"to": [CANARY_EMAIL], "from": "notice@phish.test"}).encode(), None),
                              ("email", raw, None)])
    assert _send(s, "/inbound/sendgrid", body, _sendgrid_headers(body, ctype)) == 200
    params = [("MessageSid", "SM" + uuid.uuid4().hex), ("To", CANARY_PHONE), ("From", "+821055501234"), ("Body", "hi")]
    assert _send(s, "/twilio/sms", urlencode(params).encode(), [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("X-Twilio-Signature", twilio_signature(TWILIO_TOKEN, PUBLIC + "/twilio/sms", params))]) == 200
    s.wait_for("SELECT count(*) >= $2 + 2 FROM events WHERE canary_id = $1", s.canaries["cid"], before)


@fuzz_settings(250)
@example(request=("/inbound/mailgun", b"x", [("Content-Type", "application/x-www-form-urlencoded"), ("Content-Encoding", "gzip")]))
@example(request=("/inbound/sendgrid", gzip.compress(b"x")[:5], [("Content-Type", "multipart/form-data; boundary=b"),
                                                                ("Content-Encoding", "gzip")]))
@example(request=("/inbound/ses", _sns_signed({  # non-object receipt fields were AttributeError / TypeError: 500
    "Type": "Notification", "MessageId": "m", "TopicArn": TOPIC, "Timestamp": "2026-11-23T10:00:01Z",
    "Message": json.dumps({"notificationType": "Received", "mail": {"destination": [CANARY_EMAIL], "headers": 1},
                           "receipt": {"recipients": 7, "action": "x", "spfVerdict": [1], "dkimVerdict": "y"}})}),
    [("Content-Type", "text/plain")]))
@example(request=("/twilio/sms?x=%ED%A0%80", b"To=1", [("Content-Type", "application/x-www-form-urlencoded"),
                                                       ("X-Twilio-Signature", "x")]))  # the reject sample was not storable
@example(request=("/twilio/sms", b"", [("Content-Type", "application/x-www-form-urlencoded"), ("X-Twilio-Signature", "\x80")]))
@given(request=_signed | _unsigned)  # (above) a non-ASCII signature made compare_digest raise TypeError: 500
def test_fuzzed_webhooks_never_answer_5xx(server: FuzzServer, request: tuple[str, bytes, list[tuple[str, str]]]) -> None:
    """Any signed or unsigned request to any provider route: a 2xx or 4xx answer, never a 5xx; nothing
    escapes; every few requests a genuine mail and SMS to the canary are detected."""
    server.tally.examples += 1
    path, body, headers = request
    status = _send(server, path, body, headers)
    assert status < 500, f"{path} -> {status}"
    if server.tally.examples % GENUINE_EVERY == 0:
        _genuine(server)
    server.assert_clean()


def test_genuine_contacts_are_detected_after_the_fuzzing(server: FuzzServer) -> None:
    """After the fuzzing, a signed SendGrid mail and a signed Twilio SMS to the canary both commit
    events, and no event spells out the canary's address or number."""
    _genuine(server)
    rows = server.call(server.runtime.pool.fetch("SELECT actor::text || evidence::text || group_key AS t FROM events"))
    assert not [r for r in rows if CANARY_EMAIL in r["t"].lower() or CANARY_PHONE in r["t"] or quote(CANARY_EMAIL) in r["t"]]
    server.assert_clean()
