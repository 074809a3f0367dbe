"""AWS access-key canaries: CloudTrail log files (directory) and EventBridge events (HTTP) whose
userIdentity.accessKeyId is a canary raise USED events with the API call's details."""

from __future__ import annotations

import base64
import copy
import gzip
import json
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from credential_support import register
from testkit import MakeConfig

from canary.credentials.cloudtrail import (
    CloudTrailDirectorySource,
    CloudTrailFirehose,
    CloudTrailWebhook,
    records_from_document,
)
from canary.credentials.sources import SOURCES
from canary.credentials.values import CredentialFactory
from canary.plugins import build_components
from canary.runtime import Runtime
from canary.secret import Secret

# Shaped after the documented examples in the CloudTrail user guide ("CloudTrail log file examples":
# an IAM user running ec2 StartInstances, and an error-code record).
START_INSTANCES = {
    "eventVersion": "1.08",
    "userIdentity": {
        "type": "IAMUser", "principalId": "EXAMPLE6E4XEGITWATV6R", "arn": "arn:aws:iam::123456789012:user/Mateo",
        "accountId": "123456789012", "accessKeyId": "AKIAIOSFODNN7EXAMPLE", "userName": "Mateo",
        "sessionContext": {"sessionIssuer": {}, "webIdFederationData": {},
                           "attributes": {"creationDate": "2023-07-19T21:11:57Z", "mfaAuthenticated": "false"}},
    },
    "eventTime": "2023-07-19T21:17:28Z", "eventSource": "ec2.amazonaws.com", "eventName": "StartInstances",
    "awsRegion": "us-east-1", "sourceIPAddress": "192.0.2.0", "userAgent": "aws-cli/2.13.5 Python/3.11.4 Linux/4.14.255-314-253.539.amzn2.x86_64 exe/x86_64.amzn.2 prompt/off command/ec2.start-instances",
    "requestParameters": {"instancesSet": {"items": [{"instanceId": "i-EXAMPLE56126103cb"}]}},
    "responseElements": None, "requestID": "e4336db0-149f-4a6b-844d-EXAMPLEb9d16",
    "eventID": "e755e09c-42f9-4c5c-9064-EXAMPLE228c7", "readOnly": False, "eventType": "AwsApiCall",
    "managementEvent": True, "recipientAccountId": "123456789012", "eventCategory": "Management",
}
ACCESS_DENIED = {
    "eventVersion": "1.08",
    "userIdentity": {"type": "IAMUser", "principalId": "AIDA6ON6E4XEGITEXAMPLE", "arn": "arn:aws:iam::888888888888:user/Mary",
                     "accountId": "888888888888", "accessKeyId": "AKIAIOSFODNN7EXAMPLE", "userName": "Mary"},
    "eventTime": "2023-07-19T21:25:09Z", "eventSource": "iam.amazonaws.com", "eventName": "CreateUser",
    "awsRegion": "us-east-1", "sourceIPAddress": "192.0.2.0", "userAgent": "aws-cli/2.13.5",
    "errorCode": "AccessDenied",
    "errorMessage": "User: arn:aws:iam::888888888888:user/Mary is not authorized to perform: iam:CreateUser",
    "requestParameters": None, "responseElements": None, "requestID": "2d528c76-329e-410b-9516-EXAMPLE565dc",
    "eventID": "ba0801a1-87ec-4d26-be87-EXAMPLE75bbb", "readOnly": False, "eventType": "AwsApiCall",
    "managementEvent": True, "recipientAccountId": "888888888888",
}


async def _aws_canary(rt: Runtime) -> tuple[str, int]:
    cred = CredentialFactory(rt.keyring).aws_key()
    [cid] = await register(rt, cred, table="public.integrations")
    return cred.secret, cid


def _with_key(record: dict[str, Any], key_id: str, event_id: str) -> dict[str, Any]:
    r = copy.deepcopy(record)
    r["userIdentity"]["accessKeyId"] = key_id
    r["eventID"] = event_id
    return r


async def test_log_files_in_a_directory_raise_events_once(runtime: Runtime, tmp_path: Path) -> None:
    """A gzip'd and a plain CloudTrail log file in a bucket-like tree: records with the canary key
    raise USED events carrying eventName, sourceIPAddress, userAgent, awsRegion and errorCode (never the
    key id); other keys raise nothing; a second scan reads nothing again."""
    key_id, cid = await _aws_canary(runtime)
    day = tmp_path / "AWSLogs" / "123456789012" / "CloudTrail" / "us-east-1" / "2023" / "07" / "19"
    day.mkdir(parents=True)
    doc1 = {"Records": [_with_key(START_INSTANCES, key_id, "ev-1"), START_INSTANCES]}
    (day / "123456789012_CloudTrail_us-east-1_20230719T2120Z_Mu0KsOhtH1ar15ZZ.json.gz").write_bytes(gzip.compress(json.dumps(doc1).encode()))
    (day / "123456789012_CloudTrail_us-east-1_20230719T2130Z_AAAAbbbbCCCCdddd.json").write_text(
        json.dumps({"Records": [_with_key(ACCESS_DENIED, key_id, "ev-2")]}))
    src = CloudTrailDirectorySource(tmp_path, poll=60)
    src.attach(runtime)
    assert await src.scan() == 2
    assert await src.scan() == 0  # already done: not read again
    rows = await runtime.pool.fetch("SELECT * FROM events ORDER BY observed_at")
    assert [r["canary_id"] for r in rows] == [cid, cid]
    first, second = rows
    assert first["evidence"]["event_name"] == "StartInstances" and first["origin"]["client_addr"] == "192.0.2.0"
    assert first["origin"]["aws_region"] == "us-east-1" and first["origin"]["user_agent"].startswith("aws-cli/2.13.5")
    assert first["actor"]["user"] == "Mateo" and "error_code" not in first["evidence"]
    assert second["evidence"]["error_code"] == "AccessDenied" and second["evidence"]["event_name"] == "CreateUser"
    assert await runtime.pool.fetchval("SELECT count(*) FROM cloudtrail_files WHERE status = 'done'") == 2
    # the key id is the canary's own value: no event (so no alert, SIEM record or incident) carries it
    for r in rows:
        assert key_id not in json.dumps([r["actor"], r["origin"], r["evidence"]], default=str)


async def test_malformed_files_are_retried_then_rejected(runtime: Runtime, tmp_path: Path) -> None:
    """A file that does not parse is left for the next scan while fresh (it may still be written) and
    rejected and counted once it has settled; the scan carries on with the other files."""
    bad = tmp_path / "broken.json.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    src = CloudTrailDirectorySource(tmp_path, poll=60, settle=30)
    src.attach(runtime)
    assert await src.scan() == 0
    old = time.time() - 120
    os.utime(bad, (old, old))
    assert await src.scan() == 1
    assert await runtime.pool.fetchval("SELECT reason FROM rejects") == "malformed_cloudtrail_file"
    assert b'reason="malformed_cloudtrail_file"' in runtime.metrics.render()


def _eventbridge(detail: dict[str, Any], detail_type: str = "AWS API Call via CloudTrail") -> dict[str, Any]:
    return {"version": "0", "id": "6f87d04b-9f74-4f04-a780-7acf4b0a9b38", "detail-type": detail_type,
            "source": "aws.ec2", "account": "123456789012", "time": "2023-07-19T21:17:28Z", "region": "us-east-1",
            "resources": [], "detail": detail}


async def test_eventbridge_endpoint_commits_before_answering(runtime: Runtime) -> None:
    """EventBridge events POSTed with the API key are committed and answered 200; a wrong key gets
    401 and a malformed body 400, both counted; non-CloudTrail events are accepted and ignored."""
    key_id, cid = await _aws_canary(runtime)
    hook = CloudTrailWebhook("/ingest/cloudtrail", "s3cret-key")
    await hook.start(runtime)
    app = web.Application()
    app.router.add_routes(hook.routes())
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as s:
        url = str(server.make_url("/ingest/cloudtrail"))
        hdr = {"X-Canary-Api-Key": "s3cret-key"}
        async with s.post(url, json=_eventbridge(_with_key(START_INSTANCES, key_id, "ev-9")), headers=hdr) as r:
            assert r.status == 200 and await r.json() == {"records": 1, "events": 1}
        assert await runtime.pool.fetchval("SELECT canary_id FROM events WHERE evidence->>'via' = 'eventbridge'") == cid
        async with s.post(url, json=[_eventbridge({"x": 1}, "EC2 Instance State-change Notification")], headers=hdr) as r:
            assert r.status == 200 and (await r.json())["records"] == 0
        async with s.post(url, json=_eventbridge(START_INSTANCES), headers={"X-Canary-Api-Key": "wrong"}) as r:
            assert r.status == 401
        async with s.post(url, data=b"{not json", headers=hdr) as r:
            assert r.status == 400
    reasons = sorted(r["reason"] for r in await runtime.pool.fetch("SELECT reason FROM rejects"))
    assert reasons == ["bad_api_key", "malformed_eventbridge_event"]
    assert await runtime.pool.fetchval("SELECT count(*) FROM events") == 1


def test_document_shapes() -> None:
    """Log files, single events and event arrays are accepted; anything else is a clear error."""
    assert records_from_document({"Records": [START_INSTANCES]}) == [START_INSTANCES]
    assert records_from_document([_eventbridge(ACCESS_DENIED)]) == [ACCESS_DENIED]
    with pytest.raises(ValueError, match="expected a CloudTrail log file or EventBridge events"):
        records_from_document({"foo": 1})
    with pytest.raises(ValueError, match="Records"):
        records_from_document({"Records": {}})


def test_config_enables_cloudtrail_components(make_config: MakeConfig, tmp_path: Path) -> None:
    """[credentials.cloudtrail] with a directory and an http_path starts both inputs; the API key is
    required for the endpoint and never shown in the component's repr."""
    cfg = make_config(credentials={"cloudtrail": {"directory": str(tmp_path), "http_path": "/ct", "api_key": "k-123"}})
    comps = build_components(SOURCES, cfg)
    assert {type(c).__name__ for c in comps} == {"CloudTrailDirectorySource", "CloudTrailWebhook"}
    assert "k-123" not in repr(comps)


def _firehose_request(request_id: str, messages: list[dict[str, Any]], extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A Firehose HTTP endpoint request whose records are gzip'd CloudWatch Logs subscription messages."""
    data = [{"data": base64.b64encode(gzip.compress(json.dumps(m).encode())).decode()} for m in messages]
    return {"requestId": request_id, "timestamp": 1689801448000, "records": data + (extra or [])}


def _subscription(records: list[dict[str, Any]], group: str = "aws-cloudtrail-logs-123456789012") -> dict[str, Any]:
    """A DATA_MESSAGE of a trail's log group: each log event's message is one CloudTrail record."""
    return {"messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": group,
            "logStream": "123456789012_CloudTrail_us-east-1", "subscriptionFilters": ["to-canary"],
            "logEvents": [{"id": f"3719565416{i:04d}", "timestamp": 1689801448000 + i, "message": json.dumps(r)}
                          for i, r in enumerate(records)]}


async def test_a_trail_through_cloudwatch_logs_and_firehose_pages(runtime: Runtime) -> None:
    """A trail sent to CloudWatch Logs and on through a Firehose stream: the canary key's call becomes
    one USED event with the caller's address and user agent, answered 200 (request id echoed) only
    after commit; Firehose's retry of the same request adds nothing; a control message is skipped, a
    broken record or a log event that is no CloudTrail record is rejected and the rest committed; a
    wrong access key is 401."""
    key_id, cid = await _aws_canary(runtime)
    receiver = CloudTrailFirehose("/ingest/firehose/cloudtrail", Secret("fh-access-key"))
    await receiver.start(runtime)
    app = web.Application()
    app.router.add_routes(receiver.routes())
    used = _with_key(START_INSTANCES, key_id, "ev-fh-1")
    body = _firehose_request("req-1", [
        {"messageType": "CONTROL_MESSAGE", "owner": "CloudwatchLogs", "logGroup": "", "logStream": "",
         "subscriptionFilters": [], "logEvents": [{"id": "", "timestamp": 1, "message": "CWL CONTROL MESSAGE"}]},
        _subscription([START_INSTANCES, used]),
        {**_subscription([]), "logEvents": [{"id": "1", "timestamp": 1, "message": "not json"},
                                             {"id": "2", "timestamp": 1, "message": "[1, 2]"}]},
    ], extra=[{"data": "%%%not base64"}])
    headers = {"X-Amz-Firehose-Access-Key": "fh-access-key", "X-Amz-Firehose-Request-Id": "req-1"}
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as s:
        url = str(server.make_url("/ingest/firehose/cloudtrail"))
        for _ in range(2):  # Firehose retries a request it got no 200 for: the same request again
            async with s.post(url, json=body, headers=headers) as r:
                answer = await r.json()
                assert r.status == 200 and answer["requestId"] == "req-1" and "errorMessage" not in answer
        async with s.post(url, json=body, headers={**headers, "X-Amz-Firehose-Access-Key": "wrong"}) as r:
            assert r.status == 401 and (await r.json())["requestId"] == "req-1"
    [ev] = await runtime.pool.fetch("SELECT * FROM events")
    assert ev["canary_id"] == cid and ev["kind"] == "used"
    assert ev["origin"]["client_addr"] == "192.0.2.0" and ev["origin"]["user_agent"].startswith("aws-cli/2.13.5")
    assert ev["evidence"]["via"] == "firehose:aws-cloudtrail-logs-123456789012"
    assert key_id not in json.dumps([ev["actor"], ev["origin"], ev["evidence"]], default=str)
    reasons = sorted(r["reason"] for r in await runtime.pool.fetch("SELECT reason FROM rejects"))
    assert reasons == ["bad_access_key", "bad_base64", "bad_base64", "not_a_cloudtrail_record",
                       "not_a_cloudtrail_record", "not_a_cloudtrail_record", "not_a_cloudtrail_record"]


def test_config_enables_the_firehose_receiver(make_config: MakeConfig) -> None:
    cfg = make_config(credentials={"cloudtrail": {"firehose_access_key": "fh-123"}})
    [comp] = build_components(SOURCES, cfg)
    assert isinstance(comp, CloudTrailFirehose) and comp.path == "/ingest/firehose/cloudtrail"
    assert "fh-123" not in repr(comp)
