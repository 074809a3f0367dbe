"""Child rows for canary customers: follow the foreign keys that point at a seeded table.

For each table that references the canary table with a single-column foreign key (orders ->
customers, addresses -> customers) and, one level further, the tables referencing those (order_items
-> orders), the seeder writes plausible rows for every canary: the number per parent is drawn from
what real parents have, timestamps follow the parent's by the real delay distribution (the drawn
histories dealt out to the canaries that can be created, within their windows or a spare gap's, where
a first child finds a free key at its delay: :func:`fit_first_children`), and other foreign keys
(order_items.product_id) take values real rows already use, so they always resolve.
Rows are inserted parents first; retire deletes them deepest first.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import datetime as dt
import json
import math
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
from canary.seeding.synth.streams import Streams
from canary.seeding.synth.synthesizer import RowContext, Synthesizer, SynthRow, timestamp_text
from canary.seeding.synth.times import RATE_TRIES, Precision, Rates

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
    streams = Streams.drawn(rng)  # the histories, their fitting and the rows' values: one stream each
    sample = await _sample_children(conn, info, fk, parent_sample_keys)

    prof = await asyncio.to_thread(profile, info, sample)
    history = await _histories(conn, parent.info, info, fk, parent_sample_keys)
    if not history.parents:
        return None
    cap = seeder.max_children
    parent_created = created_column(parent.info)
    drawn_all: list[list[float | None]] = []
    drawing = streams("histories")
    for i in range(len(parent.rows)):
        born = parse_ts(parent.rows[i].values.get(parent_created)) if parent_created else None
        drawn_all.append(history.draw(drawing, born)[:cap])
    if parent.depth == 0 and parent_created and not getattr(seeder, "arriving", False):
        drawn_all = await _fit_first_children(seeder, conn, parent, parent_created, info, history, drawn_all, streams("fitting"))
    rows_idx: list[int] = []
    delays: list[float | None] = []
    for i, drawn in enumerate(drawn_all):
        rows_idx.extend([i] * len(drawn))
        delays.extend(drawn)
    if not rows_idx:
        return None
    contexts: list[RowContext] = []
    for i, delay in zip(rows_idx, delays):
        base = parse_ts(parent.rows[i].values.get(parent_created)) if parent_created else None
        when = base + dt.timedelta(seconds=delay) if base is not None and delay is not None else base
        contexts.append(RowContext(pk=None, created=when))
    floors = [parse_ts(parent.rows[i].values.get(parent_created)) if parent_created else None for i in rows_idx]
    contexts = await _own_keys(seeder, conn, info, prof, [c.created for c in contexts], warnings, floors)
    fixed = {fk}
    for other in info.foreign_keys():
        if len(other.columns) == 1 and other.columns[0] != fk:
            fixed.add(other.columns[0])
    synth = Synthesizer(
        info, _with_fk_values(prof, sample, fixed - {fk}), locale=locale,
        contacts=ContactAllocator(rng=streams("contacts")), seed=streams("rows").getrandbits(128),
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
        # an order ships to its customer's address: given as it is, so none is composed only to be replaced
        # (composing was 59% of seeding 10,000 customers with their orders); one with none gets its own
        ships_to = parent.rows[rows_idx[i]].values.get(parent_address) if parent_address else None
        given = tuple((col, ships_to) for col in child_address) if ships_to is not None else ()
        r = synth.row(dataclasses.replace(contexts[i], given=given) if given else contexts[i])
        r.values[fk] = parent.rows[rows_idx[i]].values.get(ref.ref_columns[0])
        if ordinal and line is not None:
            r.values[line] = str(ordinal[i])
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
    rates: Rates = field(default_factory=Rates)  # when the sampled parents were created (hour × weekday): where a moved one goes

    @classmethod
    def of(cls, parents: Sequence[tuple[float | None, Sequence[float | None]]], size: int = 100, k: int = MIN_SHARED) -> Histories:
        """``parents``: (creation epoch or None, children's delays) per sampled parent."""
        dated = sorted(((c, t) for c, t in parents if c is not None), key=lambda p: p[0])
        rates = Rates.of(c for c, _ in dated)
        if len(dated) < 2 * max(size, k):
            return cls((), (History.of([t for _, t in parents], k),), rates)
        size = max(size, k)
        cuts = list(range(0, len(dated) - size // 2, size))[1:] if len(dated) >= 2 * size else []
        chunks = [dated[a:b] for a, b in zip([0, *cuts], [*cuts, len(dated)])]
        return cls(tuple(float(c[0][0]) for c in chunks[1:] if c[0][0] is not None),
                   tuple(History.of([t for _, t in c], k) for c in chunks), rates)

    @property
    def parents(self) -> int:
        return sum(b.parents for b in self.buckets)

    def bucket(self, created: dt.datetime | None) -> int:
        """The age bucket of a parent created ``created``."""
        return bisect.bisect_right(self.edges, created.timestamp()) if created is not None and self.edges else 0

    def draw(self, rng: random.Random, created: dt.datetime | None) -> list[float | None]:
        return self.buckets[self.bucket(created)].draw(rng)


#: parents tried at random for a history before it goes to one unchanged (a parent that can take it is
#: found among the first few unless hardly any can)
FIT_TRIES = 32
#: spares of an age group looked at for a history no parent can take (in the placement's order)
SPARE_TRIES = 256
#: a window or slot bound: (start, end) of the times a row may take
Span = tuple[dt.datetime, dt.datetime]


def fit_first_children(
    windows: Sequence[Span | None], created: Sequence[dt.datetime | None], draws: Sequence[list[float | None]],
    groups: Sequence[int], slots: Sequence[tuple[dt.datetime, dt.datetime, int]], rng: random.Random,
    spares: Sequence[tuple[Span, int]] = (), rates: Rates | None = None,
) -> tuple[list[list[float | None]], list[dt.datetime | None], list[int | None]]:
    """Which parent takes which drawn history, and when each parent is created, so that a first child
    can sit at its drawn delay. A child with an integer key goes between two real rows whose times
    bracket its own (``slots``: the child table's gaps, their neighbours' times and free keys), and
    such gaps can be days apart where real customers order minutes after signing up: a first order
    drawn a few minutes after a canary's signup would move to the next gap, days later, and canaries
    would lack the quick first orders a quarter of real customers place. So the histories drawn for
    the parents (the real joint distribution, kept as a whole) are dealt out shortest first delay
    first, each to a parent (of its own age group: ``groups``) that can be created within its window
    (``windows``: the times of its real key neighbours; None: not movable) at a time whose first child,
    at the drawn delay, falls in a gap with a free key (one of :data:`FIT_TRIES` parents drawn at
    random); that parent's time is redrawn there (over the times that fit, at the table's hour ×
    weekday ``rates`` as placement draws a time between neighbours; kept when it fits already). Few parents can take a quick history (independent table: 13% of them, where 45% of the
    real customers who order do it within the hour), so a history none of them can take moves one of
    them to a spare gap of the parent table that can (``spares``: the windows of gaps no canary took,
    in the order the placement drew them, and their age groups), of the same age group or the next;
    only where none can either, it goes to one of them unchanged. Untimed and empty histories, and
    those whose first child comes later than the child table's gaps are apart (:func:`_reach`), go to
    the parents left, at random. Returns the histories per parent, the new creation times (None:
    unchanged) and the spare each parent moved to (None: it stays in its gap)."""
    n = len(draws)
    order = sorted(range(len(slots)), key=lambda j: slots[j][0])
    starts = [slots[j][0] for j in order]
    free = [slots[j][2] for j in order]

    def fits(i: int, delay: float) -> list[tuple[int, Span]]:
        """(slot, creation times of parent i that put a child ``delay`` later into that slot)."""
        return fits_in(windows[i], delay)

    def fits_in(window: Span | None, delay: float) -> list[tuple[int, Span]]:
        if window is None:
            return []
        d = dt.timedelta(seconds=delay)
        lo, hi = window[0] + d, window[1] + d
        out = []
        for k in range(max(bisect.bisect_right(starts, lo) - 1, 0), bisect.bisect_right(starts, hi)):  # (gaps follow in time)
            s_lo, s_hi = slots[order[k]][0], slots[order[k]][1]
            a, b = max(lo, s_lo), min(hi, s_hi)
            if free[k] > 0 and a <= b:
                out.append((k, (a - d, b - d)))
        return out

    out: list[list[float | None]] = [[] for _ in range(n)]
    moved: list[dt.datetime | None] = [None] * n
    regapped: list[int | None] = [None] * n
    spare_of: dict[int, list[int]] = {}  # unused spares by age group, in the placement's order
    for j, (_, g) in enumerate(spares):
        spare_of.setdefault(g, []).append(j)
    pools: dict[int, list[int]] = {}  # parents still without a history, by age group
    for i in range(n):
        pools.setdefault(groups[i], []).append(i)

    def take(g: int, at: int) -> int:
        pool = pools[g]
        i = pool[at]
        pool[at] = pool[-1]
        pool.pop()
        return i

    def settle(options: list[tuple[int, Span]], window: Span) -> dt.datetime:
        """A creation time within ``window`` among ``options``, its child's slot taken: drawn over the
        times that fit at the table's rates (one more arrival of its Poisson stream, given that it fits;
        uniformly, a moved canary would sign up at night as often as at noon)."""
        weights = [max((b - a).total_seconds(), 1e-3) for _, (a, b) in options]
        for _ in range(RATE_TRIES if rates is not None and not rates.flat else 1):
            k, (a, b) = rng.choices(options, weights)[0]
            when = a + (b - a) * rng.random()
            if rates is None or rates.flat or rng.random() < rates.at(when):
                break
        free[k] -= 1
        return Precision.of((window[0].timestamp(), window[1].timestamp())).cut(when, rng, a, b)

    def spare(g: int, delay: float) -> tuple[int, int, list[tuple[int, Span]]] | None:
        """(spare, its place in its group's list, options) of the first unused spare of group ``g`` or
        the next that can take a first child ``delay`` after its parent (SPARE_TRIES looked at each)."""
        for x in (g, g - 1, g + 1):
            for at, j in enumerate(spare_of.get(x, ())[:SPARE_TRIES]):
                options = fits_in(spares[j][0], delay)
                if options:
                    return j, at, options
        return None

    def movable(g: int) -> tuple[int, int] | None:
        """(group, place) of a parent of group ``g`` or the next that is free to move (not sharing its gap
        with another canary), at random."""
        near = [x for x in (g, g - 1, g + 1) if pools.get(x)]
        for _ in range(FIT_TRIES if near else 0):
            x = rng.choice(near)
            at = rng.randrange(len(pools[x]))
            if windows[pools[x][at]] is not None:
                return x, at
        return None

    def fallback(g: int) -> int:
        """A parent of group ``g`` at random, else of the nearest group that has one left."""
        near = min((h for h in pools if pools[h]), key=lambda h: (abs(h - g), h))
        return take(near, rng.randrange(len(pools[near])))

    reach = _reach(starts)
    dated = [i for i in range(n) if draws[i] and draws[i][0] is not None]
    timed = sorted((i for i in dated if float(draws[i][0] or 0.0) < reach), key=lambda i: draws[i][0] or 0.0)
    late = [i for i in dated if float(draws[i][0] or 0.0) >= reach]
    rest = [i for i in range(n) if not draws[i] or draws[i][0] is None]
    rng.shuffle(late)
    rng.shuffle(rest)
    for src in timed:
        h, g = draws[src], groups[src]
        delay = float(h[0] or 0.0)
        near = [x for x in (g - 1, g, g + 1) if pools.get(x)]
        sizes = [len(pools[x]) for x in near]
        found: tuple[int, int, list[tuple[int, Span]]] | None = None
        for _ in range(min(FIT_TRIES, sum(sizes))):
            x = rng.choices(near, sizes)[0]
            at = rng.randrange(len(pools[x]))
            options = fits(pools[x][at], delay)
            if options:
                found = (x, at, options)
                break
        if found is None:
            place = spare(g, delay)
            parent = movable(spares[place[0]][1]) if place is not None else None
            if place is None or parent is None:
                out[fallback(g)] = h
                continue
            j, at, options = place
            spare_of[spares[j][1]].pop(at)
            i = take(*parent)
            out[i], regapped[i] = h, j
            moved[i] = settle(options, spares[j][0])
            continue
        i = take(found[0], found[1])
        out[i] = h
        options = found[2]
        born = created[i]
        here = [(k, span) for k, span in options if born is not None and span[0] <= born <= span[1]]
        if here:
            free[here[0][0]] -= 1
            continue
        window = windows[i]
        assert window is not None
        moved[i] = settle(options, window)
    for src in late + rest:  # (children first: a parent of its age group is still left for each)
        out[fallback(groups[src])] = draws[src]
    return out, moved, regapped


def _reach(starts: Sequence[dt.datetime]) -> float:
    """The longest first delay (seconds) worth fitting: the median time between the child table's
    successive gaps (``starts``, in time order). A later first child that fits no gap goes to the next
    free key after its time, moved by about that much, which a delay longer than it hardly shows; fitted,
    it would take one of the few parents whose window reaches a gap, the ones with long windows, and
    leave the short windows to the canaries without children (at 1%, canaries without orders were
    created 0.68 of the table's pace after the row before them, those with later orders 0.88)."""
    spacings = sorted((b - a).total_seconds() for a, b in zip(starts, starts[1:]) if b > a)
    return spacings[len(spacings) // 2] if spacings else math.inf


async def _fit_first_children(seeder: Any, conn: asyncpg.Connection, parent: Batch, parent_created: str, info: TableInfo,
                              history: Histories, draws: list[list[float | None]], rng: random.Random) -> list[list[float | None]]:
    """:func:`fit_first_children` for canaries with a one-column integer key and children with one:
    the canaries' key neighbours' times and the child table's gaps around them; a canary moved in
    its window gets its new creation time (and an update column that equalled it, or came before
    it, follows)."""
    pinfo = parent.info
    child_created = created_column(info)
    if (len(pinfo.primary_key) != 1 or len(info.primary_key) != 1 or child_created is None
            or pinfo.column(pinfo.primary_key[0]).base_type not in ("int2", "int4", "int8")
            or info.column(info.primary_key[0]).base_type not in ("int2", "int4", "int8")):
        return draws
    pk = pinfo.primary_key[0]
    keys = [r.values.get(pk) for r in parent.rows]
    ckey = ident(pk)
    tbl = qualified(pinfo.schema, pinfo.name)

    def neighbour(expr: str, before: bool) -> str:  # (ordered by the table's column, not by the text alias)
        return (f"(SELECT t.{expr}::text FROM {tbl} t WHERE t.{ckey} {'<' if before else '>'} k"
                f" ORDER BY t.{ckey}{' DESC' if before else ''} LIMIT 1)")

    rows = await conn.fetch(
        f"SELECT k::text AS k, {neighbour(ident(parent_created), True)} AS a, {neighbour(ident(parent_created), False)} AS b,"
        f" {neighbour(ckey, False)} AS nk FROM unnest($1::text[]::{pinfo.column(pk).type}[]) k", [k for k in keys if k is not None])
    around = {r["k"]: (parse_ts(r["a"]), parse_ts(r["b"]), r["nk"]) for r in rows}
    created = [parse_ts(r.values.get(parent_created)) for r in parent.rows]
    # rows sharing a gap with another canary keep their times (their order among themselves is set)
    next_of = Counter(around[k][2] for k in keys if k is not None and k in around)
    windows: list[Span | None] = []
    for k, born in zip(keys, created):
        a, b, nk = around.get(k, (None, None, None)) if k is not None else (None, None, None)
        windows.append((a, b) if a is not None and b is not None and born is not None and a <= born <= b
                       and next_of[nk] == 1 else None)
    spares = await _spare_gaps(seeder, conn, pinfo, parent_created, keys, history) if not pinfo.partitions else []
    wanted = sorted({w[0] + dt.timedelta(seconds=d[0]) for w, d in zip(windows, draws) if w is not None and d and d[0] is not None}
                    | {w[0] for w in windows if w is not None} | {w[0] for (w, _), _ in spares})
    if not wanted:
        return draws
    gaps = await seeder._gaps(conn, info, child_created, [], len(wanted), wanted)
    slots = [(lo_c, hi_c, int(g["hi"]) - int(g["lo"]) - 1) for g in gaps
             if (lo_c := parse_ts(g["lo_c"])) is not None and (hi_c := parse_ts(g["hi_c"])) is not None and lo_c <= hi_c]
    fitted, moved, regapped = fit_first_children(windows, created, draws, [history.bucket(c) for c in created], slots, rng,
                                                 [s for s, _ in spares], history.rates)
    updated = next((c.name for c in pinfo.columns if semantic_of(c) == Semantic.UPDATED), None)
    column = pinfo.column(parent_created)
    for i, when in enumerate(moved):
        old = created[i]
        if when is None or old is None:
            continue
        values = {**parent.rows[i].values, parent_created: timestamp_text(column.base_type, when)}
        j = regapped[i]
        if j is not None:  # its key: one beside a real row of the spare gap, as placement gives them
            lo, hi = spares[j][1]
            values[pk] = str(rng.choice((lo + 1, hi - 1)))
        if updated and values.get(updated) is not None:
            upd = parse_ts(values[updated])
            if upd is not None and (upd == old or upd < when):
                values[updated] = timestamp_text(pinfo.column(updated).base_type, upd + (when - old))
        parent.rows[i] = dataclasses.replace(parent.rows[i], pk=parent.key_of(values), values=values)
        if i < len(parent.contexts):
            parent.contexts[i] = RowContext(pk=values[pk] if j is not None else parent.contexts[i].pk, created=when,
                                            key=parent.contexts[i].key)
    return fitted


#: spare gaps per canary offered to histories no canary's window can take
SPARES_PER_ROW = 2


async def _spare_gaps(seeder: Any, conn: asyncpg.Connection, info: TableInfo, created: str, keys: Sequence[str | None],
                      history: Histories) -> list[tuple[tuple[Span, int], tuple[int, int]]]:
    """Gaps of the parent table no canary took, drawn as placement draws them (:meth:`_gaps`), up to
    :data:`SPARES_PER_ROW` per canary: ((their neighbours' times, age group), (lo, hi))."""
    taken = sorted(int(k) for k in keys if k is not None)
    out: list[tuple[tuple[Span, int], tuple[int, int]]] = []
    for g in await seeder._gaps(conn, info, created, [], len(taken), None, history.rates):
        lo, hi = int(g["lo"]), int(g["hi"])
        a, b = parse_ts(g["lo_c"]), parse_ts(g["hi_c"])
        if a is None or b is None or a > b or bisect.bisect_right(taken, lo) < bisect.bisect_left(taken, hi):
            continue  # untimed, or a canary is there
        out.append((((a, b), history.bucket(a)), (lo, hi)))
        if len(out) >= SPARES_PER_ROW * len(taken):
            break
    return out


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
                    times: list[dt.datetime | None], warnings: list[str],
                    floors: Sequence[dt.datetime | None] | None = None) -> list[RowContext]:
    """Keys and times for child rows dated ``times``: for a single integer key, keys whose real
    neighbours' times bracket each row's time (ids and dates agree like real rows'), never before
    its ``floors`` (its parent's creation); for a composite
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
        placed = await seeder._placements(conn, info, prof, [], n, local, times=[times[i] for i in order],
                                          floors=[floors[i] for i in order] if floors is not None else None)
        warnings.extend(local)
        out: list[RowContext] = [RowContext(pk=None, created=t) for t in times]
        for slot, i in enumerate(order):
            if slot < len(placed):
                out[i] = placed[slot]
        return out
    return [RowContext(pk=seeder._random_key(col.base_type, prof, col.name), created=t) for t in times]
