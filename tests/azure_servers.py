"""Local Microsoft Entra ID token endpoint and Azure Monitor Logs Ingestion endpoint, for the Sentinel sink's
tests, speaking the wire formats Microsoft documents (see canary/sinks/sentinel.py for the pages).

``EntraServer``: ``POST /{tenant}/oauth2/v2.0/token`` (client credentials: form fields, grant type, client
id and secret, scope, tenant path), answering ``{"token_type", "expires_in", "access_token"}`` or the
documented error body ``{"error", "error_description", "error_codes", ...}``; tokens live ``lifetime``
seconds while ``expires_in`` advertises ``advertised`` (to model a token revoked before its time).

``IngestionServer``: ``POST /dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01`` with a
bearer token from the Entra server; the body (gzip when ``Content-Encoding: gzip``) must be a JSON array of
objects whose keys and value types fit the stream's declared columns; past ``max_bytes`` (raw or inflated)
it answers 413; ``faults`` queues scripted answers (``(429, {"Retry-After": "7"})``); 204 on success with
the records kept per stream. Errors are ``{"error": {"code", "message"}}`` plus ``x-ms-error-code``, the
documented shape; Azure does not document the codes of every case, so codes other than 403's
``OperationFailed`` are this server's.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import secrets
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

API_VERSION = "2023-01-01"


@dataclass
class Request:
    at: float
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


class _Server:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.routes(app)
        # the raw body, as sent: the ingestion endpoint inflates gzip itself, within its size limit
        self._runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _record(self, request: web.Request) -> bytes:
        body = await request.read()
        self.requests.append(Request(time.monotonic(), request.path, dict(request.query), dict(request.headers), body))
        return body


class EntraServer(_Server):
    """The v2.0 token endpoint of one tenant and one app registration."""

    def __init__(self, tenant: str, client_id: str, client_secret: str,
                 scope: str = "https://monitor.azure.com//.default", lifetime: float = 3599, advertised: int | None = None) -> None:
        super().__init__()
        self.tenant, self.client_id, self.client_secret, self.scope = tenant, client_id, client_secret, scope
        self.lifetime = lifetime
        self.advertised = advertised
        self.tokens: dict[str, float] = {}  # token -> monotonic expiry
        self.faults: list[tuple[int, dict[str, str]]] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self.token)

    def valid(self, token: str) -> bool:
        return self.tokens.get(token, 0.0) > time.monotonic()

    def revoke_all(self) -> None:
        self.tokens.clear()

    @property
    def issued(self) -> int:
        return sum(1 for r in self.requests if r.path.endswith("/oauth2/v2.0/token"))

    @staticmethod
    def _error(status: int, error: str, code: int, text: str) -> web.Response:
        trace, correlation = uuid.uuid4(), uuid.uuid4()
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        return web.json_response({
            "error": error,
            "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\n"
                                 f"Timestamp: {stamp}",
            "error_codes": [code], "timestamp": stamp, "trace_id": str(trace), "correlation_id": str(correlation),
        }, status=status)

    async def token(self, request: web.Request) -> web.Response:
        await self._record(request)
        if self.faults:
            status, headers = self.faults.pop(0)
            return web.json_response({"error": "temporarily_unavailable", "error_codes": [50196]}, status=status,
                                     headers=headers)
        if request.content_type != "application/x-www-form-urlencoded":
            return self._error(400, "invalid_request", 900144, "The request body must contain the following "
                               "parameter: 'grant_type'.")
        form = {k: str(v) for k, v in (await request.post()).items()}
        if request.match_info["tenant"] != self.tenant:
            return self._error(400, "invalid_request", 90002, f"Tenant '{request.match_info['tenant']}' not found.")
        for name in ("grant_type", "client_id", "scope"):
            if not form.get(name):
                return self._error(400, "invalid_request", 900144,
                                   f"The request body must contain the following parameter: '{name}'.")
        if form["grant_type"] != "client_credentials":
            return self._error(400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type.")
        if form["client_id"] != self.client_id:
            return self._error(400, "unauthorized_client", 700016,
                               f"Application with identifier '{form['client_id']}' was not found in the directory.")
        if form.get("client_secret") != self.client_secret:
            return self._error(401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret "
                               "being sent in the request is the client secret value, not the client secret ID, for a "
                               f"secret added to app '{self.client_id}'.")
        if form["scope"] != self.scope:
            return self._error(400, "invalid_scope", 70011, "The provided value for the input parameter 'scope' is "
                               f"not valid. The scope {form['scope']} is not valid.")
        token = "eyJ0eXAiOiJKV1Qi." + secrets.token_urlsafe(48)
        self.tokens[token] = time.monotonic() + self.lifetime
        expires_in = self.advertised if self.advertised is not None else int(self.lifetime)
        return web.json_response({"token_type": "Bearer", "expires_in": expires_in, "access_token": token})


@dataclass
class Stream:
    columns: dict[str, str]  # name -> DCR column type
    records: list[dict[str, Any]] = field(default_factory=list)


class IngestionServer(_Server):
    """A DCR's logs ingestion endpoint: one DCR, its declared streams (``{stream: {column: type}}``)."""

    def __init__(self, entra: EntraServer, dcr_id: str, streams: dict[str, dict[str, str]],
                 max_bytes: int = 1024 * 1024) -> None:
        super().__init__()
        self.entra = entra
        self.dcr_id = dcr_id
        self.streams = {name: Stream(dict(cols)) for name, cols in streams.items()}
        self.max_bytes = max_bytes
        self.faults: list[tuple[int, dict[str, str]]] = []
        self.fault_at: dict[int, tuple[int, dict[str, str]]] = {}  # the n-th upload (from 1) gets this answer
        self.forbidden = False  # the app has no Monitoring Metrics Publisher role on the DCR
        self.statuses: list[int] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/dataCollectionRules/{dcr}/streams/{stream}", self.upload)

    def records(self, stream: str) -> list[dict[str, Any]]:
        return self.streams[stream].records

    def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
        self.statuses.append(status)
        return web.json_response({"error": {"code": code, "message": message}}, status=status,
                                 headers={"x-ms-error-code": code, **(headers or {})})

    async def upload(self, request: web.Request) -> web.Response:
        raw = await self._record(request)
        scripted = self.fault_at.pop(len(self.requests), None) or (self.faults.pop(0) if self.faults else None)
        if scripted is not None:
            status, headers = scripted
            return self._error(status, "TooManyRequests" if status == 429 else "ServiceError", f"scripted {status}",
                               headers)
        if request.query.get("api-version") != API_VERSION:
            return self._error(400, "UnsupportedApiVersion", "The api-version query parameter is missing or not supported.")
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not self.entra.valid(auth.removeprefix("Bearer ")):
            return self._error(401, "InvalidToken", "The authentication token is missing, invalid or expired.")
        dcr, stream = request.match_info["dcr"], request.match_info["stream"]
        if dcr != self.dcr_id:
            return self._error(404, "NotFound", "Data collection rule with immutable Id was not found.")
        if self.forbidden:
            return self._error(403, "OperationFailed", "The authentication token provided does not have access to "
                               f"ingest data for the data collection rule with immutable Id '{dcr}'.")
        if stream not in self.streams:
            return self._error(404, "InvalidStream", "The stream is not declared in the data collection rule.")
        if request.content_type != "application/json":
            return self._error(400, "InvalidContentType", "Content-Type must be application/json.")
        if len(raw) > self.max_bytes:
            return self._error(413, "ContentLengthLimitExceeded", "Maximum request size exceeded.")
        body = raw
        if request.headers.get("Content-Encoding") == "gzip":
            try:
                inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                body = inflater.decompress(raw, self.max_bytes + 1)
            except zlib.error:
                return self._error(400, "InvalidContentEncoding", "The body is not valid gzip.")
            if len(body) > self.max_bytes:
                return self._error(413, "ContentLengthLimitExceeded", "Maximum request size exceeded.")
        try:
            rows = json.loads(body)
        except ValueError:
            return self._error(400, "InvalidPayload", "The body is not valid JSON.")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            return self._error(400, "InvalidPayload", "The body must be a JSON array of objects.")
        columns = self.streams[stream].columns
        for row in rows:
            problem = _mismatch(row, columns)
            if problem:
                return self._error(400, "InvalidPayload", f"A record does not match the stream declaration: {problem}")
        self.streams[stream].records.extend(rows)
        self.statuses.append(204)
        return web.Response(status=204)


def _mismatch(row: dict[str, Any], columns: dict[str, str]) -> str | None:
    """Why ``row`` does not fit the declared columns (undeclared key, wrong type), or None."""
    if "TimeGenerated" not in row:
        return "TimeGenerated is missing"
    for key, value in row.items():
        kind = columns.get(key)
        if kind is None:
            return f"column {key} is not declared"
        if value is None or kind == "dynamic":
            continue
        if kind == "string" and not isinstance(value, str):
            return f"{key} is not a string"
        if kind in ("int", "long") and (not isinstance(value, int) or isinstance(value, bool)):
            return f"{key} is not an integer"
        if kind == "datetime":
            try:
                dt.datetime.fromisoformat(str(value))
            except ValueError:
                return f"{key} is not an ISO 8601 time"
    return None


def inflate(body: bytes) -> bytes:
    return gzip.decompress(body)
