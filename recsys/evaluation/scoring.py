"""Score rankers on an evaluation set: per-product metric arrays, hit lists, contract checks, slice diagnostics.

Only products with at least one reachable relevant customer are ranked (``EvalSet.scored_mask``):
every other product has 0 hits for any ranker that honours the contract, so its metrics are exact
zeros (NaN when it has no relevant customer at all) without ranking it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsys.arrays import offsets_of
from recsys.data.catalogue import Catalogue
from recsys.evaluation.frame import SLICES, EvalSet
from recsys.evaluation.intervals import HitSet, hit_set
from recsys.evaluation.metrics import block_ranks, block_rows, hits_against, metrics_at_k
from recsys.rankers import Recommendations


class RankerContractError(RuntimeError):
    """A ranker returned something docs/INTERFACES.md forbids (the evaluation would be wrong)."""


@dataclass
class Scored:
    """One model on one evaluation set: per-product metrics (METRICS x ks x products) and its hits within max(ks)."""

    label: str
    values: np.ndarray
    hits: HitSet
    slice_recall: np.ndarray | None = None  # (3 slices, len(ks), products)
    slice_hits: np.ndarray | None = None  # (3 slices, len(ks)) total hits
    basis: dict[str, int] = field(default_factory=dict)  # ranked products per basis (recsys.rankers.base.BASES)


def coded_recommendations(rec: Recommendations, es: EvalSet, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, customer codes) of a ranker's answer, after checking it against the ranker contract."""
    if len(rec) != len(es):
        raise RankerContractError(f"{name}: returned {len(rec)} blocks for {len(es)} requested products")
    if len(es) and not np.array_equal(np.asarray(rec.product_ids).astype(object), es.product_ids.astype(object)):
        raise RankerContractError(f"{name}: blocks are not in request order")
    offsets = np.asarray(rec.offsets, dtype=np.int64)
    codes = es.customers.codes(rec.customer_ids)
    if (codes < 0).any() or (es.customers.train_rows[np.maximum(codes, 0)] == 0).any():
        raise RankerContractError(f"{name}: ranked a customer with no training history")
    if hits_against(offsets, codes, es.excl_offsets, es.excl, es.customers.n).any():
        raise RankerContractError(f"{name}: ranked a customer who already interacted with the product in training")
    scores = np.asarray(rec.scores, dtype=np.float64)
    if len(scores) > 1:
        same_block = block_rows(offsets)[1:] == block_rows(offsets)[:-1]
        if (np.diff(scores)[same_block] > 1e-9 * np.maximum(1.0, np.abs(scores[1:][same_block]))).any():
            raise RankerContractError(f"{name}: scores increase within a block")
    return offsets, codes


def score_lists(
    es: EvalSet, offsets: np.ndarray, codes: np.ndarray, ks: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """(per-product metrics, per-entry hit flags) of coded ranked lists."""
    hits = hits_against(offsets, codes, es.truth_offsets, es.truth, es.customers.n)
    return metrics_at_k(offsets, hits, es.n_relevant, ks), hits


def score_ranker(
    ranker: Any,
    es: EvalSet,
    ks: Sequence[int],
    label: str,
    diagnostics: bool = False,
    catalogue: Catalogue | None = None,
) -> Scored:
    """Rank the products that can score (contract-checked), then metrics and hits over every product of the set.

    `catalogue`: names of products without fit rows (the new products' names as first seen); the basis of every
    ranked product is kept (``Scored.basis``: products per basis).
    """
    mask = es.scored_mask()
    sub = es.subset(mask)
    rec = (
        ranker.rank(sub.product_ids, int(max(ks)), catalogue)
        if catalogue is not None
        else ranker.rank(sub.product_ids, int(max(ks)))
    )
    sub_offsets, codes = coded_recommendations(rec, sub, label)
    sizes = np.zeros(len(es), dtype=np.int64)
    sizes[mask] = np.diff(sub_offsets)
    offsets = offsets_of(sizes)
    values, hits = score_lists(es, offsets, codes, ks)
    basis = np.asarray(rec.basis if rec.basis is not None else np.full(len(rec), "history"), dtype=object)
    kinds, counts = np.unique(basis.astype(str), return_counts=True)
    bases = {str(b): int(c) for b, c in zip(kinds, counts, strict=True)}
    scored = Scored(label, values, hit_set(offsets, codes, hits), basis=bases)
    if diagnostics:
        scored.slice_recall, scored.slice_hits = slice_scores(es, offsets, codes, hits, ks)
    return scored


def slice_scores(
    es: EvalSet, offsets: np.ndarray, codes: np.ndarray, hits: np.ndarray, ks: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Recall within each customer slice (0, 1, 2+ training rows) per product, and total hits per slice.

    recall_s@k = hits on slice-s customers in the top k / relevant slice-s customers (NaN when the
    product has none); slice 0 is unreachable for every ranker, so its recall is 0 by construction.
    """
    n = len(es)
    truth_slice = es.customers.slice_of(es.truth)
    truth_rows = block_rows(es.truth_offsets)
    rel = np.stack([np.bincount(truth_rows[truth_slice == s], minlength=n) for s in range(len(SLICES))]).astype(
        np.float64
    )
    rows, ranks = block_rows(offsets), block_ranks(offsets)
    entry_slice = es.customers.slice_of(codes)
    recall = np.full((len(SLICES), len(ks), n), np.nan)
    totals = np.zeros((len(SLICES), len(ks)))
    for j, k in enumerate(ks):
        m = hits & (ranks <= k)
        for s in range(len(SLICES)):
            sel = m & (entry_slice == s)
            h = np.bincount(rows[sel], minlength=n).astype(np.float64)
            totals[s, j] = h.sum()
            with np.errstate(divide="ignore", invalid="ignore"):
                recall[s, j] = np.where(rel[s] > 0, h / rel[s], np.nan)
    return recall, totals


def slice_shares(es: EvalSet, test_codes: np.ndarray) -> dict[str, dict[str, float]]:
    """Share of test rows, test customers and relevant (product, customer) pairs by training-history slice."""

    def shares(codes: np.ndarray) -> dict[str, float]:
        counts = np.bincount(es.customers.slice_of(codes), minlength=len(SLICES)).astype(np.float64)
        total = counts.sum()
        return {s: (float(c / total) if total else float("nan")) for s, c in zip(SLICES, counts, strict=True)}

    return {
        "test_rows": shares(test_codes),
        "test_customers": shares(np.unique(test_codes)),
        "relevant_pairs": shares(es.truth),
    }
