"""Product search: the per-product index built from the log, search by id or (partial) name, product history.

Names are matched with ``recsys.features.text`` (the same folding and tokens as the content ranker),
ids with ``recsys.data.ids``. A query is expanded through the bilingual lexicon (``recsys.lexicon``:
"perfume" also finds names with عطر, and back): every unit of the query must match a name, as typed (each of its
words anywhere in the name, so partial words and transliterated brand names keep working) or as one of its
lexicon alternatives (a whole word). The search reports how many products match in total, not only how many
it lists.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys.arrays import unique_sorted
from recsys.data.ids import id_kind, parse_id
from recsys.features.engagement import dated_extremes, encode_ids, event_codes, timestamps_us
from recsys.features.text import fold_text, query_tokens
from recsys.lexicon import Lexicon, Unit, unit_pattern

SEARCH_LIMIT = 20


def id_of_kind(text: str, product_ids: np.ndarray) -> int | str | None:
    """The typed text as a product id of the catalogue's kind (`recsys.data.ids.parse_id`), or None."""
    text = text.strip()
    return parse_id(text, id_kind(product_ids)) if text else None


@dataclass(frozen=True)
class ProductHistory:
    """What the log says about one product."""

    product_id: Any
    name: str | None
    other_names: list[str]
    interactions: int
    customers: int
    events: dict[str, int]
    first_seen: pd.Timestamp | None
    last_seen: pd.Timestamp | None
    undated: int


@dataclass(frozen=True)
class ProductIndex:
    """Per-product history and names (codes = positions in the sorted product ids) and who touched what."""

    product_ids: np.ndarray
    names: np.ndarray
    interactions: np.ndarray
    event_counts: np.ndarray
    categories: list[str]
    first_us: np.ndarray
    last_us: np.ndarray
    dated: np.ndarray
    user_indptr: np.ndarray
    user_codes: np.ndarray
    name_vocab: np.ndarray
    pair_products: np.ndarray
    pair_names: np.ndarray

    @cached_property
    def name_folded(self) -> pa.Array:
        """Folded distinct names, the search index (built on first use, so the first render does not wait for it)."""
        return fold_text(pa.array(self.name_vocab, type=pa.string()))

    @classmethod
    def build(cls, interactions: pd.DataFrame, user_codes: np.ndarray) -> ProductIndex:
        """Index the interactions; `user_codes` are the rows' customer codes (sorted-id order)."""
        pcodes, pids = encode_ids(interactions["product_id"])
        n_products, n_users = len(pids), int(user_codes.max()) + 1 if len(user_codes) else 0
        ecodes, categories = event_codes(interactions["event"])
        has_event = ecodes >= 0
        counts = np.bincount(
            pcodes[has_event] * len(categories) + ecodes[has_event], minlength=n_products * len(categories)
        ).reshape(n_products, len(categories))
        us, dated = timestamps_us(interactions["event_date"])
        first, last, n_dated = dated_extremes(pcodes, us, dated, n_products)
        keys = unique_sorted(pcodes.astype(np.int64) * max(n_users, 1) + user_codes)
        prod, users = np.divmod(keys, max(n_users, 1))
        indptr = np.zeros(n_products + 1, dtype=np.int64)
        np.cumsum(np.bincount(prod, minlength=n_products), out=indptr[1:])
        vocab, pair_p, pair_n, display = name_pairs(interactions["product_name"], pcodes, n_products)
        return cls(
            product_ids=pids,
            names=display,
            interactions=np.bincount(pcodes, minlength=n_products),
            event_counts=counts,
            categories=categories,
            first_us=first,
            last_us=last,
            dated=n_dated,
            user_indptr=indptr,
            user_codes=users.astype(np.int64),
            name_vocab=vocab,
            pair_products=pair_p,
            pair_names=pair_n,
        )

    def code(self, product_id: Any) -> int:
        """Code of a product id (-1 when unknown or of the wrong kind)."""
        pid = id_of_kind(str(product_id), self.product_ids)
        if pid is None:
            return -1
        i = int(np.searchsorted(self.product_ids, pid))
        return i if i < len(self.product_ids) and self.product_ids[i] == pid else -1

    def users_of(self, code: int) -> np.ndarray:
        """Customer codes that interacted with product `code` (empty for -1)."""
        if code < 0:
            return np.zeros(0, dtype=np.int64)
        return self.user_codes[self.user_indptr[code] : self.user_indptr[code + 1]]

    def history(self, product_id: Any) -> ProductHistory | None:
        """The product's history, or None for a product the log never saw (cold start)."""
        c = self.code(product_id)
        if c < 0:
            return None
        names = self.name_vocab[self.pair_names[self.pair_products == c]].tolist()
        n_dated = int(self.dated[c])

        def ts(us: int) -> pd.Timestamp | None:
            return pd.Timestamp(int(us), unit="us", tz="UTC") if n_dated else None

        return ProductHistory(
            product_id=self.product_ids[c].item() if hasattr(self.product_ids[c], "item") else self.product_ids[c],
            name=self.names[c],
            other_names=[n for n in names if n != self.names[c]],
            interactions=int(self.interactions[c]),
            customers=int(self.user_indptr[c + 1] - self.user_indptr[c]),
            events={cat: int(n) for cat, n in zip(self.categories, self.event_counts[c], strict=True) if n},
            first_seen=ts(self.first_us[c]),
            last_seen=ts(self.last_us[c]),
            undated=int(self.interactions[c]) - n_dated,
        )


def name_pairs(
    names: pd.Series, pcodes: np.ndarray, n_products: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct names, distinct (product, name) pairs and each product's most frequent name (ties: first in vocab)."""
    cat = names if isinstance(names.dtype, pd.CategoricalDtype) else names.astype("category")
    vocab = np.asarray(cat.cat.categories.astype(str), dtype=object)
    ncodes = cat.cat.codes.to_numpy().astype(np.int64)
    has = ncodes >= 0
    stride = max(len(vocab), 1)
    keys, counts = np.unique(
        pcodes[has].astype(np.int64) * stride + ncodes[has], return_counts=True
    )  # counts path sorts
    pair_p, pair_n = np.divmod(keys, stride)
    order = np.lexsort((pair_n, -counts, pair_p))
    first = order[np.r_[True, pair_p[order][1:] != pair_p[order][:-1]]] if len(order) else order
    display = np.full(n_products, None, dtype=object)
    display[pair_p[first]] = vocab[pair_n[first]]
    return vocab, pair_p, pair_n, display


@dataclass(frozen=True)
class SearchHits:
    """The best `limit` matches, how many products match in all, and what else the lexicon searched for."""

    frame: pd.DataFrame  # product_id, name, interactions (exact id, exact name, prefix, then most interactions)
    total: int  # every matching product
    also: tuple[str, ...]  # the lexicon's alternatives that were searched too


def _units(query: str, lexicon: Lexicon | None) -> list[Unit]:
    """The query's units: lexicon-expanded, else one per token."""
    return lexicon.expand(query) if lexicon is not None else [Unit(t) for t in query_tokens(query)]


def _matches(names: pa.Array, unit: Unit) -> np.ndarray:
    """Which folded names match a unit: each of its words anywhere, or one of its alternatives as a whole word."""
    mask = np.ones(len(names), dtype=bool)
    for word in unit.text.split():
        mask &= pc.fill_null(pc.match_substring(names, word), False).to_numpy(zero_copy_only=False)
    pattern = unit_pattern(unit)
    if pattern is not None:
        mask |= pc.fill_null(pc.match_substring_regex(names, pattern), False).to_numpy(zero_copy_only=False)
    return mask


def _starts(names: pa.Array, unit: Unit) -> np.ndarray:
    """Which folded names start with the unit's first word or with one of its alternatives."""
    mask = pc.fill_null(pc.starts_with(names, unit.text.split()[0]), False).to_numpy(zero_copy_only=False)
    for alt in unit.alternatives:
        mask |= pc.fill_null(pc.starts_with(names, alt), False).to_numpy(zero_copy_only=False)
    return np.asarray(mask, dtype=bool)


def find_products(
    index: ProductIndex, query: str, limit: int = SEARCH_LIMIT, lexicon: Lexicon | None = None
) -> SearchHits:
    """Products matching an id or every unit of a (partial, lexicon-expanded) name; exact id, exact name, prefix,
    then the most interactions first; with the true number of matching products."""
    columns = ["product_id", "name", "interactions"]
    exact_id = index.code(query) if query.strip() else -1
    units = _units(query, lexicon)
    name_hits = np.zeros(0, dtype=np.int64)
    quality = np.zeros(0, dtype=np.int64)
    if units:
        names = index.name_folded
        mask = np.ones(len(index.name_vocab), dtype=bool)
        for unit in units:
            mask &= _matches(names, unit)
        exact = pc.equal(names, fold_text([query])[0].as_py()).to_numpy(zero_copy_only=False)
        prefix = _starts(names, units[0])
        name_quality = np.where(exact, 3, np.where(prefix, 2, 1)) * mask
        hit_pairs = np.flatnonzero(name_quality[index.pair_names] > 0)
        name_hits = index.pair_products[hit_pairs]
        quality = name_quality[index.pair_names[hit_pairs]]
    if exact_id >= 0:
        name_hits = np.r_[exact_id, name_hits]
        quality = np.r_[4, quality]
    also = tuple(dict.fromkeys(a for u in units for a in u.alternatives))
    if len(name_hits) == 0:
        return SearchHits(pd.DataFrame({c: [] for c in columns}), 0, also)
    order = np.lexsort((name_hits, -index.interactions[name_hits], -quality))
    ranked = pd.unique(name_hits[order])
    codes = ranked[:limit]
    frame = pd.DataFrame(
        {"product_id": index.product_ids[codes], "name": index.names[codes], "interactions": index.interactions[codes]}
    )
    return SearchHits(frame, len(ranked), also)


def search_products(
    index: ProductIndex, query: str, limit: int = SEARCH_LIMIT, lexicon: Lexicon | None = None
) -> pd.DataFrame:
    """The best `limit` products matching an id or a (partial) name (``find_products`` without the count)."""
    return find_products(index, query, limit, lexicon).frame


@dataclass(frozen=True)
class QueryResult:
    """What a search box query resolves to: matches, or a cold-start id, plus a message for the user."""

    matches: pd.DataFrame
    cold_start_id: Any | None
    message: str
    total: int = 0  # every product that matches (the dropdown lists at most the search limit)


def searched_text(query: str, also: tuple[str, ...]) -> str:
    """'“perfume”' or '“perfume” (also searched: عطر, عطور)': what a search looked for."""
    return f"“{query}”" + (f" (also searched: {', '.join(also)})" if also else "")


def resolve_query(
    index: ProductIndex, query: str, limit: int = SEARCH_LIMIT, lexicon: Lexicon | None = None
) -> QueryResult:
    """Search; with no match, an id-shaped query is taken as a new (cold-start) product id."""
    query = query.strip()
    if not query:
        return QueryResult(search_products(index, ""), None, "Type a product id or part of its name.")
    hits = find_products(index, query, limit, lexicon)
    searched = searched_text(query, hits.also)
    if hits.total:
        plural = "product matches" if hits.total == 1 else "products match"
        listed = len(hits.frame)
        shown = (
            f"; the {listed:,} with the most interactions {'is' if listed == 1 else 'are'} listed"
            if hits.total > listed
            else ""
        )
        return QueryResult(hits.frame, None, f"{hits.total:,} {plural} {searched}{shown}.", hits.total)
    pid = id_of_kind(query, index.product_ids) if len(query.split()) == 1 else None
    if pid is None:
        return QueryResult(hits.frame, None, f"No product name or id matches {searched}.")
    return QueryResult(
        hits.frame,
        pid,
        f"No product in the log has id or name {searched}: shown as a new product id (cold start).",
    )


def most_popular_product(index: ProductIndex) -> Any:
    """The product with the most interactions (lowest id on ties): the dashboard's opening example."""
    pid = index.product_ids[int(np.argmax(index.interactions))]
    return pid.item() if hasattr(pid, "item") else pid


def random_product(index: ProductIndex, rng: np.random.Generator) -> Any:
    """A product id drawn uniformly from the catalogue with the caller's seeded generator."""
    pid = index.product_ids[int(rng.integers(len(index.product_ids)))]
    return pid.item() if hasattr(pid, "item") else pid


def product_row(index: ProductIndex, product_id: Any) -> pd.DataFrame:
    """One known product as a search-results frame (no search index needed)."""
    c = index.code(product_id)
    codes = np.array([c] if c >= 0 else [], dtype=np.int64)
    return pd.DataFrame(
        {"product_id": index.product_ids[codes], "name": index.names[codes], "interactions": index.interactions[codes]}
    )


def warm_search_index(index: ProductIndex) -> threading.Thread:
    """Build the search index in a background thread (pyarrow releases the GIL) once the page is up."""
    thread = threading.Thread(target=lambda: index.name_folded, name="recsys-search-index", daemon=True)
    thread.start()
    return thread


def search_results_options(results: pd.DataFrame) -> list[tuple[str, str]]:
    """(label, product id text) options for the results dropdown."""
    names = "\u2068" + results["name"].fillna("(no name)").astype(str) + "\u2069"  # isolate RTL names inside the label
    labels = (
        names
        + " · id "
        + results["product_id"].astype(str)
        + " · "
        + results["interactions"].astype(int).astype(str)
        + " interactions"
    )
    return list(zip(labels.tolist(), results["product_id"].astype(str).tolist(), strict=True))
