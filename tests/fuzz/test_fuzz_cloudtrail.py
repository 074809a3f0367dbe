"""Fuzzing the CloudTrail sources (canary/credentials/cloudtrail.py): EventBridge bodies posted to the
webhook (random JSON, event lists, records with hostile userIdentity / eventTime / eventID, wrong keys)
log files dropped in the watched directory (plain, gzip, truncated gzip, not JSON, not CloudTrail), and
Firehose deliveries of a trail's CloudWatch Logs (mangled records, subscription messages, log events).
The webhook never answers 5xx while the store is up, every file is settled (done or rejected) by the
next scans (a file that failed the scan would stop the directory behind it), nothing escapes, and a
canary key used afterwards is detected through both inputs."""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from credential_support import register
from fuzz_harness import FuzzServer, fuzz_server, fuzz_settings, http_request
from fuzz_strategies import json_bytes, json_value, text
from hypothesis import example, given
from hypothesis import strategies as st

from canary.credentials.cloudtrail import CloudTrailDirectorySource, CloudTrailFirehose, CloudTrailWebhook
from canary.credentials.values import CredentialFactory
from canary.secret import Secret
from canary.store.embedded import PostgresServer

HTTP_PATH = "/cloudtrail/events"
API_KEY = "ct-api-key-for-fuzz"
FIREHOSE_PATH = "/ingest/firehose/cloudtrail"
FIREHOSE_KEY = "ct-firehose-key-for-fuzz"
GENUINE_EVERY = 30


@pytest.fixture(scope="module")
def server(pg_server: PostgresServer) -> Iterator[FuzzServer]:
    directory = Path(tempfile.mkdtemp(prefix="canary-fuzz-ct-"))

    def components(rt: Any) -> list[Any]:
        return [CloudTrailWebhook(HTTP_PATH, API_KEY), CloudTrailDirectorySource(directory, poll=0.05, settle=0.0),
                CloudTrailFirehose(FIREHOSE_PATH, Secret(FIREHOSE_KEY))]

    async def setup(s: FuzzServer) -> None:
        cred = CredentialFactory(s.runtime.keyring).aws_key()
        [cid] = await register(s.runtime, cred, table="public.integrations")
        s.canaries.update(key=cred.secret, cid=cid, dir=directory, files=0)

    try:
        with fuzz_server(pg_server, "cloudtrail", {}, components, setup) as s:
            yield s
    finally:
        shutil.rmtree(directory, ignore_errors=True)


_KEY = "AKIA_CANARY_PLACEHOLDER"  # replaced by the canary's key id when posted
_time = st.sampled_from(["2023-07-19T21:17:28Z", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59Z",
                         "9999-12-31T23:59:59-14:00", "2023-07-19T21:17:28", "", "garbage", "2023-02-30T00:00:00Z"]) | text
_identity = st.fixed_dictionaries({}, optional={
    "accessKeyId": st.sampled_from([_KEY, "AKIAIOSFODNN7EXAMPLE", "", "A" * 16, "A" * 129]) | json_value,
    "userName": json_value, "arn": json_value, "accountId": json_value, "type": json_value})
_record = st.fixed_dictionaries({"userIdentity": _identity | json_value}, optional={
    "eventTime": _time | json_value, "eventID": text | json_value, "eventName": json_value, "eventSource": json_value,
    "sourceIPAddress": text | json_value, "userAgent": json_value, "awsRegion": json_value, "errorCode": json_value,
    "requestID": json_value, "recipientAccountId": json_value})
_event = st.fixed_dictionaries({"detail-type": st.sampled_from(["AWS API Call via CloudTrail", "AWS Console Sign In via CloudTrail",
                                                                "Scheduled Event"]) | json_value,
                                "detail": _record | json_value})
_document = (st.builds(lambda rs: {"Records": rs}, st.lists(_record | json_value, max_size=5)) | _event | st.lists(_event, max_size=4)
             | st.builds(lambda v: {"Records": v}, json_value) | json_value)


def _bytes(doc: Any, key: str) -> bytes:
    return json.dumps(doc).replace(_KEY, key).encode("utf-8", "surrogatepass")


def _post(s: FuzzServer, body: bytes, api_key: str = API_KEY, encoding: str | None = None) -> int:
    headers = [("X-Canary-Api-Key", api_key), ("Content-Type", "application/json")]
    answer = http_request(s.port, "POST", HTTP_PATH, headers + ([("Content-Encoding", encoding)] if encoding else []), body)
    s.tally.connections += 1
    return answer.status


def _genuine_event(s: FuzzServer) -> bytes:
    rec = {"userIdentity": {"type": "IAMUser", "accessKeyId": s.canaries["key"], "userName": "deploy"},
           "eventTime": "2023-07-19T21:17:28Z", "eventSource": "s3.amazonaws.com", "eventName": "ListBuckets",
           "sourceIPAddress": "192.0.2.9", "eventID": uuid.uuid4().hex}
    return json.dumps({"detail-type": "AWS API Call via CloudTrail", "detail": rec}).encode()


def _genuine(s: FuzzServer) -> None:
    before = s.fetchval("SELECT count(*) FROM events WHERE canary_id = $1", s.canaries["cid"])
    assert _post(s, _genuine_event(s)) == 200
    s.wait_for("SELECT count(*) > $2 FROM events WHERE canary_id = $1", s.canaries["cid"], before)


def _drop(s: FuzzServer, name: str, data: bytes) -> str:
    """Write a file into the watched tree atomically (as a sync tool renames it into place)."""
    s.canaries["files"] += 1
    final = Path(s.canaries["dir"]) / "AWSLogs" / f"{s.canaries['files']:06d}_{name}"
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_suffix(".part")
    tmp.write_bytes(data)
    os.replace(tmp, final)
    return str(final)


@fuzz_settings(150)
@example(doc={"Records": [{"userIdentity": {"accessKeyId": _KEY}, "eventTime": "0001-01-01T00:00:00+14:00"}]}, raw=None,
         api_key=API_KEY, encoding=None)
@example(doc={"detail-type": "AWS API Call via CloudTrail", "detail": {"userIdentity": {"accessKeyId": _KEY},
                                                                       "eventTime": "9999-12-31T23:59:59-14:00"}},
         raw=None, api_key=API_KEY, encoding=None)
@example(doc={"detail-type": ["AWS API Call via CloudTrail"], "detail": {}}, raw=None, api_key=API_KEY,
         encoding=None)  # was a TypeError: 500
@example(doc=None, raw=b"[" * 100_000 + b"]" * 100_000, api_key=API_KEY, encoding=None)  # was a RecursionError: 500
@example(doc=None, raw=b"{}", api_key=API_KEY, encoding="gzip")  # an undecodable body was RequestPayloadError: 500
@given(doc=_document, raw=st.none() | json_bytes, api_key=st.sampled_from([API_KEY, API_KEY, "", "x"]),
       encoding=st.sampled_from([None, None, None, "gzip", "deflate"]))
def test_fuzzed_eventbridge_bodies_never_get_a_5xx(server: FuzzServer, doc: Any, raw: bytes | None, api_key: str,
                                                   encoding: str | None) -> None:
    """Any body: 200 (processed), 400 (malformed) or 401 (wrong key), never a 5xx; nothing escapes."""
    server.tally.examples += 1
    server.tally.messages += 1
    body = raw if raw is not None else _bytes(doc, server.canaries["key"])
    # raw bytes under "gzip" are a lying encoding (a 400); deflate is always honest here: aiohttp 3.14 holds a
    # request whose lying "deflate" body is over ~64 KiB until the client hangs up (see the report)
    if encoding == "deflate":
        body = zlib.compress(body)
    elif encoding == "gzip" and raw is None:
        body = gzip.compress(body)
    status = _post(server, body, api_key, encoding)
    assert status in (200, 400, 401), status
    if server.tally.examples % GENUINE_EVERY == 0:
        _genuine(server)
    server.assert_clean()


_file = st.tuples(st.sampled_from(["plain", "gzip", "gzip-truncated", "gzip-named-plain", "raw"]), _document | json_value,
                  json_bytes)


def _file_bytes(kind: str, doc: Any, raw: bytes, key: str) -> tuple[str, bytes]:
    data = _bytes(doc, key)
    if kind == "plain":
        return "ct.json", data
    if kind == "gzip":
        return "ct.json.gz", gzip.compress(data)
    if kind == "gzip-truncated":
        z = gzip.compress(data)
        return "ct.json.gz", z[: max(1, len(z) // 2)]
    if kind == "gzip-named-plain":
        return "ct.json", gzip.compress(data)
    return "ct.json", raw


@fuzz_settings(60)
@example(files=[("plain", {"Records": [{"userIdentity": {"accessKeyId": _KEY}, "eventTime": "0001-01-01T00:00:00+14:00"}]}, b"")])
@example(files=[("raw", None, b"[" * 100_000 + b"]" * 100_000)])  # a RecursionError failed every scan from then on
@given(files=st.lists(_file, min_size=1, max_size=3))
def test_fuzzed_log_files_are_all_settled(server: FuzzServer, files: list[tuple[str, Any, bytes]]) -> None:
    """Any files dropped in the tree are each marked done or rejected within PROMPT seconds (the scan
    never fails on one and so never stops at it); nothing escapes."""
    server.tally.examples += 1
    paths = [_drop(server, *_file_bytes(kind, doc, raw, server.canaries["key"])) for kind, doc, raw in files]
    server.tally.messages += len(paths)
    server.wait_for("SELECT count(*) = cardinality($1::text[]) FROM cloudtrail_files WHERE path = ANY($1::text[])", paths)
    server.assert_clean()


def _firehose_record(message: Any, mangle: str) -> dict[str, Any]:
    """One Firehose record carrying ``message`` (a subscription message or anything), honest or mangled."""
    data = json.dumps(message).encode("utf-8", "surrogatepass")
    if mangle == "plain":  # not gzip
        return {"data": base64.b64encode(data).decode()}
    if mangle == "truncated":
        z = gzip.compress(data)
        return {"data": base64.b64encode(z[: max(1, len(z) // 2)]).decode()}
    if mangle == "not-base64":
        return {"data": data.decode("utf-8", "replace")}
    return {"data": base64.b64encode(gzip.compress(data)).decode()}


_log_event = st.fixed_dictionaries({"id": text | json_value, "timestamp": st.integers() | json_value,
                                    "message": st.builds(json.dumps, _record | json_value) | text | json_value})
_subscription = st.fixed_dictionaries(
    {"messageType": st.sampled_from(["DATA_MESSAGE", "CONTROL_MESSAGE"]) | json_value,
     "logGroup": text | json_value, "logStream": text | json_value,
     "logEvents": st.lists(_log_event, max_size=4) | json_value}) | json_value


def _firehose_post(s: FuzzServer, body: bytes, key: str = FIREHOSE_KEY) -> int:
    headers = [("X-Amz-Firehose-Access-Key", key), ("X-Amz-Firehose-Request-Id", "fuzz"), ("Content-Type", "application/json")]
    s.tally.connections += 1
    return http_request(s.port, "POST", FIREHOSE_PATH, headers, body).status


@fuzz_settings(100)
@given(records=st.lists(st.tuples(_subscription, st.sampled_from(["gzip", "gzip", "plain", "truncated", "not-base64"])), max_size=4),
       raw=st.none() | json_bytes, key=st.sampled_from([FIREHOSE_KEY, FIREHOSE_KEY, "", "x"]))
def test_fuzzed_firehose_deliveries_never_get_a_5xx(server: FuzzServer, records: list[tuple[Any, str]], raw: bytes | None,
                                                    key: str) -> None:
    """Any Firehose delivery of a trail's CloudWatch Logs: 200 (the good records committed, the rest
    rejected), 400 (no Firehose request) or 401 (wrong access key), never a 5xx; nothing escapes."""
    server.tally.examples += 1
    server.tally.messages += len(records)
    body = raw if raw is not None else json.dumps(
        {"requestId": "fuzz", "timestamp": 1, "records": [_firehose_record(m, how) for m, how in records]}).replace(
        _KEY, server.canaries["key"]).encode()
    status = _firehose_post(server, body, key)
    assert status in (200, 400, 401), status
    server.assert_clean()


def test_canary_key_is_detected_after_the_fuzzing(server: FuzzServer) -> None:
    """After the fuzzing, a canary key in an EventBridge event, in a gzip'd log file and in a Firehose
    delivery all raise events."""
    before = server.fetchval("SELECT count(*) FROM events WHERE canary_id = $1", server.canaries["cid"])
    rec = json.loads(_genuine_event(server))["detail"]
    rec["eventVersion"] = "1.08"
    message = {"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": "trail", "logStream": "s",
               "subscriptionFilters": ["f"], "logEvents": [{"id": "1", "timestamp": 1, "message": json.dumps(rec)}]}
    body = json.dumps({"requestId": "genuine", "timestamp": 1, "records": [_firehose_record(message, "gzip")]}).encode()
    assert _firehose_post(server, body) == 200
    server.wait_for("SELECT count(*) > $2 FROM events WHERE canary_id = $1", server.canaries["cid"], before)
    _genuine(server)
    before = server.fetchval("SELECT count(*) FROM events WHERE canary_id = $1", server.canaries["cid"])
    rec = json.loads(_genuine_event(server))["detail"]
    _drop(server, "ct.json.gz", gzip.compress(json.dumps({"Records": [rec]}).encode()))
    server.wait_for("SELECT count(*) > $2 FROM events WHERE canary_id = $1", server.canaries["cid"], before)
    server.assert_clean()
