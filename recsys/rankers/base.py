"""Ranker foundations: the protocol, the result type, the history index and global-order ranking.

Every ranker fits on a canonical interactions table and answers ``rank(product_ids, k)`` with a
``Recommendations`` block per requested product. ``fit(interactions, exclude=None)``: the optional
``exclude`` rows (same columns) give no training signal at all; they only add (product, customer)
pairs that must never be recommended (the evaluation passes undated rows this way under
``split.undated_policy: exclude_only``). Shared rules (docs/INTERFACES.md):

- a customer who interacted with the product in the fit data or in the exclude rows (any event,
  dated or not) is never ranked for it; customers with no fit history are never ranked at all
  (only fitted customers exist; exclude rows add no customer);
- a product without fit rows (unseen, or known only through exclude rows) gets the ranker's global
  order minus its excluded customers and ``cold_start=True``;
- ranks are 1..n contiguous, scores non-increasing within a block, ties broken by ascending
  customer id, so results are deterministic.

``GlobalRanker`` is the base of rankers whose order is the same for every product (minus that
product's own customers); ``collect`` runs any block ranker over a request into CSR arrays.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self, runtime_checkable

import numpy as np
import pandas as pd

from recsys.arrays import cost_blocks, offsets_of, unique_sorted
from recsys.data.catalogue import Catalogue
from recsys.data.ids import id_array
from recsys.features.engagement import EngagementModel, FeatureParams, encode_ids
from recsys.parallel import check_processes, pool_imap
from recsys.rankers.settings import RankerSettings, parse_settings, settings_dict

QUERY_BUDGET = 4_000_000  # (products x k) entries processed per vectorised step


# ----------------------------------------------------------------------------------------------
# protocol and result
# ----------------------------------------------------------------------------------------------


@runtime_checkable
class Ranker(Protocol):
    """Fits on a canonical interactions table, then ranks customers for each requested product."""

    name: str
    knobs: tuple[str, ...]  # params paths a re-score may change without a refit

    def fit(self, interactions: pd.DataFrame, exclude: pd.DataFrame | None = None) -> Ranker: ...

    def rank(
        self, product_ids: np.ndarray | Sequence[Any], k: int, catalogue: Catalogue | None = None
    ) -> Recommendations: ...

    def with_params(self, changes: Mapping[str, Any]) -> Ranker: ...

    def rescore(
        self, product_ids: np.ndarray | Sequence[Any], k: int, changes: Mapping[str, Any] | None = None
    ) -> Recommendations: ...


def _id_series(values: np.ndarray, name: str) -> pd.Series:
    """A Series of ids: integer arrays stay integer, anything else becomes pandas string."""
    if np.issubdtype(values.dtype, np.integer):
        return pd.Series(values, name=name)
    return pd.Series(values, name=name, dtype="string[pyarrow]")


@dataclass
class Recommendations:
    """Ranked audiences in CSR layout: one block per requested product, in request order.

    ``basis`` says per product why it was ranked so (``BASIS_TEXT``); by default `history` for products with fit
    rows and `names_unused` for cold starts (rankers that read names set it themselves).
    """

    product_ids: np.ndarray
    offsets: np.ndarray
    customer_ids: np.ndarray
    scores: np.ndarray
    cold_start: np.ndarray
    basis: np.ndarray | None = None

    def __post_init__(self) -> None:
        """Fill the default basis from cold_start."""
        if self.basis is None:
            self.basis = np.where(np.asarray(self.cold_start, dtype=bool), "names_unused", "history").astype(object)

    def __len__(self) -> int:
        """Number of product blocks."""
        return int(len(self.product_ids))

    def sizes(self) -> np.ndarray:
        """Audience size of every block."""
        return np.diff(self.offsets)

    def ranks(self) -> np.ndarray:
        """1-based rank of every entry within its block."""
        sizes = self.sizes()
        ranks: np.ndarray = np.arange(len(self.customer_ids), dtype=np.int64) - np.repeat(self.offsets[:-1], sizes) + 1
        return ranks

    def to_frame(self) -> pd.DataFrame:
        """Long table: product_id, rank (1..n), customer_id, score."""
        sizes = self.sizes()
        return pd.DataFrame(
            {
                "product_id": _id_series(np.repeat(np.asarray(self.product_ids), sizes), "product_id"),
                "rank": self.ranks(),
                "customer_id": _id_series(np.asarray(self.customer_ids), "customer_id"),
                "score": np.asarray(self.scores, dtype=np.float64),
            }
        )


# ----------------------------------------------------------------------------------------------
# shared machinery: history index and global-order ranking with exclusions
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    """Fitted customers and products (sorted ids), who touched what (CSR product -> customers), which have fit rows.

    ``row_users`` / ``row_products`` code the rows of the fit interactions only; ``indptr`` / ``users``
    also hold the pairs of the exclude rows (exclusion only); ``signal[p]`` is False for a product
    known only through exclude rows.
    """

    customer_ids: np.ndarray
    product_ids: np.ndarray
    indptr: np.ndarray
    users: np.ndarray
    row_users: np.ndarray
    row_products: np.ndarray
    index: pd.Index
    signal: np.ndarray

    @property
    def n_users(self) -> int:
        """Number of fitted customers."""
        return int(len(self.customer_ids))

    @property
    def n_products(self) -> int:
        """Number of indexed products (with fit rows or exclusion pairs)."""
        return int(len(self.product_ids))

    @classmethod
    def build(cls, interactions: pd.DataFrame, exclude: pd.DataFrame | None = None) -> History:
        """Index the fit rows (every row counts, dated or not) and the exclusion-only pairs of `exclude`."""
        if len(interactions) == 0:
            raise ValueError("cannot fit a ranker on an empty interactions table")
        ucodes, uids = encode_ids(interactions["customer_id"])
        n_fit = len(interactions)
        products = interactions["product_id"]
        extra_users = np.zeros(0, dtype=np.int64)
        if exclude is not None and len(exclude):
            missing = [c for c in ("customer_id", "product_id") if c not in exclude.columns]
            if missing:
                raise ValueError(f"exclude rows lack column(s) {missing}: pass rows of the canonical table")
            codes = pd.Index(uids).get_indexer(np.asarray(exclude["customer_id"].to_numpy()))
            known = codes >= 0  # a customer known only through exclude rows is never ranked: nothing to exclude
            extra_users = codes[known].astype(np.int64)
            products = pd.concat([products, exclude["product_id"][known]], ignore_index=True)
        pcodes, pids = encode_ids(products)
        n_users = len(uids)
        all_users = np.concatenate([ucodes.astype(np.int64), extra_users])
        keys = unique_sorted(pcodes.astype(np.int64) * n_users + all_users)
        prod, users = np.divmod(keys, n_users)
        indptr = np.zeros(len(pids) + 1, dtype=np.int64)
        np.cumsum(np.bincount(prod, minlength=len(pids)), out=indptr[1:])
        row_products = pcodes[:n_fit].astype(np.int64)
        signal = np.bincount(row_products, minlength=len(pids)) > 0
        return cls(
            uids, pids, indptr, users.astype(np.int64), ucodes.astype(np.int64), row_products, pd.Index(pids), signal
        )

    def codes_of(self, product_ids: np.ndarray) -> np.ndarray:
        """Indexed product code of each requested id (-1 when unseen or of another id kind)."""
        requested = id_array(product_ids)
        if len(requested) == 0:
            return np.zeros(0, dtype=np.int64)
        same_kind = (requested.dtype.kind in "iu") == (self.product_ids.dtype.kind in "iu")
        if not same_kind:
            return np.full(len(requested), -1, dtype=np.int64)
        return self.index.get_indexer(pd.Index(requested)).astype(np.int64)

    def cold(self, codes: np.ndarray) -> np.ndarray:
        """Per code: True when the product has no fit rows (unseen, -1, or known only through exclude rows)."""
        return (codes < 0) | ~self.signal[np.maximum(codes, 0)] if len(self.signal) else np.ones(len(codes), dtype=bool)

    def pair_keys(self) -> np.ndarray:
        """Sorted product*n_users + user keys of every (product, customer) pair in the history (exclusions included)."""
        prod = np.repeat(np.arange(self.n_products, dtype=np.int64), np.diff(self.indptr))
        keys: np.ndarray = prod * self.n_users + self.users
        return keys


@dataclass(frozen=True)
class GlobalOrder:
    """One ordering of all fitted customers plus, per product, where its excluded customers sit in it."""

    order: np.ndarray
    scores: np.ndarray
    keys: np.ndarray
    indptr: np.ndarray
    stride: int

    @classmethod
    def build(cls, order: np.ndarray, user_scores: np.ndarray, history: History) -> GlobalOrder:
        """Index exclusions as sorted (position - rank) keys so top-k needs one searchsorted."""
        n_users = history.n_users
        pos = np.empty(n_users, dtype=np.int64)
        pos[order] = np.arange(n_users, dtype=np.int64)
        sizes = np.diff(history.indptr)
        prod = np.repeat(np.arange(history.n_products, dtype=np.int64), sizes)
        excluded = np.sort(prod * (n_users + 1) + pos[history.users])  # sorted by product, then position
        e = excluded - prod * (n_users + 1)
        t = np.arange(len(e), dtype=np.int64) - np.repeat(history.indptr[:-1], sizes)
        stride = n_users + 1
        small = np.int64 if n_users >= 2**31 else np.int32
        return cls(order.astype(small), user_scores[order], prod * stride + (e - t), history.indptr, stride)

    def top(self, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Block sizes, customer codes and scores of the best k non-excluded customers per product code.

        The i-th (0-based) allowed position of a product whose excluded positions are e_0 < e_1 < ... is
        i + #{t : e_t - t <= i}; code -1 (cold start) excludes nobody.
        """
        n_users = len(self.order)
        m = len(codes)
        if k <= 0 or m == 0:
            return np.zeros(m, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        i = np.tile(np.arange(k, dtype=np.int64), m)
        rep = np.repeat(codes, k)
        known = rep >= 0
        safe = np.where(known, rep, 0)
        count = np.searchsorted(self.keys, safe * self.stride + i, side="right") - self.indptr[safe]
        pos = i + np.where(known, count, 0)
        valid = pos < n_users
        sizes = valid.reshape(m, k).sum(axis=1)
        pos = pos[valid]
        return sizes, self.order[pos], self.scores[pos]


def chunks(m: int, per_item: int, budget: int = QUERY_BUDGET) -> Iterator[slice]:
    """Slices of range(m) holding about `budget` entries each."""
    step = max(1, budget // max(per_item, 1))
    for start in range(0, m, step):
        yield slice(start, min(m, start + step))


def ordered(user_scores: np.ndarray, *tie_breaks: np.ndarray) -> np.ndarray:
    """Customer codes by descending score, then descending tie-breaks, then ascending code."""
    keys = [np.arange(len(user_scores))] + [-t for t in reversed(tie_breaks)] + [-user_scores]
    return np.lexsort(keys)


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge (`over` wins); inputs are not modified."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _changed_paths(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the leaves whose values differ between two nested params dicts (a missing block is empty)."""
    blocks = (isinstance(old, Mapping) or old is None) and (isinstance(new, Mapping) or new is None)
    if blocks and (old is not None or new is not None):
        old, new = old or {}, new or {}
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += _changed_paths(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


def merge_knobs(
    name: str, params: Mapping[str, Any], changes: Mapping[str, Any], knobs: Sequence[str]
) -> dict[str, Any]:
    """`params` with `changes` merged in; a ValueError names every changed path that is not a knob of the ranker."""
    merged = deep_merge(params, changes)
    bad = [
        p for p in _changed_paths(params, merged) if not any(p == k or p.startswith(k.rstrip(".") + ".") for k in knobs)
    ]
    if bad:
        allowed = ", ".join(knobs) or "none"
        raise ValueError(f"ranker {name!r} cannot re-score with changed {bad}: refit it instead (its knobs: {allowed})")
    return merged


class FixedRanker:
    """Mixin of rankers that no knob changes without a refit (their re-score is their ranking)."""

    name: str
    params: dict[str, Any]
    knobs: tuple[str, ...] = ()
    settings_model: type[RankerSettings] = RankerSettings

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        """Validate the params against the ranker's settings model (unknown keys raise ValueError)."""
        self.settings = parse_settings(self.settings_model, self.name, params)
        self.params = settings_dict(self.settings)

    def rank(
        self, product_ids: np.ndarray | Sequence[Any], k: int, catalogue: Catalogue | None = None
    ) -> Recommendations:
        """Top-k customers per requested product (`catalogue`: names of products without fit rows)."""
        raise NotImplementedError

    def with_params(self, changes: Mapping[str, Any]) -> Self:
        """Itself: only an empty change is accepted (see ``merge_knobs``)."""
        merge_knobs(self.name, self.params, changes, self.knobs)
        return self

    def rescore(
        self, product_ids: np.ndarray | Sequence[Any], k: int, changes: Mapping[str, Any] | None = None
    ) -> Recommendations:
        """The ranking of the requested products (only an empty change is accepted)."""
        return self.with_params(changes or {}).rank(product_ids, k)


# Params paths a re-score may change for rankers built on the engagement score (see recsys.features.engagement).
ENGAGEMENT_PATHS: tuple[str, ...] = ("features.features.event_weights", "features.engagement.")


def top_k_codes(score: np.ndarray, k: int, exclude: np.ndarray, tie_breaks: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Codes of the k best customers by descending score, descending tie-breaks, ascending code; skips `exclude`.

    The same order as ``ordered`` + ``GlobalOrder.top`` for one product, in O(customers) (argpartition), not a sort.
    """
    masked = np.array(score, dtype=np.float64, copy=True)
    masked[np.asarray(exclude, dtype=np.int64)] = -np.inf
    allowed = int(np.isfinite(masked).sum())
    k = min(int(k), allowed)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    kth = np.partition(masked, len(masked) - k)[len(masked) - k]
    cand = np.flatnonzero(masked >= kth)
    cand = cand[np.isfinite(masked[cand])]
    keys = [cand] + [-np.asarray(t)[cand] for t in reversed(tie_breaks)] + [-masked[cand]]
    return cand[np.lexsort(keys)[:k]].astype(np.int64)


class GlobalRanker:
    """Base for rankers whose order is the same for every product (minus that product's customers).

    Subclasses implement ``_prepare`` (state fixed at fit: features, model fits) and ``_order_keys`` (score and
    tie-breaks from the current params). ``knobs`` lists the params a re-score may change without a refit;
    ``with_params`` returns a re-scored copy sharing the fitted state, ``rescore`` ranks a few products under
    changed knobs without rebuilding the global order (the dashboard's what-if). Both equal a refit exactly.
    """

    name = "global"
    knobs: tuple[str, ...] = ()  # dotted params paths (a trailing '.' covers a whole block)
    settings_model: type[RankerSettings] = RankerSettings

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        """Validate the params (recsys.rankers.settings); features params come from params['features']."""
        self._set_params(params)

    def _set_params(self, params: Mapping[str, Any] | None) -> None:
        """Validated settings, their plain dict and the feature params (unknown keys raise ValueError)."""
        self.settings = parse_settings(self.settings_model, self.name, params)
        self.params = settings_dict(self.settings)
        self.feature_params = FeatureParams.from_params(self.params.get("features"))

    def _prepare(self, interactions: pd.DataFrame, history: History) -> None:
        """Compute the state that knobs do not change (called once by fit)."""

    def _order_keys(self) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """(score per customer code, tie-breaks) under the current params."""
        raise NotImplementedError

    def _fit_engagement(self, interactions: pd.DataFrame, history: History) -> None:
        """Fit the engagement model on the interactions (customers aligned with the history's codes)."""
        self.engagement_model_ = EngagementModel.fit(interactions, self.feature_params)
        if len(self.engagement_model_) != history.n_users:
            raise RuntimeError("features and history disagree on the customer set")

    @property
    def features_(self) -> pd.DataFrame:
        """Per-customer features and engagement under the current params (history code order)."""
        return self.engagement_model_.features(self.feature_params)

    def engagement(self) -> np.ndarray:
        """Engagement per customer code under the current params."""
        return self.engagement_model_.engagement(self.feature_params)

    def fit(self, interactions: pd.DataFrame, exclude: pd.DataFrame | None = None) -> Self:
        """Index the history (and the exclusion-only rows), prepare the fixed state and fix the global order."""
        self.history_ = History.build(interactions, exclude)
        self._prepare(interactions, self.history_)
        self._build_order()
        return self

    def _build_order(self) -> None:
        """Build the global order (and any knob-dependent index) from the current params."""
        score, ties = self._order_keys()
        self.global_ = GlobalOrder.build(ordered(score, *ties), np.asarray(score, dtype=np.float64), self.history_)

    def _check_fitted(self) -> None:
        """Raise a clear error when rank is called before fit."""
        if not hasattr(self, "history_"):
            raise RuntimeError(f"ranker {self.name!r} is not fitted: call fit(interactions) first")

    def _with_knobs(self, changes: Mapping[str, Any]) -> Self:
        """A shallow copy with changed params (validated against ``knobs``), order not rebuilt."""
        self._check_fitted()
        merged = merge_knobs(self.name, self.params, changes, self.knobs)
        new = copy.copy(self)
        new._set_params(merged)
        return new

    def with_params(self, changes: Mapping[str, Any]) -> Self:
        """A fitted copy re-scored with changed knobs (shares the fitted state; equals a refit with merged params)."""
        new = self._with_knobs(changes)
        new._build_order()
        return new

    def rescore(
        self, product_ids: np.ndarray | Sequence[Any], k: int, changes: Mapping[str, Any] | None = None
    ) -> Recommendations:
        """Top-k of a few products under changed knobs, one O(customers) pass per product (no global order rebuilt)."""
        new = self._with_knobs(changes or {})
        requested = id_array(product_ids)
        codes = new.history_.codes_of(requested)
        return collect(requested, codes, k, [slice(i, i + 1) for i in range(len(codes))], new._rank_dense, new.history_)

    def _dense_scores(self, code: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """(score per customer, tie-breaks) for one product code (-1 = cold start) under the current params."""
        return self._order_keys()

    def _rank_dense(self, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Block ranker over one product code by a dense score vector (the re-score path)."""
        code = int(codes[0])
        score, ties = self._dense_scores(code)
        h = self.history_
        exclude = h.users[h.indptr[code] : h.indptr[code + 1]] if code >= 0 else np.zeros(0, dtype=np.int64)
        top = top_k_codes(score, k, exclude, ties)
        return np.array([len(top)], dtype=np.int64), top, np.asarray(score, dtype=np.float64)[top]

    def shared_scale(self, codes: np.ndarray) -> np.ndarray:
        """Per product code, the factor that turns `global_.scores` into that product's score of a customer (here 1)."""
        return np.ones(len(codes), dtype=np.float64)

    def rank(
        self, product_ids: np.ndarray | Sequence[Any], k: int, catalogue: Catalogue | None = None
    ) -> Recommendations:
        """Top-k customers per requested product: the global order without the product's own customers.

        The order does not depend on the product, so a catalogue name changes nothing (basis `names_unused`).
        """
        self._check_fitted()
        requested = id_array(product_ids)
        codes = self.history_.codes_of(requested)
        blocks = chunks(len(codes), k)
        return collect(requested, codes, k, blocks, self.global_.top, self.history_)


def estimate_blocks(estimate: np.ndarray, codes: np.ndarray, k: int, chunk_entries: int) -> Iterator[slice]:
    """Blocks of a request whose candidate volume (each known product's `estimate` + k) stays near chunk_entries."""
    cost = np.where(codes >= 0, estimate[np.maximum(codes, 0)], 0) + k
    return cost_blocks(cost, chunk_entries)


BlockRanker = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray, np.ndarray]]


_RANK_PROCESSES = 1  # set by `parallel_ranking`; read by `collect` for the block rankers that opt in


@contextlib.contextmanager
def parallel_ranking(processes: int) -> Iterator[None]:
    """Within the block, block rankers (content, item-kNN) rank their blocks in `processes` forked workers.

    Why: their scoring is scipy sparse products and numpy top-k on one core (scipy's sparse matmul has no
    threads), so on the project's 2-core machine ranking the whole catalogue (content, 300 candidates: ~50 s at
    scale 1) left one core idle in the cache and tradeoff stages. Blocks are independent and reassembled in order
    (recsys.parallel), so results are identical for every `processes`.
    """
    global _RANK_PROCESSES
    previous, _RANK_PROCESSES = _RANK_PROCESSES, check_processes(processes, "ranking processes")
    try:
        yield
    finally:
        _RANK_PROCESSES = previous


def rank_slice(job: tuple[BlockRanker, np.ndarray, int], sl: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One block of a ranking job (rank_block, codes, k)."""
    rank_block, codes, k = job
    return rank_block(codes[sl], k)


def collect(
    requested: np.ndarray,
    codes: np.ndarray,
    k: int,
    blocks: Iterable[slice],
    rank_block: BlockRanker,
    history: History,
    parallel: bool = False,
    basis: np.ndarray | None = None,
) -> Recommendations:
    """Run `rank_block` over slices of the request and write the results into preallocated CSR arrays.

    With `parallel`, the blocks run in the workers of an enclosing `parallel_ranking` (same results). `codes` are
    what `rank_block` receives: product codes, or (with `basis` given) any per-request index; cold starts then
    come from `basis` (every basis but `history`).
    """
    k = max(int(k), 0)
    m = len(codes)
    users = np.empty(m * k, dtype=np.int64 if history.n_users >= 2**31 else np.int32)
    scores = np.empty(m * k, dtype=np.float64)
    sizes = np.zeros(m, dtype=np.int64)
    filled = 0
    if k > 0:
        todo = list(blocks)
        processes = _RANK_PROCESSES if parallel else 1
        for sl, (s, u, sc) in zip(todo, pool_imap(rank_slice, todo, processes, (rank_block, codes, k)), strict=True):
            sizes[sl] = s
            users[filled : filled + len(u)] = u
            scores[filled : filled + len(u)] = sc
            filled += len(u)
    return Recommendations(
        product_ids=requested,
        offsets=offsets_of(sizes),
        customer_ids=history.customer_ids[users[:filled]],
        scores=scores[:filled],
        cold_start=history.cold(codes) if basis is None else np.asarray(basis != "history", dtype=bool),
        basis=basis,
    )
