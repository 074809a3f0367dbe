"""Starting a drill from the API (``POST /api/v1/drills``) and the console's Drills page.

What ``canary drill run <playbook>`` does against the configured deployment, as a background task of
this listener: the same playbook search path (``<data_dir>/playbooks``, ``config/playbooks``, the shipped
ones: :func:`canary.drills.playbook.available`), :func:`canary.drills.deployment.configured` (its own
pool on the control store, the master key, ``$CANARY_DRILL_INSIDER_DSN`` for insider steps) and
:class:`canary.drills.runner.DrillRunner`. The listener the drill needs is the one serving this request.

Why names only: the caller names a playbook and the name is looked up among the files the search path
holds; a path a caller gives is never opened, so nothing outside those directories is read.

Why refuse before anything runs (409): one run at a time per listener (a drill is real traffic on a real
datastore, and two would page on-call twice); no datastore configured (the demo deployment stands up
its own servers and listener: ``canary drill run --demo``, never inside a running listener); insider
steps without ``$CANARY_DRILL_INSIDER_DSN`` in the listener's environment (they would only be skipped:
the configured DSN is privileged and row-level security does not see it). An unknown playbook or
datastore is the caller's mistake (400).

The run's row in ``drill_runs`` and its audit entry (``drill.run``: who started which playbook against
which datastore, from where) are written in one transaction before the answer, so the id answered can
be read at once (``GET /api/v1/drills/{id}``) and the runner is told the row exists. Whatever fails
inside the run (the key, the store, a step's connection, ``api.drill_timeout``, the listener stopping)
is recorded in that row (status ``error``, the reason in its report's ``error`` and ``notes``), never
left as an exception of the task: the listener keeps running.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog
from aiohttp import web

from canary.drills import deployment, playbook
from canary.drills.playbook import Action, Playbook
from canary.drills.runner import DrillResult, DrillRunner, new_run_id
from canary.drilltags import register_run
from canary.errors import CanaryError, DrillError
from canary.store import audit
from canary.typing import SourceContext
from canary.web.spec import JSON, BadParam, Call

log = structlog.get_logger("canary.web.drills")

#: actions whose "insider" steps connect as the ordinary role of $CANARY_DRILL_INSIDER_DSN
#: (canary.drills.steps._insider_dsn; a replica read falls back to the standby's configured DSN)
INSIDER_ACTIONS = frozenset({Action.PG_READ, Action.PG_READ_PAGES, Action.PG_COPY})
#: how long stopping the listener waits for a cancelled run to record itself
STOP_GRACE = 5.0
_NO_STORE = {"Cache-Control": "no-store"}
_NAME_MAX = 63

RUN_BODY: JSON = {"type": "object", "required": ["playbook"], "additionalProperties": False, "properties": {
    "playbook": {"type": "string", "maxLength": _NAME_MAX,
                 "description": "a playbook name (`canary drill list`): shipped, config/playbooks or <data_dir>/playbooks"},
    "datastore": {"type": "string", "maxLength": _NAME_MAX, "description": "the configured datastore to drill (default: the first)"}}}
RUN_STARTED: JSON = {"type": "object", "required": ["id", "playbook", "datastore", "status", "report"], "properties": {
    "id": {"type": "string"}, "playbook": {"type": "string"}, "datastore": {"type": "string"},
    "status": {"type": "string", "enum": ["running"]},
    "report": {"type": "string", "description": "where the run and, once finished, its report are (also the Location header)"}}}


class CannotRun(DrillError):
    """The deployment cannot run this playbook now (answered 409, shown by the console): the message says why."""


@dataclass(frozen=True, slots=True)
class Started:
    id: str
    playbook: str
    datastore: str


def insider_steps(book: Playbook) -> list[str]:
    """Names of the steps that read as the ordinary role of ``$CANARY_DRILL_INSIDER_DSN``."""
    return [s.name for s in book.steps if s.role == "insider" and s.action in INSIDER_ACTIONS]


class DrillRuns:
    """One listener's drill runs started through the API: at most one at a time, as a background task."""

    def __init__(self, prefix: str, who: Callable[[Call], tuple[str, str]]) -> None:
        self.prefix = prefix
        self.who = who  # (actor, client address) of a call, as the API audits them
        self.rt: SourceContext | None = None
        self.task: asyncio.Task[None] | None = None
        self.current: str | None = None  # the running run's id ("" while one is being registered)

    def start(self, rt: SourceContext) -> None:
        self.rt = rt

    @property
    def runtime(self) -> SourceContext:
        if self.rt is None:
            raise web.HTTPServiceUnavailable(text='{"error": "starting"}', content_type="application/json")
        return self.rt

    async def stop(self) -> None:
        """Cancel a run still going (it records itself as an error) and wait a bounded grace for it."""
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_GRACE)

    async def names(self) -> list[str]:
        """The playbooks a caller may name (the console's select list)."""
        found = await asyncio.to_thread(playbook.available, [self.runtime.config.canary.data_dir / "playbooks"])
        return sorted(found)

    # -- the route -------------------------------------------------------------------------------
    async def handle(self, call: Call) -> web.StreamResponse:
        """``POST /drills``: 202 with the run's id and its Location; 409 when it cannot run now."""
        try:
            run = await self.launch(call)
        except CannotRun as exc:
            return web.json_response({"error": str(exc)}, status=409, headers=_NO_STORE)
        where = f"{self.prefix}/drills/{run.id}"
        return web.json_response({"id": run.id, "playbook": run.playbook, "datastore": run.datastore, "status": "running",
                                  "report": where}, status=202, headers={**_NO_STORE, "Location": where})

    async def launch(self, call: Call) -> Started:
        """Check, register and audit a run of the playbook ``call.body`` names, then start it in the
        background. :class:`BadParam` for an unknown playbook or datastore, :class:`CannotRun` when this
        listener cannot run it now."""
        rt = self.runtime
        name, ds_name = _parse(call.body)
        self._refuse_if_busy()
        if not rt.config.datastores:
            raise CannotRun("no datastore is configured: the listener runs drills against the configured deployment only "
                            "(a demo deployment: canary drill run --demo)")
        ds = next((d for d in rt.config.datastores if d.name == ds_name), None) if ds_name else rt.config.datastores[0]
        if ds is None:
            raise BadParam("datastore", f"no configured datastore named {ds_name!r}")
        found = await asyncio.to_thread(playbook.available, [rt.config.canary.data_dir / "playbooks"])
        if name not in found:
            raise BadParam("playbook", f"no playbook named {name!r} (available: {', '.join(sorted(found)) or 'none'})")
        try:
            book = await asyncio.to_thread(playbook.load_file, found[name])
        except DrillError as exc:
            log.warning("drill.playbook_invalid", playbook=name, error=str(exc)[:500])
            raise CannotRun(f"playbook {name!r} is not valid (the listener's log says why)") from None
        needs = insider_steps(book)
        if needs and not os.environ.get(deployment.ENV_INSIDER_DSN):
            raise CannotRun(f"${deployment.ENV_INSIDER_DSN} is not set in the listener's environment: step(s) "
                            f"{', '.join(repr(n) for n in needs)} read as an ordinary role, with that DSN")
        self._refuse_if_busy()  # again: another call may have started one while this one read the files
        self.current = ""
        try:
            run_id = new_run_id()
            actor, client = self.who(call)
            async with rt.pool.acquire() as conn, conn.transaction():
                await register_run(conn, run_id, book.name, "configured", len(book.steps))
                await audit.record(conn, actor=actor, client=client, action="drill.run", target=f"drill:{run_id}",
                                   details={"playbook": book.name, "datastore": ds.name})
            started_at = dt.datetime.now(dt.timezone.utc)
            self.task = asyncio.create_task(self._run(rt, run_id, book, ds.name, started_at, actor), name=f"drill:{run_id}")
        except BaseException:
            self.current = None
            raise
        self.current = run_id
        log.info("drill.api_run_started", run_id=run_id, playbook=book.name, datastore=ds.name, actor=actor)
        return Started(run_id, book.name, ds.name)

    def _refuse_if_busy(self) -> None:
        if self.current is not None:
            running = f"drill run {self.current}" if self.current else "a drill run"
            raise CannotRun(f"{running} is still running in this listener: one at a time")

    # -- the run -------------------------------------------------------------------------------
    async def _run(self, rt: SourceContext, run_id: str, book: Playbook, datastore: str, started_at: dt.datetime,
                   actor: str) -> None:
        """The run, in the background: whatever ends it is recorded in its row, nothing escapes."""
        try:
            async with asyncio.timeout(rt.config.api.drill_timeout):
                async with deployment.configured(rt.config, datastore) as target:
                    target.notes.append(f"started in the listener by {actor} (POST {self.prefix}/drills)")
                    result = await DrillRunner(target, book, run_id=run_id, registered=True).run()
            log.info("drill.api_run_finished", run_id=run_id, playbook=book.name, status=result.status)
        except asyncio.CancelledError:
            await self._failed(rt, run_id, book, started_at, "the listener stopped during the run")
            raise
        except TimeoutError:
            await self._failed(rt, run_id, book, started_at,
                               f"the run did not finish within api.drill_timeout ({rt.config.api.drill_timeout:g}s)")
        except CanaryError as exc:  # our own errors say what is missing, without secrets
            await self._failed(rt, run_id, book, started_at, f"{type(exc).__name__}: {exc}"[:500])
        except Exception as exc:  # noqa: BLE001 - the task's boundary: a failure is the run's, never the listener's
            await self._failed(rt, run_id, book, started_at, f"{type(exc).__name__} (the listener's log has no more)")
        finally:
            if self.current == run_id:
                self.current = None

    async def _failed(self, rt: SourceContext, run_id: str, book: Playbook, started_at: dt.datetime, why: str) -> None:
        """Record the run as an error: the runner's report with the reason added when it wrote one,
        else a report without steps (the form :mod:`canary.drills.report` renders)."""
        log.warning("drill.api_run_failed", run_id=run_id, playbook=book.name, error=why)
        empty = DrillResult(run_id, book.name, book.description, "configured", started_at=started_at,
                            finished_at=dt.datetime.now(dt.timezone.utc), notes=[why]).to_json()
        try:
            await rt.pool.execute(
                "UPDATE drill_runs SET status = 'error', finished_at = coalesce(finished_at, clock_timestamp()),"
                " result = CASE WHEN result IS NULL THEN $2::jsonb ELSE result || jsonb_build_object("
                "'status', 'error', 'error', $3::text, 'notes', coalesce(result->'notes', '[]'::jsonb) || to_jsonb($3::text))"
                " END WHERE id = $1", run_id, {**empty, "status": "error", "error": why}, why)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, asyncio.TimeoutError) as exc:
            log.warning("drill.api_run_unrecorded", run_id=run_id, error=type(exc).__name__)


def _parse(body: Mapping[str, Any]) -> tuple[str, str | None]:
    """(playbook name, datastore name or None) of a request body, else :class:`BadParam`."""
    unknown = sorted(set(body) - {"playbook", "datastore"})
    if unknown:
        raise BadParam(str(unknown[0])[:40], "unknown field (playbook, datastore)")
    name, ds = body.get("playbook"), body.get("datastore")
    if not isinstance(name, str) or not 0 < len(name) <= _NAME_MAX:
        raise BadParam("playbook", "a playbook name (canary drill list)")
    if ds is not None and (not isinstance(ds, str) or not 0 < len(ds) <= _NAME_MAX):
        raise BadParam("datastore", "a configured datastore's name")
    return name, ds
