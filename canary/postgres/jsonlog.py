"""Tail a PostgreSQL server's log directory: ``jsonlog`` (``*.json``), ``csvlog`` (``*.csv``) or
``stderr`` (``*.log``, parsed by the server's ``log_line_prefix``), each through its decoder
(:mod:`canary.postgres.formats`).

The logging collector names files by time (``postgresql-%Y%m%d-%H%M%S.json``), so name order is
write order. An entry of stderr or csvlog may span lines: the tail holds it until the next line shows
it complete, or (stderr) until the file has been quiet for :data:`ENTRY_WAIT`; its checkpoint never
passes the first line of an entry not yet committed, and a file's last entry is complete when the next
file begins (the collector writes an entry whole into one file). The tail follows rotation (finishes the old file, moves to the next), notices truncation,
reads the detection fields of over-long lines from their head and tail (counted), and commits a checkpoint (file, inode, offset) only after the events
of the bytes before it are committed. After a crash it re-reads from the checkpoint; event keys make
that idempotent. With no checkpoint it starts at the end of the newest file (at the start of a last
line the server is still writing, so that line is read whole): canary reports what happens from now
on, not history.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from canary.config import Config, DatastoreConfig, NodeConfig
from canary.errors import ConfigError
from canary.plugins import SourceType
from canary.postgres.formats import FILE_PATTERNS, LogFormat, RecordDecoder, completed, record_decoder
from canary.postgres.lines import LineSplitter, LongLine
from canary.postgres.processor import PgLogProcessor
from canary.postgres.record import RecordContext, RecordHandler
from canary.store import checkpoints
from canary.tasks import stop_task
from canary.typing import Component, SourceContext, SourceLag

log = structlog.get_logger("canary.sources.jsonlog")

CHUNK = 4 * 1024 * 1024
#: Seconds a complete stderr entry waits for a further line (DETAIL, STATEMENT ...) when the file is quiet.
ENTRY_WAIT = 0.5


class JsonlogSource:
    def __init__(
        self,
        datastore: str,
        node: str,
        directory: Path,
        *,
        poll: float = 0.1,
        handlers: Sequence[RecordHandler] | None = None,
        pattern: str | None = None,
        from_start: bool = False,
        log_format: str | LogFormat = LogFormat.JSONLOG,
        prefix: str | None = None,
    ) -> None:
        self.format = LogFormat(log_format)
        self.name = f"{self.format}:{node}"  # jsonlog tails keep their name (and checkpoint)
        self.datastore = datastore
        self.node = node
        self.directory = Path(directory)
        self.poll = poll
        self.handlers = tuple(handlers) if handlers is not None else None
        self.pattern = pattern or FILE_PATTERNS[self.format]
        self.from_start = from_start
        self.prefix = prefix
        self.decoder: RecordDecoder = record_decoder(self.format, prefix)  # ValueError: a prefix it cannot parse by
        self._entry_at: int | None = None  # offset of the first line of the entry the decoder holds
        self._quiet_since = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._path: Path | None = None
        self._inode: int | None = None
        self._offset = 0
        self._lines = LineSplitter()
        self._progress_at = time.monotonic()  # last time it advanced or was caught up
        self.runtime: SourceContext  # set by start()
        self.processor: PgLogProcessor | None = None
        self.caught_up = asyncio.Event()

    def routes(self) -> list[web.RouteDef]:
        return []

    async def start(self, runtime: SourceContext) -> None:
        self.runtime = runtime
        self.processor = PgLogProcessor(runtime, RecordContext(self.datastore, self.node, self.name), self.handlers)
        await self._restore()
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        await stop_task(self._task, self._stopping)
        self._task = None

    # -- position ------------------------------------------------------------------------------
    def _files(self) -> list[Path]:
        try:
            return sorted(p for p in self.directory.glob(self.pattern) if p.is_file())
        except OSError:
            return []

    async def _restore(self) -> None:
        pos = await checkpoints.load(self.runtime.pool, self.name)
        if pos is not None:
            path = Path(pos["path"])
            try:
                st = path.stat()
                if st.st_ino == pos["inode"] and st.st_size >= pos["offset"]:
                    self._open(path, int(pos["offset"]))  # the line splitter counts from there too
                    return
            except OSError:
                pass
            # the checkpointed file is gone or replaced: continue with the next newer file
            newer = [p for p in self._files() if p.name > path.name]
            if newer:
                self._open(newer[0], 0)
                return
        files = self._files()
        if files:
            last = files[0] if self.from_start else files[-1]
            self._open(last, 0 if self.from_start else await asyncio.to_thread(_last_line_start, last))

    def _open(self, path: Path, offset: int) -> None:
        self.decoder = record_decoder(self.format, self.prefix)  # an entry never spans files
        self._entry_at = None
        self._path, self._offset = path, offset
        self._lines.reset(offset, path.name)
        try:
            self._inode = path.stat().st_ino
        except OSError:
            self._inode = None

    async def _checkpoint(self) -> None:
        if self._path is None:
            return
        await checkpoints.save(
            self.runtime.pool, self.name,
            {"path": str(self._path), "inode": self._inode, "pattern": self.pattern,
             "offset": self._entry_at if self._entry_at is not None else self._lines.line_start},
        )

    def lag(self) -> SourceLag:
        """Bytes of the log not read yet (rest of the current file and every newer one), and for how long
        the tail has not advanced while behind."""
        if self._path is not None:
            behind = behind_bytes({"path": str(self._path), "offset": self._offset}, self.pattern) or 0
        else:
            behind = sum(p.stat().st_size for p in self._files() if p.exists())
        now = time.monotonic()
        if behind == 0:
            self._progress_at = now
            return SourceLag(0, 0.0)
        return SourceLag(behind, now - self._progress_at)

    # -- loop ----------------------------------------------------------------------------------
    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                progressed = await self.step()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - the store may be down: keep position, retry
                failures += 1
                log.error("jsonlog.step_failed", source=self.name, error=f"{type(exc).__name__}: {exc}", failures=failures)
                progressed = False
                await asyncio.sleep(min(30.0, 0.5 * 2 ** min(failures, 6)))
            if not progressed:
                self.caught_up.set()
                try:
                    await asyncio.wait_for(self._stopping.wait(), self.poll)
                except asyncio.TimeoutError:
                    pass

    async def step(self) -> bool:
        """Read and commit what is new; returns True if any bytes were consumed."""
        if self._path is None:
            files = self._files()
            if not files:
                return False
            self._open(files[0], 0)
        assert self._path is not None
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return await self._advance()
        if st.st_ino != self._inode:  # replaced under the same name
            self._open(self._path, 0)
            st = self._path.stat()
        if st.st_size < self._offset:
            log.warning("jsonlog.truncated", source=self.name, path=str(self._path))
            self._open(self._path, 0)
        if st.st_size == self._offset:
            return await self._quiet() or await self._advance()
        data = await asyncio.to_thread(_read, self._path, self._offset, CHUNK)
        if not data:
            return await self._quiet() or await self._advance()
        first = self._lines.line_start
        lines = self._lines.feed(data)
        for line in lines:
            if isinstance(line, LongLine):  # counted; its detection fields are still read
                await self.runtime.reject(self.name, "line_too_long", f"{line.length} bytes at {line.position} | {line.head[:200]!r}")
        n_lines = len(lines)
        processor = self.processor
        assert processor is not None
        self.runtime.metrics.lines.labels(source=self.name).inc(n_lines)
        restart = self._entry_at if self._entry_at is not None else first
        try:
            if self.format is LogFormat.JSONLOG:
                await processor.process_lines(lines)  # raises if the store is down: position not advanced
            else:
                await self._decode(processor, lines, first)
        except BaseException:
            self._rewind(restart)  # read again from the first line not committed
            raise
        self._offset += len(data)
        self._progress_at = self._quiet_since = time.monotonic()
        await self._checkpoint()
        return True

    async def _decode(self, processor: PgLogProcessor, lines: Sequence[bytes | LongLine], first: int) -> None:
        """Feed ``lines`` (the first at offset ``first``) to the decoder and commit the records it
        completes; a line that belongs to no record is rejected (counted, sampled; one HEALTH event)."""
        records: list[Mapping[str, Any]] = []
        samples: list[str] = []
        pos, entry_at, decoder = first, self._entry_at, self.decoder
        for line in lines:
            try:
                records += decoder.feed(line)
            except (ValueError, UnicodeDecodeError, RecursionError) as exc:
                records += completed(exc)
                samples.append(_sample(line, exc))
            if decoder.entry_lines == 0:
                entry_at = None
            elif decoder.entry_lines == 1 or entry_at is None:
                entry_at = pos  # this line began the entry now held
            pos += (line.length if isinstance(line, LongLine) else len(line)) + 1
        for sample in samples:
            await self.runtime.reject(self.name, "malformed_log_line", sample)
        extra = [processor._unparsable_event(samples)] if samples else []
        await processor.process_records(records, extra)  # raises if the store is down: position not advanced
        self._entry_at = entry_at

    async def _quiet(self) -> bool:
        """A complete entry held while the file is quiet is committed after :data:`ENTRY_WAIT`."""
        if not self.decoder.idle_flush or self.decoder.entry_lines == 0:
            return False
        if time.monotonic() - self._quiet_since < ENTRY_WAIT:
            return False
        await self._flush()
        return True

    async def _flush(self) -> None:
        """Commit the entry the decoder holds (one cut off at the end of its file is rejected)."""
        restart = self._entry_at if self._entry_at is not None else self._lines.line_start
        try:
            records = list(self.decoder.flush())
        except ValueError as exc:  # a csvlog record cut off at the end of its file
            records = completed(exc)
            await self.runtime.reject(self.name, "malformed_log_line", _sample(b"", exc))
        try:
            if records and self.processor is not None:
                await self.processor.process_records(records)
        except BaseException:
            self._rewind(restart)
            raise
        self._entry_at = None
        await self._checkpoint()

    def _rewind(self, offset: int) -> None:
        """Forget what was read past ``offset`` (its events were not committed): read it again."""
        if self._path is not None:
            self._open(self._path, offset)

    async def _advance(self) -> bool:
        """Move to the next file when the current one is finished and a newer one exists (the
        entry still held is complete: the collector writes an entry whole into one file)."""
        if self._path is None:
            return False
        newer = [p for p in self._files() if p.name > self._path.name]
        if not newer:
            return False
        if self._lines.line_start < self._offset:
            log.warning("jsonlog.incomplete_last_line", source=self.name, path=str(self._path))
        if self.decoder.entry_lines:
            await self._flush()
        self._open(newer[0], 0)
        return True


def behind_bytes(position: dict[str, object], pattern: str | None = None) -> int | None:
    """Bytes of a log directory a position has not reached (None: not a file tail's position, or its
    directory cannot be read), from the files as they are now: the tail's lag, and ``canary status``
    (the files of the position's own pattern, ``*.json`` for positions saved before it was kept)."""
    path, offset = position.get("path"), position.get("offset")
    saved = position.get("pattern")
    pattern = pattern or (saved if isinstance(saved, str) and saved else "*.json")
    if not isinstance(path, str) or not isinstance(offset, int):
        return None
    current = Path(path)
    behind = 0
    try:
        behind = max(current.stat().st_size - offset, 0)
    except OSError:
        pass  # rotated away: what is behind is in the newer files
    try:
        newer = [p for p in current.parent.glob(pattern) if p.name > current.name and p.is_file()]
        return behind + sum(p.stat().st_size for p in newer)
    except OSError:
        return None


def _last_line_start(path: Path) -> int:
    """Where the line the server may still be writing at the end of ``path`` begins: the end of the
    file if its last byte ends a line. A tail starting "at the end" starts there, so a long line caught
    half written is read whole instead of its second half being rejected as malformed."""
    with path.open("rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            step = min(pos, 65536)
            fh.seek(pos - step)
            chunk = fh.read(step)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                return pos - step + nl + 1
            pos -= step
        return 0


def _read(path: Path, offset: int, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def _sample(line: bytes | LongLine, exc: BaseException) -> str:
    head = line.head if isinstance(line, LongLine) else line
    where = f"{line.length} bytes at {line.position or '?'} | " if isinstance(line, LongLine) else ""
    return f"{where}{type(exc).__name__}: {exc} | {head[:300].decode('utf-8', 'replace')}"


def tail_for(datastore: str, node: str, spec: DatastoreConfig | NodeConfig, poll: float) -> JsonlogSource:
    """The tail of one configured log directory (its format, prefix and file pattern)."""
    assert spec.log_dir is not None
    try:
        return JsonlogSource(datastore, node, spec.log_dir, poll=poll, pattern=spec.log_pattern or None,
                             log_format=spec.log_format, prefix=spec.log_line_prefix)
    except ValueError as exc:
        raise ConfigError("log_line_prefix", f"node {node!r}: {exc}") from None


def _tails(config: Config) -> list[Component]:
    """A tail per datastore with a ``log_dir`` (``jsonlog_dir``), and per ``[[coverage.nodes]]`` entry
    with one (replicas' own logs)."""
    poll = config.listener.jsonlog_poll
    tails: list[Component] = [tail_for(ds.name, ds.node_name, ds, poll) for ds in config.datastores if ds.log_dir is not None]
    tails += [tail_for(node.datastore, node.name, node, poll) for node in config.coverage.nodes if node.log_dir is not None]
    return tails


SOURCE = SourceType("jsonlog", _tails)
