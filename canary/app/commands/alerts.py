"""``canary alerts``: list incidents (``--all`` includes suppressed ones), acknowledge, resolve, list
and replay dead letters.

``ack`` and ``resolve`` enqueue an ``acknowledge`` / ``resolve`` notification to every sink that was
paged for the incident, so PagerDuty and Opsgenie acknowledge or close their alert; a running
listener delivers it (its dispatcher is woken by NOTIFY). ``replay`` puts dead letters back into the
outbox with a fresh retry horizon.
"""

from __future__ import annotations

import argparse
import getpass
import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from canary.app.commands import load_config
from canary.incidents import change_status, replay_dead
from canary.store import ControlStore

STATUSES = ("open", "acknowledged", "resolved")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("alerts", help="incidents and their notifications: list, ack, resolve, dead letters, replay")
    cmds = p.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)

    ls = cmds.add_parser("list", help="list incidents, newest first (suppressed ones only with --all)")
    ls.add_argument("--all", action="store_true", help="include suppressed incidents (and say which rule suppressed them)")
    ls.add_argument("--status", choices=STATUSES, action="append", help="only these statuses (repeatable)")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(func=cmd_list)

    for name, help_ in (("ack", "acknowledge an incident (PagerDuty/Opsgenie alerts are acknowledged too)"),
                        ("resolve", "resolve an incident (PagerDuty/Opsgenie alerts are closed too)")):
        c = cmds.add_parser(name, help=help_)
        c.add_argument("incident", type=int, help="incident id (see `canary alerts list`)")
        c.add_argument("--by", default=None, help="who is doing it (default: the current user)")
        c.add_argument("--note", default=None, help="a note kept with the incident and sent along")
        c.set_defaults(func=cmd_status, status="acknowledged" if name == "ack" else "resolved")

    dead = cmds.add_parser("dead", help="list dead-lettered notifications")
    dead.add_argument("--json", action="store_true", help="one JSON object per line")
    dead.set_defaults(func=cmd_dead)

    rp = cmds.add_parser("replay", help="send dead-lettered notifications again")
    rp.add_argument("ids", type=int, nargs="*", help="outbox ids (see `canary alerts dead`)")
    rp.add_argument("--all", action="store_true", help="every dead letter (optionally of one --sink)")
    rp.add_argument("--sink", help="only dead letters of this sink")
    rp.set_defaults(func=cmd_replay)


async def _open(args: argparse.Namespace) -> ControlStore:
    cfg = load_config(args)
    return await ControlStore(cfg).open()


def _row_json(row: asyncpg.Record) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        out[k] = v.isoformat() if hasattr(v, "isoformat") else v
    return out


async def list_incidents(pool: asyncpg.Pool, *, include_suppressed: bool, statuses: Sequence[str] | None,
                         limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await pool.fetch(
        """
        SELECT i.id, i.status, i.severity, i.kind, i.title, i.event_count, cardinality(i.canary_ids) AS canaries,
               i.first_seen, i.last_seen, i.suppressed_by, i.drill, i.dedup_key,
               (SELECT count(*) FROM outbox o WHERE o.incident_id = i.id AND o.status = 'delivered') AS delivered,
               (SELECT count(*) FROM outbox o WHERE o.incident_id = i.id AND o.status = 'pending') AS pending,
               (SELECT count(*) FROM outbox o WHERE o.incident_id = i.id AND o.status = 'dead') AS dead
        FROM incidents i
        WHERE ($1 OR i.suppressed_by IS NULL) AND (cardinality($2::text[]) = 0 OR i.status = ANY($2::text[]))
        ORDER BY i.created_at DESC, i.id DESC
        LIMIT $3
        """,
        include_suppressed, list(statuses or ()), limit,
    )
    return rows


def _print_json(rows: Sequence[asyncpg.Record]) -> int:
    for r in rows:
        print(json.dumps(_row_json(r), ensure_ascii=False))
    return 0


async def cmd_list(args: argparse.Namespace) -> int:
    store = await _open(args)
    try:
        rows = await list_incidents(store.pool, include_suppressed=args.all, statuses=args.status, limit=args.limit)
    finally:
        await store.close()
    if args.json:
        return _print_json(rows)
    if not rows:
        print("no incidents" + ("" if args.all else " (suppressed ones are shown with --all)"))
        return 0
    print(f"{'ID':>6}  {'STATUS':<12} {'SEVERITY':<8} {'CANARIES':>8} {'EVENTS':>7}  {'LAST SEEN':<20} {'PAGES':<11} TITLE")
    for r in rows:
        pages = f"{r['delivered']}ok/{r['pending']}p/{r['dead']}d"
        title = r["title"] + (f"  [suppressed by {r['suppressed_by']}]" if r["suppressed_by"] else "")
        print(f"{r['id']:>6}  {r['status']:<12} {r['severity']:<8} {r['canaries']:>8} {r['event_count']:>7}  "
              f"{r['last_seen'].strftime('%Y-%m-%d %H:%M:%S'):<20} {pages:<11} {title}")
    return 0


async def cmd_status(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    store = await ControlStore(cfg).open()
    by = args.by or getpass.getuser()
    try:
        sent = await change_status(store.pool, args.incident, args.status, by=by, note=args.note,
                                   public_url=cfg.listener.public_url, audit_as=(f"cli:{by}", None))
    finally:
        await store.close()
    verb = "acknowledged" if args.status == "acknowledged" else "resolved"
    print(f"incident {args.incident} {verb}; {sent} notification(s) enqueued")
    return 0


async def cmd_dead(args: argparse.Namespace) -> int:
    store = await _open(args)
    try:
        rows = await store.pool.fetch(
            "SELECT o.id, o.incident_id, o.sink, o.action, o.sequence, o.attempts, o.last_error, o.created_at"
            " FROM outbox o WHERE o.status = 'dead' ORDER BY o.id"
        )
    finally:
        await store.close()
    if args.json:
        return _print_json(rows)
    if not rows:
        print("no dead letters")
    for r in rows:
        print(f"{r['id']:>6}  incident {r['incident_id']:<6} {r['sink']:<16} {r['action']:<11} attempts {r['attempts']:<3} "
              f"{(r['last_error'] or '')[:100]}")
    return 0


async def replay(pool: asyncpg.Pool, ids: Sequence[int], *, every: bool = False, sink: str | None = None,
                 by: str | None = None) -> list[int]:
    """Make dead letters pending again with a fresh retry horizon; returns the ids replayed (audited as ``cli:<by>``)."""
    return await replay_dead(pool, ids, every=every, sink=sink, audit_as=(f"cli:{by}", None) if by else None)


async def cmd_replay(args: argparse.Namespace) -> int:
    store = await _open(args)
    try:
        replayed = await replay(store.pool, args.ids, every=args.all, sink=args.sink, by=getpass.getuser())
    finally:
        await store.close()
    print(f"replayed {len(replayed)} dead letter(s)" + (f": {', '.join(map(str, replayed))}" if replayed else ""))
    return 0
