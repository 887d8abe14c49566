"""The evaluation's settings: the validated ``evaluate`` block of params/evaluate.yaml and each ranker's params."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from recsys.evaluation.results import Group
from recsys.evaluation.split import UNDATED_POLICIES, Split
from recsys.evaluation.tuning import Objective
from recsys.parallel import check_processes

DEFAULT_KS: tuple[int, ...] = (10, 50, 100, 300, 1000)
MODEL_KEYS = frozenset({"ranker", "optional", "enabled", "search", "new_search"})  # a model's keys that are no setting


@dataclass(frozen=True)
class ModelSpec:
    """One model of the comparison: label, registered ranker, its params, its search spaces.

    ``search`` is tuned on the validation window's known products; ``new_search`` (knobs only, recsys.rankers) is
    tuned afterwards on the validation window's new products, starting from the chosen settings.
    """

    label: str
    ranker: str
    params: Mapping[str, Any]
    search: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None
    optional: bool = False
    new_search: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None


@dataclass(frozen=True)
class NewProductsConfig:
    """The new-products track (products sold in a window with no fit rows, ranked from their catalogue name)."""

    enabled: bool = True
    fallbacks: tuple[str, ...] = ("popularity", "activity")  # the name models are tested against the best of these
    budget: int = 16  # knob combinations tried per name model on the validation window's new products


@dataclass(frozen=True)
class EvalConfig:
    """The evaluate block of params/evaluate.yaml, validated."""

    quantile: float = 0.8
    validation: str = "matched"
    undated_policy: str = "exclude_only"
    truth_events: tuple[str, ...] | None = None
    ks: tuple[int, ...] = DEFAULT_KS
    headline_k: int = 10
    seed: int = 42
    objective: Objective = Objective("precision", 100)
    budget: int = 4
    budgets: tuple[tuple[str, int], ...] = ()
    tuning_seed: int = 42
    n_boot: int = 1000
    level: float = 0.95
    alpha: float = 0.05
    power: float = 0.8
    smallest_effect_ratio: float = 1.5
    cf_models: tuple[str, ...] = ("als", "itemknn", "bpr")
    engagement_models: tuple[str, ...] = ("activity", "popularity")
    new_products: NewProductsConfig = NewProductsConfig()
    diagnostics: bool = True
    processes: int = 1  # workers of the validation searches (results do not depend on it)
    models: tuple[ModelSpec, ...] = ()

    @classmethod
    def from_params(cls, block: Mapping[str, Any], served_n: int | None = None) -> EvalConfig:
        """Build from the `evaluate` block; missing keys keep defaults; bad values raise ValueError naming the key.

        ``headline_k: null`` is the served depth `served_n` (params/cache.yaml: cache.n); ``tuning.objective.k: null``
        is the headline k.
        """
        split = dict(block.get("split") or {})
        tuning = dict(block.get("tuning") or {})
        boot = dict(block.get("intervals") or {})
        comp = dict(block.get("comparisons") or {})
        truth = (block.get("ground_truth") or {}).get("events")
        ks = tuple(sorted({int(k) for k in block.get("ks", DEFAULT_KS)}))
        if not ks or ks[0] <= 0:
            raise ValueError(f"evaluate.ks must be positive integers, got {block.get('ks')}")
        unknown_split = sorted(set(split) - {"quantile", "validation", "undated_policy"})
        if unknown_split:
            raise ValueError(
                f"evaluate.split has unknown key(s) {unknown_split}; known: quantile, validation, undated_policy"
            )
        budget = tuning.get("budget", 4)
        budgets = dict(budget) if isinstance(budget, Mapping) else {"default": budget}
        models = tuple(
            ModelSpec(
                label=str(label),
                ranker=str(spec.get("ranker", label)),
                params={k: v for k, v in spec.items() if k not in MODEL_KEYS},
                search=spec.get("search") or None,
                optional=bool(spec.get("optional", False)),
                new_search=spec.get("new_search") or None,
            )
            for label, spec in (block.get("models") or {}).items()
            if (spec or {}).get("enabled", True)
        )
        headline = block.get("headline_k")
        if headline is None:
            if served_n is None:
                raise ValueError("evaluate.headline_k is null (= the served depth cache.n) but no cache.n was given")
            headline = served_n
        objective = dict(tuning.get("objective") or {})
        if objective.get("k") is None:
            objective["k"] = int(headline)
        newp = dict(block.get("new_products") or {})
        unknown_new = sorted(set(newp) - {"enabled", "fallbacks", "budget"})
        if unknown_new:
            raise ValueError(
                f"evaluate.new_products has unknown key(s) {unknown_new}; known: enabled, fallbacks, budget"
            )
        cfg = cls(
            quantile=float(split.get("quantile", 0.8)),
            validation=str(split.get("validation", "matched")),
            undated_policy=str(split.get("undated_policy", "exclude_only")),
            truth_events=tuple(truth) if truth else None,
            ks=ks,
            headline_k=int(headline),
            seed=int(block.get("seed", 42)),
            objective=Objective.from_params(objective),
            budget=int(budgets.pop("default", 4)),
            budgets=tuple((str(k), int(v)) for k, v in budgets.items()),
            tuning_seed=int(tuning.get("seed", block.get("seed", 42))),
            n_boot=int(boot.get("n_boot", 1000)),
            level=float(boot.get("level", 0.95)),
            alpha=float(comp.get("alpha", 0.05)),
            power=float(comp.get("power", 0.8)),
            smallest_effect_ratio=float(comp.get("smallest_effect_ratio", 1.5)),
            cf_models=tuple(comp.get("cf_models", ("als", "itemknn", "bpr"))),
            engagement_models=tuple(comp.get("engagement_models", ("activity", "popularity"))),
            new_products=NewProductsConfig(
                enabled=bool(newp.get("enabled", True)),
                fallbacks=tuple(str(m) for m in newp["fallbacks"])
                if "fallbacks" in newp
                else tuple(m for m in NewProductsConfig.fallbacks if m in {spec.label for spec in models}),
                budget=int(newp.get("budget", 16)),
            ),
            diagnostics=bool(block.get("diagnostics", True)),
            processes=check_processes(block.get("processes", 1), "evaluate.processes"),
            models=models,
        )
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise ValueError naming the param when a value is out of range."""
        if self.headline_k not in self.ks:
            raise ValueError(f"evaluate.headline_k={self.headline_k} must be one of evaluate.ks={list(self.ks)}")
        if self.objective.k not in self.ks:
            raise ValueError(
                f"evaluate.tuning.objective.k={self.objective.k} must be one of evaluate.ks={list(self.ks)}"
            )
        if self.undated_policy not in UNDATED_POLICIES:
            raise ValueError(
                f"evaluate.split.undated_policy must be one of {UNDATED_POLICIES}, got {self.undated_policy!r}"
            )
        for key, value in (("default", self.budget), *self.budgets):
            if value < 1:
                raise ValueError(f"evaluate.tuning.budget.{key} must be >= 1, got {value}")
        if not 0.0 < self.level < 1.0:
            raise ValueError(f"evaluate.intervals.level must be in (0, 1), got {self.level}")
        if not 0.0 < self.alpha < 1.0 or not 0.0 < self.power < 1.0:
            raise ValueError(f"evaluate.comparisons.alpha and power must be in (0, 1), got {self.alpha}, {self.power}")
        if self.smallest_effect_ratio <= 1.0:
            raise ValueError(
                f"evaluate.comparisons.smallest_effect_ratio must be > 1, got {self.smallest_effect_ratio}"
            )
        if not self.models:
            raise ValueError("evaluate.models is empty: list at least one model (e.g. random, activity, als)")
        labels = [m.label for m in self.models]
        unknown = [k for k, _ in self.budgets if k not in labels]
        if unknown:
            raise ValueError(
                f"evaluate.tuning.budget names {unknown}, which are not enabled in evaluate.models ({labels})"
            )
        if self.new_products.budget < 1:
            raise ValueError(f"evaluate.new_products.budget must be >= 1, got {self.new_products.budget}")
        missing_fallbacks = [m for m in self.new_products.fallbacks if m not in labels]
        if self.new_products.enabled and missing_fallbacks:
            raise ValueError(
                f"evaluate.new_products.fallbacks names {missing_fallbacks}, which are not enabled in evaluate.models "
                f"({labels})"
            )
        for key, group in (("cf_models", self.cf_models), ("engagement_models", self.engagement_models)):
            missing = [g for g in group if g not in labels]
            if missing:
                raise ValueError(
                    f"evaluate.comparisons.{key} names {missing}, which are not enabled in evaluate.models ({labels})"
                )

    def budget_of(self, label: str) -> int:
        """Fits allowed for a model's search on validation."""
        return dict(self.budgets).get(label, self.budget)

    def group_of(self, label: str, ranker: str) -> Group:
        """The model's group in the report (a verdict group first, then by ranker; the truth is a reference)."""
        if label in self.cf_models:
            return "cf"
        if label in self.engagement_models:
            return "engagement"
        groups: dict[str, Group] = {
            "content": "content",
            "name_knn": "names",
            "category_popularity": "category",
            "category_share": "category",
            "learned": "learned",
            "truth_category": "reference",
        }
        return groups.get(ranker, "baseline")


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge (over wins)."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = (
            deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
        )
    return out


def ranker_params(
    spec_params: Mapping[str, Any], feature_params: Mapping[str, Any], seed: int, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Params handed to make_ranker: seed, the features block (+ the model's overrides), the model's own keys.

    The features' reference_date is forced to null, i.e. the end of the fit rows, so no feature is
    computed relative to a date inside a truth window.
    """
    own = dict(spec_params)
    feats = deep_merge(feature_params, {k: own.pop(k) for k in ("features", "engagement") if k in own})
    feats.setdefault("features", {})["reference_date"] = None
    return {"seed": seed, **own, **dict(extra or {}), "features": feats}


# Per ranker, the setting that is a forecast horizon: unless params fix it, it is the truth window's length.
HORIZON_SETTINGS: dict[str, str] = {
    "bgnbd": "horizon_days",  # BG/NBD expected transactions over the window
    "category_share": "horizon_days",  # the return model's P(active in the window)
    "truth_category": "horizon_days",
    "learned": "label_days",  # the inner label window mirrors the truth window (and its return model's horizon)
}


def model_extra(ranker: str, params: Mapping[str, Any], split: Split) -> dict[str, Any]:
    """Per-split overrides: a ranker's forecast horizon (HORIZON_SETTINGS) is the truth window's length unless set."""
    key = HORIZON_SETTINGS.get(ranker)
    if key is not None and key not in params:
        return {key: max(split.window_days, 1.0)}
    return {}
