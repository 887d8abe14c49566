"""Temporal split at a date quantile of the dated rows (undated rows follow recsys.data.contract.UNDATED_POLICY)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recsys.data.contract import DATE_DTYPE


@dataclass(frozen=True)
class Split:
    """Train and test sides of one temporal split, with the counts a report needs."""

    train: pd.DataFrame
    test: pd.DataFrame
    cutoff: pd.Timestamp
    test_end: pd.Timestamp | None
    quantile: float
    undated_in_train: bool
    undated_rows: int
    undated_dropped: int
    after_window_dropped: int

    @property
    def test_days(self) -> float:
        """Length of the test window in days (cutoff to the window end, or to the last test event)."""
        end = self.test_end if self.test_end is not None else self.test["event_date"].max()
        if pd.isna(end):
            return 0.0
        return float((end - self.cutoff) / pd.Timedelta(days=1))


def cutoff_at(dates: pd.Series, quantile: float) -> pd.Timestamp:
    """The `quantile` date quantile of the dated rows (as in recsys.data.profile.split_stats)."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"split quantile must be strictly between 0 and 1, got {quantile}")
    dated = dates.dropna()
    if dated.empty:
        raise ValueError("temporal split requires dated rows: every event_date is NaT")
    return pd.Timestamp(dated.quantile(quantile)).as_unit("us")


def temporal_split(
    interactions: pd.DataFrame,
    quantile: float = 0.8,
    undated_in_train: bool = True,
    test_days: float | None = None,
) -> Split:
    """Train = dated rows before the cutoff (+ undated rows if `undated_in_train`); test = dated rows from it.

    Every train timestamp is < cutoff <= every test timestamp; undated rows never reach the test side.
    With `test_days`, the test side ends `test_days` after the cutoff and later rows are dropped from
    both sides (they are the future of the test window).
    """
    if "event_date" not in interactions.columns:
        raise RuntimeError("temporal split requires an event_date column (see recsys.data.contract)")
    dates = interactions["event_date"]
    if str(dates.dtype) != DATE_DTYPE:
        raise TypeError(f"event_date must be {DATE_DTYPE}, got {dates.dtype}; load data with recsys.data.contract.load_prepared")
    cutoff = cutoff_at(dates, quantile)
    dated = dates.notna().to_numpy()
    before = (dates < cutoff).fillna(False).to_numpy(dtype=bool)
    after = dated & ~before
    test_end = None
    beyond = np.zeros(len(dates), dtype=bool)
    if test_days is not None:
        if test_days <= 0:
            raise ValueError(f"test_days must be > 0, got {test_days}")
        test_end = cutoff + pd.Timedelta(days=float(test_days))
        beyond = after & (dates >= test_end).fillna(False).to_numpy(dtype=bool)
        after &= ~beyond
    undated = ~dated
    train_mask = before | (undated if undated_in_train else np.zeros_like(undated))
    return Split(
        train=interactions.loc[train_mask].reset_index(drop=True),
        test=interactions.loc[after].reset_index(drop=True),
        cutoff=cutoff,
        test_end=test_end,
        quantile=float(quantile),
        undated_in_train=bool(undated_in_train),
        undated_rows=int(undated.sum()),
        undated_dropped=0 if undated_in_train else int(undated.sum()),
        after_window_dropped=int(beyond.sum()),
    )


def _ids(values: pd.Series) -> np.ndarray:
    """Unique ids of a column as a numpy array."""
    return np.asarray(pd.unique(values.to_numpy()))


def split_summary(split: Split) -> dict[str, Any]:
    """Sizes of both sides and the share of test users / products unseen in training."""
    train_users, test_users = _ids(split.train["customer_id"]), _ids(split.test["customer_id"])
    train_products, test_products = _ids(split.train["product_id"]), _ids(split.test["product_id"])
    unseen_users = int((~np.isin(test_users, train_users)).sum())
    unseen_products = int((~np.isin(test_products, train_products)).sum())
    test_rows_unseen_user = int((~split.test["customer_id"].isin(train_users)).sum())
    share = lambda a, b: float(a / b) if b else float("nan")  # noqa: E731
    return {
        "quantile": split.quantile,
        "cutoff": split.cutoff.isoformat(),
        "test_end": None if split.test_end is None else split.test_end.isoformat(),
        "test_days": round(split.test_days, 3),
        "train_rows": int(len(split.train)),
        "test_rows": int(len(split.test)),
        "undated_rows": split.undated_rows,
        "undated_in_train": split.undated_in_train,
        "undated_dropped": split.undated_dropped,
        "after_window_dropped": split.after_window_dropped,
        "train_users": int(len(train_users)),
        "test_users": int(len(test_users)),
        "train_products": int(len(train_products)),
        "test_products": int(len(test_products)),
        "test_users_unseen": unseen_users,
        "test_users_unseen_share": share(unseen_users, len(test_users)),
        "test_products_unseen": unseen_products,
        "test_products_unseen_share": share(unseen_products, len(test_products)),
        "test_rows_by_unseen_users_share": share(test_rows_unseen_user, len(split.test)),
    }
