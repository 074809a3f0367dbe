"""Generic webhook signed per the Standard Webhooks specification (standardwebhooks.com).

Headers: ``webhook-id`` (stable per notification, so receivers can deduplicate retries),
``webhook-timestamp`` (Unix seconds) and ``webhook-signature`` = ``v1,`` + base64 of
HMAC-SHA256(key, "{id}.{timestamp}.{body}"), where key is the base64-decoded part of the
``whsec_`` secret.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import hmac
import json
import time
from typing import Any, ClassVar

import aiohttp
from pydantic import BaseModel, ConfigDict, field_validator

from canary.alerts import Alert
from canary.crypto import same
from canary.secret import Secret, resolve_secret
from canary.sinks._http import post


def decode_secret(secret: str) -> bytes:
    raw = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(raw, validate=True)
    except ValueError:
        raise ValueError("secret must be 'whsec_' followed by base64") from None
    if len(key) < 24:
        raise ValueError("secret must hold at least 24 bytes (Standard Webhooks recommends 24-64)")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    to_sign = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, to_sign, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300, now: int | None = None) -> bool:
    """Receiver-side check (used in tests and by users' receivers written in Python)."""
    key = decode_secret(secret)
    msg_id, ts = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not msg_id or not ts.isdigit() or abs((now or int(time.time())) - int(ts)) > tolerance:
        return False
    expected = sign(key, msg_id, int(ts), body).split(",", 1)[1]
    for candidate in headers.get("webhook-signature", "").split():
        version, _, sig = candidate.partition(",")
        if version == "v1" and same(sig, expected):
            return True
    return False


class Options(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    secret: Secret
    timeout: float = 10.0

    @field_validator("secret", mode="before")
    @classmethod
    def _secret(cls, v: object) -> Secret:
        s = resolve_secret(v)
        decode_secret(s.reveal())
        return s

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return v


class WebhookSink:
    type: ClassVar[str] = "webhook"
    Options: ClassVar[builtins.type[BaseModel]] = Options

    def __init__(self, name: str, options: Any, http: aiohttp.ClientSession) -> None:
        self.name = name
        self.options: Options = options
        self._key = decode_secret(options.secret.reveal())
        self._http = http

    async def send(self, alert: Alert) -> None:
        body = json.dumps({"type": f"canary.incident.{alert.action}", "data": alert.to_json()}, separators=(",", ":")).encode()
        msg_id = f"msg_{alert.dedup_key}_{alert.sequence}"
        ts = int(time.time())
        headers = {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sign(self._key, msg_id, ts, body)}
        await post(self._http, self.name, self.options.url, body=body, headers=headers, timeout=self.options.timeout)


SINK = WebhookSink
