"""The ``learned`` ranker: candidates from several rankers, re-ranked by LightGBM LambdaRank grouped by product.

Stage 1, candidates. Every source of ``sources`` (label -> registered ranker, depth ``candidates``, that
ranker's settings; seed and features block inherited) ranks the product; the union of their lists is the
product's candidate set (the product's own and excluded customers never enter: every source honours the
contract, and the union is filtered again).

Stage 2, features at the cutoff, one row per (product, candidate customer), ``feature_names_``:

- ``src.<label>.score`` / ``src.<label>.rank``: every source's score of the pair (its ``score_pairs`` for
  pairs it did not propose, the shared order's score for global-order rankers, else missing) and the pair's
  rank in its list (depth + 1 when the source did not propose it);
- ``cust.*``: the customer's activity at the cutoff (``recsys.features.returns.ACTIVITY_FEATURES``: days
  since the last and first event, rows, active days, distinct products, recent rows and days, mean gap,
  event mix), ``cust.engagement`` (the activity ranker's score under the features block) and
  ``cust.return_probability`` (the return model: P(active in the next ``label_days``));
- ``prod.*``: the product's age and days since its last row, fit rows, distinct customers, recent rows,
  the size of its inferred category;
- ``pair.token_affinity`` (cosine of the product's TF-IDF name tokens and the customer's profile, the
  content ranker's affinity without posting caps), ``pair.category_rows`` / ``pair.category_share``
  (the customer's fit rows in the product's inferred category, and their share of the customer's rows).

Training without leakage. ``fit(interactions, exclude)``: with ``end`` the last dated instant of the fit
rows, the rows of the last ``label_days`` (``[end - label_days, end]``) are the label window; sources,
categories, the return model and every feature are fitted on the rows before it (undated rows, which
have no place in time, stay with them). With ``label_windows`` = W > 1 the W windows before ``end`` are
stacked (window w: labels in ``[end - (w+1) L, end - w L)``, features from the rows before it), each with
its own fitted sources. Labels: a candidate is positive when the customer touched the product in the label
window (``label_events`` only, when set); only pairs a ranker could return count (customer and product
known before the window, pair not touched before). With ``category_label_gain`` g > 0 the labels are
graded: 2 (gain 1) for the product itself, 1 (gain g) for a customer back in the product's inferred
category, and up to ``max_groups`` label-window products without an exact positive join as groups.
Products whose candidates hold no positive are dropped from training (``WindowFacts.groups_without_positive``);
per product every positive and ``negatives`` negatives are kept, the negatives chosen by a seeded hash of
the pair (independent of how products are batched). LightGBM then trains with ``objective=lambdarank``,
fixed ``num_threads``, ``deterministic=true``, ``force_row_wise=true`` and seeds from ``seed``; with
``base_source`` set, boosting starts from -``base_weight`` x ln(rank in that source's list) (``init_score``,
added back at prediction), so few trees stay close to that source's order. Finally the sources and
features are refitted on every fit row, so ``rank`` scores at the real cutoff; nothing after the fit rows
is read. ``training_`` (``TrainingFacts``) records every window: groups, rows, positives, how many of
the label pairs the candidates (and each source alone) cover, the return model's data, wall seconds.

Ranking. Products are processed in blocks of about ``chunk_entries`` candidate pairs (no loop per
product or customer); each list is its candidates by predicted score (ties by ascending customer id).
When fewer than k candidates remain and ``backfill`` is on, the list is completed from the engagement
order (the ``activity`` ranker's order under the features block) below every candidate: score = lowest
candidate score - 1 - (max engagement - engagement), so scores stay non-increasing;
``rank_with_facts`` reports, per product, the candidates and the backfilled entries. A product without
fit rows gets the engagement order minus its excluded customers (``cold_start``). Every feature is a
function of the pair and the fitted state and prediction is row-wise, so a product's list does not
depend on the other products of the request, as long as the sources' own lists do not.

Knobs. The LightGBM settings, ``drop_features``, ``base_source`` / ``base_weight`` (re-train the GBM on
the cached training matrix ``training_data_``, no source refitted: identical to a fresh fit with the
merged settings), ``backfill``, ``chunk_entries`` and ``feature_cache_pairs`` (serving only) change through
``with_params`` / ``rescore``. With ``feature_cache_pairs`` large enough, the candidate features of the
latest request are kept in the fitted state shared by those copies, so a validation search re-ranks the
same products under many GBM settings for the price of one candidate generation (each trial: re-train +
predict). ``feature_importance_`` gives the gain and split count of every feature after fit.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict

from recsys.arrays import not_excluded, offsets_of, unique_sorted
from recsys.data.catalogue import Catalogue
from recsys.data.ids import id_array
from recsys.features.categories import CategoryParams, fit_categories
from recsys.features.engagement import US_PER_DAY, EngagementModel, FeatureParams
from recsys.features.name_index import row_normalise
from recsys.features.name_matrix import product_token_matrix, tfidf
from recsys.features.returns import ACTIVITY_FEATURES, EventRows, ReturnModel, customer_activity, fit_return_model
from recsys.rankers.base import GlobalOrder, GlobalRanker, History, Recommendations, merge_knobs, ordered
from recsys.rankers.category import (
    CategoryLists,
    CategoryPopularityRanker,
    CategoryShareRanker,
    TruthCategoryRanker,
    category_counts,
    product_category_codes,
)
from recsys.rankers.settings import LearnedSettings, SourceSettings, parse_settings, settings_dict

GBM_KNOBS: tuple[str, ...] = (
    "n_estimators",
    "learning_rate",
    "num_leaves",
    "min_child_samples",
    "reg_lambda",
    "feature_fraction",
    "truncation_level",
    "max_bin",
    "num_threads",
    "drop_features",
    "base_source",
    "base_weight",
)
SERVE_KNOBS: tuple[str, ...] = ("backfill", "chunk_entries", "feature_cache_pairs")
CUSTOMER_FEATURES: tuple[str, ...] = (
    *(f"cust.{f}" for f in ACTIVITY_FEATURES),
    "cust.engagement",
    "cust.return_probability",
)
PRODUCT_FEATURES: tuple[str, ...] = (
    "prod.age_days",
    "prod.days_since_last",
    "prod.rows",
    "prod.customers",
    "prod.rows_recent",
    "prod.category_products",
)
PAIR_FEATURES: tuple[str, ...] = ("pair.token_affinity", "pair.category_rows", "pair.category_share")
PAIR_STEP = 200_000  # pairs per sparse row-wise product (token affinity)


# ----------------------------------------------------------------------------------------------
# typed records
# ----------------------------------------------------------------------------------------------


class FeatureImportance(BaseModel):
    """One feature's importance in the trained GBM: total gain, number of splits, share of the total gain."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    feature: str
    gain: float
    splits: int
    gain_share: float


class WindowFacts(BaseModel):
    """One label window of the training: its rows, groups, labels, how well the candidates cover its positives."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cutoff: str  # start of the label window = the inner cutoff its features are computed at
    stop: str  # end of the label window (the fit rows' end for the latest window)
    inner_rows: int
    label_rows: int
    positive_pairs: int  # eligible label-window pairs (customer and product known before the cutoff, not excluded)
    products_with_positive: int
    groups: int  # training products (at least one positive among the candidates)
    groups_without_positive: int  # products with a positive none of whose candidates is positive: dropped
    groups_sampled_out: int  # products left out by max_groups
    rows: int
    positives: int
    category_positives: int  # label 1: back in the product's inferred category (category_label_gain > 0)
    category_groups: int  # label-window products without an exact positive added for the category labels
    candidates_mean: float  # candidates per training product before sampling negatives
    positive_recall: float  # share of the eligible positive pairs of the training products among the candidates
    source_recall: dict[str, float]  # the same share for each source's list alone
    return_customers: int
    return_positives: int
    return_fallback: bool


class TrainingFacts(BaseModel):
    """What the fit trained on: its label windows (latest first), totals and wall seconds per phase."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    end: str
    label_days: float
    windows: list[WindowFacts]
    groups: int
    rows: int
    positives: int
    seconds: dict[str, float]

    @property
    def inner_cutoff(self) -> str:
        """The earliest inner cutoff: no training feature reads a row at or after it."""
        return self.windows[-1].cutoff


@dataclass(frozen=True)
class TrainingData:
    """The cached training matrix: features, labels, group sizes (product order) and the pairs' ids."""

    features: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    product_ids: np.ndarray
    customer_ids: np.ndarray
    windows: np.ndarray  # label window of each row (0 = the latest)

    @classmethod
    def concat(cls, parts: Sequence[TrainingData]) -> TrainingData:
        """The rows of several windows, one after the other (groups stay contiguous)."""
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))


@dataclass(frozen=True)
class RankFacts:
    """Per requested product: candidates proposed by the sources and entries completed by backfill."""

    candidates: np.ndarray
    backfilled: np.ndarray


# ----------------------------------------------------------------------------------------------
# the state at one cutoff: fitted sources and every feature
# ----------------------------------------------------------------------------------------------


PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _pair_scorer(ranker: Any) -> PairScorer | None:
    """A (product codes, customer codes) -> score function for a fitted source, None when it has none."""
    scorer = getattr(ranker, "score_pairs", None)
    if callable(scorer):
        return cast(PairScorer, scorer)
    if isinstance(ranker, GlobalRanker):
        per_user = np.zeros(ranker.history_.n_users, dtype=np.float64)
        per_user[np.asarray(ranker.global_.order, dtype=np.int64)] = ranker.global_.scores

        def shared(codes: np.ndarray, users: np.ndarray) -> np.ndarray:
            return cast(np.ndarray, per_user[users] * ranker.shared_scale(codes))

        return shared
    return None


def customer_codes_of(history: History, ids: np.ndarray) -> np.ndarray:
    """History codes of fitted customer ids (every id must be fitted)."""
    if history.customer_ids.dtype.kind in "iu":
        return np.searchsorted(history.customer_ids, ids).astype(np.int64)
    return np.asarray(pd.Index(history.customer_ids).get_indexer(pd.Index(ids)), dtype=np.int64)


def pair_hash(keys: np.ndarray, seed: int) -> np.ndarray:
    """A seeded splitmix64 hash of int64 keys (uniform uint64), the same whatever else is hashed with them."""
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return cast(np.ndarray, z ^ (z >> np.uint64(31)))


@dataclass
class CutoffState:
    """Everything the features need at one cutoff, fitted on the rows before it."""

    history: History
    sources: dict[str, Any]
    depths: dict[str, int]
    scorers: dict[str, PairScorer | None]
    customer: np.ndarray  # (customers x CUSTOMER_FEATURES) float32
    product: np.ndarray  # (products x PRODUCT_FEATURES) float32
    category: np.ndarray  # inferred category per product code (-1: none)
    category_lists: CategoryLists  # fit rows per (category, customer)
    user_rows: np.ndarray
    tokens: sp.csr_matrix  # products x tokens TF-IDF
    profiles: sp.csr_matrix  # customers x tokens, L2-normalised
    engagement: np.ndarray
    backfill: GlobalOrder  # engagement order
    pair_keys: np.ndarray
    return_model: ReturnModel
    end_us: int
    feature_cache: dict[bytes, list[tuple[np.ndarray, Candidates, np.ndarray]]] = field(default_factory=dict)

    @property
    def total_depth(self) -> int:
        """Sum of the sources' depths (an upper bound of the candidates per product)."""
        return int(sum(self.depths.values()))


def product_features(rows: EventRows, history: History, end_us: int, recent_days: float) -> np.ndarray:
    """(products x 5) age days, days since last row, fit rows, distinct customers, recent rows (dated for times)."""
    n = history.n_products
    prod = history.row_products
    dated = rows.dated
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(first, prod[dated], rows.us[dated])
    np.maximum.at(last, prod[dated], rows.us[dated])
    has = np.bincount(prod[dated], minlength=n) > 0
    count = np.bincount(prod, minlength=n).astype(np.float64)
    pairs = unique_sorted(prod * history.n_users + history.row_users)
    customers = np.bincount(pairs // history.n_users, minlength=n).astype(np.float64)
    recent = dated & (rows.us > end_us - recent_days * US_PER_DAY)
    count_recent = np.bincount(prod[recent], minlength=n).astype(np.float64)
    age = np.where(has, (end_us - first) / US_PER_DAY, np.nan)
    since = np.where(has, (end_us - last) / US_PER_DAY, np.nan)
    return np.column_stack([age, since, count, customers, count_recent])


def build_state(
    interactions: pd.DataFrame,
    exclude: pd.DataFrame | None,
    settings: LearnedSettings,
    make_source: Callable[[SourceSettings], Any],
) -> CutoffState:
    """Fit the sources and compute every per-customer / per-product feature on `interactions` (a cutoff's rows)."""
    h = History.build(interactions, exclude)
    rows = EventRows.of(interactions)
    if not np.array_equal(rows.customer_ids, h.customer_ids):
        raise RuntimeError("learned: features and history disagree on the customer set")
    end = rows.end_us()
    activity = customer_activity(rows, end, settings.returns.recent_days)
    ret = fit_return_model(rows, settings.returns, settings.label_days, settings.seed)
    p_return = ret.predict(activity)
    engagement = EngagementModel.fit(interactions, FeatureParams.from_params(settings.features)).engagement()
    customer = np.column_stack([activity, engagement, p_return]).astype(np.float32)
    categories, category_model = fit_categories(interactions, CategoryParams(**settings.categories.model_dump()))
    category = product_category_codes(h, categories)
    n_cats = int(category.max()) + 1 if len(category) and category.max() >= 0 else 0
    c, u, n = category_counts(category[h.row_products], h.row_users, h.n_users)
    lists = CategoryLists.build(c, u, n, (), n_cats, h.n_users)
    cat_size = np.bincount(category[category >= 0], minlength=n_cats).astype(np.float64)
    prod_cat_size = np.where(category >= 0, cat_size[np.maximum(category, 0)] if n_cats else 0.0, np.nan)
    product = np.column_stack([product_features(rows, h, end, settings.returns.recent_days), prod_cat_size]).astype(
        np.float32
    )
    x, _ = product_token_matrix(interactions["product_name"], h.row_products, h.n_products)
    tokens = tfidf(x, int(h.signal.sum()))
    fit_pairs = unique_sorted(h.row_products * h.n_users + h.row_users)
    hist = sp.csr_matrix((np.ones(len(fit_pairs)), np.divmod(fit_pairs, h.n_users)), shape=(h.n_products, h.n_users))
    profiles = row_normalise(sp.csr_matrix(hist.T @ tokens))
    sources: dict[str, Any] = {}
    for label, spec in settings.sources.items():
        src = make_source(spec)
        shares = isinstance(src, (CategoryPopularityRanker, CategoryShareRanker))
        if shares and not isinstance(src, TruthCategoryRanker) and src.settings.categories == settings.categories:
            src.fit(interactions, exclude, categories=categories, category_model=category_model)  # shared inference
        else:
            src.fit(interactions, exclude)
        src_history = getattr(src, "history_", None)
        if src_history is not None and not np.array_equal(src_history.customer_ids, h.customer_ids):
            raise RuntimeError(f"learned: source {label!r} codes customers differently")
        sources[label] = src
    return CutoffState(
        history=h,
        sources=sources,
        depths={label: spec.candidates for label, spec in settings.sources.items()},
        scorers={label: _pair_scorer(src) for label, src in sources.items()},
        customer=customer,
        product=product,
        category=category,
        category_lists=lists,
        user_rows=np.bincount(h.row_users, minlength=h.n_users).astype(np.float64),
        tokens=tokens,
        profiles=profiles,
        engagement=engagement,
        backfill=GlobalOrder.build(ordered(engagement), engagement, h),
        pair_keys=h.pair_keys(),
        return_model=ret,
        end_us=end,
    )


def feature_names(sources: Sequence[str]) -> list[str]:
    """Column names of the feature matrix, in order."""
    src = [f"src.{label}.{what}" for label in sources for what in ("score", "rank")]
    return [*src, *CUSTOMER_FEATURES, *PRODUCT_FEATURES, *PAIR_FEATURES]


@dataclass(frozen=True)
class Candidates:
    """Candidate pairs of a block of products, sorted by row then customer code, with each source's rank."""

    rows: np.ndarray
    users: np.ndarray
    ranks: np.ndarray  # (pairs x sources) float32, depth + 1 when the source did not propose the pair


def gather_candidates(state: CutoffState, codes: np.ndarray) -> Candidates:
    """The union of the sources' lists for a block of product codes (own and excluded customers removed)."""
    h = state.history
    n = h.n_users
    pids = h.product_ids[codes]
    keys: list[np.ndarray] = []
    ranks: list[np.ndarray] = []
    for label, src in state.sources.items():
        rec = src.rank(pids, state.depths[label])
        row = np.repeat(np.arange(len(codes), dtype=np.int64), rec.sizes())
        keys.append(row * n + customer_codes_of(h, np.asarray(rec.customer_ids)))
        ranks.append(rec.ranks())
    union = unique_sorted(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64)
    row, user = np.divmod(union, n)
    allowed = not_excluded(state.pair_keys, codes[row] * n + user)
    union, row, user = union[allowed], row[allowed], user[allowed]
    matrix = np.empty((len(union), len(keys)), dtype=np.float32)
    for j, label in enumerate(state.sources):
        matrix[:, j] = state.depths[label] + 1
        pos = np.searchsorted(union, keys[j])
        found = (pos < len(union)) & (union[np.minimum(pos, max(len(union) - 1, 0))] == keys[j])
        matrix[pos[found], j] = ranks[j][found]
    return Candidates(row, user, matrix)


def token_affinity(state: CutoffState, codes: np.ndarray, users: np.ndarray) -> np.ndarray:
    """Cosine of each pair's product name tokens and customer profile (row-wise sparse products in steps)."""
    out = np.zeros(len(codes), dtype=np.float64)
    for start in range(0, len(codes), PAIR_STEP):
        c, u = codes[start : start + PAIR_STEP], users[start : start + PAIR_STEP]
        out[start : start + len(c)] = np.asarray(state.tokens[c].multiply(state.profiles[u]).sum(axis=1)).ravel()
    return out


def pair_features(state: CutoffState, codes: np.ndarray, cand: Candidates) -> np.ndarray:
    """(pairs x feature_names) float32 matrix of a block's candidates (`codes`: the block's product codes)."""
    pc, u = codes[cand.rows], cand.users
    n_src = len(state.sources)
    out = np.empty((len(u), 2 * n_src + len(CUSTOMER_FEATURES) + len(PRODUCT_FEATURES) + 3), dtype=np.float32)
    for j, label in enumerate(state.sources):
        scorer = state.scorers[label]
        out[:, 2 * j] = scorer(pc, u) if scorer is not None else np.nan
        out[:, 2 * j + 1] = cand.ranks[:, j]
    col = 2 * n_src
    out[:, col : col + len(CUSTOMER_FEATURES)] = state.customer[u]
    col += len(CUSTOMER_FEATURES)
    out[:, col : col + len(PRODUCT_FEATURES)] = state.product[pc]
    col += len(PRODUCT_FEATURES)
    cat = state.category[pc]
    rows_in_cat = state.category_lists.lookup(cat, u)
    out[:, col] = token_affinity(state, pc, u)
    out[:, col + 1] = np.where(cat >= 0, rows_in_cat, np.nan)
    out[:, col + 2] = np.where(cat >= 0, rows_in_cat / np.maximum(state.user_rows[u], 1.0), np.nan)
    return out


def product_blocks(n: int, per_product: int, chunk_entries: int) -> Iterator[slice]:
    """Slices of a product request holding about `chunk_entries` candidate pairs each."""
    step = max(1, int(chunk_entries) // max(int(per_product), 1))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


# ----------------------------------------------------------------------------------------------
# the GBM
# ----------------------------------------------------------------------------------------------


def selected_columns(names: Sequence[str], drop: Sequence[str]) -> np.ndarray:
    """Indices of the features kept after `drop` (exact names, or prefixes ending in '.'); unknown entries raise."""
    unknown = [d for d in drop if not any(n == d or (d.endswith(".") and n.startswith(d)) for n in names)]
    if unknown:
        raise ValueError(f"ranker 'learned': drop_features {unknown} match no feature; features: {', '.join(names)}")
    keep = [i for i, n in enumerate(names) if not any(n == d or (d.endswith(".") and n.startswith(d)) for d in drop)]
    if not keep:
        raise ValueError("ranker 'learned': drop_features leaves no feature")
    return np.asarray(keep, dtype=np.int64)


def gbm_params(s: LearnedSettings) -> dict[str, Any]:
    """LightGBM parameters of the settings (deterministic, fixed threads, seeded)."""
    return {
        "objective": "lambdarank",
        "lambdarank_truncation_level": s.truncation_level,
        "num_leaves": s.num_leaves,
        "learning_rate": s.learning_rate,
        "min_data_in_leaf": s.min_child_samples,
        "lambda_l2": s.reg_lambda,
        "feature_fraction": s.feature_fraction,
        "max_bin": s.max_bin,
        "num_threads": s.num_threads,
        "deterministic": True,
        "force_row_wise": True,
        "seed": s.seed,
        "verbosity": -1,
        **({"label_gain": [0.0, s.category_label_gain, 1.0]} if s.category_label_gain > 0 else {}),
    }


def base_score(features: np.ndarray, names: Sequence[str], s: LearnedSettings) -> np.ndarray | None:
    """-base_weight * ln(rank in the base source's list) per row, the score boosting starts from (None: 0)."""
    if s.base_source is None or s.base_weight == 0:
        return None
    rank = features[:, list(names).index(f"src.{s.base_source}.rank")].astype(np.float64)
    out: np.ndarray = -s.base_weight * np.log(rank)
    return out


def train_booster(data: TrainingData, columns: np.ndarray, names: Sequence[str], s: LearnedSettings) -> Any:
    """A LightGBM LambdaRank booster trained on the cached matrix's `columns` (from the base score, if any)."""
    import lightgbm as lgb

    params = gbm_params(s)
    dataset = lgb.Dataset(
        data.features[:, columns],
        label=data.labels,
        group=data.groups,
        init_score=base_score(data.features, names, s),
        feature_name=[f"f{i}" for i in range(len(columns))],
        params={"max_bin": s.max_bin, "verbosity": -1, "seed": s.seed, "num_threads": s.num_threads},
        free_raw_data=True,
    )
    return lgb.train(params, dataset, num_boost_round=s.n_estimators)


# ----------------------------------------------------------------------------------------------
# the ranker
# ----------------------------------------------------------------------------------------------


class LearnedRanker:
    """Two-stage ranker: source candidates re-ranked by LightGBM LambdaRank (module docstring)."""

    name = "learned"
    knobs: tuple[str, ...] = (*GBM_KNOBS, *SERVE_KNOBS)
    settings_model = LearnedSettings

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        """Validate the settings and every source's ranker name and settings (errors name the source)."""
        self._set_params(params)
        for label, spec in self.settings.sources.items():
            self._make_source(spec, label)

    def _set_params(self, params: Mapping[str, Any] | None) -> None:
        """Validated settings and their plain dict (the base source must be one of the sources)."""
        self.settings = parse_settings(LearnedSettings, self.name, params)
        self.params = settings_dict(self.settings)
        base = self.settings.base_source
        if base is not None and base not in self.settings.sources:
            raise ValueError(
                f"ranker 'learned': base_source {base!r} is not a source; sources: {', '.join(self.settings.sources)}"
            )

    def _make_source(self, spec: SourceSettings, label: str | None = None) -> Any:
        """An unfitted source ranker (seed and features block inherited unless its settings set them)."""
        from recsys.rankers.registry import RANKERS

        label = label or next(k for k, v in self.settings.sources.items() if v == spec)
        if spec.ranker not in RANKERS:
            raise ValueError(
                f"ranker 'learned': source {label!r} names unknown ranker {spec.ranker!r}; available: {sorted(RANKERS)}"
            )
        params = {"seed": self.settings.seed, "features": dict(self.settings.features), **spec.settings}
        fields = getattr(getattr(RANKERS[spec.ranker], "settings_model", None), "model_fields", {})
        if "horizon_days" in fields and "horizon_days" not in spec.settings:
            params["horizon_days"] = self.settings.label_days  # a source's forecast horizon is the label window
        try:
            return RANKERS[spec.ranker](params)
        except ValueError as exc:
            raise ValueError(f"ranker 'learned': source {label!r}: {exc}") from None

    def _check_fitted(self) -> None:
        """Raise a clear error when rank is called before fit."""
        if not hasattr(self, "state_"):
            raise RuntimeError(f"ranker {self.name!r} is not fitted: call fit(interactions) first")

    # -- fit -----------------------------------------------------------------------------------

    def fit(self, interactions: pd.DataFrame, exclude: pd.DataFrame | None = None) -> LearnedRanker:
        """Train on the label windows of the fit rows (features before each), then refit everything on every fit row."""
        s = self.settings
        seconds: dict[str, float] = {}
        t0 = time.perf_counter()
        if len(interactions) == 0:
            raise ValueError("cannot fit a ranker on an empty interactions table")
        rows = EventRows.of(interactions)
        end = rows.end_us()
        span = int(round(s.label_days * US_PER_DAY))
        self.feature_names_ = feature_names(list(s.sources))
        selected_columns(self.feature_names_, s.drop_features)  # a bad name fails before the expensive part
        parts: list[TrainingData] = []
        windows: list[WindowFacts] = []
        for w in range(s.label_windows):
            cutoff, stop = end - (w + 1) * span, end - w * span
            later = rows.dated & (rows.us >= cutoff)
            in_window = later & ((rows.us < stop) if w else np.ones(len(later), dtype=bool))
            if not (rows.dated & ~later).any():
                raise ValueError(
                    f"ranker 'learned': label_days={s.label_days} x label_windows={w + 1} covers every dated fit row; "
                    "lower them so that rows remain before the earliest label window"
                )
            inner = interactions.loc[~later].reset_index(drop=True)
            labels = interactions.loc[in_window].reset_index(drop=True)
            if s.label_events is not None:
                keep = labels["event"].astype("string[pyarrow]").isin(s.label_events).fillna(False)
                labels = labels.loc[keep.to_numpy(dtype=bool)].reset_index(drop=True)
            t1 = time.perf_counter()
            state = build_state(inner, exclude, s, self._make_source)
            seconds["inner_state"] = seconds.get("inner_state", 0.0) + time.perf_counter() - t1
            t1 = time.perf_counter()
            data, facts = self._training_data(state, labels, w)
            seconds["training_features"] = seconds.get("training_features", 0.0) + time.perf_counter() - t1
            del state
            parts.append(data)
            windows.append(
                WindowFacts(
                    cutoff=str(pd.Timestamp(cutoff, unit="us", tz="UTC")),
                    stop=str(pd.Timestamp(stop, unit="us", tz="UTC")),
                    inner_rows=len(inner),
                    label_rows=len(labels),
                    **facts,
                )
            )
        self.training_data_ = TrainingData.concat(parts)
        if len(self.training_data_.groups) == 0:
            pairs = sum(f.positive_pairs for f in windows)
            raise ValueError(
                f"ranker 'learned': no training product: none of the {pairs} label-window pairs (last {s.label_days} "
                f"days x {s.label_windows} window(s)) is among the sources' candidates; raise label_days, "
                "label_windows or the sources' candidates"
            )
        t2 = time.perf_counter()
        self._train()
        seconds["train"] = time.perf_counter() - t2
        t3 = time.perf_counter()
        self.state_ = build_state(interactions, exclude, s, self._make_source)
        self.history_ = self.state_.history
        self.global_ = self.state_.backfill
        seconds["state"] = time.perf_counter() - t3
        seconds["total"] = time.perf_counter() - t0
        self.training_ = TrainingFacts(
            end=str(pd.Timestamp(end, unit="us", tz="UTC")),
            label_days=s.label_days,
            windows=windows,
            groups=len(self.training_data_.groups),
            rows=len(self.training_data_.labels),
            positives=sum(w.positives for w in windows),
            seconds={k: round(v, 3) for k, v in seconds.items()},
        )
        return self

    def _training_data(
        self, state: CutoffState, labels: pd.DataFrame, window: int
    ) -> tuple[TrainingData, dict[str, Any]]:
        """Candidates, labels and features of one window's training products (all positives, sampled negatives)."""
        s = self.settings
        h = state.history
        n = h.n_users
        ret = state.return_model
        pcodes = h.codes_of(id_array(labels["product_id"].to_numpy()))
        ucodes = np.asarray(pd.Index(h.customer_ids).get_indexer(pd.Index(labels["customer_id"].to_numpy())))
        ok = (pcodes >= 0) & (ucodes >= 0)
        ok[ok] = ~h.cold(pcodes[ok])
        positive = unique_sorted(pcodes[ok].astype(np.int64) * n + ucodes[ok])
        positive = positive[not_excluded(state.pair_keys, positive)]  # repeat customers can never be ranked
        products = unique_sorted(positive // n)
        sampled_out = 0
        if s.max_groups is not None and len(products) > s.max_groups:
            rng = np.random.default_rng([s.seed, window])
            kept = np.sort(rng.choice(len(products), s.max_groups, replace=False))
            sampled_out = len(products) - len(kept)
            products = products[kept]
        graded = s.category_label_gain > 0
        cat_keys = np.zeros(0, dtype=np.int64)
        extra = 0
        if graded:  # customers back in the product's inferred category: label 1, the product itself: label 2
            label_cat = np.where(pcodes >= 0, state.category[np.maximum(pcodes, 0)], -1)
            known = (label_cat >= 0) & (ucodes >= 0)
            cat_keys = unique_sorted(label_cat[known] * n + ucodes[known])
            touched = np.setdiff1d(unique_sorted(pcodes[ok]), products)  # label-window products without a positive
            budget = (s.max_groups or len(touched) + len(products)) - len(products)
            if budget < len(touched):
                order = np.argsort(pair_hash(touched, s.seed + window), kind="stable")
                touched = np.sort(touched[order[: max(budget, 0)]])
            extra = len(touched)
            products = np.union1d(products, touched)
        feats: list[np.ndarray] = []
        labs: list[np.ndarray] = []
        prods: list[np.ndarray] = []
        custs: list[np.ndarray] = []
        n_candidates = 0
        found = np.zeros(len(state.sources) + 1, dtype=np.int64)  # per source, then the union
        depth = np.array([state.depths[label] for label in state.sources], dtype=np.float32)
        for sl in product_blocks(len(products), state.total_depth, s.chunk_entries):
            codes = products[sl]
            cand = gather_candidates(state, codes)
            n_candidates += len(cand.users)
            keys = codes[cand.rows] * n + cand.users
            pos = np.minimum(np.searchsorted(positive, keys), max(len(positive) - 1, 0))
            y = (positive[pos] == keys) if len(positive) else np.zeros(len(keys), dtype=bool)
            found[:-1] += (y[:, None] & (cand.ranks <= depth[None, :])).sum(axis=0)
            found[-1] += int(y.sum())
            label = y.astype(np.int64)
            if graded:
                cat = state.category[codes[cand.rows]]
                ck = np.where(cat >= 0, cat * n + cand.users, -1)
                at = np.minimum(np.searchsorted(cat_keys, ck), max(len(cat_keys) - 1, 0))
                back = (cat_keys[at] == ck) & (cat >= 0) if len(cat_keys) else np.zeros(len(ck), dtype=bool)
                label = np.where(y, 2, back.astype(np.int64))
            has_pos = np.bincount(cand.rows[label > 0], minlength=len(codes)) > 0
            rank = pair_hash(keys, s.seed + 7919 * window)
            neg = (label == 0) & has_pos[cand.rows]
            order = np.lexsort((keys[neg], rank[neg], cand.rows[neg]))
            neg_idx = np.flatnonzero(neg)[order]
            neg_rows = cand.rows[neg_idx]
            first = np.arange(len(neg_idx)) - np.searchsorted(neg_rows, neg_rows, side="left") < s.negatives
            take = np.sort(np.concatenate([np.flatnonzero(label > 0), neg_idx[first]]))
            sub = Candidates(cand.rows[take], cand.users[take], cand.ranks[take])
            feats.append(pair_features(state, codes, sub))
            labs.append(label[take])
            prods.append(codes[sub.rows])
            custs.append(sub.users)
        n_features = len(feature_names(list(s.sources)))
        features = np.concatenate(feats) if feats else np.zeros((0, n_features), dtype=np.float32)
        y_all = np.concatenate(labs) if labs else np.zeros(0, dtype=np.int64)
        p_all = np.concatenate(prods) if prods else np.zeros(0, dtype=np.int64)
        u_all = np.concatenate(custs) if custs else np.zeros(0, dtype=np.int64)
        group_products, groups = np.unique(p_all, return_counts=True)  # rows are already in product order
        eligible = max(int(np.isin(positive // n, products).sum()), 1)
        facts = {
            "positive_pairs": int(len(positive)),
            "products_with_positive": int(len(products) + sampled_out),
            "groups": int(len(groups)),
            "groups_without_positive": int(len(products) - len(group_products)),
            "groups_sampled_out": int(sampled_out),
            "rows": int(len(y_all)),
            "positives": int((y_all == (2 if graded else 1)).sum()),
            "category_positives": int((y_all == 1).sum()) if graded else 0,
            "category_groups": int(extra),
            "candidates_mean": round(n_candidates / max(len(products), 1), 3),
            "positive_recall": round(int(found[-1]) / eligible, 6),
            "source_recall": {
                label: round(int(f) / eligible, 6) for label, f in zip(state.sources, found[:-1], strict=True)
            },
            "return_customers": ret.train_customers,
            "return_positives": ret.train_positives,
            "return_fallback": ret.fallback,
        }
        data = TrainingData(
            features,
            y_all,
            groups.astype(np.int64),
            h.product_ids[p_all],
            h.customer_ids[u_all],
            np.full(len(y_all), window, dtype=np.int64),
        )
        return data, facts

    def _train(self) -> None:
        """Train the booster on the cached matrix under the current GBM settings; record feature importance."""
        self._columns = selected_columns(self.feature_names_, self.settings.drop_features)
        self.booster_ = train_booster(self.training_data_, self._columns, self.feature_names_, self.settings)
        gain = np.asarray(self.booster_.feature_importance(importance_type="gain"), dtype=np.float64)
        splits = np.asarray(self.booster_.feature_importance(importance_type="split"), dtype=np.int64)
        total = float(gain.sum())
        records = [
            FeatureImportance(
                feature=self.feature_names_[int(c)],
                gain=round(float(g), 6),
                splits=int(n),
                gain_share=round(float(g) / total, 6) if total > 0 else 0.0,
            )
            for c, g, n in zip(self._columns, gain, splits, strict=True)
        ]
        self.feature_importance_ = sorted(records, key=lambda r: (-r.gain, r.feature))

    # -- knobs ---------------------------------------------------------------------------------

    def with_params(self, changes: Mapping[str, Any]) -> Self:
        """A fitted copy under changed knobs: the GBM re-trained on the cached training matrix, sources shared."""
        self._check_fitted()
        merged = merge_knobs(self.name, self.params, changes, self.knobs)
        new = copy.copy(self)
        new._set_params(merged)
        if any(getattr(new.settings, k) != getattr(self.settings, k) for k in GBM_KNOBS):
            new._train()
        return new

    def rescore(
        self, product_ids: np.ndarray | Sequence[Any], k: int, changes: Mapping[str, Any] | None = None
    ) -> Recommendations:
        """The ranking of the requested products under changed knobs (see ``with_params``)."""
        return self.with_params(changes or {}).rank(product_ids, k)

    # -- rank ----------------------------------------------------------------------------------

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Scores of feature rows (feature_names_ order): the base score (if any) plus the GBM's."""
        out: np.ndarray = self.booster_.predict(
            features[:, self._columns], num_threads=self.settings.num_threads
        ).astype(np.float64)
        base = base_score(features, self.feature_names_, self.settings)
        return out if base is None else out + base

    def _blocks(self, codes: np.ndarray) -> Iterator[tuple[np.ndarray, Candidates, np.ndarray]]:
        """(product codes, candidates, features) per block of warm codes, from the feature cache when it holds them.

        With ``feature_cache_pairs`` > 0 the blocks of a request are kept (in the fitted state, so re-trained copies
        from ``with_params`` share them) when they hold at most that many pairs: re-ranking the same products under
        other GBM settings then only predicts. Only the latest request is kept.
        """
        state = self.state_
        budget = self.settings.feature_cache_pairs
        key = hashlib.sha256(codes.astype(np.int64).tobytes() + str(self.settings.chunk_entries).encode()).digest()
        cached = state.feature_cache.get(key)
        if cached is not None:
            yield from cached
            return
        kept: list[tuple[np.ndarray, Candidates, np.ndarray]] | None = [] if budget > 0 else None
        pairs = 0
        for sl in product_blocks(len(codes), state.total_depth, self.settings.chunk_entries):
            block = codes[sl]
            cand = gather_candidates(state, block)
            feats = pair_features(state, block, cand)
            pairs += len(cand.users)
            if kept is not None:
                kept = kept + [(block, cand, feats)] if pairs <= budget else None
            yield block, cand, feats
        if kept is not None:
            state.feature_cache.clear()
            state.feature_cache[key] = kept

    def _rank_block(
        self, codes: np.ndarray, cand: Candidates, feats: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(sizes, customer codes, scores, candidates per product) of a block of warm product codes."""
        state = self.state_
        score = self.predict(feats) if len(cand.users) else np.zeros(0)
        order = np.lexsort((cand.users, -score, cand.rows))
        rows, users, score = cand.rows[order], cand.users[order], score[order]
        n_cand = np.bincount(rows, minlength=len(codes)).astype(np.int64)
        keep = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left") < k
        rows, users, score = rows[keep], users[keep], score[keep]
        sizes = np.bincount(rows, minlength=len(codes)).astype(np.int64)
        short = np.flatnonzero(sizes < k)
        if not self.settings.backfill or len(short) == 0:
            return sizes, users, score, n_cand
        floor = np.zeros(len(codes), dtype=np.float64)
        ends = offsets_of(sizes)[1:]
        has = sizes > 0
        floor[has] = score[ends[has] - 1]  # the lowest kept score (every candidate of a short list is kept)
        f_sizes, f_users, _ = state.backfill.top(codes[short], k + int(sizes[short].max()))
        f_rows = np.repeat(short, f_sizes)
        f_users = f_users.astype(np.int64)
        n = state.history.n_users
        listed = np.sort(rows * n + users)
        hit = np.minimum(np.searchsorted(listed, f_rows * n + f_users), max(len(listed) - 1, 0))
        fresh = (listed[hit] != f_rows * n + f_users) if len(listed) else np.ones(len(f_rows), dtype=bool)
        f_rows, f_users = f_rows[fresh], f_users[fresh]
        rank = np.arange(len(f_rows)) - np.searchsorted(f_rows, f_rows, side="left")
        fill = rank < (k - sizes)[f_rows]
        f_rows, f_users = f_rows[fill], f_users[fill]
        eng = state.engagement
        f_score = floor[f_rows] - 1.0 - (float(eng.max()) - eng[f_users])
        all_rows = np.concatenate([rows, f_rows])
        order = np.argsort(all_rows, kind="stable")
        return (
            np.bincount(all_rows, minlength=len(codes)).astype(np.int64),
            np.concatenate([users, f_users])[order],
            np.concatenate([score, f_score])[order],
            n_cand,
        )

    def rank_with_facts(
        self, product_ids: np.ndarray | Sequence[Any], k: int, catalogue: Catalogue | None = None
    ) -> tuple[Recommendations, RankFacts]:
        """Top-k customers per requested product, and per product its candidates and backfilled entries.

        A product without fit rows gets the engagement order whatever its catalogue name (basis `names_unused`).
        """
        self._check_fitted()
        state = self.state_
        h = state.history
        requested = id_array(product_ids)
        codes = h.codes_of(requested)
        cold = h.cold(codes)
        k = max(int(k), 0)
        m = len(codes)
        sizes = np.zeros(m, dtype=np.int64)
        n_cand = np.zeros(m, dtype=np.int64)
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        warm = np.flatnonzero(~cold)
        if k > 0:
            done = 0
            for block, cand, feats in self._blocks(codes[warm]):
                rows = warm[done : done + len(block)]
                done += len(block)
                s, u, v, c = self._rank_block(block, cand, feats, k)
                sizes[rows], n_cand[rows] = s, c
                parts.append((np.repeat(rows, s), u, v))
            cold_rows = np.flatnonzero(cold)
            if len(cold_rows):
                s, u, v = state.backfill.top(codes[cold_rows], k)
                sizes[cold_rows] = s
                parts.append((np.repeat(cold_rows, s), u.astype(np.int64), v))
        entry_rows = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
        order = np.argsort(entry_rows, kind="stable")
        users = np.concatenate([p[1] for p in parts])[order] if parts else np.zeros(0, dtype=np.int64)
        scores = np.concatenate([p[2] for p in parts])[order] if parts else np.zeros(0, dtype=np.float64)
        backfilled = np.where(cold, sizes, np.maximum(sizes - np.minimum(n_cand, k), 0))
        recs = Recommendations(
            product_ids=requested,
            offsets=offsets_of(sizes),
            customer_ids=h.customer_ids[users],
            scores=np.asarray(scores, dtype=np.float64),
            cold_start=cold,
        )
        return recs, RankFacts(candidates=n_cand, backfilled=backfilled)

    def rank(
        self, product_ids: np.ndarray | Sequence[Any], k: int, catalogue: Catalogue | None = None
    ) -> Recommendations:
        """Top-k customers per requested product (see the module docstring; catalogue names are not read)."""
        return self.rank_with_facts(product_ids, k, catalogue)[0]
