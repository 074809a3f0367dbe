"""Routing and suppression rules (``[[alerting.rules]]`` in the configuration).

Rules are evaluated in order for every event; the first rule whose criteria all match decides:

* ``suppress``: the event is recorded with ``suppressed_by = <rule>``; an incident whose events are
  all suppressed is recorded and listed (``canary alerts list --all``) but pages nobody. With
  ``below_canaries = N`` the suppression holds only while the incident has fewer than N distinct
  canaries: the nightly job that touches one canary is quiet, the same job reading 500 pages.
* ``route``: the incident goes only to the named ``sinks`` (each still honours its min_severity).
* ``page``: an explicit exception that stops evaluation with the default routing (put it before a
  broader ``suppress``).

Criteria (lists match any of their items; an absent criterion matches everything; a criterion
whose fact is unknown for an event does not match):

* ``event_kinds``: read, exported, contacted, used, tamper, health
* ``canary_kinds``: the registry kind of the canary (customer, credential, contact, ...)
* ``datastores``: the canary's datastore (or ``origin.datastore`` for events without a canary)
* ``tables``: the canary's label, glob patterns (``shop/public.*``, ``*/public.customers``)
* ``roles``: ``actor.role`` or ``actor.user`` (globs)
* ``applications``: ``origin.application_name`` (globs, e.g. ``pg_dump*``)
* ``networks``: ``origin.client_addr`` inside any of these CIDRs
* ``days`` / ``between`` / ``timezone``: when the signal was observed (``between = "01:00-03:30"``
  may wrap midnight; days are those of the local start of the window)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fnmatch
import ipaddress
import re
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from canary.errors import ConfigError
from canary.events import DetectionEvent, EventKind

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_BETWEEN = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class RuleConfig(BaseModel):
    """One ``[[alerting.rules]]`` entry."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,62}$")
    action: Literal["suppress", "route", "page"] = "suppress"
    sinks: tuple[str, ...] = ()
    below_canaries: int | None = Field(default=None, ge=1)
    event_kinds: tuple[EventKind, ...] = ()
    canary_kinds: tuple[str, ...] = ()
    datastores: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    applications: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()
    days: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = ()
    between: str | None = None
    timezone: str = "UTC"

    @field_validator("networks", mode="before")
    @classmethod
    def _networks(cls, v: object) -> object:
        if isinstance(v, (list, tuple)):
            out = []
            for n in v:
                try:
                    out.append(ipaddress.ip_network(str(n), strict=False))
                except ValueError:
                    raise ValueError(f"not a network in CIDR notation: {n!r}") from None
            return tuple(out)
        return v

    @field_validator("between")
    @classmethod
    def _between(cls, v: str | None) -> str | None:
        if v is not None and not _BETWEEN.match(v.replace(" ", "")):
            raise ValueError("expected 'HH:MM-HH:MM' (24-hour clock), e.g. '01:00-03:30'")
        return v.replace(" ", "") if v else v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @model_validator(mode="after")
    def _action_fields(self) -> RuleConfig:
        if self.action == "route" and not self.sinks:
            raise ValueError("a 'route' rule needs 'sinks'")
        if self.action != "route" and self.sinks:
            raise ValueError("'sinks' applies to 'route' rules only")
        if self.below_canaries is not None and self.action != "suppress":
            raise ValueError("'below_canaries' applies to 'suppress' rules only")
        return self


@dataclasses.dataclass(frozen=True, slots=True)
class CanaryFacts:
    """What the registry says about the canary an event is about (never its secret location)."""

    kind: str
    datastore: str
    label: str


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    rule: str | None = None
    suppressed: bool = False
    route: tuple[str, ...] | None = None


NO_DECISION = Decision()


def _glob(patterns: Iterable[str], value: object) -> bool:
    if value in (None, ""):
        return False
    text = str(value)
    return any(fnmatch.fnmatchcase(text, p) for p in patterns)


class Rule:
    def __init__(self, config: RuleConfig) -> None:
        self.config = config
        self.name = config.name
        self._tz = zoneinfo.ZoneInfo(config.timezone)
        self._window: tuple[int, int] | None = None
        if config.between:
            m = _BETWEEN.match(config.between)
            assert m is not None  # validated
            self._window = (int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4]))

    def matches(self, event: DetectionEvent, facts: CanaryFacts | None) -> bool:
        c = self.config
        if c.event_kinds and event.kind not in c.event_kinds:
            return False
        if c.canary_kinds and (facts is None or facts.kind not in c.canary_kinds):
            return False
        if c.datastores:
            datastore = facts.datastore if facts else event.origin.get("datastore")
            if datastore not in c.datastores:
                return False
        if c.tables and (facts is None or not _glob(c.tables, facts.label)):
            return False
        if c.roles and not (_glob(c.roles, event.actor.get("role")) or _glob(c.roles, event.actor.get("user"))):
            return False
        if c.applications and not _glob(c.applications, event.origin.get("application_name")):
            return False
        if c.networks and not self._in_networks(event.origin.get("client_addr")):
            return False
        return self._in_time(event.observed_at)

    def _in_networks(self, addr: object) -> bool:
        if not addr:
            return False
        try:
            ip = ipaddress.ip_address(str(addr).split("%", 1)[0])
        except ValueError:
            return False
        return any(ip.version == n.version and ip in n for n in self.config.networks)

    def _in_time(self, when: dt.datetime) -> bool:
        if not self.config.days and self._window is None:
            return True
        local = when.astimezone(self._tz)
        minute = local.hour * 60 + local.minute
        day = local.date()
        if self._window is not None:
            start, end = self._window
            if start <= end:
                if not start <= minute < end:
                    return False
            elif minute >= start:
                pass  # in the window that started today
            elif minute < end:
                day = day - dt.timedelta(days=1)  # in the window that started yesterday
            else:
                return False
        return not self.config.days or DAYS[day.weekday()] in self.config.days


class RuleSet:
    """The configured rules, in order. ``decide`` is pure and cheap (no I/O)."""

    def __init__(self, rules: Sequence[RuleConfig] = ()) -> None:
        self.rules = [Rule(r) for r in rules]
        self._by_name = {r.name: r for r in self.rules}
        if len(self._by_name) != len(self.rules):
            raise ConfigError("alerting.rules", "rule names must be unique")

    @classmethod
    def from_config(cls, rules: Sequence[RuleConfig], sink_names: Iterable[str]) -> RuleSet:
        known = set(sink_names)
        for i, r in enumerate(rules):
            unknown = [s for s in r.sinks if s not in known]
            if unknown:
                raise ConfigError(f"alerting.rules[{i}].sinks", f"no sink named {', '.join(map(repr, unknown))}")
        return cls(rules)

    def __bool__(self) -> bool:
        return bool(self.rules)

    @property
    def needs_facts(self) -> bool:
        return any(r.config.canary_kinds or r.config.datastores or r.config.tables for r in self.rules)

    def decide(self, event: DetectionEvent, facts: CanaryFacts | None = None) -> Decision:
        for rule in self.rules:
            if rule.matches(event, facts):
                action = rule.config.action
                if action == "suppress":
                    return Decision(rule.name, suppressed=True)
                if action == "route":
                    return Decision(rule.name, route=rule.config.sinks)
                return Decision(rule.name)
        return NO_DECISION

    def lifts(self, rule_name: str, canary_count: int) -> bool:
        """Whether an incident suppressed by ``rule_name`` has grown past the rule's volume limit."""
        rule = self._by_name.get(rule_name)
        limit = rule.config.below_canaries if rule is not None else None
        return limit is not None and canary_count >= limit


def facts_from_rows(rows: Iterable[Mapping[str, object]]) -> dict[int, CanaryFacts]:
    return {int(r["id"]): CanaryFacts(str(r["kind"]), str(r["datastore"]), str(r["label"])) for r in rows}  # type: ignore[call-overload]
