"""The served side of what names reveal: TF-IDF vectors of names over a fitted vocabulary (numpy, scipy, pyarrow).

No pandas: the service scores a new product's name with it (``/audiences/by-name``). ``TokenModel`` is the
vocabulary (sorted, fixed-width text, memory-mappable), its idf and ``vectorise(names)``; the rankers that read
names (recsys.rankers.names) fit it and score with the same functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys.arrays import unique_sorted
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
