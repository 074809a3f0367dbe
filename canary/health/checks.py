"""Scheduled checks with their own alerts: canary notices when its canaries or its detection stop
working. Run by :mod:`canary.scheduler`; each check returns events, the scheduler submits them.

* :func:`check_canaries`: every active canary present and unmodified, the detection policy and
  function in place, row-level security on (the seeder's ``verify``), pgaudit object audit intact.
  Findings are TAMPER / CRITICAL; one incident per (datastore, target, problem) while it persists.
* Heartbeat (dead man's switch): :func:`emit_heartbeat` makes a node log a ``CY009`` line carrying
  a random nonce; :func:`heartbeat_detection` (a record handler) turns it into a HEALTH/INFO event on
  whatever log path the node uses; if that event is not committed within ``heartbeat_timeout`` the
  node's log ingestion is dead and a HEALTH / ERROR event is raised.
* :func:`check_webhook`: our mail / phone webhook URLs answer (any status below 500) in time.

canary's own activity (heartbeats, and the seeder's verify reads that pgaudit logs) must not page.
:class:`SelfActivity` is a pipeline suppression rule: it suppresses (records, never drops) a heartbeat
only when its nonce carries canary's MAC (so every listener of a cluster recognises the leader's). The verify's reads are recorded as suppressed
because the seeder registers its session (:mod:`canary.store.sessions`), never by application name.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import asyncpg
import structlog

from canary import plugins
from canary.config import DatastoreConfig
from canary.crypto import Keyring, same
from canary.errors import DatastoreError
from canary.events import DetectionEvent, EventKind, Severity, event_key
from canary.postgres import managed
from canary.postgres.audit import audit_state
from canary.postgres.heartbeat import emit_heartbeat
from canary.store import detection_objects, registry
from canary.typing import SourceContext

log = structlog.get_logger("canary.checks")

HEARTBEAT_RULE = "canary-heartbeat"
NONCE_MEMORY = dt.timedelta(hours=6)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# -- canary's own activity -------------------------------------------------------------------------

class SelfActivity:
    """Heartbeat nonces canary issued (a pipeline suppression rule), recognised by any listener.

    A nonce is its issue time, a random part and a MAC over both and the node under a key derived
    from the master key: every listener process sharing the control store (scale-out) recognises the
    heartbeats the leader issued, with nothing stored, and nobody without the key can make a forged
    ``CY009`` line pass for one. It is recognised for ``remember`` after it was issued, so heartbeats
    that arrive late (after an ingestion stall recovers) are still ours."""

    PURPOSE = "heartbeat-nonce"

    def __init__(self, keyring: Keyring, remember: dt.timedelta = NONCE_MEMORY) -> None:
        self._keyring = keyring
        self.remember = remember

    def _mac(self, node: str, head: str) -> str:
        return self._keyring.blind_index(f"{node}\x00{head}", self.PURPOSE)[:8].hex()

    def new_nonce(self, node: str) -> str:
        """A fresh nonce for ``node`` (32 hex digits: 8 of time, 8 random, 16 of MAC)."""
        head = f"{int(_now().timestamp()) & 0xFFFFFFFF:08x}{secrets.token_hex(4)}"
        return head + self._mac(node, head)

    def issued(self, nonce: object, node: object) -> bool:
        """Whether canary issued ``nonce`` for ``node`` within ``remember`` (and not in the future)."""
        if not isinstance(nonce, str) or not isinstance(node, str) or len(nonce) != 32:
            return False
        try:
            stamp = int(nonce[:8], 16)
        except ValueError:
            return False
        age = _now().timestamp() - stamp
        if not -300 <= age <= self.remember.total_seconds():
            return False
        return same(nonce[16:], self._mac(node, nonce[:16].lower()))

    def __call__(self, event: DetectionEvent) -> str | None:
        if event.kind is EventKind.HEALTH and event.group.startswith("heartbeat:"):
            return HEARTBEAT_RULE if self.issued(event.evidence.get("nonce"), event.origin.get("node")) else None
        return None


# -- heartbeat --------------------------------------------------------------------------------------

async def heartbeat_arrived(pool: asyncpg.Pool, nonce: str, node: str) -> bool:
    return bool(await pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM events WHERE kind = 'health' AND group_key = $1 AND evidence->>'nonce' = $2)",
        f"heartbeat:{node}", nonce,
    ))


async def check_heartbeat(runtime: SourceContext, activity: SelfActivity, node: str, datastore: str, dsn: str,
                          timeout: float, poll: float = 0.05) -> list[DetectionEvent]:
    """Emit a heartbeat on ``node`` and wait for it to be ingested; an event when it is not."""
    nonce = activity.new_nonce(node)
    started = _now()
    try:
        await emit_heartbeat(dsn, nonce, timeout=timeout)
    except DatastoreError as exc:
        return [_health(node, datastore, "heartbeat_not_sent", started, Severity.ERROR, {"error": exc.message})]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await heartbeat_arrived(runtime.pool, nonce, node):
            return []
        await asyncio.sleep(poll)
    detail = f"a heartbeat logged on {node} was not ingested within {timeout:g}s"
    return [_health(node, datastore, "log_ingestion_stalled", started, Severity.ERROR,
                    {"timeout_seconds": timeout, "detail": detail})]


def _health(node: str, datastore: str, problem: str, at: dt.datetime, severity: Severity,
            evidence: Mapping[str, Any]) -> DetectionEvent:
    return DetectionEvent(
        kind=EventKind.HEALTH, source="checks", key=event_key("check", problem, node, at.isoformat()),
        group=f"deadman:{node}:{problem}", canary_id=None, observed_at=at, severity=severity,
        origin={"node": node, "datastore": datastore}, evidence={"problem": problem, **evidence},
    )


# -- canaries and detection objects -----------------------------------------------------------------

async def check_canaries(runtime: SourceContext, ds: DatastoreConfig, audit_role: str,
                         *, timeout: float = 60.0) -> list[DetectionEvent]:
    """Verify one datastore's canaries and detection objects; TAMPER events for what is wrong."""
    at = _now()
    seeder = plugins.seeder_for(ds, runtime.registry)
    try:
        report = await asyncio.wait_for(seeder.verify(), timeout)
    except (DatastoreError, asyncio.TimeoutError) as exc:
        msg = exc.message if isinstance(exc, DatastoreError) else f"verify timed out after {timeout:g}s"
        return [_health(ds.node_name, ds.name, "verify_failed", at, Severity.ERROR, {"error": msg})]
    uids = [f.canary_uid for f in report.findings if f.canary_uid != "-"]
    ids = await registry.ids_by_uid(runtime.pool, uids)
    events = [
        _tamper(ds, f.target, f.problem, at, ids.get(f.canary_uid), f.canary_uid if f.canary_uid != "-" else None)
        for f in report.findings
    ]
    events.extend(await _check_audit(runtime, ds, audit_role, at, timeout))
    return events


async def _check_audit(runtime: SourceContext, ds: DatastoreConfig, role: str, at: dt.datetime, timeout: float) -> list[DetectionEvent]:
    """pgaudit object audit still covers every canary table (only where it was configured), and the server
    settings detection relies on are as they must be: one HEALTH / ERROR event per required setting that
    is not (a managed server's come from the provider's console; the event says where)."""
    targets = await detection_objects.targets(runtime.pool, ds.name)
    if not targets:
        return []
    configured = bool(await runtime.pool.fetchval(
        "SELECT EXISTS (SELECT 1 FROM coverage_audit WHERE datastore = $1 AND role = $2)", ds.name, role))
    try:
        conn = await asyncpg.connect(ds.dsn.reveal(), timeout=timeout, command_timeout=timeout)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return [_health(ds.node_name, ds.name, "datastore_unreachable", at, Severity.ERROR, {"error": type(exc).__name__})]
    try:
        state = await audit_state(conn, role)
        settings, _ = await managed.requirements(conn, await managed.server_role(conn, ds.provider), role)
    finally:
        await conn.close()
    out = [_health(ds.node_name, ds.name, f"server_setting:{s.setting}", at, Severity.ERROR,
                   {"setting": s.setting, "value": s.value, "current": s.current, "where": s.where, "why": s.why})
           for s in settings if s.required]
    if configured:
        out.extend(_tamper(ds, "pgaudit", p, at, None, None) for p in state.problems(role, targets))
    return out


def _tamper(ds: DatastoreConfig, target: str, problem: str, at: dt.datetime, canary_id: int | None,
            uid: str | None) -> DetectionEvent:
    return DetectionEvent(
        kind=EventKind.TAMPER, source="checks",
        key=event_key("check", ds.name, target, problem, uid, at.isoformat()),
        group=f"tamper-check:{ds.name}:{target}:{problem.split(':')[0]}", canary_id=canary_id, observed_at=at,
        severity=Severity.CRITICAL, origin={"node": ds.node_name, "datastore": ds.name},
        evidence={"problem": problem, "target": target, "canary_uid": uid, "signal": "scheduled_check"},
    )


async def audited_tables(pool: asyncpg.Pool, datastore: str) -> list[str]:
    """The relations object audit was configured on for ``datastore`` (empty: never configured)."""
    tables = await pool.fetchval("SELECT tables FROM coverage_audit WHERE datastore = $1", datastore)
    return list(tables or [])


async def record_audit_configured(pool: asyncpg.Pool, datastore: str, role: str, tables: Sequence[str]) -> None:
    """Remember that object audit was configured here, so its later absence is tampering."""
    await pool.execute(
        """INSERT INTO coverage_audit (datastore, role, tables) VALUES ($1, $2, $3)
           ON CONFLICT (datastore) DO UPDATE SET role = EXCLUDED.role, tables = EXCLUDED.tables, configured_at = now()""",
        datastore, role, list(tables),
    )


# -- webhooks -----------------------------------------------------------------------------------------

async def check_webhook(http: aiohttp.ClientSession, url: str, timeout: float) -> list[DetectionEvent]:
    """Our inbound webhook answers (< 500) within ``timeout``; a HEALTH / WARNING event otherwise."""
    at = _now()
    try:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False) as resp:
            if resp.status < 500:
                return []
            problem, detail = "webhook_error", f"HTTP {resp.status}"
    except asyncio.TimeoutError:
        problem, detail = "webhook_timeout", f"no answer within {timeout:g}s"
    except aiohttp.ClientError as exc:
        problem, detail = "webhook_unreachable", type(exc).__name__
    shown = url.split("?", 1)[0]  # a query string may carry a token
    return [DetectionEvent(
        kind=EventKind.HEALTH, source="checks", key=event_key("check", problem, shown, at.isoformat()),
        group=f"webhook:{shown}", canary_id=None, observed_at=at, severity=Severity.WARNING,
        origin={"url": shown}, evidence={"problem": problem, "detail": detail},
    )]
