"""Amazon Data Firehose's HTTP endpoint delivery, as "HTTP Endpoint Delivery Request and Response
Specifications" documents it (https://docs.aws.amazon.com/firehose/latest/dev/httpdeliveryrequestresponse.html),
and the CloudWatch Logs subscription messages its records carry: the wire format every Firehose
receiver shares (PostgreSQL logs of RDS / Aurora in ``canary/postgres/firehose.py``, CloudTrail trails
sent to CloudWatch Logs in ``canary/credentials/cloudtrail.py``).

- A request: ``POST`` with ``X-Amz-Firehose-Request-Id``, ``X-Amz-Firehose-Access-Key`` (the stream's
  access key, verbatim: :func:`authorized` compares it in constant time), ``Content-Encoding: gzip``
  when the stream compresses, and ``{"requestId", "timestamp", "records": [{"data": <base64>}]}``.
- The answer (:func:`answer`): ``application/json`` ``{"requestId": <echoed>, "timestamp": <ms>}`` plus
  ``"errorMessage"`` on failure. Only 200 is a delivery; 413 is permanent (the batch is dropped); every
  other status is retried until the stream's retry duration ends.
- A record's data from a CloudWatch Logs subscription is base64 of gzip of ``{"messageType":
  "DATA_MESSAGE" | "CONTROL_MESSAGE", "owner", "logGroup", "logStream", "subscriptionFilters",
  "logEvents": [{"id", "timestamp", "message"}]}`` (:func:`decode_record`, :func:`subscription_message`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

#: A record's data decompressed: CloudWatch Logs batches are at most 1 MiB of events, so 8 MiB is
#: generous, and a gzip bomb stops here.
MAX_RECORD = 8 * 1024 * 1024
#: Firehose's own ceiling for one request: a genuine batch is never refused as too large.
MAX_BODY = 64 * 1024 * 1024
READ_CHUNK = 256 * 1024
ACCESS_KEY_HEADER = "X-Amz-Firehose-Access-Key"
REQUEST_ID_HEADER = "X-Amz-Firehose-Request-Id"


class BodyError(Exception):
    """The body could not be read: ``status`` 413 (too large), 408 (too slow) or 400 (undecodable)."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.reason, self.detail = status, reason, detail


async def read_body(request: web.Request, limit: int, timeout: float) -> bytes:
    """The body as decoded by its Content-Encoding, at most ``limit`` bytes, within ``timeout``
    seconds (``listener.body_timeout``: aiohttp has no body timeout of its own)."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyError(413, "body_too_large", f"declared {request.content_length} bytes, limit {limit}")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = await asyncio.wait_for(request.content.read(READ_CHUNK), max(0.0, deadline - loop.time()))
        except TimeoutError:
            raise BodyError(408, "body_timeout", f"body not received within {timeout:g}s ({size} bytes)") from None
        except (ValueError, HttpProcessingError, web.RequestPayloadError) as exc:  # bad gzip, a line over aiohttp's limit
            raise BodyError(400, "bad_body", f"{type(exc).__name__}: {str(exc)[:200]}") from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise BodyError(413, "body_too_large", f"more than {limit} bytes")
        chunks.append(chunk)


def gunzip(data: bytes, limit: int = MAX_RECORD) -> bytes:
    """``data`` decompressed (gzip, members concatenated), at most ``limit`` bytes: ValueError beyond
    it, for a truncated stream, or for data that is not gzip."""
    out = bytearray()
    while data:
        inflater = zlib.decompressobj(wbits=31)
        try:
            out += inflater.decompress(data, limit + 1 - len(out))
        except zlib.error as exc:
            raise ValueError(f"not gzip: {exc}") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise ValueError(f"more than {limit} bytes decompressed")
        if not inflater.eof:
            raise ValueError("truncated gzip")
        data = inflater.unused_data
    return bytes(out)


def authorized(request: web.Request, key: bytes) -> bool:
    """Whether the request carries the stream's access key (constant time)."""
    presented = request.headers.get(ACCESS_KEY_HEADER, "")
    return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), key)


def header_request_id(request: web.Request) -> str:
    """The request id Firehose sends in its header (kept across its retries)."""
    return request.headers.get(REQUEST_ID_HEADER, "")[:256]


def answer(request_id: str, status: int, error: str | None = None, headers: Mapping[str, str] | None = None) -> web.Response:
    """Firehose's answer: the request id echoed, the time, and on failure why."""
    body: dict[str, Any] = {"requestId": request_id, "timestamp": int(time.time() * 1000)}
    if error is not None:
        body["errorMessage"] = error
    return web.json_response(body, status=status, headers=headers)


def request_records(raw: bytes) -> tuple[list[object] | None, str, str]:
    """(the ``records`` of a Firehose request body or None, why not, its ``requestId`` or "")."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return None, f"body is not JSON ({type(exc).__name__})", ""
    if not isinstance(body, dict):
        return None, "body is not a JSON object", ""
    rid = body.get("requestId")
    rid = rid[:256] if isinstance(rid, str) else ""
    records = body.get("records")
    if not isinstance(records, list):
        return None, "no records array", rid
    return records, "", rid


def decode_record(item: object) -> tuple[str, Any]:
    """("", the parsed subscription message) of a Firehose record, or (reason, why)."""
    data = item.get("data") if isinstance(item, dict) else None
    if not isinstance(data, str):
        return "bad_record", "no base64 data"
    try:
        compressed = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:  # ValueError: a non-ASCII string
        return "bad_base64", f"{type(exc).__name__}: {str(exc)[:200]}"
    try:
        payload = gunzip(compressed)
    except ValueError as exc:
        return "bad_gzip", str(exc)[:200]
    try:
        return "", json.loads(payload)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        return "bad_message", f"not JSON ({type(exc).__name__}: {str(exc)[:160]})"


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One CloudWatch Logs event of a subscription message: its id, time (ms since the epoch; 0 when
    absent or implausible) and text."""

    id: str
    timestamp: int
    message: str


def subscription_message(message: object) -> tuple[str, str, list[LogEvent]] | str:
    """(log group, log stream, events) of a DATA_MESSAGE; "control" for a CONTROL_MESSAGE; else why
    the message is none."""
    if not isinstance(message, dict):
        return "not a JSON object"
    kind = message.get("messageType")
    if kind == "CONTROL_MESSAGE":
        return "control"
    if kind != "DATA_MESSAGE":
        return f"messageType {str(kind)[:40]!r}"
    group, stream, events = message.get("logGroup"), message.get("logStream"), message.get("logEvents")
    if not isinstance(group, str) or not isinstance(stream, str) or not isinstance(events, list):
        return "logGroup, logStream or logEvents missing"
    out: list[LogEvent] = []
    for event in events:
        if not isinstance(event, dict) or not isinstance(event.get("id"), str) or not isinstance(event.get("message"), str):
            return "a log event without id or message"
        ms = event.get("timestamp")
        ms = ms if isinstance(ms, int) and not isinstance(ms, bool) and 0 <= ms < 10**15 else 0
        out.append(LogEvent(event["id"][:100], ms, event["message"]))
    return group, stream, out
