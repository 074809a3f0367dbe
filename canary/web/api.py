"""The REST API under ``/api/v1``: incidents, canaries, health, drills, sinks, tokens and the audit log.

Every route is declared once in :meth:`Api.table` (method, path, scope, parameters, body and response
schema); the aiohttp routes and the OpenAPI 3.1 document at ``/api/v1/openapi.json`` are both made from
that table (:mod:`canary.web.spec`). Every route needs an API token or a console session
(:mod:`canary.web.auth`), the document included; a session's POSTs also need its CSRF token
(``X-CSRF-Token``). Handlers return their JSON data (the wrapper answers it), so the console
(:mod:`canary.web.console`) renders exactly what the API returns.

Secrets: answers name canaries by id, label, datastore, table and kind. A canary's location (row key)
and values (addresses, numbers, tokens), and the rows a seeding plan would write, are in an answer only
when the token has the ``reveal`` scope *and* the request says ``?reveal=true``; each such answer is
written to the audit log (which canaries, not their values) before the values are decrypted: no audit
entry, no values. Events
keep what their sources recorded, which already replaces canary contact points (``contact.evidence.redact``).

Pages are keysets, never OFFSET: incidents newest first by (opened_at, id), events / notes / canaries /
dead letters by id, drills by (started_at, id), the audit log by id, each with an opaque ``cursor``
(base64url JSON of the last item's key) and ``limit`` (at most ``api.page_max``). A walk through the
pages sees every item that existed when it started exactly once, whatever arrives meanwhile.

State changes (acknowledge, resolve, note, replay) reuse the CLI's code (:mod:`canary.incidents`), so
sinks are notified as ``canary alerts ack`` does, and are audited with the token and client address.
The coverage report (``GET /coverage``: every exfiltration path per datastore, covered / partly / not
covered and why, :mod:`canary.health.coverage_report`) connects to every datastore and reads its catalog,
so a read-scope caller must not be able to turn requests into datastore load: :class:`CoverageCache` keeps
one answer per process for ``api.coverage_ttl`` and computes it once at a time; ``?refresh=true`` (operate
scope) asks for a fresh one. A datastore that cannot be reached is a datastore marked unreachable in a 200.

``POST /drills`` runs a playbook against the configured deployment in this listener, one at a time
(:mod:`canary.web.drill_runs`); the demo deployment stays with ``canary drill run --demo``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import datetime as dt
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import asyncpg
import structlog
from aiohttp import web

from canary import plugins
from canary.alerts import incident_link
from canary.drills import report as drill_report
from canary.errors import CanaryError, IncidentError
from canary.events import EventKind, Severity
from canary.health.coverage_report import COVERED, OPEN, PARTLY, coverage_report
from canary.incidents import add_note, change_status, notes, replay_dead
from canary.listener import LISTENER_KEY
from canary.proxies import TrustedProxies
from canary.store import api_tokens, audit, checkpoints, detection_objects, registry
from canary.typing import SourceContext
from canary.web import spec
from canary.web.auth import Authenticator, Principal, cookie_name, csrf_ok, same_origin
from canary.web.drill_runs import RUN_BODY, RUN_STARTED, DrillRuns
from canary.web.spec import JSON, BadParam, Call, Param, Route

log = structlog.get_logger("canary.web")

PREFIX = "/api/v1"
VERSION = "1.0.0"
BODY_MAX = 64 * 1024
NOTE_MAX = 10_000
STATUSES = ("open", "acknowledged", "resolved")
_NO_STORE = {"Cache-Control": "no-store"}


class NotFound(Exception):
    pass


# -- JSON --------------------------------------------------------------------------------------
def _plain(v: Any) -> Any:
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray, memoryview)):
        return None  # never ciphertext or hashes
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def answer(data: Any, status: int = 200) -> web.Response:
    return web.json_response(_plain(data), status=status, headers=_NO_STORE)


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=_NO_STORE)


def encode_cursor(key: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(_plain(list(key)), separators=(",", ":")).encode()).decode().rstrip("=")


def _cursor_id(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63


def _cursor_time(v: Any) -> dt.datetime | None:
    if not isinstance(v, str) or len(v) > 64:
        return None
    try:
        when = dt.datetime.fromisoformat(v)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def decode_cursor(text: str, shape: str) -> tuple[Any, ...]:
    """The key a cursor holds: ``shape`` "id" ([int]), "time_id" ([ISO time, int]) or "time_text" ([ISO
    time, text]); else BadParam."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        raise BadParam("cursor", "not a cursor of this list") from None
    if isinstance(raw, list):
        if shape == "id" and len(raw) == 1 and _cursor_id(raw[0]):
            return (raw[0],)
        if shape in ("time_id", "time_text") and len(raw) == 2 and (when := _cursor_time(raw[0])) is not None:
            if shape == "time_id" and _cursor_id(raw[1]):
                return (when, raw[1])
            if shape == "time_text" and isinstance(raw[1], str) and len(raw[1]) <= 64 and "\x00" not in raw[1]:
                return (when, raw[1])
    raise BadParam("cursor", "not a cursor of this list")


def page(items: list[dict[str, Any]], limit: int, key: Any) -> dict[str, Any]:
    """A page of at most ``limit`` items from ``items`` (fetched limit + 1: one more says there is a next)."""
    more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next_cursor": encode_cursor(key(items[-1])) if more and items else None}


# -- schemas -----------------------------------------------------------------------------------
def obj(required: Sequence[str] = (), **props: JSON) -> JSON:
    return {"type": "object", "properties": props, **({"required": list(required)} if required else {})}


S = {"type": "string"}
SN = {"type": ["string", "null"]}
I = {"type": "integer"}  # noqa: E741
IN = {"type": ["integer", "null"]}
T = {"type": "string", "format": "date-time"}
TN = {"type": ["string", "null"], "format": "date-time"}
B = {"type": "boolean"}
ANY_OBJ = {"type": "object"}
INCIDENT = obj(["id", "status", "severity", "kind", "title", "opened_at"],
               id=I, status={"type": "string", "enum": list(STATUSES)}, severity=S, kind=S, title=S, source=S,
               opened_at=T, first_seen=T, last_seen=T, event_count=I, canary_count=I, datastore=SN, drill=SN,
               suppressed_by=SN, link=SN)
INCIDENT_DETAIL = {**INCIDENT, "properties": {
    **INCIDENT["properties"], "actor": ANY_OBJ, "origin": ANY_OBJ, "evidence": ANY_OBJ,
    "acknowledged_at": TN, "acknowledged_by": SN, "resolved_at": TN, "resolved_by": SN, "note": SN,
    "canaries": {"type": "array", "items": obj(label=S, kind=S, count=I)},
    "deliveries": {"type": "array", "items": obj(sink=S, status=S, count=I)}}}
EVENT = obj(["id", "kind"], id=I, kind=S, source=S, severity=S, canary_id=IN, observed_at=T, detected_at=T, recorded_at=T,
            actor=ANY_OBJ, origin=ANY_OBJ, evidence=ANY_OBJ, drill=SN, suppressed_by=SN)
NOTE = obj(["id", "author", "body"], id=I, author=S, body=S, created_at=T)
CANARY = obj(["id", "label", "datastore", "table", "kind"], id=I, label=S, datastore=S, table=S, kind=S, status=S,
             created_at=T, retired_at=TN,
             location={"type": "object", "description": "with ?reveal=true and the reveal scope only"},
             values={"type": "array", "items": obj(kind=S, value=S), "description": "with ?reveal=true and the reveal scope only"})
INVENTORY = obj(["datastores"], datastores={"type": "array", "items": obj(
    name=S, open_health_incidents=I, last_health_incident=SN,
    tables={"type": "array", "items": obj(label=S, table=S, kind=S, count=I, newest=T, detection_installed_at=TN)})})
DRILL = obj(["id", "playbook", "status"], id=S, playbook=S, mode=S, status=S, started_at=T, finished_at=TN, steps=I,
            detected=I, missed=I, skipped=I, time_to_detect_s={"type": ["number", "null"]},
            time_to_page_s={"type": ["number", "null"]})
SINK = obj(["name"], name=S, type=SN, configured=B, pending=I, delivered=I, dead=I, oldest_pending=TN)
DEAD = obj(["id", "incident_id", "sink"], id=I, incident_id=I, sink=S, action=S, sequence=I, attempts=I, last_error=SN,
           created_at=T)
AUDIT = obj(["id", "at", "actor", "action"], id=I, at=T, actor=S, client=SN, action=S, target=SN, details=ANY_OBJ)
TOKEN = obj(["id", "name", "scopes"], id=S, name=S, scopes={"type": "array", "items": S}, created_by=S, created_at=T,
            expires_at=T, last_used_at=TN, revoked_at=TN)
HEALTH = obj(["status"], status=S, control_store=S, components=ANY_OBJ, lag=ANY_OBJ, stalled={"type": "array", "items": S},
             leader=B, pipeline=ANY_OBJ, checkpoints={"type": "array", "items": obj(source=S, updated_at=T, age_s={"type": "number"})},
             outbox=obj(pending=I, dead=I))
COVERAGE_PATH = obj(["path", "title", "status", "why", "claimed", "open_claim"], path=S, title=S,
                    status={"type": "string", "enum": [COVERED, PARTLY, OPEN]}, why=S,
                    claimed={"type": "boolean", "description": "the configuration says canary covers this path"},
                    open_claim={"type": "boolean", "description": "claimed and not covered"})
COVERAGE_STORE = obj(
    ["datastore", "reachable", "paths"], datastore=S, node=S, reachable=B,
    error={"type": ["string", "null"], "description": "why the datastore could not be read (an error class), if it could not"},
    canaries=obj(customers=I, credentials=I), paths={"type": "array", "items": COVERAGE_PATH},
    privileged_roles={"type": "object", "additionalProperties": S,
                      "description": "roles row security never binds, and why (superuser, bypassrls, ...)"},
    privileged_objects={"type": "array", "items": obj(kind=S, name=S, owner=S, why=S, covered_by=S)},
    replication={"type": "array", "items": obj(kind=S, name=S, first_seen=T)},
    settings={"type": "array", "items": {"type": "object", "properties": {  # obj() takes `required` itself
        "setting": S, "value": S, "current": S, "where": S, "why": S, "required": B}}},
    notes={"type": "array", "items": S})
COVERAGE = obj(["computed_at", "age_s", "max_age_s", "open_claims", "datastores"], computed_at=T,
               age_s={"type": "number", "description": "seconds since this report was computed"},
               max_age_s={"type": "number", "description": "api.coverage_ttl: how long one report is served"},
               open_claims={"type": "integer", "description": "paths the configuration claims that are not covered"},
               datastores={"type": "array", "items": COVERAGE_STORE})
STATUS_CHANGE = obj(["incident", "status", "notifications"], incident=I, status=S, notifications=I)

LIMIT = Param("limit", "int", description="items per page (default 50)", minimum=1, maximum=10_000)
CURSOR = Param("cursor", description="next_cursor of the previous page", max_length=400)
REVEAL = Param("reveal", "bool", description="show canary values (needs the reveal scope; audited)")
INCIDENT_ID = Param("id", "int", "path", "incident id", minimum=1, maximum=2**63 - 1)


class CoverageCache:
    """The coverage report of every configured datastore, computed at most once per ``ttl`` seconds and
    never twice at once (per process).

    Computing it opens a connection to each datastore and reads its catalog; served straight, a caller
    repeating GET /coverage would load the datastores. One computation runs at a time (callers arriving
    meanwhile wait for it: single flight) and its answer serves everyone for ``ttl``. It runs as a task of
    its own, so a caller that hangs up does not cancel it for the others; a failure (the control store
    down) is not kept: the next call tries again. ``computations`` counts the computations started."""

    def __init__(self, ttl: float, compute: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self.ttl = ttl
        self._compute = compute
        self._doc: dict[str, Any] | None = None
        self._at = 0.0  # time.monotonic() when the kept report was started
        self._wall = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
        self._task: asyncio.Task[tuple[dict[str, Any], float, dt.datetime]] | None = None
        self.computations = 0

    async def get(self, *, fresh: bool = False) -> tuple[dict[str, Any], float, dt.datetime]:
        """The report, the monotonic time and the wall time its computation started. ``fresh``: not the kept
        one; a computation already under way serves it too (there is never a second one at the same time)."""
        if not fresh and self._doc is not None and time.monotonic() - self._at < self.ttl:
            return self._doc, self._at, self._wall
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="canary-coverage-report")
            self._task.add_done_callback(_retrieved)
        return await asyncio.shield(self._task)

    async def _run(self) -> tuple[dict[str, Any], float, dt.datetime]:
        at, wall = time.monotonic(), dt.datetime.now(dt.timezone.utc)
        self.computations += 1
        try:
            doc = await self._compute()
        finally:
            self._task = None
        self._doc, self._at, self._wall = doc, at, wall
        return doc, at, wall

    async def close(self) -> None:
        """Cancel a computation under way (the listener stops)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _retrieved(task: asyncio.Task[Any]) -> None:
    """Mark a finished computation's failure as seen (its callers may all have hung up; they got it if not)."""
    if not task.cancelled():
        task.exception()


class Api:
    """The handlers, over one runtime; :meth:`table` is the route table."""

    def __init__(self) -> None:
        self.rt: SourceContext | None = None
        self.auth: Authenticator | None = None
        self.coverage_cache: CoverageCache | None = None
        self.proxies = TrustedProxies()
        self.drill_runs = DrillRuns(PREFIX, self._who)
        self.routes = self.table()
        self.document = spec.openapi(self.routes, prefix=PREFIX, version=VERSION)

    # -- wiring ----------------------------------------------------------------------------
    def start(self, rt: SourceContext) -> None:
        self.rt = rt
        self.proxies = TrustedProxies.from_config(rt.config.listener)
        self.auth = Authenticator(rt.pool, rt.config.api, self.proxies, rt.reject, cookie=cookie_name(rt.config.listener))
        cfg = rt.config
        self.coverage_cache = CoverageCache(
            cfg.api.coverage_ttl, lambda: coverage_report(cfg, rt.pool, timeout=cfg.api.coverage_timeout))
        self.drill_runs.start(rt)

    async def close(self) -> None:
        if self.coverage_cache is not None:
            await self.coverage_cache.close()

    @property
    def runtime(self) -> SourceContext:
        if self.rt is None:
            raise web.HTTPServiceUnavailable(text='{"error": "starting"}', content_type="application/json")
        return self.rt

    def aiohttp_routes(self) -> list[web.RouteDef]:
        return [web.route(r.method, PREFIX + r.path, self._wrap(r)) for r in self.routes]

    def _wrap(self, route: Route) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            rt = self.runtime
            assert self.auth is not None
            principal = await self.auth.authenticate(request)
            if route.method == "POST" and principal.kind == "session" and not (
                    same_origin(request, rt.config.listener.public_url)
                    and csrf_ok(principal, request.headers.get("X-CSRF-Token"))):
                return error(403, "a console session must send its CSRF token (X-CSRF-Token) from its own origin")
            if not principal.has(route.scope):
                return error(403, f"this token lacks the {route.scope!r} scope")
            try:
                params = route.parse(request)
                body = await self._body(request, rt) if route.body is not None else {}
                got = await route.handler(Call(request, principal, params, body))
                return got if isinstance(got, web.StreamResponse) else answer(got, route.status)
            except BadParam as exc:
                return error(400, str(exc))
            except NotFound:
                return error(404, "not found")
            except IncidentError as exc:
                return error(404 if "no incident" in str(exc) else 409, str(exc))
            except (asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError, asyncpg.InterfaceError, OSError,
                    asyncio.TimeoutError) as exc:
                log.warning("api.store_unavailable", path=route.path, error=type(exc).__name__)
                return error(503, "control store unavailable")

        handle.__name__ = route.operation_id
        return handle

    def route(self, method: str, path: str) -> Route:
        """The declared route (the console parses its filters with the API's own parameters)."""
        return next(r for r in self.routes if (r.method, r.path) == (method, path))

    async def _body(self, request: web.Request, rt: SourceContext) -> dict[str, Any]:
        if request.content_length is not None and request.content_length > BODY_MAX:
            raise BadParam("body", f"larger than {BODY_MAX} bytes")
        try:
            raw = await asyncio.wait_for(request.content.read(BODY_MAX + 1), rt.config.listener.body_timeout)
        except asyncio.TimeoutError:
            raise BadParam("body", "did not arrive in time") from None
        if len(raw) > BODY_MAX:
            raise BadParam("body", f"larger than {BODY_MAX} bytes")
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise BadParam("body", "not JSON") from None
        if not isinstance(data, dict):
            raise BadParam("body", "not a JSON object")
        return data

    def _limit(self, call: Call) -> int:
        return min(int(call.params.get("limit", 50)), self.runtime.config.api.page_max)

    def _who(self, call: Call) -> tuple[str, str]:
        return call.principal.actor, self.proxies.client(call.request)

    def _reveal(self, call: Call) -> bool:
        """Whether this answer may hold canary values: asked for, and the token may."""
        if not call.params.get("reveal"):
            return False
        principal: Principal = call.principal
        if not principal.has("reveal"):
            raise web.HTTPForbidden(text=json.dumps({"error": "this token lacks the 'reveal' scope"}),
                                    content_type="application/json")
        return True

    # -- the table -------------------------------------------------------------------------
    def table(self) -> list[Route]:
        i = INCIDENT_ID
        return [
            Route("GET", "/openapi.json", "read", "this document", self.openapi_doc, {"type": "object"}, tag="meta"),
            Route("GET", "/incidents", "read", "incidents, newest first (keyset pages)", self.incidents,
                  spec.page_schema(INCIDENT), tag="incidents", params=(
                      Param("status", "enums", choices=STATUSES), Param("kind", "enums", choices=tuple(map(str, EventKind))),
                      Param("severity", "enums", choices=tuple(map(str, Severity))),
                      Param("datastore", description="origin datastore", max_length=200),
                      Param("since", "datetime", description="opened at or after"),
                      Param("until", "datetime", description="opened before"),
                      Param("drill", "bool", description="true: drills only; false: no drills"),
                      Param("suppressed", "bool", description="include suppressed incidents (default false)"),
                      LIMIT, CURSOR)),
            Route("GET", "/incidents/{id}", "read", "one incident", self.incident, INCIDENT_DETAIL, (i,), tag="incidents"),
            Route("GET", "/incidents/{id}/events", "read", "an incident's events, oldest first (keyset pages)",
                  self.incident_events, spec.page_schema(EVENT), (i, LIMIT, CURSOR), tag="incidents"),
            Route("POST", "/incidents/{id}/acknowledge", "operate", "acknowledge (paged sinks are told)", self.acknowledge,
                  STATUS_CHANGE, (i,), body=obj(note=SN), tag="incidents", errors={"409": "the incident is already resolved"}),
            Route("POST", "/incidents/{id}/resolve", "operate", "resolve (paged sinks are told)", self.resolve,
                  STATUS_CHANGE, (i,), body=obj(note=SN), tag="incidents", errors={"409": "the incident is already resolved"}),
            Route("GET", "/incidents/{id}/notes", "read", "an incident's notes, oldest first", self.notes,
                  spec.page_schema(NOTE), (i, LIMIT, CURSOR), tag="incidents"),
            Route("POST", "/incidents/{id}/notes", "operate", "add a note", self.add_note, NOTE, (i,),
                  body=obj(["body"], body={"type": "string", "minLength": 1, "maxLength": NOTE_MAX}), status=201,
                  tag="incidents"),
            Route("GET", "/canaries", "read", "inventory per datastore and table, with detection health", self.inventory,
                  INVENTORY, tag="canaries"),
            Route("GET", "/canaries/items", "read", "canaries one by one (keyset pages)", self.canaries,
                  spec.page_schema(CANARY), (Param("datastore"), Param("label"),
                                             Param("status", "enum", choices=("active", "retired")), REVEAL, LIMIT, CURSOR),
                  tag="canaries", reveals=True),
            Route("GET", "/canaries/{id}", "read", "one canary", self.canary, CANARY,
                  (Param("id", "int", "path", minimum=1, maximum=2**63 - 1), REVEAL), tag="canaries", reveals=True),
            Route("POST", "/datastores/{name}/plan", "operate", "what `canary seed plan` would change (reads the datastore)",
                  self.plan, obj(["datastore", "targets"], datastore=S, to_add=I, warnings={"type": "array", "items": S},
                                 targets={"type": "array", "items": ANY_OBJ}, settings={"type": "array", "items": ANY_OBJ},
                                 notes={"type": "array", "items": S}),
                  (Param("name", where="path", max_length=63), REVEAL), body=obj(), tag="canaries", reveals=True),
            Route("GET", "/health", "read", "detection health: components, lag, checkpoints, outbox", self.health, HEALTH,
                  tag="health"),
            Route("GET", "/coverage", "read", "every exfiltration path per datastore: covered / partly / not covered, and why"
                  " (cached for api.coverage_ttl)", self.coverage, COVERAGE,
                  (Param("datastore", description="only this datastore", max_length=63),
                   Param("refresh", "bool", description="compute it now, not from the cache (needs the operate scope)")),
                  tag="health"),
            Route("GET", "/drills", "read", "drill runs, newest first (keyset pages)", self.drills, spec.page_schema(DRILL),
                  (LIMIT, CURSOR), tag="drills"),
            Route("POST", "/drills", "operate", "run a playbook against the configured deployment (one at a time; 409 when"
                  " it cannot run now)", self.drill_runs.handle, RUN_STARTED, body=RUN_BODY, status=202, tag="drills",
                  errors={"409": "a drill is running in this listener, no datastore is configured, or the playbook's "
                                 "insider steps need $CANARY_DRILL_INSIDER_DSN"}),
            Route("GET", "/drills/{id}", "read", "one drill run and its report (?format=json|md|html)", self.drill,
                  obj(["run", "report"], run=DRILL, report=ANY_OBJ),
                  (Param("id", where="path", max_length=64), Param("format", "enum", choices=tuple(drill_report.FORMATS))),
                  tag="drills"),
            Route("GET", "/sinks", "read", "delivery state per sink", self.sinks, obj(["items"], items={"type": "array", "items": SINK}),
                  tag="sinks"),
            Route("GET", "/sinks/dead", "read", "dead letters, oldest first (keyset pages)", self.dead, spec.page_schema(DEAD),
                  (Param("sink", max_length=63), LIMIT, CURSOR), tag="sinks"),
            Route("POST", "/sinks/dead/replay", "operate", "send dead letters again", self.replay,
                  obj(["replayed"], replayed={"type": "array", "items": I}),
                  body=obj(ids={"type": "array", "items": I, "maxItems": 10_000}, all=B, sink=SN), tag="sinks",
                  errors={"409": "an id that is no dead letter, or neither ids nor all"}),
            Route("GET", "/tokens", "admin", "API tokens (never their secrets)", self.tokens,
                  obj(["items"], items={"type": "array", "items": TOKEN}), tag="admin"),
            Route("GET", "/audit", "admin", "the audit log, newest first (keyset pages)", self.audit_log,
                  spec.page_schema(AUDIT), (Param("action", max_length=64), LIMIT, CURSOR), tag="admin"),
        ]

    # -- meta ------------------------------------------------------------------------------
    async def openapi_doc(self, call: Call) -> web.StreamResponse:
        return web.json_response(self.document, headers=_NO_STORE)

    # -- incidents -------------------------------------------------------------------------
    def _incident_item(self, r: Mapping[str, Any]) -> dict[str, Any]:
        return {"id": r["id"], "status": r["status"], "severity": r["severity"], "kind": r["kind"], "title": r["title"],
                "source": r["source"], "opened_at": r["created_at"], "first_seen": r["first_seen"], "last_seen": r["last_seen"],
                "event_count": r["event_count"], "canary_count": len(r["canary_ids"]), "datastore": r["datastore"],
                "drill": r["drill"], "suppressed_by": r["suppressed_by"],
                "link": incident_link(self.runtime.config.listener.public_url, r["id"])}

    async def incidents(self, call: Call) -> Any:
        p, limit = call.params, self._limit(call)
        where: list[str] = []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        for column in ("status", "kind", "severity"):
            if column in p:
                values = list(p[column])
                where.append(f"{column} = {arg(values[0])}" if len(values) == 1 else f"{column} = ANY({arg(values)}::text[])")
        if "datastore" in p:
            where.append(f"origin->>'datastore' = {arg(p['datastore'])}")
        if "since" in p:
            where.append(f"created_at >= {arg(p['since'])}")
        if "until" in p:
            where.append(f"created_at < {arg(p['until'])}")
        if "drill" in p:
            where.append("drill IS NOT NULL" if p["drill"] else "drill IS NULL")
        if not p.get("suppressed", False):
            where.append("suppressed_by IS NULL")
        if "cursor" in p:
            at, last = decode_cursor(p["cursor"], "time_id")
            where.append(f"(created_at, id) < ({arg(at)}, {arg(last)})")
        sql = ("SELECT id, status, severity, kind, title, source, created_at, first_seen, last_seen, event_count, canary_ids,"
               " origin->>'datastore' AS datastore, drill, suppressed_by FROM incidents"
               + (" WHERE " + " AND ".join(where) if where else "")
               + f" ORDER BY created_at DESC, id DESC LIMIT {arg(limit + 1)}")
        rows = await self.runtime.pool.fetch(sql, *args)
        return page([self._incident_item(r) for r in rows], limit, lambda it: (it["opened_at"], it["id"]))

    async def incident(self, call: Call) -> Any:
        pool, iid = self.runtime.pool, call.params["id"]
        r = await pool.fetchrow("SELECT *, origin->>'datastore' AS datastore FROM incidents WHERE id = $1", iid)
        if r is None:
            raise NotFound
        out = self._incident_item(r)
        out.update({k: r[k] for k in ("actor", "origin", "evidence", "acknowledged_at", "acknowledged_by", "resolved_at",
                                      "resolved_by", "note")})
        out["canaries"] = (await registry.incident_labels(pool, [iid])).get(iid, [])
        out["deliveries"] = [dict(d) for d in await pool.fetch(
            "SELECT sink, status, count(*) AS count FROM outbox WHERE incident_id = $1 GROUP BY 1, 2 ORDER BY 1, 2", iid)]
        return out

    async def _exists(self, iid: int) -> None:
        if await self.runtime.pool.fetchval("SELECT 1 FROM incidents WHERE id = $1", iid) is None:
            raise NotFound

    async def incident_events(self, call: Call) -> Any:
        iid, limit = call.params["id"], self._limit(call)
        await self._exists(iid)
        after = decode_cursor(call.params["cursor"], "id")[0] if "cursor" in call.params else None
        rows = await self.runtime.pool.fetch(
            "SELECT id, kind, source, severity, canary_id, observed_at, detected_at, recorded_at, actor, origin, evidence,"
            " drill, suppressed_by FROM events WHERE incident_id = $1 AND ($2::bigint IS NULL OR id > $2) ORDER BY id LIMIT $3",
            iid, after, limit + 1)
        return page([dict(r) for r in rows], limit, lambda it: (it["id"],))

    async def _status(self, call: Call, status: str) -> Any:
        note = call.body.get("note")
        if note is not None and (not isinstance(note, str) or len(note) > NOTE_MAX or "\x00" in note):
            raise BadParam("note", f"a string of at most {NOTE_MAX} characters")
        actor, client = self._who(call)
        rt = self.runtime
        sent = await change_status(rt.pool, call.params["id"], status, by=actor, note=note,
                                   public_url=rt.config.listener.public_url, audit_as=(actor, client))
        return {"incident": call.params["id"], "status": status, "notifications": sent}

    async def acknowledge(self, call: Call) -> Any:
        return await self._status(call, "acknowledged")

    async def resolve(self, call: Call) -> Any:
        return await self._status(call, "resolved")

    async def notes(self, call: Call) -> Any:
        iid, limit = call.params["id"], self._limit(call)
        await self._exists(iid)
        after = decode_cursor(call.params["cursor"], "id")[0] if "cursor" in call.params else None
        rows = await notes(self.runtime.pool, iid, after=after, limit=limit + 1)
        return page([dict(r) for r in rows], limit, lambda it: (it["id"],))

    async def add_note(self, call: Call) -> Any:
        body = call.body.get("body")
        if not isinstance(body, str) or not body.strip() or len(body) > NOTE_MAX or "\x00" in body:
            raise BadParam("body", f"a non-empty string of at most {NOTE_MAX} characters")
        actor, client = self._who(call)
        note_id = await add_note(self.runtime.pool, call.params["id"], body, author=actor, audit_as=(actor, client))
        return {"id": note_id, "author": actor, "body": body}

    # -- canaries --------------------------------------------------------------------------
    async def inventory(self, call: Call) -> Any:
        pool = self.runtime.pool
        rows = await registry.inventory(pool)
        installed = {(r["datastore"], r["target"]): r["installed_at"] for r in await detection_objects.installed(pool)}
        health = {r["ds"]: r for r in await pool.fetch(
            "SELECT origin->>'datastore' AS ds, count(*) AS n, (array_agg(title ORDER BY created_at DESC))[1] AS last"
            " FROM incidents WHERE kind IN ('health', 'tamper') AND status <> 'resolved' AND suppressed_by IS NULL"
            " AND origin ? 'datastore' GROUP BY 1")}
        names = [d.name for d in self.runtime.config.datastores]
        names += sorted({r["datastore"] for r in rows} - set(names))
        out = []
        for name in names:
            tables = []
            for r in rows:
                if r["datastore"] != name:
                    continue
                table = r["label"].split("/", 1)[-1]
                tables.append({"label": r["label"], "table": table, "kind": r["kind"], "count": r["n"], "newest": r["newest"],
                               "detection_installed_at": installed.get((name, table))})
            h = health.get(name)
            out.append({"name": name, "tables": tables, "open_health_incidents": h["n"] if h else 0,
                        "last_health_incident": h["last"] if h else None})
        return {"datastores": out}

    async def _revealed(self, call: Call, items: list[dict[str, Any]]) -> None:
        """Add location and values to ``items`` and audit it (which canaries, never what)."""
        if not items:
            return
        rt = self.runtime
        actor, client = self._who(call)
        ids = [it["id"] for it in items]
        await audit.record(rt.pool, actor=actor, client=client, action="canary.reveal",
                           target=f"canary:{ids[0]}" if len(ids) == 1 else None, details={"canaries": ids})
        secrets_ = await rt.registry.reveal(ids)
        for it in items:
            location, values = secrets_.get(it["id"], ({}, []))
            it["location"] = dict(location)
            it["values"] = [{"kind": k, "value": v} for k, v in values]

    @staticmethod
    def _canary_item(r: Mapping[str, Any]) -> dict[str, Any]:
        return {"id": r["id"], "label": r["label"], "datastore": r["datastore"], "table": r["label"].split("/", 1)[-1],
                "kind": r["kind"], "status": r["status"], "created_at": r["created_at"], "retired_at": r["retired_at"]}

    async def canaries(self, call: Call) -> Any:
        p, limit = call.params, self._limit(call)
        reveal = self._reveal(call)
        after = decode_cursor(p["cursor"], "id")[0] if "cursor" in p else None
        rows = await registry.page(self.runtime.pool, after=after, limit=limit + 1, datastore=p.get("datastore"),
                                   label=p.get("label"), status=p.get("status"))
        out = page([self._canary_item(r) for r in rows], limit, lambda it: (it["id"],))
        if reveal:
            await self._revealed(call, out["items"])
        return out

    async def canary(self, call: Call) -> Any:
        reveal = self._reveal(call)
        rows = await registry.page(self.runtime.pool, after=call.params["id"] - 1, limit=1)
        if not rows or rows[0]["id"] != call.params["id"]:
            raise NotFound
        item = self._canary_item(rows[0])
        if reveal:
            await self._revealed(call, [item])
        return item

    async def plan(self, call: Call) -> web.StreamResponse:
        rt = self.runtime
        reveal = self._reveal(call)
        ds = next((d for d in rt.config.datastores if d.name == call.params["name"]), None)
        if ds is None:
            raise NotFound
        try:
            plan = await plugins.configured_seeder(rt.config, ds, rt.registry).plan()
        except (CanaryError, asyncpg.PostgresError, OSError, asyncio.TimeoutError) as exc:
            log.warning("api.plan_failed", datastore=ds.name, error=type(exc).__name__)
            return error(502, f"the plan of {ds.name} could not be made ({type(exc).__name__})")
        targets = []
        for t in plan.targets:
            item = {"target": t.target, "present": t.present, "wanted": t.wanted, "to_add": t.to_add, "mode": t.mode,
                    "schedule": t.schedule, "warnings": list(t.warnings), "locks": list(t.locks), "traces": list(t.traces),
                    "pools": list(t.pools), "statements": len(t.statements)}
            if reveal:
                item["rows"] = [dataclasses.asdict(r) for r in t.rows]
            targets.append(item)
        if reveal:
            actor, client = self._who(call)
            await audit.record(rt.pool, actor=actor, client=client, action="plan.reveal", target=f"datastore:{ds.name}",
                               details={"rows": sum(len(t.rows) for t in plan.targets)})
        return answer({"datastore": plan.datastore, "to_add": plan.to_add, "warnings": plan.warnings, "targets": targets,
                       "settings": [dataclasses.asdict(s) for s in plan.settings], "notes": list(plan.notes)})

    # -- health ----------------------------------------------------------------------------
    async def health(self, call: Call) -> Any:
        listener = call.request.app.get(LISTENER_KEY)
        pool = self.runtime.pool
        detail: dict[str, Any] = dict((await listener.health())[1]) if listener is not None else {"status": "unknown"}
        now = await pool.fetchval("SELECT clock_timestamp()")
        detail["checkpoints"] = [{"source": r["source"], "updated_at": r["updated_at"],
                                  "age_s": round((now - r["updated_at"]).total_seconds(), 1)}
                                 for r in await checkpoints.listing(pool)]
        row = await pool.fetchrow("SELECT count(*) FILTER (WHERE status = 'pending') AS pending,"
                                  " count(*) FILTER (WHERE status = 'dead') AS dead FROM outbox WHERE status <> 'delivered'")
        detail["outbox"] = dict(row)
        return detail

    async def coverage(self, call: Call) -> Any:
        cache = self.coverage_cache
        if cache is None:
            raise web.HTTPServiceUnavailable(text='{"error": "starting"}', content_type="application/json")
        refresh = bool(call.params.get("refresh"))
        if refresh and not call.principal.has("operate"):
            raise web.HTTPForbidden(text=json.dumps({"error": "refresh needs the 'operate' scope"}),
                                    content_type="application/json")
        doc, at, wall = await cache.get(fresh=refresh)
        stores = doc["datastores"]
        if "datastore" in call.params:
            stores = [s for s in stores if s["datastore"] == call.params["datastore"]]
            if not stores:
                raise NotFound
        return {"computed_at": wall, "age_s": round(time.monotonic() - at, 1), "max_age_s": cache.ttl,
                "open_claims": sum(p["open_claim"] for s in stores for p in s["paths"]), "datastores": stores}

    # -- drills ----------------------------------------------------------------------------
    @staticmethod
    def _drill_item(r: Mapping[str, Any]) -> dict[str, Any]:
        steps = [s for s in ((r["result"] or {}).get("steps") or []) if isinstance(s, dict)]

        def worst(key: str) -> float | None:
            got = [float(s[key]) for s in steps if isinstance(s.get(key), (int, float))]
            return max(got) if got else None

        return {"id": r["id"], "playbook": r["playbook"], "mode": r["mode"], "status": r["status"],
                "started_at": r["started_at"], "finished_at": r["finished_at"], "steps": r["steps_total"],
                "detected": r["detected"], "missed": r["missed"], "skipped": r["skipped"],
                "time_to_detect_s": worst("time_to_detect_s"), "time_to_page_s": worst("time_to_page_s")}

    async def drills(self, call: Call) -> Any:
        limit = self._limit(call)
        at, last = decode_cursor(call.params["cursor"], "time_text") if "cursor" in call.params else (None, None)
        rows = await self.runtime.pool.fetch(
            "SELECT * FROM drill_runs WHERE ($1::timestamptz IS NULL OR (started_at, id) < ($1, $2::text))"
            " ORDER BY started_at DESC, id DESC LIMIT $3", at, last, limit + 1)
        return page([self._drill_item(r) for r in rows], limit, lambda it: (it["started_at"], it["id"]))

    async def drill(self, call: Call) -> web.StreamResponse:
        r = await self.runtime.pool.fetchrow("SELECT * FROM drill_runs WHERE id = $1", call.params["id"])
        if r is None:
            raise NotFound
        result = r["result"] or {}
        fmt = call.params.get("format", "json")
        if fmt == "json":
            return answer({"run": self._drill_item(r), "report": result})
        if not result:
            raise NotFound
        text = drill_report.render(result, fmt)
        ctype = "text/html" if fmt == "html" else "text/markdown"
        return web.Response(text=text, content_type=ctype, headers={**_NO_STORE, "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})

    # -- sinks -----------------------------------------------------------------------------
    async def sinks(self, call: Call) -> Any:
        rt = self.runtime
        counts = await rt.pool.fetch(
            "SELECT sink, count(*) FILTER (WHERE status = 'pending') AS pending,"
            " count(*) FILTER (WHERE status = 'delivered') AS delivered, count(*) FILTER (WHERE status = 'dead') AS dead,"
            " min(created_at) FILTER (WHERE status = 'pending') AS oldest_pending FROM outbox GROUP BY sink")
        by_sink = {r["sink"]: dict(r) for r in counts}
        items = []
        for sc in rt.config.sinks:
            c = by_sink.pop(sc.name, {})
            items.append({"name": sc.name, "type": sc.type, "configured": True, "pending": c.get("pending", 0),
                          "delivered": c.get("delivered", 0), "dead": c.get("dead", 0), "oldest_pending": c.get("oldest_pending")})
        for name, c in sorted(by_sink.items()):  # sinks removed from the configuration with rows left
            items.append({"name": name, "type": None, "configured": False, "pending": c["pending"],
                          "delivered": c["delivered"], "dead": c["dead"], "oldest_pending": c["oldest_pending"]})
        return {"items": items}

    async def dead(self, call: Call) -> Any:
        limit = self._limit(call)
        after = decode_cursor(call.params["cursor"], "id")[0] if "cursor" in call.params else None
        rows = await self.runtime.pool.fetch(
            "SELECT id, incident_id, sink, action, sequence, attempts, last_error, created_at FROM outbox"
            " WHERE status = 'dead' AND ($1::bigint IS NULL OR id > $1) AND ($2::text IS NULL OR sink = $2) ORDER BY id LIMIT $3",
            after, call.params.get("sink"), limit + 1)
        return page([dict(r) for r in rows], limit, lambda it: (it["id"],))

    async def replay(self, call: Call) -> Any:
        b = call.body
        ids = b.get("ids", [])
        every = b.get("all", False)
        sink = b.get("sink")
        if (not isinstance(ids, list) or len(ids) > 10_000
                or not all(isinstance(x, int) and not isinstance(x, bool) and 0 < x < 2**63 for x in ids)):
            raise BadParam("ids", "a list of outbox ids")
        if not isinstance(every, bool):
            raise BadParam("all", "a boolean")
        if sink is not None and (not isinstance(sink, str) or len(sink) > 63):
            raise BadParam("sink", "a sink name")
        if not ids and not every:
            raise BadParam("ids", "name the dead letters to replay or say all: true")
        actor, client = self._who(call)
        replayed = await replay_dead(self.runtime.pool, ids, every=every, sink=sink, audit_as=(actor, client))
        return {"replayed": replayed}

    # -- admin -----------------------------------------------------------------------------
    async def tokens(self, call: Call) -> Any:
        return {"items": [dataclasses.asdict(t) for t in await api_tokens.listing(self.runtime.pool)]}

    async def audit_log(self, call: Call) -> Any:
        limit = self._limit(call)
        before = decode_cursor(call.params["cursor"], "id")[0] if "cursor" in call.params else None
        rows = await audit.page(self.runtime.pool, before=before, limit=limit + 1, action=call.params.get("action"))
        return page([dict(r) for r in rows], limit, lambda it: (it["id"],))


class ApiComponent:
    """The API as a listener component (routes under /api/v1; no background work)."""

    name = "api"

    def __init__(self) -> None:
        self.api = Api()

    def routes(self) -> list[web.RouteDef]:
        return self.api.aiohttp_routes()

    async def start(self, runtime: SourceContext) -> None:
        self.api.start(runtime)

    async def stop(self) -> None:
        await self.api.drill_runs.stop()  # a drill still running records itself as stopped
        await self.api.close()

