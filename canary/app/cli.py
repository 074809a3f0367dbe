"""The ``canary`` command. Each area registers its subcommands from its own module in
``canary/commands/`` (listed in COMMAND_MODULES); this file only wires them up."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence

from canary.errors import CanaryError

COMMAND_MODULES = (
    "canary.app.commands.core",
    "canary.app.commands.alerts",
    "canary.app.commands.credentials",
    "canary.app.commands.coverage",
    "canary.app.commands.seed",
    "canary.app.commands.contact",
    "canary.app.commands.drill",
    "canary.app.commands.status",
    "canary.app.commands.token",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="canary",
        description="Honeytokens for production datastores: seed canary records and credentials, "
        "listen for reads, exports, contacts and use, and page on-call.",
    )
    parser.add_argument("-c", "--config", help="configuration file (default: $CANARY_CONFIG, ./canary.toml, ~/.config/canary/canary.toml)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="override canary.log_level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
        return int(result or 0)
    except CanaryError as exc:
        print(f"canary: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
