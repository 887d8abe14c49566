"""The ``content`` ranker: name-token affinity of a customer's history to a product, blended with engagement."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data.ids import id_array
from recsys.features.engagement import unique_sorted
from recsys.features.text import product_token_matrix, row_normalise, tfidf
from recsys.rankers.base import (
    ENGAGEMENT_PATHS,
    GlobalOrder,
    GlobalRanker,
    History,
    Recommendations,
    collect,
    estimate_blocks,
    not_excluded,
    offsets_of,
    ordered,
    sparse_topk,
    topk_superset,
)
from recsys.rankers.settings import ContentSettings


def truncate_postings(q: sp.csr_matrix, priority: np.ndarray, cap: int) -> sp.csr_matrix:
    """Keep, per token column, the `cap` customers with the largest weight (ties: larger priority, lower code)."""
    coo = q.tocoo()
    col, row, val = coo.col.astype(np.int64), coo.row.astype(np.int64), coo.data
    heavy_col = np.bincount(col, minlength=q.shape[1]) > cap
    keep = ~heavy_col[col]
    idx = np.flatnonzero(~keep)
    if len(idx):
        compact = (np.cumsum(heavy_col) - 1)[col[idx]]
        idx = idx[topk_superset(compact, val[idx], int(heavy_col.sum()), cap)]
        idx = idx[np.lexsort((row[idx], -priority[row[idx]], -val[idx], col[idx]))]
        c = col[idx]
        keep[idx[(np.arange(len(idx)) - np.searchsorted(c, c, side="left")) < cap]] = True
    return sp.csr_matrix((val[keep], (row[keep], col[keep])), shape=q.shape)


class ContentRanker(GlobalRanker):
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
    product without usable name tokens ranks by engagement, scaled by (1 - w). Products without fit
    rows get the plain activity order (score = engagement) with cold_start=True. Profiles use the fit
    rows only (exclusion rows add no signal). Knobs (engagement weights, ``affinity_weight``,
    ``token_user_cap``) change through ``with_params`` / ``rescore`` without refitting the token model.
    """

    name = "content"
    knobs = (*ENGAGEMENT_PATHS, "affinity_weight", "cold_affinity_weight", "token_user_cap", "chunk_entries")
    settings_model = ContentSettings

    def _prepare(self, interactions: pd.DataFrame, history: History) -> None:
        """The knob-independent model: engagement features, the TF-IDF product-token matrix, customer profiles."""
        self._fit_engagement(interactions, history)
        x, self.vocab_ = product_token_matrix(interactions["product_name"], history.row_products, history.n_products)
        self.tokens_ = x
        self.x_ = tfidf(x, int(history.signal.sum()))  # products known only through exclusions are not documents
        n_users = history.n_users
        fit_pairs = unique_sorted(history.row_products * n_users + history.row_users)  # fit rows only, no exclusions
        hist = sp.csr_matrix(
            (np.ones(len(fit_pairs)), np.divmod(fit_pairs, n_users)), shape=(history.n_products, n_users)
        )
        self.profiles_ = sp.csc_matrix(row_normalise(sp.csr_matrix(hist.T @ self.x_)))  # customers x tokens
        self.pair_keys_ = history.pair_keys()

    def _knob_values(self) -> tuple[float, int]:
        """(affinity_weight, token_user_cap) of the current settings (validated by ContentSettings)."""
        settings = self._settings()
        return settings.affinity_weight, settings.token_user_cap

    def _settings(self) -> ContentSettings:
        """The current settings, typed."""
        return cast(ContentSettings, self.settings)

    def _order_keys(self) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Engagement: the fallback and cold-start order."""
        return self.engagement(), ()

    def _build_order(self) -> None:
        """Engagement order plus the truncated posting lists (their tie-break is engagement)."""
        self.weight_, cap = self._knob_values()
        eng = self.engagement()
        self.engagement_ = eng
        self.global_ = GlobalOrder.build(ordered(eng), eng, self.history_)
        self.postings_ = sp.csr_matrix(truncate_postings(self.profiles_, eng, cap).T)  # tokens x users
        per_token = np.diff(self.postings_.indptr).astype(np.float64)
        self.estimate_ = (self.tokens_ @ per_token).astype(np.int64)  # upper bound of candidates per product
        self.__dict__.pop("user_postings_", None)  # score_pairs' transposed postings belong to the old knobs

    def with_weight(self, weight: float) -> ContentRanker:
        """A copy that shares this fitted token model but blends with another affinity_weight (no refit)."""
        return self.with_params({"affinity_weight": float(weight)})

    def _dense_scores(self, code: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """w * affinity + (1 - w) * engagement over every customer for one product (engagement alone when cold)."""
        weight, cap = self._knob_values()
        eng = self.engagement()
        if self.history_.cold(np.array([code]))[0]:
            return eng, ()
        row = self.x_[code]
        toks = row.indices
        postings = sp.csr_matrix(truncate_postings(sp.csc_matrix(self.profiles_[:, toks]), eng, cap).T)
        aff = sp.csr_matrix(
            sp.csr_matrix((row.data, np.arange(len(toks)), [0, len(toks)]), shape=(1, len(toks))) @ postings
        )
        score = (1.0 - weight) * eng
        score[aff.indices] = weight * aff.data + (1.0 - weight) * eng[aff.indices]
        return score, ()

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
        allowed = not_excluded(self.pair_keys_, codes[row] * self.history_.n_users + user)
        return row[allowed], user[allowed], score[allowed]

    def _rank_block(self, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sizes, customer codes and scores for one block of requested product codes.

        The engagement top-k (allowed customers, affinity taken as 0) come first; their lowest score
        bounds the final k-th score from below, so affinity candidates under it are dropped before sorting.
        """
        f_sizes, f_user, f_score = self.global_.top(codes, k)
        f_row = np.repeat(np.arange(len(codes), dtype=np.int64), f_sizes)
        f_score = np.where(self.history_.cold(codes)[f_row], f_score, (1.0 - self.weight_) * f_score)
        floor = np.full(len(codes), -np.inf)
        full = f_sizes == k
        floor[full] = f_score[offsets_of(f_sizes)[1:][full] - 1]
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
        return sparse_topk(row, user, score, len(codes), k)

    def _blocks(self, codes: np.ndarray, k: int) -> Iterator[slice]:
        """Slices of the request whose candidate volume stays near `chunk_entries`."""
        return estimate_blocks(self.estimate_, codes, k, self._settings().chunk_entries)

    def shared_scale(self, codes: np.ndarray) -> np.ndarray:
        """1 - w for known products (a lower bound: the score of a customer without affinity), 1 for cold start."""
        return np.where(self.history_.cold(np.asarray(codes, dtype=np.int64)), 1.0, 1.0 - self.weight_)

    def score_pairs(self, codes: np.ndarray, users: np.ndarray) -> np.ndarray:
        """Blended score of each (product code, customer code) pair; engagement alone for cold-start codes (-1)."""
        self._check_fitted()
        codes = np.asarray(codes, dtype=np.int64)
        users = np.asarray(users, dtype=np.int64)
        eng = self.engagement_[users]
        cold = self.history_.cold(codes)
        out: np.ndarray = np.where(cold, eng, (1.0 - self.weight_) * eng)
        known = np.flatnonzero(~cold)
        if len(known) == 0:
            return out
        if not hasattr(self, "user_postings_"):
            self.user_postings_ = sp.csr_matrix(self.postings_.T)  # customers x tokens
        step = max(1, self._settings().chunk_entries // 32)
        for start in range(0, len(known), step):
            rows = known[start : start + step]
            pair = self.x_[codes[rows]].multiply(self.user_postings_[users[rows]])
            out[rows] += self.weight_ * np.asarray(pair.sum(axis=1)).ravel()
        return out

    def rank(self, product_ids: np.ndarray | Sequence[Any], k: int) -> Recommendations:
        """Top-k customers per requested product by blended affinity and engagement."""
        self._check_fitted()
        requested = id_array(product_ids)
        codes = self.history_.codes_of(requested)
        return collect(requested, codes, k, self._blocks(codes, k), self._rank_block, self.history_, parallel=True)
