"""``canary credential new`` (derive and register a credential canary to place by hand),
``canary credential check`` (is this presented value a canary?), and the AWS canary key pool:
``provision aws`` (real IAM users without permissions), ``pool add aws --from FILE`` (keys made by
hand), ``list aws`` (pool state, never a secret) and ``retire aws`` (delete users from IAM)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from canary.app.commands import load_config
from canary.config import AwsIamConfig, Config
from canary.credentials import aws
from canary.credentials.values import CredentialFactory, new_canary
from canary.crypto import Keyring, load_key
from canary.errors import CanaryError
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

    def iam_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--endpoint-url", help="IAM endpoint (default: [credentials.aws] endpoint_url, else AWS)")
        parser.add_argument("--profile", help="AWS profile (default: [credentials.aws] profile, else boto3's chain)")

    prov = csub.add_parser("provision", help="create real canary keys: IAM users without permissions, one access key each")
    prov.add_argument("provider", choices=["aws"])
    prov.add_argument("--count", type=int, required=True, help="how many users (1-100)")
    prov.add_argument("--path", help="IAM path (default: [credentials.aws] path)")
    prov.add_argument("--name-pattern", help="user names, e.g. 'svc-{word}-{word}' (default: [credentials.aws] name_pattern)")
    prov.add_argument("--tag", help="key=value tag on each user (default: [credentials.aws] tag, else none)")
    iam_options(prov)
    prov.set_defaults(func=cmd_provision)

    pool = csub.add_parser("pool", help="the AWS canary key pool: register keys made by hand")
    psub = pool.add_subparsers(dest="pool_command", metavar="ACTION", required=True)
    padd = psub.add_parser("add", help="register access keys of powerless IAM users from a CSV or JSON file")
    padd.add_argument("provider", choices=["aws"])
    padd.add_argument("--from", dest="source", required=True, help="CSV (IAM console columns) or JSON (CreateAccessKey answers)")
    padd.add_argument("--verify", action="store_true", help="check through IAM that each key's user has no policy or group")
    iam_options(padd)
    padd.set_defaults(func=cmd_pool_add)

    lst = csub.add_parser("list", help="the AWS canary key pool: placed / unplaced / retired (never secrets)")
    lst.add_argument("provider", choices=["aws"])
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_list)

    ret = csub.add_parser("retire", help="delete AWS canary keys' IAM users (keys first) and retire their canaries")
    ret.add_argument("provider", choices=["aws"])
    ret.add_argument("names", nargs="*", help="IAM user names or canary uids")
    ret.add_argument("--unplaced", action="store_true", help="every key still in the pool")
    ret.add_argument("--retired", action="store_true", help="every key whose seeded row was retired but whose IAM user remains")
    ret.add_argument("--placed", action="store_true", help="also retire keys still seeded in a datastore (their rows stay)")
    ret.add_argument("--local-only", action="store_true", help="only mark them retired here; delete the users in IAM yourself")
    iam_options(ret)
    ret.set_defaults(func=cmd_retire)


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
        if args.type == "aws_key":
            print("# honeypot only: this key exists nowhere in AWS and fires only at canary's own honeypot; for a key that "
                  "fires at AWS use `canary credential provision aws`")
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


def _iam(cfg: Config, args: argparse.Namespace) -> aws.Iam:
    """The IAM client of [credentials.aws] with the command line's overrides, validated like the file."""
    overrides = {k: v for k, v in (("path", getattr(args, "path", None)), ("name_pattern", getattr(args, "name_pattern", None)),
                                   ("tag", getattr(args, "tag", None))) if v is not None}
    try:
        settings = AwsIamConfig.model_validate({**cfg.credentials.aws.model_dump(), **overrides})
    except ValidationError as exc:
        raise CanaryError("; ".join(f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}"
                                    for e in exc.errors())) from None
    return aws.Iam(settings, endpoint_url=args.endpoint_url, profile=args.profile)


def _line(e: aws.PoolEntry) -> str:
    where = {"unplaced": "in the pool", "placed": f"placed in {e.label}",
             "retired": "row retired, IAM user remains (canary credential retire aws --retired)" if e.iam_user else "retired",
             "deleted": "IAM user deleted"}[e.state]
    return f"{e.uid}  {e.iam_user or '(user unknown)'}  {e.key_hint}  {e.origin}  {where}"


async def cmd_provision(args: argparse.Namespace) -> int:
    if not 1 <= args.count <= 100:
        raise CanaryError("--count must be between 1 and 100")
    cfg, store, registry = await _open(args)
    try:
        made = await aws.provision(_iam(cfg, args), registry, args.count, on_user=lambda e: print(f"provisioned {_line(e)}", flush=True))
        unplaced = sum(1 for e in await aws.pool_entries(registry) if e.state == "unplaced")
    finally:
        await store.close()
    print(f"# {len(made)} IAM users without permissions, one access key each; {unplaced} keys unplaced in the pool. "
          "The secrets are stored encrypted and shown nowhere; seeding places them.")
    return 0


async def cmd_pool_add(args: argparse.Namespace) -> int:
    cfg, store, registry = await _open(args)
    try:
        keys = aws.parse_key_file(Path(args.source))
        added, skipped = await aws.register_keys(registry, keys, iam=_iam(cfg, args) if args.verify else None)
    finally:
        await store.close()
    for e in added:
        print(f"registered {_line(e)}")
    print(f"# {len(added)} keys added to the AWS pool, {skipped} already registered. Delete {args.source}: "
          "canary keeps the secrets encrypted.")
    return 0


async def cmd_list(args: argparse.Namespace) -> int:
    _, store, registry = await _open(args)
    try:
        entries = await aws.pool_entries(registry)
    finally:
        await store.close()
    if args.json:
        print(json.dumps([{"uid": e.uid, "state": e.state, "label": e.label, "iam_user": e.iam_user, "key": e.key_hint,
                           "origin": e.origin} for e in entries]))
        return 0
    for e in entries:
        print(_line(e))
    counts = {s: sum(1 for e in entries if e.state == s) for s in ("unplaced", "placed", "retired", "deleted")}
    print("# " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return 0


async def cmd_retire(args: argparse.Namespace) -> int:
    if not (args.names or args.unplaced or args.retired):
        raise CanaryError("name the keys to retire (IAM user or uid), or give --unplaced / --retired")
    cfg, store, registry = await _open(args)
    try:
        chosen = aws.select(await aws.pool_entries(registry), args.names, unplaced=args.unplaced, retired=args.retired)
        placed = [e for e in chosen if e.state == "placed"]
        if placed and not args.placed:
            raise CanaryError(f"{', '.join(e.iam_user or e.uid for e in placed)}: still seeded in a datastore; retire those "
                              "rows first (canary seed retire) or pass --placed (the rows then hold keys that no longer exist)")
        done = await aws.retire(None if args.local_only else _iam(cfg, args), registry, chosen)
    finally:
        await store.close()
    for e, note in done:
        print(f"{e.uid}  {e.iam_user or '(user unknown)'}  {note}")
    return 0
