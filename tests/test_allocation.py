"""Capped allocation and exposure metrics: invariants, exact small cases, the optimality gap against an exact LP."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

from recsys.allocation.arrays import list_order
from recsys.allocation.catalogue import (
    AllocationParams,
    Problem,
    allocate,
    customer_codes,
    problem_from_ranker,
    solve,
    truncate,
)
from recsys.allocation.exposure import exposure_frame, exposure_metrics, gini, mean_jaccard, returning_customers
from recsys.rankers import Recommendations, make_ranker

from _logs import list_log, random_log, settings_for

KINDS = ("global", "content", "factor")


# ----------------------------------------------------------------------------------------------
# instances from a dense score matrix, and the exact LP
# ----------------------------------------------------------------------------------------------


def dense_problem(
    W: np.ndarray,
    excluded: np.ndarray,
    m: int,
    shared: np.ndarray | None = None,
    scale: np.ndarray | None = None,
    order_scores: np.ndarray | None = None,
) -> Problem:
    """The instance a ranker with scores W would give: top-m candidates per row, a shared order, exact pair scores."""
    p, u = W.shape
    masked = np.where(excluded, -np.inf, W)
    order = np.lexsort((np.broadcast_to(np.arange(u), (p, u)), -masked), axis=1)
    values = np.take_along_axis(masked, order, axis=1)
    keep = np.isfinite(values) & (np.arange(u)[None, :] < m)
    by = shared if shared is not None else order_scores
    assert by is not None, "a shared order needs shared or order_scores"
    ex_rows, ex_cols = np.nonzero(excluded)
    return Problem(
        n_customers=u,
        offsets=np.concatenate([[0], np.cumsum(keep.sum(axis=1))]),
        customers=order[keep].astype(np.int32),
        scores=values[keep],
        shared_order=np.lexsort((np.arange(u), -by)),
        shared_scores=shared,
        scale=np.ones(p) if scale is None else scale,
        excluded=np.sort(ex_rows.astype(np.int64) * u + ex_cols),
        pair_scores=lambda r, c: W[r, c],
    )


def lp_optimum(W: np.ndarray, excluded: np.ndarray, k: int, cap: int, min_audience: int = 0) -> float:
    """Optimal total score of the b-matching LP (integral for bipartite b-matching) by HiGHS."""
    p, u = W.shape
    rows, cols = np.nonzero(~excluded)
    e = len(rows)
    by_product = sp.csr_matrix((np.ones(e), (rows, np.arange(e))), shape=(p, e))
    by_customer = sp.csr_matrix((np.ones(e), (cols, np.arange(e))), shape=(u, e))
    a_ub = sp.vstack([by_product, by_customer])
    b_ub = np.concatenate([np.full(p, k), np.full(u, cap)])
    if min_audience:
        a_ub = sp.vstack([a_ub, -by_product])
        b_ub = np.concatenate([b_ub, -np.minimum(min_audience, (~excluded).sum(axis=1))])
    res = linprog(-W[rows, cols], A_ub=a_ub, b_ub=b_ub, bounds=(0, 1), method="highs")
    assert res.status == 0, res.message
    return float(-res.fun)


def instance(seed: int, kind: str, depth: int = 3) -> tuple[np.ndarray, np.ndarray, int, int, int, Problem]:
    """A seeded random instance: W, exclusions, k, cap, candidate depth m = depth * k, and its Problem.

    global: every product scores a customer alike (activity-like, the shared order is exact);
    content: 0.5 * engagement + 0.5 * sparse affinity (shared order = engagement, scale 0.5: a lower bound);
    factor: low-rank scores (its shared order is a cold-start order, no score model).
    """
    rng = np.random.default_rng(seed)
    p, u = int(rng.integers(5, 40)), int(rng.integers(10, 60))
    k, cap = int(rng.integers(1, 8)), int(rng.integers(1, 6))
    excluded = rng.random((p, u)) < 0.05
    s = rng.random(u)
    kwargs: dict[str, Any]
    if kind == "global":
        W, kwargs = np.broadcast_to(s, (p, u)).copy(), {"shared": s}
    elif kind == "content":
        affinity = np.where(rng.random((p, u)) < 0.15, rng.random((p, u)), 0.0)
        W, kwargs = 0.5 * s[None, :] + 0.5 * affinity, {"shared": s, "scale": np.full(p, 0.5)}
    else:
        items, users = rng.normal(size=(p, 4)), rng.normal(size=(u, 4))
        W, kwargs = items @ users.T, {"order_scores": users @ items.mean(axis=0)}
    m = depth * k
    return W, excluded, k, cap, m, dense_problem(W, excluded, m, **kwargs)


def check_solution(sol: Any, W: np.ndarray, excluded: np.ndarray, k: int, cap: int) -> np.ndarray:
    """Assert every invariant of a solution; return the row of every chosen pair."""
    p, u = W.shape
    rows = np.repeat(np.arange(p), sol.sizes)
    assert np.bincount(sol.customers, minlength=u).max(initial=0) <= cap, "cap exceeded"
    assert not excluded[rows, sol.customers].any(), "an excluded customer was chosen"
    assert len(np.unique(rows * u + sol.customers)) == len(rows), "a customer twice in one list"
    assert (sol.sizes <= k).all()
    np.testing.assert_allclose(sol.scores, W[rows, sol.customers], rtol=0, atol=1e-12)  # the ranker's own scores
    assert np.array_equal(list_order(rows, sol.scores, sol.customers, p), np.arange(len(rows))), "lists not sorted"
    return rows


# ----------------------------------------------------------------------------------------------
# exact results on hand-made instances
# ----------------------------------------------------------------------------------------------


def test_global_order_with_exclusions_has_a_unique_optimum() -> None:
    # 3 products, customers c0..c4 scored 5..1 everywhere; P0 touched c0 and P1 touched c1; k = cap = 2
    s = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    W = np.broadcast_to(s, (3, 5)).copy()
    excluded = np.zeros((3, 5), dtype=bool)
    excluded[0, 0] = excluded[1, 1] = True
    sol = solve(dense_problem(W, excluded, 5, shared=s), k=2, max_exposures=2)
    check_solution(sol, W, excluded, 2, 2)
    assert sol.sizes.tolist() == [2, 2, 2]
    assert sol.customers.tolist() == [1, 2, 0, 2, 0, 1]  # P0 = c1, c2; P1 = c0, c2; P2 = c0, c1
    assert sol.scores.tolist() == [4.0, 3.0, 5.0, 3.0, 5.0, 4.0]


def test_a_specific_edge_goes_where_it_is_worth_most() -> None:
    # c0 is everyone's best customer but may serve one product: the one where it scores highest (P1)
    W = np.array([[0.9, 0.5, 0.1], [0.95, 0.2, 0.1], [0.9, 0.45, 0.1]])
    excluded = np.zeros_like(W, dtype=bool)
    sol = solve(dense_problem(W, excluded, 3, order_scores=W.mean(axis=0)), k=1, max_exposures=1)
    check_solution(sol, W, excluded, 1, 1)
    assert sol.customers.tolist() == [1, 0, 2]
    assert sol.scores.sum() == pytest.approx(lp_optimum(W, excluded, 1, 1))


def test_uncapped_or_non_binding_cap_returns_the_rankers_top_k() -> None:
    rng = np.random.default_rng(3)
    W = rng.random((6, 9))
    excluded = rng.random((6, 9)) < 0.2
    problem = dense_problem(W, excluded, 9, order_scores=W.mean(axis=0))
    top = truncate(
        Recommendations(np.arange(6), problem.offsets, problem.customers, problem.scores, np.zeros(6, bool)), 3
    )
    for cap in (6, 100):  # cap >= products: the cap cannot bind
        sol = solve(problem, k=3, max_exposures=cap)
        assert sol.stats["shortcut"] is True
        assert np.array_equal(sol.sizes, np.diff(top.offsets))
        assert np.array_equal(sol.customers, top.customer_ids) and np.array_equal(sol.scores, top.scores)


def test_min_audience_reserves_slots_for_every_product() -> None:
    # c0, c1 are everyone's favourites (cap 2); without min_audience P2 could end with the weakest customer only
    s = np.array([3.0, 2.0, 0.5])
    W = np.broadcast_to(s, (3, 3)).copy()
    excluded = np.zeros((3, 3), dtype=bool)
    problem = dense_problem(W, excluded, 3, shared=s)
    sol = solve(problem, k=2, max_exposures=2, min_audience=2)
    check_solution(sol, W, excluded, 2, 2)
    assert sol.sizes.tolist() == [2, 2, 2]
    with pytest.raises(ValueError, match=r"min_audience=3 needs 9 exposures but 3 customers x max_exposures=2 allow 6"):
        solve(problem, k=3, max_exposures=2, min_audience=3)


# ----------------------------------------------------------------------------------------------
# invariants on random instances
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_invariants_on_random_instances(kind: str) -> None:
    for seed in range(60):
        rng = np.random.default_rng(10_000 + seed)
        W, excluded, k, cap, m, problem = instance(seed + 500, kind, depth=int(rng.integers(1, 5)))
        p, u = W.shape
        min_audience = int(rng.integers(0, k + 1))
        allowed = (~excluded).sum(axis=1)
        if np.minimum(min_audience, allowed).sum() > u * cap:
            with pytest.raises(ValueError, match="min_audience"):
                solve(problem, k, cap, min_audience, seed=seed)
            continue
        sol = solve(problem, k, cap, min_audience, seed=seed)
        check_solution(sol, W, excluded, k, cap)
        assert (sol.sizes >= np.minimum(min_audience, allowed)).all(), f"min_audience not honoured (seed {seed})"
        if u * cap >= p * k:  # enough exposures for everyone: every product gets min(k, allowed)
            assert (sol.sizes == np.minimum(k, allowed)).all(), f"a product short of customers (seed {seed})"
        again = solve(problem, k, cap, min_audience, seed=seed)
        assert np.array_equal(again.customers, sol.customers) and np.array_equal(again.scores, sol.scores)


def test_parameter_errors() -> None:
    problem = instance(0, "global")[5]
    with pytest.raises(ValueError, match="max_exposures >= 1"):
        solve(problem, 3, 0)
    with pytest.raises(ValueError, match="min_audience <= k"):
        solve(problem, 3, 2, min_audience=4)
    with pytest.raises(ValueError, match="cache.allocation.max_exposures must be an integer"):
        AllocationParams.from_params({"max_exposures": 2.5})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['cap'\]"):
        AllocationParams.from_params({"cap": 5})
    with pytest.raises(ValueError, match="candidates must be >= the audience depth k=10"):
        AllocationParams(max_exposures=5, candidates=9).check(10)
    with pytest.raises(ValueError, match="cache.candidates must be >= the audience depth k=10"):
        AllocationParams(max_exposures=None, candidates=9).check(10)  # the served top-n is the candidates' head
    with pytest.raises(ValueError, match="'X9' is not a fitted customer"):
        customer_codes(np.array(["X1", "X9"], dtype=object), np.array(["X1", "X2"], dtype=object))


# ----------------------------------------------------------------------------------------------
# optimality gap against the exact LP
# ----------------------------------------------------------------------------------------------

# Bounds per instance kind (max over the seeds, mean). The core is greedy b-matching, 1/2-approximate
# in the worst case; on these small, tight instances with candidate lists 3k deep the gaps measured
# over the 50 seeds are: global max 4.8 % / mean 0.39 %; content 7.1 % / 1.7 %; factor 12.4 % / 2.2 %
# (content with min_audience = k // 2: max 9.8 %, mean 2.0 %). Before the ablation removed the score-aware
# window and the one-swap repairs (benchmarks/bench_allocation.py --ablation: +0.2 % total score at scale for
# +80 % CPU) they were global 0.70 % / 0.05 %, content 7.2 % / 1.4 %, factor 8.2 % / 1.8 %, min_audience 9.5 % /
# 1.7 %: on tiny tight instances those phases mattered more than at scale. The bounds leave a margin above the
# measured gaps, so that a regression fails the test, not noise.
GAP_BOUNDS = {"global": (0.06, 0.006), "content": (0.09, 0.022), "factor": (0.15, 0.03), "min_audience": (0.12, 0.025)}


@pytest.mark.parametrize("kind", KINDS)
def test_optimality_gap_against_the_lp(kind: str) -> None:
    gaps = []
    for seed in range(50):
        W, excluded, k, cap, _, problem = instance(seed, kind)
        sol = solve(problem, k, cap, seed=seed)
        check_solution(sol, W, excluded, k, cap)
        optimum = lp_optimum(W, excluded, k, cap)
        gaps.append((optimum - sol.scores.sum()) / abs(optimum))
    worst, mean = GAP_BOUNDS[kind]
    assert min(gaps) > -1e-9, "better than the LP optimum: the LP or the scores are wrong"
    assert max(gaps) <= worst and float(np.mean(gaps)) <= mean, (max(gaps), float(np.mean(gaps)))


def test_optimality_gap_with_min_audience() -> None:
    gaps = []
    for seed in range(30):
        W, excluded, k, cap, _, problem = instance(seed, "content")
        p, u = W.shape
        m = max(1, k // 2)
        if np.minimum(m, (~excluded).sum(axis=1)).sum() > u * cap:
            continue
        sol = solve(problem, k, cap, m, seed=seed)
        gaps.append((lp_optimum(W, excluded, k, cap, m) - sol.scores.sum()) / lp_optimum(W, excluded, k, cap, m))
    worst, mean = GAP_BOUNDS["min_audience"]
    assert len(gaps) >= 10 and min(gaps) > -1e-9 and max(gaps) <= worst and float(np.mean(gaps)) <= mean


# ----------------------------------------------------------------------------------------------
# with the project's rankers
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return random_log(n_rows=2500, n_users=220, n_products=70, seed=5)


@pytest.mark.parametrize("name", ["activity", "content", "als", "itemknn"])
def test_allocate_with_rankers(log: pd.DataFrame, name: str) -> None:
    params = {"seed": 0, "token_user_cap": 20, "factors": 8, "iterations": 5, "num_threads": 1}
    ranker: Any = make_ranker(name, settings_for(name, params)).fit(log)  # content / factor / knn attributes below
    products = np.sort(log["product_id"].unique())
    candidates = ranker.rank(products, 40)
    k, cap = 10, 6
    # a cap of at least the number of products leaves every list as the ranker's own top-k
    same = allocate(candidates, ranker, k, AllocationParams(max_exposures=len(products), candidates=40))
    own = ranker.rank(products, k)
    assert np.array_equal(same.recommendations.offsets, own.offsets)
    assert np.array_equal(same.recommendations.customer_ids, own.customer_ids)
    assert np.array_equal(same.recommendations.scores, own.scores)
    out = allocate(candidates, ranker, k, AllocationParams(max_exposures=cap, candidates=40, seed=1)).recommendations
    frame = out.to_frame()
    assert frame["customer_id"].value_counts().max() <= cap
    touched = log[["product_id", "customer_id"]].drop_duplicates()
    assert len(frame.merge(touched, on=["product_id", "customer_id"])) == 0
    assert not frame.duplicated(["product_id", "customer_id"]).any()
    assert (frame["rank"] == frame.groupby("product_id").cumcount() + 1).all()
    assert (frame.groupby("product_id")["score"].diff().dropna() <= 0).all()
    assert (
        ranker.history_.n_users * cap >= len(products) * k and (np.diff(out.offsets) == k).all()
    )  # 143 x 6 >= 70 x 10
    # every score is the ranker's own score of that pair
    problem = problem_from_ranker(out, ranker)
    rows = np.repeat(np.arange(len(products)), np.diff(out.offsets))
    if name == "activity":  # a global ranker's pair score is its shared score
        assert problem.shared_scores is not None
        expected = problem.shared_scores[problem.customers]
    else:
        expected = ranker.score_pairs(ranker.history_.codes_of(products)[rows], problem.customers)
    np.testing.assert_allclose(out.scores, expected, rtol=1e-5, atol=1e-9)  # als: float32 matmul vs per-pair dot
    assert exposure_metrics(out, (k,)).at(k).max_exposures <= cap < exposure_metrics(own, (k,)).at(k).max_exposures


@pytest.mark.parametrize("name", ["content", "als", "itemknn"])
def test_score_pairs_agree_with_rank(log: pd.DataFrame, name: str) -> None:
    params = {"seed": 0, "token_user_cap": 20, "factors": 8, "iterations": 5, "num_threads": 1}
    ranker: Any = make_ranker(name, settings_for(name, params)).fit(log)  # content / factor / knn attributes below
    products = np.append(np.sort(log["product_id"].unique()), 10**6)  # the last one is unseen: cold start
    recs = ranker.rank(products, 25)
    codes = ranker.history_.codes_of(products)[np.repeat(np.arange(len(products)), np.diff(recs.offsets))]
    users = customer_codes(recs.customer_ids, ranker.history_.customer_ids)
    np.testing.assert_allclose(ranker.score_pairs(codes, users), recs.scores, rtol=1e-5, atol=1e-12)
    shared = np.empty(ranker.history_.n_users)
    shared[ranker.global_.order] = ranker.global_.scores
    cold = codes < 0
    np.testing.assert_array_equal(ranker.score_pairs(codes[cold], users[cold]), shared[users[cold]])
    if name == "content":  # the shared order scaled is a lower bound of every pair's score
        everyone = np.tile(np.arange(ranker.history_.n_users), 3)
        some = np.repeat(ranker.history_.codes_of(products[:3]), ranker.history_.n_users)
        assert (ranker.score_pairs(some, everyone) >= ranker.shared_scale(some) * shared[everyone]).all()


def test_allocation_needs_a_fitted_ranker_with_a_shared_order(log: pd.DataFrame) -> None:
    ranker: Any = make_ranker("activity").fit(log)
    candidates = ranker.rank(np.sort(log["product_id"].unique()), 12)

    class Plain:
        history_ = ranker.history_

    with pytest.raises(ValueError, match="has no global_"):
        allocate(candidates, Plain(), 10, AllocationParams(max_exposures=2, candidates=12))


# ----------------------------------------------------------------------------------------------
# exposure metrics
# ----------------------------------------------------------------------------------------------


def recs_of(lists: list[list[int]]) -> Recommendations:
    """Recommendations from plain customer lists (scores descending)."""
    sizes = np.array([len(x) for x in lists], dtype=np.int64)
    flat = np.array([c for x in lists for c in x], dtype=np.int64)
    scores = np.concatenate([np.arange(len(x), 0, -1, dtype=np.float64) for x in lists]) if len(flat) else np.zeros(0)
    return Recommendations(
        np.arange(len(lists)), np.concatenate([[0], np.cumsum(sizes)]), flat, scores, np.zeros(len(lists), dtype=bool)
    )


def test_gini_on_known_inputs() -> None:
    assert gini(np.array([5, 5, 5])) == 0.0
    assert gini(np.array([1, 3])) == pytest.approx(0.25)  # sum |xi - xj| = 4, 2 n^2 mean = 16
    assert gini(np.array([0, 0, 0, 1])) == pytest.approx(0.75)  # (n - 1) / n when one takes everything
    assert gini(np.array([1, 2, 3, 4])) == pytest.approx(0.25)  # sum |xi - xj| = 20, 2 * 16 * 2.5 = 80
    with pytest.raises(ValueError, match="at least one positive value"):
        gini(np.zeros(3))


def test_exposure_metrics_on_hand_made_lists() -> None:
    # customer 7 is in every list; 1, 2, 3 appear once each at rank 2; customer 9 only at rank 3
    recs = recs_of([[7, 1, 9], [7, 2], [7, 3], []])
    m = exposure_metrics(recs, ks=(2, 3), reachable=[7, 9, 11, 12], pairs=500, jaccard_k=2, seed=0)
    at2, at3 = m.at(2), m.at(3)
    assert (m.products, m.depth, m.reachable) == (4, 3, 4)
    assert (at2.slots, at2.distinct_customers, at2.max_exposures) == (6, 4, 3)
    assert at2.mean_exposures == pytest.approx(1.5) and at2.p99_exposures == pytest.approx(
        2.94
    )  # sorted 1, 1, 1, 3: 1 + 0.97 * 2
    assert at2.gini == pytest.approx(gini(np.array([3, 1, 1, 1])))
    assert (at2.reachable_used, at2.reachable_share) == (1, 0.25)  # only 7 among {7, 9, 11, 12}
    assert at2.gini_reachable == pytest.approx(gini(np.array([3, 1, 1, 1, 0, 0, 0])))  # + 9, 11, 12 at zero
    assert (at3.slots, at3.distinct_customers, at3.reachable_used) == (7, 5, 2)
    # top-2 sets {7,1}, {7,2}, {7,3}: every pair shares 7 of 3 customers -> Jaccard 1/3 (empty lists are not drawn)
    assert m.mean_jaccard == pytest.approx(1 / 3) and m.jaccard_pairs == 500
    as_dict = m.to_dict()
    assert set(as_dict["at_k"]) == {"2", "3"} and as_dict["at_k"]["2"]["max_exposures"] == 3
    table = exposure_frame({"a": as_dict, "b": as_dict})
    assert table.loc[(2, "distinct_customers"), "a"] == 4 and table.loc[(2, "mean_jaccard"), "b"] == pytest.approx(
        1 / 3
    )


def test_jaccard_is_seeded_and_needs_two_lists() -> None:
    recs = recs_of([[1, 2, 3], [2, 3, 4], [5, 6], [1, 5]])
    assert mean_jaccard(recs, 3, 200, seed=4) == mean_jaccard(recs, 3, 200, seed=4)
    assert mean_jaccard(recs_of([[1, 2], []]), 10, 100) == (None, 0)
    jaccard, pairs = mean_jaccard(recs_of([[1, 2, 3], [2, 3, 4]]), 3, 50)
    assert jaccard == pytest.approx(0.5) and pairs == 50


def test_exposure_metrics_with_string_ids_and_bad_cut_offs() -> None:
    recs = Recommendations(
        np.array(["A", "B"], dtype=object),
        np.array([0, 2, 3]),
        np.array(["x", "y", "x"], dtype=object),
        np.array([2.0, 1.0, 1.0]),
        np.zeros(2, dtype=bool),
    )
    m = exposure_metrics(recs, ks=(10,), reachable=np.array(["x", "z"], dtype=object))
    assert (m.at(10).distinct_customers, m.at(10).max_exposures, m.at(10).reachable_share) == (2, 2, 0.5)
    with pytest.raises(ValueError, match="cut-offs must be >= 1"):
        exposure_metrics(recs, ks=(0,))
    with pytest.raises(KeyError, match="no exposure metrics at k=5"):
        m.at(5)


def test_returning_customers_are_active_on_two_distinct_days() -> None:
    log = list_log(
        customers=[1, 1, 2, 2, 3, 3, 4],
        products=[10, 11, 10, 12, 11, 11, 10],
        dates=[
            "2023-01-01T08:00",
            "2023-01-01T20:00",
            "2023-01-01T00:00",
            "2023-01-03T00:00",
            "2023-01-02T00:00",
            None,
            "2023-01-05T00:00",
        ],
    )
    assert returning_customers(log).tolist() == [2]  # 1: one day twice; 3: one dated day; 4: one day
