"""The HTML drill report renders in headless Chromium: a self-contained page (no requests besides the
page itself, no scripts) whose SVG timeline has one visible row per step, with a bar and markers for
detected steps and a hollow marker for a skipped one."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from canary.drills import deployment, playbook, report
from canary.drills.runner import DrillRunner

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


async def _run_drill() -> dict[str, Any]:
    book = playbook.parse_playbook({
        "name": "insider-export-html", "description": "insider export plus a step this deployment cannot play",
        "steps": [
            {"name": "paged read of customers", "action": "pg_read_pages", "expect": "read", "page_size": 1000,
             "pages": 3, "interval": "100ms"},
            {"name": "COPY export of customers", "action": "pg_copy", "expect": "exported"},
            {"name": "read on the replica", "action": "replica_read", "expect": "read"},
        ],
    }, "test")
    # the replica step is skipped: this demo deployment is asked for no standby
    async with deployment.demo(book.model_copy(update={"steps": book.steps[:2]}), customers=3000, canaries=10) as target:
        return (await DrillRunner(target, book).run()).to_json()


@pytest.fixture(scope="module")
def drill_report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], Path]]:
    data = asyncio.run(_run_drill())
    out = tmp_path_factory.mktemp("report")
    [path] = report.write(data, out, ["html"])
    yield data, path
    shutil.rmtree(out, ignore_errors=True)


def test_timeline_renders_in_headless_chromium(drill_report: tuple[dict[str, Any], Path]) -> None:
    """Chromium loads the report with no other request, takes a screenshot, and the timeline has one
    non-empty, visible row per step: bars and detect/page markers for detected steps, a hollow
    marker for the skipped one."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("chromium is not installed at /usr/bin/chromium")
    data, path = drill_report
    assert [s["status"] for s in data["steps"]] == ["passed", "passed", "skipped"]
    requests: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(path.as_uri())
            shot = path.with_suffix(".png")
            page.screenshot(path=str(shot), full_page=True)
            svg = page.locator("svg.timeline")
            assert svg.count() == 1
            box = svg.bounding_box()
            assert box is not None and box["width"] > 500 and box["height"] > 50
            rows = page.locator("svg.timeline g.step")
            assert rows.count() == len(data["steps"])
            for i, step in enumerate(data["steps"]):
                row = rows.nth(i)
                assert row.get_attribute("data-status") == step["status"]
                rbox = row.bounding_box()
                assert rbox is not None and rbox["width"] > 0 and rbox["height"] > 0
                assert box["x"] <= rbox["x"] and rbox["x"] + rbox["width"] <= box["x"] + box["width"] + 1
                if step["detected"]:
                    bar = row.locator("rect.bar").bounding_box()
                    assert bar is not None and bar["width"] >= 5 and bar["height"] > 0
                    assert row.locator("circle.marker.detect").count() == 1
                    assert row.locator("path.marker.page").count() == 1
                else:
                    assert row.locator("circle.marker.skipped").is_visible()
            assert page.locator("script").count() == 0
            assert page.locator("table tbody tr").count() == len(data["steps"])
            assert "PASSED" in page.locator(".verdict").inner_text()
        finally:
            browser.close()
    assert requests == [path.as_uri()]
    assert shot.stat().st_size > 10_000


def test_html_escapes_untrusted_text(drill_report: tuple[dict[str, Any], Path]) -> None:
    """Attacker-controlled evidence (queries, senders, titles) is escaped: it cannot inject markup."""
    data, _ = drill_report
    evil = "<img src=x onerror=alert(1)>"
    data = {**data, "description": evil, "steps": [
        {**data["steps"][0], "name": evil, "incidents": [{**data["steps"][0]["incidents"][0], "title": evil}]},
        *data["steps"][1:],
    ]}
    page = report.html_page(data)
    assert evil not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert evil not in report.timeline_svg(data)
