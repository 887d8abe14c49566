"""Evaluation harness: metrics by hand, leakage-free split, exact references, end-to-end runs, plots."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from recsys.data.contract import DATE_DTYPE
from recsys.evaluation.frame import build_eval_sets, oracle_lists
from recsys.evaluation.metrics import (
    METRICS,
    average_precision_at_k,
    hit_rate_at_k,
    hits_against,
    metrics_at_k,
    nanmean_or_nan,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
)
from recsys.evaluation.references import oracle_metrics, random_expectation
from recsys.evaluation.report import overall_sentence
from recsys.evaluation.results import EvaluationSummary, read_selection, read_summary
from recsys.evaluation.run import quick_params, run_evaluation
from recsys.evaluation.scoring import RankerContractError, coded_recommendations, score_ranker
from recsys.evaluation.settings import EvalConfig, ranker_params
from recsys.evaluation.split import cutoff_at, protocol_splits, split_summary, undated_facts, window_split
from recsys.rankers import Recommendations, make_ranker
from recsys.reporting import plots

from _logs import high_churn_log, list_log

L2 = np.log2


# ----------------------------------------------------------------------------------------------
# small logs
# ----------------------------------------------------------------------------------------------


def canonical(customers, products, dates, events=None) -> pd.DataFrame:
    """A canonical interactions table from plain lists (dates as ISO strings or None; default event cart)."""
    return list_log(
        customers, products, dates, events, default_event="cart", name=lambda p: f"item {p % 7} size {p % 3}"
    )


def tiny_params(models: dict | None = None, **over) -> dict:
    """Evaluate params for a fast run on a tiny log (small grids, few bootstrap replicates)."""
    block = {
        "seed": 5,
        "split": {"quantile": 0.8, "validation": "matched", "undated_policy": "exclude_only"},
        "ks": [5, 10, 20],
        "headline_k": 10,
        "tuning": {"objective": {"metric": "precision", "k": 20}, "budget": {"default": 2}, "seed": 3},
        "intervals": {"n_boot": 200, "level": 0.95},
        "comparisons": {"cf_models": ["als", "itemknn"], "engagement_models": ["activity", "popularity"]},
        "models": models
        or {
            "random": {"ranker": "random"},
            "activity": {"ranker": "activity", "search": {"engagement.normalisation": ["log1p_minmax", "minmax"]}},
            "popularity": {"ranker": "popularity"},
            "recency": {"ranker": "recency"},
            "content": {
                "ranker": "content",
                "search": {"affinity_weight": [0.3, 0.7]},
                "new_search": {"cold_affinity_weight": [0.5, 1.0]},
            },
            "name_knn": {
                "ranker": "name_knn",
                "search": {"neighbours": [2, 5]},
                "new_search": {"cold_neighbour_weight": [0.5, 1.0]},
            },
            "als": {
                "ranker": "als",
                "factors": 8,
                "iterations": 5,
                "num_threads": 1,
                "chunk_size": 64,
                "search": {"factors": [4, 8], "iterations": [2, 5]},
            },
            "itemknn": {
                "ranker": "itemknn",
                "search": [
                    {"similarity": ["cosine"], "K": [5, 20]},
                    {"similarity": ["bm25"], "K": [5], "B": [0.5, 0.9]},
                ],
            },
            "bgnbd": {"ranker": "bgnbd", "optional": True, "enabled": False},
        },
    }
    block.update(over)
    return {"evaluate": block}


# ----------------------------------------------------------------------------------------------
# metrics by hand
# ----------------------------------------------------------------------------------------------

RANKED = ["a", "b", "c", "d", "e"]
RELEVANT = {"b", "e", "x"}


def test_metrics_by_hand() -> None:
    # hits at ranks 2 and 5; |R| = 3
    assert precision_at_k(RANKED, RELEVANT, 5) == pytest.approx(0.4)
    assert recall_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 3)
    assert hit_rate_at_k(RANKED, RELEVANT, 5) == 1.0
    dcg = 1 / L2(3) + 1 / L2(6)
    idcg = 1 + 1 / L2(3) + 1 / L2(4)
    assert ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx(dcg / idcg)
    assert average_precision_at_k(RANKED, RELEVANT, 5) == pytest.approx((1 / 2 + 2 / 5) / 3)
    # k = 2: one hit at rank 2
    assert precision_at_k(RANKED, RELEVANT, 2) == pytest.approx(0.5)
    assert recall_at_k(RANKED, RELEVANT, 2) == pytest.approx(1 / 3)
    assert ndcg_at_k(RANKED, RELEVANT, 2) == pytest.approx((1 / L2(3)) / (1 + 1 / L2(3)))
    assert average_precision_at_k(RANKED, RELEVANT, 2) == pytest.approx(0.5 / 2)
    # k = 1: a miss
    assert [precision_at_k(RANKED, RELEVANT, 1), hit_rate_at_k(RANKED, RELEVANT, 1)] == [0.0, 0.0]


def test_precision_uses_a_fixed_budget_of_k_slots() -> None:
    assert precision_at_k(["b"], RELEVANT, 10) == pytest.approx(0.1)
    assert ndcg_at_k(["b", "e", "x"], RELEVANT, 10) == pytest.approx(1.0)
    assert average_precision_at_k(["b", "e", "x"], RELEVANT, 10) == pytest.approx(1.0)


def test_empty_inputs_give_nan_not_zero() -> None:
    for fn in (precision_at_k, recall_at_k, hit_rate_at_k, ndcg_at_k, average_precision_at_k):
        assert np.isnan(fn(["a", "b"], set(), 5))
        assert np.isnan(fn([], [], 5))
        assert fn([], ["a"], 5) == 0.0  # nothing recommended but something relevant: a real zero
    assert np.isnan(nanmean_or_nan(np.array([np.nan, np.nan])))
    assert np.isnan(nanmean_or_nan(np.array([])))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nanmean_or_nan(np.full((3, 2), np.nan), axis=0)


def test_vectorised_metrics_match_single_lists() -> None:
    rng = np.random.default_rng(1)
    lists = [list(rng.choice(30, size=rng.integers(0, 12), replace=False)) for _ in range(40)]
    truths = [set(rng.choice(30, size=rng.integers(0, 6), replace=False)) for _ in range(40)]
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in lists])]).astype(np.int64)
    entries = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists])
    t_off = np.concatenate([[0], np.cumsum([len(t) for t in truths])]).astype(np.int64)
    truth = np.concatenate([np.sort(np.asarray(list(t), dtype=np.int64)) for t in truths])
    hits = hits_against(offsets, entries, t_off, truth, 30)
    ks = (1, 3, 10)
    got = metrics_at_k(offsets, hits, np.diff(t_off), ks)
    fns = (precision_at_k, recall_at_k, hit_rate_at_k, ndcg_at_k, average_precision_at_k)
    for i, fn in enumerate(fns):
        for j, k in enumerate(ks):
            expected = [fn(x, t, k) for x, t in zip(lists, truths, strict=True)]
            np.testing.assert_allclose(got[i, j], expected, equal_nan=True)


# ----------------------------------------------------------------------------------------------
# split
# ----------------------------------------------------------------------------------------------


def test_train_precedes_validation_precedes_test_and_undated_rows_follow_the_policy() -> None:
    log = high_churn_log()
    n_undated = int(log["event_date"].isna().sum())
    assert n_undated > 0
    for policy in ("exclude_only", "train", "drop"):
        val, test = protocol_splits(log, 0.8, "matched", policy)
        assert val.train["event_date"].dropna().max() < val.cutoff <= val.test["event_date"].min()
        assert val.test["event_date"].max() < test.cutoff == val.end <= test.test["event_date"].min()
        assert test.train["event_date"].dropna().max() < test.cutoff
        for s in (val, test):
            assert s.test["event_date"].notna().all()  # undated rows never reach a truth window
            assert int(s.train["event_date"].isna().sum()) == (n_undated if policy == "train" else 0)
            assert len(s.exclude) == (n_undated if policy == "exclude_only" else 0)
        assert val.window_days == pytest.approx(test.window_days, abs=1e-6)  # matched windows
        dated = int(log["event_date"].notna().sum())
        assert len(test.train) - (n_undated if policy == "train" else 0) + len(test.test) == dated
    with pytest.raises(ValueError, match="undated_policy"):
        protocol_splits(log, 0.8, "matched", "keep")


def test_validation_quantile_and_explicit_errors() -> None:
    log = high_churn_log(n_users=300)
    val, test = protocol_splits(log, 0.8, 0.6)
    assert val.cutoff == cutoff_at(log["event_date"], 0.6) and val.end == test.cutoff
    with pytest.raises(ValueError, match="validation cutoff"):
        protocol_splits(log, 0.6, 0.7)
    with pytest.raises(ValueError, match="between 0 and 1"):
        protocol_splits(log, 1.0)
    undated = log.assign(event_date=pd.Series(pd.NaT, index=log.index, dtype=DATE_DTYPE))
    with pytest.raises(ValueError, match="dated rows"):
        protocol_splits(undated, 0.8)
    with pytest.raises(RuntimeError, match="event_date"):
        protocol_splits(log.drop(columns="event_date"), 0.8)
    summary = split_summary(test)
    unseen = ~test.test["customer_id"].drop_duplicates().isin(test.train["customer_id"])
    assert summary["truth_customers_unseen_share"] == pytest.approx(unseen.mean())


def test_undated_facts_by_hand() -> None:
    # customer 5 is known before the cutoff only through an undated row and buys in the test window; both
    # test-window pairs (5, 3) and (1, 1) are also undated wishlist pairs (excluded under exclude_only)
    log = canonical(
        [1, 2, 1, 5, 5, 1],
        [1, 2, 1, 3, 3, 1],
        ["2023-01-01", "2023-01-02", None, None, "2023-02-05", "2023-02-06"],
        ["cart", "cart", "wishlist", "wishlist", "cart", "cart"],
    )
    test = window_split(log, pd.Timestamp("2023-02-01", tz="UTC"))
    facts = undated_facts(log, test)
    assert facts == {
        "undated_rows": 2,
        "undated_customers": 2,
        "customers_known_only_undated": 0,
        "known_only_undated_truth_customers": 1,
        "excluded_truth_pairs": 2,
    }
    only = canonical([7, 8], [1, 1], [None, "2023-01-03"], ["wishlist", "cart"])
    assert (
        undated_facts(only, window_split(only, pd.Timestamp("2023-01-02", tz="UTC")))["customers_known_only_undated"]
        == 1
    )


# ----------------------------------------------------------------------------------------------
# evaluation sets and references
# ----------------------------------------------------------------------------------------------


def toy_split_log() -> pd.DataFrame:
    """Train: p1 by c1, c2; p2 by c3. Test: p1 by c2 (repeat), c3, c9 (new); p3 (new product) by c1."""
    return canonical(
        [1, 2, 3, 2, 3, 9, 1],
        [1, 1, 2, 1, 1, 1, 3],
        ["2023-01-01", "2023-01-02", "2023-01-03", "2023-02-01", "2023-02-02", "2023-02-03", "2023-02-04"],
    )


def split_at(log: pd.DataFrame, quantile: float, policy: str = "exclude_only"):
    """The test split of a log at a date quantile."""
    return window_split(log, cutoff_at(log["event_date"], quantile), None, policy)


def test_eval_sets_truth_exclusions_and_oracle_by_hand() -> None:
    s = split_at(toy_split_log(), 0.4)
    assert s.train["customer_id"].tolist() == [1, 2, 3]
    existing, new = build_eval_sets(s)
    assert existing.product_ids.tolist() == [1] and new.product_ids.tolist() == [3]
    ids = existing.customers.ids
    assert sorted(ids[existing.truth]) == [2, 3, 9]
    assert sorted(ids[existing.excl]) == [1, 2]
    assert existing.n_eligible_relevant().tolist() == [1]  # only c3: c2 already bought it, c9 is unknown
    assert existing.pool_size().tolist() == [1]  # train customers {1,2,3} minus {1,2}
    off, codes = oracle_lists(existing, 10)
    assert ids[codes].tolist() == [3]
    om = oracle_metrics(existing, (1, 10))
    assert om[0, :, 0].tolist() == [1.0, 0.1]  # precision: min(k, 1)/k
    assert om[1, 0, 0] == pytest.approx(1 / 3)  # recall ceiling: 1 of 3 relevant reachable
    assert new.n_excluded.tolist() == [0] and new.pool_size().tolist() == [3]


def test_truth_event_filter() -> None:
    log = toy_split_log()
    log["event"] = pd.Series(["cart", "cart", "cart", "purchased", "cart", "cart", "cart"], dtype="category")
    existing, _ = build_eval_sets(split_at(log, 0.4), truth_events=["purchased"])
    assert existing.customers.ids[existing.truth].tolist() == [2]
    existing, _ = build_eval_sets(split_at(log, 0.4), truth_events=["rating"])
    assert existing.n_relevant.tolist() == [0]  # kept, metrics become NaN


def test_random_expectation_matches_simulation() -> None:
    rng = np.random.default_rng(4)
    pool, m, r = 40, 6, 9
    ks = (1, 5, 20, 60)
    exact = random_expectation(np.array([pool]), np.array([m]), np.array([r]), ks)[:, :, 0]
    n_sim = 20000
    relevant_slots = np.zeros(pool, dtype=bool)
    relevant_slots[:m] = True
    perms = np.argsort(rng.random((n_sim, pool)), axis=1)
    hits = relevant_slots[perms]  # every simulated audience: a random order of the pool
    lists = np.tile(np.arange(pool), n_sim).reshape(n_sim, pool)
    offsets = np.arange(n_sim + 1, dtype=np.int64) * pool
    sim = metrics_at_k(offsets, hits.ravel(), np.full(n_sim, r), ks).mean(axis=2)
    assert lists.shape == hits.shape
    np.testing.assert_allclose(exact, sim, rtol=0.05, atol=2e-3)


def test_random_expectation_edge_cases() -> None:
    out = random_expectation(np.array([0, 5, 5]), np.array([0, 0, 5]), np.array([2, 0, 5]), (10,))
    assert out[0, 0, 0] == 0.0 and out[2, 0, 0] == 0.0  # empty pool: nothing to draw
    assert np.isnan(out[:, 0, 1]).all()  # nothing relevant: NaN
    assert out[0, 0, 2] == pytest.approx(0.5) and out[2, 0, 2] == 1.0  # whole pool drawn


def test_undated_rows_exclude_for_references_too() -> None:
    log = pd.concat([toy_split_log(), canonical([3], [1], [None], ["wishlist"])], ignore_index=True)
    existing, _ = build_eval_sets(split_at(log, 0.4, "exclude_only"))
    ids = existing.customers.ids
    assert sorted(ids[existing.excl]) == [1, 2, 3]  # c3 wishlisted p1: excluded like a buyer
    assert existing.n_eligible_relevant().tolist() == [0] and existing.pool_size().tolist() == [0]
    assert existing.scored_mask().tolist() == [False]
    trained, _ = build_eval_sets(split_at(log, 0.4, "train"))
    assert sorted(trained.customers.ids[trained.excl]) == [1, 2, 3]
    dropped, _ = build_eval_sets(split_at(log, 0.4, "drop"))
    assert sorted(dropped.customers.ids[dropped.excl]) == [1, 2] and dropped.n_eligible_relevant().tolist() == [1]


def test_contract_violations_are_caught() -> None:
    s = split_at(toy_split_log(), 0.4)
    existing, _ = build_eval_sets(s)

    def recs(customers: list[int]) -> Recommendations:
        return Recommendations(
            product_ids=np.array([1]),
            offsets=np.array([0, len(customers)]),
            customer_ids=np.array(customers),
            scores=np.linspace(1, 0, len(customers)),
            cold_start=np.array([False]),
        )

    coded_recommendations(recs([3]), existing, "ok")
    with pytest.raises(RankerContractError, match="already interacted"):
        coded_recommendations(recs([3, 1]), existing, "bad")
    with pytest.raises(RankerContractError, match="no training history"):
        coded_recommendations(recs([9]), existing, "bad")


# ----------------------------------------------------------------------------------------------
# end to end
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def churn_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("eval")
    result = run_evaluation(tiny_params(), interactions=high_churn_log(), output_dir=out, feature_params={})
    return result, out


OUTPUTS = (
    "summary.json",
    "metrics_at_k.csv",
    "new_products_at_k.csv",
    "slices_at_k.csv",
    "validation.csv",
    "comparisons.csv",
    "report.md",
    "metrics.json",
    "precision_at_k.csv",
)


def test_end_to_end_writes_every_output_once(churn_run) -> None:
    result, out = churn_run
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "metrics_at_k.csv")
    assert list(table.columns) == [
        "model",
        "k",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "interval",
        "hits",
        "n_products",
    ]
    assert {
        "random",
        "activity",
        "popularity",
        "recency",
        "content",
        "name_knn",
        "als",
        "itemknn",
        "random_expected",
        "oracle",
    } == set(table["model"])
    assert set(table["metric"]) == set(METRICS) | {"lift"}
    ok = table.dropna(subset=["value", "ci_low", "ci_high"])
    assert ((ok["ci_low"] <= ok["value"] + 1e-12) & (ok["value"] <= ok["ci_high"] + 1e-12)).all()
    assert (table.loc[table["metric"] == "precision", "interval"].isin(["quasi_poisson_garwood", "exact"])).all()
    summary = read_summary(out / "summary.json")
    assert summary == result.summary
    assert EvaluationSummary.model_validate_json((out / "summary.json").read_text()) == summary
    assert json.loads((out / "timings.json").read_text())["total"] > 0
    assert "timings" not in (out / "summary.json").read_text()


def test_tuned_models_report_every_trial_and_the_chosen_one(churn_run) -> None:
    result, _ = churn_run
    tuning = {t.model: t for t in result.summary.tuning}
    assert set(tuning) == {"activity", "popularity", "content", "name_knn", "als", "itemknn"}  # searched or grouped
    assert len(tuning["name_knn"].trials) == 2 and tuning["name_knn"].fits == 1  # knobs: re-scored on one fit
    assert len(tuning["als"].trials) == 4 and tuning["als"].fits == 2  # 2 fits x 2 iteration counts, re-scored
    assert len(tuning["content"].trials) == 2 and tuning["content"].fits == 1
    assert len(tuning["itemknn"].space) == 2 and tuning["itemknn"].fits == 2  # a union of 4 grid points, budget 2
    for tr in tuning["itemknn"].trials:
        assert ("B" in tr.params) == (tr.params["similarity"] == "bm25")
    for t in tuning.values():
        assert sum(tr.chosen for tr in t.trials) == 1
        chosen = next(tr for tr in t.trials if tr.chosen)
        assert chosen.objective == max(tr.objective for tr in t.trials)
        assert t.chosen == chosen.params
    als = result.summary.model("als")
    for key, value in tuning["als"].chosen.items():
        assert als.params[key] == value  # the test fit uses the settings chosen on validation
    validation = result.validation
    new_trials = sum(len(t.trials) for t in result.summary.new_products.tuning)
    assert len(validation) == sum(len(t.trials) for t in tuning.values()) + new_trials


def test_tuning_never_sees_the_test_window(churn_run, tmp_path: Path) -> None:
    result, _ = churn_run
    log = high_churn_log()
    test_cutoff = result.summary.split("test").cutoff
    later = (log["event_date"] >= pd.Timestamp(test_cutoff)).fillna(False)
    shuffled = log.copy()
    rng = np.random.default_rng(0)
    shuffled.loc[later, "customer_id"] = rng.permutation(shuffled.loc[later, "customer_id"].to_numpy())
    again = run_evaluation(tiny_params(), interactions=shuffled, output_dir=tmp_path, feature_params={})
    assert again.summary.split("test").cutoff == test_cutoff
    assert again.summary.tuning == result.summary.tuning
    assert again.summary.validation == result.summary.validation
    assert again.summary.selection == result.summary.selection  # what is served is never chosen on the test window
    assert again.summary.new_products is not None and result.summary.new_products is not None
    assert again.summary.new_products.tuning == result.summary.new_products.tuning
    assert again.summary.new_products.validation == result.summary.new_products.validation


def test_selection_rebuilds_the_evaluated_model(churn_run) -> None:
    result, out = churn_run
    s = result.summary
    selection = read_selection(out / "selection.json")
    assert selection == s.selection
    best = max(
        (v for v in s.validation if v.ranker != "random"),
        key=lambda v: (v.value if v.value is not None else -1.0, v.hits, -[m.label for m in s.models].index(v.label)),
    )
    assert selection.products.label == best.label == s.default_ranker.label
    assert selection.runner_up is not None and selection.runner_up.label == s.default_ranker.runner_up
    assert selection.headline_k == s.protocol.headline_k
    # make_ranker(ranker, settings) is the model the test window scored: same precision at every k
    _, test = protocol_splits(high_churn_log(), 0.8, "matched", "exclude_only")
    es, _ = build_eval_sets(test)
    ranker = make_ranker(selection.products.ranker, selection.products.settings).fit(test.train, exclude=test.exclude)
    rebuilt = score_ranker(ranker, es, s.protocol.ks, "rebuilt")
    for k in s.protocol.ks:
        assert rebuilt.hits.at(k).count == s.model(selection.products.label).at(k).hits


def test_new_products_are_ranked_from_their_names_and_tested_against_the_fallback(churn_run) -> None:
    result, _ = churn_run
    newp = result.summary.new_products
    assert newp is not None
    test = result.summary.split("test")
    assert newp.products == test.new_products and newp.ranked <= newp.with_truth <= newp.products
    assert newp.basis["content"].get("name", 0) > 0  # content ranks new products from their catalogue names
    assert set(newp.basis["activity"]) == {"names_unused"}
    assert newp.fallback in ("popularity", "activity")
    name_models = {"content", "name_knn"}
    assert {(v.model, v.k) for v in newp.verdicts} == {(m, k) for m in name_models for k in result.summary.protocol.ks}
    for c in newp.comparisons:
        assert c.b == newp.fallback and "new_products" in c.purpose and c.p_holm >= c.p_value
    assert {t.model for t in newp.tuning} == {"content", "name_knn"}
    assert result.summary.selection is not None and result.summary.selection.new_products is not None
    table = result.new_products
    content = table[(table["model"] == "content") & (table["metric"] == "precision")]
    assert (content["interval"] == "quasi_poisson_garwood").all()


def test_the_report_shows_the_new_products_track_with_tests_and_verdicts(churn_run) -> None:
    from recsys.evaluation import report

    result, _ = churn_run
    s = result.summary
    newp = s.new_products
    assert newp is not None
    text = report.new_products_markdown(s)
    assert text.startswith("## New products: ranked from their names")
    assert f"{s.split('test').new_products:,} products of the test window had no fit rows" in text
    for c in newp.comparisons:  # every paired test is a row, with its hits and Holm p
        assert f"| {c.a} vs {c.b} | {c.k} | {c.hits_a} / {c.hits_b} |" in text
    for v in newp.verdicts:
        assert f"k={v.k} {report.name_verdict_phrase(v)}" in text
    assert text in report.report_markdown(s)
    brief = report.new_products_brief_markdown(s)
    assert f"| {newp.fallback} (fallback) |" in brief
    assert len(brief.strip().splitlines()) == 2 + 1 + len({v.model for v in newp.verdicts})


def test_oracle_ceiling_bounds_every_model(churn_run) -> None:
    result, _ = churn_run
    for table in (result.main, result.new_products):
        prec = table[table["metric"] == "precision"]
        for k, part in prec.groupby("k"):
            oracle = part.loc[part["model"] == "oracle", "value"].iloc[0]
            assert (part["value"] <= oracle + 1e-12).all(), k


def test_hits_and_intervals_are_consistent(churn_run) -> None:
    result, _ = churn_run
    s = result.summary
    test = s.split("test")
    for m in s.models:
        for p in m.precision:
            assert p.value == pytest.approx(p.hits / (p.k * test.evaluated_with_truth), rel=1e-5)
            assert p.low <= p.value <= p.high and p.high > 0  # zero hits still get a positive upper bound
            assert p.phi >= test.truth_dispersion - 1e-9
    assert [c.k for c in s.random_coverage] == s.protocol.ks


def test_family_holm_power_and_verdicts(churn_run) -> None:
    result, _ = churn_run
    s = result.summary
    verdict_comps = [c for c in s.comparisons if "verdict" in c.purpose]
    assert [c.k for c in verdict_comps] == s.protocol.ks
    cf_tunings = [t for t in s.tuning if t.model in ("als", "itemknn")]
    chosen = [next(tr for tr in t.trials if tr.chosen) for t in cf_tunings]
    best = max(range(len(chosen)), key=lambda i: (chosen[i].objective, chosen[i].hits_headline_k, -i))
    assert {c.a for c in verdict_comps} == {cf_tunings[best].model}  # the CF representative is chosen on validation
    for c in s.comparisons:
        assert c.p_holm >= c.p_value and c.significant == (c.p_holm < s.protocol.alpha)
        assert c.discordant <= c.hits_a + c.hits_b
    assert [v.k for v in s.verdicts] == s.protocol.ks
    assert s.overall == overall_sentence(s.verdicts)
    d = s.default_ranker
    assert d is not None and d.label not in ("random",)
    assert any("default_ranker" in c.purpose for c in s.comparisons)
    assert "## Protocol" in result.report.split("## Data")[0]


def test_new_users_slice_is_unreachable(churn_run) -> None:
    result, _ = churn_run
    s = result.slices
    recall0 = s[(s["slice"] == "0") & (s["metric"] == "recall")]["value"].dropna()
    assert len(recall0) and (recall0 == 0).all()
    shares = result.summary.slice_shares["test_rows"]
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-5)
    assert shares["0"] > 0.5


def test_run_is_deterministic(churn_run, tmp_path: Path) -> None:
    result, out = churn_run
    run_evaluation(tiny_params(), interactions=high_churn_log(), output_dir=tmp_path, feature_params={})
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_undated_policy_changes_what_trains_and_is_reported(tmp_path: Path) -> None:
    models = {
        "random": {"ranker": "random"},
        "activity": {"ranker": "activity"},
        "popularity": {"ranker": "popularity"},
        "itemknn": {"ranker": "itemknn", "K": 10},
    }
    runs = {}
    for policy in ("exclude_only", "train", "drop"):
        params = tiny_params(
            models=models,
            split={"quantile": 0.8, "validation": "matched", "undated_policy": policy},
            comparisons={"cf_models": ["itemknn"], "engagement_models": ["activity", "popularity"]},
        )
        runs[policy] = run_evaluation(
            params, interactions=high_churn_log(), output_dir=tmp_path / policy, feature_params={}
        )
    exclude, train, drop = (runs[p].summary for p in ("exclude_only", "train", "drop"))
    assert exclude.undated.policy == "exclude_only" and exclude.undated.undated_rows > 0
    assert exclude.undated == drop.undated.model_copy(update={"policy": "exclude_only"})
    assert exclude.split("test").exclude_rows == exclude.undated.undated_rows and train.split("test").exclude_rows == 0
    assert train.split("test").fit_rows == exclude.split("test").fit_rows + exclude.undated.undated_rows
    assert (
        drop.split("test").reachable_pairs >= exclude.split("test").reachable_pairs
    )  # nothing excluded by undated rows
    for policy, run in runs.items():
        assert f"**Undated rows: `{policy}`**" in run.report.split("## Data")[0]


def test_headline_k_and_objective_default_to_the_served_depth() -> None:
    block = tiny_params(headline_k=None, tuning={"objective": {"metric": "precision", "k": None}})["evaluate"]
    cfg = EvalConfig.from_params(block, served_n=20)
    assert cfg.headline_k == 20 and cfg.objective.k == 20
    assert EvalConfig.from_params(tiny_params()["evaluate"], served_n=20).headline_k == 10  # explicit wins


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="headline_k"):
        EvalConfig.from_params(tiny_params(headline_k=7)["evaluate"])
    with pytest.raises(ValueError, match="models"):
        EvalConfig.from_params({"models": {}, "headline_k": 10})
    with pytest.raises(ValueError, match="headline_k is null"):
        EvalConfig.from_params(tiny_params(headline_k=None)["evaluate"])
    with pytest.raises(ValueError, match="new_products has unknown key"):
        EvalConfig.from_params(tiny_params(new_products={"enabld": True})["evaluate"])
    with pytest.raises(ValueError, match="fallbacks names"):
        EvalConfig.from_params(tiny_params(new_products={"fallbacks": ["nope"]})["evaluate"])
    with pytest.raises(ValueError, match="objective.k"):
        EvalConfig.from_params(tiny_params(tuning={"objective": {"metric": "precision", "k": 7}})["evaluate"])
    with pytest.raises(ValueError, match="budget.default must be >= 1"):
        EvalConfig.from_params(
            tiny_params(tuning={"objective": {"metric": "precision", "k": 20}, "budget": 0})["evaluate"]
        )
    with pytest.raises(ValueError, match="cf_models"):
        EvalConfig.from_params(tiny_params(comparisons={"cf_models": ["nope"]})["evaluate"])
    with pytest.raises(ValueError, match="unknown key"):
        EvalConfig.from_params(tiny_params(split={"undated_in_train": True})["evaluate"])
    cfg = EvalConfig.from_params(
        tiny_params(
            models={"x": {"ranker": "als", "enabled": False}, "r": {"ranker": "random"}},
            comparisons={"cf_models": [], "engagement_models": []},
        )["evaluate"]
    )
    assert [m.label for m in cfg.models] == ["r"]


def test_search_space_errors_name_the_model_and_key(tmp_path: Path) -> None:
    params = tiny_params(
        models={"activity": {"ranker": "activity", "search": {"engagement.normalisation": "minmax"}}},
        comparisons={"cf_models": [], "engagement_models": ["activity"]},
    )
    with pytest.raises(
        ValueError, match="evaluate.models.activity.search.engagement.normalisation must be a non-empty list"
    ):
        run_evaluation(params, interactions=high_churn_log(n_users=300), output_dir=tmp_path, feature_params={})


def test_ranker_params_never_use_a_reference_date_inside_the_test_window() -> None:
    own = {"engagement": {"normalisation": "minmax"}}
    feats = {
        "features": {"reference_date": "2030-01-01", "decay_days": 30},
        "engagement": {"normalisation": "percentile"},
    }
    p = ranker_params(own, feats, seed=3)
    assert p["features"]["features"]["reference_date"] is None
    assert p["features"]["features"]["decay_days"] == 30
    assert p["features"]["engagement"]["normalisation"] == "minmax"
    assert p["seed"] == 3


def test_quick_params_shrink_cf() -> None:
    q = quick_params(tiny_params())
    assert q["evaluate"]["models"]["als"]["iterations"] == 5 and "bgnbd" not in q["evaluate"]["models"]
    assert "search" not in q["evaluate"]["models"]["als"] and q["evaluate"]["tuning"]["budget"] == 1


def test_event_filtered_truth_and_string_ids_run(tmp_path: Path) -> None:
    log = high_churn_log(n_users=600, n_products=60)
    log["customer_id"] = ("u" + log["customer_id"].astype(str)).astype("string[pyarrow]")
    log["product_id"] = ("85123" + log["product_id"].astype(str) + "A").astype("string[pyarrow]")
    params = tiny_params(
        models={
            "random": {"ranker": "random"},
            "activity": {"ranker": "activity"},
            "als": {"ranker": "als", "factors": 4, "iterations": 3, "num_threads": 1},
        },
        comparisons={"cf_models": ["als"], "engagement_models": ["activity"]},
        ground_truth={"events": ["purchased"]},
    )
    result = run_evaluation(params, interactions=log, output_dir=tmp_path, feature_params={})
    test = result.summary.split("test")
    assert test.evaluated_products > 0 and test.evaluated_with_truth <= test.evaluated_products
    assert result.summary.protocol.truth_events == ["purchased"]
    assert {"random", "activity", "als"} <= set(result.main["model"])


def test_case_study_comparison_only_when_asked(tmp_path: Path) -> None:
    models = {
        "random": {"ranker": "random"},
        "activity": {"ranker": "activity"},
        "als": {"ranker": "als", "factors": 4, "iterations": 2, "num_threads": 1},
    }
    params = tiny_params(models=models, comparisons={"cf_models": ["als"], "engagement_models": ["activity"]})
    plain = run_evaluation(
        params, interactions=high_churn_log(n_users=400), output_dir=tmp_path / "a", feature_params={}
    )
    assert plain.summary.case_study is None and "original write-up" not in plain.report
    labelled = run_evaluation(
        params, interactions=high_churn_log(n_users=400), output_dir=tmp_path / "b", feature_params={}, case_study=True
    )
    assert (
        labelled.summary.case_study and "Comparison with the original write-up (case-study layout)" in labelled.report
    )


# ----------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------


def test_plots_draw_from_the_results(churn_run) -> None:
    result, _ = churn_run
    s = result.summary
    figs = [
        plots.plot_metric_at_k(result.main, "precision"),
        plots.plot_lift(result.main),
        plots.plot_slices(result.slices, 10),
        plots.plot_slice_shares(s.slice_shares),
        plots.plot_precision_intervals(s, 10),
        plots.plot_validation(s),
        plots.plot_comparisons(s, "verdict"),
    ]
    for fig in figs:
        assert fig.axes and any(ax.has_data() for ax in fig.axes)
    with pytest.raises(ValueError, match="metric"):
        plots.plot_metric_at_k(result.main, "nope")


def test_results_do_not_depend_on_batch_sizes_or_thread_counts(tmp_path: Path) -> None:
    log = high_churn_log(seed=3)

    def run(chunk: int, threads: int, entries: int, out: Path) -> Any:  # threads: also the tuning processes
        models = tiny_params()["evaluate"]["models"]
        models["als"].update({"chunk_size": chunk, "num_threads": threads, "score_threads": threads})
        models["content"]["chunk_entries"] = entries
        models["name_knn"]["chunk_entries"] = entries
        models["itemknn"].update({"chunk_entries": entries, "num_threads": threads})
        params = tiny_params(models=models, processes=threads)
        return run_evaluation(params, interactions=log, output_dir=out, feature_params={})

    a = run(64, 1, 8_000_000, tmp_path / "a")
    b = run(7, 2, 300, tmp_path / "b")
    for name in ("metrics_at_k.csv", "new_products_at_k.csv", "comparisons.csv", "slices_at_k.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert a.summary.verdicts == b.summary.verdicts
    assert a.summary.selection.products.label == b.summary.selection.products.label


def test_als_lists_do_not_depend_on_how_many_products_are_scored_at_once() -> None:
    log = high_churn_log(seed=4)
    products = np.sort(log["product_id"].unique())
    base = {"factors": 16, "iterations": 5, "num_threads": 1, "seed": 1}
    whole = make_ranker("als", {**base, "chunk_size": 256}).fit(log).rank(products, 50)
    other = make_ranker("als", {**base, "chunk_size": 3, "score_threads": 2}).fit(log)
    one_by_one = [other.rank(products[i : i + 1], 50) for i in range(0, len(products), 17)]
    for i, rec in zip(range(0, len(products), 17), one_by_one, strict=True):
        lo, hi = whole.offsets[i], whole.offsets[i + 1]
        np.testing.assert_array_equal(rec.customer_ids, whole.customer_ids[lo:hi])
        np.testing.assert_array_equal(rec.scores, whole.scores[lo:hi])


def test_learned_sources_and_the_truth_reference(tmp_path: Path) -> None:
    log = high_churn_log(seed=5)
    truth = tmp_path / "categories.parquet"
    products = np.sort(log["product_id"].unique())
    pd.DataFrame({"product_id": products, "category": [f"c{p % 4}" for p in products]}).to_parquet(truth)
    models: dict[str, dict[str, Any]] = {
        "random": {"ranker": "random"},
        "activity": {"ranker": "activity"},
        "popularity": {"ranker": "popularity"},
        "content": {"ranker": "content", "search": {"affinity_weight": [0.3, 0.7]}},
        "learned": {
            "ranker": "learned",
            "sources_from": {"activity": 30, "content": 30},
            "n_estimators": 10,
            "min_child_samples": 5,
            "search": {"num_leaves": [3, 7]},
        },
    }
    groups = {"cf_models": [], "engagement_models": ["activity", "popularity"]}
    result = run_evaluation(
        tiny_params(models=models, comparisons=groups),
        interactions=log,
        output_dir=tmp_path / "out",
        feature_params={},
        truth_categories=truth,
    )
    s = result.summary
    learned = s.model("learned")
    assert learned.group == "learned" and learned.tuned
    assert "sources.content.settings.affinity_weight" in learned.params  # the source got content's chosen weight
    chosen_weight = next(t for t in s.tuning if t.model == "content").chosen["affinity_weight"]
    assert learned.params["sources.content.settings.affinity_weight"] == chosen_weight
    ref = s.model("truth")
    assert ref.group == "reference" and ref.ranker == "truth_category"
    assert "truth" not in {v.label for v in s.validation}  # never scored on validation, never chosen
    assert s.selection is not None and s.selection.products.ranker != "truth_category"
    assert s.default_ranker is not None and s.default_ranker.label != "truth"
    with pytest.raises(ValueError, match="sources_from names \\['nope'\\]"):
        bad = {**models, "learned": {**models["learned"], "sources_from": {"nope": 5}}}
        run_evaluation(tiny_params(models=bad, comparisons=groups), interactions=log, write=False, feature_params={})
