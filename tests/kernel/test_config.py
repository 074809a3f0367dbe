"""Configuration: validated once, errors name their key, secrets masked, examples stay true."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import pytest

from canary.app.cli import main
from canary.config import from_mapping, load, parse_duration
from canary.errors import ConfigError
from canary.secret import Secret, resolve_secret

ROOT = Path(__file__).resolve().parents[2]


def test_example_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """config/canary.example.toml loads (with its env-referenced secrets set)."""
    monkeypatch.setenv("SHOP_DSN", "postgresql://u:p@127.0.0.1/shop")
    monkeypatch.setenv("CANARY_WEBHOOK_SECRET", "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    cfg = load(ROOT / "config" / "canary.example.toml")
    assert cfg.datastores[0].tables[0].table == "public.customers"
    assert cfg.alerting.group_window == 300.0


def test_unknown_key_is_an_error_naming_the_key() -> None:
    """A typo is reported with its full key path, never silently dropped."""
    with pytest.raises(ConfigError) as err:
        from_mapping({"alerting": {"group_windw": "5m"}})
    assert err.value.key == "alerting.group_windw"
    assert "unknown key" in str(err.value)


def test_nested_error_names_list_index() -> None:
    """Errors inside arrays of tables carry the index."""
    with pytest.raises(ConfigError) as err:
        from_mapping({"datastores": [{"name": "shop", "dsn": "postgresql://x"}, {"name": "Bad Name!", "dsn": "x"}]})
    assert err.value.key == "datastores[1].name"


@pytest.mark.parametrize(
    "table",
    ['customers"; DROP TABLE x; --', "public.customers.extra", "cust omers", "", "a" * 64, "1abc", "x;y"],
)
def test_hostile_table_names_are_rejected(table: str) -> None:
    """Table names must be plain identifiers; SQL in a name is a config error, not an injection."""
    with pytest.raises(ConfigError) as err:
        from_mapping({"datastores": [{"name": "shop", "dsn": "postgresql://x", "tables": [{"table": table}]}]})
    assert err.value.key == "datastores[0].tables[0].table"


def test_secrets_are_masked_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """A DSN password never shows in repr, str, model dumps or error messages."""
    monkeypatch.setenv("MY_DSN", "postgresql://admin:hunter2-secret@db/shop")
    cfg = from_mapping({"datastores": [{"name": "shop", "dsn": {"env": "MY_DSN"}}]})
    ds = cfg.datastores[0]
    for text in (repr(cfg), str(cfg), repr(ds), str(ds.model_dump()), str(ds.dsn)):
        assert "hunter2" not in text
    assert ds.dsn.reveal().endswith("@db/shop")


def test_missing_secret_env_names_the_variable() -> None:
    """A secret that references an unset environment variable says which one."""
    with pytest.raises(ConfigError) as err:
        from_mapping({"control": {"dsn": {"env": "CANARY_TEST_UNSET_VAR"}}})
    assert err.value.key == "control.dsn"
    assert "CANARY_TEST_UNSET_VAR" in str(err.value)


def test_sink_options_are_validated_by_the_plugin() -> None:
    """Plug-in keys are checked at load: a webhook without a valid secret fails with its key path."""
    with pytest.raises(ConfigError) as err:
        from_mapping({"sinks": [{"name": "hook", "type": "webhook", "url": "https://x.test/h", "secret": "not-base64!"}]})
    assert err.value.key.startswith("sinks[0]")
    assert "not-base64" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        from_mapping({"sinks": [{"name": "p", "type": "no-such-sink"}]})
    assert err.value.key == "sinks[0].type"


def test_duplicate_names_are_errors() -> None:
    """Two sinks with one name would make routing ambiguous."""
    with pytest.raises(ConfigError, match="duplicate"):
        from_mapping({"sinks": [{"name": "a", "type": "stdout"}, {"name": "a", "type": "stdout"}]})


def test_malformed_toml_is_one_clear_error(tmp_path: Path) -> None:
    """A broken file is reported with its path and the parser's position."""
    bad = tmp_path / "canary.toml"
    bad.write_text("[canary\nlog_level = 'info'\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "missing.toml")


@pytest.mark.parametrize("value,seconds", [(30, 30.0), ("250ms", 0.25), ("5m", 300.0), ("2h", 7200.0), ("1.5s", 1.5)])
def test_durations(value: object, seconds: float) -> None:
    """Durations accept numbers and unit suffixes."""
    assert parse_duration(value) == seconds


def test_secret_from_file(tmp_path: Path) -> None:
    """{ file = ... } secrets read the file, trimmed, and remember only where they came from."""
    f = tmp_path / "s"
    f.write_text("whsec_abc\n")
    s = resolve_secret({"file": str(f)})
    assert s.reveal() == "whsec_abc" and "whsec" not in repr(s)
    assert Secret("x") == Secret("x")


def test_init_writes_config_and_private_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`canary init` writes a valid starter config and a 0600 key file, and refuses to overwrite."""
    conf = tmp_path / "canary.toml"
    data = tmp_path / "data"
    assert main(["init", "--path", str(conf), "--data-dir", str(data)]) == 0
    key = data / "master.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    key_text = key.read_text().strip()
    assert key_text not in conf.read_text() and key_text not in capsys.readouterr().out
    loaded = load(conf)
    assert loaded.canary.key_file == key
    assert main(["init", "--path", str(conf), "--data-dir", str(data)]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err


def test_compose_file_structure() -> None:
    """docker-compose.yml (no engine runs here) wires a jsonlog-writing PostgreSQL to the listener."""
    import yaml
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    pg, canary = doc["services"]["postgres"], doc["services"]["canary"]
    cmd = " ".join(pg["command"])
    assert "log_destination=jsonlog" in cmd and "logging_collector=on" in cmd
    pg_log = next(v for v in pg["volumes"] if v.startswith("pglog:"))
    assert any(v.startswith("pglog:") and v.endswith(":ro") for v in canary["volumes"])
    assert pg_log.split(":")[1] in cmd
    assert canary["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert set(canary["secrets"]) <= set(doc["secrets"])
    assert (ROOT / "Dockerfile").exists()
    conf_mount = next(v for v in canary["volumes"] if v.endswith("canary.toml:ro"))
    conf = tomllib.loads((ROOT / conf_mount.split(":")[0]).read_text())
    assert conf["datastores"][0]["jsonlog_dir"] == pg_log.split(":")[1]
    assert all("password" not in str(v).lower() or "_FILE" in str(v) for v in (pg.get("environment") or {}))
    assert os.path.basename(canary["command"][0]) == "canary"


def test_trickle_mode_is_validated() -> None:
    """trickle_over takes a duration; a trickle target of credential canaries is refused by name."""
    ds = {"name": "shop", "dsn": "postgresql://u@localhost/shop"}
    cfg = from_mapping({"datastores": [{**ds, "tables": [{"table": "customers", "mode": "trickle", "trickle_over": "3d"}]}]})
    assert cfg.datastores[0].tables[0].trickle_over == 3 * 86400.0
    with pytest.raises(ConfigError) as err:
        from_mapping({"datastores": [{**ds, "tables": [{"table": "keys", "credential": "auto", "mode": "trickle"}]}]})
    assert "datastores[0].tables[0]" in str(err.value) and "credential canaries" in str(err.value)
    with pytest.raises(ConfigError) as err:
        from_mapping({"datastores": [{**ds, "tables": [{"table": "customers", "mode": "sometimes"}]}]})
    assert "mode" in str(err.value)
    with pytest.raises(ConfigError):
        from_mapping({"datastores": [{**ds, "tables": [{"table": "customers", "mode": "trickle", "trickle_over": "0s"}]}]})
