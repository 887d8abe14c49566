"""Paired comparisons: the sign-flip test against brute force, Holm on known p-values, power by hand, verdict logic."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import binom

from recsys.evaluation import significance
from recsys.evaluation.report import overall_sentence, verdict_phrase
from recsys.evaluation.results import KVerdict
from recsys.evaluation.significance import (
    customer_differences,
    exact_power,
    holm,
    minimum_detectable,
    sign_flip_distribution,
    sign_flip_test,
    verdict,
)


def brute_force_p(d: list[int]) -> float:
    """P(|sum s_c d_c| >= |sum d_c|) by enumerating every sign vector."""
    t = abs(sum(d))
    signs = itertools.product((-1, 1), repeat=len(d))
    flips = [abs(sum(s * x for s, x in zip(sign, d, strict=True))) >= t for sign in signs]
    return sum(flips) / len(flips)


@pytest.mark.parametrize("d", [[1], [1, 1, 1], [2, -1, 1, 3], [1, 1, 1, 1, 1, -1, 2, 2, -3, 1, 4], [-5, 1, 1]])
def test_sign_flip_exact_equals_enumeration(d: list[int]) -> None:
    p, method = sign_flip_test(np.array(d))
    assert method == "exact"
    assert p == pytest.approx(brute_force_p(d), abs=1e-12)
    support, pmf = sign_flip_distribution(np.array(d))
    assert pmf.sum() == pytest.approx(1.0) and support[0] == -sum(abs(x) for x in d)


def test_sign_flip_monte_carlo_fallback_is_seeded_and_close(monkeypatch: pytest.MonkeyPatch) -> None:
    d = np.array([1] * 30 + [-1] * 12 + [2] * 5)
    exact, _ = sign_flip_test(d)
    monkeypatch.setattr(significance, "EXACT_SUPPORT", 10)
    p1, method = sign_flip_test(d, seed=3, n_mc=20_000)
    p2, _ = sign_flip_test(d, seed=3, n_mc=20_000)
    assert method == "monte_carlo" and p1 == p2
    assert p1 == pytest.approx(exact, abs=0.01)


def test_no_discordant_hit_gives_p_one() -> None:
    assert sign_flip_test(np.array([], dtype=np.int64)) == (1.0, "exact")
    assert sign_flip_test(np.array([0, 0])) == (1.0, "exact")


def test_customer_differences_by_hand() -> None:
    # A hits customers 5, 5, 7; B hits 5, 9, 9 -> d_5 = 1, d_7 = 1, d_9 = -2
    d = customer_differences(np.array([5, 5, 7]), np.array([5, 9, 9]))
    assert sorted(d.tolist()) == [-2, 1, 1]
    assert customer_differences(np.array([1, 2]), np.array([2, 1])).size == 0


def test_holm_on_known_p_values() -> None:
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.04*1, 0.06) = 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])
    out = holm([0.01, np.nan, 0.02])
    assert np.isnan(out[1]) and out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.02)


def test_minimum_detectable_ratio_is_exact_at_small_counts() -> None:
    # 16 discordant customers, one hit each, alpha = 0.05 / 6: the test rejects T' >= 14 or <= 2 (binomial tails)
    alpha = 0.05 / 6
    power = minimum_detectable(np.ones(16, dtype=np.int64), alpha=alpha, k=10, n_products=1000)
    q = power.ratio / (1 + power.ratio)
    assert binom.sf(13, 16, q) + binom.cdf(2, 16, q) == pytest.approx(0.8, abs=1e-6)
    assert power.ratio == pytest.approx(9.26, abs=0.01)  # the normal approximation said 192
    assert power.discordant == 16 and power.discordant_customers == 16 and power.overdispersion == 1.0
    assert power.precision_difference == pytest.approx((2 * q - 1) * 16 / (10 * 1000))


def test_exact_power_equals_enumeration() -> None:
    d = np.array([1, 1, 2, 3, 1, 2])
    mags, counts = np.unique(d, return_counts=True)
    for q, alpha in ((0.8, 0.2), (0.95, 0.1), (0.5, 0.5)):
        expected = 0.0
        for signs in itertools.product([1, -1], repeat=len(d)):
            p, _ = sign_flip_test(np.array(signs) * d)
            if p <= alpha:
                expected += float(np.prod([q if s > 0 else 1 - q for s in signs]))
        assert exact_power(mags, counts, alpha, q) == pytest.approx(expected, abs=1e-12)


def test_minimum_detectable_effect_large_counts_and_edges() -> None:
    z = 1.959964 + 0.841621
    many = minimum_detectable(np.ones(10_000, dtype=np.int64), alpha=0.05, k=10, n_products=1000)
    assert many.delta == pytest.approx(z / 100, rel=0.02)  # the normal limit where it holds
    clustered = minimum_detectable(np.full(2_500, 4, dtype=np.int64), alpha=0.05, k=10, n_products=1000)
    assert clustered.overdispersion == 4.0 and clustered.delta == pytest.approx(2 * many.delta, rel=0.03)
    few = minimum_detectable(np.array([1, -1, 1]), alpha=0.05, k=10, n_products=1000)
    assert few.ratio == float("inf")  # three customers can never reach p <= 0.05
    assert minimum_detectable(np.array([], dtype=np.int64), 0.05, 10, 1000).ratio == float("inf")


def test_verdicts_on_constructed_inputs() -> None:
    assert verdict(statistic=12, p_holm=0.001, powered=True, alpha=0.05) == "cf_better"
    assert verdict(statistic=-12, p_holm=0.001, powered=False, alpha=0.05) == "engagement_better"
    assert verdict(statistic=3, p_holm=0.4, powered=True, alpha=0.05) == "no_detectable_difference"
    assert verdict(statistic=3, p_holm=0.4, powered=False, alpha=0.05) == "inconclusive"
    assert verdict(statistic=0, p_holm=1.0, powered=False, alpha=0.05) == "inconclusive"


def kv(k: int, v: str, hits: int) -> KVerdict:
    """A verdict record (`hits` discordant hits, as many customers)."""
    return KVerdict(
        k=k, verdict=v, cf_model="als", engagement_model="activity", discordant=hits, discordant_customers=hits
    )


def test_overall_sentence_is_derived_from_the_per_k_verdicts() -> None:
    same = overall_sentence([kv(5, "inconclusive", 3), kv(10, "inconclusive", 7)])
    assert same == (
        "als (collaborative filtering) vs activity (engagement), both chosen on validation: "
        "inconclusive at every k (5 and 10) (3-7 discordant hits per comparison)."
    )
    mixed = overall_sentence(
        [kv(5, "inconclusive", 3), kv(10, "inconclusive", 7), kv(50, "cf_better", 90), kv(100, "cf_better", 150)]
    )
    assert "the verdict depends on k" in mixed
    assert "inconclusive at k=5 (3 discordant hits), k=10 (7 discordant hits)" in mixed
    assert "CF better at k=50 and 100" in mixed
    assert verdict_phrase(kv(10, "inconclusive", 7)) == "inconclusive (7 discordant hits)"
    assert "no CF-vs-engagement verdict" in overall_sentence([]).replace("No", "no")
