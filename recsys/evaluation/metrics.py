"""Ranking metrics @k for many ranked lists at once (CSR layout); intervals live in recsys.evaluation.intervals.

A "list" is one product's ranked audience; its relevant set is the product's test-period customers.
Definitions (k = cut-off, rel_i = 1 if the customer at rank i is relevant, R = relevant set):

- precision@k = hits@k / k (a fixed budget of k slots: a list shorter than k is not rewarded);
- recall@k    = hits@k / |R|;
- hit_rate@k  = 1 if hits@k > 0 else 0;
- ndcg@k      = sum_i rel_i / log2(i + 1) / IDCG, IDCG = sum_{i <= min(k, |R|)} 1 / log2(i + 1);
- map@k       = (1 / min(k, |R|)) * sum_i rel_i * precision@i   (average precision, then the mean).

Every metric of a list with an empty relevant set is NaN (not 0), and a macro average over no
finite value is NaN, so averages never hide missing inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

METRICS: tuple[str, ...] = ("precision", "recall", "hit_rate", "ndcg", "map")


def block_rows(offsets: np.ndarray) -> np.ndarray:
    """Row (list) index of every entry of a CSR layout."""
    return np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))


def block_ranks(offsets: np.ndarray) -> np.ndarray:
    """1-based rank of every entry within its list."""
    sizes = np.diff(offsets)
    return np.asarray(np.arange(int(offsets[-1]), dtype=np.int64) - np.repeat(offsets[:-1], sizes) + 1, dtype=np.int64)


def discount_cumsum(n: int) -> np.ndarray:
    """D[j] = sum_{i=1..j} 1/log2(i+1) for j = 0..n (D[0] = 0)."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64)))])


def hits_against(
    offsets: np.ndarray, entries: np.ndarray, truth_offsets: np.ndarray, truth: np.ndarray, n_items: int
) -> np.ndarray:
    """Per entry: is entries[j] in the relevant set of its list? (codes in [0, n_items); -1 never hits)."""
    if len(entries) == 0 or len(truth) == 0:
        return np.zeros(len(entries), dtype=bool)
    rows = block_rows(offsets)
    keys = rows * np.int64(n_items) + entries
    truth_keys = block_rows(truth_offsets) * np.int64(n_items) + truth
    order = np.argsort(truth_keys, kind="stable")
    sorted_keys = truth_keys[order]
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return np.asarray((sorted_keys[pos] == keys) & (entries >= 0), dtype=bool)


def metrics_at_k(offsets: np.ndarray, hits: np.ndarray, n_relevant: np.ndarray, ks: Sequence[int]) -> np.ndarray:
    """Per-list metrics: array (len(METRICS), len(ks), n_lists); NaN where a list has no relevant item."""
    n_lists = len(offsets) - 1
    n_relevant = np.asarray(n_relevant, dtype=np.float64)
    if len(n_relevant) != n_lists:
        raise ValueError(f"n_relevant has {len(n_relevant)} entries for {n_lists} lists")
    hits = np.asarray(hits, dtype=bool)
    rows = block_rows(offsets)
    ranks = block_ranks(offsets)
    h = hits.astype(np.float64)
    cum = np.cumsum(h)
    start = np.concatenate([[0.0], cum])[offsets[:-1]]
    cum_in_row = cum - np.repeat(start, np.diff(offsets))  # hits up to and including this rank
    gain = h / np.log2(ranks + 1.0)
    prec_at_i = h * cum_in_row / ranks
    kmax = int(max(ks)) if len(ks) else 0
    disc = discount_cumsum(max(kmax, 1))
    empty = n_relevant <= 0
    out = np.full((len(METRICS), len(ks), n_lists), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        for j, k in enumerate(ks):
            k = int(k)
            if k <= 0:
                raise ValueError(f"k must be positive, got {k}")
            m = ranks <= k
            hk = np.bincount(rows[m], weights=h[m], minlength=n_lists)
            dcg = np.bincount(rows[m], weights=gain[m], minlength=n_lists)
            ap = np.bincount(rows[m], weights=prec_at_i[m], minlength=n_lists)
            ideal_n = np.minimum(k, n_relevant).astype(np.int64)
            vals = (
                hk / k,
                hk / n_relevant,
                (hk > 0).astype(np.float64),
                dcg / disc[np.minimum(ideal_n, kmax)],
                ap / np.minimum(k, n_relevant),
            )
            for i, v in enumerate(vals):
                out[i, j] = np.where(empty, np.nan, v)
    return out


def _single(ranked: Sequence[Any], relevant: Sequence[Any] | set[Any], k: int) -> np.ndarray:
    """All metrics at k for one ranked list (the vectorised core on a single block)."""
    rel = set(relevant)
    hits = np.array([r in rel for r in ranked], dtype=bool)
    offsets = np.array([0, len(hits)], dtype=np.int64)
    return metrics_at_k(offsets, hits, np.array([len(rel)]), [k])[:, 0, 0]


def precision_at_k(ranked: Sequence[Any], relevant: Sequence[Any] | set[Any], k: int) -> float:
    """Relevant items among the first k, divided by k (NaN when nothing is relevant)."""
    return float(_single(ranked, relevant, k)[0])


def recall_at_k(ranked: Sequence[Any], relevant: Sequence[Any] | set[Any], k: int) -> float:
    """Share of the relevant items found in the first k (NaN when nothing is relevant)."""
    return float(_single(ranked, relevant, k)[1])


def hit_rate_at_k(ranked: Sequence[Any], relevant: Sequence[Any] | set[Any], k: int) -> float:
    """1.0 if any of the first k is relevant, else 0.0 (NaN when nothing is relevant)."""
    return float(_single(ranked, relevant, k)[2])


def ndcg_at_k(ranked: Sequence[Any], relevant: Sequence[Any] | set[Any], k: int) -> float:
    """Binary-gain NDCG of the first k (NaN when nothing is relevant)."""
    return float(_single(ranked, relevant, k)[3])


def average_precision_at_k(ranked: Sequence[Any], relevant: Sequence[Any] | set[Any], k: int) -> float:
    """Average precision of the first k, normalised by min(k, |relevant|) (NaN when nothing is relevant)."""
    return float(_single(ranked, relevant, k)[4])


def nanmean_or_nan(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Mean over finite values along axis; NaN (no warning) where there is none."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    count = finite.sum(axis=axis)
    total = np.where(finite, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)
