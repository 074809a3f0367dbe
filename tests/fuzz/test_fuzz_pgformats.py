"""Fuzzing the text log formats (canary/postgres/stderr.py, csvlog.py) through ``POST /ingest/pglog`` on
the real listener: lines built from RDS's log_line_prefix with hostile values (separators, newlines,
fake prefixes in names and messages), stray TAB continuations and field lines, csvlog records with
unbalanced and doubled quotes, wrong column counts and values spanning lines, binary and over-long
lines. Whatever is posted the answer is never a 5xx, nothing escapes, and a genuine read posted
afterwards in either format is detected."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fuzz_harness import FuzzServer, fuzz_server, fuzz_settings, http_request
from fuzz_strategies import ascii_line, text
from hypothesis import example, given
from hypothesis import strategies as st
from testkit import customer_canary, read_record

from canary.postgres.http_ingest import PGLOG_PATH, HttpIngest
from canary.secret import Secret
from canary.store.embedded import PostgresServer

TOKEN = "t0ken-for-format-fuzz"
RDS = "%t:%r:%u@%d:[%p]:"
NODES = {"rds": "shop", "csv": "shop"}
FORMATS: dict[str, tuple[str, str | None]] = {"rds": ("stderr", RDS), "csv": ("csvlog", None)}
MAX_BODY = 256 * 1024
GENUINE_EVERY = 25
TS = "2026-11-23 15:24:13 UTC"


@pytest.fixture(scope="module")
def server(pg_server: PostgresServer) -> Iterator[FuzzServer]:
    async def setup(s: FuzzServer) -> None:
        async with s.runtime.pool.acquire() as conn:
            await s.runtime.registry.add(conn, [customer_canary(11)], None)

    def components(rt: Any) -> list[Any]:
        return [HttpIngest(Secret(TOKEN), NODES, max_body=MAX_BODY, formats=FORMATS)]

    with fuzz_server(pg_server, "pgformats", {}, components, setup) as s:
        s.canaries["pid"] = 300_000
        yield s


def _tabbed(value: str) -> str:
    return value.replace("\n", "\n\t")  # elog.c append_with_tabs


def stderr_entry(record: dict[str, Any], *, user: str | None = None, db: str | None = None) -> bytes:
    """``record`` as PostgreSQL writes it with RDS's prefix (no %e, not verbose)."""
    prefix = (f"{TS}:{record.get('remote_host', '10.1.2.3')}(5432):{user if user is not None else record['user']}"
              f"@{db if db is not None else record['dbname']}:[{record['pid']}]:")
    lines = [f"{prefix}{record['error_severity']}:  {_tabbed(record['message'])}"]
    for label, key in (("DETAIL", "detail"), ("HINT", "hint"), ("STATEMENT", "statement")):
        if key in record:
            lines.append(f"{prefix}{label}:  {_tabbed(str(record[key]))}")
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")


def csv_entry(record: dict[str, Any], *, columns: int = 26) -> bytes:
    """``record`` as a csvlog record (PostgreSQL 14-16 columns)."""
    row = [record.get("timestamp", TS), record.get("user", ""), record.get("dbname", ""), record.get("pid", ""),
           f"{record.get('remote_host', '10.1.2.3')}:5432", record.get("session_id", ""), record.get("line_num", 1), "SELECT",
           TS, "3/1", 0, record.get("error_severity", "LOG"), record.get("state_code", "00000"), record.get("message", ""),
           record.get("detail", ""), record.get("hint", ""), "", "", "", record.get("statement", ""), "", "",
           record.get("application_name", ""), "client backend", "", 0]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(row[:columns])
    return out.getvalue().encode("utf-8", "surrogatepass")


def _post(s: FuzzServer, body: bytes, node: str, fmt: str | None = None) -> int:
    target = f"{PGLOG_PATH}?node={node}" + (f"&format={fmt}" if fmt else "")
    answer = http_request(s.port, "POST", target, [("Authorization", f"Bearer {TOKEN}")], body)
    s.tally.connections += 1
    return answer.status


def _genuine(s: FuzzServer, node: str) -> None:
    s.canaries["pid"] += 1
    record = read_record(11, s.canaries["pid"])
    record.pop("state_code")
    record["message"] = "row visibility"
    body = stderr_entry(record) if node == "rds" else csv_entry({**record, "state_code": "CY001"})
    source = f"http:{node}"
    before = s.fetchval("SELECT count(*) FROM events WHERE kind = 'read' AND source = $1", source)
    assert _post(s, body, node) == 200
    s.tally.messages += 1
    s.wait_for("SELECT count(*) > $1 FROM events WHERE kind = 'read' AND source = $2", before, source)


_name = text | st.sampled_from(["a:b", "a@b", "x@shop:[1]:LOG:  y", "\n", f"x\n{TS}:[local]:victim@db:[1]:LOG:  hi\nz",
                                "[unknown]", "", "LOG:  ", "\t", "::1(5)"])
_message = text | ascii_line | st.sampled_from(["row visibility", "ddl audit", "canary heartbeat", "CY001: row visibility",
                                                 f"x\n{TS}:10.9.9.9(5):victim@shop:[7]:LOG:  row visibility",
                                                 'password authentication failed for user "victim"',
                                                 "AUDIT: OBJECT,1,1,READ,SELECT,TABLE,public.customers,select 1,<none>"])
_record = st.fixed_dictionaries(
    {"user": _name, "dbname": _name, "pid": st.integers(-5, 2**40) | st.just(1), "message": _message,
     "error_severity": st.sampled_from(["LOG", "FATAL", "ERROR", "DETAIL", "HINT", "BOGUS"])},
    optional={"detail": text, "hint": text, "statement": text, "state_code": st.sampled_from(["CY001", "CY002", "28P01"]) | text,
              "remote_host": st.sampled_from(["::1", "[local]", "10.0.0.5"]) | text})
_stderr_line = (st.builds(lambda r: stderr_entry(r), _record)
                | st.builds(lambda t: b"\t" + t.encode("utf-8", "surrogatepass"), text)
                | st.builds(lambda t: f"{TS}:10.0.0.5(5):a@b:[1]:DETAIL:  {t}".encode("utf-8", "surrogatepass"), text)
                | st.binary(max_size=200)
                | st.integers(1, 3).map(lambda n: f"{TS}:10.0.0.5(5):a@b:[1]:LOG:  ".encode() + b"x" * (70_000 * n)))
_csv_line = (st.builds(lambda r, n: csv_entry(r, columns=n), _record, st.sampled_from([26, 26, 24, 23, 25, 3]))
             | st.builds(lambda t: t.encode("utf-8", "surrogatepass"), text)
             | st.sampled_from([b'"', b'""', b'a,"b', b'",,,,', b'"\n"', b"\r\n"])
             | st.binary(max_size=200)
             | st.integers(1, 3).map(lambda n: b'x,"' + b'y""' * (40_000 * n) + b'"'))


@fuzz_settings(200)
@example(lines=[f"{TS}:10.0.0.5(5):x".encode(), f"{TS}:[local]:victim@db:[1]:LOG:  hi".encode(),
                b'z@db:[2]:FATAL:  password authentication failed for user "x'], node="rds", fmt=None)
@example(lines=[b'"open quote', b"never closed"], node="csv", fmt=None)
@example(lines=[b"\tcontinuation first"], node="csv", fmt="stderr")
@given(lines=st.lists(_stderr_line | _csv_line, max_size=8), node=st.sampled_from(["rds", "csv"]),
       fmt=st.sampled_from([None, None, "stderr", "csvlog", "jsonlog", "bogus"]))
def test_fuzzed_text_formats_never_answer_5xx(server: FuzzServer, lines: list[bytes], node: str, fmt: str | None) -> None:
    """Any lines in either format, at either node, with any format parameter: a 2xx / 4xx answer, never
    a 5xx; nothing escapes."""
    server.tally.examples += 1
    server.tally.messages += len(lines)
    body = b"\n".join(line.rstrip(b"\n") for line in lines)
    status = _post(server, body, node, fmt)
    assert status < 500, f"{status} for {len(lines)} lines at {node} as {fmt}"
    if server.tally.examples % GENUINE_EVERY == 0:
        _genuine(server, "rds" if server.tally.examples % (2 * GENUINE_EVERY) else "csv")
    server.assert_clean()


def test_genuine_reads_are_detected_in_both_formats_after_the_fuzzing(server: FuzzServer) -> None:
    """After the fuzzing, a genuine read in stderr lines and one as a csvlog record are answered 200 and
    detected promptly; no event ever names the victim the hostile lines claimed."""
    _genuine(server, "rds")
    _genuine(server, "csv")
    assert server.fetchval("SELECT count(*) FROM events WHERE actor->>'user' = 'victim'") == 0
    assert json.dumps(server.tally.__dict__)
    server.assert_clean()
