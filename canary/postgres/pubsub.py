"""Cloud SQL for PostgreSQL logs delivered by a Pub/Sub push subscription: a Cloud Logging sink
routes the instance's ``postgres.log`` to a Pub/Sub topic, and the topic's push subscription POSTs
each LogEntry here.

Wire formats, as Google documents them:

- Push request ("Push subscriptions", https://cloud.google.com/pubsub/docs/push): one message per
  POST, ``{"message": {"data": <base64>, "attributes": {...}, "messageId", "publishTime"},
  "subscription": "projects/P/subscriptions/S"}``. A 102, 200, 201, 202 or 204 answer acknowledges
  the message; any other status is a failure that Pub/Sub redelivers with backoff until the message
  expires (7 days by default) or goes to a dead-letter topic.
- Push authentication ("Authentication for push subscriptions",
  https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions): ``Authorization: Bearer
  <JWT>``, an OpenID Connect token ``{"alg": "RS256", "kid", "typ": "JWT"}`` with claims ``aud`` (the
  subscription's audience), ``azp``, ``email`` / ``email_verified`` (the subscription's service
  account), ``sub``, ``iat``, ``exp``, ``iss`` (``https://accounts.google.com``), signed by Google's
  keys (``https://www.googleapis.com/oauth2/v3/certs``, a JWKS).
- The message data is a LogEntry (Cloud Logging "LogEntry",
  https://cloud.google.com/logging/docs/reference/v2/rest/v2/LogEntry): ``logName``
  (``projects/P/logs/cloudsql.googleapis.com%2Fpostgres.log``), ``resource`` (``{"type":
  "cloudsql_database", "labels": {"database_id": "P:INSTANCE", ...}}``), ``timestamp``,
  ``insertId``, and ``textPayload`` or ``jsonPayload``. Cloud SQL writes its server log as stderr
  lines whose ``log_line_prefix`` is ``%m [%p]: [%l-1] db=%d,user=%u `` (e.g. ``2026-08-04
  14:52:17.232 UTC [115855]: [1-1] db=[unknown],user=[unknown] LOG:  connection received: ...``, as
  in GoogleCloudPlatform/khi's Cloud SQL log fixtures); the default of
  ``[[coverage.pubsub.databases]] log_line_prefix``.

What we answer: 401 (``WWW-Authenticate: Bearer error="invalid_token"``) for a missing, malformed,
unsigned, HS256, expired, wrongly issued or wrongly addressed token or one signed by a key not in
the JWKS; 403 for a valid token of another service account (``service_account``) or an unverified
e-mail; 503 when the control store (or the JWKS, with no keys known yet) is unavailable; 408 / 413
for a body too slow / larger than any Pub/Sub message. Every answer above is redelivered. A message
that can never be processed (not a push body, not base64, not a LogEntry, another log, an instance no
``[[coverage.pubsub.databases]]`` maps, lines that belong to no record) is rejected with its reason
(counted, sampled) and acknowledged (204), or Pub/Sub would push it for a week. Everything else is
acknowledged (204, no body: what a message held is not told back) only after its events commit.

A stderr LogEntry is one line of an entry whose other lines (DETAIL, HINT, ...) Cloud SQL wrote as
other LogEntries, pushed in other requests, in any order, maybe twice: it is staged in the control
store before the 204 and its entry processed once complete (:mod:`canary.postgres.staging`; ordered by
``%l``, a redelivery a no-op). A jsonPayload (jsonlog) entry is a whole record and is decoded at once.
``insertId`` names the record where the prefix gives no line number.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hmac
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import structlog
from aiohttp import web
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from joserfc.jwt import JWTClaimsRegistry

from canary.config import Config, LogStagingConfig
from canary.firehose import BodyError, read_body
from canary.plugins import SourceType
from canary.postgres.http_ingest import UNAVAILABLE, Batch, unavailable
from canary.postgres.record import RecordHandler
from canary.postgres.staging import (
    CloudEndpoint,
    CloudEvent,
    LogTarget,
    Processors,
    Staging,
    commit_records,
    decode_events,
    stages,
)

log = structlog.get_logger("canary.sources.pubsub")

#: The Cloud SQL server log, as the LogEntry's log id (``logName`` after ``/logs/``, URL-decoded).
POSTGRES_LOG = "cloudsql.googleapis.com/postgres.log"
#: A JWKS larger than this is no key set.
MAX_JWKS = 1024 * 1024
JWKS_TIMEOUT = 10.0
#: A token longer than this is no Pub/Sub token (Google's are about 1 KB).
MAX_TOKEN = 16 * 1024


class KeysUnavailable(Exception):
    """No signing keys are known and none could be fetched now (answered 503: Pub/Sub redelivers)."""


class Jwks:
    """The push tokens' signing keys (RSA only), from ``jwks_url`` (cached for ``max_age``, fetched
    again when a token names an unknown key, at most once per ``min_interval`` so that tokens with
    made-up key ids cannot make us hammer the key server) or from ``jwks_file``."""

    def __init__(self, url: str, file: Path | None, *, max_age: float = 3600.0, min_interval: float = 30.0) -> None:
        self.url, self.file = url, file
        self.max_age, self.min_interval = max_age, min_interval
        self._keys: dict[str, RSAKey] = {}
        self._fetched = -math.inf
        self._tried = -math.inf
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def key(self, http: aiohttp.ClientSession, kid: str) -> RSAKey | None:
        """The key named ``kid``, or None; raises :class:`KeysUnavailable` when no keys are known."""
        now = time.monotonic()
        fresh = now - self._fetched < self.max_age
        if fresh and kid in self._keys:
            return self._keys[kid]
        if now - self._tried >= self.min_interval:  # stale, or an unknown key: fetch, but never more often than this
            async with self._lock:
                if time.monotonic() - self._tried >= self.min_interval:  # not fetched meanwhile by a request we waited on
                    await self._refresh(http)
        if not self._keys:
            raise KeysUnavailable("no signing keys could be loaded")
        return self._keys.get(kid)

    async def _refresh(self, http: aiohttp.ClientSession) -> None:
        self._tried = time.monotonic()
        self.fetches += 1
        try:
            raw = await (asyncio.to_thread(self.file.read_bytes) if self.file is not None else self._download(http))
            keys = parse_jwks(raw)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            log.warning("pubsub.jwks_failed", source=str(self.file or self.url), error=f"{type(exc).__name__}: {str(exc)[:200]}")
            return
        self._keys, self._fetched = keys, time.monotonic()

    async def _download(self, http: aiohttp.ClientSession) -> bytes:
        async with http.get(self.url, timeout=aiohttp.ClientTimeout(total=JWKS_TIMEOUT), allow_redirects=False) as resp:
            if resp.status != 200:
                raise ValueError(f"JWKS answered {resp.status}")
            raw = await resp.content.read(MAX_JWKS + 1)
            if len(raw) > MAX_JWKS:
                raise ValueError("JWKS too large")
            return raw


def parse_jwks(raw: bytes) -> dict[str, RSAKey]:
    """The RSA public keys of a JWKS by kid; ValueError when it holds none."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ValueError("JWKS nested too deeply") from None
    items = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ValueError("not a JWKS")
    keys: dict[str, RSAKey] = {}
    for item in items:
        if not isinstance(item, dict) or item.get("kty") != "RSA" or not isinstance(item.get("kid"), str):
            continue
        if item.get("alg") not in (None, "RS256") or item.get("use") not in (None, "sig"):
            continue
        public = {k: item[k] for k in ("kty", "kid", "n", "e", "alg", "use") if k in item}
        try:
            keys[item["kid"]] = RSAKey.import_key(public)
        except (JoseError, ValueError, TypeError):
            continue
    if not keys:
        raise ValueError("JWKS holds no RSA signing key")
    return keys


@dataclass(frozen=True, slots=True)
class TokenPolicy:
    """What a push token must say: issued by ``issuer`` for ``audience`` (and for ``email``, verified)."""

    issuer: str
    audience: str
    email: str = ""
    leeway: int = 60


class TokenRefused(Exception):
    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


async def verify_token(header: str, keys: Jwks, http: aiohttp.ClientSession, policy: TokenPolicy) -> dict[str, Any]:
    """The claims of the push request's bearer token, or :class:`TokenRefused` (401: no valid token
    for us; 403: a valid token of someone else). :class:`KeysUnavailable` when no key is known."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise TokenRefused(401, "no_token", "no bearer token")
    if len(token) > MAX_TOKEN or token.count(".") != 2:
        raise TokenRefused(401, "bad_token", "not a signed JWT")
    try:
        head = json.loads(base64.urlsafe_b64decode(token.split(".", 1)[0] + "=="))
    except (ValueError, binascii.Error, RecursionError):
        raise TokenRefused(401, "bad_token", "JWT header is not base64url JSON") from None
    if not isinstance(head, dict) or head.get("alg") != "RS256":  # never none, never HS256 keyed with a public key
        raise TokenRefused(401, "bad_token_alg", f"alg {str(head.get('alg') if isinstance(head, dict) else None)[:20]!r}")
    kid = head.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenRefused(401, "bad_token", "JWT names no key")
    key = await keys.key(http, kid[:200])
    if key is None:
        raise TokenRefused(401, "unknown_key", f"kid {kid[:60]!r} not in the JWKS")
    try:
        claims = dict(jwt.decode(token, key, algorithms=["RS256"]).claims)
        JWTClaimsRegistry(leeway=policy.leeway, iss={"essential": True, "value": policy.issuer},
                          exp={"essential": True}, iat={"essential": True}).validate(claims)
    except (JoseError, ValueError, TypeError, RecursionError) as exc:  # whatever claims a forger wrote
        raise TokenRefused(401, "bad_token", f"{type(exc).__name__}: {str(exc)[:160]}") from None
    aud = claims.get("aud")
    if not (aud == policy.audience or (isinstance(aud, list) and policy.audience in aud)):
        raise TokenRefused(401, "wrong_audience", f"aud {str(aud)[:100]!r}")
    if policy.email:
        email = claims.get("email")
        if not isinstance(email, str) or not hmac.compare_digest(email.encode("utf-8", "surrogatepass"), policy.email.encode()):
            raise TokenRefused(403, "wrong_service_account", f"email {str(email)[:100]!r}")
        if claims.get("email_verified") is not True:
            raise TokenRefused(403, "email_unverified", "email_verified is not true")
    return claims


class PubSubPush(CloudEndpoint):
    """Component ``pubsub``: the push endpoint of Cloud SQL log subscriptions."""

    name = "pubsub"

    def __init__(self, policy: TokenPolicy, keys: Jwks, databases: Mapping[str, LogTarget], *, path: str = "/ingest/pubsub",
                 max_body: int = 16 * 1024 * 1024, handlers: Sequence[RecordHandler] | None = None,
                 staging: LogStagingConfig | None = None) -> None:
        if not policy.audience:
            raise ValueError("the Pub/Sub endpoint needs the push subscription's audience")
        self.policy = policy
        self.keys = keys
        self.databases = dict(databases)
        self.path = path
        self.max_body = max_body
        self.processors = Processors("pubsub", handlers)
        self.staging = Staging(self.name, staging or LogStagingConfig(), self.processors, self.databases.get, ordered=False)

    def __repr__(self) -> str:
        return f"PubSubPush(path={self.path!r}, databases={sorted(self.databases)!r})"

    @classmethod
    def from_config(cls, config: Config) -> PubSubPush:
        ps = config.coverage.pubsub
        databases = {d.database_id: LogTarget.of(config, d, f"coverage.pubsub.databases[{i}]") for i, d in enumerate(ps.databases)}
        return cls(TokenPolicy(ps.issuer, ps.audience, ps.service_account, ps.leeway),
                   Jwks(ps.jwks_url, ps.jwks_file, max_age=ps.jwks_max_age, min_interval=ps.jwks_min_interval),
                   databases, path=ps.path, max_body=ps.max_body, staging=config.coverage.log_staging)

    def _answer(self, status: int, error: str = "", headers: Mapping[str, str] | None = None) -> web.Response:
        self.runtime.metrics.requests.labels(component=self.name, code=str(status)).inc()
        if status == 204:
            return web.Response(status=204)
        return web.json_response({"error": error}, status=status, headers=headers)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            await verify_token(request.headers.get("Authorization", ""), self.keys, self.runtime.http, self.policy)
        except TokenRefused as exc:
            await self.runtime.reject(self.name, exc.reason, f"{self._proxies.client(request)} | {exc.detail}")
            headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if exc.status == 401 else None
            return self._answer(exc.status, "invalid push token" if exc.status == 401 else "token of another service account", headers)
        except KeysUnavailable:
            return self._answer(503, "signing keys unavailable; retry", {"Retry-After": "30"})
        try:
            raw = await read_body(request, self.max_body, self.runtime.config.listener.body_timeout)
        except BodyError as exc:
            await self.runtime.reject(self.name, exc.reason, exc.detail)
            return self._answer(exc.status if exc.status != 400 else 204, exc.detail)  # an undecodable body never decodes: acknowledged
        batch = Batch()
        try:
            await self._process(raw, batch)
        except UNAVAILABLE as exc:
            if not unavailable(exc):
                raise
            log.error("pubsub.store_failed", error=type(exc).__name__)
            return self._answer(503, "control store unavailable; retry", {"Retry-After": "5"})
        return self._answer(204)

    async def _process(self, raw: bytes, batch: Batch) -> None:
        entry, why = _log_entry(raw)
        if entry is None:
            await self.runtime.reject(self.name, why[0], why[1])
            batch.quarantined += 1
            return
        log_name = entry.get("logName")
        log_id = unquote(log_name.rpartition("/logs/")[2]) if isinstance(log_name, str) else ""
        if log_id != POSTGRES_LOG:
            await self.runtime.reject(self.name, "unexpected_log", str(log_name)[:200])
            batch.quarantined += 1
            return
        resource = entry.get("resource")
        labels = resource.get("labels") if isinstance(resource, dict) else None
        database_id = labels.get("database_id") if isinstance(labels, dict) else None
        target = self.databases.get(database_id) if isinstance(database_id, str) else None
        if target is None:
            await self.runtime.reject(self.name, "unknown_database", str(database_id)[:200])
            batch.quarantined += 1
            return
        insert_id = entry.get("insertId")
        timestamp = entry.get("timestamp")
        when = timestamp if isinstance(timestamp, str) and len(timestamp) <= 64 else None
        ident = insert_id[:200] if isinstance(insert_id, str) else ""
        text, json_payload = entry.get("textPayload"), entry.get("jsonPayload")
        if isinstance(text, str) and stages(target):  # a line of an entry whose other lines come in other pushes
            batch.lines += 1
            await self.staging.receive(str(database_id), target, [CloudEvent(ident, text, when, _order(when, ident))], batch)
            return
        if isinstance(text, str):
            decoded = decode_events(target, [CloudEvent(ident, text, when)])
        elif isinstance(json_payload, dict):  # a structured payload is a jsonlog record, whatever the text format
            line = json.dumps(json_payload, default=str)
            decoded = decode_events(LogTarget(target.datastore, target.node, "jsonlog", None), [CloudEvent(ident, line, when)])
        else:
            await self.runtime.reject(self.name, "no_payload", f"{str(database_id)[:100]} | LogEntry without textPayload or jsonPayload")
            batch.quarantined += 1
            return
        await commit_records(self.runtime, self.processors.get(self.runtime, target), self.processors.source(target), decoded, batch)


def _order(timestamp: str | None, insert_id: str) -> str:
    """A text that sorts LogEntries as written: the RFC 3339 time (fractions of any length) at a fixed
    microsecond width, then the insertId."""
    at = ""
    if timestamp:
        try:
            parsed = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
            at = parsed.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
        except (ValueError, OverflowError):
            at = ""
    return f"{at}|{insert_id}"


def _log_entry(raw: bytes) -> tuple[dict[str, Any] | None, tuple[str, str]]:
    """The LogEntry a push body carries, or (None, (reason, detail))."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return None, ("bad_push", f"body is not JSON ({type(exc).__name__}) | {raw[:200]!r}")
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, dict):
        return None, ("bad_push", f"no message object | {raw[:200]!r}")
    data = message.get("data")
    message_id = str(message.get("messageId") or message.get("message_id") or "")[:100]
    if not isinstance(data, str):
        return None, ("bad_push", f"message {message_id!r} has no data")
    try:
        payload = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:  # ValueError: a non-ASCII string
        return None, ("bad_base64", f"message {message_id!r}: {exc}")
    try:
        entry = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        return None, ("bad_entry", f"message {message_id!r}: not JSON ({type(exc).__name__}) | {payload[:200]!r}")
    if not isinstance(entry, dict):
        return None, ("bad_entry", f"message {message_id!r}: not a LogEntry")
    return entry, ("", "")


SOURCE = SourceType("pubsub", lambda config: [PubSubPush.from_config(config)] if config.coverage.pubsub.audience else [])
