"""A sample shop schema with realistic customers and orders (used by ``canary demo`` and drills).

Values come from Faker pools combined in SQL, so 100,000 customers take a couple of seconds instead of
minutes of per-row Python. This is deliberately a *different* generator from the seeder's: the shop
stands in for real production data.
"""

from __future__ import annotations

import random

import asyncpg
from faker import Faker

SCHEMA = """
CREATE TABLE customers (
    id           bigserial PRIMARY KEY,
    full_name    text        NOT NULL,
    email        text        NOT NULL UNIQUE,
    phone        text,
    address      text,
    postal_code  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz
);
CREATE TABLE orders (
    id           bigserial PRIMARY KEY,
    customer_id  bigint      NOT NULL REFERENCES customers (id),
    ordered_at   timestamptz NOT NULL,
    total        numeric(12, 0) NOT NULL CHECK (total > 0),
    status       text        NOT NULL CHECK (status IN ('paid', 'shipped', 'delivered', 'returned')),
    ship_to      text
);
CREATE INDEX orders_customer ON orders (customer_id);
"""

_CUSTOMERS = """
INSERT INTO customers (full_name, email, phone, address, postal_code, created_at, updated_at)
SELECT ($1::text[])[(1 + (g * 7919) % cardinality($1::text[]))::int],
       ($2::text[])[(1 + (g * 104729) % cardinality($2::text[]))::int] || (g % 9973)::text || '.' || g::text
           || '@' || ($3::text[])[(1 + (g * 31) % cardinality($3::text[]))::int],
       ($4::text[])[(1 + (g * 613) % cardinality($4::text[]))::int],
       ($5::text[])[(1 + (g * 2203) % cardinality($5::text[]))::int],
       lpad(((g * 7) % 63000 + 1000)::text, 5, '0'),
       ts, CASE WHEN g % 3 = 0 THEN ts + (g % 400) * interval '1 day' END
FROM (SELECT g, now() - (random() * 2000) * interval '1 day' AS ts FROM generate_series(1::bigint, $6::bigint) g) s
ORDER BY ts
"""

_ORDERS = """
INSERT INTO orders (customer_id, ordered_at, total, status, ship_to)
SELECT c.id, c.created_at + (random() * 300) * interval '1 day', (1 + floor(random() * 400)) * 1000,
       ($1::text[])[1 + floor(random() * 4)::int], c.address
FROM customers c, generate_series(1, 1 + (c.id % 3)::int) n
"""


async def create_shop(conn: asyncpg.Connection, customers: int, locale: str = "ko_KR", seed: int = 7) -> None:
    """Create ``customers`` and ``orders`` with about ``customers`` real-looking rows (2 orders each on
    average; about 2% of accounts closed, leaving the key gaps real tables have)."""
    fake = Faker(locale)
    Faker.seed(seed)
    random.seed(seed)
    names = list({fake.name() for _ in range(3000)})
    locals_ = list({fake.user_name() for _ in range(3000)})
    domains = ["gmail.com", "naver.com", "daum.net", "hanmail.net", "kakao.com", "nate.com", "outlook.com"]
    phones = list({fake.phone_number() for _ in range(5000)})
    addresses = list({fake.address().replace("\n", " ") for _ in range(5000)})
    async with conn.transaction():
        await conn.execute(SCHEMA)
        await conn.execute(_CUSTOMERS, names, locals_, domains, phones, addresses, customers)
        await conn.execute(_ORDERS, ["paid", "shipped", "delivered", "returned"])
        # closed accounts: real tables have key gaps (deletions, rolled-back inserts)
        await conn.execute("SELECT setseed(0.42)")
        await conn.execute(
            "CREATE TEMP TABLE closed ON COMMIT DROP AS SELECT id FROM customers WHERE random() < 0.02;"
            "DELETE FROM orders WHERE customer_id IN (SELECT id FROM closed);"
            "DELETE FROM customers WHERE id IN (SELECT id FROM closed)"
        )
    await conn.execute("ANALYZE customers; ANALYZE orders")
