"""Every alert links to its incident's page (``<listener.public_url>/incidents/<id>``) in each sink's
documented place for links, and carries no link when public_url is not set."""

from __future__ import annotations

import dataclasses
import json
from email.message import EmailMessage
from typing import Any

import pytest
from alerting_servers import make_alert

from canary.alerts import Alert, AlertAction, alert_for, incident_link
from canary.sinks import email, opsgenie, pagerduty, slack, syslog, teams

LINK = "https://canary.example.com/incidents/7"


def _mail_bodies(msg: EmailMessage) -> str:
    """The text and the HTML body of a multipart/alternative alert mail, one after the other."""
    return "".join(part.get_content() for part in msg.iter_parts())


def _renderings(alert: Alert) -> dict[str, Any]:
    return {
        "pagerduty": pagerduty.event_body(alert, "k" * 32, pagerduty.PagerDutyOptions(routing_key="k" * 32)),
        "opsgenie": opsgenie.create_body(alert, opsgenie.OpsgenieOptions(api_key="x")),
        "slack": slack.message(alert),
        "teams": teams.message(alert),
        "email": _mail_bodies(email.build_message(alert, email.Options(host="mx.example.com", from_addr="canary@example.com",
                                                                       to=("oncall@example.com",)))),
        "syslog": syslog.format_message(alert, syslog.Options(host="siem", format="cef")).decode(),
        "webhook": alert.to_json(),
    }


def test_link_in_every_sink() -> None:
    """PagerDuty: top-level links [{href, text}]; Opsgenie: details.incident_url; Slack: a link button in
    an actions block; Teams: an Action.OpenUrl; e-mail: an Incident: line; CEF: cs4 incidentUrl; the
    webhook (and stdout) JSON: link."""
    got = _renderings(make_alert(link=LINK))
    assert got["pagerduty"]["links"] == [{"href": LINK, "text": "Canary incident 7"}]
    assert got["opsgenie"]["details"]["incident_url"] == LINK
    actions = [b for b in got["slack"]["blocks"] if b["type"] == "actions"]
    assert actions[0]["elements"][0]["type"] == "button" and actions[0]["elements"][0]["url"] == LINK
    card = got["teams"]["attachments"][0]["content"]
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open incident", "url": LINK}]
    assert f"Incident: {LINK}\n" in got["email"]
    assert "cs4Label=incidentUrl cs4=https://canary.example.com/incidents/7" in got["syslog"]
    assert got["webhook"]["link"] == LINK
    assert Alert.from_json(got["webhook"]).link == LINK


def test_no_link_without_public_url() -> None:
    """Without listener.public_url nothing links anywhere (no empty or relative link)."""
    for name, rendered in _renderings(make_alert()).items():
        text = rendered if isinstance(rendered, str) else json.dumps(rendered)
        assert "/incidents/" not in text, name
    assert "links" not in _renderings(make_alert())["pagerduty"]


@pytest.mark.parametrize(("public_url", "want"), [("https://canary.example.com", LINK),
                                                  ("https://canary.example.com/", LINK),
                                                  ("https://ops.example.com/canary", "https://ops.example.com/canary/incidents/7"),
                                                  ("", None)])
def test_alert_for_builds_the_link(public_url: str, want: str | None) -> None:
    """alert_for links to <public_url>/incidents/<id> whatever the trailing slash; no public_url, no link."""
    base = dataclasses.asdict(make_alert())
    inc = {"id": 7, "dedup_key": base["dedup_key"], "kind": "read", "severity": "critical", "title": base["title"],
           "canary_ids": [1, 2, 3], "event_count": 3, "first_seen": base["first_seen"], "last_seen": base["last_seen"],
           "actor": {}, "origin": {}, "evidence": {}, "drill": None, "source": "jsonlog"}
    assert alert_for(inc, [], AlertAction.TRIGGER, 0, public_url).link == want == incident_link(public_url, 7)
