"""Exposure metrics of a set of audiences: how often each customer is targeted, and how concentrated that is.

Input: a ``Recommendations`` (CSR: one ranked list per product; customer ids or codes). At a cut-off k,
a customer's *exposures* are the number of product lists holding them at rank <= k (a list shorter
than k counts whole). Per k:

- ``distinct_customers``: customers with at least one exposure;
- ``max_exposures``, ``p99_exposures``, ``mean_exposures``: over the customers with at least one
  exposure (customers never targeted are left out; p99 is numpy's linearly interpolated percentile);
- ``gini``: Gini coefficient of the exposure counts over the same population (customers with at least
  one exposure): G = sum_i sum_j |x_i - x_j| / (2 n^2 mean(x)); 0 when every targeted customer is
  targeted equally often, close to 1 when one customer takes almost every slot. It measures inequality
  among the targeted customers only: 12 customers sharing every slot equally score 0, so read it
  with ``distinct_customers`` (or ``gini_reachable``);
- ``reachable_used`` / ``reachable_share``: how many of the caller's reachable customers (in the cache:
  ``returning_customers``, active on two or more distinct days) have at least one exposure, and that
  count over the reachable set;
- ``gini_reachable``: the Gini coefficient over the reachable customers and the targeted ones together,
  reachable customers never targeted counting 0 exposures (concentration over whom one could reach).

And over the whole set: ``mean_jaccard``, the mean Jaccard overlap |A ∩ B| / |A ∪ B| of the top-``jaccard_k``
customer sets of ``pairs`` product pairs drawn uniformly with replacement (seeded; the two products of
a pair always differ) among the products whose list is not empty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from recsys.arrays import unique_sorted
from recsys.features.engagement import US_PER_DAY, encode_ids, timestamps_us
from recsys.rankers.base import Recommendations

DEFAULT_KS: tuple[int, ...] = (10, 100)
JACCARD_BUDGET = 4_000_000  # pair x k x k comparisons per vectorised step


@dataclass(frozen=True)
class ExposureAtK:
    """Exposure counts of the customers at one cut-off k (see the module docstring)."""

    k: int
    slots: int
    distinct_customers: int
    max_exposures: int
    p99_exposures: float
    mean_exposures: float
    gini: float
    reachable_used: int | None
    reachable_share: float | None
    gini_reachable: float | None


@dataclass(frozen=True)
class ExposureMetrics:
    """Exposure metrics of a set of audiences at several cut-offs, plus the top-k list overlap."""

    products: int
    depth: int
    at_k: tuple[ExposureAtK, ...]
    reachable: int | None
    jaccard_k: int
    jaccard_pairs: int
    mean_jaccard: float | None

    def at(self, k: int) -> ExposureAtK:
        """The metrics at cut-off k."""
        for item in self.at_k:
            if item.k == k:
                return item
        raise KeyError(f"no exposure metrics at k={k}; computed at {[m.k for m in self.at_k]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict: per-k blocks keyed by str(k), floats rounded to 6 decimals."""
        out = {key: _rounded(value) for key, value in asdict(self).items() if key != "at_k"}
        out["at_k"] = {str(m.k): {key: _rounded(v) for key, v in asdict(m).items() if key != "k"} for m in self.at_k}
        return out


def _rounded(value: Any) -> Any:
    """Floats rounded to 6 decimals (other values unchanged)."""
    return round(value, 6) if isinstance(value, float) else value


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (population = every value given); raises on empty or zero-sum input."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    if len(x) == 0 or x.sum() <= 0:
        raise ValueError("the Gini coefficient needs at least one positive value")
    if x[0] < 0:
        raise ValueError("the Gini coefficient needs non-negative values")
    n = len(x)
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return float(2.0 * np.dot(ranks, x) / (n * x.sum()) - (n + 1.0) / n)


def _codes(customers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes of customer ids (or codes) and the distinct ids they stand for."""
    codes, uniques = pd.factorize(np.asarray(customers), sort=False)
    return codes.astype(np.int64), np.asarray(uniques)


def _at_k(
    sizes: np.ndarray, offsets: np.ndarray, codes: np.ndarray, uniques: np.ndarray, k: int, reachable: np.ndarray | None
) -> ExposureAtK:
    """Exposure counts of the first k entries of every list."""
    take = np.minimum(sizes, k)
    rank = np.arange(len(codes), dtype=np.int64) - np.repeat(offsets[:-1], sizes)
    counts = np.bincount(codes[rank < np.repeat(take, sizes)], minlength=len(uniques))
    used = counts > 0
    x = counts[used]
    reach_used = reach_share = gini_reach = None
    if reachable is not None:
        reach_used = int(pd.Index(reachable).isin(uniques[used]).sum())
        reach_share = reach_used / len(reachable) if len(reachable) else None
        never = len(reachable) - reach_used  # reachable customers with 0 exposures
        gini_reach = gini(np.concatenate([x, np.zeros(never)])) if len(x) else None
    return ExposureAtK(
        k=int(k),
        slots=int(take.sum()),
        distinct_customers=int(used.sum()),
        max_exposures=int(x.max()) if len(x) else 0,
        p99_exposures=float(np.percentile(x, 99)) if len(x) else 0.0,
        mean_exposures=float(x.mean()) if len(x) else 0.0,
        gini=gini(x) if len(x) else 0.0,
        reachable_used=reach_used,
        reachable_share=reach_share,
        gini_reachable=gini_reach,
    )


def _padded(
    offsets: np.ndarray, codes: np.ndarray, rows: np.ndarray, sizes: np.ndarray, k: int, pad: int
) -> np.ndarray:
    """(len(rows), k) matrix of the rows' first k codes, `pad` after a list's end."""
    cols = np.arange(k, dtype=np.int64)
    idx = offsets[rows][:, None] + cols[None, :]
    valid = cols[None, :] < sizes[rows][:, None]
    return np.where(valid, codes[np.minimum(idx, max(len(codes) - 1, 0))], pad)


def mean_jaccard(recs: Recommendations, k: int = 10, pairs: int = 10_000, seed: int = 0) -> tuple[float | None, int]:
    """(mean Jaccard overlap of top-k sets over `pairs` seeded product pairs, pairs used); (None, 0) below 2 lists."""
    if k < 1 or pairs < 0:
        raise ValueError(f"jaccard needs k >= 1 and pairs >= 0, got k={k}, pairs={pairs}")
    offsets = np.asarray(recs.offsets, dtype=np.int64)
    sizes = np.minimum(np.diff(offsets), k)
    nonempty = np.flatnonzero(sizes > 0)
    n = len(nonempty)
    if n < 2 or pairs == 0:
        return None, 0
    codes, _ = _codes(recs.customer_ids)
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, size=pairs)
    b = (a + rng.integers(1, n, size=pairs)) % n
    pa, pb = nonempty[a], nonempty[b]
    inter = np.zeros(pairs, dtype=np.int64)
    step = max(1, JACCARD_BUDGET // (k * k))
    for start in range(0, pairs, step):
        sl = slice(start, start + step)
        left = _padded(offsets, codes, pa[sl], sizes, k, -1)
        right = _padded(offsets, codes, pb[sl], sizes, k, -2)
        inter[sl] = (left[:, :, None] == right[:, None, :]).sum(axis=(1, 2))
    union = sizes[pa] + sizes[pb] - inter
    return float(np.mean(inter / union)), int(pairs)


def reachable_ids(values: np.ndarray | Sequence[Any] | None) -> np.ndarray | None:
    """Distinct reachable customer ids as an array (None stays None)."""
    if values is None:
        return None
    return np.asarray(pd.unique(np.asarray(values)))


def exposure_metrics(
    recs: Recommendations,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    reachable: np.ndarray | Sequence[Any] | None = None,
    pairs: int = 10_000,
    jaccard_k: int = 10,
    seed: int = 0,
) -> ExposureMetrics:
    """Exposure metrics of `recs` at every k of `ks` (customer ids or codes; `reachable` in the same kind)."""
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"exposure cut-offs must be >= 1, got {list(ks)}")
    offsets = np.asarray(recs.offsets, dtype=np.int64)
    sizes = np.diff(offsets)
    codes, uniques = _codes(recs.customer_ids)
    reach = reachable_ids(reachable)
    jac, used_pairs = mean_jaccard(recs, jaccard_k, pairs, seed)
    return ExposureMetrics(
        products=len(sizes),
        depth=int(sizes.max()) if len(sizes) else 0,
        at_k=tuple(_at_k(sizes, offsets, codes, uniques, k, reach) for k in ks),
        reachable=None if reach is None else int(len(reach)),
        jaccard_k=int(jaccard_k),
        jaccard_pairs=used_pairs,
        mean_jaccard=jac,
    )


def returning_customers(interactions: pd.DataFrame, min_days: int = 2) -> np.ndarray:
    """Ids of the customers with dated events on at least `min_days` distinct UTC days (sorted)."""
    codes, ids = encode_ids(interactions["customer_id"])
    us, dated = timestamps_us(interactions["event_date"])
    if not dated.any():
        return ids[:0]
    day = us[dated] // US_PER_DAY
    span = int(day.max() - day.min()) + 1
    pairs = unique_sorted(codes[dated].astype(np.int64) * span + (day - day.min()))
    days = np.bincount(pairs // span, minlength=len(ids))
    return ids[days >= min_days]


TABLE_METRICS: tuple[str, ...] = (
    "distinct_customers",
    "max_exposures",
    "p99_exposures",
    "mean_exposures",
    "gini",
    "gini_reachable",
    "reachable_share",
)


def exposure_frame(sides: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Side-by-side table of `ExposureMetrics.to_dict()` results (label -> dict): one row per (k, metric)."""
    first = next(iter(sides.values()))
    rows = [
        {"k": int(k), "metric": metric, **{label: d["at_k"][k][metric] for label, d in sides.items()}}
        for k in first["at_k"]
        for metric in TABLE_METRICS
    ]
    rows.append(
        {"k": first["jaccard_k"], "metric": "mean_jaccard", **{label: d["mean_jaccard"] for label, d in sides.items()}}
    )
    return pd.DataFrame(rows, dtype=object).set_index(["k", "metric"])  # object: counts print as integers
