"""Tuning search: grids and their unions, the budget's seeded sample, re-scored keys without refitting, tie-breaks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from recsys.evaluation.tuning import TrialScore, best_trial, grid_points, search, set_path, with_values


class FakeALS:
    """Stands in for a fitted ALS ranker: records its fit and every train_more call."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = dict(params)
        self.calls = [int(params["iterations"])]

    def train_more(self, n: int) -> FakeALS:
        self.params["iterations"] += n
        self.calls.append(n)
        return self


def test_als_iterations_are_rescored_on_one_fit_per_grid_point() -> None:
    fits: list[FakeALS] = []

    def fit(params: Mapping[str, Any]) -> FakeALS:
        fits.append(FakeALS(params))
        return fits[-1]

    def score(r: Any) -> TrialScore:
        return TrialScore(
            objective=r.params["factors"] * 100 + r.params["iterations"], hits_objective_k=1, hits_headline_k=0
        )

    space = {"factors": [4, 8], "iterations": [10, 5, 20]}
    res = search("als", "als", {"factors": 16, "iterations": 99}, space, budget=5, seed=0, fit=fit, score=score)
    assert [f.calls for f in fits] == [[5, 5, 10], [5, 5, 10]]  # fitted at 5 iterations, then continued to 10 and 20
    assert [t[0] for t in res.trials] == [{"factors": f, "iterations": i} for f in (4, 8) for i in (5, 10, 20)]
    assert res.fits == 2 and res.grid_size == 6
    assert res.chosen_values == {"factors": 8, "iterations": 20}


def test_union_of_grids_and_seeded_budget_sample() -> None:
    grids: list[dict[str, list[Any]]] = [
        {"similarity": ["cosine"], "K": [10, 20]},
        {"similarity": ["bm25"], "K": [10], "B": [0.5, 0.75]},
    ]
    points, size = grid_points(grids, budget=10, seed=1, label="itemknn")
    assert size == 4 and [p for _, p in points] == [
        {"similarity": "cosine", "K": 10},
        {"similarity": "cosine", "K": 20},
        {"similarity": "bm25", "K": 10, "B": 0.5},
        {"similarity": "bm25", "K": 10, "B": 0.75},
    ]
    sample, _ = grid_points(grids, budget=3, seed=1, label="itemknn")
    assert sample == grid_points(grids, budget=3, seed=1, label="itemknn")[0] and len(sample) == 3
    assert sample == sorted(sample, key=points.index)  # kept in grid order
    seen = {tuple(sorted(p.items())) for s in range(20) for _, p in grid_points(grids, 3, s, "itemknn")[0]}
    assert len(seen) == 4  # different seeds reach every grid point


def test_search_space_errors_and_empty_space() -> None:
    def fit(params: Mapping[str, Any]) -> dict[str, Any]:
        return dict(params)

    def score(r: Any) -> TrialScore:
        return TrialScore(0.0, 0, 0)

    with pytest.raises(ValueError, match=r"evaluate.models.knn.search\[1\].K must be a non-empty list"):
        search("knn", "itemknn", {}, [{"K": [1]}, {"K": []}], 4, 0, fit, score)
    with pytest.raises(ValueError, match="budget must be >= 1"):
        grid_points([{"K": [1]}], 0, 0, "knn")
    res = search("popularity", "popularity", {"x": 1}, {}, 4, 0, fit, score)
    assert len(res.trials) == 1 and res.chosen_values == {} and res.space == [{}]


def test_best_trial_breaks_ties_by_headline_hits_then_order() -> None:
    trials = [
        ({"a": 1}, TrialScore(2.0, 5, 1)),
        ({"a": 2}, TrialScore(2.0, 5, 3)),
        ({"a": 3}, TrialScore(2.0, 5, 3)),
        ({"a": 4}, TrialScore(float("nan"), 0, 9)),
    ]
    assert best_trial(trials) == 1


def test_dotted_keys_reach_nested_blocks() -> None:
    base: dict[str, Any] = {"engagement": {"normalisation": "log1p_minmax", "weights": {"recency": 0.1}}, "k": 1}
    out = with_values(base, {"engagement.normalisation": "minmax", "features.decay_days": 30})
    assert out == {
        "engagement": {"normalisation": "minmax", "weights": {"recency": 0.1}},
        "k": 1,
        "features": {"decay_days": 30},
    }
    assert base["engagement"]["normalisation"] == "log1p_minmax"  # not mutated
    assert set_path({}, "a.b.c", 1) == {"a": {"b": {"c": 1}}}
