"""What product names reveal: the token model and the base of the rankers that read names (``content``, ``name_knn``).

Token model (``recsys.features.name_index.TokenModel``). The tokens of every name logged for a fitted product
(recsys.features.text: folding, letter runs and digit runs) form a binary product x token matrix over a sorted
vocabulary; its TF-IDF rows (idf = ln((1+P)/(1+df)) + 1 over the P products with fit rows, rows L2-normalised)
represent the known products. ``vectorise(names)`` turns any names (a new product's catalogue name) into rows of
the same space: the name's tokens that the vocabulary knows, weighted by their idf, L2-normalised; unknown tokens
are ignored (scikit-learn's convention), so a name with no known token has an empty row.

Name rankers (``NameRanker``). score(u, p) = w * signal(u, p) + (1 - w) * engagement(u), with a signal in [0, 1]
computed from the product's vector: the content ranker's customer x token affinity, or name_knn's neighbours.
Every product gets a ``basis`` (``recsys.rankers.base.BASES``):

- ``history``: the product has fit rows; its vector comes from the names logged for it, w = the ranker's weight;
- ``name``: no fit rows, but the catalogue gives a name with at least one known token; w = the cold weight;
- ``no_name`` / ``no_known_token``: no fit rows and no usable name: the engagement order (score = engagement),
  as every ranker that does not read names gives (``names_unused``).

Candidates per product are the customers with a positive signal plus the engagement top-k (signal 0), so every
list is as long as the allowed customers permit; the engagement top-k bounds the k-th score from below, so
weaker signal candidates are dropped before sorting. A product's own customers (fit or exclusion rows) are never
ranked. Ties: ascending customer code, as every ranker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.arrays import cost_blocks, not_excluded, topk_superset, unique_sorted
from recsys.data.catalogue import Catalogue
from recsys.data.ids import id_array
from recsys.features.name_index import Method, NameIndex, NameIndexMeta, TokenModel, blend_top, names_blob
from recsys.features.name_matrix import product_token_matrix
from recsys.rankers.base import GlobalOrder, GlobalRanker, History, Recommendations, collect, ordered


def truncate_postings(q: sp.csr_matrix, priority: np.ndarray, cap: int) -> sp.csr_matrix:
    """Keep, per column, the `cap` rows with the largest weight (ties: larger priority, lower row)."""
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


def binary(m: sp.csr_matrix) -> sp.csr_matrix:
    """The sparsity pattern of a matrix with ones."""
    return sp.csr_matrix((np.ones(m.nnz), m.indices, m.indptr), shape=m.shape)


POSTINGS_CAP = 200  # products a token credits in the exported neighbour search of rankers without their own

BlockSignal = Callable[[sp.csr_matrix, np.ndarray], sp.csr_matrix]


class NameRanker(GlobalRanker):
    """Base of the rankers that blend a name signal in [0, 1] with engagement (module docstring).

    Subclasses implement ``_prepare_signal`` (knob-independent state), ``_build_signal`` (state that depends on the
    knobs), ``_signal`` (rows x customers signal of a block of product vectors) and ``_signal_cost`` (an upper bound
    of each row's signal entries, for blocking); ``_weights`` gives (weight of known products, weight of products
    ranked from a catalogue name).
    """

    uses_names = True

    def _prepare(self, interactions: pd.DataFrame, history: History) -> None:
        """Engagement, the token model of the fit rows' names, the history's pair keys, then the subclass's state."""
        self._fit_engagement(interactions, history)
        x, vocab = product_token_matrix(interactions["product_name"], history.row_products, history.n_products)
        self.token_model_ = TokenModel.from_matrix(x, vocab, int(history.signal.sum()))
        self.x_ = self.token_model_.products  # products known only through exclusions have empty rows
        self.pair_keys_ = history.pair_keys()
        names = Catalogue.from_interactions(interactions).names_of(history.product_ids)
        self.product_names_ = np.asarray([n if isinstance(n, str) else "" for n in names], dtype=object)
        n_users = history.n_users
        pairs = unique_sorted(history.row_products * n_users + history.row_users)  # fit rows only, no exclusions
        prod, user = np.divmod(pairs, n_users)
        self.product_customers_ = sp.csr_matrix(
            (np.ones(len(pairs)), (prod, user)), shape=(history.n_products, n_users)
        )
        self.customers_per_product_ = np.diff(self.product_customers_.indptr).astype(np.float64)
        self._prepare_signal(interactions, history)

    def _prepare_signal(self, interactions: pd.DataFrame, history: History) -> None:
        """Knob-independent state of the signal."""

    def _build_signal(self) -> None:
        """Knob-dependent state of the signal (called whenever the order is rebuilt)."""

    def _signal(self, vectors: sp.csr_matrix, codes: np.ndarray) -> sp.csr_matrix:
        """(rows x customers) signal in [0, 1] of a block of product vectors (codes: -1 for catalogue-only rows)."""
        raise NotImplementedError

    def _signal_cost(self, vectors: sp.csr_matrix) -> np.ndarray:
        """Upper bound of each row's signal entries."""
        raise NotImplementedError

    def _weights(self) -> tuple[float, float]:
        """(weight of the signal for known products, for products ranked from a catalogue name)."""
        raise NotImplementedError

    def _chunk_entries(self) -> int:
        """Candidate entries processed per vectorised block."""
        return int(self.params.get("chunk_entries", 8_000_000))

    def _order_keys(self) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Engagement: the fallback order."""
        return self.engagement(), ()

    def _build_order(self) -> None:
        """Engagement order, then the knob-dependent signal state."""
        eng = self.engagement()
        self.engagement_ = eng
        self.global_ = GlobalOrder.build(ordered(eng), eng, self.history_)
        self._build_signal()

    def query(
        self, requested: np.ndarray, codes: np.ndarray, catalogue: Catalogue | None
    ) -> tuple[sp.csr_matrix, np.ndarray]:
        """(vector of every requested product, its basis): fit names for known products, catalogue names otherwise."""
        cold = self.history_.cold(codes)
        basis = np.where(cold, "no_name", "history").astype(object)
        n_tokens = self.token_model_.n_tokens
        warm = np.flatnonzero(~cold)
        parts = [sp.csr_matrix((len(codes), n_tokens))]
        if len(warm):
            select = sp.csr_matrix(
                (np.ones(len(warm)), (warm, codes[warm])), shape=(len(codes), self.history_.n_products)
            )
            parts.append(sp.csr_matrix(select @ self.x_))
        named = np.flatnonzero(cold)
        if catalogue is not None and len(named):
            names = catalogue.names_of(requested[named])
            has = np.array([n is not None for n in names], dtype=bool)
            named, names = named[has], names[has]
            if len(named):
                vec = self.token_model_.vectorise(names)
                known = np.diff(vec.indptr) > 0
                basis[named] = np.where(known, "name", "no_known_token")
                place = sp.csr_matrix(
                    (np.ones(len(named)), (named, np.arange(len(named)))), shape=(len(codes), len(named))
                )
                parts.append(sp.csr_matrix(place @ vec))
        vectors = parts[0]
        for p in parts[1:]:
            vectors = vectors + p
        return sp.csr_matrix(vectors), basis

    def _row_weights(self, basis: np.ndarray) -> np.ndarray:
        """Signal weight of every row: known products, catalogue-named products, 0 for the engagement fallback."""
        w_known, w_named = self._weights()
        return np.select([basis == "history", basis == "name"], [w_known, w_named], 0.0)

    def _rank_rows(
        self, codes: np.ndarray, vectors: sp.csr_matrix, weights: np.ndarray, rows: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sizes, customer codes and scores of one block of requested rows (recsys.features.name_index.blend_top)."""
        c = codes[rows]
        n_users = self.history_.n_users

        def allowed(row: np.ndarray, user: np.ndarray) -> np.ndarray:
            ok: np.ndarray = not_excluded(self.pair_keys_, c[row] * n_users + user) | (c[row] < 0)
            return ok

        fallback = self.global_.top(c, k)
        signal = self._signal(sp.csr_matrix(vectors[rows]), c)
        return blend_top(k, weights[rows], signal, self.engagement_, fallback, allowed)

    def rank(
        self, product_ids: np.ndarray | Sequence[Any], k: int, catalogue: Catalogue | None = None
    ) -> Recommendations:
        """Top-k customers per requested product by the blended name signal (catalogue names for new products)."""
        self._check_fitted()
        requested = id_array(product_ids)
        codes = self.history_.codes_of(requested)
        vectors, basis = self.query(requested, codes, catalogue)
        weights = self._row_weights(basis)
        cost = self._signal_cost(vectors) + max(int(k), 0)
        blocks = cost_blocks(cost, self._chunk_entries())

        def rank_block(rows: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return self._rank_rows(codes, vectors, weights, rows, kk)

        rows = np.arange(len(codes), dtype=np.int64)
        return collect(requested, rows, k, blocks, rank_block, self.history_, parallel=True, basis=basis)

    def candidate_estimate(self) -> np.ndarray:
        """Upper bound of every known product's signal candidates (the volume a distributed join would shuffle)."""
        self._check_fitted()
        return self._signal_cost(self.x_)

    def shared_scale(self, codes: np.ndarray) -> np.ndarray:
        """1 - w for known products (the score of a customer without signal), 1 for cold start."""
        w_known, _ = self._weights()
        return np.where(self.history_.cold(np.asarray(codes, dtype=np.int64)), 1.0, 1.0 - w_known)

    def _method(self) -> Method:
        """How the exported name index scores a name."""
        raise NotImplementedError

    def _token_customers(self) -> sp.csr_matrix:
        """tokens x customers posting weights of the affinity signal (empty when the ranker has none)."""
        return sp.csr_matrix((self.token_model_.n_tokens, self.history_.n_users))

    def _token_products(self) -> sp.csr_matrix:
        """tokens x products postings for the neighbour search (truncated like name_knn's default)."""
        return sp.csr_matrix(truncate_postings(sp.csc_matrix(self.x_), self.customers_per_product_, POSTINGS_CAP).T)

    def _neighbours(self) -> int:
        """Neighbours the exported index blends (0 when the signal is not neighbours)."""
        return 0

    def name_index(self, label: str | None = None) -> NameIndex:
        """The fitted state that scores a name never seen in the log, as memory-mappable arrays (the service's)."""
        self._check_fitted()
        _, cold_weight = self._weights()
        blob, offsets = names_blob([str(n) for n in self.product_names_])
        return NameIndex(
            meta=NameIndexMeta(
                ranker=self.name,
                label=label,
                method=self._method(),
                weight=float(cold_weight),
                neighbours=self._neighbours(),
            ),
            tokens=self.token_model_,
            token_customers=sp.csr_matrix(self._token_customers()),
            token_products=sp.csr_matrix(self._token_products()),
            product_customers=self.product_customers_,
            engagement=np.asarray(self.engagement_, dtype=np.float64),
            engagement_order=np.asarray(self.global_.order, dtype=np.int64),
            customer_ids=self.history_.customer_ids,
            product_ids=self.history_.product_ids,
            product_names=blob,
            product_name_offsets=offsets,
        )
