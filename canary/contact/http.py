"""Webhook plumbing shared by the inbound-mail and phone providers: bounded bodies, form parsing,
timestamp freshness, and counted refusals of requests that fail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email import policy
from email.parser import BytesParser
from urllib.parse import parse_qsl

from aiohttp import web

from canary.contact.mime import FATAL_DEFECTS
from canary.errors import ParseError, SignatureError
from canary.typing import SourceContext


# -- HTTP answers -----------------------------------------------------------------------------------
def counted(runtime: SourceContext, component: str, response: web.Response) -> web.Response:
    runtime.metrics.requests.labels(component=component, code=str(response.status)).inc()
    return response


async def refuse(
    runtime: SourceContext, component: str, status: int, reason: str, detail: str, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Count and keep a rejected webhook request; answer it with ``status`` and a short reason."""
    await runtime.reject(component, reason, detail)
    return counted(runtime, component, web.Response(status=status, text=f"{reason}\n", headers=headers))


# -- webhook bodies ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FormFile:
    field: str
    filename: str | None
    content_type: str
    data: bytes


class BodyTooLarge(Exception):
    """The request body exceeded the configured limit (answered 413)."""


class BodyTimeout(Exception):
    """The request body did not arrive within ``listener.body_timeout`` (answered 408)."""


async def read_limited(request: web.Request, limit: int, timeout: float) -> bytes:
    """The raw body, refusing more than ``limit`` bytes (independent of the app's client_max_size) or
    a body that has not arrived within ``timeout`` seconds (a trickled body, or one aiohttp waits on
    forever because it does not decode in its Content-Encoding)."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(f"declared body of {request.content_length} bytes exceeds {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(f"body exceeds {limit} bytes")
                chunks.append(chunk)
    except web.RequestPayloadError as exc:  # e.g. a Content-Encoding the body is not in (was a 500)
        raise ParseError("webhook", f"body cannot be read: {str(exc).strip()[:100]}") from None
    except TimeoutError:
        raise BodyTimeout(f"body not received within {timeout:g}s ({size} bytes read)") from None
    return b"".join(chunks)


def parse_form(content_type: str, body: bytes) -> tuple[list[tuple[str, str]], list[FormFile]]:
    """Fields (in order, repeats kept) and files of an urlencoded or multipart/form-data body.
    Raises ValueError when the body does not match its declared type."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype == "application/x-www-form-urlencoded":
        return parse_qsl(body.decode("utf-8", "strict"), keep_blank_values=True, strict_parsing=bool(body)), []
    if ctype != "multipart/form-data":
        raise ValueError(f"unsupported content type {ctype or '(none)'}")
    msg = BytesParser(policy=policy.HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not msg.is_multipart() or any(isinstance(d, FATAL_DEFECTS) for d in msg.defects):
        raise ValueError("multipart body is malformed")
    fields: list[tuple[str, str]] = []
    files: list[FormFile] = []
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise ValueError("multipart part without a field name")
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            files.append(FormFile(name, filename, part.get_content_type(), data))
        else:
            charset = part.get_content_charset() or "utf-8"
            try:
                fields.append((name, data.decode(charset, "replace")))
            except LookupError:
                fields.append((name, data.decode("utf-8", "replace")))
    return fields, files


def fresh(timestamp: str | float | None, max_age: float, now: float | None = None) -> bool:
    """True when a provider timestamp (unix seconds) is within ``max_age`` of now (either side)."""
    try:
        ts = float(timestamp)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return abs((now if now is not None else time.time()) - ts) <= max_age


#: Request errors that are answered (and counted) rather than raised.
REFUSED = (BodyTooLarge, BodyTimeout, SignatureError, ParseError)


async def refusal(runtime: SourceContext, component: str, exc: Exception, signature_status: int = 403) -> web.Response:
    """Answer one of :data:`REFUSED`: 413 too big, 408 too slow, ``signature_status`` (or the error's
    own status) for authentication failures by reason, 400 for malformed bodies."""
    if isinstance(exc, BodyTooLarge):
        return await refuse(runtime, component, 413, "too_big", str(exc))
    if isinstance(exc, BodyTimeout):
        return await refuse(runtime, component, 408, "body_timeout", str(exc))
    if isinstance(exc, SignatureError):
        status = exc.fields.get("status", signature_status)
        return await refuse(runtime, component, int(status) if isinstance(status, int) else signature_status,
                            str(exc.fields.get("reason", "bad_signature")), exc.message)
    if isinstance(exc, ParseError):
        return await refuse(runtime, component, 400, "malformed", exc.message)
    raise exc
