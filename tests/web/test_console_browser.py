"""The console in real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) against a real
listener: on-call opens the link of a delivered PagerDuty alert, signs in with a token, sees the incident's
timeline and (hostile, inert) evidence, acknowledges it (PagerDuty receives the acknowledge), and finds the
audit entry; the inventory shows counts and health per table. Chromium keeps ``__Host-canary_session``
(Secure) on http://127.0.0.1, which it treats as a secure origin, and reports no CSP violation.

Screenshots go to the test's tmp dir and are copied to /tmp/canary-console-shots/."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from seeder_helpers import Shop
from testkit import CanaryRows, MakeConfig, OpenRuntime
from web_support import ApiUnderTest, make_api

from canary.events import DetectionEvent, EventKind, event_key

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path("/tmp/canary-console-shots")
HOSTILE_QUERY = "SELECT email, phone FROM customers WHERE note = '<script>alert(1)</script><img src=x onerror=alert(2)>'"


@pytest.fixture
def shop_rows() -> int:
    return 400


@pytest.fixture
async def console(open_test_runtime: OpenRuntime, make_config: MakeConfig, canary_rows: CanaryRows,
                  shop: Shop) -> AsyncIterator[ApiUnderTest]:
    async with make_api(open_test_runtime, make_config, canary_rows, shop, with_console=True,
                        serve_public_url=True) as under:
        yield under


async def _paged_link(c: ApiUnderTest) -> tuple[str, str]:
    """An insider's burst of reads over a few minutes (one incident), then the link and dedup key of the
    trigger PagerDuty received for it."""
    now = dt.datetime.now(dt.timezone.utc)
    for n in range(14):
        await c.rt.submit(DetectionEvent(
            kind=EventKind.READ, source="jsonlog", key=event_key("browser", "burst", n), group="burst",
            canary_id=c.canary_ids[n % 2], observed_at=now - dt.timedelta(seconds=240 - (n * n)),
            actor={"user": "svc_reporting", "role": "svc_reporting", "application_name": "reporting-etl"},
            origin={"client_addr": "10.20.30.40", "datastore": "shop", "node": "shop-primary", "database": "shop"},
            evidence={"query": HOSTILE_QUERY, "table": "public.customers", "rows": 100_000}))
    iid = await c.rt.pool.fetchval("SELECT max(id) FROM incidents")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for key, alert in c.pd.alerts.items():
            for ev in alert["log"]:
                links = ev.get("links") or []
                if ev["event_action"] == "trigger" and links and links[0]["href"].endswith(f"/incidents/{iid}"):
                    return links[0]["href"], key
        await asyncio.sleep(0.05)
    raise AssertionError("PagerDuty received no trigger with a link")


async def test_on_call_flow_in_chromium(console: ApiUnderTest, tmp_path: Path) -> None:
    """Link from the delivered alert -> sign-in -> the incident (timeline SVG with bars and the paged
    marker, the hostile query shown as text and never run) -> Acknowledge (status and marker change,
    PagerDuty acknowledged) -> the audit entry -> the inventory with counts and health per table."""
    playwright = pytest.importorskip("playwright.async_api")
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed at /usr/bin/chromium")
    link, dedup_key = await _paged_link(console)
    iid = int(link.rsplit("/", 1)[1])
    problems: list[str] = []
    shots: list[Path] = []
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            page.on("dialog", lambda d: problems.append(f"dialog: {d.message}"))
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))

            async def shot(name: str) -> None:
                path = tmp_path / f"{name}.png"
                await page.screenshot(path=str(path), full_page=True)
                shots.append(path)

            await page.goto(link)
            assert page.url == f"{console.base}/signin?next=/incidents/{iid}"
            await shot("1-signin")
            await page.fill("#token", console.tokens["admin"])
            await page.click("form.signin button")
            await page.wait_for_url(link)
            cookies = {c["name"]: c for c in await context.cookies()}
            got: Any = cookies["__Host-canary_session"]
            assert got["secure"] and got["httpOnly"] and got["sameSite"] == "Strict" and got["path"] == "/"

            assert await page.locator("svg.timeline").is_visible()
            assert await page.locator("svg.timeline rect.bar").count() >= 5
            assert await page.locator("svg.timeline g.marker.paged").count() == 1
            evidence = page.locator("article.event pre").first
            assert await evidence.inner_text() == HOSTILE_QUERY  # shown as text ...
            assert await page.locator("img[src=x]").count() == 0  # ... never as markup
            assert await page.locator("header.incident .badge.status-open").inner_text() == "open"
            assert "svc_reporting" in await page.locator("section.card").first.inner_text()
            await shot("2-incident")

            await page.fill("header.incident input[name=note]", "on it: talking to the reporting team")
            await page.click("header.incident button:has-text('Acknowledge')")
            await page.wait_for_url(link)
            assert await page.locator("header.incident .badge.status-acknowledged").inner_text() == "acknowledged"
            assert await page.locator("svg.timeline g.marker.acknowledged").count() == 1
            assert await page.locator("header.incident button:has-text('Acknowledge')").count() == 0
            await shot("3-acknowledged")
            deadline = time.monotonic() + 10
            while console.pd.alerts[dedup_key]["status"] != "acknowledged" and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert console.pd.alerts[dedup_key]["status"] == "acknowledged"

            await page.click("nav a:has-text('Audit')")
            await page.wait_for_url(f"{console.base}/audit")
            row = page.locator("table.grid tbody tr").first
            text = await row.inner_text()
            assert "incident.acknowledge" in text and f"incident:{iid}" in text and "(admin)" in text and "127.0.0.1" in text
            await shot("4-audit")

            await page.click("nav a:has-text('Canaries')")
            await page.wait_for_url(f"{console.base}/canaries")
            cells = await page.locator("table.grid tbody tr").first.locator("td").all_inner_texts()
            # the test's canaries are registered without detection installed: the table says so, and so does its datastore
            assert cells[:3] == ["public.customers", "customer", "2"] and cells[4] == "unarmed"
            assert await page.locator("h2 .badge").first.text_content() == "degraded"
            assert "without detection installed in: public.customers" in await page.locator("section.card").first.inner_text()
            await shot("5-canaries")

            await page.click("nav a:has-text('Incidents')")
            await page.wait_for_url(f"{console.base}/incidents")
            assert await page.locator("table.grid tbody tr").count() == 3
            await shot("6-incidents")
            for name in ("coverage", "sinks"):
                await page.goto(f"{console.base}/{name}")
                await shot(f"7-{name}")
        finally:
            await browser.close()
    assert problems == []
    SHOTS.mkdir(exist_ok=True)
    for path in shots:
        shutil.copy(path, SHOTS / path.name)
