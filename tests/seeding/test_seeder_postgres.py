"""PostgreSQL seeder against a real server: canary rows, RLS read detection in jsonlog, retire."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from seeder_helpers import JsonLog, Shop, checksum
from testkit import MakeConfig

from canary.config import DatastoreConfig
from canary.crypto import Keyring
from canary.errors import ConfigError, DatastoreError, UnsafeIdentifierError
from canary.seeder import Seeder
from canary.seeding.postgres import PostgresSeeder
from canary.store import ControlStore
from canary.store.embedded import PostgresServer
from canary.store.registry import Registry

COUNT = 12


def _seeder(make_config: MakeConfig, store: ControlStore, keyring: Keyring, dsn: str, table: str = "public.customers", count: int = COUNT) -> PostgresSeeder:
    cfg = make_config(datastores=[{"name": "shop", "dsn": dsn, "tables": [{"table": table, "count": count}]}])
    return PostgresSeeder(cfg.datastores[0], Registry(store.pool, keyring), seed=7)


@pytest.fixture
async def seeded(shop: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> tuple[PostgresSeeder, list[str]]:
    seeder = _seeder(make_config, store, keyring, shop.dsn)
    result = await seeder.apply()
    assert result.added == {"public.customers": COUNT}
    pks = [str(r.location["pk"]) for r in await seeder.registry.active("shop")]
    return seeder, pks


async def _as(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn)


async def _read(server: PostgresServer, shop: Shop, dsn: str, sql: str, *args: object, setup: str = "") -> tuple[list[asyncpg.Record], list[dict[str, Any]]]:
    """Run one query as the role of ``dsn`` (after ``setup``); return its rows and the CY001 hits it caused."""
    log = JsonLog(server)
    conn = await _as(dsn)
    try:
        if setup:
            await conn.execute(setup)
        log.mark()
        rows = await conn.fetch(sql, *args)
        return rows, await log.settle(shop.db, conn)
    finally:
        await conn.close()


async def test_seeder_satisfies_protocol(shop: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """PostgresSeeder implements the Seeder contract (kind, plan, apply, verify, retire)."""
    seeder = _seeder(make_config, store, keyring, shop.dsn)
    assert isinstance(seeder, Seeder)
    assert seeder.kind == "postgres"


async def test_reader_select_star_is_logged(pg_server: PostgresServer, shop: Shop, seeded: tuple[PostgresSeeder, list[str]]) -> None:
    """An ordinary role's SELECT * logs one CY001 line per canary with target, key and reader."""
    _, pks = seeded
    rows, hits = await _read(pg_server, shop, shop.reader_dsn, "SELECT * FROM public.customers")
    assert len(rows) == 1600 + COUNT  # the reader sees every row: detection never hides data
    assert sorted(h["k"] for h in hits) == sorted(pks)
    hit = hits[0]
    assert (hit["v"], hit["ds"], hit["t"], hit["u"]) == (1, "shop", "public.customers", shop.reader)
    assert "SELECT * FROM public.customers" in hit["q"]
    assert hit["a"] == "127.0.0.1" and isinstance(hit["p"], int) and hit["ts"]


async def test_point_reads_of_canary_and_real_rows(pg_server: PostgresServer, shop: Shop, seeded: tuple[PostgresSeeder, list[str]]) -> None:
    """WHERE id = <canary> logs exactly that canary; WHERE id = <real row> logs nothing."""
    _, pks = seeded
    log = JsonLog(pg_server)
    conn = await _as(shop.reader_dsn)
    try:
        real = await conn.fetchval("SELECT min(id) FROM public.customers WHERE NOT (id = ANY($1::bigint[]))", [int(p) for p in pks])
        log.mark()
        assert await conn.fetchval("SELECT email FROM public.customers WHERE id = $1", real)
        assert await log.settle(shop.db, conn) == []
        log.mark()
        assert await conn.fetchval("SELECT email FROM public.customers WHERE id = $1", int(pks[3]))
        hits = await log.settle(shop.db, conn)
    finally:
        await conn.close()
    assert [h["k"] for h in hits] == [pks[3]]


async def test_copy_to_is_logged(pg_server: PostgresServer, shop: Shop, seeded: tuple[PostgresSeeder, list[str]]) -> None:
    """COPY customers TO STDOUT (an export) by an ordinary role logs every canary."""
    _, pks = seeded
    log = JsonLog(pg_server)
    log.mark()
    conn = await _as(shop.reader_dsn)
    try:
        out: list[bytes] = []
        await conn.copy_from_table("customers", schema_name="public", output=lambda b: _append(out, b))
        hits = await log.settle(shop.db, conn)
    finally:
        await conn.close()
    assert b"".join(out).count(b"\n") == 1600 + COUNT
    assert sorted(h["k"] for h in hits) == sorted(pks)
    assert "COPY" in hits[0]["q"].upper()


async def _append(out: list[bytes], data: bytes) -> None:
    out.append(data)


async def test_read_only_and_rolled_back_reads_are_logged(pg_server: PostgresServer, shop: Shop, seeded: tuple[PostgresSeeder, list[str]]) -> None:
    """Reads inside BEGIN READ ONLY and inside a transaction that rolls back still leave a line."""
    _, pks = seeded
    log = JsonLog(pg_server)
    conn = await _as(shop.reader_dsn)
    try:
        log.mark()
        await conn.execute("BEGIN READ ONLY")
        await conn.fetch("SELECT id FROM public.customers WHERE id = $1", int(pks[0]))
        await conn.execute("COMMIT")
        assert [h["k"] for h in await log.settle(shop.db, conn)] == [pks[0]]
        log.mark()
        await conn.execute("BEGIN")
        await conn.fetch("SELECT * FROM public.customers WHERE id = $1", int(pks[1]))
        await conn.execute("ROLLBACK")
        assert [h["k"] for h in await log.settle(shop.db, conn)] == [pks[1]]
    finally:
        await conn.close()


async def test_parallel_scan_is_logged_and_does_not_fail(pg_server: PostgresServer, shop: Shop, seeded: tuple[PostgresSeeder, list[str]]) -> None:
    """A forced parallel seq scan evaluates the policy in workers without error and logs each canary."""
    _, pks = seeded
    rows, hits = await _read(
        pg_server, shop, shop.reader_dsn, "SELECT count(*) FROM public.customers WHERE city LIKE '%i%'",
        setup="SET debug_parallel_query = on; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;"
        " SET min_parallel_table_scan_size = 0",
    )
    assert rows[0][0] > 0
    log = JsonLog(pg_server)
    log.offsets = {}
    late = await log.wait_hits(shop.db, minimum=len(pks))  # from the start of the log: leader + workers
    assert set(h["k"] for h in hits) <= set(pks)
    assert {h["k"] for h in late if "LIKE" in h["q"]} == set(pks)


async def test_owner_reads_are_covered(pg_server: PostgresServer, shop: Shop, seeded: tuple[PostgresSeeder, list[str]]) -> None:
    """The table owner (not a superuser) is subject to the policy because RLS is FORCEd."""
    _, pks = seeded
    _, hits = await _read(pg_server, shop, shop.owner_dsn, "SELECT * FROM public.customers")
    assert sorted(h["k"] for h in hits) == sorted(pks)
    assert {h["u"] for h in hits} == {shop.owner}


async def test_reader_writes_still_work(shop: Shop, seeded: tuple[PostgresSeeder, list[str]]) -> None:
    """Detection never breaks the application: the owner can still insert, update and delete rows."""
    conn = await _as(shop.owner_dsn)
    try:
        await conn.execute("INSERT INTO public.customers (full_name, email) VALUES ('New Person', 'new@example.net')")
        await conn.execute("UPDATE public.customers SET city = 'Salem' WHERE email = 'new@example.net'")
        assert await conn.fetchval("SELECT city FROM public.customers WHERE email = 'new@example.net'") == "Salem"
        assert await conn.execute("DELETE FROM public.customers WHERE email = 'new@example.net'") == "DELETE 1"
    finally:
        await conn.close()


async def test_policy_function_and_registry_contract(shop: Shop, seeded: tuple[PostgresSeeder, list[str]], store: ControlStore) -> None:
    """The installed objects follow the jsonlog contract, and the registry holds canaries + manifest."""
    seeder, pks = seeded
    conn = await _as(shop.dsn)
    try:
        fn = await conn.fetchrow(
            "SELECT p.prosecdef, p.proparallel::text AS proparallel, p.proconfig, pg_get_function_identity_arguments(p.oid) AS args,"
            " has_function_privilege('public', p.oid, 'EXECUTE') AS pub FROM pg_proc p"
            " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'rowsec' AND p.proname = 'row_visible'"
        )
        pols = await conn.fetch("SELECT polname, polpermissive, polcmd::text AS cmd FROM pg_policy ORDER BY polname")
        rel = await conn.fetchrow("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'public.customers'::regclass")
    finally:
        await conn.close()
    assert fn["prosecdef"] and fn["proparallel"] == "s" and fn["pub"]
    assert fn["args"] == "target text, pk text, reader text"
    assert set(fn["proconfig"]) == {"search_path=pg_catalog, pg_temp", "client_min_messages=error"}
    assert [(p["polname"], p["polpermissive"], p["cmd"]) for p in pols] == [
        ("rowsec_p", True, "*"), ("rowsec_r", False, "r")]
    assert (rel["relrowsecurity"], rel["relforcerowsecurity"]) == (True, True)
    assert await store.pool.fetchval("SELECT count(*) FROM canaries WHERE status = 'active'") == COUNT
    assert await store.pool.fetchval("SELECT count(*) FROM deployments") == 1
    details = await store.pool.fetchval("SELECT details FROM detection_objects")
    assert details["rls_enabled_before"] is False and details["schema_created"] is True
    dep = await store.pool.fetchval("SELECT id FROM deployments")
    manifest = await seeder.registry.manifest(dep)
    assert sorted(r["pk"] for r in manifest["rows"]) == sorted(pks)
    assert manifest["objects"]["policy"] == "rowsec_r"


async def test_canaries_are_interleaved_not_appended(shop: Shop, seeded: tuple[PostgresSeeder, list[str]]) -> None:
    """Canary keys fill gaps between real keys (never a block at the end) and timestamps follow them."""
    _, pks = seeded
    conn = await _as(shop.dsn)
    try:
        max_real = await conn.fetchval("SELECT max(id) FROM public.customers WHERE NOT (id = ANY($1::bigint[]))", [int(p) for p in pks])
        rows = await conn.fetch(
            "SELECT c.id, c.created_at, (SELECT max(created_at) FROM public.customers r WHERE r.id < c.id AND NOT (r.id = ANY($1::bigint[]))) AS before"
            " FROM public.customers c WHERE c.id = ANY($1::bigint[])", [int(p) for p in pks],
        )
    finally:
        await conn.close()
    assert all(int(p) < max_real for p in pks)
    assert all(r["before"] is None or r["created_at"] >= r["before"] for r in rows)


async def test_idempotent_reseed_and_plan(shop: Shop, seeded: tuple[PostgresSeeder, list[str]], make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """Re-running seed adds nothing; plan reports the present count and no rows to write."""
    seeder, _ = seeded
    before = await checksum(shop.dsn)
    plan = await seeder.plan()
    assert plan.targets[0].present == COUNT and plan.to_add == 0 and not plan.targets[0].statements
    result = await seeder.apply()
    assert result.added == {"public.customers": 0}
    assert await checksum(shop.dsn) == before
    assert await store.pool.fetchval("SELECT count(*) FROM canaries") == COUNT


async def test_plan_writes_nothing(shop: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """plan (dry run) lists every row and DDL statement and leaves datastore and registry untouched."""
    seeder = _seeder(make_config, store, keyring, shop.dsn)
    before = await checksum(shop.dsn)
    plan = await seeder.plan()
    assert plan.to_add == COUNT and len(plan.targets[0].rows) == COUNT
    assert any("CREATE POLICY" in s and "AS RESTRICTIVE FOR SELECT" in s for s in plan.targets[0].statements)
    assert all(r.values["email"] for r in plan.targets[0].rows)
    assert await checksum(shop.dsn) == before
    assert await store.pool.fetchval("SELECT count(*) FROM canaries") == 0


async def test_retire_restores_table_exactly(pg_server: PostgresServer, shop: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """retire deletes exactly the canaries, drops policies, function and schema, restores RLS state."""
    before = await checksum(shop.dsn)
    seeder = _seeder(make_config, store, keyring, shop.dsn)
    await seeder.apply()
    assert (await checksum(shop.dsn))[0] == before[0] + COUNT
    result = await seeder.retire()
    assert result.removed == {"public.customers": COUNT} and not result.kept_modified
    assert await checksum(shop.dsn) == before
    conn = await _as(shop.dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_policy") == 0
        assert await conn.fetchval("SELECT count(*) FROM pg_proc WHERE proname = 'row_visible'") == 0
        assert await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = 'rowsec'") == 0
        rel = await conn.fetchrow("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'public.customers'::regclass")
    finally:
        await conn.close()
    assert (rel["relrowsecurity"], rel["relforcerowsecurity"]) == (False, False)
    assert await store.pool.fetchval("SELECT count(*) FROM canaries WHERE status = 'active'") == 0
    assert await store.pool.fetchval("SELECT count(*) FROM canary_values") == 0
    assert await store.pool.fetchval("SELECT status FROM deployments") == "retired"
    assert await store.pool.fetchval("SELECT count(*) FROM detection_objects") == 0
    _, hits = await _read(pg_server, shop, shop.reader_dsn, "SELECT * FROM public.customers")
    assert hits == []


async def test_seeder_maintenance_reads_fire_nothing(pg_server: PostgresServer, shop: Shop, seeded: tuple[PostgresSeeder, list[str]], make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """plan, a re-seed with more canaries, verify and retire read the table without logging a hit."""
    seeder, _ = seeded
    log = JsonLog(pg_server)
    log.mark()
    await seeder.plan()
    more = _seeder(make_config, store, keyring, shop.dsn, count=COUNT + 5)
    assert (await more.apply()).added == {"public.customers": 5}
    assert (await more.verify()).ok
    await more.retire()
    conn = await _as(shop.dsn)
    try:
        assert await log.settle(shop.db, conn) == []
    finally:
        await conn.close()


async def test_reseed_replaces_policy_with_all_canaries(pg_server: PostgresServer, shop: Shop, seeded: tuple[PostgresSeeder, list[str]], make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """Raising the count adds only the difference; one policy then covers old and new canaries."""
    more = _seeder(make_config, store, keyring, shop.dsn, count=COUNT + 8)
    await more.apply()
    pks = [str(r.location["pk"]) for r in await more.registry.active("shop")]
    assert len(pks) == COUNT + 8
    policies, _ = await _read(pg_server, shop, shop.dsn, "SELECT 1 FROM pg_policy WHERE polname = $1", "rowsec_r")
    assert len(policies) == 1
    _, hits = await _read(pg_server, shop, shop.reader_dsn, "SELECT * FROM public.customers")
    assert sorted(h["k"] for h in hits) == sorted(pks)


async def test_verify_and_retire_report_a_modified_canary(shop: Shop, seeded: tuple[PostgresSeeder, list[str]]) -> None:
    """A canary row changed after seeding is reported by verify and kept (still detected) by retire."""
    seeder, pks = seeded
    conn = await _as(shop.dsn)
    try:
        await conn.execute("UPDATE public.customers SET city = 'Changed' WHERE id = $1", int(pks[0]))
        await conn.execute("DELETE FROM public.customers WHERE id = $1", int(pks[1]))
    finally:
        await conn.close()
    report = await seeder.verify()
    assert sorted(f.problem for f in report.findings) == ["missing", "modified"]
    result = await seeder.retire()
    assert [f.problem for f in result.kept_modified] == ["modified"]
    assert result.removed == {"public.customers": COUNT - 2}
    conn = await _as(shop.dsn)
    try:
        assert await conn.fetchval("SELECT city FROM public.customers WHERE id = $1", int(pks[0])) == "Changed"
        assert await conn.fetchval("SELECT count(*) FROM pg_policy WHERE polname = 'rowsec_r'") == 1
    finally:
        await conn.close()
    forced = await seeder.retire(force=True)
    assert forced.removed == {"public.customers": 1}


async def test_rls_already_enabled_adds_only_restrictive_policy(pg_server: PostgresServer, shop: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """With the table's own RLS, only the restrictive policy is added (no widening), FORCE is left
    off and reported, and retire restores the table's own policy set exactly."""
    conn = await _as(shop.dsn)
    try:
        await conn.execute("CREATE POLICY own_rows ON public.customers FOR SELECT TO PUBLIC USING (tier <> 'gold')")
        await conn.execute("ALTER TABLE public.customers ENABLE ROW LEVEL SECURITY")
    finally:
        await conn.close()
    seeder = _seeder(make_config, store, keyring, shop.dsn)
    result = await seeder.apply()
    assert any("owner" in w for w in result.warnings)
    names, rel = await _rls_state(shop.dsn)
    assert names == ["own_rows", "rowsec_r"]
    assert rel == (True, False)
    reader = await _as(shop.reader_dsn)
    try:
        visible = await reader.fetchval("SELECT count(*) FROM public.customers WHERE tier = 'gold'")
    finally:
        await reader.close()
    assert visible == 0  # the table's own policy still restricts
    await seeder.retire()
    names, rel = await _rls_state(shop.dsn)
    assert names == ["own_rows"] and rel == (True, False)


async def _rls_state(dsn: str) -> tuple[list[str], tuple[bool, bool]]:
    """(policy names on the database, (relrowsecurity, relforcerowsecurity) of customers)."""
    conn = await _as(dsn)
    try:
        names = [r["polname"] for r in await conn.fetch("SELECT polname FROM pg_policy ORDER BY 1")]
        rel = await conn.fetchrow("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = 'public.customers'::regclass")
    finally:
        await conn.close()
    return names, (rel["relrowsecurity"], rel["relforcerowsecurity"])


async def _nothing_written(shop: Shop, store: ControlStore, before: tuple[int, str]) -> None:
    assert await checksum(shop.dsn) == before
    conn = await _as(shop.dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM pg_policy") == 0
        assert await conn.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = 'rowsec'") == 0
    finally:
        await conn.close()
    for table in ("canaries", "deployments", "detection_objects", "canary_values"):
        assert await store.pool.fetchval(f"SELECT count(*) FROM {table}") == 0


async def test_missing_table_is_one_clear_error(shop: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """A configured table that does not exist fails with DatastoreError naming it; nothing is written."""
    before = await checksum(shop.dsn)
    seeder = _seeder(make_config, store, keyring, shop.dsn, table="public.clients")
    with pytest.raises(DatastoreError, match=r"table public\.clients does not exist in datastore 'shop'"):
        await seeder.apply()
    await _nothing_written(shop, store, before)


async def test_hostile_table_name_is_refused(shop: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """`customers"; DROP TABLE x; --` is refused by config validation and, if it got past it, by the
    seeder before any query; nothing is written and no table is dropped."""
    hostile = 'customers"; DROP TABLE x; --'
    with pytest.raises(ConfigError, match=r"datastores\[0\]\.tables\[0\]\.table"):
        _seeder(make_config, store, keyring, shop.dsn, table=hostile)
    before = await checksum(shop.dsn)
    cfg = make_config(datastores=[{"name": "shop", "dsn": shop.dsn}])
    from canary.config import TableTarget

    ds = DatastoreConfig.model_construct(**{**dict(cfg.datastores[0]), "tables": (TableTarget.model_construct(table=hostile, count=3, locale=None),)})
    seeder = PostgresSeeder(ds, Registry(store.pool, keyring))
    with pytest.raises(UnsafeIdentifierError, match="not a plain 'schema.table' name"):
        await seeder.apply()
    with pytest.raises(UnsafeIdentifierError):
        await seeder.plan()
    await _nothing_written(shop, store, before)


async def test_unreachable_dsn_is_one_clear_error_without_password(make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """A DSN nobody listens on gives DatastoreError naming the datastore, never the password."""
    from canary.store.embedded import free_port

    dsn = f"postgresql://app:s3cretPassw0rd@127.0.0.1:{free_port()}/shop"
    seeder = _seeder(make_config, store, keyring, dsn)
    with pytest.raises(DatastoreError) as err:
        await seeder.apply()
    assert "cannot connect to datastore 'shop'" in str(err.value)
    assert "s3cretPassw0rd" not in str(err.value) and "s3cretPassw0rd" not in repr(seeder)
    assert await store.pool.fetchval("SELECT count(*) FROM canaries") == 0


async def test_plan_by_the_owner_fires_nothing(pg_server: PostgresServer, shop: Shop, seeded: tuple[PostgresSeeder, list[str]], make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """A dry run by the (non-superuser) table owner under FORCE RLS reads without firing detection
    (FORCE is switched off inside its rolled-back transaction) and leaves FORCE on afterwards."""
    owner_seeder = _seeder(make_config, store, keyring, shop.owner_dsn, count=COUNT + 3)
    log = JsonLog(pg_server)
    log.mark()
    plan = await owner_seeder.plan()
    assert plan.to_add == 3
    conn = await _as(shop.dsn)
    try:
        assert await log.settle(shop.db, conn) == []
    finally:
        await conn.close()
    assert (await _rls_state(shop.dsn))[1] == (True, True)
