"""Generated report text: default-ranker choice and the summary table on hand-made evaluation tables."""

from __future__ import annotations

import pandas as pd

from recsys.reporting.summary import choose_default_ranker, precision_wide, summary_markdown


def table() -> pd.DataFrame:
    """precision and lift at k=5, 10 for two deployable models, random and the references."""
    rows = []
    values = {"content": (0.004, 0.003), "activity": (0.002, 0.002), "random": (0.0, 0.0), "random_expected": (0.0001, 0.0001), "oracle": (0.05, 0.03)}
    for model, (p5, p10) in values.items():
        for k, p in ((5, p5), (10, p10)):
            rows.append({"model": model, "k": k, "metric": "precision", "value": p, "ci_low": p / 2, "ci_high": p * 2, "n_products": 100})
            if model not in ("random_expected", "oracle"):
                rows.append({"model": model, "k": k, "metric": "lift", "value": p / 0.0001, "ci_low": 1.0, "ci_high": 50.0, "n_products": 100})
    return pd.DataFrame(rows)


METRICS = {
    "headline_k": 10,
    "model_params": {"content": {"ranker": "content"}, "activity": {"ranker": "activity"}},
    "differences": {"content-activity@10": {"value": 0.001, "ci_low": 0.0002, "ci_high": 0.002}},
    "hits": {"content": {"hits@10": 3.0}},
    "split": {"quantile": 0.8, "cutoff": "2023-03-14T00:00:00+00:00", "test_users_unseen_share": 0.865},
    "products": {"evaluated": 100, "relevant_pairs": 500, "relevant_pairs_reachable": 70},
}


def test_best_deployable_model_is_recommended_never_a_reference() -> None:
    choice = choose_default_ranker(table(), METRICS, 10)
    assert choice["recommended"] == "content" and choice["leads_at_k"] == [5, 10]
    assert choice["significant_margin"] is True
    assert "a clear margin" in choice["text"] and "oracle" not in choice["text"].split("recommends")[1]


def test_not_significant_margin_is_said() -> None:
    metrics = {**METRICS, "differences": {"content-activity@10": {"value": 0.001, "ci_low": -0.0001, "ci_high": 0.002}}}
    choice = choose_default_ranker(table(), metrics, 10)
    assert choice["significant_margin"] is False and "not significant" in choice["text"]


def test_precision_wide_has_one_column_per_model() -> None:
    wide = precision_wide(table())
    assert list(wide["k"]) == [5, 10]
    assert wide.loc[wide["k"] == 10, "content"].item() == 0.003


def test_summary_reports_disagreement_with_the_cache() -> None:
    metrics = {**METRICS, "default_ranker": choose_default_ranker(table(), METRICS, 10)}
    explore = {"rows": 1000, "users": 800, "products": 300, "source": "synthetic", "scale": 0.01,
               "one_time_users_pct": 89.0, "retention_pct": 3.0, "new_products_pct": 57.0}
    cache = {"ranker": "activity", "n": 100, "products": 300, "exclusion_violations": 0}
    text = summary_markdown(table(), metrics, explore, cache, "x\nVerdict at k=10: something\n")
    assert "| content | 0.003 [0.0015, 0.006] | 30 [1, 50] | 3 |" in text
    assert "**the evaluation recommends `content`**" in text
    assert "Verdict at k=10: something" in text
    agreeing = summary_markdown(table(), metrics, explore, {**cache, "ranker": "content"})
    assert "this is the ranker the evaluation recommends" in agreeing
