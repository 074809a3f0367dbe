"""``canary plan``, ``canary seed``, ``canary verify``, ``canary retire`` and ``canary rotate-key``."""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from canary import crypto
from canary.app.commands import load_config
from canary.config import Config
from canary.errors import ConfigError
from canary.seeder import as_dict
from canary.seeding.postgres import PostgresSeeder
from canary.seeding.rotation import rotate
from canary.store import ControlStore
from canary.store.registry import Registry


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--datastore", action="append", metavar="NAME", help="only this datastore (repeatable; default: all)")
        p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = sub.add_parser("plan", help="dry run: show exactly which rows and objects `canary seed` would write")
    common(p)
    p.add_argument("--rows", type=int, default=5, help="planned rows to print per table (default 5; -1 for all)")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("seed", help="write canaries and read detection (one transaction per datastore; idempotent)")
    common(p)
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser("trickle", help="write the trickle canaries due now, settling an interrupted run first "
                       "(the listener's scheduler does this every seeding.trickle_interval)")
    common(p)
    p.set_defaults(func=cmd_trickle)

    p = sub.add_parser("verify", help="check every canary is present and unmodified and detection is installed (exit 1 if not)")
    common(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("retire", help="remove exactly what was seeded and restore the tables' row-level-security state")
    common(p)
    p.add_argument("--table", action="append", metavar="SCHEMA.TABLE", help="only this table (repeatable)")
    p.add_argument("--force", action="store_true", help="also delete canary rows that were modified since seeding")
    p.set_defaults(func=cmd_retire)

    p = sub.add_parser(
        "rotate-key",
        help="re-encrypt and re-index the registry under a new master key (written to --new-key-file, mode 0600)",
    )
    p.add_argument("--new-key-file", required=True, help="where to write the new master key (must not exist)")
    p.set_defaults(func=cmd_rotate_key)


@asynccontextmanager
async def _session(args: argparse.Namespace) -> AsyncIterator[tuple[Config, Registry]]:
    cfg = load_config(args)
    keyring = crypto.Keyring(crypto.load_key(cfg.canary.key_file))
    store = ControlStore(cfg)
    await store.open()
    try:
        yield cfg, Registry(store.pool, keyring)
    finally:
        await store.close()


def _seeders(cfg: Config, registry: Registry, names: Sequence[str] | None) -> list[Any]:
    if names:
        unknown = [n for n in names if n not in {d.name for d in cfg.datastores}]
        if unknown:
            raise ConfigError("datastores", f"no datastore named {unknown[0]!r}")
    chosen = [d for d in cfg.datastores if not names or d.name in names]
    if not chosen:
        raise ConfigError("datastores", "no datastores configured: add a [[datastores]] section")
    return [PostgresSeeder.from_config(cfg, d.name, registry) for d in chosen]


def _emit(args: argparse.Namespace, results: list[Any], human: Any) -> None:
    if args.json:
        print(json.dumps([as_dict(r) for r in results], indent=2, default=str))
    else:
        for r in results:
            human(r)


async def _each(args: argparse.Namespace, method: str, **kwargs: Any) -> list[Any]:
    """Call ``method`` of every selected datastore's seeder, in configuration order."""
    async with _session(args) as (cfg, registry):
        return [await getattr(s, method)(**kwargs) for s in _seeders(cfg, registry, args.datastore)]


async def cmd_plan(args: argparse.Namespace) -> int:
    plans = await _each(args, "plan")

    def show(plan: Any) -> None:
        print(f"datastore {plan.datastore}: {plan.to_add} canaries to add")
        for t in plan.targets:
            if t.mode == "trickle":
                print(f"  {t.target}: {t.present} present, {t.wanted} wanted, arriving over time (trickle): {t.schedule}")
            else:
                print(f"  {t.target}: {t.present} present, {t.wanted} wanted, {t.to_add} to add, {len(t.rows) - t.to_add} child rows")
            limit = len(t.rows) if args.rows < 0 else args.rows
            for row in list(t.rows)[:limit]:
                print(f"    + {row.target} {json.dumps(dict(row.values), ensure_ascii=False, default=str)}")
            if len(t.rows) > limit:
                print(f"    ... {len(t.rows) - limit} more rows (--rows -1 prints all)")
            for stmt in t.statements:
                print("    SQL " + " ".join(stmt.split())[:300])
            if t.locks:
                print(f"    locks ACCESS EXCLUSIVE while applying: {', '.join(t.locks)}")
            for w in t.warnings:
                print(f"    warning: {w}")
            for need in t.pools:
                print(f"    pool: {need}")
            for trace in t.traces:
                print(f"    trace: {trace}")
        _server(plan)

    _emit(args, plans, show)
    return 0


async def cmd_seed(args: argparse.Namespace) -> int:
    results = await _each(args, "apply")

    def show(r: Any) -> None:
        print(f"datastore {r.datastore}: " + ", ".join(f"{t} +{n}" for t, n in r.added.items()))
        for table, n in r.child_rows.items():
            print(f"  child rows {table} +{n}")
        for w in r.warnings:
            print(f"  warning: {w}")

    _emit(args, results, show)
    return 0


async def cmd_trickle(args: argparse.Namespace) -> int:
    results = await _each(args, "trickle")

    def show(r: Any) -> None:
        done = ([f"{t} +{n}" for t, n in r.signups.items()] + [f"{t} {n} updated" for t, n in r.updates.items()]
                + [f"{t} +{n} rows for canaries" for t, n in r.children.items()])
        print(f"datastore {r.datastore}: {', '.join(done) or 'nothing due'}"
              + (f"; {r.settled} interrupted slots settled" if r.settled else ""))
        for t, n in r.pending.items():
            print(f"  {t}: {n} to come")
        if r.next_due is not None:
            print(f"  next due {r.next_due:%Y-%m-%d %H:%M:%S} UTC")
        for t, why in r.failed.items():
            print(f"  failed: {t}: {why}")
        for w in r.warnings:
            print(f"  warning: {w}")

    _emit(args, results, show)
    return 1 if any(r.failed for r in results) else 0


async def cmd_verify(args: argparse.Namespace) -> int:
    reports = await _each(args, "verify")

    def show(r: Any) -> None:
        print(f"datastore {r.datastore}: {r.checked} canaries checked, {'OK' if r.ok else f'{len(r.findings)} problems'}")
        for f in r.findings:
            print(f"  {f.target} {f.canary_uid}: {f.problem}")
        _server(r)

    _emit(args, reports, show)
    return 0 if all(r.ok and not any(s.required for s in r.settings) for r in reports) else 1


def _server(result: Any) -> None:
    """The server settings a plan / verify found missing (set where each says: a managed admin role cannot)
    and how detection differs under the datastore's role."""
    for s in result.settings:
        print(f"  {'required' if s.required else 'advised'}: set {s.setting} = {s.value} (now {s.current}) in {s.where}: {s.why}")
    for note in result.notes:
        print(f"  note: {note}")


async def cmd_retire(args: argparse.Namespace) -> int:
    results = await _each(args, "retire", force=args.force, targets=args.table)

    def show(r: Any) -> None:
        print(f"datastore {r.datastore}: " + ", ".join(f"{t} -{n}" for t, n in r.removed.items()))
        for table, n in r.child_rows.items():
            print(f"  child rows {table} -{n}")
        for d in r.detection_removed:
            print(f"  removed {d}")
        for f in r.kept_modified:
            print(f"  kept modified canary {f.canary_uid} in {f.target} (still detected; --force deletes it)")

    _emit(args, results, show)
    return 0


async def cmd_rotate_key(args: argparse.Namespace) -> int:
    new_path = Path(args.new_key_file).expanduser()
    if new_path.exists():
        raise ConfigError("", f"{new_path} already exists; refusing to overwrite it")
    async with _session(args) as (cfg, registry):
        new_key = crypto.generate_key()
        crypto.write_key_file(new_path, new_key)  # first: a registry must never be under a key nobody has
        try:
            summary = await rotate(cfg, registry, crypto.Keyring(new_key))
        except BaseException:
            new_path.unlink(missing_ok=True)
            raise
    print(f"registry re-encrypted under key {summary['key_id']}: " + ", ".join(f"{k} {v}" for k, v in summary["counts"].items()))
    print(f"new master key written to {new_path} (mode 0600). Point canary.master_key_file at it (or set "
          f"${crypto.ENV_MASTER_KEY}) before the next start, and destroy the old key after a backup cycle.")
    return 0
