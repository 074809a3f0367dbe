"""Drill reports from a run's JSON (:meth:`DrillResult.to_json`): Markdown, a self-contained HTML page
(inline CSS and an inline SVG timeline; no scripts, fonts or other external resources) and JSON.

The timeline has one row per step (``<g class="step">``): a bar from the step's first statement to
its page (or its end, when nothing paged), a circle where the incident was committed and a
triangle where the page was delivered; skipped steps show a hollow marker and their reason.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from canary.errors import DrillError

FORMATS = ("md", "html", "json")
_STATUS_COLOURS = {"passed": "#1a7f37", "late": "#bf8700", "missed": "#cf222e", "skipped": "#6e7781", "error": "#8250df"}
_ROW, _LEFT, _WIDTH, _TOP = 34, 230, 940, 30


def _ts(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _incidents(step: Mapping[str, Any]) -> str:
    return ", ".join(f"#{i}" for i in step["incident_ids"]) or "—"


def verdict(data: Mapping[str, Any]) -> str:
    s = data["summary"]
    text = f"{s['passed']} passed, {s['late']} late, {s['missed']} missed, {s['error']} error, {s['skipped']} skipped"
    return f"{data['status'].upper()} — {text}"


# -- Markdown ------------------------------------------------------------------------------------
def _md_cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown(data: Mapping[str, Any]) -> str:
    out = [
        f"# Drill `{data['playbook']}` — {data['status'].upper()}", "",
        f"{data['description']}", "",
        f"- run: `{data['run_id']}` ({data['mode']} deployment)",
        f"- started: {data['started_at']}, finished: {data['finished_at']}",
        f"- verdict: {verdict(data)}", "",
        "| # | step | expected | result | time-to-detect | time-to-page | SLO detect / page | incidents | paged |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in data["steps"]:
        out.append("| " + " | ".join(_md_cell(v) for v in (
            s["number"], s["name"], s["expect"], s["status"] + (" (detected)" if s["detected"] and s["status"] != "passed" else ""),
            duration(s["time_to_detect_s"]), duration(s["time_to_page_s"]),
            f"{s['slo']['detect_s']:g} s / {s['slo']['page_s']:g} s", _incidents(s), ", ".join(s["paged_sinks"]) or "—",
        )) + " |")
    for s in data["steps"]:
        out += ["", f"## {s['number']}. {s['name']} — {s['status']}"]
        if s["reason"]:
            out.append(f"> {s['reason']}")
        out.append(f"- action: `{s['action']}`, expected incident: `{s['expect']}`")
        if s["facts"]:
            out.append("- what the drill did: " + ", ".join(f"{k}={_md_cell(v)}" for k, v in s["facts"].items()))
        for inc in s["incidents"] + s["other_incidents"]:
            out += _md_incident(inc)
    if data["notes"]:
        out += ["", "## Deployment", *[f"- {n}" for n in data["notes"]]]
    return "\n".join(out) + "\n"


def _md_incident(inc: Mapping[str, Any]) -> list[str]:
    lines = [f"- incident **#{inc['id']}** ({inc['kind']}, {inc['severity']}): {_md_cell(inc['title'])}",
             f"  - canaries: {inc['canaries']} in {inc['events']} event(s)"
             + (f" — {', '.join(inc['labels'])}" if inc["labels"] else "")]
    for section in ("actor", "origin", "evidence"):
        if inc[section]:
            lines.append(f"  - {section}: " + ", ".join(f"{k}=`{_md_cell(v)}`" for k, v in inc[section].items()))
    return lines


# -- HTML -----------------------------------------------------------------------------------------
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;margin:24px auto;max-width:1000px;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}h3{font-size:15px;margin:18px 0 6px}
.meta{color:#57606a}.verdict{display:inline-block;padding:4px 10px;border-radius:6px;color:#fff;font-weight:600}
table{border-collapse:collapse;width:100%;margin:10px 0}th,td{border:1px solid #d0d7de;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;font-weight:600}
code{background:#f6f8fa;padding:1px 4px;border-radius:4px;font-size:12px;word-break:break-all}
.kv{margin:2px 0 2px 12px;color:#57606a}.reason{border-left:3px solid #d0d7de;padding-left:8px;color:#57606a}
svg{background:#fff;border:1px solid #d0d7de;border-radius:6px;max-width:100%;height:auto}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _badge(status: str) -> str:
    return f'<span class="badge" style="background:{_STATUS_COLOURS.get(status, "#6e7781")}">{_e(status)}</span>'


def timeline_svg(data: Mapping[str, Any]) -> str:
    """The drill as an inline SVG: one ``<g class="step">`` row per step on a shared time axis."""
    steps: Sequence[Mapping[str, Any]] = data["steps"]
    t0 = _ts(data["started_at"])
    assert t0 is not None
    ends = [t for s in steps for t in (_ts(s["paged_at"]), _ts(s["detected_at"]), _ts(s["ended_at"])) if t]
    t1 = max([*ends, _ts(data["finished_at"]) or t0])
    span = max((t1 - t0).total_seconds(), 0.001)
    scale = _WIDTH / span

    def x(t: dt.datetime | None) -> float:
        return _LEFT + (max((t - t0).total_seconds(), 0.0) if t else 0.0) * scale

    height = _TOP + _ROW * len(steps) + 34
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" role="img" width="100%" '
        f'viewBox="0 0 {_LEFT + _WIDTH + 20} {height}" font-family="system-ui,sans-serif" font-size="12">',
        f"<title>Drill {_e(data['playbook'])}: time-to-detect and time-to-page per step</title>",
    ]
    for i in range(6):  # axis ticks
        tx = _LEFT + _WIDTH * i / 5
        parts.append(f'<line x1="{tx:.1f}" y1="{_TOP - 8}" x2="{tx:.1f}" y2="{height - 26}" stroke="#eaeef2"/>'
                     f'<text x="{tx:.1f}" y="{height - 10}" text-anchor="{"end" if i == 5 else "middle"}" '
                     f'fill="#57606a">{duration(span * i / 5)}</text>')
    last_x = float(_LEFT)
    for n, s in enumerate(steps):
        y = _TOP + n * _ROW
        colour = _STATUS_COLOURS.get(s["status"], "#6e7781")
        parts.append(f'<g class="step" data-step="{s["number"]}" data-status="{_e(s["status"])}">')
        parts.append(f'<text x="8" y="{y + 15}" fill="#1f2328">{_e(str(s["number"]) + ". " + (s["name"] if len(s["name"]) <= 30 else s["name"][:29] + "…"))}</text>')
        start = _ts(s["started_at"])
        if start is None:
            parts.append(f'<circle class="marker skipped" cx="{last_x + 6:.1f}" cy="{y + 11}" r="6" fill="#fff" '
                         f'stroke="{colour}" stroke-width="2"><title>{_e(s["status"])}: {_e(s["reason"])}</title></circle>'
                         + _label(s["status"], last_x, last_x + 12, y, colour) + "</g>")
            continue
        end = max(t for t in (_ts(s["paged_at"]), _ts(s["detected_at"]), _ts(s["ended_at"]), start) if t)
        x0, x1 = x(start), max(x(end), x(start) + 6)
        parts.append(f'<rect class="bar" x="{x0:.1f}" y="{y + 3}" width="{x1 - x0:.1f}" height="16" rx="3" '
                     f'fill="{colour}" fill-opacity="0.35" stroke="{colour}"><title>{_e(s["name"])}: {_e(s["status"])}'
                     f'</title></rect>')
        label = f'detect {duration(s["time_to_detect_s"])} · page {duration(s["time_to_page_s"])}'
        if s["detected_at"]:
            dx = x(_ts(s["detected_at"]))
            parts.append(f'<circle class="marker detect" cx="{dx:.1f}" cy="{y + 11}" r="5" fill="{colour}">'
                         f'<title>incident committed after {duration(s["time_to_detect_s"])}</title></circle>')
        if s["paged_at"]:
            px = x(_ts(s["paged_at"]))
            parts.append(f'<path class="marker page" d="M{px:.1f},{y + 4} l6,7 l-6,7 l-6,-7 z" fill="#0969da">'
                         f'<title>page delivered after {duration(s["time_to_page_s"])}</title></path>')
        if not s["detected"]:
            label = s["status"]
        markers = [x(_ts(s[k])) for k in ("detected_at", "paged_at") if s[k]]
        parts.append(_label(label, x0, x1, y, colour, after=max(markers, default=x0)) + "</g>")
        last_x = x1
    parts.append("</svg>")
    return "".join(parts)


def _label(text: str, x0: float, x1: float, y: int, colour: str, after: float | None = None) -> str:
    """A row's label right of its bar, or left of it, or else inside it clear of the markers."""
    width = 6.8 * len(text)  # generous estimate for 12px sans-serif
    clear = max(x0, after if after is not None else x0) + 10  # past the detect/page markers
    if x1 + 8 + width <= _LEFT + _WIDTH + 10:
        x, anchor = x1 + 8, "start"
    elif x0 - 8 - width >= _LEFT:
        x, anchor = x0 - 8, "end"
    elif clear + width <= x1:
        x, anchor = clear, "start"
    else:
        x, anchor = x1 - 4, "end"
    return f'<text x="{x:.1f}" y="{y + 15}" text-anchor="{anchor}" fill="{colour}">{_e(text)}</text>'


def html_page(data: Mapping[str, Any]) -> str:
    colour = _STATUS_COLOURS["passed" if data["status"] == "passed" else "missed"]
    rows = []
    for s in data["steps"]:
        rows.append(
            "<tr>" + "".join(f"<td>{c}</td>" for c in (
                _e(s["number"]), _e(s["name"]), _e(s["expect"]), _badge(s["status"]), _e(duration(s["time_to_detect_s"])),
                _e(duration(s["time_to_page_s"])), _e(f"{s['slo']['detect_s']:g} s / {s['slo']['page_s']:g} s"),
                _e(_incidents(s)), _e(", ".join(s["paged_sinks"]) or "—"),
            )) + "</tr>")
    details = []
    for s in data["steps"]:
        details.append(f'<h3>{_e(s["number"])}. {_e(s["name"])} {_badge(s["status"])}</h3>')
        if s["reason"]:
            details.append(f'<p class="reason">{_e(s["reason"])}</p>')
        details.append(f'<div class="kv">action <code>{_e(s["action"])}</code>, expected incident <code>{_e(s["expect"])}</code></div>')
        if s["facts"]:
            details.append('<div class="kv">what the drill did: ' + ", ".join(
                f"{_e(k)}=<code>{_e(v)}</code>" for k, v in s["facts"].items()) + "</div>")
        for inc in s["incidents"] + s["other_incidents"]:
            details.append(f'<div class="kv"><b>incident #{_e(inc["id"])}</b> ({_e(inc["kind"])}, {_e(inc["severity"])}): '
                           f'{_e(inc["title"])} — {_e(inc["canaries"])} canaries in {_e(inc["events"])} event(s)'
                           + (f' ({_e(", ".join(inc["labels"]))})' if inc["labels"] else "") + "</div>")
            for section in ("actor", "origin", "evidence"):
                if inc[section]:
                    details.append(f'<div class="kv">{section}: ' + ", ".join(
                        f"{_e(k)}=<code>{_e(v)}</code>" for k, v in inc[section].items()) + "</div>")
    notes = "".join(f"<li>{_e(n)}</li>" for n in data["notes"])
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>Drill {_e(data["playbook"])} — '
        f'{_e(data["status"])}</title><style>{_CSS}</style></head><body>'
        f'<h1>Drill <code>{_e(data["playbook"])}</code></h1><p class="meta">{_e(data["description"])}</p>'
        f'<p class="meta">run <code>{_e(data["run_id"])}</code> · {_e(data["mode"])} deployment · '
        f'{_e(data["started_at"])} → {_e(data["finished_at"])}</p>'
        f'<p><span class="verdict" style="background:{colour}">{_e(verdict(data))}</span></p>'
        f'<h2>Timeline</h2>{timeline_svg(data)}'
        '<h2>Steps</h2><table><thead><tr><th>#</th><th>step</th><th>expected</th><th>result</th><th>time-to-detect</th>'
        '<th>time-to-page</th><th>SLO detect / page</th><th>incidents</th><th>paged</th></tr></thead><tbody>'
        + "".join(rows) + "</tbody></table><h2>Evidence</h2>" + "".join(details)
        + (f"<h2>Deployment</h2><ul>{notes}</ul>" if notes else "") + "</body></html>\n"
    )


def render(data: Mapping[str, Any], fmt: str) -> str:
    if fmt == "md":
        return markdown(data)
    if fmt == "html":
        return html_page(data)
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"
    raise DrillError(f"unknown report format {fmt!r} (one of {', '.join(FORMATS)})")


def write(data: Mapping[str, Any], directory: Path, formats: Sequence[str]) -> list[Path]:
    """Write ``drill-<playbook>-<run>.<fmt>`` files; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        path = directory / f"drill-{data['playbook']}-{data['run_id']}.{fmt}"
        path.write_text(render(data, fmt), encoding="utf-8")
        out.append(path)
    return out
