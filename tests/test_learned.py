"""The learned two-stage ranker: contract, no leakage, determinism, settings, a planted signal it must find."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from recsys.evaluation.frame import build_eval_sets
from recsys.evaluation.scoring import score_ranker
from recsys.evaluation.settings import model_extra
from recsys.evaluation.split import window_split
from recsys.rankers import Ranker, make_ranker
from recsys.rankers.learned import LearnedRanker, feature_names

from _logs import frame, random_log

FAST_SOURCES: dict[str, Any] = {
    "activity": {"ranker": "activity", "candidates": 40},
    "content": {"ranker": "content", "candidates": 40, "settings": {"token_user_cap": 50}},
    "popularity": {"ranker": "popularity", "candidates": 20},
    "category": {"ranker": "category_popularity", "candidates": 40, "settings": {"categories": {"k": 4}}},
}
FAST: dict[str, Any] = {
    "sources": FAST_SOURCES,
    "label_days": 30.0,
    "negatives": 20,
    "n_estimators": 20,
    "num_leaves": 7,
    "min_child_samples": 5,
    "categories": {"k": 4, "n_init": 1},
    "seed": 3,
}


def learned(**changes: Any) -> LearnedRanker:
    """A small, fast learned ranker (FAST settings with `changes`)."""
    ranker = make_ranker("learned", {**FAST, **changes})
    assert isinstance(ranker, LearnedRanker)
    return ranker


def check_contract(recs: Any, log: pd.DataFrame, requested: np.ndarray, k: int) -> pd.DataFrame:
    """The ranker contract on every block: no own customer, known customers only, ranks 1..n, full lists."""
    out: pd.DataFrame = recs.to_frame()
    assert len(recs.offsets) == len(requested) + 1 and recs.offsets[0] == 0
    touched = log[["product_id", "customer_id"]].drop_duplicates()
    assert out.merge(touched, on=["product_id", "customer_id"]).empty, "ranked a customer who touched the product"
    assert set(out["customer_id"]) <= set(log["customer_id"])
    assert not out.duplicated(["product_id", "customer_id"]).any()
    assert (out.groupby("product_id", sort=False)["score"].diff().dropna() <= 0).all(), "scores must not increase"
    expected = out.groupby("product_id", sort=False).cumcount() + 1
    assert (out["rank"].to_numpy() == expected.to_numpy()).all()
    tied = out.groupby("product_id", sort=False)
    for _, block in tied:  # equal scores: ascending customer id
        same = block["score"].to_numpy()[1:] == block["score"].to_numpy()[:-1]
        ids = block["customer_id"].to_numpy()
        assert (ids[1:][same] > ids[:-1][same]).all()
    n_users = log["customer_id"].nunique()
    excluded = touched.groupby("product_id").size()
    allowed = np.array([n_users - excluded.get(p, 0) for p in requested])
    assert np.array_equal(recs.sizes(), np.minimum(k, allowed)), "backfill must complete every list"
    return out


# ----------------------------------------------------------------------------------------------
# a planted signal: returning customers come back to the category whose token they share
# ----------------------------------------------------------------------------------------------

CATS = ("alpha", "beta", "gamma", "delta")


def planted_log(seed: int = 0, returners: int = 160, one_timers: int = 900, per_cat: int = 8) -> pd.DataFrame:
    """Returning customers stay in a home category (names share its token); one-timers touch anything once."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2023-01-01", tz="UTC")
    rows: list[tuple[int, int, str, str, str]] = []
    name = {c * per_cat + j + 1: f"{CATS[c]} model{j}" for c in range(len(CATS)) for j in range(per_cat)}
    for u in range(returners):
        home = u % len(CATS)
        for day in np.sort(rng.uniform(0, 180, size=int(rng.integers(3, 9)))):
            cat = home if rng.random() < 0.9 else int(rng.integers(len(CATS)))
            p = cat * per_cat + int(rng.integers(per_cat)) + 1
            rows.append((u + 1, p, name[p], "purchased", str(start + pd.Timedelta(days=float(day)))))
    for u in range(one_timers):
        p = int(rng.integers(len(name))) + 1
        day = float(rng.uniform(0, 180))
        rows.append((10_000 + u, p, name[p], "cart", str(start + pd.Timedelta(days=day))))
    return frame(rows)


def hits(ranker: Ranker, log: pd.DataFrame, k: int) -> int:
    """Test-window hits within the top k (the evaluation's split, sets and scoring)."""
    cutoff = pd.Timestamp("2023-05-31", tz="UTC")
    split = window_split(log, cutoff)
    es, _ = build_eval_sets(split)
    ranker.fit(split.train, exclude=split.exclude)
    return int(score_ranker(ranker, es, [k], "m").hits.at(k).count)


def test_learned_beats_its_best_single_source_on_a_planted_signal() -> None:
    log = planted_log()
    sources = {"activity": {"ranker": "activity", "candidates": 60}, "content": {"ranker": "content", "candidates": 60}}
    k = 10
    single = {name: hits(make_ranker(name), log, k) for name in ("activity", "content")}
    got = hits(learned(sources=sources, n_estimators=60, negatives=40), log, k)
    assert got > max(single.values()), (got, single)
    assert got >= 1.2 * max(single.values()), (got, single)


# ----------------------------------------------------------------------------------------------
# contract
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("str_ids", [False, True])
def test_contract_on_every_product_of_a_random_log(str_ids: bool) -> None:
    log = random_log(n_rows=3000, n_users=300, n_products=60, seed=7, str_ids=str_ids, undated_frac=0.0)
    ranker = learned().fit(log)
    products = np.sort(np.asarray(log["product_id"].unique(), dtype=object if str_ids else np.int64))
    for k in (1, 10, 400):
        check_contract(ranker.rank(products, k), log, products, k)
    assert isinstance(ranker, Ranker)


def test_exclusion_rows_are_never_recommended_and_add_no_customer() -> None:
    log = random_log(n_rows=3000, n_users=300, n_products=60, seed=8, undated_frac=0.2)
    undated = log["event_date"].isna().to_numpy()
    ranker = learned().fit(log[~undated].reset_index(drop=True), exclude=log[undated].reset_index(drop=True))
    products = np.sort(log["product_id"].unique())
    out = ranker.rank(products, 500).to_frame()
    touched = log[["product_id", "customer_id"]].drop_duplicates()
    assert out.merge(touched, on=["product_id", "customer_id"]).empty
    assert set(out["customer_id"]) <= set(log.loc[~undated, "customer_id"])


def test_cold_products_get_the_engagement_order_minus_their_exclusions() -> None:
    log = random_log(n_rows=2500, n_users=250, n_products=50, seed=9, undated_frac=0.0)
    wish = frame([(int(log["customer_id"].iloc[0]), 999, "z", "wishlist", None)])
    ranker = learned().fit(log, exclude=wish)
    activity = make_ranker("activity").fit(log, exclude=wish)
    for product in (999, 12345):  # known only through an exclusion row; unseen
        recs = ranker.rank([product], 30)
        assert recs.cold_start.tolist() == [True]
        expected = activity.rank([product], 30)
        assert recs.customer_ids.tolist() == expected.customer_ids.tolist()
        np.testing.assert_allclose(recs.scores, expected.scores)
    assert ranker.rank([int(log["product_id"].iloc[0])], 5).cold_start.tolist() == [False]


def test_backfill_completes_short_lists_below_every_candidate_and_says_so() -> None:
    log = random_log(n_rows=3000, n_users=300, n_products=60, seed=7, undated_frac=0.0)
    tiny = {"activity": {"ranker": "activity", "candidates": 3}, "content": {"ranker": "content", "candidates": 3}}
    ranker = learned(sources=tiny).fit(log)
    products = np.sort(log["product_id"].unique())[:10]
    recs, facts = ranker.rank_with_facts(products, 50)
    check_contract(recs, log, products, 50)
    assert (facts.candidates <= 6).all() and (facts.backfilled == 50 - facts.candidates).all()
    no_backfill = ranker.with_params({"backfill": False}).rank(products, 50)
    assert np.array_equal(no_backfill.sizes(), facts.candidates)
    full = recs.to_frame()
    for i, p in enumerate(products):  # the candidates come first, in the same order, then the backfill
        head = no_backfill.to_frame().query("product_id == @p")
        block = full[full["product_id"] == p]
        assert block["customer_id"].head(len(head)).tolist() == head["customer_id"].tolist()
        assert (block["score"].iloc[len(head) :] < head["score"].min()).all(), i


# ----------------------------------------------------------------------------------------------
# no leakage
# ----------------------------------------------------------------------------------------------


def training_rows(ranker: LearnedRanker) -> pd.DataFrame:
    """The cached training matrix keyed by (product id, customer id)."""
    data = ranker.training_data_
    table = pd.DataFrame(data.features, columns=ranker.feature_names_)
    table.insert(0, "w", data.windows)
    table.insert(1, "p", data.product_ids)
    table.insert(2, "u", data.customer_ids)
    return table.set_index(["w", "p", "u"]).sort_index()


@pytest.mark.parametrize("windows", [1, 2])
def test_label_window_rows_cannot_change_a_training_feature(windows: int) -> None:
    log = planted_log(seed=1)
    a = learned(label_days=40.0, label_windows=windows).fit(log)
    assert len(a.training_.windows) == windows
    cutoff = pd.Timestamp(a.training_.windows[0].cutoff)  # the latest window: no feature of any window reads it
    assert cutoff < pd.Timestamp(a.training_.end)
    in_window = (log["event_date"] >= cutoff).to_numpy()
    assert in_window.any() and (~in_window).any()
    altered = log.copy()
    # every label-window row moves to another customer and product (its names follow), plus heavy new activity
    rng = np.random.default_rng(0)
    pick = np.flatnonzero(in_window)
    donors = log.loc[~in_window].sample(len(pick), replace=True, random_state=0)
    altered.loc[pick, "customer_id"] = rng.permutation(altered.loc[pick, "customer_id"].to_numpy())
    altered.loc[pick, "product_id"] = donors["product_id"].to_numpy()
    altered["product_name"] = altered["product_name"].astype(object)
    altered.loc[pick, "product_name"] = donors["product_name"].astype(object).to_numpy()
    altered["product_name"] = altered["product_name"].astype("category")
    busy = log.loc[pick[:50]].assign(event="purchased")
    altered = pd.concat([altered, busy, busy], ignore_index=True)
    b = learned(label_days=40.0, label_windows=windows).fit(altered)
    assert b.training_.inner_cutoff == a.training_.inner_cutoff
    ta, tb = training_rows(a), training_rows(b)
    common = ta.index.intersection(tb.index)
    assert len(common) > 100 and not ta.index.equals(tb.index)  # labels (hence groups) did change
    pd.testing.assert_frame_equal(ta.loc[common], tb.loc[common], check_exact=True)


def test_ranking_reads_no_row_after_the_fit_cutoff() -> None:
    log = planted_log(seed=2)
    cutoff = pd.Timestamp("2023-05-31", tz="UTC")
    changed = log.copy()
    later = (changed["event_date"] >= cutoff).to_numpy()
    changed.loc[later, "customer_id"] = changed.loc[later, "customer_id"].to_numpy()[::-1]
    products = np.sort(log["product_id"].unique())
    ranked = []
    for table in (log, changed):
        split = window_split(table, cutoff)
        ranker = learned().fit(split.train, exclude=split.exclude)
        assert pd.Timestamp(ranker.training_.end) < cutoff
        ranked.append(ranker.rank(products, 50).to_frame())
    pd.testing.assert_frame_equal(ranked[0], ranked[1], check_exact=True)


def test_rank_features_are_computed_at_the_real_cutoff_from_every_fit_row() -> None:
    log = planted_log(seed=3)
    ranker = learned().fit(log)
    state = ranker.state_
    assert state.end_us == int(log["event_date"].max().value // 1_000)
    assert state.history.n_users == log["customer_id"].nunique()


# ----------------------------------------------------------------------------------------------
# determinism
# ----------------------------------------------------------------------------------------------


def test_two_fits_are_byte_identical_and_batches_do_not_matter() -> None:
    log = random_log(n_rows=3000, n_users=300, n_products=60, seed=5, undated_frac=0.0)
    products = np.sort(log["product_id"].unique())
    als = {"ranker": "als", "candidates": 30, "settings": {"factors": 4, "iterations": 3}}
    sources = {**FAST_SOURCES, "als": als, "names": {"ranker": "name_knn", "candidates": 30}}  # any registered ranker
    a = learned(sources=sources).fit(log)
    b = learned(sources=sources).fit(log)
    ra, rb = a.rank(products, 100), b.rank(products, 100)
    for field in ("offsets", "customer_ids", "scores"):
        assert getattr(ra, field).tobytes() == getattr(rb, field).tobytes(), field
    assert a.feature_importance_ == b.feature_importance_
    one_by_one = pd.concat([a.rank([p], 100).to_frame() for p in products], ignore_index=True)
    pd.testing.assert_frame_equal(one_by_one, ra.to_frame(), check_exact=True)
    small_blocks = a.with_params({"chunk_entries": 50}).rank(products[::-1], 100).to_frame()
    expected = ra.to_frame().sort_values(["product_id", "rank"], ascending=[False, True], kind="stable")
    pd.testing.assert_frame_equal(small_blocks, expected.reset_index(drop=True), check_exact=True)


def test_with_params_retrains_only_the_gbm_and_equals_a_fresh_fit() -> None:
    log = random_log(n_rows=2500, n_users=250, n_products=50, seed=4, undated_frac=0.0)
    products = np.sort(log["product_id"].unique())
    base = learned().fit(log)
    changes = {"num_leaves": 3, "learning_rate": 0.2, "drop_features": ["cust.", "src.popularity.rank"]}
    tuned = base.with_params(changes)
    assert tuned.state_ is base.state_  # sources and features shared, not refitted
    fresh = learned(**changes).fit(log)
    pd.testing.assert_frame_equal(tuned.rank(products, 30).to_frame(), fresh.rank(products, 30).to_frame())
    assert not any(f.feature.startswith("cust.") for f in tuned.feature_importance_)
    assert base.rescore(products[:3], 5, changes).to_frame().equals(fresh.rank(products[:3], 5).to_frame())
    with pytest.raises(ValueError, match="refit it instead"):
        base.with_params({"label_days": 10.0})
    with pytest.raises(ValueError, match="match no feature"):
        base.with_params({"drop_features": ["cust.nope"]})


def test_the_feature_cache_changes_nothing_but_the_work() -> None:
    log = random_log(n_rows=2500, n_users=250, n_products=50, seed=4, undated_frac=0.0)
    products = np.sort(log["product_id"].unique())
    plain = learned().fit(log)
    cached = plain.with_params({"feature_cache_pairs": 10**7})
    first = cached.rank(products, 40).to_frame()
    assert len(cached.state_.feature_cache) == 1
    pd.testing.assert_frame_equal(first, plain.rank(products, 40).to_frame(), check_exact=True)
    tuned = cached.with_params({"n_estimators": 7})
    assert tuned.state_.feature_cache is cached.state_.feature_cache  # shared: the re-trained copy only predicts
    fresh = learned(n_estimators=7).fit(log).rank(products, 40).to_frame()
    pd.testing.assert_frame_equal(tuned.rank(products, 40).to_frame(), fresh, check_exact=True)
    small = learned(feature_cache_pairs=10).fit(log)
    small.rank(products, 40)
    assert not small.state_.feature_cache  # more pairs than the budget: nothing kept


def test_boosting_from_a_base_source_starts_from_its_ranking() -> None:
    log = random_log(n_rows=3000, n_users=300, n_products=60, seed=6, undated_frac=0.0)
    products = np.sort(log["product_id"].unique())
    ranker = learned(base_source="category", n_estimators=1, learning_rate=1e-6).fit(log)
    category = make_ranker("category_popularity", FAST_SOURCES["category"]["settings"]).fit(log)
    got, expected = ranker.rank(products, 40).to_frame(), category.rank(products, 40).to_frame()
    columns = ["product_id", "rank", "customer_id"]
    pd.testing.assert_frame_equal(got[columns], expected[columns])
    with pytest.raises(ValueError, match="base_source 'nope' is not a source"):
        learned(base_source="nope")


def test_graded_labels_mark_customers_back_in_the_products_category() -> None:
    log = planted_log(seed=6)
    ranker = learned(category_label_gain=0.5, max_groups=40).fit(log)
    data = ranker.training_data_
    assert set(np.unique(data.labels)) == {0, 1, 2}
    cutoff = pd.Timestamp(ranker.training_.inner_cutoff)
    window = log[log["event_date"] >= cutoff]
    token = {p: str(n).split()[0] for p, n in zip(log["product_id"], log["product_name"], strict=True)}
    exact = set(zip(window["product_id"], window["customer_id"], strict=True))
    back = set(zip(window["product_id"].map(token), window["customer_id"], strict=True))
    for p, c, y in zip(data.product_ids, data.customer_ids, data.labels, strict=True):
        assert (y == 2) == ((p, c) in exact)
        assert (y >= 1) == ((token[p], c) in back), (p, c, y)  # the planted categories are the name tokens
    (window_facts,) = ranker.training_.windows
    assert window_facts.category_positives == int((data.labels == 1).sum()) > 0
    assert window_facts.positives == int((data.labels == 2).sum())


def test_sources_inherit_the_seed_features_and_the_label_horizon() -> None:
    share_spec = {"ranker": "category_share", "candidates": 20, "settings": {"categories": {"k": 4}}}
    sources = {**FAST_SOURCES, "share": share_spec}
    ranker = learned(sources=sources, label_days=21.0, features={"features": {"decay_days": 30}}).fit(planted_log())
    share = ranker.state_.sources["share"]
    assert share.settings.horizon_days == 21.0 and share.settings.seed == FAST["seed"]
    assert ranker.state_.sources["activity"].settings.features == {"features": {"decay_days": 30}}
    fixed = learned(sources={"share": {"ranker": "category_share", "settings": {"horizon_days": 5.0}}})
    assert fixed._make_source(fixed.settings.sources["share"], "share").settings.horizon_days == 5.0  # set: kept


def test_the_evaluation_sets_the_label_window_to_the_truth_window() -> None:
    log = planted_log()
    split = window_split(log, pd.Timestamp("2023-05-31", tz="UTC"))
    horizons = (("learned", "label_days"), ("truth_category", "horizon_days"), ("category_share", "horizon_days"))
    for ranker, key in horizons:
        assert model_extra(ranker, {}, split) == {key: split.window_days}
        assert model_extra(ranker, {key: 3.0}, split) == {}
    assert model_extra("activity", {}, split) == {}


def test_feature_importance_is_a_typed_record_of_every_feature() -> None:
    ranker = learned().fit(planted_log(seed=4))
    names = feature_names(list(FAST_SOURCES))
    assert ranker.feature_names_ == names
    assert sorted(f.feature for f in ranker.feature_importance_) == sorted(names)
    assert abs(sum(f.gain_share for f in ranker.feature_importance_) - 1.0) < 1e-4
    gains = [f.gain for f in ranker.feature_importance_]
    assert gains == sorted(gains, reverse=True)
    facts = ranker.training_
    assert facts.groups > 0 and facts.positives > 0 and facts.rows == len(ranker.training_data_.labels)
    (window,) = facts.windows
    assert window.groups + window.groups_without_positive == window.products_with_positive
    assert set(window.source_recall) == set(FAST_SOURCES)
    assert max(window.source_recall.values()) <= window.positive_recall <= 1.0
    assert {"inner_state", "training_features", "train", "state", "total"} <= set(facts.seconds)


def test_training_labels_are_the_label_window_pairs_and_groups_follow_products() -> None:
    log = planted_log(seed=5)
    ranker = learned().fit(log)
    data = ranker.training_data_
    cutoff = pd.Timestamp(ranker.training_.inner_cutoff)
    assert (data.windows == 0).all()
    window = log[log["event_date"] >= cutoff]
    before = log[log["event_date"] < cutoff]
    pairs = set(zip(window["product_id"], window["customer_id"], strict=True))
    got = [(p, c) in pairs for p, c in zip(data.product_ids, data.customer_ids, strict=True)]
    assert np.array_equal(np.asarray(got), data.labels == 1)
    touched = set(zip(before["product_id"], before["customer_id"], strict=True))
    assert not any((p, c) in touched for p, c in zip(data.product_ids, data.customer_ids, strict=True))
    assert set(data.customer_ids) <= set(before["customer_id"])  # only customers known before the label window
    assert len(data.groups) == ranker.training_.groups and data.groups.sum() == len(data.labels)
    starts = np.concatenate([[0], np.cumsum(data.groups)[:-1]])
    assert len(np.unique(data.product_ids[starts])) == len(starts)  # one contiguous block per product
    per_group = pd.DataFrame({"p": data.product_ids, "neg": data.labels == 0, "pos": data.labels == 1}).groupby("p")
    assert (per_group["neg"].sum() <= FAST["negatives"]).all() and (per_group["pos"].sum() >= 1).all()


# ----------------------------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"negatvies": 5}, r"unknown setting\(s\) \['negatvies'\].*did you mean 'negatives'"),
        ({"num_leaves": 1}, "num_leaves"),
        ({"label_days": 0}, "label_days"),
        ({"sources": {}}, "at least one candidate source"),
        ({"sources": {"a": {"ranker": "activity", "candidats": 5}}}, "candidats"),
        ({"sources": {"a": {"ranker": "nope"}}}, "source 'a' names unknown ranker 'nope'"),
        ({"sources": {"c": {"ranker": "content", "settings": {"affinity_wieght": 0.9}}}}, "'c'.*affinity_wieght"),
        ({"sources": {"c": {"ranker": "content", "settings": {"affinity_weight": 2.0}}}}, "'c'.*affinity_weight"),
        ({"sources": {"l": {"ranker": "learned"}}}, "cannot be the learned ranker"),
        ({"label_events": ["bought"]}, "unknown event"),
        ({"categories": {"kk": 3}}, "kk"),
    ],
)
def test_bad_settings_fail_naming_the_key(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_ranker("learned", params)


def test_unknown_drop_feature_fails_at_fit_and_no_training_product_is_explained() -> None:
    log = random_log(n_rows=2000, n_users=200, n_products=40, seed=2, undated_frac=0.0)
    with pytest.raises(ValueError, match="match no feature"):
        learned(drop_features=["prod.colour"]).fit(log)
    with pytest.raises(ValueError, match="label_days=.*covers every dated fit row"):
        learned(label_days=10_000.0).fit(log)
    early = log[log["event_date"] < pd.Timestamp("2023-01-01", tz="UTC")]
    late = log[log["event_date"] >= pd.Timestamp("2023-03-10", tz="UTC")]
    late = late.assign(customer_id=late["customer_id"] + 10_000)  # label-window customers unknown before it
    with pytest.raises(ValueError, match="no training product"):
        learned(label_days=30.0).fit(pd.concat([early, late], ignore_index=True))


def test_default_settings_name_the_issue_sources() -> None:
    ranker = make_ranker("learned")
    assert isinstance(ranker, LearnedRanker)
    rankers = {s.ranker for s in ranker.settings.sources.values()}
    assert {"activity", "content", "itemknn", "als", "category_popularity", "popularity", "name_knn"} <= rankers
    assert ranker.settings.num_threads >= 1 and set(ranker.knobs) >= {"n_estimators", "learning_rate", "num_leaves"}
