"""Client TLS for the non-HTTP sinks (SMTP, syslog over TLS)."""

from __future__ import annotations

import functools
import ssl
from pathlib import Path


@functools.cache
def client_tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying client context (system CAs, or ``ca_file``), built once per CA file.
    Reading CA files is blocking I/O: call it through ``asyncio.to_thread``."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
