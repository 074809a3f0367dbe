"""Shared fixtures: real PostgreSQL servers (never mocks), fresh databases per test, keys, a config
factory, runtimes on the test's control store, canary registration and the seeder tests' shop.

Their types and the plain helpers behind them (fresh_database, customer_canary) live in testkit.py."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import structlog
from hypothesis import settings as hypothesis_settings
from seeder_helpers import Shop, shop_database
from testkit import TEST_KEYRING, CanaryRows, MakeConfig, OpenRuntime, fresh_database

from canary.config import Config, from_mapping
from canary.crypto import Keyring
from canary.runtime import Runtime, close_runtime, open_runtime
from canary.store import ControlStore
from canary.store.embedded import PostgresServer
from canary.store.registry import NewCanary, Registry

DEBIAN_PG15 = Path("/usr/lib/postgresql/15/bin")


def _start(tmp: Path, bin_dir: Path | None, **settings: str | int) -> PostgresServer:
    server = PostgresServer(tmp, bin_dir=bin_dir, settings={"log_connections": True, **settings})
    server.start()
    return server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """The embedded PostgreSQL (pgserver's binaries), configured for jsonlog, for the whole session; prepared
    transactions allowed (a test holds the event feed back with one)."""
    tmp = Path(tempfile.mkdtemp(prefix="canary-pg-"))
    server = _start(tmp, None, max_prepared_transactions=4)
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


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Each test starts with structlog's defaults: a test that runs the CLI configures logging (level,
    renderer) globally, and must not change what a later test's captured logs hold."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture
async def control_dsn(pg_server: PostgresServer) -> AsyncIterator[str]:
    """A fresh, empty control database."""
    async with fresh_database(pg_server, "ctl") as dsn:
        yield dsn


@pytest.fixture
async def target_dsn(pg_server: PostgresServer) -> AsyncIterator[str]:
    """A fresh, empty datastore database to seed into."""
    async with fresh_database(pg_server, "shop") as dsn:
        yield dsn


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp client session for sinks under test, closed after."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def keyring() -> Keyring:
    """The master key of every test runtime (fixed, so hand-written detection lines can be signed)."""
    return TEST_KEYRING


@pytest.fixture
def data_dir() -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="canary-data-"))
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def make_config(control_dsn: str, data_dir: Path) -> MakeConfig:
    """Build a validated Config whose control store is the test's fresh database."""

    def make(**sections: object) -> Config:
        data: dict[str, object] = {"canary": {"data_dir": str(data_dir)}, "control": {"dsn": control_dsn}}
        data.update(sections)
        return from_mapping(data)

    return make


@pytest.fixture
async def store(make_config: MakeConfig) -> AsyncIterator[ControlStore]:
    """The control store on the test's fresh control database, opened (migrated)."""
    s = ControlStore(make_config())
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def open_test_runtime(store: ControlStore, keyring: Keyring, make_config: MakeConfig) -> AsyncIterator[OpenRuntime]:
    """Factory: ``await open_test_runtime(config)`` opens a runtime on the test's control store (default
    config: ``make_config()``; pipeline and dispatcher not started); each is closed after the test."""
    opened: list[Runtime] = []

    async def open_(config: Config | None = None) -> Runtime:
        rt = await open_runtime(make_config() if config is None else config, keyring=keyring, store=store)
        opened.append(rt)
        return rt

    yield open_
    for rt in reversed(opened):
        await close_runtime(rt, grace=1)


@pytest.fixture
async def runtime(open_test_runtime: OpenRuntime) -> Runtime:
    """A listener runtime on the fresh control store, no sinks; the pipeline is not started, so submits
    commit directly. Modules that need sinks, canaries or a running pipeline override this fixture and
    build on ``open_test_runtime`` / ``canary_rows``."""
    return await open_test_runtime()


@pytest.fixture
def canary_rows(store: ControlStore, keyring: Keyring) -> CanaryRows:
    """Factory: ``await canary_rows(NewCanary(...), ...)`` registers canaries (no deployment) in the
    test's control store and returns their ids in order."""
    registry = Registry(store.pool, keyring)

    async def add(*rows: NewCanary) -> list[int]:
        async with store.pool.acquire() as conn:
            ids = await registry.add(conn, rows, None)
        return [i for i, _ in ids]

    return add


@pytest.fixture
def shop_rows() -> int:
    """How many customer ids the ``shop`` fixture spans (about 80% used); a module overrides it for a smaller shop."""
    return 2000


@pytest.fixture
async def shop(pg_server: PostgresServer, target_dsn: str, shop_rows: int) -> AsyncIterator[Shop]:
    """The seeder tests' shop in the fresh target database: customers owned by a non-superuser and an
    ordinary login reader (seeder_helpers.shop_database)."""
    async with shop_database(pg_server, target_dsn, rows=shop_rows) as s:
        yield s


os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())

# The suite gates on a fixed set of examples, so a failure is reproducible and a green commit stays
# green; CANARY_FUZZ_EXPLORE=1 draws new examples (run it to hunt, then pin what it finds with @example).
hypothesis_settings.register_profile("gate", derandomize=True, deadline=None, database=None)
hypothesis_settings.register_profile("explore", deadline=None, database=None)
hypothesis_settings.load_profile("explore" if os.environ.get("CANARY_FUZZ_EXPLORE") else "gate")
