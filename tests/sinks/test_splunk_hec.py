"""The Splunk HEC sink against a local collector speaking HEC as Splunk documents it (tests/hec_server.py):
batches, alerts, indexer acknowledgement, request sizes, HEC's error codes, TLS, both formats."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from alerting_servers import make_alert
from hec_server import HecServer, self_signed, server_context
from structlog.testing import capture_logs

from canary import plugins
from canary.alerts import AlertAction
from canary.config import SinkConfig
from canary.errors import ConfigError, DeliveryError
from canary.events import DetectionEvent, EventKind, Severity, StoredEvent
from canary.sinks import splunk
from canary.typing import EventSink

TOKEN = "8f2c1b7e-3d4a-4c5b-9e6f-0a1b2c3d4e5f"
WHEN = dt.datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=dt.timezone.utc)


def _sink(http: aiohttp.ClientSession, **options: object) -> Any:
    cfg = SinkConfig(name="splunk-1", type="splunk_hec", **options)
    return plugins.sink_types()["splunk_hec"](cfg.name, plugins.sink_options(cfg, 0), http)


def _stored(i: int, **evidence: Any) -> StoredEvent:
    event = DetectionEvent(
        kind=EventKind.READ, source="jsonlog", key=f"k{i}", group="g", canary_id=3,
        observed_at=WHEN + dt.timedelta(seconds=i), actor={"user": "mallory"}, origin={"client_addr": "10.0.0.9"},
        evidence={"query": f"SELECT * FROM customers -- {i}", **evidence}, severity=Severity.CRITICAL,
    )
    return StoredEvent(id=1000 + i, event=event, incident_id=7,
                       canary={"uid": "c-3", "label": "shop/public.customers", "kind": "customer"})


async def test_registered_and_an_event_sink(http: aiohttp.ClientSession) -> None:
    """splunk_hec is a registered sink type and implements the EventSink protocol with the feed options."""
    sink = _sink(http, url="https://splunk.example.com:8088", token=TOKEN, events="all", event_batch=50)
    assert isinstance(sink, EventSink)
    assert (sink.events, sink.event_batch) == ("all", 50)
    uuid.UUID(sink.channel)
    assert TOKEN not in repr(sink) + repr(sink.options)


@pytest.mark.parametrize(
    ("options", "where"),
    [({"url": "https://s:8088/services/collector/event"}, "url"), ({"url": "ftp://s"}, "url"),
     ({"url": "https://s:8088/?token=x"}, "url"), ({"token": " "}, "token"), ({"channel": "not-a-guid"}, "channel"),
     ({"index": "Main"}, "index"), ({"index": "_internal"}, "index"), ({"ack_poll": 5, "ack_timeout": 1}, "ack_poll"),
     ({"format": "cef"}, "format"), ({"max_bytes": 10}, "max_bytes"), ({"ca_file": "/nonexistent/ca.pem"}, "ca_file")],
)
def test_options_are_validated(http: aiohttp.ClientSession, options: dict[str, Any], where: str) -> None:
    """A base URL with /services/collector, a query or a non-http scheme, an empty token, a channel that is
    not a GUID, an index Splunk would refuse, a poll interval past the ack timeout, an unknown format, a
    tiny max_bytes and a missing CA file are configuration errors naming the key."""
    cfg = SinkConfig(name="splunk-1", type="splunk_hec", **{"url": "https://s:8088", "token": TOKEN, **options})
    with pytest.raises(ConfigError) as info:
        plugins.sink_options(cfg, 0)
    assert where in str(info.value) and TOKEN not in str(info.value)


async def test_a_batch_arrives_as_one_request_with_every_event(http: aiohttp.ClientSession) -> None:
    """send_events posts the whole batch as one request of concatenated envelopes with the token in
    Authorization, the configured source / sourcetype / index / host, time in epoch seconds with ms, and
    canary's event JSON carrying the store id (the idempotency key); no channel header without ack."""
    async with HecServer(TOKEN) as hec:
        sink = _sink(http, url=hec.base, token=TOKEN, format="canary", index="canary", host="canary-prod",
                     source="canary:shop")
        await sink.send_events([_stored(i) for i in range(5)])
    assert len(hec.requests) == 1 and hec.event_requests == 1
    seen = hec.requests[0]
    assert seen.path == "/services/collector/event" and seen.headers["Authorization"] == f"Splunk {TOKEN}"
    assert "X-Splunk-Request-Channel" not in seen.headers
    assert [e["id"] for e in hec.events] == [1000, 1001, 1002, 1003, 1004]
    first = hec.indexed[0].envelope
    assert {k: first[k] for k in ("source", "sourcetype", "index", "host")} == {
        "source": "canary:shop", "sourcetype": "canary:event", "index": "canary", "host": "canary-prod"}
    assert first["time"] == round(WHEN.timestamp(), 3) and first["time"] != int(first["time"])
    assert first["event"]["kind"] == "read" and first["event"]["incident_id"] == 7
    assert first["event"]["canary"]["label"] == "shop/public.customers" and first["event"]["suppressed_by"] is None


async def test_alert_trigger_update_resolve(http: aiohttp.ClientSession) -> None:
    """Each notification of an incident is one event of sourcetype canary:alert holding Alert.to_json();
    host and index are left to the token's defaults when not configured."""
    async with HecServer(TOKEN) as hec:
        sink = _sink(http, url=hec.base, token=TOKEN, format="canary")
        await sink.send(make_alert())
        await sink.send(make_alert(action=AlertAction.UPDATE, sequence=1, canary_count=120))
        await sink.send(make_alert(action=AlertAction.RESOLVE, sequence=2))
    assert [e["action"] for e in hec.events] == ["trigger", "update", "resolve"]
    assert {e["dedup_key"] for e in hec.events} == {make_alert().dedup_key}
    assert all(i.envelope["sourcetype"] == "canary:alert" for i in hec.indexed)
    assert all("host" not in i.envelope and "index" not in i.envelope for i in hec.indexed)
    assert hec.indexed[0].envelope["time"] == make_alert().first_seen.timestamp()


async def _ocsf_delivery(http: aiohttp.ClientSession) -> HecServer:
    async with HecServer(TOKEN) as hec:
        sink = _sink(http, url=hec.base, token=TOKEN)
        await sink.send(make_alert())
        await sink.send(make_alert(action=AlertAction.RESOLVE, sequence=2))
        await sink.send_events([_stored(i) for i in range(3)])
    return hec


async def test_ocsf_format(http: aiohttp.ClientSession) -> None:
    """format = "ocsf" (the default) sends OCSF records: a Detection Finding (class 2004) per notification,
    the fitting class per event, sourcetype ocsf:canary, the envelope's time the record's (ms -> s)."""
    hec = await _ocsf_delivery(http)
    assert len(hec.indexed) == 5
    assert all(i.envelope["sourcetype"] == "ocsf:canary" for i in hec.indexed)
    assert [i.event["class_uid"] for i in hec.indexed[:2]] == [2004, 2004]
    for item in hec.indexed:
        assert isinstance(item.event["class_uid"], int) and item.event["metadata"]
        assert item.envelope["time"] == round(item.event["time"] / 1000, 3)


async def test_every_ocsf_record_received_validates(http: aiohttp.ClientSession) -> None:
    """Every OCSF record the collector received validates against the OCSF schema (tests/ocsf_support.py)."""
    ocsf_support = pytest.importorskip("ocsf_support")
    hec = await _ocsf_delivery(http)
    assert len(hec.events) == 5
    for record in hec.events:
        ocsf_support.validate_ocsf(record)


async def test_indexer_acknowledgement_round_trip(http: aiohttp.ClientSession) -> None:
    """With ack on, every request names the sink's channel, and a delivery returns only once the channel's
    ack poll answers true for its ackId (here after a lag of several polls); the next delivery gets the
    channel's next id."""
    async with HecServer(TOKEN, use_ack=True) as hec:
        hec.ack_lag = 0.3
        sink = _sink(http, url=hec.base, token=TOKEN, ack=True, ack_poll=0.05, ack_timeout=5)
        started = asyncio.get_running_loop().time()
        await sink.send_events([_stored(i) for i in range(3)])
        took = asyncio.get_running_loop().time() - started
        await sink.send(make_alert())
    assert took >= 0.3 and len(hec.polls) >= 3
    assert all(r.headers["X-Splunk-Request-Channel"] == sink.channel for r in hec.requests)
    assert all(r.query == {"channel": sink.channel} for r in hec.polls)
    assert hec.polls[0].json() == {"acks": [0]} and hec.polls[-1].json() == {"acks": [1]}
    assert hec.channels[sink.channel].next_id == 2 and not hec.channels[sink.channel].ready_at


async def test_ack_timeout_is_retryable_and_the_resend_is_at_least_once(http: aiohttp.ClientSession) -> None:
    """Not acknowledged within ack_timeout: a retryable DeliveryError; the feed's resend indexes the batch
    again (at least once) and returns once acknowledged."""
    async with HecServer(TOKEN, use_ack=True) as hec:
        hec.ack_hold = True
        sink = _sink(http, url=hec.base, token=TOKEN, format="canary", ack=True, ack_poll=0.05, ack_timeout=0.3)
        batch = [_stored(i) for i in range(2)]
        with pytest.raises(DeliveryError) as info:
            await sink.send_events(batch)
        hec.ack_hold = False
        await sink.send_events(batch)
    assert not info.value.permanent and "not acknowledged" in str(info.value)
    assert [e["id"] for e in hec.events] == [1000, 1001, 1000, 1001]


async def test_ack_on_a_token_without_it_and_the_reverse_are_permanent(http: aiohttp.ClientSession) -> None:
    """ack = true against a token without useACK (no ackId), and ack = false against a token with it
    (400 code 10 "Data channel is missing"), are permanent errors that say which setting to change."""
    async with HecServer(TOKEN) as plain, HecServer(TOKEN, use_ack=True) as acked:
        with pytest.raises(DeliveryError) as no_ack_id:
            await _sink(http, url=plain.base, token=TOKEN, ack=True).send(make_alert())
        with pytest.raises(DeliveryError) as no_channel:
            await _sink(http, url=acked.base, token=TOKEN).send(make_alert())
    assert no_ack_id.value.permanent and "ack = false" in str(no_ack_id.value)
    assert no_channel.value.permanent and no_channel.value.status == 400
    assert "code 10" in str(no_channel.value) and "ack = true" in str(no_channel.value)


async def test_a_batch_over_max_bytes_is_split_in_order(http: aiohttp.ClientSession) -> None:
    """A batch over max_bytes goes as several requests, each within it, whole events only and in order;
    with ack on, each request's ackId is polled before the delivery returns."""
    async with HecServer(TOKEN, use_ack=True) as hec:
        sink = _sink(http, url=hec.base, token=TOKEN, format="canary", max_bytes=65536, ack=True, ack_poll=0.02)
        await sink.send_events([_stored(i, padding="x" * 9000) for i in range(20)])
    posts = [r for r in hec.requests if r.path.endswith("/event")]
    assert len(posts) >= 3 and all(len(r.body) <= 65536 for r in posts)
    assert [e["id"] for e in hec.events] == [1000 + i for i in range(20)]
    assert hec.channels[sink.channel].next_id == len(posts) and not hec.channels[sink.channel].ready_at


async def test_413_halves_the_request_until_it_fits(http: aiohttp.ClientSession) -> None:
    """A collector whose max_content_length is below the sink's max_bytes answers 413; the sink halves the
    request until each part fits, and every event is indexed once."""
    async with HecServer(TOKEN, max_content_length=5000) as hec:
        sink = _sink(http, url=hec.base, token=TOKEN, format="canary")
        await sink.send_events([_stored(i, padding="y" * 900) for i in range(16)])
    assert [e["id"] for e in hec.events] == [1000 + i for i in range(16)]
    assert any(r.body and len(r.body) > 5000 for r in hec.requests)


async def test_an_event_alone_over_max_bytes_loses_its_evidence_not_its_detection(http: aiohttp.ClientSession) -> None:
    """An event whose evidence alone is over max_bytes (hostile input can make it large) is sent with the
    evidence replaced by a note, then actor and origin, then its long texts cut, so the detection still
    arrives; the others in the batch are untouched. An alert likewise."""
    huge = _stored(1, urls=[f"https://evil.example/{n}/" + "z" * 200 for n in range(400)])
    long_text = "q" * 16_384  # the longest text an event keeps (MAX_TEXT)
    everywhere = StoredEvent(id=1002, event=DetectionEvent(
        kind=EventKind.USED, source=long_text, key=long_text, group=long_text, canary_id=4, observed_at=WHEN,
        actor={f"a{n}": long_text for n in range(8)}, origin={f"o{n}": long_text for n in range(8)},
        evidence={f"e{n}": long_text for n in range(8)}, drill=long_text))
    async with HecServer(TOKEN) as hec:
        sink = _sink(http, url=hec.base, token=TOKEN, format="canary", max_bytes=65536)
        await sink.send_events([_stored(0), huge, everywhere])
        await sink.send(make_alert(evidence={f"e{n}": long_text for n in range(8)}))
    small, shrunk, cut, alert = hec.events
    assert small["evidence"]["query"].startswith("SELECT")
    assert shrunk["id"] == 1001 and shrunk["kind"] == "read" and "urls" not in shrunk["evidence"]
    assert "max_bytes" in shrunk["evidence"]["truncated"] and shrunk["actor"] == {"user": "mallory"}
    assert cut["id"] == 1002 and cut["kind"] == "used" and len(cut["group"]) == 256
    assert set(cut["actor"]) == {"truncated"} and set(cut["evidence"]) == {"truncated"}
    assert alert["dedup_key"] == make_alert().dedup_key and set(alert["evidence"]) == {"truncated"}
    assert all(len(r.body) <= 65536 for r in hec.requests)


@pytest.mark.parametrize(
    ("status", "answer", "expect"),
    [(401, {"text": "Token is required", "code": 2}, "Token is required (code 2)"),
     (401, {"text": "Invalid authorization", "code": 3}, "Invalid authorization (code 3)"),
     (403, {"text": "Token disabled", "code": 1}, "token is disabled"),
     (400, {"text": "No data", "code": 5}, "No data (code 5)"),
     (400, {"text": "Invalid data format", "code": 6, "invalid-event-number": 2}, "refused event 1002 (object 2 of 3"),
     (400, {"text": "Event field cannot be blank", "code": 13, "invalid-event-number": 0}, "refused event 1000"),
     (404, {"text": "The requested URL was not found on this server.", "code": 404}, "not found")],
)
async def test_refusals_are_permanent(http: aiohttp.ClientSession, status: int, answer: dict[str, Any],
                                      expect: str) -> None:
    """HEC's 400 / 401 / 403 codes and a wrong path are permanent; the error gives HEC's text and code and,
    for a batch, which event it refused (its store id)."""
    async with HecServer(TOKEN) as hec:
        hec.answers.append((status, {**answer, "echo": f"Splunk {TOKEN}"}, {}))
        sink = _sink(http, url=hec.base, token=TOKEN)
        with pytest.raises(DeliveryError) as info:
            await sink.send_events([_stored(i) for i in range(3)])
    assert info.value.permanent and info.value.status == status
    assert expect in str(info.value) and TOKEN not in str(info.value)


async def test_wrong_token_wrong_index_and_disabled_token_are_permanent_without_the_token(
        http: aiohttp.ClientSession) -> None:
    """The collector's own refusals: an unknown token (403 code 4), a disabled one (403 code 1) and an index
    the token may not write (400 code 7) are permanent; neither error, logs nor repr hold a token."""
    wrong = "0badc0de-0000-4000-8000-000000000000"
    async with HecServer(TOKEN, indexes={"main"}) as hec:
        with capture_logs() as logs:
            errors = []
            for token, index in ((wrong, ""), (TOKEN, "canary")):
                sink = _sink(http, url=hec.base, token=token, index=index)
                with pytest.raises(DeliveryError) as info:
                    await sink.send(make_alert())
                errors.append(info.value)
            hec.disabled = True
            with pytest.raises(DeliveryError) as disabled:
                await _sink(http, url=hec.base, token=TOKEN).send(make_alert())
            errors.append(disabled.value)
    assert [(e.status, e.permanent) for e in errors] == [(403, True), (400, True), (403, True)]
    assert "code 4" in str(errors[0]) and "code 7" in str(errors[1]) and "code 1" in str(errors[2])
    text = " ".join(str(e) for e in errors) + repr(logs)
    assert wrong not in text and TOKEN not in text and not hec.indexed


@pytest.mark.parametrize(
    ("status", "answer", "headers", "retry_after"),
    [(503, {"text": "Server is busy", "code": 9}, {"Retry-After": "5"}, 5.0),
     (503, {"text": "HEC is unhealthy, queues are full", "code": 18}, {}, None),
     (500, {"text": "Internal server error", "code": 8}, {}, None),
     (429, {"text": "Too many requests"}, {"Retry-After": "2"}, 2.0)],
)
async def test_busy_and_internal_errors_are_retryable(http: aiohttp.ClientSession, status: int, answer: dict[str, Any],
                                                     headers: dict[str, str], retry_after: float | None) -> None:
    """503 (server busy, unhealthy), 500 and a proxy's 429 are retryable with their Retry-After; the
    retry is then indexed."""
    async with HecServer(TOKEN) as hec:
        hec.answers.append((status, answer, headers))
        sink = _sink(http, url=hec.base, token=TOKEN)
        with pytest.raises(DeliveryError) as info:
            await sink.send(make_alert())
        await sink.send(make_alert())
    assert not info.value.permanent and (info.value.status, info.value.retry_after) == (status, retry_after)
    assert len(hec.indexed) == 1


async def test_unreachable_collector_is_retryable(http: aiohttp.ClientSession) -> None:
    """A refused connection is retryable and names only scheme, host and port."""
    sink = _sink(http, url="http://127.0.0.1:9", token=TOKEN)
    with pytest.raises(DeliveryError) as info:
        await sink.send_events([_stored(0)])
    assert not info.value.permanent and "127.0.0.1:9" in str(info.value) and TOKEN not in str(info.value)


async def test_hostile_answers_do_not_crash_the_sink(http: aiohttp.ClientSession) -> None:
    """A 200 without JSON when ack is on is a permanent "no ackId"; ack polls answering garbage, a 503 or
    an unknown shape are retried until ack_timeout, then a retryable error."""
    async with HecServer(TOKEN, use_ack=True) as hec:
        hec.answers.append((200, "<html>proxy</html>", {}))
        sink = _sink(http, url=hec.base, token=TOKEN, ack=True, ack_poll=0.02, ack_timeout=0.4)
        with pytest.raises(DeliveryError) as no_id:
            await sink.send(make_alert())
        hec.ack_hold = True
        hec.poll_answers += [(200, ["not", "an", "object"], {}), (503, {"text": "Server is busy", "code": 9}, {}),
                             (200, {"acks": "yes"}, {})]
        with pytest.raises(DeliveryError) as timed_out:
            await sink.send(make_alert())
    assert no_id.value.permanent and "no ackId" in str(no_id.value)
    assert not timed_out.value.permanent and "not acknowledged" in str(timed_out.value) and not hec.poll_answers


async def test_https_with_a_private_ca(http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """Against a collector with a self-signed certificate, ca_file makes delivery work; without it the
    certificate fails verification (retryable, nothing sent)."""
    cert, key = self_signed(tmp_path)
    async with HecServer(TOKEN, ssl_context=server_context(cert, key)) as hec:
        with pytest.raises(DeliveryError) as info:
            await _sink(http, url=hec.base, token=TOKEN).send(make_alert())
        await _sink(http, url=hec.base, token=TOKEN, ca_file=str(cert)).send(make_alert())
    assert not info.value.permanent and hec.base.startswith("https://")
    assert len(hec.indexed) == 1


def test_envelopes_are_json_whatever_the_record_holds() -> None:
    """A record holding NaN / infinity or a foreign type still serializes to JSON HEC parses (no NaN token)."""
    body = splunk._json_bytes({"event": {"a": math.nan, "b": [math.inf], "c": dt.date(2026, 5, 1), "d": "\ud800"}})
    assert body == b'{"event":{"a":"NaN","b":["Infinity"],"c":"2026-05-01","d":"?"}}'
