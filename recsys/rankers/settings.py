"""Typed ranker settings: every ranker declares the keys it accepts; an unknown or misspelt key is an error.

Each ranker class names a pydantic model (``settings_model``) derived from ``RankerSettings``; ``parse_settings``
validates a params mapping against it (unknown keys rejected with the valid ones and a close match named, values
range-checked) and ``make_ranker``, every ranker constructor and every re-score go through it, so the evaluation,
the cache and the dashboard reject the same mistakes with the same message. ``RankerSettings.features`` is the
params/features.yaml structure (``{features: ..., engagement: ...}``), validated by
``recsys.features.engagement.FeatureParams.from_params`` (which rejects unknown keys too).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from recsys.data.contract import CANONICAL_EVENTS
from recsys.features.engagement import FeatureParams
from recsys.features.returns import ReturnSettings


class RankerSettings(BaseModel):
    """Settings every ranker accepts: the seed and the features block (params/features.yaml structure)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    features: dict[str, Any] = Field(default_factory=dict)

    @field_validator("features")
    @classmethod
    def _check_features(cls, value: dict[str, Any]) -> dict[str, Any]:
        """The features block must parse (unknown keys and bad values raise)."""
        FeatureParams.from_params(value)
        return value


class ContentSettings(RankerSettings):
    """``content``: name-token affinity blended with engagement (recsys.rankers.content)."""

    affinity_weight: float = Field(0.5, ge=0.0, le=1.0)
    cold_affinity_weight: float | None = Field(None, ge=0.0, le=1.0)
    token_user_cap: int = Field(200, ge=1)
    chunk_entries: int = Field(8_000_000, ge=1)


class NameKNNSettings(RankerSettings):
    """``name_knn``: customers of the K known products whose names are most similar (recsys.rankers.name_knn)."""

    neighbours: int = Field(20, ge=1)
    neighbour_weight: float = Field(0.5, ge=0.0, le=1.0)
    cold_neighbour_weight: float | None = Field(None, ge=0.0, le=1.0)
    token_product_cap: int = Field(200, ge=1)
    chunk_entries: int = Field(8_000_000, ge=1)


class FactorSettings(RankerSettings):
    """Settings shared by the matrix-factorisation rankers (recsys.rankers.factor)."""

    seed: int = 42
    factors: int = Field(50, ge=1)
    iterations: int = Field(50, ge=1)
    regularization: float = Field(0.01, ge=0.0)
    num_threads: int = Field(0, ge=0)  # fit threads, 0 = every core
    score_threads: int | None = Field(None, ge=0)  # threads scoring product chunks; results do not depend on it
    event_weights: dict[str, float] | None = None  # None = every row weighs 1.0
    chunk_size: int = Field(256, ge=1)  # products scored per matrix block; results do not depend on it
    block: int = Field(64, ge=1)  # customers per block of the top-k prefilter


class ALSSettings(FactorSettings):
    """``als``: implicit's alternating least squares."""

    alpha: float = Field(1.0, ge=0.0)  # confidence = 1 + alpha * weight


class BPRSettings(FactorSettings):
    """``bpr``: implicit's Bayesian personalised ranking (SGD)."""

    learning_rate: float = Field(0.01, gt=0.0)


class KNNSettings(RankerSettings):
    """``itemknn``: implicit's item-item cosine / BM25 neighbours (recsys.rankers.knn)."""

    seed: int = 42  # unused (the fit is deterministic); accepted like every ranker's seed
    K: int = Field(100, ge=2)  # neighbours kept per product (itself included)
    similarity: Literal["cosine", "bm25"] = "cosine"
    K1: float = Field(1.2, gt=0.0)  # BM25 term saturation (bm25 only)
    B: float = Field(0.75, ge=0.0, le=1.0)  # BM25 length normalisation (bm25 only)
    num_threads: int = Field(1, ge=1)  # threads of implicit's all-pairs kNN (rows are independent: deterministic)
    event_weights: dict[str, float] | None = None
    chunk_entries: int = Field(8_000_000, ge=1)


class BGNBDSettings(RankerSettings):
    """``bgnbd``: BG/NBD expected transactions (pymc-marketing, recsys.rankers.bgnbd)."""

    seed: int = 42
    horizon_days: float = Field(36.0, gt=0.0)
    events: list[str] | None = None  # None = every dated event is a transaction
    max_fit_customers: int | None = Field(None, ge=2)


class CategorySettings(BaseModel):
    """Category inference from names (recsys.features.categories.CategoryParams; n_init lower than explore's 10)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(32, ge=1)
    components: int = Field(100, ge=1)
    fit_products: int = Field(20_000, ge=1)
    n_init: int = Field(3, ge=1)
    seed: int = 0


class CategoryPopularitySettings(RankerSettings):
    """``category_popularity``: customers by their fit rows in the product's inferred category (rankers.category)."""

    categories: CategorySettings = Field(default_factory=CategorySettings)
    chunk_entries: int = Field(8_000_000, ge=1)


class ShareReturnSettings(RankerSettings):
    """Settings of the category-share x P(return) rankers (rankers.category)."""

    horizon_days: float = Field(30.0, gt=0.0)  # the return model's window unless returns.window_days is set
    returns: ReturnSettings = Field(default_factory=ReturnSettings)
    chunk_entries: int = Field(8_000_000, ge=1)


class CategoryShareSettings(ShareReturnSettings):
    """``category_share``: share of the customer's rows in the inferred category x P(return)."""

    categories: CategorySettings = Field(default_factory=CategorySettings)


class TruthCategorySettings(ShareReturnSettings):
    """``truth_category``: true-category share x P(return), the reference with the generator's truth."""

    categories_path: str | None = None  # the generator's product_id, category Parquet (required at fit)


class SourceSettings(BaseModel):
    """One candidate source of the ``learned`` ranker: a registered ranker, its depth and its own settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ranker: str
    candidates: int = Field(200, ge=1, le=100_000)  # customers the source proposes per product
    settings: dict[str, Any] = Field(default_factory=dict)  # that ranker's settings (seed and features inherited)


def _default_sources() -> dict[str, SourceSettings]:
    """The default candidate sources of ``learned`` (params/evaluate.yaml fills in validation-chosen settings)."""
    return {
        "activity": SourceSettings(ranker="activity", candidates=300),
        "popularity": SourceSettings(ranker="popularity", candidates=100),
        "content": SourceSettings(ranker="content", candidates=300),
        "itemknn": SourceSettings(ranker="itemknn", candidates=300),
        "als": SourceSettings(
            ranker="als",
            candidates=300,
            settings={"factors": 32, "iterations": 10, "regularization": 0.1, "alpha": 10.0, "num_threads": 2},
        ),
        "category": SourceSettings(ranker="category_popularity", candidates=1000),
        "share": SourceSettings(ranker="category_share", candidates=300),
        "names": SourceSettings(ranker="name_knn", candidates=300),
    }


class LearnedSettings(RankerSettings):
    """``learned``: LightGBM LambdaRank over the candidates of several sources (recsys.rankers.learned)."""

    sources: dict[str, SourceSettings] = Field(default_factory=_default_sources)
    label_days: float = Field(14.0, gt=0.0)  # inner label window: the last label_days of the fit rows
    label_windows: int = Field(1, ge=1, le=12)  # consecutive label windows stacked into the training set
    label_events: list[str] | None = None  # events that make a label-window customer positive (None = any)
    negatives: int = Field(100, ge=1)  # negatives sampled per training product (seeded)
    category_label_gain: float = Field(0.0, ge=0.0, lt=1.0)  # > 0: graded labels, 1 = back in the product's category
    max_groups: int | None = Field(None, ge=1)  # training products kept (seeded sample) when more have a positive
    categories: CategorySettings = Field(default_factory=CategorySettings)
    returns: ReturnSettings = Field(default_factory=ReturnSettings)
    # LightGBM (knobs: re-trained on the cached training features, sources not refitted)
    n_estimators: int = Field(100, ge=1)
    learning_rate: float = Field(0.05, gt=0.0, le=1.0)
    num_leaves: int = Field(7, ge=2, le=131_072)
    min_child_samples: int = Field(100, ge=1)
    reg_lambda: float = Field(1.0, ge=0.0)
    feature_fraction: float = Field(1.0, gt=0.0, le=1.0)
    truncation_level: int = Field(100, ge=1)  # lambdarank_truncation_level: pairs ranked below it get no gradient
    max_bin: int = Field(255, ge=2)
    num_threads: int = Field(1, ge=1)  # training and prediction threads (fixed: results depend on it)
    drop_features: list[str] = Field(default_factory=list)  # feature names (or prefixes ending in '.') left out
    base_source: str | None = None  # boosting starts from -base_weight * ln(rank in this source's list)
    base_weight: float = Field(1.0, ge=0.0)
    backfill: bool = True  # complete short lists from the engagement order below every candidate
    chunk_entries: int = Field(2_000_000, ge=1)  # candidate pairs per feature / prediction block
    feature_cache_pairs: int = Field(0, ge=0)  # keep the latest request's features up to this many pairs (tuning)

    @field_validator("label_events")
    @classmethod
    def _check_events(cls, value: list[str] | None) -> list[str] | None:
        """Label events must be canonical events."""
        bad = sorted(set(value or []) - set(CANONICAL_EVENTS))
        if bad:
            raise ValueError(f"unknown event(s) {bad}; canonical events: {', '.join(CANONICAL_EVENTS)}")
        return value

    @field_validator("sources")
    @classmethod
    def _check_sources(cls, value: dict[str, SourceSettings]) -> dict[str, SourceSettings]:
        """At least one source, none of them a learned ranker (their names are checked against the registry later)."""
        if not value:
            raise ValueError("at least one candidate source is needed")
        nested = sorted(label for label, s in value.items() if s.ranker == "learned")
        if nested:
            raise ValueError(f"source(s) {nested} cannot be the learned ranker itself")
        return value


S = TypeVar("S", bound=RankerSettings)


def _location(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a dotted settings path."""
    return ".".join(str(part) for part in loc)


def parse_settings(model: type[S], ranker: str, params: Mapping[str, Any] | None) -> S:
    """Validate a ranker's params against its settings model; a ValueError names every bad key and the valid ones."""
    given = dict(params or {})
    valid = sorted(model.model_fields)
    unknown = sorted(str(k) for k in given if k not in model.model_fields)
    if unknown:
        hints = [
            f"{k!r} (did you mean {close[0]!r}?)" for k in unknown if (close := difflib.get_close_matches(k, valid, 1))
        ]
        hint = f"; {', '.join(hints)}" if hints else ""
        raise ValueError(f"ranker {ranker!r}: unknown setting(s) {unknown}{hint}; valid settings: {', '.join(valid)}")
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        problems = "; ".join(f"{_location(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"ranker {ranker!r}: invalid setting(s): {problems}") from None


def settings_dict(settings: RankerSettings) -> dict[str, Any]:
    """The settings as the plain params dict a ranker keeps (every key, defaults filled in)."""
    return settings.model_dump()
