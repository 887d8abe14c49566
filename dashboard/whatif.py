"""The what-if: one product's audience re-ranked under new weights, by the rankers' own re-score API.

``WhatIfSettings`` holds the knobs a business user can turn (ranker, event weights, engagement
weights, normalisation, the content ranker's affinity weight) and turns them into the params change
that ``Ranker.rescore`` takes. ``WhatIfEngine`` fits each ranker the what-if offers once, on the same
prepared log and params as the cache, and answers ``rank(settings, product_id, n)`` with
``rescore`` — the same engine, scores and tie-breaks as the cache stage (a re-score equals a refit
with the changed params). Rankers without knobs (ALS, BPR, item-kNN, BG/NBD) are served from the
cache only: nothing about them can be changed without a refit.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from dashboard.memory import release_unused_memory
from recsys.data.ids import id_array, id_kind, parse_id
from recsys.features.engagement import FeatureParams
from recsys.rankers import Ranker, make_ranker
from recsys.rankers.base import ENGAGEMENT_PATHS
from recsys.rankers.registry import RANKERS

DEFAULT_AFFINITY_WEIGHT = 0.5


def knobs_of(ranker: str) -> tuple[str, ...]:
    """The params paths a re-score of `ranker` may change (empty for unknown rankers)."""
    cls = RANKERS.get(ranker)
    return tuple(getattr(cls, "knobs", ())) if cls is not None else ()


def uses_engagement(ranker: str) -> bool:
    """True when the ranker's scores move with the engagement weights."""
    return all(path in knobs_of(ranker) for path in ENGAGEMENT_PATHS)


def uses_affinity(ranker: str) -> bool:
    """True when the ranker blends name-token affinity with a weight the user can change."""
    return "affinity_weight" in knobs_of(ranker)


# Rankers the what-if can re-score (they have knobs and fit in seconds); the cache may use any ranker.
WHATIF_RANKERS: tuple[str, ...] = tuple(r for r in ("content", "activity", "recency", "random") if knobs_of(r))


@dataclass(frozen=True)
class WhatIfSettings:
    """The knobs a business user can turn: ranker, event weights, engagement weights, normalisation, affinity."""

    ranker: str
    event_weights: Mapping[str, float]
    weights: Mapping[str, float]
    normalisation: str
    affinity_weight: float = DEFAULT_AFFINITY_WEIGHT
    weight_total: float | None = None  # the engagement weights are rescaled to this sum (the cached params' sum)

    @classmethod
    def from_params(cls, ranker: str, params: Mapping[str, Any]) -> WhatIfSettings:
        """The settings that reproduce `ranker` built with `params` (the make_ranker params structure)."""
        fp = FeatureParams.from_params(params.get("features"))
        affinity = float(params.get("affinity_weight", DEFAULT_AFFINITY_WEIGHT))
        total = float(sum(float(v) for v in fp.weights.values()))
        return cls(ranker, dict(fp.event_weights), dict(fp.weights), fp.normalisation, affinity, total)

    def scaled_weights(self) -> dict[str, float]:
        """The engagement weights as scored: rescaled to `weight_total` when set, so only their shares count and the
        engagement score keeps the cached scale (all zero, or no total, stays as given)."""
        weights = {k: float(v) for k, v in self.weights.items()}
        total = sum(weights.values())
        if self.weight_total is None or total <= 0:
            return weights
        return {k: v * self.weight_total / total for k, v in weights.items()}

    def changes(self) -> dict[str, Any]:
        """The params change a re-score takes: only the knobs the chosen ranker has."""
        out: dict[str, Any] = {}
        if uses_engagement(self.ranker):
            out["features"] = {
                "features": {"event_weights": dict(self.event_weights)},
                "engagement": {"weights": self.scaled_weights(), "normalisation": self.normalisation},
            }
        if uses_affinity(self.ranker):
            out["affinity_weight"] = float(self.affinity_weight)
        return out

    def close_to(self, other: WhatIfSettings, tol: float = 1e-9) -> bool:
        """Same ranker and every knob it has equal within `tol` (sliders may round floats)."""

        def same(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
            keys = set(a) | set(b)
            return all(abs(float(a.get(k, 0.0)) - float(b.get(k, 0.0))) <= tol for k in keys)

        if self.ranker != other.ranker:
            return False
        if uses_engagement(self.ranker) and not (
            self.normalisation == other.normalisation
            and same(self.event_weights, other.event_weights)
            and same(self.scaled_weights(), other.scaled_weights())
        ):
            return False
        return not uses_affinity(self.ranker) or abs(self.affinity_weight - other.affinity_weight) <= tol


@dataclass
class WhatIfEngine:
    """Rankers fitted once on the prepared log (lazily, thread-safe) and re-scored per product."""

    interactions: pd.DataFrame
    params_of: Mapping[str, Mapping[str, Any]]  # ranker -> the make_ranker params it is fitted with
    _fitted: dict[str, Ranker] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fitted(self, ranker: str) -> Ranker:
        """The ranker fitted on the log with its base params (fitted on first use)."""
        with self._lock:
            if ranker not in self._fitted:
                if ranker not in WHATIF_RANKERS:
                    raise ValueError(f"the what-if re-scores {', '.join(WHATIF_RANKERS)}; {ranker!r} has no knobs")
                params = dict(self.params_of.get(ranker) or {})
                self._fitted[ranker] = make_ranker(ranker, params).fit(self.interactions)
            return self._fitted[ranker]

    def warm(self, rankers: tuple[str, ...]) -> threading.Thread:
        """Fit `rankers` in a background thread (the first what-if then answers at once)."""

        def run() -> None:
            for name in rankers:
                if name in WHATIF_RANKERS:
                    self.fitted(name)
            release_unused_memory()  # the fit's temporaries

        thread = threading.Thread(target=run, name="whatif-warm", daemon=True)
        thread.start()
        return thread

    def rank(self, settings: WhatIfSettings, product_id: Any, n: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """(customer ids, scores, cold start) of the product's top-n under the settings (ids as the widgets give them:
        a product id as text is read as the catalogue's id kind; one that cannot be an id is a cold start)."""
        pid = parse_id(product_id, id_kind(self.interactions["product_id"]))
        recs = self.fitted(settings.ranker).rescore([product_id if pid is None else pid], n, settings.changes())
        return id_array(recs.customer_ids), np.asarray(recs.scores, dtype=np.float64), bool(recs.cold_start[0])
