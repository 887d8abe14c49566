"""Generated text from a hand-made typed summary: the summary table, the default-ranker sentence, verdict prose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recsys.cache.checks import CacheChecks
from recsys.cache.manifest import AllocationInfo, AllocationStats, MeasuredPrecision, ServedFigures
from recsys.evaluation import report
from recsys.evaluation.results import (
    Comparison,
    Coverage,
    DefaultChoice,
    EvaluationSummary,
    KVerdict,
    ModelResult,
    PrecisionAtK,
    Protocol,
    Reference,
    SplitFacts,
    Trial,
    Tuning,
    UndatedFacts,
    read_summary,
    write_summary,
)
from recsys.reporting.summary import summary_markdown


def prec(k: int, value: float, hits: float, low: float | None = None, high: float | None = None) -> PrecisionAtK:
    """A precision record (interval = value / 2 .. value * 2 unless given)."""
    return PrecisionAtK(
        k=k,
        value=value,
        low=value / 2 if low is None else low,
        high=value * 2 if high is None else high,
        hits=hits,
        phi=1.0,
        boot_low=None,
        boot_high=None,
    )


def split(name: str) -> SplitFacts:
    """Split facts with round numbers."""
    return SplitFacts(
        name=name,
        cutoff="2023-03-14T20:21:04+00:00",
        end=None,
        window_days=17.2,
        fit_rows=1000,
        truth_rows=200,
        exclude_rows=10,
        fit_customers=500,
        truth_customers=150,
        truth_customers_unseen=120,
        truth_customers_unseen_share=0.8,
        truth_products=90,
        truth_products_unseen=40,
        evaluated_products=50,
        evaluated_with_truth=50,
        ranked_products=12,
        new_products=40,
        relevant_pairs=100,
        reachable_pairs=20,
        truth_dispersion=1.2,
    )


def summary(
    significant: bool = True, verdicts: tuple[str, ...] = ("inconclusive", "inconclusive")
) -> EvaluationSummary:
    """A small summary: content leads, als vs activity is the verdict pair at k = 10 and 100."""
    models = [
        ModelResult(
            label="content",
            ranker="content",
            group="content",
            tuned=True,
            params={"affinity_weight": 0.5},
            validation_objective=3e-5,
            precision=[prec(10, 0.004, 2), prec(100, 0.001, 5)],
        ),
        ModelResult(
            label="activity",
            ranker="activity",
            group="engagement",
            tuned=True,
            params={"engagement.normalisation": "minmax"},
            validation_objective=1e-5,
            precision=[prec(10, 0.002, 1), prec(100, 0.0006, 3)],
        ),
        ModelResult(
            label="als",
            ranker="als",
            group="cf",
            tuned=True,
            params={"factors": 32, "iterations": 10},
            validation_objective=8e-6,
            precision=[prec(10, 0.0, 0, 0.0, 0.0074), prec(100, 0.0004, 2)],
        ),
        ModelResult(
            label="random",
            ranker="random",
            group="baseline",
            tuned=False,
            params={},
            validation_objective=None,
            precision=[prec(10, 0.0, 0, 0.0, 0.0074), prec(100, 0.0, 0, 0.0, 0.00074)],
        ),
    ]
    refs = [
        Reference(label="random_expected", precision=[prec(10, 1e-4, 0.05, None, None), prec(100, 1e-4, 0.5)]),
        Reference(label="oracle", precision=[prec(10, 0.04, 20), prec(100, 0.004, 20)]),
    ]
    comps = [
        Comparison(
            a="als",
            b="activity",
            k=k,
            purpose=["verdict"],
            hits_a=0,
            hits_b=1,
            discordant=1,
            discordant_customers=1,
            overdispersion=1.0,
            statistic=-1,
            difference=-0.002,
            diff_low=-0.006,
            diff_high=0.0,
            p_value=1.0,
            p_method="exact",
            p_holm=1.0,
            significant=False,
            mde_ratio=None,
            mde_precision=None,
            powered=False,
        )
        for k in (10, 100)
    ] + [
        Comparison(
            a="content",
            b="activity",
            k=10,
            purpose=["default_ranker"],
            hits_a=2,
            hits_b=1,
            discordant=3,
            discordant_customers=3,
            overdispersion=1.0,
            statistic=1,
            difference=0.002,
            diff_low=-0.002,
            diff_high=0.006,
            p_value=0.01 if significant else 0.6,
            p_method="exact",
            p_holm=0.03 if significant else 1.0,
            significant=significant,
            mde_ratio=None,
            mde_precision=None,
            powered=False,
        )
    ]
    kv = [
        KVerdict(k=k, verdict=v, cf_model="als", engagement_model="activity", discordant=h, discordant_customers=h)
        for k, v, h in zip((10, 100), verdicts, (1, 5), strict=True)
    ]
    return EvaluationSummary(
        protocol=Protocol(
            test_quantile=0.8,
            validation="matched",
            undated_policy="exclude_only",
            truth_events=None,
            ks=[10, 100],
            headline_k=10,
            objective_metric="precision",
            objective_k=100,
            tuning_budget={"default": 4},
            tuning_seed=42,
            seed=42,
            level=0.95,
            n_boot=100,
            alpha=0.05,
            power=0.8,
            smallest_effect_ratio=1.5,
            cf_models=["als"],
            engagement_models=["activity"],
        ),
        splits=[split("validation"), split("test")],
        undated=UndatedFacts(
            policy="exclude_only",
            undated_rows=10,
            undated_customers=9,
            customers_known_only_undated=5,
            known_only_undated_truth_customers=2,
            excluded_truth_pairs=1,
        ),
        models=models,
        references=refs,
        tuning=[
            Tuning(
                model="als",
                space=[{"factors": [16, 32]}],
                grid_size=2,
                fits=2,
                trials=[
                    Trial(
                        index=0,
                        params={"factors": 16},
                        objective=5e-6,
                        hits_objective_k=2,
                        hits_headline_k=0,
                        chosen=False,
                    ),
                    Trial(
                        index=1,
                        params={"factors": 32},
                        objective=8e-6,
                        hits_objective_k=3,
                        hits_headline_k=1,
                        chosen=True,
                    ),
                ],
                chosen={"factors": 32},
            )
        ],
        comparisons=comps,
        verdicts=kv,
        overall=report.overall_sentence(kv),
        random_coverage=[
            Coverage(k=10, expected=1e-4, low=0.0, high=0.0074, covers=True),
            Coverage(k=100, expected=1e-4, low=0.0, high=0.00074, covers=True),
        ],
        default_ranker=DefaultChoice(
            k=10,
            label="content",
            ranker="content",
            value=0.004,
            low=0.002,
            high=0.008,
            leads_at_k=[10, 100],
            runner_up="activity",
            p_holm=0.03 if significant else 1.0,
            significant=significant,
        ),
        skipped_models={},
        slice_shares={"test_rows": {"0": 0.8, "1": 0.15, "2+": 0.05}},
        case_study=None,
    )


EXPLORE = {
    "rows": 1000,
    "users": 800,
    "products": 300,
    "source": "synthetic",
    "scale": 0.01,
    "one_time_users_pct": 89.0,
    "retention_pct": 3.0,
    "new_products_pct": 57.0,
    "split_cutoff": "2023-03-14T20:21:04+00:00",
}


def cache_checks(ranker: str = "activity", served: ServedFigures | None = None, cap: int | None = None) -> CacheChecks:
    """The cache stage's checks with only what the summary reads (model_construct: no other field is needed)."""
    fields: dict[str, Any] = {
        "dataset": "synthetic",
        "ranker": ranker,
        "n": 100,
        "candidate_depth": 300,
        "products": 300,
        "exclusion_violations": 0,
        "allocation": AllocationInfo(
            max_exposures=cap, min_audience=0, depth=100, seed=0, stats=AllocationStats(capped=cap is not None)
        ),
        "served": served
        or ServedFigures(
            status="measured",
            what="test-window precision of activity",
            source="reports/datasets/synthetic/evaluation/summary.json",
            model="activity",
            precision=[MeasuredPrecision(k=100, value=0.002, low=0.001, high=0.004, hits=60)],
        ),
    }
    return CacheChecks.model_construct(**fields)


CACHE = cache_checks()


def test_summary_table_lists_every_model_with_interval_hits_and_settings() -> None:
    text = summary_markdown(summary(), EXPLORE, CACHE)
    assert "| content | content | 0.004 [0.002, 0.008] | 2 | fixed |" in text  # no search record: fixed in params
    assert "| als | cf | 0 [0, 0.0074] | 0 | factors=32 |" in text
    assert "| random (exact expectation) | reference | 0.0001 | 0.05 expected | |" in text
    assert "k=10 inconclusive (1 discordant hits); k=100 inconclusive (5 discordant hits)" in text
    assert "**the evaluation recommends `content`**" in text
    assert "random ranker's interval covers its exact expectation at every k" in text
    agreeing = summary_markdown(summary(), EXPLORE, cache_checks("content"))
    assert "this is the ranker the evaluation recommends" in agreeing
    assert "Measured precision of the served configuration: precision@100 0.002 [0.001, 0.004] (60 hits)" in text
    capped = summary_markdown(
        summary(),
        EXPLORE,
        cache_checks(
            cap=50,
            served=ServedFigures(status="not_measured", what="activity under cap 50", reason="no study measures it"),
        ),
    )
    assert "capped catalogue-wide at 50" in capped and "**not measured** (no study measures it)" in capped
    assert "Measured precision" not in capped  # never another configuration's figures under "served"


def test_default_ranker_says_what_the_test_window_says_of_the_validation_choice() -> None:
    confirmed = report.default_ranker_markdown(summary(significant=True))
    assert "Chosen on the validation window" in confirmed
    assert "confirms its lead over the validation runner-up activity (Holm p = 0.03)" in confirmed
    text = report.default_ranker_markdown(summary(significant=False))
    assert "cannot tell it from the validation runner-up activity (Holm p = 1)" in text


def test_prose_follows_the_verdict_data() -> None:
    s = summary(verdicts=("cf_better", "no_detectable_difference"))
    assert "CF better at k=10; no detectable difference at k=100" in s.overall
    assert "- k=10: als vs activity: **CF better**" in report.verdicts_markdown(s)
    assert "because" not in report.report_markdown(s)  # no causal claim is ever generated
    assert report.report_markdown(s).index("## Protocol") < report.report_markdown(s).index("## Data")


def test_summary_round_trips_through_json(tmp_path: Path) -> None:
    s = summary()
    path = write_summary(s, tmp_path / "summary.json")
    assert read_summary(path) == s
    with pytest.raises(FileNotFoundError, match="recsys evaluate"):
        read_summary(tmp_path / "missing.json")
