"""HTTP ingest for log shippers (Vector ``http`` sink with NDJSON framing, Fluent Bit ``http`` output
with ``json_lines``, rsyslog ``omhttp``): ``POST /ingest/jsonlog?node=<node>`` with
``Authorization: Bearer <coverage.ingest_token>`` and a body of newline-delimited PostgreSQL jsonlog
records (``Content-Encoding: gzip`` accepted).

The node must be known (a datastore's node name or ``[[coverage.nodes]]``); its datastore and name go
into every event. The answer comes only after the events are committed: 200 with counts, so a
shipper retries on anything else (401 bad token, 400 unknown node, 413 too large, 503 store down).
Bad lines are rejected and counted individually; they do not fail the batch (a retry would not fix
them).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import structlog
from aiohttp import web

from canary.plugins import SourceType
from canary.postgres.lines import LineSplitter, LongLine
from canary.postgres.processor import PgLogProcessor
from canary.postgres.record import RecordContext, RecordHandler
from canary.secret import Secret
from canary.typing import SourceContext

log = structlog.get_logger("canary.sources.http_ingest")

PATH = "/ingest/jsonlog"
BATCH_LINES = 2000
READ_CHUNK = 256 * 1024


class HttpIngest:
    """Component ``http-ingest``: the authenticated NDJSON endpoint."""

    name = "http-ingest"

    def __init__(self, token: Secret, nodes: Mapping[str, str], *, max_body: int = 16 * 1024 * 1024,
                 handlers: Sequence[RecordHandler] | None = None) -> None:
        if not token:
            raise ValueError("the HTTP ingest endpoint needs a non-empty bearer token")
        self._token = token
        self.nodes = dict(nodes)
        self.max_body = max_body
        self.handlers = handlers
        self.runtime: SourceContext  # set by start()
        self._processors: dict[str, PgLogProcessor] = {}

    def __repr__(self) -> str:
        return f"HttpIngest(nodes={sorted(self.nodes)!r})"

    @classmethod
    def from_config(cls, config: Any) -> HttpIngest:
        cov = config.coverage
        nodes = {ds.node_name: ds.name for ds in config.datastores}
        nodes.update({n.name: n.datastore for n in cov.nodes})
        return cls(cov.ingest_token, nodes, max_body=cov.ingest_max_body)

    def routes(self) -> list[web.RouteDef]:
        return [web.post(PATH, self.handle)]

    async def start(self, runtime: SourceContext) -> None:
        self.runtime = runtime

    async def stop(self) -> None:
        return None

    def _count(self, code: int) -> None:
        self.runtime.metrics.requests.labels(component=self.name, code=str(code)).inc()

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        return hmac.compare_digest(presented.strip().encode(), self._token.reveal().encode())

    async def handle(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            await self.runtime.reject(self.name, "bad_token", request.remote or "")
            self._count(401)
            return web.json_response({"error": "invalid or missing bearer token"}, status=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="canary-ingest"'})
        node = request.query.get("node", "")
        if node not in self.nodes:
            await self.runtime.reject(self.name, "unknown_node", node[:100])
            self._count(400)
            return web.json_response({"error": f"unknown node {node[:100]!r}; configure it in [[coverage.nodes]]"}, status=400)
        if request.content_length is not None and request.content_length > self.max_body:
            self._count(413)
            return web.json_response({"error": f"body larger than {self.max_body} bytes"}, status=413)
        processor = self._processors.get(node)
        if processor is None:
            processor = PgLogProcessor(self.runtime, RecordContext(self.nodes[node], node, f"http:{node}"), self.handlers)
            self._processors[node] = processor
        splitter = LineSplitter("body")
        lines: list[bytes | LongLine] = []
        total = accepted = events = 0
        try:
            async for chunk in request.content.iter_chunked(READ_CHUNK):
                total += len(chunk)
                if total > self.max_body:
                    self._count(413)
                    return web.json_response({"error": f"body larger than {self.max_body} bytes",
                                              "committed_events": events}, status=413)
                for line in splitter.feed(chunk):
                    if isinstance(line, LongLine):  # counted; its detection fields are still read
                        await self.runtime.reject(f"http:{node}", "line_too_long", f"{line.length} bytes | {line.head[:200]!r}")
                    lines.append(line)
                if len(lines) >= BATCH_LINES:
                    events += await processor.process_lines(lines)
                    accepted += len(lines)
                    lines = []
            lines += splitter.finish()
            if lines:
                events += await processor.process_lines(lines)
                accepted += len(lines)
        except (ValueError, web.RequestPayloadError) as exc:  # aiohttp: line over its buffer limit, bad gzip stream
            await self.runtime.reject(f"http:{node}", "bad_body", str(exc)[:200])
            self._count(400)
            return web.json_response({"error": "body is not readable NDJSON", "committed_events": events}, status=400)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.error("http_ingest.store_failed", node=node, error=type(exc).__name__)
            self._count(503)
            return web.json_response({"error": "control store unavailable; retry"}, status=503, headers={"Retry-After": "5"})
        self._count(200)
        return web.json_response({"node": node, "lines": accepted, "events": events})


SOURCE = SourceType("http_ingest", lambda config: [HttpIngest.from_config(config)] if config.coverage.ingest_token is not None else [])
