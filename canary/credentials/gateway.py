"""The gateway check: canary tokens presented to the company's own APIs, seen by the API gateway.

API gateways can ask an external service about every request before they forward it: NGINX with
``auth_request`` (a subrequest; 2xx allows, 401 / 403 deny, anything else is an error), Envoy with the
``ext_authz`` filter's HTTP service (200 allows; ``failure_mode_allow`` lets traffic through when the
service fails or answers 5xx). Canary is such a service that never says no: every request is answered
200 at once, from memory, and a canary token found in it (Authorization Bearer / token / bare, Basic
user and password, configured API-key headers, cookies and query parameters) is committed afterwards
as a USED event with the gateway's facts: client address, route, method, host, user agent.

Hot path, the same for hits and misses: the candidate values are bounded (``max_candidates``, each at
most ``max_value_length``), every one is HMACed for every presented kind (``Keyring.blind_indexer``)
and looked up in a dict of blind indexes (:func:`canary.store.registry.value_indexes`, and
:func:`~canary.store.registry.retired_value_indexes` for retired canaries, whose tokens are still a
signal), re-read at once when the registry changes (NOTIFY ``canary_values`` on commit, migration 0130:
a token seeded a second ago is recognised) and every ``refresh_interval`` besides. No await happens before the answer: a hit is put on a
bounded queue (``max_pending``; when full the hit is dropped, counted as a reject ``queue_full`` and
reported as one HEALTH event) that a worker commits with retries, so a control-store outage delays
an alert but neither slows nor blocks traffic. One request is one event per canary (key: the gateway's
request id, NGINX ``$request_id`` / Envoy ``x-request-id``, else a random one); events are grouped per
client (IPv4 address / IPv6 /64), so a burst is one incident. Active and retired canaries are both
critical (evidence ``canary_status`` says which).

Only gateways are believed: a request from a peer outside ``gateways`` gets the same 200 and is
counted (reject ``untrusted_peer``), never looked up, so nobody else can flood fake use events. The
client is read from the gateway's X-Forwarded-For (right to left through ``gateways``,
:func:`canary.proxies.resolve_hops`) or X-Real-IP. The route is NGINX's ``X-Original-URI`` /
``X-Original-Method`` when present, else the request's own path after ``path`` (Envoy puts its
``path_prefix`` before the original path and query: "/check" and "/admin" become "/check/admin", and
sends the original method; Host, Method, Path, Content-Length and Authorization always, other headers
as ``allowed_headers`` lists them: Envoy's ext_authz v3 HttpService / AuthorizationRequest reference,
https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/http/ext_authz/v3/ext_authz.proto).

Failing open has a cost: while canary is down, traffic passes unchecked. The check therefore marks
itself alive in the control store every ``mark_interval`` (a checkpoint ``gateway-check:<node>``,
``stopped`` on a clean stop); at start, a mark older than ``gap_after`` becomes one HEALTH event
naming the gap (from the last mark to now). The NGINX configuration in the README also logs every
request that went through its fallback.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import datetime as dt
import functools
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

import asyncpg
import structlog
from aiohttp import web
from multidict import CIMultiDictProxy
from prometheus_client import Histogram

from canary.config import Config, GatewayConfig
from canary.credentials.recognise import PRESENTED_KINDS, fingerprint
from canary.events import DetectionEvent, EventKind, Severity, event_key
from canary.plugins import SourceType
from canary.pressure import submit_failures
from canary.proxies import networks, parse_address, peer_key, resolve_hops, within
from canary.store import checkpoints
from canary.store.registry import VALUES_CHANNEL, retired_value_indexes, value_indexes, value_purpose
from canary.typing import SourceContext

log = structlog.get_logger("canary.sources.gateway")

EVENT_SOURCE = "gateway"
_MAX_FIELD = 512  # characters of a route, host, user agent or header kept as evidence
_MAX_EVIDENCE_HEADERS = 32
_MAX_PAIRS = 64  # query parameters / cookies read per request
_BATCH = 100  # events committed per round trip
#: recent check durations kept in memory (seconds, handler entry to answer), for the bench
_TIMINGS = 16_384
_RELOAD_GAP = 0.25  # seconds at least between two reloads (a burst of registry notifications is one reload)


# -- candidates: where a credential is presented ----------------------------------------------------
def authorization_values(values: Sequence[str], schemes: Sequence[str]) -> list[tuple[str, str]]:
    """(where, value) of the credentials in Authorization header values: ``Bearer`` / ``token`` or a
    value without a scheme (with "bearer"), Basic user and password (with "basic"), the access key id of
    an AWS SigV4 / SigV2 signature (with "aws": a canary AWS key used against the company's own
    S3-compatible or AWS-fronting API)."""
    found: list[tuple[str, str]] = []
    for auth in values[:2]:
        scheme, _, rest = auth.strip().partition(" ")
        s, rest = scheme.lower(), rest.strip()
        if s in ("bearer", "token") and rest:
            if "bearer" in schemes:
                found.append((f"authorization:{s}", rest))
        elif s == "basic" and rest:
            if "basic" in schemes:
                try:
                    user, _, password = base64.b64decode(rest, validate=True).decode("utf-8", "replace").partition(":")
                except (binascii.Error, ValueError):
                    continue
                if user:
                    found.append(("authorization:basic-user", user))
                if password:
                    found.append(("authorization:basic-password", password))
        elif s == "aws4-hmac-sha256" and rest:  # AWS Signature Version 4: Credential=<key id>/<date>/<region>/...
            if "aws" in schemes and (key_id := _sigv4_key_id(rest)):
                found.append(("authorization:aws-sigv4", key_id))
        elif s == "aws" and rest:  # Signature Version 2: AWS <key id>:<signature>
            if "aws" in schemes and (key_id := rest.partition(":")[0].strip()):
                found.append(("authorization:aws-sigv2", key_id))
        elif scheme and not rest and "bearer" in schemes:
            found.append(("authorization:raw", scheme))
    return found


def _sigv4_key_id(params: str) -> str | None:
    """The access key id of a SigV4 Authorization header's (or a presigned URL's) Credential."""
    for part in params.split(",", 8)[:8]:
        name, _, value = part.strip().partition("=")
        if name == "Credential" and value:
            return value.partition("/")[0] or None
    return None


#: query parameters of AWS presigned URLs that carry a credential (never kept in evidence)
AWS_QUERY_CREDENTIALS = frozenset({"X-Amz-Credential", "X-Amz-Signature", "X-Amz-Security-Token", "AWSAccessKeyId",
                                   "Signature"})


def presigned_values(query: str) -> list[tuple[str, str]]:
    """(where, value) of an AWS presigned URL's access key id (``X-Amz-Credential``, SigV4; ``AWSAccessKeyId``,
    SigV2), whatever the gateway is configured to read from the query."""
    found: list[tuple[str, str]] = []
    if "X-Amz-Credential=" not in query and "AWSAccessKeyId=" not in query:
        return found
    for pair in query.split("&", _MAX_PAIRS)[:_MAX_PAIRS]:
        raw_name, _, raw_value = pair.partition("=")
        name = unquote_plus(raw_name)
        if name == "X-Amz-Credential" and raw_value:
            key_id = unquote_plus(raw_value).partition("/")[0]
            if key_id:
                found.append(("query:x-amz-credential", key_id))
        elif name == "AWSAccessKeyId" and raw_value:
            found.append(("query:awsaccesskeyid", unquote_plus(raw_value)))
    return found


def query_values(query: str, names: frozenset[str]) -> list[tuple[str, str]]:
    """(where, value) of the configured parameters in a query string (at most the first 64 pairs)."""
    found: list[tuple[str, str]] = []
    if not query or not names:
        return found
    for pair in query.split("&", _MAX_PAIRS)[:_MAX_PAIRS]:
        raw_name, _, raw_value = pair.partition("=")
        name = unquote_plus(raw_name)
        if name in names and raw_value:
            found.append((f"query:{name}", unquote_plus(raw_value)))
    return found


def cookie_values(values: Sequence[str], names: frozenset[str]) -> list[tuple[str, str]]:
    """(where, value) of the configured cookies in Cookie header values (at most 64 pairs)."""
    found: list[tuple[str, str]] = []
    if not names:
        return found
    n = 0
    for header in values[:4]:
        for pair in header.split(";", _MAX_PAIRS):
            n += 1
            if n > _MAX_PAIRS:
                return found
            name, eq, value = pair.partition("=")
            name, value = name.strip(), value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if eq and value and name in names:
                found.append((f"cookie:{name}", value))
    return found


def redact_query(route: str, names: frozenset[str]) -> str:
    """``route`` with the values of the credential parameters replaced by ``-`` (evidence never holds a
    presented credential, canary or not)."""
    path, q, query = route.partition("?")
    if not q or not names:
        return route
    pairs = []
    for pair in query.split("&"):
        raw_name, eq, _ = pair.partition("=")
        pairs.append(f"{raw_name}=-" if eq and unquote_plus(raw_name) in names else pair)
    return f"{path}?{'&'.join(pairs)}"


@dataclass(frozen=True, slots=True)
class Facts:
    """What the gateway said about one request, as it arrived (described by the worker, after the answer)."""

    observed: dt.datetime
    peer: str
    method: str
    route: str
    headers: CIMultiDictProxy[str]


@dataclass(frozen=True, slots=True)
class Hit:
    """A canary value seen in one request (the value stays in memory only until its fingerprint is made)."""

    canary_id: int
    kind: str
    status: str  # active | retired
    where: str
    value: str
    facts: Facts


_TIMING: weakref.WeakKeyDictionary[Any, Histogram] = weakref.WeakKeyDictionary()


def check_seconds(metrics: Any) -> Histogram:
    """``canary_gateway_check_seconds``: the check's own time per request (handler entry to answer)."""
    hist = _TIMING.get(metrics)
    if hist is None:
        hist = Histogram("canary_gateway_check_seconds", "Gateway check time per request, from the request read to the answer",
                         buckets=(25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 5e-3, 25e-3), registry=metrics.registry)
        _TIMING[metrics] = hist
    return hist


class GatewayCheck:
    """The check as a listener Component (own aiohttp server; no routes on the listener)."""

    def __init__(self, options: GatewayConfig, node: str = "") -> None:
        self.options = options
        self.node = node or "node"
        self.name = f"gateway:{options.port}"
        self.port = int(options.port)
        self.path = options.path
        self.mark_source = f"gateway-check:{self.node}"
        self._gateways = networks(options.gateways)
        self._headers = tuple(options.headers)
        self._queries = frozenset(options.query_params)
        self._cookies = frozenset(options.cookies)
        self._secret_headers = frozenset(
            h.lower() for h in ("Authorization", "Cookie", "Proxy-Authorization", "X-Original-URI", *options.headers))
        self._map: dict[bytes, tuple[int, str, str]] = {}
        self._changed = asyncio.Event()  # the registry notified a change: reload
        self._listen_conn: asyncpg.Connection | None = None
        self._indexers: list[tuple[str, Callable[[str], bytes]]] = []
        self._queue: asyncio.Queue[Hit | DetectionEvent] = asyncio.Queue(options.max_pending)
        self.dropped = 0
        self._dropped_reported = 0
        self.loaded_at: float | None = None
        self.timings: collections.deque[float] = collections.deque(maxlen=_TIMINGS)
        self.runtime: SourceContext
        self._runner: web.ServerRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reject_task: asyncio.Task[None] | None = None
        self._since = dt.datetime.now(dt.timezone.utc)
        self._seen: set[int] = set()
        self._trusted = functools.lru_cache(maxsize=1024)(self._is_gateway)
        self._ok: Any = None  # the requests counter's 200 child, bound at start
        self._timing: Histogram

    def routes(self) -> list[web.RouteDef]:
        return []

    # -- lifecycle --------------------------------------------------------------------------------------
    async def start(self, runtime: SourceContext) -> None:
        self.runtime = runtime
        self._since = dt.datetime.now(dt.timezone.utc)
        self._indexers = [(str(kind), runtime.keyring.blind_indexer(value_purpose(str(kind)))) for kind in PRESENTED_KINDS]
        self._ok = runtime.metrics.requests.labels(component=EVENT_SOURCE, code="200")
        self._timing = check_seconds(runtime.metrics)
        await self._listen()  # before the load: a change committed between the two is not missed
        await self.load()
        gap = await self._gap()
        server = web.Server(self._handle, access_log=None, max_line_size=16384, max_field_size=16384, max_headers=128,
                            keepalive_timeout=75.0)
        self._runner = web.ServerRunner(server, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.options.host, self.port, reuse_address=True)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work()), loop.create_task(self._refresh()), loop.create_task(self._mark())]
        if gap is not None:
            self._queue.put_nowait(gap)
        log.info("gateway.listening", host=self.options.host, port=self.port, canaries=len(self._map))

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()  # no new checks; the gateway fails open from here
            self._runner = None
        for task in self._tasks[1:]:  # refresh and mark loops
            task.cancel()
        await asyncio.gather(*self._tasks[1:], return_exceptions=True)
        await self._unlisten()
        try:
            await asyncio.wait_for(self._queue.join(), timeout=5.0)
        except asyncio.TimeoutError:
            log.error("gateway.events_not_committed", count=self._queue.qsize())
        if self._tasks:
            self._tasks[0].cancel()
            await asyncio.gather(self._tasks[0], return_exceptions=True)
        self._tasks = []
        try:
            await checkpoints.save(self.runtime.pool, self.mark_source, {
                "at": dt.datetime.now(dt.timezone.utc).isoformat(), "state": "stopped", "since": self._since.isoformat()})
        except Exception as exc:  # noqa: BLE001 - the store may be down: the last running mark then bounds the gap
            log.warning("gateway.mark_failed", error=f"{type(exc).__name__}: {exc}"[:300])

    async def load(self) -> None:
        """Read the blind indexes of active and retired canaries' presented credentials (one swap)."""
        kinds = [str(k) for k in PRESENTED_KINDS]
        pool = self.runtime.pool
        retired = await retired_value_indexes(pool, kinds)
        active = await value_indexes(pool, kinds)
        found = {idx: (cid, kind, "retired") for idx, (cid, kind) in retired.items()}
        found.update({idx: (cid, kind, "active") for idx, (cid, kind) in active.items()})
        self._map = found
        self.loaded_at = time.monotonic()

    async def _refresh(self) -> None:
        """Reload when the registry notifies a change, and every ``refresh_interval`` (a lost notification,
        a listening connection that broke). Notifications arriving during a load cause one more load; a burst
        of them (a seed run registering thousands) costs at most one load per ``_RELOAD_GAP``."""
        while True:
            try:
                await asyncio.wait_for(self._changed.wait(), self.options.refresh_interval)
            except TimeoutError:
                pass
            self._changed.clear()
            try:
                if not self._listening():
                    await self._unlisten()
                    await self._listen()
                await self.load()
            except Exception as exc:  # noqa: BLE001 - the store may be down: keep checking against what we have
                log.warning("gateway.refresh_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            await asyncio.sleep(_RELOAD_GAP)

    async def _listen(self) -> None:
        """Listen for registry changes on a connection of its own (without one, the interval still reloads)."""
        try:
            conn = await self.runtime.pool.acquire()
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning("gateway.listen_failed", error=type(exc).__name__)
            return
        try:
            await conn.add_listener(VALUES_CHANNEL, self._notified)
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
            log.warning("gateway.listen_failed", error=type(exc).__name__)
            await self.runtime.pool.release(conn)
            return
        conn.add_termination_listener(self._notified)  # a lost connection: reload, which listens again
        self._listen_conn = conn

    def _notified(self, *_: object) -> None:
        self._changed.set()

    def _listening(self) -> bool:
        conn = self._listen_conn
        try:
            return conn is not None and not conn.is_closed()
        except asyncpg.InterfaceError:  # the pool took back a connection the server ended
            return False

    async def _unlisten(self) -> None:
        conn, self._listen_conn = self._listen_conn, None
        if conn is None:
            return
        try:
            conn.remove_termination_listener(self._notified)
            await conn.remove_listener(VALUES_CHANNEL, self._notified)
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
            pass
        try:
            await self.runtime.pool.release(conn)
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
            pass

    async def _mark(self) -> None:
        while True:
            try:
                await checkpoints.save(self.runtime.pool, self.mark_source, {
                    "at": dt.datetime.now(dt.timezone.utc).isoformat(), "state": "running", "since": self._since.isoformat()})
            except Exception as exc:  # noqa: BLE001 - the store may be down: the check goes on, the next mark retries
                log.warning("gateway.mark_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            await asyncio.sleep(self.options.mark_interval)

    async def _gap(self) -> DetectionEvent | None:
        """The HEALTH event for the time no check ran, from the last mark a previous run left."""
        mark = await checkpoints.load(self.runtime.pool, self.mark_source)
        if not mark or not isinstance(mark.get("at"), str):
            return None
        try:
            last = dt.datetime.fromisoformat(mark["at"])
        except ValueError:
            return None
        now = self._since
        seconds = (now - last).total_seconds()
        if seconds <= self.options.gap_after:
            return None
        crashed = mark.get("state") != "stopped"
        log.warning("gateway.gap", since=last.isoformat(), until=now.isoformat(), seconds=round(seconds, 1))
        return DetectionEvent(
            kind=EventKind.HEALTH, source=EVENT_SOURCE, key=event_key("gateway-gap", self.node, last.isoformat()),
            group=f"gateway-gap:{self.node}", canary_id=None, observed_at=now, severity=Severity.ERROR,
            origin={"node": self.node},
            evidence={"signal": "gateway_gap",
                      "problem": f"gateway check was down from {last.isoformat(timespec='seconds')} to "
                                 f"{now.isoformat(timespec='seconds')}: requests passed the gateways unchecked",
                      "from": last.isoformat(), "to": now.isoformat(), "seconds": round(seconds, 3),
                      # after a crash the last mark is up to mark_interval older than the crash itself
                      "ended_by": "crash or kill (gap starts at most mark_interval after 'from')" if crashed else "clean stop"},
        )

    # -- the hot path: no await before the answer -------------------------------------------------------
    async def _handle(self, request: web.BaseRequest) -> web.Response:
        started = time.perf_counter()
        if not request.path.startswith(self.path):
            return web.Response(status=404)
        peer = request.remote or ""
        if self._trusted(peer):
            self._check(request, peer)
        else:
            self._count("untrusted_peer", f"peer={peer[:64]}")
        self._ok.inc()
        took = time.perf_counter() - started
        self.timings.append(took)
        self._timing.observe(took)
        return web.Response(status=200)

    def _is_gateway(self, peer: str) -> bool:
        return within(parse_address(peer), self._gateways)

    def _route(self, request: web.BaseRequest) -> tuple[str, str]:
        """(method, route with query) of the request the gateway is asking about."""
        original = request.headers.get("X-Original-URI")
        if original is not None:
            return request.headers.get("X-Original-Method", request.method), original
        rest = request.raw_path[len(self.path):]
        return request.method, rest if rest.startswith("/") else "/" + rest

    def _candidates(self, request: web.BaseRequest, route: str) -> list[tuple[str, str]]:
        """(where, value) presented in the request: each value once, bounded in count and length."""
        headers = request.headers
        found = authorization_values(headers.getall("Authorization", []), self.options.authorization)
        for name in self._headers:
            value = headers.get(name, "").strip()
            if value:
                found.append((f"header:{name.lower()}", value))
        found += cookie_values(headers.getall("Cookie", []), self._cookies)
        found += query_values(route.partition("?")[2], self._queries)
        if "aws" in self.options.authorization:
            found += presigned_values(route.partition("?")[2])
        out: list[tuple[str, str]] = []
        seen: set[str] = set()
        limit = self.options.max_value_length
        for where, value in found:
            if value in seen or len(value) > limit:
                continue
            seen.add(value)
            out.append((where, value))
            if len(out) >= self.options.max_candidates:
                break
        return out

    def _check(self, request: web.BaseRequest, peer: str) -> None:
        method, route = self._route(request)
        candidates = self._candidates(request, route)
        known = self._map
        hits: list[tuple[tuple[int, str, str], str, str]] = []
        for where, value in candidates:  # every candidate, every kind: the same work for canaries and others
            for _, index in self._indexers:
                match = known.get(index(value))
                if match is not None:
                    hits.append((match, where, value))
        if hits:
            self._enqueue(request, peer, method, route, hits)

    def _enqueue(self, request: web.BaseRequest, peer: str, method: str, route: str,
                 hits: list[tuple[tuple[int, str, str], str, str]]) -> None:
        """Queue the hits with what the worker needs to describe them: the request's (immutable) headers
        are kept by reference and read after the answer, so a hit costs the hot path next to nothing."""
        seen = self._seen
        seen.clear()
        facts = Facts(dt.datetime.now(dt.timezone.utc), peer, method, route, request.headers)
        for (canary_id, kind, status), where, value in hits:
            if canary_id in seen:
                continue
            seen.add(canary_id)
            try:
                self._queue.put_nowait(Hit(canary_id, kind, status, where, value, facts))
            except asyncio.QueueFull:
                self.dropped += 1
                self.runtime.metrics.rejects.labels(source=EVENT_SOURCE, reason="queue_full").inc()

    def _count(self, reason: str, sample: str) -> None:
        """A reject, sampled through the runtime by at most one task at a time (a flood is only counted)."""
        if self._reject_task is None or self._reject_task.done():
            self._reject_task = asyncio.get_running_loop().create_task(self.runtime.reject(EVENT_SOURCE, reason, sample))
        else:
            self.runtime.metrics.rejects.labels(source=EVENT_SOURCE, reason=reason).inc()

    # -- committing, after the answer -------------------------------------------------------------------
    def _client(self, headers: CIMultiDictProxy[str], peer: str) -> str:
        if self.options.client_header == "x-real-ip":
            addr = parse_address(headers.get("X-Real-IP", ""))
        else:
            addr = resolve_hops(peer, headers.getall("X-Forwarded-For", []), self._gateways)
        return peer if addr is None else str(addr)

    def _event(self, hit: Hit) -> DetectionEvent:
        f = hit.facts
        headers = f.headers
        user = next((v for w, v in authorization_values(headers.getall("Authorization", []), ("basic",))
                     if w == "authorization:basic-user" and v != hit.value), None)  # never a canary as the user
        evidence_headers: dict[str, str] = {}
        for k, v in headers.items():
            if len(evidence_headers) >= _MAX_EVIDENCE_HEADERS:
                break
            if k.lower() not in self._secret_headers:
                evidence_headers[k[:64]] = v[:_MAX_FIELD]
        user_agent = headers.get("User-Agent", "")[:_MAX_FIELD]
        client = self._client(headers, f.peer)
        request_id = headers.get("X-Request-Id", "")[:128] or uuid.uuid4().hex
        return DetectionEvent(
            kind=EventKind.USED, source=EVENT_SOURCE, key=event_key("gateway", request_id, hit.canary_id),
            group=f"gateway:{peer_key(client)}", canary_id=hit.canary_id, observed_at=f.observed,
            severity=Severity.CRITICAL,
            actor={"user": user or user_agent or "unknown", "user_agent": user_agent},
            origin={"client_addr": client, "gateway": f.peer, "method": f.method[:32],
                    "path": redact_query(f.route, self._queries | AWS_QUERY_CREDENTIALS)[:_MAX_FIELD], "host": headers.get("Host", "")[:256],
                    "user_agent": user_agent},
            evidence={"signal": "used", "credential": hit.kind, "presented_in": hit.where, "canary_status": hit.status,
                      "credential_fingerprint": fingerprint(self.runtime.keyring, hit.value),
                      "request_id": request_id, "headers": evidence_headers},
        )

    def _dropped_event(self) -> DetectionEvent:
        n = self.dropped - self._dropped_reported
        self._dropped_reported = self.dropped
        now = dt.datetime.now(dt.timezone.utc)
        return DetectionEvent(
            kind=EventKind.HEALTH, source=EVENT_SOURCE,
            key=event_key("gateway-dropped", self.node, self._since.isoformat(), self.dropped),
            group=f"gateway-dropped:{self.node}", canary_id=None, observed_at=now, severity=Severity.ERROR,
            origin={"node": self.node},
            evidence={"signal": "gateway_queue_full", "dropped": n, "dropped_total": self.dropped,
                      "max_pending": self.options.max_pending,
                      "problem": f"the gateway check dropped {n} canary hit(s): more were waiting to be committed than max_pending"},
        )

    async def _work(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            events = [item if isinstance(item, DetectionEvent) else self._event(item) for item in batch]
            if self.dropped > self._dropped_reported:
                events.append(self._dropped_event())
            await self._commit(events)
            for _ in batch:
                self._queue.task_done()

    async def _commit(self, events: list[DetectionEvent]) -> None:
        delay = 0.2
        while True:
            try:
                await self.runtime.submit_many(events)
                return
            except asyncio.CancelledError:
                log.error("gateway.events_not_committed", count=len(events))
                raise
            except Exception as exc:  # noqa: BLE001 - the store may be down: keep the events, retry
                submit_failures(self.runtime.metrics).labels(source=EVENT_SOURCE).inc()
                log.warning("gateway.commit_retry", error=f"{type(exc).__name__}: {exc}"[:300], delay=delay)
                await asyncio.sleep(delay)
                delay = min(30.0, delay * 2)

    @property
    def pending(self) -> int:
        return self._queue.qsize()


def _components(config: Config) -> list[GatewayCheck]:
    gateway = config.credentials.gateway
    return [GatewayCheck(gateway, config.canary.node_name)] if gateway.enabled else []


SOURCE = SourceType("gateway", _components)
