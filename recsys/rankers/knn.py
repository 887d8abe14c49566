"""The ``itemknn`` ranker: item-item nearest-neighbour CF (implicit), turned into product -> customers.

Fit: implicit's ``CosineRecommender`` (``similarity: cosine``) or ``BM25Recommender`` (``similarity:
bm25`` with ``K1``, ``B``) on the customer x product matrix X of the fit rows (rows per pair, or summed
``event_weights``). Its ``similarity`` S keeps, for every product j, its ``K`` most similar products
(j itself included, implicit's convention).

Score, exactly as implicit's own ``recommend`` scores a customer's items: score(u, p) = sum over the
products j in u's fit history of X[u, j] * S[j, p]. A block of requested products is scored at once
with one sparse product (S^T[block] @ X^T), so there is no loop over products or customers.

Candidates: only customers with a positive score (some product of their history has p among its K
neighbours); the product's own and excluded customers are removed; the top k are sorted by score
descending, ties by ascending customer id. Nothing fills the remaining slots: a list may be shorter
than k (precision keeps k as its denominator), so ``itemknn`` is measured as pure item-item CF, not
as a hybrid with a popularity backfill (``popularity`` is evaluated on its own). A product without
fit rows (cold start) gets the ``popularity`` global order (customers by fit rows, ties by last dated
event, then id) minus its excluded customers.

Settings (``params/evaluate.yaml: evaluate.models.itemknn``): ``recsys.rankers.settings.KNNSettings``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.arrays import not_excluded, sparse_topk
from recsys.data.catalogue import Catalogue
from recsys.data.ids import id_array
from recsys.rankers.base import FixedRanker, GlobalOrder, History, Recommendations, collect, estimate_blocks, ordered
from recsys.rankers.engagement import popularity_keys
from recsys.rankers.factor import interaction_matrix
from recsys.rankers.settings import KNNSettings


class ItemKNNRanker(FixedRanker):
    """Item-item kNN (implicit cosine or BM25) ranking customers for a product by their history's similarity to it."""

    name = "itemknn"
    settings_model = KNNSettings

    def _model(self) -> Any:
        """The unfitted implicit item-item model."""
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

        p = self.params
        if p["similarity"] == "bm25":
            return BM25Recommender(K=int(p["K"]), K1=float(p["K1"]), B=float(p["B"]), num_threads=int(p["num_threads"]))
        return CosineRecommender(K=int(p["K"]), num_threads=int(p["num_threads"]))

    def fit(self, interactions: pd.DataFrame, exclude: pd.DataFrame | None = None) -> ItemKNNRanker:
        """Compute the item-item similarity of the fit rows (exclude rows only exclude) and the cold-start order."""
        t0 = time.perf_counter()
        self.history_ = History.build(interactions, exclude)
        x = interaction_matrix(interactions, self.history_, self.params.get("event_weights"))
        cols = np.flatnonzero(self.history_.signal)  # products known only through exclusions stay out of the fit
        model = self._model()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # implicit warns about its own COO -> CSR conversion
            model.fit(sp.csr_matrix(x[:, cols]), show_progress=False)
        sim = sp.coo_matrix(model.similarity)
        n = self.history_.n_products
        s_full = sp.csr_matrix((sim.data, (cols[sim.row], cols[sim.col])), shape=(n, n), dtype=np.float64)
        self.sim_t_ = sp.csr_matrix(s_full.T)  # row p: {j: S[j, p]}
        self.items_users_ = sp.csr_matrix(x.T, dtype=np.float64)  # row j: {u: X[u, j]}
        self.pair_keys_ = self.history_.pair_keys()
        reach = np.asarray(self.items_users_.getnnz(axis=1), dtype=np.float64)
        binary = sp.csr_matrix(
            (np.ones(self.sim_t_.nnz), self.sim_t_.indices, self.sim_t_.indptr), shape=self.sim_t_.shape
        )
        self.estimate_ = np.asarray(binary @ reach, dtype=np.int64)  # upper bound of candidates per product
        rows, last = popularity_keys(interactions, self.history_)
        self.global_ = GlobalOrder.build(ordered(rows, last), rows, self.history_)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _check_fitted(self) -> None:
        """Raise a clear error when rank is called before fit."""
        if not hasattr(self, "sim_t_"):
            raise RuntimeError(f"ranker {self.name!r} is not fitted: call fit(interactions) first")

    def _rank_block(self, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sizes, customer codes and scores for one block of requested product codes (cold ones: popularity order)."""
        cold = self.history_.cold(codes)
        warm = np.flatnonzero(~cold)
        sizes = np.zeros(len(codes), dtype=np.int64)
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        if len(warm):
            scores = sp.csr_matrix(self.sim_t_[codes[warm]] @ self.items_users_)  # (warm block x customers)
            row = np.repeat(warm.astype(np.int64), np.diff(scores.indptr))
            user = scores.indices.astype(np.int64)
            val = scores.data
            keep = (val > 0) & not_excluded(self.pair_keys_, codes[row] * self.history_.n_users + user)
            s, u, v = sparse_topk(row[keep], user[keep], val[keep], len(codes), k)
            sizes += s
            parts.append((np.repeat(np.arange(len(codes), dtype=np.int64), s), u, v))
        if cold.any():
            c = np.flatnonzero(cold)
            s, u, v = self.global_.top(codes[c], k)
            sizes[c] = s
            parts.append((np.repeat(c.astype(np.int64), s), u.astype(np.int64), v))
        rows = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
        order = np.argsort(
            rows, kind="stable"
        )  # warm entries are already row-sorted; cold rows never mix with warm ones
        users = np.concatenate([p[1] for p in parts])[order] if parts else np.zeros(0, dtype=np.int64)
        vals = np.concatenate([p[2] for p in parts])[order] if parts else np.zeros(0, dtype=np.float64)
        return sizes, users, vals

    def _blocks(self, codes: np.ndarray, k: int) -> Iterator[slice]:
        """Slices of the request whose candidate volume stays near `chunk_entries`."""
        return estimate_blocks(self.estimate_, codes, k, int(self.params["chunk_entries"]))

    def score_pairs(self, codes: np.ndarray, users: np.ndarray) -> np.ndarray:
        """Item-item score of each (product code, customer code) pair; the popularity score for cold-start codes (-1).

        The score ``rank`` sorts by (0 when no product of the customer's history has the product among
        its neighbours). The capped allocation scores the customers it fills in from the shared
        (popularity) order with it, as it does for the factor rankers.
        """
        self._check_fitted()
        codes = np.asarray(codes, dtype=np.int64)
        users = np.asarray(users, dtype=np.int64)
        shared = np.empty(self.history_.n_users, dtype=np.float64)
        shared[np.asarray(self.global_.order, dtype=np.int64)] = self.global_.scores
        out: np.ndarray = shared[users]
        known = np.flatnonzero(~self.history_.cold(codes))
        if len(known) == 0:
            return out
        if not hasattr(self, "users_items_"):
            self.users_items_ = sp.csr_matrix(self.items_users_.T)  # row u: {j: X[u, j]}
        step = max(1, int(self.params["chunk_entries"]) // 32)
        for start in range(0, len(known), step):
            rows = known[start : start + step]
            pair = self.sim_t_[codes[rows]].multiply(self.users_items_[users[rows]])
            out[rows] = np.asarray(pair.sum(axis=1), dtype=np.float64).ravel()
        return out

    def rank(
        self, product_ids: np.ndarray | Sequence[Any], k: int, catalogue: Catalogue | None = None
    ) -> Recommendations:
        """Top-k customers per requested product by item-item similarity to their history (no backfill)."""
        self._check_fitted()
        requested = id_array(product_ids)
        codes = self.history_.codes_of(requested)
        return collect(requested, codes, k, self._blocks(codes, k), self._rank_block, self.history_, parallel=True)
