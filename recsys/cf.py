"""Collaborative-filtering and buy-till-you-die rankers: ``als``, ``bpr`` (implicit) and ``bgnbd``.

``als`` / ``bpr`` really rank customers for each product: score(u, p) = item_factors[p] . user_factors[u],
top-k over every fitted customer except the product's own customers (any event, dated or not). The
product x customer score matrix is computed in chunks of products (``chunk_size``), excluded pairs are
set to -inf, and the exact top-k per row is found with a block-maximum prefilter plus argpartition,
so there is no Python loop per product. A product unseen at fit time (cold start) gets the model's
global order: customers by their affinity to the popularity-weighted mean item vector.

``bgnbd`` scores every customer by the expected number of transactions in the next ``horizon_days``
under a BG/NBD model (Fader, Hardie & Lee 2005) fitted by MAP with pymc-marketing's ``BetaGeoModel``
(an optional dependency: ``pip install 'pymc-marketing>=0.19.2'``). Its order is global (the same for
every product, minus the product's own customers).

All three register with ``recsys.rankers.make_ranker``. Params (``params/evaluate.yaml`` and
``params/cache.yaml: rankers.<name>``): see ``FACTOR_DEFAULTS`` and ``BGNBD_DEFAULTS``.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.features import US_PER_DAY, event_codes, timestamps_us
from recsys.rankers import (
    GlobalOrder,
    History,
    Recommendations,
    _GlobalRanker,
    _ordered,
    _requested_array,
    register_ranker,
)

FACTOR_DEFAULTS: dict[str, Any] = {
    "factors": 50,
    "iterations": 50,
    "regularization": 0.01,
    "alpha": 1.0,  # ALS confidence = 1 + alpha * weight
    "learning_rate": 0.01,  # BPR only
    "seed": 42,
    "num_threads": 0,  # 0 = every core (fit and scoring)
    "event_weights": None,  # None = every row weighs 1.0; a mapping event -> weight otherwise
    "chunk_size": 256,  # products scored per matrix block
    "block": 64,  # customers per block in the top-k prefilter
}
BGNBD_DEFAULTS: dict[str, Any] = {
    "horizon_days": 36.0,  # expected transactions over this many days after the fit data ends
    "events": None,  # None = every dated event counts as a transaction; else a list of event names
    "max_fit_customers": None,  # None = fit on every customer; else a seeded sample of this size
    "seed": 42,
}


def _threads(n: int) -> int:
    """Worker count: n, or every core when n <= 0."""
    return int(n) if int(n) > 0 else max(1, os.cpu_count() or 1)


def _merged(defaults: Mapping[str, Any], params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults overridden by params (extra keys such as 'features' are kept)."""
    return {**defaults, **dict(params or {})}


# ----------------------------------------------------------------------------------------------
# exact top-k per row of a dense score block
# ----------------------------------------------------------------------------------------------


def topk_rows(scores: np.ndarray, k: int, block: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-k columns of every row (finite scores only), best first, ties by ascending column.

    Returns (sizes per row, column indices, scores) in CSR order. Rows are prefiltered with block
    maxima: the first ``block * nb`` columns (nb = n // block) form nb strided blocks
    {j, j + nb, j + 2 nb, ...}; the k best elements of a row lie in the k blocks with the largest
    maxima plus the tail columns (the k-th largest block maximum never exceeds the k-th largest
    element), so only about k * block candidates per row are partitioned. Rows whose k-th value is
    tied beyond the candidates are completed from the tied blocks, so the result equals a full
    stable sort by (-score, column).
    """
    m, n = scores.shape
    k = min(int(k), n)
    if m == 0 or k <= 0:
        return np.zeros(m, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=scores.dtype)
    nb = n // block if block > 1 else 0
    prefilter = nb > 2 * k
    bmax = None
    if prefilter:
        bmax = np.maximum.reduce(scores[:, : nb * block].reshape(m, block, nb), axis=1)  # (m, nb), vertical SIMD max
        top_blocks = np.argpartition(bmax, nb - k, axis=1)[:, nb - k :]
        cols = (top_blocks[:, :, None] + np.arange(block) * nb).reshape(m, k * block)
        tail = np.arange(nb * block, n)
        if len(tail):
            cols = np.concatenate([cols, np.broadcast_to(tail, (m, len(tail)))], axis=1)
        cand = np.take_along_axis(scores, cols, axis=1)
    else:
        cols = np.broadcast_to(np.arange(n), (m, n))
        cand = scores
    width = cand.shape[1]
    if k < width:
        sel = np.argpartition(cand, width - k, axis=1)[:, width - k :]
    else:
        sel = np.broadcast_to(np.arange(width), (m, width))
    idx = np.take_along_axis(cols, sel, axis=1)
    val = np.take_along_axis(scores, idx, axis=1)
    order = np.lexsort((idx, -val), axis=1)
    idx = np.take_along_axis(idx, order, axis=1)
    val = np.take_along_axis(val, order, axis=1)
    _resolve_boundary_ties(scores, cand, idx, val, bmax, block)
    keep = np.isfinite(val)
    return keep.sum(axis=1).astype(np.int64), idx[keep].astype(np.int64), val[keep]


def _tied_columns(
    scores: np.ndarray, rows: np.ndarray, t: np.ndarray, bmax: np.ndarray | None, block: int
) -> tuple[np.ndarray, np.ndarray]:
    """(row position in `rows`, column) of every element equal to t[row], sorted by row then column."""
    if bmax is None:
        return np.nonzero(scores[rows] == t[:, None])
    m, n = scores.shape
    nb = bmax.shape[1]
    rb, bb = np.nonzero(bmax[rows] >= t[:, None])  # only blocks whose maximum reaches t can hold it
    cols = bb[:, None] + np.arange(block) * nb
    eq = scores[rows[rb][:, None], cols] == t[rb][:, None]
    pr, pc = np.nonzero(eq)
    out_r, out_c = [rb[pr]], [cols[pr, pc]]
    tail = np.arange(nb * block, n)
    if len(tail):
        tr, tc = np.nonzero(scores[rows[:, None], tail] == t[:, None])
        out_r.append(tr)
        out_c.append(tail[tc])
    r, c = np.concatenate(out_r), np.concatenate(out_c)
    order = np.lexsort((c, r))
    return r[order], c[order]


def _resolve_boundary_ties(
    scores: np.ndarray, cand: np.ndarray, idx: np.ndarray, val: np.ndarray, bmax: np.ndarray | None, block: int
) -> None:
    """In place: where the k-th value is tied with unchosen columns, take the lowest tied columns."""
    m, k = idx.shape
    t = val[:, -1]
    n_gt = (val > t[:, None]).sum(axis=1)
    need = k - n_gt
    ambiguous = (cand == t[:, None]).sum(axis=1) > need
    if bmax is not None:
        ambiguous |= (bmax >= t[:, None]).sum(axis=1) > k
    ambiguous &= np.isfinite(t)
    rows = np.flatnonzero(ambiguous)
    if len(rows) == 0:
        return
    rr, cc = _tied_columns(scores, rows, t[rows], bmax, block)
    rank_in_row = np.arange(len(rr)) - np.searchsorted(rr, rr, side="left")
    take = rank_in_row < need[rows][rr]
    out_rows = rows[rr[take]]
    idx[out_rows, n_gt[out_rows] + rank_in_row[take]] = cc[take]


def _gather_ranges(values: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """values[starts[0]:ends[0]] ++ values[starts[1]:ends[1]] ++ ... without a Python loop."""
    lens = ends - starts
    total = int(lens.sum())
    if total == 0:
        return values[:0]
    base = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    return values[base + np.arange(total)]


def _interleave(
    n_rows: int, parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge (rows, sizes, users, scores) parts into request order: (sizes, users, scores)."""
    rows = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    sizes_part = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    users = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    scores = np.concatenate([p[3] for p in parts]) if parts else np.zeros(0, dtype=np.float64)
    entry_rows = np.repeat(rows, sizes_part)
    order = np.argsort(entry_rows, kind="stable")
    sizes = np.zeros(n_rows, dtype=np.int64)
    sizes[rows] = sizes_part
    return sizes, users[order], scores[order]


def _recommendations(
    requested: np.ndarray, codes: np.ndarray, sizes: np.ndarray, user_codes: np.ndarray, scores: np.ndarray, history: History
) -> Recommendations:
    """Recommendations in request order from per-row sizes and flat user codes / scores."""
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return Recommendations(
        product_ids=requested,
        offsets=offsets,
        customer_ids=history.customer_ids[user_codes],
        scores=np.asarray(scores, dtype=np.float64),
        cold_start=codes < 0,
    )


# ----------------------------------------------------------------------------------------------
# matrix factorisation rankers (implicit)
# ----------------------------------------------------------------------------------------------


def interaction_matrix(interactions: pd.DataFrame, history: History, event_weights: Mapping[str, float] | None) -> sp.csr_matrix:
    """(customers x products) float32 CSR of summed row weights (1.0 per row unless event_weights)."""
    if event_weights:
        codes, categories = event_codes(interactions["event"])
        per_event = np.array([float(event_weights.get(c, 0.0)) for c in categories] + [0.0], dtype=np.float32)
        w = per_event[np.where(codes >= 0, codes, len(categories))]  # unknown/null events weigh 0
    else:
        w = np.ones(len(interactions), dtype=np.float32)
    m = sp.csr_matrix(
        (w, (history.row_users, history.row_products)), shape=(history.n_users, history.n_products), dtype=np.float32
    )
    m.sum_duplicates()
    m.eliminate_zeros()
    return m


class FactorRanker:
    """Matrix-factorisation ranker: fit implicit's ALS (or BPR), rank customers by item . user factors."""

    name = "als"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        """Keep params merged over FACTOR_DEFAULTS."""
        self.params = _merged(FACTOR_DEFAULTS, params)
        if int(self.params["factors"]) <= 0 or int(self.params["iterations"]) <= 0:
            raise ValueError(f"{self.name}: factors and iterations must be > 0, got {self.params['factors']}, {self.params['iterations']}")

    def _model(self) -> Any:
        """The unfitted implicit model."""
        from implicit.cpu.als import AlternatingLeastSquares

        p = self.params
        return AlternatingLeastSquares(
            factors=int(p["factors"]),
            regularization=float(p["regularization"]),
            alpha=float(p["alpha"]),
            iterations=int(p["iterations"]),
            random_state=int(p["seed"]),
            num_threads=_threads(int(p["num_threads"])),
            calculate_training_loss=False,
        )

    def fit(self, interactions: pd.DataFrame) -> FactorRanker:
        """Factorise the customer x product matrix of the fit data."""
        from threadpoolctl import threadpool_limits

        t0 = time.perf_counter()
        self.history_ = History.build(interactions)
        x = interaction_matrix(interactions, self.history_, self.params.get("event_weights"))
        model = self._model()
        with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            model.fit(x, show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        popularity = np.diff(self.history_.indptr).astype(np.float64)
        mean_item = (popularity @ self.item_factors_.astype(np.float64)) / max(popularity.sum(), 1.0)
        g = self.user_factors_.astype(np.float64) @ mean_item
        self.global_ = GlobalOrder.build(_ordered(g), g, self.history_)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _check_fitted(self) -> None:
        """Raise a clear error when rank is called before fit."""
        if not hasattr(self, "item_factors_"):
            raise RuntimeError(f"ranker {self.name!r} is not fitted: call fit(interactions) first")

    def score_block(self, codes: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(len(codes) x customers) float32 scores, -inf for each product's own customers (into `out` if given)."""
        buf = None if out is None else out[: len(codes)]
        s = np.matmul(self.item_factors_[codes], self.user_factors_.T, out=buf)
        h = self.history_
        starts, ends = h.indptr[codes], h.indptr[codes + 1]
        rows = np.repeat(np.arange(len(codes)), ends - starts)
        s[rows, _gather_ranges(h.users, starts, ends)] = -np.inf
        return s

    def _buffer(self, rows: int) -> np.ndarray:
        """This thread's reusable score buffer (avoids page-faulting a fresh block per chunk)."""
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.shape[0] < rows:
            buf = np.empty((rows, self.user_factors_.shape[0]), dtype=np.float32)
            self._local.buf = buf
        return buf

    def _rank_chunk(self, rows: np.ndarray, codes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Exact top-k of one chunk of known products."""
        scores = self.score_block(codes, self._buffer(int(self.params["chunk_size"])))
        sizes, users, vals = topk_rows(scores, k, int(self.params["block"]))
        return rows, sizes, users, vals.astype(np.float64)

    def rank(self, product_ids: np.ndarray | Sequence, k: int) -> Recommendations:
        """Top-k customers per requested product by factor score, the product's customers excluded."""
        from threadpoolctl import threadpool_limits

        self._check_fitted()
        requested = _requested_array(product_ids)
        codes = self.history_.codes_of(requested)
        k = max(int(k), 0)
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        known = np.flatnonzero(codes >= 0)
        cold = np.flatnonzero(codes < 0)
        if k > 0 and len(known):
            step = max(1, int(self.params["chunk_size"]))
            chunks = [known[i : i + step] for i in range(0, len(known), step)]
            self._local = threading.local()
            with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(_threads(int(self.params["num_threads"]))) as pool:
                parts.extend(pool.map(lambda rows: self._rank_chunk(rows, codes[rows], k), chunks))
            del self._local
        if k > 0 and len(cold):
            sizes, users, scores = self.global_.top(np.full(len(cold), -1, dtype=np.int64), k)
            parts.append((cold, sizes, users, scores))
        sizes, users, scores = _interleave(len(codes), parts)
        return _recommendations(requested, codes, sizes, users, scores, self.history_)


class ALSRanker(FactorRanker):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008) via implicit.cpu.als."""

    name = "als"


class BPRRanker(FactorRanker):
    """Bayesian personalised ranking (Rendle et al. 2009) via implicit.cpu.bpr; item bias included."""

    name = "bpr"

    def _model(self) -> Any:
        """The unfitted implicit BPR model."""
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        p = self.params
        return BayesianPersonalizedRanking(
            factors=int(p["factors"]),
            learning_rate=float(p["learning_rate"]),
            regularization=float(p["regularization"]),
            iterations=int(p["iterations"]),
            random_state=int(p["seed"]),
            num_threads=_threads(int(p["num_threads"])),
        )


# ----------------------------------------------------------------------------------------------
# BG/NBD (buy till you die)
# ----------------------------------------------------------------------------------------------


def rfm_summary(interactions: pd.DataFrame, history: History, events: Sequence[str] | None = None) -> pd.DataFrame:
    """Per fitted customer: frequency (active days - 1), recency and T in days (day resolution), has_transactions.

    Transactions are dated rows (of `events` when given); the observation ends on the last dated
    day of the fit data. A customer with no such transaction gets frequency 0, recency 0 and the
    largest T (an old one-off customer), and has_transactions False.
    """
    us_all, dated = timestamps_us(interactions["event_date"])
    if events is not None:
        dated = dated & interactions["event"].astype("string[pyarrow]").isin(list(events)).fillna(False).to_numpy(dtype=bool)
    n = history.n_users
    if not dated.any():
        raise ValueError("bgnbd needs dated transactions in the fit data (check bgnbd.events)")
    day = us_all[dated] // US_PER_DAY
    day = day - day.min()
    users = history.row_users[dated]
    pair = np.unique(users * (int(day.max()) + 1) + day)
    pu, pd_ = np.divmod(pair, int(day.max()) + 1)
    active = np.bincount(pu, minlength=n)
    first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first, pu, pd_)
    last = np.full(n, -1)
    np.maximum.at(last, pu, pd_)
    has = active > 0
    end = int(day.max())
    first = np.where(has, first, 0)
    last = np.where(has, last, 0)
    return pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "frequency": np.maximum(active - 1, 0).astype(np.float64),
            "recency": (last - first).astype(np.float64),
            "T": (end - first).astype(np.float64),
            "has_transactions": has,
        }
    )


def _require_pymc_marketing() -> Any:
    """Import pymc_marketing.clv.BetaGeoModel or explain how to install it."""
    try:
        from pymc_marketing.clv import BetaGeoModel
    except ImportError as exc:
        raise ImportError(
            "the bgnbd ranker needs pymc-marketing (optional): pip install 'pymc-marketing>=0.19.2'"
        ) from exc
    return BetaGeoModel


def bgnbd_available() -> bool:
    """True when pymc-marketing can be imported."""
    try:
        _require_pymc_marketing()
    except ImportError:
        return False
    return True


class BGNBDRanker(_GlobalRanker):
    """Customers by BG/NBD expected transactions in the next horizon_days (pymc-marketing, MAP fit)."""

    name = "bgnbd"

    def __init__(self, params: Mapping[str, Any] | None = None) -> None:
        """Keep params merged over BGNBD_DEFAULTS."""
        super().__init__(params)
        self.params = _merged(BGNBD_DEFAULTS, self.params)
        if float(self.params["horizon_days"]) <= 0:
            raise ValueError(f"bgnbd.horizon_days must be > 0, got {self.params['horizon_days']}")

    def _user_order(self, interactions: pd.DataFrame, history: History) -> tuple[np.ndarray, np.ndarray]:
        """Fit BG/NBD by MAP on the customers' RFM summary and score expected transactions."""
        model_cls = _require_pymc_marketing()
        rfm = rfm_summary(interactions, history, self.params.get("events"))
        fit_rows = rfm.loc[rfm["has_transactions"], ["customer_id", "frequency", "recency", "T"]]
        cap = self.params.get("max_fit_customers")
        if cap is not None and len(fit_rows) > int(cap):
            fit_rows = fit_rows.sample(n=int(cap), random_state=int(self.params["seed"]))
        if len(fit_rows) < 2 or not (fit_rows["frequency"] > 0).any():
            raise ValueError("bgnbd cannot be fitted: it needs at least one repeat customer in the fit data")
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = model_cls()
            model.fit(data=fit_rows.reset_index(drop=True), method="map", progressbar=False)
            expected = model.expected_purchases(
                data=rfm[["customer_id", "frequency", "recency", "T"]], future_t=float(self.params["horizon_days"])
            )
        scores = np.asarray(expected, dtype=np.float64).reshape(-1)
        if len(scores) != history.n_users or not np.isfinite(scores).all():
            raise RuntimeError("bgnbd produced missing or non-finite expected transactions")
        self.fit_summary_ = {k: float(v) for k, v in model.fit_summary().items()}
        self.fit_seconds_ = time.perf_counter() - t0
        self.rfm_ = rfm
        return _ordered(scores), scores


register_ranker(ALSRanker.name, ALSRanker)
register_ranker(BPRRanker.name, BPRRanker)
register_ranker(BGNBDRanker.name, BGNBDRanker)
