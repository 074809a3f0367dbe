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

from canary.config import Config
from canary.crypto import Keyring
from canary.postgres.read import line_key, line_mac
from canary.runtime import Runtime
from canary.store.embedded import PostgresServer
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
