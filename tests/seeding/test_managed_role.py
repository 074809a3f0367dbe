"""Seeding as a managed PostgreSQL admin role (RDS' rds_superuser, Cloud SQL's cloudsqlsuperuser: not a
superuser) against PostgreSQL 15 with pgaudit: plan / apply / verify / retire, a canary read that pages,
the scheduled check, nothing written outside the canary rows, and the server settings the provider's
console must hold named by plan and verify."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from managed_support import SETTINGS, AdminShop, admin_shop, managed_server, parameter_group
from seeder_helpers import checksum
from testkit import STDOUT_SINK, MakeConfig, OpenRuntime

from canary.config import Config
from canary.health.checks import check_canaries
from canary.postgres.jsonlog import JsonlogSource
from canary.runtime import Runtime
from canary.seeding.postgres import PostgresSeeder
from canary.store.embedded import PostgresServer

COUNT = 3


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with managed_server() as s:
        yield s


@pytest.fixture(params=["rds", "cloudsql"])
async def managed(request: pytest.FixtureRequest, server: PostgresServer) -> AsyncIterator[AdminShop]:
    """The shop owned by a provider-like admin; the parameter group holds what canary asks for."""
    await parameter_group(server, **{k.replace(".", "__"): v for k, v in SETTINGS.items()},
                          pgaudit__role=("rds_pgaudit" if request.param == "rds" else "canary_auditor"))
    async with admin_shop(server, request.param) as a:
        yield a


def _config(make_config: MakeConfig, a: AdminShop, server: PostgresServer) -> Config:
    return make_config(sinks=[STDOUT_SINK], coverage={"pgaudit_role": a.audit_role},
                       datastores=[{"name": "shop", "dsn": a.admin_dsn, "jsonlog_dir": str(server.log_dir),
                                    "tables": [{"table": "public.customers", "count": COUNT}]}])


async def _outside(dsn: str, keys: list[str]) -> tuple[int, str]:
    """(count, md5) of the customers rows that are not canaries, read as the superuser."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, md5(coalesce(string_agg(t::text, ',' ORDER BY id), '')) AS h FROM public.customers t"
            " WHERE NOT id = ANY($1::bigint[])", [int(k) for k in keys])
        return row["n"], row["h"]
    finally:
        await conn.close()


async def _events(rt: Runtime, where: str, minimum: int = 1, timeout: float = 8.0) -> list[asyncpg.Record]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await rt.pool.fetch(f"SELECT * FROM events WHERE {where} ORDER BY id")
        if len(rows) >= minimum or asyncio.get_running_loop().time() > deadline:
            return list(rows)
        await asyncio.sleep(0.1)


async def test_admin_role_seeds_detects_verifies_and_retires(managed: AdminShop, server: PostgresServer,
                                                             make_config: MakeConfig, open_test_runtime: OpenRuntime) -> None:
    """As the admin role alone: plan writes nothing and asks for no required setting; apply adds the canaries
    and changes no other row; a reader's SELECT pages through the jsonlog tail (the admin's own read is
    caught too: pg_read_all_data does not bypass row security); verify and the scheduled check are clean
    and say the DDL guard is covered by pgaudit's DDL lines; retire restores the table exactly."""
    cfg = _config(make_config, managed, server)
    rt = await open_test_runtime(cfg)
    seeder = PostgresSeeder.from_config(cfg, "shop", rt.registry, seed=3)
    before = await checksum(managed.shop.dsn)
    plan = await seeder.plan()
    assert await checksum(managed.shop.dsn) == before
    assert plan.to_add == COUNT
    assert [s for s in plan.settings if s.required] == []
    assert any(f"{managed.admin} is not a superuser (provider {managed.provider}, detected)" in n for n in plan.notes)
    assert (await seeder.apply()).added == {"public.customers": COUNT}
    keys = [str(r.location["pk"]) for r in await rt.registry.active("shop")]
    assert len(keys) == COUNT
    assert await _outside(managed.shop.dsn, keys) == before  # nothing outside the canary rows changed
    assert (await checksum(managed.shop.dsn))[0] == before[0] + COUNT

    tail = JsonlogSource("shop", "primary", server.log_dir, poll=0.05)
    rt.pipeline.start()
    await tail.start(rt)
    try:
        reader = await asyncpg.connect(managed.shop.reader_dsn, server_settings={"application_name": "etl"})
        try:
            await reader.fetch("SELECT * FROM public.customers")
        finally:
            await reader.close()
        rows = await _events(rt, f"actor->>'user' = '{managed.shop.reader}' AND canary_id IS NOT NULL", COUNT)
        assert len({r["canary_id"] for r in rows}) == COUNT
        assert await rt.pool.fetchval("SELECT count(*) FROM outbox WHERE incident_id = $1", rows[0]["incident_id"]) == 1
        admin = await asyncpg.connect(managed.admin_dsn)
        try:
            await admin.fetch("SELECT * FROM public.customers")
        finally:
            await admin.close()
        mine = await _events(rt, f"actor->>'user' = '{managed.admin}' AND canary_id IS NOT NULL", COUNT)
        assert len({r["canary_id"] for r in mine}) == COUNT

        report = await seeder.verify()
        assert report.ok and report.checked == COUNT and [s for s in report.settings if s.required] == []
        assert any("event trigger" in n and "DDL log lines instead" in n for n in report.notes), report.notes
        assert await check_canaries(rt, cfg.datastores[0], managed.audit_role) == []
    finally:
        await tail.stop()
    await seeder.retire()
    assert await checksum(managed.shop.dsn) == before


async def test_parameter_group_settings_missing_are_named(managed: AdminShop, server: PostgresServer,
                                                          make_config: MakeConfig, open_test_runtime: OpenRuntime) -> None:
    """With pgaudit.role not set at server level, plan and verify name it (RDS: rds_pgaudit, the only value
    RDS accepts) and where the provider sets it; with log_connections off, verify names it as required
    and the scheduled check raises a HEALTH event for it."""
    cfg = _config(make_config, managed, server)
    rt = await open_test_runtime(cfg)
    seeder = PostgresSeeder.from_config(cfg, "shop", rt.registry, seed=3)
    where = "parameter group" if managed.provider == "rds" else "database flags"
    await parameter_group(server, pgaudit__role=None)
    try:
        plan = await seeder.plan()
        named = {s.setting: s for s in plan.settings}
        assert named["pgaudit.role"].value == managed.audit_role and where in named["pgaudit.role"].where
        assert not named["pgaudit.role"].required  # object audit not configured yet: advice
        await seeder.apply()
        admin = await asyncpg.connect(managed.admin_dsn)
        try:
            await admin.execute(f"CREATE ROLE {managed.audit_role} NOLOGIN")  # what `canary coverage audit` creates
        finally:
            await admin.close()
        await parameter_group(server, log_connections="off")
        report = await seeder.verify()
        named = {s.setting: s for s in report.settings}
        assert report.ok  # the canaries are intact; the settings are reported beside them
        assert named["pgaudit.role"].required and named["pgaudit.role"].current == ""
        assert (named["log_connections"].value, named["log_connections"].current, named["log_connections"].required) == ("on", "off", True)
        assert where in named["log_connections"].where
        found = await check_canaries(rt, cfg.datastores[0], managed.audit_role)
        assert [e.evidence["problem"] for e in found] == ["server_setting:log_connections", "server_setting:pgaudit.role"]
    finally:
        await parameter_group(server, log_connections="on", pgaudit__role=managed.audit_role)
        await seeder.retire()
