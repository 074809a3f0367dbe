"""PostgreSQL's ``csvlog`` format (``log_destination = 'csvlog'``, the logging collector's ``.csv``
files; offered by Amazon RDS and Aurora besides ``stderr``): one CSV record per entry, read into a
jsonlog-shaped record.

The columns are PostgreSQL's documented list ("Using CSV-Format Log Output", runtime-config-logging,
https://www.postgresql.org/docs/16/runtime-config-logging.html#RUNTIME-CONFIG-LOGGING-CSVLOG): log_time,
user_name, database_name, process_id, connection_from, session_id, session_line_num, command_tag,
session_start_time, virtual_transaction_id, transaction_id, error_severity, sql_state_code, message,
detail, hint, internal_query, internal_query_pos, context, query, query_pos, location,
application_name, backend_type (13+), leader_pid and query_id (14+; 15 and 16 add none). 12's 23
columns and 13's 24 are read too.

Every text value is quoted with ``"`` doubled inside, so a record is unambiguous whatever a role,
database, application or ``RAISE`` writes; a quoted value may span lines, and a record ends at the
first newline outside quotes (counted by ``"`` parity, also across over-long lines:
:attr:`canary.postgres.lines.LongLine.quotes`). An over-long record is read from its head (the
columns up to the message, detail and hint) and its tail (application_name, backend_type, leader_pid,
query_id), and marked ``_truncated``, as jsonlog's over-long lines are.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

from canary.postgres.lines import LongLine

COLUMNS = ("log_time", "user_name", "database_name", "process_id", "connection_from", "session_id",
           "session_line_num", "command_tag", "session_start_time", "virtual_transaction_id", "transaction_id",
           "error_severity", "sql_state_code", "message", "detail", "hint", "internal_query", "internal_query_pos",
           "context", "query", "query_pos", "location", "application_name", "backend_type", "leader_pid", "query_id")
#: csvlog column -> jsonlog field
FIELDS = {"log_time": "timestamp", "user_name": "user", "database_name": "dbname", "process_id": "pid",
          "session_id": "session_id", "session_line_num": "line_num", "command_tag": "ps",
          "session_start_time": "session_start", "virtual_transaction_id": "vxid", "transaction_id": "txid",
          "error_severity": "error_severity", "sql_state_code": "state_code", "message": "message", "detail": "detail",
          "hint": "hint", "internal_query": "internal_query", "internal_query_pos": "internal_position",
          "context": "context", "query": "statement", "query_pos": "cursor_position",
          "application_name": "application_name", "backend_type": "backend_type", "leader_pid": "leader_pid",
          "query_id": "query_id"}
_INT = frozenset({"process_id", "session_line_num", "transaction_id", "internal_query_pos", "query_pos", "leader_pid",
                  "query_id"})
#: Column counts of PostgreSQL 12, 13 and 14-16.
WIDTHS = (23, 24, 26)
#: Longest record kept whole; a longer one is read from its head and tail.
MAX_RECORD = 1024 * 1024
_HEAD = 64 * 1024
_TAIL = 4 * 1024


class CsvlogDecoder:
    """``log_destination = 'csvlog'``: physical lines in, one record per CSV record out."""

    idle_flush = False

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._size = 0
        self._quotes = 0
        self._long = False
        self._tail = ""
        self.entry_lines = 0

    def feed(self, line: bytes | str | LongLine) -> list[Mapping[str, Any]]:
        if isinstance(line, LongLine):
            text, quotes = line.head.decode("utf-8", "replace"), line.quotes
            self._long = True
            self._tail = line.tail.decode("utf-8", "replace")
        else:
            text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
            quotes = text.count('"')
            if self._long or self._size + len(text) > MAX_RECORD:
                self._long = True
                self._tail = (self._tail + "\n" + text)[-_TAIL:]
        if not self._parts and not self._long and not text.strip():
            return []
        if self._size < MAX_RECORD:
            self._parts.append(text)
            self._size += len(text) + 1
        self._quotes += quotes
        self.entry_lines += 1
        if self._quotes % 2:
            return []  # inside a quoted value: the record goes on on the next line
        parts, long, tail = self._parts, self._long, self._tail
        self._reset()
        if long:
            return [_truncated("\n".join(parts), tail)]
        return [_record("\n".join(parts))]

    def flush(self) -> list[Mapping[str, Any]]:
        """A record cut off by the end of a batch: PostgreSQL writes a record whole, so it is refused."""
        held = bool(self._parts) or self._long
        self._reset()
        if held:
            raise ValueError("csvlog record ends inside a quoted value")
        return []

    def _reset(self) -> None:
        self._parts, self._size, self._quotes, self._long, self._tail, self.entry_lines = [], 0, 0, False, "", 0


def _record(text: str) -> dict[str, Any]:
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as exc:
        raise ValueError(f"csvlog record is not valid CSV: {exc}") from None
    if len(rows) != 1:
        raise ValueError(f"csvlog text holds {len(rows)} records")
    row = rows[0]
    if len(row) not in WIDTHS:
        raise ValueError(f"csvlog record has {len(row)} columns, expected {' / '.join(map(str, WIDTHS))}")
    return _fields(zip(COLUMNS, row))


def _fields(pairs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column, value in pairs:
        if value == "":
            continue
        if column == "connection_from":
            host, sep, port = value.rpartition(":")
            if sep and host and port.isdigit() and len(port) <= 5:
                out["remote_host"], out["remote_port"] = host, int(port)
            else:
                out["remote_host"] = value
        elif column == "location":
            func, _, where = value.rpartition(", ")
            file, sep, num = where.rpartition(":")
            if func:
                out["func_name"] = func
            if sep and num.isdigit():
                out["file_name"], out["file_line_num"] = file, int(num[:9])
        elif column in _INT:
            try:
                number = int(value)
            except ValueError:
                raise ValueError(f"csvlog column {column} is not a number") from None
            if column == "leader_pid" and number == 0:
                continue
            out[FIELDS[column]] = number
        else:
            out[FIELDS[column]] = value
    return out


def _truncated(head: str, tail: str) -> dict[str, Any]:
    """The columns an over-long record's head completes, and the last four from its tail."""
    values = _head_fields(head)
    record = _fields(zip(COLUMNS, values))
    last = _tail_fields(tail, 4)
    if last is not None:
        for key, value in _fields(zip(COLUMNS[-4:], last)).items():
            record.setdefault(key, value)
    if not record:
        raise ValueError("nothing recoverable in an over-long csvlog record")
    record["_truncated"] = True
    return record


def _head_fields(text: str) -> list[str]:
    """The values of ``text`` that end before it is cut (each followed by a ``,``)."""
    values: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos] == '"':
            i, chunks = pos + 1, []
            while True:
                q = text.find('"', i)
                if q < 0:
                    return values
                if text.startswith('""', q):
                    chunks.append(text[i:q + 1])
                    i = q + 2
                    continue
                chunks.append(text[i:q])
                end = q + 1
                break
            value = "".join(chunks)
        else:
            end = text.find(",", pos)
            if end < 0:
                return values
            value = text[pos:end]
        if end >= len(text) or text[end] != ",":
            return values
        values.append(value)
        pos = end + 1
    return values


def _tail_fields(tail: str, n: int) -> list[str] | None:
    """The last ``n`` values of a record whose end is ``tail``: a ``,`` with an even number of ``"``
    after it is outside quotes (the record ends outside them)."""
    quotes = 0
    cuts: list[int] = []
    for i in range(len(tail) - 1, -1, -1):
        ch = tail[i]
        if ch == '"':
            quotes += 1
        elif ch == "," and quotes % 2 == 0:
            cuts.append(i)
            if len(cuts) == n:
                break
    if len(cuts) < n:
        return None
    try:
        rows = list(csv.reader(io.StringIO(tail[cuts[-1] + 1:], newline=""), strict=True))
    except csv.Error:
        return None
    return rows[0] if len(rows) == 1 and len(rows[0]) == n else None
