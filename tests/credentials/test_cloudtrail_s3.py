"""CloudTrail read straight from the trail's S3 bucket (moto's S3 / STS / IAM server on 127.0.0.1, SigV4):
log files in the documented key layout raise USED events once, listing resumes from a per-prefix checkpoint
minus a lookback, bad files are rejected and counted, refusals are one HEALTH event per episode."""

from __future__ import annotations

import asyncio
import datetime as dt
import gzip
import json
import os
import socket
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import pytest
from credential_support import register
from moto.iam.access_control import S3IAMRequest
from s3_server import ACCOUNT, S3Server
from structlog.testing import capture_logs
from testkit import MakeConfig

from canary.credentials import cloudtrail, cloudtrail_s3
from canary.credentials.cloudtrail_s3 import CloudTrailS3Source, TrailPrefix, delivered_at
from canary.credentials.sources import SOURCES
from canary.credentials.values import CredentialFactory
from canary.errors import ConfigError
from canary.plugins import build_components
from canary.runtime import Runtime
from canary.secret import Secret

BUCKET = "corp-cloudtrail-logs"
REGION = "us-east-1"
ORG = "o-aa111bb222"
EXTERNAL_ID = "ct-reader-5b1e9f0c77aa"
UTC = dt.UTC

# Shaped after "CloudTrail log file examples" (an IAM user running ec2 StartInstances).
RECORD = {
    "eventVersion": "1.08",
    "userIdentity": {"type": "IAMUser", "principalId": "EXAMPLE6E4XEGITWATV6R", "arn": f"arn:aws:iam::{ACCOUNT}:user/Mateo",
                     "accountId": ACCOUNT, "accessKeyId": "AKIAIOSFODNN7EXAMPLE", "userName": "Mateo"},
    "eventTime": "2023-07-19T21:17:28Z", "eventSource": "ec2.amazonaws.com", "eventName": "StartInstances",
    "awsRegion": REGION, "sourceIPAddress": "192.0.2.0", "userAgent": "aws-cli/2.13.5 Python/3.11.4 exe/x86_64.amzn.2",
    "requestParameters": {"instancesSet": {"items": [{"instanceId": "i-EXAMPLE56126103cb"}]}},
    "responseElements": None, "requestID": "e4336db0-149f-4a6b-844d-EXAMPLEb9d16",
    "eventID": "e755e09c-42f9-4c5c-9064-EXAMPLE228c7", "readOnly": False, "eventType": "AwsApiCall",
    "managementEvent": True, "recipientAccountId": ACCOUNT, "eventCategory": "Management",
}


@pytest.fixture(scope="module")
def _moto() -> Iterator[S3Server]:
    server = S3Server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(_moto: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[S3Server]:
    """The module's moto server, reset, with the trail's bucket and default-chain credentials."""
    _moto.prepare(monkeypatch, tmp_path)
    _s3_canonical_query(monkeypatch)
    _moto.client("s3").create_bucket(Bucket=BUCKET)
    yield _moto
    _moto.reset()


def _s3_canonical_query(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fix to moto 5's IAM enforcement (not to the code under test), beside s3_server's for paths: it
    signs the query string as werkzeug decoded it, so a ListObjectsV2 with ``prefix=AWSLogs/`` (sent as
    ``AWSLogs%2F``, as S3's canonical query string encodes it) failed with SignatureDoesNotMatch."""
    original = S3IAMRequest.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        path, sep, query = self._path.partition("?")
        if sep:
            pairs = parse_qsl(query, keep_blank_values=True)
            self._path = path + "?" + "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in pairs)

    monkeypatch.setattr(S3IAMRequest, "__init__", init)


def _record(key_id: str, event_id: str, ip: str = "192.0.2.0") -> dict[str, Any]:
    rec: dict[str, Any] = json.loads(json.dumps(RECORD))
    rec["userIdentity"]["accessKeyId"] = key_id
    rec["eventID"] = event_id
    rec["sourceIPAddress"] = ip
    return rec


def _key(at: dt.datetime, *, account: str = ACCOUNT, region: str = REGION, org: str = "", prefix: str = "") -> str:
    """A key where CloudTrail delivers (``Finding your CloudTrail log files``), named as it names files."""
    root = (f"{prefix}/" if prefix else "") + "AWSLogs/" + (f"{org}/" if org else "")
    unique = uuid.uuid4().hex[:16]
    return f"{root}{account}/CloudTrail/{region}/{at:%Y/%m/%d}/{account}_CloudTrail_{region}_{at:%Y%m%dT%H%M}Z_{unique}.json.gz"


def _put(s3: S3Server, key: str, *records: dict[str, Any], raw: bytes | None = None) -> str:
    body = raw if raw is not None else gzip.compress(json.dumps({"Records": list(records)}).encode())
    s3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)
    return key


def _source(s3: S3Server, **options: Any) -> CloudTrailS3Source:
    return CloudTrailS3Source(BUCKET, endpoint_url=s3.url, poll=0.2, **options)


async def _aws_canary(rt: Runtime) -> tuple[str, int]:
    cred = CredentialFactory(rt.keyring).aws_key()
    [cid] = await register(rt, cred, table="public.integrations")
    return cred.secret, cid


def _ago(minutes: float) -> dt.datetime:
    return dt.datetime.now(UTC) - dt.timedelta(minutes=minutes)


async def _events(rt: Runtime, kind: str = "used") -> list[Any]:
    return list(await rt.pool.fetch("SELECT * FROM events WHERE kind = $1 ORDER BY id", kind))


async def test_a_poll_commits_each_canary_record_once(runtime: Runtime, s3: S3Server) -> None:
    """Log files in the documented layout, accounts and Regions found by listing: each record with the
    canary key is one USED event with sourceIPAddress and userAgent, via its s3:// URI (never the key id);
    files are marked done and a second poll reads nothing again."""
    key_id, cid = await _aws_canary(runtime)
    k1 = _put(s3, _key(_ago(20)), _record(key_id, "ev-1"), RECORD)
    k2 = _put(s3, _key(_ago(10), region="eu-west-1"), _record(key_id, "ev-2", "198.51.100.7"))
    src = _source(s3)
    src.attach(runtime)
    first = await src.poll()
    assert (first.files, first.events, first.rejected, first.error) == (2, 2, 0, None)
    rows = await _events(runtime)
    assert [r["canary_id"] for r in rows] == [cid, cid]
    by_ip = {r["origin"]["client_addr"]: r for r in rows}
    assert set(by_ip) == {"192.0.2.0", "198.51.100.7"}
    assert by_ip["192.0.2.0"]["origin"]["user_agent"].startswith("aws-cli/2.13.5")
    assert by_ip["192.0.2.0"]["evidence"]["via"] == f"s3://{BUCKET}/{k1}"
    assert by_ip["198.51.100.7"]["evidence"]["via"] == f"s3://{BUCKET}/{k2}"
    for r in rows:
        assert key_id not in json.dumps([r["actor"], r["origin"], r["evidence"]], default=str)
    again = await src.poll()
    assert (again.files, again.events) == (0, 0) and len(await _events(runtime)) == 2
    done = await runtime.pool.fetch("SELECT path, status, records FROM cloudtrail_files ORDER BY path")
    assert {(r["path"], r["status"], r["records"]) for r in done} == {
        (f"s3://{BUCKET}/{k1}", "done", 2), (f"s3://{BUCKET}/{k2}", "done", 1)}


async def test_organization_trails_and_a_trail_prefix(runtime: Runtime, s3: S3Server) -> None:
    """An organization trail under the trail's own key prefix (``<prefix>/AWSLogs/<O-ID>/<account>/...``)
    is found by listing; configured accounts (``o-id/account``) and Regions skip the listing; names that are
    no account, organization or Region are ignored."""
    key_id, cid = await _aws_canary(runtime)
    member = "210987654321"
    _put(s3, _key(_ago(5), account=member, org=ORG, prefix="trails/prod"), _record(key_id, "ev-org"))
    _put(s3, f"trails/prod/AWSLogs/not-an-account/CloudTrail/{REGION}/x.json.gz", _record(key_id, "ev-junk"))
    _put(s3, _key(_ago(5), account=member, org=ORG, region="nowhere", prefix="trails/prod"), _record(key_id, "ev-junk2"))
    listed = _source(s3, prefix="/trails/prod/")
    listed.attach(runtime)
    assert (await listed.poll()).events == 1
    assert [p.prefix for p in listed._prefixes] == [f"trails/prod/AWSLogs/{ORG}/{member}/CloudTrail/{REGION}/"]
    assert [(r["evidence"]["event_id"], r["canary_id"]) for r in await _events(runtime)] == [("ev-org", cid)]
    configured = _source(s3, prefix="trails/prod", accounts=[f"{ORG}/{member}"], regions=[REGION])
    configured.attach(runtime)
    await configured.poll()
    assert configured._prefixes == [TrailPrefix(f"trails/prod/AWSLogs/{ORG}/{member}/CloudTrail/{REGION}/", member, REGION)]


async def test_late_files_within_lookback_are_read(runtime: Runtime, s3: S3Server) -> None:
    """Listing starts at the checkpoint (newest file read) minus the lookback: a file landing late with an
    older name than the checkpoint is still read, one older than the lookback is not listed at all."""
    key_id, _ = await _aws_canary(runtime)
    newest = _ago(2)
    _put(s3, _key(newest), _record(key_id, "ev-now"))
    src = _source(s3, lookback=900)
    src.attach(runtime)
    assert (await src.poll()).events == 1
    saved = await runtime.pool.fetchval("SELECT position->>'delivered' FROM checkpoints WHERE source LIKE 'cloudtrail-s3:%CloudTrail%'")
    assert dt.datetime.fromisoformat(saved) == newest.replace(second=0, microsecond=0)
    _put(s3, _key(newest - dt.timedelta(minutes=5)), _record(key_id, "ev-late"))
    _put(s3, _key(newest - dt.timedelta(minutes=40)), _record(key_id, "ev-too-late"))
    assert (await src.poll()).events == 1
    assert [r["evidence"]["event_id"] for r in await _events(runtime)] == ["ev-now", "ev-late"]


async def test_corrupt_and_oversized_files_are_rejected_and_the_rest_committed(
        runtime: Runtime, s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that is not gzip'd JSON, one that is not CloudTrail, and one that decompresses past
    MAX_FILE_BYTES are rejected (counted, marked, not read again); the good files are committed."""
    key_id, _ = await _aws_canary(runtime)
    monkeypatch.setattr(cloudtrail, "MAX_FILE_BYTES", 4096)
    _put(s3, _key(_ago(9)), raw=b"\x1f\x8b not really gzip")
    _put(s3, _key(_ago(8)), raw=gzip.compress(b'{"foo": 1}'))
    _put(s3, _key(_ago(7)), raw=gzip.compress(json.dumps({"Records": [RECORD] * 20}).encode()))
    _put(s3, _key(_ago(6)), _record(key_id, "ev-good"))
    src = _source(s3)
    src.attach(runtime)
    result = await src.poll()
    assert (result.files, result.rejected, result.events) == (1, 3, 1)
    reasons = sorted(r["reason"] for r in await runtime.pool.fetch("SELECT reason FROM rejects"))
    assert reasons == ["cloudtrail_file_too_large", "malformed_cloudtrail_file", "malformed_cloudtrail_file"]
    assert b'reason="malformed_cloudtrail_file"' in runtime.metrics.render()
    assert await runtime.pool.fetchval("SELECT count(*) FROM cloudtrail_files WHERE status = 'rejected'") == 3
    assert (await src.poll()).rejected == 0


async def test_a_poll_is_bounded_and_the_next_one_continues(runtime: Runtime, s3: S3Server) -> None:
    """At most s3_max_objects files per poll (``more`` says there is more); later polls read the rest in key
    order, each file once."""
    key_id, _ = await _aws_canary(runtime)
    for i in range(5):
        _put(s3, _key(_ago(30 - i)), _record(key_id, f"ev-{i}"))
    src = _source(s3, max_objects=2)
    src.attach(runtime)
    polls = [await src.poll() for _ in range(4)]
    assert [(p.files, p.more) for p in polls] == [(2, True), (2, True), (1, False), (0, False)]
    assert [r["evidence"]["event_id"] for r in await _events(runtime)] == [f"ev-{i}" for i in range(5)]


async def test_missing_bucket_is_one_health_event_per_episode(runtime: Runtime, s3: S3Server) -> None:
    """A bucket that does not exist is NoSuchBucket: one HEALTH event, however many polls fail (and after
    a restart inside the episode); once the bucket can be read the episode ends, and the next failure is
    a new one."""
    src = _source(s3)
    src.attach(runtime)
    s3.client("s3").delete_bucket(Bucket=BUCKET)
    for _ in range(3):
        result = await src.poll()
        assert result.error is not None and result.error.code == "NoSuchBucket" and result.error.refused
    restarted = _source(s3)
    restarted.attach(runtime)
    await restarted.poll()
    [health] = await _events(runtime, "health")
    assert health["evidence"]["signal"] == "cloudtrail_s3_unreadable" and health["evidence"]["code"] == "NoSuchBucket"
    assert BUCKET in health["evidence"]["problem"]
    s3.client("s3").create_bucket(Bucket=BUCKET)
    assert (await restarted.poll()).error is None
    s3.client("s3").delete_bucket(Bucket=BUCKET)
    await restarted.poll()
    assert len(await _events(runtime, "health")) == 2


def _reader_role(s3: S3Server, actions: list[str]) -> str:
    """A role assumable only with EXTERNAL_ID, allowed ``actions`` on the trail's bucket."""
    iam = s3.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": EXTERNAL_ID}}}]}
    arn: str = iam.create_role(RoleName="cloudtrail-reader", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": actions, "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]}]}
    iam.put_role_policy(RoleName="cloudtrail-reader", PolicyName="read", PolicyDocument=json.dumps(policy))
    return arn


async def test_assumed_role_reads_and_access_denied_is_health(runtime: Runtime, s3: S3Server) -> None:
    """With s3_role_arn and s3_external_id the source assumes the role through STS and reads with it; a role
    that may not list the bucket gets AccessDenied: one HEALTH event. Neither logs, events, rejects nor
    the source's repr hold the external ID or the secret access key."""
    key_id, cid = await _aws_canary(runtime)
    _put(s3, _key(_ago(3)), _record(key_id, "ev-role"))
    reader = _source(s3, role_arn=_reader_role(s3, ["s3:ListBucket", "s3:GetObject"]), external_id=Secret(EXTERNAL_ID))
    reader.attach(runtime)
    s3.enforce_iam(after=1)  # the AssumeRole call itself is not checked (moto); every S3 call is
    assert (await reader.poll()).events == 1
    s3.reset_auth()
    assert s3.assumed_roles() == [(f"arn:aws:sts::{ACCOUNT}:assumed-role/cloudtrail-reader/canary-cloudtrail-{BUCKET}", EXTERNAL_ID)]
    s3.client("iam").put_role_policy(RoleName="cloudtrail-reader", PolicyName="read", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"}]}))
    denied = _source(s3, role_arn="arn:aws:iam::123456789012:role/cloudtrail-reader", external_id=Secret(EXTERNAL_ID))
    denied.attach(runtime)
    s3.enforce_iam(after=1)
    with capture_logs() as logs:
        result = await denied.poll()
    s3.reset_auth()
    assert result.error is not None and result.error.code == "AccessDenied" and result.error.refused
    [health] = await _events(runtime, "health")
    assert health["evidence"]["code"] == "AccessDenied"
    assert [r["canary_id"] for r in await _events(runtime)] == [cid]
    secret_key = os.environ["AWS_SECRET_ACCESS_KEY"]
    stored = json.dumps([dict(r) for r in await runtime.pool.fetch("SELECT evidence, origin, actor FROM events")], default=str)
    stored += json.dumps([dict(r) for r in await runtime.pool.fetch("SELECT * FROM rejects")], default=str)
    for secret in (EXTERNAL_ID, secret_key):
        assert secret not in repr(logs) + stored + repr(denied) + repr(reader)


async def test_listener_restart_resumes_without_duplicates(runtime: Runtime, s3: S3Server, make_config: MakeConfig) -> None:
    """The component built from [credentials.cloudtrail] s3_* polls on its own; stopped and started again
    (a new instance, as after a listener restart) it reads only the files that arrived meanwhile, and files
    read twice (a crash between commit and mark) raise no second event."""
    key_id, _ = await _aws_canary(runtime)
    cfg = make_config(credentials={"cloudtrail": {"s3_bucket": BUCKET, "s3_endpoint_url": s3.url, "s3_poll": "200ms",
                                                  "s3_regions": [REGION]}})
    [comp] = [c for c in build_components(SOURCES, cfg) if isinstance(c, CloudTrailS3Source)]
    assert getattr(comp, "cluster_singleton", False) is True
    first = _put(s3, _key(_ago(6)), _record(key_id, "ev-a"), _record(key_id, "ev-b"))
    await comp.start(runtime)
    await _until(runtime, 2)
    await comp.stop()
    await runtime.pool.execute("DELETE FROM cloudtrail_files WHERE path = $1", f"s3://{BUCKET}/{first}")  # the mark lost
    _put(s3, _key(_ago(1)), _record(key_id, "ev-c"))
    [again] = [c for c in build_components(SOURCES, cfg) if isinstance(c, CloudTrailS3Source)]
    await again.start(runtime)
    await _until(runtime, 3)
    await asyncio.sleep(0.6)  # a few more polls
    await again.stop()
    assert sorted(r["evidence"]["event_id"] for r in await _events(runtime)) == ["ev-a", "ev-b", "ev-c"]
    assert await runtime.pool.fetchval("SELECT count(*) FROM cloudtrail_files WHERE status = 'done'") == 2


async def _until(rt: Runtime, n: int, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while len(await _events(rt)) < n:
            await asyncio.sleep(0.05)


def test_key_names_and_config(make_config: MakeConfig) -> None:
    """Delivery times come from CloudTrail's file names only; StartAfter names sort before every file
    delivered in that minute; bad bucket, account and Region names and an external ID without a role are
    configuration errors naming the key."""
    at = dt.datetime(2026, 3, 1, 23, 59, 40, tzinfo=UTC)
    key = _key(at)
    assert delivered_at(key) == at.replace(second=0)
    assert delivered_at("AWSLogs/x/CloudTrail/us-east-1/2026/03/01/notes.json.gz") is None
    p = TrailPrefix(f"AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/", ACCOUNT, REGION)
    assert p.start_after(at) < key < p.start_after(at + dt.timedelta(minutes=1))
    for bad in ({"s3_bucket": "Bad_Bucket"}, {"s3_bucket": BUCKET, "s3_accounts": ["12345"]},
                {"s3_bucket": BUCKET, "s3_regions": ["../x"]}, {"s3_bucket": BUCKET, "s3_external_id": "x"}):
        with pytest.raises(ConfigError, match="credentials.cloudtrail"):
            make_config(credentials={"cloudtrail": bad})
    cfg = make_config(credentials={"cloudtrail": {"s3_bucket": BUCKET, "s3_lookback": "5m", "s3_role_arn": "arn:aws:iam::1:role/r",
                                                  "s3_external_id": EXTERNAL_ID, "s3_accounts": [f"{ORG}/{ACCOUNT}"]}})
    assert cfg.credentials.cloudtrail.s3_lookback == 300 and cfg.credentials.cloudtrail.s3_poll == 60
    assert EXTERNAL_ID not in repr(build_components(SOURCES, cfg))


async def test_a_file_named_in_the_future_does_not_move_the_listing_past_real_files(runtime: Runtime, s3: S3Server) -> None:
    """Someone who can write the bucket plants a file named minutes ahead: it is read, but the checkpoint
    stays behind the present (s3_lookback before the clock once a listing found everything), so a real file delivered afterwards (named before it) is still listed and read.
    Files in a day's folder not named as CloudTrail names them are never listed (so never read)."""
    key_id, _ = await _aws_canary(runtime)
    _put(s3, _key(_ago(-5)), _record(key_id, "ev-future"))
    _put(s3, f"AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/{_ago(0):%Y/%m/%d}/zzz-planted.json.gz", _record(key_id, "ev-planted"))
    src = _source(s3)
    src.attach(runtime)
    assert (await src.poll()).events == 1
    saved = await runtime.pool.fetchval("SELECT position->>'delivered' FROM checkpoints WHERE source LIKE 'cloudtrail-s3:%CloudTrail%'")
    assert _ago(16) <= dt.datetime.fromisoformat(saved) <= _ago(14)
    _put(s3, _key(_ago(1)), _record(key_id, "ev-real"))
    assert (await src.poll()).events == 1
    assert [r["evidence"]["event_id"] for r in await _events(runtime)] == ["ev-future", "ev-real"]


async def test_a_refused_file_is_health_and_read_once_it_can_be(runtime: Runtime, s3: S3Server) -> None:
    """GetObject refused for one file (as a KMS key or object ACL would) while the listing works: the other
    files are read, the episode is one HEALTH event, and the refused file stays unmarked in the listing
    window, so it is read once access is granted (and the episode ends)."""
    key_id, _ = await _aws_canary(runtime)
    refused = _put(s3, _key(_ago(40)), _record(key_id, "ev-refused"))
    _put(s3, _key(_ago(5)), _record(key_id, "ev-readable"))
    arn = _reader_role(s3, ["s3:ListBucket", "s3:GetObject"])
    s3.client("iam").put_role_policy(RoleName="cloudtrail-reader", PolicyName="deny-one", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "s3:GetObject",
                                                "Resource": f"arn:aws:s3:::{BUCKET}/{refused}"}]}))
    src = _source(s3, role_arn=arn, external_id=Secret(EXTERNAL_ID), lookback=60)
    src.attach(runtime)
    s3.enforce_iam(after=1)
    first = await src.poll()
    second = await src.poll()
    s3.reset_auth()
    assert (first.files, first.unreadable, second.files, second.unreadable) == (1, 1, 0, 1)
    assert first.error is not None and first.error.code == "AccessDenied"
    assert [r["evidence"]["event_id"] for r in await _events(runtime)] == ["ev-readable"]
    assert len(await _events(runtime, "health")) == 1
    s3.client("iam").delete_role_policy(RoleName="cloudtrail-reader", PolicyName="deny-one")
    s3.enforce_iam(after=0)
    third = await src.poll()
    s3.reset_auth()
    assert (third.files, third.unreadable, third.error) == (1, 0, None)
    assert [r["evidence"]["event_id"] for r in await _events(runtime)] == ["ev-readable", "ev-refused"]
    assert len(await _events(runtime, "health")) == 1


async def test_unreachable_s3_is_retried_and_an_episode_only_when_it_lasts(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Connection errors are retried at the next poll without a HEALTH event; TRANSIENT_EPISODE_AFTER
    failed polls in a row are one."""
    monkeypatch.setattr(cloudtrail_s3, "TRANSIENT_EPISODE_AFTER", 3)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE000000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret-0000")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    src = CloudTrailS3Source(BUCKET, endpoint_url=f"http://127.0.0.1:{port}", regions=[REGION], accounts=[ACCOUNT])
    src.attach(runtime)
    for _ in range(2):
        result = await src.poll()
        assert result.error is not None and not result.error.refused and result.error.code == "EndpointConnectionError"
    assert await _events(runtime, "health") == []
    await src.poll()
    await src.poll()
    [health] = await _events(runtime, "health")
    assert health["evidence"]["code"] == "EndpointConnectionError"


def test_the_example_config_block_is_valid(make_config: MakeConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commented [credentials.cloudtrail] block in config/canary.example.toml, uncommented, is a valid
    configuration that builds the S3 source (and the directory, EventBridge and Firehose inputs)."""
    text = (Path(__file__).parents[2] / "config" / "canary.example.toml").read_text()
    block = text.split("# [credentials.cloudtrail]\n", 1)[1].split("\n\n", 1)[0]
    section = tomllib.loads("\n".join(line.removeprefix("# ") for line in block.splitlines()))
    monkeypatch.setenv("CANARY_CLOUDTRAIL_EXTERNAL_ID", EXTERNAL_ID)
    monkeypatch.setenv("CANARY_EVENTBRIDGE_KEY", "eventbridge-key")
    monkeypatch.setenv("CANARY_CLOUDTRAIL_FIREHOSE_KEY", "firehose-key")
    cfg = make_config(credentials={"cloudtrail": section})
    [src] = [c for c in build_components(SOURCES, cfg) if isinstance(c, CloudTrailS3Source)]
    assert src.bucket == "corp-cloudtrail-logs" and src.s3.role_arn and src.lookback == dt.timedelta(minutes=15)
