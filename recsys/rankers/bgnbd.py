"""The ``bgnbd`` ranker: customers by BG/NBD expected transactions (buy till you die).

Every customer is scored by the expected number of transactions in the next ``horizon_days`` under a
BG/NBD model (Fader, Hardie & Lee 2005) fitted by MAP with pymc-marketing's ``BetaGeoModel`` (an
optional dependency: ``pip install 'pymc-marketing>=0.19.2'``). Its order is global (the same for
every product, minus the product's own customers). Settings: ``recsys.rankers.settings.BGNBDSettings``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from recsys.features.engagement import US_PER_DAY, timestamps_us
from recsys.rankers.base import GlobalRanker, History
from recsys.rankers.settings import BGNBDSettings


def rfm_summary(interactions: pd.DataFrame, history: History, events: Sequence[str] | None = None) -> pd.DataFrame:
    """Per fitted customer: frequency (active days - 1), recency and T in days (day resolution), has_transactions.

    Transactions are dated rows (of `events` when given); the observation ends on the last dated
    day of the fit data. A customer with no such transaction gets frequency 0, recency 0 and the
    largest T (an old one-off customer), and has_transactions False.
    """
    us_all, dated = timestamps_us(interactions["event_date"])
    if events is not None:
        dated = dated & interactions["event"].astype("string[pyarrow]").isin(list(events)).fillna(False).to_numpy(
            dtype=bool
        )
    n = history.n_users
    if not dated.any():
        raise ValueError("bgnbd needs dated transactions in the fit data (check bgnbd.events)")
    day = us_all[dated] // US_PER_DAY
    day = day - day.min()
    users = history.row_users[dated]
    pair = np.unique(users * (int(day.max()) + 1) + day)
    pu, pd_ = np.divmod(pair, int(day.max()) + 1)
    active = np.bincount(pu, minlength=n)
    first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first, pu, pd_)
    last = np.full(n, -1)
    np.maximum.at(last, pu, pd_)
    has = active > 0
    end = int(day.max())
    first = np.where(has, first, 0)
    last = np.where(has, last, 0)
    return pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "frequency": np.maximum(active - 1, 0).astype(np.float64),
            "recency": (last - first).astype(np.float64),
            "T": (end - first).astype(np.float64),
            "has_transactions": has,
        }
    )


def _require_pymc_marketing() -> Any:
    """Import pymc_marketing.clv.BetaGeoModel or explain how to install it."""
    try:
        from pymc_marketing.clv import BetaGeoModel
    except ImportError as exc:
        raise ImportError(
            "the bgnbd ranker needs pymc-marketing (optional): pip install 'pymc-marketing>=0.19.2'"
        ) from exc
    return BetaGeoModel


def bgnbd_available() -> bool:
    """True when pymc-marketing can be imported."""
    try:
        _require_pymc_marketing()
    except ImportError:
        return False
    return True


class BGNBDRanker(GlobalRanker):
    """Customers by BG/NBD expected transactions in the next horizon_days (pymc-marketing, MAP fit)."""

    name = "bgnbd"
    settings_model = BGNBDSettings

    def _prepare(self, interactions: pd.DataFrame, history: History) -> None:
        """Fit BG/NBD by MAP on the customers' RFM summary and score expected transactions."""
        model_cls = _require_pymc_marketing()
        rfm = rfm_summary(interactions, history, self.params.get("events"))
        fit_rows = rfm.loc[rfm["has_transactions"], ["customer_id", "frequency", "recency", "T"]]
        cap = self.params.get("max_fit_customers")
        if cap is not None and len(fit_rows) > int(cap):
            fit_rows = fit_rows.sample(n=int(cap), random_state=int(self.params["seed"]))
        if len(fit_rows) < 2 or not (fit_rows["frequency"] > 0).any():
            raise ValueError("bgnbd cannot be fitted: it needs at least one repeat customer in the fit data")
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = model_cls()
            model.fit(data=fit_rows.reset_index(drop=True), method="map", progressbar=False)
            expected = model.expected_purchases(
                data=rfm[["customer_id", "frequency", "recency", "T"]], future_t=float(self.params["horizon_days"])
            )
        scores = np.asarray(expected, dtype=np.float64).reshape(-1)
        if len(scores) != history.n_users or not np.isfinite(scores).all():
            raise RuntimeError("bgnbd produced missing or non-finite expected transactions")
        self.fit_summary_ = {k: float(v) for k, v in model.fit_summary().items()}
        self.fit_seconds_ = time.perf_counter() - t0
        self.rfm_ = rfm
        self.expected_ = scores

    def _order_keys(self) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Expected transactions."""
        return self.expected_, ()
