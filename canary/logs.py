"""structlog configuration: one explicit call from ``main``, never at import.

Every log line is JSON (or console for humans) with ISO timestamps; a redaction processor masks
keys that hold secrets, so a careless ``log.info(..., token=...)`` cannot leak one.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog

_SECRET_KEYS = re.compile(r"(pass(word)?|secret|token|api[_-]?key|authorization|routing_key|master[_-]?key|dsn|signature|credential)", re.I)
_DSN_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]+:)[^@\s]+@")


def redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        value = event_dict[key]
        if key != "event" and _SECRET_KEYS.search(key) and value not in (None, ""):
            event_dict[key] = "**********"
        elif isinstance(value, str) and "://" in value:
            event_dict[key] = _DSN_PASSWORD.sub(r"\1**********@", value)
    return event_dict


class _Current:
    """``sys.stdout`` or ``sys.stderr`` as it is when a line is written (structlog's default is the one
    at its import): a stream replaced since, or closed, must not make logging raise."""

    def __init__(self, name: str) -> None:
        self.name = name

    def write(self, text: str) -> int:
        written: int = getattr(sys, self.name).write(text)
        return written

    def flush(self) -> None:
        getattr(sys, self.name).flush()


def configure(level: str = "info", fmt: str = "json", stream: TextIO | Literal["stdout", "stderr"] | None = None) -> None:
    lvl = getattr(logging, level.upper())
    renderer: Any = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(_Current(stream or "stdout") if stream in (None, "stdout", "stderr")  # type: ignore[arg-type]
                                                    else stream),
        cache_logger_on_first_use=False,
    )
