"""Evaluation harness: metrics by hand, leakage-free split, exact references, end-to-end runs, plots."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

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
    bootstrap_means,
    hit_rate_at_k,
    hits_against,
    metrics_at_k,
    nanmean_or_nan,
    ndcg_at_k,
    percentile_ci,
    precision_at_k,
    recall_at_k,
)
from recsys.evaluation.references import oracle_metrics, random_expectation
from recsys.evaluation.report import hit_count, lift_verdict
from recsys.evaluation.run import EvalConfig, ModelSpec, quick_params, ranker_params, run_evaluation
from recsys.evaluation.scoring import RankerContractError, coded_recommendations
from recsys.evaluation.split import split_summary, temporal_split
from recsys.rankers import Recommendations
from recsys.reporting import plots

from _logs import list_log

L2 = np.log2


# ----------------------------------------------------------------------------------------------
# small logs
# ----------------------------------------------------------------------------------------------


def canonical(customers, products, dates, events=None) -> pd.DataFrame:
    """A canonical interactions table from plain lists (dates as ISO strings or None; default event cart)."""
    return list_log(customers, products, dates, events, default_event="cart", name=lambda p: f"item {p % 7} size {p % 3}")


def high_churn_log(n_users: int = 1500, n_products: int = 150, seed: int = 0) -> pd.DataFrame:
    """Like the case study: most customers appear once, popularity is skewed, wishlist rows are undated.

    About 10% of customers return; a returning customer tends to revisit products they touched
    (so engagement is a real, weak signal). Dates span 180 days.
    """
    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, n_products + 1) ** 1.1
    pop /= pop.sum()
    start = pd.Timestamp("2022-10-01", tz="UTC")
    cust, prod, date, event = [], [], [], []
    for u in range(1, n_users + 1):
        n = 1 if rng.random() < 0.9 else int(rng.integers(2, 8))
        first = rng.uniform(0, 180)
        days = np.sort(first + rng.exponential(20, size=n)) % 180
        own = rng.choice(n_products, size=n, p=pop) + 1
        own[1:] = np.where(rng.random(n - 1) < 0.3, own[0], own[1:])
        for d, p in zip(days, own):
            cust.append(u * 7 + 3)  # sparse ids
            prod.append(int(p))
            ev = rng.choice(["purchased", "cart", "wishlist"], p=[0.35, 0.6, 0.05])
            event.append(str(ev))
            date.append(None if ev == "wishlist" else str(start + pd.Timedelta(days=float(d))))
    return canonical(cust, prod, date, event)


def tiny_params(models: dict | None = None, **over) -> dict:
    """Evaluate params for a fast run on a tiny log."""
    block = {
        "seed": 5,
        "split": {"quantile": 0.8, "undated_in_train": True},
        "ks": [5, 10, 20],
        "headline_k": 10,
        "bootstrap": {"n": 200, "ci": 0.95},
        "backtest": {"quantiles": [0.6, 0.7, 0.8], "horizon": "matched"},
        "models": models
        or {
            "random": {"ranker": "random"},
            "activity_log1p": {"ranker": "activity", "engagement": {"normalisation": "log1p_minmax"}},
            "activity_minmax": {"ranker": "activity", "engagement": {"normalisation": "minmax"}},
            "recency": {"ranker": "recency"},
            "content": {"ranker": "content"},
            "als": {"ranker": "als", "factors": 8, "iterations": 5, "num_threads": 1, "chunk_size": 64},
            "bgnbd": {"ranker": "bgnbd", "optional": True},
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
            expected = [fn(x, t, k) for x, t in zip(lists, truths)]
            np.testing.assert_allclose(got[i, j], expected, equal_nan=True)


def test_bootstrap_is_seeded_paired_and_nan_aware() -> None:
    rng = np.random.default_rng(0)
    v = np.column_stack([rng.random(500), np.full(500, 0.25), np.where(rng.random(500) < 0.5, np.nan, 1.0)])
    a, b = bootstrap_means(v, 300, seed=9), bootstrap_means(v, 300, seed=9)
    assert np.array_equal(a, b)
    lo, hi = percentile_ci(a)
    assert lo[0] < v[:, 0].mean() < hi[0]
    assert lo[1] == pytest.approx(0.25) and hi[1] == pytest.approx(0.25)
    assert lo[2] == pytest.approx(1.0) and hi[2] == pytest.approx(1.0)
    empty = bootstrap_means(np.full((4, 1), np.nan), 10, seed=1)
    assert np.isnan(empty).all() and np.isnan(percentile_ci(empty)[0]).all()


# ----------------------------------------------------------------------------------------------
# split
# ----------------------------------------------------------------------------------------------


def test_split_has_no_leakage_and_keeps_undated_out_of_test() -> None:
    log = high_churn_log()
    for undated_in_train in (True, False):
        s = temporal_split(log, 0.8, undated_in_train)
        assert s.train["event_date"].dropna().max() < s.cutoff <= s.test["event_date"].min()
        assert s.test["event_date"].notna().all()
        n_undated = int(log["event_date"].isna().sum())
        assert n_undated > 0
        assert int(s.train["event_date"].isna().sum()) == (n_undated if undated_in_train else 0)
        assert len(s.train) + len(s.test) + s.undated_dropped == len(log)
        assert s.undated_dropped == (0 if undated_in_train else n_undated)


def test_split_window_and_summary() -> None:
    log = high_churn_log()
    full = temporal_split(log, 0.6)
    window = temporal_split(log, 0.6, test_days=10)
    assert window.test["event_date"].max() < window.cutoff + pd.Timedelta(days=10)
    assert len(window.test) + window.after_window_dropped == len(full.test)
    summary = split_summary(full)
    unseen = ~full.test["customer_id"].drop_duplicates().isin(full.train["customer_id"])
    assert summary["test_users_unseen_share"] == pytest.approx(unseen.mean())
    assert summary["test_users_unseen_share"] > 0.5  # high churn


def test_split_errors_are_explicit() -> None:
    log = high_churn_log(n_users=50)
    with pytest.raises(ValueError, match="between 0 and 1"):
        temporal_split(log, 1.0)
    undated = log.assign(event_date=pd.Series(pd.NaT, index=log.index, dtype=DATE_DTYPE))
    with pytest.raises(ValueError, match="dated rows"):
        temporal_split(undated, 0.8)
    with pytest.raises(RuntimeError, match="event_date"):
        temporal_split(log.drop(columns="event_date"), 0.8)


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


def test_eval_sets_truth_exclusions_and_oracle_by_hand() -> None:
    s = temporal_split(toy_split_log(), 0.4)
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
    existing, _ = build_eval_sets(temporal_split(log, 0.4), truth_events=["purchased"])
    assert existing.customers.ids[existing.truth].tolist() == [2]
    existing, _ = build_eval_sets(temporal_split(log, 0.4), truth_events=["rating"])
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


def test_contract_violations_are_caught() -> None:
    s = temporal_split(toy_split_log(), 0.4)
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


def test_end_to_end_on_high_churn_log_writes_every_output(churn_run) -> None:
    result, out = churn_run
    names = ("metrics.json", "metrics_at_k.csv", "new_products_at_k.csv", "backtest_at_k.csv", "slices_at_k.csv", "conclusion.md")
    for name in names:
        assert (out / name).is_file(), name
    table = pd.read_csv(out / "metrics_at_k.csv")
    assert list(table.columns) == ["model", "k", "metric", "value", "ci_low", "ci_high", "n_products"]
    models = set(table["model"])
    assert {"random", "activity_log1p", "activity_minmax", "recency", "content", "als", "random_expected", "oracle"} <= models
    assert set(table["metric"]) == set(METRICS) | {"lift"}
    ok = table.dropna(subset=["value", "ci_low", "ci_high"])
    assert ((ok["ci_low"] <= ok["value"] + 1e-12) & (ok["value"] <= ok["ci_high"] + 1e-12)).all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"split", "products", "models", "references", "backtest", "diagnostics", "hits"} <= set(metrics)
    assert json.loads((out / "timings.json").read_text())["total"] > 0
    assert metrics["products"]["evaluated"] > 0
    assert len(metrics["backtest"]) == 3
    backtest = pd.read_csv(out / "backtest_at_k.csv")
    assert sorted(backtest["cutoff_quantile"].unique()) == [0.6, 0.7, 0.8]
    assert "Verdict at k=10" in result.conclusion and "Temporal split" in result.conclusion
    if "bgnbd" in metrics["skipped_models"]:
        assert "pymc-marketing" in metrics["skipped_models"]["bgnbd"]


def test_oracle_ceiling_bounds_every_model(churn_run) -> None:
    result, _ = churn_run
    for table in (result.main, result.new_products, result.backtest):
        for keys, part in table[table["metric"] == "precision"].groupby(
            [c for c in ("cutoff_quantile", "k") if c in table.columns]
        ):
            oracle = part.loc[part["model"] == "oracle", "value"].iloc[0]
            assert (part["value"] <= oracle + 1e-12).all(), keys


def test_new_users_slice_is_unreachable(churn_run) -> None:
    result, _ = churn_run
    s = result.slices
    recall0 = s[(s["slice"] == "0") & (s["metric"] == "recall")]["value"].dropna()
    assert len(recall0) and (recall0 == 0).all()
    shares = result.metrics["diagnostics"]["share_test_rows_by_training_rows"]
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["0"] > 0.5


def test_run_is_deterministic(churn_run, tmp_path: Path) -> None:
    result, out = churn_run
    again = run_evaluation(tiny_params(), interactions=high_churn_log(), output_dir=tmp_path, feature_params={})
    pd.testing.assert_frame_equal(result.main, again.main)
    assert result.conclusion == again.conclusion
    for name in ("metrics.json", "metrics_at_k.csv", "backtest_at_k.csv", "slices_at_k.csv"):
        assert (out / name).read_bytes() == (tmp_path / name).read_bytes(), name


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="headline_k"):
        EvalConfig.from_params(tiny_params(headline_k=7)["evaluate"])
    with pytest.raises(ValueError, match="models"):
        EvalConfig.from_params({"models": {}})
    cfg = EvalConfig.from_params(tiny_params(models={"x": {"ranker": "als", "enabled": False}, "r": {"ranker": "random"}})["evaluate"])
    assert [m.label for m in cfg.models] == ["r"]


def test_ranker_params_never_use_a_reference_date_inside_the_test_window() -> None:
    spec = ModelSpec("a", "activity", {"engagement": {"normalisation": "minmax"}})
    feats = {"features": {"reference_date": "2030-01-01", "decay_days": 30}, "engagement": {"normalisation": "percentile"}}
    p = ranker_params(spec, feats, seed=3)
    assert p["features"]["features"]["reference_date"] is None
    assert p["features"]["features"]["decay_days"] == 30
    assert p["features"]["engagement"]["normalisation"] == "minmax"
    assert p["seed"] == 3


def test_quick_params_shrink_cf() -> None:
    q = quick_params(tiny_params())
    assert q["evaluate"]["models"]["als"]["iterations"] == 5 and "bgnbd" not in q["evaluate"]["models"]


def test_event_filtered_truth_runs(tmp_path: Path) -> None:
    params = tiny_params(
        models={"random": {"ranker": "random"}, "activity_log1p": {"ranker": "activity"}},
        ground_truth={"events": ["purchased"]},
        backtest={"quantiles": [0.8]},
        cf_model="activity_log1p",
    )
    result = run_evaluation(params, interactions=high_churn_log(), output_dir=tmp_path, feature_params={})
    assert result.metrics["ground_truth_events"] == ["purchased"]
    assert result.metrics["products"]["evaluated_with_truth"] <= result.metrics["products"]["evaluated"]


def test_string_ids_run_end_to_end(tmp_path: Path) -> None:
    log = high_churn_log(n_users=600, n_products=60)
    log["customer_id"] = ("u" + log["customer_id"].astype(str)).astype("string[pyarrow]")
    log["product_id"] = ("85123" + log["product_id"].astype(str) + "A").astype("string[pyarrow]")
    params = tiny_params(
        models={
            "random": {"ranker": "random"},
            "activity_log1p": {"ranker": "activity"},
            "als": {"ranker": "als", "factors": 4, "iterations": 3, "num_threads": 1},
        },
        backtest={"quantiles": [0.8]},
        engagement_models=["activity_log1p"],
    )
    result = run_evaluation(params, interactions=log, output_dir=tmp_path, feature_params={})
    assert result.metrics["products"]["evaluated"] > 0
    assert {"random", "activity_log1p", "als"} <= set(result.main["model"])


def _table(rows: list[tuple[str, str, float, float, float]], k: int = 10, n: int = 1000) -> pd.DataFrame:
    """A long table from (model, metric, value, ci_low, ci_high) rows."""
    return pd.DataFrame(
        [{"model": m, "k": k, "metric": met, "value": v, "ci_low": lo, "ci_high": hi, "n_products": n} for m, met, v, lo, hi in rows]
    )


def test_lift_verdict_needs_the_ci_and_the_hit_count_to_agree() -> None:
    table = _table(
        [
            ("random_expected", "precision", 1e-5, 9e-6, 1.1e-5),  # 0.1 expected hits
            ("none", "precision", 0.0, 0.0, 0.0),
            ("none", "lift", 0.0, 0.0, 0.0),
            ("few", "precision", 3e-4, 0.0, 7e-4),  # 3 hits: far above 0.1, but not robust
            ("few", "lift", 30.0, 0.0, 70.0),
            ("many", "precision", 5e-3, 3e-3, 7e-3),
            ("many", "lift", 500.0, 300.0, 700.0),
        ]
    )
    assert hit_count(table, "few", 10) == pytest.approx(3.0)
    assert lift_verdict(table, "none", 10) == "indistinguishable from random"  # 0 hits vs 0.1 expected is not 'worse'
    assert lift_verdict(table, "few", 10).startswith("above random by hit count only")
    assert lift_verdict(table, "many", 10) == "better than random"
    worse = _table(
        [("random_expected", "precision", 0.1, 0.09, 0.11), ("w", "precision", 0.01, 0.005, 0.02), ("w", "lift", 0.1, 0.05, 0.2)]
    )
    assert lift_verdict(worse, "w", 10) == "worse than random"


# ----------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------


def test_plots_draw_from_the_tables(churn_run) -> None:
    result, _ = churn_run
    figs = [
        plots.plot_metric_at_k(result.main, "precision"),
        plots.plot_lift(result.main),
        plots.plot_backtest(result.backtest, "precision", 10),
        plots.plot_slices(result.slices, 10),
        plots.plot_slice_shares(result.metrics["diagnostics"]),
    ]
    for fig in figs:
        assert fig.axes and any(ax.has_data() for ax in fig.axes)
    with pytest.raises(ValueError, match="metric"):
        plots.plot_metric_at_k(result.main, "nope")
