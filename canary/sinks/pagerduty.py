"""PagerDuty Events API v2 (``POST https://events.pagerduty.com/v2/enqueue``).

One incident is one PagerDuty alert: every notification carries the incident's ``dedup_key``, so a
retried trigger, an escalation ``update`` (sent as another ``trigger``, which PagerDuty appends to
the open alert) and a replay after a crash all land on the same alert; ``resolve`` and
``acknowledge`` close or acknowledge it. PagerDuty answers ``202`` when it accepted the event,
``400`` for an invalid event (permanent: retrying cannot fix it), ``429`` when the integration is
throttled and ``5xx`` on its own trouble (both retried with backoff by the outbox).

The routing key is a :class:`~canary.config.Secret`; it is only ever placed in the request body.
With ``listener.public_url`` set, a trigger carries the incident's page in ``links`` (``[{"href", "text"}]``,
a top-level field of the event: https://developer.pagerduty.com/docs/events-api-v2/trigger-events/).
``custom_details`` (free-form JSON) carries the ATT&CK techniques (``attack``) and what is known about the
client address (``enrichment``).
"""

from __future__ import annotations

import builtins
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from canary.alerts import Alert, AlertAction
from canary.secret import Secret, required_secret
from canary.sinks._http import HttpSink, post, validate_http_url

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_MAX = 1024  # PagerDuty truncates payload.summary at 1024 characters
DEDUP_MAX = 255

_ACTIONS = {
    AlertAction.TRIGGER: "trigger",
    AlertAction.UPDATE: "trigger",  # same dedup_key: appended to the open alert
    AlertAction.ACKNOWLEDGE: "acknowledge",
    AlertAction.RESOLVE: "resolve",
}


class PagerDutyOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    routing_key: Secret
    url: str = DEFAULT_URL
    source: str = ""  # payload.source; default: the alert's origin node or source
    component: str = "canary"
    timeout: float = Field(default=10.0, gt=0, le=120)

    _key = field_validator("routing_key", mode="before")(required_secret("routing key"))

    _url = field_validator("url")(validate_http_url)


def event_body(alert: Alert, routing_key: str, options: PagerDutyOptions) -> dict[str, Any]:
    """The Events API v2 request body for one notification."""
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": _ACTIONS[alert.action],
        "dedup_key": alert.dedup_key[:DEDUP_MAX],
    }
    if alert.action in (AlertAction.TRIGGER, AlertAction.UPDATE):
        source = options.source or str(alert.origin.get("node") or alert.origin.get("datastore") or alert.source or "canary")
        body["payload"] = {
            "summary": alert.summary[:SUMMARY_MAX],
            "source": source,
            "severity": str(alert.severity),
            "timestamp": alert.first_seen.isoformat(),
            "component": options.component,
            "group": ", ".join(str(c.get("label")) for c in alert.canaries[:3]) or alert.source,
            "class": str(alert.kind),
            "custom_details": {
                "incident_id": alert.incident_id,
                "notification": alert.sequence,
                "canary_count": alert.canary_count,
                "event_count": alert.event_count,
                "first_seen": alert.first_seen.isoformat(),
                "last_seen": alert.last_seen.isoformat(),
                "actor": dict(alert.actor),
                "origin": dict(alert.origin),
                "canaries": [dict(c) for c in alert.canaries],
                "evidence": dict(alert.evidence),
                "drill": alert.drill,
                "attack": [dict(t) for t in alert.attack],  # ATT&CK techniques (id, name, url, tactics)
                "enrichment": dict(alert.enrichment),  # the client address: country, city, AS, rDNS, internal
            },
        }
        body["client"] = "canary"
        if alert.link:
            body["links"] = [{"href": alert.link, "text": f"Canary incident {alert.incident_id}"}]
    return body


class PagerDutySink(HttpSink):
    type: ClassVar[str] = "pagerduty"
    Options: ClassVar[builtins.type[BaseModel]] = PagerDutyOptions

    options: PagerDutyOptions

    async def send(self, alert: Alert) -> None:
        body = event_body(alert, self.options.routing_key.reveal(), self.options)
        await post(self._http, self.name, self.options.url, json_body=body, timeout=self.options.timeout)


Options = PagerDutyOptions
SINK = PagerDutySink
