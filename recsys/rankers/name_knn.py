"""The ``name_knn`` ranker: a product's customers are those of the known products whose names are most similar.

Definition. X = the TF-IDF rows of the known products' names (recsys.rankers.names.TokenModel; the same folding,
tokens and idf as the content ranker). For a product vector x (its logged names, or a new product's catalogue
name), sim(p, q) = sum over shared tokens t of x[t] * X[q, t] (cosine), where a token credits only its
``token_product_cap`` products with the largest weight (ties: more customers, then lower code), so a very common
token ("عطر", units) cannot make every product a neighbour. The ``neighbours`` products q != p with the largest
similarity (ties: lower code) are p's neighbours N(p), and

    neighbour(u, p) = sum over q in N(p) with u in customers(q) of sim(p, q) / sum over q in N(p) of sim(p, q)

(the similarity-weighted share of p's neighbours that u touched; in [0, 1]), score(u, p) = w * neighbour(u, p) +
(1 - w) * engagement(u), w = ``neighbour_weight`` for known products and ``cold_neighbour_weight`` (default: the
same) for products ranked from a catalogue name. Everything else (candidates, exclusions, ties, fallbacks) is
recsys.rankers.names.NameRanker's.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import scipy.sparse as sp

from recsys.features.name_index import Method, neighbour_signal, top_neighbours
from recsys.rankers.base import ENGAGEMENT_PATHS
from recsys.rankers.names import NameRanker, binary, truncate_postings
from recsys.rankers.settings import NameKNNSettings


class NameKNNRanker(NameRanker):
    """Customers of the most similar known products by name, blended with engagement (module docstring)."""

    name = "name_knn"
    knobs = (*ENGAGEMENT_PATHS, "neighbours", "neighbour_weight", "cold_neighbour_weight", "token_product_cap")
    settings_model = NameKNNSettings

    def _settings(self) -> NameKNNSettings:
        """The current settings, typed."""
        return cast(NameKNNSettings, self.settings)

    def _weights(self) -> tuple[float, float]:
        """(neighbour_weight, cold_neighbour_weight or neighbour_weight)."""
        s = self._settings()
        return s.neighbour_weight, s.neighbour_weight if s.cold_neighbour_weight is None else s.cold_neighbour_weight

    def _chunk_entries(self) -> int:
        """Candidate entries processed per vectorised block."""
        return self._settings().chunk_entries

    def _build_signal(self) -> None:
        """Token -> product postings truncated to ``token_product_cap`` (ties: more customers, then lower code)."""
        cap = self._settings().token_product_cap
        self.built_cap_ = cap
        self.product_postings_ = sp.csr_matrix(
            truncate_postings(sp.csc_matrix(self.x_), self.customers_per_product_, cap).T
        )  # tokens x products
        self.per_token_ = np.diff(self.product_postings_.indptr).astype(np.float64)

    def neighbours(self, vectors: sp.csr_matrix, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, neighbour product code, similarity) of every row's top ``neighbours`` products (itself excluded)."""
        return top_neighbours(vectors, self.product_postings_, self._settings().neighbours, codes)

    def _signal(self, vectors: sp.csr_matrix, codes: np.ndarray) -> sp.csr_matrix:
        """Similarity-weighted share of each row's neighbours that every customer touched."""
        return neighbour_signal(
            vectors, self.product_postings_, self.product_customers_, self._settings().neighbours, codes
        )

    def _signal_cost(self, vectors: sp.csr_matrix) -> np.ndarray:
        """Similarity entries of each row plus its neighbours' customers (bounded by the largest products)."""
        top = np.sort(self.customers_per_product_)[::-1][: self._settings().neighbours].sum()
        return np.asarray(binary(vectors) @ self.per_token_, dtype=np.int64) + int(top)

    def _dense_scores(self, code: int) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """w * neighbour + (1 - w) * engagement over every customer for one product (engagement alone when cold)."""
        eng = self.engagement()
        if self.history_.cold(np.array([code]))[0]:
            return eng, ()
        if self.built_cap_ != self._settings().token_product_cap:
            self._build_signal()  # a re-score copy under a new cap: its own postings
        weight, _ = self._weights()
        sig = self._signal(sp.csr_matrix(self.x_[code]), np.array([code], dtype=np.int64))
        score = (1.0 - weight) * eng
        score[sig.indices] = weight * sig.data + (1.0 - weight) * eng[sig.indices]
        return score, ()

    def _method(self) -> Method:
        """The exported index scores a name by its neighbours' customers."""
        return "neighbours"

    def _token_products(self) -> sp.csr_matrix:
        """The product postings at the current cap."""
        return self.product_postings_

    def _neighbours(self) -> int:
        """The neighbour count."""
        return self._settings().neighbours
