"""Intervals: per-hit metric values, the two-way bootstrap and its exact variance, Garwood bounds, coverage."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.evaluation.coverage import random_coverage
from recsys.evaluation.frame import build_eval_sets
from recsys.evaluation.intervals import (
    HitGroup,
    HitSet,
    bootstrap_variance,
    cluster_variance,
    dispersion,
    garwood,
    hit_set,
    hit_values,
    percentile_interval,
    precision_interval,
    quasi_poisson_interval,
    two_way_bootstrap,
)
from recsys.evaluation.metrics import METRICS, hits_against, metrics_at_k, nanmean_or_nan
from recsys.evaluation.split import protocol_splits

from _logs import high_churn_log


def hits_of(pairs: list[tuple[int, int]]) -> HitSet:
    """A hit set from (product, customer) pairs, ranks 1, 2, ... within each product."""
    p = np.array([a for a, _ in pairs], dtype=np.int64)
    c = np.array([b for _, b in pairs], dtype=np.int64)
    rank = np.arange(len(p)) - np.searchsorted(p, p, side="left") + 1
    return HitSet(p, c, rank)


def test_cluster_and_bootstrap_variance_by_hand() -> None:
    # products 0, 1 hit by customer 7; product 2 hit by customer 8: H_p = 1, 1, 1; H_c = 2, 1
    hs = hits_of([(0, 7), (1, 7), (2, 8)])
    assert cluster_variance(hs) == pytest.approx(3 + 5 - 3)
    assert bootstrap_variance(hs) == pytest.approx(3 + 5 + 3)
    assert dispersion(hs) == pytest.approx(5 / 3)
    independent = hits_of([(0, 1), (1, 2), (2, 3), (3, 4)])
    assert dispersion(independent) == 1.0 and bootstrap_variance(independent) == pytest.approx(3 * 4)
    assert dispersion(HitSet.empty()) == 1.0


def test_garwood_known_values_and_quasi_poisson() -> None:
    lo, hi = garwood(np.array([0.0, 1.0, 10.0]))
    np.testing.assert_allclose(lo, [0.0, 0.0253178, 4.795389], rtol=1e-5)
    np.testing.assert_allclose(hi, [3.688879, 5.571643, 18.390356], rtol=1e-5)
    assert quasi_poisson_interval(10.0, 1.0) == pytest.approx((4.795389, 18.390356), rel=1e-5)
    wide = quasi_poisson_interval(10.0, 2.0)
    assert wide[0] < 4.795389 and wide[1] > 18.390356
    assert wide == pytest.approx((2.0 * garwood(5.0)[0], 2.0 * garwood(5.0)[1]))


def test_zero_hits_still_get_a_positive_upper_bound() -> None:
    lo, hi, phi = precision_interval(HitSet.empty(), k=10, n_products=1000)
    assert lo == 0.0 and phi == 1.0
    assert hi == pytest.approx(3.688879 / (10 * 1000), rel=1e-5)


def random_lists(
    seed: int = 3, n_lists: int = 40, n_items: int = 30
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random ranked lists and relevant sets in CSR form (every list has a relevant item)."""
    rng = np.random.default_rng(seed)
    lists = [rng.choice(n_items, size=rng.integers(0, 15), replace=False) for _ in range(n_lists)]
    truths = [np.sort(rng.choice(n_items, size=rng.integers(1, 6), replace=False)) for _ in range(n_lists)]
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)
    t_off = np.concatenate([[0], np.cumsum([len(t) for t in truths])]).astype(np.int64)
    return offsets, np.concatenate(lists).astype(np.int64), t_off, np.concatenate(truths).astype(np.int64)


@pytest.mark.parametrize("metric", METRICS)
def test_hit_values_sum_to_the_macro_metric(metric: str) -> None:
    offsets, entries, t_off, truth = random_lists()
    hits = hits_against(offsets, entries, t_off, truth, 30)
    hs = hit_set(offsets, entries, hits)
    n_rel = np.diff(t_off)
    for j, k in enumerate((1, 3, 10)):
        macro = float(nanmean_or_nan(metrics_at_k(offsets, hits, n_rel, (1, 3, 10))[METRICS.index(metric), j]))
        assert hit_values(hs, metric, k, n_rel).sum() / len(n_rel) == pytest.approx(macro)


def test_two_way_bootstrap_is_seeded_paired_and_matches_the_exact_variance() -> None:
    hs = hits_of([(0, 7), (1, 7), (1, 9), (2, 8), (5, 7), (6, 3)])
    n_products = 5000  # a large denominator barely moves, so replicates * P are the numerator's replicates
    with_truth = np.ones(n_products, dtype=bool)
    group = HitGroup(hs.product, hs.customer, np.ones((hs.count, 1)))
    twice = HitGroup(hs.product, hs.customer, np.full((hs.count, 1), 2.0))
    a = two_way_bootstrap([group, twice], with_truth, 4000, seed=11)
    assert np.array_equal(a, two_way_bootstrap([group, twice], with_truth, 4000, seed=11))
    np.testing.assert_allclose(a[:, 1], 2.0 * a[:, 0])  # the same weights for every series: paired
    numerator = a[:, 0] * n_products
    assert numerator.mean() == pytest.approx(hs.count, rel=0.05)
    assert numerator.var() == pytest.approx(
        bootstrap_variance(hs), rel=0.1
    )  # Poisson weights: sum_p H_p^2 + sum_c H_c^2 + H
    lo, hi = percentile_interval(a)
    assert lo[0] < hs.count / n_products < hi[0]


def test_random_ranker_interval_covers_the_exact_expectation_in_at_least_90_percent_of_seeds() -> None:
    log = high_churn_log(n_users=1500, seed=0)
    _, test = protocol_splits(log)
    es, _ = build_eval_sets(test)
    run = random_coverage(test, es, seeds=range(40), ks=(5, 10, 20, 50, 100))
    assert run.hits.sum() > 0, "the random ranker must make some hits for the check to mean anything"
    assert (run.rate() >= 0.9).all(), run.rate()
