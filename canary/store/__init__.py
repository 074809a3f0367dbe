"""The control store: canary's own PostgreSQL database (registry, events, incidents, outbox).

With ``control.dsn`` set, canary uses that server. Without it, canary runs an embedded PostgreSQL
under ``<data_dir>/control`` and stops it again on close if (and only if) it started it.
Migrations are versioned SQL files applied in order under an advisory lock, so several listeners
can start at once.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import re
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from canary.config import Config
from canary.errors import StoreError
from canary.store.embedded import PostgresServer

log = structlog.get_logger("canary.store")

CONTROL_DB = "canary"
_MIGRATION = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_ID = 0x63616E61  # "cana"


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration shipped with canary, in order."""
    out = []
    for entry in importlib.resources.files("canary.store").joinpath("migrations").iterdir():
        m = _MIGRATION.match(entry.name)
        if m:
            out.append((int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    out.sort()
    versions = [v for v, _, _ in out]
    if len(versions) != len(set(versions)):
        raise StoreError(f"duplicate migration versions: {versions}")
    return out


async def _init_connection(conn: asyncpg.Connection) -> None:
    import json

    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply pending migrations; returns the versions applied."""
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migrations():
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)
            applied.append(version)
    if applied:
        log.info("control_store.migrated", versions=applied)
    return applied


class ControlStore:
    """Owns the connection pool to the control database (and the embedded server, if any)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.server: PostgresServer | None = None
        self._started_server = False
        self._pool: asyncpg.Pool | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("control store is not open")
        return self._pool

    @property
    def embedded(self) -> bool:
        return self.config.control.dsn is None

    def embedded_server(self) -> PostgresServer:
        emb = self.config.control.embedded
        return PostgresServer(self.config.canary.data_dir / "control", bin_dir=emb.bin_dir, port=emb.port)

    async def _dsn(self) -> str:
        if self.config.control.dsn is not None:
            return self.config.control.dsn.reveal()
        server = self.embedded_server()
        was_running = await asyncio.to_thread(server.is_running)
        await asyncio.to_thread(server.start)
        self.server, self._started_server = server, not was_running
        admin = await self._connect(server.dsn("postgres"))
        try:
            exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", CONTROL_DB)
            if not exists:
                await admin.execute(f'CREATE DATABASE "{CONTROL_DB}"')
        finally:
            await admin.close()
        return server.dsn(CONTROL_DB)

    @staticmethod
    async def _connect(dsn: str) -> asyncpg.Connection:
        try:
            return await asyncpg.connect(dsn, timeout=10)
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot connect to the control store: {describe_error(exc)}") from None

    async def open(self, *, migrate_schema: bool = True) -> ControlStore:
        dsn = await self._dsn()
        try:
            self._pool = await asyncpg.create_pool(
                dsn,
                min_size=self.config.control.pool_min,
                max_size=max(self.config.control.pool_max, self.config.control.pool_min),
                init=_init_connection,
                timeout=10,
                command_timeout=60,
            )
        except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
            raise StoreError(f"cannot connect to the control store: {describe_error(exc)}") from None
        if migrate_schema:
            async with self.pool.acquire() as conn:
                await migrate(conn)
        return self

    async def close(self, *, stop_embedded: bool | None = None) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        stop = self._started_server if stop_embedded is None else stop_embedded
        if self.server is not None and stop:
            await asyncio.to_thread(self.server.stop)

    async def __aenter__(self) -> ControlStore:
        return await self.open()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


def describe_error(exc: BaseException) -> str:
    """Describe a connection error without echoing the DSN (which may hold a password)."""
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def data_path(config: Config, *parts: str) -> Path:
    return config.canary.data_dir.joinpath(*parts)
