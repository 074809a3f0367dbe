"""Shared by the credential-canary tests: a runtime on the test's control store, and registration
of generated credentials as canaries."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from canary.credentials.values import Credential, new_canary
from canary.crypto import Keyring
from canary.runtime import Runtime, open_runtime
from canary.store import ControlStore
from canary.store.registry import location_key


@pytest.fixture
async def runtime(make_config, store: ControlStore, keyring: Keyring) -> AsyncIterator[Runtime]:  # type: ignore[no-untyped-def]
    """A listener runtime (pipeline not started: submits commit directly) on a fresh control store."""
    rt = await open_runtime(make_config(), keyring=keyring, store=store)
    yield rt
    await rt.http.close()


async def register(rt: Runtime, *creds: Credential, table: str = "public.api_tokens") -> list[int]:
    """Register credentials as canaries placed in ``shop/<table>``; returns their ids in order."""
    async with rt.pool.acquire() as conn:
        ids = await rt.registry.add(conn, [
            new_canary(c, "shop", f"shop/{table}", location={"target": table, "pk": c.cred_id},
                       lookup=location_key("shop", table, c.cred_id))
            for c in creds
        ], None)
    return [i for i, _ in ids]
