"""Fuzzing the cloud log deliveries (canary/postgres/firehose.py, pubsub.py) on the real listener:
Firehose requests with any access key, body encoding and records (base64 or not, gzip valid,
truncated or a bomb, subscription messages of any shape holding hostile jsonlog lines), and Pub/Sub
pushes with any token (valid, expired, unsigned, garbage) and any message (LogEntries of any shape,
random data). Whatever arrives the answer is never a 5xx (the store is up), nothing escapes, and a
genuine canary read delivered afterwards by either path is committed and detected."""

from __future__ import annotations

import base64
import gzip
import json
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
    unsigned_token,
)
from fuzz_harness import FuzzServer, fuzz_server, fuzz_settings, http_request
from fuzz_strategies import json_bytes, json_value, text
from hypothesis import example, given
from hypothesis import strategies as st
from testkit import customer_canary, read_record

from canary import firehose as kernel_firehose
from canary.postgres import firehose, pubsub
from canary.store.embedded import PostgresServer

GENUINE_EVERY = 25
GOOGLE = Google()


@pytest.fixture(scope="module")
def server(pg_server: PostgresServer) -> Iterator[FuzzServer]:
    keys = Path(tempfile.mkdtemp(prefix="canary-fuzz-jwks-")) / "certs.json"
    keys.write_text(json.dumps(GOOGLE.jwks()))
    sections = {
        "datastores": [{"name": "shop", "dsn": "postgresql://canary@127.0.0.1:1/shop"}],
        "coverage": {
            "firehose": {"access_key": ACCESS_KEY, "max_body": 256 * 1024,
                         "streams": [{"log_group": LOG_GROUP, "datastore": "shop", "node": "shop-db", "format": "jsonlog"}]},
            "pubsub": {"audience": AUDIENCE, "service_account": SERVICE_ACCOUNT, "jwks_file": str(keys), "max_body": 256 * 1024,
                       "databases": [{"database_id": DATABASE_ID, "datastore": "shop", "node": "shop-sql", "format": "jsonlog"}]},
        },
    }

    async def setup(s: FuzzServer) -> None:
        async with s.runtime.pool.acquire() as conn:
            await s.runtime.registry.add(conn, [customer_canary(11)], None)

    def components(rt: Any) -> list[Any]:
        return [*firehose.SOURCE.components(rt.config), *pubsub.SOURCE.components(rt.config)]

    with fuzz_server(pg_server, "cloudlogs", sections, components, setup) as s:
        s.canaries["pid"] = 300_000
        yield s
    keys.unlink(missing_ok=True)


def _firehose(s: FuzzServer, body: bytes, headers: dict[str, str]) -> int:
    s.tally.connections += 1
    return http_request(s.port, "POST", "/ingest/firehose", list(headers.items()), body).status


def _push(s: FuzzServer, body: bytes, token: str | None) -> int:
    s.tally.connections += 1
    headers = [("Content-Type", "application/json")] + ([("Authorization", f"Bearer {token}")] if token is not None else [])
    return http_request(s.port, "POST", "/ingest/pubsub", headers, body).status


def _genuine(s: FuzzServer) -> None:
    """A canary read through each path: acknowledged and detected promptly."""
    for source in ("firehose:shop-db", "pubsub:shop-sql"):
        s.canaries["pid"] += 1
        line = json.dumps(read_record(11, s.canaries["pid"]))
        before = s.fetchval("SELECT count(*) FROM events WHERE kind = 'read' AND source = $1", source)
        if source.startswith("firehose"):
            body = json.dumps({"requestId": "g", "timestamp": 1, "records": [firehose_record(cloudwatch_message([line]))]}).encode()
            assert _firehose(s, gzip.compress(body), firehose_headers("g")) == 200
        else:
            assert _push(s, push_body(log_entry(line)), GOOGLE.token()) == 204
        s.tally.messages += 1
        s.wait_for("SELECT count(*) > $2 FROM events WHERE kind = 'read' AND source = $1", source, before)


_hostile_record = st.fixed_dictionaries(
    {"state_code": st.sampled_from(["CY001", "CY002", "28P01"]) | text, "message": text,
     "detail": st.builds(json.dumps, json_value) | text},
    optional={"timestamp": text, "pid": json_value, "user": text, "line_num": json_value, "session_id": text})
_event_text = st.builds(json.dumps, _hostile_record) | text | st.builds(lambda v: json.dumps(v), json_value)
_event = st.fixed_dictionaries({"id": text | json_value, "timestamp": json_value, "message": _event_text | json_value})
_cw_message = st.fixed_dictionaries(
    {"messageType": st.sampled_from(["DATA_MESSAGE", "CONTROL_MESSAGE"]) | text,
     "logGroup": st.sampled_from([LOG_GROUP, "/aws/rds/instance/other/postgresql"]) | text, "logStream": text | json_value,
     "logEvents": st.lists(_event, max_size=4) | json_value}) | json_value


def _pack(message: Any, how: str) -> Any:
    raw = json.dumps(message).encode()
    if how == "gzip":
        return {"data": base64.b64encode(gzip.compress(raw)).decode()}
    if how == "truncated":
        return {"data": base64.b64encode(gzip.compress(raw)[:7]).decode()}
    if how == "bomb":
        return {"data": base64.b64encode(gzip.compress(b"[" * (kernel_firehose.MAX_RECORD + 10))).decode()}
    if how == "plain":
        return {"data": base64.b64encode(raw).decode()}
    return {"data": raw.decode("utf-8", "replace")}  # not base64


_fh_record = st.builds(_pack, _cw_message, st.sampled_from(["gzip", "gzip", "truncated", "bomb", "plain", "raw"])) | json_value
_fh_body = (st.builds(lambda rs, rid: json.dumps({"requestId": rid, "timestamp": 1, "records": rs}).encode(),
                      st.lists(_fh_record, max_size=4), text | json_value) | json_bytes)


@fuzz_settings(60)
@example(body=b'{"records": [{"data": "H4sIAAAAAAAA"}]}', key=ACCESS_KEY, gzipped=False)
@example(body=b'{"records": [{"data": "\\u00e9"}]}', key=ACCESS_KEY, gzipped=False)  # non-ASCII base64: ValueError, not binascii.Error
@given(body=_fh_body, key=st.sampled_from([ACCESS_KEY, "", "wrong"]) | text, gzipped=st.booleans())
def test_fuzzed_firehose_never_answers_5xx(server: FuzzServer, body: bytes, key: str, gzipped: bool) -> None:
    """Any access key, encoding and records: a 2xx/4xx answer, never a 5xx; nothing escapes."""
    server.tally.examples += 1
    server.tally.messages += 1
    headers = firehose_headers("fuzz", key=key.replace("\r", "").replace("\n", ""), gzipped=gzipped)
    status = _firehose(server, gzip.compress(body) if gzipped else body, headers)
    assert status < 500, f"{status} for a Firehose body of {len(body)} bytes"
    if server.tally.examples % GENUINE_EVERY == 0:
        _genuine(server)
    server.assert_clean()


def _token(kind: str) -> str | None:
    now = int(time.time())
    return {"valid": GOOGLE.token(), "expired": GOOGLE.token(exp=now - 600, iat=now - 4000), "none": None,
            "unsigned": unsigned_token(GOOGLE.claims(), {"alg": "none", "kid": GOOGLE.kid}), "garbage": "a.b.c",
            "other_audience": GOOGLE.token(aud="x")}[kind]


_entry = st.builds(lambda e, over: {**e, **over}, st.builds(log_entry, _event_text),
                   st.dictionaries(st.sampled_from(["logName", "resource", "textPayload", "jsonPayload", "insertId", "timestamp"]),
                                   json_value | text, max_size=3))
_push_body = (st.builds(lambda e: push_body(e), _entry) | st.builds(lambda d: push_body(data=d), text)
              | st.builds(lambda raw: push_body(data=base64.b64encode(raw).decode()), json_bytes) | json_bytes)


@fuzz_settings(60)
@example(body=push_body(data=base64.b64encode(b"[" * 50_000 + b"]" * 50_000).decode()), token="valid")
@example(body=push_body(data="\x80"), token="valid")  # was a 500: b64decode raises ValueError (not binascii.Error) for non-ASCII text
@given(body=_push_body, token=st.sampled_from(["valid", "valid", "valid", "expired", "none", "unsigned", "garbage", "other_audience"]))
def test_fuzzed_pubsub_never_answers_5xx(server: FuzzServer, body: bytes, token: str) -> None:
    """Any token and any message: a 2xx/4xx answer, never a 5xx; nothing escapes."""
    server.tally.examples += 1
    server.tally.messages += 1
    status = _push(server, body, _token(token))
    assert status < 500, f"{status} for a push of {len(body)} bytes"
    if token != "valid":
        assert status in (401, 403)
    if server.tally.examples % GENUINE_EVERY == 0:
        _genuine(server)
    server.assert_clean()


def test_genuine_reads_are_detected_after_the_fuzzing(server: FuzzServer) -> None:
    """After the fuzzing, a genuine read delivered by Firehose and one pushed by Pub/Sub are both
    acknowledged and detected promptly."""
    _genuine(server)
    server.assert_clean()
