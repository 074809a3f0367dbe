"""Run a playbook against a target and measure each step through the real pipeline.

For each step the runner registers the step's markers (with the step's time window) in the control
store, plays the attack, then watches the control store: an incident of the expected kind whose
events carry the step's markers (or whose drill tag is the step's tag) is the detection;
time-to-detect is the step's first statement -> the incident's commit (``incidents.created_at``),
time-to-page is the first statement -> the first delivered trigger (``outbox.delivered_at``).
Matched incidents are labelled with the step's drill tag (``[DRILL]`` title) so on-call can tell.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from canary.drills import steps as step_actions
from canary.drills.deployment import Target
from canary.drills.playbook import Playbook, Step
from canary.drills.steps import Marker, Skipped, StepContext
from canary.drilltags import register_markers, register_run
from canary.errors import CanaryError
from canary.store import registry

log = structlog.get_logger("canary.drills")

#: How long after a step's window its markers keep attributing late events (slow pipelines, retries).
MARKER_GRACE = 300.0
_EVIDENCE_KEYS = ("query", "table", "how", "statement_started", "subject", "urls", "channel", "text", "path",
                  "method", "credential", "auth_method", "stage", "spf", "dkim", "received")


class StepStatus(enum.StrEnum):
    PASSED = "passed"  # detected and paged within the SLOs
    LATE = "late"  # detected, but detection or page missed its SLO
    MISSED = "missed"  # no incident of the expected kind
    SKIPPED = "skipped"  # a prerequisite is missing on this deployment (never counted as passed)
    ERROR = "error"  # the step could not be played

    @property
    def fails(self) -> bool:
        return self in (StepStatus.LATE, StepStatus.MISSED, StepStatus.ERROR)


@dataclass
class StepResult:
    number: int
    name: str
    action: str
    expect: str
    slo_detect: float
    slo_page: float
    status: StepStatus = StepStatus.MISSED
    reason: str = ""
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None  # when the step's last statement or message completed
    detected_at: dt.datetime | None = None
    paged_at: dt.datetime | None = None
    detect_s: float | None = None
    page_s: float | None = None
    incidents: list[dict[str, Any]] = field(default_factory=list)
    other_incidents: list[dict[str, Any]] = field(default_factory=list)  # matched, but of another kind
    paged_sinks: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    markers: list[dict[str, str]] = field(default_factory=list)
    joined: list[int] = field(default_factory=list)  # incidents opened before this step that its events joined

    @property
    def detected(self) -> bool:
        return bool(self.incidents)

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number, "name": self.name, "action": self.action, "expect": self.expect,
            "status": str(self.status), "detected": self.detected, "reason": self.reason,
            "slo": {"detect_s": self.slo_detect, "page_s": self.slo_page},
            "started_at": _iso(self.started_at), "ended_at": _iso(self.ended_at),
            "detected_at": _iso(self.detected_at), "paged_at": _iso(self.paged_at),
            "time_to_detect_s": _round(self.detect_s), "time_to_page_s": _round(self.page_s),
            "incident_ids": [i["id"] for i in self.incidents], "incidents": self.incidents,
            "other_incidents": self.other_incidents, "joined_incidents": self.joined, "paged_sinks": self.paged_sinks,
            "facts": self.facts,
            "markers": self.markers,
        }


@dataclass
class DrillResult:
    run_id: str
    playbook: str
    description: str
    mode: str
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    steps: list[StepResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not any(s.status.fails for s in self.steps)

    @property
    def status(self) -> str:
        return "passed" if self.passed else "failed"

    def count(self, status: StepStatus) -> int:
        return sum(1 for s in self.steps if s.status is status)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "playbook": self.playbook, "description": self.description, "mode": self.mode,
            "status": self.status, "started_at": _iso(self.started_at), "finished_at": _iso(self.finished_at),
            "summary": {str(s): self.count(s) for s in StepStatus}, "notes": self.notes,
            "steps": [s.to_json() for s in self.steps],
        }


def new_run_id() -> str:
    return "dr-" + secrets.token_hex(6)


class DrillRunner:
    def __init__(self, target: Target, playbook: Playbook, *, run_id: str | None = None, poll: float = 0.05,
                 registered: bool = False) -> None:
        self.target = target
        self.playbook = playbook
        self.run_id = run_id or new_run_id()
        self.poll = poll
        #: the run's drill_runs row exists already: the API registers it with its audit entry before it
        #: answers the run's id (canary.web.drill_runs), so that id can be read at once
        self.registered = registered
        self.log = log.bind(run_id=self.run_id, playbook=playbook.name)

    async def run(self) -> DrillResult:
        pool = self.target.pool
        result = DrillResult(self.run_id, self.playbook.name, self.playbook.description, self.target.mode,
                             started_at=_now(), notes=list(self.target.notes))
        if not self.registered:
            await register_run(pool, self.run_id, self.playbook.name, self.target.mode, len(self.playbook.steps))
        status = "error"
        try:
            for number, step in enumerate(self.playbook.steps, start=1):
                result.steps.append(await self._step(number, step))
            status = result.status
        finally:
            result.finished_at = _now()
            await pool.execute(
                "UPDATE drill_runs SET status = $2, finished_at = clock_timestamp(), detected = $3, missed = $4,"
                " skipped = $5, result = $6 WHERE id = $1",
                self.run_id, status, sum(1 for s in result.steps if s.detected), result.count(StepStatus.MISSED),
                result.count(StepStatus.SKIPPED), result.to_json(),
            )
        self.log.info("drill.finished", status=status, summary=result.to_json()["summary"])
        return result

    # -- one step --------------------------------------------------------------------------------
    async def _step(self, number: int, step: Step) -> StepResult:
        slo = self.playbook.slo_for(step)
        res = StepResult(number, step.name, str(step.action), str(step.expect), slo.detect, slo.page)
        tag = f"{self.run_id}/{number}"
        markers: list[Marker] = []

        async def register(new: Sequence[Marker]) -> None:
            await register_markers(self.target.pool, self.run_id, number,
                                   [(m.section, m.field, m.value) for m in new], step.timeout + MARKER_GRACE)
            markers.extend(new)

        ctx = StepContext(self.target, step, number, tag, register)
        slog = self.log.bind(step=number, action=str(step.action))
        try:
            await step_actions.execute(ctx)
        except Skipped as exc:
            res.status, res.reason = StepStatus.SKIPPED, exc.reason
            slog.info("drill.step_skipped", reason=exc.reason)
            return res
        except (CanaryError, asyncpg.PostgresError, OSError, asyncio.TimeoutError) as exc:
            res.status, res.reason = StepStatus.ERROR, f"{type(exc).__name__}: {exc}"[:500]
            slog.warning("drill.step_failed", error=res.reason)
            if ctx.started is None:
                return res
        res.ended_at = _now()
        res.facts = ctx.facts
        res.markers = [{"section": m.section, "field": m.field, "value": m.value} for m in markers]
        assert ctx.started is not None
        res.started_at = dt.datetime.fromtimestamp(ctx.started, dt.timezone.utc)
        await self._observe(res, step, markers, ctx.started)
        if res.status is not StepStatus.ERROR:
            res.status, res.reason = _verdict(res)
        slog.info("drill.step_done", status=str(res.status), detect_s=res.detect_s, page_s=res.page_s)
        return res

    async def _observe(self, res: StepResult, step: Step, markers: Sequence[Marker], started: float) -> None:
        """Wait for the expected incident, then for its first delivered page (bounded by step.timeout).

        Detection is the commit of the incident the step opened, or - when the step's events joined an
        incident opened earlier (same group within ``alerting.group_window``) - of the step's first event."""
        deadline = time.monotonic() + step.timeout
        since = dt.datetime.fromtimestamp(started - 1.0, dt.timezone.utc)
        step_start = dt.datetime.fromtimestamp(started, dt.timezone.utc)
        found: dict[int, tuple[dt.datetime, set[str]]] = {}
        expected: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            found = await self._matching(markers, since)
            expected = await self._incidents([i for i, (_, kinds) in found.items() if res.expect in kinds])
            if expected:
                break
            await asyncio.sleep(self.poll)
        if expected:
            res.joined = [r["id"] for r in expected if r["created_at"] < since]
            first = min(r["created_at"] if r["id"] not in res.joined else found[r["id"]][0] for r in expected)
            res.detected_at, res.detect_s = first, first.timestamp() - started
            exp_ids = [r["id"] for r in expected]
            while True:  # a trigger for a new incident, an update (escalation) for one the step grew
                pages = await self.target.pool.fetch(
                    "SELECT sink, min(delivered_at) AS at FROM outbox WHERE incident_id = ANY($1::bigint[])"
                    " AND action IN ('trigger', 'update') AND status = 'delivered' AND created_at >= $2"
                    " GROUP BY sink ORDER BY 2", exp_ids, step_start,
                )
                if pages or time.monotonic() >= deadline:
                    break
                await asyncio.sleep(self.poll)
            if pages:
                res.paged_sinks = [p["sink"] for p in pages]
                res.paged_at = pages[0]["at"]
                res.page_s = res.paged_at.timestamp() - started
            if self.target.receiver is not None:
                got = self.target.receiver.received_for(set(exp_ids))
                if got:
                    res.facts["receiver_page_s"] = round(min(w for w, _ in got) - started, 4)
        found = await self._matching(markers, since)
        await self._label(list(found), res.number, step_start)
        final = await self._incidents(list(found))  # as they stand now (later events grew them)
        res.incidents = [_incident_json(r) for r in final if res.expect in found[r["id"]][1]]
        res.other_incidents = [_incident_json(r) for r in final if res.expect not in found[r["id"]][1]]

    async def _matching(self, markers: Sequence[Marker], since: dt.datetime) -> dict[int, tuple[dt.datetime, set[str]]]:
        """Incident id -> (first of the step's events in it, their kinds): events recorded since the step
        started whose drill tag is the step's, or that carry every other marker field (any of its values).
        Kinds come from the events: an incident opened by pgaudit's whole-table "exported" line also
        holds the same statement's row-level "read" events."""
        tags = [m.value for m in markers if m.section == "drill"]
        fields: dict[tuple[str, str], list[str]] = {}
        for m in markers:
            if m.section != "drill":
                fields.setdefault((m.section, m.field), []).append(m.value)
        if not tags and not fields:
            return {}
        args: list[Any] = [since, tags]
        conds = []
        for (section, name), values in fields.items():
            assert section in step_actions.SECTIONS  # a fixed column name, never input
            args += [name, values]
            conds.append(f"({section} ->> ${len(args) - 1}) = ANY(${len(args)}::text[])")
        rows = await self.target.pool.fetch(
            "SELECT incident_id, min(recorded_at) AS first, array_agg(DISTINCT kind) AS kinds FROM events"
            " WHERE recorded_at >= $1 AND incident_id IS NOT NULL"
            " AND (drill = ANY($2::text[])" + (" OR (" + " AND ".join(conds) + ")" if conds else "") + ")"
            " GROUP BY incident_id", *args)
        return {r["incident_id"]: (r["first"], set(r["kinds"])) for r in rows}

    async def _incidents(self, ids: Sequence[int]) -> list[dict[str, Any]]:
        """The incidents as the report shows them, each with the distinct labels of its canaries."""
        if not ids:
            return []
        rows = await self.target.pool.fetch(
            "SELECT i.id, i.kind, i.severity, i.title, i.source, i.created_at, i.drill, i.event_count,"
            " cardinality(i.canary_ids) AS canaries, i.canary_ids, i.actor, i.origin, i.evidence, i.suppressed_by"
            " FROM incidents i WHERE i.id = ANY($1::bigint[]) ORDER BY i.id", list(ids))
        names = await registry.labels(self.target.pool, sorted({c for r in rows for c in r["canary_ids"]}))
        return [{**dict(r), "labels": sorted({names[c] for c in r["canary_ids"] if c in names})} for r in rows]

    async def _label(self, ids: Sequence[int], number: int, since: dt.datetime) -> None:
        """Mark the incidents the step opened as drill incidents, where the listener did not already
        (one running older code). An incident opened before the step - possibly a real attack its
        events joined - is never relabelled."""
        await self.target.pool.execute(
            "UPDATE incidents SET drill = $2, title = '[DRILL] ' || title"
            " WHERE id = ANY($1::bigint[]) AND drill IS NULL AND created_at >= $3",
            list(ids), f"{self.run_id}/{number}", since,
        )


def _verdict(res: StepResult) -> tuple[StepStatus, str]:
    if not res.detected:
        return StepStatus.MISSED, (f"no {res.expect} event carrying this step's markers reached an incident "
                                   "within the step's timeout")
    problems = []
    if res.detect_s is not None and res.detect_s > res.slo_detect:
        problems.append(f"detected in {res.detect_s:.2f}s > SLO {res.slo_detect:g}s")
    if res.page_s is None and res.joined:
        problems.append(f"no new page: the step joined incident(s) {', '.join('#' + str(i) for i in res.joined)}, "
                        "opened and paged before it (same group within alerting.group_window)")
    elif res.page_s is None:
        problems.append("no page was delivered")
    elif res.page_s > res.slo_page:
        problems.append(f"paged in {res.page_s:.2f}s > SLO {res.slo_page:g}s")
    if problems:
        return StepStatus.LATE, "; ".join(problems)
    return StepStatus.PASSED, ""


def _incident_json(r: Mapping[str, Any]) -> dict[str, Any]:
    """What the report shows of an incident: who, where, what - never canary values or locations."""
    evidence = r["evidence"] or {}
    return {
        "id": r["id"], "kind": r["kind"], "severity": r["severity"], "title": r["title"], "source": r["source"],
        "created_at": _iso(r["created_at"]), "drill": r["drill"], "events": r["event_count"],
        "canaries": r["canaries"], "labels": sorted(r["labels"] or []), "suppressed_by": r["suppressed_by"],
        "actor": dict(r["actor"] or {}), "origin": dict(r["origin"] or {}),
        "evidence": {k: _short(evidence[k]) for k in _EVIDENCE_KEYS if evidence.get(k) not in (None, "", [])},
    }


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > 300:
        return value[:300] + "…"
    if isinstance(value, list):
        return value[:10]
    return value


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _round(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None
