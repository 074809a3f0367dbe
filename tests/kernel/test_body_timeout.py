"""A request body must arrive within ``listener.body_timeout``: aiohttp itself has no body timeout,
so a client trickling a body, or a body that never decodes in the Content-Encoding it claims (aiohttp
waits for more), would hold its handler until the client hangs up, on every POST endpoint of the
listener. Each body-reading endpoint answers 408 in time instead, and counts it."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest
from testkit import STDOUT_SINK, MakeConfig, OpenRuntime, serving

from canary.contact.mail_webhooks import MailgunInbound
from canary.credentials.cloudtrail import CloudTrailWebhook
from canary.postgres.http_ingest import PATH, HttpIngest
from canary.runtime import Runtime
from canary.secret import Secret

TIMEOUT = 1.0
TOKEN = "t0ken-for-body-timeout"
KEY = "k3y-for-body-timeout"


@pytest.fixture
async def runtime(open_test_runtime: OpenRuntime, make_config: MakeConfig) -> Runtime:
    rt = await open_test_runtime(make_config(sinks=[STDOUT_SINK], listener={"body_timeout": f"{TIMEOUT}s"},
                                             contact={"mail_domains": ["mail.example.test"], "mailgun_signing_key": "mg-key"}))
    rt.pipeline.start()
    return rt


@pytest.fixture
async def port(runtime: Runtime) -> AsyncIterator[int]:
    """Log ingest, a Mailgun route and the CloudTrail webhook on one loopback port."""
    comps = [HttpIngest(Secret(TOKEN), {"primary": "shop"}), MailgunInbound(runtime.config.contact),
             CloudTrailWebhook("/cloudtrail/events", KEY)]
    async with serving(runtime, comps) as p:
        yield p


async def _post(port: int, path: str, headers: dict[str, str], body: bytes, *, declared: int, hold: float) -> tuple[int, float]:
    """POST ``body`` (declaring ``declared`` bytes) and keep the connection open for ``hold`` seconds
    more; the status answered and how long it took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "".join(f"{k}: {v}\r\n" for k, v in {**headers, "Content-Length": str(declared), "Host": "x"}.items())
    t0 = time.monotonic()
    writer.write(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode() + body)
    await writer.drain()
    try:
        line = await asyncio.wait_for(reader.readline(), TIMEOUT + hold)
    except TimeoutError:
        line = b""
    took = time.monotonic() - t0
    writer.close()
    return (int(line.split()[1]) if line.startswith(b"HTTP/1.1 ") else 0), took


ENDPOINTS = [
    (f"{PATH}?node=primary", {"Authorization": f"Bearer {TOKEN}"}),
    ("/inbound/mailgun", {"Content-Type": "application/x-www-form-urlencoded"}),
    ("/cloudtrail/events", {"X-Canary-Api-Key": KEY, "Content-Type": "application/json"}),
]


@pytest.mark.parametrize(("path", "headers"), ENDPOINTS, ids=["ingest", "mailgun", "cloudtrail"])
async def test_a_trickled_body_is_answered_408_in_time(runtime: Runtime, port: int, path: str, headers: dict[str, str]) -> None:
    """A body declared 10,000 bytes of which 10 arrive: 408 after body_timeout, not a held handler."""
    status, took = await _post(port, path, headers, b"0123456789", declared=10_000, hold=5.0)
    assert status == 408 and TIMEOUT * 0.8 < took < TIMEOUT + 2.5, (status, took)


@pytest.mark.parametrize(("path", "headers"), ENDPOINTS, ids=["ingest", "mailgun", "cloudtrail"])
async def test_a_body_that_never_decodes_is_not_held(runtime: Runtime, port: int, path: str, headers: dict[str, str]) -> None:
    """100 KB claiming Content-Encoding: deflate that is no deflate stream (aiohttp waits for more):
    answered (4xx) within body_timeout while the client keeps the connection open."""
    body = os.urandom(100_000)
    status, took = await _post(port, path, {**headers, "Content-Encoding": "deflate"}, body, declared=len(body), hold=5.0)
    assert 400 <= status < 500 and took < TIMEOUT + 2.5, (status, took)
