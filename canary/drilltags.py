"""Drill attribution in the pipeline: which events are drill traffic, decided by the drill registry.

A drill tag on an event is only a claim - ``application_name = 'canary-drill:…'`` is chosen by
whoever connects, exactly like a header would be. The pipeline therefore keeps an event's drill tag
only when a drill run registered that tag (a ``drill`` marker in ``drill_markers``) for a window
covering the event, and the event carries every other fact the step registered with it (a datastore
step registers its session's server pid once connected: a tag seen in ``pg_stat_activity`` and copied
into another session does not match it); otherwise the event is treated as a real attack and the claimed tag is kept
in its evidence (``claimed_drill``) for the responder. Events without a tag - mail, SMS, honeypot
requests, which cannot carry one - become drill events when they carry *every* fact a registered
step declared (its random sender, message ids, bound source port, …) inside that step's window.

One indexed query per batch; with no drill running it returns no rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from canary.events import DetectionEvent

#: Tolerance between the datastore's clock (log timestamps) and the control store's (marker windows).
CLOCK_SLACK = dt.timedelta(seconds=60)

_ACTIVE = """
SELECT run_id || '/' || step AS tag, section, field, value, valid_from, valid_until FROM drill_markers
WHERE valid_until >= $1 AND valid_from <= $2
"""


def _value(event: DetectionEvent, section: str, field: str) -> str | None:
    source = {"actor": event.actor, "origin": event.origin, "evidence": event.evidence}[section]
    value = source.get(field)
    return None if value is None else str(value)


async def attribute_drills(conn: asyncpg.Connection, events: Sequence[DetectionEvent]) -> list[DetectionEvent]:
    """The events with ``drill`` set from the registry: registered tags kept, unregistered tags
    dropped (kept as ``evidence.claimed_drill``), untagged events matched to a step by its facts."""
    if not events:
        return []
    lo = min(e.observed_at for e in events) - CLOCK_SLACK
    hi = max(e.observed_at for e in events) + CLOCK_SLACK
    rows = await conn.fetch(_ACTIVE, lo, hi)
    claimed = any(e.drill is not None for e in events)
    if not rows and not claimed:
        return list(events)
    tags: dict[str, tuple[dt.datetime, dt.datetime]] = {}
    facts: dict[str, dict[tuple[str, str], set[str]]] = defaultdict(lambda: defaultdict(set))
    windows: dict[str, tuple[dt.datetime, dt.datetime]] = {}
    for r in rows:
        window = (r["valid_from"] - CLOCK_SLACK, r["valid_until"] + CLOCK_SLACK)
        if r["section"] == "drill":
            tags[r["value"]] = window
        else:
            facts[r["tag"]][(r["section"], r["field"])].add(r["value"])
            windows[r["tag"]] = window
    out = []
    for e in events:
        at = e.observed_at
        # a claimed tag counts only inside its window and with every other fact its step declared (a
        # datastore step declares its session's server pid, which no other client can take)
        drill = e.drill if (e.drill in tags and tags[e.drill][0] <= at <= tags[e.drill][1]
                            and all(_value(e, s, f) in values for (s, f), values in facts.get(e.drill, {}).items())) else None
        if drill is None:
            drill = next((tag for tag, need in facts.items() if windows[tag][0] <= at <= windows[tag][1]
                          and all(_value(e, s, f) in values for (s, f), values in need.items())), None)
        if drill != e.drill:
            evidence = dict(e.evidence)
            if e.drill is not None and drill is None:
                evidence["claimed_drill"] = e.drill
            e = dataclasses.replace(e, drill=drill, evidence=evidence)
        out.append(e)
    return out


async def register_run(db: Any, run_id: str, playbook: str, mode: str, steps: int) -> None:
    """Record a drill run (``db``: a pool or connection to the control store)."""
    await db.execute("INSERT INTO drill_runs (id, playbook, mode, steps_total) VALUES ($1, $2, $3, $4)",
                     run_id, playbook, mode, steps)


async def register_markers(
    db: Any, run_id: str, step: int, markers: Iterable[tuple[str, str, str]], valid_for: float
) -> None:
    """Declare the (section, field, value) facts of a step's traffic, valid from now for ``valid_for`` seconds."""
    now = dt.datetime.now(dt.timezone.utc)
    until = now + dt.timedelta(seconds=valid_for)
    await db.executemany(
        "INSERT INTO drill_markers (run_id, step, section, field, value, valid_from, valid_until)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [(run_id, step, section, field, value, now, until) for section, field, value in markers],
    )
