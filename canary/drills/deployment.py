"""What a drill runs against.

* The **configured deployment**: the control store and datastores of the configuration; the
  listener (``canary listen``) runs elsewhere and the drill only produces traffic and watches the
  control store for incidents and delivered pages.
* The **demo deployment**, when no datastore is configured: a throw-away PostgreSQL (Debian's
  PostgreSQL 15 when the playbook needs pgaudit or a standby and it is installed, otherwise the
  embedded one), a sample shop, canaries seeded by the real seeder, canary credentials, and the real
  listener in-process - with exactly the sources the playbook's steps need - paging a local receiver
  through a signed webhook. Everything is removed afterwards; the master key is ephemeral.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from aiohttp import web

from canary.config import Config, DatastoreConfig, from_mapping
from canary.credentials.values import CredentialFactory, new_canary
from canary.crypto import Keyring, generate_key, load_key
from canary.drills.playbook import Action, Playbook
from canary.drills.receiver import Receiver
from canary.drills.shop import create_shop
from canary.errors import DrillError
from canary.listener import Listener, default_components
from canary.postgres.audit import configure_object_audit
from canary.postgres.jsonlog import JsonlogSource
from canary.runtime import close_runtime, open_runtime
from canary.seeding.postgres import PostgresSeeder
from canary.store import ControlStore
from canary.store.embedded import PostgresServer, free_port
from canary.store.registry import Registry, location_key

log = structlog.get_logger("canary.drills.deployment")

DEBIAN_PG = Path("/usr/lib/postgresql/15/bin")
PGAUDIT_SO = Path("/usr/lib/postgresql/15/lib/pgaudit.so")
INSIDER_ROLE = "svc_reporting"
DEMO_DATASTORE = "shop"
DEMO_STANDBY = "shop-standby"
DEMO_MAIL_DOMAIN = "mx.canary-drill.test"
DEMO_PHONES = "+15550100000-+15550100049"
CREDENTIAL_TARGET = "config/app.env"
ENV_INSIDER_DSN = "CANARY_DRILL_INSIDER_DSN"


@dataclass
class Target:
    """Everything a step needs: the configuration, the control store, and how to reach the datastore."""

    mode: str  # "demo" | "configured"
    config: Config
    store: ControlStore
    keyring: Keyring
    datastore: DatastoreConfig | None
    insider_dsn: str | None = None  # an ordinary role's DSN (the leftover token)
    standby_dsn: str | None = None
    standby_node: str | None = None
    pg_bin: Path | None = None  # where a pg_dump matching the server lives (None: search PATH)
    receiver: Receiver | None = None
    notes: list[str] = field(default_factory=list)  # how the deployment was set up (for the report)

    @property
    def pool(self) -> asyncpg.Pool:
        return self.store.pool

    @property
    def registry(self) -> Registry:
        return Registry(self.store.pool, self.keyring)


@contextlib.asynccontextmanager
async def configured(config: Config, datastore: str | None = None, insider_dsn: str | None = None) -> AsyncIterator[Target]:
    """The configured deployment (the listener must be running elsewhere)."""
    keyring = Keyring(load_key(config.canary.key_file))
    ds = config.datastore(datastore) if datastore else (config.datastores[0] if config.datastores else None)
    node = next((n for n in config.coverage.nodes if ds is not None and n.datastore == ds.name and n.dsn is not None), None)
    store = ControlStore(config)
    await store.open()
    try:
        yield Target(
            mode="configured", config=config, store=store, keyring=keyring, datastore=ds,
            insider_dsn=insider_dsn or os.environ.get(ENV_INSIDER_DSN) or None,
            standby_dsn=node.dsn.reveal() if node is not None and node.dsn is not None else None,
            standby_node=node.name if node is not None else None,
            notes=[f"configured deployment: datastore {ds.name if ds else '(none)'}; the listener runs separately"],
        )
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def demo(
    playbook: Playbook, *, customers: int = 20_000, canaries: int = 20, drill_sink: bool = False, keep: bool = False
) -> AsyncIterator[Target]:
    """Stand up the demo deployment the playbook needs, run the listener in-process, tear it all down.
    With ``drill_sink`` a drill-only sink ("drills") is configured next to "oncall": drill pages go there."""
    needs = {s.action for s in playbook.steps}
    want_pg15 = bool(needs & {Action.PG_DUMP, Action.REPLICA_READ}) and (DEBIAN_PG / "postgres").exists()
    with_pgaudit = want_pg15 and Action.PG_DUMP in needs and PGAUDIT_SO.exists()
    with_standby = want_pg15 and Action.REPLICA_READ in needs and (DEBIAN_PG / "pg_basebackup").exists()
    tmp = Path(tempfile.mkdtemp(prefix="canary-drill-"))
    settings: dict[str, str | int | bool] = {"log_connections": True}
    if with_pgaudit:
        settings["shared_preload_libraries"] = "pgaudit"
    if with_standby:
        settings.update(wal_level="replica", max_wal_senders=4, hot_standby=True)
    server = PostgresServer(
        tmp / "pg", bin_dir=DEBIAN_PG if want_pg15 else None, settings=settings,
        hba_extra=("host replication postgres 127.0.0.1/32 scram-sha-256",) if with_standby else (),
    )
    standby: PostgresServer | None = None
    notes = [f"demo deployment: {'Debian PostgreSQL 15' if want_pg15 else 'embedded PostgreSQL'} on 127.0.0.1:"]
    try:
        await asyncio.to_thread(server.start)
        notes[0] += str(server.port)
        insider_pw = secrets.token_urlsafe(16)
        admin = await asyncpg.connect(server.dsn(), timeout=10)
        try:
            await admin.execute('CREATE DATABASE "canary"')
            await admin.execute(f'CREATE DATABASE "{DEMO_DATASTORE}"')
            await admin.execute(f"CREATE ROLE {INSIDER_ROLE} LOGIN PASSWORD '{insider_pw}'")
        finally:
            await admin.close()
        shop = await asyncpg.connect(server.dsn(DEMO_DATASTORE), timeout=10)
        try:
            await create_shop(shop, customers)
            await shop.execute(f"GRANT SELECT ON customers, orders TO {INSIDER_ROLE}")
        finally:
            await shop.close()
        notes.append(f"shop: {customers:,} customers; insider role {INSIDER_ROLE} (SELECT only)")
        receiver = Receiver("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
        await receiver.start()
        try:
            if with_standby:
                standby = await asyncio.to_thread(_make_standby, server, tmp / "standby")
                notes.append(f"hot standby {DEMO_STANDBY} (pg_basebackup -R) on 127.0.0.1:{standby.port}")
            cfg = _demo_config(tmp, server, standby, receiver, needs, canaries, drill_sink)
            async with _demo_runtime(cfg, server, standby, receiver, needs, with_pgaudit, notes, insider_pw) as target:
                yield target
        finally:
            await receiver.stop()
    finally:
        if standby is not None:
            await asyncio.to_thread(standby.stop, "immediate")
        await asyncio.to_thread(server.stop, "fast")
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _demo_config(
    tmp: Path, server: PostgresServer, standby: PostgresServer | None, receiver: Receiver, needs: set[Action],
    canaries: int, drill_sink: bool,
) -> Config:
    listener_port = free_port()
    contact: dict[str, Any] = {"mail_domains": [DEMO_MAIL_DOMAIN], "dns_timeout": "300ms"}
    if Action.MAIL in needs:
        contact.update(smtp=True, smtp_port=free_port())
    if Action.SMS in needs:
        contact["twilio_auth_token"] = secrets.token_hex(16)
    honeypot: dict[str, Any] = {}
    if Action.TOKEN in needs:
        honeypot["http"] = {"enabled": True, "port": free_port(), "min_response_time": "10ms"}
    if Action.DSN in needs:
        honeypot["postgres"] = {"enabled": True, "port": free_port()}
    coverage: dict[str, Any] = {}
    if standby is not None:
        coverage["nodes"] = [{"name": DEMO_STANDBY, "datastore": DEMO_DATASTORE, "jsonlog_dir": str(standby.log_dir),
                              "dsn": standby.dsn(DEMO_DATASTORE)}]
    return from_mapping({
        "canary": {"data_dir": str(tmp), "node_name": "drill", "log_format": "console"},
        "control": {"dsn": server.dsn("canary")},
        "listener": {"jsonlog_poll": "50ms", "port": listener_port, "public_url": f"http://127.0.0.1:{listener_port}"},
        "alerting": {"retry_initial": "200ms"},
        "contact": contact,
        "honeypot": honeypot,
        "coverage": coverage,
        "seeding": {"email_domains": [DEMO_MAIL_DOMAIN], "phone_numbers": [DEMO_PHONES]},
        "datastores": [{
            "name": DEMO_DATASTORE, "dsn": server.dsn(DEMO_DATASTORE), "node": "shop-primary",
            "jsonlog_dir": str(server.log_dir), "locale": "ko_KR",
            "tables": [{"table": "public.customers", "count": canaries}],
        }],
        "sinks": [{"name": "oncall", "type": "webhook", "url": receiver.url, "secret": receiver.secret}] + (
            [{"name": "drills", "type": "webhook", "url": receiver.url, "secret": receiver.secret, "drill_only": True}]
            if drill_sink else []),
    })


@contextlib.asynccontextmanager
async def _demo_runtime(
    cfg: Config, server: PostgresServer, standby: PostgresServer | None, receiver: Receiver, needs: set[Action],
    with_pgaudit: bool, notes: list[str], insider_pw: str,
) -> AsyncIterator[Target]:
    keyring = Keyring(generate_key())
    store = ControlStore(cfg)
    await store.open()
    runtime = await open_runtime(cfg, keyring=keyring, store=store)
    components = default_components(runtime)
    if standby is not None and not any(c.name == f"jsonlog:{DEMO_STANDBY}" for c in components):
        components.append(JsonlogSource(DEMO_DATASTORE, DEMO_STANDBY, standby.log_dir, poll=cfg.listener.jsonlog_poll))
    listener = Listener(runtime, components)
    seeder = PostgresSeeder.from_config(cfg, DEMO_DATASTORE, runtime.registry)
    runner: web.AppRunner | None = None
    seeded = False
    try:
        result = await seeder.apply()
        seeded = True
        notes.append(f"seeded {sum(result.added.values())} canary customers (e-mail in {DEMO_MAIL_DOMAIN}, phones {DEMO_PHONES})")
        if needs & {Action.TOKEN, Action.DSN}:
            await _place_credentials(cfg, runtime.registry, keyring, needs)
            notes.append("canary credentials: one API token, one DSN pointing at the PostgreSQL honeypot")
        if with_pgaudit:
            conn = await asyncpg.connect(server.dsn(DEMO_DATASTORE), timeout=10)
            try:
                await configure_object_audit(conn, cfg.coverage.pgaudit_role, ["public.customers"])
            finally:
                await conn.close()
            notes.append(f"pgaudit object audit on public.customers (role {cfg.coverage.pgaudit_role})")
        if standby is not None:
            await _wait_replayed(server, standby)
        runner = web.AppRunner(listener.app(), access_log=None, handle_signals=False)
        await runner.setup()  # starts the listener: pipeline, dispatcher, every component
        await web.TCPSite(runner, cfg.listener.host, cfg.listener.port).start()
        notes.append("listener in-process: " + ", ".join(c.name for c in listener.components) + "; pages to a signed webhook")
        yield Target(
            mode="demo", config=cfg, store=store, keyring=keyring, datastore=cfg.datastore(DEMO_DATASTORE),
            insider_dsn=server.dsn(DEMO_DATASTORE, user=INSIDER_ROLE, password=insider_pw),
            standby_dsn=standby.dsn(DEMO_DATASTORE, user=INSIDER_ROLE, password=insider_pw) if standby else None,
            standby_node=DEMO_STANDBY if standby else None, pg_bin=server.bin_dir, receiver=receiver, notes=notes,
        )
    finally:
        if seeded:
            try:
                await seeder.retire(force=True)
            except Exception as exc:  # noqa: BLE001 - the whole deployment is deleted next anyway
                log.warning("drill.demo_retire_failed", error=f"{type(exc).__name__}: {exc}")
        if runner is not None:
            await runner.cleanup()  # stops the listener and closes the runtime and store
        else:
            await close_runtime(runtime, grace=2)


async def _place_credentials(cfg: Config, registry: Registry, keyring: Keyring, needs: set[Action]) -> None:
    factory = CredentialFactory(keyring)
    creds = []
    if Action.TOKEN in needs:
        creds.append(factory.bearer(prefix="sk_live_"))
    if Action.DSN in needs:
        hp = cfg.honeypot.postgres
        creds.append(factory.pg_dsn(hp.host, hp.port, "reporting"))
    async with registry.pool.acquire() as conn, conn.transaction():
        await registry.add(conn, [
            new_canary(c, DEMO_DATASTORE, f"{DEMO_DATASTORE}/{CREDENTIAL_TARGET}",
                       location={"target": CREDENTIAL_TARGET, "pk": c.cred_id},
                       lookup=location_key(DEMO_DATASTORE, CREDENTIAL_TARGET, c.cred_id))
            for c in creds
        ], None)


def _make_standby(primary: PostgresServer, directory: Path) -> PostgresServer:
    """A streaming hot standby of ``primary`` made with ``pg_basebackup -R`` (blocking: run in a thread)."""
    directory.mkdir(parents=True)
    standby = PostgresServer(directory, bin_dir=DEBIAN_PG, settings={"hot_standby": True, "log_connections": True})
    if standby.run_as:
        entry = pwd.getpwnam(standby.run_as)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
    try:
        subprocess.run(
            [str(DEBIAN_PG / "pg_basebackup"), "-D", str(standby.pgdata), "-R", "-X", "stream", "-c", "fast",
             "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"],
            env={**os.environ, "PGPASSWORD": primary.password}, user=standby.run_as, check=True, timeout=120,
            capture_output=True, cwd=directory,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        stderr = getattr(exc, "stderr", b"") or b""
        raise DrillError(f"pg_basebackup failed: {stderr.decode(errors='replace')[-300:]}") from None
    shutil.copy2(primary.data_dir / "canary-superuser.password", directory / "canary-superuser.password")
    standby.start()
    return standby


async def _wait_replayed(primary: PostgresServer, standby: PostgresServer, timeout: float = 30.0) -> None:
    """Wait until the standby has replayed the primary's current WAL (the seeded canaries and policy)."""
    conn = await asyncpg.connect(primary.dsn(), timeout=10)
    try:
        lsn = await conn.fetchval("SELECT pg_current_wal_lsn()::text")
    finally:
        await conn.close()
    conn = await asyncpg.connect(standby.dsn(), timeout=10)
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not await conn.fetchval("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", lsn):
            if asyncio.get_running_loop().time() > deadline:
                raise DrillError("the demo standby did not replay the seeded canaries in time")
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


def pg_dump_path(target: Target, server_major: int) -> Path | None:
    """A pg_dump client not older than the server (pg_dump refuses newer servers)."""
    candidates = [target.pg_bin / "pg_dump"] if target.pg_bin else []
    candidates.append(Path(f"/usr/lib/postgresql/{server_major}/bin/pg_dump"))
    found = shutil.which("pg_dump")
    if found:
        candidates.append(Path(found))
    for path in candidates:
        if path.exists() and _client_major(path) >= server_major:
            return path
    return None


def _client_major(path: Path) -> int:
    try:
        out = subprocess.run([str(path), "--version"], capture_output=True, timeout=10, check=True).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        return 0
    m = re.search(r"(\d+)(?:\.\d+)?", out)
    return int(m.group(1)) if m else 0
