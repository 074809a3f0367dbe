"""Syslog receiver for PostgreSQL logs of other nodes (replicas, primaries canary cannot tail).

Transports: UDP (one message per datagram) and TCP with either framing of RFC 6587 (octet counting
``LEN SP MSG`` or LF-terminated). Headers: RFC 5424 (``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID
MSGID SD MSG``) and RFC 3164 (``<PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG``). Payloads:

* a PostgreSQL ``jsonlog`` record (one JSON object, e.g. rsyslog ``imfile`` forwarding the jsonlog
  file), or
* PostgreSQL's own syslog output (``log_destination = 'syslog'``): ``[SEQ-CHUNK] prefix LOG:  msg``
  where one log entry is split into chunks (``LOG``, ``DETAIL``, ``STATEMENT`` lines) that share
  SEQ; chunks are reassembled per (host, pid, SEQ). The prefix should be
  ``log_line_prefix = 'user=%u,db=%d,app=%a,client=%h,sqlstate=%e '`` so records carry the role,
  database, application, client address and SQLSTATE (``CY001`` read detection needs it).

The HOSTNAME must be a known node (a datastore's node name or ``[[coverage.nodes]]``) and the
sender must be inside ``coverage.syslog_allow``; anything else is rejected and counted. Records
become events through the same :class:`PgLogProcessor` as the file tail, with the node's name.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web

from canary.config import Config
from canary.plugins import SourceType
from canary.postgres.lines import LONG_HEAD, LONG_TAIL, LongLine
from canary.postgres.processor import PgLogProcessor, parse_long
from canary.postgres.record import RecordContext, RecordHandler
from canary.typing import Component, SourceContext

log = structlog.get_logger("canary.sources.syslog")

MAX_MESSAGE = 64 * 1024
#: Longest field (statement, context ...) kept of a reassembled entry; the rest is counted, not kept.
MAX_FIELD = 64 * 1024
QUEUE_SIZE = 10_000
#: Fields that canary's functions write as one line of JSON (detail) or hex (hint).
_ONE_LINE = frozenset({"detail", "hint"})
ASSEMBLE_WAIT = 0.5  # seconds a multi-chunk PostgreSQL entry may wait for its next chunk
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_RFC5424 = re.compile(
    rb"^<(\d{1,3})>(\d{1,2}) (\S+) (\S+) (\S+) (\S+) (\S+) (-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (.*))?$", re.S
)
_RFC3164 = re.compile(rb"^<(\d{1,3})>([A-Z][a-z]{2}) ([ \d]\d) (\d\d):(\d\d):(\d\d) (\S+) ([^:\[\s]{1,48})(?:\[(\d+)\])?: ?(.*)$", re.S)
_CHUNK = re.compile(r"^\[(\d+)(?:-(\d+))?\] ?(.*)$", re.S)
_SEVERITY = re.compile(
    r"^(?P<prefix>.*?)(?P<sev>LOG|ERROR|WARNING|FATAL|PANIC|NOTICE|INFO|DEBUG[1-5]?|DETAIL|HINT|STATEMENT|CONTEXT|QUERY|LOCATION):  (?P<text>.*)$",
    re.S,
)
_VERBOSE_CODE = re.compile(r"^([0-9A-Z]{5}): (.*)$", re.S)
_PREFIX_KEYS = {"user": "user", "db": "dbname", "app": "application_name", "client": "remote_host", "host": "remote_host",
                "sqlstate": "state_code", "session": "session_id", "vxid": "vxid", "line": "line_num"}
_PRIMARY = {"LOG", "ERROR", "WARNING", "FATAL", "PANIC", "NOTICE", "INFO", "DEBUG", "DEBUG1", "DEBUG2", "DEBUG3", "DEBUG4", "DEBUG5"}


class SyslogFormatError(ValueError):
    """A syslog message that is neither RFC 5424 nor RFC 3164."""


@dataclass(frozen=True, slots=True)
class SyslogMessage:
    host: str
    app: str
    procid: str
    timestamp: dt.datetime
    msg: str


def parse_syslog(data: bytes, *, now: dt.datetime | None = None) -> SyslogMessage:
    """Parse one RFC 5424 or RFC 3164 message (bytes, without transport framing)."""
    data = data.rstrip(b"\r\n\x00")
    m = _RFC5424.match(data)
    if m:
        if int(m.group(1)) > 191:
            raise SyslogFormatError("PRI out of range")
        ts_raw = m.group(3).decode("ascii", "replace")
        try:
            ts = dt.datetime.fromisoformat(ts_raw.replace("Z", "+00:00")) if ts_raw != "-" else (now or _utcnow())
            # in UTC now: a stamp whose UTC time is outside datetime's years (0001-01-01T00:00+01:00)
            # is refused here, not when the record is built (that killed the worker, and with it syslog)
            ts = ts.astimezone(dt.timezone.utc) if ts.tzinfo else ts.replace(tzinfo=dt.timezone.utc)
        except (ValueError, OverflowError):
            raise SyslogFormatError(f"bad RFC 5424 timestamp {ts_raw[:40]!r}") from None
        msg = m.group(9) or b""
        if msg.startswith(b"\xef\xbb\xbf"):
            msg = msg[3:]
        return SyslogMessage(_nil(m.group(4)), _nil(m.group(5)), _nil(m.group(6)), ts, msg.decode("utf-8", "replace"))
    m = _RFC3164.match(data)
    if m:
        if int(m.group(1)) > 191:
            raise SyslogFormatError("PRI out of range")
        month = _MONTHS.get(m.group(2).decode())
        if month is None:
            raise SyslogFormatError("bad RFC 3164 month")
        ref = now or _utcnow()
        try:
            ts = dt.datetime(ref.year, month, int(m.group(3)), int(m.group(4)), int(m.group(5)), int(m.group(6)),
                             tzinfo=dt.timezone.utc)
        except ValueError:
            raise SyslogFormatError("bad RFC 3164 timestamp") from None
        if ts - ref > dt.timedelta(days=180):  # December message received in January
            ts = ts.replace(year=ref.year - 1)
        return SyslogMessage(m.group(7).decode("ascii", "replace"), m.group(8).decode("ascii", "replace"),
                             (m.group(9) or b"").decode(), ts, m.group(10).decode("utf-8", "replace"))
    raise SyslogFormatError("neither RFC 5424 nor RFC 3164")


def _nil(v: bytes) -> str:
    s = v.decode("ascii", "replace")
    return "" if s == "-" else s


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _pg_ts(ts: dt.datetime) -> str:
    ts = ts.astimezone(dt.timezone.utc)
    return ts.strftime("%Y-%m-%d %H:%M:%S.") + f"{ts.microsecond // 1000:03d} UTC"


def parse_prefix(prefix: str) -> dict[str, Any]:
    """``user=alice,db=shop,app=psql,client=10.0.0.5,sqlstate=CY001`` -> jsonlog field names."""
    out: dict[str, Any] = {}
    for token in re.split(r"[,\s]+", prefix.strip()):
        key, sep, value = token.partition("=")
        if sep and key in _PREFIX_KEYS and value and value not in ("[unknown]", "00000"):
            out[_PREFIX_KEYS[key]] = value
    return out


@dataclass
class _Entry:
    """A PostgreSQL log entry being reassembled from its syslog chunks."""

    host: str
    record: dict[str, Any]
    updated: float
    last_field: str = "message"


@dataclass
class Assembler:
    """Reassembles PostgreSQL's chunked syslog output into jsonlog-shaped records, returned as
    (sending host, record) pairs."""

    pending: dict[tuple[str, str, str], _Entry] = field(default_factory=dict)

    def feed(self, m: SyslogMessage, at: float) -> list[tuple[str, Mapping[str, Any]]]:
        """Records completed by this message (JSON payloads complete at once)."""
        text = m.msg
        chunk = _CHUNK.match(text)
        seq, part = ("", "1")
        if chunk:
            seq, part, text = chunk.group(1), chunk.group(2) or "1", chunk.group(3)
        if text.lstrip().startswith("{"):
            parsed = json.loads(text)
            if not isinstance(parsed, dict):
                raise ValueError("JSON payload is not an object")
            return [(m.host, parsed)]
        out: list[tuple[str, Mapping[str, Any]]] = []
        key = (m.host, m.procid, seq)
        sev = _SEVERITY.match(text)
        if part == "1" or key not in self.pending:
            for k in [k for k in self.pending if k[:2] == key[:2]]:  # a new entry of this backend: the old one is done
                done = self.pending.pop(k)
                out.append((done.host, done.record))
            if not sev or sev.group("sev") not in _PRIMARY:
                raise ValueError("PostgreSQL syslog entry does not start with a severity (LOG:, ERROR: ...)")
            record: dict[str, Any] = {"timestamp": _pg_ts(m.timestamp), "error_severity": sev.group("sev"),
                                      **parse_prefix(sev.group("prefix"))}
            if m.procid.isdigit():
                record["pid"] = int(m.procid)
            body = sev.group("text")
            verbose = _VERBOSE_CODE.match(body)
            if verbose:
                record.setdefault("state_code", verbose.group(1))
                body = verbose.group(2)
            record["message"] = body
            self.pending[key] = _Entry(m.host, record, at)
            return out
        entry = self.pending[key]
        entry.updated = at
        if sev and sev.group("sev") not in _PRIMARY and not sev.group("prefix").strip():
            name = {"DETAIL": "detail", "HINT": "hint", "STATEMENT": "statement", "CONTEXT": "context",
                    "QUERY": "internal_query"}.get(sev.group("sev"))
            entry.last_field = name or "ignored"
            if name:
                entry.record[name] = sev.group("text")[:MAX_FIELD]
        elif entry.last_field != "ignored":  # a continuation: a new line of the field, or a piece of a long line
            value = entry.record.get(entry.last_field, "")
            if len(value) >= MAX_FIELD:
                entry.record["_truncated"] = True
            elif entry.last_field in _ONE_LINE and value.startswith("{"):
                # a JSON detail never holds a raw newline: this is the next piece of a line PostgreSQL cut
                # at PG_SYSLOG_LIMIT bytes (at a space, which starts the piece): join it as it was
                entry.record[entry.last_field] = (value + text)[:MAX_FIELD]
            else:
                entry.record[entry.last_field] = (value + "\n" + text.lstrip("\t"))[:MAX_FIELD]
        return out

    def expire(self, now: float, wait: float = ASSEMBLE_WAIT) -> list[tuple[str, Mapping[str, Any]]]:
        """Entries whose next chunk did not come within ``wait`` seconds are complete."""
        done = [self.pending.pop(k) for k in [k for k, e in self.pending.items() if now - e.updated >= wait]]
        return [(e.host, e.record) for e in done]

    def flush(self) -> list[tuple[str, Mapping[str, Any]]]:
        out: list[tuple[str, Mapping[str, Any]]] = [(e.host, e.record) for e in self.pending.values()]
        self.pending.clear()
        return out


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, source: SyslogSource) -> None:
        self.source = source

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.source.offer(data, str(addr[0]))


class SyslogSource:
    """Component ``syslog``: UDP and/or TCP listeners feeding one processing worker."""

    name = "syslog"

    def __init__(
        self,
        nodes: Mapping[str, str],
        *,
        host: str = "127.0.0.1",
        udp_port: int | None = None,
        tcp_port: int | None = None,
        allow: Sequence[str] = ("127.0.0.0/8", "::1/128"),
        handlers: Sequence[RecordHandler] | None = None,
    ) -> None:
        self.nodes = dict(nodes)  # node name -> datastore
        self.host = host
        self.udp_port = udp_port
        self.tcp_port = tcp_port
        self.allow = [ipaddress.ip_network(n, strict=False) for n in allow]
        self.handlers = handlers
        self.runtime: SourceContext  # set by start()
        self._queue: asyncio.Queue[tuple[bytes | LongLine, str]] = asyncio.Queue(QUEUE_SIZE)
        self._processors: dict[str, PgLogProcessor] = {}
        self._assembler = Assembler()
        self._transport: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._worker: asyncio.Task[None] | None = None
        self._dropped = 0
        self.bound: dict[str, int] = {}

    @classmethod
    def from_config(cls, config: Any) -> SyslogSource:
        cov = config.coverage
        nodes = {ds.node_name: ds.name for ds in config.datastores}
        nodes.update({n.name: n.datastore for n in cov.nodes})
        return cls(nodes, host=cov.syslog_host, udp_port=cov.syslog_udp_port, tcp_port=cov.syslog_tcp_port,
                   allow=cov.syslog_allow)

    def routes(self) -> list[web.RouteDef]:
        return []

    async def start(self, runtime: SourceContext) -> None:
        self.runtime = runtime
        loop = asyncio.get_running_loop()
        self._worker = asyncio.create_task(self._work(), name="syslog-worker")
        if self.udp_port is not None:
            transport, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), local_addr=(self.host, self.udp_port))
            self._transport = transport
            self.bound["udp"] = transport.get_extra_info("sockname")[1]
        if self.tcp_port is not None:
            self._server = await asyncio.start_server(self._tcp, self.host, self.tcp_port, limit=MAX_MESSAGE + 16)
            self.bound["tcp"] = self._server.sockets[0].getsockname()[1]
        log.info("syslog.listening", **self.bound)

    async def stop(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._worker is not None:
            await self._queue.put((b"", ""))  # sentinel: drain what was received, then stop
            await self._worker
            self._worker = None

    # -- intake ---------------------------------------------------------------------------------
    def _allowed(self, peer: str) -> bool:
        try:
            ip = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(ip in n for n in self.allow)

    def offer(self, data: bytes, peer: str) -> None:
        try:
            self._queue.put_nowait((data, peer))
        except asyncio.QueueFull:
            self._dropped += 1
            self.runtime.metrics.rejects.labels(source=self.name, reason="queue_full").inc()

    async def _tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = str((writer.get_extra_info("peername") or ("", 0))[0])
        try:
            while True:
                first = await reader.read(1)
                if not first:
                    break
                data: bytes | LongLine
                if first.isdigit():  # octet counting: LEN SP MSG
                    digits = first + await reader.readuntil(b" ")
                    size = int(digits[:-1])
                    data = await reader.readexactly(size) if size <= MAX_MESSAGE else await _read_long(reader, size)
                else:  # non-transparent framing: LF-terminated
                    data = await _read_line(reader, first)
                await self._queue.put((data, peer))  # TCP: wait (backpressure) instead of dropping
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except (asyncio.LimitOverrunError, ValueError):
            await self.runtime.reject(self.name, "bad_framing", peer)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass

    # -- processing -----------------------------------------------------------------------------
    def _processor(self, node: str) -> PgLogProcessor:
        p = self._processors.get(node)
        if p is None:
            p = PgLogProcessor(self.runtime, RecordContext(self.nodes[node], node, self.name), self.handlers)
            self._processors[node] = p
        return p

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            batch: dict[str, list[Mapping[str, Any]]] = {}
            try:
                item = await asyncio.wait_for(self._queue.get(), ASSEMBLE_WAIT / 2)
                items = [item]
                while len(items) < 1000 and not self._queue.empty():
                    items.append(self._queue.get_nowait())
            except asyncio.TimeoutError:
                items = []
            for data, peer in items:
                if not data and not peer:
                    stopping = True
                    continue
                await self._accept(data, peer, batch, loop.time())
            done = self._assembler.flush() if stopping else self._assembler.expire(loop.time())
            for host, rec in done:
                batch.setdefault(host, []).append(rec)
            for node, records in batch.items():
                await self._commit(node, records)

    async def _accept(self, data: bytes | LongLine, peer: str, batch: dict[str, list[Mapping[str, Any]]], now: float) -> None:
        if not self._allowed(peer):
            await self.runtime.reject(self.name, "peer_not_allowed", peer)
            return
        long = data if isinstance(data, LongLine) else None
        raw = data.head if isinstance(data, LongLine) else data
        if long is not None:  # counted; a jsonlog payload's detection fields are still read
            await self.runtime.reject(self.name, "message_too_long", f"{long.length} bytes | {long.head[:200]!r}")
        try:
            msg = parse_syslog(raw)
        except SyslogFormatError as exc:
            await self.runtime.reject(self.name, "malformed_syslog", f"{exc} | {raw[:300]!r}")
            return
        if msg.host not in self.nodes:
            await self.runtime.reject(self.name, "unknown_node", msg.host[:100])
            return
        self.runtime.metrics.lines.labels(source=self.name).inc()
        try:
            if long is not None and msg.msg.lstrip().startswith("{"):
                done: list[tuple[str, Mapping[str, Any]]] = [
                    (msg.host, parse_long(LongLine(msg.msg.encode("utf-8", "surrogateescape"), long.tail, long.length)))]
            else:
                done = self._assembler.feed(msg, now)
        except (ValueError, OverflowError, RecursionError) as exc:
            await self.runtime.reject(self.name, "malformed_log_line", f"{type(exc).__name__}: {exc} | {msg.msg[:300]}")
            return
        for host, rec in done:
            batch.setdefault(host, []).append(rec)

    async def _commit(self, node: str, records: list[Mapping[str, Any]]) -> None:
        """Commit with retries: a control-store outage delays syslog records, it does not drop them."""
        delay = 0.5
        while True:
            try:
                await self._processor(node).process_records(records)
                return
            except (OSError, asyncio.TimeoutError) as exc:
                log.error("syslog.commit_failed", node=node, error=type(exc).__name__, retry_in=delay)
            except Exception as exc:  # noqa: BLE001 - asyncpg errors: keep the records, retry
                log.error("syslog.commit_failed", node=node, error=type(exc).__name__, retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def _read_long(reader: asyncio.StreamReader, size: int) -> LongLine:
    """An octet-counted message over :data:`MAX_MESSAGE`: read whole, its head and tail kept."""
    head = await reader.readexactly(MAX_MESSAGE)
    tail, left = b"", size - MAX_MESSAGE
    while left:
        chunk = await reader.readexactly(min(left, LONG_HEAD))
        tail, left = (tail + chunk)[-LONG_TAIL:], left - len(chunk)
    return LongLine(head, tail, size, "tcp")


async def _read_line(reader: asyncio.StreamReader, first: bytes) -> bytes | LongLine:
    """An LF-terminated message; one over the stream's limit is read to its end, head and tail kept."""
    try:
        return first + await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError as exc:
        head = first + await reader.readexactly(exc.consumed)
    tail, size = head[-LONG_TAIL:], len(head)
    head = head[:MAX_MESSAGE]
    while True:
        try:
            chunk, done = await reader.readuntil(b"\n"), True
        except asyncio.LimitOverrunError as exc:
            chunk, done = await reader.readexactly(exc.consumed), False
        tail, size = (tail + chunk)[-LONG_TAIL:], size + len(chunk)
        if done:
            return LongLine(head, tail.rstrip(b"\r\n"), size, "tcp")


def _receiver(config: Config) -> list[Component]:
    cov = config.coverage
    return [SyslogSource.from_config(config)] if cov.syslog_udp_port is not None or cov.syslog_tcp_port is not None else []


SOURCE = SourceType("syslog", _receiver)
