"""Rankers whose order is the same for every product: ``random``, ``activity``, ``recency``, ``popularity``.

``random`` (seeded uniform scores), ``activity`` (engagement, see recsys.features.engagement),
``recency`` (most recently active first: the ``recency`` feature, ties by last event instant then
engagement), ``popularity`` (customers by number of fit rows, the product -> customers analogue of
"most popular items"; ties by last dated event, most recent first, then ascending id). Each product
gets the global order minus its own (and its excluded) customers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.features.engagement import dated_extremes, timestamps_us
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



def popularity_order(interactions: pd.DataFrame, history: History) -> tuple[np.ndarray, np.ndarray]:
    """(customer codes by number of fit rows desc, then last dated event desc, then code asc; rows per customer)."""
    rows = np.bincount(history.row_users, minlength=history.n_users).astype(np.float64)
    us, dated = timestamps_us(interactions["event_date"])
    _, last, n_dated = dated_extremes(history.row_users, us, dated, history.n_users)
    last_key = np.where(n_dated > 0, last, np.iinfo(np.int64).min).astype(np.float64)  # undated-only customers last
    return ordered(rows, last_key), rows


class PopularityRanker(GlobalRanker):
    """Customers by number of training interactions (rows), ties by last dated event then id; a CF-free baseline."""

    name = "popularity"

    def _user_order(self, interactions: pd.DataFrame, history: History) -> tuple[np.ndarray, np.ndarray]:
        """Fit-row counts, ordered descending with tie-breaks."""
        return popularity_order(interactions, history)
