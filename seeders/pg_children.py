"""Child rows for canary customers: follow the foreign keys that point at a seeded table.

For each table that references the canary table with a single-column foreign key (orders ->
customers, addresses -> customers) and, one level further, the tables referencing those (order_items
-> orders), the seeder writes plausible rows for every canary: the number per parent is drawn from
what real parents have, timestamps follow the parent's by the real delay distribution, and other
foreign keys (order_items.product_id) take values real rows already use, so they always resolve.
Rows are inserted parents first; retire deletes them deepest first.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from canary.synth import (
    ContactAllocator,
    RowContext,
    Semantic,
    Synthesizer,
    SynthRow,
    TableProfile,
    Weighted,
    parse_ts,
    semantic_of,
)
from seeders.base import PlannedRow
from seeders.pg_catalog import Reference, TableInfo, introspect
from seeders.sql import ident, qualified

MAX_DEPTH = 2


@dataclass
class Batch:
    """Rows for one table. ``parent`` is the batch whose rows these reference (None for canaries)."""

    info: TableInfo
    rows: list[PlannedRow]
    depth: int = 0
    parent: Batch | None = None
    parent_index: list[int] = field(default_factory=list)  # row i references parent.rows[parent_index[i]]
    fk: tuple[str, str] | None = None  # (column here, referenced column in parent)
    top_index: list[int] = field(default_factory=list)  # the canary row each row belongs to
    contexts: list[RowContext] = field(default_factory=list)
    regenerate: Callable[[int], SynthRow] | None = None
    forced_off: bool = False  # FORCE RLS switched off for the seeder's reads; restored before commit

    @property
    def target(self) -> str:
        return self.info.target

    def key_of(self, values: dict[str, str | None]) -> str:
        """Text key of a row: the single key column's text, or a JSON list for a composite key."""
        pk = self.info.primary_key
        if len(pk) == 1:
            return str(values.get(pk[0]) or "")
        return json.dumps([values.get(c) for c in pk])


def created_column(info: TableInfo) -> str | None:
    return next((c.name for c in info.columns if semantic_of(c) == Semantic.CREATED), None)


async def plan_children(
    seeder: Any,
    conn: asyncpg.Connection,
    role: Any,
    parent: Batch,
    parent_sample_keys: list[str],
    locale: str,
    warnings: list[str],
    rng: random.Random,
) -> list[Batch]:
    """Batches of child rows for ``parent`` (and their children), parents before children."""
    if parent.depth >= MAX_DEPTH or not parent.rows:
        return []
    out: list[Batch] = []
    seen: set[str] = set()
    for ref in parent.info.children:
        if ref.child_target in seen or ref.child_target == parent.target:
            continue
        seen.add(ref.child_target)
        batch = await _plan_reference(seeder, conn, role, parent, ref, parent_sample_keys, locale, warnings, rng)
        if batch is None or not batch.rows:
            continue
        out.append(batch)
        keys = await _real_keys(conn, batch.info, ref.columns[0], parent_sample_keys)
        out.extend(await plan_children(seeder, conn, role, batch, keys, locale, warnings, rng))
    return out


async def _plan_reference(
    seeder: Any, conn: asyncpg.Connection, role: Any, parent: Batch, ref: Reference, parent_sample_keys: list[str],
    locale: str, warnings: list[str], rng: random.Random,
) -> Batch | None:
    if len(ref.columns) != 1 or len(parent.info.primary_key) != 1 or ref.ref_columns != parent.info.primary_key:
        warnings.append(f"{ref.child_target}: its foreign key {ref.constraint} is not a single column to the key of "
                        f"{parent.target}; no child rows written there")
        return None
    info = await introspect(conn, ref.child_target, datastore=seeder.ds.name)
    if not info.primary_key:
        warnings.append(f"{ref.child_target} has no primary key; canary cannot remove rows from it exactly, so it writes none")
        return None
    forced_off = await seeder._quiet_reads(conn, info, role, may_alter=True)
    fk = ref.columns[0]
    sample = await _sample_children(conn, info, fk, parent_sample_keys)
    from canary.synth import profile

    prof = await asyncio.to_thread(profile, info, sample)
    counts = await _children_per_parent(conn, info, fk, parent_sample_keys)
    if not counts:
        return None
    per_parent = Weighted.of(counts)
    cap = seeder.max_children
    delays = await _delays(conn, parent.info, info, fk, parent_sample_keys)
    parent_created = created_column(parent.info)
    rows_idx: list[int] = []
    for i in range(len(parent.rows)):
        rows_idx.extend([i] * min(int(per_parent.pick(rng)), cap))
    if not rows_idx:
        return None
    contexts: list[RowContext] = []
    for i in rows_idx:
        base = parse_ts(parent.rows[i].values.get(parent_created)) if parent_created else None
        when = base + dt.timedelta(seconds=_draw(delays, rng)) if base is not None and delays else base
        contexts.append(RowContext(pk=None, created=when))
    keyed = await _own_keys(seeder, conn, info, prof, len(contexts), warnings)
    contexts = [RowContext(pk=k, created=c.created) for k, c in zip(keyed, contexts)]
    fixed = {fk}
    for other in info.foreign_keys():
        if len(other.columns) == 1 and other.columns[0] != fk:
            fixed.add(other.columns[0])
    synth = Synthesizer(
        info, _with_fk_values(prof, sample, fixed - {fk}), locale=locale,
        contacts=ContactAllocator(rng=random.Random(rng.getrandbits(64))), seed=rng.getrandbits(64),
        skip=seeder._skipped(info, prof),
    )
    batch = Batch(info, [], parent.depth + 1, parent, rows_idx, (fk, ref.ref_columns[0]),
                  [parent.top_index[i] if parent.top_index else i for i in rows_idx], contexts)

    parent_address = next((c.name for c in parent.info.columns if semantic_of(c) == Semantic.ADDRESS), None)
    child_address = [c.name for c in info.columns if semantic_of(c) == Semantic.ADDRESS and c.name != fk]

    def make(i: int) -> SynthRow:
        r = synth.row(contexts[i])
        r.values[fk] = parent.rows[rows_idx[i]].values.get(ref.ref_columns[0])
        for col in child_address:  # an order ships to its customer's address
            if parent_address and r.values.get(col) is not None:
                r.values[col] = parent.rows[rows_idx[i]].values.get(parent_address) or r.values[col]
        return r

    batch.regenerate = make
    batch.forced_off = forced_off
    def build() -> list[PlannedRow]:
        out = []
        for i in range(len(contexts)):
            values = make(i).values
            out.append(PlannedRow(info.target, batch.key_of(values), values, canary=False))
        return out

    batch.rows = await asyncio.to_thread(build)  # CPU work (Faker) off the event loop
    return batch


def _with_fk_values(prof: TableProfile, sample: Sequence[dict[str, str | None]], columns: set[str]) -> TableProfile:
    """Foreign-key columns draw from values real rows already use (so they always resolve)."""
    if not columns:
        return prof
    import dataclasses

    cols = dict(prof.columns)
    for name in columns:
        used = Counter(r.get(name) for r in sample if r.get(name) is not None)
        if name in cols and used:
            cols[name] = dataclasses.replace(cols[name], categorical=Weighted.of(used))
    return dataclasses.replace(prof, columns=cols)


def _draw(values: Sequence[float], rng: random.Random) -> float:
    from canary.synth import _quantile

    return max(0.0, _quantile(values, rng))


async def _sample_children(conn: asyncpg.Connection, info: TableInfo, fk: str, parent_keys: list[str]) -> list[dict[str, str | None]]:
    cols = ", ".join(f"{ident(c.name)}::text" for c in info.columns)
    rows = await conn.fetch(
        f"SELECT {cols} FROM {qualified(info.schema, info.name)} WHERE {ident(fk)} = ANY($1::text[]::{info.column(fk).type}[]) LIMIT 5000",
        parent_keys,
    )
    if len(rows) < 50:
        rows = await conn.fetch(f"SELECT {cols} FROM {qualified(info.schema, info.name)} ORDER BY random() LIMIT 2000")
    names = [c.name for c in info.columns]
    return [dict(zip(names, r.values())) for r in rows]


async def _children_per_parent(conn: asyncpg.Connection, info: TableInfo, fk: str, parent_keys: list[str]) -> dict[int, int]:
    """How many child rows real parents have (zero included): count -> number of parents."""
    if not parent_keys:
        return {}
    rows = await conn.fetch(
        f"SELECT k, (SELECT count(*) FROM {qualified(info.schema, info.name)} c WHERE c.{ident(fk)} = k::{info.column(fk).type}) AS n"
        f" FROM unnest($1::text[]) AS k",
        parent_keys[:500],
    )
    return dict(Counter(int(r["n"]) for r in rows))


async def _delays(conn: asyncpg.Connection, parent: TableInfo, child: TableInfo, fk: str, parent_keys: list[str]) -> list[float]:
    """Seconds between a real parent's creation and its children's (sorted)."""
    pc, cc = created_column(parent), created_column(child)
    if not pc or not cc or len(parent.primary_key) != 1:
        return []
    rows = await conn.fetch(
        f"SELECT extract(epoch FROM c.{ident(cc)}::timestamptz - p.{ident(pc)}::timestamptz)::float8 AS d"
        f" FROM {qualified(parent.schema, parent.name)} p JOIN {qualified(child.schema, child.name)} c"
        f" ON c.{ident(fk)} = p.{ident(parent.primary_key[0])}"
        f" WHERE p.{ident(parent.primary_key[0])} = ANY($1::text[]::{parent.column(parent.primary_key[0]).type}[]) LIMIT 5000",
        parent_keys[:500],
    )
    return sorted(r["d"] for r in rows if r["d"] is not None)


async def _real_keys(conn: asyncpg.Connection, info: TableInfo, fk: str, parent_keys: list[str]) -> list[str]:
    """Keys of real child rows of the sampled parents (the sample for the next level down)."""
    if len(info.primary_key) != 1:
        return []
    rows = await conn.fetch(
        f"SELECT {ident(info.primary_key[0])}::text AS k FROM {qualified(info.schema, info.name)}"
        f" WHERE {ident(fk)} = ANY($1::text[]::{info.column(fk).type}[]) LIMIT 500",
        parent_keys,
    )
    return [r["k"] for r in rows]


async def _own_keys(seeder: Any, conn: asyncpg.Connection, info: TableInfo, prof: TableProfile, n: int, warnings: list[str]) -> list[str | None]:
    """Primary keys for n child rows: interleaved like the canaries' for a single integer key; left
    to the synthesizer (composite keys) or the key's default otherwise."""
    if len(info.primary_key) != 1:
        return [None] * n
    col = info.column(info.primary_key[0])
    if col.base_type in ("int2", "int4", "int8"):
        local: list[str] = []
        placements = await seeder._placements(conn, info, prof, [], n, local)
        warnings.extend(local)
        return [p.pk for p in placements]
    return [seeder._random_key(col.base_type, prof, col.name) for _ in range(n)]
