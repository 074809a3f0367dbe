"""A managed PostgreSQL as the tests see it: Debian's PostgreSQL 15 with pgaudit preloaded, whose
server-level settings the test's superuser sets as a provider's parameter group / database flags would,
and an admin role made like the providers' (NOSUPERUSER, CREATEROLE, CREATEDB, member of the provider's
group role and of the predefined roles the provider grants) that owns the shop. canary connects only as
that admin."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from seeder_helpers import Shop, shop_database
from testkit import fresh_database

from canary.store.embedded import PostgresServer

PG15 = Path("/usr/lib/postgresql/15/bin")
PGAUDIT = Path("/usr/lib/postgresql/15/lib/pgaudit.so")
#: provider -> (its admin group role, the predefined roles its admin holds here). The providers' pages say the
#: admin is NOSUPERUSER CREATEROLE CREATEDB in the provider's group role, not which predefined roles it holds:
#: the RDS-like admin gets the full set (pg_monitor, so pg_read_all_settings / pg_read_all_stats, with
#: pg_read_all_data, pg_write_all_data, pg_signal_backend); the Cloud SQL-like one lacks pg_monitor and
#: pg_read_all_settings, so it cannot read shared_preload_libraries (the case where it differs).
PROVIDERS = {
    "rds": ("rds_superuser", ("pg_read_all_data", "pg_write_all_data", "pg_monitor", "pg_signal_backend",
                              "pg_read_all_settings")),
    "cloudsql": ("cloudsqlsuperuser", ("pg_read_all_data", "pg_write_all_data", "pg_signal_backend")),
}
#: what a provider's parameter group holds for canary (pgaudit.role per provider: RDS allows only rds_pgaudit)
AUDIT_ROLE = {"rds": "rds_pgaudit", "cloudsql": "canary_auditor"}
SETTINGS = {"pgaudit.log": "ddl, role", "pgaudit.log_parameter": "off", "log_connections": "on"}


@contextmanager
def managed_server(settings: Mapping[str, str | int | bool] | None = None) -> Iterator[PostgresServer]:
    """A PostgreSQL 15 server of its own (its settings change per test), pgaudit preloaded, jsonlog;
    ``settings`` add to or replace those at start (``log_destination``, ``log_line_prefix`` ...)."""
    if not (PG15 / "postgres").exists() or not PGAUDIT.exists():
        pytest.skip("Debian PostgreSQL 15 with pgaudit is not installed")
    server = PostgresServer(Path(tempfile.mkdtemp(prefix="canary-managed-")), bin_dir=PG15,
                            settings={"log_connections": True, "shared_preload_libraries": "pgaudit", **(settings or {})})
    server.start()
    try:
        yield server
    finally:
        server.destroy()


async def parameter_group(server: PostgresServer, **settings: str | None) -> None:
    """Set (None: reset) server-level settings as the provider's console would: ALTER SYSTEM by the
    superuser (never by canary), reload, and wait until a new session sees them."""
    su = await asyncpg.connect(server.dsn())
    try:
        for name, value in settings.items():
            key = name.replace("__", ".")
            if value is None:
                await su.execute(f"ALTER SYSTEM RESET {key}")
            else:
                await su.execute(f"ALTER SYSTEM SET {key} = '{value}'")
        await su.execute("SELECT pg_reload_conf()")
    finally:
        await su.close()
    for _ in range(100):
        probe = await asyncpg.connect(server.dsn())
        try:
            seen = {k: await probe.fetchval("SELECT setting FROM pg_settings WHERE name = $1", k.replace("__", "."))
                    for k in settings}
        finally:
            await probe.close()
        if all(v is None or seen[k] == v for k, v in settings.items()):
            return
        await asyncio.sleep(0.05)


@dataclass(frozen=True)
class AdminShop:
    shop: Shop  # shop.dsn: the test's superuser (checksums); canary never uses it
    provider: str
    admin: str
    admin_dsn: str
    audit_role: str


@asynccontextmanager
async def admin_shop(server: PostgresServer, provider: str, rows: int = 300) -> AsyncIterator[AdminShop]:
    """The shop database owned (database and customers table) by a provider-like admin role."""
    group, predefined = PROVIDERS[provider]
    admin, password = f"admin_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    async with fresh_database(server, "shop") as dsn, shop_database(server, dsn, rows=rows) as shop:
        su = await asyncpg.connect(server.dsn())
        try:
            if not await su.fetchval("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", group):
                await su.execute(f"CREATE ROLE {group} NOLOGIN")
            await su.execute(f"CREATE ROLE {admin} LOGIN PASSWORD '{password}' NOSUPERUSER CREATEROLE CREATEDB")
            await su.execute(f"GRANT {group}, {', '.join(predefined)} TO {admin}")
            await su.execute(f'ALTER DATABASE "{shop.db}" OWNER TO {admin}')
        finally:
            await su.close()
        db = await asyncpg.connect(dsn)
        try:
            await db.execute(f"ALTER TABLE public.customers OWNER TO {admin}")
            await db.execute("CREATE EXTENSION IF NOT EXISTS pgaudit")  # the provider's allow-list lets its admin do this
        finally:
            await db.close()
        try:
            yield AdminShop(shop, provider, admin, server.dsn(shop.db, user=admin, password=password), AUDIT_ROLE[provider])
        finally:
            db = await asyncpg.connect(dsn)
            try:
                await db.execute(f"REASSIGN OWNED BY {admin} TO postgres")
                await db.execute(f"DROP OWNED BY {admin}")
                for role in (AUDIT_ROLE[provider],):
                    if await db.fetchval("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", role):
                        await db.execute(f"DROP OWNED BY {role}")
            finally:
                await db.close()
            su = await asyncpg.connect(server.dsn())
            try:
                await su.execute(f'ALTER DATABASE "{shop.db}" OWNER TO postgres')
                await su.execute(f"DROP ROLE IF EXISTS {admin}")
                await su.execute(f"DROP ROLE IF EXISTS {AUDIT_ROLE[provider]}")
                await su.execute(f"DROP ROLE IF EXISTS {group}")  # another provider's test must not detect this one
            finally:
                await su.close()
