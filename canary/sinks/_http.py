"""HTTP delivery shared by every HTTP sink: timeouts, Retry-After and status-code translation."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, field_validator
from yarl import URL

from canary.alerts import Alert
from canary.errors import DeliveryError
from canary.secret import Secret, resolve_secret

RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


_DELTA = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds, also with a fraction as some APIs send
    it, or HTTP-date), capped at 1 hour; None for anything else. Never raises: the header is the
    receiver's to write (``str.isdigit`` also accepts digits like '¹' that ``float`` refuses)."""
    if not value:
        return None
    value = value.strip()
    if _DELTA.fullmatch(value):
        return min(float(value), 3600.0)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    delta = (when - (now or dt.datetime.now(dt.timezone.utc))).total_seconds()
    return min(max(delta, 0.0), 3600.0)


async def post(
    http: aiohttp.ClientSession,
    sink: str,
    url: str,
    *,
    body: bytes | None = None,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    ok: frozenset[int] | None = None,
) -> tuple[int, str]:
    """POST and translate the outcome: 2xx (or ``ok``) returns (status, text); anything else raises
    :class:`DeliveryError`. Response bodies are truncated in errors; request bodies never appear."""
    data = body if body is not None else json.dumps(json_body, separators=(",", ":")).encode()
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    try:
        async with http.post(url, data=data, headers=hdrs, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            text = (await resp.content.read(4096)).decode("utf-8", "replace")
            if (ok is not None and resp.status in ok) or (ok is None and 200 <= resp.status < 300):
                return resp.status, text
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            permanent = resp.status not in RETRYABLE and 400 <= resp.status < 500
            raise DeliveryError(
                sink, f"HTTP {resp.status}: {text[:300]}", retry_after=retry_after, permanent=permanent, status=resp.status
            )
    except asyncio.TimeoutError:
        raise DeliveryError(sink, f"no response within {timeout:.1f}s") from None
    except aiohttp.ClientError as exc:
        raise DeliveryError(sink, describe_client_error(exc, url)) from None


def validate_http_url(cls: object, value: str) -> str:
    """Options validator: an absolute http(s) URL with a host (tests point sinks at 127.0.0.1)."""
    try:
        u = URL(value)
    except (TypeError, ValueError):
        raise ValueError("must be an http(s) URL") from None
    if u.scheme not in ("http", "https") or not u.host:
        raise ValueError("must be an http(s) URL")
    return value


def safe_origin(url: str) -> str:
    """``scheme://host:port`` of a URL: webhook URLs carry their token in the path or query."""
    try:
        u = URL(url)
    except (TypeError, ValueError):
        return "<invalid url>"
    if not u.host:
        return "<invalid url>"
    return f"{u.scheme}://{u.host}" + (f":{u.explicit_port}" if u.explicit_port else "")


def describe_client_error(exc: aiohttp.ClientError, url: str) -> str:
    """Describe a transport failure without echoing the URL (aiohttp's messages may contain it)."""
    reason = ""
    os_error = getattr(exc, "os_error", None)
    if isinstance(os_error, OSError) and os_error.strerror:
        reason = f": {os_error.strerror}"
    return f"{type(exc).__name__} talking to {safe_origin(url)}{reason}"


class SecretUrlOptions(BaseModel):
    """Options of a sink whose whole URL is a credential (Slack and Teams webhooks)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: Secret
    timeout: float = Field(default=10.0, gt=0, le=120)

    @field_validator("url", mode="before")
    @classmethod
    def _url(cls, v: object) -> Secret:
        s = resolve_secret(v)
        validate_http_url(cls, s.reveal())
        return s


class HttpSink:
    """Base of the HTTP sinks: holds name, validated options and the shared session; the repr
    names the sink only (options may hold secrets)."""

    def __init__(self, name: str, options: Any, http: aiohttp.ClientSession) -> None:
        self.name = name
        self.options = options
        self._http = http

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class SecretUrlSink(HttpSink):
    """POSTs ``render(alert)`` as JSON to the secret URL (Slack, Teams)."""

    options: SecretUrlOptions
    render: Callable[[Alert], Any]  # the module's body builder, set by each subclass

    async def send(self, alert: Alert) -> None:
        await post(self._http, self.name, self.options.url.reveal(), json_body=self.render(alert), timeout=self.options.timeout)
