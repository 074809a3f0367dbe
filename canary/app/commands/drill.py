"""``canary drill run <playbook>`` and ``canary drill list``."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from canary import config as config_mod
from canary import logs
from canary.drills import deployment, playbook, report
from canary.drills.report import FORMATS
from canary.drills.runner import DrillRunner, StepStatus
from canary.errors import DrillError

if TYPE_CHECKING:
    from canary.drills.runner import DrillResult


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("drill", help="tabletop drills: replay attacks end to end, report time-to-detect and time-to-page")
    dsub = p.add_subparsers(dest="drill_command", metavar="DRILL_COMMAND", required=True)

    r = dsub.add_parser(
        "run", help="run a playbook; exit 1 when a step is missed, late or failed (so it can gate CI)",
        description="Run a playbook against the configured deployment (the listener must be running), or - when "
        "no datastore is configured, or with --demo - against a self-contained demo deployment it stands up and "
        "removes. An ordinary role's DSN for insider steps is read from $CANARY_DRILL_INSIDER_DSN.",
    )
    r.add_argument("playbook", help="playbook name (see `canary drill list`) or path to a playbook TOML file")
    r.add_argument("--report-dir", default="drill-reports", help="where to write the reports (default ./drill-reports)")
    r.add_argument("--format", default="md,html,json", help="comma-separated report formats: md, html, json (default all)")
    r.add_argument("--demo", action="store_true", help="use a self-contained demo deployment even if datastores are configured")
    r.add_argument("--datastore", help="configured datastore to drill (default: the first)")
    r.add_argument("--customers", type=int, default=20_000, help="demo deployment: shop customers (default 20000)")
    r.add_argument("--canaries", type=int, default=20, help="demo deployment: canary customers (default 20)")
    r.add_argument("--drill-sink", action="store_true",
                   help="demo deployment: add a drill-only sink, so drill pages go there instead of on-call")
    r.add_argument("--strict", action="store_true", help="also fail when a step is skipped")
    r.set_defaults(func=cmd_run)

    ls = dsub.add_parser("list", help="list the available playbooks")
    ls.set_defaults(func=cmd_list)


def _formats(text: str) -> list[str]:
    out = [f.strip() for f in text.split(",") if f.strip()]
    bad = [f for f in out if f not in FORMATS]
    if bad or not out:
        raise DrillError(f"--format: unknown format(s) {', '.join(bad) or '(none)'}; use a comma-separated subset of "
                         f"{', '.join(FORMATS)}")
    return out


async def cmd_run(args: argparse.Namespace) -> int:
    formats = _formats(args.format)
    cfg = config_mod.load(args.config)
    logs.configure(args.log_level or "warning", "console")
    book = await asyncio.to_thread(playbook.load, args.playbook, [cfg.canary.data_dir / "playbooks"])
    if args.demo or not cfg.datastores:
        print(f"drill {book.name}: standing up a demo deployment (embedded PostgreSQL, shop, canaries, listener)", flush=True)
        target = deployment.demo(book, customers=args.customers, canaries=args.canaries, drill_sink=args.drill_sink)
    else:
        target = deployment.configured(cfg, args.datastore)
    async with target as t:
        result = await DrillRunner(t, book).run()
    data = result.to_json()
    paths = await asyncio.to_thread(report.write, data, Path(args.report_dir), formats)
    print(f"\n  {'#':>2} {'step':<36} {'expected':<10} {'result':<8} {'detect':>9} {'page':>9}  incidents")
    for s in result.steps:
        print(f"  {s.number:>2} {s.name[:36]:<36} {s.expect:<10} {s.status:<8} {report.duration(s.detect_s):>9} "
              f"{report.duration(s.page_s):>9}  {', '.join('#' + str(i['id']) for i in s.incidents) or '—'}")
        if s.reason:
            print(f"     {s.reason}")
    print(f"\n  {report.verdict(data)}")
    for path in paths:
        print(f"  report: {path}")
    return exit_code(result, strict=args.strict)


def exit_code(result: DrillResult, *, strict: bool = False) -> int:
    """0 when every step passed (skipped steps too, unless ``strict``); 1 when one is missed, late or failed."""

    return 1 if not result.passed or (strict and result.count(StepStatus.SKIPPED) > 0) else 0


def cmd_list(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    found = playbook.available([cfg.canary.data_dir / "playbooks"])
    if not found:
        print("no playbooks found")
        return 0
    for name, path in sorted(found.items()):
        book = playbook.load_file(path)
        actions = ", ".join(str(s.action) for s in book.steps)
        print(f"{name:<18} {len(book.steps)} step(s): {actions}\n{'':<18} {book.description}\n{'':<18} {path}")
    return 0
