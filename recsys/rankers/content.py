"""The ``content`` ranker: name-token affinity of a customer's history to a product, blended with engagement."""

from __future__ import annotations

from typing import cast

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.arrays import unique_sorted
from recsys.features.name_index import Method, affinity_signal, row_normalise
from recsys.rankers.base import ENGAGEMENT_PATHS, History
from recsys.rankers.names import NameRanker, binary, truncate_postings
from recsys.rankers.settings import ContentSettings


class ContentRanker(NameRanker):
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
    product without usable name tokens ranks by engagement, scaled by (1 - w). A product without fit
    rows is ranked from its catalogue name (recsys.rankers.names: the name's known tokens, TF-IDF, the
    same affinity) with w = ``cold_affinity_weight`` (default: ``affinity_weight``), basis `name`; without
    a usable name it gets the plain engagement order (score = engagement). Profiles use the fit rows
    only (exclusion rows add no signal). Knobs (engagement weights, both weights, ``token_user_cap``)
    change through ``with_params`` / ``rescore`` without refitting the token model.
    """

    name = "content"
    knobs = (*ENGAGEMENT_PATHS, "affinity_weight", "cold_affinity_weight", "token_user_cap", "chunk_entries")
    settings_model = ContentSettings

    def _prepare_signal(self, interactions: pd.DataFrame, history: History) -> None:
        """Customer profiles: the L2-normalised sum of the TF-IDF rows of the products in their fit history."""
        self.tokens_ = binary(self.x_)
        n_users = history.n_users
        fit_pairs = unique_sorted(history.row_products * n_users + history.row_users)  # fit rows only, no exclusions
        hist = sp.csr_matrix(
            (np.ones(len(fit_pairs)), np.divmod(fit_pairs, n_users)), shape=(history.n_products, n_users)
        )
        self.profiles_ = sp.csc_matrix(row_normalise(sp.csr_matrix(hist.T @ self.x_)))  # customers x tokens

    def _knob_values(self) -> tuple[float, int]:
        """(affinity_weight, token_user_cap) of the current settings (validated by ContentSettings)."""
        settings = self._settings()
        return settings.affinity_weight, settings.token_user_cap

    def _settings(self) -> ContentSettings:
        """The current settings, typed."""
        return cast(ContentSettings, self.settings)

    def _weights(self) -> tuple[float, float]:
        """(affinity_weight, cold_affinity_weight or affinity_weight)."""
        settings = self._settings()
        cold = settings.affinity_weight if settings.cold_affinity_weight is None else settings.cold_affinity_weight
        return settings.affinity_weight, cold

    def _chunk_entries(self) -> int:
        """Candidate pairs processed per vectorised block."""
        return self._settings().chunk_entries

    def _build_signal(self) -> None:
        """The truncated posting lists (their tie-break is engagement) and the candidates per token."""
        self.weight_, cap = self._knob_values()
        self.postings_ = sp.csr_matrix(truncate_postings(self.profiles_, self.engagement_, cap).T)  # tokens x users
        self.per_token_ = np.diff(self.postings_.indptr).astype(np.float64)
        self.__dict__.pop("user_postings_", None)  # score_pairs' transposed postings belong to the old knobs

    def _signal(self, vectors: sp.csr_matrix, codes: np.ndarray) -> sp.csr_matrix:
        """Name-token affinity of every customer to every row's vector (truncated postings)."""
        return affinity_signal(vectors, self.postings_)

    def _signal_cost(self, vectors: sp.csr_matrix) -> np.ndarray:
        """Upper bound of the affinity candidates of each row: the posting lengths of its tokens."""
        return np.asarray(binary(vectors) @ self.per_token_, dtype=np.int64)

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

    def _method(self) -> Method:
        """The exported index scores a name by its customer x token affinity."""
        return "affinity"

    def _token_customers(self) -> sp.csr_matrix:
        """The truncated posting lists (tokens x customers)."""
        return self.postings_
