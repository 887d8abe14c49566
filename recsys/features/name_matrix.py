"""Product names of a canonical table as a binary product x token matrix and its TF-IDF rows (uses pandas)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.arrays import unique_sorted
from recsys.features.name_index import idf_weights, row_normalise
from recsys.features.text import tokenize_names


def product_token_matrix(
    names: pd.Series, product_codes: np.ndarray, n_products: int
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Binary (products x tokens) matrix of every name logged for each product, and the token vocabulary.

    names: the product_name of every row; product_codes: the row's product code in [0, n_products).
    """
    if not isinstance(names.dtype, pd.CategoricalDtype):
        names = names.astype("category")
    name_codes = names.cat.codes.to_numpy().astype(np.int64)
    has = name_codes >= 0
    pairs = unique_sorted(
        np.asarray(product_codes, dtype=np.int64)[has] * max(len(names.cat.categories), 1) + name_codes[has]
    )
    pair_prod, pair_name = np.divmod(pairs, max(len(names.cat.categories), 1))
    parents, tokens = tokenize_names(np.asarray(names.cat.categories, dtype=object))
    token_codes, vocab = pd.factorize(tokens)
    n_tokens = len(vocab)
    name_tok = sp.csr_matrix(
        (np.ones(len(parents)), (parents, token_codes)), shape=(len(names.cat.categories), n_tokens)
    )
    prod_name = sp.csr_matrix(
        (np.ones(len(pair_prod)), (pair_prod, pair_name)), shape=(n_products, len(names.cat.categories))
    )
    x = sp.csr_matrix(prod_name @ name_tok)
    x.data[:] = 1.0
    return x, np.asarray(vocab, dtype=object)


def tfidf(x: sp.csr_matrix, n_docs: int | None = None) -> sp.csr_matrix:
    """Smoothed TF-IDF of a binary (products x tokens) matrix, rows L2-normalised (idf: ``idf_weights``)."""
    return row_normalise(sp.csr_matrix(x @ sp.diags(idf_weights(x, n_docs))))
