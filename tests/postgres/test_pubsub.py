"""Cloud SQL logs through a Cloud Logging sink and a Pub/Sub push subscription: the push endpoint
accepts only Google-signed OIDC tokens for its audience and service account (401 / 403 otherwise,
whatever the algorithm games), acknowledges a message only after its events commit, acknowledges
after quarantine a message that can never be processed, and answers 503 when the store is down."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cloud_support import (
    AUDIENCE,
    DATABASE_ID,
    SERVICE_ACCOUNT,
    Google,
    JwksServer,
    jwks_server,
    log_entry,
    post_push,
    push_body,
    unsigned_token,
)
from joserfc.jwk import RSAKey
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

from canary.config import from_mapping
from canary.errors import ConfigError
from canary.postgres import pubsub
from canary.postgres.pubsub import PubSubPush
from canary.runtime import Runtime

SHOP = {"name": "shop", "dsn": "postgresql://canary@127.0.0.1:1/shop", "node": "primary"}


def read_line(pk: int, pid: int) -> str:
    return json.dumps(read_record(pk, pid, query="select * from customers", fields={"application_name": "psql"}))


def pubsub_config(jwks_url: str, **overrides: Any) -> dict[str, Any]:
    return {"audience": AUDIENCE, "service_account": SERVICE_ACCOUNT, "jwks_url": jwks_url, "jwks_min_interval": "1s",
            "databases": [{"database_id": DATABASE_ID, "datastore": "shop", "node": "shop-sql", "format": "jsonlog"}], **overrides}


@pytest.fixture
def google() -> Google:
    return Google()


@pytest.fixture
async def certs(google: Google) -> AsyncIterator[JwksServer]:
    async with jwks_server(google) as server:
        yield server


@pytest.fixture
async def runtime(open_test_runtime: OpenRuntime, make_config: MakeConfig, canary_rows: CanaryRows, certs: JwksServer) -> Runtime:
    """A runtime with a stdout sink, a running pipeline and the push endpoint configured against the
    local JWKS; customer canaries at rows 11, 22, 33."""
    rt = await open_test_runtime(make_config(sinks=[STDOUT_SINK], datastores=[SHOP], coverage={"pubsub": pubsub_config(certs.url)}))
    await canary_rows(*(customer_canary(pk) for pk in (11, 22, 33)))
    rt.pipeline.start()
    return rt


@pytest.fixture
async def url(runtime: Runtime) -> AsyncIterator[str]:
    """The endpoint the registered source builds from the configuration, on a loopback port."""
    components = pubsub.SOURCE.components(runtime.config)
    assert [c.name for c in components] == ["pubsub"]
    async with serving(runtime, components) as port:
        yield f"http://127.0.0.1:{port}/ingest/pubsub"


async def reasons(rt: Runtime) -> list[str]:
    return sorted(r["reason"] for r in await rt.pool.fetch("SELECT reason FROM rejects"))


async def test_a_canary_read_pushed_by_pubsub_becomes_an_incident(runtime: Runtime, url: str, google: Google) -> None:
    """A LogEntry holding a canary read, pushed with a valid token: acknowledged (204, no body) after
    commit, an incident of that canary from node shop-sql."""
    status, body, _ = await post_push(url, push_body(log_entry(read_line(11, 4242))), google.token())
    assert (status, body) == (204, b"")
    rows = await runtime.pool.fetch("SELECT kind, source, canary_id FROM events")
    assert [(r["kind"], r["source"]) for r in rows] == [("read", "pubsub:shop-sql")]
    incidents = await incidents_when(runtime, 1)
    assert incidents[0]["canary_ids"] == [rows[0]["canary_id"]]
    assert await reasons(runtime) == []


async def test_a_json_payload_is_read_as_a_jsonlog_record(runtime: Runtime, url: str, google: Google) -> None:
    """A LogEntry whose payload is structured (jsonPayload) is decoded as one jsonlog record."""
    status, _, _ = await post_push(url, push_body(log_entry(json_payload=json.loads(read_line(22, 77)))), google.token())
    assert status == 204
    assert await runtime.pool.fetchval("SELECT count(*) FROM events WHERE kind = 'read'") == 1


def _hs256(google: Google) -> str:
    """HS256 keyed with the RSA public key's text: the algorithm-confusion forgery."""
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "kid": google.kid, "typ": "JWT"}).encode())
    body = b64(json.dumps(google.claims()).encode())
    secret = json.dumps(google.jwks()["keys"][0]).encode()
    return f"{head}.{body}.{b64(hmac.new(secret, f'{head}.{body}'.encode(), hashlib.sha256).digest())}"


BAD_TOKENS: list[tuple[str, Any, int, str]] = [
    ("missing", lambda g: None, 401, "no_token"),
    ("garbage", lambda g: "not.a.jwt", 401, "bad_token"),
    ("alg_none", lambda g: unsigned_token(g.claims(), {"alg": "none", "kid": g.kid}), 401, "bad_token_alg"),
    ("hs256_confusion", _hs256, 401, "bad_token_alg"),
    ("other_key_same_kid", lambda g: g.token(key=RSAKey.generate_key(2048, parameters={"kid": g.kid})), 401, "bad_token"),
    ("unknown_kid", lambda g: g.token(key=RSAKey.generate_key(2048, parameters={"kid": "nobody"})), 401, "unknown_key"),
    ("expired", lambda g: g.token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200), 401, "bad_token"),
    ("no_exp", lambda g: g.token(exp=None), 401, "bad_token"),
    ("wrong_issuer", lambda g: g.token(iss="https://evil.example.com"), 401, "bad_token"),
    ("wrong_audience", lambda g: g.token(aud="https://other.example.com/push"), 401, "wrong_audience"),
    ("other_service_account", lambda g: g.token(email="intruder@shop-prod.iam.gserviceaccount.com"), 403, "wrong_service_account"),
    ("email_unverified", lambda g: g.token(email_verified=False), 403, "email_unverified"),
]


@pytest.mark.parametrize(("name", "make", "status", "reason"), BAD_TOKENS, ids=[b[0] for b in BAD_TOKENS])
async def test_a_push_without_a_valid_token_is_refused_and_nothing_is_stored(runtime: Runtime, url: str, google: Google, name: str,
                                                                             make: Any, status: int, reason: str) -> None:
    """Every way of not holding Google's token for our audience and service account is 401 (with
    WWW-Authenticate) or 403, counted with its reason; the pushed read is not stored."""
    answer, _, headers = await post_push(url, push_body(log_entry(read_line(11, 1))), make(google))
    assert answer == status
    assert ("WWW-Authenticate" in headers) == (status == 401)
    assert await runtime.pool.fetchval("SELECT count(*) FROM events") == 0
    assert await reasons(runtime) == [reason]


async def test_keys_are_fetched_once_and_again_for_a_rotated_key_at_most_once_per_interval(
        runtime: Runtime, url: str, google: Google, certs: JwksServer) -> None:
    """The JWKS is fetched at the first push and cached; a token signed by a key Google has since
    added is accepted after one more fetch; tokens naming made-up keys fetch at most once per
    jwks_min_interval."""
    assert (await post_push(url, push_body(log_entry(read_line(11, 1))), google.token()))[0] == 204
    assert (await post_push(url, push_body(log_entry(read_line(11, 2))), google.token()))[0] == 204
    assert len(certs.hits) == 1
    await asyncio.sleep(1.05)
    rotated = RSAKey.generate_key(2048, parameters={"kid": "rotated"})
    google.extra_keys.append(rotated)
    assert (await post_push(url, push_body(log_entry(read_line(22, 3))), google.token(key=rotated)))[0] == 204
    assert len(certs.hits) == 2
    for n in range(20):
        forged = google.token(key=RSAKey.generate_key(2048, parameters={"kid": f"made-up-{n}"})) if n < 3 else \
            unsigned_token(google.claims(), {"alg": "RS256", "kid": f"made-up-{n}"})
        assert (await post_push(url, push_body(log_entry(read_line(33, 4))), forged))[0] == 401
    assert len(certs.hits) == 2
    assert await runtime.pool.fetchval("SELECT count(*) FROM events") == 3


BAD_MESSAGES: list[tuple[str, bytes, str]] = [
    ("not_json", b"{{{", "bad_push"),
    ("no_message", b'{"subscription": "projects/p/subscriptions/s"}', "bad_push"),
    ("not_base64", push_body(data="%%% not base64 %%%"), "bad_base64"),
    ("not_a_log_entry", push_body(data=base64.b64encode(b"\xff\xfe not json").decode()), "bad_entry"),
    ("other_log", push_body(log_entry(read_line(11, 5), log="cloudsql.googleapis.com%2Fmysql.err")), "unexpected_log"),
    ("unknown_instance", push_body(log_entry(read_line(11, 5), database_id="shop-prod:other-sql")), "unknown_database"),
    ("no_payload", push_body({**log_entry("x"), "textPayload": 7}), "no_payload"),
    ("no_record", push_body(log_entry("this is no jsonlog record")), "malformed_log_line"),
]


@pytest.mark.parametrize(("name", "body", "reason"), BAD_MESSAGES, ids=[b[0] for b in BAD_MESSAGES])
async def test_a_message_that_can_never_be_processed_is_quarantined_and_acknowledged(runtime: Runtime, url: str, google: Google,
                                                                                    name: str, body: bytes, reason: str) -> None:
    """An authenticated push whose message can never be processed is rejected with its reason and
    acknowledged (204), or Pub/Sub would redeliver it for a week; no read is stored."""
    status, _, _ = await post_push(url, body, google.token())
    assert status == 204
    assert await reasons(runtime) == [reason]
    assert await runtime.pool.fetchval("SELECT count(*) FROM events WHERE kind <> 'health'") == 0


async def test_a_stopped_store_is_503_and_the_message_is_redelivered(runtime: Runtime, url: str, google: Google) -> None:
    """With the control store's pool closed a push is 503 (not acknowledged: Pub/Sub redelivers), and
    nothing is blamed on the message."""
    await runtime.pool.close()
    status, _, headers = await post_push(url, push_body(log_entry(read_line(11, 9))), google.token())
    assert status == 503 and headers["Retry-After"] == "5"
    assert "quarantined" not in runtime.metrics.render().decode()


async def test_keys_from_a_file_and_unreachable_keys_are_503(open_test_runtime: OpenRuntime, make_config: MakeConfig,
                                                           google: Google, tmp_path: Path) -> None:
    """With jwks_file the keys come from the file; with a key server that cannot be reached and no
    keys known yet a push is 503 (redelivered later), not 401."""
    (tmp_path / "certs.json").write_text(json.dumps(google.jwks()))
    rt = await open_test_runtime(make_config(datastores=[SHOP], coverage={"pubsub": pubsub_config(
        "https://unused.invalid/certs", jwks_file=str(tmp_path / "certs.json"))}))
    async with serving(rt, [PubSubPush.from_config(rt.config)]) as port:
        status, _, _ = await post_push(f"http://127.0.0.1:{port}/ingest/pubsub", push_body(log_entry(read_line(11, 1))), google.token())
        assert status == 204
    rt2 = await open_test_runtime(make_config(datastores=[SHOP], coverage={"pubsub": pubsub_config("http://127.0.0.1:9/certs")}))
    async with serving(rt2, [PubSubPush.from_config(rt2.config)]) as port:
        status, _, headers = await post_push(f"http://127.0.0.1:{port}/ingest/pubsub", push_body(log_entry(read_line(11, 1))), google.token())
        assert status == 503 and headers["Retry-After"] == "30"


@pytest.mark.parametrize(("section", "message"), [
    ({"databases": [{"database_id": DATABASE_ID, "datastore": "shop"}]}, "audience"),
    ({"audience": AUDIENCE, "jwks_url": "http://keys.example.com/certs"}, "jwks_url must be https"),
    ({"audience": AUDIENCE, "databases": [{"database_id": "no-colon", "datastore": "shop"}]}, "database_id"),
    ({"audience": AUDIENCE, "databases": [{"database_id": DATABASE_ID, "datastore": "nope"}]}, "no datastore named 'nope'"),
])
def test_pubsub_config_is_validated(section: dict[str, Any], message: str) -> None:
    """Databases without an audience, keys over plain HTTP to another host, a database_id that is not
    project:instance, or an unknown datastore are config errors."""
    with pytest.raises(ConfigError, match=message):
        from_mapping({"datastores": [SHOP], "coverage": {"pubsub": section}})


def test_cloud_sql_prefix_is_the_default() -> None:
    """A database configured without a prefix reads Cloud SQL's own log_line_prefix as stderr."""
    cfg = from_mapping({"datastores": [SHOP], "coverage": {"pubsub": {"audience": AUDIENCE, "databases": [
        {"database_id": DATABASE_ID, "datastore": "shop"}]}}})
    db = cfg.coverage.pubsub.databases[0]
    assert (db.format, db.log_line_prefix) == ("stderr", "%m [%p]: [%l-1] db=%d,user=%u ")
