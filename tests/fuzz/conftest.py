"""Fixtures of the fuzz modules (the harness itself is fuzz_harness.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog
from fuzz_harness import ACTIVE, structlog_recorder


@pytest.fixture(autouse=True)
def _quiet_recording_logs(_fresh_logging: None) -> Iterator[None]:
    """After conftest's reset: structlog events of the fuzzed servers are recorded (errors as escapes)
    and dropped, so thousands of rejected inputs do not flood the output."""
    sink = ACTIVE[-1].escapes if ACTIVE else []
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                                    structlog_recorder(sink)])
    yield
