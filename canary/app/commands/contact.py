"""``canary contact add`` (register a stand-alone contact canary: an address or number published
somewhere other than a datastore row) and ``canary contact evidence`` (decrypt a stored message)."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from canary.app.commands import load_config
from canary.contact.evidence import load_raw
from canary.contact.mime import address_domain, in_domains, mail_address, normalize_phone
from canary.errors import ConfigError
from canary.runtime import close_runtime, open_runtime
from canary.store.registry import NewCanary, location_key


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("contact", help="contact canaries: register an address/number, read stored mail evidence")
    csub = p.add_subparsers(dest="contact_command", metavar="ACTION", required=True)

    add = csub.add_parser("add", help="register an e-mail address and/or phone number as a contact canary")
    add.add_argument("--email", action="append", default=[], help="address in a canary mail domain (repeatable)")
    add.add_argument("--phone", action="append", default=[], help="E.164 number, e.g. +821012345678 (repeatable)")
    add.add_argument("--where", required=True, help="where it is published, coarse (e.g. 'careers-page', 'crm-export')")
    add.set_defaults(func=cmd_add)

    ev = csub.add_parser("evidence", help="decrypt the raw message kept as evidence (raw_evidence_id of an event)")
    ev.add_argument("id", type=int)
    ev.add_argument("--out", help="write to this file (mode 0600) instead of stdout")
    ev.set_defaults(func=cmd_evidence)


async def _runtime(args: argparse.Namespace):  # type: ignore[no-untyped-def]

    cfg = load_config(args)
    return await open_runtime(cfg)


async def cmd_add(args: argparse.Namespace) -> int:
    runtime = await _runtime(args)
    try:
        domains = runtime.config.contact.mail_domains
        values: list[tuple[str, str]] = []
        for raw in args.email:
            addr = mail_address(raw)
            if addr is None or not in_domains(address_domain(addr), domains):
                raise ConfigError("contact.mail_domains", f"{raw!r} is not an address in a canary mail domain {list(domains)}")
            values.append(("email", addr))
        for raw in args.phone:
            number = normalize_phone(raw)
            if number is None:
                raise ConfigError("", f"{raw!r} is not an E.164 phone number")
            values.append(("phone", number))
        if not values:
            raise ConfigError("", "give at least one --email or --phone")
        ref = secrets.token_hex(8)
        async with runtime.pool.acquire() as conn, conn.transaction():
            [(cid, uid)] = await runtime.registry.add(conn, [NewCanary(
                kind="contact", datastore="contact", label=f"contact/{args.where}",
                location={"target": args.where, "pk": ref}, lookup=location_key("contact", args.where, ref),
                values=values)], None)
        print(f"registered contact canary {uid} (id {cid}) with {len(values)} contact point(s)")
        return 0
    finally:
        await close_runtime(runtime, grace=1.0)


async def cmd_evidence(args: argparse.Namespace) -> int:
    runtime = await _runtime(args)
    try:
        raw = await load_raw(runtime, args.id)
        if raw is None:
            print(f"canary: no stored message with id {args.id}", file=sys.stderr)
            return 1
        if args.out:
            fd = os.open(Path(args.out), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(raw)
        else:
            sys.stdout.buffer.write(raw)
            sys.stdout.flush()
        return 0
    finally:
        await close_runtime(runtime, grace=1.0)
