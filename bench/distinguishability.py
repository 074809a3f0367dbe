"""Can a classifier tell canary customers from real ones?

On its own embedded PostgreSQL: a shop of 50,000 real-looking customers and their orders made by
``canary.shop`` (a generator deliberately unlike the seeder's, with its own quirks), then 1% canary
customers seeded by the real seeder (with child orders). Per-customer features are computed the way an
insider would: shapes and lengths of every column, frequency of the e-mail domain / phone prefix /
value shapes within the table, id gaps to the neighbours, timestamps, and order counts and totals. A
gradient-boosting classifier (scikit-learn, stratified 5-fold) then tries to separate them; the
benchmark prints the ROC AUC (0.5 = indistinguishable; target <= 0.55) and the features it used most.

Two runs: without contact pools (synthesis quality alone) and with canary mail domains and owned
phone numbers (what production uses: contact points must route back to us).

Usage: ``python bench/distinguishability.py [--customers 50000] [--rate 0.01] [--locale ko_KR]``
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from canary.config import from_mapping
from canary.crypto import Keyring, generate_key
from canary.pg.server import PostgresServer
from canary.registry import Registry
from canary.shop import create_shop
from canary.store import ControlStore
from canary.synth import local_shape, shape
from seeders.postgres import PostgresSeeder

POOLS = {
    "email_domains": ["hanmir-mail.co.kr", "post.dasom.kr", "mail.gaon.net"],
    "phone_numbers": ["+821055500000-+821055509999"],
}

QUERY = """
SELECT c.id, c.full_name, c.email, c.phone, c.address, c.postal_code,
       extract(epoch FROM c.created_at) AS created, extract(epoch FROM c.updated_at - c.created_at) AS upd_gap,
       c.id - lag(c.id) OVER (ORDER BY c.id) AS gap_prev, lead(c.id) OVER (ORDER BY c.id) - c.id AS gap_next,
       extract(epoch FROM c.created_at - lag(c.created_at) OVER (ORDER BY c.id)) AS ts_prev,
       (SELECT count(*) FROM orders o WHERE o.customer_id = c.id) AS n_orders,
       (SELECT coalesce(avg(total), 0) FROM orders o WHERE o.customer_id = c.id) AS avg_total,
       (SELECT coalesce(min(extract(epoch FROM o.ordered_at - c.created_at)), -1) FROM orders o WHERE o.customer_id = c.id) AS first_order
FROM customers c ORDER BY c.id
"""


def features(rows: Sequence[asyncpg.Record]) -> tuple[np.ndarray, list[str]]:
    """Per-customer features, frequency-encoded within the table (an insider sees the whole table)."""
    def freq(values: list[str]) -> list[float]:
        counts = Counter(values)
        return [counts[v] / len(values) for v in values]

    email = [r["email"] or "" for r in rows]
    local = [e.rpartition("@")[0] for e in email]
    domain = [e.rpartition("@")[2] for e in email]
    phone = [r["phone"] or "" for r in rows]
    digits = [re.sub(r"\D", "", p) for p in phone]
    name = [r["full_name"] or "" for r in rows]
    addr = [r["address"] or "" for r in rows]
    cols: dict[str, list[float]] = {
        "name_len": [len(n) for n in name],
        "name_shape_freq": freq([shape(n) for n in name]),
        "name_freq": freq(name),
        "email_local_len": [len(x) for x in local],
        "email_local_shape_freq": freq([local_shape(x) for x in local]),
        "email_local_digits": [sum(ch.isdigit() for ch in x) for x in local],
        "email_domain_freq": freq(domain),
        "phone_null": [float(not p) for p in phone],
        "phone_shape_freq": freq([shape(p) for p in phone]),
        "phone_prefix_freq": freq([d[:3] for d in digits]),
        "phone_block_freq": freq([d[:7] for d in digits]),
        "addr_len": [len(a) for a in addr],
        "addr_tokens": [len(a.split()) for a in addr],
        "addr_shape_freq": freq([re.sub(r"\d+", "9", a) for a in addr]),
        "postal_len": [len(r["postal_code"] or "") for r in rows],
        "created": [float(r["created"] or 0) for r in rows],
        "upd_null": [float(r["upd_gap"] is None) for r in rows],
        "upd_gap": [float(r["upd_gap"] or -1) for r in rows],
        "gap_prev": [float(r["gap_prev"] or 0) for r in rows],
        "gap_next": [float(r["gap_next"] or 0) for r in rows],
        "ts_vs_prev": [float(r["ts_prev"] or 0) for r in rows],
        "n_orders": [float(r["n_orders"]) for r in rows],
        "avg_total": [float(r["avg_total"]) for r in rows],
        "first_order_delay": [float(r["first_order"]) for r in rows],
    }
    names = list(cols)
    return np.array([cols[n] for n in names], dtype=float).T, names


def auc(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    scores = np.zeros(len(y))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    for train, test in folds.split(x, y):
        clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=0)
        clf.fit(x[train], y[train])
        scores[test] = clf.predict_proba(x[test])[:, 1]
    return float(roc_auc_score(y, scores)), scores


def single_feature_auc(x: np.ndarray, y: np.ndarray, names: list[str]) -> list[tuple[str, float]]:
    """How well each feature alone separates canaries (AUC folded to >= 0.5), most telling first."""
    out = []
    for i, n in enumerate(names):
        a = float(roc_auc_score(y, x[:, i])) if len(set(x[:, i])) > 1 else 0.5
        out.append((n, max(a, 1 - a)))
    return sorted(out, key=lambda kv: -kv[1])


async def admin_each(server: PostgresServer, sql: str, names: Sequence[str]) -> None:
    """Run ``sql`` (with ``{name}``) once per name as the superuser."""
    admin = await asyncpg.connect(server.dsn())
    try:
        for name in names:
            await admin.execute(sql.format(name=name))
    finally:
        await admin.close()


async def run(server: PostgresServer, customers: int, rate: float, locale: str, pools: dict[str, Any] | None, label: str) -> None:
    db = f"dist_{int(time.time() * 1000) % 10**9}"
    await admin_each(server, 'CREATE DATABASE "{name}"', (db, db + "_ctl"))
    conn = await asyncpg.connect(server.dsn(db))
    t0 = time.perf_counter()
    await create_shop(conn, customers, locale=locale)
    real = await conn.fetchval("SELECT count(*) FROM customers")
    count = max(1, round(real * rate))
    cfg = from_mapping({
        "control": {"dsn": server.dsn(db + "_ctl")},
        "seeding": pools or {},
        "datastores": [{"name": "shop", "dsn": server.dsn(db), "locale": "en_US", "tables": [{"table": "public.customers", "count": count}]}],
    })
    store = ControlStore(cfg)
    await store.open()
    try:
        registry = Registry(store.pool, Keyring(generate_key()))
        t1 = time.perf_counter()
        await PostgresSeeder.from_config(cfg, "shop", registry).apply()
        seeded = time.perf_counter() - t1
        canary_ids = {int(r.location["pk"]) for r in await registry.active("shop")}
    finally:
        await store.close()
    rows = await conn.fetch(QUERY)
    await conn.close()
    x, names = features(rows)
    y = np.array([1 if r["id"] in canary_ids else 0 for r in rows])
    score, _ = auc(x, y)
    top = single_feature_auc(x, y, names)[:6]
    print(f"{label}: {real:,} real + {int(y.sum()):,} canaries ({locale}; shop built + seeded in {time.perf_counter() - t0:.1f}s, "
          f"seeding {seeded:.1f}s)")
    print(f"  ROC AUC (5-fold, gradient boosting, {x.shape[1]} features): {score:.3f}   target <= 0.55")
    print("  most telling single features (AUC alone): " + ", ".join(f"{n} {d:.3f}" for n, d in top))
    await admin_each(server, 'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', (db, db + "_ctl"))


async def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=50_000)
    ap.add_argument("--rate", type=float, default=0.01)
    ap.add_argument("--locale", default="ko_KR")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="canary-dist-"))
    server = PostgresServer(tmp)
    await asyncio.to_thread(server.start)
    try:
        await run(server, args.customers, args.rate, args.locale, None, "without contact pools")
        await run(server, args.customers, args.rate, args.locale, POOLS, "with canary mail domains + owned phone block")
    finally:
        await asyncio.to_thread(server.destroy)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
