"""Phone contact: Twilio SMS/voice and Vonage SMS webhooks against the real listener and store,
signed with the providers' real schemes (checked against their published test vectors)."""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from contact_support import CANARY_PHONE, OTHER_PHONE, ContactEnv, contact_fixture, metric

from canary.contact.phone import TwilioInbound, VonageInbound, twilio_signature, vonage_signature

TOKEN = "12345abcdefauthtoken"
PUBLIC = "https://canary.example.com"
VONAGE_SECRET = "vonage-signature-secret"
VOICE = '<?xml version="1.0" encoding="UTF-8"?><Response><Say>Leave a message.</Say><Record maxLength="30"/></Response>'

env = contact_fixture({"twilio_auth_token": TOKEN, "twilio_voice_twiml": VOICE,
                       "vonage_signature_secret": VONAGE_SECRET, "vonage_signature_method": "sha256",
                       "known_senders": [{"name": "call-centre", "callers": ["+8215880000*"]}]})


@pytest.mark.parametrize(("caller", "expected"), [
    ("+12349013030", "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),  # Twilio's original documented example
    ("+14158675310", "GvWf1cFY/Q7PnoempGyD5oXAezc="),  # the current documentation's example
])
def test_twilio_signature_matches_published_vectors(caller: str, expected: str) -> None:
    """X-Twilio-Signature over URL + sorted params reproduces Twilio's published examples."""
    params = [("CallSid", "CA1234567890ABCDE"), ("Caller", caller), ("Digits", "1234"), ("From", caller),
              ("To", "+18005551212")]
    assert twilio_signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", params) == expected


def test_vonage_signature_matches_sdk_vector() -> None:
    """The "MD5 hash" signature reproduces the Vonage SDK's test vector; HMAC methods differ from it."""
    params = {"a": "1", "b": "2", "timestamp": "1461605396"}
    assert vonage_signature("secret", "md5hash", params) == "6af838ef94998832dbfc29020b564830"
    assert vonage_signature("secret", "sha256", params) != vonage_signature("secret", "md5", params)


async def _twilio(base: str, path: str, params: dict[str, str], *, token: str = TOKEN, url: str | None = None,
                  signature: str | None = None) -> tuple[int, str, float]:
    sig = signature if signature is not None else twilio_signature(token, url or PUBLIC + path, list(params.items()))
    headers = {"X-Twilio-Signature": sig} if sig else {}
    t0 = time.perf_counter()
    async with aiohttp.ClientSession() as s, s.post(base + path, data=params, headers=headers) as r:
        return r.status, await r.text(), time.perf_counter() - t0


def _sms(to: str = CANARY_PHONE, sender: str = "+821055501234", body: str = "[Web발신] 쿠팡 결제 확인: https://cpang.phish.test") -> dict[str, str]:
    return {"MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": "AC" + "0" * 32, "From": sender, "To": to, "Body": body,
            "NumMedia": "0", "FromCountry": "KR", "FromCity": "SEOUL", "ApiVersion": "2010-04-01"}


async def test_twilio_sms_to_canary_pages_with_text(env: ContactEnv) -> None:
    """A signed inbound SMS to a canary number is committed before the empty TwiML answer, which
    comes back well within Twilio's 15 s; the alert holds caller, country and text."""
    base = await env.serve([TwilioInbound(env.runtime.config.contact, PUBLIC)])
    status, text, took = await _twilio(base, "/twilio/sms", _sms(body=f"{CANARY_PHONE} 고객님 결제 확인: https://cpang.phish.test"))
    assert status == 200 and text == '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    assert took < 1.0
    [ev] = await env.events()
    assert ev["canary_id"] == env.canary_id and ev["source"] == "twilio" and ev["severity"] == "critical"
    assert ev["actor"] == {"caller": "+821055501234"} and ev["origin"] == {"country": "KR"}
    assert ev["evidence"]["channel"] == "sms" and "cpang.phish.test" in ev["evidence"]["text"]
    assert CANARY_PHONE not in str(dict(ev)) and CANARY_PHONE[1:] not in str(dict(ev))
    assert ev["evidence"]["text"].startswith("[canary] ")
    assert await env.runtime.pool.fetchval("SELECT count(*) FROM outbox") == 1


async def test_twilio_voice_call_and_recording_join_one_incident(env: ContactEnv) -> None:
    """A call gets the configured voice TwiML; the recording callback (Hangup answer) and the status
    callback are recorded into the same incident, which pages once."""
    base = await env.serve([TwilioInbound(env.runtime.config.contact, PUBLIC)])
    call = {"CallSid": "CA" + uuid.uuid4().hex, "AccountSid": "AC" + "0" * 32, "From": "+821055509999",
            "To": CANARY_PHONE, "CallStatus": "ringing", "Direction": "inbound", "CallerCountry": "KR",
            "FromCountry": "KR", "ApiVersion": "2010-04-01"}
    status, text, _ = await _twilio(base, "/twilio/voice", call)
    assert status == 200 and text == VOICE
    rec = {**call, "CallStatus": "completed", "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/RE1",
           "RecordingSid": "RE1", "RecordingDuration": "12"}
    status, text, _ = await _twilio(base, "/twilio/voice", rec)
    assert status == 200 and "<Hangup/>" in text
    status, _, _ = await _twilio(base, "/twilio/voice/status", {**call, "CallStatus": "completed", "CallDuration": "20"})
    assert status == 204
    evs = await env.events()
    assert len(evs) == 3 and len({e["incident_id"] for e in evs}) == 1
    assert evs[1]["evidence"]["recording_url"].endswith("/RE1") and evs[2]["evidence"]["call_status"] == "completed"
    assert await env.runtime.pool.fetchval("SELECT count(*) FROM outbox") == 1


async def test_twilio_forged_missing_and_wrong_url(env: ContactEnv) -> None:
    """Signatures made with another token, for another URL, or absent are refused with 403 and
    counted; nothing is recorded."""
    base = await env.serve([TwilioInbound(env.runtime.config.contact, PUBLIC)])
    assert (await _twilio(base, "/twilio/sms", _sms(), token="not-the-token"))[0] == 403
    assert (await _twilio(base, "/twilio/sms", _sms(), url="https://attacker.test/twilio/sms"))[0] == 403
    assert (await _twilio(base, "/twilio/sms", _sms(), signature=""))[0] == 403
    params = _sms()
    signed = twilio_signature(TOKEN, PUBLIC + "/twilio/sms", list(params.items()))
    params["Body"] = "tampered"
    assert (await _twilio(base, "/twilio/sms", params, signature=signed))[0] == 403
    assert await env.events() == []
    text = await env.metrics()
    assert metric(text, "canary_rejects_total", source="twilio", reason="bad_signature") == 3
    assert metric(text, "canary_rejects_total", source="twilio", reason="missing_signature") == 1
    assert metric(text, "canary_requests_total", component="twilio", code="403") == 4


async def test_twilio_default_port_variant_and_unknown_number(env: ContactEnv) -> None:
    """A signature over the URL with the explicit default port verifies; an SMS to a number that is
    not a canary is answered (no retry) and counted, not recorded."""
    base = await env.serve([TwilioInbound(env.runtime.config.contact, PUBLIC)])
    assert (await _twilio(base, "/twilio/sms", _sms(), url="https://canary.example.com:443/twilio/sms"))[0] == 200
    assert (await _twilio(base, "/twilio/sms", _sms(to="+821000000000")))[0] == 200
    assert len(await env.events()) == 1
    assert metric(await env.metrics(), "canary_rejects_total", source="twilio", reason="unknown_recipient") == 1


async def test_known_call_centre_number_is_expected(env: ContactEnv) -> None:
    """An SMS from the company's own call-centre range is recorded as expected (info, suppressed)."""
    base = await env.serve([TwilioInbound(env.runtime.config.contact, PUBLIC)])
    assert (await _twilio(base, "/twilio/sms", _sms(sender="+82158800001")))[0] == 200
    [ev] = await env.events()
    assert ev["severity"] == "info" and ev["evidence"]["expected"] is True
    assert ev["suppressed_by"] == "known-sender:call-centre"
    assert await env.runtime.pool.fetchval("SELECT count(*) FROM outbox") == 0


def _vonage(to: str = CANARY_PHONE, *, ts: float | None = None, nonce: str | None = None,
            secret: str = VONAGE_SECRET) -> dict[str, str]:
    p = {"msisdn": "821055501234", "to": to.lstrip("+"), "messageId": "1600000" + uuid.uuid4().hex[:9], "text": "Your parcel is held: https://dlvr.phish.test",
         "type": "text", "keyword": "YOUR", "api-key": "abcd1234", "message-timestamp": "2026-11-23 10:00:00",
         "timestamp": str(int(ts if ts is not None else time.time())), "nonce": nonce or str(uuid.uuid4())}
    p["sig"] = vonage_signature(secret, "sha256", p)
    return p


async def test_vonage_signed_sms_json_and_get(env: ContactEnv) -> None:
    """Signed inbound SMS as POST JSON and as GET query are verified and recorded (204)."""
    base = await env.serve([VonageInbound(env.runtime.config.contact)])
    async with aiohttp.ClientSession() as s:
        async with s.post(base + "/vonage/sms", json=_vonage()) as r:
            assert r.status == 204
        async with s.get(base + "/vonage/sms?" + urlencode(_vonage(OTHER_PHONE))) as r:
            assert r.status == 204
    a, b = await env.events()
    assert (a["canary_id"], b["canary_id"]) == (env.canary_id, env.other_id)
    assert a["actor"] == {"caller": "+821055501234"} and "dlvr.phish.test" in a["evidence"]["text"]


async def test_vonage_forged_stale_replayed_unknown(env: ContactEnv) -> None:
    """A wrong secret, a stale timestamp and a reused nonce get 401; a non-canary number gets 204;
    each is counted by reason and only the genuine message is recorded."""
    base = await env.serve([VonageInbound(env.runtime.config.contact)])
    good = _vonage()

    async def post(p: dict[str, Any]) -> int:
        async with aiohttp.ClientSession() as s, s.post(base + "/vonage/sms", data=p) as r:
            return r.status

    assert await post(good) == 204
    assert await post(good) == 401  # same nonce again
    assert await post(_vonage(secret="wrong")) == 401
    assert await post(_vonage(ts=time.time() - 3600)) == 401
    assert await post({k: v for k, v in _vonage().items() if k != "sig"}) == 401
    assert await post(_vonage(to="+821000000000")) == 204
    assert len(await env.events()) == 1
    text = await env.metrics()
    for reason in ("replayed", "bad_signature", "stale", "missing_signature", "unknown_recipient"):
        assert metric(text, "canary_rejects_total", source="vonage", reason=reason) == 1, reason


async def test_flood_of_1000_sms_webhooks(env: ContactEnv) -> None:
    """1,000 concurrent Twilio SMS webhooks (a quarter forged, some to unknown numbers): every answer
    code is right, /metrics counts them, the listener stays up, and every genuine SMS is recorded."""
    import asyncio

    base = await env.serve([TwilioInbound(env.runtime.config.contact, PUBLIC)])
    plan = []
    for i in range(1000):
        if i % 4 == 0:
            plan.append((403, _sms(), "forged-token"))
        elif i % 10 == 1:
            plan.append((200, _sms(to="+821000000000"), TOKEN))
        else:
            plan.append((200, _sms(to=[CANARY_PHONE, OTHER_PHONE][i % 2], sender=f"+8210555{i:05d}"), TOKEN))
    sem = asyncio.Semaphore(50)
    async with aiohttp.ClientSession() as s:
        async def one(params: dict[str, str], token: str) -> int:
            sig = twilio_signature(token, PUBLIC + "/twilio/sms", list(params.items()))
            async with sem, s.post(base + "/twilio/sms", data=params, headers={"X-Twilio-Signature": sig}) as r:
                await r.read()
                return r.status

        codes = await asyncio.gather(*(one(p, t) for _, p, t in plan))
    assert codes == [c for c, _, _ in plan]
    genuine = sum(1 for c, p, _ in plan if c == 200 and p["To"] != "+821000000000")
    assert await env.runtime.pool.fetchval("SELECT count(*) FROM events WHERE source = 'twilio'") == genuine
    assert await env.runtime.pool.fetchval("SELECT count(*) FROM incidents") == genuine  # one per sender
    text = await env.metrics()
    assert metric(text, "canary_requests_total", component="twilio", code="200") == codes.count(200)
    assert metric(text, "canary_rejects_total", source="twilio", reason="bad_signature") == codes.count(403)
    assert metric(text, "canary_events_total", source="twilio", kind="contacted") == genuine
    async with aiohttp.ClientSession() as s, s.get(base + "/healthz") as r:
        assert r.status == 200
