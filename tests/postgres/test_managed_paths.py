"""Every way a managed server's log reaches canary, from one real server: Debian's PostgreSQL 15 set up
as Amazon RDS sets it up (``log_destination = 'stderr,csvlog'``, RDS's ``log_line_prefix``
``%t:%r:%u@%d:[%p]:``, log_connections, pgaudit preloaded with ``pgaudit.role = rds_pgaudit``) and an
rds_superuser-like admin that is no superuser, as whom canary seeds. One reader's ``SELECT * FROM
customers``; then the lines the server wrote to its ``.log`` file, read from disk as written, travel as
CloudWatch Logs events in Firehose requests (an entry split across two requests), as Cloud SQL-style
LogEntries pushed one per request in shuffled order with a signed OIDC token, and through the stderr
and csvlog file tails. Each path pages once: a read incident naming the reader, its address and every
canary."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cloud_support import (
    ACCESS_KEY,
    AUDIENCE,
    DATABASE_ID,
    LOG_GROUP,
    SERVICE_ACCOUNT,
    Google,
    cloudwatch_message,
    firehose_record,
    jwks_server,
    log_entry,
    post_firehose,
    post_push,
    push_body,
)
from managed_support import SETTINGS, admin_shop, managed_server, parameter_group
from testkit import STDOUT_SINK, MakeConfig, OpenRuntime, serving

from canary.health.checks import record_audit_configured
from canary.postgres.audit import configure_object_audit
from canary.postgres.firehose import FirehoseReceiver
from canary.postgres.jsonlog import tail_for
from canary.postgres.protocol import LOG_MESSAGE
from canary.postgres.pubsub import PubSubPush
from canary.runtime import Runtime
from canary.seeding.postgres import PostgresSeeder
from canary.store import log_staging
from canary.store.embedded import PostgresServer

RDS_PREFIX = "%t:%r:%u@%d:[%p]:"
AUDIT_ROLE = "rds_pgaudit"
#: node -> the path its events come by
NODES = {"rds-firehose": "firehose", "cloudsql-push": "pubsub", "primary": "stderr", "csv-tail": "csvlog"}

pytestmark = pytest.mark.pg15


@pytest.fixture(scope="module")
def rds_server() -> Iterator[PostgresServer]:
    """PostgreSQL 15 logging as RDS does: both text formats, RDS's prefix, pgaudit preloaded."""
    with managed_server({"log_destination": "stderr,csvlog", "log_line_prefix": RDS_PREFIX}) as server:
        yield server


def log_units(raw: bytes) -> list[str]:
    """The file's lines as RDS publishes them, one log event each: a prefixed line with the TAB
    continuation lines PostgreSQL wrote after it."""
    units: list[str] = []
    for line in raw.decode("utf-8").split("\n"):
        if not line:
            continue
        if line.startswith("\t") and units:
            units[-1] += "\n" + line
        else:
            units.append(line)
    return units


async def new_lines(path: Path, start: int, reads: int, timeout: float = 10.0) -> list[str]:
    """What the server wrote to ``path`` after ``start``, once it holds ``reads`` read entries whole
    (the logging collector writes each entry in one piece; a CONTEXT line follows each HINT)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        raw = path.read_bytes()[start:]
        units = log_units(raw[: raw.rfind(b"\n") + 1])
        heads = [i for i, u in enumerate(units) if u.endswith(f"LOG:  {LOG_MESSAGE}")]
        if len(heads) >= reads and all(i + 3 < len(units) for i in heads) or asyncio.get_running_loop().time() > deadline:
            return units
        await asyncio.sleep(0.1)


async def read_incidents(rt: Runtime, node: str, canaries: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The read incidents of ``node`` once one holds ``canaries`` canaries (or the timeout passed)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = [dict(r) for r in await rt.pool.fetch("SELECT * FROM incidents WHERE group_key LIKE $1 ORDER BY id",
                                                     f"pg:{node}:%:read")]
        if any(len(r["canary_ids"]) >= canaries for r in rows) or asyncio.get_running_loop().time() > deadline:
            return rows
        await asyncio.sleep(0.1)


async def _travel(rt: Runtime, server: PostgresServer, reader: str, reader_dsn: str, firehose: FirehoseReceiver, push: PubSubPush,
                  google: Google) -> dict[str, list[dict[str, Any]]]:
    """The reader's ``SELECT *``, then its log lines sent by Firehose and by Pub/Sub push (the tails
    read them as they are written); the read incidents of each path's node."""
    log_file = max(server.log_dir.glob("*.log"))
    start = log_file.stat().st_size
    conn = await asyncpg.connect(reader_dsn)
    try:
        assert await conn.fetch("SELECT * FROM customers")
    finally:
        await conn.close()
    units = await new_lines(log_file, start, reads=3)
    heads = [i for i, u in enumerate(units) if u.endswith(f"LOG:  {LOG_MESSAGE}")]
    assert len(heads) == 3 and all(units[i + 1].split("]:", 1)[1].startswith("DETAIL:  ") for i in heads)
    assert all(":127.0.0.1(" in units[i] and f":{reader}@" in units[i] for i in heads)
    async with serving(rt, [firehose, push]) as port:
        # (a) CloudWatch Logs events in two Firehose requests, the second read entry cut after its DETAIL
        cut = heads[1] + 2
        ids = [f"{36_500_000_000_000_000 + n:056d}" for n in range(len(units))]
        for part, first in ((slice(0, cut), 0), (slice(cut, None), cut)):
            message = cloudwatch_message(units[part], ids=ids[part], first_ms=1795965853620 + first)
            status, body, _ = await post_firehose(f"http://127.0.0.1:{port}/ingest/firehose", [firehose_record(message)])
            assert status == 200, body
            if first == 0:  # acknowledged with the entry unfinished: its lines wait in the store
                assert (await log_staging.counts(rt.pool, "firehose"))[0] >= 2
        # (b) a LogEntry per line, pushed one per request in shuffled order
        entries = [{**log_entry(u, insert_id=f"{n:08d}"), "timestamp": f"2026-11-23T15:24:13.{n:06d}Z"} for n, u in enumerate(units)]
        random.Random(3).shuffle(entries)
        for entry in entries:
            status, _, _ = await post_push(f"http://127.0.0.1:{port}/ingest/pubsub", push_body(entry), google.token())
            assert status == 204
        return {node: await read_incidents(rt, node, 3) for node in NODES}


async def test_a_read_on_an_rds_like_server_pages_through_every_managed_path(
        rds_server: PostgresServer, open_test_runtime: OpenRuntime, make_config: MakeConfig) -> None:
    """Seeded as the rds_superuser-like admin, read by an ordinary role: the server's own stderr lines
    through Firehose (the read entry straddling two requests), through Pub/Sub push (a LogEntry per
    line, shuffled, token signed by the JWKS's key), and the stderr and csvlog tails each make one read
    incident holding all 3 canaries, naming the reader and 127.0.0.1; no tamper event, nothing
    rejected as malformed."""
    await parameter_group(rds_server, **{k.replace(".", "__"): v for k, v in SETTINGS.items()}, pgaudit__role=AUDIT_ROLE)
    google = Google()
    async with admin_shop(rds_server, "rds") as shop, jwks_server(google) as certs:
        config = make_config(sinks=[STDOUT_SINK], datastores=[{
            "name": "shop", "dsn": shop.admin_dsn, "node": "primary", "log_dir": str(rds_server.log_dir), "log_format": "stderr",
            "log_line_prefix": RDS_PREFIX, "tables": [{"table": "public.customers", "count": 3}]}], coverage={
            "pgaudit_role": AUDIT_ROLE,
            "firehose": {"access_key": ACCESS_KEY, "streams": [{"log_group": LOG_GROUP, "datastore": "shop", "node": "rds-firehose",
                                                                "format": "stderr", "log_line_prefix": RDS_PREFIX}]},
            "pubsub": {"audience": AUDIENCE, "service_account": SERVICE_ACCOUNT, "jwks_url": certs.url,
                       "databases": [{"database_id": DATABASE_ID, "datastore": "shop", "node": "cloudsql-push", "format": "stderr",
                                      "log_line_prefix": RDS_PREFIX}]},
            "log_staging": {"quiet": "0.5s"}})  # firehose_quiet stays 120 s: read entries end with their STATEMENT
        rt = await open_test_runtime(config)
        await PostgresSeeder(config.datastores[0], rt.registry, seed=5).apply()
        admin = await asyncpg.connect(shop.admin_dsn)
        try:
            await configure_object_audit(admin, AUDIT_ROLE, ["public.customers"])
            assert not await admin.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        finally:
            await admin.close()
        await record_audit_configured(rt.pool, "shop", AUDIT_ROLE, ["public.customers"])
        rt.pipeline.start()
        tails = [tail_for("shop", "primary", config.datastores[0], 0.05),  # (c) the stderr tail, and the csvlog tail
                 tail_for("shop", "csv-tail", config.datastores[0].model_copy(update={"log_format": "csvlog"}), 0.05)]
        for tail in tails:
            await tail.start(rt)
        firehose, push = FirehoseReceiver.from_config(config), PubSubPush.from_config(config)
        try:
            found = await _travel(rt, rds_server, shop.shop.reader, shop.shop.reader_dsn, firehose, push, google)
        finally:
            for component in (*tails, firehose, push):
                await component.stop()
        for node, incidents in found.items():
            assert len(incidents) == 1, (NODES[node], incidents)
            incident = incidents[0]
            assert len(incident["canary_ids"]) == 3, NODES[node]
            assert incident["actor"]["user"] == shop.shop.reader and incident["origin"]["client_addr"] == "127.0.0.1", NODES[node]
        assert await rt.pool.fetchval("SELECT count(*) FROM events WHERE kind = 'tamper'") == 0
        assert await rt.pool.fetchval("SELECT count(*) FROM rejects WHERE reason = 'malformed_log_line'") == 0
