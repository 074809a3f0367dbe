"""``canary status``: what is deployed, whether detection is healthy, and how the last drill went.

Read from the control store only (no master key needed): canary counts per datastore, label and
kind (never values or locations), trickle schedules (what arrived, what is to come), the last event per source, checkpoint ages, standbys whose log is
not ingested, the outbox backlog
and dead letters, the detection objects recorded by the seeder, recent rejects, the last drill run,
and drill tags that match no registered drill run (someone marked their traffic ``canary-drill:``;
the pipeline treated it as an attack).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

import asyncpg

from canary.app.commands import load_config
from canary.postgres.jsonlog import behind_bytes
from canary.seeding import trickle
from canary.store import ControlStore, checkpoints, detection_objects, registry, rejects
from canary.store import feed as feed_store


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("status", help="canary inventory per datastore and table, detection health, last drill result")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_status)


async def gather(pool: asyncpg.Pool, stall_after: float = 60.0) -> dict[str, Any]:
    """The status document (JSON-able)."""
    now = await pool.fetchval("SELECT clock_timestamp()")
    inventory = await registry.inventory(pool)
    retired = await registry.retired_count(pool)
    sources = await pool.fetch(
        "SELECT source, max(recorded_at) AS last, count(*) AS n,"
        " count(*) FILTER (WHERE recorded_at > clock_timestamp() - interval '24 hours') AS day"
        " FROM events GROUP BY 1 ORDER BY 1")
    positions = await checkpoints.listing(pool)
    outbox = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE status = 'pending') AS pending, count(*) FILTER (WHERE status = 'dead') AS dead,"
        " min(created_at) FILTER (WHERE status = 'pending') AS oldest_pending FROM outbox")
    feeds = await feed_store.status(pool)
    objects = await detection_objects.installed(pool)
    rejected = await rejects.summary(pool)
    incidents = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE status = 'open' AND suppressed_by IS NULL) AS open,"
        " count(*) FILTER (WHERE status = 'acknowledged') AS ack,"
        " count(*) FILTER (WHERE status = 'open' AND drill IS NULL AND suppressed_by IS NULL) AS open_real,"
        " count(*) FILTER (WHERE status = 'open' AND suppressed_by IS NOT NULL) AS suppressed FROM incidents")
    last = await pool.fetchrow(
        "SELECT id, playbook, mode, status, started_at, finished_at, steps_total, detected, missed, skipped, result"
        " FROM drill_runs ORDER BY started_at DESC LIMIT 1")
    # claimed drill tags the pipeline refused (no registered run), and drill incidents of no registered run
    unregistered = await pool.fetch(
        "SELECT id, drill, created_at FROM ("
        " SELECT DISTINCT ON (e.incident_id) e.incident_id AS id, e.evidence->>'claimed_drill' AS drill,"
        "  e.recorded_at AS created_at FROM events e WHERE e.evidence ? 'claimed_drill'"
        " UNION ALL SELECT i.id, i.drill, i.created_at FROM incidents i WHERE i.drill IS NOT NULL AND NOT EXISTS"
        "  (SELECT 1 FROM drill_runs r WHERE i.drill = r.id OR i.drill LIKE r.id || '/%')"
        ") AS u ORDER BY created_at DESC LIMIT 20")

    schedules = await trickle.summary(pool)
    gaps = await pool.fetch(
        "SELECT id, group_key, first_seen, last_seen FROM incidents WHERE status <> 'resolved'"
        " AND group_key LIKE 'standby-gap:%' ORDER BY id")

    def age(t: dt.datetime | None) -> float | None:
        return round((now - t).total_seconds(), 1) if t is not None else None

    drill: dict[str, Any] | None = None
    if last is not None:
        steps = (last["result"] or {}).get("steps", [])
        drill = {
            "run_id": last["id"], "playbook": last["playbook"], "mode": last["mode"], "status": last["status"],
            "started_at": last["started_at"].isoformat(), "age_s": age(last["started_at"]),
            "finished_at": last["finished_at"].isoformat() if last["finished_at"] else None,
            "steps": last["steps_total"], "detected": last["detected"], "missed": last["missed"], "skipped": last["skipped"],
            "step_results": [{"name": s.get("name"), "status": s.get("status"), "time_to_detect_s": s.get("time_to_detect_s"),
                              "time_to_page_s": s.get("time_to_page_s")} for s in steps],
        }
    return {
        "generated_at": now.isoformat(),
        "inventory": [{"datastore": r["datastore"], "label": r["label"], "kind": r["kind"], "count": r["n"],
                       "newest": r["newest"].isoformat()} for r in inventory],
        "retired_canaries": retired,
        "trickle": [{"datastore": r["datastore"], "target": r["target"], "arrived": r["arrived"], "to_come": r["to_come"],
                     "later_writes": r["later"], "inflight": r["inflight"],
                     "next_due": r["next_due"].isoformat() if r["next_due"] else None} for r in schedules],
        "detection": {
            "sources": [{"source": r["source"], "last_event": r["last"].isoformat(), "last_event_age_s": age(r["last"]),
                         "events": r["n"], "events_24h": r["day"]} for r in sources],
            "checkpoints": [_position(r, age(r["updated_at"]), stall_after) for r in positions],
            "detection_objects": [{"datastore": r["datastore"], "target": r["target"],
                                   "installed_at": r["installed_at"].isoformat()} for r in objects],
            "rejects_24h": [{"source": r["source"], "reason": r["reason"], "count": r["n"]} for r in rejected],
            # standbys discovered from a primary whose log nobody ingests (canary.health.replication)
            "standby_gaps": [{"incident_id": r["id"], "datastore": r["group_key"].split(":")[1],
                              "standby": r["group_key"].split(":", 2)[2], "last_seen_age_s": age(r["last_seen"])}
                             for r in gaps],
        },
        "outbox": {"pending": outbox["pending"], "dead": outbox["dead"], "oldest_pending_age_s": age(outbox["oldest_pending"])},
        # SIEM sinks' event feeds (canary/feed.py): delivered, waiting, refused for good, failing since
        "event_feeds": [{"sink": f["sink"], "delivered": f["delivered"], "waiting": f["waiting"], "dead": f["dead"],
                         "failing_for_s": age(f["failing_since"]), "last_error": f["last_error"]} for f in feeds],
        "incidents": {"open": incidents["open"], "acknowledged": incidents["ack"], "open_not_drill": incidents["open_real"],
                      "suppressed": incidents["suppressed"]},
        "last_drill": drill,
        "unregistered_drill_tags": [{"incident_id": r["id"], "drill": r["drill"], "created_at": r["created_at"].isoformat()}
                                    for r in unregistered],
    }


def _position(row: Any, age_s: float | None, stall_after: float) -> dict[str, Any]:
    """A source position with how far it is behind its input now (jsonlog files) and whether it stalled."""
    behind = behind_bytes(dict(row["position"] or {}))
    stalled = bool(behind) and age_s is not None and age_s >= stall_after
    return {"source": row["source"], "updated_at": row["updated_at"].isoformat(), "age_s": age_s,
            "behind_bytes": behind, "stalled": stalled}


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit} ago"
    return f"{seconds:.0f}s ago"


def render_text(doc: dict[str, Any]) -> str:
    out = ["Canaries (active)"]
    if not doc["inventory"]:
        out.append("  none deployed")
    for r in doc["inventory"]:
        out.append(f"  {r['datastore']:<16} {r['label']:<40} {r['kind']:<11} {r['count']:>6}")
    if doc["retired_canaries"]:
        out.append(f"  ({doc['retired_canaries']} retired)")
    for t in doc["trickle"]:
        out.append(f"  trickle {t['datastore']}/{t['target']}: {t['arrived']} arrived, {t['to_come']} to come, "
                   f"{t['later_writes']} later updates / rows" + (f", next due {t['next_due'][:19]}" if t["next_due"] else "")
                   + (f", {t['inflight']} inflight (settled by the next run)" if t["inflight"] else ""))
    det = doc["detection"]
    out += ["", "Detection health", "  last event per source:"]
    out += [f"    {r['source']:<34} {_age(r['last_event_age_s']):>12}  ({r['events']} events, {r['events_24h']} in 24h)"
            for r in det["sources"]] or ["    no events recorded yet"]
    out.append("  checkpoints:")
    out += [f"    {r['source']:<34} {_age(r['age_s']):>12}"
            + (f"  {r['behind_bytes']:,} bytes behind" if r.get("behind_bytes") else "")
            + ("  STALLED" if r.get("stalled") else "") for r in det["checkpoints"]] or ["    none"]
    out.append("  detection objects:")
    out += [f"    {r['datastore']:<16} {r['target']:<30} installed {r['installed_at'][:19]}" for r in det["detection_objects"]] \
        or ["    none recorded"]
    for g in det["standby_gaps"]:
        out.append(f"  GAP: standby {g['standby']} of {g['datastore']} serves reads but its log is not ingested"
                   f" (incident #{g['incident_id']}, seen {_age(g['last_seen_age_s'])})")
    if det["rejects_24h"]:
        out.append("  rejected inputs (24h): " + ", ".join(f"{r['source']}/{r['reason']}={r['count']}" for r in det["rejects_24h"]))
    ob = doc["outbox"]
    out += ["", f"Outbox: {ob['pending']} pending (oldest {_age(ob['oldest_pending_age_s'])}), {ob['dead']} dead"]
    for f in doc["event_feeds"]:
        out.append(f"  event feed {f['sink']}: {f['delivered']} delivered, {f['waiting']} waiting, {f['dead']} refused"
                   + (f"; FAILING since {_age(f['failing_for_s'])}: {f['last_error']}" if f["failing_for_s"] is not None else ""))
    out += [f"Incidents: {doc['incidents']['open']} open ({doc['incidents']['open_not_drill']} not drills), "
             f"{doc['incidents']['acknowledged']} acknowledged, {doc['incidents']['suppressed']} suppressed (alerts list --all)", ""]
    d = doc["last_drill"]
    if d is None:
        out.append("Last drill: none recorded")
    else:
        out.append(f"Last drill: {d['playbook']} {d['run_id']} ({d['mode']}) {d['status'].upper()} {_age(d['age_s'])}: "
                   f"{d['detected']}/{d['steps']} detected, {d['missed']} missed, {d['skipped']} skipped")
        for s in d["step_results"]:
            out.append(f"    {s['status']:<8} {s['name']}")
    if doc["unregistered_drill_tags"]:
        out += ["", f"WARNING: {len(doc['unregistered_drill_tags'])} incident(s) carry a drill tag that matches no "
                "registered drill run (traffic marked as a drill by someone else; paged as an attack):"]
        out += [f"    #{r['incident_id']} drill={r['drill']!r}" for r in doc["unregistered_drill_tags"]]
    return "\n".join(out)


async def cmd_status(args: argparse.Namespace) -> int:
    cfg = load_config(args, log_to_stdout=True)
    store = ControlStore(cfg)
    await store.open()
    try:
        doc = await gather(store.pool, cfg.listener.stall_after)
    finally:
        await store.close()
    print(json.dumps(doc, indent=2) if args.json else render_text(doc))
    return 0
