"""Enrolling a copy the sweep found (``canary coverage enroll``): the copy's canary rows are tripwired
like the original's (an ordinary role reading the copy pages, with the canary it copied), its real
rows stay silent and untouched, unsafe keys are refused, the sweep leaves the enrolled copy alone,
verify checks it and retire restores it exactly."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import structlog
from seeder_helpers import Shop
from testkit import STDOUT_SINK, MakeConfig, OpenRuntime

from canary.app import cli
from canary.errors import DatastoreError
from canary.health.copies import copy_rows
from canary.health.sweep import Budget, CopySweep
from canary.postgres.jsonlog import JsonlogSource
from canary.runtime import Runtime
from canary.seeding.postgres import PostgresSeeder
from canary.store.embedded import PostgresServer

POOL = {"email_domains": ["mail.northwind-post.com"], "phone_numbers": ["+15550100000-+15550100099"]}
COPY = "analytics.customers_2025"


@pytest.fixture
def shop_rows() -> int:
    return 300


@pytest.fixture
async def copied(shop: Shop, pg_server: PostgresServer, open_test_runtime: OpenRuntime,
                 make_config: MakeConfig) -> tuple[Runtime, dict[int, int]]:
    """3 canaries seeded, then a superuser's silent CREATE TABLE AS copy in another schema that the
    reader may read; the tail of the server's log runs. Returns the runtime and canary pk -> id."""
    cfg = make_config(datastores=[{"name": "shop", "dsn": shop.dsn, "jsonlog_dir": str(pg_server.log_dir),
                                   "tables": [{"table": "public.customers", "count": 3}]}],
                      seeding=POOL, coverage={"sweep": True}, sinks=[STDOUT_SINK], listener={"jsonlog_poll": "50ms"})
    rt = await open_test_runtime(cfg)
    await PostgresSeeder.from_config(cfg, "shop", rt.registry, seed=9).apply()
    conn = await asyncpg.connect(shop.dsn)
    try:
        await conn.execute(f"""
            CREATE SCHEMA analytics;
            CREATE TABLE {COPY} AS SELECT * FROM public.customers;
            GRANT USAGE ON SCHEMA analytics TO "{shop.reader}";
            GRANT SELECT ON {COPY} TO "{shop.reader}";
        """)
    finally:
        await conn.close()
    return rt, {int(c.location["pk"]): c.id for c in await rt.registry.active("shop")}


async def _checksum(dsn: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET row_security = off")
        return str(await conn.fetchval(f"SELECT md5(string_agg(t::text, '|' ORDER BY t.id)) FROM {COPY} t"))
    finally:
        await conn.close()


async def test_an_enrolled_copy_pages_like_the_original_and_retire_restores_it(
    copied: tuple[Runtime, dict[int, int]], shop: Shop, pg_server: PostgresServer
) -> None:
    """The sweep reports the copy; its canary rows are found by the key ``id`` and tripwired. Then the
    reader's SELECT * of the copy is one READ event per copied canary (naming the copy and the
    original canaries) while every row stays visible, a lookup of a real row in the copy is silent,
    verify is clean, the next sweep skips the copy, and retire leaves the copy byte-identical with its
    row-level security off again."""
    rt, canaries = copied
    before = await _checksum(shop.dsn)
    events = await CopySweep(rt, budget=Budget(max_seconds=30, max_bytes=1 << 30)).sweep_once()
    assert [e.evidence["object"] for e in events] == [COPY]
    ds = rt.config.datastores[0]
    rows = await copy_rows(rt, ds, COPY, "id", await CopySweep(rt).matcher())
    assert rows.members == {str(pk): cid for pk, cid in canaries.items()}
    assert set(rows.columns) == {"email", "phone"} and rows.rows == await _count(shop.dsn, f"SELECT count(*) FROM {COPY}")
    result = await PostgresSeeder(ds, rt.registry).enroll(COPY, "id", rows.members)
    assert (result.rows, result.canaries, result.values_added) == (3, 3, 3)
    rt.pipeline.start()
    tail = JsonlogSource("shop", ds.node_name, pg_server.log_dir, poll=0.05)
    await tail.start(rt)
    try:
        reader = await asyncpg.connect(shop.reader_dsn)
        try:
            seen = await reader.fetch(f"SELECT * FROM {COPY}")
            real = next(pk for pk in range(1, 300) if pk % 5 != 3 and pk not in canaries)
            await reader.fetch(f"SELECT * FROM {COPY} WHERE id = $1", real)
        finally:
            await reader.close()
        assert len(seen) == await _count(shop.dsn, f"SELECT count(*) FROM {COPY}")
        found: list[asyncpg.Record] = []
        deadline = asyncio.get_running_loop().time() + 8
        while len(found) < 3 and asyncio.get_running_loop().time() < deadline:
            found = await rt.pool.fetch("SELECT * FROM events WHERE source LIKE 'jsonlog:%' AND kind = 'read'")
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        found = await rt.pool.fetch("SELECT * FROM events WHERE source LIKE 'jsonlog:%' AND kind = 'read'")
    finally:
        await tail.stop()
    assert sorted(r["canary_id"] for r in found) == sorted(canaries.values())
    assert {r["evidence"]["table"] for r in found} == {COPY} and {r["actor"]["user"] for r in found} == {shop.reader}
    assert (await PostgresSeeder(ds, rt.registry).verify()).findings == []
    again = CopySweep(rt, budget=Budget(max_seconds=30, max_bytes=1 << 30))
    assert await again.sweep_once() == []
    assert again.summaries[0].skipped.get("armed", 0) >= 2
    await PostgresSeeder(ds, rt.registry).retire()
    assert await _checksum(shop.dsn) == before
    conn = await asyncpg.connect(shop.dsn)
    try:
        state = await conn.fetchrow(f"SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = '{COPY}'::regclass")
        policies = await conn.fetchval(f"SELECT count(*) FROM pg_policy WHERE polrelid = '{COPY}'::regclass")
    finally:
        await conn.close()
    assert (state["relrowsecurity"], state["relforcerowsecurity"], policies) == (False, False, 0)


async def _count(dsn: str, sql: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET row_security = off")
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


async def test_unsafe_keys_are_refused(copied: tuple[Runtime, dict[int, int]], shop: Shop) -> None:
    """The key may not be a column holding canary contact values, may not be shared by a real row
    and a canary row, and must exist; a copy holding no canary has nothing to enroll."""
    rt, canaries = copied
    ds = rt.config.datastores[0]
    matcher = await CopySweep(rt).matcher()
    with pytest.raises(DatastoreError, match="holds canary contact values"):
        await copy_rows(rt, ds, COPY, "email", matcher)
    with pytest.raises(DatastoreError, match="no column"):
        await copy_rows(rt, ds, COPY, "nope", matcher)
    conn = await asyncpg.connect(shop.dsn)
    try:
        canary_pk = next(iter(canaries))
        await conn.execute(f"UPDATE {COPY} SET id = {canary_pk} WHERE id = 1")
        await conn.execute("CREATE TABLE analytics.clean AS SELECT * FROM public.customers WHERE id < 100 AND id % 5 <> 3")
    finally:
        await conn.close()
    with pytest.raises(DatastoreError, match="shared with other rows"):
        await copy_rows(rt, ds, COPY, "id", matcher)
    rows = await copy_rows(rt, ds, "analytics.clean", "id", matcher)
    assert rows.members == {}
    with pytest.raises(DatastoreError, match="nothing to enroll"):
        await PostgresSeeder(ds, rt.registry).enroll("analytics.clean", "id", rows.members)
    with pytest.raises(DatastoreError, match="armed already"):
        await PostgresSeeder(ds, rt.registry).enroll("public.customers", "id", {"1": next(iter(canaries.values()))})


async def test_the_enroll_command(copied: tuple[Runtime, dict[int, int]], shop: Shop, data_dir: Path, control_dsn: str,
                                  tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``canary coverage enroll --datastore shop --object analytics.customers_2025`` keys the copy on the
    canary table's primary key by default and prints counts and columns, never a key or a value."""
    rt, canaries = copied
    monkeypatch.setenv("CANARY_MASTER_KEY", base64.b64encode(bytes(range(32))).decode())
    path = tmp_path / "canary.toml"
    path.write_text(f'[canary]\ndata_dir = "{data_dir}"\nlog_level = "warning"\n[control]\ndsn = "{control_dsn}"\n'
                    f'[[datastores]]\nname = "shop"\ndsn = "{shop.dsn}"\n')
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, ["-c", str(path), "coverage", "enroll", "--datastore", "shop", "--object", COPY])
    structlog.reset_defaults()
    out = capsys.readouterr().out
    assert code == 0, out
    doc = json.loads(out)
    assert (doc["covered_by"], doc["key"], doc["canary_rows"], doc["canaries"]) == ("tripwire", "id", 3, 3)
    emails = [v for c in canaries.values() for k, v in await rt.registry.values_of(c) if k == "email"]
    assert emails and not any(e.lower() in out.lower() for e in emails)
    assert urlsplit(shop.dsn).password not in out
