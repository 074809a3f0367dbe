"""Fuzzing every PostgreSQL record path with hypothesis: whatever a line, record or syslog message holds
(types, nesting, encodings, characters jsonb refuses, sizes), nothing raises out of a processor,
nothing fails a commit batch, and a genuine read processed afterwards still becomes an event."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from testkit import STDOUT_SINK, CanaryRows, MakeConfig, OpenRuntime, customer_canary, signed

from canary.postgres.lines import LONG_HEAD, MAX_LINE, LineSplitter, LongLine
from canary.postgres.processor import PgLogProcessor, parse_long
from canary.postgres.record import RecordContext
from canary.postgres.syslog import Assembler, parse_syslog
from canary.runtime import Runtime

SETTINGS = settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))

# text with what jsonb and UTF-8 refuse: NUL, lone surrogates, and the rest of Unicode
_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40) | st.sampled_from(
    ["\x00", "\ud800", "shop\x00", "\udfff\x00", "", "CY001", "public.customers", "11"])
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20,
)
_state = st.sampled_from(["CY001", "CY002", "CY009", "28P01", "28000", "00000", "P0001"]) | _text
_message = st.sampled_from([
    "row access audit", "canary heartbeat", "statement: DROP POLICY x ON customers",
    "AUDIT: SESSION,1,1,DDL,DROP POLICY,,,DROP POLICY x ON t,<not logged>",
    "AUDIT: OBJECT,1,1,READ,SELECT,TABLE,public.customers,select 1,<not logged>",
    "connection authorized: user=x database=shop application_name=psql",
    'password authentication failed for user "x"',
]) | _text


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


_detail = (st.builds(json.dumps, _json) | _text | st.integers(1, 100_000).map(_nested)
           | st.builds(lambda pk, ds, extra: json.dumps({"v": 1, "ds": ds, "t": "public.customers", "k": pk, **extra}),
                       _text, _text, st.dictionaries(_text, _json, max_size=3)))
_record = st.fixed_dictionaries(
    {"timestamp": st.sampled_from(["2026-11-23 15:24:13.620 UTC", "", "garbage"]) | _text, "state_code": _state,
     "message": _message, "detail": _detail},
    optional={"user": _text, "dbname": _text, "pid": _json, "remote_host": _text, "session_id": _text,
              "hint": _text, "context": _text | st.just("PL/pgSQL function inline_code_block line 1 at RAISE"),
              "application_name": _text, "leader_pid": _json, "statement": _text, "ps": _text, "line_num": _json},
)
_line = (st.binary(max_size=200) | st.builds(lambda r: json.dumps(r).encode(), _record)
         | st.builds(lambda v: json.dumps(v).encode(), _json) | st.integers(1, 200_000).map(lambda n: _nested(n).encode()))


def _examples(strategy: st.SearchStrategy[Any]) -> list[Any]:
    """Examples drawn by hypothesis (with its edge cases), replayed against the real store."""
    out: list[Any] = []

    @SETTINGS
    @given(strategy)
    def collect(value: Any) -> None:
        out.append(value)

    collect()
    return out


@pytest.fixture
async def runtime(open_test_runtime: OpenRuntime, make_config: MakeConfig, canary_rows: CanaryRows) -> Runtime:
    rt = await open_test_runtime(make_config(sinks=[STDOUT_SINK]))
    await canary_rows(customer_canary(11))
    rt.pipeline.start()
    return rt


def _genuine(pk: int = 11, pid: int = 4242) -> dict[str, Any]:
    detail = {"v": 1, "ds": "shop", "t": "public.customers", "k": str(pk), "u": "mallory", "q": "select 1",
              "ts": f"2026-11-23T15:24:13.{pid}+00:00", "p": pid}
    return signed({"timestamp": "2026-11-23 15:24:13.620 UTC", "user": "mallory", "dbname": "shop", "pid": pid,
                   "remote_host": "10.1.2.3", "session_id": "s1", "error_severity": "LOG", "state_code": "CY001",
                   "message": "row access audit", "detail": json.dumps(detail)})


async def test_fuzzed_records_never_escape_the_processor(runtime: Runtime) -> None:
    """Hostile records, in batches with a genuine read: every batch commits, the read in each batch
    becomes an event, and nothing raises."""
    proc = PgLogProcessor(runtime, RecordContext("shop", "primary", "fuzz"))
    examples = _examples(_record)
    for i in range(0, len(examples), 10):
        await proc.process_records([*examples[i:i + 10], _genuine(pid=10_000 + i)])
    reads = await runtime.pool.fetchval("SELECT count(*) FROM events WHERE kind = 'read' AND source = 'fuzz'")
    assert reads == len(range(0, len(examples), 10))


async def test_fuzzed_lines_never_escape_the_processor(runtime: Runtime) -> None:
    """Hostile raw lines (bytes, non-objects, deep nesting, long lines) are rejected or believed
    only if genuine; a genuine line after them still becomes an event."""
    proc = PgLogProcessor(runtime, RecordContext("shop", "primary", "fuzz-lines"))
    examples = _examples(_line)
    longs = [LongLine(e[:LONG_HEAD], e[-100:], len(e) * 1000, "x") for e in examples[:30]]
    for i in range(0, len(examples), 10):
        await proc.process_lines([*examples[i:i + 10], *longs[i // 10:i // 10 + 1]])
    await proc.process_lines([json.dumps(_genuine(pid=99)).encode()])
    assert await runtime.pool.fetchval("SELECT count(*) FROM events WHERE kind = 'read' AND source = 'fuzz-lines'") >= 1


@SETTINGS
@given(head=st.binary(max_size=300) | st.builds(lambda r: json.dumps(r).encode(), _record), cut=st.integers(0, 300),
       tail=st.binary(max_size=100))
def test_parse_long_raises_only_value_error(head: bytes, cut: int, tail: bytes) -> None:
    """Any head (cut anywhere) and tail: a record, or ValueError."""
    try:
        record = parse_long(LongLine(head[:cut] if cut else head, tail, 10 * MAX_LINE))
    except ValueError:
        return
    assert record["_truncated"] is True


def test_parse_long_recovers_a_padded_detection_line() -> None:
    """The detection fields before the padded statement, and the server's fields after it, survive."""
    rec = _genuine()
    rec.update(statement="select * from customers /*" + "x" * (2 * MAX_LINE) + "*/", application_name="etl",
               backend_type="client backend", leader_pid=None, query_id=0)
    line = json.dumps(rec, separators=(",", ":")).encode()  # as jsonlog writes it
    got = parse_long(LongLine(line[:LONG_HEAD], line[-4096:], len(line)))
    assert {k: got[k] for k in ("state_code", "detail", "hint", "pid", "user")} == {k: rec[k] for k in ("state_code", "detail", "hint", "pid", "user")}
    assert got["application_name"] == "etl" and got["backend_type"] == "client backend"


@SETTINGS
@given(lines=st.lists(st.binary(max_size=50).map(lambda b: b.replace(b"\n", b"")), max_size=20),
       sizes=st.lists(st.integers(1, 64), min_size=1, max_size=10))
def test_line_splitter_returns_the_lines_fed_in_any_chunking(lines: list[bytes], sizes: list[int]) -> None:
    data = b"".join(x + b"\n" for x in lines)
    splitter = LineSplitter("t")
    out: list[bytes | LongLine] = []
    pos = i = 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        out += splitter.feed(data[pos:pos + n])
        pos, i = pos + n, i + 1
    out += splitter.finish()
    assert out == lines
    assert splitter.line_start == len(data)


def test_line_splitter_keeps_head_and_tail_of_a_long_line_fed_in_pieces() -> None:
    splitter = LineSplitter("f")
    line = b"{" + b"a" * (3 * MAX_LINE) + b"}"
    out: list[bytes | LongLine] = [b"start"] if False else []
    out += splitter.feed(b"short\n")
    for i in range(0, len(line), 1 << 20):
        out += splitter.feed(line[i:i + (1 << 20)])
        assert len(splitter.partial) <= MAX_LINE
    out += splitter.feed(b"\nnext\n")
    assert out[0] == b"short" and out[2] == b"next"
    long = out[1]
    assert isinstance(long, LongLine) and long.length == len(line) and long.position == "f:6"
    assert long.head == line[:LONG_HEAD] and long.tail.endswith(b"a}")


@SETTINGS
@given(chunks=st.lists(st.binary(max_size=120) | st.builds(
    lambda seq, part, body: f"<13>Nov 23 15:24:13 db1 postgres[7]: [{seq}-{part}] {body}".encode(),
    st.integers(1, 3), st.integers(1, 3), st.sampled_from(["user=x,db=y LOG:  m", "DETAIL:  {", "HINT:  ab", "  cont",
                                                           "{" + "[" * 5000 + "]" * 5000 + "}", "ERROR:  \x00"])), max_size=12))
def test_syslog_parsing_raises_only_value_error(chunks: list[bytes]) -> None:
    """Any datagram: parse and reassembly raise only ValueError (counted as a reject by the source)."""
    a = Assembler()
    for i, data in enumerate(chunks):
        try:
            a.feed(parse_syslog(data), float(i))
        except (ValueError, RecursionError):
            continue
    a.flush()
