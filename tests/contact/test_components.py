"""Contact configuration, component wiring in the default listener, and the shared parsing helpers."""

from __future__ import annotations

import aiohttp
import aiosmtplib
import pytest
from contact_support import CANARY_EMAIL, CANARY_PHONE, MAIL_DOMAIN, close_contact_env, metric, open_contact_env
from structlog.testing import capture_logs
from testkit import MakeConfig

from canary.config import from_mapping
from canary.contact.http import parse_form
from canary.contact.mime import extract_urls, normalize_phone, parse_mail, received_ip
from canary.contact.phone import twilio_signature
from canary.contact.senders import KnownSenders
from canary.contact.sources import SOURCES
from canary.contact.verdicts import Verdicts
from canary.crypto import Keyring
from canary.errors import ConfigError
from canary.plugins import build_components

ALL = {"smtp": True, "smtp_port": 0, "sendgrid_basic_auth": "u:p", "mailgun_signing_key": "mg-key",
       "ses_topics": ["arn:aws:sns:eu-west-1:1:t"], "twilio_auth_token": "tw-token-secret",
       "vonage_signature_secret": "vn-secret"}


def test_components_follow_the_contact_section() -> None:
    """Each source is enabled by its own setting; nothing is enabled by default."""
    assert build_components(SOURCES, from_mapping({})) == []
    cfg = from_mapping({"contact": {"mail_domains": [MAIL_DOMAIN], **ALL}, "listener": {"public_url": "https://c.example"}})
    assert [c.name for c in build_components(SOURCES, cfg)] == ["smtp", "sendgrid", "mailgun", "ses", "twilio", "vonage"]


def test_twilio_needs_public_url() -> None:
    """Twilio signs the URL it calls, so enabling it without listener.public_url is a config error."""
    with pytest.raises(ConfigError) as info:
        build_components(SOURCES, from_mapping({"contact": {"twilio_auth_token": "x"}}))
    assert info.value.key == "listener.public_url"


@pytest.mark.parametrize(("contact", "message"), [
    ({"tls_cert": "/x.pem"}, "tls_cert and tls_key must be given together"),
    ({"require_starttls": True}, "require_starttls needs tls_cert"),
    ({"smtp": True}, "needs at least one entry in mail_domains"),
    ({"twilio_voice_twiml": "<Say>hi</Say>"}, "<Response> root"),
    ({"twilio_voice_twiml": "<Response>"}, "not well-formed XML"),
    ({"known_senders": [{"name": "empty"}]}, "needs senders, callers or networks"),
    ({"known_senders": [{"name": "n", "networks": ["not-a-net"]}]}, "does not appear to be an IPv4 or IPv6 network"),
    ({"vonage_signature_method": "crc32"}, "vonage_signature_method"),
    ({"smtp_prot": 25}, "unknown key"),
])
def test_contact_config_errors(contact: dict[str, object], message: str) -> None:
    """Invalid [contact] settings fail at load with their key path and a specific message."""
    with pytest.raises(ConfigError) as info:
        from_mapping({"contact": contact})
    assert message in str(info.value) and "contact" in str(info.value)


def test_contact_secrets_are_masked() -> None:
    """Webhook secrets are Secret values: repr of the config never shows them."""
    cfg = from_mapping({"contact": {"mailgun_signing_key": "mg-very-secret", "twilio_auth_token": "tw-very-secret"}})
    assert "very-secret" not in repr(cfg)
    assert cfg.contact.mailgun_signing_key is not None and cfg.contact.mailgun_signing_key.reveal() == "mg-very-secret"


async def test_default_listener_runs_contact_sources(make_config: MakeConfig, keyring: Keyring) -> None:
    """The listener built from configuration alone starts the SMTP server and mounts the webhooks;
    a forged Twilio request and a genuine one never put the auth token in logs or rejects."""
    e = await open_contact_env(make_config, keyring, ALL)
    try:
        with capture_logs() as logs:
            base = await e.serve(None)  # None: default_components(runtime)
            assert e.listener is not None
            smtp = next(c for c in e.listener.components if c.name == "smtp")
            await aiosmtplib.send(f"Subject: hi\r\nTo: {CANARY_EMAIL}\r\n\r\nhello\r\n".encode(), sender="a@b.test",
                                  recipients=[CANARY_EMAIL], hostname="127.0.0.1", port=smtp.port, timeout=10)  # type: ignore[attr-defined]
            params = {"MessageSid": "SM1", "From": "+14155550100", "To": CANARY_PHONE, "Body": "hi"}
            async with aiohttp.ClientSession() as s:
                for sig in ("forged", twilio_signature("tw-token-secret", "https://canary.example.com/twilio/sms",
                                                       list(params.items()))):
                    async with s.post(base + "/twilio/sms", data=params, headers={"X-Twilio-Signature": sig}) as r:
                        assert r.status in (200, 403)
                async with s.get(base + "/healthz") as r:
                    health = await r.json()
        assert all(health["components"][n] for n in ("smtp", "sendgrid", "mailgun", "ses", "twilio", "vonage"))
        assert sorted(r["source"] for r in await e.events()) == ["smtp", "twilio"]
        assert "tw-token-secret" not in repr(logs)
        samples = await e.runtime.pool.fetch("SELECT sample FROM rejects")
        assert samples and all("tw-token-secret" not in (r["sample"] or "") for r in samples)
        assert metric(await e.metrics(), "canary_component_up", component="smtp") == 1
    finally:
        await close_contact_env(e)


# -- parsing helpers (should-match / should-not-match tables) ----------------------------------
@pytest.mark.parametrize(("raw", "malformed"), [
    (b"From: a@b.test\r\nSubject: ok\r\n\r\nbody\r\n", None),
    (b"From: a@b.test\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\npart\r\n--x--\r\n", None),
    (b"no headers at all, just text", "no header fields"),
    (b"", "no header fields"),
    (b"From: a@b.test\r\n\r\nnul \x00 byte", "NUL"),
    (b"From: a@b.test\r\nContent-Type: multipart/mixed\r\n\r\nno boundary", "NoBoundaryInMultipartDefect"),
    (b"From: a@b.test\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\nnever starts\r\n", "StartBoundaryNotFound"),
])
def test_parse_mail_malformed(raw: bytes, malformed: str | None) -> None:
    """parse_mail never raises; broken MIME is named in ``malformed``, valid messages are not."""
    parsed = parse_mail(raw)
    if malformed is None:
        assert parsed.malformed is None
    else:
        assert parsed.malformed is not None and malformed in parsed.malformed


def test_parse_mail_unknown_charset_and_base64_attachment() -> None:
    """An unknown charset does not stop URL extraction; base64 attachments are hashed decoded."""
    raw = (b"From: a@b.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
           b"Content-Type: text/plain; charset=x-klingon\r\n\r\nsee https://odd.test/x.\r\n--b\r\n"
           b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
           b"Content-Disposition: attachment; filename=a.bin\r\n\r\naGVsbG8=\r\n--b--\r\n")
    parsed = parse_mail(raw)
    assert parsed.urls == ("https://odd.test/x",)
    import hashlib

    assert parsed.attachments[0].sha256 == hashlib.sha256(b"hello").hexdigest()


@pytest.mark.parametrize(("text", "urls"), [
    ("visit https://a.test/x, then http://b.test/y.", ["https://a.test/x", "http://b.test/y"]),
    ('<a href="https://c.test/q?a=1&b=2">x</a>', ["https://c.test/q?a=1&b=2"]),
    ("(https://d.test/p) and again https://d.test/p", ["https://d.test/p"]),
    ("ftp://nope.test and www.nope.test", []),
])
def test_extract_urls(text: str, urls: list[str]) -> None:
    """http(s) URLs are found, de-duplicated and stripped of trailing punctuation."""
    assert extract_urls(text) == urls


@pytest.mark.parametrize(("header", "ip"), [
    ("from mail.x.test (mail.x.test [192.0.2.1]) by mx.y.test", "192.0.2.1"),
    ("from x (x [IPv6:2001:db8::1]) by y", "2001:db8::1"),
    ("from x ([not.an.ip]) by y", None),
    (None, None),
])
def test_received_ip(header: str | None, ip: str | None) -> None:
    """The connecting IP is taken from the bracketed address of a Received header."""
    assert received_ip(header) == ip


@pytest.mark.parametrize(("raw", "e164"), [
    ("+821012345678", "+821012345678"), ("821012345678", "+821012345678"), ("+1 (415) 555-0100", "+14155550100"),
    ("12", None), ("anonymous", None), ("", None),
])
def test_normalize_phone(raw: str, e164: str | None) -> None:
    """Provider number formats normalise to E.164; junk is None."""
    assert normalize_phone(raw) == e164


def test_known_senders_rules() -> None:
    """Sender rules need an authenticated domain; caller prefixes and networks match directly."""
    from canary.config import KnownSenderRule

    known = KnownSenders([KnownSenderRule(name="esp", senders=["@corp.test", "ops@partner.test"]),
                          KnownSenderRule(name="cc", callers=["+8215880000*", "+14155550100"]),
                          KnownSenderRule(name="relay", networks=["198.51.100.0/24"])])
    assert known.match_mail("news@mail.corp.test", None, Verdicts(spf="pass")) == "esp"
    assert known.match_mail("news@corp.test", None, Verdicts(spf="fail", dkim="pass", dkim_domain="corp.test")) == "esp"
    assert known.match_mail("news@corp.test", None, Verdicts(spf="fail", dkim="fail")) is None
    assert known.match_mail("ops@partner.test", None, Verdicts(spf="pass")) == "esp"
    assert known.match_mail("evil@partner.test", None, Verdicts(spf="pass")) is None
    assert known.match_mail("x@any.test", "198.51.100.7", Verdicts()) == "relay"
    # a bounce (empty envelope sender): SPF checked the HELO name, which does not vouch for the From domain
    assert known.match_mail("news@corp.test", None, Verdicts(spf="pass"), spf_domain="mx.attacker.test") is None
    assert known.match_mail("news@corp.test", None, Verdicts(spf="pass"), spf_domain="out.corp.test") == "esp"
    assert known.match_caller("+82158800001") == "cc" and known.match_caller("+14155550100") == "cc"
    assert known.match_caller("+14155550101") is None and known.match_caller(None) is None


def test_parse_form_rejects_mismatched_bodies() -> None:
    """Form bodies that do not match their declared type are errors, not empty forms."""
    with pytest.raises(ValueError):
        parse_form("application/json", b"{}")
    with pytest.raises(ValueError):
        parse_form("multipart/form-data; boundary=a", b"--b\r\n\r\nx\r\n--b--")
    assert parse_form("application/x-www-form-urlencoded", b"a=1&a=2&b=")[0] == [("a", "1"), ("a", "2"), ("b", "")]
