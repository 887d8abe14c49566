"""The ``content`` ranker: name-token affinity of a customer's history to a product, blended with engagement."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.features.engagement import unique_sorted
from recsys.features.text import tokenize_names
from recsys.rankers.base import (
    GlobalRanker,
    History,
    Recommendations,
    collect,
    cost_blocks,
    not_excluded,
    offsets_of,
    ordered,
    requested_array,
    sparse_topk,
    topk_superset,
)


def row_normalise(m: sp.csr_matrix) -> sp.csr_matrix:
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
    parents, tokens = tokenize_names(np.asarray(names.cat.categories, dtype=object))
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


def tfidf(x: sp.csr_matrix, n_docs: int | None = None) -> sp.csr_matrix:
    """Smoothed TF-IDF of a binary (products x tokens) matrix, rows L2-normalised.

    idf = ln((1+P)/(1+df)) + 1 with P = n_docs (default: the number of rows).
    """
    n = x.shape[0] if n_docs is None else int(n_docs)
    df = np.bincount(x.indices, minlength=x.shape[1])
    idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
    return row_normalise(sp.csr_matrix(x @ sp.diags(idf)))


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
    rows only (exclusion rows add no signal); ``with_weight(w)`` re-blends a fitted model without refitting.
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
        self.x_ = tfidf(x, int(history.signal.sum()))  # products known only through exclusions are not documents
        n_users = history.n_users
        fit_pairs = unique_sorted(history.row_products * n_users + history.row_users)  # fit rows only, no exclusions
        hist = sp.csr_matrix(
            (np.ones(len(fit_pairs)), np.divmod(fit_pairs, n_users)), shape=(history.n_products, n_users)
        )
        q = row_normalise(sp.csr_matrix(hist.T @ self.x_))
        cap = int(self.params.get("token_user_cap", 200))
        self.postings_ = sp.csr_matrix(truncate_postings(q, eng, cap).T)  # tokens x users
        self.pair_keys_ = history.pair_keys()
        per_token = np.diff(self.postings_.indptr).astype(np.float64)
        self.estimate_ = (x @ per_token).astype(np.int64)  # upper bound of candidates per product
        return ordered(eng), eng

    def with_weight(self, weight: float) -> "ContentRanker":
        """A copy that shares this fitted token model but blends with another affinity_weight (no refit)."""
        self._check_fitted()
        if not 0.0 <= float(weight) <= 1.0:
            raise ValueError(f"rankers.content.affinity_weight must be in [0, 1], got {weight}")
        twin = copy.copy(self)
        twin.params = {**self.params, "affinity_weight": float(weight)}
        twin.weight_ = float(weight)
        return twin

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
        cost = np.where(codes >= 0, self.estimate_[np.maximum(codes, 0)], 0) + k
        return cost_blocks(cost, int(self.params.get("chunk_entries", 8_000_000)))

    def rank(self, product_ids: np.ndarray | Sequence, k: int) -> Recommendations:
        """Top-k customers per requested product by blended affinity and engagement."""
        self._check_fitted()
        requested = requested_array(product_ids)
        codes = self.history_.codes_of(requested)
        return collect(requested, codes, k, self._blocks(codes, k), self._rank_block, self.history_)

