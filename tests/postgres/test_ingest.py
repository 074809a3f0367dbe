"""Log ingestion from other nodes: syslog (RFC 5424 / RFC 3164 over UDP and TCP, jsonlog payloads
and PostgreSQL's chunked syslog output) and the bearer-authenticated NDJSON HTTP endpoint. Events
carry the sending node's name; bad input is rejected and counted, never fatal."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from testkit import STDOUT_SINK, CanaryRows, MakeConfig, OpenRuntime, customer_canary, serving, signed

from canary.crypto import Keyring
from canary.postgres.http_ingest import PATH, HttpIngest
from canary.postgres.syslog import Assembler, SyslogFormatError, SyslogSource, parse_prefix, parse_syslog
from canary.runtime import Runtime, close_runtime, open_runtime
from canary.secret import Secret
from canary.store import ControlStore
from canary.store.embedded import PostgresServer

NODES = {"primary": "shop", "standby-1": "shop"}


def jsonlog_record(pk: int, *, pid: int = 4242) -> dict[str, object]:
    detail = {"v": 1, "ds": "shop", "t": "public.customers", "k": str(pk), "u": "mallory", "q": "select * from customers",
              "ts": "2026-11-23T15:24:13.620276+00:00", "a": "10.1.2.3", "p": pid}
    return signed({"timestamp": "2026-11-23 15:24:13.620 UTC", "user": "mallory", "dbname": "shop", "pid": pid,
            "remote_host": "10.1.2.3", "session_id": "6b045a9d.114f", "error_severity": "LOG", "state_code": "CY001",
            "message": "row access audit", "detail": json.dumps(detail), "application_name": "psql"})


@pytest.fixture
async def runtime(open_test_runtime: OpenRuntime, make_config: MakeConfig, canary_rows: CanaryRows) -> Runtime:
    """A runtime with a stdout sink and a running pipeline; customer canaries at rows 11, 22, 33."""
    rt = await open_test_runtime(make_config(sinks=[STDOUT_SINK]))
    await canary_rows(*(customer_canary(pk) for pk in (11, 22, 33)))
    rt.pipeline.start()
    return rt


async def _wait(rt: Runtime, sql: str, n: int = 1, timeout: float = 5.0) -> list[asyncpg.Record]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await rt.pool.fetch(sql)
        if len(rows) >= n or asyncio.get_running_loop().time() > deadline:
            return list(rows)
        await asyncio.sleep(0.05)


def _rfc5424(host: str, msg: str, *, procid: str = "4242") -> bytes:
    return f"<134>1 2026-11-23T15:24:13.620Z {host} postgres {procid} - - ".encode() + b"\xef\xbb\xbf" + msg.encode()


def _rfc3164(host: str, msg: str, pid: int = 4242) -> bytes:
    return f"<134>Nov 23 15:24:13 {host} postgres[{pid}]: {msg}".encode()


# -- parsing ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("data", "host", "app", "procid", "msg"),
    [
        (b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \xef\xbb\xbf'su root' failed for lonvick",
         "mymachine.example.com", "su", "", "'su root' failed for lonvick"),
        (b'<165>1 2003-10-11T22:14:15.003000-07:00 host app 8710 - [exampleSDID@32473 iut="3" eventID="1011"] hello',
         "host", "app", "8710", "hello"),
        (b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
         "mymachine", "su", "", "'su root' failed for lonvick on /dev/pts/8"),
        (b"<134>Nov  3 01:02:03 db2 postgres[77]: [5-1] LOG:  x\n", "db2", "postgres", "77", "[5-1] LOG:  x"),
    ],
)
def test_syslog_headers_should_parse(data: bytes, host: str, app: str, procid: str, msg: str) -> None:
    """RFC 5424 (with BOM, structured data, offsets) and RFC 3164 headers parse into host/app/pid/msg."""
    m = parse_syslog(data, now=dt.datetime(2026, 11, 23, tzinfo=dt.timezone.utc))
    assert (m.host, m.app, m.procid, m.msg) == (host, app, procid, msg)


@pytest.mark.parametrize("data", [b"hello world", b"<999>1 2026-11-23T15:24:13Z h a - - - x", b"<34>1 yesterday h a - - - x",
                                  b"<34>Foo 11 22:14:15 h su: x", b""])
def test_syslog_garbage_should_not_parse(data: bytes) -> None:
    """Messages that are neither RFC 5424 nor RFC 3164 (or out of range) are format errors."""
    with pytest.raises(SyslogFormatError):
        parse_syslog(data)


def test_postgres_chunks_reassemble_into_one_record() -> None:
    """PostgreSQL's [SEQ-CHUNK] syslog lines (LOG, DETAIL, STATEMENT, a continuation line) become one
    jsonlog-shaped record with the prefix fields; the next SEQ of the same backend completes it."""
    a = Assembler()
    now = dt.datetime(2026, 11, 23, 15, 24, 13, 620000, tzinfo=dt.timezone.utc)
    prefix = "user=mallory,db=shop,app=psql,client=10.1.2.3,sqlstate=CY001 "
    lines = [f"[5-1] {prefix}LOG:  row access audit", '[5-2] DETAIL:  {"v": 1}', "[5-3] STATEMENT:  select *",
             "[5-4] \tfrom customers"]
    for i, text in enumerate(lines):
        assert a.feed(parse_syslog(_rfc3164("db2", text), now=now), float(i)) == []
    done = a.feed(parse_syslog(_rfc3164("db2", "[6-1] user=x,db=shop LOG:  next"), now=now), 5.0)
    assert done == [("db2", {"timestamp": "2026-11-23 15:24:13.000 UTC", "error_severity": "LOG", "user": "mallory", "dbname": "shop",
                     "application_name": "psql", "remote_host": "10.1.2.3", "state_code": "CY001", "pid": 4242,
                     "message": "row access audit", "detail": '{"v": 1}', "statement": "select *\nfrom customers"})]
    assert [(h, r["message"]) for h, r in a.expire(10.0)] == [("db2", "next")]
    assert parse_prefix("2026-11-23 [77] user=[unknown],db=shop,sqlstate=00000") == {"dbname": "shop"}


# -- syslog end to end ------------------------------------------------------------------------------

@pytest.fixture
async def syslog(runtime: Runtime) -> AsyncIterator[SyslogSource]:
    src = SyslogSource(NODES, udp_port=0, tcp_port=0)
    await src.start(runtime)
    yield src
    await src.stop()


async def test_udp_jsonlog_payload_alerts_with_the_node_name(runtime: Runtime, syslog: SyslogSource) -> None:
    """A jsonlog record forwarded over UDP (RFC 5424) by standby-1 becomes a READ event for the canary
    with origin.node 'standby-1'."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(_rfc5424("standby-1", json.dumps(jsonlog_record(11))), ("127.0.0.1", syslog.bound["udp"]))
    rows = await _wait(runtime, "SELECT * FROM events")
    assert len(rows) == 1 and rows[0]["origin"]["node"] == "standby-1" and rows[0]["source"] == "syslog"
    assert rows[0]["kind"] == "read"


async def test_tcp_both_framings_and_postgres_chunks(runtime: Runtime, syslog: SyslogSource) -> None:
    """Over TCP, an octet-counted RFC 5424 jsonlog message and LF-framed RFC 3164 chunks of PostgreSQL's
    own syslog output (CY001 via sqlstate in the prefix) both become events for the primary node."""
    signed22 = jsonlog_record(22)
    one = _rfc5424("primary", json.dumps(jsonlog_record(33, pid=9)), procid="9")
    chunks = [
        _rfc3164("primary", "[7-1] user=mallory,db=shop,app=psql,client=10.1.2.3,sqlstate=CY001 LOG:  row access audit", 77),
        _rfc3164("primary", f"[7-2] DETAIL:  {signed22['detail']}", 77),
        _rfc3164("primary", f"[7-3] HINT:  {signed22['hint']}", 77),
        _rfc3164("primary", "[7-4] STATEMENT:  select * from customers", 77),
    ]
    reader, writer = await asyncio.open_connection("127.0.0.1", syslog.bound["tcp"])
    writer.write(str(len(one)).encode() + b" " + one)
    for c in chunks:
        writer.write(c + b"\n")
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    rows = await _wait(runtime, "SELECT * FROM events ORDER BY id", n=2)
    assert sorted(r["origin"]["node"] for r in rows) == ["primary", "primary"]
    assert sorted(r["actor"]["user"] for r in rows) == ["mallory", "mallory"]
    assert len({r["canary_id"] for r in rows}) == 2


async def test_syslog_rejects_unknown_nodes_garbage_and_foreign_peers(runtime: Runtime, syslog: SyslogSource) -> None:
    """Unknown HOSTNAMEs, non-syslog datagrams and unparseable payloads are rejected and counted; a
    valid message after them still becomes an event; a peer outside syslog_allow is refused."""
    port = syslog.bound["udp"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(_rfc5424("intruder", json.dumps(jsonlog_record(11))), ("127.0.0.1", port))
        s.sendto(b"\x00\xffnot syslog", ("127.0.0.1", port))
        s.sendto(_rfc5424("primary", "{broken json"), ("127.0.0.1", port))
        s.sendto(_rfc5424("primary", json.dumps(jsonlog_record(22))), ("127.0.0.1", port))
    assert len(await _wait(runtime, "SELECT * FROM events")) == 1
    reasons = sorted(r["reason"] for r in await _wait(runtime, "SELECT reason FROM rejects", n=3))
    assert reasons == ["malformed_log_line", "malformed_syslog", "unknown_node"]
    strict = SyslogSource(NODES, udp_port=0, allow=["10.0.0.0/8"])
    await strict.start(runtime)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(_rfc5424("primary", json.dumps(jsonlog_record(33))), ("127.0.0.1", strict.bound["udp"]))
        assert "peer_not_allowed" in [r["reason"] for r in await _wait(runtime, "SELECT reason FROM rejects", n=4)]
    finally:
        await strict.stop()
    assert 'canary_rejects_total{reason="unknown_node",source="syslog"} 1.0' in runtime.metrics.render().decode()


async def test_real_postgres_line_over_syslog(runtime: Runtime, pg_server: PostgresServer) -> None:
    """A line PostgreSQL itself wrote (a CY009 heartbeat from the embedded server's jsonlog), shipped
    over syslog, is recognised: the processor yields a HEALTH event for the sending node."""
    before = {p: p.stat().st_size for p in pg_server.jsonlog_files()}
    conn = await asyncpg.connect(pg_server.dsn())
    try:
        await conn.execute("DO $$ BEGIN RAISE LOG USING MESSAGE = 'canary heartbeat', ERRCODE = 'CY009', "
                           "DETAIL = '0123456789abcdef0123456789abcdef'; END $$")
    finally:
        await conn.close()
    line = None
    for _ in range(100):
        for p in pg_server.jsonlog_files():
            with p.open("rb") as fh:
                fh.seek(before.get(p, 0))
                for raw in fh.read().splitlines():
                    if b'"CY009"' in raw:
                        line = raw
        if line:
            break
        await asyncio.sleep(0.05)
    assert line is not None
    src = SyslogSource(NODES, udp_port=0)
    await src.start(runtime)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(_rfc5424("standby-1", line.decode()), ("127.0.0.1", src.bound["udp"]))
        rows = await _wait(runtime, "SELECT * FROM events WHERE kind = 'health'")
    finally:
        await src.stop()
    assert rows and rows[0]["group_key"] == "heartbeat:standby-1"


# -- HTTP ingest ------------------------------------------------------------------------------------

@pytest.fixture
async def ingest(runtime: Runtime) -> AsyncIterator[str]:
    async with serving(runtime, [HttpIngest(Secret("t0ken-for-tests"), NODES, max_body=64 * 1024)]) as port:
        yield f"http://127.0.0.1:{port}{PATH}"


async def test_http_ingest_commits_before_answering(runtime: Runtime, ingest: str) -> None:
    """A gzip NDJSON batch from standby-1 with a good token is committed before the 200; events carry
    the node; a bad line in the batch is rejected alone (and is one HEALTH event: it may have been a read)."""
    body = b"\n".join([json.dumps(jsonlog_record(11)).encode(), b"not json", json.dumps(jsonlog_record(22, pid=5)).encode()])
    async with aiohttp.ClientSession() as http:
        async with http.post(ingest, params={"node": "standby-1"}, data=gzip.compress(body),
                             headers={"Authorization": "Bearer t0ken-for-tests", "Content-Encoding": "gzip",
                                      "Content-Type": "application/x-ndjson"}) as resp:
            assert resp.status == 200, await resp.text()
            assert await resp.json() == {"node": "standby-1", "lines": 3, "events": 3, "quarantined": 1}
    rows = await runtime.pool.fetch("SELECT * FROM events ORDER BY kind")
    assert [r["kind"] for r in rows] == ["health", "read", "read"] and {r["origin"]["node"] for r in rows} == {"standby-1"}
    assert {r["source"] for r in rows} == {"http:standby-1"}
    assert [r["reason"] for r in await runtime.pool.fetch("SELECT reason FROM rejects")] == ["malformed_log_line"]


@pytest.mark.parametrize(
    ("headers", "node", "status"),
    [
        ({}, "primary", 401),
        ({"Authorization": "Bearer wrong"}, "primary", 401),
        ({"Authorization": "Basic dDB rZW4="}, "primary", 401),
        ({"Authorization": "Bearer t0ken-for-tests"}, "intruder", 400),
    ],
)
async def test_http_ingest_refuses_bad_tokens_and_unknown_nodes(runtime: Runtime, ingest: str, headers: dict[str, str],
                                                                node: str, status: int) -> None:
    """Missing / wrong / non-bearer credentials get 401 with WWW-Authenticate; an unknown node 400;
    nothing is recorded and the token never appears in the answer."""
    async with aiohttp.ClientSession() as http:
        async with http.post(ingest, params={"node": node}, data=json.dumps(jsonlog_record(11)), headers=headers) as resp:
            assert resp.status == status
            text = await resp.text()
            if status == 401:
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert "t0ken" not in text
    assert await runtime.pool.fetchval("SELECT count(*) FROM events") == 0


async def test_http_ingest_limits_the_body(runtime: Runtime, ingest: str) -> None:
    """A body over ingest_max_body is refused with 413."""
    body = (json.dumps(jsonlog_record(11)) + "\n").encode() * 400
    async with aiohttp.ClientSession() as http:
        async with http.post(ingest, params={"node": "primary"}, data=body,
                             headers={"Authorization": "Bearer t0ken-for-tests"}) as resp:
            assert resp.status == 413


def test_ingest_component_repr_hides_the_token() -> None:
    """The component's repr names nodes, never the token."""
    assert "secret-value" not in repr(HttpIngest(Secret("secret-value"), NODES))
    with pytest.raises(ValueError):
        HttpIngest(Secret(""), NODES)




async def test_listener_builds_coverage_components_from_config(store: ControlStore, make_config: MakeConfig, keyring: Keyring,
                                                              tmp_path: Path) -> None:
    """[coverage] with a replica node, syslog ports, an ingest token and checks gives the listener a
    tail for the replica, the syslog receiver, the HTTP endpoint and the scheduler; none without it."""
    from canary.listener import Listener, default_components

    cfg = make_config(
        datastores=[{"name": "shop", "dsn": "postgresql://x@127.0.0.1:1/shop"}],
        coverage={"nodes": [{"name": "standby-1", "datastore": "shop", "jsonlog_dir": str(tmp_path)}],
                  "syslog_udp_port": 0, "syslog_tcp_port": 0, "ingest_token": "tok-123456", "checks": True},
    )
    rt = await open_runtime(cfg, keyring=keyring, store=store)
    try:
        names = [c.name for c in Listener(rt).components]
        assert {"jsonlog:standby-1", "syslog", "http-ingest", "scheduler"} <= set(names)
        plain = await open_runtime(make_config(), keyring=keyring, store=store)
        assert not {"syslog", "http-ingest", "scheduler"} & {c.name for c in default_components(plain)}
        await plain.http.close()
    finally:
        await close_runtime(rt, grace=1)


def _pg_syslog_chunks(seq: int, entry: str, limit: int = 900) -> list[str]:
    """PostgreSQL's write_syslog() with syslog_split_messages (elog.c): one chunk per line of the entry,
    a line longer than PG_SYSLOG_LIMIT cut at its last whitespace before the limit (the whitespace
    starts the next chunk), numbered [SEQ-CHUNK]."""
    out: list[str] = []
    line = entry
    while line:
        if line[0] == "\n":
            line = line[1:]
            continue
        nl = line.find("\n")
        buflen = min(nl if nl >= 0 else len(line), limit)
        buf = line[:buflen]
        if buflen < len(line) and not line[buflen].isspace():
            i = buflen - 1
            while i > 0 and not buf[i].isspace():
                i -= 1
            if i > 0:
                buflen = i
        out.append(f"[{seq}-{len(out) + 1}] {line[:buflen]}")
        line = line[buflen:]
    return out


def test_a_long_detection_line_over_postgres_syslog_keeps_its_mac(keyring: Any) -> None:
    """A read whose detail is longer than PostgreSQL's syslog limit (a long query inside it) arrives in
    pieces cut at spaces; reassembled, the detail is the one the function signed, so the read is a
    read and not a forgery. A multi-line statement still keeps its newlines."""
    from canary.postgres.read import read_detection
    from canary.postgres.record import RecordContext

    query = "select * from customers where " + " or ".join(f"id = {i}" for i in range(300))
    detail = json.dumps({"v": 1, "ds": "shop", "t": "public.customers", "k": "7", "u": "mallory", "q": query[:2000],
                         "ts": "2026-11-23T15:24:13+00:00", "p": 4242}, separators=(", ", " : "))
    rec = signed({"detail": detail})
    prefix = "user=mallory,db=shop,app=psql,client=10.1.2.3,sqlstate=CY001 "
    entry = f"{prefix}LOG:  row visibility\nDETAIL:  {detail}\nHINT:  {rec['hint']}\nSTATEMENT:  {query[:1500]}\n\tlimit 5"
    chunks = _pg_syslog_chunks(9, entry)
    assert len(chunks) > 6
    a = Assembler()
    now = dt.datetime(2026, 11, 23, 15, 24, 13, tzinfo=dt.timezone.utc)
    for i, text in enumerate(chunks):
        assert a.feed(parse_syslog(_rfc3164("db2", text), now=now), float(i)) == []
    [(_, record)] = a.flush()
    assert record["detail"] == detail and record["hint"] == rec["hint"]
    assert record["statement"].endswith("\nlimit 5")
    found = read_detection(record, RecordContext("shop", "db2", "syslog", keyring=keyring))
    assert found is not None and found.kind.value == "read" and found.actor["user"] == "mallory"
