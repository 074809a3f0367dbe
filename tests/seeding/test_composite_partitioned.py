"""Composite primary keys and partitioned tables against a real server: canary rows take free keys
beside real ones (in an existing partition), reads through the partitioned table and straight from a
partition are detected, verify reports a partition without the tripwire, apply arms it, and retire
leaves every partition byte-identical with its row-level-security state restored."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seeder_helpers import JsonLog, Shop, checksum
from testkit import MakeConfig, create_database, drop_database

from canary.config import from_mapping
from canary.crypto import Keyring, generate_key
from canary.errors import SeedError
from canary.seeding.postgres import PostgresSeeder
from canary.store import ControlStore
from canary.store.embedded import PostgresServer
from canary.store.registry import Registry

ACCOUNTS = "public.accounts"
EVENTS = "public.events"
MONTHS = ("2024_01", "2024_02", "2024_03", "2024_04", "2024_05", "2024_06")
PARTITIONS = [f"public.events_{m}" for m in MONTHS] + ["public.events_default"]

# (tenant_id, id): ids from one sequence for all tenants, a tenant's accounts in runs, some deleted
ACCOUNTS_DDL = """
CREATE TABLE public.accounts (
    tenant_id  int  NOT NULL CHECK (tenant_id BETWEEN 1 AND 5),
    id         int  NOT NULL,
    full_name  text NOT NULL,
    email      text NOT NULL,
    plan       text NOT NULL CHECK (plan IN ('free', 'pro', 'team')),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email)
);
INSERT INTO public.accounts
SELECT 1 + (g / 7) % 5, g, 'Person ' || g, 'person' || g || '@example.org', (ARRAY['free', 'free', 'pro', 'team'])[1 + g % 4],
       timestamptz '2022-03-01 00:00+00' + g * interval '5 hours 13 minutes'
FROM generate_series(1, 900) g WHERE g % 5 <> 2;
"""

# partitioned by month of created_at, key (id, created_at); rows before and after the monthly partitions
# go to the default partition
EVENTS_DDL = """
CREATE TABLE public.events (
    id         bigserial,
    created_at timestamptz NOT NULL,
    account    text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('login', 'purchase', 'refund', 'logout')),
    amount     numeric(10,2) NOT NULL DEFAULT 0 CHECK (amount >= 0),
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);
""" + "".join(
    f"CREATE TABLE public.events_{m} PARTITION OF public.events FOR VALUES FROM ('{m.replace('_', '-')}-01 00:00+00') "
    f"TO ('{m[:5]}{int(m[5:]) + 1:02d}-01 00:00+00');\n" for m in MONTHS
) + """
CREATE TABLE public.events_default PARTITION OF public.events DEFAULT;
INSERT INTO public.events (id, created_at, account, kind, amount)
SELECT g, timestamptz '2023-12-10 00:00+00' + g * interval '97 minutes' + (g % 13) * interval '1 second', 'acct' || (g % 50),
       (ARRAY['login', 'purchase', 'refund', 'logout'])[1 + g % 4], (g % 300) + 0.5
FROM generate_series(1, 3500) g WHERE g % 6 <> 2;
SELECT setval('public.events_id_seq', 3500);
"""


@pytest.fixture
def shop_rows() -> int:
    """A small customers table: these tests seed their own tables."""
    return 50


@pytest.fixture
async def keyed(shop: Shop) -> Shop:
    """The shop database with ``accounts`` (composite key) and ``events`` (partitioned by month, with a
    default partition), owned by the shop's owner and readable (partitions too) by its reader."""
    conn = await asyncpg.connect(shop.dsn)
    try:
        await conn.execute(ACCOUNTS_DDL)
        await conn.execute(EVENTS_DDL)
        for table in [ACCOUNTS, EVENTS, *PARTITIONS]:
            await conn.execute(f'ALTER TABLE {table} OWNER TO "{shop.owner}"')
            await conn.execute(f'GRANT SELECT ON {table} TO "{shop.reader}"')
        await conn.execute("ANALYZE public.accounts, public.events")
    finally:
        await conn.close()
    return shop


def _seeder(make_config: MakeConfig, store: ControlStore, keyring: Keyring, dsn: str, **counts: int) -> PostgresSeeder:
    tables = [{"table": f"public.{t}", "count": n} for t, n in counts.items()]
    cfg = make_config(datastores=[{"name": "shop", "dsn": dsn, "tables": tables}])
    return PostgresSeeder(cfg.datastores[0], Registry(store.pool, keyring), seed=11)


async def _pks(seeder: PostgresSeeder, target: str) -> list[str]:
    return [str(r.location["pk"]) for r in await seeder.registry.active("shop", f"shop/{target}")]


async def _read(server: PostgresServer, shop: Shop, sql: str, *args: object, setup: str = "") -> tuple[list[asyncpg.Record], list[str]]:
    """One query by the reader (after ``setup``): its rows and the keys of the CY001 lines it caused."""
    log = JsonLog(server)
    conn = await asyncpg.connect(shop.reader_dsn)
    try:
        if setup:
            await conn.execute(setup)
        log.mark()
        rows = await conn.fetch(sql, *args)
        return rows, sorted(h["k"] for h in await log.settle(shop.db, conn))
    finally:
        await conn.close()


async def _fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def _columns(pks: Sequence[str]) -> list[list[str]]:
    """A composite key's texts as one list per column."""
    keys = [json.loads(k) for k in pks]
    return [list(c) for c in zip(*keys)] if keys else [[], []]


# the rows' text, canaries left out (the superuser reads past row security)
EVENTS_TEXT = ("SELECT md5(string_agg(t::text, ',' ORDER BY id, created_at)) FROM public.events t"
               " WHERE (id, created_at) NOT IN (SELECT * FROM unnest($1::text[]::bigint[], $2::text[]::timestamptz[]))")
ACCOUNTS_TEXT = ("SELECT md5(string_agg(t::text, ',' ORDER BY tenant_id, id)) FROM public.accounts t"
                 " WHERE (tenant_id, id) NOT IN (SELECT * FROM unnest($1::text[]::int[], $2::text[]::int[]))")


async def _rls_state(dsn: str) -> list[tuple[str, bool, bool, list[str]]]:
    """(table, RLS enabled, forced, its policies) of accounts, events and every partition of events."""
    rows = await _fetch(dsn, """
        SELECT c.oid::regclass::text AS t, c.relrowsecurity, c.relforcerowsecurity,
               ARRAY(SELECT polname::text FROM pg_policy WHERE polrelid = c.oid ORDER BY 1) AS pols
        FROM pg_class c WHERE c.relname = 'accounts' OR c.relname LIKE 'events%' AND c.relkind IN ('r', 'p') ORDER BY 1""")
    return [(r["t"], r["relrowsecurity"], r["relforcerowsecurity"], list(r["pols"])) for r in rows]


async def _checksums(dsn: str) -> dict[str, tuple[int, str]]:
    out = {ACCOUNTS: await checksum(dsn, ACCOUNTS, "tenant_id, id"), EVENTS: await checksum(dsn, EVENTS, "id, created_at")}
    for p in PARTITIONS:
        out[p] = await checksum(dsn, p, "id, created_at")
    return out


async def test_composite_key_canaries_take_free_keys_beside_real_rows(
    pg_server: PostgresServer, keyed: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring,
) -> None:
    """A (tenant_id, id) table: each canary takes an id no real row of any tenant holds (ids are one
    sequence there), between two real ids, with the tenant of the real row below it; its key in the
    registry is the JSON array of the key's text. Reads of canaries are logged, reads of real rows
    are not, and the real rows are unchanged."""
    real = {(r["tenant_id"], r["id"]) for r in await _fetch(keyed.dsn, "SELECT tenant_id, id FROM public.accounts")}
    text_before = (await _fetch(keyed.dsn, ACCOUNTS_TEXT, [], []))[0][0]
    seeder = _seeder(make_config, store, keyring, keyed.dsn, accounts=10)
    assert (await seeder.apply()).added == {ACCOUNTS: 10}
    pks = await _pks(seeder, ACCOUNTS)
    keys = [(int(t), int(i)) for t, i in map(json.loads, pks)]
    assert len(set(keys)) == 10 and all(json.loads(k) == [str(t), str(i)] for k, (t, i) in zip(pks, keys))
    real_ids = sorted(i for _, i in real)
    for tenant, id_ in keys:
        assert id_ not in real_ids and real_ids[0] < id_ < real_ids[-1]
        below = max(i for i in real_ids if i < id_)
        assert (tenant, below) in real
    assert (await seeder.verify()).ok
    tenants, ids = _columns(pks)
    assert (await _fetch(keyed.dsn, ACCOUNTS_TEXT, tenants, ids))[0][0] == text_before

    rows, hits = await _read(pg_server, keyed, "SELECT * FROM public.accounts")
    assert len(rows) == len(real) + 10 and hits == sorted(pks)
    tenant, id_ = keys[3]
    _, hits = await _read(pg_server, keyed, "SELECT email FROM public.accounts WHERE tenant_id = $1 AND id = $2", tenant, id_)
    assert hits == [pks[3]]
    real_tenant, real_id = sorted(real)[40]
    _, hits = await _read(pg_server, keyed, "SELECT email FROM public.accounts WHERE tenant_id = $1 AND id = $2", real_tenant, real_id)
    assert hits == []


async def test_partitioned_table_reads_through_parent_and_partition_are_detected(
    pg_server: PostgresServer, keyed: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring,
) -> None:
    """A table partitioned by month with key (id, created_at): canaries are written through it into
    existing partitions, each with an id between two real ids of one partition and dated between
    them. A SELECT through the partitioned table and a SELECT straight from a partition both log its
    canaries (whatever the reader's TimeZone and DateStyle); reads of real rows log nothing; no real
    row changes."""
    text_before = (await _fetch(keyed.dsn, EVENTS_TEXT, [], []))[0][0]
    seeder = _seeder(make_config, store, keyring, keyed.dsn, events=12)
    assert (await seeder.apply()).added == {EVENTS: 12}
    pks = await _pks(seeder, EVENTS)
    ids, times = _columns(pks)
    placed = await _fetch(keyed.dsn, """
        SELECT c.tableoid::regclass::text AS part, c.id,
               (SELECT max(r.id) FROM public.events r WHERE r.id < c.id AND NOT (r.id = ANY($1::text[]::bigint[]))) AS lo,
               (SELECT min(r.id) FROM public.events r WHERE r.id > c.id AND NOT (r.id = ANY($1::text[]::bigint[]))) AS hi
        FROM public.events c WHERE (c.id, c.created_at) IN (SELECT * FROM unnest($1::text[]::bigint[], $2::text[]::timestamptz[]))""", ids, times)
    assert len(placed) == 12
    by_part: dict[str, list[str]] = {}
    for row in placed:
        assert row["lo"] is not None and row["hi"] is not None  # between real rows, never appended
        neighbours = await _fetch(keyed.dsn, "SELECT tableoid::regclass::text AS part, created_at FROM public.events"
                                  " WHERE id IN ($1, $2) ORDER BY id", row["lo"], row["hi"])
        mine = await _fetch(keyed.dsn, "SELECT created_at FROM public.events WHERE id = $1", row["id"])
        assert {n["part"] for n in neighbours} == {row["part"]}
        assert neighbours[0]["created_at"] <= mine[0]["created_at"] <= neighbours[1]["created_at"]
        by_part.setdefault(f"public.{row['part']}", []).append(next(k for k in pks if json.loads(k)[0] == str(row["id"])))
    assert (await seeder.verify()).ok
    assert (await _fetch(keyed.dsn, EVENTS_TEXT, ids, times))[0][0] == text_before

    rows, hits = await _read(pg_server, keyed, "SELECT * FROM public.events")
    assert hits == sorted(pks)
    _, hits = await _read(pg_server, keyed, "SELECT * FROM public.events",
                          setup="SET TimeZone = 'Asia/Tokyo'; SET DateStyle = 'SQL, DMY'")
    assert hits == sorted(pks)  # the key's text does not follow the session's settings
    for part in PARTITIONS:
        _, hits = await _read(pg_server, keyed, f"SELECT * FROM {part}")
        assert hits == sorted(by_part.get(part, [])), part
    part, own = next(iter(by_part.items()))
    canary_id = json.loads(own[0])[0]
    _, hits = await _read(pg_server, keyed, f"SELECT account FROM {part} WHERE id = $1", int(canary_id))
    assert hits == [own[0]]
    real_id = (await _fetch(keyed.dsn, f"SELECT min(id) FROM {part} WHERE NOT (id = ANY($1::bigint[]))", [int(i) for i in ids]))[0][0]
    for table in (EVENTS, part):
        _, hits = await _read(pg_server, keyed, f"SELECT * FROM {table} WHERE id = $1", real_id)
        assert hits == [], table


async def test_retire_restores_every_partition_exactly(
    keyed: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring,
) -> None:
    """Seeding arms the partitioned table and every partition (a partition with its own row-level
    security keeps it, unforced, and gets only the restrictive policy); retire deletes exactly the
    canaries and leaves the composite-key table, the partitioned table and each partition
    byte-identical, with each one's row-level-security state and policies as before."""
    conn = await asyncpg.connect(keyed.dsn)
    try:
        await conn.execute("CREATE POLICY own_rows ON public.events_2024_02 FOR SELECT TO PUBLIC USING (kind <> 'refund')")
        await conn.execute("ALTER TABLE public.events_2024_02 ENABLE ROW LEVEL SECURITY")
    finally:
        await conn.close()
    before, state = await _checksums(keyed.dsn), await _rls_state(keyed.dsn)
    seeder = _seeder(make_config, store, keyring, keyed.dsn, accounts=8, events=15)
    result = await seeder.apply()
    assert result.added == {ACCOUNTS: 8, EVENTS: 15}
    assert any("events_2024_02" in w and "FORCE" in w for w in result.warnings)
    armed = {t: (on, forced, pols) for t, on, forced, pols in await _rls_state(keyed.dsn)}
    assert armed["events_2024_02"] == (True, False, ["own_rows", "rowsec_r"])
    assert all(armed[t] == (True, True, ["rowsec_p", "rowsec_r"]) for t in armed if t != "events_2024_02")
    details = await store.pool.fetchval("SELECT details FROM detection_objects WHERE target = $1", EVENTS)
    assert details["partitions"]["public.events_2024_02"] == {
        "rls_enabled_before": True, "rls_forced_before": False, "permissive_policy": None}
    assert set(details["partitions"]) == set(PARTITIONS)

    retired = await seeder.retire()
    assert retired.removed == {ACCOUNTS: 8, EVENTS: 15} and not retired.kept_modified
    assert await _checksums(keyed.dsn) == before
    assert await _rls_state(keyed.dsn) == state
    assert await store.pool.fetchval("SELECT count(*) FROM detection_objects") == 0


async def test_reapply_is_idempotent(keyed: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """A second apply of the same counts writes nothing and changes no policy; plan shows the canaries
    present and nothing to do."""
    seeder = _seeder(make_config, store, keyring, keyed.dsn, accounts=6, events=9)
    await seeder.apply()
    sums, state = await _checksums(keyed.dsn), await _rls_state(keyed.dsn)
    quals = await _fetch(keyed.dsn, "SELECT polrelid::regclass::text AS t, pg_get_expr(polqual, polrelid) AS q FROM pg_policy ORDER BY 1")
    plan = await seeder.plan()
    assert plan.to_add == 0 and [(t.present, len(t.rows), list(t.statements)) for t in plan.targets] == [(6, 0, []), (9, 0, [])]
    assert (await seeder.apply()).added == {ACCOUNTS: 0, EVENTS: 0}
    assert await _checksums(keyed.dsn) == sums and await _rls_state(keyed.dsn) == state
    assert await _fetch(keyed.dsn, "SELECT polrelid::regclass::text AS t, pg_get_expr(polqual, polrelid) AS q FROM pg_policy ORDER BY 1") == quals
    assert await store.pool.fetchval("SELECT count(*) FROM canaries") == 15
    assert (await seeder.verify()).ok


async def test_unarmed_partition_is_reported_and_armed_by_the_next_apply(
    pg_server: PostgresServer, keyed: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring,
) -> None:
    """A partition attached after seeding, and a partition whose policy was dropped, are reported by
    verify (``partition_unarmed:<partition>``); until then a read straight from the latter returns its
    canaries unseen. The next apply arms both without writing a row, and retire takes the tripwire off
    the new partition too, back to its own state."""
    seeder = _seeder(make_config, store, keyring, keyed.dsn, events=12)
    await seeder.apply()
    pks = await _pks(seeder, EVENTS)
    holding = (await _fetch(keyed.dsn, "SELECT tableoid::regclass::text AS p FROM public.events WHERE id = $1",
                            int(json.loads(pks[0])[0])))[0]["p"]
    conn = await asyncpg.connect(keyed.dsn)
    try:
        await conn.execute("CREATE TABLE public.events_2030_01 (LIKE public.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        await conn.execute(f'ALTER TABLE public.events_2030_01 OWNER TO "{keyed.owner}"')
        await conn.execute(f'GRANT SELECT ON public.events_2030_01 TO "{keyed.reader}"')
        await conn.execute("ALTER TABLE public.events ATTACH PARTITION public.events_2030_01"
                           " FOR VALUES FROM ('2030-01-01 00:00+00') TO ('2030-02-01 00:00+00')")
        await conn.execute("INSERT INTO public.events (created_at, account, kind) VALUES ('2030-01-05 10:00+00', 'acct7', 'login')")
        await conn.execute(f"DROP POLICY rowsec_r ON public.{holding}")
    finally:
        await conn.close()
    before = await checksum(keyed.dsn, EVENTS, "id, created_at")
    problems = sorted(f.problem for f in (await seeder.verify()).findings)
    assert problems == sorted([f"partition_unarmed:public.{holding}", "partition_unarmed:public.events_2030_01"])
    _, hits = await _read(pg_server, keyed, f"SELECT * FROM public.{holding}")
    assert hits == []  # why it matters: a query naming the partition reads past the partitioned table's policy

    assert (await seeder.apply()).added == {EVENTS: 0}
    assert (await seeder.verify()).ok
    assert await checksum(keyed.dsn, EVENTS, "id, created_at") == before
    state = {t: (on, forced, pols) for t, on, forced, pols in await _rls_state(keyed.dsn)}
    assert state["events_2030_01"] == state[holding] == (True, True, ["rowsec_p", "rowsec_r"])
    _, hits = await _read(pg_server, keyed, f"SELECT * FROM public.{holding}")
    assert pks[0] in hits

    await seeder.retire()
    state = {t: (on, forced, pols) for t, on, forced, pols in await _rls_state(keyed.dsn)}
    assert state["events_2030_01"] == (False, False, []) and state[holding] == (False, False, [])


async def test_rows_land_only_in_existing_partitions(keyed: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring) -> None:
    """Partitions for March and May only (no April, no default partition), and the only free ids lie
    between a March row and a May row: canaries are dated between those two rows but only in March or
    May, never in April, where no partition would take them; rows that find no such place are not
    written, and apply says so."""
    conn = await asyncpg.connect(keyed.dsn)
    try:
        await conn.execute("""
            CREATE TABLE public.visits (id int NOT NULL, at timestamptz NOT NULL, page text NOT NULL, PRIMARY KEY (id, at))
                PARTITION BY RANGE (at);
            CREATE TABLE public.visits_03 PARTITION OF public.visits FOR VALUES FROM ('2024-03-01 00:00+00') TO ('2024-04-01 00:00+00');
            CREATE TABLE public.visits_05 PARTITION OF public.visits FOR VALUES FROM ('2024-05-01 00:00+00') TO ('2024-06-01 00:00+00');
            INSERT INTO public.visits SELECT g, timestamptz '2024-03-01 00:00+00' + g * interval '12 h', '/p' || g % 9
                FROM generate_series(1, 40) g;
            INSERT INTO public.visits SELECT g, timestamptz '2024-05-10 00:00+00' + (g - 60) * interval '5 h', '/p' || g % 9
                FROM generate_series(60, 150) g;
            ANALYZE public.visits""")
    finally:
        await conn.close()
    before = await checksum(keyed.dsn, "public.visits", "id, at")
    seeder = _seeder(make_config, store, keyring, keyed.dsn, visits=6)
    result = await seeder.apply()
    written = result.added["public.visits"]
    assert written >= 1
    assert (written < 6) == any("no place that a partition of the table would take" in w for w in result.warnings)
    rows = await _fetch(keyed.dsn, "SELECT id, at, tableoid::regclass::text AS part FROM public.visits"
                        " WHERE (id, at) IN (SELECT * FROM unnest($1::text[]::int[], $2::text[]::timestamptz[]))",
                        *_columns(await _pks(seeder, "public.visits")))
    assert len(rows) == written
    assert all(40 < r["id"] < 60 and r["part"] in ("visits_03", "visits_05") for r in rows)
    assert (await seeder.verify()).ok
    await seeder.retire()
    assert await checksum(keyed.dsn, "public.visits", "id, at") == before


@pytest.mark.parametrize(("table", "reason"), [
    ("public.events_2024_03", r"is a partition of public\.events .*seed public\.events"),
    ("public.readings", r"key column at of type timestamp with time zone, whose text depends on the reading session's settings"),
    ("public.samples", r"key column x of type double precision, whose text depends"),
])
async def test_tables_canary_cannot_address_are_refused(
    keyed: Shop, make_config: MakeConfig, store: ControlStore, keyring: Keyring, table: str, reason: str,
) -> None:
    """A partition named as the target (reads through the partitioned table would go unseen), a
    one-column timestamp key and a float in a composite key (their text follows the reader's
    TimeZone / DateStyle / extra_float_digits) are refused with the reason, before anything is written."""
    conn = await asyncpg.connect(keyed.dsn)
    try:
        await conn.execute("CREATE TABLE public.readings (at timestamptz PRIMARY KEY, v int NOT NULL);"
                           "CREATE TABLE public.samples (x float8, n int, PRIMARY KEY (x, n))")
    finally:
        await conn.close()
    seeder = _seeder(make_config, store, keyring, keyed.dsn, **{table.split(".")[1]: 3})
    with pytest.raises(SeedError, match=reason):
        await seeder.apply()
    assert await store.pool.fetchval("SELECT count(*) FROM canaries") == 0
    assert await _fetch(keyed.dsn, "SELECT polname FROM pg_policy") == []


# -- properties over generated layouts -------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """One generated table: its key, how it is partitioned, how many real rows and canaries."""

    # "tenant_counter": (tenant_id, n), a counter per tenant | "tenant_global": one sequence for all tenants |
    # "reversed": (id, tenant_id) | "dated": (id, created_at) | "region": (region, id) | "token": (tenant_id, token uuid)
    key: str
    partitioning: str  # "none" | "range" (monthly) | "range_default" | "range_holey" (a month missing) | "list" | "hash"
    rows: int
    count: int


PARTITIONINGS = {"dated": ["none", "range", "range_default", "range_holey", "hash"], "region": ["none", "list"],
                 "tenant_counter": ["none", "hash"], "tenant_global": ["none", "hash"], "reversed": ["none", "hash"],
                 "token": ["none", "list"]}


@st.composite
def layouts(draw: st.DrawFn) -> Layout:
    key = draw(st.sampled_from(sorted(PARTITIONINGS)))
    parting = PARTITIONINGS[key]
    return Layout(key, draw(st.sampled_from(parting)), draw(st.integers(min_value=120, max_value=400)),
                  draw(st.integers(min_value=1, max_value=10)))


def _layout_sql(s: str, layout: Layout) -> tuple[list[str], str, str]:
    """(DDL and data statements, key columns for ordering, the key's types as an unnest list)."""
    t = f'"{s}".t'
    if layout.key == "dated":
        cols, order, types = "id bigint NOT NULL, created_at timestamptz NOT NULL, note text NOT NULL", "id, created_at", "bigint, timestamptz"
        pk, by = "PRIMARY KEY (id, created_at)", {"range": "RANGE (created_at)", "range_default": "RANGE (created_at)",
                                                  "range_holey": "RANGE (created_at)", "hash": "HASH (id)"}.get(layout.partitioning)
        rows = (f"INSERT INTO {t} SELECT g, timestamptz '2024-01-02 00:00+00' + g * (interval '150 days' / $1) + (g % 7) * interval '1 s',"
                f" 'n' || g FROM generate_series(1, $1) g WHERE g % 4 <> 1")
    elif layout.key == "region":
        cols, order, types = "region text NOT NULL, id int NOT NULL, created_at timestamptz NOT NULL, note text", "region, id", "text, int"
        pk, by = "PRIMARY KEY (region, id)", {"list": "LIST (region)"}.get(layout.partitioning)
        rows = (f"INSERT INTO {t} SELECT (ARRAY['eu', 'us', 'apac'])[1 + g % 3], g, timestamptz '2023-01-01 00:00+00' + g * interval '3 h',"
                f" CASE WHEN g % 5 = 0 THEN NULL ELSE 'n' || g END FROM generate_series(1, $1) g WHERE g % 3 <> 1 OR g % 7 = 0")
    elif layout.key == "token":
        cols, order, types = "tenant_id int NOT NULL, token uuid NOT NULL, created_at timestamptz NOT NULL, scope text", "tenant_id, token", "int, uuid"
        pk, by = "PRIMARY KEY (tenant_id, token)", {"list": "LIST (tenant_id)"}.get(layout.partitioning)
        rows = (f"INSERT INTO {t} SELECT 1 + g % 4, md5(g::text)::uuid, timestamptz '2023-02-01 00:00+00' + g * interval '5 h',"
                f" (ARRAY['read', 'write'])[1 + g % 2] FROM generate_series(1, $1) g")
    elif layout.key == "reversed":
        cols, order, types = "id int NOT NULL, tenant_id int NOT NULL, created_at timestamptz NOT NULL, label text", "id, tenant_id", "int, int"
        pk, by = "PRIMARY KEY (id, tenant_id)", {"hash": "HASH (tenant_id)"}.get(layout.partitioning)
        rows = (f"INSERT INTO {t} SELECT g, 1 + (g / 5) % 4, timestamptz '2023-02-01 00:00+00' + g * interval '5 h', 'l' || g"
                f" FROM generate_series(1, $1) g WHERE g % 7 <> 3")
    else:
        counter = layout.key == "tenant_counter"
        cols, order, types = "tenant_id int NOT NULL, n int NOT NULL, created_at timestamptz NOT NULL, label text NOT NULL", "tenant_id, n", "int, int"
        pk, by = "PRIMARY KEY (tenant_id, n)", {"hash": "HASH (tenant_id)"}.get(layout.partitioning)
        n_expr = "g / 4" if counter else "g"
        rows = (f"INSERT INTO {t} SELECT 1 + g % 4, {n_expr}, timestamptz '2023-06-01 00:00+00' + g * interval '2 h', 'l' || g"
                f" FROM generate_series(4, $1) g WHERE g % 9 <> 4")
    ddl = [f'CREATE SCHEMA "{s}"', f"CREATE TABLE {t} ({cols}, {pk})" + (f" PARTITION BY {by}" if by else "")]
    if by and by.startswith("RANGE"):
        months = [1, 2, 3, 5, 6] if layout.partitioning == "range_holey" else [1, 2, 3, 4, 5, 6]
        ddl += [f"CREATE TABLE \"{s}\".p{m} PARTITION OF {t} FOR VALUES FROM ('2024-{m:02d}-01 00:00+00') TO ('2024-{m + 1:02d}-01 00:00+00')"
                for m in months]
        if layout.partitioning == "range_default":
            ddl.append(f'CREATE TABLE "{s}".pd PARTITION OF {t} DEFAULT')
        if layout.partitioning == "range_holey":  # no April: no row there, and no canary may land there
            rows += " AND NOT (timestamptz '2024-01-02 00:00+00' + g * (interval '150 days' / $1) BETWEEN '2024-04-01' AND '2024-05-01')"
        else:
            rows += " AND timestamptz '2024-01-02 00:00+00' + g * (interval '150 days' / $1) < '2024-07-01'"
    elif by and by.startswith("LIST"):
        values = ("eu", "us", "apac") if layout.key == "region" else ("1", "2", "3", "4")
        ddl += [f"CREATE TABLE \"{s}\".p_{i} PARTITION OF {t} FOR VALUES IN ('{v}')" for i, v in enumerate(values)]
    elif by:
        ddl += [f'CREATE TABLE "{s}".h{i} PARTITION OF {t} FOR VALUES WITH (MODULUS 3, REMAINDER {i})' for i in range(3)]
    return [*ddl, rows, f"ANALYZE {t}"], order, types


@pytest.fixture(scope="module")
def layout_env(pg_server: PostgresServer) -> Iterator[tuple[str, str]]:
    """One datastore database and one control database for all examples of this module."""
    async def create() -> tuple[str, str]:
        return await create_database(pg_server, "keys"), await create_database(pg_server, "keysctl")

    names = asyncio.run(create())
    yield pg_server.dsn(names[0]), pg_server.dsn(names[1])

    async def drop() -> None:
        for name in names:
            await drop_database(pg_server, name)

    asyncio.run(drop())


KEYRING = Keyring(generate_key())


async def _state(dsn: str, schema: str) -> list[Any]:
    """Every relation of ``schema``: its rows' text, row-level-security state and policies."""
    rows = await _fetch(dsn, """
        SELECT c.relname::text AS t, c.relrowsecurity, c.relforcerowsecurity,
               ARRAY(SELECT polname::text FROM pg_policy WHERE polrelid = c.oid ORDER BY 1) AS pols
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') ORDER BY 1""",
                         schema)
    out: list[Any] = []
    for r in rows:
        text = [x["r"] for x in await _fetch(dsn, f'SELECT t::text AS r FROM "{schema}"."{r["t"]}" t ORDER BY 1')]
        out.append((r["t"], r["relrowsecurity"], r["relforcerowsecurity"], list(r["pols"]), text))
    return out


async def _layout_example(target_dsn: str, control_dsn: str, layout: Layout) -> None:
    schema = f"k_{uuid.uuid4().hex[:10]}"
    statements, order, types = _layout_sql(schema, layout)
    conn = await asyncpg.connect(target_dsn)
    try:
        for stmt in statements:
            await (conn.execute(stmt, layout.rows) if "$1" in stmt else conn.execute(stmt))
    finally:
        await conn.close()
    before = await _state(target_dsn, schema)
    target = f"{schema}.t"
    cfg = from_mapping({"control": {"dsn": control_dsn}, "datastores": [
        {"name": "keys", "dsn": target_dsn, "tables": [{"table": target, "count": layout.count}]}]})
    store = ControlStore(cfg)
    await store.open()
    try:
        seeder = PostgresSeeder.from_config(cfg, "keys", Registry(store.pool, KEYRING))
        assert (await seeder.apply()).added == {target: layout.count}
        pks = [str(r.location["pk"]) for r in await seeder.registry.active("keys", f"keys/{target}")]
        assert len(set(pks)) == layout.count
        report = await seeder.verify()
        assert report.ok, report.findings
        first, second = types.split(", ")
        rest = await _fetch(target_dsn, f'SELECT t::text AS r FROM "{schema}".t t WHERE ({order}) NOT IN'
                                        f" (SELECT u.a::{first}, u.b::{second} FROM unnest($1::text[], $2::text[]) AS u(a, b)) ORDER BY 1",
                            *_columns(pks))
        assert [r["r"] for r in rest] == next(rel[4] for rel in before if rel[0] == "t")  # the real rows, unchanged
        assert (await seeder.apply()).added == {target: 0}
        retired = await seeder.retire(targets=[target])
        assert retired.removed == {target: layout.count}
    finally:
        await store.close()
    assert await _state(target_dsn, schema) == before


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(layout=layouts())
def test_any_layout_seeds_within_partitions_and_retires_exactly(layout_env: tuple[str, str], layout: Layout) -> None:
    """For generated composite keys (counters per tenant, one sequence for all tenants, (id, created_at),
    (region, id)) and partitionings (none, monthly ranges with or without a default partition or with a
    month missing, list, hash): apply writes every canary without a constraint error (so each lands in
    an existing partition), verify passes, the real rows are unchanged, a second apply writes nothing,
    and retire restores every partition's rows, row-level-security state and policies exactly."""
    asyncio.run(_layout_example(*layout_env, layout))
