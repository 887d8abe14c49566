"""Rankers: exclusion and ordering invariants, hand-checked answers, cold start, registry."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.features.text import query_tokens, tokenize_names
from recsys.rankers import Ranker, Recommendations, available_rankers, make_ranker
from recsys.rankers.base import deep_merge, parallel_ranking, top_k_codes
from recsys.rankers.content import ContentRanker
from recsys.rankers.engagement import ActivityRanker
from recsys.rankers.names import truncate_postings

from _logs import frame, random_log, settings_for

BUILTIN = ("random", "activity", "recency", "popularity", "content", "name_knn")
EXCLUSION_RANKERS = (*BUILTIN, "als", "itemknn")  # every ranker that fits in a second (bpr: test_cf, bgnbd: optional)
FAST = {"seed": 1, "token_user_cap": 15, "chunk_entries": 300, "factors": 4, "iterations": 3, "num_threads": 1, "K": 10}
DAY = "2023-03-31"


def check_invariants(recs: Recommendations, log: pd.DataFrame, requested: np.ndarray, k: int) -> pd.DataFrame:
    """Assert the contract on every block and return the long frame."""
    out = recs.to_frame()
    assert list(out.columns) == ["product_id", "rank", "customer_id", "score"]
    assert len(recs.offsets) == len(requested) + 1 and recs.offsets[0] == 0
    assert np.array_equal(np.asarray(recs.product_ids), np.asarray(requested, dtype=np.asarray(recs.product_ids).dtype))
    touched = log[["product_id", "customer_id"]].drop_duplicates()
    clash = out.merge(touched, on=["product_id", "customer_id"])
    assert clash.empty, f"ranked a customer who already interacted: {clash.head()}"
    assert set(out["customer_id"]) <= set(log["customer_id"]), "ranked a customer with no history"
    assert not out.duplicated(["product_id", "customer_id"]).any()
    assert (out.groupby("product_id", sort=False)["score"].diff().dropna() <= 0).all(), "scores must not increase"
    expected = out.groupby("product_id", sort=False)["rank"].transform(lambda r: np.arange(1, len(r) + 1))
    assert (out["rank"].to_numpy() == expected.to_numpy()).all()
    n_users = log["customer_id"].nunique()
    excluded = touched.groupby("product_id").size()
    allowed = np.array([n_users - excluded.get(p, 0) for p in requested])
    assert np.array_equal(recs.sizes(), np.minimum(k, allowed)), "a block is shorter than the allowed customers"
    return out


def brute_force(log: pd.DataFrame, user_scores: pd.Series, product: object, k: int) -> list[object]:
    """Expected top-k for one product: all customers by score desc, id asc, minus the product's own."""
    own = set(log.loc[log["product_id"] == product, "customer_id"])
    frame_ = user_scores.rename("s").reset_index()
    frame_ = frame_[~frame_["customer_id"].isin(own)].sort_values(["s", "customer_id"], ascending=[False, True])
    return frame_["customer_id"].head(k).tolist()


@pytest.mark.parametrize("str_ids", [False, True])
@pytest.mark.parametrize("name", BUILTIN)
def test_invariants_on_every_product_of_a_random_log(name: str, str_ids: bool) -> None:
    log = random_log(n_rows=3000, n_users=300, n_products=80, seed=7, str_ids=str_ids)
    ranker = make_ranker(name, settings_for(name, {"seed": 1, "token_user_cap": 15, "chunk_entries": 300})).fit(log)
    products = np.sort(np.asarray(log["product_id"].unique(), dtype=object if str_ids else np.int64))
    for k in (1, 10, 400):
        check_invariants(ranker.rank(products, k), log, products, k)


def test_activity_equals_brute_force() -> None:
    log = random_log(n_rows=2500, n_users=250, n_products=60, seed=11)
    ranker = ActivityRanker().fit(log)
    recs = ranker.rank(np.arange(60), 25)
    out = recs.to_frame()
    for p in range(0, 60, 3):
        got = out.loc[out["product_id"] == p, "customer_id"].tolist()
        assert got == brute_force(log, ranker.features_["engagement"], p, 25)


def test_content_equals_brute_force_when_postings_are_not_truncated() -> None:
    log = random_log(n_rows=2500, n_users=250, n_products=60, seed=5)
    w = 0.6
    ranker = make_ranker("content", {"affinity_weight": w, "token_user_cap": 10**6, "chunk_entries": 500}).fit(log)
    assert isinstance(ranker, ContentRanker)
    x = ranker.x_.toarray()  # TF-IDF rows of the products (codes = sorted product ids)
    users = np.sort(log["customer_id"].unique())
    products = np.sort(log["product_id"].unique())
    hist = np.zeros((len(users), len(products)))
    hist[np.searchsorted(users, log["customer_id"]), np.searchsorted(products, log["product_id"])] = 1.0
    profile = hist @ x
    norms = np.linalg.norm(profile, axis=1, keepdims=True)
    profile = np.divide(profile, norms, out=np.zeros_like(profile), where=norms > 0)
    eng = ranker.features_["engagement"].to_numpy()
    out = ranker.rank(products, 20).to_frame()
    for j, p in enumerate(products):
        scores = pd.Series(w * (profile @ x[j]) + (1 - w) * eng, index=pd.Index(users, name="customer_id"))
        got = out.loc[out["product_id"] == p]
        assert got["customer_id"].tolist() == brute_force(log, scores, p, 20)
        np.testing.assert_allclose(got["score"], scores.loc[got["customer_id"]].to_numpy(), rtol=1e-12)


def name_log() -> pd.DataFrame:
    """Five one-purchase customers on the same day (equal engagement), products with telling names."""
    return frame(
        [
            (1, 1, "عطر 001", "purchased", DAY),
            (2, 2, "Coffee 100G", "purchased", DAY),
            (3, 3, "زيت زيتون 500مل", "purchased", DAY),
            (4, 4, "عطر 002", "purchased", DAY),
            (5, 5, "Coffee Gold 250G", "purchased", DAY),
            (6, 6, None, "purchased", DAY),
        ]
    )


def test_content_prefers_customers_with_matching_name_tokens() -> None:
    log = name_log()
    content = make_ranker("content", {"affinity_weight": 0.5}).fit(log)
    activity = make_ranker("activity").fit(log)
    got = content.rank([4, 2, 6], 3).to_frame()
    assert got.loc[got["product_id"] == 4, "customer_id"].tolist() == [1, 2, 3]  # perfume buyer first
    assert got.loc[got["product_id"] == 2, "customer_id"].tolist() == [5, 1, 3]  # other coffee buyer first
    by_activity = activity.rank([6], 3).to_frame()
    nameless = got[got["product_id"] == 6]
    assert nameless["customer_id"].tolist() == by_activity["customer_id"].tolist() == [1, 2, 3]
    np.testing.assert_allclose(nameless["score"], 0.5 * by_activity["score"])


def test_tokenizer_handles_arabic_latin_digits_and_units() -> None:
    names = ["زيت زيتون 500مل", "Coffee 100G", "شامبو للأطفال ٤٠٠ مل", "قَهْوَة", "أرز", None, "Shampoo-Kids/400ml"]
    parents, tokens = tokenize_names(names)
    by_name = pd.Series(tokens).groupby(parents).agg(list).to_dict()
    assert by_name[0] == ["زيت", "زيتون", "500", "مل"]
    assert by_name[1] == ["coffee", "100", "g"]
    assert by_name[2] == ["شامبو", "للاطفال", "400", "مل"]
    assert by_name[3] == ["قهوه"]  # harakat removed, teh marbuta folded to heh (the search rule too)
    assert by_name[4] == ["ارز"]
    assert 5 not in by_name
    assert by_name[6] == ["shampoo", "kids", "400", "ml"]
    assert query_tokens("قهوة ٥٠٠جرام") == ["قهوه", "500", "جرام"]  # a search query folds like a name


@pytest.mark.parametrize("name", BUILTIN)
def test_unseen_product_gets_global_order_flagged_cold(name: str) -> None:
    log = random_log(n_rows=800, n_users=120, n_products=30, seed=2)
    ranker = make_ranker(name, settings_for(name, {"seed": 3})).fit(log)
    recs = ranker.rank(np.array([5, 10_000, 7]), 10)
    assert recs.cold_start.tolist() == [False, True, False]
    cold = recs.to_frame().query("product_id == 10000")
    assert len(cold) == 10
    if name in ("activity", "content", "name_knn"):
        activity = make_ranker("activity").fit(log)
        assert isinstance(activity, ActivityRanker)
        eng = activity.features_["engagement"]
        assert cold["customer_id"].tolist() == eng.sort_values(ascending=False, kind="stable").index[:10].tolist()
        np.testing.assert_allclose(cold["score"], eng.loc[cold["customer_id"]].to_numpy())
    assert ranker.rank(["not-an-int"], 3).cold_start.tolist() == [True]


def test_recency_ranks_most_recently_active_first() -> None:
    log = frame(
        [
            ("a", 1, "x", "purchased", "2023-01-01"),
            ("b", 1, "x", "cart", "2023-03-30"),
            ("c", 2, "y", "view", "2023-03-31"),
            ("d", 2, "y", "wishlist", None),
            ("e", 3, "z", "purchased", "2023-02-01"),
        ]
    )
    out = make_ranker("recency").fit(log).rank(["9"], 5).to_frame()
    assert out["customer_id"].tolist() == ["c", "b", "e", "a", "d"]


def test_random_is_seeded() -> None:
    log = random_log(n_rows=600, n_users=100, n_products=20, seed=4)
    a = make_ranker("random", {"seed": 1}).fit(log).rank(np.arange(20), 10).to_frame()
    b = make_ranker("random", {"seed": 1}).fit(log).rank(np.arange(20), 10).to_frame()
    c = make_ranker("random", {"seed": 2}).fit(log).rank(np.arange(20), 10).to_frame()
    pd.testing.assert_frame_equal(a, b)
    assert not a["customer_id"].equals(c["customer_id"])


def test_undated_rows_count_for_exclusion() -> None:
    log = frame([(1, 1, "a", "purchased", DAY), (2, 1, "a", "wishlist", None), (3, 2, "b", "cart", DAY)])
    for name in BUILTIN:
        out = make_ranker(name).fit(log).rank([1], 5).to_frame()
        assert out["customer_id"].tolist() == [3], name


@pytest.mark.parametrize("name", EXCLUSION_RANKERS)
def test_nobody_is_recommended_a_product_they_touched_dated_or_not(name: str) -> None:
    log = random_log(n_rows=3000, n_users=300, n_products=80, seed=7, undated_frac=0.2)
    undated = log["event_date"].isna().to_numpy()
    ranker = make_ranker(name, settings_for(name, FAST)).fit(log[~undated], exclude=log[undated])
    products = np.sort(log["product_id"].unique())
    out = ranker.rank(products, 400).to_frame()
    touched = log[["product_id", "customer_id"]].drop_duplicates()
    assert out.merge(touched, on=["product_id", "customer_id"]).empty
    assert set(out["customer_id"]) <= set(log.loc[~undated, "customer_id"])  # exclusion rows add no customer


@pytest.mark.parametrize("name", EXCLUSION_RANKERS)
def test_exclusion_rows_give_no_training_signal(name: str) -> None:
    log = random_log(n_rows=3000, n_users=300, n_products=80, seed=8, undated_frac=0.2)
    undated = log["event_date"].isna().to_numpy()
    dated = log[~undated].reset_index(drop=True)
    only_excl = log[undated].head(40).copy()
    only_excl["product_id"] = (only_excl["product_id"] + 1000).astype(log["product_id"].dtype)
    assert not set(only_excl["product_id"]) & set(dated["product_id"])  # products known only through exclusion rows
    exclude = pd.concat([log[undated], only_excl], ignore_index=True)
    plain = make_ranker(name, settings_for(name, FAST)).fit(dated)
    with_excl = make_ranker(name, settings_for(name, FAST)).fit(dated, exclude=exclude)
    products = np.sort(dated["product_id"].unique())
    a = plain.rank(products, 10_000).to_frame()
    b = with_excl.rank(products, 10_000).to_frame()
    excluded = exclude[["product_id", "customer_id"]].drop_duplicates().assign(excl=True)
    a = a.merge(excluded, on=["product_id", "customer_id"], how="left")
    a = a[a["excl"].isna()].drop(columns="excl")
    a["rank"] = a.groupby("product_id").cumcount() + 1
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_dtype=False)


def test_a_product_known_only_through_exclusion_rows_is_cold_but_still_excludes() -> None:
    log = frame([(1, 1, "a", "purchased", DAY), (2, 2, "b", "cart", DAY), (3, 2, "b", "cart", DAY)])
    wish = frame([(2, 9, "z", "wishlist", None), (7, 9, "z", "wishlist", None)])  # customer 7 has no fit rows
    for name in EXCLUSION_RANKERS:
        recs = make_ranker(name, settings_for(name, FAST)).fit(log, exclude=wish).rank([9], 5)
        assert recs.cold_start.tolist() == [True], name
        assert sorted(recs.customer_ids.tolist()) == [1, 3], name


def test_popularity_orders_by_rows_then_last_activity_then_id() -> None:
    log = frame(
        [
            (1, 1, "x", "purchased", "2023-01-01"),
            (1, 2, "x", "cart", "2023-01-02"),
            (2, 1, "x", "cart", "2023-02-01"),
            (3, 3, "y", "purchased", "2023-03-01"),
            (4, 3, "y", "cart", "2023-03-01"),
            (5, 4, "z", "wishlist", None),
        ]
    )
    out = make_ranker("popularity").fit(log).rank([99], 5).to_frame()
    # customer 1: 2 rows; 3 and 4: 1 row on 2023-03-01 (tie -> id); 2: 1 row on 2023-02-01; 5: 1 undated row, last
    assert out["customer_id"].tolist() == [1, 3, 4, 2, 5]
    assert out["score"].tolist() == [2.0, 1.0, 1.0, 1.0, 1.0]


def test_content_with_weight_equals_a_fresh_fit() -> None:
    log = random_log(n_rows=2000, n_users=200, n_products=50, seed=6)
    base = make_ranker("content", {"affinity_weight": 0.5, "token_user_cap": 20}).fit(log)
    assert isinstance(base, ContentRanker)
    products = np.arange(50)
    for w in (0.0, 0.3, 0.9):
        fresh_ranker = make_ranker("content", {"affinity_weight": w, "token_user_cap": 20}).fit(log)
        fresh = fresh_ranker.rank(products, 15).to_frame()
        pd.testing.assert_frame_equal(base.with_weight(w).rank(products, 15).to_frame(), fresh)
    with pytest.raises(ValueError, match="affinity_weight"):
        base.with_weight(1.5)


def test_edge_requests() -> None:
    log = random_log(n_rows=300, n_users=50, n_products=10, seed=9)
    ranker = make_ranker("activity").fit(log)
    empty = ranker.rank([], 10)
    assert len(empty) == 0 and empty.offsets.tolist() == [0]
    twice = ranker.rank([3, 3], 5)
    assert np.array_equal(twice.customer_ids[:5], twice.customer_ids[5:])
    assert ranker.rank([3], 0).sizes().tolist() == [0]


def test_registry_and_protocol() -> None:
    assert set(BUILTIN) <= set(available_rankers())
    assert isinstance(make_ranker("activity"), Ranker)
    with pytest.raises(ValueError, match="unknown ranker 'nope'.*available"):
        make_ranker("nope")

    with pytest.raises(RuntimeError, match="not fitted"):
        make_ranker("content").rank([1], 3)


def test_truncated_postings_keep_each_tokens_strongest_customers() -> None:
    rng = np.random.default_rng(0)
    for trial in range(10):
        q = sp.random(300, 30, density=0.25, random_state=trial, format="csr")
        q.data = np.round(q.data * 3, 1)  # many ties
        priority = np.round(rng.random(300), 1)
        cap = int(rng.integers(1, 40))
        got = truncate_postings(q, priority, cap).tocsc()
        full = q.tocsc()
        for t in range(q.shape[1]):  # reference: sort each column by (-weight, -priority, row)
            rows, vals = (
                full.indices[full.indptr[t] : full.indptr[t + 1]],
                full.data[full.indptr[t] : full.indptr[t + 1]],
            )
            expected = sorted(zip(-vals, -priority[rows], rows, strict=True))[:cap]
            kept = got.indices[got.indptr[t] : got.indptr[t + 1]]
            assert sorted(kept.tolist()) == sorted(r for _, _, r in expected)


RESCORE_CHANGES: dict[str, list[dict[str, object]]] = {
    "random": [{"seed": 11}],
    "activity": [
        {"features": {"engagement": {"weights": {"recency": 0.6, "total_interactions": 0.1}}}},
        {"features": {"engagement": {"normalisation": "percentile"}, "features": {"event_weights": {"cart": 9.0}}}},
    ],
    "recency": [{"features": {"engagement": {"normalisation": "minmax", "weights": {"unique_products": 0.9}}}}],
    "content": [
        {"affinity_weight": 0.9},
        {"token_user_cap": 3, "features": {"engagement": {"weights": {"avg_event_score": 0.8}}}},
        {"affinity_weight": 0.0, "features": {"features": {"event_weights": {"purchased": 0.5}}}},
    ],
    "name_knn": [
        {"neighbour_weight": 0.9},
        {"neighbours": 2, "token_product_cap": 3},
        {"neighbour_weight": 0.2, "features": {"engagement": {"weights": {"recency": 0.7}}}},
    ],
}


def _same(a: Recommendations, b: Recommendations) -> None:
    """Two results are identical: products, offsets, customers, scores (bit for bit) and cold-start flags."""
    assert np.array_equal(np.asarray(a.product_ids, dtype=object), np.asarray(b.product_ids, dtype=object))
    assert np.array_equal(a.offsets, b.offsets)
    assert np.array_equal(np.asarray(a.customer_ids, dtype=object), np.asarray(b.customer_ids, dtype=object))
    assert np.array_equal(a.scores, b.scores)
    assert np.array_equal(a.cold_start, b.cold_start)


@pytest.mark.parametrize("str_ids", [False, True])
@pytest.mark.parametrize("name", BUILTIN)
def test_rescore_equals_a_refit_with_the_changed_params(name: str, str_ids: bool) -> None:
    log = random_log(n_rows=2500, n_users=250, n_products=60, seed=3, str_ids=str_ids)
    base = {"seed": 1, "token_user_cap": 15, "chunk_entries": 300, "features": {"features": {}, "engagement": {}}}
    fitted = make_ranker(name, settings_for(name, base)).fit(log)
    products = np.sort(np.asarray(log["product_id"].unique(), dtype=object if str_ids else np.int64))
    unseen = "SKU-unseen" if str_ids else 10_000
    few = np.asarray(
        [products[0], products[len(products) // 2], unseen, products[-1]],
        dtype=products.dtype if not str_ids else object,
    )
    for changes in RESCORE_CHANGES.get(name, []):  # popularity has no knobs: only the unchanged re-score below
        merged = deep_merge(base, changes)
        refit = make_ranker(name, settings_for(name, merged)).fit(log)
        _same(fitted.with_params(changes).rank(products, 12), refit.rank(products, 12))
        _same(fitted.rescore(few, 12, changes), refit.rank(few, 12))
        _same(fitted.rescore(few, 400, changes), refit.rank(few, 400))  # deeper than the candidates: whole order
    _same(fitted.rescore(few, 7), fitted.rank(few, 7))  # no change: the fitted ranking


def test_rescore_refuses_changes_that_need_a_refit() -> None:
    log = random_log(n_rows=800, seed=2)
    ranker = make_ranker("activity", {"features": {"features": {"decay_days": 90}}}).fit(log)
    with pytest.raises(ValueError, match=r"cannot re-score with changed \['features.features.decay_days'\]: refit"):
        ranker.rescore([1], 5, {"features": {"features": {"decay_days": 10}}})
    with pytest.raises(ValueError, match=r"cannot re-score with changed \['affinity_weight'\]"):
        ranker.with_params({"affinity_weight": 0.2})
    with pytest.raises(RuntimeError, match="not fitted"):
        make_ranker("recency").rescore([1], 3)


def test_top_k_codes_ties_and_edges() -> None:
    score = np.array([0.5, 0.9, 0.9, 0.1, 0.9, 0.5])
    assert top_k_codes(score, 3, np.array([], dtype=np.int64)).tolist() == [1, 2, 4]
    assert top_k_codes(score, 3, np.array([2])).tolist() == [1, 4, 0]
    assert top_k_codes(score, 10, np.array([1, 1, 2])).tolist() == [4, 0, 5, 3]
    assert top_k_codes(score, 0, np.array([], dtype=np.int64)).tolist() == []
    assert top_k_codes(score, 2, np.arange(6)).tolist() == []
    assert top_k_codes(score, 2, np.array([], dtype=np.int64), [np.array([0, 1, 2, 0, 3, 0])]).tolist() == [4, 2]


@pytest.mark.parametrize(("name", "block_method"), [("content", "_rank_rows"), ("itemknn", "_rank_block")])
def test_parallel_ranking_gives_the_same_recommendations(name: str, block_method: str, tmp_path: Path) -> None:
    log = random_log(n_rows=3000, n_users=300, n_products=120, seed=4)
    # small blocks, so the catalogue spans several of them and both workers rank some
    ranker: Any = make_ranker(name, settings_for(name, {"seed": 0, "chunk_entries": 2000, "token_user_cap": 50})).fit(
        log
    )
    products = np.append(np.sort(log["product_id"].unique()), 10**6)  # the last one is unseen: cold start
    alone = ranker.rank(products, 25)
    pids = tmp_path / "pids"
    own_block = getattr(ranker, block_method)

    def spy(*args: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with pids.open("a") as f:
            f.write(f"{os.getpid()}\n")
        return own_block(*args)

    setattr(ranker, block_method, spy)
    with parallel_ranking(2):
        together = ranker.rank(products, 25)
    ranked_in = set(pids.read_text().split())
    assert ranked_in and str(os.getpid()) not in ranked_in  # every block ran in a forked worker
    for field in ("product_ids", "offsets", "customer_ids", "scores", "cold_start", "basis"):
        np.testing.assert_array_equal(getattr(together, field), getattr(alone, field))
    with pytest.raises(ValueError, match="ranking processes must be an integer >= 1, got 0"):
        with parallel_ranking(0):
            pass


@pytest.mark.parametrize(
    ("name", "params", "named"),
    [
        ("content", {"affinity_wieght": 0.9}, "affinity_wieght"),
        ("als", {"factor": 8}, "factor"),
        ("itemknn", {"k": 5}, "'k'"),
        ("activity", {"token_user_cap": 5}, "token_user_cap"),
        ("activity", {"features": {"engagement": {"normalization": "minmax"}}}, "normalization"),
        ("popularity", {"features": {"features": {"event_weights": {"buy": 1.0}}}}, "buy"),
    ],
)
def test_unknown_or_misspelt_settings_are_errors_naming_the_key(name: str, params: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named) as err:
        make_ranker(name, params)
    assert name in str(err.value)


def test_misspelt_setting_names_the_close_match_and_the_valid_ones() -> None:
    with pytest.raises(ValueError) as err:
        make_ranker("content", {"affinity_wieght": 0.9})
    message = str(err.value)
    assert "did you mean 'affinity_weight'" in message
    assert "token_user_cap" in message  # the valid settings are listed


@pytest.mark.parametrize(
    ("name", "params"),
    [("content", {"affinity_weight": 1.5}), ("als", {"factors": 0}), ("itemknn", {"similarity": "jaccard"})],
)
def test_out_of_range_settings_are_errors(name: str, params: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(params))):
        make_ranker(name, params)


def test_a_rescore_validates_the_changed_settings_too() -> None:
    ranker = make_ranker("content", {"affinity_weight": 0.5, "token_user_cap": 20}).fit(random_log(n_rows=200))
    with pytest.raises(ValueError, match="affinity_weight"):
        ranker.with_params({"affinity_weight": 2.0})
