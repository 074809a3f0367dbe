"""``canary contact add`` and ``canary contact evidence`` against a real control store."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from canary.app.cli import build_parser
from canary.config import load
from canary.contact.evidence import store_raw
from canary.crypto import ENV_MASTER_KEY, Keyring, generate_key
from canary.errors import ConfigError
from canary.runtime import close_runtime, open_runtime


@pytest.fixture
def cli_config(control_dsn: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Keyring]]:
    key = generate_key()
    monkeypatch.setenv(ENV_MASTER_KEY, base64.b64encode(key).decode())
    path = data_dir / "canary.toml"
    path.write_text(f'[canary]\ndata_dir = "{data_dir}"\n[control]\ndsn = "{control_dsn}"\n'
                    '[contact]\nmail_domains = ["canary-mail.test"]\n')
    yield path, Keyring(key)
    structlog.reset_defaults()  # the CLI configured logging onto this test's captured stderr


async def _run(*argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    return int(await args.func(args))


async def test_contact_add_registers_contact_points(cli_config: tuple[Path, Keyring], capsys: pytest.CaptureFixture[str]) -> None:
    """A stand-alone address and number become one active contact canary found by blind index;
    addresses outside the canary domains are refused with the config key named."""
    path, keyring = cli_config
    assert await _run("-c", str(path), "contact", "add", "--email", "Recruit.Kim@canary-mail.test",
                      "--phone", "+82 10-5555-0100", "--where", "careers-page") == 0
    assert "registered contact canary cy_" in capsys.readouterr().out
    runtime = await open_runtime(load(path), keyring=keyring)
    try:
        by_mail = await runtime.registry.by_value("email", "recruit.kim@canary-mail.test")
        by_phone = await runtime.registry.by_value("phone", "+821055550100")
        assert by_mail is not None and by_phone is not None and by_mail.id == by_phone.id
        assert (by_mail.kind, by_mail.label) == ("contact", "contact/careers-page")
    finally:
        await close_runtime(runtime, grace=1.0)
    with pytest.raises(ConfigError, match="not an address in a canary mail domain"):
        await _run("-c", str(path), "contact", "add", "--email", "someone@gmail.test", "--where", "x")


async def test_contact_evidence_decrypts_to_a_private_file(cli_config: tuple[Path, Keyring], data_dir: Path) -> None:
    """The stored raw message is decrypted to a new file with mode 0600; unknown ids fail cleanly."""
    path, keyring = cli_config
    runtime = await open_runtime(load(path), keyring=keyring)
    try:
        evidence_id = await store_raw(runtime, "smtp", b"Subject: phish\r\n\r\nbody\r\n")
    finally:
        await close_runtime(runtime, grace=1.0)
    out = data_dir / "msg.eml"
    assert await _run("-c", str(path), "contact", "evidence", str(evidence_id), "--out", str(out)) == 0
    assert out.read_bytes() == b"Subject: phish\r\n\r\nbody\r\n" and out.stat().st_mode & 0o777 == 0o600
    assert await _run("-c", str(path), "contact", "evidence", "999999") == 1
