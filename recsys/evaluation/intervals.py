"""Intervals for ranking metrics whose hits depend on each other through customers as well as products.

Why. A ranker with one global order (random, activity, popularity) puts the same customers in almost
every product's list, so one customer who buys three products makes three hits at once: products
are not independent units, and a bootstrap over products alone is far too narrow (it gave the random
ranker [0, 0] around an exact expectation of 1.1e-6).

Notation. A hit is a (product p, customer c) pair in a top-k list with c relevant for p; x_pc is its
contribution to the metric's sum (``hit_values``: 1/k for precision, 1/|R_p| for recall, ...), so a
macro metric over the P products that have relevant customers is sum(x) / P. For precision, sum(x)
= H / k with H the hit count.

Two-way (pigeonhole) bootstrap (Owen 2007; Owen & Eckles 2012): every replicate draws independent
Poisson(1) weights w_p for products and v_c for customers and recomputes
sum(w_p v_c x_pc) / sum_p(w_p); all models share the same weights, so differences between models are
paired. Only the hit list is touched (hits are sparse), replicates are vectorised in chunks.

Its exact variance for a count H is Var*(H) = sum_p H_p^2 + sum_c H_c^2 + H (H_p, H_c: hits of a
product, of a customer; ``bootstrap_variance``). For isolated hits that is 3H although their count is
Poisson (variance H): the product weights, the customer weights and their product each carry the
pair-level variance once. Removing the two extra copies gives the two-way cluster-robust variance of
Cameron, Gelbach & Miller (2011), V = sum_p H_p^2 + sum_c H_c^2 - H (``cluster_variance``), which is
H for independent hits and grows with hits that share a customer or a product.

Precision@k interval (``precision_interval``). A bootstrap cannot put a positive upper bound on zero
hits, so the reported interval is an exact Poisson (Garwood) interval on the hit count, inflated by
a dispersion phi (quasi-Poisson: H / phi is treated as a Poisson count with the same mean-to-variance
ratio): [phi * G_lo(H / phi), phi * G_hi(H / phi)] / (k P), G = Garwood bounds with chi-square
quantiles, and phi = max(1, V / H, phi_R). The floor phi_R = sum_c R_c^2 / sum_c R_c, with R_c the
number of evaluated products for which customer c is a reachable relevant customer
(``EvalSet.truth_dispersion``), is the dispersion of a ranker that puts the same customers in every
list (each customer it picks brings all R_c hits at once); it keeps the interval honest when there
are too few hits to show their clustering (0 hits give phi = phi_R). Measured on a tiny log, the
random ranker's variance over seeds was 2.2 times its mean hits and phi_R was 2.3; without the floor
its zero-hit seeds missed the expectation at k = 100. With many hits the interval tends to
H +- z sqrt(phi H), the cluster-robust normal interval. Using Var*(H) instead of V would make
phi >= 3 for any data: the interval would be sqrt(3) times too wide even for independent hits.

Other metrics (recall, hit rate, NDCG, MAP) get the two-way bootstrap's percentile interval, which
includes the pair-level over-count (conservative) and is [0, 0] when there is no hit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2

from recsys.evaluation.metrics import block_ranks, block_rows, discount_cumsum


@dataclass(frozen=True)
class HitSet:
    """The hits of one ranker's lists on one evaluation set: product row, customer code and 1-based rank of each."""

    product: np.ndarray
    customer: np.ndarray
    rank: np.ndarray

    @property
    def count(self) -> int:
        """Number of hits."""
        return int(len(self.product))

    def at(self, k: int) -> HitSet:
        """The hits within the top k."""
        m = self.rank <= int(k)
        return HitSet(self.product[m], self.customer[m], self.rank[m])

    @classmethod
    def empty(cls) -> HitSet:
        """No hit."""
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, z)


def hit_set(offsets: np.ndarray, codes: np.ndarray, hits: np.ndarray) -> HitSet:
    """The hits of CSR lists (offsets, customer codes) given each entry's hit flag."""
    hits = np.asarray(hits, dtype=bool)
    return HitSet(block_rows(offsets)[hits], np.asarray(codes, dtype=np.int64)[hits], block_ranks(offsets)[hits])


def hit_values(hs: HitSet, metric: str, k: int, n_relevant: np.ndarray) -> np.ndarray:
    """Per hit within the top k: its contribution x to the metric's sum, so that sum(x) / P is the macro metric.

    precision 1/k; recall 1/|R_p|; hit_rate 1 for the first hit of a list, else 0; ndcg
    (1/log2(rank+1)) / IDCG_p; map precision@rank / min(k, |R_p|) (see recsys.evaluation.metrics).
    Hits must be sorted by product then rank (as ``hit_set`` returns them).
    """
    h = hs.at(k)
    r = np.asarray(n_relevant, dtype=np.float64)[h.product]
    if metric == "precision":
        return np.full(h.count, 1.0 / k)
    if metric == "recall":
        return np.asarray(1.0 / r, dtype=np.float64)
    first = np.ones(h.count, dtype=bool)
    if h.count:
        first[1:] = h.product[1:] != h.product[:-1]
    if metric == "hit_rate":
        return first.astype(np.float64)
    if metric == "ndcg":
        disc = discount_cumsum(k)
        return np.asarray((1.0 / np.log2(h.rank + 1.0)) / disc[np.minimum(r, k).astype(np.int64)], dtype=np.float64)
    if metric == "map":
        start = np.maximum.accumulate(np.where(first, np.arange(h.count), 0))
        hits_so_far = np.arange(h.count) - start + 1.0
        return np.asarray(hits_so_far / h.rank / np.minimum(k, r), dtype=np.float64)
    raise ValueError(f"unknown metric {metric!r}; expected precision, recall, hit_rate, ndcg or map")


def _cluster_sums(hs: HitSet, values: np.ndarray | None) -> tuple[float, float, float]:
    """(sum_p X_p^2, sum_c X_c^2, sum x^2) of a hit set (x = 1 per hit unless values)."""
    x = np.ones(hs.count) if values is None else np.asarray(values, dtype=np.float64)
    if hs.count == 0:
        return 0.0, 0.0, 0.0
    _, p_inv = np.unique(hs.product, return_inverse=True)
    _, c_inv = np.unique(hs.customer, return_inverse=True)
    by_p = np.bincount(p_inv, weights=x)
    by_c = np.bincount(c_inv, weights=x)
    return float((by_p**2).sum()), float((by_c**2).sum()), float((x**2).sum())


def bootstrap_variance(hs: HitSet, values: np.ndarray | None = None) -> float:
    """Exact variance of sum(w_p v_c x_pc) under independent Poisson(1) product and customer weights."""
    sp, sc, sx = _cluster_sums(hs, values)
    return sp + sc + sx


def cluster_variance(hs: HitSet, values: np.ndarray | None = None) -> float:
    """Two-way cluster-robust variance of sum(x): sum_p X_p^2 + sum_c X_c^2 - sum x^2 (= Var* - 2 sum x^2)."""
    sp, sc, sx = _cluster_sums(hs, values)
    return sp + sc - sx


def dispersion(hs: HitSet, floor: float = 1.0) -> float:
    """phi = max(1, floor, cluster_variance / H) of a hit count (max(1, floor) when there is no hit)."""
    base = max(1.0, float(floor))
    if hs.count == 0:
        return base
    return max(base, cluster_variance(hs) / hs.count)


def garwood(count: np.ndarray | float, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact Poisson interval of a (possibly non-integer) count n: chi2(a/2; 2n)/2, chi2(1-a/2; 2n+2)/2 (0 at n = 0)."""
    n = np.asarray(count, dtype=np.float64)
    a = 1.0 - level
    lo = np.where(n > 0, chi2.ppf(a / 2.0, 2.0 * np.maximum(n, 1e-300)) / 2.0, 0.0)
    hi = chi2.ppf(1.0 - a / 2.0, 2.0 * n + 2.0) / 2.0
    return lo, hi


def quasi_poisson_interval(count: float, phi: float, level: float = 0.95) -> tuple[float, float]:
    """Interval of an over-dispersed count: phi * Garwood(count / phi)."""
    lo, hi = garwood(count / phi, level)
    return float(phi * lo), float(phi * hi)


def precision_interval(
    hs: HitSet, k: int, n_products: int, level: float = 0.95, floor: float = 1.0
) -> tuple[float, float, float]:
    """(low, high, phi) of precision@k = H / (k P): quasi-Poisson Garwood interval of hits within k, phi >= floor."""
    h = hs.at(k)
    if n_products <= 0:
        return float("nan"), float("nan"), float("nan")
    phi = dispersion(h, floor)
    lo, hi = quasi_poisson_interval(float(h.count), phi, level)
    return lo / (k * n_products), hi / (k * n_products), phi


@dataclass(frozen=True)
class HitGroup:
    """Bootstrap series sharing one hit list: (product row, customer code) per hit, a (hits x series) value matrix."""

    product: np.ndarray
    customer: np.ndarray
    values: np.ndarray

    @property
    def width(self) -> int:
        """Number of series in the group."""
        return int(self.values.shape[1])


def two_way_bootstrap(
    groups: Sequence[HitGroup], with_truth: np.ndarray, n_boot: int, seed: int, chunk: int = 25
) -> np.ndarray:
    """(n_boot, total series) replicates of sum(w_p v_c x) / sum_{p with truth}(w_p) with shared Poisson(1) weights.

    Product weights cover every product of the evaluation set (`with_truth` marks the products in the
    denominator); customer weights cover the union of the groups' customers, so every series sees the
    same weights and replicate differences between series are paired. Columns follow the groups' order.
    """
    with_truth = np.asarray(with_truth, dtype=bool)
    n_products = len(with_truth)
    total = sum(g.width for g in groups)
    out = np.full((max(n_boot, 0), total), np.nan)
    if n_boot <= 0 or not with_truth.any() or total == 0:
        return out
    customers = np.unique(np.concatenate([g.customer for g in groups]))
    local = [np.searchsorted(customers, g.customer) for g in groups]
    cols = np.concatenate([[0], np.cumsum([g.width for g in groups])])
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        w = rng.poisson(1.0, size=(b, n_products)).astype(np.float64)
        v = rng.poisson(1.0, size=(b, len(customers))).astype(np.float64)
        denom = w[:, with_truth].sum(axis=1)
        for j, (g, c) in enumerate(zip(groups, local, strict=True)):
            num = (w[:, g.product] * v[:, c]) @ g.values if len(g.product) else np.zeros((b, g.width))
            with np.errstate(invalid="ignore", divide="ignore"):
                out[start : start + b, cols[j] : cols[j + 1]] = np.where(
                    denom[:, None] > 0, num / np.maximum(denom, 1.0)[:, None], np.nan
                )
    return out


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of replicates along axis 0 (NaN where a column has no finite replicate)."""
    samples = np.asarray(samples, dtype=np.float64)
    a = (1.0 - level) / 2.0
    lo = np.full(samples.shape[1:], np.nan)
    hi = np.full(samples.shape[1:], np.nan)
    ok = np.isfinite(samples).any(axis=0)
    if ok.any():
        q = np.nanquantile(samples[:, ok], [a, 1.0 - a], axis=0)
        lo[ok], hi[ok] = q[0], q[1]
    return lo, hi
