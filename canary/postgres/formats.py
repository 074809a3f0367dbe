"""The server log formats canary reads, behind one interface: lines of one stream in, records out.

A record is a mapping with jsonlog's field names (``timestamp``, ``user``, ``dbname``, ``pid``,
``remote_host``, ``session_id``, ``line_num``, ``error_severity``, ``state_code``, ``message``,
``detail``, ``hint``, ``context``, ``statement``, ``application_name`` …), whatever format carried it,
so every record handler (:mod:`canary.postgres.processor`) serves every format and every path (file
tail, HTTP ingest, cloud log deliveries).

A :class:`RecordDecoder` is stateful per stream: formats whose entries span lines (a DETAIL or a
STATEMENT continuation) hold the entry until the next one starts or :meth:`RecordDecoder.flush` is
called at the end of a batch. A line that can belong to no record raises :class:`ValueError`; the
caller rejects it (counted, sampled) and goes on, keeping the records the bad line completed
(:func:`completed`: an entry held before it).

Formats: ``jsonlog`` (this module), ``stderr`` (:mod:`canary.postgres.stderr`, needs the server's
``log_line_prefix``) and ``csvlog`` (:mod:`canary.postgres.csvlog`). Each decoder also says how many
lines its held entry spans (``entry_lines``: a file tail never checkpoints past the first of them) and
whether a held entry is complete and only waits to see that nothing follows (``idle_flush``: stderr's
entries end when the next one starts, so a tail flushes them after a short quiet spell).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Protocol

from canary.postgres.csvlog import CsvlogDecoder
from canary.postgres.lines import LongLine
from canary.postgres.processor import parse_long
from canary.postgres.stderr import StderrDecoder


class LogFormat(StrEnum):
    JSONLOG = "jsonlog"
    STDERR = "stderr"
    CSVLOG = "csvlog"


#: The file names the logging collector gives each format (``log_filename`` ends in ``.log``; csvlog
#: and jsonlog replace that suffix with theirs).
FILE_PATTERNS = {LogFormat.JSONLOG: "*.json", LogFormat.STDERR: "*.log", LogFormat.CSVLOG: "*.csv"}


class RecordDecoder(Protocol):
    entry_lines: int
    idle_flush: bool

    def feed(self, line: bytes | str | LongLine) -> list[Mapping[str, Any]]:
        """The records completed by ``line`` (none while an entry may still continue)."""
        ...

    def flush(self) -> list[Mapping[str, Any]]:
        """The entry still held, at the end of a batch or stream."""
        ...


class JsonlogDecoder:
    """``log_destination = 'jsonlog'``: one JSON object per line, an over-long line read from its head
    and tail (:func:`canary.postgres.processor.parse_long`)."""

    entry_lines = 0
    idle_flush = False

    def feed(self, line: bytes | str | LongLine) -> list[Mapping[str, Any]]:
        if isinstance(line, LongLine):
            return [parse_long(line)]
        if not line.strip():
            return []
        record = json.loads(line)
        if not isinstance(record, dict):
            raise ValueError("log line is not a JSON object")
        return [record]

    def flush(self) -> list[Mapping[str, Any]]:
        return []


def completed(exc: BaseException) -> list[Mapping[str, Any]]:
    """The records a line that raised still completed (the entry held before it)."""
    return list(getattr(exc, "records", None) or ())


def record_decoder(fmt: str | LogFormat, prefix: str | None = None) -> RecordDecoder:
    """A fresh decoder for one stream of ``fmt`` lines (``prefix``: the server's ``log_line_prefix``,
    for formats that use one)."""
    try:
        kind = LogFormat(fmt)
    except ValueError:
        raise ValueError(f"unknown log format {fmt!r}: expected one of {', '.join(f.value for f in LogFormat)}") from None
    if kind is LogFormat.JSONLOG:
        return JsonlogDecoder()
    if kind is LogFormat.STDERR:
        return StderrDecoder(prefix)
    if kind is LogFormat.CSVLOG:
        return CsvlogDecoder()
    raise AssertionError(kind)  # pragma: no cover - every LogFormat has a decoder above
