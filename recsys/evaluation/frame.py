"""Integer-coded evaluation sets: the products to score, their relevant and excluded customers.

Exclusions of a product are its fit-row customers plus the customers of its exclusion-only rows
(``Split.exclude``, undated rows under ``exclude_only``) who have fit rows: nobody may recommend them
the product, and the references (random expectation, oracle) respect the same rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys.evaluation.metrics import block_rows, hits_against
from recsys.evaluation.split import Split
from recsys.features.engagement import encode_ids

SLICES: tuple[str, ...] = ("0", "1", "2+")


@dataclass(frozen=True)
class CustomerCodes:
    """Customer id <-> code over train and test, and each customer's number of training rows."""

    ids: np.ndarray
    index: pd.Index
    train_rows: np.ndarray

    @property
    def n(self) -> int:
        """Number of coded customers."""
        return int(len(self.ids))

    @property
    def n_train_users(self) -> int:
        """Customers with at least one training row (the only ones a ranker may return)."""
        return int((self.train_rows > 0).sum())

    def codes(self, customer_ids: np.ndarray | pd.Series) -> np.ndarray:
        """Codes of customer ids (-1 when unknown)."""
        values = np.asarray(customer_ids)
        if len(values) == 0:
            return np.zeros(0, dtype=np.int64)
        if values.dtype.kind not in "iu":
            values = values.astype(object)
        return np.asarray(self.index.get_indexer(pd.Index(values)), dtype=np.int64)

    def slice_of(self, codes: np.ndarray) -> np.ndarray:
        """Slice index per code: 0, 1 or 2 (= 2+) training rows."""
        return np.asarray(np.minimum(self.train_rows[codes], 2), dtype=np.int64)


@dataclass(frozen=True)
class EvalSet:
    """Products to evaluate (request order) with relevant and excluded customers as sorted CSR codes."""

    product_ids: np.ndarray
    truth_offsets: np.ndarray
    truth: np.ndarray
    excl_offsets: np.ndarray
    excl: np.ndarray
    customers: CustomerCodes

    def __len__(self) -> int:
        """Number of products."""
        return int(len(self.product_ids))

    @property
    def n_relevant(self) -> np.ndarray:
        """Relevant customers per product."""
        return np.diff(self.truth_offsets)

    @property
    def n_excluded(self) -> np.ndarray:
        """Training customers per product (never recommendable for it)."""
        return np.diff(self.excl_offsets)

    def eligible_truth_mask(self) -> np.ndarray:
        """Per relevant entry: a training customer who is not among the product's training customers."""
        known = self.customers.train_rows[self.truth] > 0
        own = hits_against(self.truth_offsets, self.truth, self.excl_offsets, self.excl, self.customers.n)
        return np.asarray(known & ~own, dtype=bool)

    def n_eligible_relevant(self) -> np.ndarray:
        """Relevant customers any ranker could return, per product."""
        m = self.eligible_truth_mask()
        return np.bincount(block_rows(self.truth_offsets)[m], minlength=len(self)).astype(np.int64)

    def pool_size(self) -> np.ndarray:
        """Candidate pool per product: training customers minus the product's excluded ones."""
        return self.customers.n_train_users - self.n_excluded

    def truth_dispersion(self) -> float:
        """sum_c R_c^2 / sum_c R_c, R_c = products for which customer c is a reachable relevant customer (1 when none).

        The dispersion of the hit count of a ranker that puts the same customers in every list: the
        floor of the precision interval's dispersion (recsys.evaluation.intervals).
        """
        r = np.bincount(self.truth[self.eligible_truth_mask()], minlength=self.customers.n).astype(np.float64)
        total = r.sum()
        return float((r**2).sum() / total) if total > 0 else 1.0

    def scored_mask(self) -> np.ndarray:
        """Products that need ranking: at least one relevant customer a contract-abiding ranker could return.

        Every other product scores 0 hits for every ranker by construction (its relevant customers are
        unknown to the fit rows or excluded), so its metrics are known without ranking it.
        """
        return self.n_eligible_relevant() > 0

    def subset(self, mask: np.ndarray) -> EvalSet:
        """The evaluation set restricted to the products where `mask` is True (same customer coding)."""
        rows = np.flatnonzero(mask)

        def take(offsets: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            sizes = np.diff(offsets)[rows]
            new = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum(sizes, out=new[1:])
            gather = np.arange(int(new[-1]), dtype=np.int64) - np.repeat(new[:-1] - offsets[:-1][rows], sizes)
            return new, values[gather]

        t_off, t = take(self.truth_offsets, self.truth)
        e_off, e = take(self.excl_offsets, self.excl)
        return EvalSet(self.product_ids[rows], t_off, t, e_off, e, self.customers)


def pair_csr(rows: np.ndarray, codes: np.ndarray, n_rows: int, n_codes: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique (row, code) pairs as CSR (offsets, codes sorted within row); rows < 0 and codes < 0 are dropped."""
    keep = (rows >= 0) & (codes >= 0)
    keys = np.unique(rows[keep].astype(np.int64) * np.int64(n_codes) + codes[keep])
    r, c = np.divmod(keys, np.int64(n_codes))
    offsets = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=n_rows), out=offsets[1:])
    return offsets, c.astype(np.int64)


def _positions(product_ids: np.ndarray, values: pd.Series) -> np.ndarray:
    """Position of each value in product_ids (-1 when absent)."""
    if len(product_ids) == 0 or len(values) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    return np.asarray(pd.Index(product_ids).get_indexer(pd.Index(values.to_numpy())), dtype=np.int64)


def customer_codes(split: Split) -> tuple[CustomerCodes, np.ndarray, np.ndarray]:
    """Shared customer coding of fit and truth rows: (codes object, fit row codes, truth row codes)."""
    both = pd.concat([split.train["customer_id"], split.test["customer_id"]], ignore_index=True)
    codes, ids = encode_ids(both)
    codes = codes.astype(np.int64)
    n_train = len(split.train)
    train_rows = np.bincount(codes[:n_train], minlength=len(ids))
    return CustomerCodes(ids, pd.Index(ids), train_rows), codes[:n_train], codes[n_train:]


def build_eval_sets(split: Split, truth_events: Sequence[str] | None = None) -> tuple[EvalSet, EvalSet]:
    """(products with fit rows and window rows, window products without fit rows), with CSR truth and exclusions.

    Relevant customers of a product are its truth-window customers (only rows whose event is in
    `truth_events` when given); a product whose filtered truth is empty stays in the set and gets
    NaN metrics. Exclusions: fit-row customers and exclusion-only customers (module docstring).
    """
    customers, train_codes, test_codes = customer_codes(split)
    excl_codes = (
        customers.codes(split.exclude["customer_id"].to_numpy()) if len(split.exclude) else np.zeros(0, dtype=np.int64)
    )
    known = excl_codes >= 0
    known[known] = customers.train_rows[excl_codes[known]] > 0  # only customers with fit rows can ever be ranked
    excl_codes = np.where(known, excl_codes, -1)
    train_products = encode_ids(split.train["product_id"])[1]
    test_products = encode_ids(split.test["product_id"])[1]
    in_train = np.isin(test_products, train_products)
    existing, new = test_products[in_train], test_products[~in_train]
    truth_rows = np.ones(len(split.test), dtype=bool)
    if truth_events is not None:
        truth_rows = (
            split.test["event"].astype("string[pyarrow]").isin(list(truth_events)).fillna(False).to_numpy(dtype=bool)
        )
    sets = []
    for products in (existing, new):
        t_off, t = pair_csr(
            np.where(truth_rows, _positions(products, split.test["product_id"]), -1),
            test_codes,
            len(products),
            customers.n,
        )
        rows = np.concatenate(
            [_positions(products, split.train["product_id"]), _positions(products, split.exclude["product_id"])]
        )
        e_off, e = pair_csr(rows, np.concatenate([train_codes, excl_codes]), len(products), customers.n)
        sets.append(EvalSet(products, t_off, t, e_off, e, customers))
    return sets[0], sets[1]


def oracle_lists(es: EvalSet, kmax: int) -> tuple[np.ndarray, np.ndarray]:
    """The best possible audience per product: its eligible relevant customers first (CSR, at most kmax)."""
    m = es.eligible_truth_mask()
    rows = block_rows(es.truth_offsets)[m]
    codes = es.truth[m]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    keep = rank < kmax
    offsets = np.zeros(len(es) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows[keep], minlength=len(es)), out=offsets[1:])
    return offsets, codes[keep]
