"""Physical traces: what a table's system columns tell an insider about how each row got there.

Any role that can read a table can read ``xmin`` (the inserting or last updating transaction),
``xmax`` (a deleting / locking transaction: inserting an order takes a FOR KEY SHARE lock on its
customer) and ``ctid`` (heap block and line pointer), and the key's sequence. Rows written one by one
as customers signed up have transaction ids and heap positions that follow their keys (updated rows
move to later ones); rows written afterwards between old keys do not.

:func:`trace_features` takes rows from :data:`TRACE_QUERY` (any table with a bigint-compatible key and
a creation time) and returns per-row features; :func:`trace_rules` the label-free versions a thief
would apply. Both are standalone so that a seeding mode (backdated, trickle...) can be measured by
passing its table's rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import numpy as np
from scipy.stats import rankdata

TRACE_QUERY = """
SELECT {key}::bigint AS id, xmin::text::bigint AS xmin, xmax::text::bigint AS xmax,
       (ctid::text::point)[0]::bigint AS block, (ctid::text::point)[1]::int AS item,
       extract(epoch FROM {created})::float8 AS created
FROM {table} ORDER BY {key}
"""


async def fetch_traces(conn: asyncpg.Connection, table: str = "customers", key: str = "id",
                       created: str = "created_at") -> tuple[list[dict[str, Any]], int | None]:
    """The rows of ``table`` with their system columns (in key order), and the key sequence's last
    value (None when the key has no sequence). Identifiers are trusted (bench tables)."""
    rows = await conn.fetch(TRACE_QUERY.format(table=table, key=key, created=created))
    seq = await conn.fetchval("SELECT pg_get_serial_sequence($1, $2)", table, key)
    last = await conn.fetchval(f"SELECT last_value FROM {seq}") if seq else None
    return [dict(r) for r in rows], (int(last) if last is not None else None)


def _signed_log(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.sign(x) * np.log1p(np.abs(x))
    return out


def _neighbours(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each element's predecessor and successor in key order (the element itself at the ends)."""
    prev = np.concatenate([a[:1], a[:-1]])
    nxt = np.concatenate([a[1:], a[-1:]])
    return prev, nxt


def _arrays(rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    if any(rows[i]["id"] > rows[i + 1]["id"] for i in range(len(rows) - 1)):
        raise ValueError("trace rows must be in key order")
    out = {k: np.array([float(r[k]) for r in rows]) for k in ("id", "xmin", "xmax", "block", "item")}
    out["created"] = np.array([float(r["created"]) if r["created"] is not None else np.nan for r in rows])
    return out


def trace_features(rows: Sequence[Mapping[str, Any]], seq_last: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Per-row physical-trace features of ``rows`` (dicts with ``id``, ``xmin``, ``xmax``, ``block``,
    ``item``, ``created`` as :data:`TRACE_QUERY` selects them, in key order); ``seq_last`` is the key
    sequence's last value."""
    a = _arrays(rows)
    n = len(rows)
    ids, xmin, xmax, block = a["id"], a["xmin"], a["xmax"], a["block"]
    _, inv, counts = np.unique(xmin, return_inverse=True, return_counts=True)
    group = counts[inv].astype(float)
    mode = np.unique(xmin, return_counts=True)
    load_xmin = mode[0][np.argmax(mode[1])]
    key_rank = rankdata(ids) / n
    xmin_prev, xmin_next = _neighbours(xmin)
    block_prev, block_next = _neighbours(block)
    id_prev, id_next = _neighbours(ids)
    c_prev, c_next = _neighbours(a["created"])
    key_gap_prev, key_gap_next = ids - id_prev, id_next - ids
    # where the row sits inside its neighbours' span, in time and in keys (0..1 each; equal when the
    # key was taken at creation time like the rows around)
    span_t = c_next - c_prev
    pos_t = np.divide(a["created"] - c_prev, span_t, out=np.full(n, 0.5), where=np.abs(span_t) > 0)
    span_k = id_next - id_prev
    pos_k = np.divide(ids - id_prev, span_k, out=np.full(n, 0.5), where=span_k > 0)
    nz = xmax != 0
    _, xinv, xcounts = np.unique(xmax, return_inverse=True, return_counts=True)
    xmax_group = np.where(nz, xcounts[xinv], 0).astype(float)
    last_block = block.max() if n else 0.0
    cols: dict[str, np.ndarray] = {
        "xmin_group_log": np.log(group),
        "xmin_is_max": (xmin == xmin.max()).astype(float),
        "xmin_is_load": (xmin == load_xmin).astype(float),
        "xmin_rank_vs_key_rank": rankdata(xmin) / n - key_rank,
        "xmin_rank_vs_created_rank": rankdata(np.nan_to_num(a["created"])) / n - rankdata(xmin) / n,
        "xmin_out_of_key_order": (~(((xmin_prev <= xmin) & (xmin <= xmin_next)) | ((xmin_prev >= xmin) & (xmin >= xmin_next)))).astype(float),
        "xmin_jump_prev": _signed_log(xmin - xmin_prev),
        "xmin_jump_next": _signed_log(xmin_next - xmin),
        "xmax_set": nz.astype(float),
        "xmax_group_log": np.log1p(xmax_group),
        "block_rank_vs_key_rank": rankdata(block) / n - key_rank,
        "block_jump_prev": _signed_log(block - block_prev),
        "block_jump_next": _signed_log(block_next - block),
        "block_in_last_percent": (block >= last_block - max(1.0, 0.01 * last_block)).astype(float),
        "item": a["item"],
        "key_gap_prev_log": np.log1p(key_gap_prev),
        "key_gap_next_log": np.log1p(key_gap_next),
        "created_pos_vs_key_pos": np.nan_to_num(pos_t - pos_k),
        "seq_distance": (float(seq_last) - ids) / n if seq_last is not None else np.zeros(n),
    }
    names = list(cols)
    return np.column_stack([cols[k] for k in names]), names


def trace_rules(rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Label-free rules on the traces, 1 per flagged row: rows sharing a transaction with a small group
    (not the bulk load, not one per signup), rows whose transaction id breaks key order, rows whose heap
    position is far from their key's, the newest transaction holding old keys."""
    a = _arrays(rows)
    n = len(rows)
    ids, xmin, block = a["id"], a["xmin"], a["block"]
    _, inv, counts = np.unique(xmin, return_inverse=True, return_counts=True)
    group = counts[inv]
    xmin_prev, xmin_next = _neighbours(xmin)
    key_rank = rankdata(ids) / n
    newest = xmin >= np.quantile(xmin, 0.99)
    return {
        "xmin_shared_by_small_batch": ((group >= 3) & (group <= 0.05 * n)).astype(float),
        "xmin_against_key_order": (~(((xmin_prev <= xmin) & (xmin <= xmin_next)) | ((xmin_prev >= xmin) & (xmin >= xmin_next)))).astype(float),
        "heap_far_from_key_order": (np.abs(rankdata(block) / n - key_rank) > 0.02).astype(float),
        "newest_xmin_on_old_key": (newest & (key_rank < 0.99)).astype(float),
    }
