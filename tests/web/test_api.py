"""The REST API against a real listener and control store: every route refuses callers without a
valid token (401, one answer for every reason) or without its scope (403) and answers with it; canary
values appear only with ?reveal=true and the reveal scope, and every reveal is audited; the OpenAPI
document is valid and lists exactly the routes the app serves; state changes notify the paged sinks
like `canary alerts ack` and are audited."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from alerting_servers import drained
from openapi_spec_validator import validate
from seeder_helpers import Shop
from testkit import CanaryRows, MakeConfig, OpenRuntime
from web_support import EMAILS, PHONES, PUBLIC_URL, ROW_KEYS, ApiUnderTest, make_api, secrets_in

from canary.listener import default_components
from canary.store import api_tokens
from canary.web.api import PREFIX, Api

#: a token with each scope's rights but not more: read < operate < admin
HOLDER = {"read": "read", "operate": "operate", "admin": "admin"}
#: one that lacks it
LACKS = {"read": "reveal-only", "operate": "read", "admin": "operate"}


async def _concrete(api: ApiUnderTest, path: str) -> str:
    drill = await api.rt.pool.fetchval(
        "INSERT INTO drill_runs (id, playbook, mode, status, finished_at, steps_total, detected, result)"
        " VALUES ('dr-0123456789ab', 'breach', 'demo', 'passed', clock_timestamp(), 1, 1, $1)"
        " ON CONFLICT (id) DO UPDATE SET playbook = excluded.playbook RETURNING id",
        {"playbook": "breach", "run_id": "dr-0123456789ab", "status": "passed",
         "steps": [{"name": "read", "status": "detected", "time_to_detect_s": 1.5, "time_to_page_s": 2.0}]})
    return (path.replace("{id}", str(api.canary_ids[0]) if path.startswith("/canaries") else
                         drill if path.startswith("/drills") else str(api.incident_ids[0]))
            .replace("{name}", "shop"))


def _body(path: str, method: str) -> Any:
    if method != "POST":
        return None
    if path.endswith("/notes"):
        return {"body": "looked at it"}
    if path.endswith("/replay"):
        return {"all": True}
    if path == "/drills":  # starts a run (202) in the background; tests/web/test_drill_runs.py follows it
        return {"playbook": "privileged-dump"}
    return {}


async def test_every_route_refuses_without_a_valid_token_and_without_its_scope(api: ApiUnderTest) -> None:
    """Each route answers 401 without a token and with a malformed, unknown, wrong, expired or revoked
    one (the same body each time), 403 to a valid token without the route's scope, and 2xx with it."""
    tid = api.tokens["read"].split("_")[2]
    bad = [None, "nonsense", "cy_api_000000000000_" + "0" * 64, f"cy_api_{tid}_" + "f" * 64,
           api.tokens["expired"], api.tokens["revoked"]]
    for route in Api().routes:
        path = PREFIX + await _concrete(api, route.path)
        body = _body(route.path, route.method)
        for token in bad:
            status, data, _ = await api.call(route.method, path, token, body)
            assert (status, data) == (401, {"error": "unauthorized"}), (route.path, token)
        status, data, _ = await api.call(route.method, path, api.tokens[LACKS[route.scope]], body)
        assert status == 403, (route.path, status, data)
        status, data, text = await api.call(route.method, path, api.tokens[HOLDER[route.scope]], body)
        assert status == route.status, (route.path, status, text)
    # a failure is a reject sample naming the peer, never the token
    samples = [r["sample"] for r in await api.rt.pool.fetch("SELECT sample FROM rejects WHERE source = 'api'")]
    assert samples and all(s.startswith("peer=") for s in samples)
    assert not any(t and t in s for s in samples for t in api.tokens.values())


async def test_no_answer_holds_a_canary_value_without_reveal(api: ApiUnderTest) -> None:
    """GET every route with an admin token, with and without ?reveal=true: no canary e-mail, phone or
    row key in any answer (an admin token without the reveal scope asking to reveal gets 403), and the
    plan of a datastore shows counts, not the rows it would write."""
    for route in Api().routes:
        path = PREFIX + await _concrete(api, route.path)
        status, _, text = await api.call(route.method, path, api.tokens["admin"], _body(route.path, route.method))
        assert status == route.status, (route.path, text)
        assert not secrets_in(text), (route.path, secrets_in(text))
        if route.reveals:
            status, _, text = await api.call(route.method, path + "?reveal=true", api.tokens["admin"], _body(route.path, route.method))
            assert status == 403 and not secrets_in(text)
    assert await api.rt.pool.fetchval("SELECT count(*) FROM audit_log WHERE action LIKE '%reveal'") == 0


async def test_reveal_shows_values_and_is_audited(api: ApiUnderTest) -> None:
    """With the reveal scope and ?reveal=true the canary list and detail hold the canaries' values and
    locations, and each answer is one audit entry naming the token, client and canaries (not values);
    without ?reveal=true the same token sees none."""
    plain = await api.get(f"{PREFIX}/canaries/items", api.tokens["reader-reveal"])
    assert not secrets_in(json.dumps(plain))
    page = await api.get(f"{PREFIX}/canaries/items?reveal=true", api.tokens["reader-reveal"])
    text = json.dumps(page)
    assert all(v in text for v in (*EMAILS, *PHONES, *ROW_KEYS))
    one = await api.get(f"{PREFIX}/canaries/{api.canary_ids[1]}?reveal=true", api.tokens["reader-reveal"])
    assert {v["value"] for v in one["values"]} == {EMAILS[1], PHONES[1]} and one["location"]["pk"] == ROW_KEYS[1]
    rows = await api.rt.pool.fetch("SELECT * FROM audit_log WHERE action = 'canary.reveal' ORDER BY id")
    assert len(rows) == 2
    assert rows[0]["actor"].endswith("(reader-reveal)") and rows[0]["client"] == "127.0.0.1"
    assert rows[0]["details"] == {"canaries": api.canary_ids} and rows[1]["target"] == f"canary:{api.canary_ids[1]}"
    assert not secrets_in(json.dumps([dict(r) for r in rows], default=str))


async def test_plan_reveals_its_rows_only_when_asked(api: ApiUnderTest) -> None:
    """POST /datastores/shop/plan runs the seeder's plan against the datastore: counts and warnings for
    an operate token; the rows it would write only with the reveal scope and ?reveal=true (audited)."""
    status, plain, _ = await api.call("POST", f"{PREFIX}/datastores/shop/plan", api.tokens["operate"], {})
    assert status == 200 and plain["targets"][0]["target"] == "public.customers" and "rows" not in plain["targets"][0]
    token, text = await api_tokens.create(api.rt.pool, "op-reveal", ["operate", "reveal"],
                                          await api.rt.pool.fetchval("SELECT clock_timestamp() + interval '1 hour'"), "test")
    status, shown, _ = await api.call("POST", f"{PREFIX}/datastores/shop/plan?reveal=true", text, {})
    rows = shown["targets"][0]["rows"]
    assert status == 200 and len([r for r in rows if r["canary"]]) == 3
    assert await api.rt.pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'plan.reveal'") == 1
    status, _, _ = await api.call("POST", f"{PREFIX}/datastores/nowhere/plan", api.tokens["operate"], {})
    assert status == 404


async def test_openapi_document_is_valid_and_matches_the_served_routes(api: ApiUnderTest) -> None:
    """The document validates as OpenAPI 3.1 (openapi-spec-validator) and its paths and methods are
    exactly the /api/v1 routes the aiohttp app serves."""
    doc = await api.get(f"{PREFIX}/openapi.json", api.tokens["read"])
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    app = Api()
    served = {(r.method, r.path) for r in (rd for rd in app.aiohttp_routes())}
    assert documented == served
    assert all(op["x-canary-scope"] in ("read", "operate", "admin") for ops in doc["paths"].values() for op in ops.values())
    # the answers beyond 2xx / 400 / 401 / 403 / 404 that routes give are documented too
    paths = doc["paths"]
    assert {"202", "409"} <= set(paths[f"{PREFIX}/drills"]["post"]["responses"])
    for route in (f"{PREFIX}/incidents/{{id}}/acknowledge", f"{PREFIX}/incidents/{{id}}/resolve", f"{PREFIX}/sinks/dead/replay"):
        assert "409" in paths[route]["post"]["responses"], route


async def test_ack_and_resolve_notify_the_paged_sink_and_are_audited(api: ApiUnderTest) -> None:
    """Acknowledging and resolving through the API send PagerDuty acknowledge / resolve for the
    incident's dedup key (as `canary alerts ack` does), each trigger links to the incident's page, and
    each change is one audit entry with the token and client; a second ack changes nothing."""
    iid = api.incident_ids[0]
    await drained(api.rt.pool, 10)
    dedup = await api.rt.pool.fetchval("SELECT dedup_key FROM incidents WHERE id = $1", iid)
    trigger = next(r.json() for r in api.pd.requests if r.json().get("dedup_key") == dedup)
    assert trigger["links"] == [{"href": f"{PUBLIC_URL}/incidents/{iid}", "text": f"Canary incident {iid}"}]
    status, data, _ = await api.call("POST", f"{PREFIX}/incidents/{iid}/acknowledge", api.tokens["operate"], {"note": "on it"})
    assert status == 200 and data == {"incident": iid, "status": "acknowledged", "notifications": 1}
    status, data, _ = await api.call("POST", f"{PREFIX}/incidents/{iid}/acknowledge", api.tokens["operate"], {})
    assert data["notifications"] == 0
    status, data, _ = await api.call("POST", f"{PREFIX}/incidents/{iid}/resolve", api.tokens["operate"], None)
    assert status == 200 and data["notifications"] == 1
    await drained(api.rt.pool, 10)
    actions = [r.json()["event_action"] for r in api.pd.requests if r.json().get("dedup_key") == dedup]
    assert actions == ["trigger", "acknowledge", "resolve"]
    detail = await api.get(f"{PREFIX}/incidents/{iid}", api.tokens["read"])
    assert detail["status"] == "resolved" and detail["note"] == "on it" and detail["acknowledged_by"].endswith("(operate)")
    status, data, _ = await api.call("POST", f"{PREFIX}/incidents/{iid}/acknowledge", api.tokens["operate"], {})
    assert status == 409
    audit = await api.get(f"{PREFIX}/audit", api.tokens["admin"])
    changes = [(e["action"], e["target"], e["client"]) for e in audit["items"]]
    assert changes == [("incident.resolve", f"incident:{iid}", "127.0.0.1"),
                       ("incident.acknowledge", f"incident:{iid}", "127.0.0.1")]
    assert all(e["actor"].endswith("(operate)") for e in audit["items"])


async def test_notes_and_replay_are_audited(api: ApiUnderTest) -> None:
    """A note is kept with its incident and listed; a dead letter replayed through the API is pending
    again and delivered; both are audit entries. Bad bodies are 400, an unknown incident 404."""
    iid = api.incident_ids[1]
    status, note, _ = await api.call("POST", f"{PREFIX}/incidents/{iid}/notes", api.tokens["operate"], {"body": "called the DBA"})
    assert status == 201
    listed = await api.get(f"{PREFIX}/incidents/{iid}/notes", api.tokens["read"])
    assert [n["body"] for n in listed["items"]] == ["called the DBA"] and listed["next_cursor"] is None
    for bad in ({}, {"body": ""}, {"body": 7}, {"body": "x" * 10_001}):
        assert (await api.call("POST", f"{PREFIX}/incidents/{iid}/notes", api.tokens["operate"], bad))[0] == 400
    assert (await api.call("POST", f"{PREFIX}/incidents/999999/notes", api.tokens["operate"], {"body": "x"}))[0] == 404
    await drained(api.rt.pool, 10)
    dead = await api.rt.pool.fetchval("UPDATE outbox SET status = 'dead', last_error = 'gave up' WHERE incident_id = $1"
                                      " RETURNING id", iid)
    listed = await api.get(f"{PREFIX}/sinks/dead", api.tokens["read"])
    assert [d["id"] for d in listed["items"]] == [dead]
    sinks = await api.get(f"{PREFIX}/sinks", api.tokens["read"])
    assert sinks["items"] == [{"name": "pd", "type": "pagerduty", "configured": True, "pending": 0, "delivered": 1,
                               "dead": 1, "oldest_pending": None}]
    status, data, _ = await api.call("POST", f"{PREFIX}/sinks/dead/replay", api.tokens["operate"], {"ids": [dead]})
    assert status == 200 and data == {"replayed": [dead]}
    await drained(api.rt.pool, 10)
    assert await api.rt.pool.fetchval("SELECT status FROM outbox WHERE id = $1", dead) == "delivered"
    for wrong in ({}, {"ids": ["1"]}, {"ids": [True]}, {"all": "yes"}):
        assert (await api.call("POST", f"{PREFIX}/sinks/dead/replay", api.tokens["operate"], wrong))[0] == 400
    actions = [r["action"] for r in await api.rt.pool.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["incident.note", "outbox.replay"]


async def test_hostile_parameters_are_400_never_500(api: ApiUnderTest) -> None:
    """Malformed ids, filters, cursors, limits and bodies are answered 400 (or 404 for an unknown id),
    never a server error."""
    token = api.tokens["admin"]
    cases = ["/incidents?limit=0", "/incidents?limit=abc", "/incidents?limit=99999999999999999999999",
             "/incidents?status=opened", "/incidents?since=yesterday", "/incidents?cursor=%%%",
             "/incidents?cursor=W10", "/incidents?cursor=WyJ4IiwxXQ", "/incidents?drill=maybe", "/incidents?bogus=1",
             "/incidents?status=open&status=resolved", "/incidents/abc", "/incidents/-1/events",
             "/incidents/1/events?cursor=WzEuNV0", "/drills?cursor=WzEsMl0", "/audit?limit=-5",
             "/incidents?datastore=" + "x" * 5000, "/canaries/items?status=gone", "/incidents?until=99999-01-01"]
    for case in cases:
        status, data, text = await api.call("GET", PREFIX + case, token)
        assert status == 400, (case, status, text)
        assert isinstance(data, dict) and "error" in data
    assert (await api.call("GET", f"{PREFIX}/incidents/123456789", token))[0] == 404
    assert (await api.call("GET", f"{PREFIX}/canaries/123456789", token))[0] == 404
    assert (await api.call("GET", f"{PREFIX}/drills/nope", token))[0] == 404
    status, _, _ = await api.call("POST", f"{PREFIX}/incidents/{api.incident_ids[0]}/acknowledge", token,
                                  headers={"Content-Type": "application/json"}, body=None)
    assert status == 200
    async with api.http.post(f"{api.base}{PREFIX}/incidents/{api.incident_ids[0]}/notes", data=b"[" * 100_000,
                             headers=api.headers(token)) as resp:
        assert resp.status == 400
    async with api.http.post(f"{api.base}{PREFIX}/incidents/{api.incident_ids[0]}/notes", data=b'{"body": "\xff"}',
                             headers=api.headers(token)) as resp:
        assert resp.status == 400


async def test_failed_authentication_is_tarpitted_per_peer(open_test_runtime: OpenRuntime, make_config: MakeConfig,
                                                           canary_rows: CanaryRows, shop: Shop) -> None:
    """Beyond api.auth_fail_limit failures a peer waits longer for each further 401, while a valid token
    from the same peer is answered at once (guessing is slow, using is not)."""
    async with make_api(open_test_runtime, make_config, canary_rows, shop, auth_fail_limit=3,
                        auth_fail_step="200ms", auth_fail_max="1s") as api:
        waits = []
        for _ in range(6):
            t0 = time.monotonic()
            status, _, _ = await api.call("GET", f"{PREFIX}/incidents", "cy_api_000000000000_" + "1" * 64)
            waits.append(time.monotonic() - t0)
            assert status == 401
        assert max(waits[:3]) < 0.15 and waits[3] >= 0.18 and waits[5] >= 0.55
        t0 = time.monotonic()
        await api.get(f"{PREFIX}/incidents", api.tokens["read"])
        assert time.monotonic() - t0 < 0.5


async def test_token_last_used_is_recorded(api: ApiUnderTest) -> None:
    """A token's last_used_at is set by its first use (and not rewritten on every call)."""
    tid = api.tokens["read"].split("_")[2]
    assert (await api_tokens.get(api.rt.pool, tid)).last_used_at is None  # type: ignore[union-attr]
    await api.get(f"{PREFIX}/incidents", api.tokens["read"])
    first = (await api_tokens.get(api.rt.pool, tid)).last_used_at  # type: ignore[union-attr]
    await asyncio.sleep(0.01)
    await api.get(f"{PREFIX}/incidents", api.tokens["read"])
    assert first is not None and (await api_tokens.get(api.rt.pool, tid)).last_used_at == first  # type: ignore[union-attr]
    assert re.fullmatch(r"cy_api_[0-9a-f]{12}_[0-9a-f]{64}", api.tokens["read"])
    assert api.tokens["read"].encode() not in b"".join(
        bytes(r["secret_hash"]) for r in await api.rt.pool.fetch("SELECT secret_hash FROM api_tokens"))


async def test_the_listener_serves_the_api_unless_disabled(open_test_runtime: OpenRuntime, make_config: MakeConfig) -> None:
    """The API is one of the listener's default components (registered like a source); [api] enabled =
    false leaves it out."""
    on = await open_test_runtime()
    assert "api" in [c.name for c in default_components(on)]
    off = await open_test_runtime(make_config(api={"enabled": False}))
    assert "api" not in [c.name for c in default_components(off)]
