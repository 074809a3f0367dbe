"""Replication and decoding paths against real servers: a PostgreSQL 15 primary with ``wal_level =
logical``, ``log_replication_commands`` and pgaudit; ``pg_recvlogical``, ``pg_basebackup`` and a real
logical-replication subscriber (the embedded PostgreSQL 16) as the insider's tools. Each path is an
event with who and from where, and the replication watch sees the slots and publications."""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from seeder_helpers import SHOP_DDL, Shop, shop_database
from testkit import STDOUT_SINK, MakeConfig, OpenRuntime, fresh_database

from canary.events import EventKind, Severity
from canary.health import replication as watch
from canary.postgres.audit import configure_object_audit
from canary.postgres.jsonlog import JsonlogSource
from canary.postgres.record import RecordContext
from canary.postgres.replication import replication_detection
from canary.runtime import Runtime
from canary.seeding.postgres import PostgresSeeder
from canary.store.embedded import PostgresServer

BIN = Path("/usr/lib/postgresql/15/bin")
PGAUDIT = Path("/usr/lib/postgresql/15/lib/pgaudit.so")
CTX = RecordContext("shop", "primary", "jsonlog:primary", replicas=("10.1.2.0/24",))


@pytest.fixture(scope="module")
def logical_primary() -> Iterator[PostgresServer]:
    """Debian PostgreSQL 15 that publishes: wal_level logical, replication commands logged, pgaudit."""
    if not (BIN / "pg_recvlogical").exists():
        pytest.skip("Debian PostgreSQL 15 client tools are not installed")
    server = PostgresServer(
        Path(tempfile.mkdtemp(prefix="canary-logical-")), bin_dir=BIN,
        settings={"wal_level": "logical", "max_wal_senders": 10, "max_replication_slots": 10, "log_connections": True,
                  "log_replication_commands": True, "shared_preload_libraries": "pgaudit" if PGAUDIT.exists() else ""},
        hba_extra=("host replication postgres 127.0.0.1/32 scram-sha-256",),
    )
    server.start()
    yield server
    server.destroy()


@pytest.fixture
async def shop(logical_primary: PostgresServer) -> AsyncIterator[Shop]:
    async with fresh_database(logical_primary, "shop") as dsn, shop_database(logical_primary, dsn, rows=300) as s:
        yield s


@pytest.fixture
async def runtime(shop: Shop, logical_primary: PostgresServer, open_test_runtime: OpenRuntime,
                  make_config: MakeConfig) -> AsyncIterator[Runtime]:
    """3 canaries seeded on the primary, object audit on, its jsonlog tailed, pipeline running."""
    cfg = make_config(sinks=[STDOUT_SINK],
                      datastores=[{"name": "shop", "dsn": shop.dsn, "node": "primary",
                                   "tables": [{"table": "public.customers", "count": 3}]}])
    rt = await open_test_runtime(cfg)
    await PostgresSeeder(cfg.datastores[0], rt.registry, seed=13).apply()
    if PGAUDIT.exists():
        conn = await asyncpg.connect(shop.dsn)
        try:
            await configure_object_audit(conn, "canary_auditor", ["public.customers"])
        finally:
            await conn.close()
    tail = JsonlogSource("shop", "primary", logical_primary.log_dir, poll=0.05)
    rt.pipeline.start()
    await tail.start(rt)
    try:
        yield rt
    finally:
        await tail.stop()


def _env(server: PostgresServer) -> dict[str, str]:
    return {**os.environ, "PGPASSWORD": server.password, "PGCONNECT_TIMEOUT": "10"}


async def _events(rt: Runtime, where: str, *args: Any, count: int = 1, timeout: float = 10.0) -> list[asyncpg.Record]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await rt.pool.fetch(f"SELECT * FROM events WHERE {where} ORDER BY id", *args)
        if len(rows) >= count or asyncio.get_running_loop().time() > deadline:
            return list(rows)
        await asyncio.sleep(0.1)


async def test_pg_recvlogical_slot_and_stream_are_one_incident_with_who_and_where(
    runtime: Runtime, shop: Shop, logical_primary: PostgresServer
) -> None:
    """``pg_recvlogical --create-slot`` then ``--start`` from 127.0.0.1: the slot is a TAMPER event and
    the decoding stream an EXPORTED event, both naming the role, the client and the slot, in one
    incident; the replication watch (baseline taken before) reports the new slot in that incident too."""
    ds = runtime.config.datastores[0]
    assert await watch.watch(runtime.config, runtime.pool, ds) == []  # the baseline
    base = ["-h", "127.0.0.1", "-p", str(logical_primary.port), "-U", "postgres", "-d", shop.db, "--slot", "exfil"]
    subprocess.run([str(BIN / "pg_recvlogical"), *base, "--create-slot", "-P", "test_decoding"], env=_env(logical_primary),
                   check=True, capture_output=True, timeout=30)
    try:
        proc = subprocess.Popen([str(BIN / "pg_recvlogical"), *base, "--start", "-f", os.devnull], env=_env(logical_primary),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            rows = await _events(runtime, "evidence->>'signal' = 'replication_command'", count=2)
            found = await watch.watch(runtime.config, runtime.pool, ds)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        await runtime.submit_many(found)
        assert sorted((r["kind"], r["evidence"]["how"]) for r in rows) == [
            ("exported", "logical_decoding"), ("tamper", "replication_slot_created")]
        assert all(r["actor"]["user"] == "postgres" and r["origin"]["client_addr"] == "127.0.0.1"
                   and r["evidence"]["slot"] == "exfil" for r in rows)
        slot_events = [e for e in found if e.evidence.get("object") == "exfil"]
        assert [(e.kind, e.evidence["problem"]) for e in slot_events] == [(EventKind.TAMPER, "replication_slot_created")]
        walsenders = [e for e in found if e.evidence.get("object_kind") == "walsender"]
        assert [(e.kind, e.evidence["problem"], e.evidence["slot"]) for e in walsenders] == [
            (EventKind.EXPORTED, "logical_decoding_stream", "exfil")]
        incidents = await runtime.pool.fetch("SELECT DISTINCT incident_id FROM events WHERE evidence->>'slot' = 'exfil'"
                                             " OR evidence->>'object' = 'exfil'")
        assert len(incidents) == 1
    finally:
        conn = await asyncpg.connect(shop.dsn)
        try:
            await conn.execute("SELECT pg_drop_replication_slot('exfil')")
        finally:
            await conn.close()


async def test_publication_of_canary_table_and_subscriber_initial_copy(
    runtime: Runtime, shop: Shop, logical_primary: PostgresServer, pg_server: PostgresServer
) -> None:
    """A publication that includes customers is a TAMPER event naming its owner; a real subscriber
    (PostgreSQL 16) copying it is an EXPORTED event (the table-sync slot) from the subscriber's
    address, and its copy does hold the canary rows."""
    ds = runtime.config.datastores[0]
    assert await watch.watch(runtime.config, runtime.pool, ds) == []
    conn = await asyncpg.connect(shop.dsn)
    try:
        await conn.execute("CREATE PUBLICATION shop_pub FOR TABLE public.customers")
    finally:
        await conn.close()
    found = await watch.watch(runtime.config, runtime.pool, ds)
    assert [(e.kind, e.severity, e.evidence["problem"], e.evidence["canary_tables"], e.actor["user"]) for e in found] == [
        (EventKind.TAMPER, Severity.CRITICAL, "publication_includes_canary_table", ["public.customers"], "postgres")]
    dep = await runtime.pool.fetchval("SELECT id FROM deployments")
    canary_pks = {int(r["pk"]) for r in (await runtime.registry.manifest(dep))["rows"]}
    async with fresh_database(pg_server, "sub") as sub_dsn:
        sub = await asyncpg.connect(sub_dsn)
        try:
            await sub.execute(SHOP_DDL)
            conninfo = (f"host=127.0.0.1 port={logical_primary.port} dbname={shop.db} user=postgres "
                        f"password={logical_primary.password}")
            await sub.execute(f"CREATE SUBSCRIPTION shop_sub CONNECTION '{conninfo}' PUBLICATION shop_pub")
            rows = await _events(runtime, "evidence->>'how' = 'publication_initial_copy'", timeout=20)
            assert rows, "no event for the subscriber's initial copy"
            assert (rows[0]["kind"], rows[0]["severity"]) == ("exported", "critical")
            assert rows[0]["actor"]["user"] == "postgres" and rows[0]["origin"]["client_addr"] == "127.0.0.1"
            deadline = asyncio.get_running_loop().time() + 20
            copied: set[int] = set()
            while not canary_pks <= copied and asyncio.get_running_loop().time() < deadline:
                copied = {r["id"] for r in await sub.fetch("SELECT id FROM public.customers")}
                await asyncio.sleep(0.2)
            assert canary_pks <= copied, "the subscriber's copy should hold the canaries"
            if PGAUDIT.exists():
                audit = await _events(runtime, "evidence->>'signal' = 'pgaudit' AND evidence->>'how' = 'copy'")
                assert audit and audit[0]["incident_id"] == rows[0]["incident_id"]
        finally:
            await sub.execute("DROP SUBSCRIPTION IF EXISTS shop_sub")
            await sub.close()
    conn = await asyncpg.connect(shop.dsn)
    try:
        await conn.execute("DROP PUBLICATION shop_pub")
    finally:
        await conn.close()


async def test_pg_basebackup_is_an_export(runtime: Runtime, logical_primary: PostgresServer, tmp_path: Path) -> None:
    """``pg_basebackup`` (a copy of every canary in the cluster) is one EXPORTED / CRITICAL event with
    the role and client address; its own temporary slot and WAL stream add no second incident."""
    target = tmp_path / "copy"
    done = await asyncio.to_thread(
        subprocess.run, [str(BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(logical_primary.port), "-U", "postgres",
                         "-D", str(target), "-X", "stream", "-c", "fast"],
        env=_env(logical_primary), capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()
    rows = await _events(runtime, "evidence->>'signal' = 'replication_command'")
    await asyncio.sleep(0.5)
    rows = await _events(runtime, "evidence->>'signal' = 'replication_command'")
    assert [(r["kind"], r["evidence"]["how"]) for r in rows] == [("exported", "base_backup")]
    assert rows[0]["actor"] == {"user": "postgres", "application_name": "pg_basebackup"}
    assert rows[0]["origin"]["client_addr"] == "127.0.0.1"


@pytest.mark.parametrize(("message", "backend", "remote", "expected"), [
    ('received replication command: CREATE_REPLICATION_SLOT "a""b" LOGICAL "pgoutput"', "walsender", "1.2.3.4",
     ("tamper", "replication_slot_created", 'a"b')),
    ("received replication command: CREATE_REPLICATION_SLOT plain TEMPORARY LOGICAL test_decoding", "walsender", "1.2.3.4",
     ("tamper", "replication_slot_created", "plain")),
    ('received replication command: CREATE_REPLICATION_SLOT "pg_16399_sync_16385_7311" LOGICAL pgoutput (SNAPSHOT \'use\')',
     "walsender", "1.2.3.4", ("exported", "publication_initial_copy", "pg_16399_sync_16385_7311")),
    ("received replication command: START_REPLICATION 0/3000000 TIMELINE 1", "walsender", "1.2.3.4",
     ("exported", "physical_replication", None)),
    ("received replication command: START_REPLICATION 0/3000000 TIMELINE 1", "walsender", "10.1.2.7", None),
    ('received replication command: START_REPLICATION SLOT "pg_basebackup_1" 0/2000000 TIMELINE 1', "walsender", "1.2.3.4", None),
    ('received replication command: CREATE_REPLICATION_SLOT "pg_basebackup_1" TEMPORARY PHYSICAL ( RESERVE_WAL)',
     "walsender", "1.2.3.4", None),
    ("received replication command: IDENTIFY_SYSTEM", "walsender", "1.2.3.4", None),
    ("received replication command: BASE_BACKUP ( LABEL 'x')", "client backend", "1.2.3.4", ("tamper", None, None)),
    ("received replication command: ", "walsender", "1.2.3.4", None),
    ("received replication command: CREATE_REPLICATION_SLOT", "walsender", "1.2.3.4", None),
])
def test_replication_commands(message: str, backend: str, remote: str, expected: tuple[str, str, str | None] | None) -> None:
    """Replication commands are parsed to what they do (quoted slot names included); configured
    standbys' addresses, base backups' own slots, harmless commands, lines no WAL sender wrote and
    cut-off commands give nothing."""
    found = replication_detection({"message": message, "backend_type": backend, "remote_host": remote, "user": "rep",
                                   "pid": 5, "timestamp": "2026-12-01 10:00:00.000 UTC"}, CTX)
    got = None if found is None else (str(found.kind), found.evidence.get("how"), found.evidence.get("slot"))
    assert got == expected


async def test_a_raised_replication_line_is_a_forgery(runtime: Runtime, shop: Shop) -> None:
    """Any role can write 'received replication command: BASE_BACKUP' with RAISE LOG; it is reported
    as a forgery by that session, never as a base backup."""
    conn = await asyncpg.connect(shop.reader_dsn)
    try:
        await conn.execute("DO $$ BEGIN RAISE LOG 'received replication command: BASE_BACKUP ( LABEL ''x'')'; END $$")
    finally:
        await conn.close()
    rows = await _events(runtime, "actor->>'user' = $1", shop.reader)
    assert [(r["kind"], r["evidence"].get("signal")) for r in rows] == [("tamper", "forged_log_line")]
