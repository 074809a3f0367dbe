"""Credential canaries in token stores that keep only a hash of each token (session tokens, refresh
tokens, API keys): the row gets the hash in the table's own form, the presentable token is kept
encrypted in the registry and recognised when presented, and so is the stored hash itself."""

from __future__ import annotations

import base64
import hashlib
import secrets

import asyncpg
import pytest
from seeder_helpers import Shop, checksums
from testkit import MakeConfig

from canary.crypto import Keyring
from canary.seeding.credentials import Storage, infer_storage, stored_form
from canary.seeding.postgres import PostgresSeeder
from canary.store import ControlStore
from canary.store.registry import Registry, recognise

DDL = """
CREATE TABLE public.sessions (
    id          bigserial PRIMARY KEY,
    user_id     integer NOT NULL,
    token_hash  char(64) NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE public.refresh_tokens (
    id          bigserial PRIMARY KEY,
    account     text NOT NULL,
    token_digest text NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL
);
"""


@pytest.fixture
def shop_rows() -> int:
    return 120


@pytest.fixture
async def shop(shop: Shop) -> Shop:
    conn = await asyncpg.connect(shop.dsn)
    try:
        await conn.execute(DDL)
        await conn.executemany(
            "INSERT INTO public.sessions (id, user_id, token_hash, created_at) VALUES ($1::bigint, $2, $3, now() - $1::int * interval '1 hour')",
            [(i, i % 37 + 1, hashlib.sha256(secrets.token_urlsafe(32).encode()).hexdigest()) for i in range(1, 150) if i % 3])
        await conn.executemany(
            "INSERT INTO public.refresh_tokens (id, account, token_digest, expires_at) VALUES ($1::bigint, $2, $3, now() + $1::int * interval '1 day')",
            [(i, f"acct-{i % 11}", base64.b64encode(hashlib.sha256(secrets.token_bytes(24)).digest()).decode())
             for i in range(1, 90) if i % 4])
        for t in ("sessions", "refresh_tokens"):
            await conn.execute(f'ALTER TABLE public.{t} OWNER TO "{shop.owner}"')
    finally:
        await conn.close()
    return shop


def test_storage_is_inferred_from_the_column_and_hashes_are_the_tables_form() -> None:
    hexes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(10)]
    b64 = [base64.b64encode(hashlib.sha256(str(i).encode()).digest()).decode() for i in range(10)]
    assert infer_storage(hexes) is Storage.SHA256_HEX
    assert infer_storage([h.upper() for h in hexes]) is Storage.SHA256_HEX
    assert infer_storage(b64) is Storage.SHA256_BASE64
    assert infer_storage([hashlib.sha512(b"x").hexdigest()] * 3) is Storage.SHA512_HEX
    assert infer_storage(["ghp_" + "a" * 36] * 5 + hexes[:2]) is Storage.PLAIN  # most are tokens as presented
    assert infer_storage([]) is Storage.PLAIN
    assert stored_form("tok", Storage.SHA256_HEX) == hashlib.sha256(b"tok").hexdigest()
    assert stored_form("tok", Storage.SHA256_BASE64) == base64.b64encode(hashlib.sha256(b"tok").digest()).decode()
    assert stored_form("tok", Storage.PLAIN) == "tok"


async def test_hashed_token_stores_get_hashes_and_the_tokens_fire(shop: Shop, make_config: MakeConfig, store: ControlStore,
                                                                  keyring: Keyring) -> None:
    tables = {"public.sessions": "id", "public.refresh_tokens": "id"}
    before = await checksums(shop.dsn, tables)
    cfg = make_config(datastores=[{"name": "shop", "dsn": shop.dsn, "tables": [
        {"table": "public.sessions", "count": 3, "credential": "auto"},
        {"table": "public.refresh_tokens", "count": 2, "credential": "bearer", "column": "token_digest"},
    ]}])
    registry = Registry(store.pool, keyring)
    seeder = PostgresSeeder.from_config(cfg, "shop", registry, seed=7)
    plan = await seeder.plan()
    assert any("keeps sha256_hex of each token" in w for w in plan.warnings)
    assert any("keeps sha256_base64 of each token" in w for w in plan.warnings)
    await seeder.apply()
    records = await registry.active("shop")
    revealed = await registry.reveal([r.id for r in records])
    conn = await asyncpg.connect(shop.dsn)
    try:
        for r in records:
            location, values = revealed[r.id]
            target, pk = str(location["target"]), int(location["pk"])
            tokens = [v for k, v in values if k == "token"]
            if target == "public.sessions":
                stored = await conn.fetchval("SELECT token_hash FROM public.sessions WHERE id = $1", pk)
                presentable = next(t for t in tokens if t != stored)
                assert stored == hashlib.sha256(presentable.encode()).hexdigest()
            else:
                stored = await conn.fetchval("SELECT token_digest FROM public.refresh_tokens WHERE id = $1", pk)
                presentable = next(t for t in tokens if t != stored)
                assert stored == base64.b64encode(hashlib.sha256(presentable.encode()).digest()).decode()
            assert presentable not in (stored, "")
            # the token as the thief presents it, and the stored hash presented as if it were one, both fire
            found = await recognise(registry, [("token", presentable), ("token", stored)])
            assert {m.canary_id for m in found.values()} == {r.id}
    finally:
        await conn.close()
    # the control store never holds a token or a hash in clear
    dump = "\n".join(x["x"] for x in await store.pool.fetch(
        "SELECT x::text AS x FROM canaries x UNION ALL SELECT x::text FROM canary_values x"))
    for r in records:
        for _, v in revealed[r.id][1]:
            assert v not in dump
    await seeder.retire()
    assert await checksums(shop.dsn, tables) == before
