"""Logic behind the Voilà dashboard (``dashboard/app.ipynb``): pure, typed functions plus ``DashboardData``.

The notebook holds widgets and callbacks only; everything it shows comes from here, so it can be tested
without a browser. ``DashboardData.load`` reads precomputed artifacts once (the prepared Parquet, the
audience cache, the pipeline's metrics JSON) and derives per-user raw features and per-product history;
each what-if is then a weighted sum over users plus a partial sort (no pass over interactions).

Where it reads from (environment variables, all optional):

- ``RECSYS_DASHBOARD_DATA``: a directory laid out like ``data/`` (``prepared/interactions.parquet``,
  ``artifacts/cache/``); default ``recsys.config.DATA_DIR``.
- ``RECSYS_DASHBOARD_REPORTS``: a directory laid out like ``reports/`` (``metrics/evaluate.json``,
  ``metrics/explore.json``); default ``recsys.config.REPORTS_DIR``.

What-if rankers reproduce ``recsys.rankers`` exactly (same scores, same tie-breaks, same exclusions):
``activity`` (engagement), ``recency`` (recency feature, ties by last instant then engagement) and
``random`` (seeded uniform scores).
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recsys import config
from recsys.features.engagement import (
    DECAYED_PREFIX,
    FEATURE_NAMES,
    FeatureParams,
    compute_raw_features,
    dated_extremes,
    encode_ids,
    event_codes,
    event_weight_vector,
    normalise,
    timestamps_us,
    weight_vector,
)

DATA_ENV = "RECSYS_DASHBOARD_DATA"
REPORTS_ENV = "RECSYS_DASHBOARD_REPORTS"
NOTEBOOK = config.PROJ_ROOT / "dashboard" / "app.ipynb"
DEFAULT_PORT = 8866
WHATIF_RANKERS: tuple[str, ...] = ("activity", "recency", "random")
PREPARED_HINT = "run `recsys generate && recsys prepare` (or `dvc repro prepare`) to produce it"
CACHE_HINT = "run `recsys build-cache` (or `dvc repro cache`) to produce it"
METRICS_HINT = "run `dvc repro` to produce these"
SEARCH_LIMIT = 20
MODEL_ORDER: tuple[str, ...] = ("oracle", "activity", "content", "recency", "als", "bpr", "bgnbd", "popularity", "random")
FEATURE_LABELS: dict[str, str] = {
    "total_interactions": "interactions",
    "unique_products": "distinct products",
    "avg_event_score": "event score",
    "interaction_frequency": "frequency",
    "recency": "recency",
}


# ----------------------------------------------------------------------------------------------
# paths and the start command
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DashboardPaths:
    """Every file the dashboard reads."""

    prepared: Path
    cache_dir: Path
    evaluate_json: Path
    explore_json: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "DashboardPaths":
        """Paths from RECSYS_DASHBOARD_DATA / RECSYS_DASHBOARD_REPORTS, else the project's defaults."""
        env = os.environ if env is None else env
        data = config.resolve(env[DATA_ENV]) if env.get(DATA_ENV) else config.DATA_DIR
        reports = config.resolve(env[REPORTS_ENV]) if env.get(REPORTS_ENV) else config.REPORTS_DIR
        metrics = reports / "metrics"
        return cls(
            prepared=data / config.PREPARED_PARQUET.relative_to(config.DATA_DIR),
            cache_dir=data / config.CACHE_DIR.relative_to(config.DATA_DIR),
            evaluate_json=metrics / "evaluate.json",
            explore_json=metrics / "explore.json",
        )


def voila_command(port: int = DEFAULT_PORT, notebook: Path | None = None, cull_idle_s: int = 600) -> list[str]:
    """The argv that serves the dashboard with Voilà on 127.0.0.1:`port` (no browser; kernels of closed tabs culled)."""
    return [
        sys.executable, "-m", "voila", str(notebook or NOTEBOOK),
        "--no-browser", "--Voila.ip=127.0.0.1", f"--port={int(port)}",
        "--MappingKernelManager.cull_interval=60", f"--MappingKernelManager.cull_idle_timeout={int(cull_idle_s)}",
    ]


def serve(port: int = DEFAULT_PORT) -> NoReturn:
    """Replace this process with Voilà serving the dashboard (for `recsys dashboard`); signals then reach Voilà directly."""
    print(f"dashboard: http://127.0.0.1:{int(port)}/ (Ctrl-C stops it)", file=sys.stderr, flush=True)
    cmd = voila_command(port)
    os.execv(cmd[0], cmd)


# ----------------------------------------------------------------------------------------------
# text folding and product search
# ----------------------------------------------------------------------------------------------

_MARKS = r"[\p{Mn}\x{0640}]"  # combining marks (Arabic harakat, hamza above/below, Latin accents after NFKD) + tatweel
_CHAR_FOLDS: tuple[tuple[str, str], ...] = (("[ٱ]", "ا"), ("[ىی]", "ي"), ("[ة]", "ه"), ("[ک]", "ك"))
_EASTERN_DIGITS: tuple[str, ...] = ("٠١٢٣٤٥٦٧٨٩", "۰۱۲۳۴۵۶۷۸۹")


def fold_text(values: pa.Array | Sequence[str | None]) -> pa.Array:
    """Fold names for matching: NFKD, marks/tatweel removed, lower case, alef/yeh/teh-marbuta/digit variants unified."""
    arr = values if isinstance(values, pa.Array) else pa.array(list(values), type=pa.string())
    s = pc.utf8_normalize(arr.cast(pa.string()), "NFKD")
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


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values via sort + diff (numpy 2.4's hash-based np.unique is ~15x slower on large int64 keys)."""
    v = np.sort(np.asarray(values), kind="stable")
    return v[np.r_[True, v[1:] != v[:-1]]] if len(v) else v


def query_tokens(query: str) -> list[str]:
    """Folded tokens of a search query, split at spaces and at letter/digit boundaries ('500مل' -> '500', 'مل')."""
    folded = fold_text([query])[0].as_py() or ""
    spaced = pc.replace_substring_regex(pa.array([folded]), r"(\p{L})(\p{N})", r"\1 \2")
    spaced = pc.replace_substring_regex(spaced, r"(\p{N})(\p{L})", r"\1 \2")
    return [t for t in (spaced[0].as_py() or "").split(" ") if t]


def id_of_kind(text: str, product_ids: np.ndarray) -> Any | None:
    """The text as a product id of the catalogue's kind (int or str), or None when it cannot be one."""
    text = text.strip()
    if not text:
        return None
    if product_ids.dtype.kind in "iu":
        try:
            return int(text)
        except ValueError:
            return None
    return text


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
    def build(cls, interactions: pd.DataFrame, user_codes: np.ndarray) -> "ProductIndex":
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
        keys = sorted_unique(pcodes.astype(np.int64) * max(n_users, 1) + user_codes)
        prod, users = np.divmod(keys, max(n_users, 1))
        indptr = np.zeros(n_products + 1, dtype=np.int64)
        np.cumsum(np.bincount(prod, minlength=n_products), out=indptr[1:])
        vocab, pair_p, pair_n, display = _name_pairs(interactions["product_name"], pcodes, n_products)
        return cls(
            product_ids=pids, names=display, interactions=np.bincount(pcodes, minlength=n_products),
            event_counts=counts, categories=categories, first_us=first, last_us=last, dated=n_dated,
            user_indptr=indptr, user_codes=users.astype(np.int64), name_vocab=vocab, pair_products=pair_p, pair_names=pair_n,
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
        return self.user_codes[self.user_indptr[code]:self.user_indptr[code + 1]]

    def history(self, product_id: Any) -> ProductHistory | None:
        """The product's history, or None for a product the log never saw (cold start)."""
        c = self.code(product_id)
        if c < 0:
            return None
        names = self.name_vocab[self.pair_names[self.pair_products == c]].tolist()
        n_dated = int(self.dated[c])
        ts = lambda us: pd.Timestamp(int(us), unit="us", tz="UTC") if n_dated else None  # noqa: E731
        return ProductHistory(
            product_id=self.product_ids[c].item() if hasattr(self.product_ids[c], "item") else self.product_ids[c],
            name=self.names[c],
            other_names=[n for n in names if n != self.names[c]],
            interactions=int(self.interactions[c]),
            customers=int(self.user_indptr[c + 1] - self.user_indptr[c]),
            events={cat: int(n) for cat, n in zip(self.categories, self.event_counts[c]) if n},
            first_seen=ts(self.first_us[c]),
            last_seen=ts(self.last_us[c]),
            undated=int(self.interactions[c]) - n_dated,
        )


def _name_pairs(names: pd.Series, pcodes: np.ndarray, n_products: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distinct names, distinct (product, name) pairs and each product's most frequent name (ties: first in vocab)."""
    cat = names if isinstance(names.dtype, pd.CategoricalDtype) else names.astype("category")
    vocab = np.asarray(cat.cat.categories.astype(str), dtype=object)
    ncodes = cat.cat.codes.to_numpy().astype(np.int64)
    has = ncodes >= 0
    stride = max(len(vocab), 1)
    keys, counts = np.unique(pcodes[has].astype(np.int64) * stride + ncodes[has], return_counts=True)  # counts path sorts
    pair_p, pair_n = np.divmod(keys, stride)
    order = np.lexsort((pair_n, -counts, pair_p))
    first = order[np.r_[True, pair_p[order][1:] != pair_p[order][:-1]]] if len(order) else order
    display = np.full(n_products, None, dtype=object)
    display[pair_p[first]] = vocab[pair_n[first]]
    return vocab, pair_p, pair_n, display


def search_products(index: ProductIndex, query: str, limit: int = SEARCH_LIMIT) -> pd.DataFrame:
    """Products matching an id or every token of a (partial) name; best first: exact id, exact name, prefix, popularity."""
    columns = ["product_id", "name", "interactions"]
    exact_id = index.code(query) if query.strip() else -1
    tokens = query_tokens(query)
    name_hits = np.zeros(0, dtype=np.int64)
    quality = np.zeros(0, dtype=np.int64)
    if tokens:
        mask = np.ones(len(index.name_vocab), dtype=bool)
        for tok in tokens:
            mask &= pc.fill_null(pc.match_substring(index.name_folded, tok), False).to_numpy(zero_copy_only=False)
        exact = pc.equal(index.name_folded, fold_text([query])[0].as_py()).to_numpy(zero_copy_only=False)
        prefix = pc.fill_null(pc.starts_with(index.name_folded, tokens[0]), False).to_numpy(zero_copy_only=False)
        name_quality = np.where(exact, 3, np.where(prefix, 2, 1)) * mask
        hit_pairs = np.flatnonzero(name_quality[index.pair_names] > 0)
        name_hits = index.pair_products[hit_pairs]
        quality = name_quality[index.pair_names[hit_pairs]]
    if exact_id >= 0:
        name_hits = np.r_[exact_id, name_hits]
        quality = np.r_[4, quality]
    if len(name_hits) == 0:
        return pd.DataFrame({c: [] for c in columns})
    order = np.lexsort((name_hits, -index.interactions[name_hits], -quality))
    codes = pd.unique(name_hits[order])[:limit]
    return pd.DataFrame(
        {"product_id": index.product_ids[codes], "name": index.names[codes], "interactions": index.interactions[codes]}
    )


@dataclass(frozen=True)
class QueryResult:
    """What a search box query resolves to: matches, or a cold-start id, plus a message for the user."""

    matches: pd.DataFrame
    cold_start_id: Any | None
    message: str


def resolve_query(index: ProductIndex, query: str, limit: int = SEARCH_LIMIT) -> QueryResult:
    """Search; with no match, an id-shaped query is taken as a new (cold-start) product id."""
    query = query.strip()
    if not query:
        return QueryResult(search_products(index, ""), None, "Type a product id or part of its name.")
    hits = search_products(index, query, limit)
    if len(hits):
        more = f" (showing the first {limit})" if len(hits) >= limit else ""
        return QueryResult(hits, None, f"{len(hits)} match{'es' if len(hits) != 1 else ''}{more}.")
    pid = id_of_kind(query, index.product_ids) if len(query.split()) == 1 else None
    if pid is None:
        return QueryResult(hits, None, f"No product name or id matches “{query}”.")
    return QueryResult(hits, pid, f"No product in the log has id or name “{query}”: shown as a new product id (cold start).")


def most_popular_product(index: ProductIndex) -> Any:
    """The product with the most interactions (lowest id on ties): the dashboard's opening example."""
    pid = index.product_ids[int(np.argmax(index.interactions))]
    return pid.item() if hasattr(pid, "item") else pid


def random_product(index: ProductIndex, rng: np.random.Generator) -> Any:
    """A product id drawn uniformly from the catalogue with the caller's seeded generator."""
    pid = index.product_ids[int(rng.integers(len(index.product_ids)))]
    return pid.item() if hasattr(pid, "item") else pid


# ----------------------------------------------------------------------------------------------
# users: activity summary and the what-if scorer
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserActivity:
    """Per-customer activity (codes = positions in the sorted customer ids)."""

    customer_ids: np.ndarray
    interactions: np.ndarray
    distinct_products: np.ndarray
    last_seen: np.ndarray
    event_counts: np.ndarray
    categories: list[str]

    def codes(self, customer_ids: np.ndarray) -> np.ndarray:
        """Codes of customer ids (-1 for ids not in the data)."""
        ids = _ids(customer_ids)
        if len(ids) == 0 or len(self.customer_ids) == 0:
            return np.full(len(ids), -1, dtype=np.int64)
        if (ids.dtype.kind in "iu") != (self.customer_ids.dtype.kind in "iu"):
            return np.full(len(ids), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.customer_ids, ids), len(self.customer_ids) - 1)
        return np.where(self.customer_ids[pos] == ids, pos, -1).astype(np.int64)


def _ids(values: Any) -> np.ndarray:
    """Ids as numpy: integers keep their dtype, strings become an object array of str."""
    arr = np.asarray(values)
    return arr if arr.dtype.kind in "iu" else arr.astype(str).astype(object)


@dataclass(frozen=True)
class WhatIfSettings:
    """The knobs a business user can turn: ranker, event weights, engagement weights, normalisation."""

    ranker: str
    event_weights: Mapping[str, float]
    weights: Mapping[str, float]
    normalisation: str

    @classmethod
    def from_params(cls, params: FeatureParams, ranker: str = "activity") -> "WhatIfSettings":
        """The settings that reproduce a ranker built with `params`."""
        return cls(ranker, dict(params.event_weights), dict(params.weights), params.normalisation)

    def close_to(self, other: "WhatIfSettings", tol: float = 1e-9) -> bool:
        """Same ranker and normalisation, and every weight equal within `tol` (sliders may round floats)."""
        def same(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
            keys = set(a) | set(b)
            return all(abs(float(a.get(k, 0.0)) - float(b.get(k, 0.0))) <= tol for k in keys)

        return (self.ranker == other.ranker and self.normalisation == other.normalisation
                and same(self.event_weights, other.event_weights) and same(self.weights, other.weights))


class WhatIfModel:
    """Raw per-user features computed once; `rank` re-scores every user and takes a product's top-n."""

    def __init__(self, raw: pd.DataFrame, seed: int = 0) -> None:
        """Keep the raw feature columns as contiguous arrays (raw = recsys.features.engagement.compute_raw_features)."""
        self.customer_ids = _ids(raw.index.to_numpy())
        self.decayed_cols = [c for c in raw.columns if c.startswith(DECAYED_PREFIX)]
        self.categories = [c[len(DECAYED_PREFIX):] for c in self.decayed_cols]
        self.decayed = np.ascontiguousarray(raw[self.decayed_cols].to_numpy(dtype=np.float64))
        self.raw = {name: np.ascontiguousarray(raw[name].to_numpy(dtype=np.float64)) for name in FEATURE_NAMES}
        last = raw["last_event_date"]
        self.last_us = np.where(last.notna(), last.dt.tz_localize(None).to_numpy().view(np.int64), 0).astype(np.float64)
        self.random_scores = np.random.default_rng(int(seed)).random(len(raw))
        self._normalised: dict[tuple[str, str], np.ndarray] = {}
        self._event_score_key: tuple[tuple[float, ...], str] | None = None
        self._event_score = np.zeros(0)

    def __len__(self) -> int:
        """Number of customers."""
        return int(len(self.customer_ids))

    def _norm(self, name: str, method: str) -> np.ndarray:
        """A weight-independent normalised feature column (memoised per normalisation)."""
        key = (name, method)
        if key not in self._normalised:
            self._normalised[key] = normalise(self.raw[name], method)
        return self._normalised[key]

    def _norm_event_score(self, event_weights: Mapping[str, float], method: str) -> np.ndarray:
        """Normalised avg_event_score under these event weights (the last one is memoised for weight-only changes)."""
        w = event_weight_vector(self.categories, event_weights)
        key = (tuple(w.tolist()), method)
        if self._event_score_key != key:
            self._event_score = normalise((self.decayed @ w) / self.raw["total_interactions"], method)
            self._event_score_key = key
        return self._event_score

    def engagement(self, settings: WhatIfSettings) -> np.ndarray:
        """Engagement of every customer under the settings (equals recsys.features.engagement.compute_features)."""
        cols = [self._norm_event_score(settings.event_weights, settings.normalisation) if f == "avg_event_score"
                else self._norm(f, settings.normalisation) for f in FEATURE_NAMES]
        return np.column_stack(cols) @ weight_vector(settings.weights)

    def order_keys(self, settings: WhatIfSettings) -> tuple[np.ndarray, list[np.ndarray]]:
        """(score, tie-breaks) of the chosen ranker, as recsys.rankers orders them."""
        if settings.ranker == "activity":
            return self.engagement(settings), []
        if settings.ranker == "recency":
            return self.raw["recency"], [self.last_us, self.engagement(settings)]
        if settings.ranker == "random":
            return self.random_scores, []
        raise ValueError(f"what-if ranker must be one of {WHATIF_RANKERS}, got {settings.ranker!r}")

    def rank(self, settings: WhatIfSettings, n: int, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(customer ids, scores) of the n best customers not in `exclude` (customer codes)."""
        score, ties = self.order_keys(settings)
        codes = top_codes(score, n, exclude, ties)
        return self.customer_ids[codes], score[codes]


def top_codes(score: np.ndarray, n: int, exclude: np.ndarray, tie_breaks: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Codes of the n best users by descending score, then descending tie-breaks, then ascending code, skipping `exclude`."""
    masked = np.array(score, dtype=np.float64, copy=True)
    masked[exclude] = -np.inf
    allowed = len(masked) - len(sorted_unique(exclude))
    n = min(int(n), allowed)
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    kth = np.partition(masked, len(masked) - n)[len(masked) - n]
    cand = np.flatnonzero(masked >= kth)
    cand = cand[masked[cand] > -np.inf]
    keys = [cand] + [-np.asarray(t)[cand] for t in reversed(tie_breaks)] + [-masked[cand]]
    return cand[np.lexsort(keys)[:n]].astype(np.int64)


# ----------------------------------------------------------------------------------------------
# audience, diff, table, export
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudienceDiff:
    """How a list changed against a baseline of the same depth."""

    entered: np.ndarray
    left: np.ndarray
    moves: np.ndarray  # per row of the new list: old rank - new rank (positive = moved up); 0 for entered rows
    is_new: np.ndarray


def diff_audiences(before: np.ndarray, after: np.ndarray) -> AudienceDiff:
    """Customers who entered / left the list and how each kept customer moved."""
    before, after = _ids(before), _ids(after)
    if len(before) == 0 or len(after) == 0:
        is_new = np.ones(len(after), dtype=bool)
        return AudienceDiff(after.copy(), before.copy(), np.zeros(len(after), dtype=np.int64), is_new)
    keyed = pd.Index(before)
    old_rank = keyed.get_indexer(after)
    is_new = old_rank < 0
    moves = np.where(is_new, 0, old_rank - np.arange(len(after)))
    return AudienceDiff(after[is_new], before[~np.isin(before, after)], moves.astype(np.int64), is_new)


def change_labels(diff: AudienceDiff) -> np.ndarray:
    """Human labels per row: 'new', '▲3', '▼2' or '='."""
    moves = diff.moves
    up = np.char.add("▲", moves.astype(str))
    down = np.char.add("▼", (-moves).astype(str))
    return np.where(diff.is_new, "new", np.where(moves > 0, up, np.where(moves < 0, down, "="))).astype(object)


def events_text(counts: np.ndarray, categories: Sequence[str]) -> np.ndarray:
    """Per row, the non-zero event counts as text, e.g. '2 cart · 1 purchased' (loops over event types only)."""
    out = pd.Series("", index=range(len(counts)), dtype=object)
    for j, cat in enumerate(categories):
        piece = pd.Series(counts[:, j], index=out.index).astype(str) + f" {cat}"
        joined = pd.Series(np.where(out == "", piece, out + " · " + piece), index=out.index, dtype=object)
        out = out.where(counts[:, j] == 0, joined)
    return out.to_numpy(dtype=object)


def _gather(values: np.ndarray, codes: np.ndarray, fill: Any) -> np.ndarray:
    """Rows of `values` at `codes`, with `fill` where the code is -1 (or nothing is loaded)."""
    known = codes >= 0
    if len(values) == 0:
        return np.full((len(codes),) + values.shape[1:], fill)
    picked = values[np.where(known, codes, 0)]
    return np.where(known.reshape((-1,) + (1,) * (values.ndim - 1)), picked, fill)


def audience_frame(customers: np.ndarray, scores: np.ndarray, users: UserActivity, baseline: np.ndarray | None) -> pd.DataFrame:
    """The audience table: rank, customer, score, change vs baseline and each customer's activity."""
    codes = users.codes(customers)
    take = lambda arr, fill: _gather(arr, codes, fill)  # noqa: E731
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(customers) + 1),
            "customer_id": _ids(customers),
            "score": np.asarray(scores),  # float32 from the cache (shown at its precision), float64 from what-if
            "change": change_labels(diff_audiences(baseline, customers)) if baseline is not None else np.full(len(codes), "", dtype=object),
            "interactions": take(users.interactions, 0),
            "distinct_products": take(users.distinct_products, 0),
            "last_seen": pd.to_datetime(take(users.last_seen, np.datetime64("NaT", "us")), utc=True),
            "events": events_text(take(users.event_counts, 0), users.categories),
        }
    )


def audience_csv(frame: pd.DataFrame, product_id: Any) -> str:
    """The audience as CSV text (product_id first; dates ISO; scores at full precision)."""
    out = frame.drop(columns=["change"], errors="ignore").copy()
    out.insert(0, "product_id", product_id)
    out["last_seen"] = out["last_seen"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return out.to_csv(index=False, lineterminator="\n")


def export_filename(product_id: Any, source: str, n: int) -> str:
    """A safe file name for the downloaded audience."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(product_id))
    return f"audience_{safe}_{source.replace('-', '')}_top{int(n)}.csv"


def download_link_html(csv_text: str, filename: str, label: str = "Download CSV") -> str:
    """An HTML anchor that makes the browser download `csv_text` (UTF-8 with BOM, so spreadsheets read Arabic)."""
    payload = base64.b64encode(("\ufeff" + csv_text).encode("utf-8")).decode("ascii")
    return (
        f'<a class="recsys-download-link" download="{html.escape(filename)}" '
        f'href="data:text/csv;charset=utf-8;base64,{payload}">⬇ {html.escape(label)}</a>'
        f' <span class="recsys-muted">{html.escape(filename)}</span>'
    )


# ----------------------------------------------------------------------------------------------
# the loaded artifacts
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AudienceResult:
    """One audience as shown: where it came from, the list, the cached baseline and timing."""

    product_id: Any
    customers: np.ndarray
    scores: np.ndarray
    cold_start: bool
    source: str
    ranker: str
    baseline: np.ndarray | None
    seconds: float
    diff: AudienceDiff | None = None


@dataclass
class DashboardData:
    """Artifacts loaded once at start; missing ones leave a friendly message in `issues` instead of raising."""

    paths: DashboardPaths
    feature_params: FeatureParams = field(default_factory=FeatureParams)
    seed: int = 0
    products: ProductIndex | None = None
    users: UserActivity | None = None
    whatif: WhatIfModel | None = None
    lookup: Any | None = None
    issues: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    reference_date: str | None = None
    load_seconds: float = 0.0

    @property
    def ready(self) -> bool:
        """True when products and users are loaded (the panels can work)."""
        return self.products is not None and self.whatif is not None

    @property
    def n_max(self) -> int:
        """Deepest audience the dashboard offers: the cache's N (100 without a cache)."""
        return int(self.lookup.n) if self.lookup is not None else 100

    @property
    def cache_ranker(self) -> str | None:
        """Ranker that built the cache, if any."""
        return str(self.lookup.manifest.get("ranker")) if self.lookup is not None else None

    def default_settings(self) -> WhatIfSettings:
        """Settings that reproduce the cache (its ranker when the what-if knows it, else activity)."""
        ranker = self.cache_ranker if self.cache_ranker in WHATIF_RANKERS else "activity"
        return WhatIfSettings.from_params(self.feature_params, ranker)

    @classmethod
    def load(cls, paths: DashboardPaths | None = None) -> "DashboardData":
        """Load the prepared log, derive per-user/per-product tables, open the cache; never raises for missing files."""
        t0 = time.perf_counter()
        paths = paths or DashboardPaths.from_env()
        data = cls(paths=paths)
        data._load_cache()
        data._load_params()
        data._load_prepared()
        data.load_seconds = time.perf_counter() - t0
        return data

    def _load_cache(self) -> None:
        """Open the audience cache (memory-mapped) or note how to build it."""
        from recsys.cache.lookup import AudienceLookup, CacheError, CacheNotFoundError

        try:
            self.lookup = AudienceLookup.open(self.paths.cache_dir)
        except CacheNotFoundError:
            self.issues.append(f"Audience cache not found at {shown_path(self.paths.cache_dir)}: {CACHE_HINT}.")
        except CacheError as exc:  # corrupt or incomplete: its message names the path and the rebuild command
            self.issues.append(f"Audience cache unusable: {exc}")

    def _load_params(self) -> None:
        """Feature params and seed: those the cache was built with, else params/*.yaml."""
        manifest_params = (self.lookup.manifest.get("ranker_params") or {}) if self.lookup is not None else {}
        try:
            file_features = config.load_params("features")
            file_seed = int((config.load_params("cache").get("cache") or {}).get("seed", 0))
        except FileNotFoundError:
            file_features, file_seed = {}, 0
        self.feature_params = FeatureParams.from_params(manifest_params.get("features") or file_features)
        self.seed = int(manifest_params.get("seed", file_seed))
        if manifest_params.get("features") and FeatureParams.from_params(file_features) != self.feature_params:
            self.notes.append("params/features.yaml differs from the params the cache was built with; the what-if "
                              f"starts from the cache's params. Rebuild the cache to serve the new ones ({CACHE_HINT}).")

    def _load_prepared(self) -> None:
        """Read the prepared table once and build the product index, user activity and what-if model."""
        from recsys.data.contract import DataContractError, load_prepared

        if not self.paths.prepared.is_file():
            self.issues.insert(0, f"Prepared interactions not found at {shown_path(self.paths.prepared)}: {PREPARED_HINT}.")
            return
        try:
            df = load_prepared(self.paths.prepared)
        except (DataContractError, OSError, ValueError) as exc:
            self.issues.insert(0, f"Prepared interactions at {self.paths.prepared} are unreadable ({exc}): {PREPARED_HINT}.")
            return
        self._check_fingerprint()
        raw = compute_raw_features(df, self.feature_params)
        self.reference_date = raw.attrs.get("reference_date")
        ucodes = np.searchsorted(_ids(raw.index.to_numpy()), _ids(df["customer_id"].to_numpy()))
        self.products = ProductIndex.build(df, ucodes.astype(np.int64))
        self.users = user_activity(df, ucodes, raw)
        self.whatif = WhatIfModel(raw, self.seed)
        self.counts = {"interactions": len(df), "customers": len(raw), "products": len(self.products.product_ids)}

    def _check_fingerprint(self) -> None:
        """Note when the cache was built from another prepared file."""
        if self.lookup is None:
            return
        fp = self.lookup.manifest.get("fingerprint") or {}
        if fp.get("algorithm") == "sha256-file":
            from recsys.cache.build import fingerprint_file

            if fingerprint_file(self.paths.prepared) != fp.get("value"):
                self.notes.append(f"The cache was built from a different prepared file than {self.paths.prepared}; "
                                  f"cached audiences may be stale ({CACHE_HINT}).")

    def present_events(self) -> list[str]:
        """Event types that occur in the data (the what-if offers a weight for each)."""
        if self.users is None:
            return []
        totals = self.users.event_counts.sum(axis=0)
        return [c for c, t in zip(self.users.categories, totals) if t > 0]

    def product_history(self, product_id: Any) -> ProductHistory | None:
        """History of a product, None when cold start (or nothing loaded)."""
        return self.products.history(product_id) if self.products is not None else None

    def audience(self, product_id: Any, n: int, settings: WhatIfSettings | None = None) -> AudienceResult:
        """The cached top-n when settings are the defaults, else the what-if top-n; with the cached list as baseline."""
        t0 = time.perf_counter()
        n = max(1, min(int(n), self.n_max))
        settings = settings or self.default_settings()
        baseline, cold = None, True
        if self.lookup is not None:
            cached, cached_scores, cold = self.lookup.top(product_id, n)
            baseline = _ids(cached)
        if self.lookup is not None and settings.close_to(self.default_settings()):
            customers, scores, source, ranker = baseline, np.asarray(cached_scores), "cache", self.cache_ranker
        elif self.whatif is not None and self.products is not None:
            code = self.products.code(product_id)
            customers, scores = self.whatif.rank(settings, n, self.products.users_of(code))
            cold, source, ranker = code < 0, "what-if", settings.ranker
        else:
            customers, scores, source, ranker = np.zeros(0, dtype=np.int64), np.zeros(0), "none", settings.ranker
        diff = diff_audiences(baseline, customers) if baseline is not None and source == "what-if" else None
        return AudienceResult(product_id, customers, scores, bool(cold), source, str(ranker), baseline,
                              time.perf_counter() - t0, diff)

    def audience_table(self, result: AudienceResult) -> pd.DataFrame:
        """The result as the displayed/exported table."""
        users = self.users or empty_users()
        return audience_frame(result.customers, result.scores, users, result.baseline if result.source == "what-if" else None)


def user_activity(df: pd.DataFrame, ucodes: np.ndarray, raw: pd.DataFrame) -> UserActivity:
    """Per-customer interactions, distinct products, last dated event and event counts."""
    ecodes, categories = event_codes(df["event"])
    n_users, n_cat = len(raw), len(categories)
    has = ecodes >= 0
    counts = np.bincount(ucodes[has] * n_cat + ecodes[has], minlength=n_users * n_cat).reshape(n_users, n_cat)
    last = raw["last_event_date"].dt.tz_localize(None).to_numpy().astype("datetime64[us]")
    return UserActivity(
        customer_ids=_ids(raw.index.to_numpy()),
        interactions=raw["total_interactions"].to_numpy().astype(np.int64),
        distinct_products=raw["unique_products"].to_numpy().astype(np.int64),
        last_seen=last,
        event_counts=counts.astype(np.int32),
        categories=categories,
    )


def empty_users() -> UserActivity:
    """A UserActivity with nobody in it."""
    return UserActivity(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                        np.zeros(0, "datetime64[us]"), np.zeros((0, 0), np.int32), [])


# ----------------------------------------------------------------------------------------------
# metrics: "why this works (or doesn't)"
# ----------------------------------------------------------------------------------------------

_VALUE_KEYS = {"mean", "value", "estimate", "point", "score"}
_LO_KEYS = {"ci_low", "ci_lo", "ci_lower", "low", "lo", "lower"}
_HI_KEYS = {"ci_high", "ci_hi", "ci_upper", "high", "hi", "upper"}
_CI_KEYS = {"ci", "ci95", "ci_95", "interval", "bootstrap_ci", "ci_95pct"}
_MODEL_KEYS = ("model", "ranker", "name")
_MODEL_CONTAINERS = {"models", "rankers", "by_model", "results"}
_IGNORED = {"n", "k", "seed", "count", "n_products", "n_users", "n_boot", "std", "se", "stderr"}
_FACT_PATTERNS = ("one_time", "retention", "returning", "new_products", "single_interaction", "with_2_to_5",
                  "more_than_5", "sparsity", "top_20pct", "share_last", "undated")


def shown_path(path: Path) -> str:
    """A path as shown to people: relative to the project root when inside it."""
    try:
        return str(Path(path).resolve().relative_to(config.PROJ_ROOT))
    except ValueError:
        return str(path)


def read_metrics(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(document, None) when the JSON file is readable, else (None, friendly message naming the fix)."""
    if not path.is_file():
        return None, f"{shown_path(path)} not found: {METRICS_HINT}."
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{path.name} is unreadable ({exc}): {METRICS_HINT}."
    if not isinstance(doc, dict):
        return None, f"{path.name} is not a JSON object: {METRICS_HINT}."
    return doc, None


def _num(value: Any) -> float | None:
    """A finite-or-nan float for JSON numbers (bools excluded), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _split_suffix(key: str) -> tuple[str, str | None]:
    """('precision@10', 'lo') for 'precision@10_ci_low'; (key, None) when the key carries no stat suffix."""
    for suffixes, stat in ((_LO_KEYS, "lo"), (_HI_KEYS, "hi"), (_CI_KEYS, "ci")):
        for suffix in sorted(suffixes, key=len, reverse=True):
            if key.endswith("_" + suffix) and len(key) > len(suffix) + 1:
                return key[: -len(suffix) - 1], stat
    return key, None


def _walk_metrics(node: Any, model: str | None, path: tuple[str, ...], out: list[tuple[str, str, str, float]],
                  in_models: bool = False) -> None:
    """Collect (model, metric, stat, value) leaves from any nesting of models, metrics and CI blocks."""
    if isinstance(node, list):
        for item in node:
            _walk_metrics(item, model, path, out, in_models)
        return
    if not isinstance(node, dict):
        return
    model = model or next((str(node[k]).lower() for k in _MODEL_KEYS if isinstance(node.get(k), str)), None)
    base = ".".join(path + ((node["metric"],) if isinstance(node.get("metric"), str) else ()))
    for key, value in node.items():
        k = str(key).lower()
        if model is None:
            if isinstance(value, dict) and (k in MODEL_ORDER or in_models):
                _walk_metrics(value, k, (), out)
            elif isinstance(value, (dict, list)):
                _walk_metrics(value, None, path, out, in_models=k in _MODEL_CONTAINERS)
            continue
        stem, suffix_stat = _split_suffix(k)
        pair = isinstance(value, list) and len(value) == 2 and all(_num(v) is not None for v in value)
        if pair and (k in _CI_KEYS or suffix_stat == "ci"):
            metric = base if k in _CI_KEYS else ".".join(path + (stem,))
            out += [(model, metric, "lo", _num(value[0])), (model, metric, "hi", _num(value[1]))]
        elif isinstance(value, dict):
            _walk_metrics(value, model, path if k in _CI_KEYS else path + (str(key),), out)
        elif _num(value) is not None and k not in _IGNORED:
            stat = "value" if k in _VALUE_KEYS else "lo" if k in _LO_KEYS else "hi" if k in _HI_KEYS else None
            if stat is not None and base:
                out.append((model, base, stat, _num(value)))
            elif stat is None and suffix_stat in ("lo", "hi"):
                out.append((model, ".".join(path + (stem,)), suffix_stat, _num(value)))
            elif stat is None:
                out.append((model, ".".join(path + (str(key),)), "value", _num(value)))


def headline_table(doc: Mapping[str, Any]) -> pd.DataFrame:
    """Per model and metric: value and CI bounds (nan when absent), from any reasonable evaluate.json layout."""
    rows: list[tuple[str, str, str, float]] = []
    doc = dict(doc)
    if isinstance(doc.get("models"), Mapping):
        # the evaluate stage's layout: headline = the main split's models and references only,
        # never the backtest, new-product or diagnostic sections that repeat the same keys
        doc = {"models": doc["models"], "references": doc.get("references") or {}}
    _walk_metrics(doc, None, (), rows)
    columns = ["model", "metric", "value", "ci_low", "ci_high"]
    if not rows:
        return pd.DataFrame({c: [] for c in columns})
    long = pd.DataFrame(rows, columns=["model", "metric", "stat", "x"])
    wide = long.pivot_table(index=["model", "metric"], columns="stat", values="x", aggfunc="first").reset_index()
    for stat in ("value", "lo", "hi"):
        if stat not in wide.columns:
            wide[stat] = np.nan
    wide = wide.rename(columns={"lo": "ci_low", "hi": "ci_high"})[columns]
    wide = wide[wide["value"].notna()]
    rank = {m: i for i, m in enumerate(MODEL_ORDER)}
    return wide.assign(_o=wide["model"].map(rank).fillna(len(rank))).sort_values(["metric", "_o", "model"]).drop(columns="_o").reset_index(drop=True)


def headline_metrics(table: pd.DataFrame, limit: int = 2) -> list[str]:
    """Metrics worth plotting: shared by most models, precision/hit/recall/ndcg first."""
    if table.empty:
        return []
    per = table.groupby("metric")["model"].nunique()
    prio = lambda m: next((i for i, w in enumerate(("precision", "hit", "recall", "ndcg", "map", "lift")) if w in m.lower()), 9)  # noqa: E731
    ranked = sorted(per.index, key=lambda m: (prio(m), -per[m], m))
    return ranked[:limit]


def churn_facts(doc: Mapping[str, Any]) -> pd.DataFrame:
    """The high-churn facts of explore.json (fact, value), percentages flagged."""
    flat = pd.json_normalize(dict(doc), sep=".").iloc[0].to_dict() if doc else {}
    rows = [(k, float(v)) for k, v in flat.items() if _num(v) is not None and any(p in k for p in _FACT_PATTERNS)]
    frame = pd.DataFrame(rows, columns=["fact", "value"])
    frame["is_pct"] = frame["fact"].str.endswith("_pct")
    return frame


def svg_bars(labels: Sequence[str], values: Sequence[float], title: str, lo: Sequence[float] | None = None,
             hi: Sequence[float] | None = None, xmax: float | None = None, unit: str = "",
             highlight: Sequence[bool] | None = None, fmt: str = "{:.4g}") -> str:
    """A small horizontal bar chart with optional CI whiskers as an inline SVG string (no plotting library)."""
    vals = np.nan_to_num(np.asarray(values, dtype=np.float64))
    lo_a = np.asarray(lo if lo is not None else vals, dtype=np.float64)
    hi_a = np.asarray(hi if hi is not None else vals, dtype=np.float64)
    top = xmax if xmax is not None else float(np.nanmax(np.r_[vals, hi_a[np.isfinite(hi_a)], 1e-12]))
    left, width, bar, gap = 190, 260, 16, 6
    height = 22 + len(vals) * (bar + gap)
    x = lambda v: left + width * max(0.0, min(float(v), top)) / top if top > 0 else left  # noqa: E731
    marks = [f"<text x='0' y='13' font-size='12' font-weight='bold'>{_e(title)}</text>"]
    for i, (label, v) in enumerate(zip(labels, vals)):
        y = 22 + i * (bar + gap)
        color = "#2a9d8f" if highlight is not None and highlight[i] else "#8d99ae"
        marks.append(f"<text x='{left - 6}' y='{y + 12}' font-size='11' text-anchor='end'>{_e(label)}</text>")
        marks.append(f"<rect x='{left}' y='{y}' width='{x(v) - left:.1f}' height='{bar}' fill='{color}'/>")
        if np.isfinite(lo_a[i]) and np.isfinite(hi_a[i]) and (lo_a[i] != v or hi_a[i] != v):
            a_, b_, m = x(lo_a[i]), x(hi_a[i]), y + bar / 2
            marks.append(f"<path d='M{a_:.1f} {m}H{b_:.1f}M{a_:.1f} {m - 4}V{m + 4}M{b_:.1f} {m - 4}V{m + 4}' stroke='#222' fill='none'/>")
        marks.append(f"<text x='{max(x(v), x(hi_a[i]) if np.isfinite(hi_a[i]) else 0) + 4:.1f}' y='{y + 12}' font-size='10'>{fmt.format(v)}{_e(unit)}</text>")
    return (f"<div><svg class='recsys-plot' xmlns='http://www.w3.org/2000/svg' width='{left + width + 70}' height='{height}' "
            f"font-family='sans-serif'>{''.join(marks)}</svg></div>")


def plot_headline(table: pd.DataFrame, metrics: Sequence[str]) -> str:
    """One bar chart per metric: models with their reported CI whiskers (activity highlighted)."""
    charts = []
    for metric in metrics:
        block = table[table["metric"] == metric]
        charts.append(svg_bars(block["model"].tolist(), block["value"], metric, block["ci_low"], block["ci_high"],
                               highlight=(block["model"] == "activity").tolist()))
    return "".join(charts)


def plot_facts(facts: pd.DataFrame) -> str:
    """Bar chart of the percentage facts on a 0-100 scale."""
    pct = facts[facts["is_pct"]]
    labels = pct["fact"].str.removesuffix("_pct").str.replace("_", " ").tolist()
    return svg_bars(labels, pct["value"], "the log is high-churn (%)", xmax=100.0, unit="%", fmt="{:.1f}",
                    highlight=pct["fact"].str.contains("one_time|retention|new_products").tolist())


@dataclass(frozen=True)
class MetricsView:
    """What the 'why this works' panel shows: one HTML block (text, tables, inline SVG plots)."""

    html: str
    has_evaluation: bool
    has_exploration: bool


def metrics_view(paths: DashboardPaths) -> MetricsView:
    """Read the pipeline's metrics files and turn them into text and plots (friendly message when missing)."""
    left, right = [], []
    ev, ev_msg = read_metrics(paths.evaluate_json)
    table = headline_table(ev) if ev is not None else pd.DataFrame()
    metrics = headline_metrics(table)
    if ev is None:
        left.append(f"<div class='recsys-note'>Evaluation: {_e(ev_msg)}</div>")
    elif not metrics:
        left.append(f"<div class='recsys-note'>{_e(paths.evaluate_json.name)} has no per-model metrics this panel "
                    "recognises (expected e.g. {\"models\": {\"activity\": {\"precision@10\": {\"mean\": 0.01, "
                    "\"ci\": [0.008, 0.012]}}}}).</div>")
    else:
        left += [plot_headline(table, metrics), headline_html(table[table["metric"].isin(metrics)], paths.evaluate_json)]
    ex, ex_msg = read_metrics(paths.explore_json)
    facts = churn_facts(ex) if ex is not None else pd.DataFrame()
    if ex is None:
        right.append(f"<div class='recsys-note'>Exploration: {_e(ex_msg)}</div>")
    else:
        right += [plot_facts(facts) if facts["is_pct"].any() else "", facts_html(facts, paths.explore_json)]
    body = (f"<div style='display:flex;gap:24px;flex-wrap:wrap'><div style='flex:1;min-width:380px'>{''.join(left)}</div>"
            f"<div style='flex:1;min-width:380px'>{''.join(right)}</div></div>")
    return MetricsView(body, bool(metrics), ex is not None)


# ----------------------------------------------------------------------------------------------
# HTML fragments (escaped; names get dir="auto" so Arabic reads right-to-left)
# ----------------------------------------------------------------------------------------------

CSS = """<style>
.recsys-muted{color:#666;font-size:0.9em}
.recsys-note{background:#fff8e1;border-left:4px solid #f4a261;padding:6px 10px;margin:4px 0}
.recsys-issue{background:#fdecea;border-left:4px solid #e76f51;padding:6px 10px;margin:4px 0}
.recsys-card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;background:#fafafa}
.recsys-card h3{margin:0 0 4px 0}
table.recsys-table{border-collapse:collapse;font-size:0.9em;width:100%}
table.recsys-table th,table.recsys-table td{border-bottom:1px solid #e5e5e5;padding:2px 6px;text-align:left}
table.recsys-table th{background:#f2f2f2;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.chg-new{color:#2a9d8f;font-weight:bold}.chg-up{color:#2a9d8f}.chg-down{color:#e76f51}
.recsys-download-link{display:inline-block;padding:4px 10px;border:1px solid #2a9d8f;border-radius:4px;color:#2a9d8f;text-decoration:none;font-weight:bold}
</style>"""


def _e(value: Any) -> str:
    """Escaped text of a value ('' for None/NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return ""
    return html.escape(str(value))


def _date(ts: Any) -> str:
    """A timestamp as YYYY-MM-DD ('—' when missing)."""
    return "—" if ts is None or pd.isna(ts) else pd.Timestamp(ts).strftime("%Y-%m-%d")


def muted_html(text: str) -> str:
    """A short escaped grey message."""
    return f"<span class='recsys-muted'>{_e(text)}</span>"


def issues_html(issues: Sequence[str], notes: Sequence[str] = ()) -> str:
    """Boxes for blocking issues and softer notes."""
    return "".join(f'<div class="recsys-issue">{_e(i)}</div>' for i in issues) + "".join(
        f'<div class="recsys-note">{_e(n)}</div>' for n in notes
    )


def header_html(data: DashboardData) -> str:
    """Title and one line saying what is loaded."""
    parts = [CSS, "<h2 style='margin:0'>Audience explorer</h2>"]
    if data.counts:
        parts.append(
            f"<div class='recsys-muted'>{data.counts['interactions']:,} interactions · {data.counts['customers']:,} customers · "
            f"{data.counts['products']:,} products · data up to {_e((data.reference_date or '')[:10])} · loaded in {data.load_seconds:.1f} s</div>"
        )
    if data.lookup is not None:
        m = data.lookup.manifest
        parts.append(
            f"<div class='recsys-muted'>Audience cache: ranker <b>{_e(m.get('ranker'))}</b>, N = {int(m['n'])}, "
            f"built {_e(str(m.get('created_at', ''))[:19])}</div>"
        )
    parts.append(issues_html(data.issues, data.notes))
    return "".join(parts)


def product_card_html(history: ProductHistory | None, product_id: Any) -> str:
    """Name and history of the selected product, or the cold-start notice."""
    if product_id is None or str(product_id).strip() == "":
        return "<div class='recsys-card recsys-muted'>Search for a product by id or name, or pick a random one.</div>"
    if history is None:
        return (f"<div class='recsys-card recsys-product'><h3>Product {_e(product_id)}</h3>"
                "<b>New product — cold start.</b> Nobody in the log has interacted with it yet, so its audience is the "
                "ranker's global order (no one to exclude).</div>")
    events = ", ".join(f"{n:,} {_e(e)}" for e, n in history.events.items()) or "—"
    others = (f"<div class='recsys-muted'>also logged as: {', '.join(f'<span dir=auto>{_e(n)}</span>' for n in history.other_names[:5])}</div>"
              if history.other_names else "")
    undated = f" · {history.undated:,} undated" if history.undated else ""
    return (
        f"<div class='recsys-card recsys-product'><h3 dir='auto'>{_e(history.name) or '(no name)'}</h3>"
        f"<div class='recsys-muted'>product id {_e(history.product_id)}</div>{others}"
        f"<div>{history.interactions:,} interactions by {history.customers:,} customers — {events}{undated}</div>"
        f"<div>first seen {_date(history.first_seen)} · last seen {_date(history.last_seen)}</div></div>"
    )


def product_row(index: ProductIndex, product_id: Any) -> pd.DataFrame:
    """One known product as a search-results frame (no search index needed)."""
    c = index.code(product_id)
    codes = np.array([c] if c >= 0 else [], dtype=np.int64)
    return pd.DataFrame({"product_id": index.product_ids[codes], "name": index.names[codes], "interactions": index.interactions[codes]})


def warm_search_index(index: ProductIndex) -> threading.Thread:
    """Build the search index in a background thread (pyarrow releases the GIL) once the page is up."""
    thread = threading.Thread(target=lambda: index.name_folded, name="recsys-search-index", daemon=True)
    thread.start()
    return thread


def search_results_options(results: pd.DataFrame) -> list[tuple[str, str]]:
    """(label, product id text) options for the results dropdown."""
    names = "\u2068" + results["name"].fillna("(no name)").astype(str) + "\u2069"  # isolate RTL names inside the label
    labels = (names + " · id " + results["product_id"].astype(str) + " · "
              + results["interactions"].astype(int).astype(str) + " interactions")
    return list(zip(labels.tolist(), results["product_id"].astype(str).tolist()))


def audience_table_html(frame: pd.DataFrame) -> str:
    """The audience table as HTML (one <tr class='recsys-row'> per customer)."""
    change = frame["change"].astype(str)
    cls = np.where(change == "new", "chg-new", np.where(change.str.startswith("▲"), "chg-up",
                                                        np.where(change.str.startswith("▼"), "chg-down", "")))
    last = frame["last_seen"].dt.strftime("%Y-%m-%d").fillna("—")
    cells = (
        "<tr class='recsys-row'><td class='num'>" + frame["rank"].astype(str) + "</td><td class='cust'>"
        + frame["customer_id"].astype(str).map(html.escape) + "</td><td class='num'>" + frame["score"].map("{:.4f}".format)
        + "</td><td class='" + cls + "'>" + change.map(html.escape) + "</td><td class='num'>" + frame["interactions"].astype(str)
        + "</td><td class='num'>" + frame["distinct_products"].astype(str) + "</td><td>" + last + "</td><td>"
        + frame["events"].astype(str).map(html.escape) + "</td></tr>"
    )
    head = ("<tr><th>rank</th><th>customer</th><th>score</th><th>change</th><th>interactions</th>"
            "<th>distinct products</th><th>last seen</th><th>events</th></tr>")
    return f"<div style='max-height:780px;overflow:auto'><table class='recsys-table'>{head}{''.join(cells)}</table></div>"


def weights_note_html(settings: WhatIfSettings, default: WhatIfSettings) -> str:
    """The engagement weights' sum and whether the knobs differ from the cached params."""
    total = sum(float(v) for v in settings.weights.values())
    state = "as cached" if settings.close_to(default) else "changed: the audience is re-ranked live"
    return f"<div class='recsys-muted recsys-weights-note'>engagement weights sum to {total:.2f} · {state}</div>"


def audience_summary_html(result: AudienceResult, n: int) -> str:
    """One line: where the list comes from and how it differs from the cache."""
    cold = " · <b>cold start</b>: global order" if result.cold_start else ""
    took = f" · ranked in {result.seconds * 1000:.0f} ms"
    if result.source == "cache":
        text = f"Top {len(result.customers)} from the cache (ranker <b>{_e(result.ranker)}</b>){cold}"
    elif result.source == "what-if":
        text = f"What-if top {len(result.customers)} (ranker <b>{_e(result.ranker)}</b>){cold}{took}"
        if result.diff is not None:
            moved = int(((result.diff.moves != 0) & ~result.diff.is_new).sum())
            text += (f"<br><span class='recsys-diff'>vs cache: <b class='chg-new'>{len(result.diff.entered)} entered</b>, "
                     f"<b class='chg-down'>{len(result.diff.left)} left</b>, {moved} moved</span>")
        else:
            text += " · no cache to compare with"
    else:
        text = "No audience available (see the messages above)."
    if len(result.customers) < n and result.source != "none":
        text += f" · only {len(result.customers)} eligible customers"
    return f"<div class='recsys-summary'>{text}</div>"


def headline_html(table: pd.DataFrame, source: Path) -> str:
    """The headline evaluation numbers as a small table."""
    ci = np.where(table["ci_low"].notna(), "[" + table["ci_low"].map("{:.4g}".format) + ", " + table["ci_high"].map("{:.4g}".format) + "]", "")
    rows = "".join(
        f"<tr><td>{_e(m)}</td><td>{_e(k)}</td><td class='num'>{v:.4g}</td><td>{_e(c)}</td></tr>"
        for m, k, v, c in zip(table["model"], table["metric"], table["value"], ci)
    )
    return (f"<b>Evaluation</b> <span class='recsys-muted'>({_e(source.name)})</span>"
            f"<table class='recsys-table'><tr><th>model</th><th>metric</th><th>value</th><th>CI (as reported)</th></tr>{rows}</table>")


def _fact_value(value: float, is_pct: bool) -> str:
    """A fact formatted for reading: 88.8%, 433,787 or 0.999994."""
    if is_pct:
        return f"{value:.1f}%"
    return f"{int(value):,}" if float(value).is_integer() else f"{value:.6g}"


def facts_html(facts: pd.DataFrame, source: Path) -> str:
    """The high-churn facts as a short list."""
    items = "".join(
        f"<li>{_e(f.removesuffix('_pct').replace('_', ' '))}: <b>{_fact_value(v, p)}</b></li>"
        for f, v, p in zip(facts["fact"], facts["value"], facts["is_pct"])
    )
    return f"<b>High-churn facts</b> <span class='recsys-muted'>({_e(source.name)})</span><ul>{items}</ul>"
