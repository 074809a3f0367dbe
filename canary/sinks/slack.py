"""Slack incoming webhook (``POST https://hooks.slack.com/services/...``) with Block Kit blocks.

Everything in an alert that an attacker can influence (query text, role and application names,
sender addresses) is escaped before it reaches ``mrkdwn``: Slack treats ``&``, ``<`` and ``>`` as
control characters (``<!channel>``, ``<https://x|label>``, ``<@U123>``), so they become ``&amp;``,
``&lt;`` and ``&gt;``; backticks are replaced so evidence cannot break out of its code block. The
webhook URL holds the token and is a :class:`~canary.config.Secret`; errors name only its host.
Slack answers ``200 ok``; ``400 invalid_payload``, ``403``, ``404 channel_not_found`` and
``410 channel_is_archived`` are permanent, ``429`` (with ``Retry-After``) and ``5xx`` are retried.
With ``listener.public_url`` set, an ``actions`` block holds a link button to the incident's page (Block Kit
button element, ``url`` at most 3000 characters: https://docs.slack.dev/reference/block-kit/block-elements/button-element).
Below the summary, ``ATT&CK: T1078 Valid Accounts`` and ``From: 203.0.113.7 (KR, Seoul, AS4766 Korea Telecom)``.
"""

from __future__ import annotations

import builtins
import json
from typing import Any, ClassVar

from pydantic import BaseModel

from canary.alerts import Alert, AlertAction
from canary.sinks._context import attack_line, from_line
from canary.sinks._http import SecretUrlOptions, SecretUrlSink

SECTION_MAX = 3000  # Slack's limit for a section's text
HEADER_MAX = 150  # and for a header block's plain_text
_ICONS = {AlertAction.TRIGGER: ":rotating_light:", AlertAction.UPDATE: ":arrow_double_up:",
          AlertAction.ACKNOWLEDGE: ":eyes:", AlertAction.RESOLVE: ":white_check_mark:"}


def escape(text: object) -> str:
    """Escape Slack's control characters; ``&`` first so entities are not double-escaped wrongly."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code(text: object) -> str:
    """Attacker text as inline code: escaped, with backticks neutralised so it cannot close the span."""
    return "`" + escape(str(text).replace("`", "\u02cb").replace("\n", " ")) + "`"


class Options(SecretUrlOptions):
    """``url`` (the webhook URL, a secret) and ``timeout``."""


def message(alert: Alert) -> dict[str, Any]:
    """The webhook body: ``text`` (notification fallback, also mrkdwn) plus ``blocks``."""
    icon = _ICONS[alert.action]
    fields = [
        f"*Canaries*\n{alert.canary_count} in {alert.event_count} event(s)",
        f"*Severity*\n{escape(alert.severity)}",
    ]
    for label, data in (("Actor", alert.actor), ("Origin", alert.origin)):
        items = [f"{escape(k)}: {code(v)}" for k, v in data.items() if v not in (None, "")]
        if items:
            fields.append(f"*{label}*\n" + "\n".join(items)[:1900])
    where = "\n".join(f"• {code(c.get('label'))} × {int(c.get('count') or 0)}" for c in alert.canaries[:10])
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{alert.title}"[:HEADER_MAX], "emoji": False}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} {escape(alert.summary)}"[:SECTION_MAX]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    context = [f"*{label}:* {escape(text)}" for label, text in (("ATT&amp;CK", attack_line(alert)),
                                                                   ("From", from_line(alert))) if text]
    if context:
        blocks.insert(2, {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(context)[:SECTION_MAX]}})
    if where:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Where*\n{where}"[:SECTION_MAX]}})
    if alert.evidence:
        text = json.dumps(dict(alert.evidence), ensure_ascii=False, default=str)
        evidence = escape(text.replace("```", "\u02cb\u02cb\u02cb"))[: SECTION_MAX - 30]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Evidence*\n```{evidence}```"}})
    if alert.link and len(alert.link) <= 3000:
        blocks.append({"type": "actions", "elements": [{"type": "button", "action_id": "open_incident",
                                                        "text": {"type": "plain_text", "text": "Open incident"},
                                                        "url": alert.link}]})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": escape(
        f"incident {alert.incident_id} · {alert.action} #{alert.sequence} · first seen {alert.first_seen.isoformat()}"
        + (f" · drill {alert.drill}" if alert.drill else "")
    )}]})
    return {"text": f"{icon} {escape(alert.summary)}"[:SECTION_MAX], "blocks": blocks}


class SlackSink(SecretUrlSink):
    type: ClassVar[str] = "slack"
    Options: ClassVar[builtins.type[BaseModel]] = Options
    render = staticmethod(message)


SINK = SlackSink
