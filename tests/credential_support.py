"""Shared by the credential-canary tests: registration of generated credentials as canaries (the
runtime they register into is conftest's ``runtime`` fixture)."""

from __future__ import annotations

from canary.credentials.values import Credential, new_canary
from canary.runtime import Runtime
from canary.store.registry import location_key


async def register(rt: Runtime, *creds: Credential, table: str = "public.api_tokens") -> list[int]:
    """Register credentials as canaries placed in ``shop/<table>``; returns their ids in order."""
    async with rt.pool.acquire() as conn:
        ids = await rt.registry.add(conn, [
            new_canary(c, "shop", f"shop/{table}", location={"target": table, "pk": c.cred_id},
                       lookup=location_key("shop", table, c.cred_id))
            for c in creds
        ], None)
    return [i for i, _ in ids]
