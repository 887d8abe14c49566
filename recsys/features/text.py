"""Text folding and tokenisation of product names: one rule set for search and the content ranker.

``fold_text``: NFKD, combining marks and tatweel removed (Arabic harakat, hamza above/below, Latin
accents), lower case, alef/yeh/teh-marbuta/kaf variants unified, Eastern digits to 0-9, runs of
white space collapsed. ``tokenize_names`` and ``query_tokens`` split folded text into maximal runs
of letters (any script) or of digits, so '500مل' -> '500', 'مل' and 'Coffee 100G' -> 'coffee', '100', 'g'.
It imports neither pandas nor scipy (the service tokenises names with it); the TF-IDF representation of names
is in ``recsys.features.name_index`` (pure) and ``recsys.features.name_matrix`` (from a pandas table).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
