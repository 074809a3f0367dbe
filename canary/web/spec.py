"""One declaration per API route, and the OpenAPI 3.1 document made from the same table.

A :class:`Route` names its method, path, scope, parameters, request body and response schema once;
:func:`openapi` turns the table into the document served at ``/api/v1/openapi.json`` and the component
turns it into aiohttp routes, so the document cannot drift from what the app serves. Query parameters
are parsed and validated here too (:meth:`Param.parse`): a bad value is a 400 naming the parameter,
never an exception escaping to aiohttp.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from multidict import MultiMapping

Scope = Literal["read", "operate", "admin"]
JSON = dict[str, Any]

#: what an error answer looks like (the same for every route)
ERROR_SCHEMA: JSON = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


class BadParam(Exception):
    """A query or path parameter that does not parse: answered 400 with its name."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"{name}: {why}")
        self.name = name


@dataclass(frozen=True, slots=True)
class Param:
    """A query or path parameter: ``kind`` says how it parses (int, bool, datetime, text, enum, csv enum)."""

    name: str
    kind: Literal["int", "bool", "datetime", "text", "enum", "enums"] = "text"
    where: Literal["query", "path"] = "query"
    description: str = ""
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    max_length: int = 200

    def schema(self) -> JSON:
        if self.kind == "int":
            out: JSON = {"type": "integer"}
            if self.minimum is not None:
                out["minimum"] = self.minimum
            if self.maximum is not None:
                out["maximum"] = self.maximum
            return out
        if self.kind == "bool":
            return {"type": "boolean"}
        if self.kind == "datetime":
            return {"type": "string", "format": "date-time"}
        if self.kind == "enum":
            return {"type": "string", "enum": list(self.choices)}
        if self.kind == "enums":
            return {"type": "string", "description": "comma-separated: " + ", ".join(self.choices)}
        return {"type": "string", "maxLength": self.max_length}

    def document(self) -> JSON:
        return {"name": self.name, "in": self.where, "required": self.where == "path", "schema": self.schema(),
                **({"description": self.description} if self.description else {})}

    def parse(self, raw: str) -> Any:
        """The value of ``raw`` (the parameter's text) or :class:`BadParam`."""
        if len(raw) > max(self.max_length, 64):
            raise BadParam(self.name, "too long")
        if self.kind == "int":
            if not raw.isascii() or not raw.lstrip("-").isdigit() or len(raw) > 19:
                raise BadParam(self.name, "not an integer")
            n = int(raw)
            if (self.minimum is not None and n < self.minimum) or (self.maximum is not None and n > self.maximum):
                raise BadParam(self.name, f"out of range {self.minimum}..{self.maximum}")
            return n
        if self.kind == "bool":
            if raw.lower() in ("true", "1", "yes"):
                return True
            if raw.lower() in ("false", "0", "no"):
                return False
            raise BadParam(self.name, "not a boolean (true / false)")
        if self.kind == "datetime":
            try:
                when = dt.datetime.fromisoformat(raw)
            except ValueError:
                raise BadParam(self.name, "not an ISO 8601 date-time") from None
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.timezone.utc)
            if not 1900 <= when.year <= 9000:
                raise BadParam(self.name, "out of range")
            return when
        if self.kind == "enum":
            if raw not in self.choices:
                raise BadParam(self.name, "one of " + ", ".join(self.choices))
            return raw
        if self.kind == "enums":
            out = tuple(dict.fromkeys(v.strip() for v in raw.split(",") if v.strip()))
            if not out or any(v not in self.choices for v in out):
                raise BadParam(self.name, "comma-separated from " + ", ".join(self.choices))
            return out
        if "\x00" in raw:
            raise BadParam(self.name, "holds NUL")
        return raw


@dataclass(frozen=True, slots=True)
class Call:
    """What a handler receives: the request, who makes it, and its parsed parameters."""

    request: web.Request
    principal: Any  # canary.web.auth.Principal (kept Any here: spec knows nothing of auth)
    params: Mapping[str, Any]
    body: Mapping[str, Any]


#: a handler answers a response, or the JSON data of its route's status (which the console reads too)
Handler = Callable[[Call], Awaitable[web.StreamResponse | Any]]


@dataclass(frozen=True, slots=True)
class Route:
    """One API operation, declared once."""

    method: Literal["GET", "POST"]
    path: str  # under /api/v1, with {name} path parameters
    scope: Scope
    summary: str
    handler: Handler
    response: JSON
    params: tuple[Param, ...] = ()
    body: JSON | None = None  # the JSON request body's schema (POST)
    status: int = 200
    tag: str = ""
    reveals: bool = False  # takes ?reveal=true (values only with the reveal scope; audited)
    content: str = "application/json"
    extra: Mapping[str, Any] = field(default_factory=dict)
    #: error answers beyond 400 / 401 / 403 / 404 that the route gives, by status (documented in OpenAPI)
    errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def operation_id(self) -> str:
        words = [w.strip("{}") for w in self.path.strip("/").split("/") if w]
        return self.method.lower() + "_" + "_".join(words).replace("-", "_").replace(".", "_")

    def parse(self, request: web.Request) -> dict[str, Any]:
        return self.parse_values(request.query, request.match_info)

    def parse_values(self, query: MultiMapping[str], match_info: Mapping[str, str]) -> dict[str, Any]:
        """The parameters of a query string and path (the console hands its filter form's fields here)."""
        out: dict[str, Any] = {}
        for p in self.params:
            if p.where == "query":
                values = query.getall(p.name, [])
            else:
                values = [match_info[p.name]] if p.name in match_info else []
            if len(values) > 1:
                raise BadParam(p.name, "given more than once")
            if values:
                out[p.name] = p.parse(values[0])
        unknown = sorted(set(query) - {p.name for p in self.params if p.where == "query"})
        if unknown:
            raise BadParam(unknown[0][:40], "unknown parameter")
        return out


def page_schema(item: JSON) -> JSON:
    """A keyset page: the items and the cursor of the next page (null on the last)."""
    return {"type": "object", "required": ["items", "next_cursor"],
            "properties": {"items": {"type": "array", "items": item}, "next_cursor": {"type": ["string", "null"]}}}


def openapi(routes: Sequence[Route], *, prefix: str, version: str, title: str = "canary API") -> JSON:
    """The OpenAPI 3.1 document of ``routes`` (paths under ``prefix``)."""
    paths: dict[str, JSON] = {}
    for r in routes:
        responses: JSON = {str(r.status): {"description": r.summary, "content": {r.content: {"schema": r.response}}}}
        for code, why in (("400", "bad parameter or body"), ("401", "no valid API token"),
                          ("403", f"the token lacks the {r.scope!r} scope")):
            responses[code] = {"description": why, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        if "{" in r.path:
            responses["404"] = {"description": "not found", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        for code, why in r.errors.items():
            responses[code] = {"description": why, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        op: JSON = {"operationId": r.operation_id, "summary": r.summary, "tags": [r.tag] if r.tag else [],
                    "parameters": [p.document() for p in r.params], "responses": responses,
                    "security": [{"bearer": []}], "x-canary-scope": r.scope}
        if r.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": r.body}}}
        paths.setdefault(prefix + r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version,
                 "description": "Scopes: read < operate < admin (each includes the ones before); reveal is separate and "
                                "only with ?reveal=true shows canary values (every reveal is audited)."},
        "paths": paths,
        "components": {"schemas": {"Error": ERROR_SCHEMA},
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "an API token: cy_api_<id>_<secret> (canary token create)"}}},
        "security": [{"bearer": []}],
    }
