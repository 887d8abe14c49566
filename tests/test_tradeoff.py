"""The exposure-cap trade-off: a hand-made log with a known answer, harness invariants, the recommendation rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from recsys.allocation import AllocationParams, allocate, exposure_metrics, truncate
from recsys.allocation.exposure import ExposureAtK, ExposureMetrics
from recsys.evaluation.frame import build_eval_sets
from recsys.evaluation.metrics import METRICS
from recsys.evaluation.results import Comparison, EvaluationSummary, PrecisionAtK
from recsys.evaluation.run import fit_ranker, run_evaluation
from recsys.evaluation.settings import EvalConfig
from recsys.evaluation.split import protocol_splits
from recsys.evaluation.tradeoff import (
    AudienceFacts,
    CapResult,
    TradeoffResults,
    read_tradeoff,
    recommend,
    recommendation_text,
    rounded_exposure,
    rule_text,
    status_of,
    tradeoff_markdown,
)
from recsys.evaluation.tradeoff_run import (
    ServedConfig,
    TradeoffConfig,
    check_summary,
    chosen_settings,
    run_tradeoff,
    select_blocks,
    write_outputs,
)
from recsys.rankers import Recommendations
from recsys.reporting.plots import plot_cap_tradeoff
from recsys.reporting.summary import cap_check_markdown

from _logs import high_churn_log, list_log

# ----------------------------------------------------------------------------------------------
# a hand-made log whose answer is known
# ----------------------------------------------------------------------------------------------

HAND_EVALUATE: dict[str, Any] = {
    "seed": 1,
    "split": {"quantile": 0.9, "validation": 0.5},
    "ks": [1],
    "headline_k": 1,
    "tuning": {"objective": {"metric": "precision", "k": 1}},
    "intervals": {"n_boot": 50},
    "comparisons": {"cf_models": [], "engagement_models": []},
    "models": {"activity": {"ranker": "activity"}},
}
HAND_CACHE: dict[str, Any] = {
    "n": 1,
    "seed": 3,
    "allocation": {"candidates": 5, "min_audience": 0},
    "exposure": {"ks": [1], "pairs": 100},
}


def hand_log() -> tuple[pd.DataFrame, dict[str, int], dict[str, int]]:
    """A is by far the most active customer and touched F1-F3; X1-X4 each touched one of E1-E4; A buys E1-E4 later.

    Uncapped top-1 lists put A first for every product A may get (E1-E4), so A makes all 4 test hits;
    under a cap c < 4, A keeps exactly c of those lists (the allocation uses its best customer to the
    cap) and the other E lists go to customers who buy nothing: exactly c hits remain.
    """
    rows = [(c, p, d) for d in range(1, 5) for c, p in (("A", "F1"), ("A", "F2"), ("A", "F3"))]
    rows += [(c, p, d) for d in range(1, 3) for c, p in (("B", "F1"), ("B", "F2"))]
    rows += [("C", "F1", 2), ("D", "F3", 1)] + [(f"X{i}", f"E{i}", i) for i in range(1, 5)]
    rows += [("A", f"E{i}", 20) for i in range(1, 5)]  # the test window: all on one day after every fit row
    cust, prod, day = zip(*rows, strict=True)
    cids = {c: i + 1 for i, c in enumerate(sorted(set(cust)))}
    pids = {p: 100 + i for i, p in enumerate(sorted(set(prod)))}
    dates = [str(pd.Timestamp("2023-01-01", tz="UTC") + pd.Timedelta(days=d)) for d in day]
    log = list_log([cids[c] for c in cust], [pids[p] for p in prod], dates, default_event="purchased")
    return log, cids, pids


@pytest.fixture(scope="module")
def hand() -> tuple[EvaluationSummary, TradeoffResults, pd.DataFrame]:
    log, _, _ = hand_log()
    summary = run_evaluation({"evaluate": HAND_EVALUATE}, interactions=log, feature_params={}, write=False).summary
    run = run_tradeoff(summary, log, HAND_EVALUATE, {"caps": [None, 4, 2, 1], "processes": 1}, HAND_CACHE, {})
    return summary, run.results, log


def test_a_cap_moves_the_known_customer_out_of_known_lists(hand) -> None:
    summary, t, _ = hand
    test = summary.split("test")
    assert (test.fit_rows, test.truth_rows, test.evaluated_products) == (22, 4, 4)
    assert (t.model, t.catalogue_products, t.fit_customers, t.reachable_customers) == ("activity", 7, 8, 1)
    hits = {c.cap: c.at(1).hits for c in t.caps}
    assert hits == {None: 4.0, 4: 4.0, 2: 2.0, 1: 1.0}
    assert [c.at(1).value for c in t.caps] == [1.0, 1.0, 0.5, 0.25]
    # A is in the 4 E lists uncapped: every uncapped hit is A's, above caps 2 and 1, not above 4
    assert {c.cap: c.uncapped_hits_over_cap for c in t.caps} == {None: None, 4: 0, 2: 4, 1: 4}
    assert [c.exposure.at(1).max_exposures for c in t.caps] == [4, 4, 2, 1]
    assert [c.precision_share for c in t.caps] == [1.0, 1.0, 0.5, 0.25]
    assert all(c.audiences.short_products == 0 and c.audiences.slots == 7 for c in t.caps)
    # 4 hits cannot tell caps 2 and 1 from uncapped (inconclusive), but cap 4 gives exactly the uncapped hits
    # (no discordant customer): a decisive "no cost", so it is the smallest cap keeping the precision
    assert [c.status for c in t.caps] == ["reference", "inconclusive", "inconclusive", "inconclusive"]
    r = t.recommendation
    assert (r.cap, r.basis, r.outcome, r.eligible, r.decisive, r.qualifying) == (
        4, "precision", "cap_keeps_precision", [1, 2, 4], [4], [4]
    )  # fmt: skip
    text = tradeoff_markdown(t)
    assert "is **cap 4**: it keeps 100.0% of the point estimate (4 vs 4 hits)" in text
    assert "4 under cap 2" in text and "0 under cap 4" in text


def test_the_cap_binds_only_below_the_uncapped_exposure(hand) -> None:
    _, t, _ = hand
    uncapped, cap4 = t.cap(None), t.cap(4)
    assert cap4.exposure == uncapped.exposure and cap4.audiences.score_share == 1.0
    assert cap4.comparison is not None and cap4.comparison.discordant == 0 and cap4.comparison.p_value == 1.0


# ----------------------------------------------------------------------------------------------
# invariants on a larger log, against the evaluation itself
# ----------------------------------------------------------------------------------------------

CHURN_EVALUATE: dict[str, Any] = {
    "seed": 5,
    "split": {"quantile": 0.8, "validation": "matched", "undated_policy": "exclude_only"},
    "ks": [5, 10, 20],
    "headline_k": 10,
    "tuning": {"objective": {"metric": "precision", "k": 20}, "budget": {"default": 2}, "seed": 3},
    "intervals": {"n_boot": 100, "level": 0.95},
    "comparisons": {"cf_models": [], "engagement_models": []},
    "models": {  # content is the only deployable model: the default ranker, with a tuned affinity weight
        "random": {"ranker": "random"},
        "content": {"ranker": "content", "search": {"affinity_weight": [0.3, 0.7]}},
    },
}
CHURN_CACHE: dict[str, Any] = {
    "n": 20,
    "seed": 7,
    "allocation": {"candidates": 40, "min_audience": 0, "max_exposures": 999},  # max_exposures is ignored
    "exposure": {"ks": [10, 100], "pairs": 500},
}
CHURN_CAPS: dict[str, Any] = {"caps": [None, 30, 8, 3], "processes": 1}


@pytest.fixture(scope="module")
def churn(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    log = high_churn_log()
    evaluation = run_evaluation({"evaluate": CHURN_EVALUATE}, interactions=log, feature_params={}, write=False)
    run = run_tradeoff(evaluation.summary, log, CHURN_EVALUATE, CHURN_CAPS, CHURN_CACHE, {})
    out = tmp_path_factory.mktemp("tradeoff")
    paths = write_outputs(run, out / "tradeoff", out / "metrics" / "tradeoff.json", out / "plots")
    return {"log": log, "evaluation": evaluation, "run": run, "paths": paths}


def test_uncapped_equals_the_evaluations_own_scores(churn) -> None:
    evaluation, run = churn["evaluation"], churn["run"]
    label = evaluation.summary.default_ranker.label
    assert label == run.results.model == "content" and run.results.params == evaluation.summary.model(label).params
    assert run.results.params["affinity_weight"] == next(t for t in evaluation.summary.tuning).chosen["affinity_weight"]
    ours = run.table[run.table["cap"].isna()].drop(columns=["cap"]).reset_index(drop=True)
    theirs = evaluation.main[evaluation.main["model"] == label].reset_index(drop=True)
    assert len(ours) == len(theirs) == 3 * (len(METRICS) + 1)
    pd.testing.assert_frame_equal(
        ours[["model", "k", "metric", "value", "hits", "n_products"]],
        theirs[["model", "k", "metric", "value", "hits", "n_products"]],
    )
    prec = theirs["metric"] == "precision"
    assert np.array_equal(
        ours.loc[prec, ["ci_low", "ci_high"]].to_numpy(), theirs.loc[prec, ["ci_low", "ci_high"]].to_numpy()
    )
    for p in run.results.uncapped.precision:
        q = evaluation.summary.model(label).at(p.k)
        assert (p.value, p.low, p.high, p.hits, p.phi) == (q.value, q.low, q.high, q.hits, q.phi)


def test_caps_are_respected_and_exposure_matches_an_independent_allocation(churn) -> None:
    log, evaluation, t = churn["log"], churn["evaluation"], churn["run"].results
    n = CHURN_CACHE["n"]
    cfg = EvalConfig.from_params(CHURN_EVALUATE)
    _, test = protocol_splits(log, cfg.quantile, cfg.validation, cfg.undated_policy)
    _, ranker_name, params = chosen_settings(evaluation.summary, cfg)
    ranker = fit_ranker(ranker_name, params, test, {}, cfg.seed)
    catalogue = ranker.history_.product_ids[ranker.history_.signal]
    candidates = ranker.rank(catalogue, 40)
    es, _ = build_eval_sets(test)
    reachable = es.customers.ids[np.unique(es.customers.codes(test.test["customer_id"].to_numpy()))]
    reachable = reachable[np.isin(reachable, ranker.history_.customer_ids)]
    assert t.reachable_customers == len(reachable) and t.catalogue_products == len(catalogue)
    for c in t.caps:
        recs = (
            truncate(candidates, n)
            if c.cap is None
            else allocate(candidates, ranker, n, AllocationParams(c.cap, 0, 40, seed=7)).recommendations
        )
        expected = rounded_exposure(exposure_metrics(recs, (10, 20), reachable=reachable, pairs=500, seed=7))
        assert c.exposure == expected, c.label
        assert c.audiences.slots == int(recs.sizes().sum()) == expected.at(20).slots
        if c.cap is not None:
            assert c.exposure.at(20).max_exposures <= c.cap
            assert c.audiences.score_share is not None and c.audiences.score_share <= 1.0
    capped = [c for c in t.caps if c.cap is not None]
    assert capped[0].exposure.at(20).distinct_customers <= capped[-1].exposure.at(20).distinct_customers
    assert t.uncapped.exposure.at(20).max_exposures > max(c.cap for c in capped if c.cap is not None)


def test_comparisons_are_one_holm_family_against_uncapped(churn) -> None:
    t = churn["run"].results
    comps = [c.comparison for c in t.caps if c.cap is not None]
    assert all(c is not None and c.b == "uncapped" and c.k == t.headline_k and c.purpose == ["cap"] for c in comps)
    raw = sorted((c.p_value, c.p_holm) for c in comps if c is not None)
    assert raw[0][1] == pytest.approx(min(1.0, len(comps) * raw[0][0]), rel=1e-5)  # Holm's first step: m * p
    for c in t.caps:
        if c.comparison is not None:
            assert (
                c.comparison.hits_a == c.at(t.headline_k).hits
                and c.comparison.hits_b == t.uncapped.at(t.headline_k).hits
            )
            assert c.status == status_of(c.comparison, t.alpha)


def test_outputs_are_written_once_and_read_back(churn) -> None:
    run, paths = churn["run"], churn["paths"]
    assert read_tradeoff(paths["results"]) == run.results
    table = pd.read_csv(paths["table"])
    assert list(table.columns) == [
        "cap",
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
    assert sorted(table["cap"].dropna().unique().tolist()) == [3, 8, 30] and table["cap"].isna().sum() == 3 * 6
    exposure = pd.read_csv(paths["exposure"])
    assert set(exposure["metric"]) >= {"distinct_customers", "max_exposures", "gini", "mean_jaccard", "full_share"}
    plot = pd.read_csv(paths["plots"])
    assert plot["cap"].tolist() == ["uncapped", "30", "8", "3"]
    assert {
        "log10_cap",
        "precision_at_10",
        "precision_at_10_low",
        "precision_at_10_high",
        "distinct_customers_at_10",
        "distinct_customers_at_20",
        "max_exposures_at_10",
        "max_exposures_at_20",
    } <= set(plot.columns)
    assert plot["log10_cap"].iloc[1:].tolist() == pytest.approx(np.log10([30, 8, 3]).tolist())
    metrics = json.loads(paths["metrics"].read_text())
    assert metrics["recommended_cap"] == run.results.recommendation.cap
    assert set(metrics["caps"]) == {"uncapped", "cap_30", "cap_8", "cap_3"}


def test_same_results_with_forked_workers(churn, tmp_path: Path) -> None:
    evaluation, log = churn["evaluation"], churn["log"]
    forked = run_tradeoff(evaluation.summary, log, CHURN_EVALUATE, {**CHURN_CAPS, "processes": 2}, CHURN_CACHE, {})
    assert forked.results.model_dump_json() == churn["run"].results.model_dump_json()
    assert forked.table.equals(churn["run"].table)


def test_the_report_section_and_plot_render(churn) -> None:
    t = churn["run"].results
    text = tradeoff_markdown(t)
    assert text.startswith("## Exposure caps: what a cap costs") and "**Recommended cap.**" in text
    assert recommendation_text(t) in text
    assert all(f"**cap {c}**" in text for c in (30, 8, 3))
    fig = plot_cap_tradeoff(t)
    assert len(fig.axes) == 3


def test_a_stale_summary_is_refused(churn) -> None:
    summary = churn["evaluation"].summary
    cfg = EvalConfig.from_params(CHURN_EVALUATE)
    with pytest.raises(ValueError, match=r"evaluate.ks: summary \[5, 10, 20\], params \[5, 10\]"):
        check_summary(
            summary, EvalConfig.from_params({**CHURN_EVALUATE, "ks": [5, 10], "tuning": {"objective": {"k": 10}}})
        )
    label = summary.default_ranker.label
    changed = {**CHURN_EVALUATE, "models": {**CHURN_EVALUATE["models"], label: {"ranker": label, "seed_offset": 1}}}
    with pytest.raises(ValueError, match=f"evaluate.models.{label} no longer matches"):
        chosen_settings(summary, EvalConfig.from_params(changed))
    chosen_settings(summary, cfg)  # the unchanged params pass


# ----------------------------------------------------------------------------------------------
# params
# ----------------------------------------------------------------------------------------------


def test_params_are_validated() -> None:
    assert TradeoffConfig.from_params({"caps": [50, None, 500]}).caps == (None, 500, 50)
    for block, match in (
        ({"caps": [50, 20]}, "must include null"),
        ({"caps": [None, 50, 50]}, "lists a cap twice"),
        ({"caps": [None, 0]}, "integers >= 1 or null"),
        ({"caps": [None, 2.5]}, "integers >= 1 or null"),
        ({"caps": []}, "non-empty list"),
        ({"keep_share": 0}, r"keep_share must be in \(0, 1\]"),
        ({"processes": 0}, "processes must be an integer >= 1"),
        ({"caps": [None]}, "at least one cap besides null"),
        ({"caps": [None, 500], "max_allowed_exposures": 100}, r"no cap within tradeoff.max_allowed_exposures=100"),
        ({"max_allowed_exposures": 0}, "max_allowed_exposures must be an integer >= 1 or null, got 0"),
        ({"cap": [None]}, r"unknown key\(s\) in params/evaluate.yaml: tradeoff: \['cap'\]"),
    ):
        with pytest.raises(ValueError, match=match):
            TradeoffConfig.from_params(block)
    served = ServedConfig.from_params(CHURN_CACHE)
    assert (served.depth, served.allocation.candidates, served.allocation.seed, served.exposure_ks) == (
        20,
        40,
        7,
        (10, 20),
    )
    with pytest.raises(ValueError, match=r"cache.allocation.candidates must be >= cache.n=20, got 10"):
        ServedConfig.from_params({**CHURN_CACHE, "allocation": {"candidates": 10}})
    with pytest.raises(ValueError, match=r"unknown key\(s\) in params/cache.yaml: cache.exposure"):
        ServedConfig.from_params({**CHURN_CACHE, "exposure": {"k": [10]}})


def test_select_blocks_keeps_order_and_cuts() -> None:
    recs = Recommendations(
        product_ids=np.array([7, 8, 9]),
        offsets=np.array([0, 3, 4, 6]),
        customer_ids=np.array([1, 2, 3, 4, 5, 6]),
        scores=np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4]),
        cold_start=np.array([False, True, False]),
    )
    out = select_blocks(recs, np.array([2, 0]), k=2)
    assert out.product_ids.tolist() == [9, 7] and out.offsets.tolist() == [0, 2, 4]
    assert out.customer_ids.tolist() == [5, 6, 1, 2] and out.cold_start.tolist() == [False, False]


# ----------------------------------------------------------------------------------------------
# the recommendation rule on constructed inputs
# ----------------------------------------------------------------------------------------------

BASE_HITS = 100.0


def result(
    cap: int | None, hits: float, p_holm: float = 1.0, powered: bool = False, short: int = 0, most: int | None = None
) -> CapResult:
    """A CapResult with the fields the rule reads (precision@10 = hits / 1000; `most` = largest exposure count)."""
    comparison = None
    if cap is not None:
        comparison = Comparison(
            a=f"cap_{cap}", b="uncapped", k=10, purpose=["cap"], hits_a=int(hits), hits_b=int(BASE_HITS),
            discordant=int(abs(BASE_HITS - hits)) + 2, discordant_customers=1, overdispersion=1.0,
            statistic=int(hits - BASE_HITS), difference=None, diff_low=None, diff_high=None, p_value=p_holm,
            p_method="exact", p_holm=p_holm, significant=p_holm < 0.05, mde_ratio=1.2 if powered else 9.0,
            mde_precision=None, powered=powered,
        )  # fmt: skip
    precision = [PrecisionAtK(k=10, value=hits / 1000, low=None, high=None, hits=hits, phi=1.0, boot_low=None,
                              boot_high=None)]  # fmt: skip
    most = most if most is not None else (cap if cap is not None else 10_000)
    at = ExposureAtK(10, 100, 10, most, 1.0, 1.0, 0.0, None, None, None)
    return CapResult(
        cap=cap,
        label="uncapped" if cap is None else f"cap_{cap}",
        precision=precision,
        recall=[],
        exposure=ExposureMetrics(10, 10, (at,), None, 10, 0, None),
        audiences=AudienceFacts(
            products=10,
            depth=10,
            slots=100 - short,
            full_share=1.0 - short / 10,
            short_products=short,
            min_size=10 - short,
            score_share=1.0,
        ),  # fmt: skip
        comparison=comparison,
        status=status_of(comparison, 0.05),
        precision_share=hits / BASE_HITS,
        uncapped_hits_over_cap=None,
    )


def test_rule_picks_the_smallest_cap_that_keeps_precision() -> None:
    caps = [
        result(None, BASE_HITS),
        result(500, 98, p_holm=0.8, powered=True),  # no detectable difference
        result(100, 92, p_holm=0.5, powered=True),  # keeps 92% >= 90%
        result(50, 70, p_holm=0.001, powered=True),  # significantly worse
        result(20, 95, p_holm=0.9, short=3),  # keeps precision but leaves 3 audiences short
    ]
    r = recommend(caps, 10, keep_share=0.9)
    assert (r.cap, r.basis, r.outcome) == (100, "precision", "cap_keeps_precision")
    assert (r.eligible, r.decisive, r.qualifying) == ([50, 100, 500], [50, 100, 500], [100, 500])
    assert recommend(caps, 10, keep_share=0.9, full_audiences=False).cap == 20  # short audiences allowed
    assert recommend(caps, 10, keep_share=0.95).cap == 500  # 92% is no longer enough


def test_rule_skips_a_cap_below_the_share_even_when_inconclusive() -> None:
    caps = [result(None, BASE_HITS), result(200, 95, p_holm=0.6, powered=True), result(50, 60, p_holm=0.2)]
    r = recommend(caps, 10, keep_share=0.9)
    assert (r.cap, r.outcome, r.qualifying) == (200, "cap_keeps_precision", [200])
    assert caps[2].status == "inconclusive"


def test_rule_falls_back_to_exposure_when_nothing_is_decisive() -> None:
    caps = [result(None, BASE_HITS), result(200, 40, p_holm=0.3), result(50, 10, p_holm=0.2), result(20, 0, short=4)]
    r = recommend(caps, 10, keep_share=0.9)
    assert (r.cap, r.basis, r.outcome, r.decisive, r.qualifying) == (50, "exposure", "precision_undetermined", [], [])
    assert r.best_detectable_ratio == 9.0  # the constructed comparisons could only detect a rate ratio of 9
    t = summary_of(caps, r)
    text = recommendation_text(t)
    assert "**the precision cost of the recommended cap is undetermined**" in text and "recommends **cap 50**" in text
    assert "could only detect a rate ratio of 9 or more, against a smallest effect of interest of 1.5" in text


def test_rule_recommends_no_cap_when_every_cap_is_significantly_worse() -> None:
    caps = [result(None, BASE_HITS), result(500, 60, p_holm=0.01), result(100, 30, p_holm=0.001)]
    r = recommend(caps, 10, keep_share=0.9)
    assert (r.cap, r.basis, r.outcome, r.qualifying, r.least_costly) == (
        None, "precision", "every_cap_costs_precision", [], 500
    )  # fmt: skip
    text = recommendation_text(summary_of(caps, r))
    assert "the rule recommends no cap (`cache.allocation.max_exposures: null`)" in text
    assert "The eligible cap that costs least is cap 500: 60.0% of the uncapped precision@10" in text


def test_rule_recommends_no_cap_when_every_cap_shortens_audiences() -> None:
    caps = [result(None, BASE_HITS), result(50, 100, short=1), result(20, 100, short=5)]
    r = recommend(caps, 10, keep_share=0.9)
    assert (r.cap, r.basis, r.outcome, r.eligible) == (None, "audiences", "no_cap_keeps_audiences", [])
    with pytest.raises(ValueError, match="needs the uncapped result"):
        recommend(caps[1:], 10, keep_share=0.9)
    with pytest.raises(ValueError, match=r"keep_share must be in \(0, 1\]"):
        recommend(caps, 10, keep_share=1.5)


def summary_of(caps: list[CapResult], r: Any) -> TradeoffResults:
    """Trade-off results around constructed caps (the fields the text reads)."""
    return TradeoffResults(
        model="content", ranker="content", params={}, headline_k=10, ks=[10], level=0.95, alpha=0.05, power=0.8,
        smallest_effect_ratio=1.5, depth=10, candidates=30, min_audience=0, allocation_seed=0, catalogue_products=10,
        fit_customers=100, reachable_customers=10, evaluated_products=10, products_with_truth=10, caps=caps,
        recommendation=r,
    )  # fmt: skip


def test_summary_checks_the_served_cap_against_the_recommendation() -> None:
    caps = [result(None, BASE_HITS), result(200, 95, p_holm=0.6, powered=True)]
    t = summary_of(caps, recommend(caps, 10, keep_share=0.9))
    same = cap_check_markdown(t, {"allocation": {"max_exposures": 200}, "ranker": "content"})
    assert "The cache serves cap 200" in same and "this is the recommended cap." in same
    other = cap_check_markdown(t, {"allocation": {"max_exposures": None}, "ranker": "als"})
    assert "**they differ** — set `cache.allocation.max_exposures: 200`" in other
    assert "measured on ranker `content`, not on the served `als`" in other
    assert "not checked" in cap_check_markdown(None, {"allocation": {"max_exposures": 50}})


def test_rule_with_a_campaign_limit_recommends_the_loosest_allowed_cap_and_states_its_cost() -> None:
    caps = [result(None, BASE_HITS), result(500, 60, p_holm=0.01), result(100, 30, p_holm=0.001), result(50, 20)]
    r = recommend(caps, 10, keep_share=0.9, max_allowed_exposures=200)
    assert (r.cap, r.basis, r.outcome, r.eligible, r.max_allowed_exposures, r.limit_binds) == (
        100, "limit", "limit_costs_precision", [50, 100], 200, True
    )  # fmt: skip
    assert r.cap_without_limit is None  # without the limit every eligible cap costs precision: no cap
    text = recommendation_text(summary_of(caps, r))
    assert "No eligible cap (the caps with no customer in more than 200 lists and every audience as long as " in text
    assert "the uncapped lists put one customer in 10,000 lists" in text
    assert "recommends the loosest eligible cap, **cap 100**" in text and "30.0% of the uncapped point estimate" in text
    assert text.endswith("Without the campaign limit the rule would recommend uncapped.")
    assert "The campaign limit (200 lists per customer) is a params assumption; it binds" in rule_text(r)


def test_rule_with_a_campaign_limit_still_prefers_a_cap_that_keeps_precision() -> None:
    caps = [
        result(None, BASE_HITS),
        result(500, 98, p_holm=0.8, powered=True),
        result(100, 92, p_holm=0.5, powered=True),
    ]
    r = recommend(caps, 10, keep_share=0.9, max_allowed_exposures=1000)
    assert (r.cap, r.outcome, r.cap_without_limit) == (100, "cap_keeps_precision", 100)
    assert "Without the campaign limit" not in recommendation_text(summary_of(caps, r))  # it changed nothing
    with pytest.raises(ValueError, match=r"no tested cap is within tradeoff.max_allowed_exposures=50: add a cap <= 50"):
        recommend(caps, 10, keep_share=0.9, max_allowed_exposures=50)
    with pytest.raises(ValueError, match="max_allowed_exposures must be >= 1 or null, got 0"):
        recommend(caps, 10, keep_share=0.9, max_allowed_exposures=0)


def test_a_limit_the_uncapped_lists_already_meet_does_not_bind() -> None:
    caps = [result(None, BASE_HITS, most=80), result(50, 40, p_holm=0.001), result(20, 10, p_holm=0.001)]
    r = recommend(caps, 10, keep_share=0.9, max_allowed_exposures=100)
    assert (r.cap, r.outcome, r.limit_binds) == (None, "every_cap_costs_precision", False)
    assert "it does not bind" in rule_text(r)


def test_a_limit_binds_by_realised_exposures_and_shortened_audiences_are_stated() -> None:
    # cap 200 never put anyone in more than 90 lists: it is within a limit of 100
    caps = [result(None, BASE_HITS), result(200, 99, p_holm=0.9, powered=True, most=90), result(50, 40, short=2)]
    assert recommend(caps, 10, keep_share=0.9, max_allowed_exposures=100).cap == 200
    short = [result(None, BASE_HITS), result(100, 95, short=1), result(50, 90, short=3)]
    r = recommend(short, 10, keep_share=0.9, max_allowed_exposures=100)
    assert (r.cap, r.outcome) == (100, "limit_shortens_audiences")
    assert "**cap 100** (1 audiences shorter than uncapped, the shortest 9)" in recommendation_text(
        summary_of(short, r)
    )


def test_a_cap_keeping_exactly_the_share_qualifies() -> None:
    caps = [result(None, BASE_HITS), result(100, 90, p_holm=0.5, powered=True)]  # 0.09 vs 0.9 * 0.1 in floats
    assert recommend(caps, 10, keep_share=0.9).outcome == "cap_keeps_precision"
