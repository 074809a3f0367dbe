"""Property tests over generated schemas: seeding never violates a constraint, and seed-then-retire
leaves every real row byte-identical. Real PostgreSQL; hypothesis draws the tables."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seeder_helpers import checksum
from testkit import create_database, drop_database

from canary.config import from_mapping
from canary.crypto import Keyring, generate_key
from canary.seeding.postgres import PostgresSeeder
from canary.store import ControlStore
from canary.store.embedded import PostgresServer
from canary.store.registry import Registry


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    kind: str
    not_null: bool
    unique: bool
    check: bool
    default: bool

    def ddl(self) -> str:
        sql_type = {
            "int": "integer", "numeric": "numeric(8,2)", "text": "text", "varchar": "varchar(24)", "bool": "boolean",
            "date": "date", "ts": "timestamptz", "status": "text", "email": "text", "json": "jsonb",
        }[self.kind]
        parts = [f'"{self.name}" {sql_type}']
        if self.not_null:
            parts.append("NOT NULL")
        if self.unique:
            parts.append("UNIQUE")
        if self.default:
            parts.append({"int": "DEFAULT 7", "numeric": "DEFAULT 0", "bool": "DEFAULT false", "date": "DEFAULT current_date",
                          "ts": "DEFAULT now()", "status": "DEFAULT 'new'", "json": "DEFAULT '{}'"}.get(self.kind, "DEFAULT 'x'"))
        if self.check:
            parts.append({
                "int": f'CHECK ("{self.name}" BETWEEN 0 AND 5000)', "numeric": f'CHECK ("{self.name}" >= 0)',
                "text": f'CHECK (length("{self.name}") <= 40)', "varchar": f"CHECK (\"{self.name}\" <> '')",
                "date": f"CHECK (\"{self.name}\" > '1990-01-01')", "ts": f"CHECK (\"{self.name}\" > '1990-01-01')",
                "status": f"CHECK (\"{self.name}\" IN ('new', 'active', 'closed'))", "email": f"CHECK (\"{self.name}\" LIKE '%@%')",
                "bool": "", "json": f"CHECK (jsonb_typeof(\"{self.name}\") = 'object')",
            }[self.kind])
        return " ".join(p for p in parts if p)

    def value(self) -> str:
        """SQL expression over g (1..n) that satisfies every constraint of the column."""
        unique = self.unique
        expr = {
            "int": "g * 3" if unique else "(g * 7) % 5000", "numeric": "((g * 13) % 90000) / 100.0",
            "text": "'v' || g || ' ' || md5(g::text)" if unique else "(ARRAY['alpha','beta','gamma delta'])[1 + g % 3]",
            "varchar": "left('w' || g || md5(g::text), 24)", "bool": "g % 3 = 0", "date": "date '2015-01-01' + g % 3000",
            "ts": "timestamptz '2019-01-01' + g * interval '91 minutes'", "status": "(ARRAY['new','active','active','closed'])[1 + g % 4]",
            "email": "'user' || g || '@example.org'", "json": "jsonb_build_object('k', g)",
        }[self.kind]
        if not self.not_null and not unique:
            expr = f"CASE WHEN g % 6 = 0 THEN NULL ELSE {expr} END"
        return expr


NAMES = ("email", "phone", "full_name", "status", "created_at", "amount", "city", "note", "flag", "born_on", "ref", "meta")
KIND_BY_NAME = {"email": "email", "phone": "varchar", "full_name": "text", "status": "status", "created_at": "ts",
                "amount": "numeric", "city": "text", "note": "text", "flag": "bool", "born_on": "date", "ref": "int", "meta": "json"}


@st.composite
def tables(draw: st.DrawFn) -> tuple[str, list[ColumnSpec], int, int]:
    pk = draw(st.sampled_from(["bigserial", "integer", "uuid", "text"]))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=6, unique=True))
    cols = []
    for name in names:
        kind = KIND_BY_NAME[name]
        cols.append(ColumnSpec(
            name, kind, draw(st.booleans()), kind in ("email", "int", "varchar") and draw(st.booleans()),
            draw(st.booleans()), kind not in ("email", "varchar", "text") and draw(st.booleans()),
        ))
    rows = draw(st.integers(min_value=0, max_value=250))
    count = draw(st.integers(min_value=1, max_value=12))
    return pk, cols, rows, count


@pytest.fixture(scope="module")
def prop_env(pg_server: PostgresServer) -> Iterator[tuple[str, str]]:
    """One datastore database and one control database for all examples of this module."""
    async def create() -> tuple[str, str]:
        return await create_database(pg_server, "prop"), await create_database(pg_server, "propctl")

    async def drop() -> None:
        for name in names:
            await drop_database(pg_server, name)

    names = asyncio.run(create())
    yield pg_server.dsn(names[0]), pg_server.dsn(names[1])
    asyncio.run(drop())


KEYRING = Keyring(generate_key())


async def _example(target_dsn: str, control_dsn: str, spec: tuple[str, list[ColumnSpec], int, int]) -> None:
    pk, cols, rows, count = spec
    schema = f"s_{uuid.uuid4().hex[:10]}"
    pk_ddl = {"bigserial": "id bigserial PRIMARY KEY", "integer": "id integer PRIMARY KEY",
              "uuid": "id uuid PRIMARY KEY", "text": "id text PRIMARY KEY"}[pk]
    pk_expr = {"bigserial": "g * 2", "integer": "g * 3 + (g % 2)", "uuid": "md5(g::text)::uuid", "text": "'K' || lpad(g::text, 6, '0')"}[pk]
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'CREATE TABLE "{schema}".t ({pk_ddl}, {", ".join(c.ddl() for c in cols)})')
        await conn.execute(
            f'INSERT INTO "{schema}".t (id, {", ".join(chr(34) + c.name + chr(34) for c in cols)}) '
            f"SELECT {pk_expr}, {', '.join(c.value() for c in cols)} FROM generate_series(1, $1) g", rows,
        )
        if pk == "bigserial":
            await conn.execute(f"SELECT setval('\"{schema}\".t_id_seq', greatest($1 * 2, 1))", rows)
        await conn.execute(f'ANALYZE "{schema}".t')
    finally:
        await conn.close()
    before = await checksum(target_dsn, f'"{schema}".t')
    cfg = from_mapping({"control": {"dsn": control_dsn}, "datastores": [
        {"name": "prop", "dsn": target_dsn, "tables": [{"table": f"{schema}.t", "count": count}]}]})
    store = ControlStore(cfg)
    await store.open()
    try:
        seeder = PostgresSeeder.from_config(cfg, "prop", Registry(store.pool, KEYRING))
        result = await seeder.apply()
        assert result.added == {f"{schema}.t": count}
        assert (await checksum(target_dsn, f'"{schema}".t'))[0] == before[0] + count
        report = await seeder.verify()
        assert report.ok, report.findings
        retired = await seeder.retire(targets=[f"{schema}.t"])
        assert retired.removed == {f"{schema}.t": count}
    finally:
        await store.close()
    assert await checksum(target_dsn, f'"{schema}".t') == before


@settings(max_examples=18, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=tables())
def test_seed_never_violates_constraints_and_retire_restores(prop_env: tuple[str, str], spec: tuple[str, list[ColumnSpec], int, int]) -> None:
    """For any generated table (key type, NOT NULL, UNIQUE, CHECK, defaults, empty or filled), seeding
    writes exactly the requested canaries without a constraint error, verify passes, and retire
    leaves every real row byte-identical."""
    asyncio.run(_example(*prop_env, spec))
