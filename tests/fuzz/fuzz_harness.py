"""The fuzz harness (fixtures in conftest.py): one real runtime and listener per test module, running on its own event loop in a
background thread, so hypothesis drives it example by example from the test thread over real sockets
(and shrinks a failing input to its smallest form).

What counts as a failure, besides a test's own assertions: an exception that reached the server loop
(an asyncio callback or protocol, a task nobody awaited), an error logged by aiohttp or asyncio (a
handler that raised: 500), and a structlog event at error level or one of :data:`ESCAPE_EVENTS` (work
that failed and is being retried). :meth:`FuzzServer.assert_clean` raises on any of them; the surfaces
call it after every example. At teardown the module prints how many inputs were tried and the RSS of
the test process (server included) before and after (run with ``-s`` to see it)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil
import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from hypothesis import HealthCheck, settings
from testkit import TEST_KEYRING, create_database, drop_database

from canary.config import from_mapping
from canary.listener import Listener
from canary.runtime import Runtime, open_runtime
from canary.store.embedded import PostgresServer
from canary.typing import Component

T = TypeVar("T")

#: The settings of every surface (the gate profile derandomizes; conftest.py); examples are counted per surface.
#: CANARY_FUZZ_SCALE multiplies every budget for a longer hunt.
def fuzz_settings(max_examples: int) -> settings:
    return settings(max_examples=max(1, int(max_examples * float(os.environ.get("CANARY_FUZZ_SCALE", "1")))), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


#: structlog events that mean work failed inside a source although nothing raised out of it.
ESCAPE_EVENTS = frozenset({"background.commit_retry", "smtp.session_error", "component.stop_failed",
                           "syslog.commit_failed", "source.lag_watch_failed"})
#: Error-level structlog events that are answers, not escapes (none today).
EXPECTED_ERRORS: frozenset[str] = frozenset()
#: How long a valid input may take to show up as an event after the fuzzing (the "no stall" bound).
PROMPT = 10.0


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / (1024 * 1024)


@dataclass
class Tally:
    """Inputs tried on one surface."""

    examples: int = 0
    connections: int = 0
    messages: int = 0


@dataclass
class FuzzServer:
    """A runtime (real control store) and listener served on 127.0.0.1 from a background loop."""

    surface: str
    loop: asyncio.AbstractEventLoop
    runtime: Runtime
    listener: Listener
    base_url: str
    port: int
    tally: Tally = field(default_factory=Tally)
    escapes: list[str] = field(default_factory=list)
    canaries: dict[str, Any] = field(default_factory=dict)
    rss_before: float = 0.0

    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return f"FuzzServer({self.surface!r}, port={self.port})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis's pretty printer
        printer.text(repr(self))

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run ``coro`` on the server loop and return its result (from the test thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def assert_clean(self) -> None:
        """Nothing escaped since the server started (the list names what did)."""
        assert not self.escapes, f"{len(self.escapes)} escape(s): {sorted(set(self.escapes))[:8]}"

    def fetchval(self, sql: str, *args: Any) -> Any:
        return self.call(self.runtime.pool.fetchval(sql, *args))

    def wait_for(self, sql: str, *args: Any, timeout: float = PROMPT) -> tuple[Any, float]:
        """Poll ``sql`` until it returns a truthy value; (value, seconds taken). Fails after ``timeout``."""
        t0 = time.monotonic()
        while True:
            value = self.fetchval(sql, *args)
            took = time.monotonic() - t0
            if value:
                return value, took
            assert took < timeout, f"{self.surface}: no result for {sql!r} within {timeout}s (stalled?)"
            time.sleep(0.02)

    def rejects(self, reason: str | None = None) -> float:
        """canary_rejects_total summed over sources (and one reason)."""
        total = 0.0
        for metric in self.runtime.metrics.rejects.collect():
            for s in metric.samples:
                if s.name.endswith("_total") and (reason is None or s.labels.get("reason") == reason):
                    total += s.value
        return total


class _Recorder(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):  # aiohttp refusing a malformed request (a 4xx it answers): no escape
            return
        if isinstance(exc, web.RequestPayloadError) and not record.getMessage().startswith("Error handling request"):
            return  # aiohttp discarding the unread, undecodable body of a request already answered
        self.sink.append(f"{record.name}: {record.getMessage()[:200]} {exc!r}")


def structlog_recorder(sink: list[str]) -> Callable[[Any, str, Any], Any]:
    def record(logger: Any, method: str, event: Any) -> Any:
        name = str(event.get("event"))
        if (method in ("error", "critical", "exception") and name not in EXPECTED_ERRORS) or name in ESCAPE_EVENTS:
            sink.append(f"structlog {method}: {name} {({k: v for k, v in event.items() if k != 'event'})!r:.300}")
        raise structlog.DropEvent

    return record


#: The servers running now (the newest last): where the per-test logging fixture records to.
ACTIVE: list[FuzzServer] = []


@contextmanager
def fuzz_server(
    pg_server: PostgresServer,
    surface: str,
    sections: Mapping[str, Any],
    components: Callable[[Runtime], Sequence[Component]],
    setup: Callable[[FuzzServer], Awaitable[None]] | None = None,
) -> Iterator[FuzzServer]:
    """A fresh control database, a runtime with ``sections`` of config, and a listener serving
    ``components(runtime)``; ``setup`` (run on the server loop) registers canaries."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name=f"fuzz-{surface}", daemon=True)
    thread.start()
    escapes: list[str] = []

    def on_loop_error(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        escapes.append(f"loop: {context.get('message')} {context.get('exception')!r}")

    loop.set_exception_handler(on_loop_error)
    recorder = _Recorder(escapes)
    for name in ("aiohttp", "asyncio", "canary"):
        logging.getLogger(name).addHandler(recorder)
    data_dir = Path(tempfile.mkdtemp(prefix=f"canary-fuzz-{surface}-"))

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(120)

    db = run(create_database(pg_server, "fuzz"))
    runner: web.AppRunner | None = None
    try:
        cfg = from_mapping({"canary": {"data_dir": str(data_dir)}, "control": {"dsn": pg_server.dsn(db)},
                            "sinks": [], **sections})

        async def start() -> FuzzServer:
            nonlocal runner
            runtime = await open_runtime(cfg, keyring=TEST_KEYRING)
            listener = Listener(runtime, list(components(runtime)))
            runner = web.AppRunner(listener.app(), access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            return FuzzServer(surface, loop, runtime, listener, f"http://127.0.0.1:{port}", port, escapes=escapes)

        server = run(start())
        ACTIVE.append(server)
        structlog.configure(processors=[structlog.processors.add_log_level, structlog_recorder(escapes)])
        if setup is not None:
            run(setup(server))
        server.rss_before = rss_mib()
        try:
            yield server
        finally:
            ACTIVE.remove(server)
            t = server.tally
            if escapes:
                (data_dir.parent / f"canary-fuzz-{surface}-escapes.txt").write_text("\n".join(sorted(set(escapes))))
            print(f"\nfuzz[{surface}] examples={t.examples} connections={t.connections} messages={t.messages} "
                  f"rejects={server.rejects():.0f} rss_before={server.rss_before:.1f}MiB rss_after={rss_mib():.1f}MiB "
                  f"escapes={len(escapes)}")
    finally:
        if runner is not None:
            run(runner.cleanup())  # stops the components and closes the runtime
        run(drop_database(pg_server, db))
        for name in ("aiohttp", "asyncio", "canary"):
            logging.getLogger(name).removeHandler(recorder)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        shutil.rmtree(data_dir, ignore_errors=True)


# -- raw clients (the attacker's side: no client-side validation) ---------------------------------------
def connect(port: int, timeout: float = PROMPT) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    return s


def read_to_eof(s: socket.socket, limit: int = 1 << 20) -> bytes:
    """Everything the peer sends until it closes (a timeout fails: the server held the connection)."""
    out = bytearray()
    while len(out) < limit:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    return bytes(out)


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_answer(raw: bytes) -> HttpAnswer:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    # aiohttp answers in the version the request line claims (``GET / HTTP/2.0`` -> ``HTTP/2.0 401``)
    assert len(parts) >= 2 and re.fullmatch(rb"HTTP/[0-9]\.[0-9]", parts[0]), f"not an HTTP answer: {raw[:200]!r}"
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.decode("latin-1").strip().lower()] = v.decode("latin-1").strip()
    return HttpAnswer(int(parts[1]), headers, body)


def http_raw(port: int, request: bytes, *, half_close: bool = True) -> HttpAnswer | None:
    """Send raw request bytes, read the whole answer. None when the server closed without answering
    (what a server may do to garbage); a hang fails (socket timeout)."""
    with connect(port) as s:
        try:
            s.sendall(request)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except OSError:  # the server may close first (broken pipe, reset, not connected)
            pass
        raw = read_to_eof(s)
    return parse_answer(raw) if raw else None


def http_request(port: int, method: str, target: str, headers: Sequence[tuple[str, str]] = (), body: bytes = b"") -> HttpAnswer:
    """A well-framed HTTP/1.1 request (Content-Length, Connection: close) with any header values."""
    lines = [f"{method} {target} HTTP/1.1".encode("latin-1", "replace"), b"Host: 127.0.0.1", b"Connection: close",
             f"Content-Length: {len(body)}".encode()]
    lines += [f"{k}: {v}".encode("utf-8", "surrogatepass") for k, v in headers]
    answer = http_raw(port, b"\r\n".join(lines) + b"\r\n\r\n" + body, half_close=False)
    assert answer is not None, f"{method} {target[:80]}: connection closed without an answer"
    return answer
