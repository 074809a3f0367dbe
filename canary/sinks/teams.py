"""Microsoft Teams through a Workflows ("Post to a channel when a webhook request is received")
webhook: the body is a message whose one attachment is an Adaptive Card
(``contentType: application/vnd.microsoft.card.adaptive``).

Attacker-influenced text goes into ``RichTextBlock``/``TextRun`` elements, which Adaptive Cards
render literally (no Markdown, so no injected links); only canary's own labels use ``TextBlock``.
The workflow URL carries its signature in the query string and is a :class:`Secret`. Workflows
answer ``202 Accepted``; ``4xx`` (except 408/429) are permanent, ``429`` and ``5xx`` are retried.
"""

from __future__ import annotations

from typing import Any, ClassVar

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, field_validator

from canary.alerts import Alert, AlertAction
from canary.config import Secret, resolve_secret
from canary.events import Severity
from canary.sinks._http import post, validate_http_url

CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_VERSION = "1.4"
_COLORS = {Severity.CRITICAL: "Attention", Severity.ERROR: "Attention", Severity.WARNING: "Warning", Severity.INFO: "Default"}
_PREFIX = {AlertAction.TRIGGER: "", AlertAction.UPDATE: "Escalated: ", AlertAction.ACKNOWLEDGE: "Acknowledged: ",
           AlertAction.RESOLVE: "Resolved: "}
VALUE_MAX = 2000


class Options(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: Secret
    timeout: float = Field(default=10.0, gt=0, le=120)

    @field_validator("url", mode="before")
    @classmethod
    def _url(cls, v: object) -> Secret:
        s = resolve_secret(v)
        validate_http_url(cls, s.reveal())
        return s


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
    return {"$schema": CARD_SCHEMA, "type": "AdaptiveCard", "version": CARD_VERSION, "body": body}


def message(alert: Alert) -> dict[str, Any]:
    return {"type": "message", "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": card(alert)}]}


class TeamsSink:
    type: ClassVar[str] = "teams"
    Options: ClassVar[type[BaseModel]] = Options

    def __init__(self, name: str, options: Any, http: aiohttp.ClientSession) -> None:
        self.name = name
        self.options: Options = options
        self._http = http

    def __repr__(self) -> str:
        return f"TeamsSink(name={self.name!r})"

    async def send(self, alert: Alert) -> None:
        await post(self._http, self.name, self.options.url.reveal(), json_body=message(alert), timeout=self.options.timeout)


SINK = TeamsSink
