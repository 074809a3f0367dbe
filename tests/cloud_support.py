"""Cloud log deliveries as the clouds send them, byte for byte (canary/postgres/firehose.py and
pubsub.py cite the documentation): Firehose HTTP endpoint requests carrying gzip-compressed
CloudWatch Logs subscription messages, and Pub/Sub push requests carrying Cloud Logging LogEntries,
signed like Google's push tokens by a local RSA key served from a local JWKS endpoint."""

from __future__ import annotations

import base64
import gzip
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import RSAKey

from canary.store.embedded import free_port

ACCESS_KEY = "fh-access-key-for-tests"
LOG_GROUP = "/aws/rds/instance/shop-db/postgresql"
AUDIENCE = "https://canary.example.com/ingest/pubsub"
SERVICE_ACCOUNT = "log-push@shop-prod.iam.gserviceaccount.com"
DATABASE_ID = "shop-prod:shop-sql"
ISSUER = "https://accounts.google.com"


# -- Amazon ------------------------------------------------------------------------------------------
_ids = iter(range(10**9))


def event_id() -> str:
    """A CloudWatch Logs event id (56 decimal digits), fresh each call."""
    return f"{36_000_000_000_000_000 + next(_ids):056d}"


def cloudwatch_message(messages: Sequence[str], *, log_group: str = LOG_GROUP, log_stream: str = "postgresql.log.2026-11-23-15",
                       ids: Sequence[str] | None = None, message_type: str = "DATA_MESSAGE",
                       first_ms: int = 1795965853620) -> dict[str, Any]:
    """A CloudWatch Logs subscription message: one log event per message (timestamps in ms, one
    apart from ``first_ms``)."""
    ids = list(ids) if ids is not None else [event_id() for _ in messages]
    return {"messageType": message_type, "owner": "123456789012", "logGroup": log_group, "logStream": log_stream,
            "subscriptionFilters": ["canary"],
            "logEvents": [{"id": i, "timestamp": first_ms + n, "message": m} for n, (i, m) in enumerate(zip(ids, messages, strict=True))]}


def control_message() -> dict[str, Any]:
    """The message CloudWatch Logs sends when a subscription is created (no log events)."""
    return {"messageType": "CONTROL_MESSAGE", "owner": "CloudwatchLogs", "logGroup": "", "logStream": "",
            "subscriptionFilters": [], "logEvents": [{"id": "", "timestamp": 1795965853620,
                                                       "message": "CWL CONTROL MESSAGE: Checking health of destination Firehose."}]}


def firehose_record(message: dict[str, Any]) -> dict[str, str]:
    """A Firehose record whose data is the gzip-compressed message, base64-encoded."""
    return {"data": base64.b64encode(gzip.compress(json.dumps(message).encode())).decode()}


def firehose_body(records: Sequence[dict[str, Any]], request_id: str) -> dict[str, Any]:
    return {"requestId": request_id, "timestamp": int(time.time() * 1000), "records": list(records)}


def firehose_headers(request_id: str, *, key: str | None = ACCESS_KEY, gzipped: bool = True) -> dict[str, str]:
    headers = {"X-Amz-Firehose-Protocol-Version": "1.0",
               "X-Amz-Firehose-Source-Arn": "arn:aws:firehose:eu-west-1:123456789012:deliverystream/rds-logs",
               "X-Amz-Firehose-Common-Attributes": json.dumps({"commonAttributes": {"env": "prod"}}),
               "Content-Type": "application/json"}
    if request_id:
        headers["X-Amz-Firehose-Request-Id"] = request_id
    if key is not None:
        headers["X-Amz-Firehose-Access-Key"] = key
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return headers


async def post_firehose(url: str, records: Sequence[dict[str, Any]], *, key: str | None = ACCESS_KEY, gzipped: bool = True,
                        request_id: str | None = None, raw: bytes | None = None) -> tuple[int, dict[str, Any], aiohttp.typedefs.LooseHeaders]:
    """POST a delivery as Firehose does; (status, JSON answer, headers)."""
    request_id = str(uuid.uuid4()) if request_id is None else request_id  # "": no header
    body = raw if raw is not None else json.dumps(firehose_body(records, request_id)).encode()
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        async with http.post(url, data=gzip.compress(body) if gzipped else body,
                             headers=firehose_headers(request_id, key=key, gzipped=gzipped)) as resp:
            return resp.status, json.loads(await resp.read()), resp.headers


# -- Google ------------------------------------------------------------------------------------------
@dataclass
class Google:
    """Google's side of a push subscription: a signing key (and its JWKS), tokens signed like Pub/Sub's."""

    key: RSAKey = field(default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": uuid.uuid4().hex}))
    extra_keys: list[RSAKey] = field(default_factory=list)

    @property
    def kid(self) -> str:
        return str(self.key.kid)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**k.as_dict(private=False), "alg": "RS256", "use": "sig"} for k in (self.key, *self.extra_keys)]}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {"aud": AUDIENCE, "azp": "113774264463038321964", "email": SERVICE_ACCOUNT, "sub": "113774264463038321964",
                  "email_verified": True, "iat": now, "exp": now + 3600, "iss": ISSUER}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, *, key: RSAKey | None = None, header: dict[str, Any] | None = None, **claims: Any) -> str:
        signer = key or self.key
        head = {"alg": "RS256", "kid": str(signer.kid), "typ": "JWT", **(header or {})}
        return jwt.encode(head, self.claims(**claims), signer)


def unsigned_token(claims: dict[str, Any], header: dict[str, Any]) -> str:
    """A JWT with any header and no valid signature (alg none and friends)."""
    def b64(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
    return f"{b64(header)}.{b64(claims)}."


@dataclass
class JwksServer:
    url: str
    hits: list[float]


@asynccontextmanager
async def jwks_server(google: Google) -> AsyncIterator[JwksServer]:
    """Google's certs endpoint on a loopback port, serving ``google.jwks()`` as it is at each request."""
    hits: list[float] = []

    async def certs(request: web.Request) -> web.Response:
        hits.append(time.monotonic())
        return web.json_response(google.jwks())

    app = web.Application()
    app.router.add_get("/oauth2/v3/certs", certs)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield JwksServer(f"http://127.0.0.1:{port}/oauth2/v3/certs", hits)
    finally:
        await runner.cleanup()


def log_entry(text: str | None = None, *, json_payload: dict[str, Any] | None = None, database_id: str = DATABASE_ID,
              insert_id: str | None = None, log: str = "cloudsql.googleapis.com%2Fpostgres.log") -> dict[str, Any]:
    """A Cloud Logging LogEntry of a Cloud SQL instance's server log."""
    project = database_id.split(":", 1)[0]
    entry: dict[str, Any] = {
        "insertId": insert_id or f"s={uuid.uuid4().hex};i=1;b=1;m=2;t=2;x=3",
        "logName": f"projects/{project}/logs/{log}",
        "receiveTimestamp": "2026-11-23T15:24:14.101520Z",
        "resource": {"type": "cloudsql_database",
                     "labels": {"database_id": database_id, "project_id": project, "region": "europe-west1"}},
        "severity": "INFO", "timestamp": "2026-11-23T15:24:13.620276Z"}
    if json_payload is not None:
        entry["jsonPayload"] = json_payload
    else:
        entry["textPayload"] = text or ""
    return entry


def push_body(entry: dict[str, Any] | None = None, *, data: str | None = None, message_id: str | None = None) -> bytes:
    """A Pub/Sub push request body carrying ``entry`` (or raw ``data``) as the message data."""
    mid = message_id or str(int(time.time() * 1000))
    payload = data if data is not None else base64.b64encode(json.dumps(entry).encode()).decode()
    return json.dumps({"message": {"attributes": {"logging.googleapis.com/timestamp": "2026-11-23T15:24:13.620276Z"},
                                   "data": payload, "messageId": mid, "message_id": mid,
                                   "publishTime": "2026-11-23T15:24:14.223Z", "publish_time": "2026-11-23T15:24:14.223Z"},
                       "subscription": "projects/shop-prod/subscriptions/canary-cloudsql-logs"}).encode()


async def post_push(url: str, body: bytes, token: str | None) -> tuple[int, bytes, aiohttp.typedefs.LooseHeaders]:
    """POST as Pub/Sub does (JSON body, the OIDC token as a bearer); (status, body, headers)."""
    headers = {"Content-Type": "application/json", "User-Agent": "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=body, headers=headers) as resp:
            return resp.status, await resp.read(), resp.headers
