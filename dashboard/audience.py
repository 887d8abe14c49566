"""The audience as shown and exported: per-customer activity, the diff against the cache, the table, the CSV."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recsys.data.ids import id_array
from recsys.exports import csv_text
from recsys.features.engagement import event_codes


@dataclass(frozen=True)
class UserActivity:
    """Per-customer activity (codes = positions in the sorted customer ids)."""

    customer_ids: np.ndarray
    interactions: np.ndarray
    distinct_products: np.ndarray
    last_seen: np.ndarray
    event_counts: np.ndarray
    categories: list[str]

    def codes(self, customer_ids: np.ndarray) -> np.ndarray:
        """Codes of customer ids (-1 for ids not in the data)."""
        return positions_in(self.customer_ids, customer_ids)


def positions_in(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Position of each id in the ascending `sorted_ids` (-1 when absent or of the other id kind)."""
    ids = id_array(ids)
    if len(ids) == 0 or len(sorted_ids) == 0 or (ids.dtype.kind in "iu") != (sorted_ids.dtype.kind in "iu"):
        return np.full(len(ids), -1, dtype=np.int64)
    pos = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == ids, pos, -1).astype(np.int64)


@dataclass(frozen=True)
class AudienceDiff:
    """How a list changed against a baseline of the same depth."""

    entered: np.ndarray
    left: np.ndarray
    moves: np.ndarray  # per row of the new list: old rank - new rank (positive = moved up); 0 for entered rows
    is_new: np.ndarray


def diff_audiences(before: np.ndarray, after: np.ndarray) -> AudienceDiff:
    """Customers who entered / left the list and how each kept customer moved."""
    before, after = id_array(before), id_array(after)
    if len(before) == 0 or len(after) == 0:
        is_new = np.ones(len(after), dtype=bool)
        return AudienceDiff(after.copy(), before.copy(), np.zeros(len(after), dtype=np.int64), is_new)
    keyed = pd.Index(before)
    old_rank = keyed.get_indexer(after)
    is_new = old_rank < 0
    moves = np.where(is_new, 0, old_rank - np.arange(len(after)))
    return AudienceDiff(after[is_new], before[~np.isin(before, after)], moves.astype(np.int64), is_new)


def change_labels(diff: AudienceDiff) -> np.ndarray:
    """Human labels per row: 'new', '▲3', '▼2' or '='."""
    moves = diff.moves
    up = np.char.add("▲", moves.astype(str))
    down = np.char.add("▼", (-moves).astype(str))
    return np.where(diff.is_new, "new", np.where(moves > 0, up, np.where(moves < 0, down, "="))).astype(object)


def events_text(counts: np.ndarray, categories: Sequence[str]) -> np.ndarray:
    """Per row, the non-zero event counts as text, e.g. '2 cart · 1 purchased' (loops over event types only)."""
    out = pd.Series("", index=range(len(counts)), dtype=object)
    for j, cat in enumerate(categories):
        piece = pd.Series(counts[:, j], index=out.index).astype(str) + f" {cat}"
        joined = pd.Series(np.where(out == "", piece, out + " · " + piece), index=out.index, dtype=object)
        out = out.where(counts[:, j] == 0, joined)
    return out.to_numpy(dtype=object)


def gather(values: np.ndarray, codes: np.ndarray, fill: Any) -> np.ndarray:
    """Rows of `values` at `codes`, with `fill` where the code is -1 (or nothing is loaded)."""
    known = codes >= 0
    if len(values) == 0:
        return np.full((len(codes),) + values.shape[1:], fill)
    picked = values[np.where(known, codes, 0)]
    return np.where(known.reshape((-1,) + (1,) * (values.ndim - 1)), picked, fill)


def audience_frame(
    customers: np.ndarray,
    scores: np.ndarray,
    users: UserActivity,
    baseline: np.ndarray | None,
    exposures: np.ndarray | None = None,
) -> pd.DataFrame:
    """The audience table: rank, customer, score, change vs baseline, served exposures and each customer's activity.

    `exposures`: per row, in how many served audiences the customer is (``dashboard.exposure.ExposureCounts``).
    """
    codes = users.codes(customers)

    def take(arr: np.ndarray, fill: Any) -> np.ndarray:
        return gather(arr, codes, fill)

    return pd.DataFrame(
        {
            "rank": np.arange(1, len(customers) + 1),
            "customer_id": id_array(customers),
            "score": np.asarray(scores),  # float32 from the cache (shown at its precision), float64 from what-if
            "change": change_labels(diff_audiences(baseline, customers))
            if baseline is not None
            else np.full(len(codes), "", dtype=object),
            "exposures": np.zeros(len(codes), dtype=np.int64) if exposures is None else np.asarray(exposures),
            "interactions": take(users.interactions, 0),
            "distinct_products": take(users.distinct_products, 0),
            "last_seen": pd.to_datetime(take(users.last_seen, np.datetime64("NaT", "us")), utc=True),
            "events": events_text(take(users.event_counts, 0), users.categories),
        }
    )


def audience_csv(frame: pd.DataFrame, product_id: Any, header: Mapping[str, Any] | None = None) -> str:
    """The audience as CSV text for people (product_id first; dates ISO; scores at full precision).

    Written by `recsys.exports.csv_text`: text cells a spreadsheet would evaluate are neutralised, and `header`
    (e.g. the cache version and the what-if settings) goes first as ``# key: value`` lines.
    """
    out = frame.drop(columns=["change"], errors="ignore").copy()
    out.insert(0, "product_id", product_id)
    out["last_seen"] = out["last_seen"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return csv_text(out, header)


def export_filename(product_id: Any, source: str, n: int) -> str:
    """A safe file name for the downloaded audience."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(product_id))
    return f"audience_{safe}_{source.replace('-', '')}_top{int(n)}.csv"


@dataclass(frozen=True)
class AudienceResult:
    """One audience as shown: where it came from, the list, the cached baseline and timing."""

    product_id: Any
    customers: np.ndarray
    scores: np.ndarray
    cold_start: bool
    source: str
    ranker: str
    baseline: np.ndarray | None
    seconds: float
    diff: AudienceDiff | None = None
    cap: int | None = None  # the frequency cap the list was chosen under (None: uncapped)
    approximate: bool = False  # a per-product approximation of the joint capped allocation (dashboard.exposure)
    held_out: np.ndarray | None = None  # customers of the ranking the cap held out (approximate lists only)
    served_cap: int | None = None  # the cap the cache's audiences were allocated under (None: uncapped or no cache)


def user_activity(df: pd.DataFrame, ucodes: np.ndarray, raw: pd.DataFrame) -> UserActivity:
    """Per-customer interactions, distinct products, last dated event and event counts."""
    ecodes, categories = event_codes(df["event"])
    n_users, n_cat = len(raw), len(categories)
    has = ecodes >= 0
    counts = np.bincount(ucodes[has] * n_cat + ecodes[has], minlength=n_users * n_cat).reshape(n_users, n_cat)
    last = raw["last_event_date"].dt.tz_localize(None).to_numpy().astype("datetime64[us]")
    return UserActivity(
        customer_ids=id_array(raw.index.to_numpy()),
        interactions=raw["total_interactions"].to_numpy().astype(np.int64),
        distinct_products=raw["unique_products"].to_numpy().astype(np.int64),
        last_seen=last,
        event_counts=counts.astype(np.int32),
        categories=categories,
    )


def empty_users() -> UserActivity:
    """A UserActivity with nobody in it."""
    return UserActivity(
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
        np.zeros(0, "datetime64[us]"),
        np.zeros((0, 0), np.int32),
        [],
    )
