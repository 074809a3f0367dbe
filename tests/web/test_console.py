"""The console over HTTP against a real listener and control store: signing in with a token makes a
browser session in a ``__Host-`` cookie (Secure, HttpOnly, SameSite=Strict, Path=/) stored only as a
hash; pages without a session redirect to sign-in; every POST needs the session's CSRF token and this
origin; read-scope sessions see no buttons and are refused on POST; the JSON API accepts the session but
wants X-CSRF-Token to change state; hostile evidence renders inert; every page carries a strict CSP and
shows no canary value."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from alerting_servers import drained
from seeder_helpers import Shop
from testkit import CanaryRows, MakeConfig, OpenRuntime
from web_support import ApiUnderTest, make_api, secrets_in

from canary.drills.runner import DrillResult, StepResult, StepStatus, _incident_json
from canary.events import DetectionEvent, EventKind, event_key
from canary.store import api_tokens, browser_sessions
from canary.web.api import PREFIX

HOSTILE_QUERY = "select * from customers /* </pre><script>alert('x')</script><img src=x onerror=alert(1)> */"
HOSTILE_ROLE = '"><svg onload=alert(2)>'
PAGES = ("/incidents", "/incidents/{id}", "/canaries", "/coverage", "/drills", "/sinks", "/audit")


@pytest.fixture
def shop_rows() -> int:
    return 400


@pytest.fixture
async def console(open_test_runtime: OpenRuntime, make_config: MakeConfig, canary_rows: CanaryRows,
                  shop: Shop) -> AsyncIterator[ApiUnderTest]:
    """A listener serving the API and the console, two incidents paged to a local PagerDuty."""
    async with make_api(open_test_runtime, make_config, canary_rows, shop, with_console=True) as under:
        yield under


@dataclass
class Session:
    cookie: str  # name=value
    csrf: str


async def fetch(c: ApiUnderTest, method: str, path: str, *, cookie: str | None = None, data: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str, list[str]]:
    """One request without following redirects: status, headers, body, Set-Cookie lines."""
    h = {**({"Cookie": cookie} if cookie else {}), **(headers or {})}
    async with c.http.request(method, c.base + path, data=data, headers=h, allow_redirects=False) as resp:
        return resp.status, dict(resp.headers), await resp.text(), resp.headers.getall("Set-Cookie", [])


async def sign_in(c: ApiUnderTest, token_name: str, nxt: str = "/incidents") -> Session:
    status, headers, _, cookies = await fetch(c, "POST", "/signin", data={"token": c.tokens[token_name], "next": nxt})
    assert status == 303 and headers["Location"] == nxt, (status, headers)
    cookie = cookies[0].split(";", 1)[0]
    status, _, text, _ = await fetch(c, "GET", "/incidents", cookie=cookie)
    assert status == 200
    m = re.search(r'name="csrf" value="([0-9a-f]{64})"', text)
    assert m is not None
    return Session(cookie, m.group(1))


async def test_sign_in_makes_a_host_cookie_stored_only_as_a_hash(console: ApiUnderTest) -> None:
    """The alert link without a session redirects to sign-in (next = the link); a wrong token is a 401 page
    and a reject naming the peer only; a valid one sets __Host-canary_session (Secure, HttpOnly,
    SameSite=Strict, Path=/, no Domain) and lands on the link; the store holds SHA-256 of the cookie, never it."""
    iid = console.incident_ids[0]
    status, headers, _, _ = await fetch(console, "GET", f"/incidents/{iid}")
    assert status == 303 and headers["Location"] == f"/signin?next=/incidents/{iid}"
    status, _, text, _ = await fetch(console, "GET", f"/signin?next=/incidents/{iid}")
    assert status == 200 and f'value="/incidents/{iid}"' in text and 'type="password"' in text
    status, _, text, cookies = await fetch(console, "POST", "/signin", data={"token": "cy_api_nope", "next": "/incidents"})
    assert status == 401 and not cookies and "not a valid API token" in text
    assert [r["sample"] for r in await console.rt.pool.fetch("SELECT sample FROM rejects WHERE reason = 'bad_signin'")] == \
        ["peer=127.0.0.1"]
    status, headers, _, cookies = await fetch(console, "POST", "/signin",
                                              data={"token": console.tokens["operate"], "next": f"/incidents/{iid}"})
    assert status == 303 and headers["Location"] == f"/incidents/{iid}" and len(cookies) == 1
    attrs = [a.strip() for a in cookies[0].split(";")]
    name, _, value = attrs[0].partition("=")
    lowered = {a.split("=")[0].lower(): a for a in attrs[1:]}
    assert name == "__Host-canary_session" and value.startswith("cy_ses_")
    assert "secure" in lowered and "httponly" in lowered and lowered["samesite"] == "SameSite=Strict"
    assert lowered["path"] == "Path=/" and "domain" not in lowered
    rows = await console.rt.pool.fetch("SELECT * FROM browser_sessions")
    assert len(rows) == 1 and bytes(rows[0]["hash"]) == hashlib.sha256(value.encode()).digest()
    assert value not in str([dict(r) for r in rows])
    status, _, text, _ = await fetch(console, "GET", f"/incidents/{iid}", cookie=f"{name}={value}")
    assert status == 200 and f"#{iid}" in text


async def test_sign_in_goes_only_to_local_paths(console: ApiUnderTest) -> None:
    """``next`` is followed only to a path on this site: //host, /\\host, absolute URLs and junk go to /incidents."""
    for nxt in ("//evil.example/x", "/\\evil.example", "https://evil.example/", "javascript:alert(1)", "/ok\r\nX: y"):
        status, headers, _, _ = await fetch(console, "POST", "/signin", data={"token": console.tokens["read"], "next": nxt})
        assert status == 303 and headers["Location"] == "/incidents", nxt


async def test_failed_sign_ins_are_tarpitted_like_the_api(open_test_runtime: OpenRuntime, make_config: MakeConfig,
                                                          canary_rows: CanaryRows, shop: Shop) -> None:
    """Beyond api.auth_fail_limit failures per peer (API calls and sign-ins count together) each further
    sign-in waits longer before its 401."""
    async with make_api(open_test_runtime, make_config, canary_rows, shop, with_console=True, auth_fail_limit=2,
                        auth_fail_step="400ms") as c:
        assert (await c.call("GET", f"{PREFIX}/incidents", "cy_api_bad"))[0] == 401
        took = []
        for _ in range(3):
            t = time.perf_counter()
            status, *_ = await fetch(c, "POST", "/signin", data={"token": "wrong"})
            took.append(time.perf_counter() - t)
            assert status == 401
        assert took[0] < 0.3 and took[1] >= 0.35 and took[2] >= 0.75, took


async def test_every_page_has_a_strict_policy_and_no_inline_script_or_secret(console: ApiUnderTest) -> None:
    """Each page (and the sign-in page, the static files) answers with a CSP allowing script and style from
    this origin only (no 'unsafe-inline'), frame-ancestors 'none', X-Frame-Options DENY, Referrer-Policy
    no-referrer, no-store; no page has an inline <script>, style attribute or on* handler, and none holds a
    canary's e-mail, phone or row key."""
    s = await sign_in(console, "admin")
    for path in ("/signin", "/static/console.css", "/static/console.js",
                 *(p.replace("{id}", str(console.incident_ids[0])) for p in PAGES)):
        status, headers, text, _ = await fetch(console, "GET", path, cookie=None if path == "/signin" else s.cookie)
        assert status == 200, (path, status)
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp, path
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp, path
        assert headers["X-Frame-Options"] == "DENY" and headers["Referrer-Policy"] == "no-referrer"
        assert headers["X-Content-Type-Options"] == "nosniff"
        if path.startswith("/static"):
            continue
        assert headers["Cache-Control"] == "no-store"
        assert re.findall(r"<script(?![^>]*\ssrc=)[^>]*>", text) == [], path
        assert not re.search(r"\sstyle=|\son[a-z]+=", text), path
        assert not secrets_in(text), (path, secrets_in(text))
    for other in ("/static/api.py", "/static/..%2Fapi.py", "/static/console.css.map"):
        assert (await fetch(console, "GET", other))[0] == 404, other  # only the two shipped files


async def test_post_needs_the_csrf_token_and_this_origin(console: ApiUnderTest) -> None:
    """Acknowledge without the CSRF token, with another session's, or from a foreign Origin is 403 and
    changes nothing; with its own token from this origin it acknowledges (303 back to the page), is
    audited as the session's token and PagerDuty receives the acknowledge."""
    iid = console.incident_ids[0]
    s = await sign_in(console, "operate")
    other = await sign_in(console, "admin")
    assert other.csrf != s.csrf
    here = {"Origin": console.base}
    for data, headers in (({}, here), ({"csrf": "0" * 64}, here), ({"csrf": other.csrf}, here),
                          ({"csrf": s.csrf}, {"Origin": "https://evil.example"}),
                          ({"csrf": s.csrf}, {"Origin": "https://evil.example", "Sec-Fetch-Site": "same-origin"}),
                          ({"csrf": s.csrf}, {"Sec-Fetch-Site": "cross-site"}),
                          ({"csrf": s.csrf}, {"Origin": "null", "Sec-Fetch-Site": "cross-site"})):
        status, _, text, _ = await fetch(console, "POST", f"/incidents/{iid}/acknowledge", cookie=s.cookie, data=data,
                                         headers=headers)
        assert status == 403 and "CSRF" in text, (data, headers)
    assert await console.rt.pool.fetchval("SELECT status FROM incidents WHERE id = $1", iid) == "open"
    # what Chromium sends from a page with Referrer-Policy: no-referrer
    status, headers, _, _ = await fetch(console, "POST", f"/incidents/{iid}/acknowledge", cookie=s.cookie,
                                        data={"csrf": s.csrf, "note": "looking"},
                                        headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"})
    assert status == 303 and headers["Location"] == f"/incidents/{iid}"
    assert await console.rt.pool.fetchval("SELECT status FROM incidents WHERE id = $1", iid) == "acknowledged"
    entry = await console.rt.pool.fetchrow("SELECT * FROM audit_log WHERE action = 'incident.acknowledge'")
    tid = console.tokens["operate"].split("_")[2]
    assert entry["actor"] == f"session:{tid} (operate)" and entry["client"] == "127.0.0.1"
    await drained(console.rt.pool, 5)
    assert any(ev["event_action"] == "acknowledge" for a in console.pd.alerts.values() for ev in a["log"])
    # a note, then the page shows it (escaped)
    status, *_ = await fetch(console, "POST", f"/incidents/{iid}/notes", cookie=s.cookie,
                             data={"csrf": s.csrf, "body": "<b>checked</b> with the DBA"}, headers=here)
    assert status == 303
    _, _, text, _ = await fetch(console, "GET", f"/incidents/{iid}", cookie=s.cookie)
    assert "&lt;b&gt;checked&lt;/b&gt; with the DBA" in text and "<b>checked" not in text


async def test_the_json_api_with_a_session_wants_the_csrf_header(console: ApiUnderTest) -> None:
    """A cookie-authenticated POST to the JSON API is 403 without X-CSRF-Token, with a wrong one or from
    a foreign Origin, and works with it; GETs need none; a Bearer token needs no CSRF token."""
    iid = console.incident_ids[1]
    s = await sign_in(console, "operate")
    path = f"{PREFIX}/incidents/{iid}/resolve"
    for headers in ({}, {"X-CSRF-Token": "f" * 64}, {"X-CSRF-Token": s.csrf, "Origin": "https://evil.example"}):
        status, _, text, _ = await fetch(console, "POST", path, cookie=s.cookie, headers=headers)
        assert status == 403 and "CSRF" in text, headers
    status, _, text, _ = await fetch(console, "GET", f"{PREFIX}/incidents/{iid}", cookie=s.cookie)
    assert status == 200
    status, _, text, _ = await fetch(console, "POST", path, cookie=s.cookie, headers={"X-CSRF-Token": s.csrf})
    assert status == 200 and '"resolved"' in text
    status, _, _ = await console.call("POST", f"{PREFIX}/incidents/{console.incident_ids[0]}/resolve", console.tokens["operate"], {})
    assert status == 200


async def test_a_read_session_sees_no_buttons_and_cannot_post(console: ApiUnderTest) -> None:
    """A read-scope session sees the incident without Acknowledge / Resolve / note forms and the delivery
    page without replay buttons; its POSTs (with a valid CSRF token) are 403 and change nothing; the audit
    page (admin) is 403 too."""
    iid = console.incident_ids[0]
    s = await sign_in(console, "read")
    await console.rt.pool.execute("UPDATE outbox SET status = 'dead', last_error = 'HTTP 500' WHERE incident_id = $1", iid)
    _, _, text, _ = await fetch(console, "GET", f"/incidents/{iid}", cookie=s.cookie)
    assert "Acknowledge" not in text and "/resolve" not in text and "/notes" not in text
    _, _, text, _ = await fetch(console, "GET", "/sinks", cookie=s.cookie)
    assert "dead letters" in text.lower() and "/sinks/replay" not in text and "HTTP 500" in text
    for path, data in ((f"/incidents/{iid}/acknowledge", {}), (f"/incidents/{iid}/resolve", {}),
                       (f"/incidents/{iid}/notes", {"body": "x"}), ("/sinks/replay", {"all": "true"})):
        status, _, text, _ = await fetch(console, "POST", path, cookie=s.cookie, data={"csrf": s.csrf, **data},
                                         headers={"Origin": console.base})
        assert status == 403 and "operate" in text, path
    assert await console.rt.pool.fetchval("SELECT status FROM incidents WHERE id = $1", iid) == "open"
    assert (await fetch(console, "GET", "/audit", cookie=s.cookie))[0] == 403
    op = await sign_in(console, "operate")
    _, _, text, _ = await fetch(console, "GET", f"/incidents/{iid}", cookie=op.cookie)
    assert "Acknowledge" in text and f"/incidents/{iid}/resolve" in text
    _, _, text, _ = await fetch(console, "GET", "/sinks", cookie=op.cookie)
    assert "/sinks/replay" in text
    status, _, _, _ = await fetch(console, "POST", "/sinks/replay", cookie=op.cookie,
                                  data={"csrf": op.csrf, "all": "true", "sink": "pd"}, headers={"Origin": console.base})
    assert status == 303
    assert await console.rt.pool.fetchval("SELECT count(*) FROM outbox WHERE status = 'dead'") == 0


async def test_hostile_evidence_renders_inert(console: ApiUnderTest) -> None:
    """A query holding </pre><script> and onerror=, and a role name that closes an attribute, appear on the
    incident page as text (escaped), never as markup; the list page escapes the title made from them too."""
    await console.rt.submit(DetectionEvent(
        kind=EventKind.READ, source="jsonlog", key=event_key("console-test", "hostile"), group="hostile",
        canary_id=console.canary_ids[0], observed_at=dt.datetime.now(dt.timezone.utc),
        actor={"user": HOSTILE_ROLE, "role": HOSTILE_ROLE, "application_name": "<iframe src=//evil>"},
        origin={"client_addr": "10.9.9.9", "datastore": "shop", "node": "<b>node</b>"},
        evidence={"query": HOSTILE_QUERY, "table": "public.customers"}))
    iid = await console.rt.pool.fetchval("SELECT max(id) FROM incidents")
    s = await sign_in(console, "read")
    _, _, text, _ = await fetch(console, "GET", f"/incidents/{iid}", cookie=s.cookie)
    for raw in ("<script>alert", "<img src=x", "<svg onload", "<iframe", "<b>node</b>", "</pre><script>"):
        assert raw not in text, raw
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in text
    assert "&quot;&gt;&lt;svg onload=alert(2)&gt;" in text and "&lt;b&gt;node&lt;/b&gt;" in text
    _, _, text, _ = await fetch(console, "GET", "/incidents", cookie=s.cookie)
    assert "<svg onload" not in text


async def test_sessions_end_with_their_token_idle_time_and_sign_out(console: ApiUnderTest) -> None:
    """Revoking the token ends its sessions (the next page redirects to sign-in and the row is gone); a
    session idle past api.session_idle or past its expiry ends; sign-out needs the CSRF token, deletes the
    session and clears the cookie."""
    s = await sign_in(console, "operate")
    tid = console.tokens["operate"].split("_")[2]
    await api_tokens.revoke(console.rt.pool, tid)
    status, headers, _, _ = await fetch(console, "GET", "/canaries", cookie=s.cookie)
    assert status == 303 and headers["Location"].startswith("/signin")
    assert await browser_sessions.count(console.rt.pool, tid) == 0
    admin_tid = console.tokens["admin"].split("_")[2]
    for column, value in (("last_seen_at", "clock_timestamp() - interval '61 minutes'"),
                          ("expires_at", "clock_timestamp() - interval '1 second'")):
        s = await sign_in(console, "admin")
        await console.rt.pool.execute(f"UPDATE browser_sessions SET {column} = {value}")
        status, headers, _, _ = await fetch(console, "GET", "/canaries", cookie=s.cookie)
        assert status == 303 and headers["Location"].startswith("/signin"), column
        assert await browser_sessions.count(console.rt.pool, admin_tid) == 0
    s = await sign_in(console, "admin")
    status, _, _, _ = await fetch(console, "POST", "/signout", cookie=s.cookie, data={}, headers={"Origin": console.base})
    assert status == 403 and await browser_sessions.count(console.rt.pool, admin_tid) == 1
    status, headers, _, cookies = await fetch(console, "POST", "/signout", cookie=s.cookie, data={"csrf": s.csrf},
                                              headers={"Origin": console.base})
    assert status == 303 and headers["Location"] == "/signin"
    assert cookies and cookies[0].startswith('__Host-canary_session=""') and "Max-Age=0" in cookies[0]
    assert await browser_sessions.count(console.rt.pool, admin_tid) == 0
    assert (await fetch(console, "GET", "/canaries", cookie=s.cookie))[0] == 303


async def test_plain_cookie_only_when_cookie_secure_is_off(open_test_runtime: OpenRuntime, make_config: MakeConfig,
                                                           canary_rows: CanaryRows, shop: Shop) -> None:
    """listener.cookie_secure = false (plain http off loopback) names the cookie canary_session, without
    Secure but still HttpOnly and SameSite=Strict; the __Host- name is then not accepted."""
    async with make_api(open_test_runtime, make_config, canary_rows, shop, with_console=True,
                        listener_config={"cookie_secure": False}) as c:
        _, _, _, cookies = await fetch(c, "POST", "/signin", data={"token": c.tokens["read"]})
        attrs = [a.strip().lower() for a in cookies[0].split(";")]
        assert attrs[0].startswith("canary_session=cy_ses_") and "secure" not in attrs and "httponly" in attrs
        assert "samesite=strict" in attrs
        value = cookies[0].split(";")[0].split("=", 1)[1]
        assert (await fetch(c, "GET", "/canaries", cookie=f"canary_session={value}"))[0] == 200
        assert (await fetch(c, "GET", "/canaries", cookie=f"__Host-canary_session={value}"))[0] == 303
        # plain http off loopback: a browser sends Origin: null (no-referrer page) and no Sec-Fetch-Site;
        # the synchronizer token decides
        _, _, text, _ = await fetch(c, "GET", "/incidents", cookie=f"canary_session={value}")
        m = re.search(r'name="csrf" value="([0-9a-f]{64})"', text)
        assert m is not None
        status, *_ = await fetch(c, "POST", "/signout", cookie=f"canary_session={value}", data={"csrf": "0" * 64},
                                 headers={"Origin": "null"})
        assert status == 403
        status, *_ = await fetch(c, "POST", "/signout", cookie=f"canary_session={value}", data={"csrf": m.group(1)},
                                 headers={"Origin": "null"})
        assert status == 303 and (await fetch(c, "GET", "/canaries", cookie=f"canary_session={value}"))[0] == 303


async def test_list_filters_and_keyset_next_links(console: ApiUnderTest) -> None:
    """The incident list takes the API's filters (empty form fields ignored; a bad value is a 400 page) and
    pages by the API's cursor: following "next" links visits every incident once."""
    s = await sign_in(console, "read")
    seen: list[str] = []
    path = "/incidents?limit=1&status=open&kind=&severity="
    while path:
        status, _, text, _ = await fetch(console, "GET", path.replace("&amp;", "&"), cookie=s.cookie)
        assert status == 200
        seen += re.findall(r'<a href="/incidents/(\d+)">#', text)
        m = re.search(r'<a href="(/incidents\?[^"]+)" class="next">', text)
        path = m.group(1) if m else ""
    assert sorted(map(int, seen)) == sorted(console.incident_ids)
    status, _, text, _ = await fetch(console, "GET", "/incidents?status=bogus", cookie=s.cookie)
    assert status == 400 and "status" in text
    _, _, text, _ = await fetch(console, "GET", "/incidents?drill=true", cookie=s.cookie)
    assert "No incidents match." in text


async def test_demo_keep_leaves_a_console_to_look_at() -> None:
    """`canary demo --keep` prints the console's URL and an admin token after its report and keeps the
    listener serving: the token signs in, the console lists the demo's incidents (linked from the alerts);
    Ctrl-C (SIGINT) then retires the canaries, leaves the shop as it was and exits 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "canary", "demo", "--keep", "--customers", "3000", "--canaries", "10", "--slo", "5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    out: list[str] = []
    try:
        url = token = ""
        while not token:
            line = (await asyncio.wait_for(proc.stdout.readline(), 240)).decode()
            assert line, "".join(out)
            out.append(line)
            if m := re.search(r"console:\s+(http://127\.0\.0\.1:\d+)/incidents", line):
                url = m.group(1)
            if m := re.search(r"token:\s+(cy_api_\w+)", line):
                token = m.group(1)
        assert url and "verdict: every step detected" in "".join(out)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/api/v1/incidents", headers={"Authorization": f"Bearer {token}"}) as resp:
                items = (await resp.json())["items"]
            assert resp.status == 200 and len(items) == 2 and all(it["link"].startswith(f"{url}/incidents/") for it in items)
            async with http.post(f"{url}/signin", data={"token": token}, allow_redirects=False) as resp:
                assert resp.status == 303
                cookie = resp.headers["Set-Cookie"].split(";")[0]
            async with http.get(items[0]["link"], headers={"Cookie": cookie}) as resp:
                assert resp.status == 200 and "svc_reporting" in await resp.text()
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(proc.communicate(), 120)
    text = "".join(out) + rest.decode()
    assert proc.returncode == 0, text
    assert "identical to before seeding: yes" in text and token not in rest.decode()


def _drill_result() -> DrillResult:
    """What `canary drill run` stores: one passed step (its name hostile)."""
    t0 = dt.datetime(2026, 6, 1, 3, tzinfo=dt.timezone.utc)
    step = StepResult(1, "bulk <read>", "sql", "read", 1.0, 2.0, status=StepStatus.PASSED, started_at=t0,
                      ended_at=t0, detected_at=t0 + dt.timedelta(seconds=0.31), paged_at=t0 + dt.timedelta(seconds=0.35),
                      detect_s=0.31, page_s=0.35, incidents=[_incident_json({
                          "id": 1, "kind": "read", "severity": "critical", "title": "Canary data read", "source": "jsonlog",
                          "created_at": t0, "drill": "dr-0123456789ab", "event_count": 1, "canaries": 1,
                          "labels": ["shop/public.customers"], "suppressed_by": None, "actor": {"role": "svc_reporting"},
                          "origin": {}, "evidence": {"query": "select 1"}})], paged_sinks=["pd"])
    return DrillResult("dr-0123456789ab", "insider-export", "an insider exports customers", "demo", t0,
                       t0 + dt.timedelta(seconds=9), steps=[step])


async def test_drills_with_their_reports(console: ApiUnderTest) -> None:
    """The drills page lists runs with their worst time to detect; a run's page shows its steps and links
    the HTML report the drills produce, served with a policy that allows its inline styles but no script."""
    await console.rt.pool.execute(
        "INSERT INTO drill_runs (id, playbook, mode, status, finished_at, steps_total, detected, result)"
        " VALUES ('dr-0123456789ab', 'insider-export', 'demo', 'passed', clock_timestamp(), 1, 1, $1)",
        _drill_result().to_json())
    s = await sign_in(console, "read")
    _, _, text, _ = await fetch(console, "GET", "/drills", cookie=s.cookie)
    assert '<a href="/drills/dr-0123456789ab">dr-0123456789ab</a>' in text and "0.31s" in text
    status, _, text, _ = await fetch(console, "GET", "/drills/dr-0123456789ab", cookie=s.cookie)
    assert status == 200 and "bulk &lt;read&gt;" in text and 'href="/drills/dr-0123456789ab/report"' in text
    status, headers, text, _ = await fetch(console, "GET", "/drills/dr-0123456789ab/report", cookie=s.cookie)
    assert status == 200 and "insider-export" in text
    csp = headers["Content-Security-Policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert (await fetch(console, "GET", "/drills/dr-nope", cookie=s.cookie))[0] == 404
