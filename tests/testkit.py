"""Types and helpers behind the shared fixtures in conftest.py, importable by any test
(``from testkit import MakeConfig``; tests/ is on pytest's ``pythonpath``)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

import asyncpg
from aiohttp import web

from canary.config import Config
from canary.crypto import Keyring
from canary.postgres.read import line_key, line_mac
from canary.runtime import Runtime
from canary.store.embedded import PostgresServer, free_port
from canary.store.registry import NewCanary, location_key

STDOUT_SINK = {"name": "out", "type": "stdout"}


class MakeConfig(Protocol):
    """The ``make_config`` fixture: a validated Config on the test's control store and data dir;
    keyword arguments replace whole top-level sections (``sinks=[...]``, ``listener={...}``)."""

    def __call__(self, **sections: object) -> Config: ...


class OpenRuntime(Protocol):
    """The ``open_test_runtime`` fixture: a runtime for ``config`` (default ``make_config()``) on the
    test's control store, closed when the test ends."""

    async def __call__(self, config: Config | None = None) -> Runtime: ...


class CanaryRows(Protocol):
    """The ``canary_rows`` fixture: registers canaries in the test's control store; ids in order."""

    async def __call__(self, *rows: NewCanary) -> list[int]: ...


def customer_canary(pk: int, *, values: Sequence[tuple[str, str]] = ()) -> NewCanary:
    """A customer canary placed at ``shop/public.customers`` row ``pk``."""
    return NewCanary(kind="customer", datastore="shop", label="shop/public.customers",
                     location={"target": "public.customers", "pk": str(pk)},
                     lookup=location_key("shop", "public.customers", pk), values=values)


async def create_database(server: PostgresServer, prefix: str) -> str:
    """CREATE DATABASE ``<prefix>_<random>`` on ``server``; returns its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def drop_database(server: PostgresServer, name: str) -> None:
    """DROP DATABASE IF EXISTS, disconnecting whoever is still connected."""
    admin = await asyncpg.connect(server.dsn())
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@asynccontextmanager
async def fresh_database(server: PostgresServer, prefix: str = "db") -> AsyncIterator[str]:
    """A new, empty database on ``server`` (its superuser DSN), dropped afterwards."""
    name = await create_database(server, prefix)
    try:
        yield server.dsn(name)
    finally:
        await drop_database(server, name)


#: The master key of test runtimes (the ``keyring`` fixture).
TEST_KEYRING = Keyring(bytes(range(32)))


def signed(record: dict[str, Any], keyring: Keyring = TEST_KEYRING) -> dict[str, Any]:
    """A hand-written CY001 jsonlog record with the MAC the genuine touch function would add."""
    detail = str(record["detail"])
    record["hint"] = line_mac(line_key(keyring, str(json.loads(detail)["ds"])), detail)
    return record


@asynccontextmanager
async def serving(runtime: Runtime, components: Sequence[Any]) -> AsyncIterator[int]:
    """The routes of ``components`` (started on ``runtime``) in one aiohttp app on a free loopback
    port, yielded; the app is cleaned up afterwards."""
    app = web.Application()
    for comp in components:
        await comp.start(runtime)
        app.router.add_routes(comp.routes())
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


def read_record(pk: int | str, pid: int, *, query: str = "select 1", keyring: Keyring = TEST_KEYRING,
                fields: dict[str, object] | None = None) -> dict[str, Any]:
    """A signed CY001 jsonlog record: mallory read canary row ``pk`` of public.customers on shop from
    10.1.2.3 in backend ``pid`` (its detail's time unique per pid); ``fields`` replace the record's own
    after signing."""
    detail = {"v": 1, "ds": "shop", "t": "public.customers", "k": str(pk), "u": "mallory", "q": query,
              "ts": f"2026-11-23T15:24:13.{pid:06d}+00:00", "a": "10.1.2.3", "p": pid}
    record = signed({"timestamp": "2026-11-23 15:24:13.620 UTC", "user": "mallory", "dbname": "shop", "pid": pid,
                     "remote_host": "10.1.2.3", "session_id": f"6b045a9d.{pid:x}", "error_severity": "LOG",
                     "state_code": "CY001", "message": "row access audit", "detail": json.dumps(detail)}, keyring)
    record.update(fields or {})
    return record


async def incidents_when(rt: Runtime, n: int, timeout: float = 10.0, canaries: int = 0) -> list[dict[str, Any]]:
    """Incidents once at least ``n`` exist and (with ``canaries``) each holds that many canaries:
    the tail commits a read's lines in batches, so an incident can be seen before it is complete."""
    deadline = time.monotonic() + timeout
    rows: list[Any] = []
    while time.monotonic() < deadline:
        rows = await rt.pool.fetch("SELECT * FROM incidents ORDER BY id")
        if len(rows) >= n and all(len(r["canary_ids"]) >= canaries for r in rows):
            break
        await asyncio.sleep(0.05)
    return [dict(r) for r in rows]
