"""The generator-sensitivity sweep: grid enumeration, params errors, settings reuse, the conditions' wording."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

from recsys import config
from recsys.data.synthetic import generate_log
from recsys.evaluation import sensitivity as S
from recsys.evaluation.run import quick_params, run_evaluation

BLOCK: dict[str, Any] = {
    "scale": 0.02,
    "seed": 3,
    "settings_from": "synthetic",
    "models": ["random", "popularity", "activity", "content", "als"],
    "n_boot": 50,
    "base": {"category_loyalty": 0.7, "name_signal": 1.0, "retention": None},
    "grid": [
        {"name": "loyalty", "vary": {"category_loyalty": [0.0, 0.7], "name_signal": [1.0, 0.0]}},
        {"name": "retention", "vary": {"retention": [0.05, 0.3]}},
    ],
}


def test_points_enumerate_each_block_over_the_base() -> None:
    cfg = S.SweepConfig.from_params(BLOCK)
    points = S.sweep_points(cfg)
    assert [a for a, _ in points] == ["loyalty"] * 4 + ["retention"] * 2
    assert points[0][1] == {"category_loyalty": 0.0, "name_signal": 1.0, "retention": None}
    assert points[3][1] == {"category_loyalty": 0.7, "name_signal": 0.0, "retention": None}
    assert points[5][1] == {"category_loyalty": 0.7, "name_signal": 1.0, "retention": 0.3}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"grid": []}, "sensitivity.grid is empty"),
        ({"grid": [{"name": "x", "vary": {"loyalty": [0.1]}}]}, r"grid\[0\].vary must set some of"),
        ({"models": []}, "sensitivity.models is empty"),
        ({"scale": 0}, r"sensitivity.scale must be in \(0, 10\]"),
        ({"base": {"colour": 1}}, r"sensitivity.base has unknown setting\(s\) \['colour'\]"),
        ({"sweep": 1}, r"unknown key\(s\) in sensitivity: \['sweep'\]"),
        ({"processes": 0}, "sensitivity.processes must be an integer >= 1, got 0"),
    ],
)
def test_bad_params_name_the_key(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        S.SweepConfig.from_params({**BLOCK, **change})


def test_unflatten_writes_dotted_settings_back() -> None:
    spec = {"ranker": "activity", "engagement": {"normalisation": "log1p_minmax"}, "search": {"x": [1]}}
    out = S.unflatten_into(spec, {"engagement.normalisation": "minmax", "ranker": "activity", "seed": 1})
    assert out == {"ranker": "activity", "engagement": {"normalisation": "minmax"}}


def point(
    loyalty: float,
    signal: float,
    leader: str,
    significant: bool,
    verdict: str,
    retention: float = 3.0,
    axis: str = "loyalty",
) -> S.SweepPoint:
    """A hand-made point."""
    return S.SweepPoint(
        axis=axis,
        category_loyalty=loyalty,
        name_signal=signal,
        retention=None,
        measured_retention_pct=retention,
        rows=100,
        evaluated_products=10,
        reachable_pairs=5,
        models=[],
        random_expected=1e-6,
        leader=leader,
        leader_significant=significant,
        runner_up="activity",
        verdicts=[S.PointVerdict(k=10, verdict=verdict, cf_model="als", engagement_model="popularity", discordant=7)],
        overall="",
    )


def test_conditions_state_where_each_verdict_holds() -> None:
    points = [
        point(0.0, 1.0, "activity", False, "inconclusive"),
        point(0.35, 1.0, "content", True, "inconclusive"),
        point(0.7, 1.0, "content", True, "engagement_better"),
        point(0.0, 0.0, "activity", False, "inconclusive"),
        point(0.7, 0.0, "popularity", False, "inconclusive"),
        point(0.7, 1.0, "popularity", False, "inconclusive", retention=15.0, axis="retention"),
        point(0.7, 1.0, "content", True, "inconclusive", retention=3.0, axis="retention"),
    ]
    summary = S.SensitivitySummary(
        scale=0.5,
        seed=1,
        settings_from="synthetic",
        headline_k=10,
        models=["content"],
        cf_model="als",
        engagement_model="popularity",
        points=points,
        conditions=[],
    )
    text = S.conditions(summary)
    assert (
        "With informative names: content leads precision@10 significantly (Holm) only when category loyalty "
        ">= 0.35; it has the highest point estimate only when category loyalty >= 0.35."
    ) in text
    assert (
        "With informative names: CF (als) vs engagement (popularity) at k=10 is 'engagement better' only when "
        "category loyalty >= 0.7 (7 discordant hits behind the comparison)."
    ) in text
    assert (
        "With shuffled names: CF (als) vs engagement (popularity) at k=10 is 'inconclusive' at every setting "
        "(7 discordant hits behind the comparison)."
    ) in text
    assert any(
        t.startswith(
            "Across retention (default loyalty and names): content leads precision@10 significantly "
            "(Holm) only when retention <= 3%"
        )
        for t in text
    )
    assert not any("shuffled names: content" in t for t in text)  # content never led there


def test_a_tiny_sweep_runs_the_evaluation_with_reused_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = generate_log(scale=0.02, seed=4).frame
    from recsys.data.contract import PRESETS, load_prepared
    from recsys.data.prepare import prepare
    from recsys.data.synthetic import write_case_study_csv

    write_case_study_csv(frame, tmp_path / "raw.csv")
    prepare(tmp_path / "raw.csv", tmp_path / "p.parquet", PRESETS["case_study"])
    evaluate = quick_params(config.load_params("evaluate"))
    tuned = run_evaluation(evaluate, interactions=load_prepared(tmp_path / "p.parquet"), write=False).summary
    block = {**BLOCK, "grid": [{"name": "loyalty", "vary": {"category_loyalty": [0.0, 0.7]}}]}
    summary = S.run_sweep({"sensitivity": block}, evaluate, config.load_params("features"), tuned)
    assert [p.category_loyalty for p in summary.points] == [0.0, 0.7]
    assert {m.label for m in summary.points[0].models} == set(BLOCK["models"])
    chosen = {m.label: m.params for m in tuned.models}
    assert summary.cf_model in BLOCK["models"] and summary.engagement_model in BLOCK["models"]
    assert chosen  # the tuned summary the sweep reused
    paths = S.write_outputs(summary, tmp_path / "out")
    again = S.read_sensitivity(paths["summary"])
    assert again == summary and paths["loyalty_informative_names"].is_file()
    assert (tmp_path / "out" / "points.csv").read_text().count("\n") == 1 + 2 * len(BLOCK["models"])
    started: list[str] = []
    real_context = multiprocessing.get_context

    def spy(method: str | None = None) -> Any:
        started.append(str(method))
        return real_context(method)

    monkeypatch.setattr(multiprocessing, "get_context", spy)  # recsys.parallel calls it through the module
    parallel_run = S.run_sweep(
        {"sensitivity": {**block, "processes": 2}}, evaluate, config.load_params("features"), tuned
    )
    assert parallel_run == summary  # points are independent and seeded: the same results in two processes
    assert started == ["spawn"]  # in a pool of fresh interpreters (the parent has run ALS: OpenMP is not fork-safe)
