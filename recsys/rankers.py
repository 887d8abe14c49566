"""Audience rankers: for each product, which customers to target, best first.

Every ranker fits on a canonical interactions table and answers ``rank(product_ids, k)`` with a
``Recommendations`` block per requested product. Shared rules (docs/INTERFACES.md):

- a customer who interacted with the product in the fit data (any event, dated or not) is never
  ranked for it; customers with no history are never ranked at all (only fitted customers exist);
- a product unseen at fit time gets the ranker's global order (the activity order for ``content``)
  and ``cold_start=True``;
- ranks are 1..n contiguous, scores non-increasing within a block, ties broken by ascending
  customer id, so results are deterministic.

Rankers: ``random`` (seeded uniform scores), ``activity`` (engagement, see recsys.features),
``recency`` (most recently active first: the ``recency`` feature, ties by last event instant then
engagement), ``content`` (name-token affinity blended with engagement, see ``ContentRanker``).
``make_ranker`` builds one by name; other modules (``recsys.cf``) add names with ``register_ranker``
and are imported on demand.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from recsys.features import FeatureParams, compute_features, encode_ids, unique_sorted

QUERY_BUDGET = 4_000_000  # (products x k) entries processed per vectorised step


# ----------------------------------------------------------------------------------------------
# protocol and result
# ----------------------------------------------------------------------------------------------


@runtime_checkable
class Ranker(Protocol):
    """Fits on a canonical interactions table, then ranks customers for each requested product."""

    name: str

    def fit(self, interactions: pd.DataFrame) -> "Ranker": ...

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


def _requested_array(product_ids: np.ndarray | Sequence | pd.Series) -> np.ndarray:
    """Requested product ids as a numpy array (strings as object)."""
    if isinstance(product_ids, (pd.Series, pd.Index, pd.api.extensions.ExtensionArray)):
        if pd.api.types.is_integer_dtype(product_ids.dtype):
            return np.asarray(product_ids)
        return np.asarray(pd.array(product_ids, dtype="string[pyarrow]").astype(object), dtype=object)
    arr = np.asarray(product_ids)
    return arr if arr.dtype.kind in "iu" else arr.astype(object)


@dataclass(frozen=True)
class History:
    """Fitted customers and products (sorted ids) and who touched what (CSR product -> customers)."""

    customer_ids: np.ndarray
    product_ids: np.ndarray
    indptr: np.ndarray
    users: np.ndarray
    row_users: np.ndarray
    row_products: np.ndarray
    index: pd.Index

    @property
    def n_users(self) -> int:
        """Number of fitted customers."""
        return int(len(self.customer_ids))

    @property
    def n_products(self) -> int:
        """Number of fitted products."""
        return int(len(self.product_ids))

    @classmethod
    def build(cls, interactions: pd.DataFrame) -> "History":
        """Index the interactions (every row counts, dated or not)."""
        if len(interactions) == 0:
            raise ValueError("cannot fit a ranker on an empty interactions table")
        ucodes, uids = encode_ids(interactions["customer_id"])
        pcodes, pids = encode_ids(interactions["product_id"])
        n_users = len(uids)
        keys = unique_sorted(pcodes.astype(np.int64) * n_users + ucodes)
        prod, users = np.divmod(keys, n_users)
        indptr = np.zeros(len(pids) + 1, dtype=np.int64)
        np.cumsum(np.bincount(prod, minlength=len(pids)), out=indptr[1:])
        return cls(
            uids, pids, indptr, users.astype(np.int64), ucodes.astype(np.int64), pcodes.astype(np.int64), pd.Index(pids)
        )

    def codes_of(self, product_ids: np.ndarray) -> np.ndarray:
        """Fitted product code of each requested id (-1 when unseen or of another id kind)."""
        requested = _requested_array(product_ids)
        if len(requested) == 0:
            return np.zeros(0, dtype=np.int64)
        same_kind = (requested.dtype.kind in "iu") == (self.product_ids.dtype.kind in "iu")
        if not same_kind:
            return np.full(len(requested), -1, dtype=np.int64)
        return self.index.get_indexer(requested).astype(np.int64)

    def pair_keys(self) -> np.ndarray:
        """Sorted product*n_users + user keys of every (product, customer) pair in the history."""
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


def _chunks(m: int, per_item: int, budget: int = QUERY_BUDGET) -> Iterator[slice]:
    """Slices of range(m) holding about `budget` entries each."""
    step = max(1, budget // max(per_item, 1))
    for start in range(0, m, step):
        yield slice(start, min(m, start + step))


def _offsets(sizes: np.ndarray) -> np.ndarray:
    """CSR offsets from block sizes."""
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return offsets


def _ordered(user_scores: np.ndarray, *tie_breaks: np.ndarray) -> np.ndarray:
    """Customer codes by descending score, then descending tie-breaks, then ascending code."""
    keys = [np.arange(len(user_scores))] + [-t for t in reversed(tie_breaks)] + [-user_scores]
    return np.lexsort(keys)


class _GlobalRanker:
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

    def fit(self, interactions: pd.DataFrame) -> "_GlobalRanker":
        """Index the history and fix the global order."""
        self.history_ = History.build(interactions)
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
        requested = _requested_array(product_ids)
        codes = self.history_.codes_of(requested)
        blocks = _chunks(len(codes), k)
        return _collect(requested, codes, k, blocks, self.global_.top, self.history_)


BlockRanker = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray, np.ndarray]]


def _collect(
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
        offsets=_offsets(sizes),
        customer_ids=history.customer_ids[users[:filled]],
        scores=scores[:filled],
        cold_start=codes < 0,
    )


# ----------------------------------------------------------------------------------------------
# the global-order rankers
# ----------------------------------------------------------------------------------------------


class RandomRanker(_GlobalRanker):
    """Uniform random scores per customer (seed = params['seed']); a baseline."""

    name = "random"

    def _user_order(self, interactions: pd.DataFrame, history: History) -> tuple[np.ndarray, np.ndarray]:
        """Seeded uniform scores, ordered descending."""
        rng = np.random.default_rng(int(self.params.get("seed", 0)))
        scores = rng.random(history.n_users)
        return _ordered(scores), scores


class ActivityRanker(_GlobalRanker):
    """Customers by engagement (recsys.features), the same order for every product."""

    name = "activity"

    def _user_order(self, interactions: pd.DataFrame, history: History) -> tuple[np.ndarray, np.ndarray]:
        """Engagement, ordered descending."""
        eng = self._features(interactions, history)["engagement"].to_numpy(dtype=np.float64)
        return _ordered(eng), eng


class RecencyRanker(_GlobalRanker):
    """Most recently active customers first: the recency feature, ties by last instant then engagement."""

    name = "recency"

    def _user_order(self, interactions: pd.DataFrame, history: History) -> tuple[np.ndarray, np.ndarray]:
        """Recency feature, ordered descending with tie-breaks."""
        feats = self._features(interactions, history)
        recency = feats["recency"].to_numpy(dtype=np.float64)
        last = feats["last_event_date"]
        last_us = np.where(last.notna(), last.dt.tz_localize(None).to_numpy().view(np.int64), 0).astype(np.float64)
        eng = feats["engagement"].to_numpy(dtype=np.float64)
        return _ordered(recency, last_us, eng), recency


# ----------------------------------------------------------------------------------------------
# content ranker
# ----------------------------------------------------------------------------------------------

_ARABIC_DIACRITICS = r"[\x{064B}-\x{065F}\x{0670}\x{06D6}-\x{06ED}\x{0640}]"
_DIGIT_SETS = ("٠١٢٣٤٥٦٧٨٩", "۰۱۲۳۴۵۶۷۸۹")


def normalise_names(names: pa.Array) -> pa.Array:
    """NFKC, lower case, Arabic folding (diacritics/tatweel removed, alef/yeh variants unified, Eastern digits to 0-9)."""
    s = pc.utf8_lower(pc.utf8_normalize(names, "NFKC"))
    s = pc.replace_substring_regex(s, _ARABIC_DIACRITICS, "")
    s = pc.replace_substring_regex(s, "[أإآٱ]", "ا")
    s = pc.replace_substring_regex(s, "ى", "ي")
    for digits in _DIGIT_SETS:
        for value, char in enumerate(digits):
            s = pc.replace_substring(s, char, str(value))
    return s


def tokenize_names(names: Sequence[str | None] | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Tokens of many names at once: (index of the source name, token) pairs.

    Tokens are maximal runs of letters (any script) or of digits, lower-cased and folded, so
    '500مل' -> '500', 'مل' and 'Coffee 100G' -> 'coffee', '100', 'g'; units and single letters stay tokens.
    """
    arr = names if isinstance(names, pa.Array) else pa.array(list(names), type=pa.string())
    s = normalise_names(arr.cast(pa.string()))
    s = pc.replace_substring_regex(s, r"(\p{L})(\p{N})", r"\1 \2")
    s = pc.replace_substring_regex(s, r"(\p{N})(\p{L})", r"\1 \2")
    s = pc.replace_substring_regex(s, r"[^\p{L}\p{N}]+", " ")
    lists = pc.utf8_split_whitespace(s)
    parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    tokens = pc.list_flatten(lists).to_numpy(zero_copy_only=False)
    return parents, np.asarray(tokens, dtype=object)


def _row_normalise(m: sp.csr_matrix) -> sp.csr_matrix:
    """Scale every row to unit L2 norm (empty rows stay empty)."""
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(inv) @ m)


def product_token_matrix(interactions: pd.DataFrame, history: History) -> tuple[sp.csr_matrix, np.ndarray]:
    """Binary (products x tokens) matrix of every name logged for each product, and the token vocabulary."""
    names = interactions["product_name"]
    if not isinstance(names.dtype, pd.CategoricalDtype):
        names = names.astype("category")
    name_codes = names.cat.codes.to_numpy().astype(np.int64)
    has = name_codes >= 0
    pairs = unique_sorted(history.row_products[has] * max(len(names.cat.categories), 1) + name_codes[has])
    pair_prod, pair_name = np.divmod(pairs, max(len(names.cat.categories), 1))
    parents, tokens = tokenize_names(pa.array(np.asarray(names.cat.categories, dtype=object), type=pa.string()))
    token_codes, vocab = pd.factorize(tokens)
    n_tokens = len(vocab)
    name_tok = sp.csr_matrix(
        (np.ones(len(parents)), (parents, token_codes)), shape=(len(names.cat.categories), n_tokens)
    )
    prod_name = sp.csr_matrix(
        (np.ones(len(pair_prod)), (pair_prod, pair_name)), shape=(history.n_products, len(names.cat.categories))
    )
    x = sp.csr_matrix(prod_name @ name_tok)
    x.data[:] = 1.0
    return x, np.asarray(vocab, dtype=object)


def tfidf(x: sp.csr_matrix) -> sp.csr_matrix:
    """Smoothed TF-IDF of a binary (products x tokens) matrix, rows L2-normalised: idf = ln((1+P)/(1+df)) + 1."""
    n = x.shape[0]
    df = np.bincount(x.indices, minlength=x.shape[1])
    idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
    return _row_normalise(sp.csr_matrix(x @ sp.diags(idf)))


def truncate_postings(q: sp.csr_matrix, priority: np.ndarray, cap: int) -> sp.csr_matrix:
    """Keep, per token column, the `cap` customers with the largest weight (ties: larger priority, lower code)."""
    coo = q.tocoo()
    col, row, val = coo.col.astype(np.int64), coo.row.astype(np.int64), coo.data
    heavy_col = np.bincount(col, minlength=q.shape[1]) > cap
    keep = ~heavy_col[col]
    idx = np.flatnonzero(~keep)
    if len(idx):
        compact = (np.cumsum(heavy_col) - 1)[col[idx]]
        idx = idx[_topk_superset(compact, val[idx], int(heavy_col.sum()), cap)]
        idx = idx[np.lexsort((row[idx], -priority[row[idx]], -val[idx], col[idx]))]
        c = col[idx]
        keep[idx[(np.arange(len(idx)) - np.searchsorted(c, c, side="left")) < cap]] = True
    return sp.csr_matrix((val[keep], (row[keep], col[keep])), shape=q.shape)


def _topk_superset(row: np.ndarray, score: np.ndarray, n_rows: int, k: int, buckets: int = 32) -> np.ndarray:
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
    return bucket >= cut[row]


class ContentRanker(_GlobalRanker):
    """Name-token affinity blended with engagement.

    Definition. X = TF-IDF of the product-token matrix (tokens of every name logged for a product,
    see ``tokenize_names``; idf = ln((1+P)/(1+df)) + 1; rows L2-normalised). A customer's profile
    Q_u = L2-normalised sum of X over the products in the customer's history (any event, unweighted).
    affinity(u, p) = sum over shared tokens t of X[p, t] * Q[u, t], where a token credits only its
    ``token_user_cap`` customers with the largest Q[u, t] (ties: higher engagement, then lower id):
    posting lists are truncated so very common tokens (units, "عطر") cannot make every pair a
    candidate; tokens held by fewer customers are exact cosine terms. Affinity lies in [0, 1].

    score(u, p) = w * affinity(u, p) + (1 - w) * engagement(u), with w = ``affinity_weight``.
    Candidates per product: customers with affinity > 0 plus the engagement top-k (affinity 0), so a
    product without usable name tokens ranks by engagement, scaled by (1 - w). Products unseen at fit
    time get the plain activity order (score = engagement) with cold_start=True.
    """

    name = "content"

    def _user_order(self, interactions: pd.DataFrame, history: History) -> tuple[np.ndarray, np.ndarray]:
        """Engagement order (the fallback and cold-start order) and the token model."""
        eng = self._features(interactions, history)["engagement"].to_numpy(dtype=np.float64)
        self.engagement_ = eng
        self.weight_ = float(self.params.get("affinity_weight", 0.5))
        if not 0.0 <= self.weight_ <= 1.0:
            raise ValueError(f"rankers.content.affinity_weight must be in [0, 1], got {self.weight_}")
        x, self.vocab_ = product_token_matrix(interactions, history)
        self.x_ = tfidf(x)
        hist = sp.csr_matrix(
            (np.ones(len(history.users)), history.users, history.indptr), shape=(history.n_products, history.n_users)
        )
        q = _row_normalise(sp.csr_matrix(hist.T @ self.x_))
        cap = int(self.params.get("token_user_cap", 200))
        self.postings_ = sp.csr_matrix(truncate_postings(q, eng, cap).T)  # tokens x users
        self.pair_keys_ = history.pair_keys()
        per_token = np.diff(self.postings_.indptr).astype(np.float64)
        self.estimate_ = (x @ per_token).astype(np.int64)  # upper bound of candidates per product
        return _ordered(eng), eng

    def _affinity_block(self, codes: np.ndarray, floor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, customer code, w*affinity + (1-w)*engagement) of allowed candidates scoring >= floor[row]."""
        known = np.flatnonzero(codes >= 0)
        select = sp.csr_matrix(
            (np.ones(len(known)), (known, codes[known])), shape=(len(codes), self.history_.n_products)
        )
        aff = sp.csr_matrix(select @ self.x_ @ self.postings_)
        row = np.repeat(np.arange(len(codes), dtype=np.int64), np.diff(aff.indptr))
        user = aff.indices
        score = self.weight_ * aff.data + (1.0 - self.weight_) * self.engagement_[user]
        survive = score >= floor[row]
        row, user, score = row[survive], user[survive].astype(np.int64), score[survive]
        keys = codes[row] * self.history_.n_users + user
        if len(self.pair_keys_) and len(keys):
            hit = np.minimum(np.searchsorted(self.pair_keys_, keys), len(self.pair_keys_) - 1)
            allowed = self.pair_keys_[hit] != keys
            row, user, score = row[allowed], user[allowed], score[allowed]
        return row, user, score

    def _rank_block(self, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sizes, customer codes and scores for one block of requested product codes.

        The engagement top-k (allowed customers, affinity taken as 0) come first; their lowest score
        bounds the final k-th score from below, so affinity candidates under it are dropped before sorting.
        """
        f_sizes, f_user, f_score = self.global_.top(codes, k)
        f_row = np.repeat(np.arange(len(codes), dtype=np.int64), f_sizes)
        f_score = np.where(codes[f_row] < 0, f_score, (1.0 - self.weight_) * f_score)
        floor = np.full(len(codes), -np.inf)
        full = f_sizes == k
        floor[full] = f_score[_offsets(f_sizes)[1:][full] - 1]
        a_row, a_user, a_score = self._affinity_block(codes, floor)
        n_users = self.history_.n_users
        f_keys = f_row * n_users + f_user
        a_keys = np.sort(a_row * n_users + a_user)
        dup = np.zeros(len(f_keys), dtype=bool)
        if len(a_keys):
            dup = a_keys[np.minimum(np.searchsorted(a_keys, f_keys), len(a_keys) - 1)] == f_keys
        row = np.concatenate([a_row, f_row[~dup]])
        user = np.concatenate([a_user, f_user[~dup]])
        score = np.concatenate([a_score, f_score[~dup]])
        top = _topk_superset(row, score, len(codes), k)
        row, user, score = row[top], user[top], score[top]
        order = np.lexsort((user, -score, row))
        row, user, score = row[order], user[order], score[order]
        starts = np.searchsorted(row, row, side="left")
        keep = (np.arange(len(row)) - starts) < k
        sizes = np.bincount(row[keep], minlength=len(codes)).astype(np.int64)
        return sizes, user[keep], score[keep]

    def _blocks(self, codes: np.ndarray, k: int) -> Iterator[slice]:
        """Slices of the request whose candidate volume stays near `chunk_entries`."""
        if len(codes) == 0:
            return
        budget = max(1, int(self.params.get("chunk_entries", 8_000_000)))
        cost = np.where(codes >= 0, self.estimate_[np.maximum(codes, 0)], 0) + k
        cum = np.cumsum(cost)
        cuts = np.searchsorted(cum, np.arange(1, int(cum[-1] // budget) + 1) * budget, side="left")
        edges = np.unique(np.concatenate([[0], cuts, [len(codes)]]))
        for a, b in zip(edges[:-1], edges[1:]):
            yield slice(int(a), int(b))

    def rank(self, product_ids: np.ndarray | Sequence, k: int) -> Recommendations:
        """Top-k customers per requested product by blended affinity and engagement."""
        self._check_fitted()
        requested = _requested_array(product_ids)
        codes = self.history_.codes_of(requested)
        return _collect(requested, codes, k, self._blocks(codes, k), self._rank_block, self.history_)


# ----------------------------------------------------------------------------------------------
# registry
# ----------------------------------------------------------------------------------------------

RankerFactory = Callable[[Mapping[str, Any]], Ranker]
_REGISTRY: dict[str, RankerFactory] = {}
EXTERNAL_RANKER_MODULES: tuple[str, ...] = ("recsys.cf",)


def register_ranker(name: str, factory: RankerFactory) -> None:
    """Make `make_ranker(name, params)` call `factory(params)` (used by recsys.cf for als/bpr/bgnbd)."""
    _REGISTRY[name] = factory


def _load_external() -> None:
    """Import the modules that register extra rankers; a module that does not exist yet is skipped."""
    for module in EXTERNAL_RANKER_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def available_rankers() -> list[str]:
    """Names make_ranker accepts."""
    _load_external()
    return sorted(_REGISTRY)


def make_ranker(name: str, params: Mapping[str, Any] | None = None) -> Ranker:
    """Build an unfitted ranker by name; params are the ranker's block (+ 'features', 'seed')."""
    if name not in _REGISTRY:
        _load_external()
    if name not in _REGISTRY:
        raise ValueError(f"unknown ranker {name!r}; available: {sorted(_REGISTRY)} (params/cache.yaml: cache.ranker)")
    return _REGISTRY[name](dict(params or {}))


for _cls in (RandomRanker, ActivityRanker, RecencyRanker, ContentRanker):
    register_ranker(_cls.name, _cls)
