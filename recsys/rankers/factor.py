"""Matrix-factorisation rankers ``als`` and ``bpr`` (implicit), and the exact dense top-k they share.

``als`` / ``bpr`` really rank customers for each product: score(u, p) = item_factors[p] . user_factors[u],
top-k over every fitted customer except the product's own customers (any event, dated or not). The
product x customer score matrix is computed in chunks of products (``chunk_size``), excluded pairs are
set to -inf, and the exact top-k per row is found with a block-maximum prefilter plus argpartition,
so there is no Python loop per product. A product without fit rows (cold start: unseen, or known
only through exclusion rows) gets the model's global order minus its excluded customers: customers
by their affinity to the popularity-weighted mean item vector.

``fit(interactions, exclude)``: exclude rows only add excluded pairs (no signal). ``train_more(n)``
continues the same factorisation for n more iterations (implicit keeps fitted factors), so a tuning
run can score 10, 20, 30 iterations of one model for the price of 30.

Settings (``params/evaluate.yaml`` and the evaluation's selection): ``recsys.rankers.settings.ALSSettings`` and
``BPRSettings``.
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

from recsys.arrays import gather_ranges
from recsys.data.catalogue import Catalogue
from recsys.data.ids import id_array
from recsys.features.engagement import event_codes
from recsys.rankers.base import FixedRanker, GlobalOrder, History, Recommendations, ordered
from recsys.rankers.settings import ALSSettings, BPRSettings, RankerSettings, settings_dict

SCORE_ROWS = 64  # products per BLAS call when scoring: one matrix shape, so results never depend on the batch


def _threads(n: int) -> int:
    """Worker count: n, or every core when n <= 0."""
    return int(n) if int(n) > 0 else max(1, os.cpu_count() or 1)


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
        pos, col = np.nonzero(scores[rows] == t[:, None])
        return pos, col
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
    requested: np.ndarray,
    codes: np.ndarray,
    sizes: np.ndarray,
    user_codes: np.ndarray,
    scores: np.ndarray,
    history: History,
) -> Recommendations:
    """Recommendations in request order from per-row sizes and flat user codes / scores."""
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return Recommendations(
        product_ids=requested,
        offsets=offsets,
        customer_ids=history.customer_ids[user_codes],
        scores=np.asarray(scores, dtype=np.float64),
        cold_start=history.cold(codes),
    )


# ----------------------------------------------------------------------------------------------
# matrix factorisation rankers (implicit)
# ----------------------------------------------------------------------------------------------


def interaction_matrix(
    interactions: pd.DataFrame, history: History, event_weights: Mapping[str, float] | None
) -> sp.csr_matrix:
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


class FactorRanker(FixedRanker):
    """Matrix-factorisation ranker: fit implicit's ALS (or BPR), rank customers by item . user factors."""

    name = "als"
    settings_model: type[RankerSettings] = ALSSettings

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

    def fit(self, interactions: pd.DataFrame, exclude: pd.DataFrame | None = None) -> FactorRanker:
        """Factorise the customer x product matrix of the fit data (exclude rows only exclude)."""
        t0 = time.perf_counter()
        self.history_ = History.build(interactions, exclude)
        self.signal_cols_ = np.flatnonzero(self.history_.signal)  # products known only through exclusions: not fitted
        full = interaction_matrix(interactions, self.history_, self.params.get("event_weights"))
        self.matrix_ = sp.csr_matrix(full[:, self.signal_cols_])
        self.model_ = self._model()
        self._train(self.model_)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def train_more(self, iterations: int) -> FactorRanker:
        """Continue the fitted factorisation for `iterations` more epochs (params['iterations'] grows accordingly)."""
        self._check_fitted()
        if int(iterations) <= 0:
            raise ValueError(f"{self.name}: train_more needs iterations > 0, got {iterations}")
        t0 = time.perf_counter()
        self.model_.iterations = int(iterations)
        self._train(self.model_)
        self.settings = self.settings.model_copy(
            update={"iterations": int(self.params["iterations"]) + int(iterations)}
        )
        self.params = settings_dict(self.settings)
        self.fit_seconds_ = getattr(self, "fit_seconds_", 0.0) + time.perf_counter() - t0
        return self

    def _train(self, model: Any) -> None:
        """Run the implicit model's epochs on the stored matrix, then refresh the factors and the global order."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            model.fit(self.matrix_, show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        fitted = np.asarray(model.item_factors, dtype=np.float32)
        self.item_factors_ = np.zeros((self.history_.n_products, fitted.shape[1]), dtype=np.float32)
        self.item_factors_[self.signal_cols_] = fitted  # products without fit rows keep 0 (they use the global order)
        popularity = np.asarray(self.matrix_.getnnz(axis=0), dtype=np.float64)  # customers per fitted product
        mean_item = (popularity @ fitted.astype(np.float64)) / max(popularity.sum(), 1.0)
        g = self.user_factors_.astype(np.float64) @ mean_item
        self.global_ = GlobalOrder.build(ordered(g), g, self.history_)
        self.cold_scores_ = g

    def _check_fitted(self) -> None:
        """Raise a clear error when rank is called before fit."""
        if not hasattr(self, "item_factors_"):
            raise RuntimeError(f"ranker {self.name!r} is not fitted: call fit(interactions) first")

    def score_block(self, codes: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """(len(codes) x customers) float32 scores, -inf for each product's own customers (into `out` if given).

        Reproducible whatever the batch: the products are scored in zero-padded blocks of exactly ``SCORE_ROWS``
        rows, so BLAS sees one matrix shape (one kernel, one summation order) whatever the number of products
        requested or the chunk size; a product's scores are the same bytes in every call (ties: ascending customer).
        """
        n = len(codes)
        s = np.empty((n, self.user_factors_.shape[0]), dtype=np.float32) if out is None else out[:n]
        block = np.zeros((SCORE_ROWS, self.item_factors_.shape[1]), dtype=np.float32)
        scratch = np.empty((SCORE_ROWS, self.user_factors_.shape[0]), dtype=np.float32)
        for start in range(0, n, SCORE_ROWS):
            stop = min(n, start + SCORE_ROWS)
            block[:] = 0.0
            block[: stop - start] = self.item_factors_[codes[start:stop]]
            np.matmul(block, self.user_factors_.T, out=scratch)
            s[start:stop] = scratch[: stop - start]
        h = self.history_
        starts, ends = h.indptr[codes], h.indptr[codes + 1]
        rows = np.repeat(np.arange(len(codes)), ends - starts)
        s[rows, gather_ranges(h.users, starts, ends)] = -np.inf
        return s

    def score_pairs(self, codes: np.ndarray, users: np.ndarray) -> np.ndarray:
        """Factor score of each (product code, customer code) pair; the global-order score for cold-start codes (-1)."""
        self._check_fitted()
        codes = np.asarray(codes, dtype=np.int64)
        users = np.asarray(users, dtype=np.int64)
        out: np.ndarray = self.cold_scores_[users].astype(np.float64)
        known = np.flatnonzero(~self.history_.cold(codes))
        step = max(1, int(self.params["chunk_size"]) * 1024)
        for start in range(0, len(known), step):
            rows = known[start : start + step]
            item, user = self.item_factors_[codes[rows]], self.user_factors_[users[rows]]
            out[rows] = np.einsum("ij,ij->i", item, user).astype(np.float64)
        return out

    def _buffer(self, rows: int) -> np.ndarray:
        """This thread's reusable score buffer (avoids page-faulting a fresh block per chunk)."""
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.shape[0] < rows:
            buf = np.empty((rows, self.user_factors_.shape[0]), dtype=np.float32)
            self._local.buf = buf
        return buf

    def _rank_chunk(
        self, rows: np.ndarray, codes: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Exact top-k of one chunk of known products."""
        scores = self.score_block(codes, self._buffer(int(self.params["chunk_size"])))
        sizes, users, vals = topk_rows(scores, k, int(self.params["block"]))
        return rows, sizes, users, vals.astype(np.float64)

    def rank(
        self, product_ids: np.ndarray | Sequence[Any], k: int, catalogue: Catalogue | None = None
    ) -> Recommendations:
        """Top-k customers per requested product by factor score, the product's customers excluded."""
        from threadpoolctl import threadpool_limits

        self._check_fitted()
        requested = id_array(product_ids)
        codes = self.history_.codes_of(requested)
        k = max(int(k), 0)
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        is_cold = self.history_.cold(codes)
        known = np.flatnonzero(~is_cold)
        cold = np.flatnonzero(is_cold)
        if k > 0 and len(known):
            step = max(1, int(self.params["chunk_size"]))
            chunks = [known[i : i + step] for i in range(0, len(known), step)]
            self._local = threading.local()
            threads = self.params.get("score_threads")
            threads = _threads(int(self.params["num_threads"] if threads is None else threads))
            with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
                parts.extend(pool.map(lambda rows: self._rank_chunk(rows, codes[rows], k), chunks))
            del self._local
        if k > 0 and len(cold):
            sizes, users, scores = self.global_.top(codes[cold], k)
            parts.append((cold, sizes, users, scores))
        sizes, users, scores = _interleave(len(codes), parts)
        return _recommendations(requested, codes, sizes, users, scores, self.history_)


class ALSRanker(FactorRanker):
    """Implicit-feedback ALS (Hu, Koren & Volinsky 2008) via implicit.cpu.als."""

    name = "als"


class BPRRanker(FactorRanker):
    """Bayesian personalised ranking (Rendle et al. 2009) via implicit.cpu.bpr; item bias included."""

    name = "bpr"
    settings_model = BPRSettings

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
