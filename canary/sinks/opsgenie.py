"""Opsgenie Alert API v2 (``https://api.opsgenie.com`` or ``https://api.eu.opsgenie.com``).

Requests carry ``Authorization: GenieKey <key>`` (an API-integration key). The incident's dedup key
is the Opsgenie ``alias``: Opsgenie keeps one open alert per alias, so retries and replays of the
trigger deduplicate. An escalation adds a note to the alert, and ``acknowledge`` / ``resolve`` act
on it by alias (``/v2/alerts/{alias}/close?identifierType=alias``). Opsgenie accepts requests with
``202`` and processes them asynchronously; ``400``/``401``/``402``/``403``/``404``/``422`` are
permanent, ``429`` and ``5xx`` are retried.

The ATT&CK technique ids are tags (``T1078``; Opsgenie keeps at most 20 tags of at most 50 characters:
https://docs.opsgenie.com/docs/alerts-and-alert-fields), their names and the client address's
enrichment are in ``details`` (``attack``, ``from``, ``from.country`` ...).
"""

from __future__ import annotations

import builtins
import urllib.parse
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from canary.alerts import Alert, AlertAction
from canary.events import Severity
from canary.secret import Secret, required_secret
from canary.sinks._context import attack_line, from_line, technique_ids
from canary.sinks._http import HttpSink, post, validate_http_url

REGIONS = {"us": "https://api.opsgenie.com", "eu": "https://api.eu.opsgenie.com"}
MESSAGE_MAX = 130
ALIAS_MAX = 512
DESCRIPTION_MAX = 15000
NOTE_MAX = 25000
DETAIL_VALUE_MAX = 8000
TAGS_MAX = 20
TAG_MAX = 50
PRIORITIES = {Severity.CRITICAL: "P1", Severity.ERROR: "P2", Severity.WARNING: "P3", Severity.INFO: "P5"}


class Responder(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["team", "user", "escalation", "schedule"]
    name: str


class OpsgenieOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: Secret
    region: Literal["us", "eu"] = "us"
    base_url: str | None = None  # overrides region (tests, proxies)
    responders: tuple[Responder, ...] = ()
    tags: tuple[str, ...] = ("canary",)
    user: str = "canary"
    timeout: float = Field(default=10.0, gt=0, le=120)

    _key = field_validator("api_key", mode="before")(required_secret("API key"))

    @field_validator("base_url")
    @classmethod
    def _base(cls, v: str | None) -> str | None:
        return None if v is None else validate_http_url(cls, v).rstrip("/")

    @property
    def endpoint(self) -> str:
        return self.base_url or REGIONS[self.region]


def _details(alert: Alert) -> dict[str, str]:
    """Opsgenie ``details`` is a flat map of strings."""
    out = {
        "incident_id": str(alert.incident_id),
        "canary_count": str(alert.canary_count),
        "event_count": str(alert.event_count),
        "kind": str(alert.kind),
        "first_seen": alert.first_seen.isoformat(),
        "last_seen": alert.last_seen.isoformat(),
        "canaries": ", ".join(f"{c.get('label')} ({c.get('count')})" for c in alert.canaries),
    }
    for prefix, data in (("actor", alert.actor), ("origin", alert.origin)):
        for k, v in data.items():
            if v not in (None, ""):
                out[f"{prefix}.{k}"] = str(v)[:DETAIL_VALUE_MAX]
    if alert.attack:
        out["attack"] = attack_line(alert)[:DETAIL_VALUE_MAX]
    if alert.enrichment.get("address"):
        out["from"] = from_line(alert)[:DETAIL_VALUE_MAX]
        for k, v in alert.enrichment.items():
            if k != "address" and v not in (None, ""):
                out[f"from.{k}"] = str(v)[:DETAIL_VALUE_MAX]
    if alert.drill:
        out["drill"] = alert.drill
    if alert.link:  # the Create Alert API has no link field: the incident's page goes in details
        out["incident_url"] = alert.link
    return out


def _tags(alert: Alert, options: OpsgenieOptions) -> list[str]:
    """The configured tags, the drill and the ATT&CK technique ids: distinct, within Opsgenie's limits."""
    tags: list[str] = []
    for tag in (*options.tags, *([f"drill:{alert.drill}"] if alert.drill else []), *technique_ids(alert)):
        tag = tag[:TAG_MAX]
        if tag and tag not in tags:
            tags.append(tag)
    return tags[:TAGS_MAX]


def create_body(alert: Alert, options: OpsgenieOptions) -> dict[str, Any]:
    description = alert.summary
    if alert.evidence:
        description += "\n\nEvidence:\n" + "\n".join(f"{k}: {v}" for k, v in alert.evidence.items())
    body: dict[str, Any] = {
        "message": alert.title[:MESSAGE_MAX],
        "alias": alert.dedup_key[:ALIAS_MAX],
        "description": description[:DESCRIPTION_MAX],
        "tags": _tags(alert, options),
        "details": _details(alert),
        "entity": ", ".join(str(c.get("label")) for c in alert.canaries[:3]) or alert.source,
        "source": "canary",
        "priority": PRIORITIES[alert.severity],
        "user": options.user,
    }
    if options.responders:
        body["responders"] = [r.model_dump() for r in options.responders]
    return body


class OpsgenieSink(HttpSink):
    type: ClassVar[str] = "opsgenie"
    Options: ClassVar[builtins.type[BaseModel]] = OpsgenieOptions

    options: OpsgenieOptions

    def _alias_url(self, alert: Alert, verb: str) -> str:
        alias = urllib.parse.quote(alert.dedup_key[:ALIAS_MAX], safe="")
        return f"{self.options.endpoint}/v2/alerts/{alias}/{verb}?identifierType=alias"

    async def send(self, alert: Alert) -> None:
        o = self.options
        if alert.action is AlertAction.TRIGGER:
            url, body = f"{o.endpoint}/v2/alerts", create_body(alert, o)
        elif alert.action is AlertAction.UPDATE:
            url, body = self._alias_url(alert, "notes"), {"user": o.user, "source": "canary", "note": alert.summary[:NOTE_MAX]}
        elif alert.action is AlertAction.ACKNOWLEDGE:
            url, body = self._alias_url(alert, "acknowledge"), {"user": o.user, "source": "canary", "note": alert.summary[:NOTE_MAX]}
        else:
            url, body = self._alias_url(alert, "close"), {"user": o.user, "source": "canary", "note": alert.summary[:NOTE_MAX]}
        headers = {"Authorization": f"GenieKey {o.api_key.reveal()}"}
        await post(self._http, self.name, url, json_body=body, headers=headers, timeout=o.timeout)


Options = OpsgenieOptions
SINK = OpsgenieSink
