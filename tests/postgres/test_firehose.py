"""RDS / Aurora logs through CloudWatch Logs and Firehose: the HTTP endpoint destination speaks
Firehose's documented protocol (access key, gzip body, base64 gzip CloudWatch subscription messages,
{"requestId", "timestamp"[, "errorMessage"]} answers), answers 200 only after commit, quarantines a
bad record while committing the rest, and answers 503 only when the control store is down."""

from __future__ import annotations

import base64
import gzip
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from cloud_support import (
    ACCESS_KEY,
    LOG_GROUP,
    cloudwatch_message,
    control_message,
    event_id,
    firehose_record,
    post_firehose,
)
from testkit import (
    STDOUT_SINK,
    CanaryRows,
    MakeConfig,
    OpenRuntime,
    customer_canary,
    incidents_when,
    read_record,
    serving,
)

from canary import firehose as kernel_firehose
from canary.config import from_mapping
from canary.errors import ConfigError
from canary.firehose import gunzip
from canary.postgres import firehose
from canary.postgres.firehose import FirehoseReceiver
from canary.postgres.staging import CloudEvent, LogTarget, decode_events
from canary.runtime import Runtime

SHOP = {"name": "shop", "dsn": "postgresql://canary@127.0.0.1:1/shop", "node": "primary"}
STREAMS = [{"log_group": LOG_GROUP, "datastore": "shop", "node": "shop-db", "format": "jsonlog"},
           {"log_group": "/aws/rds/cluster/*/postgresql", "datastore": "shop", "format": "jsonlog"}]


def firehose_config(**overrides: Any) -> dict[str, Any]:
    return {"access_key": ACCESS_KEY, "streams": STREAMS, **overrides}


def read_line(pk: int, pid: int) -> str:
    """A signed CY001 read record as a jsonlog line: mallory read canary row ``pk``."""
    return json.dumps(read_record(pk, pid, query="select * from customers", fields={"application_name": "psql"}))


def plain_line(n: int) -> str:
    return json.dumps({"timestamp": "2026-11-23 15:24:13.620 UTC", "user": "app", "pid": 100 + n, "error_severity": "LOG",
                       "message": f"duration: {n}.0 ms", "state_code": "00000"})


@pytest.fixture
async def runtime(open_test_runtime: OpenRuntime, make_config: MakeConfig, canary_rows: CanaryRows) -> Runtime:
    """A runtime with a stdout sink, a running pipeline and the Firehose endpoint configured; customer
    canaries at rows 11, 22, 33."""
    rt = await open_test_runtime(make_config(sinks=[STDOUT_SINK], datastores=[SHOP], coverage={"firehose": firehose_config()}))
    await canary_rows(*(customer_canary(pk) for pk in (11, 22, 33)))
    rt.pipeline.start()
    return rt


@pytest.fixture
async def url(runtime: Runtime) -> AsyncIterator[str]:
    """The endpoint the registered source builds from the configuration, on a loopback port."""
    components = firehose.SOURCE.components(runtime.config)
    assert [c.name for c in components] == ["firehose"]
    async with serving(runtime, components) as port:
        yield f"http://127.0.0.1:{port}/ingest/firehose"


async def reasons(rt: Runtime) -> list[str]:
    return sorted(r["reason"] for r in await rt.pool.fetch("SELECT reason FROM rejects"))


async def test_a_canary_read_delivered_by_firehose_becomes_an_incident(runtime: Runtime, url: str) -> None:
    """A gzip delivery of the subscription's control message and a data message holding ordinary lines
    and a canary read: 200 with the documented body (the request id echoed, a ms timestamp), and the
    read is an incident of that canary, its events from node shop-db."""
    lines = [plain_line(1), read_line(11, 4242), plain_line(2)]
    before = int(time.time() * 1000)
    status, body, headers = await post_firehose(url, [firehose_record(control_message()), firehose_record(cloudwatch_message(lines))],
                                                request_id="ed4acda5-034f-9f42-bba1-f29aea6d7d8f")
    assert status == 200, body
    assert set(body) == {"requestId", "timestamp"} and body["requestId"] == "ed4acda5-034f-9f42-bba1-f29aea6d7d8f"
    assert isinstance(body["timestamp"], int) and body["timestamp"] >= before
    assert headers["Content-Type"].startswith("application/json") and "Content-Encoding" not in headers
    rows = await runtime.pool.fetch("SELECT kind, source, canary_id, origin FROM events")
    assert [(r["kind"], r["source"]) for r in rows] == [("read", "firehose:shop-db")]
    assert rows[0]["origin"]["node"] == "shop-db"
    incidents = await incidents_when(runtime, 1)
    assert len(incidents) == 1 and incidents[0]["canary_ids"] == [rows[0]["canary_id"]]
    assert await reasons(runtime) == []


async def test_a_log_group_pattern_maps_cluster_logs_and_an_uncompressed_body_is_read(runtime: Runtime, url: str) -> None:
    """A stream configured by pattern takes any cluster's log group (node defaulted to the datastore's
    node), and a stream without GZIP (no Content-Encoding) is read the same."""
    message = cloudwatch_message([read_line(22, 5151)], log_group="/aws/rds/cluster/shop-aurora/postgresql")
    status, body, _ = await post_firehose(url, [firehose_record(message)], gzipped=False)
    assert status == 200, body
    assert [r["source"] for r in await runtime.pool.fetch("SELECT source FROM events")] == ["firehose:primary"]


@pytest.mark.parametrize("key", [None, "", "wrong", ACCESS_KEY[:-1], ACCESS_KEY + "x", ACCESS_KEY.upper()],
                         ids=["missing", "empty", "wrong", "prefix", "longer", "other_case"])
async def test_a_wrong_access_key_is_401_and_nothing_is_stored(runtime: Runtime, url: str, key: str | None) -> None:
    """Without the stream's exact access key: 401 with Firehose's error body, the attempt counted as a
    reject, and nothing of the delivery stored."""
    status, body, _ = await post_firehose(url, [firehose_record(cloudwatch_message([read_line(11, 1)]))], key=key, request_id="rid-1")
    assert status == 401
    assert body["requestId"] == "rid-1" and isinstance(body["timestamp"], int) and body["errorMessage"]
    assert await runtime.pool.fetchval("SELECT count(*) FROM events") == 0
    assert await reasons(runtime) == ["bad_access_key"]
    assert 'canary_rejects_total{reason="bad_access_key",source="firehose"} 1.0' in runtime.metrics.render().decode()


async def test_the_body_request_id_is_echoed_when_the_header_has_none(runtime: Runtime, url: str) -> None:
    """The request id is in the header and, for convenience, the body: without the header the
    answer echoes the body's."""
    raw = json.dumps({"requestId": "from-body", "timestamp": 1, "records": [firehose_record(control_message())]}).encode()
    status, body, _ = await post_firehose(url, [], raw=raw, request_id="")
    assert (status, body["requestId"]) == (200, "from-body")


async def test_a_control_message_alone_is_acknowledged_and_ignored(runtime: Runtime, url: str) -> None:
    """The subscription's CONTROL_MESSAGE is answered 200 and is neither an event nor a reject."""
    status, body, _ = await post_firehose(url, [firehose_record(control_message())])
    assert status == 200, body
    assert await runtime.pool.fetchval("SELECT count(*) FROM events") == 0
    assert await reasons(runtime) == []


async def test_bad_records_are_quarantined_and_the_rest_committed(runtime: Runtime, url: str) -> None:
    """Records that are not base64, not gzip, truncated gzip, a gzip bomb, not a subscription message,
    or of a log group no stream maps, each rejected with its reason; the two reads around them commit
    and the delivery is answered 200 (no retry could make those records better)."""
    good = cloudwatch_message([read_line(11, 11)])
    packed = gzip.compress(json.dumps(good).encode())
    records = [
        {"data": "not base64 at all!"},
        {"data": base64.b64encode(b"plain text, no gzip").decode()},
        firehose_record(good),
        {"data": base64.b64encode(packed[: len(packed) // 2]).decode()},
        {"data": base64.b64encode(gzip.compress(b" " * (kernel_firehose.MAX_RECORD + 1))).decode()},
        {"data": base64.b64encode(gzip.compress(b'{"messageType": "DATA_MESSAGE", "logEvents": 7}')).decode()},
        firehose_record(cloudwatch_message([read_line(33, 33)], log_group="/aws/rds/instance/other-db/postgresql")),
        {"nodata": True},
        firehose_record(cloudwatch_message([read_line(22, 22)])),
    ]
    status, body, _ = await post_firehose(url, records)
    assert status == 200, body
    rows = await runtime.pool.fetch("SELECT canary_id FROM events WHERE kind = 'read'")
    assert len(rows) == 2
    assert await reasons(runtime) == ["bad_base64", "bad_gzip", "bad_gzip", "bad_gzip", "bad_message", "bad_record",
                                      "unknown_log_group"]
    metrics = runtime.metrics.render().decode()
    assert 'canary_rejects_total{reason="unknown_log_group",source="firehose"} 1.0' in metrics


async def test_a_line_no_record_can_hold_is_rejected_with_a_health_event(runtime: Runtime, url: str) -> None:
    """A log event whose text is no jsonlog record is rejected (malformed_log_line) and raises one
    HEALTH event; the read in the same message still commits."""
    status, body, _ = await post_firehose(url, [firehose_record(cloudwatch_message(["garbage {", read_line(11, 7)]))])
    assert status == 200, body
    kinds = sorted(r["kind"] for r in await runtime.pool.fetch("SELECT kind FROM events"))
    assert kinds == ["health", "read"]
    assert await reasons(runtime) == ["malformed_log_line"]


async def test_a_retried_delivery_adds_no_events(runtime: Runtime, url: str) -> None:
    """Firehose retries a batch with the same request id and records: the events are not doubled."""
    records = [firehose_record(cloudwatch_message([read_line(11, 61), read_line(22, 62), plain_line(3)]))]
    for _ in range(2):
        status, _, _ = await post_firehose(url, records, request_id="same-request")
        assert status == 200
    assert await runtime.pool.fetchval("SELECT count(*) FROM events") == 2


async def test_a_stopped_store_is_503_so_firehose_retries(runtime: Runtime, url: str) -> None:
    """With the control store's pool closed a delivery is answered 503 with Firehose's error body and
    Retry-After (Firehose retries every status but 200 and 413); nothing is blamed on the input."""
    await runtime.pool.close()
    status, body, headers = await post_firehose(url, [firehose_record(cloudwatch_message([read_line(11, 9)]))], request_id="r503")
    assert status == 503 and headers["Retry-After"] == "5"
    assert body["requestId"] == "r503" and body["errorMessage"]
    assert "quarantined" not in runtime.metrics.render().decode()


@pytest.mark.parametrize(("raw", "reason"), [(b"not json", "bad_request"), (b"[1, 2]", "bad_request"),
                                              (b'{"requestId": "x", "records": {}}', "bad_request")])
async def test_a_body_that_is_no_firehose_request_is_400(runtime: Runtime, url: str, raw: bytes, reason: str) -> None:
    """A body that is no Firehose request at all is 400 with the error body (Firehose would retry and
    then keep it in its error bucket); counted, nothing stored."""
    status, body, _ = await post_firehose(url, [], raw=raw)
    assert status == 400 and body["errorMessage"]
    assert await reasons(runtime) == [reason]
    assert await runtime.pool.fetchval("SELECT count(*) FROM events") == 0


async def test_a_body_over_the_limit_is_413(open_test_runtime: OpenRuntime, make_config: MakeConfig) -> None:
    """Past coverage.firehose.max_body (declared or decompressed) the answer is 413, Firehose's
    permanent failure, counted."""
    rt = await open_test_runtime(make_config(datastores=[SHOP], coverage={"firehose": firehose_config(max_body=4096)}))
    async with serving(rt, [FirehoseReceiver.from_config(rt.config)]) as port:
        big: list[dict[str, Any]] = []
        raw = json.dumps({"requestId": "big", "records": [{"data": "A" * 8000}]}).encode()
        status, body, _ = await post_firehose(f"http://127.0.0.1:{port}/ingest/firehose", big, gzipped=False, raw=raw,
                                              request_id="big")
        assert status == 413 and body["requestId"] == "big"
        status, _, _ = await post_firehose(f"http://127.0.0.1:{port}/ingest/firehose", big, gzipped=True, raw=raw)
        assert status == 413  # 8 KB of JSON sent as 100-odd gzip bytes: the decompressed size counts
    assert [r["reason"] for r in await rt.pool.fetch("SELECT reason FROM rejects")] == ["body_too_large", "body_too_large"]


def test_event_ids_name_records_without_a_line_number_stably() -> None:
    """Records whose prefix gives no line number get one from the log events that made them: the same
    events give the same numbers, different events different ones, and a record's own number stays."""
    target = LogTarget("shop", "shop-db", "jsonlog", None)
    events = [CloudEvent(event_id(), plain_line(i)) for i in range(50)]
    events.append(CloudEvent(event_id(), json.dumps({"message": "own", "line_num": 7})))
    first = decode_events(target, events)
    again = decode_events(target, events)
    numbers = [r["line_num"] for r in first.records]
    assert numbers == [r["line_num"] for r in again.records]
    assert len(set(numbers[:-1])) == 50 and numbers[-1] == 7
    assert all(0 <= n < 2**63 for n in numbers)
    other = decode_events(target, [CloudEvent(event_id(), plain_line(0))])
    assert other.records[0]["line_num"] not in numbers


@pytest.mark.parametrize(("data", "ok"), [(gzip.compress(b"a", mtime=0) + gzip.compress(b"b", mtime=0), True), (b"", True),
                                          (gzip.compress(b"x" * 100, mtime=0)[:-4], False), (b"\x1f\x8b junk", False)],
                         ids=["two-members", "empty", "truncated", "junk"])
def test_gunzip_reads_members_and_refuses_broken_streams(data: bytes, ok: bool) -> None:
    """Concatenated gzip members are read whole; truncated or corrupt data is a ValueError."""
    if ok:
        assert gunzip(data) in (b"ab", b"")
    else:
        with pytest.raises(ValueError):
            gunzip(data)


def test_an_unknown_format_is_a_config_error() -> None:
    """A stream whose format no decoder reads fails at start with its key path."""
    cfg = from_mapping({"datastores": [SHOP], "coverage": {"firehose": firehose_config(
        streams=[{"log_group": LOG_GROUP, "datastore": "shop", "format": "xmllog"}])}})
    with pytest.raises(ConfigError) as err:
        FirehoseReceiver.from_config(cfg)
    assert err.value.key == "coverage.firehose.streams[0].format"


@pytest.mark.parametrize(("section", "message"), [
    ({"streams": STREAMS}, "access_key"),
    ({"access_key": ACCESS_KEY, "streams": [{**STREAMS[0], "datastore": "nope"}]}, "no datastore named 'nope'"),
    ({"access_key": ACCESS_KEY, "path": "ingest"}, "path must start with /"),
])
def test_firehose_config_is_validated(section: dict[str, Any], message: str) -> None:
    """Streams without an access key, for an unknown datastore, or a relative path are config errors."""
    with pytest.raises(ConfigError, match=message):
        from_mapping({"datastores": [SHOP], "coverage": {"firehose": section}})
