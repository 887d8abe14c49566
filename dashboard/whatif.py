"""Today's what-if: re-rank every customer for one product under new engagement weights.

``WhatIfModel`` keeps the raw per-customer features of the log and reproduces ``recsys.rankers``
exactly (same scores, same tie-breaks, same exclusions) for ``activity`` (engagement), ``recency``
(recency feature, ties by last instant then engagement) and ``random`` (seeded uniform scores). Its
interface is ``WhatIfSettings`` in, ``rank(settings, n, exclude)`` out, so the rankers' own re-score
API can replace this module without touching the rest of the dashboard.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.data.ids import id_array
from recsys.features.engagement import (
    DECAYED_PREFIX,
    FEATURE_NAMES,
    FeatureParams,
    event_weight_vector,
    normalise,
    unique_sorted,
    weight_vector,
)

WHATIF_RANKERS: tuple[str, ...] = ("activity", "recency", "random")


@dataclass(frozen=True)
class WhatIfSettings:
    """The knobs a business user can turn: ranker, event weights, engagement weights, normalisation."""

    ranker: str
    event_weights: Mapping[str, float]
    weights: Mapping[str, float]
    normalisation: str

    @classmethod
    def from_params(cls, params: FeatureParams, ranker: str = "activity") -> WhatIfSettings:
        """The settings that reproduce a ranker built with `params`."""
        return cls(ranker, dict(params.event_weights), dict(params.weights), params.normalisation)

    def close_to(self, other: WhatIfSettings, tol: float = 1e-9) -> bool:
        """Same ranker and normalisation, and every weight equal within `tol` (sliders may round floats)."""

        def same(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
            keys = set(a) | set(b)
            return all(abs(float(a.get(k, 0.0)) - float(b.get(k, 0.0))) <= tol for k in keys)

        return (
            self.ranker == other.ranker
            and self.normalisation == other.normalisation
            and same(self.event_weights, other.event_weights)
            and same(self.weights, other.weights)
        )


class WhatIfModel:
    """Raw per-user features computed once; `rank` re-scores every user and takes a product's top-n."""

    def __init__(self, raw: pd.DataFrame, seed: int = 0) -> None:
        """Keep the raw feature columns as contiguous arrays (raw = recsys.features.engagement.compute_raw_features)."""
        self.customer_ids = id_array(raw.index.to_numpy())
        self.decayed_cols = [c for c in raw.columns if c.startswith(DECAYED_PREFIX)]
        self.categories = [c[len(DECAYED_PREFIX) :] for c in self.decayed_cols]
        self.decayed = np.ascontiguousarray(raw[self.decayed_cols].to_numpy(dtype=np.float64))
        self.raw = {name: np.ascontiguousarray(raw[name].to_numpy(dtype=np.float64)) for name in FEATURE_NAMES}
        last = raw["last_event_date"]
        self.last_us = np.where(last.notna(), last.dt.tz_localize(None).to_numpy().view(np.int64), 0).astype(np.float64)
        self.random_scores = np.random.default_rng(int(seed)).random(len(raw))
        self._normalised: dict[tuple[str, str], np.ndarray] = {}
        self._event_score_key: tuple[tuple[float, ...], str] | None = None
        self._event_score = np.zeros(0)

    def __len__(self) -> int:
        """Number of customers."""
        return int(len(self.customer_ids))

    def _norm(self, name: str, method: str) -> np.ndarray:
        """A weight-independent normalised feature column (memoised per normalisation)."""
        key = (name, method)
        if key not in self._normalised:
            self._normalised[key] = normalise(self.raw[name], method)
        return self._normalised[key]

    def _norm_event_score(self, event_weights: Mapping[str, float], method: str) -> np.ndarray:
        """Normalised avg_event_score under these event weights (the last one is memoised for weight-only changes)."""
        w = event_weight_vector(self.categories, event_weights)
        key = (tuple(w.tolist()), method)
        if self._event_score_key != key:
            self._event_score = normalise((self.decayed @ w) / self.raw["total_interactions"], method)
            self._event_score_key = key
        return self._event_score

    def engagement(self, settings: WhatIfSettings) -> np.ndarray:
        """Engagement of every customer under the settings (equals recsys.features.engagement.compute_features)."""
        cols = [
            self._norm_event_score(settings.event_weights, settings.normalisation)
            if f == "avg_event_score"
            else self._norm(f, settings.normalisation)
            for f in FEATURE_NAMES
        ]
        return np.column_stack(cols) @ weight_vector(settings.weights)

    def order_keys(self, settings: WhatIfSettings) -> tuple[np.ndarray, list[np.ndarray]]:
        """(score, tie-breaks) of the chosen ranker, as recsys.rankers orders them."""
        if settings.ranker == "activity":
            return self.engagement(settings), []
        if settings.ranker == "recency":
            return self.raw["recency"], [self.last_us, self.engagement(settings)]
        if settings.ranker == "random":
            return self.random_scores, []
        raise ValueError(f"what-if ranker must be one of {WHATIF_RANKERS}, got {settings.ranker!r}")

    def rank(self, settings: WhatIfSettings, n: int, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(customer ids, scores) of the n best customers not in `exclude` (customer codes)."""
        score, ties = self.order_keys(settings)
        codes = top_codes(score, n, exclude, ties)
        return self.customer_ids[codes], score[codes]


def top_codes(score: np.ndarray, n: int, exclude: np.ndarray, tie_breaks: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Codes of the n best users (score, then tie-breaks, descending; then code ascending), skipping `exclude`."""
    masked = np.array(score, dtype=np.float64, copy=True)
    masked[exclude] = -np.inf
    allowed = len(masked) - len(unique_sorted(exclude))
    n = min(int(n), allowed)
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    kth = np.partition(masked, len(masked) - n)[len(masked) - n]
    cand = np.flatnonzero(masked >= kth)
    cand = cand[masked[cand] > -np.inf]
    keys = [cand] + [-np.asarray(t)[cand] for t in reversed(tie_breaks)] + [-masked[cand]]
    return cand[np.lexsort(keys)[:n]].astype(np.int64)
