"""stderr and csvlog end to end: Debian's PostgreSQL 15 (pgaudit loaded) logging ``stderr,csvlog`` with
Amazon RDS's ``log_line_prefix``, canary's detection installed, and a tail reading each format: reads
page, pgaudit lines are recognised, and what a client writes into the log forges nothing."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from seeder_helpers import Shop, shop_database
from testkit import STDOUT_SINK, MakeConfig, OpenRuntime, fresh_database, incidents_when, read_record, serving, signed

from canary.crypto import Keyring
from canary.events import EventKind
from canary.health.checks import record_audit_configured
from canary.postgres.audit import configure_object_audit
from canary.postgres.heartbeat import heartbeat_detection
from canary.postgres.http_ingest import PGLOG_PATH, HttpIngest
from canary.postgres.jsonlog import JsonlogSource, tail_for
from canary.postgres.login import login_detection
from canary.postgres.read import read_detection
from canary.postgres.record import RecordContext, well_typed
from canary.postgres.tamper import trigger_detection
from canary.runtime import Runtime
from canary.seeding.postgres import PostgresSeeder
from canary.store.embedded import PostgresServer

DEBIAN_PG15 = Path("/usr/lib/postgresql/15/bin")
RDS_PREFIX = "%t:%r:%u@%d:[%p]:"
ROLE = "canary_auditor"


@pytest.fixture(scope="module")
def text_server() -> Iterator[PostgresServer]:
    """PostgreSQL 15 writing both text formats at once (``.log`` and ``.csv``) with RDS's prefix."""
    if not (DEBIAN_PG15 / "postgres").exists() or not Path("/usr/lib/postgresql/15/lib/pgaudit.so").exists():
        pytest.skip("Debian PostgreSQL 15 with pgaudit is not installed")
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="canary-pgtext-")), bin_dir=DEBIAN_PG15, settings={
        "log_connections": True, "shared_preload_libraries": "pgaudit", "log_destination": "stderr,csvlog",
        "log_line_prefix": RDS_PREFIX})
    server.start()
    yield server
    server.destroy()


@pytest.fixture
async def shop(text_server: PostgresServer) -> AsyncIterator[Shop]:
    async with fresh_database(text_server, "shop") as dsn, shop_database(text_server, dsn, rows=300) as s:
        yield s


async def _verbosity(server: PostgresServer, level: str) -> None:
    admin = await asyncpg.connect(server.dsn())
    try:
        await admin.execute(f"ALTER SYSTEM SET log_error_verbosity = '{level}'")
        await admin.execute("SELECT pg_reload_conf()")
    finally:
        await admin.close()
    await asyncio.sleep(0.3)  # every backend rereads the file on its next command


@pytest.fixture(params=["stderr-default", "stderr-verbose", "csvlog-default", "csvlog-verbose"])
async def watched(request: pytest.FixtureRequest, text_server: PostgresServer, shop: Shop, open_test_runtime: OpenRuntime,
                  make_config: MakeConfig) -> AsyncIterator[tuple[Runtime, JsonlogSource, str]]:
    """canary's detection (3 canaries, object audit) on the shop, and a tail of one format."""
    fmt, verbosity = str(request.param).split("-")
    await _verbosity(text_server, verbosity)
    cfg = make_config(sinks=[STDOUT_SINK], datastores=[{
        "name": "shop", "dsn": shop.dsn, "node": "primary", "log_dir": str(text_server.log_dir), "log_format": fmt,
        "log_line_prefix": RDS_PREFIX, "tables": [{"table": "public.customers", "count": 3}]}])
    rt = await open_test_runtime(cfg)
    tail = tail_for("shop", "primary", cfg.datastores[0], 0.05)
    try:
        await PostgresSeeder(cfg.datastores[0], rt.registry, seed=5).apply()
        conn = await asyncpg.connect(shop.dsn)
        try:
            await configure_object_audit(conn, ROLE, ["public.customers"])
        finally:
            await conn.close()
        await record_audit_configured(rt.pool, "shop", ROLE, ["public.customers"])
        rt.pipeline.start()
        await tail.start(rt)
        yield rt, tail, fmt
    finally:
        await tail.stop()
        await _verbosity(text_server, "default")


async def _events(rt: Runtime, where: str = "true", *, at_least: int = 1, timeout: float = 8.0) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await rt.pool.fetch(f"SELECT * FROM events WHERE {where} ORDER BY id")
        if len(rows) >= at_least or asyncio.get_running_loop().time() > deadline:
            return [dict(r) for r in rows]
        await asyncio.sleep(0.1)


async def test_a_read_of_canary_rows_pages_through_each_format(watched: tuple[Runtime, JsonlogSource, str], shop: Shop) -> None:
    """SELECT * by an ordinary role is one read incident holding every canary, with the role, the client
    address and the query: through the stderr tail (RDS's prefix has no %e: the line is known by its
    MAC) and the csvlog tail, with log_error_verbosity default and verbose."""
    rt, tail, fmt = watched
    assert tail.name == f"{fmt}:primary"
    reader = await asyncpg.connect(shop.reader_dsn, server_settings={"application_name": "etl-job"})
    try:
        rows = await reader.fetch("SELECT * FROM customers")
    finally:
        await reader.close()
    assert rows
    incidents = await incidents_when(rt, 1, canaries=3)
    reads = [i for i in incidents if i["kind"] == "read"]
    assert len(reads) == 1 and len(reads[0]["canary_ids"]) == 3
    assert reads[0]["actor"]["user"] == shop.reader and reads[0]["origin"]["client_addr"] == "127.0.0.1"
    assert reads[0]["actor"]["application_name"] == "etl-job"  # no %a in RDS's prefix: from the signed detail
    assert "SELECT * FROM customers" in reads[0]["evidence"]["query"]
    assert await rt.pool.fetchval("SELECT count(*) FROM events WHERE kind = 'tamper'") == 0


async def test_pgaudit_lines_are_recognised_as_in_jsonlog(watched: tuple[Runtime, JsonlogSource, str], shop: Shop,
                                                          text_server: PostgresServer) -> None:
    """A superuser's whole-table SELECT (which row security never sees) is read from pgaudit's object
    audit line in the text formats too: an EXPORTED event naming the table and the superuser."""
    rt, _, _ = watched
    admin = await asyncpg.connect(shop.dsn)
    try:
        await admin.fetch("SELECT * FROM public.customers")
    finally:
        await admin.close()
    rows = await _events(rt, "evidence->>'signal' = 'pgaudit'")
    assert rows, "no pgaudit event"
    assert rows[0]["kind"] == "exported" and rows[0]["actor"]["user"] == "postgres"
    assert rows[0]["evidence"]["table"] == "public.customers"


async def test_what_a_client_writes_into_the_log_forges_nothing(watched: tuple[Runtime, JsonlogSource, str], shop: Shop,
                                                               text_server: PostgresServer) -> None:
    """A RAISE whose message holds newlines and whole fake prefix lines (a read of a canary by a victim,
    an audit line naming the victim) stays one entry of the writer's own session; a client that cannot
    log in and names itself with a newline and a fake entry (PostgreSQL writes %u raw) forges nothing:
    its broken lines are rejected and counted. Afterwards a genuine read still pages."""
    rt, _, fmt = watched
    canary = (await rt.registry.active("shop"))[0]
    pk = canary.location["pk"]
    fake = (f"2026-12-02 02:31:46 UTC:10.9.9.9(5):victim@{shop.db}:[1]:LOG:  row visibility\n"
            f"2026-12-02 02:31:46 UTC:10.9.9.9(5):victim@{shop.db}:[1]:LOG:  AUDIT: OBJECT,1,1,READ,SELECT,TABLE,"
            f"public.customers,select * from customers,<none>\n")
    reader = await asyncpg.connect(shop.reader_dsn)
    try:
        message = "line1\n" + fake
        await reader.execute("DO $$BEGIN RAISE LOG USING MESSAGE = " + _literal(message) + ", DETAIL = "
                             + _literal(json.dumps({"v": 1, "ds": "shop", "t": "public.customers", "k": pk})) + "; END$$")
    finally:
        await reader.close()
    injected = "x\n2026-12-02 02:31:46 UTC:[local]:victim@db:[1]:LOG:  hi\nz"  # a whole line within 63 bytes
    assert len(injected.encode()) <= 63
    with pytest.raises(asyncpg.PostgresError):
        await asyncpg.connect(text_server.dsn(shop.db, user=injected, password="nope"))
    reader = await asyncpg.connect(shop.reader_dsn)
    try:
        await reader.fetch("SELECT * FROM customers WHERE id = $1", int(pk))
    finally:
        await reader.close()
    reads = await _events(rt, "kind = 'read'")
    events = await _events(rt)
    assert len(reads) == 1 and reads[0]["actor"]["user"] == shop.reader and reads[0]["canary_id"] == canary.id
    assert all(e["actor"].get("user") != "victim" for e in events), events
    if fmt == "stderr":  # the injected name broke lines of the stderr log: counted, one HEALTH event, never believed
        assert {e["kind"] for e in events} == {"read", "health"}
        samples = [r["sample"] for r in await rt.pool.fetch("SELECT sample FROM rejects WHERE reason = 'malformed_log_line'")]
        assert any("not a signed signal" in s and "victim@db" in s for s in samples), samples
    else:  # csvlog quotes the name: nothing to reject
        assert {e["kind"] for e in events} == {"read"}


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# -- records without the fields only jsonlog has --------------------------------------------------

CTX = RecordContext("shop", "primary", "stderr:primary")


def _ctx(keyring: Keyring) -> RecordContext:
    return RecordContext("shop", "primary", "stderr:primary", keyring=keyring)


def test_a_signed_read_line_is_known_without_its_sqlstate(keyring: Keyring) -> None:
    """stderr without %e and not verbose has no SQLSTATE: the touch function's message with a MAC that
    holds is the read; the same message unsigned is anyone's RAISE and nothing (never a forged read)."""
    record = read_record(7, 4242, fields={"message": "row visibility"})
    record.pop("state_code")
    found = read_detection(well_typed(record), _ctx(keyring))
    assert found is not None and found.kind == EventKind.READ and found.actor["user"] == "mallory"
    assert read_detection(well_typed({**record, "hint": "0" * 64}), _ctx(keyring)) is None
    assert read_detection(well_typed({**record, "message": "something else"}), _ctx(keyring)) is None


def test_a_suspect_record_speaks_only_through_its_signed_detail(keyring: Keyring) -> None:
    """Right after a broken stderr line the prefix may be forged: a signed read names who and where by
    its detail (``su``, ``db``, ``a``), an unsigned one is refused (raises: rejected and counted), and a
    DDL-trigger line likewise."""
    record = read_record(7, 4242)
    record["detail"] = json.dumps({**json.loads(record["detail"]), "su": "mallory", "db": "shop"})
    record = {**signed(record), "user": "victim", "remote_host": "10.9.9.9", "_suspect": True}
    found = read_detection(well_typed(record), _ctx(keyring))
    assert found is not None
    assert found.actor["user"] == "mallory" and found.origin["client_addr"] == "10.1.2.3"
    with pytest.raises(ValueError, match="not genuine"):
        read_detection(well_typed({**record, "hint": "0" * 64}), _ctx(keyring))
    with pytest.raises(ValueError, match="not genuine"):
        trigger_detection(well_typed({**record, "state_code": "CY002", "message": "ddl audit"}), _ctx(keyring))


def test_login_lines_need_the_same_role_in_prefix_and_message() -> None:
    """A FATAL login failure without a SQLSTATE (no %e) is still read; a prefix naming another role than
    the message (a forged prefix) is refused; keys without session id and line number come from the entry."""
    base = {"timestamp": "2026-12-02 02:31:46 UTC", "pid": 5, "error_severity": "FATAL", "remote_host": "10.0.0.5",
            "message": 'password authentication failed for user "app_ro"', "_entry_id": "e1"}
    found = login_detection(well_typed({**base, "user": "app_ro"}), CTX)
    assert found is not None and found.evidence["outcome"] == "password_failed"
    other = login_detection(well_typed({**base, "user": "app_ro", "_entry_id": "e2"}), CTX)
    assert other is not None and other.key != found.key  # a reused pid's next attempt is another event
    with pytest.raises(ValueError, match="not the role in its message"):
        login_detection(well_typed({**base, "user": "victim"}), CTX)


def test_a_heartbeat_is_known_by_its_message_without_sqlstate() -> None:
    """The heartbeat's nonce is what the dead man's switch waits for; without a SQLSTATE its message
    names it."""
    record = {"timestamp": "2026-12-02 02:31:46 UTC", "pid": 5, "error_severity": "LOG", "message": "canary heartbeat",
              "detail": "0" * 32}
    found = heartbeat_detection(well_typed(record), CTX)
    assert found is not None and found.evidence["nonce"] == "0" * 32
    assert heartbeat_detection(well_typed({**record, "message": "other"}), CTX) is None


async def test_the_servers_own_lines_posted_to_pglog_page(text_server: PostgresServer, shop: Shop, open_test_runtime: OpenRuntime,
                                                          make_config: MakeConfig) -> None:
    """What the server wrote for a read, in each format, posted as it is to ``POST /ingest/pglog`` (the
    node's configured format, or ``&format=``) is committed: 200, and the canaries' reads are events."""
    cfg = make_config(sinks=[STDOUT_SINK], coverage={"ingest_token": "tok"}, datastores=[{
        "name": "shop", "dsn": shop.dsn, "node": "primary", "log_format": "stderr", "log_line_prefix": RDS_PREFIX,
        "tables": [{"table": "public.customers", "count": 3}]}])
    rt = await open_test_runtime(cfg)
    await PostgresSeeder(cfg.datastores[0], rt.registry, seed=5).apply()
    files = {fmt: max(text_server.log_dir.glob(f"*.{ext}")) for fmt, ext in (("stderr", "log"), ("csvlog", "csv"))}
    start = {fmt: path.stat().st_size for fmt, path in files.items()}
    reader = await asyncpg.connect(shop.reader_dsn)
    try:
        await reader.fetch("SELECT * FROM customers")
    finally:
        await reader.close()
    await asyncio.sleep(0.5)  # the collector writes both files
    ingest = HttpIngest.from_config(cfg)
    async with serving(rt, [ingest]) as port, aiohttp.ClientSession() as http:
        for fmt, query in (("stderr", ""), ("csvlog", "&format=csvlog")):
            body = files[fmt].read_bytes()[start[fmt]:]
            async with http.post(f"http://127.0.0.1:{port}{PGLOG_PATH}?node=primary{query}", data=body,
                                 headers={"Authorization": "Bearer tok"}) as resp:
                answer = await resp.json()
            assert resp.status == 200, answer
            assert answer["events"] == 3 and answer["quarantined"] == 0, answer
    reads = await rt.pool.fetch("SELECT DISTINCT canary_id FROM events WHERE kind = 'read' AND source = 'http:primary'")
    assert len(reads) == 3  # the csvlog copy of the same read is the same events (same keys): nothing twice
