"""The console: server-rendered pages on the listener, where on-call lands from a page's link
(``<listener.public_url>/incidents/<id>``) and where the API's data is looked at.

No frontend build and nothing from elsewhere: HTML made here (:mod:`canary.web.render`), one stylesheet
and one small script from ``canary/web/static``. Every answer carries a strict Content-Security-Policy
(``default-src 'none'``; scripts, styles and images from this origin only; no inline script or style;
``frame-ancestors 'none'``, ``form-action 'self'``), ``X-Frame-Options: DENY``, ``Referrer-Policy:
no-referrer`` and ``Cache-Control: no-store``.

Who: a person signs in by pasting an API token (``canary token create``); that makes a browser session
(:mod:`canary.store.browser_sessions`) with the token's scopes, in the cookie described in
:mod:`canary.web.auth`. Failed sign-ins count in the API's per-peer tarpit. A page without a valid session
redirects to the sign-in page and back. Every POST (acknowledge, resolve, note, replay, run a drill, sign out) carries
the session's CSRF token in a hidden field and must come from this origin, else 403; read-scope sessions
see no buttons and get 403 on POST.

What: the data is the API's (the handlers of :class:`canary.web.api.Api`, with the API's filters and keyset
cursors), so a page costs what its API call costs; the incident page adds its timeline (events per time
bucket over at most the first 100,000 events, paged / acknowledged / resolved markers) and the actor's other
incidents (index ``incidents_actor_page``). Canary values are never shown here (the API's reveal scope and
``?reveal=true`` are the audited way to see them).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.resources
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote

import asyncpg
import structlog
from aiohttp import web
from multidict import MultiDict

from canary.errors import IncidentError
from canary.events import EventKind, Severity
from canary.health.coverage_report import COVERED, OPEN, PARTLY
from canary.store import registry
from canary.typing import SourceContext
from canary.web import render
from canary.web.api import STATUSES, Api, NotFound
from canary.web.auth import Principal, cookie_name, csrf_ok, same_origin
from canary.web.drill_runs import CannotRun
from canary.web.render import Html, badge, e, facts, form, join, link, mapping, table, tag, when
from canary.web.spec import BadParam, Call

log = structlog.get_logger("canary.web.console")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self';"
       " form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
           "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
#: a drill report is self-contained HTML with its own inline styles (canary.drills.report), no script
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
FORM_MAX = 64 * 1024
TIMELINE_BUCKETS = 60
TIMELINE_EVENTS = 100_000  # the timeline counts at most the first this many events of an incident
EVENTS_PER_PAGE = 20
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Refused(Exception):
    """A page answered with an error page (status and message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def respond(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8", headers=HEADERS)


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={**HEADERS, "Location": location})


def local_path(raw: str | None) -> str:
    """Where to go after signing in: a path on this site only (never //host or \\host: no open redirect)."""
    if (not raw or not raw.startswith("/") or raw.startswith(("//", "/\\")) or len(raw) > 2000
            or not raw.isascii() or any(c < " " or c == "\\" for c in raw)):
        return "/incidents"
    return raw


class Console:
    """The console's handlers over the API (which authenticates and reads)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.static = {name: importlib.resources.files("canary.web").joinpath("static", name).read_bytes()
                       for name in STATIC}

    @property
    def rt(self) -> SourceContext:
        return self.api.runtime

    def routes(self) -> list[web.RouteDef]:
        p = self._page
        return [
            web.get("/", self.home),
            web.get("/static/{name}", self.static_file),
            web.get("/favicon.ico", self.no_icon),
            web.get("/signin", self.signin_form),
            web.post("/signin", self.signin),
            web.post("/signout", self.signout),
            web.get("/incidents", p(self.incidents, "read")),
            web.get("/incidents/{id}", p(self.incident, "read")),
            web.post("/incidents/{id}/acknowledge", p(self.acknowledge, "operate", post=True)),
            web.post("/incidents/{id}/resolve", p(self.resolve, "operate", post=True)),
            web.post("/incidents/{id}/notes", p(self.add_note, "operate", post=True)),
            web.get("/canaries", p(self.canaries, "read")),
            web.get("/coverage", p(self.coverage, "read")),
            web.get("/drills", p(self.drills, "read")),
            web.post("/drills/run", p(self.run_drill, "operate", post=True)),
            web.get("/drills/{id}", p(self.drill, "read")),
            web.get("/drills/{id}/report", p(self.drill_report, "read")),
            web.get("/sinks", p(self.sinks, "read")),
            web.post("/sinks/replay", p(self.replay, "operate", post=True)),
            web.get("/audit", p(self.audit, "admin")),
        ]

    # -- plumbing --------------------------------------------------------------------------
    def _page(self, handler: Callable[[web.Request, Principal, Mapping[str, str]], Awaitable[web.StreamResponse]],
              scope: str, *, post: bool = False) -> Handler:
        """A page or action: a session (else to sign-in), for a POST the CSRF token and this origin, the
        scope; errors become error pages (never a traceback, never a secret)."""

        async def handle(request: web.Request) -> web.StreamResponse:
            auth = self.api.auth
            if auth is None:
                return respond(render.page("Starting", tag("p", "canary is starting")), 503)
            principal = None
            try:
                principal = await auth.session(request)
                if principal is None:
                    if post:
                        raise Refused(403, "Your session has ended: sign in again.")
                    return redirect("/signin?next=" + quote(request.path_qs, safe="/"))
                fields: Mapping[str, str] = {}
                if post:
                    fields = await self._form(request)
                    if not same_origin(request, self.rt.config.listener.public_url) or not csrf_ok(principal, fields.get("csrf")):
                        raise Refused(403, "This form did not come from this console (CSRF check failed). Reload the page and try again.")
                if not principal.has(scope):
                    raise Refused(403, f"Your token lacks the {scope!r} scope.")
                return await handler(request, principal, fields)
            except Refused as exc:
                return respond(render.page("Refused", tag("p", str(exc), class_="error"), principal=principal), exc.status)
            except BadParam as exc:
                return respond(render.page("Bad request", tag("p", str(exc), class_="error"), principal=principal), 400)
            except NotFound:
                return respond(render.page("Not found", tag("p", "Not found.", class_="error"), principal=principal), 404)
            except IncidentError as exc:
                return respond(render.page("Conflict", tag("p", str(exc), class_="error"), principal=principal), 409)
            except (asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError, asyncpg.InterfaceError, OSError,
                    asyncio.TimeoutError) as exc:
                log.warning("console.store_unavailable", path=request.path, error=type(exc).__name__)
                return respond(render.page("Unavailable", tag("p", "The control store is unavailable.", class_="error"),
                                           principal=principal), 503)

        handle.__name__ = getattr(handler, "__name__", "page")
        return handle

    async def _form(self, request: web.Request) -> dict[str, str]:
        """The urlencoded form of a POST (at most 64 KiB, within listener.body_timeout), else 400."""
        if request.content_length is not None and request.content_length > FORM_MAX:
            raise Refused(400, "form too large")
        try:
            raw = await asyncio.wait_for(request.content.read(FORM_MAX + 1), self.rt.config.listener.body_timeout)
        except asyncio.TimeoutError:
            raise Refused(408, "the form did not arrive in time") from None
        if len(raw) > FORM_MAX:
            raise Refused(400, "form too large")
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
        except (UnicodeDecodeError, ValueError):
            raise Refused(400, "not a form") from None
        return {k: v for k, v in pairs if "\x00" not in v}

    def _call(self, request: web.Request, principal: Principal, params: Mapping[str, Any],
              body: Mapping[str, Any] | None = None) -> Call:
        return Call(request, principal, params, body or {})

    def _show(self, title: str, body: Html, principal: Principal, active: str, status: int = 200) -> web.Response:
        return respond(render.page(title, body, principal=principal, active=active), status)

    # -- sign in / out ---------------------------------------------------------------------
    async def home(self, request: web.Request) -> web.StreamResponse:
        return redirect("/incidents")

    async def no_icon(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=204, headers={**HEADERS, "Cache-Control": "max-age=86400"})

    async def static_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC:
            raise web.HTTPNotFound(headers=HEADERS)
        return web.Response(body=self.static[name], content_type=STATIC[name], charset="utf-8",
                            headers={**HEADERS, "Cache-Control": "max-age=300"})

    def _signin_page(self, nxt: str, message: str | None = None) -> str:
        body = tag("section", join([
            tag("h1", "Sign in to canary"),
            tag("p", "Paste an API token (canary token create). The console acts with its scopes; revoking the token ends the session.",
                class_="muted"),
            tag("p", message, class_="error") if message else Html(""),
            tag("form", join([
                render.hidden("next", nxt),
                tag("label", "API token", for_="token"),
                Html('<input id="token" name="token" type="password" autocomplete="off" spellcheck="false" required autofocus'
                     ' placeholder="cy_api_…">'),
                tag("button", "Sign in", type="submit", class_="primary")]), method="post", action="/signin", class_="signin")]),
            class_="card narrow")
        return render.page("Sign in", body)

    async def signin_form(self, request: web.Request) -> web.StreamResponse:
        nxt = local_path(request.query.get("next"))
        auth = self.api.auth
        if auth is not None and await auth.session(request) is not None:
            return redirect(nxt)
        return respond(self._signin_page(nxt))

    async def signin(self, request: web.Request) -> web.StreamResponse:
        auth = self.api.auth
        if auth is None:
            return respond(render.page("Starting", tag("p", "canary is starting")), 503)
        try:
            fields = await self._form(request)
        except Refused as exc:
            return respond(self._signin_page("/incidents", str(exc)), exc.status)
        nxt = local_path(fields.get("next"))
        if not same_origin(request, self.rt.config.listener.public_url):
            return respond(self._signin_page(nxt, "This sign-in did not come from this console."), 403)
        try:
            principal, value = await auth.sign_in(request, fields.get("token", "")[:200])
        except web.HTTPUnauthorized:
            return respond(self._signin_page(nxt, "That is not a valid API token."), 401)
        log.info("console.signed_in", token=principal.id, client=self.api.proxies.client(request))
        resp = redirect(nxt)
        resp.set_cookie(auth.cookie, value, path="/", secure=self.rt.config.listener.cookie_secure, httponly=True,
                        samesite="Strict", max_age=int(self.rt.config.api.session_max))
        return resp

    async def signout(self, request: web.Request) -> web.StreamResponse:
        auth = self.api.auth
        if auth is None:
            return redirect("/signin")
        principal = await auth.session(request)
        try:
            fields = await self._form(request)
        except Refused as exc:
            return respond(render.page("Refused", tag("p", str(exc), class_="error")), exc.status)
        if principal is not None and not (same_origin(request, self.rt.config.listener.public_url)
                                          and csrf_ok(principal, fields.get("csrf"))):
            return respond(render.page("Refused", tag("p", "CSRF check failed.", class_="error"), principal=principal), 403)
        await auth.sign_out(request)
        resp = redirect("/signin")
        resp.del_cookie(auth.cookie, path="/", secure=self.rt.config.listener.cookie_secure, httponly=True,
                        samesite="Strict")
        return resp

    # -- incidents -------------------------------------------------------------------------
    async def incidents(self, request: web.Request, who: Principal, _: Mapping[str, str]) -> web.StreamResponse:
        route = self.api.route("GET", "/incidents")
        given = MultiDict((k, v) for k, v in request.query.items() if v != "")  # the filter form sends empty fields
        raw = dict(given)
        params = route.parse_values(given, request.match_info)
        got = await self.api.incidents(self._call(request, who, params))
        filters = tag("form", join([
            _select("status", ("", *STATUSES), raw.get("status")),
            _select("kind", ("", *map(str, EventKind)), raw.get("kind")),
            _select("severity", ("", *map(str, Severity)), raw.get("severity")),
            Html(f'<input name="datastore" placeholder="datastore" value="{e(raw.get("datastore", ""))}">'),
            _select("drill", ("", "true", "false"), raw.get("drill"), labels={"true": "drills only", "false": "no drills"}),
            tag("button", "Filter", type="submit"), link("/incidents", "clear", class_="muted")]),
            method="get", action="/incidents", class_="filters")
        rows = [(badge("sev", it["severity"]), link(f"/incidents/{int(it['id'])}", f"#{it['id']}"),
                 join([link(f"/incidents/{int(it['id'])}", it["title"]), " ", badge("drill", "drill") if it["drill"] else ""]),
                 badge("status", it["status"]), it["kind"], it["datastore"] or "", it["event_count"], it["canary_count"],
                 when(it["opened_at"])) for it in got["items"]]
        nxt = got["next_cursor"]
        more = link(render.query("/incidents", {**{k: v for k, v in raw.items() if k != "cursor"}, "cursor": nxt}),
                    "next page →", class_="next") if nxt else Html("")
        body = join([tag("h1", "Incidents"), filters,
                     table(("sev", "id", "title", "status", "kind", "datastore", "events", "canaries", "opened"), rows,
                           empty="No incidents match."), more])
        return self._show("Incidents", body, who, "incidents")

    async def _incident_row(self, iid: int) -> asyncpg.Record:
        row = await self.rt.pool.fetchrow(
            "SELECT id, first_seen, last_seen, acknowledged_at, resolved_at, coalesce(actor->>'role', actor->>'user') AS who"
            " FROM incidents WHERE id = $1", iid)
        if row is None:
            raise NotFound
        return row

    async def incident(self, request: web.Request, who: Principal, _: Mapping[str, str]) -> web.StreamResponse:
        iid = self.api.route("GET", "/incidents/{id}").params[0].parse(request.match_info["id"])
        cursor = request.query.get("events")
        ev_params: dict[str, Any] = {"id": iid, "limit": EVENTS_PER_PAGE}
        if cursor:
            ev_params["cursor"] = cursor
        call = self._call(request, who, {"id": iid})
        inc = await self.api.incident(call)
        events = await self.api.incident_events(self._call(request, who, ev_params))
        notes = await self.api.notes(self._call(request, who, {"id": iid, "limit": 200}))
        pool = self.rt.pool
        row = await self._incident_row(iid)
        chart = await self._timeline(iid, row)
        others = []
        if row["who"]:
            others = await pool.fetch(
                "SELECT id, title, severity, status, created_at, drill FROM incidents"
                " WHERE coalesce(actor->>'role', actor->>'user') = $1 AND id <> $2 AND suppressed_by IS NULL"
                " ORDER BY coalesce(actor->>'role', actor->>'user'), created_at DESC, id DESC LIMIT 10", row["who"], iid)
        labels = await registry.labels(pool, sorted({ev["canary_id"] for ev in events["items"] if ev["canary_id"]}))
        actor, origin = inc["actor"] or {}, inc["origin"] or {}
        can_act = who.has("operate") and inc["status"] != "resolved"
        actions = Html("")
        if can_act:
            note_field = Html('<input name="note" placeholder="note (optional)" maxlength="2000">')
            actions = tag("div", join([
                form(f"/incidents/{iid}/acknowledge", who.csrf, "Acknowledge", fields=note_field, cls="primary")
                if inc["status"] == "open" else Html(""),
                form(f"/incidents/{iid}/resolve", who.csrf, "Resolve", confirm=f"Resolve incident #{iid}?")]), class_="actions")
        head = tag("header", join([
            tag("h1", join([badge("sev", inc["severity"]), " ", f"#{iid} ", inc["title"]])),
            tag("p", join([badge("status", inc["status"]), " ", badge("drill", "drill: " + inc["drill"]) if inc["drill"] else
                           badge("live", "not a drill"), " ", inc["kind"], " · ", inc["source"], " · opened ", when(inc["opened_at"])]),
                class_="sub"), actions]), class_="incident")
        who_card = tag("section", join([tag("h2", "Who"), facts([
            ("role", actor.get("role")), ("user", actor.get("user")), ("application", actor.get("application_name")),
            ("session", actor.get("session_id"))]) if actor else tag("p", "unknown", class_="empty")]), class_="card")
        where_card = tag("section", join([tag("h2", "From where"), facts([
            ("client", origin.get("client_addr")), ("node", origin.get("node")), ("datastore", origin.get("datastore")),
            ("database", origin.get("database")), ("pid", origin.get("pid"))]) if origin else tag("p", "unknown", class_="empty")]),
            class_="card")
        what_card = tag("section", join([tag("h2", "What"), facts([
            ("events", inc["event_count"]), ("canaries", inc["canary_count"]), ("first seen", when(inc["first_seen"])),
            ("last seen", when(inc["last_seen"])), ("acknowledged", join([when(inc["acknowledged_at"]), " by ", inc["acknowledged_by"]])
                                                     if inc["acknowledged_at"] else None),
            ("resolved", join([when(inc["resolved_at"]), " by ", inc["resolved_by"]]) if inc["resolved_at"] else None)])]),
            class_="card")
        canaries = table(("canary", "kind", "hits"), [(c["label"], c["kind"], c["count"]) for c in inc["canaries"]],
                         empty="No canary named (a probe or health incident).")
        deliveries = table(("sink", "state", "notifications"), [(d["sink"], badge("delivery", d["status"]), d["count"])
                                                                 for d in inc["deliveries"]], empty="Nothing was sent.")
        ev_rows = []
        for ev in events["items"]:
            ev_rows.append(tag("article", join([
                tag("div", join([tag("div", when(ev["observed_at"])),
                                 tag("div", join([badge("sev", ev["severity"]), " ", ev["kind"], " · ", ev["source"]])),
                                 tag("div", labels.get(ev["canary_id"], "no canary") if ev["canary_id"] else "no canary"),
                                 badge("muted", "suppressed: " + ev["suppressed_by"]) if ev["suppressed_by"] else ""]),
                    class_="evhead"),
                mapping(ev["evidence"] or {})]), class_="event"))
        more = (link(render.query(f"/incidents/{iid}", {"events": events["next_cursor"]}), "later events →", class_="next")
                if events["next_cursor"] else Html(""))
        other_rows = [(badge("sev", o["severity"]), link(f"/incidents/{int(o['id'])}", f"#{o['id']}"), o["title"],
                       badge("status", o["status"]), when(o["created_at"]), "drill" if o["drill"] else "")
                      for o in others]
        note_rows = [tag("li", join([tag("span", join([when(n["created_at"]), " ", n["author"]]), class_="muted"),
                                     tag("p", n["body"])])) for n in notes["items"]]
        note_form = (form(f"/incidents/{iid}/notes", who.csrf, "Add note",
                          fields=Html('<textarea name="body" rows="2" maxlength="10000" required placeholder="what you found, what you did"></textarea>'))
                     if who.has("operate") else Html(""))
        body = join([
            head,
            tag("div", join([who_card, where_card, what_card]), class_="cards"),
            tag("section", join([tag("h2", "Timeline"), chart]), class_="card"),
            tag("div", join([tag("section", join([tag("h2", "Canaries involved"), canaries]), class_="card"),
                             tag("section", join([tag("h2", "Delivery"), deliveries]), class_="card")]), class_="cards two"),
            tag("section", join([tag("h2", "Evidence"), join(ev_rows) if ev_rows else tag("p", "no events", class_="empty"), more]),
                class_="card"),
            tag("section", join([tag("h2", join(["What else ", tag("code", row["who"] or "this actor"), " did"])),
                                 table(("sev", "id", "title", "status", "opened", ""), other_rows,
                                       empty="No other incident of this actor.")]), class_="card"),
            tag("section", join([tag("h2", "Notes"), tag("ul", join(note_rows), class_="notes") if note_rows else Html(""),
                                 note_form]), class_="card"),
        ])
        return self._show(f"#{iid} {inc['title']}", body, who, "incidents")

    async def _timeline(self, iid: int, row: asyncpg.Record) -> Html:
        pool = self.rt.pool
        paged = await pool.fetch(
            "SELECT sink, action, delivered_at FROM outbox WHERE incident_id = $1 AND status = 'delivered'"
            " AND delivered_at IS NOT NULL ORDER BY delivered_at LIMIT 50", iid)
        markers: list[tuple[str, dt.datetime]] = []
        first_page = next((p["delivered_at"] for p in paged if p["action"] == "trigger"), None)
        if first_page is not None:
            markers.append(("paged", first_page))
        if row["acknowledged_at"] is not None:
            markers.append(("acknowledged", row["acknowledged_at"]))
        if row["resolved_at"] is not None:
            markers.append(("resolved", row["resolved_at"]))
        start = row["first_seen"]
        end = max([row["last_seen"], *(at for _, at in markers)])
        if (end - start).total_seconds() < 60:
            end = start + dt.timedelta(seconds=60)
        span = (end - start).total_seconds()
        counts = [0] * TIMELINE_BUCKETS
        for r in await pool.fetch(
                "SELECT least(greatest(floor(extract(epoch FROM observed_at - $2::timestamptz) / $3)::int, 0), $4 - 1) AS b,"
                " count(*) AS n FROM (SELECT observed_at FROM events WHERE incident_id = $1 ORDER BY id LIMIT $5) AS e"
                " GROUP BY 1", iid, start, span / TIMELINE_BUCKETS, TIMELINE_BUCKETS, TIMELINE_EVENTS):
            counts[r["b"]] += r["n"]
        return render.timeline(start, end, counts, markers)

    async def _change(self, request: web.Request, who: Principal, fields: Mapping[str, str], status: str) -> web.StreamResponse:
        iid = self.api.route("GET", "/incidents/{id}").params[0].parse(request.match_info["id"])
        note = fields.get("note", "").strip() or None
        call = self._call(request, who, {"id": iid}, {"note": note})
        await (self.api.acknowledge(call) if status == "acknowledged" else self.api.resolve(call))
        return redirect(f"/incidents/{iid}")

    async def acknowledge(self, request: web.Request, who: Principal, fields: Mapping[str, str]) -> web.StreamResponse:
        return await self._change(request, who, fields, "acknowledged")

    async def resolve(self, request: web.Request, who: Principal, fields: Mapping[str, str]) -> web.StreamResponse:
        return await self._change(request, who, fields, "resolved")

    async def add_note(self, request: web.Request, who: Principal, fields: Mapping[str, str]) -> web.StreamResponse:
        iid = self.api.route("GET", "/incidents/{id}").params[0].parse(request.match_info["id"])
        await self._incident_row(iid)
        await self.api.add_note(self._call(request, who, {"id": iid}, {"body": fields.get("body", "")}))
        return redirect(f"/incidents/{iid}")

    # -- canaries, coverage ----------------------------------------------------------------
    async def canaries(self, request: web.Request, who: Principal, _: Mapping[str, str]) -> web.StreamResponse:
        got = await self.api.inventory(self._call(request, who, {}))
        sections = []
        for ds in got["datastores"]:
            unarmed = [t["table"] for t in ds["tables"] if not t["detection_installed_at"]]
            healthy = ds["open_health_incidents"] == 0 and not unarmed
            rows = [(t["table"], t["kind"], t["count"], when(t["newest"]),
                     badge("health", "armed") if t["detection_installed_at"] else badge("health", "unarmed"),
                     when(t["detection_installed_at"]) if t["detection_installed_at"] else "detection not installed")
                    for t in ds["tables"]]
            sections.append(tag("section", join([
                tag("h2", join([ds["name"], " ", badge("health", "healthy" if healthy else "degraded")])),
                tag("p", join([f"{ds['open_health_incidents']} open health incident(s); last: ", ds["last_health_incident"]]),
                    class_="muted") if ds["open_health_incidents"] else Html(""),
                tag("p", f"Canaries without detection installed in: {', '.join(unarmed)} (run canary seed).",
                    class_="muted") if unarmed else Html(""),
                table(("table", "kind", "canaries", "newest", "health", "detection installed"), rows,
                      empty="No canaries in this datastore.")]), class_="card"))
        body = join([tag("h1", "Canaries"), tag("p", "Counts per datastore and table; values are never shown here.", class_="muted"),
                     join(sections) if sections else tag("p", "No datastores configured.", class_="empty")])
        return self._show("Canaries", body, who, "canaries")

    async def coverage(self, request: web.Request, who: Principal, _: Mapping[str, str]) -> web.StreamResponse:
        params = self.api.route("GET", "/coverage").parse(request)
        if params.get("refresh") and not who.has("operate"):
            raise Refused(403, "Recomputing the coverage report needs the 'operate' scope.")
        report = await self.api.coverage(self._call(request, who, params))
        h = await self.api.health(self._call(request, who, {}))
        comps = h.get("components") or {}
        comp_rows = [(name, badge("health", v if isinstance(v, str) else "ok" if v else "down")
                      if not isinstance(v, Mapping) else render.mapping(v)) for name, v in sorted(comps.items())]
        lag_rows = [(name, render.mapping(v) if isinstance(v, Mapping) else v) for name, v in sorted((h.get("lag") or {}).items())]
        ck_rows = [(c["source"], when(c["updated_at"]), f"{c['age_s']:.0f}s") for c in h.get("checkpoints", [])]
        body = join([
            tag("h1", join(["Coverage and sources ", badge("health", h.get("status", "unknown"))])),
            _coverage_report(report, operate=who.has("operate")),
            tag("h2", "Sources", class_="part"),
            tag("div", join([
                tag("section", join([tag("h2", "Listener"), facts([
                    ("status", badge("health", h.get("status"))), ("control store", h.get("control_store")),
                    ("leader", "yes" if h.get("leader") else "no"), ("stalled", ", ".join(h.get("stalled") or []) or "none"),
                    ("outbox pending", (h.get("outbox") or {}).get("pending")), ("dead letters", (h.get("outbox") or {}).get("dead"))])]),
                    class_="card"),
                tag("section", join([tag("h2", "Pipeline"), render.mapping(h.get("pipeline") or {})]), class_="card")]),
                class_="cards two"),
            tag("section", join([tag("h2", "Components"), table(("component", "state"), comp_rows)]), class_="card"),
            tag("section", join([tag("h2", "Source lag"), table(("source", "lag"), lag_rows, empty="No lagging sources.")]),
                class_="card"),
            tag("section", join([tag("h2", "Checkpoints"), table(("source", "updated", "age"), ck_rows, empty="No checkpoints yet.")]),
                class_="card"),
        ])
        return self._show("Coverage", body, who, "coverage")

    # -- drills ----------------------------------------------------------------------------
    async def drills(self, request: web.Request, who: Principal, _: Mapping[str, str]) -> web.StreamResponse:
        params = self.api.route("GET", "/drills").parse(request)
        got = await self.api.drills(self._call(request, who, params))
        rows = [(link(f"/drills/{quote(d['id'], safe='')}", d["id"]), d["playbook"], d["mode"], badge("drill-status", d["status"]),
                 when(d["started_at"]), d["detected"], d["missed"], d["skipped"],
                 f"{d['time_to_detect_s']:.2f}s" if d["time_to_detect_s"] is not None else "—",
                 f"{d['time_to_page_s']:.2f}s" if d["time_to_page_s"] is not None else "—") for d in got["items"]]
        more = (link(render.query("/drills", {"cursor": got["next_cursor"]}), "next page →", class_="next")
                if got["next_cursor"] else Html(""))
        body = join([tag("h1", "Drills"), tag("p", "Run drills here or with canary drill run; their reports are kept here.",
                                              class_="muted"), await self._run_form(who),
                     table(("run", "playbook", "mode", "status", "started", "detected", "missed", "skipped", "worst detect",
                            "worst page"), rows, empty="No drill has run."), more])
        return self._show("Drills", body, who, "drills")

    async def _run_form(self, who: Principal) -> Html:
        """Operate scope: run a playbook (by name) against a configured datastore (POST /api/v1/drills)."""
        datastores = [d.name for d in self.rt.config.datastores]
        if not who.has("operate") or not datastores:
            return Html("")
        fields = join([_select("playbook", tuple(await self.api.drill_runs.names()), None),
                       _select("datastore", tuple(datastores), None) if len(datastores) > 1 else Html("")])
        return form("/drills/run", who.csrf, "Run", fields=fields,
                    confirm="Run this drill now? Its reads and messages are real traffic and page on-call (marked [DRILL]).")

    async def run_drill(self, request: web.Request, who: Principal, fields: Mapping[str, str]) -> web.StreamResponse:
        body = {k: fields[k] for k in ("playbook", "datastore") if fields.get(k)}
        try:
            run = await self.api.drill_runs.launch(self._call(request, who, {}, body))
        except CannotRun as exc:
            raise Refused(409, str(exc)) from None
        return redirect(f"/drills/{quote(run.id, safe='')}")

    async def _drill_row(self, request: web.Request) -> asyncpg.Record:
        run_id = request.match_info["id"]
        row = await self.rt.pool.fetchrow("SELECT * FROM drill_runs WHERE id = $1", run_id[:64]) if len(run_id) <= 64 else None
        if row is None:
            raise NotFound
        return row

    async def drill(self, request: web.Request, who: Principal, _: Mapping[str, str]) -> web.StreamResponse:
        row = await self._drill_row(request)
        run = Api._drill_item(row)
        result = row["result"] or {}
        steps = [s for s in (result.get("steps") or []) if isinstance(s, Mapping)]
        step_rows = [(s.get("name"), badge("drill-status", s.get("status")), s.get("time_to_detect_s"), s.get("time_to_page_s"),
                      s.get("detail") or s.get("reason") or "") for s in steps]
        body = join([
            tag("h1", join(["Drill ", run["id"], " ", badge("drill-status", run["status"])])),
            facts([("playbook", run["playbook"]), ("mode", run["mode"]), ("started", when(run["started_at"])),
                   ("finished", when(run["finished_at"]) if run["finished_at"] else "running"),
                   ("error", result.get("error")),  # why a run started from here ended as an error
                   ("report", link(f"/drills/{quote(run['id'], safe='')}/report", "full report (HTML)") if result else None)]),
            tag("section", join([tag("h2", "Steps"), table(("step", "status", "detect (s)", "page (s)", "detail"), step_rows,
                                                            empty="No steps recorded.")]), class_="card"),
            tag("details", join([tag("summary", "report as JSON"),
                                 tag("pre", json.dumps(result, indent=1, sort_keys=True, default=str))]), class_="card"),
        ])
        return self._show(f"Drill {run['id']}", body, who, "drills")

    async def drill_report(self, request: web.Request, who: Principal, _: Mapping[str, str]) -> web.StreamResponse:
        row = await self._drill_row(request)
        got = await self.api.drill(self._call(request, who, {"id": row["id"], "format": "html"}))
        if not isinstance(got, web.Response) or got.text is None:
            raise NotFound
        return web.Response(text=got.text, content_type="text/html", charset="utf-8",
                            headers={**HEADERS, "Content-Security-Policy": REPORT_CSP})

    # -- delivery --------------------------------------------------------------------------
    async def sinks(self, request: web.Request, who: Principal, _: Mapping[str, str]) -> web.StreamResponse:
        params = self.api.route("GET", "/sinks/dead").parse(request)
        sinks = await self.api.sinks(self._call(request, who, {}))
        dead = await self.api.dead(self._call(request, who, {**params, "limit": params.get("limit", 50)}))
        operate = who.has("operate")
        rows = [(s["name"], s["type"] or "(removed)", s["pending"], s["delivered"],
                 badge("delivery", "dead") if s["dead"] else "0" if not s["dead"] else s["dead"],
                 when(s["oldest_pending"]) if s["oldest_pending"] else "—",
                 form("/sinks/replay", who.csrf, f"Replay {s['dead']} dead", fields=join([render.hidden("all", "true"),
                                                                                            render.hidden("sink", s["name"])]),
                      confirm=f"Send the dead letters of {s['name']} again?") if operate and s["dead"] else "")
                for s in sinks["items"]]
        dead_rows = [(d["id"], link(f"/incidents/{int(d['incident_id'])}", f"#{d['incident_id']}"), d["sink"], d["action"],
                      d["attempts"], tag("code", (d["last_error"] or "")[:200]), when(d["created_at"]),
                      form("/sinks/replay", who.csrf, "Replay", fields=render.hidden("ids", d["id"])) if operate else "")
                     for d in dead["items"]]
        more = (link(render.query("/sinks", {"cursor": dead["next_cursor"], "sink": params.get("sink")}), "more dead letters →",
                     class_="next") if dead["next_cursor"] else Html(""))
        body = join([
            tag("h1", "Delivery"),
            tag("section", join([tag("h2", "Sinks"), table(("sink", "type", "pending", "delivered", "dead", "oldest pending", ""),
                                                            rows, empty="No sinks configured.")]), class_="card"),
            tag("section", join([tag("h2", "Dead letters"), table(("id", "incident", "sink", "action", "attempts", "last error",
                                                                   "created", ""), dead_rows, empty="No dead letters."), more]),
                class_="card")])
        return self._show("Delivery", body, who, "sinks")

    async def replay(self, request: web.Request, who: Principal, fields: Mapping[str, str]) -> web.StreamResponse:
        ids_text = fields.get("ids", "")
        try:
            ids = [int(x) for x in ids_text.split(",") if x.strip()] if ids_text else []
        except ValueError:
            raise BadParam("ids", "outbox ids") from None
        body: dict[str, Any] = {"ids": ids, "all": fields.get("all") == "true"}
        if fields.get("sink"):
            body["sink"] = fields["sink"]
        await self.api.replay(self._call(request, who, {}, body))
        return redirect("/sinks")

    # -- audit -----------------------------------------------------------------------------
    async def audit(self, request: web.Request, who: Principal, _: Mapping[str, str]) -> web.StreamResponse:
        params = self.api.route("GET", "/audit").parse(request)
        got = await self.api.audit_log(self._call(request, who, {**params, "limit": params.get("limit", 100)}))
        rows = [(when(a["at"]), a["actor"], a["client"] or "", tag("code", a["action"]), a["target"] or "",
                 tag("code", json.dumps(a["details"], sort_keys=True, default=str)[:300]) if a["details"] else "")
                for a in got["items"]]
        more = (link(render.query("/audit", {"cursor": got["next_cursor"], "action": params.get("action")}), "older →",
                     class_="next") if got["next_cursor"] else Html(""))
        body = join([tag("h1", "Audit log"), table(("when", "who", "from", "action", "target", "details"), rows,
                                                    empty="Nothing audited yet."), more])
        return self._show("Audit", body, who, "audit")


#: how the console groups a datastore's paths (the report's statuses), most urgent first, and their badge classes
_GROUPS = ((OPEN, "Not covered", "open"), (PARTLY, "Partly covered", "partly"), (COVERED, "Covered", "covered"))


def _coverage_report(report: Mapping[str, Any], *, operate: bool) -> Html:
    """The coverage report (GET /api/v1/coverage): per datastore its paths grouped not covered / partly /
    covered, each with why; the server settings to set, notes, and objects that read canary tables without
    row security. Every text goes through :func:`e` (role, view and function names come from the datastore)."""
    claims = int(report.get("open_claims", 0))
    head = tag("p", join([
        "Every way data can leave each datastore and whether canary sees it, computed ", when(report.get("computed_at")),
        f" (kept {float(report.get('max_age_s', 0)):.0f}s). ",
        badge("cover", "open") if claims else Html(""),
        f" {claims} path{'s' if claims != 1 else ''} the configuration claims to cover {'are' if claims != 1 else 'is'} open. "
        if claims else "No path the configuration claims to cover is open. ",
        link("/coverage?refresh=true", "Recompute now") if operate else Html("")]), class_="muted")
    sections = [head]
    for s in report.get("datastores", []):
        paths = [p for p in s.get("paths", []) if isinstance(p, Mapping)]
        counts = {status: sum(1 for p in paths if p.get("status") == status) for status, _, _ in _GROUPS}
        title = join([s.get("datastore"), " ", badge("health", "reachable" if s.get("reachable") else "unreachable")])
        parts: list[Html] = [tag("h2", title),
                             tag("p", f"Node {s.get('node')}: {counts[OPEN]} not covered, {counts[PARTLY]} partly, "
                                      f"{counts[COVERED]} covered; "
                                      f"{(s.get('canaries') or {}).get('customers', 0)} customer and "
                                      f"{(s.get('canaries') or {}).get('credentials', 0)} credential canaries.", class_="muted")]
        if not s.get("reachable"):
            parts.append(tag("p", f"The datastore cannot be read ({s.get('error') or 'unknown error'}): the paths below are "
                                  "not verified.", class_="error"))
        for status, label, slug in _GROUPS:
            rows = [(join([p.get("title"), " ", badge("cover", "claimed") if p.get("open_claim") else ""]), p.get("why"))
                    for p in paths if p.get("status") == status]
            if rows:
                parts.append(tag("h3", join([badge("cover", slug), f" {label} ({len(rows)})"])))
                parts.append(table(("path", "why"), rows, cls="grid coverage"))
        settings = [x for x in s.get("settings") or [] if isinstance(x, Mapping)]
        if settings:
            parts.append(tag("h3", "Server settings to set"))
            parts.append(table(("setting", "must be", "now", "where", "why"), [
                (join([tag("code", x.get("setting")), " ", tag("span", "required", class_="badge sev-error") if x.get("required")
                       else tag("span", "advised", class_="badge sev-info")]),
                 x.get("value"), x.get("current"), x.get("where"), x.get("why")) for x in settings]))
        for note in s.get("notes") or []:
            parts.append(tag("p", note, class_="muted"))
        objects = [o for o in s.get("privileged_objects") or [] if isinstance(o, Mapping)]
        if objects:
            parts.append(tag("h3", "Objects that read canary tables without row security"))
            parts.append(table(("kind", "object", "owner", "why", "covered by"), [
                (o.get("kind"), tag("code", o.get("name")), o.get("owner"), o.get("why"), o.get("covered_by")) for o in objects]))
        sections.append(tag("section", join(parts), class_="card coverage"))
    if not report.get("datastores"):
        sections.append(tag("p", "No datastore is configured.", class_="empty"))
    return join(sections)


def _select(name: str, choices: tuple[str, ...], current: str | None, labels: Mapping[str, str] | None = None) -> Html:
    opts = join(tag("option", (labels or {}).get(c, c) if c else f"any {name}", value=c, selected=c == (current or ""))
                for c in choices)
    return tag("select", opts, name=name, aria_label=name)


class ConsoleComponent:
    """The console as a listener component: pages at /, sharing the API's authenticator (and its tarpit)."""

    name = "console"

    def __init__(self, api: Api) -> None:
        self.console = Console(api)

    def routes(self) -> list[web.RouteDef]:
        return self.console.routes()

    async def start(self, runtime: SourceContext) -> None:
        if self.console.api.rt is None:  # started without its API component (tests): start the API's core
            self.console.api.start(runtime)
        assert self.console.api.auth is not None
        self.console.api.auth.cookie = cookie_name(runtime.config.listener)

    async def stop(self) -> None:
        return None
