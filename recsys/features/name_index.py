"""The served side of what names reveal: TF-IDF vectors of names over a fitted vocabulary (numpy, scipy, pyarrow).

No pandas: the service scores a new product's name with it (``/audiences/by-name``). ``TokenModel`` is the
vocabulary (sorted, fixed-width text, memory-mappable), its idf and ``vectorise(names)``; the rankers that read
names (recsys.rankers.names) fit it and score with the same functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.arrays import offsets_of, sparse_topk, unique_sorted
from recsys.features.text import tokenize_names


def row_normalise(m: sp.csr_matrix) -> sp.csr_matrix:
    """Scale every row to unit L2 norm (empty rows stay empty)."""
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(inv) @ m)


def idf_weights(x: sp.csr_matrix, n_docs: int | None = None) -> np.ndarray:
    """Smoothed idf of every column of a binary (products x tokens) matrix: ln((1+P)/(1+df)) + 1, P = n_docs."""
    n = x.shape[0] if n_docs is None else int(n_docs)
    df = np.bincount(x.indices, minlength=x.shape[1])
    idf: np.ndarray = np.log((1.0 + n) / (1.0 + df)) + 1.0
    return idf


@dataclass(frozen=True)
class TokenModel:
    """Sorted token vocabulary, its idf, and the TF-IDF rows of the fitted products (history code order)."""

    vocab: np.ndarray
    idf: np.ndarray
    products: sp.csr_matrix

    @classmethod
    def from_matrix(cls, x: sp.csr_matrix, vocab: np.ndarray, n_docs: int) -> TokenModel:
        """The model of a binary (products x tokens) matrix over `vocab` (any order) with `n_docs` documents."""
        order = np.argsort(np.asarray(vocab, dtype=str), kind="stable")
        sorted_vocab = np.asarray(vocab, dtype=str)[order] if len(vocab) else np.zeros(0, dtype="<U1")
        x = sp.csr_matrix(x[:, order]) if len(vocab) else sp.csr_matrix((x.shape[0], 0))
        idf = idf_weights(x, n_docs)
        return cls(sorted_vocab, idf, row_normalise(sp.csr_matrix(x @ sp.diags(idf))))

    @property
    def n_tokens(self) -> int:
        """Vocabulary size."""
        return int(len(self.vocab))

    def token_codes(self, tokens: np.ndarray) -> np.ndarray:
        """Vocabulary code of each token (-1 when unknown)."""
        if len(tokens) == 0 or self.n_tokens == 0:
            return np.full(len(tokens), -1, dtype=np.int64)
        t = np.asarray(tokens, dtype=str)
        pos = np.minimum(np.searchsorted(self.vocab, t), self.n_tokens - 1)
        return np.where(self.vocab[pos] == t, pos, -1).astype(np.int64)

    def vectorise(self, names: Sequence[Any] | np.ndarray) -> sp.csr_matrix:
        """TF-IDF rows of arbitrary names over this vocabulary (unknown tokens ignored; None gives an empty row)."""
        arr = np.asarray([n if isinstance(n, str) else None for n in names], dtype=object)
        parents, tokens = tokenize_names(arr)
        codes = self.token_codes(tokens)
        keep = codes >= 0
        keys = unique_sorted(parents[keep] * max(self.n_tokens, 1) + codes[keep])
        row, col = np.divmod(keys, max(self.n_tokens, 1))
        m = sp.csr_matrix((self.idf[col], (row, col)), shape=(len(arr), self.n_tokens))
        return row_normalise(m)

    def tokens_of(self, row: sp.csr_matrix) -> list[str]:
        """The vocabulary tokens of one sparse row."""
        return [str(t) for t in self.vocab[row.indices]]


# ----------------------------------------------------------------------------------------------
# signals and the blended top-k: the one implementation the rankers and the service share
# ----------------------------------------------------------------------------------------------


def affinity_signal(vectors: sp.csr_matrix, token_customers: sp.csr_matrix) -> sp.csr_matrix:
    """(rows x customers) name-token affinity: sum over tokens t of vector[t] * posting[t, u] (the content signal)."""
    return sp.csr_matrix(vectors @ token_customers)


def top_neighbours(
    vectors: sp.csr_matrix, token_products: sp.csr_matrix, k: int, self_codes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, product code, cosine) of every row's `k` most similar known products (ties: lower code), not itself."""
    sim = sp.csr_matrix(vectors @ token_products)
    row = np.repeat(np.arange(vectors.shape[0], dtype=np.int64), np.diff(sim.indptr))
    prod = sim.indices.astype(np.int64)
    keep = sim.data > 0
    if self_codes is not None:
        keep &= prod != np.asarray(self_codes, dtype=np.int64)[row]
    sizes, nbr, val = sparse_topk(row[keep], prod[keep], sim.data[keep], vectors.shape[0], int(k))
    return np.repeat(np.arange(vectors.shape[0], dtype=np.int64), sizes), nbr, val


def neighbour_shares(row: np.ndarray, sim: np.ndarray, n_rows: int) -> np.ndarray:
    """Each neighbour's share of its row's summed similarity."""
    total = np.bincount(row, weights=sim, minlength=n_rows)
    return sim / total[row] if len(row) else sim


def neighbour_signal(
    vectors: sp.csr_matrix,
    token_products: sp.csr_matrix,
    product_customers: sp.csr_matrix,
    k: int,
    self_codes: np.ndarray | None = None,
) -> sp.csr_matrix:
    """(rows x customers) similarity-weighted share of each row's `k` neighbours that a customer touched (name_knn)."""
    row, nbr, sim = top_neighbours(vectors, token_products, k, self_codes)
    shares = neighbour_shares(row, sim, vectors.shape[0])
    weights = sp.csr_matrix((shares, (row, nbr)), shape=(vectors.shape[0], product_customers.shape[0]))
    return sp.csr_matrix(weights @ product_customers)


Allowed = Callable[[np.ndarray, np.ndarray], np.ndarray]


def blend_top(
    k: int,
    weights: np.ndarray,
    signal: sp.csr_matrix,
    engagement: np.ndarray,
    fallback: tuple[np.ndarray, np.ndarray, np.ndarray],
    allowed: Allowed,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k of w * signal(u) + (1 - w) * engagement(u) per row (sizes, customer codes, scores).

    `fallback` = (sizes, customers, engagement) of every row's best k allowed customers by engagement alone (signal
    0): their k-th blended score bounds the result from below, so weaker signal candidates are dropped first.
    `allowed(row, customer)` masks the signal candidates a row may not get (its own customers, excluded ones).
    """
    n_rows = signal.shape[0]
    f_sizes, f_user, f_score = fallback
    f_row = np.repeat(np.arange(n_rows, dtype=np.int64), f_sizes)
    f_score = (1.0 - weights[f_row]) * f_score
    floor = np.full(n_rows, -np.inf)
    full = f_sizes == k
    floor[full] = f_score[offsets_of(f_sizes)[1:][full] - 1]
    a_row = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(signal.indptr))
    a_user = signal.indices.astype(np.int64)
    a_score = weights[a_row] * signal.data + (1.0 - weights[a_row]) * engagement[a_user]
    keep = (signal.data > 0) & (a_score >= floor[a_row])
    a_row, a_user, a_score = a_row[keep], a_user[keep], a_score[keep]
    ok = allowed(a_row, a_user)
    a_row, a_user, a_score = a_row[ok], a_user[ok], a_score[ok]
    n_users = len(engagement)
    f_keys = f_row * n_users + f_user
    a_keys = np.sort(a_row * n_users + a_user)
    dup = np.zeros(len(f_keys), dtype=bool)
    if len(a_keys):
        dup = a_keys[np.minimum(np.searchsorted(a_keys, f_keys), len(a_keys) - 1)] == f_keys
    row = np.concatenate([a_row, f_row[~dup]])
    user = np.concatenate([a_user, f_user[~dup]])
    score = np.concatenate([a_score, f_score[~dup]])
    return sparse_topk(row, user, score, n_rows, k)
