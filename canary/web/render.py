"""HTML for the console: escaping, the page frame, tables, badges and the incident timeline (inline SVG).

Everything an attacker can influence (query text, role and application names, addresses, titles made
from them, notes) reaches a page only through :func:`e`, which escapes ``& < > " '``; :class:`Html` marks
markup made here so that it is not escaped twice. Pages carry no inline script or style (the
Content-Security-Policy forbids both): behaviour and looks come from ``/static/console.js`` and
``/static/console.css``, and the SVG uses presentation attributes and classes only.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode


class Html(str):
    """Markup made by this module (never escaped again)."""

    __slots__ = ()


def e(value: Any) -> Html:
    """``value`` as HTML text: markup made here as is, anything else escaped (None: empty)."""
    if isinstance(value, Html):
        return value
    if value is None:
        return Html("")
    if isinstance(value, (dt.datetime, dt.date)):
        return when(value)
    return Html(html.escape(str(value), quote=True))


def join(parts: Iterable[Any], sep: str = "") -> Html:
    return Html(sep.join(e(p) for p in parts))


def tag(element: str, body: Any = "", /, **attrs: Any) -> Html:
    """``<name attrs>body</name>`` (attribute values escaped; ``class_`` for class; None / False omitted)."""
    rendered = "".join(
        f' {k.rstrip("_").replace("_", "-")}' if v is True else f' {k.rstrip("_").replace("_", "-")}="{e(v)}"'
        for k, v in attrs.items() if v is not None and v is not False)
    return Html(f"<{element}{rendered}>{e(body)}</{element}>")


def when(value: Any) -> Html:
    """A time in UTC to the second, as a <time> the script can add "3 min ago" to."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return e(value)
    if not isinstance(value, dt.datetime):
        return e(value)
    utc = value.astimezone(dt.timezone.utc)
    return tag("time", utc.strftime("%Y-%m-%d %H:%M:%SZ"), datetime=utc.isoformat())


def link(href: str, body: Any, **attrs: Any) -> Html:
    return tag("a", body, href=href, **attrs)


def query(path: str, params: Mapping[str, Any]) -> str:
    kept = {k: v for k, v in params.items() if v not in (None, "", ())}
    return path + ("?" + urlencode(kept) if kept else "")


SEVERITIES = ("critical", "error", "warning", "info")


def badge(kind: str, value: Any) -> Html:
    """A small coloured label: severity, status, drill, health."""
    return tag("span", value, class_=f"badge {kind}-{str(value).lower()}" if value is not None else "badge")


def table(head: Sequence[str], rows: Iterable[Sequence[Any]], *, cls: str = "grid", empty: str = "nothing here") -> Html:
    body = [tag("tr", join(tag("td", c) for c in row)) for row in rows]
    if not body:
        return tag("p", empty, class_="empty")
    return tag("table", join([tag("thead", tag("tr", join(tag("th", h) for h in head))), tag("tbody", join(body))]),
               class_=cls)


def facts(pairs: Iterable[tuple[str, Any]]) -> Html:
    """A definition list of the pairs whose value is not empty."""
    return tag("dl", join(join([tag("dt", k), tag("dd", v)]) for k, v in pairs if v not in (None, "", [], {})),
               class_="facts")


def mapping(data: Mapping[str, Any]) -> Html:
    """Hostile key / value data (evidence, actor, origin) as a definition list; long or nested values in <pre>."""
    items = []
    first = ("query", "statement", "message", "table")
    for k, v in sorted(data.items(), key=lambda kv: (first.index(kv[0]) if kv[0] in first else len(first), kv[0])):
        if isinstance(v, (dict, list)):
            text = json.dumps(v, ensure_ascii=False, indent=1, sort_keys=True, default=str)
            value: Html = tag("pre", text)
        elif isinstance(v, str) and (len(v) > 80 or "\n" in v or k in ("query", "statement", "message")):
            value = tag("pre", v)
        else:
            value = e(v)
        items.append(join([tag("dt", k), tag("dd", value)]))
    return tag("dl", join(items), class_="facts evidence") if items else tag("p", "none", class_="empty")


def hidden(name: str, value: Any) -> Html:
    return Html(f'<input type="hidden" name="{e(name)}" value="{e(value)}">')


def form(action: str, csrf: str, label: str, *, fields: Html = Html(""), cls: str = "", confirm: str | None = None) -> Html:
    """A POST form with the session's CSRF token and one submit button."""
    button = tag("button", label, type="submit", class_=cls or None, data_confirm=confirm)
    return tag("form", join([hidden("csrf", csrf), fields, button]), method="post", action=action, class_="inline")


def page(title: str, body: Html, *, principal: Any = None, active: str = "", flash: str | None = None) -> str:
    """The whole document: head (stylesheet, script), navigation for a signed-in user, the body."""
    nav = Html("")
    if principal is not None:
        items = [("incidents", "/incidents", "Incidents"), ("canaries", "/canaries", "Canaries"),
                 ("coverage", "/coverage", "Coverage"), ("drills", "/drills", "Drills"), ("sinks", "/sinks", "Delivery")]
        if principal.has("admin"):
            items.append(("audit", "/audit", "Audit"))
        links = join(link(href, label, class_="active" if key == active else None) for key, href, label in items)
        scope = next((s for s in ("admin", "operate", "read") if principal.has(s)), "")
        who = tag("span", f"{principal.name} · {scope}{' + reveal' if principal.has('reveal') else ''}", class_="who")
        out = form("/signout", principal.csrf, "Sign out", cls="quiet")
        nav = tag("nav", join([link("/incidents", "canary", class_="brand"), tag("div", links, class_="links"), who, out]))
    note = tag("p", flash, class_="flash") if flash else Html("")
    return ("<!doctype html>\n" + tag("html", join([
        tag("head", join([Html('<meta charset="utf-8">'),
                          Html('<meta name="viewport" content="width=device-width, initial-scale=1">'),
                          tag("title", f"{title} · canary"),
                          Html('<link rel="stylesheet" href="/static/console.css">'),
                          Html('<script src="/static/console.js" defer></script>')])),
        tag("body", join([nav, tag("main", join([note, body]))]))]), lang="en"))


# -- the timeline -------------------------------------------------------------------------------
W, H, PAD_L, PAD_R, PAD_T, PAD_B = 760, 140, 36, 12, 32, 26


def timeline(start: dt.datetime, end: dt.datetime, counts: Sequence[int],
             markers: Sequence[tuple[str, dt.datetime]]) -> Html:
    """Events per bucket between ``start`` and ``end`` as bars, and vertical markers (paged,
    acknowledged, resolved) at their times: an inline SVG with a <title> on every bar and marker."""
    span = max((end - start).total_seconds(), 1e-6)
    n = max(len(counts), 1)
    top = max(counts, default=0) or 1
    inner_w, inner_h = W - PAD_L - PAD_R, H - PAD_T - PAD_B
    bw = inner_w / n
    parts: list[Html] = [
        Html(f'<line class="axis" x1="{PAD_L}" y1="{PAD_T + inner_h}" x2="{W - PAD_R}" y2="{PAD_T + inner_h}"/>'),
        tag("text", top, x=PAD_L - 6, y=PAD_T + 8, class_="tick", text_anchor="end"),
        tag("text", 0, x=PAD_L - 6, y=PAD_T + inner_h, class_="tick", text_anchor="end"),
        tag("text", start.astimezone(dt.timezone.utc).strftime("%H:%M:%SZ %b %d"), x=PAD_L, y=H - 6, class_="tick"),
        tag("text", end.astimezone(dt.timezone.utc).strftime("%H:%M:%SZ %b %d"), x=W - PAD_R, y=H - 6, class_="tick",
            text_anchor="end"),
    ]
    for i, c in enumerate(counts):
        if not c:
            continue
        h = max(inner_h * c / top, 2.0)
        t0 = start + dt.timedelta(seconds=span * i / n)
        parts.append(tag("rect", tag("title", f"{c} event{'s' if c != 1 else ''} from {t0:%H:%M:%S}Z"),
                         x=f"{PAD_L + i * bw + 0.5:.1f}", y=f"{PAD_T + inner_h - h:.1f}", width=f"{max(bw - 1, 1):.1f}",
                         height=f"{h:.1f}", class_="bar"))
    last_x, row = -1e9, 0
    for name, at in sorted(markers, key=lambda m: m[1]):
        x = PAD_L + inner_w * min(max((at - start).total_seconds() / span, 0.0), 1.0)
        row = (row + 1) % 2 if x - last_x < 90 else 0  # labels of close markers on alternate rows
        last_x = x
        y = PAD_T - 6 - 13 * row
        anchor = "end" if x > W - PAD_R - 40 else "start" if x < PAD_L + 40 else "middle"
        parts.append(tag("g", join([
            tag("title", f"{name} {at.astimezone(dt.timezone.utc):%Y-%m-%d %H:%M:%S}Z"),
            Html(f'<line x1="{x:.1f}" y1="{y + 2}" x2="{x:.1f}" y2="{PAD_T + inner_h}"/>'),
            tag("text", name, x=f"{x:.1f}", y=y, text_anchor=anchor)]), class_=f"marker {name}"))
    return tag("svg", join(parts), viewBox=f"0 0 {W} {H}", class_="timeline", role="img",
               aria_label=f"{sum(counts)} events over {span:.0f}s")
