"""Microsoft Teams through a Workflows ("Post to a channel when a webhook request is received")
webhook: the body is a message whose one attachment is an Adaptive Card
(``contentType: application/vnd.microsoft.card.adaptive``).

Attacker-influenced text goes into ``RichTextBlock``/``TextRun`` elements, which Adaptive Cards
render literally (no Markdown, so no injected links); only canary's own labels use ``TextBlock``.
The workflow URL carries its signature in the query string and is a :class:`Secret`. Workflows
answer ``202 Accepted``; ``4xx`` (except 408/429) are permanent, ``429`` and ``5xx`` are retried.
With ``listener.public_url`` set, the card's ``actions`` hold an ``Action.OpenUrl`` to the incident's page
(https://learn.microsoft.com/adaptive-cards/schema-explorer/action-open-url).
Below the summary, ``ATT&CK: T1078 Valid Accounts`` and ``From: 203.0.113.7 (KR, Seoul, AS4766 Korea Telecom)``.
"""

from __future__ import annotations

import builtins
from typing import Any, ClassVar

from pydantic import BaseModel

from canary.alerts import Alert, AlertAction
from canary.events import Severity
from canary.sinks._context import attack_line, from_line
from canary.sinks._http import SecretUrlOptions, SecretUrlSink

CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_VERSION = "1.4"
_COLORS = {Severity.CRITICAL: "Attention", Severity.ERROR: "Attention", Severity.WARNING: "Warning", Severity.INFO: "Default"}
_PREFIX = {AlertAction.TRIGGER: "", AlertAction.UPDATE: "Escalated: ", AlertAction.ACKNOWLEDGE: "Acknowledged: ",
           AlertAction.RESOLVE: "Resolved: "}
VALUE_MAX = 2000


class Options(SecretUrlOptions):
    """``url`` (the webhook URL, a secret) and ``timeout``."""


def literal(text: object, **style: Any) -> dict[str, Any]:
    """A RichTextBlock holding ``text`` as one TextRun: rendered as-is, never as Markdown."""
    return {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": str(text)[:VALUE_MAX], **style}]}


def _labelled(label: str, value: object) -> dict[str, Any]:
    return {"type": "RichTextBlock", "inlines": [
        {"type": "TextRun", "text": f"{label}: ", "weight": "Bolder"},
        {"type": "TextRun", "text": str(value)[:VALUE_MAX], "fontType": "Monospace"},
    ]}


def card(alert: Alert) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        literal(_PREFIX[alert.action] + alert.title, size="Large", weight="Bolder", color=_COLORS[alert.severity]),
        literal(alert.summary),
        *(_labelled(label, text) for label, text in (("ATT&CK", attack_line(alert)), ("From", from_line(alert))) if text),
        {"type": "FactSet", "facts": [
            {"title": "Severity", "value": str(alert.severity)},
            {"title": "Canaries", "value": f"{alert.canary_count} in {alert.event_count} event(s)"},
            {"title": "First seen", "value": alert.first_seen.isoformat()},
            {"title": "Incident", "value": f"{alert.incident_id} ({alert.action} #{alert.sequence})"},
        ]},
    ]
    for prefix, data in (("actor", alert.actor), ("origin", alert.origin), ("evidence", alert.evidence)):
        for k, v in data.items():
            if v not in (None, ""):
                body.append(_labelled(f"{prefix}.{k}", v))
    for c in alert.canaries[:10]:
        body.append(_labelled("canary", f"{c.get('label')} × {c.get('count')}"))
    if alert.drill:
        body.append(_labelled("drill", alert.drill))
    out: dict[str, Any] = {"$schema": CARD_SCHEMA, "type": "AdaptiveCard", "version": CARD_VERSION, "body": body}
    if alert.link:
        out["actions"] = [{"type": "Action.OpenUrl", "title": "Open incident", "url": alert.link}]
    return out


def message(alert: Alert) -> dict[str, Any]:
    return {"type": "message", "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": card(alert)}]}


class TeamsSink(SecretUrlSink):
    type: ClassVar[str] = "teams"
    Options: ClassVar[builtins.type[BaseModel]] = Options
    render = staticmethod(message)


SINK = TeamsSink
