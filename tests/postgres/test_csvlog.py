"""The csvlog format: PostgreSQL's documented columns, quoted values spanning lines, over-long records."""

from __future__ import annotations

import pytest

from canary.postgres.csvlog import CsvlogDecoder
from canary.postgres.formats import LogFormat, record_decoder
from canary.postgres.lines import LineSplitter, LongLine

#: Written by Debian's PostgreSQL 15 (log_destination = 'csvlog'), a RAISE whose message holds a newline
#: and a line shaped like a whole csvlog record.
RAISED = (
    '2026-12-02 02:31:46.591 UTC,"postgres","shop",13932,"127.0.0.1:38292",6b0f8312.366c,5,"DO",'
    '2026-12-02 02:31:46 UTC,3/3,0,LOG,CY001,"line1\n'
    '2026-12-02 02:31:46.600 UTC,""victim"",""shop"",1,""10.9.9.9:5"",x.1,1,""SELECT"",,,0,LOG,CY001,""row visibility"",,,,,,,,,,,""client backend"",,0",'
    '"d1\nd2","h",,,"PL/pgSQL function inline_code_block line 1 at RAISE","DO $$ ... $$",,,"a:b@c [x]?q","client backend",,0\n'
)


def _decode(text: str | bytes) -> list[dict[str, object]]:
    decoder = record_decoder(LogFormat.CSVLOG)
    splitter = LineSplitter()
    data = text.encode() if isinstance(text, str) else text
    records = [dict(r) for line in splitter.feed(data) for r in decoder.feed(line)]
    return records + [dict(r) for r in decoder.flush()]


def test_a_record_maps_to_jsonlog_fields() -> None:
    """Every column lands in its jsonlog field: connection_from split into host and port, numbers as
    numbers, query as statement, empty columns left out."""
    (record,) = _decode(
        '2026-12-02 02:31:46.565 UTC,"app","shop",13932,"10.0.0.5:38292",6b0f8312.366c,3,"SELECT",2026-12-02 02:31:46 UTC,'
        '3/1,726,LOG,00000,"AUDIT: OBJECT,1,1,READ,SELECT,TABLE,public.customers,""select 1"",<not logged>",,,,,,'
        '"select * from customers",,"log_audit_event, pgaudit.c:783","psql","client backend",,4242\n')
    assert record == {
        "timestamp": "2026-12-02 02:31:46.565 UTC", "user": "app", "dbname": "shop", "pid": 13932,
        "remote_host": "10.0.0.5", "remote_port": 38292, "session_id": "6b0f8312.366c", "line_num": 3, "ps": "SELECT",
        "session_start": "2026-12-02 02:31:46 UTC", "vxid": "3/1", "txid": 726, "error_severity": "LOG",
        "state_code": "00000", "message": 'AUDIT: OBJECT,1,1,READ,SELECT,TABLE,public.customers,"select 1",<not logged>',
        "statement": "select * from customers", "func_name": "log_audit_event", "file_name": "pgaudit.c",
        "file_line_num": 783, "application_name": "psql", "backend_type": "client backend", "query_id": 4242,
    }


def test_quoted_values_span_lines_and_a_fake_record_inside_stays_inside() -> None:
    """A value with newlines is one record whatever its lines look like: the line shaped like a record
    is text of the message, and the detail keeps its newline."""
    (record,) = _decode(RAISED)
    assert str(record["message"]).startswith("line1\n2026-12-02 02:31:46.600 UTC,\"victim\"")
    assert (record["user"], record["pid"], record["detail"], record["hint"]) == ("postgres", 13932, "d1\nd2", "h")
    assert record["application_name"] == "a:b@c [x]?q" and record["state_code"] == "CY001"


@pytest.mark.parametrize(("columns", "extra"), [(24, {}), (23, {})])
def test_older_servers_column_counts_are_read(columns: int, extra: dict[str, object]) -> None:
    """PostgreSQL 13 wrote 24 columns (no leader_pid, query_id) and 12 wrote 23 (no backend_type)."""
    row = ['2026-12-02 02:31:46.565 UTC', '"app"', '"shop"', "7", '"[local]"', "a.1", "1", '""', "", "", "0", "LOG", "00000",
           '"hello"'] + [""] * 8 + ['"psql"', '"client backend"']
    (record,) = _decode(",".join(row[:columns]) + "\n")
    assert record["remote_host"] == "[local]" and record["message"] == "hello" and record["pid"] == 7
    assert ("backend_type" in record) == (columns == 24)


@pytest.mark.parametrize("text", [
    "a,b,c\n",  # too few columns
    '2026-12-02 02:31:46.565 UTC,"app","shop",notapid,"",x,1,"",,,0,LOG,00000,"m",,,,,,,,,"","client backend",,0\n',
    'x,"a"b",' + ",".join([""] * 24) + "\n",  # a quote inside an unquoted value
])
def test_records_postgresql_cannot_write_are_refused(text: str) -> None:
    """Wrong column count, a number column that is not one, or text that is not strict CSV: ValueError
    (the caller rejects and counts it)."""
    with pytest.raises(ValueError):
        _decode(text)


def test_a_record_cut_off_inside_quotes_is_refused_at_flush() -> None:
    """A batch that ends inside a quoted value is an incomplete record (PostgreSQL writes records whole):
    refused when the batch is flushed, and the decoder starts afresh."""
    decoder = CsvlogDecoder()
    assert decoder.feed(b'2026-12-02 02:31:46.565 UTC,"app","shop",1,"",x,1,"",,,0,LOG,00000,"open') == []
    assert decoder.entry_lines == 1
    with pytest.raises(ValueError, match="inside a quoted value"):
        decoder.flush()
    assert decoder.entry_lines == 0 and decoder.flush() == []


def test_an_over_long_record_is_read_from_its_head_and_tail() -> None:
    """A statement of megabytes: the columns up to the hint come from the record's head, application_name
    and backend_type from its tail, the quote count across the whole line keeps the record boundary
    right (quotes in its middle included), and the record is marked truncated."""
    head = ('2026-12-02 02:31:46.565 UTC,"mallory","shop",9,"10.1.2.3:5",a.9,4,"SELECT",,3/1,0,LOG,CY001,"row visibility",'
            '"{""v"":1}","abcd",,,,"select ')
    body = head + ('x""' * 600_000) + 'end",,,"etl-job","client backend",,0'
    records = _decode(body + "\n" + RAISED)
    first, second = records
    assert (first["user"], first["detail"], first["hint"], first["_truncated"]) == ("mallory", '{"v":1}', "abcd", True)
    assert (first["application_name"], first["backend_type"]) == ("etl-job", "client backend")
    assert second["user"] == "postgres" and "_truncated" not in second


def test_long_lines_count_their_quotes() -> None:
    """The splitter counts a long line's quotes whole, whether it arrives at once or in pieces."""
    line = b'"' + b"a" * 2_000_000 + b'""b"\n'
    once = LineSplitter().feed(line)[0]
    pieces = LineSplitter()
    parts = [p for i in range(0, len(line), 100_000) for p in pieces.feed(line[i:i + 100_000])]
    assert isinstance(once, LongLine) and isinstance(parts[0], LongLine)
    assert once.quotes == parts[0].quotes == 4
