"""A local server speaking the ``_bulk`` API as Elasticsearch and OpenSearch document it, for the
``elasticsearch`` sink's tests (https://www.elastic.co/guide/en/elasticsearch/reference/current/docs-bulk.html,
https://docs.opensearch.org/latest/api-reference/document-apis/bulk/).

It checks what the real servers check and answers as they answer:

* authentication: ``Authorization: ApiKey <base64(id:api_key)>`` or ``Basic`` (OpenSearch's security plugin
  knows only Basic), else 401 (Elasticsearch: ``security_exception`` JSON; OpenSearch: plain ``Unauthorized``);
* ``Content-Type`` application/x-ndjson or application/json (else 406), ``http.max_content_length`` (413);
* NDJSON framing: the body ends in a newline, every action line is one object naming one of ``index`` /
  ``create`` / ``update`` / ``delete``, sources follow index / create (else the whole request is 400);
* per item: ``_id`` at most 512 bytes, data streams (``logs-*-*`` on Elasticsearch, its built-in template)
  take only ``create`` and need ``@timestamp``, a second ``create`` of one ``_id`` is 409
  ``version_conflict_engine_exception``, a value that does not fit the field's mapping is 400
  (``document_parsing_exception`` on Elasticsearch 8.8+, ``mapper_parsing_exception`` on OpenSearch): ECS
  types are mapped up front (``source.ip`` is ``ip``, ``event.severity`` ``long``, ...), other fields by the
  first value they get, as dynamic mapping does; an unknown ``?pipeline=`` fails every item;
* ``item_faults`` scripts the next items' failures (``(429, "es_rejected_execution_exception")``), and
  ``script`` whole-request answers (``(503, {"Retry-After": "2"})``).

``indices`` holds what was stored and ``creates`` counts stored documents per (index, id), so a test can
prove each document arrived exactly once.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import ssl
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aiohttp import web

ACTIONS = ("index", "create", "update", "delete")

#: ECS field types the built-in logs template maps up front (as the ECS reference types them)
ECS_TYPES = {
    "@timestamp": "date", "event.created": "date", "event.start": "date", "event.end": "date", "event.ingested": "date",
    "event.severity": "long", "source.ip": "ip", "related.ip": "ip", "source.as.number": "long",
    "ecs.version": "keyword", "event.kind": "keyword", "event.category": "keyword", "event.type": "keyword",
    "event.id": "keyword", "user.name": "keyword", "source.address": "keyword", "source.domain": "keyword",
    "threat.technique.id": "keyword", "threat.tactic.id": "keyword", "message": "match_only_text",
}


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


class BulkError(Exception):
    """A request the server refuses as a whole."""

    def __init__(self, status: int, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.kind, self.reason = status, kind, reason


class ElasticServer:
    def __init__(self, *, flavor: str = "elasticsearch", api_key: tuple[str, str] | None = None,
                 basic: tuple[str, str] | None = None, max_content_length: int = 100 * 1024 * 1024,
                 pipelines: tuple[str, ...] = (), ssl_context: ssl.SSLContext | None = None, answer_piece: int = 0) -> None:
        self.flavor = flavor
        self.ssl_context = ssl_context
        self.answer_piece = answer_piece  # > 0: the answer streamed in pieces of this size, as a busy node does
        self.api_key = api_key
        self.basic = basic
        self.max_content_length = max_content_length
        self.pipelines = set(pipelines)
        self.requests: list[Seen] = []
        self.script: list[tuple[int, dict[str, str]]] = []
        self.item_faults: list[tuple[int, str] | None] = []
        self.indices: dict[str, dict[str, dict[str, Any]]] = {}
        self.mappings: dict[str, dict[str, str]] = {}
        self.creates: Counter[tuple[str, str]] = Counter()
        self._runner: web.AppRunner | None = None
        self._seq = 0
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def docs(self, index: str) -> dict[str, dict[str, Any]]:
        return self.indices.get(index, {})

    async def __aenter__(self) -> ElasticServer:
        app = web.Application(client_max_size=self.max_content_length + 1)
        for method in ("POST", "PUT"):
            app.router.add_route(method, "/_bulk", self.bulk)
            app.router.add_route(method, "/{index}/_bulk", self.bulk)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    # -- the request -------------------------------------------------------------------------------

    def _authenticated(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except ValueError:
            return False
        if scheme == "ApiKey" and self.api_key is not None and self.flavor == "elasticsearch":
            return decoded == f"{self.api_key[0]}:{self.api_key[1]}"
        if scheme == "Basic" and self.basic is not None:
            return decoded == f"{self.basic[0]}:{self.basic[1]}"
        return False

    def _unauthorized(self) -> web.Response:
        if self.flavor == "opensearch":
            return web.Response(status=401, text="Unauthorized",
                                headers={"WWW-Authenticate": 'Basic realm="OpenSearch Security"'})
        reason = "unable to authenticate with provided credentials and anonymous access is not allowed for this request"
        error = {"type": "security_exception", "reason": reason}
        return web.json_response({"error": {"root_cause": [error], **error}, "status": 401}, status=401,
                                 headers={"WWW-Authenticate": 'ApiKey, Basic realm="security" charset="UTF-8"'})

    async def bulk(self, request: web.Request) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > self.max_content_length:
            return web.Response(status=413)
        body = await request.read()
        self.requests.append(Seen(request.path, dict(request.query), dict(request.headers), body))
        if self.script:
            status, headers = self.script.pop(0)
            error = {"type": "scripted", "reason": f"scripted {status}"}
            return web.json_response({"error": {"root_cause": [error], **error}, "status": status}, status=status,
                                     headers=headers)
        if (self.api_key or self.basic) and not self._authenticated(request.headers.get("Authorization", "")):
            return self._unauthorized()
        mime = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if mime not in ("application/x-ndjson", "application/json"):
            return web.json_response({"error": f"Content-Type header [{mime}] is not supported", "status": 406},
                                     status=406)
        started = time.monotonic()
        try:
            ops = self._parse(body, request.match_info.get("index"))
        except BulkError as exc:
            error = {"type": exc.kind, "reason": exc.reason}
            return web.json_response({"error": {"root_cause": [error], **error}, "status": exc.status},
                                     status=exc.status)
        pipeline = request.query.get("pipeline")
        items = [self._apply(action, meta, source, pipeline) for action, meta, source in ops]
        errors = any("error" in next(iter(i.values())) for i in items)
        answer = {"took": int((time.monotonic() - started) * 1000), "errors": errors, "items": items}
        if not self.answer_piece:
            return web.json_response(answer)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        data = json.dumps(answer).encode()
        for at in range(0, len(data), self.answer_piece):
            await response.write(data[at:at + self.answer_piece])
            await asyncio.sleep(0.001)
        await response.write_eof()
        return response

    def _parse(self, body: bytes, path_index: str | None) -> list[tuple[str, dict[str, Any], Any]]:
        if not body:
            raise BulkError(400, "action_request_validation_exception", "Validation Failed: 1: no requests added;")
        if not body.endswith(b"\n"):
            raise BulkError(400, "illegal_argument_exception", "The bulk request must be terminated by a newline [\\n]")
        lines = body.decode("utf-8").split("\n")[:-1]
        ops: list[tuple[str, dict[str, Any], Any]] = []
        i = 0
        while i < len(lines):
            try:
                action_line = json.loads(lines[i])
            except ValueError:
                raise BulkError(400, "x_content_parse_exception", f"[{i + 1}:1] Unexpected character") from None
            if not isinstance(action_line, dict) or len(action_line) != 1:
                raise BulkError(400, "illegal_argument_exception",
                                f"Malformed action/metadata line [{i + 1}], expected a single action")
            action, meta = next(iter(action_line.items()))
            if action not in ACTIONS or not isinstance(meta, dict):
                raise BulkError(400, "illegal_argument_exception",
                                f"Malformed action/metadata line [{i + 1}], expected one of {ACTIONS}")
            meta = dict(meta)
            meta.setdefault("_index", path_index)
            if not meta["_index"]:
                raise BulkError(400, "action_request_validation_exception", "Validation Failed: 1: index is missing;")
            if len(str(meta.get("_id", "")).encode()) > 512:
                raise BulkError(400, "action_request_validation_exception",
                                "Validation Failed: 1: id is too long, must be no longer than 512 bytes;")
            source: Any = None
            if action != "delete":
                i += 1
                if i >= len(lines):
                    raise BulkError(400, "illegal_argument_exception", f"source is missing for action [{action}]")
                try:
                    source = json.loads(lines[i])
                except ValueError:
                    raise BulkError(400, "x_content_parse_exception", f"[{i + 1}:1] Unexpected character") from None
            ops.append((action, meta, source))
            i += 1
        return ops

    # -- one item ----------------------------------------------------------------------------------

    def _data_stream(self, index: str) -> bool:
        parts = index.split("-")
        return self.flavor == "elasticsearch" and len(parts) >= 3 and parts[0] == "logs"

    def _item(self, action: str, index: str, doc_id: str, status: int, error: tuple[str, str] | None = None,
              ) -> dict[str, Any]:
        body: dict[str, Any] = {"_index": index, "_id": doc_id, "status": status}
        if error is None:
            self._seq += 1
            body.update(_version=1, result="created", _seq_no=self._seq, _primary_term=1,
                        _shards={"total": 2, "successful": 1, "failed": 0})
        else:
            body["error"] = {"type": error[0], "reason": error[1], "index": index}
        return {action: body}

    def _apply(self, action: str, meta: dict[str, Any], source: Any, pipeline: str | None) -> dict[str, Any]:
        index = str(meta["_index"])
        doc_id = str(meta.get("_id") or f"auto-{self._seq + 1}")
        if self.item_faults:
            fault = self.item_faults.pop(0)
            if fault is not None:
                return self._item(action, index, doc_id, fault[0], (fault[1], f"scripted {fault[1]}"))
        if pipeline is not None and pipeline not in self.pipelines:
            return self._item(action, index, doc_id, 400,
                              ("illegal_argument_exception", f"pipeline with id [{pipeline}] does not exist"))
        if self._data_stream(index) and action != "create":
            return self._item(action, index, doc_id, 400, ("illegal_argument_exception",
                              "only write ops with an op_type of create are allowed in data streams"))
        if action not in ("index", "create") or not isinstance(source, dict):
            return self._item(action, index, doc_id, 400, ("illegal_argument_exception", "unsupported here"))
        docs = self.indices.setdefault(index, {})
        if action == "create" and doc_id in docs:
            return self._item(action, index, doc_id, 409, ("version_conflict_engine_exception",
                              f"[{doc_id}]: version conflict, document already exists (current version [1])"))
        if self._data_stream(index) and "@timestamp" not in source:
            return self._item(action, index, doc_id, 400, (self._parse_error,
                              "data stream timestamp field [@timestamp] is missing"))
        if pipeline is not None:
            source = dict(source)
            source.setdefault("event", {})["ingested"] = dt.datetime.now(dt.timezone.utc).isoformat()
        mapping = self.mappings.setdefault(index, dict(ECS_TYPES))
        staged: dict[str, str] = {}
        problem = self._check(source, "", mapping, staged)
        if problem:
            return self._item(action, index, doc_id, 400, (self._parse_error, problem + f" in document with id '{doc_id}'"))
        mapping.update(staged)
        docs[doc_id] = source
        self.creates[(index, doc_id)] += 1
        return self._item(action, index, doc_id, 201)

    @property
    def _parse_error(self) -> str:
        return "document_parsing_exception" if self.flavor == "elasticsearch" else "mapper_parsing_exception"

    def _check(self, value: Any, path: str, mapping: dict[str, str], staged: dict[str, str]) -> str | None:
        """Why ``value`` at ``path`` does not fit the mapping (None when it does); new fields are staged."""
        if isinstance(value, dict):
            if mapping.get(path) not in (None, "object"):
                return f"failed to parse field [{path}] of type [{mapping[path]}]: an object"
            if path:
                staged[path] = "object"
            for key, sub in value.items():
                if not key or key.startswith(".") or key.endswith("."):
                    return f"field name cannot be an empty string or start/end with a dot [{key}]"
                problem = self._check(sub, f"{path}.{key}" if path else key, mapping, staged)
                if problem:
                    return problem
            return None
        if isinstance(value, list):
            for sub in value:
                problem = self._check(sub, path, mapping, staged)
                if problem:
                    return problem
            return None
        if value is None:
            return None
        kind = mapping.get(path) or staged.get(path)
        if kind is None:
            kind = staged[path] = ("boolean" if isinstance(value, bool) else "long" if isinstance(value, int)
                                   else "float" if isinstance(value, float) else "keyword")
        if not _fits(kind, value):
            return f"failed to parse field [{path}] of type [{kind}]"
        return None


def _fits(kind: str, value: Any) -> bool:
    if kind == "object":
        return False
    if kind == "ip":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return False
        return isinstance(value, str)
    if kind == "long":
        return (isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63) or (
            isinstance(value, str) and value.lstrip("-").isdigit())
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool) or value in ("true", "false")
    if kind == "date":
        if isinstance(value, int) and not isinstance(value, bool):
            return True
        try:
            dt.datetime.fromisoformat(str(value))
        except ValueError:
            return False
        return True
    return isinstance(value, str | int | float | bool)
