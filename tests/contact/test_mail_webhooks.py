"""Inbound-mail webhooks (SendGrid Inbound Parse, Mailgun routes, SES via SNS) against the real
listener: payloads in the providers' documented formats, signed with their real schemes."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from contact_support import CANARY_EMAIL, MAIL_DOMAIN, OTHER_EMAIL, ContactEnv, contact_fixture, metric
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from testkit import MakeConfig

from canary.contact.mail_webhooks import MailgunInbound, SendGridInbound, SesInbound, sns_string_to_sign
from canary.crypto import Keyring

SG_KEY = ec.generate_private_key(ec.SECP256R1())
SG_PUBLIC = base64.b64encode(SG_KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
TOPIC = "arn:aws:sns:us-east-1:123456789012:canary-inbound"

env = contact_fixture({
    "sendgrid_verification_key": SG_PUBLIC, "sendgrid_basic_auth": "parse:s3cret-parse",
    "mailgun_signing_key": MAILGUN_KEY, "ses_topics": [TOPIC],
    "known_senders": [{"name": "own-esp", "senders": ["@corp.test"]}],
})

RAW = (
    "Received: from mail.phish.test (mail.phish.test [192.0.2.55]) by mx.sendgrid.net with ESMTP for <{to}>; "
    "Mon, 23 Nov 2026 10:00:00 +0000\r\n"
    "From: Coupang <notice@phish.test>\r\nTo: {to}\r\nSubject: Refund pending\r\nMessage-ID: <{mid}@phish.test>\r\n"
    "\r\nClaim it at https://refund.phish.test/claim now.\r\n"
)


def _raw(to: str = CANARY_EMAIL) -> str:
    return RAW.format(to=to, mid=uuid.uuid4().hex)


async def _post(url: str, **kw: Any) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.post(url, **kw) as r:
        return r.status, await r.text()


# -- SendGrid -----------------------------------------------------------------------------------
def _sendgrid_form(raw: str, to: list[str], attachment: bytes | None = None) -> aiohttp.FormData:
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("email", raw)
    form.add_field("to", ", ".join(to))
    form.add_field("from", "Coupang <notice@phish.test>")
    form.add_field("subject", "Refund pending")
    form.add_field("sender_ip", "192.0.2.55")
    form.add_field("envelope", json.dumps({"to": to, "from": "notice@phish.test"}))
    form.add_field("SPF", "softfail")
    form.add_field("dkim", "{@phish.test : pass}")
    form.add_field("charsets", json.dumps({"to": "UTF-8", "subject": "UTF-8", "from": "UTF-8"}))
    if attachment is not None:
        form.add_field("attachment1", attachment, filename="invoice.html", content_type="text/html")
    return form


async def _sendgrid_body(form: aiohttp.FormData) -> tuple[bytes, str]:
    payload = form()

    class _Sink:
        def __init__(self) -> None:
            self.buf = b""

        async def write(self, data: bytes) -> None:
            self.buf += data

    sink = _Sink()
    await payload.write(sink)  # type: ignore[arg-type]
    return sink.buf, payload.content_type


def _sg_headers(body: bytes, ctype: str, *, ts: int | None = None, key: ec.EllipticCurvePrivateKey = SG_KEY,
                auth: str = "parse:s3cret-parse") -> dict[str, str]:
    stamp = str(ts if ts is not None else int(time.time()))
    sig = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"Content-Type": ctype, "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(sig).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            "Authorization": "Basic " + base64.b64encode(auth.encode()).decode()}


async def test_sendgrid_signed_raw_mail_to_canary(env: ContactEnv) -> None:
    """A signed Inbound Parse post ("send raw") to a canary commits an event with SendGrid's SPF/DKIM
    verdicts, the sender IP, URLs from the message and the attachment's hash."""
    base = await env.serve([SendGridInbound(env.runtime.config.contact)])
    body, ctype = await _sendgrid_body(_sendgrid_form(_raw(), [CANARY_EMAIL], b"<a href='https://x.phish.test/a'>"))
    status, _ = await _post(base + "/inbound/sendgrid", data=body, headers=_sg_headers(body, ctype))
    assert status == 200
    [ev] = await env.events()
    e = ev["evidence"]
    assert ev["canary_id"] == env.canary_id and ev["source"] == "sendgrid"
    assert (e["spf"], e["dkim"], e["dkim_domain"], e["verdicts_by"]) == ("softfail", "pass", "phish.test", "sendgrid")
    assert ev["origin"]["client_addr"] == "192.0.2.55" and ev["actor"]["sender"] == "notice@phish.test"
    assert e["urls"] == ["https://refund.phish.test/claim"] and e["subject"] == "Refund pending"
    assert e["attachments"][0]["sha256"] == hashlib.sha256(b"<a href='https://x.phish.test/a'>").hexdigest()
    assert e["received"].startswith("from mail.phish.test") and "for <[canary]>" in e["received"]
    assert CANARY_EMAIL not in str(dict(ev))  # the canary's own address is redacted from the evidence


@pytest.mark.parametrize(("mutate", "status", "reason"), [
    ("forged", 403, "bad_signature"), ("missing", 403, "missing_signature"), ("stale", 403, "stale"),
    ("bad_auth", 401, "bad_signature"), ("no_auth", 401, "missing_signature"),
])
async def test_sendgrid_refuses_unauthenticated_posts(env: ContactEnv, mutate: str, status: int, reason: str) -> None:
    """Forged, missing or stale ECDSA signatures and wrong/missing Basic credentials are refused with
    the right code, counted by reason, and nothing is recorded."""
    base = await env.serve([SendGridInbound(env.runtime.config.contact)])
    body, ctype = await _sendgrid_body(_sendgrid_form(_raw(), [CANARY_EMAIL]))
    headers = _sg_headers(body, ctype)
    if mutate == "forged":
        headers = _sg_headers(body, ctype, key=ec.generate_private_key(ec.SECP256R1()))
    elif mutate == "missing":
        del headers["X-Twilio-Email-Event-Webhook-Signature"]
    elif mutate == "stale":
        headers = _sg_headers(body, ctype, ts=int(time.time()) - 3600)
    elif mutate == "bad_auth":
        headers = _sg_headers(body, ctype, auth="parse:wrong")
    else:
        del headers["Authorization"]
    assert (await _post(base + "/inbound/sendgrid", data=body, headers=headers))[0] == status
    assert await env.events() == []
    text = await env.metrics()
    assert metric(text, "canary_rejects_total", source="sendgrid", reason=reason) == 1
    assert metric(text, "canary_requests_total", component="sendgrid", code=str(status)) == 1


async def test_sendgrid_non_canary_and_malformed(env: ContactEnv) -> None:
    """Mail for non-canary recipients is acknowledged (no retry) but recorded as a reject; a body that
    is not valid multipart gets 400."""
    base = await env.serve([SendGridInbound(env.runtime.config.contact)])
    body, ctype = await _sendgrid_body(_sendgrid_form(_raw(f"ops@{MAIL_DOMAIN}"), [f"ops@{MAIL_DOMAIN}"]))
    assert (await _post(base + "/inbound/sendgrid", data=body, headers=_sg_headers(body, ctype)))[0] == 200
    bad = b"--xyz\r\nthis is not a form part"
    assert (await _post(base + "/inbound/sendgrid", data=bad,
                        headers=_sg_headers(bad, "multipart/form-data; boundary=other")))[0] == 400
    assert await env.events() == []
    text = await env.metrics()
    assert metric(text, "canary_rejects_total", source="sendgrid", reason="unknown_recipient") == 1
    assert metric(text, "canary_rejects_total", source="sendgrid", reason="malformed") == 1


# -- Mailgun ------------------------------------------------------------------------------------
def _mailgun_fields(to: str = CANARY_EMAIL, *, ts: int | None = None, token: str | None = None,
                    key: str = MAILGUN_KEY, mime: bool = True) -> dict[str, str]:
    stamp = str(ts if ts is not None else int(time.time()))
    tok = token or uuid.uuid4().hex + uuid.uuid4().hex[:18]
    raw = _raw(to)
    fields = {
        "recipient": to, "sender": "notice@phish.test", "from": "Coupang <notice@phish.test>", "subject": "Refund pending",
        "timestamp": stamp, "token": tok,
        "signature": hmac.new(key.encode(), (stamp + tok).encode(), hashlib.sha256).hexdigest(),
        "message-headers": json.dumps([["Received", raw.split("\r\n")[0][10:]], ["X-Mailgun-Spf", "Pass"],
                                       ["X-Mailgun-Dkim-Check-Result", "Fail"], ["Subject", "Refund pending"],
                                       ["Message-Id", f"<{tok[:12]}@phish.test>"]]),
    }
    if mime:
        fields["body-mime"] = raw
    else:
        fields["body-plain"] = "Claim it at https://refund.phish.test/plain now."
    return fields


async def test_mailgun_signed_route_to_canary(env: ContactEnv) -> None:
    """A Mailgun route forward with a valid HMAC-SHA256 signature commits an event with Mailgun's
    verdicts and the IP from the topmost Received header; both the MIME and parsed forms work."""
    base = await env.serve([MailgunInbound(env.runtime.config.contact)])
    assert (await _post(base + "/inbound/mailgun", data=_mailgun_fields()))[0] == 200
    assert (await _post(base + "/inbound/mailgun", data=_mailgun_fields(OTHER_EMAIL, mime=False)))[0] == 200
    first, second = await env.events()
    assert (first["evidence"]["spf"], first["evidence"]["dkim"]) == ("pass", "fail")
    assert first["origin"]["client_addr"] == "192.0.2.55"
    assert second["canary_id"] == env.other_id and second["evidence"]["urls"] == ["https://refund.phish.test/plain"]


async def test_mailgun_forged_replayed_stale_and_unknown(env: ContactEnv) -> None:
    """Wrong signatures, a replayed token, a stale timestamp and a non-canary recipient each get 406
    (Mailgun does not retry a 406), are counted by reason, and only the genuine post is recorded."""
    base = await env.serve([MailgunInbound(env.runtime.config.contact)])
    url = base + "/inbound/mailgun"
    good = _mailgun_fields()
    assert (await _post(url, data=good))[0] == 200
    assert (await _post(url, data=good))[0] == 406  # replay of the same token
    assert (await _post(url, data=_mailgun_fields(key="key-wrong")))[0] == 406
    assert (await _post(url, data=_mailgun_fields(ts=int(time.time()) - 3600)))[0] == 406
    assert (await _post(url, data={k: v for k, v in _mailgun_fields().items() if k != "signature"}))[0] == 406
    assert (await _post(url, data=_mailgun_fields(f"nobody@{MAIL_DOMAIN}")))[0] == 406
    assert len(await env.events()) == 1
    text = await env.metrics()
    for reason in ("replayed", "bad_signature", "stale", "missing_signature", "unknown_recipient"):
        assert metric(text, "canary_rejects_total", source="mailgun", reason=reason) == 1, reason
    assert await env.runtime.pool.fetchval("SELECT count(*) FROM contact_replay WHERE provider = 'mailgun'") == 1


async def test_mailgun_replay_cache_is_shared_by_listeners(env: ContactEnv) -> None:
    """A token accepted by one listener is refused by a second one sharing the control store."""
    first = MailgunInbound(env.runtime.config.contact)
    base = await env.serve([first])
    other = ContactEnv(runtime=env.runtime, canary_id=env.canary_id, other_id=env.other_id)
    second = MailgunInbound(env.runtime.config.contact)
    await second.start(env.runtime)
    app = web.Application()
    app.router.add_routes(second.routes())
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        fields = _mailgun_fields()
        assert (await _post(base + "/inbound/mailgun", data=fields))[0] == 200
        assert (await _post(f"http://127.0.0.1:{port}/inbound/mailgun", data=fields))[0] == 406
    finally:
        await runner.cleanup()
    assert len(await other.events()) == 1


# -- SES via SNS --------------------------------------------------------------------------------
class _FakeSns:
    """A local server standing in for sns.us-east-1.amazonaws.com: serves the signing certificate and
    answers ConfirmSubscription, counting requests."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=1)).sign(self.key, hashes.SHA256()))
        self.pem = cert.public_bytes(serialization.Encoding.PEM)
        self.requests: list[str] = []
        self.runner: web.AppRunner | None = None
        self.base = ""

    async def start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            self.requests.append(request.path_qs)
            if request.path.endswith(".pem"):
                return web.Response(body=self.pem, content_type="application/x-pem-file")
            if request.query.get("Action") == "ConfirmSubscription":
                return web.Response(text="<ConfirmSubscriptionResponse/>", content_type="text/xml")
            return web.Response(status=404)

        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    def sign(self, msg: dict[str, Any], version: str = "2") -> dict[str, Any]:
        msg = {**msg, "SignatureVersion": version,
               "SigningCertURL": msg.get("SigningCertURL",
                                         "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc123.pem")}
        algo = hashes.SHA1() if version == "1" else hashes.SHA256()
        msg["Signature"] = base64.b64encode(self.key.sign(sns_string_to_sign(msg), padding.PKCS1v15(), algo)).decode()
        return msg


def _ses_notification(to: str = CANARY_EMAIL, topic: str = TOPIC, encoding: str = "BASE64") -> dict[str, Any]:
    raw = _raw(to).encode()
    note = {
        "notificationType": "Received",
        "mail": {"timestamp": "2026-11-23T10:00:00.000Z", "source": "notice@phish.test", "messageId": uuid.uuid4().hex,
                 "destination": [to], "headersTruncated": False,
                 "commonHeaders": {"from": ["Coupang <notice@phish.test>"], "to": [to], "subject": "Refund pending"}},
        "receipt": {"timestamp": "2026-11-23T10:00:00.000Z", "processingTimeMillis": 420, "recipients": [to],
                    "spamVerdict": {"status": "PASS"}, "virusVerdict": {"status": "PASS"},
                    "spfVerdict": {"status": "FAIL"}, "dkimVerdict": {"status": "GRAY"}, "dmarcVerdict": {"status": "FAIL"},
                    "action": {"type": "SNS", "topicArn": topic, "encoding": encoding}},
        "content": base64.b64encode(raw).decode() if encoding == "BASE64" else raw.decode(),
    }
    return {"Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": topic,
            "Subject": "Amazon SES Email Receipt Notification", "Message": json.dumps(note),
            "Timestamp": "2026-11-23T10:00:01.000Z"}


@pytest.fixture
async def sns() -> Any:
    fake = _FakeSns()
    await fake.start()
    yield fake
    assert fake.runner is not None
    await fake.runner.cleanup()


async def test_ses_notifications_signature_v1_and_v2(env: ContactEnv, sns: _FakeSns) -> None:
    """SES receipt notifications signed with SignatureVersion 1 (SHA1) and 2 (SHA256) are verified
    against the certificate fetched once (then cached) and commit events with SES's verdicts."""
    base = await env.serve([SesInbound(env.runtime.config.contact, cert_fetch_base=sns.base)])
    headers = {"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": "Notification"}
    for version, to, enc in (("1", CANARY_EMAIL, "BASE64"), ("2", OTHER_EMAIL, "UTF8")):
        body = json.dumps(sns.sign(_ses_notification(to, encoding=enc), version))
        assert (await _post(base + "/inbound/ses", data=body, headers=headers))[0] == 200
    a, b = await env.events()
    assert (a["canary_id"], b["canary_id"]) == (env.canary_id, env.other_id)
    assert (a["evidence"]["spf"], a["evidence"]["dkim"], a["evidence"]["verdicts_by"]) == ("fail", "gray", "ses")
    assert a["origin"]["client_addr"] == "192.0.2.55" and a["evidence"]["urls"] == ["https://refund.phish.test/claim"]
    assert sum(r.endswith(".pem") for r in sns.requests) == 1


async def test_ses_unknown_cert_host_is_refused_without_a_request(env: ContactEnv, sns: _FakeSns) -> None:
    """A SigningCertURL outside sns.<region>.amazonaws.com (or http, or with a port) is refused with
    403 before any request is made; a topic not on the allow-list is refused too."""
    base = await env.serve([SesInbound(env.runtime.config.contact, cert_fetch_base=sns.base)])
    for cert_url in ("https://sns.us-east-1.amazonaws.com.evil.test/cert.pem", "http://sns.us-east-1.amazonaws.com/c.pem",
                     "https://sns.us-east-1.amazonaws.com:8443/c.pem", "https://evil.test/SimpleNotificationService.pem"):
        msg = sns.sign({**_ses_notification(), "SigningCertURL": cert_url})
        assert (await _post(base + "/inbound/ses", data=json.dumps(msg)))[0] == 403
    other_topic = sns.sign(_ses_notification(topic="arn:aws:sns:us-east-1:999999999999:attacker"))
    assert (await _post(base + "/inbound/ses", data=json.dumps(other_topic)))[0] == 403
    assert sns.requests == []
    text = await env.metrics()
    assert metric(text, "canary_rejects_total", source="ses", reason="unknown_cert_host") == 4
    assert metric(text, "canary_rejects_total", source="ses", reason="topic_not_allowed") == 1
    assert await env.events() == []


async def test_ses_forged_signature_and_malformed(env: ContactEnv, sns: _FakeSns) -> None:
    """A notification altered after signing, or signed by another key, is refused (403); a body that
    is not an SNS message gets 400."""
    base = await env.serve([SesInbound(env.runtime.config.contact, cert_fetch_base=sns.base)])
    altered = sns.sign(_ses_notification())
    altered["Message"] = altered["Message"].replace("Refund", "Rfund")
    assert (await _post(base + "/inbound/ses", data=json.dumps(altered)))[0] == 403
    other = _FakeSns()
    assert (await _post(base + "/inbound/ses", data=json.dumps(other.sign(_ses_notification()))))[0] == 403
    assert (await _post(base + "/inbound/ses", data="{not json"))[0] == 400
    assert (await _post(base + "/inbound/ses", data=json.dumps({"Type": "Notification"})))[0] == 400
    assert await env.events() == []
    assert metric(await env.metrics(), "canary_rejects_total", source="ses", reason="bad_signature") == 2


async def test_ses_subscription_confirmation(env: ContactEnv, sns: _FakeSns) -> None:
    """A signed SubscriptionConfirmation for an allowed topic is confirmed by GET to its SNS
    SubscribeURL; one whose SubscribeURL points elsewhere is refused without a request."""
    base = await env.serve([SesInbound(env.runtime.config.contact, cert_fetch_base=sns.base)])
    confirm = {"Type": "SubscriptionConfirmation", "MessageId": str(uuid.uuid4()), "Token": "2336412f37fb687f5d51e6e2",
               "TopicArn": TOPIC, "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
               "SubscribeURL": f"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=2336412f37fb687f5d51e6e2",
               "Timestamp": "2026-11-23T10:00:00.000Z"}
    assert (await _post(base + "/inbound/ses", data=json.dumps(sns.sign(confirm))))[0] == 200
    assert any("Action=ConfirmSubscription" in r for r in sns.requests)
    sns.requests.clear()
    evil = sns.sign({**confirm, "SubscribeURL": "https://attacker.test/?Action=ConfirmSubscription"})
    assert (await _post(base + "/inbound/ses", data=json.dumps(evil)))[0] == 403
    assert [r for r in sns.requests if "ConfirmSubscription" in r] == []


async def test_oversized_webhook_body_gets_413(make_config: MakeConfig, keyring: Keyring) -> None:
    """A webhook body over twice max_message_size is refused with 413 while streaming (the app-wide
    client_max_size is not what limits it), counted, and nothing is recorded."""
    from contact_support import close_contact_env, open_contact_env

    e = await open_contact_env(make_config, keyring, {"mailgun_signing_key": MAILGUN_KEY, "max_message_size": 4096})
    try:
        base = await e.serve([MailgunInbound(e.runtime.config.contact)])
        fields = _mailgun_fields()
        fields["body-mime"] += "X" * 10_000
        assert (await _post(base + "/inbound/mailgun", data=fields))[0] == 413
        assert (await _post(base + "/inbound/mailgun", data=_mailgun_fields()))[0] == 200
        assert len(await e.events()) == 1
        assert metric(await e.metrics(), "canary_rejects_total", source="mailgun", reason="too_big") == 1
    finally:
        await close_contact_env(e)
