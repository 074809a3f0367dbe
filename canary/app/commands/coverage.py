"""``canary coverage audit`` (configure pgaudit object audit and the DDL guard on a datastore, and
cover the views and copies that read canary tables without row security), ``canary coverage report``
(every exfiltration path and its cover), ``canary coverage check`` (run the canary / detection checks
once), ``canary coverage scan`` (search export files for canary values) and ``canary coverage sweep``
(search the datastores for copies of canary data once, within the budget)."""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict
from pathlib import Path

import asyncpg

from canary.app.commands import load_config
from canary.errors import DatastoreError
from canary.health.checks import audited_tables, check_canaries, record_audit_configured
from canary.health.copies import copy_rows
from canary.health.coverage_report import coverage_report, render_markdown
from canary.health.filescan import load_patterns, scan_file
from canary.health.sweep import Budget, CopySweep
from canary.postgres import managed
from canary.postgres.audit import configure_object_audit
from canary.postgres.backstop import read_snapshot
from canary.postgres.paths import audit_grants, privileged_objects
from canary.postgres.sql import ident, parse_target
from canary.postgres.tamper import install_event_trigger
from canary.runtime import Runtime, close_runtime, open_runtime
from canary.seeding.postgres import PostgresSeeder
from canary.store import ControlStore, detection_objects, registry, sessions


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("coverage", help="coverage beyond RLS: pgaudit object audit, checks, export-file scans")
    csub = p.add_subparsers(dest="coverage_command", metavar="ACTION", required=True)

    audit = csub.add_parser("audit", help="configure pgaudit object audit on a datastore's canary tables (superuser DSN)")
    audit.add_argument("--datastore", required=True)
    audit.add_argument("--no-event-trigger", action="store_true", help="do not install the DDL guard event trigger")
    audit.set_defaults(func=cmd_audit)

    check = csub.add_parser("check", help="verify canaries and detection objects now; exit 1 when anything is wrong")
    check.add_argument("--datastore", help="only this datastore")
    check.set_defaults(func=cmd_check)

    enroll = csub.add_parser("enroll", help="cover a copy of canary data the sweep found: a table in the datastore's"
                                            " database gets the tripwire, a materialized view (or --audit) object audit")
    enroll.add_argument("--datastore", required=True)
    enroll.add_argument("--object", required=True, help="schema.name of the copy")
    enroll.add_argument("--key", help="the column that identifies the copy's rows (default: the canary table's primary key)")
    enroll.add_argument("--audit", action="store_true", help="use pgaudit object audit instead of the tripwire")
    enroll.set_defaults(func=cmd_enroll)

    report = csub.add_parser("report", help="every exfiltration path per datastore: covered / partly / not covered, and why;"
                                            " exit 1 when a path the configuration claims to cover is open")
    report.add_argument("--datastore", help="only this datastore")
    report.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    report.set_defaults(func=cmd_report)

    scan = csub.add_parser("scan", help="search files (CSV/JSON/SQL/Parquet, .gz) for canary values; exit 1 on a match")
    scan.add_argument("paths", nargs="+", type=Path)
    scan.set_defaults(func=cmd_scan)

    sweep = csub.add_parser("sweep", help="search the datastores' other tables, materialized views and databases for "
                                          "copies of canary data once (commits an incident per copy); exit 1 on a copy")
    sweep.add_argument("--datastore", help="only this datastore")
    sweep.add_argument("--max-seconds", type=float, help="time budget per datastore (default: coverage.sweep_max_seconds)")
    sweep.add_argument("--max-bytes", type=int, help="I/O budget per datastore in bytes (default: coverage.sweep_max_bytes)")
    sweep.set_defaults(func=cmd_sweep)


async def _runtime(args: argparse.Namespace) -> Runtime:
    cfg = load_config(args)
    return await open_runtime(cfg)


async def cmd_audit(args: argparse.Namespace) -> int:
    rt = await _runtime(args)
    try:
        ds = rt.config.datastore(args.datastore)
        tables = await detection_objects.targets(rt.pool, ds.name)
        tables = tables or [t.table if "." in t.table else f"public.{t.table}" for t in ds.tables]
        if not tables:
            raise DatastoreError(f"datastore {ds.name!r} has no canary tables (seed it first)")
        try:
            conn = await asyncpg.connect(ds.dsn.reveal(), timeout=10, command_timeout=60)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
            raise DatastoreError(f"cannot connect to datastore {ds.name!r}: {type(exc).__name__}") from None
        own = None
        try:
            # canary's own DDL is recorded as suppressed, by this session's registration (not by a name)
            own = await sessions.open_session(rt.pool, ds.name, conn, "coverage")
            snapshot = await read_snapshot(conn, await detection_objects.policies(rt.pool, ds.name), 0.0)
            objects = await privileged_objects(conn, tables, snapshot, await detection_objects.schemas(rt.pool, ds.name))
            grants = audit_grants(objects)
            state = await configure_object_audit(conn, rt.config.coverage.pgaudit_role, tables, objects=grants)
            trigger = not args.no_event_trigger
            if trigger:
                try:
                    async with conn.transaction():  # the guard function goes too when the trigger is refused
                        await install_event_trigger(conn, ds.detection_schema, ds.name)
                except asyncpg.InsufficientPrivilegeError:
                    trigger = False  # superusers only (RDS / Cloud SQL let their admin): the settings below say what covers it
            role = await managed.server_role(conn, ds.provider)
            settings, notes = await managed.requirements(conn, role, rt.config.coverage.pgaudit_role, audit_configured=True)
        except asyncpg.PostgresError as exc:
            raise DatastoreError(f"{ds.name}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
        finally:
            await conn.close()
            if own is not None:
                await sessions.close_session(rt.pool, own)
        audited = [*tables, *(f"{schema}.{name}" for schema, name in grants)]
        await record_audit_configured(rt.pool, ds.name, rt.config.coverage.pgaudit_role, audited)
        problems = state.problems(rt.config.coverage.pgaudit_role, audited)
        print(json.dumps({
            "datastore": ds.name, "tables": tables, "role": rt.config.coverage.pgaudit_role,
            "event_trigger": trigger, "problems": problems,
            "settings": [asdict(x) for x in settings], "notes": notes,
            "privileged_objects": [{"kind": o.kind, "name": o.name, "owner": o.owner, "why": o.why, "covered_by": o.cover}
                                   for o in objects],
        }, indent=2))
        return 1 if problems or any(x.required for x in settings) else 0
    finally:
        await close_runtime(rt, grace=1)


async def cmd_check(args: argparse.Namespace) -> int:
    rt = await _runtime(args)
    try:
        found = []
        for ds in rt.config.datastores:
            if args.datastore and ds.name != args.datastore:
                continue
            for e in await check_canaries(rt, ds, rt.config.coverage.pgaudit_role):
                found.append({"datastore": ds.name, "kind": str(e.kind), "canary_id": e.canary_id, **e.evidence})
        print(json.dumps({"findings": found}, indent=2, default=str))
        return 1 if found else 0
    finally:
        await close_runtime(rt, grace=1)


async def cmd_enroll(args: argparse.Namespace) -> int:
    rt = await _runtime(args)
    try:
        ds = rt.config.datastore(args.datastore)
        schema, name = parse_target(args.object)
        try:
            conn = await asyncpg.connect(ds.dsn.reveal(), timeout=10, command_timeout=60)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
            raise DatastoreError(f"cannot connect to datastore {ds.name!r}: {type(exc).__name__}") from None
        try:
            relkind = await conn.fetchval("SELECT relkind::text FROM pg_catalog.pg_class WHERE oid = pg_catalog.to_regclass($1)",
                                          f"{ident(schema)}.{ident(name)}")
            if relkind is None:
                raise DatastoreError(f"{schema}.{name} does not exist in the datastore's database")
            if args.audit or relkind not in ("r", "p"):
                role = rt.config.coverage.pgaudit_role
                own = await sessions.open_session(rt.pool, ds.name, conn, "coverage")
                try:
                    state = await configure_object_audit(conn, role, [], objects=[(schema, name)])
                finally:
                    await sessions.close_session(rt.pool, own)
                audited = sorted({*await audited_tables(rt.pool, ds.name), f"{schema}.{name}"})
                await record_audit_configured(rt.pool, ds.name, role, audited)
                print(json.dumps({"datastore": ds.name, "object": f"{schema}.{name}", "covered_by": "object_audit",
                                  "problems": state.problems(role, audited)}, indent=2))
                return 0
            key = args.key or await _default_key(conn, rt, ds.name)
        finally:
            await conn.close()
        if key is None:
            raise DatastoreError("give --key: the canary table's primary key is not known (seed the datastore first)")
        rows = await copy_rows(rt, ds, f"{schema}.{name}", key, await CopySweep(rt).matcher())
        result = await PostgresSeeder(ds, rt.registry).enroll(rows.target, key, rows.members)
        print(json.dumps({"datastore": ds.name, "object": result.target, "covered_by": "tripwire", "key": key,
                          "rows_read": rows.rows, "canary_rows": result.rows, "canaries": result.canaries,
                          "columns": list(rows.columns)}, indent=2))
        return 0
    finally:
        await close_runtime(rt, grace=1)


async def _default_key(conn: asyncpg.Connection, rt: Runtime, datastore: str) -> str | None:
    """The primary-key column of the datastore's first armed canary table (copies usually keep it)."""
    for target in await detection_objects.targets(rt.pool, datastore):
        details = await detection_objects.details(rt.pool, datastore, target) or {}
        if details.get("copy") or details.get("child_of"):
            continue
        key = await conn.fetchval(
            "SELECT a.attname::text FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a"
            " ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]"
            " WHERE i.indrelid = pg_catalog.to_regclass($1) AND i.indisprimary AND i.indnatts = 1", target)
        if key:
            return str(key)
    return None


async def cmd_report(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    store = ControlStore(cfg)
    await store.open()
    try:
        if args.datastore:
            cfg.datastore(args.datastore)  # a clear error for an unknown name
        doc = await coverage_report(cfg, store.pool, datastore=args.datastore)
    finally:
        await store.close()
    print(json.dumps(doc, indent=2, default=str) if args.json else render_markdown(doc), end="" if not args.json else "\n")
    return 1 if doc["open_claims"] else 0


async def cmd_scan(args: argparse.Namespace) -> int:
    rt = await _runtime(args)
    try:
        patterns = await load_patterns(rt)
        hits = 0
        for path in args.paths:
            result = await asyncio.to_thread(scan_file, path, patterns)
            rows = await registry.summaries(rt.pool, list(result.hits))
            hits += len(rows)
            print(json.dumps({"path": str(path), "bytes": result.bytes,
                              "canaries": [{"uid": r["uid"], "label": r["label"], "matched": sorted(result.hits[r["id"]])}
                                           for r in rows]}))
        return 1 if hits else 0
    finally:
        await close_runtime(rt, grace=1)


async def cmd_sweep(args: argparse.Namespace) -> int:
    rt = await _runtime(args)
    try:
        if args.datastore:
            rt.config.datastore(args.datastore)  # an unknown name is an error, not an empty sweep
        budget = Budget.from_config(rt.config.coverage, max_seconds=args.max_seconds, max_bytes=args.max_bytes)
        sweep = CopySweep(rt, budget=budget)
        events = await sweep.sweep_once(args.datastore)
        print(json.dumps({"datastores": [s.to_json() for s in sweep.summaries], "events": len(events)}, indent=2,
                         default=str))
        return 1 if any(s.hits for s in sweep.summaries) else 0
    finally:
        await close_runtime(rt, grace=1)
