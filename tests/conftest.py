"""Shared fixtures: real PostgreSQL servers (never mocks), fresh databases per test, keys."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from hypothesis import settings as hypothesis_settings

from canary.config import Config, from_mapping
from canary.crypto import Keyring, generate_key
from canary.store import ControlStore
from canary.store.embedded import PostgresServer

DEBIAN_PG15 = Path("/usr/lib/postgresql/15/bin")


def _start(tmp: Path, bin_dir: Path | None, **settings: object) -> PostgresServer:
    server = PostgresServer(tmp, bin_dir=bin_dir, settings={"log_connections": True, **settings})  # type: ignore[arg-type]
    server.start()
    return server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """The embedded PostgreSQL (pgserver's binaries), configured for jsonlog, for the whole session."""
    tmp = Path(tempfile.mkdtemp(prefix="canary-pg-"))
    server = _start(tmp, None)
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def pg15_server() -> Iterator[PostgresServer]:
    """Debian's PostgreSQL 15 (contrib; pgaudit when installed). Skipped where it is not installed."""
    if not (DEBIAN_PG15 / "postgres").exists():
        pytest.skip("Debian PostgreSQL 15 server is not installed (/usr/lib/postgresql/15/bin)")
    tmp = Path(tempfile.mkdtemp(prefix="canary-pg15-"))
    libs = "pgaudit" if Path("/usr/lib/postgresql/15/lib/pgaudit.so").exists() else ""
    server = _start(tmp, DEBIAN_PG15, shared_preload_libraries=libs)
    yield server
    server.destroy()


async def _fresh_db(server: PostgresServer, prefix: str) -> AsyncIterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield server.dsn(name)
    admin = await asyncpg.connect(server.dsn())
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def control_dsn(pg_server: PostgresServer) -> AsyncIterator[str]:
    """A fresh, empty control database."""
    async for dsn in _fresh_db(pg_server, "ctl"):
        yield dsn


@pytest.fixture
async def target_dsn(pg_server: PostgresServer) -> AsyncIterator[str]:
    """A fresh, empty datastore database to seed into."""
    async for dsn in _fresh_db(pg_server, "shop"):
        yield dsn


@pytest.fixture
def keyring() -> Keyring:
    return Keyring(generate_key())


@pytest.fixture
def data_dir() -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="canary-data-"))
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def make_config(control_dsn: str, data_dir: Path):  # type: ignore[no-untyped-def]
    """Build a validated Config whose control store is the test's fresh database."""

    def make(**sections: object) -> Config:
        data: dict[str, object] = {"canary": {"data_dir": str(data_dir)}, "control": {"dsn": control_dsn}}
        data.update(sections)
        return from_mapping(data)

    return make


@pytest.fixture
async def store(make_config) -> AsyncIterator[ControlStore]:  # type: ignore[no-untyped-def]
    s = ControlStore(make_config())
    await s.open()
    yield s
    await s.close()


os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())

# CI gates on a fixed set of examples (a failure there is reproducible); local runs keep exploring.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")
