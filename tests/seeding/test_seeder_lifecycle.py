"""Seeding lifecycle: child rows along foreign keys, contact pools, encrypted registry, key rotation, CLI."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from seeder_helpers import ALL_SHOP_TABLES, JsonLog, Shop, add_orders, checksums
from testkit import MakeConfig

from canary.config import Config
from canary.crypto import Keyring, generate_key
from canary.seeding.postgres import PostgresSeeder
from canary.seeding.rotation import rotate
from canary.store import ControlStore
from canary.store.embedded import PostgresServer
from canary.store.registry import LOCATION, Registry, location_key

COUNT = 15
POOL = {"email_domains": ["mail.northwind-post.com", "inbox.quillmail.net"], "phone_numbers": ["+15550100000-+15550100199"]}


@pytest.fixture
async def shop(shop: Shop) -> Shop:
    """The shared shop plus orders, order items, addresses and products referencing its customers."""
    await add_orders(shop.dsn, shop.owner)
    return shop


def _config(make_config: MakeConfig, dsn: str, count: int = COUNT, **seeding: object) -> Config:
    return make_config(
        datastores=[{"name": "shop", "dsn": dsn, "tables": [{"table": "public.customers", "count": count}]}],
        seeding={**POOL, **seeding},
    )


async def test_child_rows_follow_foreign_keys_and_retire_exactly(shop: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """Canary customers get orders, order items and addresses (counts like real customers', every
    constraint and trigger honoured, order dates after signup); retire restores every table exactly."""
    before = await checksums(shop.dsn, ALL_SHOP_TABLES)
    cfg = _config(make_config, shop.dsn)
    seeder = PostgresSeeder.from_config(cfg, "shop", Registry(store.pool, keyring), seed=11)
    result = await seeder.apply()
    assert result.added == {"public.customers": COUNT}
    assert set(result.child_rows) == {"public.orders", "public.order_items", "public.addresses"}
    pks = [int(r.location["pk"]) for r in await seeder.registry.active("shop")]
    conn = await asyncpg.connect(shop.dsn)
    try:
        orders = await conn.fetch(
            "SELECT o.*, c.created_at AS signup FROM public.orders o JOIN public.customers c ON c.id = o.customer_id"
            " WHERE o.customer_id = ANY($1::bigint[])", pks,
        )
        items = await conn.fetchval(
            "SELECT count(*) FROM public.order_items i JOIN public.orders o ON o.id = i.order_id WHERE o.customer_id = ANY($1::bigint[])", pks
        )
        max_real_order = await conn.fetchval("SELECT max(id) FROM public.orders WHERE NOT (customer_id = ANY($1::bigint[]))", pks)
    finally:
        await conn.close()
    assert len(orders) == result.child_rows["public.orders"] and items == result.child_rows["public.order_items"]
    assert 0.5 * COUNT <= len(orders) <= 6 * COUNT  # real customers have 0-3 orders
    assert all(o["created_at"] >= o["signup"] for o in orders)
    assert all(o["status"] in ("placed", "shipped", "delivered", "returned") for o in orders)
    assert sum(1 for o in orders if o["id"] < max_real_order) >= len(orders) // 2  # interleaved, not appended
    assert (await seeder.verify()).ok
    retired = await seeder.retire()
    assert retired.child_rows == result.child_rows
    assert await checksums(shop.dsn, ALL_SHOP_TABLES) == before


async def test_rows_written_for_canaries_are_tripwires_too(shop: Shop, make_config: MakeConfig, store: ControlStore,
                                                            keyring: Keyring, pg_server: PostgresServer) -> None:
    """Orders, order items (a composite key) and addresses written for canary customers fire when read
    (an export of orders alone is caught), name their canary customer through the registry, and real
    ones stay silent; verify sees a cleared filter on them; retire puts the tables' row-level
    security back as it was."""
    rls = ("SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class"
           " WHERE relname IN ('orders', 'addresses', 'order_items') ORDER BY 1")
    admin = await asyncpg.connect(shop.dsn)
    try:
        rls_before = [tuple(r) for r in await admin.fetch(rls)]
        await admin.execute(f'GRANT SELECT ON public.orders, public.addresses, public.order_items TO "{shop.reader}"')
    finally:
        await admin.close()
    seeder = PostgresSeeder.from_config(_config(make_config, shop.dsn), "shop", Registry(store.pool, keyring), seed=11)
    result = await seeder.apply()
    canaries = {r.id: int(r.location["pk"]) for r in await seeder.registry.active("shop")}
    log = JsonLog(pg_server)
    log.mark()
    reader = await asyncpg.connect(shop.reader_dsn)
    try:
        await reader.fetch("SELECT * FROM orders")
        await reader.fetch("SELECT * FROM addresses")
        await reader.fetch("SELECT * FROM order_items")
        hits = await log.wait_hits(shop.db, minimum=sum(result.child_rows.values()))
    finally:
        await reader.close()
    assert {h["t"] for h in hits} == {"public.orders", "public.addresses", "public.order_items"}
    assert len(hits) == sum(result.child_rows.values())
    lookups = [location_key("shop", h["t"], h["k"]) for h in hits]
    owners = await seeder.registry.by_location(lookups)
    assert set(owners) == set(lookups) and set(owners.values()) <= set(canaries)
    admin = await asyncpg.connect(shop.dsn)
    try:
        orders_of = {r["id"]: r["customer_id"] for r in await admin.fetch("SELECT id, customer_id FROM orders")}
        for h, lookup in zip(hits, lookups):
            if h["t"] == "public.orders":
                assert canaries[owners[lookup]] == orders_of[int(h["k"])]
        assert (await seeder.verify()).ok
        await admin.execute("UPDATE rowsec.state SET bm = decode(repeat('00', length(bm)), 'hex') WHERE t = 'public.orders'")
        assert [(f.target, f.problem) for f in (await seeder.verify()).findings] == [("public.orders", "detection_filter_altered")]
    finally:
        await admin.close()
    await seeder.retire()
    admin = await asyncpg.connect(shop.dsn)
    try:
        assert [tuple(r) for r in await admin.fetch(rls)] == rls_before
        assert await admin.fetchval("SELECT count(*) FROM pg_policy WHERE polname LIKE 'rowsec%'") == 0
    finally:
        await admin.close()


async def test_contact_points_come_from_pools_and_are_unique(shop: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """Canary e-mails use the canary mail domains and phones our own numbers, formatted like the
    table's; each is unique, recorded, and found again by blind index."""
    cfg = _config(make_config, shop.dsn, follow_foreign_keys=False)
    registry = Registry(store.pool, keyring)
    await PostgresSeeder.from_config(cfg, "shop", registry, seed=3).apply()
    conn = await asyncpg.connect(shop.dsn)
    try:
        pks = [int(r.location["pk"]) for r in await registry.active("shop")]
        rows = await conn.fetch("SELECT id, email, phone FROM public.customers WHERE id = ANY($1::bigint[])", pks)
    finally:
        await conn.close()
    emails = [r["email"] for r in rows]
    assert all(e.split("@")[1] in POOL["email_domains"] for e in emails) and len(set(emails)) == COUNT
    phones = [r["phone"] for r in rows if r["phone"]]
    assert phones and len(set(phones)) == len(phones)
    owned = {f"{n}"[1:] for n in range(15550100000, 15550100200)}  # national form: without the country code 1
    assert all(p.replace("-", "") in owned and p.count("-") == 2 for p in phones)  # real: 555-1234 style
    for r in rows:
        rec = await registry.by_value("email", r["email"])
        assert rec is not None and str(rec.location["pk"]) == str(r["id"])
        if r["phone"]:
            values = dict(await registry.values_of(rec.id))
            assert values["phone"].startswith("+1555010")


async def _dump(store: ControlStore) -> str:
    """Everything in the control store's tables, as text (what a stolen backup would hold)."""
    out = []
    async with store.pool.acquire() as conn:
        tables = [r["t"] for r in await conn.fetch(
            "SELECT quote_ident(tablename) AS t FROM pg_tables WHERE schemaname = 'public'")]
        for t in tables:
            for r in await conn.fetch(f"SELECT x::text AS row FROM {t} x"):
                out.append(r["row"])
    return "\n".join(out)


async def test_stolen_registry_reveals_no_canary(shop: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """A dump of every control-store table holds no canary e-mail, phone, row key or location; only
    ciphertexts and HMACs. Without the master key the location index cannot be recomputed either."""
    cfg = _config(make_config, shop.dsn)
    registry = Registry(store.pool, keyring)
    await PostgresSeeder.from_config(cfg, "shop", registry, seed=5).apply()
    dump = await _dump(store)
    conn = await asyncpg.connect(shop.dsn)
    try:
        pks = [str(r.location["pk"]) for r in await registry.active("shop")]
        rows = await conn.fetch("SELECT id, email, phone FROM public.customers WHERE id = ANY($1::bigint[])", [int(p) for p in pks])
        orders = await conn.fetch("SELECT id FROM public.orders WHERE customer_id = ANY($1::bigint[])", [int(p) for p in pks])
    finally:
        await conn.close()
    assert len(dump) > 1000
    for r in rows:
        assert r["email"].lower() not in dump.lower()
        assert r["email"].split("@")[0].lower() not in dump.lower()
        if r["phone"]:
            assert r["phone"] not in dump and r["phone"].replace("-", "") not in dump
        assert location_key("shop", "public.customers", r["id"]) not in dump
    for domain in POOL["email_domains"]:
        assert domain not in dump
    for marker in ('"pk"', "customer_id", "child_rows"):
        assert marker not in dump
    assert not any(f'"{o["id"]}"' in dump for o in orders)
    attacker = Keyring(generate_key())
    guesses = {attacker.blind_index(location_key("shop", "public.customers", p), LOCATION) for p in pks}
    stored = {bytes(r["location_idx"]) for r in await store.pool.fetch("SELECT location_idx FROM canaries")}
    assert not guesses & stored


async def test_rotate_key_reencrypts_and_reindexes(shop: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """After rotation every value decrypts and is found by blind index under the new key only,
    fingerprints still verify, and the old key no longer opens anything."""
    cfg = _config(make_config, shop.dsn)
    old = Registry(store.pool, keyring)
    await PostgresSeeder.from_config(cfg, "shop", old, seed=9).apply()
    records = await old.active("shop")
    email = dict(await old.values_of(records[0].id))["email"]
    new_key = Keyring(generate_key())
    summary = await rotate(cfg, old, new_key)
    assert summary["counts"]["canaries"] == COUNT and summary["counts"]["deployments"] == 1
    assert summary["detection_rekeyed"] == ["shop"] and summary["detection_not_rekeyed"] == []
    new = Registry(store.pool, new_key)
    found = await new.by_value("email", email)
    assert found is not None and found.id == records[0].id
    lookups = [location_key("shop", str(r.location["target"]), r.location["pk"]) for r in records]
    assert len(await new.by_location(lookups)) == COUNT
    assert (await PostgresSeeder.from_config(cfg, "shop", new).verify()).ok
    assert await old.by_value("email", email) is None
    assert {r["key_id"] for r in await store.pool.fetch("SELECT key_id FROM canaries UNION SELECT key_id FROM canary_values")} == {new_key.key_id}
    with pytest.raises(Exception):
        await old.active("shop")


async def test_rotation_keeps_tampered_canary_reported(shop: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """A canary modified before rotation is still reported as modified afterwards (not laundered)."""
    cfg = _config(make_config, shop.dsn, follow_foreign_keys=False)
    old = Registry(store.pool, keyring)
    await PostgresSeeder.from_config(cfg, "shop", old, seed=2).apply()
    pk = int((await old.active("shop"))[0].location["pk"])
    conn = await asyncpg.connect(shop.dsn)
    try:
        await conn.execute("UPDATE public.customers SET city = 'Elsewhere' WHERE id = $1", pk)
    finally:
        await conn.close()
    new_key = Keyring(generate_key())
    await rotate(cfg, old, new_key)
    report = await PostgresSeeder.from_config(cfg, "shop", Registry(store.pool, new_key)).verify()
    assert [f.problem for f in report.findings] == ["modified"]


def _cli(args: list[str], config: Path, key: bytes) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CANARY_MASTER_KEY": base64.b64encode(key).decode()}
    return subprocess.run([sys.executable, "-m", "canary", "-c", str(config), *args], capture_output=True, text=True, env=env, timeout=120)


async def test_cli_plan_seed_verify_retire(shop: Shop, control_dsn: str, data_dir: Path) -> None:
    """`canary plan` writes nothing, `canary seed` is idempotent, `canary verify` exits 0 then 1 after
    tampering, `canary retire` restores every table."""
    before = await checksums(shop.dsn, ALL_SHOP_TABLES)
    config = data_dir / "canary.toml"
    config.write_text(
        f'[canary]\ndata_dir = "{data_dir}"\n[control]\ndsn = "{control_dsn}"\n'
        f'[seeding]\nemail_domains = {json.dumps(POOL["email_domains"])}\nphone_numbers = {json.dumps(POOL["phone_numbers"])}\n'
        f'[[datastores]]\nname = "shop"\ndsn = "{shop.dsn}"\ntables = [{{ table = "public.customers", count = 6 }}]\n'
    )
    key = generate_key()
    plan = _cli(["plan", "--json"], config, key)
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)[0]
    assert planned["to_add"] == 6 and any("CREATE POLICY" in s for s in planned["targets"][0]["statements"])
    assert await checksums(shop.dsn, ALL_SHOP_TABLES) == before
    first = _cli(["seed"], config, key)
    assert first.returncode == 0, first.stderr
    assert "public.customers +6" in first.stdout
    again = _cli(["seed"], config, key)
    assert "public.customers +0" in again.stdout
    ok = _cli(["verify"], config, key)
    assert ok.returncode == 0 and "6 canaries checked, OK" in ok.stdout
    conn = await asyncpg.connect(shop.dsn)
    try:
        await conn.execute("SET row_security = off")
        await conn.execute(
            "UPDATE public.customers SET city = 'Moved' WHERE id = (SELECT min(id) FROM public.customers WHERE email LIKE '%@mail.northwind-post.com' OR email LIKE '%@inbox.quillmail.net')"
        )
    finally:
        await conn.close()
    bad = _cli(["verify"], config, key)
    assert bad.returncode == 1 and "modified" in bad.stdout
    retired = _cli(["retire", "--force"], config, key)
    assert retired.returncode == 0, retired.stderr
    assert "kept modified" not in retired.stdout
    assert await checksums(shop.dsn, ALL_SHOP_TABLES) == before
    wrong = _cli(["seed", "--datastore", "nope"], config, key)
    assert wrong.returncode == 2 and "no datastore named 'nope'" in wrong.stderr
