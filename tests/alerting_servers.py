"""Local HTTP servers speaking the documented wire formats of paging services, for sink tests.

They validate requests the way the real services document it, answer with the real status codes
and bodies, and record every request (with its arrival time) so tests can count and space them.
``script`` queues canned failures (``(503, {})``, ``(429, {"Retry-After": "1"})``) served before
normal handling, and ``fail_for`` answers 503 until a deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass
class Seen:
    at: float
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RecordingServer:
    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self.script: list[tuple[int, dict[str, str]]] = []
        self.fail_until = 0.0
        self.delay = 0.0
        self.throttle: tuple[float, str] | None = None  # (seconds, Retry-After): a rate limit starting at the first request
        self.throttled_until: float | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    def routes(self, app: web.Application) -> None:
        """Subclasses add the service's endpoints; anything else is 404 like an unknown path."""
        app.router.add_route("*", "/{tail:.*}", self.not_found)

    async def not_found(self, request: web.Request) -> web.Response:
        return web.json_response({"message": "Not found"}, status=404)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> RecordingServer:
        app = web.Application(middlewares=[self._record])
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(Seen(time.monotonic(), request.method, request.path, dict(request.query),
                                  dict(request.headers), body))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.script:
            status, headers = self.script.pop(0)
            return web.json_response({"status": "error", "message": f"scripted {status}"}, status=status, headers=headers)
        if self.throttle is not None:
            now = time.monotonic()
            if self.throttled_until is None:
                self.throttled_until = now + self.throttle[0]
            if now < self.throttled_until:
                return web.json_response({"status": "throttled", "message": "Requests for this service are arriving "
                                          "too quickly. Please retry later."}, status=429,
                                         headers={"Retry-After": self.throttle[1]})
        if time.monotonic() < self.fail_until:
            return web.json_response({"status": "unavailable"}, status=503)
        return await handler(request)


class PagerDutyServer(RecordingServer):
    """Events API v2: ``POST /v2/enqueue``; deduplicates by ``dedup_key`` like PagerDuty does."""

    SEVERITIES = {"critical", "error", "warning", "info"}

    def __init__(self, routing_key: str) -> None:
        super().__init__()
        self.routing_key = routing_key
        self.alerts: dict[str, dict[str, Any]] = {}
        self.opened: Counter[str] = Counter()  # dedup_key -> times a new alert was opened

    @property
    def url(self) -> str:
        return f"{self.base}/v2/enqueue"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/enqueue", self.enqueue)

    async def enqueue(self, request: web.Request) -> web.Response:
        try:
            event = await request.json()
        except json.JSONDecodeError:
            return web.json_response({"status": "invalid event", "message": "Event object is invalid",
                                      "errors": ["Invalid JSON"]}, status=400)
        errors = []
        if event.get("routing_key") != self.routing_key:
            errors.append("'routing_key' is invalid")
        action = event.get("event_action")
        if action not in ("trigger", "acknowledge", "resolve"):
            errors.append("'event_action' is missing or blank")
        key = event.get("dedup_key")
        if action != "trigger" and not key:
            errors.append("'dedup_key' is required for acknowledge and resolve")
        if key is not None and (not isinstance(key, str) or len(key) > 255):
            errors.append("'dedup_key' must be a string of at most 255 characters")
        if action == "trigger":
            payload = event.get("payload") or {}
            for f in ("summary", "source", "severity"):
                if not payload.get(f):
                    errors.append(f"'payload.{f}' is missing or blank")
            if payload.get("severity") not in self.SEVERITIES:
                errors.append("'payload.severity' is invalid")
            if len(str(payload.get("summary", ""))) > 1024:
                errors.append("'payload.summary' is too long")
        if errors:
            return web.json_response({"status": "invalid event", "message": "Event object is invalid", "errors": errors},
                                     status=400)
        key = key or uuid.uuid4().hex
        alert = self.alerts.get(key)
        if action == "trigger":
            if alert is None or alert["status"] == "resolved":
                alert = self.alerts[key] = {"status": "triggered", "log": []}
                self.opened[key] += 1
            alert["log"].append(event)
        elif alert is not None and alert["status"] != "resolved":
            alert["status"] = "acknowledged" if action == "acknowledge" else "resolved"
            alert["log"].append(event)
        return web.json_response({"status": "success", "message": "Event processed", "dedup_key": key}, status=202)


class OpsgenieServer(RecordingServer):
    """Alert API v2: create, notes, acknowledge, close (by id or alias); one open alert per alias."""

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self.alerts: dict[str, dict[str, Any]] = {}
        self.created: Counter[str] = Counter()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v2/alerts", self.create)
        app.router.add_post("/v2/alerts/{identifier}/{verb}", self.act)

    def _auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"GenieKey {self.api_key}":
            return web.json_response({"message": "Could not authenticate", "took": 0.0, "requestId": str(uuid.uuid4())},
                                     status=401)
        return None

    @staticmethod
    def _accepted() -> web.Response:
        return web.json_response({"result": "Request will be processed", "took": 0.01, "requestId": str(uuid.uuid4())},
                                 status=202)

    async def create(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        body = await request.json()
        message = body.get("message")
        if not message or len(message) > 130:
            return web.json_response({"message": "Message can not be empty or longer than 130 characters", "took": 0.0,
                                      "requestId": str(uuid.uuid4())}, status=422)
        if any(not isinstance(v, str) for v in (body.get("details") or {}).values()):
            return web.json_response({"message": "details must map strings to strings", "took": 0.0,
                                      "requestId": str(uuid.uuid4())}, status=422)
        alias = body.get("alias") or str(uuid.uuid4())
        alert = self.alerts.get(alias)
        if alert is None or alert["status"] == "closed":
            self.alerts[alias] = {"status": "open", "count": 1, "body": body, "notes": []}
            self.created[alias] += 1
        else:
            alert["count"] += 1  # de-duplicated
        return self._accepted()

    async def act(self, request: web.Request) -> web.Response:
        if (denied := self._auth(request)) is not None:
            return denied
        if request.query.get("identifierType", "id") != "alias":
            return web.json_response({"message": "only aliases in this test server"}, status=400)
        verb = request.match_info["verb"]
        if verb not in ("notes", "acknowledge", "close"):
            return web.json_response({"message": "Not found"}, status=404)
        body = await request.json()
        alert = self.alerts.get(request.match_info["identifier"])
        if alert is not None:
            if verb == "notes":
                alert["notes"].append(body.get("note"))
            elif verb == "acknowledge":
                alert["status"] = "acknowledged"
            else:
                alert["status"] = "closed"
        return self._accepted()


class SlackServer(RecordingServer):
    """Incoming webhook ``POST /services/T…/B…/<token>``: ``200 ok`` or a plain-text error."""

    token_path = "/services/T000/B000/XXXXsecretXXXX"

    @property
    def url(self) -> str:
        return self.base + self.token_path

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/services/{t}/{b}/{token}", self.post)

    async def post(self, request: web.Request) -> web.Response:
        if request.path != self.token_path:
            return web.Response(status=403, text="invalid_token")
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return web.Response(status=400, text="invalid_payload")
        if not body.get("text") and not body.get("blocks"):
            return web.Response(status=400, text="no_text")
        return web.Response(status=200, text="ok")


class TeamsServer(RecordingServer):
    """Workflows webhook: accepts a message with one Adaptive Card attachment with ``202``."""

    path = "/workflows/abc/triggers/manual/paths/invoke"

    @property
    def url(self) -> str:
        return f"{self.base}{self.path}?api-version=1&sig=SECRETSIG"

    def routes(self, app: web.Application) -> None:
        app.router.add_post(self.path, self.post)

    async def post(self, request: web.Request) -> web.Response:
        if request.query.get("sig") != "SECRETSIG":
            return web.json_response({"error": {"code": "DirectApiAuthorizationRequired"}}, status=401)
        body = await request.json()
        atts = body.get("attachments") or []
        ok = (body.get("type") == "message" and len(atts) >= 1
              and atts[0].get("contentType") == "application/vnd.microsoft.card.adaptive"
              and atts[0].get("content", {}).get("type") == "AdaptiveCard")
        if not ok:
            return web.json_response({"error": {"code": "InvalidRequestContent"}}, status=400)
        return web.Response(status=202)


def make_alert(**overrides: Any) -> Any:
    """An Alert as the pipeline builds it, with attacker-controlled text in the usual places."""
    import datetime as dt

    from canary.alerts import Alert, AlertAction
    from canary.events import EventKind, Severity

    now = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    fields: dict[str, Any] = dict(
        incident_id=7, dedup_key="canary-0123456789abcdef01234567", action=AlertAction.TRIGGER, kind=EventKind.READ,
        severity=Severity.CRITICAL, title="Canary data read by mallory from 10.0.0.9",
        summary="Canary data read by mallory from 10.0.0.9: 3 canaries in 3 event(s) (shop/public.customers)",
        canary_count=3, event_count=3, first_seen=now, last_seen=now,
        actor={"user": "mallory", "role": "app"}, origin={"client_addr": "10.0.0.9", "application_name": "psql"},
        canaries=({"label": "shop/public.customers", "kind": "customer", "count": 3},),
        evidence={"query": "SELECT * FROM customers"}, source="jsonlog",
    )
    fields.update(overrides)
    return Alert(**fields)


async def drained(pool: Any, timeout: float) -> None:
    """Wait until the outbox has no pending notification (fails the test after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while await pool.fetchval("SELECT count(*) FROM outbox WHERE status = 'pending'"):
        assert time.monotonic() < deadline, "outbox did not drain in time"
        await asyncio.sleep(0.05)
