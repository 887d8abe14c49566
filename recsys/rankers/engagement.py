"""Rankers whose order is the same for every product: ``random``, ``activity`` and ``recency``.

``random`` (seeded uniform scores), ``activity`` (engagement, see recsys.features.engagement),
``recency`` (most recently active first: the ``recency`` feature, ties by last event instant then
engagement). Each product gets the global order minus its own customers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.rankers.base import GlobalRanker, History, ordered


class RandomRanker(GlobalRanker):
    """Uniform random scores per customer (seed = params['seed']); a baseline."""

    name = "random"

    def _user_order(self, interactions: pd.DataFrame, history: History) -> tuple[np.ndarray, np.ndarray]:
        """Seeded uniform scores, ordered descending."""
        rng = np.random.default_rng(int(self.params.get("seed", 0)))
        scores = rng.random(history.n_users)
        return ordered(scores), scores


class ActivityRanker(GlobalRanker):
    """Customers by engagement (recsys.features.engagement), the same order for every product."""

    name = "activity"

    def _user_order(self, interactions: pd.DataFrame, history: History) -> tuple[np.ndarray, np.ndarray]:
        """Engagement, ordered descending."""
        eng = self._features(interactions, history)["engagement"].to_numpy(dtype=np.float64)
        return ordered(eng), eng


class RecencyRanker(GlobalRanker):
    """Most recently active customers first: the recency feature, ties by last instant then engagement."""

    name = "recency"

    def _user_order(self, interactions: pd.DataFrame, history: History) -> tuple[np.ndarray, np.ndarray]:
        """Recency feature, ordered descending with tie-breaks."""
        feats = self._features(interactions, history)
        recency = feats["recency"].to_numpy(dtype=np.float64)
        last = feats["last_event_date"]
        last_us = np.where(last.notna(), last.dt.tz_localize(None).to_numpy().view(np.int64), 0).astype(np.float64)
        eng = feats["engagement"].to_numpy(dtype=np.float64)
        return ordered(recency, last_us, eng), recency

