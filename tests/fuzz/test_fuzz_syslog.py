"""Fuzzing the syslog receiver (canary/postgres/syslog.py) over real UDP and TCP sockets: RFC 5424 and
RFC 3164 headers with hostile fields, PostgreSQL's chunked output, JSON payloads, and TCP framings
(octet counting with lying lengths, LF framing, over-long frames). The worker must never die (a dead
worker silently drops every later message), nothing may escape, and a genuine read sent afterwards
becomes an event promptly. tests/postgres/test_fuzz_records.py fuzzes the parser functions alone;
this drives the running source."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from fuzz_harness import FuzzServer, connect, fuzz_server, fuzz_settings, read_to_eof
from fuzz_strategies import json_value, text
from hypothesis import example, given
from hypothesis import strategies as st
from testkit import customer_canary, read_record

from canary.postgres.syslog import MAX_MESSAGE, SyslogSource
from canary.store.embedded import PostgresServer

NODES = {"primary": "shop", "standby-1": "shop"}
GENUINE_EVERY = 15


@pytest.fixture(scope="module")
def server(pg_server: PostgresServer) -> Iterator[FuzzServer]:
    async def setup(s: FuzzServer) -> None:
        async with s.runtime.pool.acquire() as conn:
            await s.runtime.registry.add(conn, [customer_canary(11)], None)

    def components(rt: Any) -> list[Any]:
        return [SyslogSource(NODES, udp_port=0, tcp_port=0)]

    with fuzz_server(pg_server, "syslog", {}, components, setup) as s:
        s.canaries["pid"] = 100_000
        yield s


def _source(s: FuzzServer) -> SyslogSource:
    [src] = s.listener.components
    assert isinstance(src, SyslogSource)
    return src


def _genuine(s: FuzzServer) -> None:
    """A signed read over UDP becomes a read event within PROMPT seconds (the worker is alive and not behind)."""
    s.canaries["pid"] += 1
    before = s.fetchval("SELECT count(*) FROM events WHERE kind = 'read' AND source = 'syslog'")
    msg = f"<134>1 2026-11-23T15:24:13.620Z primary postgres {s.canaries['pid']} - - {json.dumps(read_record(11, s.canaries['pid']))}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.sendto(msg.encode(), ("127.0.0.1", _source(s).bound["udp"]))
    s.tally.messages += 1
    s.wait_for("SELECT count(*) > $1 FROM events WHERE kind = 'read' AND source = 'syslog'", before)


_host = st.sampled_from(["primary", "standby-1", "-", "unknown-node", ""]) | st.from_regex(r"\A\S{1,20}\Z")
_ts5424 = st.sampled_from(["2026-11-23T15:24:13.620Z", "-", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                           "2026-11-23T15:24:13", "2026-02-30T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z",
                           "2026-11-23T25:61:61Z", "+002026-11-23"]) | st.from_regex(r"\A\S{1,30}\Z")
_pg_body = st.builds(
    lambda seq, part, prefix, sev, body: f"[{seq}-{part}] {prefix} {sev}:  {body}",
    st.integers(0, 10**12), st.integers(0, 5),
    st.sampled_from(["user=x,db=shop,app=psql,client=10.1.2.3,sqlstate=CY001", "", "user=,db=", "sqlstate=CY002"]),
    st.sampled_from(["LOG", "ERROR", "DETAIL", "HINT", "STATEMENT", "CONTEXT", "FATAL", "QUERY", "LOG  "]),
    st.sampled_from(["row access audit", "{", '{"v":1,"ds":"shop"', "CY001: x"]) | text,
) | st.builds(lambda seq, body: f"[{seq}-2] {body}", st.integers(0, 3), text)
_payload = (_pg_body | st.builds(lambda v: json.dumps(v), json_value) | text
            | st.integers(1, 20_000).map(lambda n: "{" + '"a":[' * n + "]" * n + "}")
            | st.builds(lambda r: json.dumps(r), st.builds(read_record, st.integers(0, 50), st.integers(0, 10**6))))
_rfc5424 = st.builds(
    lambda pri, ver, ts, host, app, procid, sd, msg: f"<{pri}>{ver} {ts} {host} {app} {procid} - {sd} {msg}".encode(
        "utf-8", "surrogatepass"),
    st.integers(0, 999), st.integers(0, 99), _ts5424, _host, st.sampled_from(["postgres", "-", "x"]),
    st.sampled_from(["4242", "-", "0", "99999999999999999999"]) | st.from_regex(r"\A\S{1,10}\Z"),
    st.sampled_from(["-", "[a b=\"c\"]", "[x@1 y=\"\\]\"]"]), _payload)
_rfc3164 = st.builds(
    lambda pri, mon, day, hh, host, tag, pid, msg: f"<{pri}>{mon} {day:>2} {hh} {host} {tag}{pid}: {msg}".encode(
        "utf-8", "surrogatepass"),
    st.integers(0, 999), st.sampled_from(["Jan", "Feb", "Nov", "Dec", "Foo"]), st.integers(0, 40),
    st.sampled_from(["15:24:13", "24:00:00", "99:99:99", "00:00:60"]), _host, st.sampled_from(["postgres", "x"]),
    st.sampled_from(["[4242]", "", "[99999999999999999999]"]), _payload)
_message = _rfc5424 | _rfc3164 | st.binary(max_size=200)
_frame = (
    st.builds(lambda m: str(len(m)).encode() + b" " + m, _message)  # octet counting, honest
    | st.builds(lambda m, d: str(max(0, len(m) + d)).encode() + b" " + m, _message, st.integers(-5, 5))  # lying length
    | st.builds(lambda m: m.replace(b"\n", b" ") + b"\n", _message)  # LF framing
    | st.sampled_from([b"99999999999999999999 ", b"1" * 70_000, b"12x abc\n", b"0 ", b"7 <13>1 x"])
    | st.integers(MAX_MESSAGE - 2, MAX_MESSAGE + 3000).map(lambda n: str(n).encode() + b" " + b"<134>1 - primary p 1 - - {" + b"x" * n)
    | st.integers(1, 3).map(lambda n: b"<134>Nov 23 15:24:13 primary postgres[1]: " + b"y" * (MAX_MESSAGE * n) + b"\n")
)


@fuzz_settings(150)
@example(datagrams=[b"<134>1 0001-01-01T00:00:00+01:00 primary postgres 1 - - [1-1] LOG:  x"], frames=[])
@example(datagrams=[b"<134>1 9999-12-31T23:59:59-01:00 primary postgres 1 - - [1-1] LOG:  x"], frames=[])
#: a pid beyond int4 on a forged line failed the own-sessions lookup: its TAMPER event was refused
@example(datagrams=[b"<134>1 2026-11-23T15:24:13Z primary postgres 99999999999999999999 - - [1-1] "
                    b"user=x,db=y,app=z,client=10.0.0.1,sqlstate=CY001 LOG:  row access audit"], frames=[])
@given(datagrams=st.lists(_message, max_size=6), frames=st.lists(_frame, max_size=4))
def test_fuzzed_syslog_never_stops_the_receiver(server: FuzzServer, datagrams: list[bytes], frames: list[bytes]) -> None:
    """Hostile datagrams and TCP frames: the TCP connection is closed once the sender is done (no hang),
    the worker is still running, nothing escaped; every few examples a genuine read is detected promptly."""
    src = _source(server)
    server.tally.examples += 1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        for d in datagrams:
            try:
                u.sendto(d, ("127.0.0.1", src.bound["udp"]))
            except OSError:  # larger than a datagram may be
                continue
            server.tally.messages += 1
    if frames:
        with connect(src.bound["tcp"]) as s:
            server.tally.connections += 1
            try:
                s.sendall(b"".join(frames))
                s.shutdown(socket.SHUT_WR)
            except OSError:  # the server may close first (broken pipe, reset, not connected)
                pass
            read_to_eof(s)  # the receiver closes after our EOF (a socket timeout fails the example)
        server.tally.messages += len(frames)
    if server.tally.examples % GENUINE_EVERY == 0 or len(datagrams) == 1:
        _genuine(server)
    assert src._worker is not None and not src._worker.done(), "the syslog worker died"
    server.assert_clean()


def test_genuine_read_is_detected_after_the_fuzzing(server: FuzzServer) -> None:
    """After every fuzzed input, a genuine read over UDP still becomes an event promptly, nothing
    escaped, and the pending reassembly state drains."""
    _genuine(server)
    server.assert_clean()
    server.wait_for("SELECT 1 WHERE $1 = 0", 0)  # the store still answers
    assert len(_source(server)._assembler.pending) < 1000
