"""``canary credential new`` registers a derived credential and prints it once; ``canary credential
check`` recognises it (from stdin) and says where it was placed."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from canary.crypto import generate_key, write_key_file


async def _canary(config: Path, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "canary", "-c", str(config), *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "CANARY_MASTER_KEY"},
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_new_then_check(control_dsn: str, data_dir: Path) -> None:
    """A GitHub token and a honeypot DSN created by the CLI are recognised by `check`; an unknown
    value is not (exit 1); nothing secret reaches stderr (the logs)."""
    key_file = data_dir / "master.key"
    write_key_file(key_file, generate_key())
    config = data_dir / "canary.toml"
    config.write_text(
        f'[canary]\ndata_dir = "{data_dir}"\nmaster_key_file = "{key_file}"\nlog_level = "debug"\n'
        f'[control]\ndsn = "{control_dsn}"\n[honeypot.postgres]\nport = 6544\n'
    )
    rc, out, err = await _canary(config, "credential", "new", "--type", "github_token", "--datastore", "ci",
                                 "--where", "deploy/.env", "--json")
    assert rc == 0, err
    tok = json.loads(out)
    assert tok["token"].startswith("ghp_") and tok["uid"].startswith("cy_") and tok["token"] not in err
    rc, out, err = await _canary(config, "credential", "new", "--type", "pg_dsn", "--datastore", "shop",
                                 "--where", "public.settings", "--database", "billing")
    assert rc == 0, err
    fields = dict(line.split("=", 1) for line in out.splitlines() if not line.startswith("#"))
    assert fields["dsn"].endswith("@127.0.0.1:6544/billing") and fields["password"] not in err
    rc, out, _ = await _canary(config, "credential", "check", "-", stdin=tok["token"].encode() + b"\n")
    assert rc == 0 and f"canary {tok['uid']} (token) placed in ci/deploy/.env" in out
    rc, out, _ = await _canary(config, "credential", "check", fields["user"])
    assert rc == 0 and "(dsn_user) placed in shop/public.settings" in out
    rc, out, _ = await _canary(config, "credential", "check", "ghp_" + "x" * 36)
    assert rc == 1 and "not a canary credential" in out
