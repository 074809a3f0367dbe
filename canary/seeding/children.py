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
import bisect
import datetime as dt
import json
import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from canary.postgres.sql import ident, qualified
from canary.seeder import PlannedRow
from canary.seeding.catalog import Reference, TableInfo, introspect
from canary.seeding.synth.contacts import ContactAllocator
from canary.seeding.synth.profile import TableProfile, profile
from canary.seeding.synth.shapes import MIN_SHARED, Semantic, Weighted, parse_ts, quantile, semantic_of
from canary.seeding.synth.synthesizer import RowContext, Synthesizer, SynthRow

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
    """The column dating a row: a creation timestamp, else the first other timestamp that is not an
    update or birth date (``orders.ordered_at``, ``payments.paid_at``)."""
    sems = {c.name: semantic_of(c) for c in info.columns}
    return next((c.name for c in info.columns if sems[c.name] == Semantic.CREATED), None) or next(
        (c.name for c in info.columns if c.category == "D" and c.base_type != "date" and sems[c.name] == Semantic.GENERIC), None
    )


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

    prof = await asyncio.to_thread(profile, info, sample)
    history = await _histories(conn, parent.info, info, fk, parent_sample_keys)
    if not history.parents:
        return None
    cap = seeder.max_children
    parent_created = created_column(parent.info)
    rows_idx: list[int] = []
    delays: list[float | None] = []
    for i in range(len(parent.rows)):
        born = parse_ts(parent.rows[i].values.get(parent_created)) if parent_created else None
        drawn = history.draw(rng, born)[:cap]
        rows_idx.extend([i] * len(drawn))
        delays.extend(drawn)
    if not rows_idx:
        return None
    contexts: list[RowContext] = []
    for i, delay in zip(rows_idx, delays):
        base = parse_ts(parent.rows[i].values.get(parent_created)) if parent_created else None
        when = base + dt.timedelta(seconds=delay) if base is not None and delay is not None else base
        contexts.append(RowContext(pk=None, created=when))
    contexts = await _own_keys(seeder, conn, info, prof, [c.created for c in contexts], warnings)
    fixed = {fk}
    for other in info.foreign_keys():
        if len(other.columns) == 1 and other.columns[0] != fk:
            fixed.add(other.columns[0])
    synth = Synthesizer(
        info, _with_fk_values(prof, sample, fixed - {fk}), locale=locale,
        contacts=ContactAllocator(rng=random.Random(rng.getrandbits(64))), seed=rng.getrandbits(64),
        skip=seeder._skipped(info, prof), dated_by=created_column(info),
    )
    batch = Batch(info, [], parent.depth + 1, parent, rows_idx, (fk, ref.ref_columns[0]),
                  [parent.top_index[i] if parent.top_index else i for i in rows_idx], contexts)

    parent_address = next((c.name for c in parent.info.columns if semantic_of(c) == Semantic.ADDRESS), None)
    child_address = [c.name for c in info.columns if semantic_of(c) == Semantic.ADDRESS and c.name != fk]

    # a key of (parent, line number): number each parent's children 1, 2, 3... as real lines are
    line = next((c for c in info.primary_key if c != fk), None) if len(info.primary_key) == 2 and fk in info.primary_key else None
    line_col = info.column(line) if line else None
    ordinal: list[int] = []
    if line_col is not None and line_col.base_type in ("int2", "int4", "int8"):
        seen_per_parent: Counter[int] = Counter()
        start = int(min(prof.columns[line_col.name].numbers, default=1)) if line_col.name in prof.columns else 1
        for p in rows_idx:
            ordinal.append(start + seen_per_parent[p])
            seen_per_parent[p] += 1

    def make(i: int) -> SynthRow:
        r = synth.row(contexts[i])
        r.values[fk] = parent.rows[rows_idx[i]].values.get(ref.ref_columns[0])
        if ordinal and line is not None:
            r.values[line] = str(ordinal[i])
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


@dataclass(frozen=True, slots=True)
class History:
    """How real parents' children are spread over time, learned from sampled parents and drawn
    k-anonymously: a canary's number of children follows the real count distribution, its first
    child's delay after the parent's creation comes from real parents with the same count (counts
    fewer than ``k`` parents have are pooled with the next larger ones), and each later gap from the
    real gaps at that position (positions fewer than ``k`` parents reach share the deepest position
    that ``k`` reach). Delays are interpolated between neighbouring real values, never copied."""

    parents: int
    counts: Weighted  # children per parent (zero included) -> parents
    first: Mapping[int, tuple[float, ...]]  # count -> sorted first delays (seconds)
    gaps: tuple[tuple[float, ...], ...]  # gaps[j]: sorted gaps between child j and child j + 1
    k: int = MIN_SHARED

    @classmethod
    def of(cls, timelines: Sequence[Sequence[float | None]], k: int = MIN_SHARED) -> History:
        """``timelines``: per sampled parent, its children's delays after the parent's creation
        (None where a child or parent has no timestamp)."""
        counts = Counter(len(t) for t in timelines)
        timed = [sorted(d for d in t if d is not None) for t in timelines]
        first: dict[int, tuple[float, ...]] = {}
        pending: list[float] = []
        group: list[int] = []
        for n in sorted((n for n in counts if n), reverse=True):
            pending.extend(d[0] for t, d in zip(timelines, timed) if len(t) == n and d)
            group.append(n)
            if len(pending) >= k:
                first.update({g: tuple(sorted(pending)) for g in group})
                pending, group = [], []
        if group and first:  # the smallest counts, too few: share the nearest larger group's delays
            first.update({g: tuple(sorted(pending + list(first[min(first)]))) for g in group})
        gaps: list[tuple[float, ...]] = []
        while True:
            j = len(gaps)
            at = sorted(d[j + 1] - d[j] for d in timed if len(d) > j + 1)
            if len(at) < k:
                break
            gaps.append(tuple(at))
        return cls(len(timelines), Weighted.of(counts) if counts else Weighted((), ()), first, tuple(gaps), k)

    def draw(self, rng: random.Random) -> list[float | None]:
        """One canary's children: their delays after its creation, in order (None: no timing known)."""
        n = int(self.counts.pick(rng)) if self.counts else 0
        if not n:
            return []
        firsts = self.first.get(n)
        if not firsts:
            return [None] * n
        at = max(0.0, quantile(firsts, rng))
        out: list[float | None] = [at]
        for j in range(n - 1):
            at += max(0.0, quantile(self.gaps[min(j, len(self.gaps) - 1)], rng) if self.gaps else 0.0)
            out.append(at)
        return out


@dataclass(frozen=True, slots=True)
class Histories:
    """Histories of real parents by age: children depend on how long a parent has existed (an
    account opened last week has few orders, all recent). Sampled parents are split by creation
    time into buckets of ``size`` (at least ``k``); a canary draws from the bucket of its own
    creation time."""

    edges: tuple[float, ...]  # creation epoch where each bucket after the first begins
    buckets: tuple[History, ...]

    @classmethod
    def of(cls, parents: Sequence[tuple[float | None, Sequence[float | None]]], size: int = 100, k: int = MIN_SHARED) -> Histories:
        """``parents``: (creation epoch or None, children's delays) per sampled parent."""
        dated = sorted(((c, t) for c, t in parents if c is not None), key=lambda p: p[0])
        if len(dated) < 2 * max(size, k):
            return cls((), (History.of([t for _, t in parents], k),))
        size = max(size, k)
        cuts = list(range(0, len(dated) - size // 2, size))[1:] if len(dated) >= 2 * size else []
        chunks = [dated[a:b] for a, b in zip([0, *cuts], [*cuts, len(dated)])]
        return cls(tuple(float(c[0][0]) for c in chunks[1:] if c[0][0] is not None),
                   tuple(History.of([t for _, t in c], k) for c in chunks))

    @property
    def parents(self) -> int:
        return sum(b.parents for b in self.buckets)

    def draw(self, rng: random.Random, created: dt.datetime | None) -> list[float | None]:
        i = bisect.bisect_right(self.edges, created.timestamp()) if created is not None and self.edges else 0
        return self.buckets[i].draw(rng)


async def _histories(conn: asyncpg.Connection, parent: TableInfo, child: TableInfo, fk: str, parent_keys: list[str]) -> Histories:
    """Children timelines of up to 2,000 sampled real parents (zero children included)."""
    if not parent_keys or len(parent.primary_key) != 1:
        return Histories.of([])
    pk = parent.primary_key[0]
    pc, cc = created_column(parent), created_column(child)
    delay = (f"extract(epoch FROM c.{ident(cc)}::timestamptz - p.{ident(pc)}::timestamptz)::float8" if pc and cc else "NULL::float8")
    created = f"extract(epoch FROM p.{ident(pc)}::timestamptz)::float8" if pc else "NULL::float8"
    rows = await conn.fetch(
        f"SELECT {created} AS c, array(SELECT {delay} FROM {qualified(child.schema, child.name)} c WHERE c.{ident(fk)} = p.{ident(pk)}"
        f" ORDER BY 1) AS d FROM {qualified(parent.schema, parent.name)} p"
        f" WHERE p.{ident(pk)} = ANY($1::text[]::{parent.column(pk).type}[])",
        parent_keys[:2000],
    )
    return Histories.of([(r["c"], list(r["d"])) for r in rows])


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


async def _own_keys(seeder: Any, conn: asyncpg.Connection, info: TableInfo, prof: TableProfile,
                    times: list[dt.datetime | None], warnings: list[str]) -> list[RowContext]:
    """Keys and times for child rows dated ``times``: for a single integer key, keys whose real
    neighbours' times bracket each row's time (ids and dates agree like real rows'); for a composite
    key, the next values of its sequence-backed columns (when the rows are written), the synthesizer's
    for its other columns; a key drawn like real ones otherwise."""
    n = len(times)
    if len(info.primary_key) != 1:
        sequenced = tuple((c, None) for c, _ in info.key_sequences)
        return [RowContext(pk=None, created=t, key=sequenced) for t in times]
    col = info.column(info.primary_key[0])
    if col.base_type in ("int2", "int4", "int8") and getattr(seeder, "arriving", False):
        return [RowContext(pk=None, created=t) for t in times]  # a trickle sign-up's rows take their keys when written
    if col.base_type in ("int2", "int4", "int8"):
        local: list[str] = []
        order = sorted(range(n), key=lambda i: (times[i] is None, times[i] or dt.datetime.min.replace(tzinfo=dt.timezone.utc)))
        placed = await seeder._placements(conn, info, prof, [], n, local, times=[times[i] for i in order])
        warnings.extend(local)
        out: list[RowContext] = [RowContext(pk=None, created=t) for t in times]
        for slot, i in enumerate(order):
            if slot < len(placed):
                out[i] = placed[slot]
        return out
    return [RowContext(pk=seeder._random_key(col.base_type, prof, col.name), created=t) for t in times]
