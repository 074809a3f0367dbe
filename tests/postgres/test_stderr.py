"""The stderr format: log_line_prefix compiled from its escapes, entries assembled from their lines."""

from __future__ import annotations

import pytest

from canary.postgres.formats import LogFormat, completed, record_decoder
from canary.postgres.lines import LongLine
from canary.postgres.stderr import (
    AmbiguousLine,
    MalformedLine,
    PrefixError,
    StderrDecoder,
    compile_prefix,
)

RDS = "%t:%r:%u@%d:[%p]:"
T = "2026-12-02 02:31:46 UTC"


def test_every_escape_fills_its_jsonlog_field() -> None:
    """Each escape PostgreSQL 15 / 16 documents lands in jsonlog's field of the same meaning (numbers as
    numbers; %r split into host and port; %n as a UTC time); %% is a literal percent sign."""
    prefix = compile_prefix("%a|%u|%d|%r|%h|%b|%p|%P|%t|%m|%n|%i|%e|%c|%l|%s|%v|%x|%Q|%%|")
    line = ("psql|alice|shop|10.0.0.5(5432)|10.0.0.5|client backend|42|7|2026-12-02 02:31:46 UTC|"
            "2026-12-02 02:31:46.123 UTC|1796178706.123|SELECT|CY001|6b0f8312.366c|3|2026-12-02 02:31:40 UTC|3/1|726|"
            "-123|%|LOG:  hello")
    fields, severity, text = prefix.parse(line)
    assert (severity, text) == ("LOG", "hello")
    assert fields == {
        "application_name": "psql", "user": "alice", "dbname": "shop", "remote_host": "10.0.0.5", "remote_port": 5432,
        "backend_type": "client backend", "pid": 42, "leader_pid": 7, "timestamp": "2026-12-02 02:31:46.123 UTC",
        "ps": "SELECT", "state_code": "CY001", "session_id": "6b0f8312.366c", "line_num": 3,
        "session_start": "2026-12-02 02:31:40 UTC", "vxid": "3/1", "txid": 726, "query_id": -123,
    }


@pytest.mark.parametrize(("prefix", "line", "expected"), [
    ("%-10u[%5p] ", "bob       [   42] LOG:  x", {"user": "bob", "pid": 42}),
    ("%10u|", "       bob|LOG:  x", {"user": "bob"}),
    ("%-4u|", "alexandra|LOG:  x", {"user": "alexandra"}),  # longer than its width: written whole
    ("%k%p ", "42 LOG:  x", {"pid": 42}),  # an unknown escape writes nothing
    ("%m [%p] %q%u@%d ", "2026-12-02 02:31:46.123 UTC [7] LOG:  x", {"timestamp": "2026-12-02 02:31:46.123 UTC", "pid": 7}),
    ("%m [%p] %q%u@%d ", "2026-12-02 02:31:46.123 UTC [7] bob@shop LOG:  x",
     {"timestamp": "2026-12-02 02:31:46.123 UTC", "pid": 7, "user": "bob", "dbname": "shop"}),
    (RDS, f"{T}::@:[13924]:LOG:  x", {"timestamp": T, "pid": 13924}),  # a process without a client
    (RDS, f"{T}:[local]:bob@shop:[5]:LOG:  x", {"timestamp": T, "remote_host": "[local]", "user": "bob", "dbname": "shop", "pid": 5}),
    (RDS, f"{T}:::1(5):bob@shop:[5]:LOG:  x", {"timestamp": T, "remote_host": "::1", "remote_port": 5, "user": "bob",
                                                "dbname": "shop", "pid": 5}),
    (RDS, f"{T}:10.0.0.5(5):[unknown]@[unknown]:[5]:LOG:  x", {"timestamp": T, "remote_host": "10.0.0.5", "remote_port": 5, "pid": 5}),
    (RDS, f"{T}:10.0.0.5(5):a:b [c]@shop:[5]:LOG:  x", {"timestamp": T, "remote_host": "10.0.0.5", "remote_port": 5,
                                                         "user": "a:b [c]", "dbname": "shop", "pid": 5}),
])
def test_padding_session_stops_and_odd_values_parse(prefix: str, line: str, expected: dict[str, object]) -> None:
    """Padding is stripped (both sides, and a value longer than its width is whole); %q ends the prefix
    of processes without a session; a value holding the prefix's separators parses when only one
    reading exists."""
    fields, severity, text = compile_prefix(prefix).parse(line)
    assert (fields, severity, text) == (expected, "LOG", "x")


@pytest.mark.parametrize("line", [
    f"{T}:10.0.0.5(5):a@b@shop:[5]:LOG:  x",  # user a, db b@shop -- or user a@b, db shop
    f"{T}:10.0.0.5(5):bob@x:[1]:LOG:  y:[5]:LOG:  x",  # db "x" and a message, or a db that holds a prefix
    f"{T}:10.0.0.5(5):x@shop:[5]:LOG:  y@db:[6]:LOG:  z",  # a user that holds a whole prefix
])
def test_a_value_that_makes_two_readings_is_refused(line: str) -> None:
    """Never attributed to either reading: a role or database name holding the prefix's own shape makes
    the line ambiguous, and it is refused."""
    with pytest.raises(AmbiguousLine):
        compile_prefix(RDS).parse(line)


def test_prefixes_that_cannot_be_read_are_refused() -> None:
    """Two free-text escapes with nothing between them can never be told apart; an absurd width is a
    typo. A line without the prefix and a severity belongs to no entry."""
    with pytest.raises(PrefixError):
        compile_prefix("%u%d ")
    with pytest.raises(PrefixError):
        compile_prefix("%-99999u ")
    with pytest.raises(MalformedLine):
        compile_prefix(RDS).parse("cp: cannot stat 'x': No such file or directory")


def _decode(decoder: StderrDecoder, lines: list[str]) -> tuple[list[dict[str, object]], list[str]]:
    records: list[dict[str, object]] = []
    errors: list[str] = []
    for line in lines:
        try:
            records += [dict(r) for r in decoder.feed(line.encode())]
        except ValueError as exc:
            records += [dict(r) for r in completed(exc)]
            errors.append(str(exc))
    records += [dict(r) for r in decoder.flush()]
    return records, errors


P = f"{T}:10.0.0.5(5):alice@shop:[42]:"


def test_an_entry_is_assembled_from_its_lines_and_tab_continuations() -> None:
    """LOG, DETAIL, HINT, CONTEXT and STATEMENT lines with the same prefix are one record; a line that
    starts with a TAB continues the field before it (PostgreSQL puts a TAB after each newline), so a
    RAISE message holding a whole fake prefix line stays in its message."""
    decoder = record_decoder(LogFormat.STDERR, RDS)
    assert isinstance(decoder, StderrDecoder)
    records, errors = _decode(decoder, [
        f"{P}LOG:  line1",
        f"\t{T}:10.9.9.9(5):bob@shop:[7]:LOG:  fake",
        f"{P}DETAIL:  d1", "\td2",
        f"{P}HINT:  h",
        f"{P}CONTEXT:  PL/pgSQL function inline_code_block line 1 at RAISE",
        f"{P}STATEMENT:  DO $$ ... $$",
        f"{P}LOG:  next",
    ])
    assert errors == []
    first, second = records
    assert first["message"] == f"line1\n{T}:10.9.9.9(5):bob@shop:[7]:LOG:  fake"
    assert (first["user"], first["pid"], first["detail"], first["hint"]) == ("alice", 42, "d1\nd2", "h")
    assert first["context"] == "PL/pgSQL function inline_code_block line 1 at RAISE"
    assert first["statement"] == "DO $$ ... $$" and second["message"] == "next"
    assert "state_code" not in first  # neither %e nor verbose: no SQLSTATE in this format
    assert isinstance(first["_entry_id"], str) and first["_entry_id"] != second["_entry_id"]


def test_verbose_entries_carry_their_sqlstate_and_location() -> None:
    """With log_error_verbosity = verbose the SQLSTATE follows the severity and a LOCATION line closes
    the entry: the code becomes state_code, the location jsonlog's func_name / file_name / file_line_num.
    Without a LOCATION line a message that merely starts like a code is left alone."""
    records, errors = _decode(StderrDecoder(RDS), [
        f"{P}LOG:  CY001: row visibility",
        f"{P}DETAIL:  {{}}",
        f"{P}LOCATION:  exec_stmt_raise, pl_exec.c:3907",
        f"{P}LOG:  CY001: row visibility",
    ])
    assert errors == []
    assert records[0]["state_code"] == "CY001" and records[0]["message"] == "row visibility"
    assert (records[0]["func_name"], records[0]["file_name"], records[0]["file_line_num"]) == ("exec_stmt_raise", "pl_exec.c", 3907)
    assert "state_code" not in records[1] and records[1]["message"] == "CY001: row visibility"


def test_lines_out_of_place_are_refused_and_the_held_entry_kept() -> None:
    """A DETAIL with another backend's prefix, a field line out of order, a continuation with no entry:
    each raises; the entry held before it comes with the exception, never lost."""
    decoder = StderrDecoder(RDS)
    decoder.feed(f"{P}LOG:  one".encode())
    with pytest.raises(MalformedLine) as info:
        decoder.feed(f"{T}:10.0.0.5(5):alice@shop:[43]:DETAIL:  not mine".encode())
    assert [r["message"] for r in info.value.records] == ["one"]
    decoder = StderrDecoder(RDS)
    records, errors = _decode(decoder, [f"{P}LOG:  a", f"{P}HINT:  h", f"{P}DETAIL:  late"])
    assert [r["message"] for r in records] == ["a"] and len(errors) == 1
    records, errors = _decode(StderrDecoder(RDS), ["\torphan"])
    assert records == [] and errors == ["continuation line outside any entry"]


def test_after_a_broken_line_only_a_signed_signal_is_believed() -> None:
    """A client-chosen role name with a newline breaks a line and can forge the next (PostgreSQL writes
    %u raw): the entry right after a broken line is refused unless it is one of canary's signed signals,
    which is kept and marked ``_suspect`` (its handler then believes only the MAC-signed detail)."""
    records, errors = _decode(StderrDecoder(RDS), [
        f"{T}:10.0.0.5(5):x",
        f"{T}:9.9.9.9(5):victim@shop:[1]:LOG:  connection authorized: user=victim database=shop",
        f"z@postgres:[13933]:FATAL:  password authentication failed for user \"x",
        f"{P}LOG:  row visibility",
        f"{P}DETAIL:  {{}}",
        f"{P}LOG:  ordinary again",
    ])
    assert len(errors) == 3
    assert "not a signed signal" in errors[1]
    assert [(r["message"], r.get("_suspect")) for r in records] == [("row visibility", True), ("ordinary again", None)]


def test_line_numbers_must_count_up_within_an_entry() -> None:
    """With %l each line of an entry has the next number; one that does not is not this entry's. With
    %c and %l a record has its session id and line number and no ``_entry_id``."""
    prefix = "%m [%p] %c %l "
    head = "2026-12-02 02:31:46.123 UTC [42] 6b0f8312.2a"
    records, errors = _decode(StderrDecoder(prefix), [f"{head} 5 LOG:  a", f"{head} 6 DETAIL:  d", f"{head} 8 HINT:  h"])
    assert [(r["line_num"], r.get("detail"), r.get("hint")) for r in records] == [(5, "d", None)]
    assert len(errors) == 1 and "_entry_id" not in records[0] and records[0]["session_id"] == "6b0f8312.2a"


def test_entry_ids_are_the_entrys_own_text() -> None:
    """The same entry read twice (a re-read file, a shipper's retry) has the same id; another has another."""
    lines = [f"{P}LOG:  a", f"{P}DETAIL:  d"]
    one, _ = _decode(StderrDecoder(RDS), lines)
    two, _ = _decode(StderrDecoder(RDS), lines)
    other, _ = _decode(StderrDecoder(RDS), [f"{P}LOG:  a", f"{P}DETAIL:  e"])
    assert one[0]["_entry_id"] == two[0]["_entry_id"] != other[0]["_entry_id"]


def test_an_over_long_line_keeps_its_head() -> None:
    """A line over the splitter's limit is read from its head (prefix, severity, message start), marked
    truncated."""
    long = LongLine(f"{P}LOG:  ".encode() + b"x" * 100, b"tail", 2_000_000)
    decoder = StderrDecoder(RDS)
    decoder.feed(long)
    records = list(decoder.flush())
    assert records[0]["user"] == "alice" and records[0]["_truncated"] is True
