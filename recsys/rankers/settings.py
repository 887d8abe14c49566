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

from recsys.features.engagement import FeatureParams


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
