"""Read detection: a ``CY001`` line written by the touch function when a canary row is returned."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from canary.events import EventKind, event_key
from canary.postgres.protocol import READ_SQLSTATE
from canary.postgres.record import (
    MAX_QUERY,
    Detection,
    RecordContext,
    drill_tag,
    is_export,
    parse_pg_timestamp,
    read_group,
)
from canary.store.registry import location_key


def read_detection(record: Mapping[str, Any], ctx: RecordContext) -> Detection | None:
    """A ``CY001`` line from the touch function: a canary row was returned to a reader."""
    if record.get("state_code") != READ_SQLSTATE:
        return None
    raw = record.get("detail")
    if not isinstance(raw, str):
        raise ValueError("CY001 record without a detail")
    detail = json.loads(raw)
    if not isinstance(detail, dict) or detail.get("v") != 1:
        raise ValueError("CY001 detail is not a version-1 object")
    target, pk = detail.get("t"), detail.get("k")
    if not isinstance(target, str) or pk is None:
        raise ValueError("CY001 detail lacks target or key")
    datastore = str(detail.get("ds") or ctx.datastore)
    query = str(detail.get("q") or record.get("statement") or "")[:MAX_QUERY]
    kind = EventKind.EXPORTED if is_export(query) or record.get("ps") == "COPY" else EventKind.READ
    pid = record.get("leader_pid") or record.get("pid") or detail.get("p")
    stmt_ts = str(detail.get("ts") or "")
    app = detail.get("an") if detail.get("an") is not None else record.get("application_name")
    observed = parse_pg_timestamp(record.get("timestamp"))
    dbname = record.get("dbname") or detail.get("db")  # 'su'/'db': restored in parallel workers, whose lines lack them
    return Detection(
        kind=kind,
        key=event_key("pg-read", ctx.node, pid, stmt_ts, target, pk),
        group=read_group(ctx.node, datastore, detail.get("u") or record.get("user"), kind),
        observed_at=observed,
        lookup=location_key(datastore, target, pk),
        actor={"user": record.get("user") or detail.get("su"), "role": detail.get("u"), "application_name": app},
        origin={
            "client_addr": detail.get("a") or record.get("remote_host"),
            "node": ctx.node,
            "datastore": datastore,
            "database": dbname,
            "pid": pid,
            "backend_type": record.get("backend_type"),
        },
        evidence={
            "query": query,
            "statement_started": stmt_ts,
            "table": target,
            "session_id": record.get("session_id"),
            "vxid": record.get("vxid"),
        },
        drill=drill_tag(app),
    )
