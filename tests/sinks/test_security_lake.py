"""Security Lake sink: OCSF Parquet objects written to a real S3 API (moto's server on 127.0.0.1, SigV4),
partitioned as custom sources must be, idempotent under resends, provider roles assumed through STS."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from aiohttp import web
from alerting_servers import make_alert
from s3_server import REGION, S3Server
from structlog.testing import capture_logs

from canary import plugins
from canary.alerts import AlertAction
from canary.config import SinkConfig
from canary.errors import ConfigError, DeliveryError
from canary.events import DetectionEvent, EventKind, Severity, StoredEvent
from canary.sinks import ocsf
from canary.sinks.security_lake import SecurityLakeSink, normalise, parquet_object, restore

BUCKET = "aws-security-data-lake-us-east-1-canarytest"
ACCOUNT_ID = "123456789012"
EXTERNAL_ID = "canary-ext-7f3a9c1e55d2"
UTC = dt.UTC


@pytest.fixture(scope="module")
def _moto() -> Iterator[S3Server]:
    server = S3Server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(_moto: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[S3Server]:
    """The module's moto server, reset, with the lake's bucket and default-chain credentials."""
    _moto.prepare(monkeypatch, tmp_path)
    _moto.client("s3").create_bucket(Bucket=BUCKET)
    yield _moto
    _moto.reset()


def _sink(s3: S3Server | None, **options: Any) -> SecurityLakeSink:
    options = {"bucket": BUCKET, "region": REGION, "account_id": ACCOUNT_ID,
               "sources": {2004: "canary-findings", 3002: "canary-auth", 6005: {"name": "canary-data", "version": "1.0"}},
               **({"endpoint_url": s3.url} if s3 else {}), "timeout": 5, **options}
    cfg = SinkConfig(name="lake", type="security_lake", **options)
    sink = plugins.sink_types()["security_lake"](cfg.name, plugins.sink_options(cfg, 0), None)
    assert isinstance(sink, SecurityLakeSink)
    return sink


def _stored(i: int, kind: EventKind, at: dt.datetime, **origin: Any) -> StoredEvent:
    event = DetectionEvent(
        kind=kind, source="jsonlog", key=f"k{i}", group="g", canary_id=3, observed_at=at,
        actor={"user": f"mallory{i}"} if i % 2 else {}, origin=origin,
        evidence={"query": f"SELECT * FROM customers -- {i}", "hostile key \u202e": {"nested": [1, "two", None]}},
        severity=Severity.CRITICAL)
    return StoredEvent(id=i, event=event, incident_id=9, canary={"uid": "c-3", "label": "shop/public.customers", "kind": "row"})


def _read(body: bytes) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(io.BytesIO(body)).to_pylist()
    return rows


def _batch() -> list[StoredEvent]:
    """Logins (3002) and reads (6005) either side of midnight UTC; one read stamped in UTC+9, whose UTC day
    is the day before its local one."""
    late = dt.datetime(2026, 5, 1, 23, 59, 59, 999000, tzinfo=UTC)
    seoul = dt.timezone(dt.timedelta(hours=9))
    return [
        _stored(101, EventKind.USED, late, client_addr="10.0.0.9", port=5432),
        _stored(102, EventKind.READ, late - dt.timedelta(hours=1)),
        _stored(103, EventKind.USED, late + dt.timedelta(milliseconds=1)),  # 2026-05-02 00:00:00 UTC
        _stored(104, EventKind.READ, dt.datetime(2026, 5, 2, 8, 30, tzinfo=seoul), client_addr="192.0.2.7"),  # 05-01 23:30Z
        _stored(105, EventKind.READ, late + dt.timedelta(hours=2)),
        _stored(106, EventKind.USED, late - dt.timedelta(minutes=5)),
    ]


def _prefix(source: str, day: str) -> str:
    return f"{source}/region={REGION}/accountId={ACCOUNT_ID}/eventDay={day}/canary-lake-"


async def test_events_become_one_object_per_class_and_utc_event_day(s3: S3Server) -> None:
    """A batch is written as one Parquet object per (OCSF class, eventDay in UTC) under the custom source's
    partition path (with its version segment when it has one); rows are time-ordered and read back as the
    OCSF records."""
    batch = _batch()
    await _sink(s3).send_events(batch)
    objects = s3.objects(BUCKET)
    by_prefix = {k.rsplit("/", 1)[0] + "/": k for k in objects}
    assert sorted(by_prefix) == sorted([
        _prefix("ext/canary-auth", "20260501").rsplit("/", 1)[0] + "/",
        _prefix("ext/canary-auth", "20260502").rsplit("/", 1)[0] + "/",
        _prefix("ext/canary-data/1.0", "20260501").rsplit("/", 1)[0] + "/",
        _prefix("ext/canary-data/1.0", "20260502").rsplit("/", 1)[0] + "/",
    ])
    assert len(objects) == 4 and all(k.endswith(".parquet") for k in objects)
    expected = {
        ("ext/canary-auth", "20260501"): [106, 101],
        ("ext/canary-auth", "20260502"): [103],
        ("ext/canary-data/1.0", "20260501"): [102, 104],
        ("ext/canary-data/1.0", "20260502"): [105],
    }
    records = {s.id: ocsf.event_record(s) for s in batch}
    for (source, day), ids in expected.items():
        [key] = [k for k in objects if k.startswith(_prefix(source, day))]
        assert key == f"{_prefix(source, day)}e{min(ids)}-{max(ids)}-" + key.rsplit("-", 1)[1]
        rows = _read(objects[key])
        assert [restore(r) for r in rows] == [records[i] for i in ids]  # time-ordered, faithful
        assert {r["class_uid"] for r in rows} == {records[ids[0]]["class_uid"]}  # one class per object
        assert rows == normalise([records[i] for i in ids])


async def test_resending_a_batch_overwrites_its_objects(s3: S3Server) -> None:
    """The feed resends a batch it has no answer for: the same keys are written again, nothing is duplicated."""
    sink, batch = _sink(s3), _batch()
    await sink.send_events(batch)
    first = s3.objects(BUCKET)
    await sink.send_events(list(reversed(batch)))  # same events, any order
    again = s3.objects(BUCKET)
    assert sorted(again) == sorted(first)
    assert {k: _read(v) for k, v in again.items()} == {k: _read(v) for k, v in first.items()}
    await sink.send_events(batch[:2])  # another batch (other ids) is another object
    assert len(s3.objects(BUCKET)) == len(first) + 2


async def test_classes_without_a_source_are_skipped_and_counted(s3: S3Server) -> None:
    """Records of a class with no custom source are not written (the provider role could not write them
    anywhere else); they are counted per class and warned about once."""
    sink = _sink(s3, sources={3002: "canary-auth"})
    with capture_logs() as logs:
        await sink.send_events(_batch())
        await sink.send_events(_batch())
    assert sink.skipped == {6005: 6}
    assert [e for e in logs if e["event"] == "security_lake_class_skipped"] == [
        {"event": "security_lake_class_skipped", "log_level": "warning", "sink": "lake", "class_uid": 6005,
         "reason": "no custom source configured for this OCSF class"}]
    assert all(k.startswith("ext/canary-auth/") for k in s3.objects(BUCKET))
    await sink.send(make_alert())  # no source for Detection Finding either
    assert sink.skipped[2004] == 1


async def test_alert_notifications_are_detection_finding_objects(s3: S3Server) -> None:
    """Each notification is one small Detection Finding object under the eventDay of the finding's time,
    keyed by incident, notification and action: a retried notification overwrites, the next one adds."""
    sink = _sink(s3)
    trigger = make_alert()
    update = make_alert(action=AlertAction.UPDATE, sequence=1, canary_count=120,
                        last_seen=dt.datetime(2026, 5, 3, 0, 0, 1, tzinfo=UTC))
    await sink.send(trigger)
    await sink.send(trigger)
    await sink.send(update)
    await sink.send(make_alert(action=AlertAction.RESOLVE, sequence=2))
    objects = s3.objects(BUCKET)
    resolve_key = next(k for k in objects if k.endswith("-resolve.parquet"))
    assert sorted(objects) == sorted([
        _prefix("ext/canary-findings", "20260501") + "i7-n0-trigger.parquet",
        _prefix("ext/canary-findings", "20260503") + "i7-n1-update.parquet",
        resolve_key,
    ])
    rows = _read(objects[_prefix("ext/canary-findings", "20260501") + "i7-n0-trigger.parquet"])
    assert [restore(r) for r in rows] == [ocsf.detection_finding(trigger)]
    assert rows[0]["class_uid"] == 2004
    [resolved] = _read(objects[resolve_key])  # its time is the mapping's (when it was resolved): so is its day
    day = dt.datetime.fromtimestamp(resolved["time"] / 1000, tz=UTC).strftime("%Y%m%d")
    assert resolve_key == _prefix("ext/canary-findings", day) + "i7-n2-resolve.parquet"


def _leaves(schema: Any, prefix: str = "") -> dict[str, str]:
    """Leaf column paths of a Parquet schema and their types (list elements as ``[]``)."""
    out: dict[str, str] = {}
    for f in schema:
        path, t = prefix + f.name, f.type
        while hasattr(t, "value_type"):  # lists
            path, t = path + "[]", t.value_type
        if hasattr(t, "num_fields") and t.num_fields:
            out.update(_leaves([t.field(i) for i in range(t.num_fields)], path + "."))
        else:
            out[path] = str(t)
    return out


def test_objects_with_and_without_optional_fields_share_one_schema() -> None:
    """A batch lacking optional fields and one having them both write and read back; the columns they
    share have the same types, so the class keeps one schema; free-form and hostile keys never become
    columns, values of mixed kinds are stored as text."""
    bare = [{"class_uid": 3002, "time": 2, "metadata": {"version": "1.3.0"}},
            {"class_uid": 3002, "time": 1, "metadata": {"version": "1.3.0"}, "actor": None, "observables": []}]
    full = [{"class_uid": 3002, "time": 5, "metadata": {"version": "1.3.0", "uid": "9"},
             "actor": {"user": {"name": "mallory", "uid": "u1"}}, "src_endpoint": {"ip": "10.0.0.9", "port": 5432},
             "observables": [{"name": "ip", "type_id": 2, "value": "10.0.0.9"}],
             "unmapped": {f"col{i}": i for i in range(1000)} | {"x; DROP": {"y": [1, "2"]}}}]
    leaves = []
    for records in (bare, full):
        table = pq.read_table(io.BytesIO(parquet_object(records)))
        assert [restore(r) for r in table.to_pylist()] == [
            {k: v for k, v in r.items() if v not in (None, [])} for r in sorted(records, key=lambda r: r["time"])]
        leaves.append(_leaves(table.schema))
    shared = set(leaves[0]) & set(leaves[1])
    assert shared == {"class_uid", "time", "metadata.version"}
    assert all(leaves[0][p] == leaves[1][p] for p in shared)
    assert leaves[1]["unmapped"] == "string" and len(leaves[1]) == 12  # 1001 hostile keys: one column
    mixed = normalise([{"class_uid": 1, "time": 1, "v": 1, "f": 1}, {"class_uid": 1, "time": 2, "v": "a", "f": 0.5}])
    assert [(r["v"], r["f"]) for r in mixed] == [("1", 1.0), ("a", 0.5)]


def test_hostile_records_always_write() -> None:
    """Whatever an attacker got into a record (lone surrogates in keys and values, thousands of keys, deep
    nesting, numbers beyond int64, NaN, values of several kinds) the object is written and read back; wide and
    deep objects become one JSON text column instead of attacker-named columns."""
    deep: Any = "bottom"
    for _ in range(30):
        deep = {"d": deep}
    records = [
        {"class_uid": 2004, "time": 3, "k" + chr(0xD800): "v\udfff", "k" + chr(0xD801): 1, "wide": {f"c{i}": i for i in range(5000)},
         "deep": deep, "big": 1 << 80, "nan": float("nan"), "list": [1, "a", {"b": None}], "tuple": ("x",)},
        {"class_uid": 2004, "time": 1, "wide": {"c1": "x"}, "big": 5, "list": [], "nested": [[{"a": [1]}]]},
    ]
    rows = pq.read_table(io.BytesIO(parquet_object(records))).to_pylist()
    assert [r["time"] for r in rows] == [1, 3]
    assert rows[1]["k\ufffd"] in ("v\ufffd", "1") and rows[1]["big"] == str(1 << 80)
    assert isinstance(rows[1]["wide"], str) and len(json.loads(rows[1]["wide"])) == 5000
    assert len(_leaves(pq.read_schema(io.BytesIO(parquet_object(records))))) < 30
    assert rows[0]["nested"] == [[{"a": [1]}]] and rows[1]["list"] == ["1", "a", '{"b":null}']


async def test_provider_role_is_assumed_with_the_external_id(s3: S3Server) -> None:
    """With role_arn and external_id the sink assumes the provider role through STS and writes with the
    role's credentials, which moto's IAM limits to the source's own prefix, as Security Lake's are."""
    arn = s3.provider_role("AmazonSecurityLake-Provider-canary-findings-us-east-1", EXTERNAL_ID,
                           "ext/canary-findings/", BUCKET)
    sink = _sink(s3, role_arn=arn, external_id=EXTERNAL_ID)
    s3.enforce_iam(after=1)  # the AssumeRole call itself is not checked (moto); every write is
    await sink.send(make_alert())
    session = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/AmazonSecurityLake-Provider-canary-findings-us-east-1/canary-lake"
    assert s3.assumed_roles() == [(session, EXTERNAL_ID)]
    s3.reset_auth()
    assert list(s3.objects(BUCKET)) == [_prefix("ext/canary-findings", "20260501") + "i7-n0-trigger.parquet"]


async def test_access_denied_is_permanent_and_never_shows_the_external_id(s3: S3Server,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider role that may not write the prefix gets AccessDenied: permanent (retrying cannot fix it);
    neither the error, the sink's repr nor the logs hold the external ID."""
    arn = s3.provider_role("AmazonSecurityLake-Provider-canary-findings-us-east-1", EXTERNAL_ID,
                           "ext/canary-findings/", BUCKET)
    monkeypatch.setenv("LAKE_EXTERNAL_ID", EXTERNAL_ID)
    sink = _sink(s3, role_arn=arn, external_id={"env": "LAKE_EXTERNAL_ID"}, sources={3002: "canary-auth"})
    s3.enforce_iam(after=1)
    with capture_logs() as logs, pytest.raises(DeliveryError) as info:
        await sink.send_events(_batch())
    s3.reset_auth()
    assert info.value.permanent and info.value.status == 403 and "AccessDenied" in str(info.value)
    assert "ext/canary-auth" in str(info.value)
    assert EXTERNAL_ID not in str(info.value) + repr(sink) + repr(sink.options) + repr(logs)


async def test_missing_bucket_is_permanent(s3: S3Server) -> None:
    """A bucket that does not exist (a wrong name, a lake in another Region) is NoSuchBucket: permanent."""
    with pytest.raises(DeliveryError) as info:
        await _sink(s3, bucket="no-such-lake-bucket").send_events(_batch())
    assert info.value.permanent and info.value.status == 404 and "NoSuchBucket" in str(info.value)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Static credentials in the environment for a sink that talks to something other than moto."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE000000000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-access-key-never-shown")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


async def test_unreachable_endpoint_is_retryable(aws_env: None) -> None:
    """A refused connection is retryable and names no credential."""
    sink = _sink(None, endpoint_url="http://127.0.0.1:9")
    with pytest.raises(DeliveryError) as info:
        await sink.send_events(_batch())
    assert not info.value.permanent and "EndpointConnectionError" in str(info.value)
    assert "secret-access-key" not in str(info.value)


async def test_no_credentials_is_permanent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without a role and with nothing in the default credential chain the sink cannot sign: permanent,
    said in words the operator can act on."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(DeliveryError) as info:
        await _sink(None, endpoint_url="http://127.0.0.1:9").send(make_alert())
    assert info.value.permanent and "no AWS credentials" in str(info.value)


class _FailingS3:
    """Answers every request with one S3 error response (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html)."""

    def __init__(self, status: int, code: str, headers: dict[str, str]) -> None:
        self.status, self.code, self.headers = status, code, headers
        self.requests = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        await request.read()
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{self.code}</Code>'
                f"<Message>Please reduce your request rate.</Message><RequestId>4442587FB7D0A2F9</RequestId></Error>")
        return web.Response(status=self.status, body=body.encode(), content_type="application/xml", headers=self.headers)


@pytest.fixture
async def failing_s3() -> AsyncIterator[Any]:
    servers: list[web.AppRunner] = []

    async def start(status: int, code: str, headers: dict[str, str] | None = None) -> tuple[str, _FailingS3]:
        s3 = _FailingS3(status, code, headers or {})
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", s3.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        servers.append(runner)
        port = runner.addresses[0][1]
        return f"http://127.0.0.1:{port}", s3

    yield start
    for runner in servers:
        await runner.cleanup()


@pytest.mark.parametrize(("status", "code", "headers", "permanent", "retry_after"), [
    (503, "SlowDown", {"Retry-After": "3"}, False, 3.0),
    (400, "RequestTimeout", {}, False, None),
    (500, "InternalError", {}, False, None),
    (403, "AccessDenied", {}, True, None),
    (404, "NoSuchBucket", {}, True, None),
    (400, "InvalidArgument", {}, True, None),
])
async def test_s3_error_translation(failing_s3: Any, aws_env: None, status: int, code: str, headers: dict[str, str],
                                    permanent: bool, retry_after: float | None) -> None:
    """S3's throttling and server errors are retryable (with Retry-After when given), its refusals
    permanent; botocore does not retry on its own (the feed and outbox do), so one request is made."""
    url, server = await failing_s3(status, code, headers)
    with pytest.raises(DeliveryError) as info:
        await _sink(None, endpoint_url=url).send(make_alert())
    assert (info.value.permanent, info.value.status, info.value.retry_after) == (permanent, status, retry_after)
    assert code in str(info.value) and "secret-access-key" not in str(info.value)
    assert server.requests == 1


@pytest.mark.parametrize(("options", "where"), [
    ({"sources": {}}, "sinks[0]"),
    ({"sources": {2004: "../escape"}}, "sinks[0].sources.2004.name"),
    ({"sources": {2004: {"name": "a", "version": ".."}}}, "sinks[0].sources.2004.version"),
    ({"sources": {2004: "same", 3002: "same"}}, "sinks[0]"),
    ({"region": "us-east-1/../x"}, "sinks[0].region"),
    ({"bucket": "Bad_Bucket"}, "sinks[0].bucket"),
    ({"account_id": "../123"}, "sinks[0].account_id"),
    ({"role_arn": "arn:aws:iam::1:user/x"}, "sinks[0].role_arn"),
    ({"external_id": "x"}, "sinks[0].external_id"),
    ({"external_id": "canary-ext-1"}, "sinks[0]"),  # an external ID without a role
    ({"endpoint_url": "ftp://example.com"}, "sinks[0].endpoint_url"),
    ({"event_batch": 20_000}, "sinks[0].event_batch"),
])
def test_invalid_options_are_refused_with_their_key_path(options: dict[str, Any], where: str) -> None:
    """Options that would write outside the custom source's prefix, or cannot work, fail at config time."""
    with pytest.raises(ConfigError) as info:
        _sink(None, **options)
    assert info.value.key == where


def test_defaults_and_shorthand() -> None:
    """A source may be given by name; the feed takes 5000 events per batch (unsuppressed) by default."""
    sink = _sink(None, sources={2004: "canary-findings"})
    assert (sink.events, sink.event_batch) == ("unsuppressed", 5000)
    assert sink.options.sources[2004].location == "ext/canary-findings"


@pytest.mark.parametrize(("version", "warned"), [("1.3.0", False), ("1.0.0-rc.2", False), ("1.4.0", True),
                                                  ("2.0.0", True)])
def test_an_ocsf_version_newer_than_security_lake_takes_is_warned_about(monkeypatch: pytest.MonkeyPatch,
                                                                        version: str, warned: bool) -> None:
    """Security Lake takes OCSF 1.3 and earlier from custom sources: a sink built against a newer mapping says so."""
    monkeypatch.setattr(ocsf, "OCSF_VERSION", version)
    with capture_logs() as logs:
        _sink(None)
    assert [e["event"] for e in logs] == (["security_lake_ocsf_version"] if warned else [])


async def test_records_read_back_validate_as_ocsf(s3: S3Server) -> None:
    """Every record read back from the lake (free-form attributes parsed back) is valid OCSF."""
    ocsf_support = pytest.importorskip("ocsf_support")
    sink = _sink(s3)
    await sink.send_events(_batch())
    await sink.send(make_alert())
    records: Sequence[dict[str, Any]] = [restore(r) for body in s3.objects(BUCKET).values() for r in _read(body)]
    assert len(records) == 7
    for record in records:
        ocsf_support.validate_ocsf(record)
