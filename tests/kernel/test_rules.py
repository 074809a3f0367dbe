"""Routing and suppression rules: matching tables, config errors, and their effect in the pipeline
(suppressed events are recorded and visible; volume lifts a suppression; route narrows sinks)."""

from __future__ import annotations

import datetime as dt

import pytest
from testkit import MakeConfig

from canary.config import from_mapping
from canary.errors import ConfigError
from canary.events import DetectionEvent, EventKind, event_key
from canary.pipeline import Pipeline
from canary.rules import CanaryFacts, RuleConfig, RuleSet
from canary.store import ControlStore

NIGHT = dt.datetime(2026, 3, 7, 2, 30, tzinfo=dt.timezone.utc)  # a Saturday, 02:30 UTC
FACTS = CanaryFacts(kind="customer", datastore="shop", label="shop/public.customers")


def _ev(i: int = 0, *, group: str = "g", kind: EventKind = EventKind.READ, when: dt.datetime = NIGHT,
        user: str | None = "backup", app: str | None = "pg_dump", addr: str | None = "10.1.2.3",
        canary_id: int | None = None) -> DetectionEvent:
    return DetectionEvent(
        kind=kind, source="test", key=event_key("rules", group, i), group=group, canary_id=canary_id, observed_at=when,
        actor={k: v for k, v in {"user": user}.items() if v}, origin={k: v for k, v in {
            "application_name": app, "client_addr": addr, "datastore": "shop"}.items() if v},
    )


def _rule(**fields: object) -> RuleSet:
    return RuleSet([RuleConfig.model_validate({"name": "r", **fields})])


MATCHES = [
    ({"event_kinds": ["read"]}, {}, True),
    ({"event_kinds": ["exported"]}, {}, False),
    ({"canary_kinds": ["customer"]}, {}, True),
    ({"canary_kinds": ["credential"]}, {}, False),
    ({"datastores": ["shop"]}, {}, True),
    ({"datastores": ["billing"]}, {}, False),
    ({"tables": ["shop/public.*"]}, {}, True),
    ({"tables": ["*/public.orders"]}, {}, False),
    ({"roles": ["back*"]}, {}, True),
    ({"roles": ["backup"]}, {"user": None}, False),  # unknown fact never matches
    ({"applications": ["pg_dump*"]}, {}, True),
    ({"applications": ["pg_dump"]}, {"app": "psql"}, False),
    ({"networks": ["10.0.0.0/8"]}, {}, True),
    ({"networks": ["192.168.0.0/16", "fd00::/8"]}, {}, False),
    ({"networks": ["10.0.0.0/8"]}, {"addr": "not-an-ip"}, False),
    ({"networks": ["::1/128"]}, {"addr": "::1"}, True),
    ({"between": "01:00-04:00"}, {}, True),
    ({"between": "03:00-04:00"}, {}, False),
    ({"between": "22:00-03:00", "days": ["fri"]}, {}, True),  # Saturday 02:30 is in Friday's night window
    ({"between": "22:00-03:00", "days": ["sat"]}, {}, False),
    ({"days": ["sat", "sun"]}, {}, True),
    ({"between": "03:00-04:00", "timezone": "Europe/Berlin"}, {}, True),  # 03:30 CET
    ({"roles": ["backup"], "networks": ["10.0.0.0/8"], "applications": ["psql"]}, {}, False),  # all must match
]


@pytest.mark.parametrize(("criteria", "event", "expected"), MATCHES)
def test_rule_matching(criteria: dict[str, object], event: dict[str, object], expected: bool) -> None:
    """Each criterion matches or rejects as documented; all criteria of a rule must match."""
    decision = _rule(**criteria).decide(_ev(**event), FACTS)  # type: ignore[arg-type]
    assert decision.suppressed is expected


def test_first_matching_rule_wins_and_page_is_an_exception() -> None:
    """An earlier 'page' rule exempts credential canaries from a broad nightly suppression."""
    rules = RuleSet([
        RuleConfig(name="creds-always-page", action="page", canary_kinds=("credential",)),
        RuleConfig(name="nightly", between="01:00-04:00"),
    ])
    assert rules.decide(_ev(), FACTS).rule == "nightly"
    cred = rules.decide(_ev(), CanaryFacts("credential", "shop", "shop/public.api_keys"))
    assert (cred.rule, cred.suppressed) == ("creds-always-page", False)


@pytest.mark.parametrize(
    ("rule", "key", "message"),
    [
        ({"name": "x", "action": "route"}, "alerting.rules[0]", "needs 'sinks'"),
        ({"name": "x", "between": "25:00-01:00"}, "alerting.rules[0].between", "HH:MM-HH:MM"),
        ({"name": "x", "networks": ["10.0.0.300/8"]}, "alerting.rules[0].networks", "CIDR"),
        ({"name": "x", "timezone": "Mars/Olympus"}, "alerting.rules[0].timezone", "unknown time zone"),
        ({"name": "x", "days": ["someday"]}, "alerting.rules[0].days[0]", ""),
        ({"name": "x", "below_canaries": 5, "action": "page"}, "alerting.rules[0]", "below_canaries"),
        ({"name": "x", "colour": "red"}, "alerting.rules[0].colour", "unknown key"),
    ],
)
def test_invalid_rules_name_their_key(rule: dict[str, object], key: str, message: str) -> None:
    """Rule mistakes fail at load time with the key path."""
    with pytest.raises(ConfigError) as info:
        from_mapping({"alerting": {"rules": [rule]}})
    assert info.value.key == key and message in str(info.value)


def test_route_to_unknown_sink_is_a_config_error() -> None:
    """A route rule naming a sink that does not exist fails at load time, and the pipeline refuses it too."""
    data = {"sinks": [{"name": "pd", "type": "stdout"}],
            "alerting": {"rules": [{"name": "x", "action": "route", "sinks": ["pagerdoody"]}]}}
    with pytest.raises(ConfigError) as info:
        from_mapping(data)
    assert "alerting.rules[0].sinks: no sink named 'pagerdoody'" in str(info.value)
    with pytest.raises(ConfigError) as info2:
        RuleSet.from_config([RuleConfig(name="x", action="route", sinks=("pagerdoody",))], ["pd"])
    assert info2.value.key == "alerting.rules[0].sinks"


async def _canaries(store: ControlStore, n: int, kind: str = "customer") -> list[int]:
    rows = await store.pool.fetch(
        "INSERT INTO canaries (uid, kind, datastore, label, location_enc, location_idx, key_id)"
        " SELECT $2||g, $2, 'shop', 'shop/public.customers', '\\x00', int8send(g) || $2::bytea, 'k'"
        " FROM generate_series(1, $1) g RETURNING id", n, kind,
    )
    return [r["id"] for r in rows]


async def test_suppressed_events_are_recorded_but_do_not_page(store: ControlStore, make_config: MakeConfig) -> None:
    """The nightly backup's reads are stored with suppressed_by, its incident carries the rule name,
    no notification is enqueued; another reader in the same batch still pages."""
    cfg = make_config(sinks=[{"name": "pd", "type": "stdout"}],
                      alerting={"rules": [{"name": "nightly-backup", "roles": ["backup"], "applications": ["pg_dump"],
                                           "between": "01:00-04:00"}]})
    ids = await _canaries(store, 3)
    p = Pipeline(store.pool, cfg)
    await p.record([_ev(i, canary_id=c) for i, c in enumerate(ids)] + [_ev(9, group="h", user="mallory", app="psql",
                                                                           canary_id=ids[0])])
    assert await store.pool.fetchval("SELECT count(*) FROM events WHERE suppressed_by = 'nightly-backup'") == 3
    incs = {r["group_key"]: r["suppressed_by"] for r in await store.pool.fetch("SELECT group_key, suppressed_by FROM incidents")}
    assert incs == {"g": "nightly-backup", "h": None}
    assert [r["group_key"] for r in await store.pool.fetch(
        "SELECT i.group_key FROM outbox o JOIN incidents i ON i.id = o.incident_id")] == ["h"]
    assert p.stats.suppressed == 3


async def test_volume_lifts_suppression(store: ControlStore, make_config: MakeConfig) -> None:
    """A suppress rule with below_canaries = 50 keeps a 10-canary read quiet and pages once it reaches 50."""
    cfg = make_config(sinks=[{"name": "pd", "type": "stdout"}], alerting={
        "escalate_at": [1000], "rules": [{"name": "reporting", "applications": ["pg_dump"], "below_canaries": 50}]})
    ids = await _canaries(store, 60)
    p = Pipeline(store.pool, cfg)
    await p.record([_ev(i, canary_id=c) for i, c in enumerate(ids[:10])])
    assert await store.pool.fetchval("SELECT count(*) FROM outbox") == 0
    await p.record([_ev(i, canary_id=c) for i, c in enumerate(ids[10:], start=10)])
    rows = await store.pool.fetch("SELECT action, payload FROM outbox")
    assert [r["action"] for r in rows] == ["trigger"] and rows[0]["payload"]["canary_count"] == 60
    assert await store.pool.fetchval("SELECT suppressed_by FROM incidents") is None
    assert await store.pool.fetchval("SELECT count(*) FROM events WHERE suppressed_by = 'reporting'") == 60


async def test_route_rule_sends_only_to_its_sinks(store: ControlStore, make_config: MakeConfig) -> None:
    """Credential canaries go to PagerDuty only; other incidents use the default routing (every sink)."""
    cfg = make_config(sinks=[{"name": "pd", "type": "stdout"}, {"name": "chat", "type": "stdout"}],
                      alerting={"rules": [{"name": "creds", "action": "route", "sinks": ["pd"], "canary_kinds": ["credential"]}]})
    cred = await _canaries(store, 1, kind="credential")
    cust = await _canaries(store, 1)
    await Pipeline(store.pool, cfg).record([_ev(1, group="c", canary_id=cred[0]), _ev(2, group="d", canary_id=cust[0])])
    rows = await store.pool.fetch("SELECT i.group_key, o.sink FROM outbox o JOIN incidents i ON i.id = o.incident_id ORDER BY 1, 2")
    assert [(r["group_key"], r["sink"]) for r in rows] == [("c", "pd"), ("d", "chat"), ("d", "pd")]
    assert await store.pool.fetchval("SELECT route FROM incidents WHERE group_key = 'c'") == ["pd"]
