"""Splitting a byte stream of log lines, whatever their length.

A line longer than a transport keeps whole is not dropped: it becomes a :class:`LongLine` holding its
head and tail. jsonlog writes the server's fields and the detection fields (message, detail, hint)
before the unbounded ones (context, statement), and application_name, backend_type and leader_pid
after them, so padding a query never hides a read (:func:`canary.postgres.processor.parse_long`).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Lines up to this length are kept whole.
MAX_LINE = 1024 * 1024
#: Of a longer line, the head and tail kept.
LONG_HEAD = 64 * 1024
LONG_TAIL = 4 * 1024


@dataclass(frozen=True, slots=True)
class LongLine:
    """A log line longer than :data:`MAX_LINE`: its head and tail, its length, and where it began."""

    head: bytes
    tail: bytes
    length: int
    position: str = ""
    #: how many ``"`` the whole line held (csvlog: whether the line ends inside a quoted field)
    quotes: int = 0


class _LongBuilder:
    """An over-long line arriving in chunks."""

    def __init__(self, start: int) -> None:
        self.start = start
        self.head = b""
        self.tail = b""
        self.length = 0
        self.quotes = 0

    def add(self, data: bytes) -> None:
        self.quotes += data.count(b'"')
        if len(self.head) < LONG_HEAD:
            self.head += data[:LONG_HEAD - len(self.head)]
        self.tail = (self.tail + data[-LONG_TAIL:])[-LONG_TAIL:]
        self.length += len(data)


class LineSplitter:
    """Feeds of bytes in, complete lines out (``\\r`` before ``\\n`` kept); memory stays bounded by
    :data:`MAX_LINE` whatever the input."""

    def __init__(self, where: str = "") -> None:
        self.where = where
        self.partial = b""
        self._long: _LongBuilder | None = None
        self._consumed = 0  # stream offset of the end of what was fed

    def reset(self, offset: int = 0, where: str | None = None) -> None:
        self.partial, self._long, self._consumed = b"", None, offset
        if where is not None:
            self.where = where

    @property
    def line_start(self) -> int:
        """Stream offset of the first byte not yet returned in a complete line."""
        return self._long.start if self._long is not None else self._consumed - len(self.partial)

    def feed(self, data: bytes) -> list[bytes | LongLine]:
        buf = self.partial + data
        base = self._consumed - len(self.partial)
        self._consumed += len(data)
        lines: list[bytes | LongLine] = []
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            if self._long is not None:
                self._long.add(buf[start:nl])
                lines.append(self._finish(self._long))
                self._long = None
            elif nl - start > MAX_LINE:
                lines.append(LongLine(buf[start:start + LONG_HEAD], buf[max(start, nl - LONG_TAIL):nl], nl - start,
                                      f"{self.where}:{base + start}", buf.count(b'"', start, nl)))
            else:
                lines.append(buf[start:nl])
            start = nl + 1
        rest = buf[start:]
        if self._long is None and len(rest) > MAX_LINE:
            self._long = _LongBuilder(base + start)
        if self._long is not None:
            self._long.add(rest)
            rest = b""
        self.partial = rest
        return lines

    def finish(self) -> list[bytes | LongLine]:
        """The last line of a stream that does not end in a newline."""
        if self._long is not None:
            out: list[bytes | LongLine] = [self._finish(self._long)]
        else:
            out = [self.partial] if self.partial else []
        self.partial, self._long = b"", None
        return out

    def _finish(self, b: _LongBuilder) -> LongLine:
        return LongLine(b.head, b.tail, b.length, f"{self.where}:{b.start}", b.quotes)
