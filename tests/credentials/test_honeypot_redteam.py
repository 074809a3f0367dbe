"""The HTTP token honeypot attacked by an insider who has read its source: no answer it gives, even to
a request it cannot parse, shows the Python server behind the nginx it imitates. Raw requests over
loopback against a real honeypot and control store."""

from __future__ import annotations

import asyncio

import pytest

from canary.config import HttpHoneypotConfig
from canary.credentials.token_honeypot import TokenHoneypot
from canary.runtime import Runtime

#: Requests aiohttp refuses before any handler runs, each a different parser failure.
BAD_REQUESTS = {
    "header_too_long": b"GET /api/x HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
    "too_many_headers": b"GET /api/x HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(100)) + b"\r\n",
    "bad_method": b"G\x01T /api/x HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad_transfer_encoding": b"POST /api/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
}
NGINX_400 = (b"<html>\r\n<head><title>400 Bad Request</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1>"
             b"</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")


async def _exchange(port: int, raw: bytes) -> tuple[list[bytes], bytes]:
    """(status line and header lines, body) of the honeypot's answer to ``raw``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


@pytest.mark.parametrize("kind", list(BAD_REQUESTS))
async def test_unparseable_requests_get_the_imitated_servers_error_page(runtime: Runtime, kind: str) -> None:
    """A request the HTTP parser refuses is answered 400 with the configured ``Server: nginx`` and
    nginx's own error page, never aiohttp's banner or its diagnostic text (which echoes the input);
    it is still counted as a bad request."""
    hp = TokenHoneypot(HttpHoneypotConfig(enabled=True, port=0, min_response_time=0.01))
    await hp.start(runtime)
    try:
        lines, body = await _exchange(hp.port, BAD_REQUESTS[kind])
    finally:
        await hp.stop()
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
    assert lines[0] == b"HTTP/1.1 400 Bad Request", lines  # nginx's version, not aiohttp's HTTP/1.0 for these
    assert headers[b"server"] == b"nginx" and headers[b"content-type"].startswith(b"text/html"), headers
    assert body == NGINX_400
    assert not any(w in b"\n".join(lines).lower() + body.lower() for w in (b"aiohttp", b"python", b"canary"))
    assert await runtime.pool.fetchval("SELECT count(*) FROM rejects WHERE reason = 'bad_http_request'") == 1
