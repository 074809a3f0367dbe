"""PostgreSQL's ``stderr`` log format (``log_destination = 'stderr'``, the logging collector's ``.log``
files; the only text format Amazon RDS and Aurora offer besides ``csvlog``): lines that start with the
server's ``log_line_prefix``, parsed back into jsonlog-shaped records.

The prefix is compiled from its escapes as PostgreSQL 15 / 16 document them (``runtime-config-logging``,
``log_line_prefix``; elog.c ``log_line_prefix``): ``%a %u %d %r %h %b %p %P %t %m %n %i %e %c %l %s %v
%x %q %Q %%``, with padding (``%-10u``, ``%10u``); an unknown escape writes nothing, as in the server.
Amazon RDS's default prefix is ``%t:%r:%u@%d:[%p]:`` (RDS User Guide, "Parameters for logging in RDS
for PostgreSQL", https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_LogAccess.Concepts.PostgreSQL.overview.parameter-groups.html),
which writes lines such as ``2026-12-02 02:31:46 UTC:127.0.0.1(38292):app@shop:[13932]:LOG:  msg``.

One entry is several lines (elog.c ``send_message_to_server_log``): ``SEVERITY:  message`` then, each
with the same prefix, ``DETAIL:``, ``HINT:``, ``QUERY:``, ``CONTEXT:``, ``LOCATION:`` (``log_error_verbosity
= verbose``, which also puts the SQLSTATE after the severity: ``LOG:  CY001: ...``), ``BACKTRACE:`` and
``STATEMENT:``, in that order. A newline inside any of them is followed by a TAB (``append_with_tabs``),
so a line that starts with a TAB continues the field before it and text a ``RAISE`` writes can never
start an entry (tests/postgres/test_format_tails.py proves it on a real server).

Values in the prefix are not escaped, and some are chosen by whoever connects: a role or database
name may hold ``:``, ``@``, ``[`` or spaces. A line is parsed every way the prefix allows; a line with
two readings is refused (:class:`AmbiguousLine`), never attributed to either. A role or database name
may even hold a newline: PostgreSQL accepts any name in the startup packet (it cuts it to 63 bytes) and
writes it raw into ``%u`` / ``%d`` before authentication fails, so a client that cannot log in can put
lines of its choosing into the file. What that breaks is refused (a line that does not parse, an
ambiguous one, a field line whose prefix differs from its entry's); the entry right after a broken line
is believed only if it carries canary's MAC (marked ``_suspect``: the read and DDL-trigger handlers
then take who and where from the signed detail), and the login handler requires the role in the
prefix to be the role in the message. Within two 63-byte names a short line can still be forged
whole; ``csvlog`` quotes every value and has none of this (prefer it where the server offers it:
RDS and Aurora do).

Without ``%c`` / ``%l`` a record has no session id or line number: it carries ``_entry_id``, a digest
of its own text (timestamp and pid included), which handlers use in their event keys so that re-reading
a file or a shipper's retry stays idempotent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from canary.postgres.lines import LongLine
from canary.postgres.protocol import HEARTBEAT_MESSAGE, LOG_MESSAGE

#: PostgreSQL's default ``log_line_prefix`` (10 and later).
DEFAULT_PREFIX = "%m [%p] "
#: Severities that start an entry (elog.c ``error_severity``), and the labels of its further lines.
PRIMARY = ("DEBUG", "LOG", "INFO", "NOTICE", "WARNING", "ERROR", "FATAL", "PANIC")
FIELD_LINES = ("DETAIL", "HINT", "QUERY", "CONTEXT", "LOCATION", "BACKTRACE", "STATEMENT")
_FIELD_NAMES = {"DETAIL": "detail", "HINT": "hint", "QUERY": "internal_query", "CONTEXT": "context",
                "LOCATION": "location", "BACKTRACE": "backtrace", "STATEMENT": "statement"}
_SEVERITY = re.compile(r"(" + "|".join(PRIMARY + FIELD_LINES) + r"):  ")
_VERBOSE_CODE = re.compile(r"^([0-9A-Z]{5}): ", re.S)
_LOCATION = re.compile(r"^(?:(?P<func>.+), )?(?P<file>[^,:]+):(?P<line>\d+)$")
#: Longest prefix examined (a value of the prefix is at most a host name of 1025 bytes or a name of 63).
MAX_PREFIX = 4096
#: Longest text kept of one field of an entry; the rest is cut (the record marked ``_truncated``).
MAX_FIELD = 64 * 1024
#: Messages of canary's signed signals: the only entries believed right after a broken line.
SIGNED_MESSAGES = frozenset({LOG_MESSAGE, "ddl audit", HEARTBEAT_MESSAGE})

_TS = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"
_ZONE = r"(?: [A-Za-z0-9+\-]{1,10})?"


@dataclass(frozen=True, slots=True)
class _Escape:
    """One ``%`` escape: the field it fills, the text it can be, how long, and its padding."""

    letter: str
    pad: int  # 0: none; > 0 right-aligned; < 0 left-aligned
    pattern: re.Pattern[str] | None  # None: free text (any characters but a newline)
    longest: int


#: letter -> (jsonlog field, value pattern or None for free text, longest value)
_ESCAPES: dict[str, tuple[str, str | None, int]] = {
    "a": ("application_name", None, 64),
    "u": ("user", None, 64),
    "d": ("dbname", None, 64),
    "b": ("backend_type", None, 100),
    "i": ("ps", None, 256),
    "r": ("remote", r"(?:\[local\]|[^\s()]{1,1025}\(\d{1,5}\))?", 1040),
    "h": ("remote_host", r"(?:\[local\]|[^\s()]{1,1025})?", 1025),
    "p": ("pid", r"\d{1,10}", 10),
    "P": ("leader_pid", r"\d{0,10}", 10),
    "t": ("timestamp", _TS + _ZONE, 40),
    "m": ("timestamp", _TS + r"\.\d{3}" + _ZONE, 44),
    "n": ("timestamp_epoch", r"\d{1,12}\.\d{3}", 16),
    "e": ("state_code", r"[0-9A-Z]{5}", 5),
    "c": ("session_id", r"[0-9a-f]{1,8}\.[0-9a-f]{1,8}", 17),
    "l": ("line_num", r"\d{1,20}", 20),
    "s": ("session_start", _TS + _ZONE, 40),
    "v": ("vxid", r"(?:-?\d{1,10}/\d{1,10})?", 22),
    "x": ("txid", r"\d{1,10}", 10),
    "Q": ("query_id", r"-?\d{1,20}", 21),
}
_INT = {"pid", "leader_pid", "line_num", "txid", "query_id", "remote_port"}


class PrefixError(ValueError):
    """A ``log_line_prefix`` canary cannot parse lines by."""


class MalformedLine(ValueError):
    """A line that belongs to no entry: no prefix and severity, or a field line out of place.
    ``records``: the entries this line showed complete (the one held before it), not lost with it."""

    records: list[Mapping[str, Any]] = []


class AmbiguousLine(MalformedLine):
    """A line whose prefix reads two ways (a value holds the prefix's own separators)."""


@dataclass(frozen=True, slots=True)
class Prefix:
    """A compiled ``log_line_prefix``: :meth:`parse` splits a line into its fields, severity and text."""

    text: str
    tokens: tuple[str | _Escape, ...]
    session_at: int | None  # token index of %q: non-session processes write nothing from there

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(_ESCAPES[t.letter][0] for t in self.tokens if isinstance(t, _Escape))

    def parse(self, line: str) -> tuple[dict[str, Any], str, str]:
        """(fields, severity, text after ``SEVERITY:  ``) of a line that starts an entry or one of its
        field lines. Raises :class:`MalformedLine` when no reading exists, :class:`AmbiguousLine`
        when more than one does."""
        readings: list[tuple[tuple[tuple[str, str], ...], int]] = []
        variants = [self.tokens] if self.session_at is None else [self.tokens, self.tokens[:self.session_at]]
        for tokens in variants:
            for reading in _match(tokens, line, min(len(line), MAX_PREFIX)):
                if reading not in readings:
                    readings.append(reading)
        if len(readings) > 1:
            raise AmbiguousLine("log line prefix reads more than one way")
        if not readings:
            raise MalformedLine("line does not start with the log_line_prefix and a severity")
        values, end = readings[0]
        m = _SEVERITY.match(line, end)
        assert m is not None
        return _fields(values), m.group(1), line[m.end():]


def compile_prefix(prefix: str) -> Prefix:
    """Compile ``log_line_prefix`` (PostgreSQL's own parsing: ``%`` then an optional ``-`` and width,
    then the letter; an unknown letter writes nothing)."""
    tokens: list[str | _Escape] = []
    literal: list[str] = []
    session_at: int | None = None
    i = 0
    while i < len(prefix):
        ch = prefix[i]
        if ch != "%":
            literal.append(ch)
            i += 1
            continue
        m = re.compile(r"%(-?\d*)(.?)", re.S).match(prefix, i)
        assert m is not None
        width, letter = m.group(1), m.group(2)
        i = m.end()
        if letter == "%":
            literal.append("%")
            continue
        if letter == "":
            break  # a lone % at the end writes nothing
        if literal:
            tokens.append("".join(literal))
            literal = []
        if letter == "q":
            if session_at is None:
                session_at = len(tokens)
            continue
        if letter not in _ESCAPES:
            continue
        pad = int(width) if width not in ("", "-") else 0
        if abs(pad) > 1000:
            raise PrefixError(f"padding {pad} in log_line_prefix is not plausible")
        field, pattern, longest = _ESCAPES[letter]
        tokens.append(_Escape(letter, pad, re.compile(pattern) if pattern is not None else None, max(longest, abs(pad))))
    if literal:
        tokens.append("".join(literal))
    for a, b in zip(tokens, tokens[1:]):
        if isinstance(a, _Escape) and isinstance(b, _Escape) and a.pattern is None and b.pattern is None:
            raise PrefixError(f"%{a.letter}%{b.letter}: two free-text escapes with nothing between them cannot be told apart")
    return Prefix(prefix, tuple(tokens), session_at)


#: Escapes PostgreSQL writes only for a process with a client (``MyProcPort``): the client escapes are
#: empty exactly in processes without one, and then so are the session escapes.
_CLIENT = frozenset("rh")
_SESSION = frozenset("uda")


def _match(tokens: tuple[str | _Escape, ...], line: str, limit: int) -> list[tuple[tuple[tuple[str, str], ...], int]]:
    """Every way ``tokens`` and then ``SEVERITY:  `` match the start of ``line``: the (letter, value)
    pairs and where the severity starts. Two readings are enough to refuse the line, so the search
    stops at two. A reading PostgreSQL cannot write is none: no client address but a user, database
    or application (``::1`` after ``%t:`` would otherwise read as an empty ``%r`` and a user ``:1(5)``)."""
    memo: dict[tuple[int, int, int], list[tuple[tuple[tuple[str, str], ...], int]]] = {}

    def go(i: int, p: int, state: int) -> list[tuple[tuple[tuple[str, str], ...], int]]:
        # state: 0 nothing known, 1 no client, 2 a session value seen
        key = (i, p, state)
        if key in memo:
            return memo[key]
        res: list[tuple[tuple[tuple[str, str], ...], int]] = []
        if i == len(tokens):
            if _SEVERITY.match(line, p):
                res = [((), p)]
        else:
            tok = tokens[i]
            if isinstance(tok, str):
                if line.startswith(tok, p):
                    res = go(i + 1, p + len(tok), state)
            else:
                for end in _ends(tok, tokens[i + 1] if i + 1 < len(tokens) else None, line, p, limit):
                    value = _unpad(line[p:end], tok.pad)
                    after = state
                    if tok.letter in _CLIENT and value == "":
                        if state == 2:
                            continue
                        after = 1
                    elif tok.letter in _SESSION and value not in ("", "[unknown]"):
                        if state == 1:
                            continue
                        after = 2
                    for rest, stop in go(i + 1, end, after):
                        res.append((((tok.letter, value),) + rest, stop))
                    if len(res) > 1:
                        break
        memo[key] = res
        return res

    return go(0, 0, 0)


def _ends(tok: _Escape, after: str | _Escape | None, line: str, p: int, limit: int) -> list[int]:
    """Where the value of ``tok`` starting at ``p`` may end."""
    stop = min(limit, p + tok.longest)
    if isinstance(after, str):  # the next literal must follow: only where it occurs
        candidates = []
        q = line.find(after, p, stop + len(after))
        while q >= 0:
            candidates.append(q)
            q = line.find(after, q + 1, stop + len(after))
    else:
        candidates = list(range(p, stop + 1))
    if tok.pattern is None:
        return [e for e in candidates if _padded_ok(line[p:e], tok.pad)]
    return [e for e in candidates if _value_ok(tok, line[p:e])]


def _padded_ok(raw: str, pad: int) -> bool:
    return len(raw) >= abs(pad)


def _value_ok(tok: _Escape, raw: str) -> bool:
    if len(raw) < abs(tok.pad):
        return False
    value = _unpad(raw, tok.pad)
    assert tok.pattern is not None
    return tok.pattern.fullmatch(value) is not None


def _unpad(raw: str, pad: int) -> str:
    if pad > 0 and len(raw) == pad:
        return raw.lstrip(" ")
    if pad < 0 and len(raw) == -pad:
        return raw.rstrip(" ")
    return raw


def _fields(values: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """jsonlog's fields from the prefix values: numbers as numbers, PostgreSQL's placeholders
    (``[unknown]``, empty) left out."""
    out: dict[str, Any] = {}
    for letter, value in values:
        field = _ESCAPES[letter][0]
        if value in ("", "[unknown]"):
            continue
        if field == "remote":
            m = re.fullmatch(r"(.*?)(?:\((\d{1,5})\))?", value)
            if m and m.group(1):
                out["remote_host"] = m.group(1)
                if m.group(2):
                    out["remote_port"] = int(m.group(2))
        elif field == "timestamp_epoch":
            out["timestamp"] = _epoch(value)
        elif field in _INT:
            out[field] = int(value)
        else:
            out[field] = value
    if out.get("leader_pid") == 0:
        out.pop("leader_pid")
    return out


def _epoch(value: str) -> str:
    try:
        at = dt.datetime.fromtimestamp(float(value), dt.timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise MalformedLine("epoch time stamp out of range") from None
    return at.strftime("%Y-%m-%d %H:%M:%S.") + f"{at.microsecond // 1000:03d} UTC"


class StderrDecoder:
    """``log_destination = 'stderr'``: assembles each entry's lines into one record.

    An entry is held until its next line shows it is complete (a new entry, a broken line) or
    :meth:`flush`. ``entry_lines`` says how many lines the held entry spans (a file tail checkpoints
    at the first of them). A line that raises carries the entry it completed (``records``)."""

    idle_flush = True

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = compile_prefix(prefix if prefix is not None else DEFAULT_PREFIX)
        self._entry: dict[str, Any] | None = None
        self._head: dict[str, Any] = {}  # the entry's prefix fields (line_num aside)
        self._field = "message"
        self._order = -1
        self._raw: list[str] = []
        self._line_num: int | None = None
        self._ready: list[Mapping[str, Any]] = []
        self._broken = False  # the previous line was broken: the next entry is suspect
        self._skipping = False  # inside a refused entry: its field and continuation lines go with it
        self.entry_lines = 0

    def feed(self, line: bytes | str | LongLine) -> list[Mapping[str, Any]]:
        text, truncated = _text(line)
        if text.startswith("\t"):
            if self._skipping:
                self.entry_lines = 0
                return self._take()
            if self._entry is None:
                self._broken = self._skipping = True
                raise self._error("continuation line outside any entry")
            self._append(self._field, "\n" + text[1:], truncated)
            self.entry_lines += 1
            return self._take()
        if not text.strip():
            return self._take()
        try:
            fields, severity, rest = self.prefix.parse(text)
        except MalformedLine as exc:
            self._finish()
            self._broken = self._skipping = True  # its continuation and field lines go with it
            exc.records = self._take()
            raise
        if severity in FIELD_LINES:
            return self._field_line(fields, severity, rest, truncated)
        self._finish()
        suspect, self._broken = self._broken, False
        record: dict[str, Any] = {**fields, "error_severity": severity, "message": rest[:MAX_FIELD]}
        if suspect:
            if rest.split(": ", 1)[-1] not in SIGNED_MESSAGES and rest not in SIGNED_MESSAGES:
                self._skipping = True
                raise self._error("entry right after a broken line is not a signed signal: refused")
            record["_suspect"] = True
        if truncated or len(rest) > MAX_FIELD:
            record["_truncated"] = True
        self._skipping = False
        self._entry, self._head, self._field, self._order = record, _identity(fields), "message", -1
        self._raw = [text]
        self._line_num = record.get("line_num")
        self.entry_lines = 1
        return self._take()

    def _field_line(self, fields: dict[str, Any], severity: str, rest: str, truncated: bool) -> list[Mapping[str, Any]]:
        if self._skipping:
            return self._take()
        order = FIELD_LINES.index(severity)
        if self._entry is None or _identity(fields) != self._head or order <= self._order or not self._next_line(fields):
            self._finish()
            self._broken = self._skipping = True
            raise self._error(f"{severity} line that continues no entry")
        self._order, self._field = order, _FIELD_NAMES[severity]
        self._raw.append(severity)
        self._append(self._field, rest, truncated)
        self.entry_lines += 1
        return self._take()

    def _next_line(self, fields: Mapping[str, Any]) -> bool:
        """With ``%l`` every line of an entry counts one more (elog.c numbers each prefix it writes)."""
        if self._line_num is None or "line_num" not in fields:
            return True
        num = fields["line_num"]
        if num != self._line_num + 1:
            return False
        self._line_num = num
        return True

    def _append(self, field: str, text: str, truncated: bool) -> None:
        assert self._entry is not None
        self._raw.append(text)
        value = str(self._entry.get(field, "")) + text
        if len(value) > MAX_FIELD or truncated:
            self._entry["_truncated"] = True
        self._entry[field] = value[:MAX_FIELD]

    def _finish(self) -> None:
        entry, self._entry = self._entry, None
        self.entry_lines = 0
        if entry is None:
            return
        verbose = "location" in entry
        if verbose:
            m = _VERBOSE_CODE.match(str(entry.get("message", "")))
            if m:
                entry.setdefault("state_code", m.group(1))
                entry["message"] = entry["message"][m.end():]
            loc = _LOCATION.match(str(entry.pop("location")))
            if loc:
                if loc.group("func"):
                    entry["func_name"] = loc.group("func")
                entry["file_name"] = loc.group("file")
                entry["file_line_num"] = int(loc.group("line")[:9])
        if "session_id" not in entry or "line_num" not in entry:
            entry["_entry_id"] = hashlib.sha256("\n".join(self._raw).encode("utf-8", "surrogatepass")).hexdigest()[:32]
        self._ready.append(entry)

    def _error(self, why: str) -> MalformedLine:
        exc = MalformedLine(why)
        exc.records = self._take()
        return exc

    def _take(self) -> list[Mapping[str, Any]]:
        out, self._ready = self._ready, []
        return out

    def flush(self) -> list[Mapping[str, Any]]:
        self._finish()
        self._skipping = False
        return self._take()


def _identity(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if k != "line_num"}


def _text(line: bytes | str | LongLine) -> tuple[str, bool]:
    if isinstance(line, LongLine):
        return line.head.decode("utf-8", "replace"), True
    if isinstance(line, bytes):
        line = line.decode("utf-8", "replace")
    return line.rstrip("\r"), False
