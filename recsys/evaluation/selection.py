"""What to serve, chosen on the validation window: the typed ``Selection`` the cache and the service build.

Rule (``choose``): the model with the best validation objective (``evaluate.tuning.objective``, by default
precision at the headline k = the served depth), ties broken by more validation hits, then by the order of
params/evaluate.yaml. The random ranker is never chosen. Products with a history and new products (no fit rows,
ranked from their catalogue name) are chosen separately: the best model for one need not be the best for the other.
The test window never picks: it is scored once and only confirms (``EvaluationSummary.default_ranker``).

Every setting is recorded as the exact params ``make_ranker`` gets (defaults filled in by the ranker's settings
model), so ``make_ranker(selected.ranker, selected.settings)`` rebuilds the evaluated model; the cache stage reads
``selection.json`` as a DVC dependency instead of repeating settings in params/cache.yaml.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from recsys.evaluation.metrics import METRICS
from recsys.evaluation.results import NON_DEPLOYABLE, SelectedModel, Selection, ValidationScore, num
from recsys.evaluation.scoring import Scored
from recsys.rankers import make_ranker

RULE = (
    "best validation {metric}@{k} (macro over the validation window's products), ties: more validation hits, then "
    "the order of params/evaluate.yaml; the random ranker and the truth reference are never chosen; the test window "
    "only confirms"
)


def validation_score(
    label: str, ranker: str, scored: Scored, metric_index: int, k_index: int, k: int
) -> ValidationScore:
    """A model's validation objective and hits from its scores on a validation set."""
    values = scored.values[metric_index, k_index]
    value = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    return ValidationScore(
        label=label,
        ranker=ranker,
        metric=METRICS[metric_index],
        k=k,
        value=num(value),
        hits=int(scored.hits.at(k).count),
    )


def choose(scores: Sequence[ValidationScore]) -> list[str]:
    """Labels best first by the selection rule (module docstring); random rankers excluded."""
    eligible = [(i, s) for i, s in enumerate(scores) if s.ranker not in NON_DEPLOYABLE]

    def key(item: tuple[int, ValidationScore]) -> tuple[float, int, int]:
        i, s = item
        value = s.value if s.value is not None else -np.inf
        return (-value, -s.hits, i)

    return [s.label for _, s in sorted(eligible, key=key)]


def jsonable(value: Any) -> Any:
    """Settings made JSON-safe (numpy scalars to Python, tuples to lists)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def resolved_settings(ranker: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting the ranker is built with (its settings model fills the defaults), JSON-safe."""
    built = make_ranker(ranker, params)
    return dict(jsonable(getattr(built, "params", dict(params))))


def selected(score: ValidationScore, params: Mapping[str, Any]) -> SelectedModel:
    """The selection record of one model."""
    return SelectedModel(
        label=score.label, ranker=score.ranker, settings=resolved_settings(score.ranker, params), validation=score
    )


def build_selection(
    dataset: str | None,
    metric: str,
    objective_k: int,
    headline_k: int,
    scores: Sequence[ValidationScore],
    params: Mapping[str, Mapping[str, Any]],
    new_scores: Sequence[ValidationScore],
    new_params: Mapping[str, Mapping[str, Any]],
) -> Selection:
    """The selection from validation scores and each model's make_ranker params (known and new products)."""
    ranking = choose(scores)
    if not ranking:
        raise ValueError("no deployable model was scored on validation: enable at least one non-random model")
    by = {s.label: s for s in scores}
    new_ranking = choose(new_scores)
    new_by = {s.label: s for s in new_scores}
    return Selection(
        dataset=dataset,
        rule=RULE.format(metric=metric, k=objective_k),
        headline_k=headline_k,
        products=selected(by[ranking[0]], params[ranking[0]]),
        runner_up=selected(by[ranking[1]], params[ranking[1]]) if len(ranking) > 1 else None,
        new_products=selected(new_by[new_ranking[0]], new_params[new_ranking[0]]) if new_ranking else None,
        new_products_runner_up=selected(new_by[new_ranking[1]], new_params[new_ranking[1]])
        if len(new_ranking) > 1
        else None,
    )
