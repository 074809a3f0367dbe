"""``canary token create | list | revoke`` against a real control store: the token is printed once and
only its hash is stored; it authenticates until revoked or expired; scopes and lifetimes are checked;
creation and revocation are audited as the CLI user."""

from __future__ import annotations

import asyncio
import datetime as dt
import getpass
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from canary.app import cli
from canary.store import ControlStore, api_tokens


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """The CLI configures structlog for this test's captured output; undo that afterwards."""
    yield
    structlog.reset_defaults()


def _config(tmp_path: Path, data_dir: Path, dsn: str) -> str:
    path = tmp_path / "canary.toml"
    path.write_text(f'[canary]\ndata_dir = "{data_dir}"\nlog_level = "warning"\n[control]\ndsn = "{dsn}"\n'
                    '[api]\ntoken_expiry = "7d"\ntoken_max_expiry = "60d"\n')
    return str(path)


async def _canary(argv: list[str]) -> int:
    return await asyncio.to_thread(cli.main, argv)


async def test_create_list_revoke(store: ControlStore, tmp_path: Path, data_dir: Path, control_dsn: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """create prints a cy_api_ token whose hash (not the token) is stored, with the asked scopes and
    lifetime; it verifies; list shows it valid without its secret; revoke makes it fail; both changes
    are audit entries of cli:<user>."""
    conf = _config(tmp_path, data_dir, control_dsn)
    capsys.readouterr()
    assert await _canary(["-c", conf, "token", "create", "--name", "ci bot", "--scope", "read,operate",
                          "--expires", "30d", "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    text = made["token"]
    assert text.startswith(f"cy_api_{made['id']}_") and made["scopes"] == ["read", "operate"]
    stored = await store.pool.fetchrow("SELECT * FROM api_tokens WHERE id = $1", made["id"])
    assert text.encode() not in bytes(stored["secret_hash"]) and bytes(stored["secret_hash"]) == api_tokens.digest(text)
    now = await store.pool.fetchval("SELECT clock_timestamp()")
    assert abs((stored["expires_at"] - now) - dt.timedelta(days=30)) < dt.timedelta(minutes=1)
    assert (await api_tokens.verify(store.pool, text)) is not None

    assert await _canary(["-c", conf, "token", "list"]) == 0
    out = capsys.readouterr().out
    assert made["id"] in out and "valid" in out and "ci bot" in out and text not in out

    assert await _canary(["-c", conf, "token", "revoke", made["id"]]) == 0
    assert await api_tokens.verify(store.pool, text) is None
    assert await _canary(["-c", conf, "token", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["state"] == "revoked"
    entries = [(r["actor"], r["action"], r["target"]) for r in await store.pool.fetch("SELECT * FROM audit_log ORDER BY id")]
    me = f"cli:{getpass.getuser()}"
    assert entries == [(me, "token.create", f"token:{made['id']}"), (me, "token.revoke", f"token:{made['id']}")]


async def test_default_expiry_and_refusals(store: ControlStore, tmp_path: Path, data_dir: Path, control_dsn: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Without --expires a token lasts api.token_expiry; an unknown scope, a lifetime past
    api.token_max_expiry and an unknown id to revoke are errors (exit 2) that create nothing."""
    conf = _config(tmp_path, data_dir, control_dsn)
    assert await _canary(["-c", conf, "token", "create", "--name", "n", "--json"]) == 0
    made = json.loads(capsys.readouterr().out)
    token = await api_tokens.get(store.pool, made["id"])
    assert token is not None and token.scopes == ("read",)
    assert abs((token.expires_at - token.created_at) - dt.timedelta(days=7)) < dt.timedelta(minutes=1)
    assert await _canary(["-c", conf, "token", "create", "--name", "n", "--scope", "read,root"]) == 2
    assert await _canary(["-c", conf, "token", "create", "--name", "n", "--expires", "61d"]) == 2
    assert await _canary(["-c", conf, "token", "create", "--name", "n", "--expires", "soon"]) == 2
    assert await _canary(["-c", conf, "token", "revoke", "000000000000"]) == 2
    assert await store.pool.fetchval("SELECT count(*) FROM api_tokens") == 1
