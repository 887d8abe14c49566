"""Customer activity at a cutoff and the return model: P(customer active in the next window | history before it).

On high-churn logs most customers act once, so "who comes back" is most of what any audience ranker can
predict (issue 20: knowing exactly who returns is worth 10x the best model). This module gives

- ``customer_activity``: per customer, from the dated rows before a reference instant (undated rows have
  no place in time and are left out): days since the last and the first event, rows, active days,
  distinct products, rows and active days in the last ``recent_days``, the mean gap between active days
  and the share of each canonical event. Customers without a dated row get NaN time features and zero
  counts.
- ``ReturnModel``: a seeded logistic regression (scikit-learn, lbfgs) on the log-transformed, standardised
  activity. ``fit_return_model(rows, window_days)`` uses only the rows it is given: with ``end`` = their
  last dated instant, labels = "active in [end - window, end]" for every customer with a dated row before
  ``end - window``, features = activity before ``end - window``. ``predict_at`` then scores every customer
  at ``end`` from all the rows: P(active in the next ``window_days``). Nothing after ``end`` is read, so
  fitted on the rows before a cutoff it never sees the window it predicts. When the labels are all equal
  (tiny logs) the model is the constant base rate (``fallback`` True).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from recsys.arrays import unique_sorted
from recsys.data.contract import CANONICAL_EVENTS
from recsys.features.engagement import US_PER_DAY, encode_ids, event_codes, timestamps_us

ACTIVITY_FEATURES: tuple[str, ...] = (
    "days_since_last",
    "days_since_first",
    "rows",
    "active_days",
    "distinct_products",
    "rows_recent",
    "active_days_recent",
    "mean_gap_days",
    *(f"share_{e}" for e in CANONICAL_EVENTS),
)
_LOG_FEATURES = frozenset(ACTIVITY_FEATURES[:8])  # days and counts: log1p before the logistic regression


class ReturnSettings(BaseModel):
    """Settings of the return model (``returns`` block of the rankers that use it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_days: float | None = Field(None, gt=0.0)  # None: the ranker's horizon (learned: label_days)
    recent_days: float = Field(30.0, gt=0.0)  # window of the rows_recent / active_days_recent features
    C: float = Field(1.0, gt=0.0)  # inverse L2 strength of the logistic regression
    max_iter: int = Field(500, ge=10)


@dataclass(frozen=True)
class EventRows:
    """The columns the activity features need, coded once: customer / product codes, event codes, instants."""

    users: np.ndarray
    products: np.ndarray
    events: np.ndarray  # index into CANONICAL_EVENTS, -1 for null or unknown
    us: np.ndarray
    dated: np.ndarray
    customer_ids: np.ndarray  # sorted ids: code i is customer_ids[i]

    @property
    def n_users(self) -> int:
        """Number of coded customers."""
        return int(len(self.customer_ids))

    @classmethod
    def of(cls, interactions: pd.DataFrame) -> EventRows:
        """Code a canonical table (customers in sorted id order, as ``rankers.base.History`` codes them)."""
        users, ids = encode_ids(interactions["customer_id"])
        products, _ = encode_ids(interactions["product_id"])
        codes, names = event_codes(interactions["event"])
        canon = np.array([CANONICAL_EVENTS.index(n) if n in CANONICAL_EVENTS else -1 for n in names] + [-1])
        us, dated = timestamps_us(interactions["event_date"])
        return cls(
            users.astype(np.int64),
            products.astype(np.int64),
            canon[np.where(codes >= 0, codes, len(names))].astype(np.int64),
            us,
            dated,
            ids,
        )

    def end_us(self) -> int:
        """The last dated instant (ValueError when nothing is dated)."""
        if not self.dated.any():
            raise ValueError("the return model needs dated rows: every event_date is NaT")
        return int(self.us[self.dated].max())


def customer_activity(rows: EventRows, ref_us: int, recent_days: float, before: bool = False) -> np.ndarray:
    """(customers x ACTIVITY_FEATURES) float64 from the dated rows at (or, with `before`, strictly before) `ref_us`."""
    n = rows.n_users
    mask = rows.dated & ((rows.us < ref_us) if before else (rows.us <= ref_us))
    u, us, ev, prod = rows.users[mask], rows.us[mask], rows.events[mask], rows.products[mask]
    count = np.bincount(u, minlength=n).astype(np.float64)
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(first, u, us)
    np.maximum.at(last, u, us)
    has = count > 0
    day = (us // US_PER_DAY).astype(np.int64)
    n_days = int(day.max() - day.min() + 1) if len(day) else 1
    days_pairs = unique_sorted(u * n_days + (day - (day.min() if len(day) else 0)))
    active_days = np.bincount(days_pairs // n_days, minlength=n).astype(np.float64)
    n_products = int(prod.max()) + 1 if len(prod) else 1
    distinct = np.bincount(unique_sorted(u * n_products + prod) // n_products, minlength=n).astype(np.float64)
    recent = us > ref_us - recent_days * US_PER_DAY
    rows_recent = np.bincount(u[recent], minlength=n).astype(np.float64)
    recent_pairs = unique_sorted(u[recent] * n_days + (day[recent] - (day.min() if len(day) else 0)))
    active_recent = np.bincount(recent_pairs // n_days, minlength=n).astype(np.float64)
    since_last = np.where(has, (ref_us - last) / US_PER_DAY, np.nan)
    since_first = np.where(has, (ref_us - first) / US_PER_DAY, np.nan)
    gap = np.where(has, (last - first) / US_PER_DAY / np.maximum(active_days - 1.0, 1.0), np.nan)
    known = ev >= 0
    per_event = np.bincount(u[known] * len(CANONICAL_EVENTS) + ev[known], minlength=n * len(CANONICAL_EVENTS))
    shares = per_event.reshape(n, len(CANONICAL_EVENTS)) / np.maximum(count, 1.0)[:, None]
    cols = [since_last, since_first, count, active_days, distinct, rows_recent, active_recent, gap]
    return np.column_stack([*cols, shares]).astype(np.float64)


def _design(activity: np.ndarray) -> np.ndarray:
    """Logistic-regression inputs: log1p of days and counts, missing time features as the column maximum + 1."""
    x = activity.copy()
    for j, name in enumerate(ACTIVITY_FEATURES):
        col = x[:, j]
        missing = np.isnan(col)
        if missing.any():
            col[missing] = (np.nanmax(col) + 1.0) if (~missing).any() else 0.0
        if name in _LOG_FEATURES:
            x[:, j] = np.log1p(np.maximum(col, 0.0))
    return x


@dataclass(frozen=True)
class ReturnModel:
    """A fitted return model: standardisation, logistic coefficients (or the constant base rate) and its facts."""

    window_days: float
    recent_days: float
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    base_rate: float
    fallback: bool
    train_customers: int
    train_positives: int
    label_start_us: int
    end_us: int

    def predict(self, activity: np.ndarray) -> np.ndarray:
        """P(active in the next window) for rows of `customer_activity` output."""
        if self.fallback:
            return np.full(len(activity), self.base_rate, dtype=np.float64)
        z = ((_design(activity) - self.mean) / self.scale) @ self.coef + self.intercept
        out: np.ndarray = 1.0 / (1.0 + np.exp(-z))
        return out

    def predict_at(self, rows: EventRows) -> np.ndarray:
        """P(active in the `window_days` after the rows' end) of every coded customer, from all their dated rows."""
        return self.predict(customer_activity(rows, self.end_us, self.recent_days))


def fit_return_model(rows: EventRows, settings: ReturnSettings, window_days: float, seed: int = 0) -> ReturnModel:
    """Fit on the rows only: labels from their last `window_days`, features from the dated rows before that."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    window = float(settings.window_days or window_days)
    end = rows.end_us()
    label_start = end - int(round(window * US_PER_DAY))
    before = customer_activity(rows, label_start, settings.recent_days, before=True)
    population = before[:, ACTIVITY_FEATURES.index("rows")] > 0
    in_window = rows.dated & (rows.us >= label_start) & (rows.us <= end)
    active = np.bincount(rows.users[in_window], minlength=rows.n_users) > 0
    y = active[population].astype(np.int64)
    x = _design(before[population])
    n_features = len(ACTIVITY_FEATURES)
    base = float(y.mean()) if len(y) else 0.0
    if len(y) < 2 or y.min() == y.max():
        zeros = np.zeros(n_features)
        return ReturnModel(
            window, settings.recent_days, zeros, np.ones(n_features), zeros, 0.0, base, True, len(y), int(y.sum()),
            label_start, end,
        )  # fmt: skip
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    with threadpool_limits(limits=1):
        model = LogisticRegression(C=settings.C, max_iter=settings.max_iter, random_state=seed)
        model.fit((x - mean) / scale, y)
    return ReturnModel(
        window,
        settings.recent_days,
        mean,
        scale,
        np.asarray(model.coef_, dtype=np.float64).ravel(),
        float(model.intercept_[0]),
        base,
        False,
        len(y),
        int(y.sum()),
        label_start,
        end,
    )


def return_probability(
    interactions: pd.DataFrame, settings: ReturnSettings | None = None, window_days: float = 30.0, seed: int = 0
) -> tuple[np.ndarray, ReturnModel]:
    """P(active in the next window) per customer (sorted id order) of a canonical table, and the fitted model."""
    rows = EventRows.of(interactions)
    model = fit_return_model(rows, settings or ReturnSettings(), window_days, seed)
    return model.predict_at(rows), model
