"""HTTP sinks (PagerDuty, Opsgenie, Slack, Teams) against local servers speaking the documented formats."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from alerting_servers import OpsgenieServer, PagerDutyServer, RecordingServer, SlackServer, TeamsServer, make_alert
from structlog.testing import capture_logs

from canary import plugins
from canary.alerts import Alert, AlertAction
from canary.attack import attack_json
from canary.config import SinkConfig
from canary.errors import ConfigError, DeliveryError
from canary.events import EventKind
from canary.sinks import opsgenie, pagerduty, slack, teams, webhook

ROUTING_KEY = "R0UT1NGK3Y000000000000000000000A"
GENIE_KEY = "eb243592-faa2-4ba2-a551q-1afdf565c889"


def _sink(type_: str, http: aiohttp.ClientSession, **options: object) -> Any:
    cfg = SinkConfig(name=f"{type_}-1", type=type_, **options)
    return plugins.sink_types()[type_](cfg.name, plugins.sink_options(cfg, 0), http)


def test_all_sink_modules_are_registered() -> None:
    """Every sink module listed in plugins.py exists and registers its type."""
    assert {"pagerduty", "opsgenie", "slack", "teams", "email", "syslog", "webhook", "stdout"} <= set(plugins.sink_types())


async def test_pagerduty_trigger_update_resolve_share_the_dedup_key(http: aiohttp.ClientSession) -> None:
    """Trigger, escalation and resolve reach PagerDuty as one alert (same dedup_key), accepted with 202."""
    async with PagerDutyServer(ROUTING_KEY) as pd:
        sink = _sink("pagerduty", http, routing_key=ROUTING_KEY, url=pd.url)
        await sink.send(make_alert())
        await sink.send(make_alert(action=AlertAction.UPDATE, sequence=1, canary_count=120))
        await sink.send(make_alert(action=AlertAction.RESOLVE, sequence=2))
    key = make_alert().dedup_key
    assert pd.opened[key] == 1 and pd.alerts[key]["status"] == "resolved"
    bodies = [r.json() for r in pd.requests]
    assert [b["event_action"] for b in bodies] == ["trigger", "trigger", "resolve"]
    first = bodies[0]["payload"]
    assert first["severity"] == "critical" and first["class"] == "read"
    assert first["custom_details"]["origin"]["client_addr"] == "10.0.0.9"
    assert "payload" not in bodies[2]


@pytest.mark.parametrize(
    ("status", "headers", "permanent", "retry_after"),
    [(400, {}, True, None), (429, {"Retry-After": "7"}, False, 7.0), (500, {}, False, None), (503, {}, False, None),
     (404, {}, True, None)],
)
async def test_pagerduty_status_translation(http: aiohttp.ClientSession, status: int, headers: dict[str, str],
                                            permanent: bool, retry_after: float | None) -> None:
    """400/404 are permanent; 429 (with its Retry-After) and 5xx are retryable."""
    async with PagerDutyServer(ROUTING_KEY) as pd:
        pd.script.append((status, headers))
        sink = _sink("pagerduty", http, routing_key=ROUTING_KEY, url=pd.url)
        with pytest.raises(DeliveryError) as info:
            await sink.send(make_alert())
    assert (info.value.status, info.value.permanent, info.value.retry_after) == (status, permanent, retry_after)


async def test_pagerduty_invalid_event_is_permanent_and_key_never_leaks(http: aiohttp.ClientSession) -> None:
    """A wrong routing key gets PagerDuty's 400 'invalid event'; neither error, logs nor repr hold the key."""
    async with PagerDutyServer(ROUTING_KEY) as pd:
        secret = "WRONGKEYWRONGKEYWRONGKEYWRONGKEY"
        sink = _sink("pagerduty", http, routing_key=secret, url=pd.url)
        with capture_logs() as logs, pytest.raises(DeliveryError) as info:
            await sink.send(make_alert())
    assert info.value.permanent and "invalid event" in str(info.value)
    assert secret not in str(info.value) + repr(sink) + repr(sink.options) + repr(logs)


async def test_pagerduty_unreachable_is_retryable(http: aiohttp.ClientSession) -> None:
    """A refused connection is a retryable DeliveryError naming only scheme, host and port."""
    sink = _sink("pagerduty", http, routing_key=ROUTING_KEY, url="http://127.0.0.1:9/v2/enqueue?token=abc")
    with pytest.raises(DeliveryError) as info:
        await sink.send(make_alert())
    assert not info.value.permanent
    assert "127.0.0.1:9" in str(info.value) and "token" not in str(info.value)


async def test_opsgenie_alias_dedups_and_close_by_alias(http: aiohttp.ClientSession) -> None:
    """Create uses GenieKey auth and alias = dedup key; a retried trigger is de-duplicated; update adds a
    note; resolve closes the alert by alias."""
    async with OpsgenieServer(GENIE_KEY) as og:
        sink = _sink("opsgenie", http, api_key=GENIE_KEY, base_url=og.base)
        alert = make_alert(title="x" * 300)
        await sink.send(alert)
        await sink.send(alert)  # a retry after a crash
        await sink.send(make_alert(action=AlertAction.UPDATE, sequence=1, summary="ESCALATED: 500 canaries"))
        await sink.send(make_alert(action=AlertAction.RESOLVE, sequence=2))
    key = alert.dedup_key
    assert og.created[key] == 1
    assert og.alerts[key]["count"] == 2 and og.alerts[key]["status"] == "closed"
    assert og.alerts[key]["notes"] == ["ESCALATED: 500 canaries"]
    created = og.requests[0].json()
    assert created["priority"] == "P1" and len(created["message"]) == 130
    assert og.requests[-1].path.endswith(f"/{key}/close") and og.requests[-1].query == {"identifierType": "alias"}


async def test_opsgenie_regions_and_bad_key(http: aiohttp.ClientSession) -> None:
    """EU and US regions pick the documented endpoints; a wrong key is a permanent 401 without the key."""
    eu = opsgenie.Options.model_validate({"api_key": "k", "region": "eu"})
    us = opsgenie.Options.model_validate({"api_key": "k"})
    assert (eu.endpoint, us.endpoint) == ("https://api.eu.opsgenie.com", "https://api.opsgenie.com")
    async with OpsgenieServer(GENIE_KEY) as og:
        sink = _sink("opsgenie", http, api_key="not-the-key-123", base_url=og.base)
        with pytest.raises(DeliveryError) as info:
            await sink.send(make_alert())
    assert info.value.permanent and info.value.status == 401 and "not-the-key-123" not in str(info.value)


@pytest.mark.parametrize(
    "hostile",
    ["<!channel> wake up", "<https://evil.example|click me>", "a & b <@U0123> `tick` ```fence```", "&lt;!here&gt;"],
)
async def test_slack_escapes_attacker_text(http: aiohttp.ClientSession, hostile: str) -> None:
    """Query text, user and application names cannot @channel, mention or inject links in Slack."""
    async with SlackServer() as sl:
        sink = _sink("slack", http, url=sl.url)
        alert = make_alert(title=f"read by {hostile}", summary=f"read by {hostile}", actor={"user": hostile},
                           origin={"application_name": hostile}, evidence={"query": f"SELECT '{hostile}'"})
        await sink.send(alert)
    body = sl.requests[0].json()
    mrkdwn = [body["text"]]
    for block in body["blocks"]:
        if block["type"] == "section":
            mrkdwn += [block["text"]["text"]] if "text" in block else [f["text"] for f in block["fields"]]
        elif block["type"] == "context":
            mrkdwn += [e["text"] for e in block["elements"]]
    for text in mrkdwn:
        assert "<" not in text and ">" not in text, text
        assert re.search(r"&(?!amp;|lt;|gt;)", text) is None, text  # every & starts an entity we wrote
    assert slack.escape(hostile) in body["blocks"][1]["text"]["text"]
    assert slack.escape("&lt;") == "&amp;lt;"
    assert body["blocks"][0]["type"] == "header" and body["blocks"][0]["text"]["type"] == "plain_text"


async def test_slack_url_is_secret_and_errors_are_translated(http: aiohttp.ClientSession) -> None:
    """A revoked webhook (403 invalid_token) is permanent and the error does not include the token URL."""
    async with SlackServer() as sl:
        bad = sl.base + "/services/T000/B000/REVOKEDTOKEN"
        sink = _sink("slack", http, url=bad)
        with pytest.raises(DeliveryError) as info:
            await sink.send(make_alert())
        sl.script.append((429, {"Retry-After": "30"}))
        good = _sink("slack", http, url=sl.url)
        with pytest.raises(DeliveryError) as throttled:
            await good.send(make_alert())
    assert info.value.permanent and "invalid_token" in str(info.value) and "REVOKEDTOKEN" not in str(info.value)
    assert "REVOKEDTOKEN" not in repr(sink.options)
    assert throttled.value.retry_after == 30.0 and not throttled.value.permanent


async def test_teams_adaptive_card_envelope_and_literal_text(http: aiohttp.ClientSession) -> None:
    """Teams gets a message with one Adaptive Card attachment; attacker text sits in TextRuns (no Markdown)."""
    async with TeamsServer() as tm:
        sink = _sink("teams", http, url=tm.url)
        await sink.send(make_alert(actor={"user": "[click](https://evil.example)"}))
    body = tm.requests[0].json()
    att = body["attachments"][0]
    assert body["type"] == "message" and att["contentType"] == teams.CARD_CONTENT_TYPE and att["contentUrl"] is None
    card = att["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4" and card["$schema"].startswith("http://adaptivecards.io")
    runs = [i["text"] for b in card["body"] if b["type"] == "RichTextBlock" for i in b["inlines"]]
    assert "[click](https://evil.example)" in runs
    assert all("evil" not in (b.get("text") or "") for b in card["body"] if b["type"] == "TextBlock")


async def test_teams_bad_signature_is_permanent(http: aiohttp.ClientSession) -> None:
    """A workflow URL with a wrong signature is refused (401), permanent, and the signature is not in the error."""
    async with TeamsServer() as tm:
        sink = _sink("teams", http, url=tm.url.replace("SECRETSIG", "WRONGSIG"))
        with pytest.raises(DeliveryError) as info:
            await sink.send(make_alert())
    assert info.value.permanent and "WRONGSIG" not in str(info.value)


@pytest.mark.parametrize(
    ("type_", "options", "key"),
    [
        ("pagerduty", {"routing_key": ""}, "sinks[0].routing_key"),
        ("pagerduty", {"routing_key": "k", "url": "ftp://x"}, "sinks[0].url"),
        ("opsgenie", {"api_key": "k", "region": "mars"}, "sinks[0].region"),
        ("slack", {"url": "not a url"}, "sinks[0].url"),
        ("teams", {}, "sinks[0].url"),
    ],
)
def test_invalid_options_name_their_key(type_: str, options: dict[str, object], key: str) -> None:
    """A typo in a sink section fails at load time with the key path."""
    with pytest.raises(ConfigError) as info:
        plugins.sink_options(SinkConfig(name="s", type=type_, **options), 0)
    assert info.value.key == key


def test_pagerduty_body_truncates_to_documented_limits() -> None:
    """Summary is cut to 1,024 characters and the dedup key to 255, as the Events API requires."""
    opts = pagerduty.Options.model_validate({"routing_key": "k"})
    body = pagerduty.event_body(make_alert(summary="s" * 5000, dedup_key="d" * 400), "k", opts)
    assert len(body["payload"]["summary"]) == 1024 and len(body["dedup_key"]) == 255


async def test_acknowledge_reaches_pagerduty_and_opsgenie(http: aiohttp.ClientSession) -> None:
    """`canary alerts ack` notifications acknowledge the PagerDuty alert (event_action acknowledge) and
    the Opsgenie alert (POST .../acknowledge?identifierType=alias)."""
    ack = make_alert(action=AlertAction.ACKNOWLEDGE, sequence=1)
    async with PagerDutyServer(ROUTING_KEY) as pd, OpsgenieServer(GENIE_KEY) as og:
        p = _sink("pagerduty", http, routing_key=ROUTING_KEY, url=pd.url)
        o = _sink("opsgenie", http, api_key=GENIE_KEY, base_url=og.base)
        for sink in (p, o):
            await sink.send(make_alert())
            await sink.send(ack)
    assert pd.alerts[ack.dedup_key]["status"] == "acknowledged"
    assert pd.requests[-1].json() == {"routing_key": ROUTING_KEY, "event_action": "acknowledge", "dedup_key": ack.dedup_key}
    assert og.alerts[ack.dedup_key]["status"] == "acknowledged"
    assert og.requests[-1].path == f"/v2/alerts/{ack.dedup_key}/acknowledge"


ENRICHED = {"address": "203.0.113.7", "country": "KR", "country_name": "South Korea", "city": "Seoul", "asn": 4766,
            "as_org": "Korea Telecom", "rdns": "ns.kt.example", "internal": False}
FROM = "203.0.113.7 (KR, Seoul, AS4766 Korea Telecom, ns.kt.example)"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _attacked(**overrides: Any) -> Alert:
    """A credential-use alert as the dispatcher sends it: ATT&CK from alert_for, enrichment from canary.enrich."""
    fields: dict[str, Any] = {"kind": EventKind.USED, "source": "pg_honeypot", "enrichment": ENRICHED,
                              "attack": tuple(attack_json(EventKind.USED, "pg_honeypot", {}))}
    return make_alert(**{**fields, **overrides})  # type: ignore[no-any-return]


class _WebhookReceiver(RecordingServer):
    def routes(self, app: web.Application) -> None:
        app.router.add_post("/hook", self.hook)

    async def hook(self, request: web.Request) -> web.Response:
        return web.Response(status=204)


async def test_attack_and_enrichment_reach_every_http_sink(http: aiohttp.ClientSession) -> None:
    """The ATT&CK technique ids and the client address's enrichment are in every HTTP sink's payload:
    PagerDuty custom_details, Opsgenie tags and details, a Slack and a Teams line, the webhook's data."""
    alert = _attacked()
    async with PagerDutyServer(ROUTING_KEY) as pd, OpsgenieServer(GENIE_KEY) as og, SlackServer() as sl, \
            TeamsServer() as tm, _WebhookReceiver() as wh:
        await _sink("pagerduty", http, routing_key=ROUTING_KEY, url=pd.url).send(alert)
        await _sink("opsgenie", http, api_key=GENIE_KEY, base_url=og.base).send(alert)
        await _sink("slack", http, url=sl.url).send(alert)
        await _sink("teams", http, url=tm.url).send(alert)
        await _sink("webhook", http, url=wh.base + "/hook", secret=WEBHOOK_SECRET).send(alert)
    details = pd.requests[0].json()["payload"]["custom_details"]
    assert [t["id"] for t in details["attack"]] == ["T1078", "T1552"]
    assert details["attack"][0]["url"] == "https://attack.mitre.org/techniques/T1078/"
    assert details["enrichment"] == ENRICHED
    created = og.requests[0].json()
    assert created["tags"] == ["canary", "T1078", "T1552"]
    assert created["details"]["attack"] == "T1078 Valid Accounts, T1552 Unsecured Credentials"
    assert created["details"]["from"] == FROM and created["details"]["from.asn"] == "4766"
    assert all(isinstance(v, str) for v in created["details"].values())  # Opsgenie details: a map of strings
    blocks = sl.requests[0].json()["blocks"]
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
    assert f"*ATT&amp;CK:* T1078 Valid Accounts, T1552 Unsecured Credentials\n*From:* {FROM}" in texts
    card = tm.requests[0].json()["attachments"][0]["content"]
    lines = ["".join(i["text"] for i in b["inlines"]) for b in card["body"] if b["type"] == "RichTextBlock"]
    assert "ATT&CK: T1078 Valid Accounts, T1552 Unsecured Credentials" in lines and f"From: {FROM}" in lines
    seen = wh.requests[0]
    assert webhook.verify(WEBHOOK_SECRET, {k.lower(): v for k, v in seen.headers.items()}, seen.body)
    data = json.loads(seen.body)["data"]
    assert [t["id"] for t in data["attack"]] == ["T1078", "T1552"] and data["enrichment"] == ENRICHED


async def test_enrichment_text_is_escaped_and_tags_stay_within_opsgenie_limits(http: aiohttp.ClientSession) -> None:
    """An AS name from a database cannot mention @channel in Slack; Opsgenie gets at most 20 tags of at most
    50 characters even with many configured tags, and the technique ids are not lost to duplicates."""
    alert = _attacked(enrichment={**ENRICHED, "as_org": "<!channel> & co"})
    async with SlackServer() as sl, OpsgenieServer(GENIE_KEY) as og:
        await _sink("slack", http, url=sl.url).send(alert)
        await _sink("opsgenie", http, api_key=GENIE_KEY, base_url=og.base,
                    tags=["T1078", *(f"team-{i}-" + "x" * 60 for i in range(25))]).send(alert)
    text = "\n".join(b["text"]["text"] for b in sl.requests[0].json()["blocks"] if b["type"] == "section" and "text" in b)
    assert "AS4766 &lt;!channel&gt; &amp; co" in text and "<!channel>" not in text
    tags = og.requests[0].json()["tags"]
    assert len(tags) == 20 and all(len(t) <= 50 for t in tags) and tags[0] == "T1078" and len(set(tags)) == 20


async def test_stdout_alert_line_carries_attack_and_enrichment(http: aiohttp.ClientSession) -> None:
    """The stdout sink's JSON line (Alert.to_json) has the techniques and the enrichment."""
    with capture_logs() as logs:
        await _sink("stdout", http).send(_attacked())
    line = next(e for e in logs if e["event"] == "alert")
    assert [t["id"] for t in line["attack"]] == ["T1078", "T1552"] and line["enrichment"]["city"] == "Seoul"
