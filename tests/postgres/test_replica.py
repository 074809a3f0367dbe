"""A real primary and hot standby (pg_basebackup -R on loopback, Debian PostgreSQL 15): a canary read
on the standby alerts with the standby's node name, and the dead man's switch works on the
read-only standby."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from seeder_helpers import Shop, shop_database
from testkit import STDOUT_SINK, MakeConfig, OpenRuntime, fresh_database

from canary.app.commands import status
from canary.events import EventKind, Severity
from canary.health import replication
from canary.health.checks import SelfActivity, check_heartbeat
from canary.postgres.jsonlog import JsonlogSource
from canary.runtime import Runtime
from canary.seeding.postgres import PostgresSeeder
from canary.store.embedded import PostgresServer

BIN = Path("/usr/lib/postgresql/15/bin")
STANDBY = "standby-1"


@pytest.fixture(scope="module")
def replica_pair() -> Iterator[tuple[PostgresServer, PostgresServer]]:
    """A primary and a streaming hot standby made with ``pg_basebackup -R``, both on 127.0.0.1."""
    if not (BIN / "pg_basebackup").exists():
        pytest.skip("Debian PostgreSQL 15 (pg_basebackup) is not installed")
    primary = PostgresServer(Path(tempfile.mkdtemp(prefix="canary-primary-")), bin_dir=BIN,
                             settings={"wal_level": "replica", "max_wal_senders": 4, "hot_standby": True},
                             hba_extra=("host replication postgres 127.0.0.1/32 scram-sha-256",))
    primary.start()
    standby_dir = Path(tempfile.mkdtemp(prefix="canary-standby-"))
    standby = PostgresServer(standby_dir, bin_dir=BIN, settings={"hot_standby": True})
    try:
        if standby.run_as:
            entry = pwd.getpwnam(standby.run_as)
            os.chown(standby_dir, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            [str(BIN / "pg_basebackup"), "-D", str(standby.pgdata), "-R", "-X", "stream", "-c", "fast",
             "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"],
            env={**os.environ, "PGPASSWORD": primary.password}, user=standby.run_as, check=True, timeout=120,
            capture_output=True, cwd=standby_dir,
        )
        shutil.copy2(primary.data_dir / "canary-superuser.password", standby_dir / "canary-superuser.password")
        standby.start()
        yield primary, standby
    finally:
        standby.destroy()
        primary.destroy()


@pytest.fixture
async def shop(replica_pair: tuple[PostgresServer, PostgresServer]) -> AsyncIterator[Shop]:
    primary, _ = replica_pair
    async with fresh_database(primary, "shop") as dsn, shop_database(primary, dsn, rows=300) as s:
        yield s


@pytest.fixture
async def runtime(shop: Shop, open_test_runtime: OpenRuntime, make_config: MakeConfig,
                  replica_pair: tuple[PostgresServer, PostgresServer]) -> Runtime:
    """A runtime seeded on the primary (3 canaries) that also tails the standby's jsonlog, pipeline running."""
    _, standby = replica_pair
    cfg = make_config(
        sinks=[STDOUT_SINK],
        datastores=[{"name": "shop", "dsn": shop.dsn, "node": "primary", "tables": [{"table": "public.customers", "count": 3}]}],
        coverage={"nodes": [{"name": STANDBY, "datastore": "shop", "jsonlog_dir": str(standby.log_dir),
                             "dsn": standby.dsn(shop.db)}]},
    )
    rt = await open_test_runtime(cfg)
    await PostgresSeeder(cfg.datastores[0], rt.registry, seed=11).apply()
    rt.pipeline.start()
    return rt


async def _replicated(standby: PostgresServer, db: str, pks: list[int], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            conn = await asyncpg.connect(standby.dsn(db))
            try:
                n = await conn.fetchval("SELECT count(*) FROM public.customers WHERE id = ANY($1::bigint[])", pks)
                policy = await conn.fetchval("SELECT count(*) FROM pg_policy WHERE polname = 'rowsec_r'")
            finally:
                await conn.close()
            if n == len(pks) and policy:
                return
        except (asyncpg.InvalidCatalogNameError, asyncpg.CannotConnectNowError):
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the standby did not replay the seeded canaries in time")
        await asyncio.sleep(0.1)


async def test_read_on_the_standby_alerts_with_the_standby_node(
    runtime: Runtime, shop: Shop, replica_pair: tuple[PostgresServer, PostgresServer]
) -> None:
    """An ordinary reader selecting a canary row on the hot standby is a READ event for that canary,
    observed in the standby's own jsonlog and carrying node 'standby-1' (not the primary's name)."""
    _, standby = replica_pair
    canary = (await runtime.registry.active("shop"))[0]
    pk = int(canary.location["pk"])
    await _replicated(standby, shop.db, [pk])
    node = runtime.config.coverage.nodes[0]
    assert node.jsonlog_dir is not None
    tail = JsonlogSource("shop", node.name, node.jsonlog_dir, poll=0.05)
    await tail.start(runtime)
    try:
        reader = await asyncpg.connect(standby.dsn(shop.db, user=shop.reader, password=urlsplit(shop.reader_dsn).password))
        try:
            assert await reader.fetchval("SELECT pg_is_in_recovery()")
            rows = await reader.fetch("SELECT id, email FROM public.customers WHERE id = $1", pk)
        finally:
            await reader.close()
        assert len(rows) == 1
        deadline = asyncio.get_running_loop().time() + 8
        events: list[asyncpg.Record] = []
        while not events and asyncio.get_running_loop().time() < deadline:
            events = await runtime.pool.fetch("SELECT * FROM events WHERE kind = 'read'")
            await asyncio.sleep(0.1)
    finally:
        await tail.stop()
    assert events, "no event for the read on the standby"
    ev = events[0]
    assert ev["canary_id"] == canary.id
    assert ev["origin"]["node"] == STANDBY and ev["origin"]["datastore"] == "shop"
    assert ev["actor"]["user"] == shop.reader
    assert ev["source"] == f"jsonlog:{STANDBY}"
    inc = await runtime.pool.fetchrow("SELECT * FROM incidents WHERE id = $1", ev["incident_id"])
    assert inc["origin"]["node"] == STANDBY and inc["suppressed_by"] is None


async def test_heartbeat_on_the_read_only_standby_is_ingested(runtime: Runtime) -> None:
    """The dead man's switch works on a hot standby: DO + RAISE LOG runs read-only, the standby's
    log tail ingests it; with no tail the same check reports the stalled ingestion."""
    node = runtime.config.coverage.nodes[0]
    assert node.jsonlog_dir is not None and node.dsn is not None
    activity = SelfActivity(runtime.keyring)
    runtime.pipeline.suppress.append(activity)
    tail = JsonlogSource("shop", node.name, node.jsonlog_dir, poll=0.05)
    await tail.start(runtime)
    try:
        alive = await check_heartbeat(runtime, activity, node.name, "shop", node.dsn.reveal(), timeout=5.0)
    finally:
        await tail.stop()
    dead = await check_heartbeat(runtime, activity, node.name, "shop", node.dsn.reveal(), timeout=1.0)
    assert alive == []
    assert [e.evidence["problem"] for e in dead] == ["log_ingestion_stalled"]
    assert dead[0].origin["node"] == STANDBY


async def test_standbys_are_discovered_from_the_primary(
    runtime: Runtime, shop: Shop, make_config: MakeConfig, replica_pair: tuple[PostgresServer, PostgresServer]
) -> None:
    """The replication watch finds the streaming standby from the primary's WAL senders. While no
    node with its address in ``replication_from`` ingests its log it is a HEALTH / ERROR gap that
    pages once (the same event on every look) and ``canary status`` shows it; once configured, no gap."""
    _, standby = replica_pair
    ds = runtime.config.datastores[0]
    looks = [await replication.watch(runtime.config, runtime.pool, ds) for _ in range(2)]
    gaps = [[e for e in found if e.evidence.get("problem") == "standby_log_not_ingested"] for found in looks]
    assert [len(g) for g in gaps] == [1, 1] and gaps[0][0].key == gaps[1][0].key
    gap = gaps[0][0]
    assert (gap.kind, gap.severity, gap.origin["client_addr"]) == (EventKind.HEALTH, Severity.ERROR, "127.0.0.1")
    for found in looks:
        await runtime.submit_many(found)
    assert await runtime.pool.fetchval("SELECT count(*) FROM incidents WHERE group_key LIKE 'standby-gap:%'") == 1
    assert await runtime.pool.fetchval("SELECT count(*) FROM outbox") == 1
    doc = await status.gather(runtime.pool)
    assert [(g["datastore"], g["standby"].split("/")[0]) for g in doc["detection"]["standby_gaps"]] == [("shop", "127.0.0.1")]
    assert "GAP: standby 127.0.0.1/" in status.render_text(doc)
    covered = make_config(
        datastores=[{"name": "shop", "dsn": shop.dsn, "node": "primary", "tables": [{"table": "public.customers", "count": 3}]}],
        coverage={"nodes": [{"name": STANDBY, "datastore": "shop", "jsonlog_dir": str(standby.log_dir),
                             "replication_from": ["127.0.0.1/32"]}]},
    )
    found = await replication.watch(covered, runtime.pool, covered.datastores[0])
    assert [e for e in found if e.evidence.get("problem") == "standby_log_not_ingested"] == []
