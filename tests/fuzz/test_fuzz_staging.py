"""Fuzzing the staging of split stderr entries (canary/postgres/staging.py) on the real listener: what
an insider can make a server write (lines with RDS's and Cloud SQL's prefixes for any backend, line
number and severity, any text, TAB continuations, NUL, lone surrogates, names holding newlines),
delivered by Firehose (CloudWatch events in order) and Pub/Sub push (a LogEntry per request). The
answer is never a 5xx, nothing escapes (the flusher included), at most [coverage.log_staging]'s
bounds wait, and a genuine read split across deliveries is still detected promptly."""

from __future__ import annotations

import gzip
import json
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cloud_support import (
    ACCESS_KEY,
    AUDIENCE,
    DATABASE_ID,
    LOG_GROUP,
    SERVICE_ACCOUNT,
    Google,
    cloudwatch_message,
    firehose_headers,
    firehose_record,
    log_entry,
    push_body,
)
from fuzz_harness import FuzzServer, fuzz_server, fuzz_settings, http_request
from fuzz_strategies import text
from hypothesis import example, given
from hypothesis import strategies as st
from testkit import customer_canary, read_record

from canary.postgres import firehose, pubsub
from canary.postgres.protocol import LOG_MESSAGE
from canary.store import log_staging
from canary.store.embedded import PostgresServer

GENUINE_EVERY = 15
GOOGLE = Google()
RDS_PREFIX = "%t:%r:%u@%d:[%p]:"
NUMBERED_GROUP = "/aws/rds/instance/numbered-db/postgresql"
STREAM_LINES, MAX_LINES = 200, 400
#: CloudWatch's clock: every event later than the one before (an insider writes lines, not times)
_clock = [1795965853620]


def _ms() -> int:
    _clock[0] += 1
    return _clock[0]


@pytest.fixture(scope="module")
def server(pg_server: PostgresServer) -> Iterator[FuzzServer]:
    keys = Path(tempfile.mkdtemp(prefix="canary-fuzz-jwks-")) / "certs.json"
    keys.write_text(json.dumps(GOOGLE.jwks()))
    sections = {
        "datastores": [{"name": "shop", "dsn": "postgresql://canary@127.0.0.1:1/shop"}],
        "coverage": {
            "firehose": {"access_key": ACCESS_KEY, "streams": [
                {"log_group": LOG_GROUP, "datastore": "shop", "node": "shop-db", "format": "stderr", "log_line_prefix": RDS_PREFIX},
                {"log_group": NUMBERED_GROUP, "datastore": "shop", "node": "shop-db", "format": "stderr"}]},
            "pubsub": {"audience": AUDIENCE, "service_account": SERVICE_ACCOUNT, "jwks_file": str(keys),
                       "databases": [{"database_id": DATABASE_ID, "datastore": "shop", "node": "shop-sql"}]},
            "log_staging": {"quiet": "0.3s", "firehose_quiet": "0.3s", "max_age": "5s", "stream_lines": STREAM_LINES, "max_lines": MAX_LINES},
        },
    }

    async def setup(s: FuzzServer) -> None:
        async with s.runtime.pool.acquire() as conn:
            await s.runtime.registry.add(conn, [customer_canary(11)], None)

    def components(rt: Any) -> list[Any]:
        return [*firehose.SOURCE.components(rt.config), *pubsub.SOURCE.components(rt.config)]

    with fuzz_server(pg_server, "staging", sections, components, setup) as s:
        s.canaries["pid"] = 400_000
        yield s
    keys.unlink(missing_ok=True)


def _firehose(s: FuzzServer, group: str, lines: list[str], stream: str = "s1") -> int:
    s.tally.connections += 1
    first = _ms()
    _clock[0] += len(lines)
    message = cloudwatch_message(lines, log_group=group, log_stream=stream, first_ms=first)
    body = json.dumps({"requestId": "f", "timestamp": 1, "records": [firehose_record(message)]}).encode()
    return http_request(s.port, "POST", "/ingest/firehose", list(firehose_headers("f").items()), gzip.compress(body)).status


def _push(s: FuzzServer, line: str, n: int) -> int:
    s.tally.connections += 1
    entry = {**log_entry(line, insert_id=f"fz-{_ms()}"), "timestamp": f"2026-11-23T15:24:13.{n % 10**6:06d}Z"}
    headers = [("Content-Type", "application/json"), ("Authorization", f"Bearer {GOOGLE.token()}")]
    return http_request(s.port, "POST", "/ingest/pubsub", headers, push_body(entry)).status


def _read_lines(pid: int, head: str) -> list[str]:
    record = read_record(11, pid, query="select * from customers", fields={"message": LOG_MESSAGE})
    return [head + f"LOG:  {LOG_MESSAGE}", head + f"DETAIL:  {record['detail']}", head + f"HINT:  {record['hint']}",
            head + "CONTEXT:  PL/pgSQL function canary.row_visible() line 9 at RAISE"]


def _genuine(s: FuzzServer) -> None:
    """A canary read split across two Firehose requests, and one pushed a line per request in shuffled
    order (Cloud SQL's prefix): both acknowledged and detected promptly."""
    s.canaries["pid"] += 1
    pid = s.canaries["pid"]
    before = s.fetchval("SELECT count(*) FROM events WHERE kind = 'read'")
    lines = _read_lines(pid, f"2026-11-23 15:24:13 UTC:10.1.2.3(5432):mallory@shop:[{pid}]:")
    assert _firehose(s, LOG_GROUP, lines[:2]) == 200
    assert _firehose(s, LOG_GROUP, lines[2:]) == 200
    s.canaries["pid"] += 1
    pid = s.canaries["pid"]
    pushed = [f"2026-11-23 15:24:13.620 UTC [{pid}]: [{n + 3}-1] db=shop,user=mallory " + line.split(":]:", 1)[-1]
              for n, line in enumerate(_read_lines(pid, ":]:"))]
    random.Random(pid).shuffle(pushed)
    for n, line in enumerate(pushed):
        assert _push(s, line, n) == 204
    s.tally.messages += 2
    s.wait_for("SELECT count(*) >= $1 FROM events WHERE kind = 'read'", before + 2)


_sev = st.sampled_from(["LOG", "DETAIL", "HINT", "CONTEXT", "STATEMENT", "QUERY", "LOCATION", "ERROR", "FATAL"])
_pid = st.integers(1, 40)
_rds = st.builds(lambda pid, sev, user, body: f"2026-11-23 15:24:13 UTC:10.0.0.9(5432):{user}@shop:[{pid}]:{sev}:  {body}",
                 _pid, _sev, st.sampled_from(["app", "mallory"]) | text, text)
_cloudsql = st.builds(lambda pid, n, sev, user, body: f"2026-11-23 15:24:13.620 UTC [{pid}]: [{n}-1] db=shop,user={user} {sev}:  {body}",
                      _pid, st.integers(0, 12) | st.integers(0, 2**70), _sev, st.sampled_from(["app", "[unknown]"]) | text, text)
_line = _rds | _cloudsql | text | st.builds(lambda t: "\t" + t, text) | st.just(f"LOG:  {LOG_MESSAGE}")
_message = st.lists(_line, min_size=1, max_size=4).map("\n".join)


def _bounded(s: FuzzServer) -> None:
    waiting, _, groups = s.call(log_staging.counts(s.runtime.pool))
    assert waiting <= MAX_LINES and groups <= MAX_LINES + 8, (waiting, groups)


@fuzz_settings(40)
@example(messages=["x\n2026-11-23 15:24:13 UTC:[local]:victim@db:[1]:LOG:  hi\nz"], numbered=False)
@example(messages=["\x00", "\ud800", "2026-11-23 15:24:13.620 UTC [3]: [99999999999999999999999-1] db=a,user=b LOG:  x"], numbered=True)
@given(messages=st.lists(_message, min_size=1, max_size=6), numbered=st.booleans())
def test_fuzzed_lines_through_firehose_stay_bounded_and_never_5xx(server: FuzzServer, messages: list[str], numbered: bool) -> None:
    """Any lines an insider can make a server write, as CloudWatch events of one Firehose request:
    200, nothing escapes, the waiting lines within bounds."""
    server.tally.examples += 1
    server.tally.messages += len(messages)
    status = _firehose(server, NUMBERED_GROUP if numbered else LOG_GROUP, messages)
    assert status == 200
    _bounded(server)
    if server.tally.examples % GENUINE_EVERY == 0:
        _genuine(server)
    server.assert_clean()


@fuzz_settings(40)
@given(lines=st.lists(_cloudsql | _line, min_size=1, max_size=4))
def test_fuzzed_lines_pushed_by_pubsub_stay_bounded_and_never_5xx(server: FuzzServer, lines: list[str]) -> None:
    """Any lines, one LogEntry per push: 204, nothing escapes, the waiting lines within bounds."""
    server.tally.examples += 1
    for n, line in enumerate(lines):
        server.tally.messages += 1
        assert _push(server, line, n) == 204
    _bounded(server)
    if server.tally.examples % GENUINE_EVERY == 0:
        _genuine(server)
    server.assert_clean()


def test_genuine_split_reads_are_detected_after_the_fuzzing(server: FuzzServer) -> None:
    """After the fuzzing, quiet comes: nothing is left waiting beyond max_age, and genuine split reads
    through both paths are detected promptly."""
    _genuine(server)
    time.sleep(0.5)
    server.wait_for("SELECT count(*) = 0 FROM log_staging_lines WHERE done_at IS NULL AND received_at < clock_timestamp() - interval '6 seconds'")
    server.assert_clean()
