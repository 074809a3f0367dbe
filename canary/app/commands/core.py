"""``canary init``, ``canary listen`` and ``canary demo``."""

from __future__ import annotations

import argparse
import os
import tomllib
from pathlib import Path

from canary import config as config_mod
from canary import crypto, logs
from canary.app.commands import load_config
from canary.app.demo import run_demo
from canary.errors import ConfigError
from canary.listener import Listener, serve
from canary.runtime import open_runtime

STARTER_CONFIG = """\
# canary configuration. Every key is documented in config/canary.example.toml.
# The master key is NOT kept here: it is in the key file below (mode 0600) or $CANARY_MASTER_KEY.

[canary]
data_dir = "{data_dir}"
master_key_file = "{key_file}"
log_level = "info"

# No [control] dsn: canary runs an embedded PostgreSQL under data_dir/control.

[listener]
host = "127.0.0.1"
port = 8088

[coverage]
checks = true          # tamper and liveness: canaries intact, detection objects intact, log heartbeat
check_interval = "1m"

[[sinks]]
name = "stdout"
type = "stdout"

# [[datastores]]
# name = "shop"
# dsn = {{ env = "SHOP_DSN" }}
# jsonlog_dir = "/var/log/postgresql"
# locale = "ko_KR"
# tables = [{{ table = "public.customers", count = 20 }}]
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("init", help="write a starter configuration and a new master key file (0600)")
    p.add_argument("--path", default="canary.toml", help="where to write the configuration (default: ./canary.toml)")
    p.add_argument("--data-dir", default="~/.local/share/canary", help="data directory (embedded PostgreSQL, key file)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("listen", help="run the listener: detection sources, alert pipeline, /healthz and /metrics")
    p.add_argument("--host", help="override listener.host")
    p.add_argument("--port", type=int, help="override listener.port")
    p.set_defaults(func=cmd_listen)

    p = sub.add_parser(
        "demo",
        help="end to end on a fresh machine: embedded PostgreSQL, a 100,000-customer shop, 20 canaries, "
        "an insider export, the incidents with time-to-detect; cleans up after itself",
    )
    p.add_argument("--customers", type=int, default=100_000, help="real-looking customers to create (default 100000)")
    p.add_argument("--canaries", type=int, default=20, help="canary customers to seed (default 20)")
    p.add_argument("--slo", type=float, default=1.0, help="seconds within which each incident must be detected (default 1.0)")
    p.add_argument("--keep", action="store_true",
                   help="after the report, keep the listener running with the console (URL and an admin token printed) until Ctrl-C")
    p.set_defaults(func=cmd_demo)


def cmd_init(args: argparse.Namespace) -> int:
    path = Path(args.path).expanduser()
    data_dir = Path(args.data_dir).expanduser().resolve()
    key_file = data_dir / "master.key"
    if path.exists():
        raise ConfigError("", f"{path} already exists; refusing to overwrite it")
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    crypto.write_key_file(key_file, crypto.generate_key())
    text = STARTER_CONFIG.format(data_dir=data_dir, key_file=key_file)
    config_mod.from_mapping(tomllib.loads(text))  # the starter must itself be valid
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    print(f"wrote {path} and master key {key_file} (mode 0600); back the key up: without it the registry cannot be read")
    return 0


async def cmd_listen(args: argparse.Namespace) -> int:
    cfg = load_config(args, log_to_stdout=True)  # the listener's log is its output
    runtime = await open_runtime(cfg)
    listener = Listener(runtime)
    await serve(listener, args.host or cfg.listener.host, args.port if args.port is not None else cfg.listener.port)
    return 0


async def cmd_demo(args: argparse.Namespace) -> int:
    logs.configure(args.log_level or "warning", "console")
    return await run_demo(customers=args.customers, canaries=args.canaries, slo=args.slo, keep=args.keep)
