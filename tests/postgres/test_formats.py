"""The log-format interface: every format decodes lines of one stream into jsonlog-shaped records."""

from __future__ import annotations

import pytest

from canary.postgres.formats import LogFormat, record_decoder
from canary.postgres.lines import LongLine
from canary.postgres.record import well_typed


def test_jsonlog_decoder_reads_objects_and_long_lines() -> None:
    """One object per line; blank lines are nothing; an over-long line keeps what its head holds."""
    d = record_decoder(LogFormat.JSONLOG)
    assert d.feed(b'{"user": "app", "message": "x"}') == [{"user": "app", "message": "x"}]
    assert d.feed("  ") == [] and d.flush() == []
    long = LongLine(b'{"user": "app", "message": "' + b"x" * 100, b'x"}', 10_000_000)
    assert d.feed(long)[0]["user"] == "app"


def test_bad_lines_and_unknown_formats_are_named() -> None:
    """A line that is not a JSON object raises ValueError (the caller rejects and counts it); an
    unknown format name is refused with the ones that exist."""
    d = record_decoder("jsonlog")
    with pytest.raises(ValueError, match="not a JSON object"):
        d.feed("[1, 2]")
    with pytest.raises(ValueError):
        d.feed("{not json")
    with pytest.raises(ValueError, match="unknown log format 'syslog-ng'.*jsonlog"):
        record_decoder("syslog-ng")


def test_records_keep_only_what_postgresql_writes() -> None:
    """Numbers where the server writes numbers, within the range it writes them from (a pid beyond int4
    once failed the own-sessions query and with it the forged line's TAMPER event); strings elsewhere."""
    record = well_typed({"pid": 10**20, "leader_pid": -5, "remote_port": 70000, "line_num": 3, "user": "app",
                         "message": 7, "txid": True, "_truncated": True, "query_id": -(2**63)})
    assert record == {"leader_pid": -5, "line_num": 3, "user": "app", "_truncated": True, "query_id": -(2**63)}
