"""The HTTP token honeypot attacked by an insider who has read its source: no answer it gives, even to
a request it cannot parse, shows the Python server behind the nginx it imitates. Raw requests over
loopback against a real honeypot and control store."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from credential_support import NGINX, nginx_head, nginx_temps, running_nginx

from canary.config import HttpHoneypotConfig
from canary.credentials.token_honeypot import TokenHoneypot
from canary.runtime import Runtime
from canary.store.embedded import free_port

#: Requests aiohttp refuses before any handler runs, each a different parser failure; real NGINX
#: refuses each too, and the honeypot must answer each as NGINX does.
BAD_REQUESTS = {
    "header_too_long": b"GET /api/x HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
    "request_line_too_long": b"GET /api/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad_method": b"G\x01T /api/x HTTP/1.1\r\nHost: x\r\n\r\n",
    "lowercase_method": b"get /api/x HTTP/1.1\r\nHost: x\r\n\r\n",
    "unknown_transfer_encoding": b"POST /api/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    "bad_transfer_encoding": b"POST /api/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    "length_and_chunked": b"POST /api/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
    "length_overflow": b"POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
    "negative_length": b"POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "http_2_on_1": b"GET /api/x HTTP/2.0\r\nHost: x\r\n\r\n",
    "no_host": b"GET /api/x HTTP/1.1\r\n\r\n",
    "space_in_header_name": b"GET /api/x HTTP/1.1\r\nHost: x\r\nX A: b\r\n\r\n",
    "nul_in_header": b"GET /api/x HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "tls_hello": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",
}
#: NGINX answers these normally (it limits the header's bytes, not its lines); the honeypot's parser
#: refuses them, as NGINX refuses headers over its buffers.
TOO_MANY_HEADERS = b"GET /api/x HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(100)) + b"\r\n"
NGINX_400 = (b"<html>\r\n<head><title>400 Bad Request</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1>"
             b"</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
NGINX_HEADER_TOO_LARGE = (b"<html>\r\n<head><title>400 Request Header Or Cookie Too Large</title></head>\r\n<body>\r\n"
                          b"<center><h1>400 Bad Request</h1></center>\r\n<center>Request Header Or Cookie Too Large</center>"
                          b"\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")


async def _exchange(port: int, raw: bytes) -> tuple[list[bytes], bytes]:
    """(status line and header lines, body) of the answer to ``raw``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body


def _shape(lines: list[bytes], body: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """Status line, headers in order (Date's value blanked: the clock differs), body."""
    headers = [(k.strip().lower(), b"" if k.strip().lower() == b"date" else v.strip())
               for k, _, v in (line.partition(b":") for line in lines[1:])]
    return lines[0], headers, body


@pytest.fixture
def real_nginx(tmp_path: Path) -> Iterator[int]:
    """Debian's NGINX as the honeypot imitates it: ``server_tokens off`` (``Server: nginx``), every
    request answered 401."""
    port = free_port()
    conf = nginx_head(tmp_path) + f"""
http {{
    access_log off; server_tokens off; {nginx_temps(tmp_path)}
    server {{ listen 127.0.0.1:{port}; location / {{ return 401; }} }}
}}
"""
    with running_nginx(tmp_path, conf, port):
        yield port


@pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is not installed")
async def test_unparseable_requests_are_answered_as_real_nginx_answers_them(runtime: Runtime, real_nginx: int) -> None:
    """Each request the HTTP parser refuses gets, byte for byte but the date, real NGINX's answer to the
    same bytes: its status and reason phrase (414 for a request line too long, 501 for an unknown
    Transfer-Encoding, 505 for HTTP/2.0 on HTTP/1, its "Request Header Or Cookie Too Large" page), its
    headers in its order, its error page; never aiohttp's banner or diagnostic text (which echoes the
    input). Each is still counted as a bad request."""
    hp = TokenHoneypot(HttpHoneypotConfig(enabled=True, port=0, min_response_time=0.01))
    await hp.start(runtime)
    try:
        for kind, raw in BAD_REQUESTS.items():
            ours = _shape(*await _exchange(hp.port, raw))
            theirs = _shape(*await _exchange(real_nginx, raw))
            assert ours == theirs, kind
            assert not any(w in ours[0] + ours[2].lower() for w in (b"aiohttp", b"python", b"canary")), kind
        lines, body = await _exchange(hp.port, TOO_MANY_HEADERS)
    finally:
        await hp.stop()
    assert (lines[0], body) == (b"HTTP/1.1 400 Bad Request", NGINX_HEADER_TOO_LARGE)
    assert await runtime.pool.fetchval("SELECT count(*) FROM rejects WHERE reason = 'bad_http_request'") == len(BAD_REQUESTS) + 1


@pytest.mark.parametrize("kind", ["header_too_long", "bad_method", "no_host"])
async def test_unparseable_requests_get_the_imitated_servers_error_page(runtime: Runtime, kind: str) -> None:
    """Without NGINX to compare with: a request the HTTP parser refuses is answered with the configured
    ``Server: nginx`` and nginx's own error page in HTTP/1.1 (aiohttp would say HTTP/1.0), and counted."""
    hp = TokenHoneypot(HttpHoneypotConfig(enabled=True, port=0, min_response_time=0.01))
    await hp.start(runtime)
    try:
        lines, body = await _exchange(hp.port, BAD_REQUESTS[kind])
    finally:
        await hp.stop()
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
    assert lines[0] == b"HTTP/1.1 400 Bad Request", lines
    assert headers[b"server"] == b"nginx" and headers[b"content-type"] == b"text/html", headers
    assert body == (NGINX_HEADER_TOO_LARGE if kind == "header_too_long" else NGINX_400)
    assert await runtime.pool.fetchval("SELECT count(*) FROM rejects WHERE reason = 'bad_http_request'") == 1


async def _answer_head(port: int, raw: bytes) -> tuple[bytes, list[bytes]]:
    """Status line and header names, in order, of the first answer to ``raw`` (read by its
    Content-Length, so a kept-alive connection need not close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()
    lines = head.rstrip(b"\r\n").split(b"\r\n")
    names = [line.partition(b":")[0].strip().lower() for line in lines[1:]]
    values = {n: line.partition(b":")[2].strip() for n, line in zip(names, lines[1:], strict=True)}
    return lines[0] + b" | connection: " + values.get(b"connection", b"-"), names


@pytest.fixture
async def nginx_in_front(tmp_path: Path) -> AsyncIterator[int]:
    """Real NGINX (``server_tokens off``) in front of an application answering as the honeypot's
    configuration does: 401 with WWW-Authenticate and X-Request-Id, JSON."""

    async def handle(request: web.Request) -> web.Response:
        return web.Response(status=401, body=b'{"error":"invalid_token"}', headers={
            "Content-Type": "application/json", "WWW-Authenticate": 'Bearer realm="internal", error="invalid_token"',
            "X-Request-Id": "0" * 32})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    upstream = free_port()
    await web.TCPSite(runner, "127.0.0.1", upstream).start()
    port = free_port()
    conf = nginx_head(tmp_path) + f"""
http {{
    access_log off; server_tokens off; {nginx_temps(tmp_path)}
    upstream app {{ server 127.0.0.1:{upstream}; keepalive 4; }}
    server {{ listen 127.0.0.1:{port};
             location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}
}}
"""
    try:
        with running_nginx(tmp_path, conf, port):
            yield port
    finally:
        await runner.cleanup()


@pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is not installed")
async def test_answers_carry_the_headers_nginx_in_front_of_an_api_writes(runtime: Runtime, nginx_in_front: int) -> None:
    """The honeypot's ordinary answers have the status line and headers, in order, that real NGINX in
    front of an API writes: HTTP/1.1 whatever the request's version (aiohttp echoes "HTTP/1.0"),
    Server / Date / Content-Type / Content-Length / Connection first, ``Connection: keep-alive`` named
    (aiohttp leaves it out), then the application's headers."""
    hp = TokenHoneypot(HttpHoneypotConfig(enabled=True, port=0, min_response_time=0.01))
    await hp.start(runtime)
    try:
        for raw in (b"GET /api/v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abc\r\n\r\n",
                    b"GET /api/v1/orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    b"GET /api/v1/orders HTTP/1.0\r\n\r\n",
                    b"GET /api/v1/orders HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"):
            assert await _answer_head(hp.port, raw) == await _answer_head(nginx_in_front, raw), raw
    finally:
        await hp.stop()
