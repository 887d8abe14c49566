"""Coverage of the precision interval: over many random-ranker seeds, how often does it contain the exact expectation?

The random ranker's expected precision is known exactly (recsys.evaluation.references), so the share
of seeds whose interval (recsys.evaluation.intervals.precision_interval) contains it estimates the
interval's real coverage on the data set at hand. Used by the tests (tiny scale) and by
``benchmarks/bench_coverage.py`` (full scale).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsys.evaluation.frame import EvalSet
from recsys.evaluation.intervals import HitSet, precision_interval
from recsys.evaluation.metrics import METRICS, nanmean_or_nan
from recsys.evaluation.references import random_metrics
from recsys.evaluation.scoring import score_ranker
from recsys.evaluation.split import Split
from recsys.rankers import make_ranker


@dataclass(frozen=True)
class CoverageRun:
    """Per seed and k: hits, interval and whether it covers the exact expectation."""

    ks: tuple[int, ...]
    seeds: tuple[int, ...]
    expected: np.ndarray  # (len(ks),) exact expected precision
    hits: np.ndarray  # (seeds, ks)
    low: np.ndarray
    high: np.ndarray
    hit_sets: tuple[HitSet, ...]  # every seed's hits within max(ks), for alternative intervals

    @property
    def covers(self) -> np.ndarray:
        """(seeds, ks) booleans."""
        return (self.low <= self.expected[None, :]) & (self.expected[None, :] <= self.high)

    def rate(self) -> np.ndarray:
        """Share of seeds covering the expectation, per k."""
        return np.asarray(self.covers.mean(axis=0), dtype=np.float64)


def random_coverage(
    split: Split, es: EvalSet, seeds: Sequence[int], ks: Sequence[int], level: float = 0.95
) -> CoverageRun:
    """Fit the random ranker once per seed on the split's fit rows and check its precision interval at every k."""
    ks = tuple(int(k) for k in ks)
    p = METRICS.index("precision")
    exact = random_metrics(es, ks)[p]
    expected = np.array([float(nanmean_or_nan(exact[j])) for j in range(len(ks))])
    n_truth = int((es.n_relevant > 0).sum())
    floor = es.truth_dispersion()
    hits = np.zeros((len(seeds), len(ks)))
    low = np.zeros_like(hits)
    high = np.zeros_like(hits)
    hit_sets = []
    for i, seed in enumerate(seeds):
        ranker = make_ranker("random", {"seed": int(seed)}).fit(split.train, exclude=split.exclude)
        scored = score_ranker(ranker, es, ks, f"random seed {seed}")
        hit_sets.append(scored.hits)
        for j, k in enumerate(ks):
            hits[i, j] = scored.hits.at(k).count
            low[i, j], high[i, j], _ = precision_interval(scored.hits, k, n_truth, level, floor)
    return CoverageRun(ks, tuple(int(s) for s in seeds), expected, hits, low, high, tuple(hit_sets))
