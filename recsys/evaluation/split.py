"""Temporal splits of the protocol: train | validation window | test window, and the undated-row policy.

Cutoffs are date quantiles of the dated rows. The test cutoff is ``split.quantile``; the validation
cutoff is ``split.validation``: ``matched`` (the test cutoff minus the test window's length, so both
windows last as long) or a smaller quantile. Two splits follow:

- validation split: fit rows = dated rows before the validation cutoff; truth window = dated rows
  from the validation cutoff up to (excluded) the test cutoff;
- test split: fit rows = dated rows before the test cutoff; truth window = dated rows from it on.

So every fit timestamp precedes every validation timestamp, which precedes every test timestamp.

Undated rows (``split.undated_policy``):

- ``exclude_only`` (default): they never train a model and never reach a truth window; they only
  exclude (a customer who wishlisted a product is never recommended it, by the models and by the
  oracle and random references alike). They travel as ``Split.exclude``;
- ``train``: they join the fit rows of both splits (the original behaviour; an undated row may
  belong to the validation or test period, so this leaks);
- ``drop``: they are removed from everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recsys.data.contract import DATE_DTYPE

UNDATED_POLICIES: tuple[str, ...] = ("exclude_only", "train", "drop")


@dataclass(frozen=True)
class Split:
    """Fit rows, exclusion-only rows and the truth window of one temporal split."""

    name: str
    train: pd.DataFrame
    test: pd.DataFrame
    exclude: pd.DataFrame
    cutoff: pd.Timestamp
    end: pd.Timestamp | None
    undated_policy: str

    @property
    def window_days(self) -> float:
        """Length of the truth window in days (to `end`, or to its last event when open-ended)."""
        end = self.end if self.end is not None else self.test["event_date"].max()
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
    value: Any = dated.quantile(quantile)
    return pd.Timestamp(value).as_unit("us")


def check_dates(interactions: pd.DataFrame) -> pd.Series:
    """The event_date column, checked for presence and dtype."""
    if "event_date" not in interactions.columns:
        raise RuntimeError("temporal split requires an event_date column (see recsys.data.contract)")
    dates = interactions["event_date"]
    if str(dates.dtype) != DATE_DTYPE:
        raise TypeError(
            f"event_date must be {DATE_DTYPE}, got {dates.dtype}; load data with recsys.data.contract.load_prepared"
        )
    return dates


def check_policy(policy: str) -> str:
    """The undated policy, validated."""
    if policy not in UNDATED_POLICIES:
        raise ValueError(f"evaluate.split.undated_policy must be one of {UNDATED_POLICIES}, got {policy!r}")
    return policy


def window_split(
    interactions: pd.DataFrame,
    cutoff: pd.Timestamp,
    end: pd.Timestamp | None = None,
    undated_policy: str = "exclude_only",
    name: str = "test",
) -> Split:
    """Fit rows = dated rows before `cutoff` (+ undated rows under `train`); truth = dated rows in [cutoff, end).

    Rows at or after `end` belong to neither side. Undated rows never reach the truth window; under
    `exclude_only` they become the split's exclusion-only rows.
    """
    dates = check_dates(interactions)
    check_policy(undated_policy)
    undated = dates.isna().to_numpy()
    before = (dates < cutoff).fillna(False).to_numpy(dtype=bool)
    window = ~undated & ~before
    if end is not None:
        if end <= cutoff:
            raise ValueError(f"split window end {end} must be after its cutoff {cutoff}")
        window &= (dates < end).fillna(False).to_numpy(dtype=bool)
    fit = before | (undated if undated_policy == "train" else np.zeros_like(undated))
    excl = undated if undated_policy == "exclude_only" else np.zeros_like(undated)
    return Split(
        name=name,
        train=interactions.loc[fit].reset_index(drop=True),
        test=interactions.loc[window].reset_index(drop=True),
        exclude=interactions.loc[excl].reset_index(drop=True),
        cutoff=cutoff,
        end=end,
        undated_policy=undated_policy,
    )


def validation_cutoff(dates: pd.Series, test_cutoff: pd.Timestamp, validation: str | float) -> pd.Timestamp:
    """Validation cutoff: `matched` = test cutoff minus the test window's length, else a lower date quantile."""
    if validation == "matched":
        last = dates.max()
        cutoff: pd.Timestamp = (test_cutoff - (last - test_cutoff)).as_unit("us")
    else:
        try:
            q = float(validation)
        except (TypeError, ValueError):
            raise ValueError(f"evaluate.split.validation must be 'matched' or a quantile, got {validation!r}") from None
        cutoff = cutoff_at(dates, q)
    first = dates.min()
    if not first < cutoff < test_cutoff:
        raise ValueError(
            f"validation cutoff {cutoff} must fall strictly between the first dated row ({first}) and the test cutoff "
            f"({test_cutoff}); choose a smaller evaluate.split.validation quantile or a later evaluate.split.quantile"
        )
    return cutoff


def protocol_splits(
    interactions: pd.DataFrame,
    quantile: float = 0.8,
    validation: str | float = "matched",
    undated_policy: str = "exclude_only",
) -> tuple[Split, Split]:
    """(validation split, test split) of the protocol (module docstring)."""
    dates = check_dates(interactions)
    test_cutoff = cutoff_at(dates, quantile)
    val_cutoff = validation_cutoff(dates.dropna(), test_cutoff, validation)
    return (
        window_split(interactions, val_cutoff, test_cutoff, undated_policy, "validation"),
        window_split(interactions, test_cutoff, None, undated_policy, "test"),
    )


def _ids(values: pd.Series) -> np.ndarray:
    """Unique ids of a column as a numpy array."""
    return np.asarray(pd.unique(values.to_numpy()))


def split_summary(split: Split) -> dict[str, Any]:
    """Dates and sizes of both sides and the share of truth customers / products unseen in the fit rows."""
    train_users, test_users = _ids(split.train["customer_id"]), _ids(split.test["customer_id"])
    train_products, test_products = _ids(split.train["product_id"]), _ids(split.test["product_id"])
    unseen_users = int((~np.isin(test_users, train_users)).sum())
    unseen_products = int((~np.isin(test_products, train_products)).sum())
    return {
        "name": split.name,
        "cutoff": split.cutoff.isoformat(),
        "end": None if split.end is None else split.end.isoformat(),
        "window_days": round(split.window_days, 3),
        "fit_rows": int(len(split.train)),
        "truth_rows": int(len(split.test)),
        "exclude_rows": int(len(split.exclude)),
        "fit_customers": int(len(train_users)),
        "truth_customers": int(len(test_users)),
        "truth_customers_unseen": unseen_users,
        "truth_customers_unseen_share": unseen_users / len(test_users) if len(test_users) else float("nan"),
        "truth_products": int(len(test_products)),
        "truth_products_unseen": unseen_products,
    }


def undated_facts(interactions: pd.DataFrame, test: Split) -> dict[str, Any]:
    """The undated rows: their count, customers known only through them, and the test-window pairs they involve.

    `known_only_undated_truth_customers`: test-window customers whose only pre-cutoff history is undated
    (reachable under `train`, unreachable under `exclude_only` / `drop`); `excluded_truth_pairs`: test
    relevant (product, customer) pairs that an undated row excludes (never recommendable under `exclude_only`).
    """
    dates = check_dates(interactions)
    undated = interactions.loc[dates.isna().to_numpy()]
    dated_before = interactions.loc[(dates < test.cutoff).fillna(False).to_numpy(dtype=bool)]
    only_undated = np.setdiff1d(
        _ids(undated["customer_id"]), _ids(interactions.loc[dates.notna().to_numpy(), "customer_id"])
    )
    truth_customers = _ids(test.test["customer_id"])
    no_dated_history = np.setdiff1d(_ids(undated["customer_id"]), _ids(dated_before["customer_id"]))
    truth_pairs = test.test[["product_id", "customer_id"]].drop_duplicates()
    undated_pairs = undated[["product_id", "customer_id"]].drop_duplicates()
    excluded_truth = truth_pairs.merge(undated_pairs, on=["product_id", "customer_id"], how="inner")
    return {
        "undated_rows": int(len(undated)),
        "undated_customers": int(len(_ids(undated["customer_id"]))),
        "customers_known_only_undated": int(len(only_undated)),
        "known_only_undated_truth_customers": int(np.isin(truth_customers, no_dated_history).sum()),
        "excluded_truth_pairs": int(len(excluded_truth)),
    }
