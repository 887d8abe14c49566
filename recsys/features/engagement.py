"""Per-user features and the engagement score (all knobs in params/features.yaml).

Definitions (``ref`` = ``reference_date`` param, default the latest ``event_date`` of the data;
``days_ago`` = (ref - event_date) in fractional days, clipped at 0 so events after ``ref`` get full
credit; an event's ``decay`` = exp(-days_ago / ``decay_days``), or ``undated_decay`` for an undated
(NaT) row, per ``recsys.data.contract.UNDATED_POLICY``; default 0.0 = an undated row adds nothing to
the score sums but still counts as an interaction):

- ``total_interactions``: rows of the user, dated or not.
- ``unique_products``: distinct products the user touched.
- ``avg_event_score``: sum(event_weight[event] * decay) / total_interactions. Rows whose event is
  null weigh 0.
- ``interaction_frequency``: total_interactions / (active_span_days + 1), where active_span_days is
  the fractional number of days between the user's first and last dated event (0 with < 2 dated
  events). A one-time user scores 1; five events in one day score 5; two events 30 days apart ~0.065.
- ``recency``: exp(-(ref - last dated event) / ``recency_days``) (days clipped at 0); users with no
  dated event get ``undated_decay``.

Each feature is normalised across users to [0, 1] with ``normalisation``:

- ``minmax``: (x - min) / (max - min), the original method; heavy tails squash most users near 0;
- ``log1p_minmax``: minmax of log1p(x), robust to the heavy tails of the counts (default);
- ``percentile``: average rank scaled to [0, 1] (ties share a value).

A constant feature normalises to 0 everywhere (it cannot separate users).
``engagement = sum_f weight[f] * normalised[f]`` with the weights of the ``engagement`` block
(0.35, 0.25, 0.20, 0.15, 0.05 by default, so engagement lies in [0, 1] when weights sum to 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys import config
from recsys.arrays import unique_sorted
from recsys.data.contract import CANONICAL_EVENTS

FEATURE_NAMES: tuple[str, ...] = (
    "total_interactions",
    "unique_products",
    "avg_event_score",
    "interaction_frequency",
    "recency",
)
NORMALISATIONS: tuple[str, ...] = ("minmax", "log1p_minmax", "percentile")
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "purchased": 5.0,
    "cart": 3.0,
    "rating": 2.5,
    "wishlist": 2.0,
    "search_keyword": 1.0,
    "view": 0.5,
}
DEFAULT_ENGAGEMENT_WEIGHTS: dict[str, float] = {
    "total_interactions": 0.35,
    "unique_products": 0.25,
    "avg_event_score": 0.20,
    "interaction_frequency": 0.15,
    "recency": 0.05,
}
US_PER_DAY = 86_400_000_000
NAT_US = np.iinfo(np.int64).min  # int64 view of NaT
DECAYED_PREFIX = "decayed_"


@dataclass(frozen=True)
class FeatureParams:
    """Every knob of the features and the engagement score (see params/features.yaml)."""

    event_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    decay_days: float = 90.0
    undated_decay: float = 0.0
    recency_days: float = 90.0
    reference_date: pd.Timestamp | None = None
    normalisation: str = "log1p_minmax"
    weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_ENGAGEMENT_WEIGHTS))

    def __post_init__(self) -> None:
        """Fill unspecified weights with the defaults; validate knobs with messages that name the param."""
        object.__setattr__(self, "event_weights", {**DEFAULT_EVENT_WEIGHTS, **dict(self.event_weights)})
        object.__setattr__(self, "weights", {**DEFAULT_ENGAGEMENT_WEIGHTS, **dict(self.weights)})
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"engagement.normalisation must be one of {NORMALISATIONS}, got {self.normalisation!r}")
        unknown = sorted(set(self.weights) - set(FEATURE_NAMES))
        if unknown:
            raise ValueError(f"engagement.weights has unknown feature(s) {unknown}; known: {FEATURE_NAMES}")
        if self.decay_days <= 0 or self.recency_days <= 0:
            raise ValueError("features.decay_days and features.recency_days must be > 0")
        if not 0.0 <= self.undated_decay <= 1.0:
            raise ValueError(f"features.undated_decay must be in [0, 1], got {self.undated_decay}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> FeatureParams:
        """Build from the params/features.yaml structure ({features: ..., engagement: ...}); absent keys: defaults."""
        params = params or {}
        check_keys("features params", params, FEATURE_BLOCKS)
        feats = dict(params.get("features") or {})
        eng = dict(params.get("engagement") or {})
        check_keys("features", feats, FEATURE_KEYS)
        check_keys("engagement", eng, ENGAGEMENT_KEYS)
        check_keys("features.event_weights", feats.get("event_weights") or {}, tuple(CANONICAL_EVENTS))
        ref = feats.get("reference_date")
        return cls(
            event_weights={**DEFAULT_EVENT_WEIGHTS, **(feats.get("event_weights") or {})},
            decay_days=float(feats.get("decay_days", 90.0)),
            undated_decay=float(feats.get("undated_decay", 0.0)),
            recency_days=float(feats.get("recency_days", 90.0)),
            reference_date=to_utc(ref) if ref not in (None, "") else None,
            normalisation=str(eng.get("normalisation", "log1p_minmax")),
            weights={**DEFAULT_ENGAGEMENT_WEIGHTS, **(eng.get("weights") or {})},
        )

    def with_(self, **changes: Any) -> FeatureParams:
        """A copy with some knobs changed."""
        return replace(self, **changes)


FEATURE_BLOCKS: tuple[str, ...] = ("features", "engagement")
FEATURE_KEYS: tuple[str, ...] = ("event_weights", "decay_days", "undated_decay", "recency_days", "reference_date")
ENGAGEMENT_KEYS: tuple[str, ...] = ("normalisation", "weights")


def check_keys(where: str, block: Mapping[str, Any], valid: tuple[str, ...]) -> None:
    """Raise a ValueError naming the unknown keys of a params block and the valid ones."""
    if not isinstance(block, Mapping):
        raise ValueError(f"{where} must be a mapping, got {block!r}")
    unknown = sorted(str(k) for k in block if k not in valid)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys: {', '.join(valid)}")


def to_utc(value: Any) -> pd.Timestamp:
    """A timestamp in UTC at microsecond unit (naive input is taken as UTC)."""
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.as_unit("us")


def load_feature_params(params_dir: Path | None = None) -> FeatureParams:
    """FeatureParams from params/features.yaml."""
    return FeatureParams.from_params(config.load_params("features", params_dir))


def encode_ids(values: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes (sorted id order) and the sorted unique ids as numpy (int, or object str)."""
    codes, uniques = pd.factorize(values, sort=True)
    if pd.api.types.is_integer_dtype(uniques.dtype):
        return codes, np.asarray(uniques)
    return codes, np.asarray(pd.array(np.asarray(uniques), dtype="string[pyarrow]").astype(object), dtype=object)


def event_codes(events: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Integer event codes (-1 = null) and the category names."""
    if isinstance(events.dtype, pd.CategoricalDtype):
        return events.cat.codes.to_numpy().astype(np.int64), [str(c) for c in events.cat.categories]
    codes, uniques = pd.factorize(events)
    return codes.astype(np.int64), [str(c) for c in uniques]


def event_weight_vector(
    categories: list[str], weights: Mapping[str, float], present: np.ndarray | None = None
) -> np.ndarray:
    """Weight of every event category (0 if absent); an event present in the data without a weight is an error."""
    used = categories if present is None else [c for c, p in zip(categories, present, strict=True) if p]
    missing = [c for c in used if c not in weights]
    if missing:
        raise ValueError(
            f"no weight for event(s) {missing} in features.event_weights (known events: {CANONICAL_EVENTS})"
        )
    return np.array([float(weights.get(c, 0.0)) for c in categories], dtype=np.float64)


def timestamps_us(dates: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Event dates as int64 microseconds since epoch (UTC) and the dated mask."""
    dated = dates.notna().to_numpy()
    naive = dates.dt.tz_convert("UTC").dt.tz_localize(None) if dates.dt.tz is not None else dates
    us = naive.astype("datetime64[us]").to_numpy().view(np.int64)
    return us, dated


def reference_us(params: FeatureParams, us: np.ndarray, dated: np.ndarray) -> int | None:
    """Reference instant in microseconds: the param, else the latest dated event (None if nothing is dated)."""
    if params.reference_date is not None:
        return int(to_utc(params.reference_date).value // 1_000)
    return int(us[dated].max()) if dated.any() else None


def decay_factors(
    us: np.ndarray, dated: np.ndarray, ref_us: int | None, decay_days: float, undated: float
) -> np.ndarray:
    """exp(-days_ago / decay_days) for dated rows (days clipped at 0), `undated` for undated rows."""
    out = np.full(len(us), undated, dtype=np.float64)
    if ref_us is not None and dated.any():
        days = np.maximum(ref_us - us[dated], 0) / US_PER_DAY
        out[dated] = np.exp(-days / decay_days)
    return out


def compute_raw_features(interactions: pd.DataFrame, params: FeatureParams | None = None) -> pd.DataFrame:
    """Raw per-user features (index customer_id, sorted) plus per-event decayed sums for what-ifs."""
    params = params or FeatureParams()
    ucodes, uids = encode_ids(interactions["customer_id"])
    n_users = len(uids)
    total = np.bincount(ucodes, minlength=n_users).astype(np.float64)

    pcodes, pids = pd.factorize(interactions["product_id"])
    pairs = unique_sorted(ucodes.astype(np.int64) * max(len(pids), 1) + pcodes)
    unique_products = np.bincount(pairs // max(len(pids), 1), minlength=n_users).astype(np.float64)

    ecodes, categories = event_codes(interactions["event"])
    us, dated = timestamps_us(interactions["event_date"])
    ref = reference_us(params, us, dated)
    decay = decay_factors(us, dated, ref, params.decay_days, params.undated_decay)
    n_cat = len(categories)
    has_event = ecodes >= 0
    decayed = np.bincount(
        ucodes[has_event] * n_cat + ecodes[has_event], weights=decay[has_event], minlength=n_users * n_cat
    ).reshape(n_users, n_cat)
    present = np.bincount(ecodes[has_event], minlength=n_cat) > 0
    weights = event_weight_vector(categories, params.event_weights, present)
    avg_event_score = weighted_event_average(decayed, weights, total)

    first, last, n_dated = dated_extremes(ucodes, us, dated, n_users)
    has_dated = n_dated > 0
    span_days = np.where(has_dated, (last - first) / US_PER_DAY, 0.0)
    frequency = total / (span_days + 1.0)
    recency = np.full(n_users, params.undated_decay, dtype=np.float64)
    if ref is not None:
        recency[has_dated] = np.exp(-np.maximum(ref - last[has_dated], 0) / US_PER_DAY / params.recency_days)

    index = pd.Index(uids, name="customer_id", dtype=interactions["customer_id"].dtype)
    frame = pd.DataFrame(
        {
            "total_interactions": total,
            "unique_products": unique_products,
            "avg_event_score": avg_event_score,
            "interaction_frequency": frequency,
            "recency": recency,
            "dated_interactions": n_dated,
            "last_event_date": pd.to_datetime(np.where(has_dated, last, NAT_US).view("datetime64[us]"), utc=True),
        },
        index=index,
    )
    for j, cat in enumerate(categories):
        frame[f"{DECAYED_PREFIX}{cat}"] = decayed[:, j]
    frame.attrs["reference_date"] = None if ref is None else str(pd.Timestamp(ref, unit="us", tz="UTC"))
    return frame


def dated_extremes(
    codes: np.ndarray, us: np.ndarray, dated: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user: first and last dated timestamp (us; 0 when none) and the number of dated rows."""
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    c, t = codes[dated], us[dated]
    np.minimum.at(first, c, t)
    np.maximum.at(last, c, t)
    count = np.bincount(c, minlength=n)
    none = count == 0
    first[none] = 0
    last[none] = 0
    return first, last, count


def _minmax(x: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant column becomes all zeros."""
    lo, hi = (float(x.min()), float(x.max())) if len(x) else (0.0, 0.0)
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x, dtype=np.float64)


def _percentile(x: np.ndarray) -> np.ndarray:
    """Average rank scaled to [0, 1] (ties share their mean rank); one argsort, no np.unique."""
    n = len(x)
    if n < 2:
        return np.zeros(n, dtype=np.float64)
    # ranks of tied values are averaged below, so the sort need not be stable; timsort is ~3x faster than
    # introsort on integer counts (few distinct values), ~3x slower on continuous values (measured at scale 1)
    order = np.argsort(x, kind="stable" if np.array_equal(x, np.floor(x)) else "quicksort")
    xs = x[order]
    group = np.concatenate([[0], np.cumsum(xs[1:] != xs[:-1])])
    counts = np.bincount(group)
    if len(counts) < 2:
        return np.zeros(n, dtype=np.float64)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based average rank of each distinct value
    out = np.empty(n, dtype=np.float64)
    out[order] = (mean_rank[group] - 1.0) / (n - 1.0)
    return out


def normalise(x: np.ndarray, method: str) -> np.ndarray:
    """Normalise one feature column to [0, 1] with `minmax`, `log1p_minmax` or `percentile`."""
    x = np.asarray(x, dtype=np.float64)
    if method == "minmax":
        return _minmax(x)
    if method == "log1p_minmax":
        return _minmax(np.log1p(np.maximum(x, 0.0)))
    if method == "percentile":
        return _percentile(x)
    raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {method!r}")


def weighted_event_average(decayed: np.ndarray, weights: np.ndarray, total: np.ndarray) -> np.ndarray:
    """sum over events of weight * decayed sum, divided by the customer's rows (one summation order everywhere)."""
    average: np.ndarray = (np.ascontiguousarray(decayed, dtype=np.float64) @ weights) / total
    return average


def avg_event_score_for(raw: pd.DataFrame, event_weights: Mapping[str, float]) -> np.ndarray:
    """avg_event_score recomputed from the stored per-event decayed sums with other event weights."""
    cols = [c for c in raw.columns if c.startswith(DECAYED_PREFIX)]
    cats = [c[len(DECAYED_PREFIX) :] for c in cols]
    w = event_weight_vector(cats, {**DEFAULT_EVENT_WEIGHTS, **event_weights})
    return weighted_event_average(
        raw[cols].to_numpy(dtype=np.float64), w, raw["total_interactions"].to_numpy(dtype=np.float64)
    )


def weight_vector(weights: Mapping[str, float]) -> np.ndarray:
    """Engagement weights in FEATURE_NAMES order (absent features weigh 0)."""
    unknown = sorted(set(weights) - set(FEATURE_NAMES))
    if unknown:
        raise ValueError(f"unknown engagement weight(s) {unknown}; known: {FEATURE_NAMES}")
    return np.array([float(weights.get(f, 0.0)) for f in FEATURE_NAMES], dtype=np.float64)


# Knobs that only re-weight fixed raw features (no pass over the interactions): what a re-score may change.
ENGAGEMENT_KNOBS: tuple[str, ...] = ("event_weights", "weights", "normalisation")


class EngagementModel:
    """Raw per-customer features computed once; engagement under any event weights, feature weights, normalisation.

    The one engagement scorer of the project: rankers fit it, re-scores and the dashboard's what-if reuse it.
    Normalised columns are memoised per normalisation; new feature weights cost one (customers x 5) @ (5,)
    product; new event weights re-normalise only avg_event_score. Knobs that change the raw features
    themselves (decay, recency horizon, undated decay, reference date) need a new model (``fit``).
    """

    def __init__(self, raw: pd.DataFrame, params: FeatureParams) -> None:
        """Keep raw features (from compute_raw_features with `params`) and the params they were computed with."""
        self.raw = raw
        self.params = params
        self._normalised: dict[str, np.ndarray] = {}
        self._event_score: dict[tuple[str, tuple[float, ...]], np.ndarray] = {}

    @classmethod
    def fit(cls, interactions: pd.DataFrame, params: FeatureParams | None = None) -> EngagementModel:
        """Compute the raw features of every customer (index sorted by customer id)."""
        params = params or FeatureParams()
        return cls(compute_raw_features(interactions, params), params)

    def __len__(self) -> int:
        """Number of customers."""
        return int(len(self.raw))

    def check(self, params: FeatureParams) -> None:
        """Raise when `params` changes a knob that needs new raw features (a refit), naming it."""
        for knob in ("decay_days", "undated_decay", "recency_days", "reference_date"):
            if getattr(params, knob) != getattr(self.params, knob):
                raise ValueError(
                    f"features.{knob} changes the raw features: refit the ranker (a re-score may change only "
                    f"{', '.join(ENGAGEMENT_KNOBS)})"
                )

    def normalised(self, method: str) -> np.ndarray:
        """(customers x 5) normalised features in FEATURE_NAMES order, with the fitted event weights (memoised)."""
        if method not in self._normalised:
            cols = [normalise(self.raw[name].to_numpy(), method) for name in FEATURE_NAMES]
            self._normalised[method] = np.column_stack(cols)
        return self._normalised[method]

    def _avg_event_score(self, event_weights: Mapping[str, float], method: str) -> np.ndarray:
        """Normalised avg_event_score under other event weights (the last few are memoised)."""
        key = (method, tuple(float(event_weights.get(e, 0.0)) for e in sorted(event_weights)))
        if key not in self._event_score:
            if len(self._event_score) >= 4:
                self._event_score.pop(next(iter(self._event_score)))
            self._event_score[key] = normalise(avg_event_score_for(self.raw, event_weights), method)
        return self._event_score[key]

    def normalised_for(self, params: FeatureParams) -> np.ndarray:
        """(customers x 5) normalised features under the knobs of `params`."""
        self.check(params)
        matrix = self.normalised(params.normalisation)
        if dict(params.event_weights) == dict(self.params.event_weights):
            return matrix
        out = matrix.copy()
        out[:, FEATURE_NAMES.index("avg_event_score")] = self._avg_event_score(
            params.event_weights, params.normalisation
        )
        return out

    def engagement(self, params: FeatureParams | None = None) -> np.ndarray:
        """Engagement of every customer (raw-feature row order) under the knobs of `params` (default: fitted ones)."""
        params = params or self.params
        engagement: np.ndarray = self.normalised_for(params) @ weight_vector(params.weights)
        return engagement

    def features(self, params: FeatureParams | None = None) -> pd.DataFrame:
        """Raw features, `norm_<feature>` columns and `engagement`, one row per customer."""
        params = params or self.params
        matrix = self.normalised_for(params)
        out = self.raw.copy()
        for j, name in enumerate(FEATURE_NAMES):
            out[f"norm_{name}"] = matrix[:, j]
        out["engagement"] = matrix @ weight_vector(params.weights)
        return out


def compute_features(interactions: pd.DataFrame, params: FeatureParams | None = None) -> pd.DataFrame:
    """Raw features, their normalised versions (`norm_<feature>`) and `engagement`, one row per user."""
    return EngagementModel.fit(interactions, params).features()
