"""`canary coverage report`: each exfiltration path of a real seeded datastore with its cover and why,
the objects that read canary tables without row security, Markdown and JSON, and a non-zero exit
when a path the configuration claims to cover is open."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import pytest
from seeder_helpers import Shop
from testkit import MakeConfig, OpenRuntime

from canary.app.cli import main
from canary.health.coverage_report import COVERED, OPEN, PARTLY, coverage_report, render_markdown
from canary.health.sweep import CopySweep
from canary.seeding.postgres import PostgresSeeder
from canary.store.embedded import PostgresServer


def _paths(doc: dict[str, object]) -> dict[str, tuple[str, str, bool]]:
    store = doc["datastores"][0]  # type: ignore[index]
    return {p["path"]: (p["status"], p["why"], p["claimed"]) for p in store["paths"]}  # type: ignore[index]


async def test_report_of_a_seeded_datastore(shop: Shop, pg_server: PostgresServer, open_test_runtime: OpenRuntime,
                                            make_config: MakeConfig) -> None:
    """Armed and tailed, the direct paths are covered; a superuser-owned view and SECURITY DEFINER
    function over customers are listed (the function as not covered, pgaudit cannot see it); with no
    object audit the privileged path is open but not claimed, so nothing claimed is open."""
    cfg = make_config(datastores=[{"name": "shop", "dsn": shop.dsn, "jsonlog_dir": str(pg_server.log_dir),
                                   "tables": [{"table": "public.customers", "count": 3}]}])
    rt = await open_test_runtime(cfg)
    await PostgresSeeder(cfg.datastores[0], rt.registry, seed=3).apply()
    conn = await asyncpg.connect(shop.dsn)
    try:
        await conn.execute("""
            CREATE VIEW public.all_customers AS SELECT * FROM public.customers;
            CREATE FUNCTION public.export_customers() RETURNS SETOF public.customers LANGUAGE sql SECURITY DEFINER
                AS 'SELECT * FROM public.customers';
        """)
    finally:
        await conn.close()
    doc = await coverage_report(cfg, rt.pool)
    paths = _paths(doc)
    assert paths["direct_read"][0] == COVERED and "public.customers" in paths["direct_read"][1]
    assert paths["dump_ordinary"][0] == COVERED
    assert paths["privileged_read"][:1] == (OPEN,) and not paths["privileged_read"][2]
    assert "postgres" in paths["privileged_read"][1]
    assert paths["views"][0] == OPEN and "public.all_customers" in paths["views"][1]
    assert paths["functions"][0] == OPEN and "public.export_customers()" in paths["functions"][1]
    assert paths["copies"][0] == OPEN and "coverage.sweep" in paths["copies"][1] and not paths["copies"][2]
    assert paths["standbys"][0] == PARTLY
    assert doc["open_claims"] == 0
    store = doc["datastores"][0]
    assert store["canaries"] == {"customers": 3, "credentials": 0}
    assert [(o["kind"], o["name"]) for o in store["privileged_objects"]] == [
        ("view", "public.all_customers"), ("function", "public.export_customers()")]
    assert store["privileged_roles"]["postgres"] == "superuser"
    text = render_markdown(doc)
    assert "| SELECT and COPY TO by ordinary roles | covered |" in text
    assert "Open paths the configuration claims to cover: 0" in text
    blob = json.dumps(doc, default=str)
    assert shop.dsn not in blob and "password" not in blob.lower()


def test_report_command_exits_non_zero_on_a_claimed_open_path(
    shop: Shop, control_dsn: str, data_dir: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """Tables configured (a claim) but none armed and no log path: the direct read path is open and
    claimed, the Markdown flags it and the command exits 1; an unknown datastore name is a clear
    error (exit 2)."""
    conf = data_dir / "canary.toml"
    conf.write_text(
        f'[canary]\ndata_dir = "{data_dir}"\nlog_format = "console"\n[control]\ndsn = "{control_dsn}"\n'
        f'[[datastores]]\nname = "shop"\ndsn = "{shop.dsn}"\n[[datastores.tables]]\ntable = "public.customers"\ncount = 2\n')
    assert main(["-c", str(conf), "--log-level", "error", "coverage", "report"]) == 1
    out = capsys.readouterr().out
    assert "| SELECT and COPY TO by ordinary roles | **not covered** ⚠ claimed |" in out
    assert main(["-c", str(conf), "--log-level", "error", "coverage", "report", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["open_claims"] >= 1
    assert main(["-c", str(conf), "--log-level", "error", "coverage", "report", "--datastore", "nope"]) == 2


async def test_copies_path_follows_the_copy_sweep(shop: Shop, pg_server: PostgresServer, open_test_runtime: OpenRuntime,
                                                  make_config: MakeConfig) -> None:
    """With ``coverage.sweep`` on, the copies path is a claimed open path until the sweep has run, and
    partly covered after (a copy is found within an interval; reads of it are not detected)."""
    cfg = make_config(coverage={"sweep": True},
                      datastores=[{"name": "shop", "dsn": shop.dsn, "jsonlog_dir": str(pg_server.log_dir),
                                   "tables": [{"table": "public.customers", "count": 2}]}])
    rt = await open_test_runtime(cfg)
    await PostgresSeeder(cfg.datastores[0], rt.registry, seed=6).apply()
    before = await coverage_report(cfg, rt.pool)
    assert _paths(before)["copies"] == (OPEN, _paths(before)["copies"][1], True)
    assert "has not run yet" in _paths(before)["copies"][1] and before["open_claims"] >= 1
    await CopySweep(rt).sweep_once()
    after = _paths(await coverage_report(cfg, rt.pool))
    assert after["copies"][0] == PARTLY and "last ran" in after["copies"][1]
