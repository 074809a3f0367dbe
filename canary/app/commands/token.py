"""``canary token create | list | revoke``: API tokens for ``/api/v1``.

``create`` prints the token once (``cy_api_<id>_<secret>``); the control store keeps only its SHA-256, so
a lost token is revoked and replaced, never recovered. Every token expires (``--expires``, default
``api.token_expiry``, at most ``api.token_max_expiry``). Creation and revocation are written to the
audit log as ``cli:<user>``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json

from canary.app.commands import load_config
from canary.config import parse_duration
from canary.errors import ConfigError
from canary.store import ControlStore, api_tokens, audit


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("token", help="API tokens for /api/v1: create, list, revoke")
    cmds = p.add_subparsers(dest="token_command", metavar="ACTION", required=True)

    c = cmds.add_parser("create", help="create a token (printed once; only its hash is kept)")
    c.add_argument("--name", required=True, help="who or what uses it (shown in the audit log)")
    c.add_argument("--scope", default="read",
                   help="comma-separated from read, operate, admin, reveal (read < operate < admin; default read)")
    c.add_argument("--expires", default=None, help="lifetime, e.g. 30d, 12h (default api.token_expiry)")
    c.add_argument("--json", action="store_true", help="print JSON")
    c.set_defaults(func=cmd_create)

    ls = cmds.add_parser("list", help="list tokens (never their secrets)")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(func=cmd_list)

    rv = cmds.add_parser("revoke", help="revoke a token by id")
    rv.add_argument("id", help="the token id (the part after cy_api_)")
    rv.set_defaults(func=cmd_revoke)


def _scopes(text: str) -> list[str]:
    out = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in out if s not in api_tokens.SCOPES]
    if bad or not out:
        raise ConfigError("--scope", f"unknown scope(s) {', '.join(bad) or '(none)'}; use {', '.join(api_tokens.SCOPES)}")
    return out


async def cmd_create(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    scopes = _scopes(args.scope)
    try:
        seconds = parse_duration(args.expires) if args.expires is not None else cfg.api.token_expiry
    except ValueError as exc:
        raise ConfigError("--expires", str(exc)) from None
    if not 0 < seconds <= cfg.api.token_max_expiry:
        raise ConfigError("--expires", f"must be positive and at most api.token_max_expiry ({cfg.api.token_max_expiry:.0f}s)")
    name = args.name.strip()
    if not name or len(name) > 100:
        raise ConfigError("--name", "1 to 100 characters")
    user = getpass.getuser()
    store = await ControlStore(cfg).open()
    try:
        async with store.pool.acquire() as conn, conn.transaction():
            expires = await conn.fetchval("SELECT clock_timestamp()") + dt.timedelta(seconds=seconds)
            token, text = await api_tokens.create(conn, name, scopes, expires, f"cli:{user}")
            await audit.record(conn, actor=f"cli:{user}", action="token.create", target=f"token:{token.id}",
                               details={"name": name, "scopes": list(token.scopes), "expires_at": expires.isoformat()})
    finally:
        await store.close()
    if args.json:
        print(json.dumps({"id": token.id, "name": token.name, "scopes": list(token.scopes),
                          "expires_at": token.expires_at.isoformat(), "token": text}))
    else:
        print(f"token {token.id} ({token.name}; {', '.join(token.scopes)}; expires {token.expires_at:%Y-%m-%d %H:%M} UTC)")
        print("store it now, it is not shown again:")
        print(text)
    return 0


async def cmd_list(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    store = await ControlStore(cfg).open()
    try:
        now = await store.pool.fetchval("SELECT clock_timestamp()")
        tokens = await api_tokens.listing(store.pool)
    finally:
        await store.close()
    for t in tokens:
        state = "revoked" if t.revoked_at else ("expired" if t.expires_at <= now else "valid")
        if args.json:
            print(json.dumps({"id": t.id, "name": t.name, "scopes": list(t.scopes), "state": state,
                              "created_at": t.created_at.isoformat(), "expires_at": t.expires_at.isoformat(),
                              "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                              "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None}))
        else:
            used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
            print(f"{t.id}  {state:<8} {','.join(t.scopes):<24} expires {t.expires_at:%Y-%m-%d}  used {used:<16} {t.name}")
    if not tokens and not args.json:
        print("no API tokens")
    return 0


async def cmd_revoke(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    user = getpass.getuser()
    store = await ControlStore(cfg).open()
    try:
        async with store.pool.acquire() as conn, conn.transaction():
            before = await api_tokens.get(conn, args.id)
            token = await api_tokens.revoke(conn, args.id)
            if token is not None and before is not None and before.revoked_at is None:
                await audit.record(conn, actor=f"cli:{user}", action="token.revoke", target=f"token:{token.id}",
                                   details={"name": token.name})
    finally:
        await store.close()
    if token is None:
        raise ConfigError("token revoke", f"no token {args.id!r}")
    print(f"token {token.id} ({token.name}) revoked")
    return 0
