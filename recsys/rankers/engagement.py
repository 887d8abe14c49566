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
from recsys.rankers.base import ENGAGEMENT_PATHS, GlobalRanker, History


class RandomRanker(GlobalRanker):
    """Uniform random scores per customer (seed = params['seed']); a baseline."""

    name = "random"
    knobs: tuple[str, ...] = ("seed",)

    def _order_keys(self) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Seeded uniform scores."""
        return np.random.default_rng(int(self.params.get("seed", 0))).random(self.history_.n_users), ()


class ActivityRanker(GlobalRanker):
    """Customers by engagement (recsys.features.engagement), the same order for every product."""

    name = "activity"
    knobs = ENGAGEMENT_PATHS

    def _prepare(self, interactions: pd.DataFrame, history: History) -> None:
        """Fit the engagement model."""
        self._fit_engagement(interactions, history)

    def _order_keys(self) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Engagement."""
        return self.engagement(), ()


class RecencyRanker(GlobalRanker):
    """Most recently active customers first: the recency feature, ties by last instant then engagement."""

    name = "recency"
    knobs = ENGAGEMENT_PATHS

    def _prepare(self, interactions: pd.DataFrame, history: History) -> None:
        """Fit the engagement model and keep the recency feature and last dated instant."""
        self._fit_engagement(interactions, history)
        raw = self.engagement_model_.raw
        self.recency_ = raw["recency"].to_numpy(dtype=np.float64)
        last = raw["last_event_date"]
        self.last_us_ = np.where(last.notna(), last.dt.tz_localize(None).to_numpy().view(np.int64), 0).astype(
            np.float64
        )

    def _order_keys(self) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Recency, ties by last instant then engagement."""
        return self.recency_, (self.last_us_, self.engagement())


def popularity_keys(interactions: pd.DataFrame, history: History) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows per customer code, last dated instant per code; undated-only customers sort last)."""
    rows = np.bincount(history.row_users, minlength=history.n_users).astype(np.float64)
    us, dated = timestamps_us(interactions["event_date"])
    _, last, n_dated = dated_extremes(history.row_users, us, dated, history.n_users)
    return rows, np.where(n_dated > 0, last, np.iinfo(np.int64).min).astype(np.float64)


class PopularityRanker(GlobalRanker):
    """Customers by number of training interactions (rows), ties by last dated event then id; a CF-free baseline.

    The product -> customers analogue of "most popular items". Exclusion-only rows do not count.
    """

    name = "popularity"

    def _prepare(self, interactions: pd.DataFrame, history: History) -> None:
        """Fit-row counts and the last dated instant of every customer."""
        self.rows_, self.last_key_ = popularity_keys(interactions, history)

    def _order_keys(self) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Fit-row counts, ties by last dated instant."""
        return self.rows_, (self.last_key_,)
