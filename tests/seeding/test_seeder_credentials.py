"""Credential canaries seeded into datastore tables: realistic formats, derived, recognisable, removable."""

from __future__ import annotations

import asyncio
import json
import random
import re
import string

import asyncpg
import pytest
from seeder_helpers import JsonLog, Shop, checksums
from testkit import MakeConfig

from canary.config import Config
from canary.credentials.values import CREDENTIAL_KIND, github_checksum_ok
from canary.crypto import Keyring
from canary.seeding.postgres import PostgresSeeder
from canary.store import ControlStore
from canary.store.embedded import PostgresServer
from canary.store.registry import Registry, recognise

TABLES = {"public.api_keys": "id", "public.service_tokens": "id", "public.app_settings": "id", "public.customers": "id"}

SECRETS_DDL = r"""
CREATE TABLE public.api_keys (
    id           serial PRIMARY KEY,
    service      text NOT NULL,
    token        text NOT NULL UNIQUE,
    token_prefix text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE public.service_tokens (
    id                bigserial PRIMARY KEY,
    owner             text NOT NULL,
    access_key_id     varchar(20) NOT NULL UNIQUE,
    secret_access_key varchar(40) NOT NULL,
    last4             char(4)
);
CREATE TABLE public.app_settings (id serial PRIMARY KEY, name text NOT NULL UNIQUE, value text NOT NULL);
"""


def _gh(rng: random.Random) -> str:
    """A GitHub-style token from a generator unrelated to canary's (checksum not computed)."""
    return "ghp_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(36))


@pytest.fixture
def shop_rows() -> int:
    return 300


@pytest.fixture
async def shop(shop: Shop) -> Shop:
    """The shared shop (300 ids) plus api_keys, service_tokens and app_settings tables holding real-looking secrets."""
    rng = random.Random(1)
    conn = await asyncpg.connect(shop.dsn)
    try:
        await conn.execute(SECRETS_DDL)
        services = ["billing", "search", "mailer", "reports", "ledger"]
        await conn.executemany(
            "INSERT INTO public.api_keys (id, service, token, token_prefix, created_at) VALUES ($1::int, $2, $3, left($3, 8), now() - $1::int * interval '2 days')",
            [(i, rng.choice(services), _gh(rng)) for i in range(1, 200) if i % 4],
        )
        await conn.executemany(
            "INSERT INTO public.service_tokens (id, owner, access_key_id, secret_access_key, last4) VALUES ($1, $2, $3, $4::text, right($4::text, 4))",
            [(i, rng.choice(services), "AKIA" + "".join(rng.choice(string.ascii_uppercase + "234567") for _ in range(16)),
              "".join(rng.choice(string.ascii_letters + string.digits + "/+") for _ in range(40))) for i in range(1, 60) if i % 3],
        )
        await conn.executemany(
            "INSERT INTO public.app_settings (id, name, value) VALUES ($1, $2, $3)",
            [(i, f"setting_{i}", f"value {i}") for i in range(1, 40) if i % 5],
        )
        for t in ("api_keys", "service_tokens", "app_settings"):
            await conn.execute(f'ALTER TABLE public.{t} OWNER TO "{shop.owner}"')
            await conn.execute(f'GRANT SELECT ON public.{t} TO "{shop.reader}"')
    finally:
        await conn.close()
    return shop


def _num(text: str | None) -> object:
    """Numeric text compared by value (row_to_json renders 183.20 as 183.2)."""
    from decimal import Decimal, InvalidOperation

    try:
        return Decimal(str(text))
    except InvalidOperation:
        return text


def _config(make_config: MakeConfig, dsn: str) -> Config:
    return make_config(datastores=[{"name": "shop", "dsn": dsn, "tables": [
        {"table": "public.api_keys", "count": 3, "credential": "auto"},
        {"table": "public.service_tokens", "count": 2, "credential": "aws_key", "honeypot_only": True},
        {"table": "public.app_settings", "count": 1, "credential": "pg_dsn", "column": "value"},
    ]}])


async def test_credentials_are_realistic_recognisable_and_detected(pg_server: PostgresServer, shop: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """GitHub tokens (format inferred from the table, valid checksum, prefix column consistent), AWS key
    pairs and a PostgreSQL DSN are written, registered as credential canaries, recognised by value,
    and reading their rows raises CY001 like customer canaries."""
    registry = Registry(store.pool, keyring)
    seeder = PostgresSeeder.from_config(_config(make_config, shop.dsn), "shop", registry, seed=4)
    result = await seeder.apply()
    assert result.added == {"public.api_keys": 3, "public.service_tokens": 2, "public.app_settings": 1}
    records = await registry.active("shop")
    assert {r.kind for r in records} == {CREDENTIAL_KIND} and len(records) == 6
    pk_of = {(str(r.location["target"]), str(r.location["pk"])) for r in records}
    conn = await asyncpg.connect(shop.dsn)
    try:
        keys = await conn.fetch("SELECT id::text AS id, token, token_prefix FROM public.api_keys WHERE id = ANY($1::int[])",
                                [int(pk) for t, pk in pk_of if t == "public.api_keys"])
        aws = await conn.fetch("SELECT id::text AS id, access_key_id, secret_access_key, last4 FROM public.service_tokens WHERE id = ANY($1::bigint[])",
                               [int(pk) for t, pk in pk_of if t == "public.service_tokens"])
        dsn = await conn.fetchval("SELECT value FROM public.app_settings WHERE id = $1",
                                  next(int(pk) for t, pk in pk_of if t == "public.app_settings"))
    finally:
        await conn.close()
    assert len(keys) == 3 and all(github_checksum_ok(k["token"]) and k["token_prefix"] == k["token"][:8] for k in keys)
    assert all(a["access_key_id"].startswith("AKIA") and len(a["secret_access_key"]) == 40 and a["last4"] == a["access_key_id"][-4:] for a in aws)
    assert dsn.startswith("postgresql://svc_etl_") and f":{pg_server.port}/" in dsn
    found = await recognise(registry, [("token", k["token"]) for k in keys] + [("aws_key_id", a["access_key_id"]) for a in aws]
                            + [("aws_secret", a["secret_access_key"]) for a in aws] + [("token", "ghp_" + "x" * 36)])
    assert len(found) == 7 and ("token", "ghp_" + "x" * 36) not in found
    log = JsonLog(pg_server)
    log.mark()
    reader = await asyncpg.connect(shop.reader_dsn)
    try:
        await reader.fetch("SELECT * FROM public.api_keys")
        hits = await log.settle(shop.db, reader)
    finally:
        await reader.close()
    assert sorted(h["k"] for h in hits) == sorted(k["id"] for k in keys)
    dump = "\n".join(r["x"] for r in await store.pool.fetch(
        "SELECT x::text AS x FROM canaries x UNION ALL SELECT x::text FROM canary_values x UNION ALL SELECT x::text FROM deployments x"))
    for secret in [k["token"] for k in keys] + [a["secret_access_key"] for a in aws] + [a["access_key_id"] for a in aws] + [dsn]:
        assert secret not in dump


async def test_dsn_role_is_dormant_and_login_attempts_are_logged(pg_server: PostgresServer, shop: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """The pg_dsn canary's role exists with LOGIN but an expired password and no privileges: using the
    DSN fails like a stale credential and the attempt is logged with the role's name; retire drops it."""
    registry = Registry(store.pool, keyring)
    seeder = PostgresSeeder.from_config(_config(make_config, shop.dsn), "shop", registry, seed=8)
    await seeder.apply()
    conn = await asyncpg.connect(shop.dsn)
    try:
        dsn = await conn.fetchval("SELECT value FROM public.app_settings WHERE value LIKE 'postgresql://%'")
        user = dsn.split("://")[1].split(":")[0]
        role = await conn.fetchrow("SELECT rolcanlogin, rolvaliduntil < now() AS expired, rolsuper FROM pg_roles WHERE rolname = $1", user)
        grants = await conn.fetchval("SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = $1", user)
    finally:
        await conn.close()
    assert role["rolcanlogin"] and role["expired"] and not role["rolsuper"] and grants == 0
    log = JsonLog(pg_server)
    log.mark()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(dsn.replace("localhost", "127.0.0.1"))
    await asyncio.sleep(0.3)
    failures = [line for line in log.lines() if line.get("user") == user and line.get("error_severity") == "FATAL"]
    assert failures and "password authentication failed" in failures[0]["message"]
    await seeder.retire()
    conn = await asyncpg.connect(shop.dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_roles WHERE rolname = $1", user) == 0
    finally:
        await conn.close()


async def test_retire_restores_credential_tables(shop: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """Seeding then retiring credential canaries leaves every table byte-identical."""
    before = await checksums(shop.dsn, TABLES)
    seeder = PostgresSeeder.from_config(_config(make_config, shop.dsn), "shop", Registry(store.pool, keyring))
    await seeder.apply()
    assert (await seeder.verify()).ok
    await seeder.retire()
    assert await checksums(shop.dsn, TABLES) == before


async def test_plan_shows_exactly_the_rows_apply_writes(shop: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """Without an explicit seed, plan and apply derive the same rows (keyed by the master key); the
    plan masks credentials and password verifiers."""
    cfg = make_config(datastores=[{"name": "shop", "dsn": shop.dsn, "tables": [
        {"table": "public.customers", "count": 5}, {"table": "public.api_keys", "count": 2, "credential": "auto"},
        {"table": "public.app_settings", "count": 1, "credential": "pg_dsn", "column": "value"}]}])
    registry = Registry(store.pool, keyring)
    plan = await PostgresSeeder.from_config(cfg, "shop", registry).plan()
    await PostgresSeeder.from_config(cfg, "shop", registry).apply()
    conn = await asyncpg.connect(shop.dsn)
    try:
        await conn.execute("SET row_security = off")
        for t in plan.targets:
            for row in t.rows:
                actual = await conn.fetchrow(f"SELECT row_to_json(x)::text AS j FROM {t.target} x WHERE id = $1", int(row.pk))
                got = {k: (None if v is None else str(v)) for k, v in json.loads(actual["j"]).items()}
                for col, planned in row.values.items():
                    if planned is not None and "…" in planned:
                        assert got[col] is not None and got[col].startswith(planned.split("…")[0])
                    elif col not in ("created_at", "updated_at"):
                        same = got[col] == planned or (got[col] is not None and _num(got[col]) == _num(planned))
                        assert same, (t.target, col, got[col], planned)
    finally:
        await conn.close()
    text = json.dumps([[list(r.values.values()) for r in t.rows] for t in plan.targets] + [list(t.statements) for t in plan.targets])
    assert not re.search(r"ghp_[A-Za-z0-9]{36}", text) and "SCRAM-SHA-256$" not in text and "postgresql://" not in text
