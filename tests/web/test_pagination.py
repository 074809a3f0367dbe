"""Keyset pages of the API: walking the incident list (whole or filtered) page by page returns every
incident that existed when the walk began exactly once, in order, while new incidents arrive between
pages (and incidents that share an opening time are told apart by id); an incident's events likewise."""

from __future__ import annotations

import datetime as dt
from typing import Any

from web_support import ApiUnderTest, read_event

from canary.web.api import PREFIX

T0 = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)


async def _add_incidents(api: ApiUnderTest, n: int, start: int, at: dt.datetime | None = None) -> list[int]:
    """``n`` incidents, opened in groups of three at the same instant (ties only the id breaks)."""
    rows = await api.rt.pool.fetch(
        "INSERT INTO incidents (dedup_key, group_key, kind, severity, status, title, source, first_seen, last_seen,"
        " created_at, event_count, origin)"
        " SELECT 'page-' || g, 'page-' || g, CASE WHEN g % 2 = 0 THEN 'read' ELSE 'used' END, 'critical',"
        "  CASE WHEN g % 5 = 0 THEN 'resolved' ELSE 'open' END, 'title ' || g, 'test', t, t, t, 1,"
        "  jsonb_build_object('datastore', 'shop')"
        " FROM generate_series($1::int, $1 + $2 - 1) AS g,"
        "  LATERAL (SELECT coalesce($3::timestamptz, $4::timestamptz + (g / 3) * interval '1 minute') AS t) AS ts"
        " RETURNING id", start, n, at, T0)
    return [r["id"] for r in rows]


async def _walk(api: ApiUnderTest, query: str, limit: int, between: Any = None) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await api.get(f"{PREFIX}/incidents?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else ""),
                             api.tokens["read"])
        seen += page["items"]
        assert len(page["items"]) <= limit
        cursor = page["next_cursor"]
        if cursor is None:
            return seen
        if between is not None:
            await between(len(seen))


async def test_every_incident_exactly_once_while_new_ones_arrive(api: ApiUnderTest) -> None:
    """A walk in pages of 17 over 230 incidents (plus the fixture's two) sees each once, newest first by
    (opened_at, id), though 5 new incidents arrive after every page; a fresh walk then sees them too."""
    await _add_incidents(api, 230, 0)
    before = {r["id"] for r in await api.rt.pool.fetch("SELECT id FROM incidents")}
    arrived: list[int] = []

    async def arrive(n: int) -> None:
        arrived.extend(await _add_incidents(api, 5, 10_000 + n, dt.datetime.now(dt.timezone.utc)))

    seen = await _walk(api, "", 17, arrive)
    ids = [it["id"] for it in seen]
    assert len(ids) == len(set(ids)) and set(ids) == before
    keys = [(dt.datetime.fromisoformat(it["opened_at"]), it["id"]) for it in seen]
    assert keys == sorted(keys, reverse=True)
    assert arrived and set(it["id"] for it in await _walk(api, "", 100)) == before | set(arrived)


async def test_filtered_walk_matches_the_filter_exactly(api: ApiUnderTest) -> None:
    """Filtered by status, kind, datastore and time, a walk in pages of 7 returns exactly the incidents
    the filter selects (checked against SQL), once each."""
    await _add_incidents(api, 120, 0)
    since, until = T0 + dt.timedelta(minutes=5), T0 + dt.timedelta(minutes=30)
    seen = await _walk(api, f"&status=open&kind=read&datastore=shop&since={since.isoformat().replace('+', '%2B')}"
                            f"&until={until.isoformat().replace('+', '%2B')}", 7)
    want = {r["id"] for r in await api.rt.pool.fetch(
        "SELECT id FROM incidents WHERE status = 'open' AND kind = 'read' AND origin->>'datastore' = 'shop'"
        " AND created_at >= $1 AND created_at < $2", since, until)}
    ids = [it["id"] for it in seen]
    assert want and len(ids) == len(set(ids)) and set(ids) == want
    drills = await _walk(api, "&drill=true", 50)
    assert drills == []


async def test_events_of_an_incident_page_by_id(api: ApiUnderTest) -> None:
    """An incident's 41 events come in pages of 10, oldest first, each once, while more arrive."""
    iid = api.incident_ids[0]
    cid = api.canary_ids[0]
    for n in range(40):
        await read_event(api.rt, 100 + n, cid, group="session-0")
    assert await api.rt.pool.fetchval("SELECT count(*) FROM events WHERE incident_id = $1", iid) == 41
    seen: list[int] = []
    cursor = None
    extra = 0
    while True:
        page = await api.get(f"{PREFIX}/incidents/{iid}/events?limit=10" + (f"&cursor={cursor}" if cursor else ""),
                             api.tokens["read"])
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        await read_event(api.rt, 500 + extra, cid, group="session-0")
        extra += 1
    assert seen == sorted(set(seen))
    assert set(seen) == {r["id"] for r in await api.rt.pool.fetch("SELECT id FROM events WHERE incident_id = $1", iid)}
