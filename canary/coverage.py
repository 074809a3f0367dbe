"""The listener components of issue 7 ("coverage beyond RLS") that the configuration asks for:

* a jsonlog tail per ``[[coverage.nodes]]`` entry with a ``jsonlog_dir`` (replicas' own logs),
* the syslog receiver when ``coverage.syslog_udp_port`` / ``syslog_tcp_port`` is set,
* the HTTP ingest endpoint when ``coverage.ingest_token`` is set,
* the scheduler when ``coverage.checks`` is on or export locations are watched.

pgaudit, DDL-tamper and heartbeat lines need no component: their record handlers are part of
:func:`canary.sources.pglog.default_handlers`, so every log path recognises them.
"""

from __future__ import annotations

from typing import Any

from canary.typing import Component


def components(config: Any) -> list[Component]:
    from canary.sources.jsonlog import JsonlogSource

    cov = config.coverage
    comps: list[Component] = []
    for node in cov.nodes:
        if node.jsonlog_dir is not None:
            comps.append(JsonlogSource(node.datastore, node.name, node.jsonlog_dir, poll=config.listener.jsonlog_poll))
    if cov.syslog_udp_port is not None or cov.syslog_tcp_port is not None:
        from canary.sources.syslog_ingest import SyslogSource

        comps.append(SyslogSource.from_config(config))
    if cov.ingest_token is not None:
        from canary.sources.http_ingest import HttpIngest

        comps.append(HttpIngest.from_config(config))
    if cov.checks or cov.watch_dirs or cov.buckets:
        from canary.scheduler import CoverageScheduler

        comps.append(CoverageScheduler())
    return comps
