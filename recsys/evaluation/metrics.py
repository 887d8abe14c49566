"""Ranking metrics @k for many ranked lists at once (CSR layout), and the product bootstrap.

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
    return np.arange(int(offsets[-1]), dtype=np.int64) - np.repeat(offsets[:-1], sizes) + 1


def discount_cumsum(n: int) -> np.ndarray:
    """D[j] = sum_{i=1..j} 1/log2(i+1) for j = 0..n (D[0] = 0)."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, n + 2, dtype=np.float64)))])


def hits_against(offsets: np.ndarray, entries: np.ndarray, truth_offsets: np.ndarray, truth: np.ndarray, n_items: int) -> np.ndarray:
    """Per entry: is entries[j] in the relevant set of its list? (codes in [0, n_items); -1 never hits)."""
    if len(entries) == 0 or len(truth) == 0:
        return np.zeros(len(entries), dtype=bool)
    rows = block_rows(offsets)
    keys = rows * np.int64(n_items) + entries
    truth_keys = block_rows(truth_offsets) * np.int64(n_items) + truth
    order = np.argsort(truth_keys, kind="stable")
    sorted_keys = truth_keys[order]
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return (sorted_keys[pos] == keys) & (entries >= 0)


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


def bootstrap_means(values: np.ndarray, n_boot: int, seed: int, chunk: int = 50) -> np.ndarray:
    """Means of every column over `n_boot` resamples of the rows (products) with replacement.

    values: (n_rows, n_cols), NaN = missing (a resample's mean uses its finite rows only, NaN if none).
    Every column sees the same resamples, so differences and ratios between columns are paired.
    Returns (n_boot, n_cols).
    """
    values = np.asarray(values, dtype=np.float64)
    n, m = values.shape
    out = np.full((n_boot, m), np.nan)
    if n == 0 or n_boot <= 0:
        return out
    rng = np.random.default_rng(seed)
    finite = np.isfinite(values)
    filled = np.where(finite, values, 0.0)
    fin = finite.astype(np.float64)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        draws = rng.integers(0, n, size=(b, n))
        counts = np.bincount((np.arange(b)[:, None] * n + draws).ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        sums, cnt = counts @ filled, counts @ fin
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + b] = np.where(cnt > 0, sums / np.maximum(cnt, 1.0), np.nan)
    return out


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of bootstrap samples along axis 0 (NaN where a column has no finite sample)."""
    samples = np.asarray(samples, dtype=np.float64)
    alpha = (1.0 - level) / 2.0
    finite = np.isfinite(samples)
    ok = finite.any(axis=0)
    lo = np.full(samples.shape[1:], np.nan)
    hi = np.full(samples.shape[1:], np.nan)
    if ok.any():
        with np.errstate(invalid="ignore"):
            q = np.nanquantile(samples[:, ok], [alpha, 1.0 - alpha], axis=0)
        lo[ok], hi[ok] = q[0], q[1]
    return lo, hi
