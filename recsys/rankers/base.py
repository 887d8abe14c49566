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

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from recsys.features.engagement import FeatureParams, compute_features, encode_ids, unique_sorted

QUERY_BUDGET = 4_000_000  # (products x k) entries processed per vectorised step


# ----------------------------------------------------------------------------------------------
# protocol and result
# ----------------------------------------------------------------------------------------------


@runtime_checkable
class Ranker(Protocol):
    """Fits on a canonical interactions table, then ranks customers for each requested product."""

    name: str

    def fit(self, interactions: pd.DataFrame, exclude: pd.DataFrame | None = None) -> "Ranker": ...

    def rank(self, product_ids: np.ndarray | Sequence, k: int) -> "Recommendations": ...


def _id_series(values: np.ndarray, name: str) -> pd.Series:
    """A Series of ids: integer arrays stay integer, anything else becomes pandas string."""
    if np.issubdtype(values.dtype, np.integer):
        return pd.Series(values, name=name)
    return pd.Series(values, name=name, dtype="string[pyarrow]")


@dataclass
class Recommendations:
    """Ranked audiences in CSR layout: one block per requested product, in request order."""

    product_ids: np.ndarray
    offsets: np.ndarray
    customer_ids: np.ndarray
    scores: np.ndarray
    cold_start: np.ndarray

    def __len__(self) -> int:
        """Number of product blocks."""
        return int(len(self.product_ids))

    def sizes(self) -> np.ndarray:
        """Audience size of every block."""
        return np.diff(self.offsets)

    def ranks(self) -> np.ndarray:
        """1-based rank of every entry within its block."""
        sizes = self.sizes()
        return np.arange(len(self.customer_ids), dtype=np.int64) - np.repeat(self.offsets[:-1], sizes) + 1

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


def requested_array(product_ids: np.ndarray | Sequence | pd.Series) -> np.ndarray:
    """Requested product ids as a numpy array (strings as object)."""
    if isinstance(product_ids, (pd.Series, pd.Index, pd.api.extensions.ExtensionArray)):
        if pd.api.types.is_integer_dtype(product_ids.dtype):
            return np.asarray(product_ids)
        return np.asarray(pd.array(product_ids, dtype="string[pyarrow]").astype(object), dtype=object)
    arr = np.asarray(product_ids)
    return arr if arr.dtype.kind in "iu" else arr.astype(object)


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
    def build(cls, interactions: pd.DataFrame, exclude: pd.DataFrame | None = None) -> "History":
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
        requested = requested_array(product_ids)
        if len(requested) == 0:
            return np.zeros(0, dtype=np.int64)
        same_kind = (requested.dtype.kind in "iu") == (self.product_ids.dtype.kind in "iu")
        if not same_kind:
            return np.full(len(requested), -1, dtype=np.int64)
        return self.index.get_indexer(requested).astype(np.int64)

    def cold(self, codes: np.ndarray) -> np.ndarray:
        """Per code: True when the product has no fit rows (unseen, -1, or known only through exclude rows)."""
        return (codes < 0) | ~self.signal[np.maximum(codes, 0)] if len(self.signal) else np.ones(len(codes), dtype=bool)

    def pair_keys(self) -> np.ndarray:
        """Sorted product*n_users + user keys of every (product, customer) pair in the history (exclusions included)."""
        prod = np.repeat(np.arange(self.n_products, dtype=np.int64), np.diff(self.indptr))
        return prod * self.n_users + self.users


@dataclass(frozen=True)
class GlobalOrder:
    """One ordering of all fitted customers plus, per product, where its excluded customers sit in it."""

    order: np.ndarray
    scores: np.ndarray
    keys: np.ndarray
    indptr: np.ndarray
    stride: int

    @classmethod
    def build(cls, order: np.ndarray, user_scores: np.ndarray, history: History) -> "GlobalOrder":
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


def offsets_of(sizes: np.ndarray) -> np.ndarray:
    """CSR offsets from block sizes."""
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return offsets


def ordered(user_scores: np.ndarray, *tie_breaks: np.ndarray) -> np.ndarray:
    """Customer codes by descending score, then descending tie-breaks, then ascending code."""
    keys = [np.arange(len(user_scores))] + [-t for t in reversed(tie_breaks)] + [-user_scores]
    return np.lexsort(keys)


class GlobalRanker:
    """Base for rankers whose order is the same for every product (minus that product's customers)."""

    name = "global"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        """Keep the params; features params come from params['features'] (features.yaml structure)."""
        self.params = dict(params or {})
        self.feature_params = FeatureParams.from_params(self.params.get("features"))

    def _user_order(self, interactions: pd.DataFrame, history: History) -> tuple[np.ndarray, np.ndarray]:
        """(order of customer codes, score per customer code)."""
        raise NotImplementedError

    def _features(self, interactions: pd.DataFrame, history: History) -> pd.DataFrame:
        """Per-customer features aligned with the history's customer codes."""
        feats = compute_features(interactions, self.feature_params)
        if len(feats) != history.n_users:
            raise RuntimeError("features and history disagree on the customer set")
        self.features_ = feats
        return feats

    def fit(self, interactions: pd.DataFrame, exclude: pd.DataFrame | None = None) -> "GlobalRanker":
        """Index the history (and the exclusion-only rows) and fix the global order."""
        self.history_ = History.build(interactions, exclude)
        order, user_scores = self._user_order(interactions, self.history_)
        self.global_ = GlobalOrder.build(order, np.asarray(user_scores, dtype=np.float64), self.history_)
        return self

    def _check_fitted(self) -> None:
        """Raise a clear error when rank is called before fit."""
        if not hasattr(self, "global_"):
            raise RuntimeError(f"ranker {self.name!r} is not fitted: call fit(interactions) first")

    def rank(self, product_ids: np.ndarray | Sequence, k: int) -> Recommendations:
        """Top-k customers per requested product: the global order without the product's own customers."""
        self._check_fitted()
        requested = requested_array(product_ids)
        codes = self.history_.codes_of(requested)
        blocks = chunks(len(codes), k)
        return collect(requested, codes, k, blocks, self.global_.top, self.history_)


def topk_superset(row: np.ndarray, score: np.ndarray, n_rows: int, k: int, buckets: int = 32) -> np.ndarray:
    """Mask of entries that surely contains every row's top k (cuts the sort that follows).

    Each row's score range is split into equal buckets (a monotone map, so equal scores share a
    bucket); entries below the bucket where the row's count from the top reaches k are dropped.
    """
    if len(row) == 0:
        return np.ones(0, dtype=bool)
    lo = np.full(n_rows, np.inf)
    hi = np.full(n_rows, -np.inf)
    np.minimum.at(lo, row, score)
    np.maximum.at(hi, row, score)
    base, width = lo[row], (hi - lo)[row]
    scaled = np.divide(score - base, width, out=np.ones_like(score), where=width > 0)
    bucket = np.minimum((scaled * buckets).astype(np.int64), buckets - 1)
    counts = np.bincount(row * buckets + bucket, minlength=n_rows * buckets).reshape(n_rows, buckets)
    from_top = np.cumsum(counts[:, ::-1], axis=1)
    cut = buckets - 1 - np.argmax(from_top >= k, axis=1)
    cut[from_top[:, -1] < k] = 0
    return np.asarray(bucket >= cut[row], dtype=bool)


def sparse_topk(
    row: np.ndarray, user: np.ndarray, score: np.ndarray, n_rows: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best k (user, score) candidates per row, score descending then user code ascending: (sizes, users, scores)."""
    top = topk_superset(row, score, n_rows, k)
    row, user, score = row[top], user[top], score[top]
    order = np.lexsort((user, -score, row))
    row, user, score = row[order], user[order], score[order]
    keep = (np.arange(len(row)) - np.searchsorted(row, row, side="left")) < k
    return np.bincount(row[keep], minlength=n_rows).astype(np.int64), user[keep], score[keep]


def not_excluded(pair_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Mask of product*n_users + user keys that are not in the sorted history pair keys."""
    if len(pair_keys) == 0 or len(keys) == 0:
        return np.ones(len(keys), dtype=bool)
    hit = np.minimum(np.searchsorted(pair_keys, keys), len(pair_keys) - 1)
    return np.asarray(pair_keys[hit] != keys, dtype=bool)


def cost_blocks(cost: np.ndarray, budget: int) -> Iterator[slice]:
    """Contiguous slices of a request whose summed cost stays near `budget` (at least one item each)."""
    if len(cost) == 0:
        return
    cum = np.cumsum(cost)
    budget = max(1, int(budget))
    cuts = np.searchsorted(cum, np.arange(1, int(cum[-1] // budget) + 1) * budget, side="left")
    edges = np.unique(np.concatenate([[0], cuts, [len(cost)]]))
    for a, b in zip(edges[:-1], edges[1:]):
        yield slice(int(a), int(b))


BlockRanker = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray, np.ndarray]]


def collect(
    requested: np.ndarray,
    codes: np.ndarray,
    k: int,
    blocks: Iterable[slice],
    rank_block: BlockRanker,
    history: History,
) -> Recommendations:
    """Run `rank_block` over slices of the request and write the results into preallocated CSR arrays."""
    k = max(int(k), 0)
    m = len(codes)
    users = np.empty(m * k, dtype=np.int64 if history.n_users >= 2**31 else np.int32)
    scores = np.empty(m * k, dtype=np.float64)
    sizes = np.zeros(m, dtype=np.int64)
    filled = 0
    if k > 0:
        for sl in blocks:
            s, u, sc = rank_block(codes[sl], k)
            sizes[sl] = s
            users[filled : filled + len(u)] = u
            scores[filled : filled + len(u)] = sc
            filled += len(u)
    return Recommendations(
        product_ids=requested,
        offsets=offsets_of(sizes),
        customer_ids=history.customer_ids[users[:filled]],
        scores=scores[:filled],
        cold_start=history.cold(codes),
    )


