"""Reference points that need no model: random targeting (exact expectation) and the oracle ceiling."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.special import gammaln

from recsys.evaluation.frame import EvalSet, oracle_lists
from recsys.evaluation.metrics import METRICS, discount_cumsum, metrics_at_k


def _log_comb(n: np.ndarray, r: np.ndarray) -> np.ndarray:
    """log C(n, r) for arrays (0 <= r <= n)."""
    return np.asarray(gammaln(n + 1.0) - gammaln(r + 1.0) - gammaln(n - r + 1.0), dtype=np.float64)


def random_expectation(
    pool: np.ndarray, eligible_relevant: np.ndarray, n_relevant: np.ndarray, ks: Sequence[int]
) -> np.ndarray:
    """Exact expected metrics of a uniform random audience of min(k, pool) customers drawn from the pool.

    pool E = candidate customers, m = relevant customers among them, |R| = all relevant customers.
    precision = k'm/(Ek) with k' = min(k, E); recall = k'm/(E|R|); hit rate = 1 - C(E-m, k')/C(E, k');
    ndcg = (m/E) D(k') / D(min(k, |R|)); map = (m/E)(H(k') + (k' - H(k'))(m-1)/(E-1)) / min(k, |R|),
    H = harmonic number, D = cumulative log2 discount. Shape (len(METRICS), len(ks), n_products);
    NaN where |R| = 0.
    """
    e = np.asarray(pool, dtype=np.float64)
    m = np.asarray(eligible_relevant, dtype=np.float64)
    r = np.asarray(n_relevant, dtype=np.float64)
    kmax = int(max(ks)) if len(ks) else 1
    disc = discount_cumsum(kmax)
    harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, kmax + 1))])
    out = np.full((len(METRICS), len(ks), len(e)), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(e > 0, m / e, 0.0)
        for j, k in enumerate(ks):
            kp = np.minimum(k, e).astype(np.int64)
            draws_hit = kp * share
            log_miss = np.where(e - m >= kp, _log_comb(e - m, kp) - _log_comb(e, kp), -np.inf)
            ideal = np.minimum(k, r).astype(np.int64)
            pair = np.where(e > 1, (m - 1.0) / (e - 1.0), 0.0)
            vals = (
                draws_hit / k,
                draws_hit / r,
                np.where(kp > 0, 1.0 - np.exp(log_miss), 0.0),
                share * disc[kp] / disc[np.minimum(ideal, kmax)],
                share * (harmonic[kp] + (kp - harmonic[kp]) * pair) / np.minimum(k, r),
            )
            for i, v in enumerate(vals):
                out[i, j] = np.where(r > 0, v, np.nan)
    return out


def random_metrics(es: EvalSet, ks: Sequence[int]) -> np.ndarray:
    """Expected metrics of random targeting for every product of an evaluation set."""
    return random_expectation(es.pool_size(), es.n_eligible_relevant(), es.n_relevant, ks)


def oracle_metrics(es: EvalSet, ks: Sequence[int]) -> np.ndarray:
    """Metrics of the oracle (eligible relevant customers first): the ceiling of any ranker."""
    offsets, _ = oracle_lists(es, int(max(ks)))
    hits = np.ones(int(offsets[-1]), dtype=bool)
    return metrics_at_k(offsets, hits, es.n_relevant, ks)
