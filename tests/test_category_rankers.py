"""Category rankers (inferred-category popularity, the true-category reference) and the customer return model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.features.categories import CategoryParams, infer_categories
from recsys.features.returns import (
    ACTIVITY_FEATURES,
    EventRows,
    ReturnSettings,
    customer_activity,
    fit_return_model,
    return_probability,
)
from recsys.rankers import make_ranker
from recsys.rankers.category import CategoryPopularityRanker, CategoryShareRanker, TruthCategoryRanker

from _logs import frame, random_log

# ----------------------------------------------------------------------------------------------
# category_popularity
# ----------------------------------------------------------------------------------------------


def test_category_popularity_equals_brute_force_with_exclusions() -> None:
    log = random_log(n_rows=3000, n_users=300, n_products=60, seed=7, undated_frac=0.1)
    undated = log["event_date"].isna().to_numpy()
    fit = log[~undated].reset_index(drop=True)
    ranker = make_ranker("category_popularity", {"categories": {"k": 4}}).fit(fit, exclude=log[undated])
    assert isinstance(ranker, CategoryPopularityRanker)
    products = np.sort(log["product_id"].unique())
    got = ranker.rank(products, 400).to_frame()
    cats = infer_categories(fit, CategoryParams(k=4, n_init=3)).set_index("product_id")["category"]
    assert (cats >= 0).any() and (cats < 0).any()  # nameless products have no category: popularity order
    rows = fit.assign(category=fit["product_id"].map(cats))
    total = fit.groupby("customer_id").size()
    last = fit.groupby("customer_id")["event_date"].max()
    for p in products:
        c = int(cats.get(p, -1))
        in_cat = rows[rows["category"] == c].groupby("customer_id").size() if c >= 0 else pd.Series(dtype=float)
        table = pd.DataFrame({"customer_id": total.index})
        table["s"] = table["customer_id"].map(in_cat).fillna(0.0)
        table["rows"] = table["customer_id"].map(total)
        table["last"] = table["customer_id"].map(last)
        own = set(log.loc[log["product_id"] == p, "customer_id"])
        table = table[~table["customer_id"].isin(own)]
        table = table.sort_values(["s", "rows", "last", "customer_id"], ascending=[False, False, False, True])
        block = got[got["product_id"] == p]
        assert block["customer_id"].tolist() == table["customer_id"].head(400).tolist(), p
        np.testing.assert_array_equal(block["score"].to_numpy(), table["s"].head(400).to_numpy())


def test_category_popularity_scores_pairs_like_it_ranks() -> None:
    log = random_log(n_rows=2000, n_users=200, n_products=40, seed=3, undated_frac=0.0)
    ranker = make_ranker("category_popularity", {"categories": {"k": 3}}).fit(log)
    assert isinstance(ranker, CategoryPopularityRanker)
    recs = ranker.rank(np.sort(log["product_id"].unique()), 50)
    h = ranker.history_
    codes = np.repeat(h.codes_of(recs.product_ids), recs.sizes())
    users = np.searchsorted(h.customer_ids, recs.customer_ids)
    np.testing.assert_array_equal(ranker.score_pairs(codes, users), recs.scores)


# ----------------------------------------------------------------------------------------------
# truth_category
# ----------------------------------------------------------------------------------------------

DAY0, LATE = "2023-01-05", "2023-03-30"


def truth_log() -> pd.DataFrame:
    """Five customers, each active early and in the last 10 days (so every one 'returns': base rate 1)."""
    rows = [
        (1, 10, "a", "purchased", DAY0),
        (1, 11, "a", "purchased", LATE),
        (1, 20, "b", "cart", LATE),  # customer 1: 2 of 3 rows in X, 1 in Y
        (2, 20, "b", "cart", DAY0),
        (2, 21, "b", "cart", LATE),  # customer 2: all in Y
        (3, 10, "a", "cart", DAY0),
        (3, 21, "b", "cart", LATE),  # customer 3: half X, half Y
        (4, 30, "c", "cart", DAY0),
        (4, 30, "c", "cart", LATE),  # customer 4: all in Z
        (5, 12, "a", "cart", DAY0),
        (5, 30, "c", "cart", LATE),
        (5, 31, "c", "cart", LATE),
        (5, 32, "c", "cart", LATE),  # customer 5: 1 of 4 in X
    ]
    return frame(rows)


def write_truth(path: Path, missing: tuple[int, ...] = ()) -> Path:
    """The generator's layout: product_id, category (string names)."""
    table = pd.DataFrame(
        {
            "product_id": [10, 11, 12, 13, 20, 21, 30, 31, 32],
            "category": ["X", "X", "X", "X", "Y", "Y", "Z", "Z", "Z"],
        }
    )
    table = table[~table["product_id"].isin(missing)]
    file = path / "truth.parquet"
    table.to_parquet(file, index=False)
    return file


def test_truth_category_exact_output_on_a_hand_made_log(tmp_path: Path) -> None:
    file = write_truth(tmp_path)
    ranker = make_ranker("truth_category", {"categories_path": str(file), "horizon_days": 10.0}).fit(truth_log())
    assert isinstance(ranker, TruthCategoryRanker)
    assert ranker.return_model_.fallback and ranker.return_model_.base_rate == 1.0  # everyone returned: P = 1
    out = ranker.rank([10, 13, 20, 30], 5).to_frame()
    # product 10 (X): customers 1 and 3 touched it (excluded); 5 has 1/4 of its rows in X; then share 0 by id
    by = {p: list(zip(g["customer_id"], g["score"].round(6), strict=True)) for p, g in out.groupby("product_id")}
    assert by[10] == [(5, 0.25), (2, 0.0), (4, 0.0)]
    # product 13 (X, no fit rows: ranked in its true category, cold_start): 1: 2/3, 3: 1/2, 5: 1/4
    assert by[13] == [(1, round(2 / 3, 6)), (3, 0.5), (5, 0.25), (2, 0.0), (4, 0.0)]
    # product 20 (Y): 2 and 1 touched it; 3: 1/2, then 4, 5 with share 0 (ascending id)
    assert by[20] == [(3, 0.5), (4, 0.0), (5, 0.0)]
    # product 30 (Z): 4 and 5 touched it
    assert by[30] == [(1, 0.0), (2, 0.0), (3, 0.0)]
    assert ranker.rank([10, 13], 5).cold_start.tolist() == [False, True]


@pytest.mark.parametrize("name", ["truth_category", "category_share"])
def test_share_rankers_multiply_the_category_share_by_the_return_probability(name: str, tmp_path: Path) -> None:
    log = random_log(n_rows=3000, n_users=300, n_products=40, seed=11, undated_frac=0.0)
    products = np.sort(log["product_id"].unique())
    if name == "truth_category":
        path = tmp_path / "cats.parquet"
        pd.DataFrame({"product_id": products, "category": [f"c{p % 5}" for p in products]}).to_parquet(path)
        params: dict[str, object] = {"categories_path": str(path), "horizon_days": 30.0}
        category = pd.Series([f"c{p % 5}" for p in products], index=products)
    else:
        params = {"categories": {"k": 4}, "horizon_days": 30.0}
        inferred = infer_categories(log, CategoryParams(k=4, n_init=3)).set_index("product_id")["category"]
        category = inferred[inferred >= 0]
        assert category.nunique() == 4 and len(category) < len(products)  # nameless products: no category
    ranker = make_ranker(name, params).fit(log)
    assert isinstance(ranker, CategoryShareRanker)
    assert not ranker.return_model_.fallback
    p_return = pd.Series(ranker.return_probability_, index=ranker.history_.customer_ids)
    assert p_return.nunique() > 10
    expected_p, _ = return_probability(log, ReturnSettings(), 30.0, seed=0)
    np.testing.assert_allclose(p_return.to_numpy(), expected_p)
    out = ranker.rank(products, 300).to_frame()
    in_category = log.assign(cat=log["product_id"].map(category)).groupby(["customer_id", "cat"]).size()
    share = in_category / log.groupby("customer_id").size().reindex(in_category.index, level=0)
    for p in products[:12]:
        c = category.get(p)
        own = set(log.loc[log["product_id"] == p, "customer_id"])
        table = pd.DataFrame({"customer_id": p_return.index, "p": p_return.to_numpy()})
        table["s"] = [share.get((u, c), 0.0) if c is not None else 0.0 for u in table["customer_id"]]
        table["score"] = table["s"] * table["p"]
        table = table[~table["customer_id"].isin(own)]
        table = table.sort_values(["score", "p", "customer_id"], ascending=[False, False, True])
        block = out[out["product_id"] == p]
        assert block["customer_id"].tolist() == table["customer_id"].head(300).tolist(), p
        np.testing.assert_allclose(block["score"].to_numpy(), table["score"].head(300).to_numpy(), rtol=1e-12)


def test_truth_category_refuses_a_missing_file_or_a_product_without_category(tmp_path: Path) -> None:
    log = truth_log()
    with pytest.raises(FileNotFoundError, match="nope.parquet not found.*generator"):
        make_ranker("truth_category", {"categories_path": str(tmp_path / "nope.parquet")}).fit(log)
    with pytest.raises(ValueError, match="needs categories_path"):
        make_ranker("truth_category").fit(log)
    partial = write_truth(tmp_path, missing=(21, 30))
    with pytest.raises(ValueError, match=r"2 product\(s\) of the fit rows have no category.*21, 30"):
        make_ranker("truth_category", {"categories_path": str(partial)}).fit(log)
    fitted = make_ranker("truth_category", {"categories_path": str(write_truth(tmp_path))}).fit(log)
    with pytest.raises(ValueError, match=r"1 requested product\(s\) have no true category \(e.g. 99\)"):
        fitted.rank([10, 99], 3)
    with pytest.raises(ValueError, match="categoris_path"):
        make_ranker("truth_category", {"categoris_path": "x"})


# ----------------------------------------------------------------------------------------------
# the return model
# ----------------------------------------------------------------------------------------------


def test_customer_activity_exact_values() -> None:
    log = frame(
        [
            (1, 1, "a", "purchased", "2023-01-01T00:00:00"),
            (1, 2, "b", "cart", "2023-01-01T12:00:00"),
            (1, 1, "a", "cart", "2023-01-11T00:00:00"),
            (2, 3, "c", "wishlist", "2023-01-06T00:00:00"),
            (3, 3, "c", "cart", None),  # undated: no place in time
            (2, 3, "c", "cart", "2023-01-21T00:00:00"),  # after the reference: left out
        ]
    )
    rows = EventRows.of(log)
    ref = int(pd.Timestamp("2023-01-21T00:00:00", tz="UTC").value // 1_000)
    act = pd.DataFrame(customer_activity(rows, ref, 15.0, before=True), columns=ACTIVITY_FEATURES, index=[1, 2, 3])
    assert act.loc[1, "days_since_last"] == 10.0 and act.loc[1, "days_since_first"] == 20.0
    assert act.loc[1, "rows"] == 3 and act.loc[1, "active_days"] == 2 and act.loc[1, "distinct_products"] == 2
    assert act.loc[1, "rows_recent"] == 1 and act.loc[1, "active_days_recent"] == 1  # only 2023-01-11 is within 15 days
    assert act.loc[1, "mean_gap_days"] == 10.0
    assert act.loc[1, "share_purchased"] == pytest.approx(1 / 3) and act.loc[1, "share_cart"] == pytest.approx(2 / 3)
    assert act.loc[2, "rows"] == 1 and act.loc[2, "days_since_last"] == 15.0 and act.loc[2, "share_wishlist"] == 1.0
    assert act.loc[3, "rows"] == 0 and bool(act["days_since_last"].isna().loc[3])
    at = customer_activity(rows, ref, 15.0)  # at (not before) the reference: the 2023-01-21 row counts
    assert at[1, ACTIVITY_FEATURES.index("rows")] == 2 and at[1, ACTIVITY_FEATURES.index("days_since_last")] == 0.0


def returning_log(seed: int = 0) -> pd.DataFrame:
    """Loyal customers (active every ~10 days all along) and one-timers (one early row, never back)."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2023-01-01", tz="UTC")
    rows = []
    for u in range(60):
        for d in np.arange(rng.uniform(0, 10), 120, 10.0):
            rows.append((u, int(rng.integers(20)), "x", "purchased", str(start + pd.Timedelta(days=float(d)))))
    for u in range(100, 400):
        d = float(rng.uniform(0, 90))
        rows.append((u, int(rng.integers(20)), "x", "cart", str(start + pd.Timedelta(days=d))))
    return frame(rows)


def test_return_model_learns_who_comes_back_from_the_rows_before_its_window() -> None:
    log = returning_log()
    p, model = return_probability(log, ReturnSettings(), window_days=20.0, seed=0)
    assert not model.fallback
    ids = np.sort(log["customer_id"].unique())
    loyal, once = p[ids < 100], p[ids >= 100]
    assert loyal.min() > 0.9 and once.max() < 0.1
    end = log["event_date"].max()
    assert model.end_us == int(end.value // 1_000)
    assert model.label_start_us == model.end_us - 20 * 86_400_000_000
    early = log[log["event_date"] < end - pd.Timedelta(days=20)]
    assert model.train_customers == early["customer_id"].nunique()  # the population: customers before the window


def test_return_model_is_the_base_rate_when_labels_do_not_vary() -> None:
    rows_ = [(1, 1, "a", "cart", "2023-01-01"), (2, 1, "a", "cart", "2023-01-02"), (3, 2, "b", "cart", "2023-03-01")]
    log = frame(rows_)
    rows = EventRows.of(log)
    model = fit_return_model(rows, ReturnSettings(), window_days=10.0)
    assert model.fallback and model.base_rate == 0.0 and model.train_customers == 2
    assert model.predict_at(rows).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="window_days"):
        ReturnSettings(window_days=0)
