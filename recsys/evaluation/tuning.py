"""Hyper-parameter search on the validation split (never on test).

Each model of ``evaluate.models`` may list a ``search`` space next to its params: key -> candidate
values (dotted keys reach nested blocks, e.g. ``engagement.normalisation``). The grid is the
Cartesian product of the lists in the order written; a list of such mappings is the union of their
grids (for conditional keys, e.g. BM25's K1 and B only with ``similarity: bm25``).
``evaluate.tuning.budget`` bounds the number of fits per model: a grid of at most ``budget`` fits is
searched fully, a larger one by a seeded random sample of ``budget`` grid points (seed =
``evaluate.tuning.seed`` and the model's label).

Keys that need no refit do not count against the budget, and every value of them is scored for every fit:
the ranker's knobs (top-level settings listed in its ``knobs``, e.g. ``affinity_weight`` and ``token_user_cap``
of ``content``, ``neighbours`` of ``name_knn``: a fitted ranker is re-scored with ``with_params``, which equals a
refit exactly) and ``iterations`` of ``als`` (``RESCORE_KEYS``: implicit continues the same factorisation,
identical to a fresh fit with more iterations). The budget bounds the fits: the combinations of the other keys.

Objective: ``evaluate.tuning.objective`` (metric and k, macro over the validation products); ties go
to more validation hits at the headline k, then to the earlier trial. Every trial's objective and
hits are kept in the results.
"""

from __future__ import annotations

import copy
import itertools
import logging
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.evaluation.metrics import METRICS

log = logging.getLogger(__name__)

RESCORE_KEYS: dict[str, str] = {"als": "iterations"}


def set_path(params: Mapping[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A deep copy of params with a dotted key set (intermediate blocks are created)."""
    out = copy.deepcopy(dict(params))
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        node[part] = dict(child) if isinstance(child, Mapping) else {}
        node = node[part]
    node[parts[-1]] = value
    return out


def with_values(params: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """params with every dotted key of `values` set."""
    out = dict(params)
    for key, value in values.items():
        out = set_path(out, key, value)
    return out


Grid = dict[str, list[Any]]


def check_space(label: str, space: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[Grid]:
    """The search space as a list of grids (key -> non-empty list), or a clear error naming the model and key."""
    grids = [space] if isinstance(space, Mapping) else list(space)
    out: list[Grid] = []
    for i, grid in enumerate(grids):
        where = f"evaluate.models.{label}.search" + ("" if isinstance(space, Mapping) else f"[{i}]")
        if not isinstance(grid, Mapping):
            raise ValueError(f"{where} must be a mapping of key -> list of candidate values, got {grid!r}")
        checked: Grid = {}
        for key, values in grid.items():
            if not isinstance(values, (list, tuple)) or len(values) == 0:
                raise ValueError(f"{where}.{key} must be a non-empty list of candidate values, got {values!r}")
            checked[str(key)] = list(values)
        out.append(checked)
    return out or [{}]


def grid_points(
    grids: Sequence[Mapping[str, Sequence[Any]]], budget: int, seed: int, label: str
) -> tuple[list[tuple[int, dict[str, Any]]], int]:
    """((grid index, point) to fit, union size): the whole union when it fits the budget, else a seeded sample."""
    if budget < 1:
        raise ValueError(f"evaluate.tuning.budget must be >= 1, got {budget}")
    union = [
        (i, dict(zip(list(grid), combo, strict=True)))
        for i, grid in enumerate(grids)
        for combo in itertools.product(*(grid[k] for k in grid))
    ]
    if len(union) <= budget:
        return union, len(union)
    rng = np.random.default_rng([int(seed), zlib.crc32(label.encode("utf-8"))])
    pick = np.sort(rng.choice(len(union), size=budget, replace=False))
    return [union[int(i)] for i in pick], len(union)


def rescored(ranker: Any, ranker_name: str, key: str, values: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
    """(value, ranker variant) for every value of the re-scored key, reusing the fitted `ranker`."""
    if ranker_name != "als":
        raise ValueError(f"ranker {ranker_name!r} has no re-scored key")
    done = int(ranker.params["iterations"])
    for value in sorted(int(v) for v in values):
        if value > done:
            ranker.train_more(value - done)
            done = value
        yield value, ranker


def knob_keys(ranker_name: str) -> frozenset[str]:
    """Top-level settings of a registered ranker that a re-score may change without a refit."""
    from recsys.rankers.registry import RANKERS

    knobs = getattr(RANKERS.get(ranker_name), "knobs", ())
    return frozenset(k for k in knobs if "." not in k)


def knob_variants(ranker: Any, grid: Mapping[str, Sequence[Any]]) -> Iterator[tuple[dict[str, Any], Any]]:
    """(knob values, re-scored ranker) for every combination of a grid's knob keys (the ranker itself when none)."""
    keys = list(grid)
    if not keys:
        yield {}, ranker
        return
    for combo in itertools.product(*(grid[k] for k in keys)):
        values = dict(zip(keys, combo, strict=True))
        yield values, ranker.with_params(values)


def first_fit_value(ranker_name: str, values: Sequence[Any]) -> Any:
    """The value the re-scored key is fitted with before re-scoring (the smallest iteration count)."""
    return min(int(v) for v in values)


@dataclass(frozen=True)
class Objective:
    """The tuning objective: a metric at k, macro over the validation products."""

    metric: str
    k: int

    @classmethod
    def from_params(cls, block: Mapping[str, Any] | None) -> Objective:
        """From evaluate.tuning.objective (default precision@100)."""
        block = dict(block or {})
        obj = cls(str(block.get("metric", "precision")), int(block.get("k", 100)))
        if obj.metric not in METRICS:
            raise ValueError(f"evaluate.tuning.objective.metric must be one of {METRICS}, got {obj.metric!r}")
        if obj.k <= 0:
            raise ValueError(f"evaluate.tuning.objective.k must be positive, got {obj.k}")
        return obj


@dataclass(frozen=True)
class TrialScore:
    """What a trial measured on validation."""

    objective: float
    hits_objective_k: int
    hits_headline_k: int


@dataclass
class SearchResult:
    """Every trial of one model and the index of the chosen one."""

    label: str
    space: list[Grid]
    grid_size: int
    fits: int
    trials: list[tuple[dict[str, Any], TrialScore]]
    chosen: int

    @property
    def chosen_values(self) -> dict[str, Any]:
        """The searched keys' chosen values."""
        return dict(self.trials[self.chosen][0]) if self.trials else {}


def best_trial(trials: Sequence[tuple[dict[str, Any], TrialScore]]) -> int:
    """Index of the best trial: highest objective, then more headline-k hits, then earliest (NaN objectives last)."""

    def key(i: int) -> tuple[float, int, int]:
        s = trials[i][1]
        obj = s.objective if np.isfinite(s.objective) else -np.inf
        return (-obj, -s.hits_headline_k, i)

    return min(range(len(trials)), key=key)


def search(
    label: str,
    ranker_name: str,
    base: Mapping[str, Any],
    space: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    budget: int,
    seed: int,
    fit: Callable[[Mapping[str, Any]], Any],
    score: Callable[[Any], TrialScore],
) -> SearchResult:
    """Fit every sampled grid point with `fit(params)`, score it (and its re-scored variants) with `score(ranker)`."""
    grids = check_space(label, space)
    key = RESCORE_KEYS.get(ranker_name)
    knobs = knob_keys(ranker_name)
    fit_grids = [{k: v for k, v in grid.items() if k != key and k not in knobs} for grid in grids]
    knob_grids = [{k: v for k, v in grid.items() if k in knobs} for grid in grids]
    points, _ = grid_points(fit_grids, budget, seed, label)
    trials: list[tuple[dict[str, Any], TrialScore]] = []
    for gi, point in points:
        params = with_values(base, point)
        values = grids[gi].get(key) if key is not None else None
        if key is None or values is None:
            fitted = fit(params)
            for knob_values, variant in knob_variants(fitted, knob_grids[gi]):
                trials.append(({**point, **knob_values}, score(variant)))
            del fitted
            continue
        ranker = fit(set_path(params, key, first_fit_value(ranker_name, values)))
        for value, variant in rescored(ranker, ranker_name, key, values):
            trials.append(({**point, key: value}, score(variant)))
        del ranker
    for tried, s in trials:
        log.info("tuning %s %s: objective %.6g, hits %d", label, tried, s.objective, s.hits_objective_k)
    size = 0
    for grid in grids:
        combos = int(np.prod([len(v) for v in grid.values()])) if grid else 1
        size += combos
    return SearchResult(label, grids, size, len(points), trials, best_trial(trials))
