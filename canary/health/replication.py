"""Replication and decoding paths, watched from each datastore's primary (scheduled job ``replication``).

Row security is never evaluated for rows that leave by replication: a logical slot decodes changed
rows (canaries included) for whoever holds it, a publication hands its tables to any subscriber (its
initial copy is a whole-table export), and a physical standby or ``pg_receivewal`` holds a full copy
of the cluster. The watch reads the catalog every ``coverage.check_interval``:

* ``pg_replication_slots``: a new slot is TAMPER / CRITICAL (a temporary ``pg_basebackup_*`` slot is
  a base backup: EXPORTED);
* ``pg_publication`` / ``pg_publication_tables``: a new publication that includes a canary table
  (or ALL TABLES) is TAMPER / CRITICAL, with its owner;
* ``pg_subscription`` (never ``subconninfo``: it holds a password): a new subscription is TAMPER;
* ``pg_stat_replication``: a new WAL sender is EXPORTED / CRITICAL unless its client address is a
  configured node's ``replication_from``; a logical one names its slot and plugin.

What exists at the first look is the baseline (listed by ``canary coverage report``, not paged).
Standbys are discovered from the WAL senders that replay (``replay_lsn`` set; ``pg_receivewal``
never replays): one whose address matches no ``[[coverage.nodes]]`` entry has a log nobody ingests,
a HEALTH / ERROR gap that pages once per standby (same event key while it stays).

The log handler :mod:`canary.postgres.replication` reports the same paths the moment they are used
(``log_replication_commands``), with who and from where; both use the slot's group, so one slot is
one incident.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from canary.config import Config, DatastoreConfig
from canary.events import DetectionEvent, EventKind, Severity, event_key
from canary.postgres.replication import slot_group
from canary.store import detection_objects

_SLOTS = """
SELECT s.slot_name::text AS name, s.slot_type, s.plugin::text AS plugin, s.database::text AS database, s.temporary,
       s.active, s.active_pid, a.usename::text AS usename, pg_catalog.host(a.client_addr) AS client_addr
FROM pg_catalog.pg_replication_slots s
LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) s.active_pid
"""

_PUBLICATIONS = """
SELECT p.pubname::text AS name, o.rolname::text AS owner, p.puballtables,
       ARRAY(SELECT t.schemaname OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) t.tablename
             FROM pg_catalog.pg_publication_tables t WHERE t.pubname OPERATOR(pg_catalog.=) p.pubname) AS tables
FROM pg_catalog.pg_publication p JOIN pg_catalog.pg_roles o ON o.oid OPERATOR(pg_catalog.=) p.pubowner
"""

# only these columns: subconninfo holds the publisher's password
_SUBSCRIPTIONS = """
SELECT s.subname::text AS name, o.rolname::text AS owner, s.subenabled, s.subpublications
FROM pg_catalog.pg_subscription s JOIN pg_catalog.pg_roles o ON o.oid OPERATOR(pg_catalog.=) s.subowner
WHERE s.subdbid OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database
                                        WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
"""

_WALSENDERS = """
SELECT r.pid, r.usename::text AS usename, r.application_name, pg_catalog.host(r.client_addr) AS client_addr, r.backend_start,
       r.state, r.replay_lsn IS NOT NULL AS replays, s.slot_name::text AS slot, s.slot_type, s.plugin::text AS plugin
FROM pg_catalog.pg_stat_replication r
LEFT JOIN pg_catalog.pg_replication_slots s ON s.active_pid OPERATOR(pg_catalog.=) r.pid
"""


@dataclass(frozen=True, slots=True)
class Item:
    """One replication object seen on a primary."""

    kind: str  # slot | publication | subscription | walsender
    name: str
    details: Mapping[str, Any]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


async def read_items(conn: asyncpg.Connection, armed: Sequence[str]) -> list[Item]:
    """Every slot, publication (with the canary tables it includes), subscription and WAL sender."""
    items: list[Item] = []
    for r in await conn.fetch(_SLOTS):
        items.append(Item("slot", r["name"], {
            "slot_type": r["slot_type"], "plugin": r["plugin"], "database": r["database"], "temporary": r["temporary"],
            "active_pid": r["active_pid"], "user": r["usename"], "client_addr": r["client_addr"]}))
    for r in await conn.fetch(_PUBLICATIONS):
        canary = sorted(armed) if r["puballtables"] else sorted(set(r["tables"]) & set(armed))
        items.append(Item("publication", r["name"], {"owner": r["owner"], "all_tables": r["puballtables"],
                                                     "canary_tables": canary}))
    for r in await conn.fetch(_SUBSCRIPTIONS):
        items.append(Item("subscription", r["name"], {"owner": r["owner"], "enabled": r["subenabled"],
                                                      "publications": list(r["subpublications"] or [])}))
    for r in await conn.fetch(_WALSENDERS):
        started = r["backend_start"]
        items.append(Item("walsender", f"{r['pid']}@{started.isoformat() if started else '?'}", {
            "pid": r["pid"], "user": r["usename"], "application_name": r["application_name"],
            "client_addr": r["client_addr"], "state": r["state"], "replays": r["replays"], "slot": r["slot"],
            "slot_type": r["slot_type"], "plugin": r["plugin"]}))
    return items


def known_node(config: Config, datastore: str, client_addr: str | None) -> str | None:
    """The configured node (of ``datastore``) whose ``replication_from`` holds ``client_addr``."""
    if not client_addr:
        return None
    try:
        addr = ipaddress.ip_address(client_addr.split("/")[0])
    except ValueError:
        return None
    for node in config.coverage.nodes:
        if node.datastore == datastore and any(addr in ipaddress.ip_network(n, strict=False) for n in node.replication_from):
            return node.name
    return None


def _event(ds: DatastoreConfig, kind: EventKind, severity: Severity, problem: str, item: Item, group: str,
           at: dt.datetime, key_extra: object = None, actor: Mapping[str, Any] | None = None) -> DetectionEvent:
    return DetectionEvent(
        kind=kind, source="replication", key=event_key("replication", ds.name, item.kind, item.name, problem, key_extra),
        group=group, canary_id=None, observed_at=at, severity=severity,
        actor={k: v for k, v in (actor or {}).items() if v},
        origin={"node": ds.node_name, "datastore": ds.name,
                **({"client_addr": item.details["client_addr"]} if item.details.get("client_addr") else {})},
        evidence={"signal": "replication_watch", "problem": problem, "object": item.name, "object_kind": item.kind,
                  **{k: v for k, v in item.details.items() if v not in (None, "", [])}},
    )


def findings(config: Config, ds: DatastoreConfig, new: Sequence[Item], current: Sequence[Item],
             at: dt.datetime) -> list[DetectionEvent]:
    """Events for objects that appeared since the last look (``new``) and standby gaps among ``current``."""
    out: list[DetectionEvent] = []
    for item in new:
        d = item.details
        who = {"user": d.get("user") or d.get("owner")}
        if item.kind == "slot":
            if d.get("temporary") and item.name.startswith("pg_basebackup_"):
                out.append(_event(ds, EventKind.EXPORTED, Severity.CRITICAL, "base_backup", item,
                                  f"replication:{ds.name}:base_backup:{d.get('client_addr') or '?'}", at, actor=who))
            else:
                out.append(_event(ds, EventKind.TAMPER, Severity.CRITICAL, "replication_slot_created", item,
                                  slot_group(ds.name, item.name), at, actor=who))
        elif item.kind == "publication" and d.get("canary_tables"):
            out.append(_event(ds, EventKind.TAMPER, Severity.CRITICAL, "publication_includes_canary_table", item,
                              f"replication:{ds.name}:publication:{item.name}", at, actor=who))
        elif item.kind == "subscription":
            out.append(_event(ds, EventKind.TAMPER, Severity.WARNING, "subscription_created", item,
                              f"replication:{ds.name}:subscription:{item.name}", at, actor=who))
        elif item.kind == "walsender" and known_node(config, ds.name, d.get("client_addr")) is None:
            logical = d.get("slot_type") == "logical"
            problem = "logical_decoding_stream" if logical else (
                "base_backup" if d.get("state") == "backup" else "physical_replication_stream")
            group = slot_group(ds.name, d["slot"]) if d.get("slot") else f"replication:{ds.name}:{problem}:{d.get('client_addr') or '?'}"
            out.append(_event(ds, EventKind.EXPORTED, Severity.CRITICAL, problem, item, group, at,
                              actor={"user": d.get("user"), "application_name": d.get("application_name")}))
    for item in current:
        d = item.details
        if item.kind == "walsender" and d.get("replays") and known_node(config, ds.name, d.get("client_addr")) is None:
            standby = f"{d.get('client_addr') or 'local'}/{d.get('application_name') or '?'}"
            out.append(DetectionEvent(
                kind=EventKind.HEALTH, source="replication", key=event_key("standby-gap", ds.name, standby),
                group=f"standby-gap:{ds.name}:{standby}", canary_id=None, observed_at=at, severity=Severity.ERROR,
                origin={"node": ds.node_name, "datastore": ds.name, **({"client_addr": d["client_addr"]} if d.get("client_addr") else {})},
                evidence={"problem": "standby_log_not_ingested", "standby": standby, "user": d.get("user"),
                          "detail": "a standby streams from this primary and serves reads, but no [[coverage.nodes]] entry "
                                    "with its address in replication_from ingests its log: reads there are not seen"},
            ))
    return out


async def watch(config: Config, pool: asyncpg.Pool, ds: DatastoreConfig, *, timeout: float = 30.0) -> list[DetectionEvent]:
    """One look at ``ds``'s primary: store what is there, return events for what is new and for gaps."""
    at = _now()
    armed = await detection_objects.targets(pool, ds.name)
    conn = await asyncpg.connect(ds.dsn.reveal(), timeout=timeout, command_timeout=timeout)
    try:
        current = await read_items(conn, armed)
    finally:
        await conn.close()
    async with pool.acquire() as ctl, ctl.transaction():
        await ctl.execute("SELECT pg_advisory_xact_lock(hashtext('replication_seen:' || $1))", ds.name)
        baseline = await ctl.fetchval("SELECT taken_at FROM replication_baseline WHERE datastore = $1", ds.name)
        seen = {(r["kind"], r["name"]) for r in await ctl.fetch(
            "SELECT kind, name FROM replication_seen WHERE datastore = $1", ds.name)}
        new = [i for i in current if (i.kind, i.name) not in seen] if baseline is not None else []
        await ctl.execute("DELETE FROM replication_seen WHERE datastore = $1 AND NOT ((kind, name) IN ("
                          "SELECT * FROM unnest($2::text[], $3::text[])))",
                          ds.name, [i.kind for i in current], [i.name for i in current])
        await ctl.executemany(
            "INSERT INTO replication_seen (datastore, kind, name, details) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT (datastore, kind, name) DO UPDATE SET details = EXCLUDED.details, last_seen = now()",
            [(ds.name, i.kind, i.name, dict(i.details)) for i in current])
        if baseline is None:
            await ctl.execute("INSERT INTO replication_baseline (datastore) VALUES ($1)", ds.name)
    return findings(config, ds, new, current, at)


async def listing(pool: asyncpg.Pool, datastore: str) -> list[asyncpg.Record]:
    """(kind, name, details, first_seen, last_seen) of what the last look saw on ``datastore``."""
    return list(await pool.fetch(
        "SELECT kind, name, details, first_seen, last_seen FROM replication_seen WHERE datastore = $1 ORDER BY kind, name",
        datastore))


async def watched(pool: asyncpg.Pool, datastore: str) -> dt.datetime | None:
    """When the watch first looked at ``datastore`` (None: never)."""
    at: dt.datetime | None = await pool.fetchval("SELECT taken_at FROM replication_baseline WHERE datastore = $1", datastore)
    return at
