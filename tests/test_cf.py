"""CF rankers: exact chunked top-k, the ranker contract, ALS beating random on co-purchase structure, BG/NBD."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.evaluation.frame import build_eval_sets
from recsys.evaluation.references import random_metrics
from recsys.evaluation.scoring import coded_recommendations, score_lists
from recsys.evaluation.split import cutoff_at, window_split
from recsys.rankers import available_rankers, make_ranker
from recsys.rankers.base import History
from recsys.rankers.bgnbd import BGNBDRanker, bgnbd_available, rfm_summary
from recsys.rankers.factor import ALSRanker, BPRRanker, topk_rows

from _logs import list_log

SMALL_ALS = {"factors": 8, "iterations": 10, "seed": 7, "num_threads": 1, "chunk_size": 3}


def canonical(customers, products, dates, events=None) -> pd.DataFrame:
    """A canonical interactions table from plain lists (dates as ISO strings or None; default event purchased)."""
    return list_log(customers, products, dates, events, default_event="purchased", name="item {}".format)


def co_purchase_log(
    n_groups: int = 4, users_per_group: int = 40, items_per_group: int = 10, seed: int = 0
) -> pd.DataFrame:
    """Dense log with strong co-purchase structure: users of group g buy most items of group g.

    Each user buys 7 random items of their group in January (train) and one more, different item of
    the group in March (test), so the test item is predictable only from co-purchases.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        items = np.arange(items_per_group) + g * items_per_group + 1
        for u in range(users_per_group):
            user = g * users_per_group + u + 1
            picks = rng.permutation(items)[:8]
            for i, item in enumerate(picks[:7]):
                rows.append((user, int(item), f"2023-01-{1 + i:02d}T10:00:00"))
            rows.append((user, int(picks[7]), "2023-03-01T10:00:00"))
    c, p, d = zip(*rows, strict=True)
    return canonical(list(c), list(p), list(d))


# ----------------------------------------------------------------------------------------------
# exact top-k
# ----------------------------------------------------------------------------------------------


def reference_topk(scores: np.ndarray, k: int) -> list[np.ndarray]:
    """Full stable sort by (-score, column), finite only, first k per row."""
    out = []
    for row in scores:
        order = np.lexsort((np.arange(len(row)), -row))
        order = order[np.isfinite(row[order])]
        out.append(order[:k])
    return out


@pytest.mark.parametrize("block", [1, 4, 16, 64])
@pytest.mark.parametrize("k", [1, 5, 17, 500])
def test_topk_rows_equals_full_sort_with_ties_and_exclusions(block: int, k: int) -> None:
    rng = np.random.default_rng(block * 1000 + k)
    n = 300
    scores = rng.integers(0, 12, size=(9, n)).astype(np.float32)  # heavy ties
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    scores[3, :] = -np.inf
    scores[4, 5:] = -np.inf  # fewer finite entries than k
    sizes, cols, vals = topk_rows(scores, k, block)
    ref = reference_topk(scores, k)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    for r in range(len(scores)):
        got = cols[offsets[r] : offsets[r + 1]]
        assert np.array_equal(got, ref[r]), f"row {r}"
        assert np.array_equal(vals[offsets[r] : offsets[r + 1]], scores[r, ref[r]])


def test_topk_rows_continuous_scores_large_row() -> None:
    rng = np.random.default_rng(3)
    scores = rng.standard_normal((5, 5000)).astype(np.float32)
    scores[:, ::7] = scores[:, 1:2]  # ties across blocks
    sizes, cols, _ = topk_rows(scores, 50, 32)
    assert np.array_equal(cols.reshape(5, 50), np.stack(reference_topk(scores, 50)))


def test_topk_rows_empty_inputs() -> None:
    sizes, cols, vals = topk_rows(np.zeros((0, 10), dtype=np.float32), 5)
    assert len(sizes) == 0 and len(cols) == 0
    sizes, cols, vals = topk_rows(np.zeros((2, 10), dtype=np.float32), 0)
    assert sizes.tolist() == [0, 0]


# ----------------------------------------------------------------------------------------------
# ALS / BPR ranker contract
# ----------------------------------------------------------------------------------------------


def test_cf_rankers_are_registered() -> None:
    assert {"als", "bpr", "bgnbd"} <= set(available_rankers())
    assert isinstance(make_ranker("als", SMALL_ALS), ALSRanker)
    assert isinstance(make_ranker("bpr", {}), BPRRanker)


def test_als_rank_is_the_exact_factor_top_k() -> None:
    log = co_purchase_log()
    ranker = ALSRanker({**SMALL_ALS, "num_threads": 2}).fit(log)
    h = ranker.history_
    products = h.product_ids[[0, 5, 11, 39]]
    rec = ranker.rank(products, 25)
    scores = ranker.score_block(h.codes_of(products))
    ref = reference_topk(scores, 25)
    for j in range(len(products)):
        block = rec.customer_ids[rec.offsets[j] : rec.offsets[j + 1]]
        assert np.array_equal(block, h.customer_ids[ref[j]])
        assert np.allclose(rec.scores[rec.offsets[j] : rec.offsets[j + 1]], scores[j, ref[j]])


def test_als_contract_exclusion_cold_start_and_determinism() -> None:
    log = co_purchase_log()
    a = ALSRanker(SMALL_ALS).fit(log)
    b = ALSRanker(SMALL_ALS).fit(log)
    requested = np.array([3, 999, 12, 3])  # 999 is unseen -> cold start; repeats allowed
    ra, rb = a.rank(requested, 30), b.rank(requested, 30)
    assert np.array_equal(ra.customer_ids, rb.customer_ids) and np.array_equal(ra.scores, rb.scores)
    assert ra.cold_start.tolist() == [False, True, False, False]
    frame = ra.to_frame()
    touched = log[["product_id", "customer_id"]].drop_duplicates()
    assert frame.merge(touched, on=["product_id", "customer_id"]).empty
    assert set(frame["customer_id"]) <= set(log["customer_id"])
    block = np.repeat(np.arange(len(requested)), np.diff(ra.offsets))
    assert (np.diff(ra.scores)[block[1:] == block[:-1]] <= 0).all()
    assert (np.diff(ra.offsets) == 30).all()
    assert np.array_equal(ra.customer_ids[:30], ra.customer_ids[90:])  # the repeated request gets the same block
    cold = ra.customer_ids[ra.offsets[1] : ra.offsets[2]]
    assert len(set(cold)) == 30


def test_als_handles_string_ids_and_k_zero() -> None:
    log = co_purchase_log(n_groups=2, users_per_group=10)
    log["customer_id"] = ("c" + log["customer_id"].astype(str)).astype("string[pyarrow]")
    log["product_id"] = ("SKU" + log["product_id"].astype(str) + "A").astype("string[pyarrow]")
    r = ALSRanker(SMALL_ALS).fit(log)
    rec = r.rank(["SKU1A", "nope"], 5)
    assert rec.to_frame()["customer_id"].str.startswith("c").all()
    assert rec.cold_start.tolist() == [False, True]
    assert len(r.rank(["SKU1A"], 0).customer_ids) == 0


def test_rank_before_fit_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        ALSRanker(SMALL_ALS).rank([1], 5)
    with pytest.raises(ValueError, match="factors"):
        ALSRanker({"factors": 0})


def test_als_beats_random_on_co_purchase_structure() -> None:
    """On a dense log with group structure, ALS finds the next purchase far above chance (the CF path is real)."""
    log = co_purchase_log()
    split = window_split(log, cutoff_at(log["event_date"], 0.8))
    existing, _ = build_eval_sets(split)
    ks = (5, 10)
    ranker = ALSRanker({"factors": 8, "iterations": 15, "seed": 1, "num_threads": 1, "regularization": 0.1}).fit(
        split.train
    )
    offsets, codes = coded_recommendations(ranker.rank(existing.product_ids, 10), existing, "als")
    als, _ = score_lists(existing, offsets, codes, ks)
    rnd = random_metrics(existing, ks)
    als_p5, rnd_p5 = np.nanmean(als[0, 0]), np.nanmean(rnd[0, 0])
    assert als_p5 > 4 * rnd_p5, (als_p5, rnd_p5)
    assert np.nanmean(als[2, 1]) > 0.9  # hit rate@10: nearly every product finds a buyer


def test_als_train_more_equals_a_fresh_fit_and_threads_do_not_matter() -> None:
    log = co_purchase_log()
    fresh = ALSRanker({**SMALL_ALS, "iterations": 10}).fit(log)
    continued = ALSRanker({**SMALL_ALS, "iterations": 4}).fit(log).train_more(6)
    two_threads = ALSRanker({**SMALL_ALS, "iterations": 10, "num_threads": 2, "score_threads": 2}).fit(log)
    assert continued.params["iterations"] == 10
    for other in (continued, two_threads):
        assert np.array_equal(fresh.user_factors_, other.user_factors_)
        assert np.array_equal(fresh.item_factors_, other.item_factors_)
    products = np.arange(1, 41)
    a, b = fresh.rank(products, 20), two_threads.rank(products, 20)
    assert np.array_equal(a.customer_ids, b.customer_ids) and np.array_equal(a.scores, b.scores)
    with pytest.raises(ValueError, match="iterations > 0"):
        fresh.train_more(0)


def test_bpr_fits_and_respects_contract() -> None:
    log = co_purchase_log(n_groups=2, users_per_group=15)
    r = BPRRanker({"factors": 8, "iterations": 20, "seed": 3, "num_threads": 1}).fit(log)
    rec = r.rank(np.array([1, 2, 11]), 10)
    frame = rec.to_frame()
    touched = log[["product_id", "customer_id"]].drop_duplicates()
    assert frame.merge(touched, on=["product_id", "customer_id"]).empty
    assert r.item_factors_.shape[1] == 9  # factors + item bias


# ----------------------------------------------------------------------------------------------
# BG/NBD
# ----------------------------------------------------------------------------------------------


def bgnbd_log() -> pd.DataFrame:
    """Customer 1: three active days; 2: one day; 3: only an undated wishlist row; 4: two rows same day."""
    return canonical(
        [1, 1, 1, 1, 2, 3, 4, 4, 5],
        [10, 11, 12, 13, 10, 11, 12, 13, 14],
        [
            "2023-01-01T08:00:00",
            "2023-01-01T09:00:00",
            "2023-01-05T08:00:00",
            "2023-01-11T23:00:00",
            "2023-01-03T08:00:00",
            None,
            "2023-01-06T08:00:00",
            "2023-01-06T20:00:00",
            "2023-01-11T08:00:00",
        ],
        events=["purchased", "cart", "purchased", "cart", "purchased", "wishlist", "cart", "purchased", "cart"],
    )


def test_rfm_summary_by_hand() -> None:
    log = bgnbd_log()
    rfm = rfm_summary(log, History.build(log))
    # day index from 2023-01-01; observation ends on day 10 (2023-01-11)
    assert rfm["frequency"].tolist() == [2.0, 0.0, 0.0, 0.0, 0.0]
    assert rfm["recency"].tolist() == [10.0, 0.0, 0.0, 0.0, 0.0]
    assert rfm["T"].tolist() == [10.0, 8.0, 10.0, 5.0, 0.0]
    assert rfm["has_transactions"].tolist() == [True, True, False, True, True]
    only_purchases = rfm_summary(log, History.build(log), events=["purchased"])
    assert only_purchases["frequency"].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


@pytest.mark.skipif(bgnbd_available(), reason="pymc-marketing is installed")
def test_bgnbd_without_pymc_marketing_says_how_to_install() -> None:
    with pytest.raises(ImportError, match="pip install"):
        BGNBDRanker({}).fit(bgnbd_log())


@pytest.mark.skipif(not bgnbd_available(), reason="pymc-marketing (optional) is not installed")
def test_bgnbd_ranks_repeat_customers_first() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for u in range(1, 301):
        n_days = 1 + (rng.poisson(3) if u <= 60 else 0)
        days = np.sort(rng.choice(np.arange(0, 90), size=min(n_days, 90), replace=False))
        for d in days:
            rows.append((u, int(rng.integers(1, 40)), str(pd.Timestamp("2023-01-01") + pd.Timedelta(days=int(d)))))
    c, p, d = zip(*rows, strict=True)
    log = canonical(list(c), list(p), list(d))
    r = BGNBDRanker({"horizon_days": 30}).fit(log)
    rec = r.rank(np.array([999]), 40)
    top = set(rec.customer_ids)
    assert len(top & set(range(1, 61))) >= 30  # repeat customers dominate the expected-transactions order
    assert np.all(np.diff(rec.scores) <= 0)
