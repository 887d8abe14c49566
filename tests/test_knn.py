"""itemknn: a hand-computed answer, agreement with implicit's own scores, contract, exclusion rows, cold start."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys.rankers import make_ranker
from recsys.rankers.knn import ItemKNNRanker

from _logs import list_log, random_log

# customers 1..4 (rows) x products 10..14 (columns)
X = np.array(
    [
        [1, 1, 0, 0, 0],
        [1, 0, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [0, 0, 0, 1, 1],
    ]
)


def matrix_log(x: np.ndarray = X) -> pd.DataFrame:
    """One dated row per non-zero cell of x (customer = row + 1, product = column + 10)."""
    cu, pr = np.nonzero(x)
    return list_log(list(cu + 1), list(pr + 10), ["2023-01-01"] * len(cu))


def test_cosine_knn_on_a_4x5_matrix_by_hand() -> None:
    # item columns: 10 = {1,2}, 11 = {1,3}, 12 = {2,3}, 13 = {3,4}, 14 = {4}; cosine of two 2-customer items
    # sharing one customer = 1/2, of 13 and 14 = 1/sqrt(2); K = 5 keeps every neighbour.
    # score(u, p) = sum over u's products j of S[j, p]:
    #   p=10: customer 3 (11, 12, 13) = .5 + .5 + 0 = 1; customer 4 (13, 14) = 0 -> not a candidate
    #   p=11: customer 2 (10, 12) = .5 + .5 = 1; customer 4 (13, 14) = .5 + 0
    #   p=13: customers 1 (10, 11) = 0 + .5 and 2 (10, 12) = 0 + .5 tie -> ascending id
    #   p=14: customer 3 (11, 12, 13) = 0 + 0 + 1/sqrt(2); customers 1, 2 score 0
    r = make_ranker("itemknn", {"K": 5}).fit(matrix_log())
    out = r.rank(np.array([10, 11, 13, 14]), 3).to_frame()
    got = {p: list(zip(g["customer_id"], g["score"].round(6), strict=True)) for p, g in out.groupby("product_id")}
    assert got == {
        10: [(3, 1.0)],
        11: [(2, 1.0), (4, 0.5)],
        13: [(1, 0.5), (2, 0.5)],
        14: [(3, round(1 / np.sqrt(2), 6))],
    }


@pytest.mark.parametrize("similarity", ["cosine", "bm25"])
def test_scores_equal_implicits_own_recommend(similarity: str) -> None:
    log = random_log(n_rows=2500, n_users=200, n_products=60, seed=4, undated_frac=0.0)
    r = ItemKNNRanker({"K": 10, "similarity": similarity}).fit(log)
    products = r.history_.product_ids
    out = r.rank(products, 10_000).to_frame()
    x = sp.csr_matrix(r.items_users_.T)  # customers x products, as implicit sees it
    from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

    model = (
        BM25Recommender(K=10, K1=1.2, B=0.75, num_threads=1)
        if similarity == "bm25"
        else CosineRecommender(K=10, num_threads=1)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(sp.csr_matrix(x, dtype=np.float32), show_progress=False)
    expected = np.asarray((x @ model.similarity).todense())
    users = r.history_.customer_ids
    u = np.searchsorted(users, out["customer_id"].to_numpy())
    p = np.searchsorted(products, out["product_id"].to_numpy())
    np.testing.assert_allclose(out["score"].to_numpy(), expected[u, p], rtol=1e-6)
    positive = expected > 0
    touched = x.toarray() > 0
    assert len(out) == int((positive & ~touched).sum())  # every customer with kNN signal, nobody else


def test_contract_exclusions_and_short_lists() -> None:
    log = random_log(n_rows=3000, n_users=300, n_products=80, seed=7)
    undated = log["event_date"].isna()
    r = make_ranker("itemknn", {"K": 20}).fit(log[~undated], exclude=log[undated])
    products = np.sort(log["product_id"].unique())
    recs = r.rank(products, 50)
    out = recs.to_frame()
    touched = log[["product_id", "customer_id"]].drop_duplicates()
    assert out.merge(touched, on=["product_id", "customer_id"]).empty  # dated or not, never recommended
    assert set(out["customer_id"]) <= set(log.loc[~undated, "customer_id"])
    assert (out.groupby("product_id", sort=False)["score"].diff().dropna() <= 0).all()
    assert (recs.sizes() <= 50).all() and (recs.sizes() < 50).any()  # no backfill: lists may be shorter than k
    ties = out[out.duplicated(["product_id", "score"], keep=False)]
    for _, g in ties.groupby(["product_id", "score"]):
        assert g["customer_id"].is_monotonic_increasing


def test_cold_start_is_the_popularity_order_minus_exclusions() -> None:
    log = matrix_log()
    wish = list_log([1], [99], [None], ["wishlist"])  # product 99 known only through an undated row of customer 1
    r = make_ranker("itemknn", {"K": 5}).fit(log, exclude=wish)
    recs = r.rank(np.array([99, 12345]), 4)
    out = recs.to_frame()
    # popularity: customer 3 has 3 rows, 1, 2, 4 have 2 (same date) -> 3, then ids 1, 2, 4
    assert out.loc[out["product_id"] == 12345, "customer_id"].tolist() == [3, 1, 2, 4]
    assert out.loc[out["product_id"] == 99, "customer_id"].tolist() == [3, 2, 4]
    assert recs.cold_start.tolist() == [True, True]


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="K: Input should be greater than or equal to 2"):
        ItemKNNRanker({"K": 1})
    with pytest.raises(ValueError, match="similarity"):
        ItemKNNRanker({"similarity": "jaccard"})
    with pytest.raises(RuntimeError, match="not fitted"):
        ItemKNNRanker({}).rank([1], 3)
