"""Vectorised array helpers shared by the ranking engine, the allocation and the service (numpy only).

CSR-style ranges (``range_indices``, ``gather_ranges``, ``offsets_of``), sparse top-k per row (``topk_superset``,
``sparse_topk``), exclusion by sorted pair keys (``not_excluded``) and cost-balanced blocks (``cost_blocks``). The
service imports this module, so it must never import pandas.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def range_indices(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """starts[0], ..., starts[0] + lengths[0] - 1, starts[1], ... without a Python loop (int64)."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shift = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return shift + np.arange(total, dtype=np.int64)


def gather_ranges(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """values[starts[0]:ends[0]] ++ values[starts[1]:ends[1]] ++ ... without a Python loop."""
    gathered: np.ndarray = values[range_indices(starts, ends - starts)]
    return gathered


def offsets_of(sizes: np.ndarray) -> np.ndarray:
    """CSR offsets from block sizes."""
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return offsets


def topk_superset(row: np.ndarray, score: np.ndarray, n_rows: int, k: int, buckets: int = 32) -> np.ndarray:
    """Mask of entries that surely contains every row's top k (cuts the sort that follows).

    Each row's score range is split into equal buckets (a monotone map, so equal scores share a
    bucket); entries below the bucket where the row's count from the top reaches k are dropped.
    """
    if len(row) == 0:
        return np.ones(0, dtype=bool)
    lo = np.full(n_rows, np.inf)
    hi = np.full(n_rows, -np.inf)
    np.minimum.at(lo, row, score)
    np.maximum.at(hi, row, score)
    base, width = lo[row], (hi - lo)[row]
    scaled = np.divide(score - base, width, out=np.ones_like(score), where=width > 0)
    bucket = np.minimum((scaled * buckets).astype(np.int64), buckets - 1)
    counts = np.bincount(row * buckets + bucket, minlength=n_rows * buckets).reshape(n_rows, buckets)
    from_top = np.cumsum(counts[:, ::-1], axis=1)
    cut = buckets - 1 - np.argmax(from_top >= k, axis=1)
    cut[from_top[:, -1] < k] = 0
    return np.asarray(bucket >= cut[row], dtype=bool)


def sparse_topk(
    row: np.ndarray, user: np.ndarray, score: np.ndarray, n_rows: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best k (user, score) candidates per row, score descending then user code ascending: (sizes, users, scores)."""
    top = topk_superset(row, score, n_rows, k)
    row, user, score = row[top], user[top], score[top]
    order = np.lexsort((user, -score, row))
    row, user, score = row[order], user[order], score[order]
    keep = (np.arange(len(row)) - np.searchsorted(row, row, side="left")) < k
    return np.bincount(row[keep], minlength=n_rows).astype(np.int64), user[keep], score[keep]


def not_excluded(pair_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Mask of product*n_users + user keys that are not in the sorted history pair keys."""
    if len(pair_keys) == 0 or len(keys) == 0:
        return np.ones(len(keys), dtype=bool)
    hit = np.minimum(np.searchsorted(pair_keys, keys), len(pair_keys) - 1)
    return np.asarray(pair_keys[hit] != keys, dtype=bool)


def cost_blocks(cost: np.ndarray, budget: int) -> Iterator[slice]:
    """Contiguous slices of a request whose summed cost stays near `budget` (at least one item each)."""
    if len(cost) == 0:
        return
    cum = np.cumsum(cost)
    budget = max(1, int(budget))
    cuts = np.searchsorted(cum, np.arange(1, int(cum[-1] // budget) + 1) * budget, side="left")
    edges = np.unique(np.concatenate([[0], cuts, [len(cost)]]))
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        yield slice(int(a), int(b))


def unique_sorted(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values via sort + neighbour compare (faster than numpy 2.4's hash-based np.unique here)."""
    s = np.sort(values)
    if len(s) < 2:
        return s
    keep = np.empty(len(s), dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]
