"""Helpers shared by the seeder tests: a realistic shop schema, login roles and jsonlog reading."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from canary.seeding.catalog import Column, Constraint, TableInfo
from canary.seeding.synth.relations import words
from canary.seeding.synth.synthesizer import Synthesizer
from canary.store.embedded import PostgresServer

SHOP_DDL = """
CREATE TABLE public.customers (
    id          bigserial PRIMARY KEY,
    full_name   text        NOT NULL,
    email       text        NOT NULL UNIQUE,
    phone       varchar(20),
    city        text,
    tier        text        NOT NULL DEFAULT 'basic' CHECK (tier IN ('basic', 'silver', 'gold')),
    balance     numeric(10,2) NOT NULL DEFAULT 0 CHECK (balance >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz
);
"""

SHOP_ROWS = """
INSERT INTO public.customers (id, full_name, email, phone, city, tier, balance, created_at, updated_at)
SELECT g, 'Customer ' || g, 'user' || g || '@example.net',
       CASE WHEN g % 7 = 0 THEN NULL ELSE '555-' || lpad((g % 10000)::text, 4, '0') END,
       (ARRAY['Springfield', 'Riverside', 'Franklin', 'Greenville'])[1 + g % 4],
       (ARRAY['basic', 'basic', 'silver', 'gold'])[1 + g % 4],
       (g % 500)::numeric + 0.25,
       timestamptz '2022-01-01 00:00+00' + g * interval '37 minutes',
       timestamptz '2022-01-01 00:00+00' + g * interval '37 minutes' + (g % 90) * interval '1 day'
FROM generate_series(1, $1) g WHERE g % 5 <> 3;
SELECT setval('public.customers_id_seq', $1);
"""


@dataclass(frozen=True)
class Shop:
    dsn: str  # superuser DSN of the shop database
    db: str
    owner: str
    owner_dsn: str
    reader: str
    reader_dsn: str


@asynccontextmanager
async def shop_database(server: PostgresServer, target_dsn: str, rows: int = 2000) -> AsyncIterator[Shop]:
    """customers table owned by a non-superuser, an ordinary login reader, ~80% of ids used."""
    tag = uuid.uuid4().hex[:8]
    owner, reader = f"shop_owner_{tag}", f"reader_{tag}"
    password = uuid.uuid4().hex
    db = target_dsn.rsplit("/", 1)[1]
    conn = await asyncpg.connect(target_dsn)
    try:
        await conn.execute(f'CREATE ROLE "{owner}" LOGIN PASSWORD \'{password}\'')
        await conn.execute(f'CREATE ROLE "{reader}" LOGIN PASSWORD \'{password}\'')
        await conn.execute(SHOP_DDL)
        for stmt in SHOP_ROWS.strip().split(";\n"):
            if stmt.strip():
                await conn.execute(stmt.strip().rstrip(";"), rows) if "$1" in stmt else await conn.execute(stmt)
        await conn.execute(f'ALTER TABLE public.customers OWNER TO "{owner}"')
        await conn.execute(f'GRANT SELECT ON public.customers TO "{reader}"')
        await conn.execute("ANALYZE public.customers")
    finally:
        await conn.close()
    try:
        yield Shop(
            target_dsn, db, owner, server.dsn(db, user=owner, password=password), reader,
            server.dsn(db, user=reader, password=password),
        )
    finally:
        conn = await asyncpg.connect(target_dsn)
        try:
            for role in (owner, reader):
                await conn.execute(f'REASSIGN OWNED BY "{role}" TO postgres')
                await conn.execute(f'DROP OWNED BY "{role}"')
        finally:
            await conn.close()
        admin = await asyncpg.connect(server.dsn())
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            for role in (owner, reader):
                await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        finally:
            await admin.close()


class JsonLog:
    """Reads a server's jsonlog from the byte offsets noted at :meth:`mark`."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.offsets: dict[Path, int] = {}

    def mark(self) -> None:
        self.offsets = {p: p.stat().st_size for p in self.server.jsonlog_files()}

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for p in self.server.jsonlog_files():
            with p.open("rb") as fh:
                fh.seek(self.offsets.get(p, 0))
                data = fh.read()
            for raw in data.splitlines():
                try:
                    out.append(json.loads(raw))
                except ValueError:
                    continue
        return out

    def hits(self, db: str) -> list[dict[str, Any]]:
        """CY001 detail objects logged for database ``db`` since the mark (by leaders and workers)."""
        out = []
        for line in self.lines():
            if line.get("state_code") == "CY001":
                try:  # other tests write forged CY001 lines (deeply nested, not objects) into the same log
                    detail = json.loads(line["detail"])
                except (ValueError, RecursionError, TypeError):
                    continue
                if isinstance(detail, dict) and (line.get("dbname") or detail.get("db")) == db:  # workers' lines lack dbname
                    out.append(detail)
        return out

    async def wait_hits(self, db: str, minimum: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            hits = self.hits(db)
            if len(hits) >= minimum or asyncio.get_running_loop().time() > deadline:
                return hits
            await asyncio.sleep(0.05)

    async def settle(self, db: str, marker_conn: asyncpg.Connection) -> list[dict[str, Any]]:
        """All hits logged before a marker line written after the action (proves absence too)."""
        tag = uuid.uuid4().hex
        await marker_conn.execute(f"DO $$ BEGIN RAISE LOG 'canary-test-marker {tag}'; END $$")
        deadline = asyncio.get_running_loop().time() + 5.0
        while asyncio.get_running_loop().time() < deadline:
            lines = self.lines()
            if any(tag in str(line.get("message", "")) for line in lines):
                await asyncio.sleep(0.3)  # parallel workers write their own lines; let stragglers land
                return self.hits(db)
            await asyncio.sleep(0.05)
        raise AssertionError("marker line never reached the jsonlog")


async def checksum(dsn: str, table: str = "public.customers", pk: str = "id") -> tuple[int, str]:
    """(row count, md5 of all rows in key order) read as superuser (bypasses RLS, fires nothing)."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(f"SELECT count(*) AS n, md5(coalesce(string_agg(t::text, ',' ORDER BY {pk}), '')) AS h FROM {table} t")
        return row["n"], row["h"]
    finally:
        await conn.close()


ORDERS_DDL = """
CREATE TABLE public.products (id int PRIMARY KEY, sku text NOT NULL UNIQUE, price numeric(10,2) NOT NULL CHECK (price > 0));
INSERT INTO public.products SELECT g, 'SKU-' || lpad(g::text, 5, '0'), 5 + (g % 90) FROM generate_series(1, 200) g;
CREATE TABLE public.orders (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES public.customers (id),
    status      text NOT NULL CHECK (status IN ('placed', 'shipped', 'delivered', 'returned')),
    total       numeric(10,2) NOT NULL DEFAULT 0 CHECK (total >= 0),
    created_at  timestamptz NOT NULL
);
CREATE TABLE public.order_items (
    order_id   bigint NOT NULL REFERENCES public.orders (id),
    line_no    int NOT NULL CHECK (line_no BETWEEN 1 AND 20),
    product_id int NOT NULL REFERENCES public.products (id),
    qty        int NOT NULL CHECK (qty > 0),
    PRIMARY KEY (order_id, line_no)
);
CREATE TABLE public.addresses (
    id          serial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES public.customers (id),
    street      text NOT NULL,
    city        text NOT NULL,
    postal_code text
);
CREATE FUNCTION public.orders_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.created_at > now() + interval '1 day' THEN RAISE EXCEPTION 'order from the future'; END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER orders_touch BEFORE INSERT OR UPDATE ON public.orders FOR EACH ROW EXECUTE FUNCTION public.orders_touch();
INSERT INTO public.orders (customer_id, status, total, created_at)
SELECT c.id, (ARRAY['placed','shipped','delivered','delivered','returned'])[1 + (c.id * k) % 5], 10 + (c.id * k) % 300,
       c.created_at + (k * 3 + c.id % 11) * interval '1 day'
FROM public.customers c, generate_series(1, 3) k WHERE (c.id + k) % 4 <> 0;
INSERT INTO public.order_items (order_id, line_no, product_id, qty)
SELECT o.id, l, 1 + (o.id * l) % 200, 1 + (o.id + l) % 3 FROM public.orders o, generate_series(1, 2) l WHERE l = 1 OR o.id % 3 = 0;
INSERT INTO public.addresses (customer_id, street, city, postal_code)
SELECT id, id || ' Main Street', city, lpad((id % 99999)::text, 5, '0') FROM public.customers WHERE id % 3 <> 0;
DELETE FROM public.order_items WHERE order_id % 7 = 3;
DELETE FROM public.orders WHERE id % 7 = 3;
DELETE FROM public.addresses WHERE id % 6 = 1;
"""


async def add_orders(dsn: str, owner: str) -> None:
    """orders / order_items / addresses / products referencing customers, with checks and a trigger."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(ORDERS_DDL)
        for t in ("products", "orders", "order_items", "addresses"):
            await conn.execute(f'ALTER TABLE public.{t} OWNER TO "{owner}"')
            await conn.execute(f"ANALYZE public.{t}")
    finally:
        await conn.close()


async def checksums(dsn: str, tables: dict[str, str]) -> dict[str, tuple[int, str]]:
    """checksum() of several tables: {table: key expression for ordering}."""
    return {t: await checksum(dsn, t, k) for t, k in tables.items()}


ALL_SHOP_TABLES = {
    "public.customers": "id", "public.orders": "id", "public.order_items": "order_id, line_no",
    "public.addresses": "id", "public.products": "id",
}


def text_column(name: str, not_null: bool = False) -> Column:
    """A text column as the catalog reads one (for synthesis tests without a database)."""
    return Column(name=name, type="text", category="S", base_type="text", not_null=not_null, default=None, identity="",
                  generated=False, max_length=None, numeric_precision=None, numeric_scale=None)


def customers_info(*names: str) -> TableInfo:
    """public.customers with a bigint primary key ``id`` and the text columns ``names``."""
    pk = Column(name="id", type="int8", category="N", base_type="int8", not_null=True, default=None, identity="",
                generated=False, max_length=None, numeric_precision=None, numeric_scale=None)
    return TableInfo("public", "customers", 1, "r", "owner", False, False, (pk, *(text_column(n) for n in names)),
                     (Constraint("customers_pkey", "p", ("id",), "PRIMARY KEY (id)"),), (), ())


def matched_frequencies(synth: Synthesizer, table: Sequence[Mapping[str, str | None]], sample: Sequence[Mapping[str, str | None]]) -> None:
    """Feed the synthesizer the whole table's counts and tallies, as the seeder counts them in SQL."""
    counts = {c: Counter(r.get(c) for r in table) for c in synth.frequency_columns()}
    tallies: dict[str, Counter[str | None]] = {}
    for t in synth.tallies():
        if t.each_word is not None:
            tallies[t.name] = Counter(w for r in table for w in words(r.get(t.each_word)))
        else:
            tallies[t.name] = Counter(t.value(r, at) for r in table for at in range(len(t.sets)))
    synth.match_frequencies(counts, sample, candidates=1500, tallies=tallies)  # type: ignore[arg-type]
