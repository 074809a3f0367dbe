"""``canary credential new`` (derive and register a credential canary to place by hand) and
``canary credential check`` (is this presented value a canary?)."""

from __future__ import annotations

import argparse
import json
import sys

from canary.app.commands import load_config
from canary.credentials.values import CredentialFactory, new_canary
from canary.crypto import Keyring, load_key
from canary.store import ControlStore
from canary.store.registry import Registry, ValueKind, location_key, recognise

TYPES = ("aws_key", "github_token", "stripe_key", "jwt", "bearer", "pg_dsn", "pg_role")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("credential", help="credential canaries: create one to place by hand, or check a value")
    csub = p.add_subparsers(dest="credential_command", metavar="ACTION", required=True)

    new = csub.add_parser("new", help="derive a credential canary, register it and print it (once) for placing")
    new.add_argument("--type", required=True, choices=TYPES)
    new.add_argument("--datastore", required=True, help="where it is placed (datastore or system name)")
    new.add_argument("--where", required=True, help="what holds it, e.g. 'ci/.env' or 'public.api_tokens' (coarse)")
    new.add_argument("--host", default="127.0.0.1", help="pg_dsn: host of the PostgreSQL honeypot or datastore")
    new.add_argument("--port", type=int, help="pg_dsn: port (default: honeypot.postgres.port)")
    new.add_argument("--database", default="postgres", help="pg_dsn: database name")
    new.add_argument("--prefix", default="svc_etl", help="pg_dsn/pg_role: role name prefix")
    new.add_argument("--json", action="store_true", help="print every field as JSON")
    new.set_defaults(func=cmd_new)

    chk = csub.add_parser("check", help="is a value a registered canary credential? (reads stdin with '-')")
    chk.add_argument("value", help="the presented value, or '-' to read it from stdin (keeps it out of shell history)")
    chk.set_defaults(func=cmd_check)


async def _open(args: argparse.Namespace):  # type: ignore[no-untyped-def]

    cfg = load_config(args)
    keyring = Keyring(load_key(cfg.canary.key_file))
    store = ControlStore(cfg)
    await store.open()
    return cfg, store, Registry(store.pool, keyring)


async def cmd_new(args: argparse.Namespace) -> int:
    cfg, store, registry = await _open(args)
    try:
        f = CredentialFactory(registry.keyring)
        if args.type == "pg_dsn":
            cred = f.pg_dsn(args.host, args.port or cfg.honeypot.postgres.port, args.database, prefix=args.prefix)
        elif args.type == "pg_role":
            cred = f.pg_role(prefix=args.prefix)
        else:
            cred = getattr(f, args.type)()
        canary = new_canary(cred, args.datastore, f"{args.datastore}/{args.where}",
                            location={"target": args.where, "pk": cred.cred_id},
                            lookup=location_key(args.datastore, args.where, cred.cred_id))
        async with store.pool.acquire() as conn, conn.transaction():
            [(_, uid)] = await registry.add(conn, [canary], None)
    finally:
        await store.close()
    if args.json:
        print(json.dumps({"uid": uid, "type": str(cred.type), "cred_id": cred.cred_id, **cred.fields}))
    else:
        print(f"# canary {uid} ({cred.type}); place it in {args.where}. It is shown once and stored nowhere in plaintext.")
        for name, value in cred.fields.items():
            print(f"{name}={value}")
    return 0


async def cmd_check(args: argparse.Namespace) -> int:
    value = sys.stdin.readline().strip() if args.value == "-" else args.value
    _, store, registry = await _open(args)
    try:
        found = await recognise(registry, [(str(k), value) for k in ValueKind])
    finally:
        await store.close()
    if not found:
        print("not a canary credential")
        return 1
    for match in found.values():
        print(f"canary {match.uid} ({match.value_kind}) placed in {match.label}")
    return 0
