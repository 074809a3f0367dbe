"""pgaudit object audit, the DDL guard and the coverage report as a managed PostgreSQL admin role (not a
superuser) on PostgreSQL 15 with pgaudit: canary sets up what the role may (audit role, grants), never
ALTER SYSTEM; what only the provider's console can set is named with its value and where to set it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from managed_support import SETTINGS, AdminShop, admin_shop, managed_server, parameter_group

from canary.crypto import generate_key
from canary.postgres import managed as mg
from canary.postgres.audit import audit_state, configure_object_audit
from canary.postgres.tamper import install_event_trigger
from canary.store.embedded import PostgresServer


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with managed_server() as s:
        yield s


async def _group(server: PostgresServer, provider: str) -> AsyncIterator[AdminShop]:
    await parameter_group(server, **{k.replace(".", "__"): v for k, v in SETTINGS.items()},
                          pgaudit__role=("rds_pgaudit" if provider == "rds" else "canary_auditor"))
    async with admin_shop(server, provider) as a:
        yield a


@pytest.fixture
async def rds(server: PostgresServer) -> AsyncIterator[AdminShop]:
    """The shop owned by an rds_superuser-like admin; the parameter group holds what canary asks for."""
    async for a in _group(server, "rds"):
        yield a


@pytest.fixture
async def cloudsql(server: PostgresServer) -> AsyncIterator[AdminShop]:
    """The shop owned by a cloudsqlsuperuser-like admin (no pg_read_all_settings)."""
    async for a in _group(server, "cloudsql"):
        yield a


def _cli(args: list[str], config: Path, key: bytes) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CANARY_MASTER_KEY": base64.b64encode(key).decode()}
    return subprocess.run([sys.executable, "-m", "canary", "-c", str(config), *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


async def test_cli_as_rds_admin_names_the_parameter_group_settings(rds: AdminShop, server: PostgresServer, control_dsn: str,
                                                                   data_dir: Path) -> None:
    """With the DSN of an rds_superuser-like role: `canary plan` names pgaudit.role = rds_pgaudit in the
    parameter group while it is unset; `canary coverage audit` creates the audit role and its grant, leaves
    the event trigger out (superusers only here) and says what covers DDL tampering instead; with
    log_connections off `canary verify` exits 1 naming it, and `canary coverage report` lists it."""
    config = data_dir / "canary.toml"
    config.write_text(
        f'[canary]\ndata_dir = "{data_dir}"\n[control]\ndsn = "{control_dsn}"\n[coverage]\npgaudit_role = "rds_pgaudit"\n'
        f'[[datastores]]\nname = "shop"\ndsn = "{rds.admin_dsn}"\njsonlog_dir = "{server.log_dir}"\n'
        'tables = [{ table = "public.customers", count = 3 }]\n')
    key = generate_key()
    await parameter_group(server, pgaudit__role=None)
    try:
        plan = _cli(["plan"], config, key)
        assert plan.returncode == 0, plan.stderr
        assert "advised: set pgaudit.role = rds_pgaudit (now ) in the DB instance's custom DB parameter group" in plan.stdout
        assert f"note: {rds.admin} is not a superuser (provider rds, detected)" in plan.stdout
    finally:
        await parameter_group(server, pgaudit__role="rds_pgaudit")
    seeded = _cli(["seed"], config, key)
    assert seeded.returncode == 0, seeded.stderr
    audit = _cli(["coverage", "audit", "--datastore", "shop"], config, key)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    doc = json.loads(audit.stdout)
    assert doc["problems"] == [] and doc["event_trigger"] is False and doc["settings"] == []
    assert any("DDL log lines instead" in n for n in doc["notes"])
    su = await asyncpg.connect(rds.shop.dsn)
    try:
        assert await su.fetchval("SELECT has_table_privilege('rds_pgaudit', 'public.customers', 'SELECT')")
        assert await su.fetchval("SELECT count(*) FROM pg_proc WHERE proname = 'ddl_log'") == 0  # rolled back with the trigger
    finally:
        await su.close()
    assert _cli(["verify"], config, key).returncode == 0
    await parameter_group(server, log_connections="off")
    try:
        bad = _cli(["verify"], config, key)
        assert bad.returncode == 1
        assert "3 canaries checked, OK" in bad.stdout
        assert "required: set log_connections = on (now off) in the DB instance's custom DB parameter group" in bad.stdout
        report = _cli(["coverage", "report", "--json"], config, key)
        paths = {p["path"]: p for p in json.loads(report.stdout)["datastores"][0]["paths"]}
        assert paths["server_settings"]["status"] == "not covered" and "log_connections = on" in paths["server_settings"]["why"]
        assert report.returncode == 1  # a path the configuration claims is open
    finally:
        await parameter_group(server, log_connections="on")
    assert _cli(["retire"], config, key).returncode == 0


async def test_audit_setup_without_superuser_or_settings_privilege(cloudsql: AdminShop, server: PostgresServer) -> None:
    """A cloudsqlsuperuser-like admin cannot read shared_preload_libraries: audit state still sees pgaudit
    loaded (from its own settings), configure_object_audit grants without ALTER SYSTEM (pgaudit.role stays
    what the flags say), a refused CREATE EXTENSION leaves the grants in place and is reported, the event
    trigger is refused with nothing left behind, and the settings are worded for database flags."""
    admin = await asyncpg.connect(cloudsql.admin_dsn)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await admin.fetchval("SELECT current_setting('shared_preload_libraries')")
        role = await mg.server_role(admin)
        assert (role.provider, role.detected, role.superuser, role.read_settings) == ("cloudsql", True, False, False)
        await admin.execute("CREATE TABLE public.extra (id int PRIMARY KEY)")
        state = await configure_object_audit(admin, "canary_auditor", ["public.customers"])
        assert state.loaded and state.extension and state.problems("canary_auditor", ["public.customers"]) == []
        su = await asyncpg.connect(cloudsql.shop.dsn)
        try:
            await su.execute("DROP EXTENSION pgaudit")
        finally:
            await su.close()
        state = await configure_object_audit(admin, "canary_auditor", ["public.customers", "public.extra"])
        assert state.problems("canary_auditor", ["public.customers", "public.extra"]) == ["pgaudit_extension_missing"]
        await admin.execute("CREATE SCHEMA rowsec")
        await admin.execute("CREATE TABLE rowsec.settings (i bytea NOT NULL, o bytea NOT NULL)")
        await admin.execute("INSERT INTO rowsec.settings VALUES ('\\x00', '\\x00')")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with admin.transaction():
                await install_event_trigger(admin, "rowsec", "shop")
        assert await admin.fetchval("SELECT count(*) FROM pg_proc WHERE proname = 'ddl_log'") == 0
        await parameter_group(server, pgaudit__role=None, pgaudit__log="none")
        try:
            settings, notes = await mg.requirements(admin, await mg.server_role(admin), "canary_auditor")
        finally:
            await parameter_group(server, pgaudit__role="canary_auditor", pgaudit__log=SETTINGS["pgaudit.log"])
        named = {s.setting: s for s in settings}
        assert named["pgaudit.role"].required and "database flags" in named["pgaudit.role"].where
        assert named["pgaudit.log"].value == "includes ddl, role" and not named["pgaudit.log"].required
        assert named["role membership"].value == "pg_monitor" and not named["role membership"].required
        assert any("until pgaudit.log includes ddl" in n for n in notes)
        azure = await mg.server_role(admin, "azure")
        _, notes = await mg.requirements(admin, azure, "canary_auditor")
        assert any("cannot be installed" in n and "azure does not let its admin role" in n for n in notes)
        assert (await audit_state(admin, "canary_auditor")).loaded
    finally:
        await admin.close()
