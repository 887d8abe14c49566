"""Text folding and tokenisation of product names: one rule set for search and the content ranker.

``fold_text``: NFKD, combining marks and tatweel removed (Arabic harakat, hamza above/below, Latin
accents), lower case, alef/yeh/teh-marbuta/kaf variants unified, Eastern digits to 0-9, runs of
white space collapsed. ``tokenize_names`` and ``query_tokens`` split folded text into maximal runs
of letters (any script) or of digits, so '500مل' -> '500', 'مل' and 'Coffee 100G' -> 'coffee', '100', 'g'.
``product_token_matrix`` and ``tfidf`` turn the names logged for each product into TF-IDF rows (the content
ranker's and the category inference's product representation).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from recsys.features.engagement import unique_sorted

_MARKS = r"[\p{Mn}\x{0640}]"  # combining marks (after NFKD) + tatweel
_CHAR_FOLDS: tuple[tuple[str, str], ...] = (("[ٱ]", "ا"), ("[ىی]", "ي"), ("[ة]", "ه"), ("[ک]", "ك"))
_EASTERN_DIGITS: tuple[str, ...] = ("٠١٢٣٤٥٦٧٨٩", "۰۱۲۳۴۵۶۷۸۹")


def _as_array(values: pa.Array | Sequence[str | None] | np.ndarray) -> pa.Array:
    """A pyarrow string array of the values."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values.cast(pa.string())
    return pa.array(list(values), type=pa.string())


def fold_text(values: pa.Array | Sequence[str | None] | np.ndarray) -> pa.Array:
    """Fold names for matching: NFKD, marks/tatweel removed, lower case, letter and digit variants unified."""
    s = pc.utf8_normalize(_as_array(values), "NFKD")
    s = pc.replace_substring_regex(s, _MARKS, "")
    s = pc.utf8_lower(s)
    for pattern, repl in _CHAR_FOLDS:
        s = pc.replace_substring_regex(s, pattern, repl)
    s = _fold_digits(s)
    s = pc.replace_substring_regex(s, r"\s+", " ")
    return pc.utf8_trim_whitespace(s)


def _fold_digits(s: pa.Array) -> pa.Array:
    """Arabic-Indic and Persian digits to 0-9, touching only the strings that contain them."""
    has = pc.fill_null(pc.match_substring_regex(s, "[" + "".join(_EASTERN_DIGITS) + "]"), False)
    if not pc.any(has).as_py():
        return s
    rows = np.flatnonzero(has.to_numpy(zero_copy_only=False))
    sub = s.take(pa.array(rows))
    for digits in _EASTERN_DIGITS:
        for value, char in enumerate(digits):
            sub = pc.replace_substring(sub, char, str(value))
    positions = np.full(len(s), -1, dtype=np.int64)
    positions[rows] = np.arange(len(rows))
    merged = pa.concat_arrays([s, sub])
    index = np.where(positions >= 0, len(s) + positions, np.arange(len(s)))
    return merged.take(pa.array(index))


def _split_tokens(folded: pa.Array) -> pa.ListArray:
    """Folded strings split into letter runs and digit runs."""
    s = pc.replace_substring_regex(folded, r"(\p{L})(\p{N})", r"\1 \2")
    s = pc.replace_substring_regex(s, r"(\p{N})(\p{L})", r"\1 \2")
    s = pc.replace_substring_regex(s, r"[^\p{L}\p{N}]+", " ")
    return pc.utf8_split_whitespace(s)


def tokenize_names(names: pa.Array | Sequence[str | None] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tokens of many names at once: (index of the source name, token) pairs; null names have none."""
    lists = _split_tokens(fold_text(names))
    parents = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False).astype(np.int64)
    tokens = pc.list_flatten(lists).to_numpy(zero_copy_only=False)
    return parents, np.asarray(tokens, dtype=object)


def query_tokens(query: str) -> list[str]:
    """Folded tokens of one search query (the same tokens the content ranker sees in a name)."""
    return [str(t) for t in tokenize_names([query])[1] if t]  # an empty or punctuation-only query has no tokens


def row_normalise(m: sp.csr_matrix) -> sp.csr_matrix:
    """Scale every row to unit L2 norm (empty rows stay empty)."""
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(inv) @ m)


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
    """Smoothed TF-IDF of a binary (products x tokens) matrix, rows L2-normalised.

    idf = ln((1+P)/(1+df)) + 1 with P = n_docs (default: the number of rows).
    """
    n = x.shape[0] if n_docs is None else int(n_docs)
    df = np.bincount(x.indices, minlength=x.shape[1])
    idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
    return row_normalise(sp.csr_matrix(x @ sp.diags(idf)))
