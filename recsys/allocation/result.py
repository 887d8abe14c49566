"""What an allocated campaign gives: every product's audience in rank order, what the cap cost, who gets how much.

Per product (``ProductOutcome``): audience ``size``, ``shortfall`` (n - size: the candidates ran out, or the cap
took customers to better-scoring products), ``candidates`` left after the exclusions, the total ``score`` of the
audience and of its ``uncapped`` reference (the product's first n candidates after the exclusions: what it
would get alone) and ``score_kept`` = score / uncapped score.

Exposure figures (``ExposureFigures``) of a set of audiences, counted over the customers messaged at least once:
``customers``, ``messages`` (audience slots filled), ``max_per_customer``, ``p99_per_customer`` (numpy's linear
percentile), ``mean_per_customer``, ``at_cap`` / ``at_cap_share`` (customers who got exactly the cap, and their
share), ``over_cap`` (customers above it: 0 for allocated audiences, the cap's reach on the uncapped side; the
three None when uncapped) and ``histogram`` (``histogram[i]`` = customers with i + 1 messages).

The campaign (``CampaignFigures``) states both sides — the allocated audiences and the uncapped references —
so what the cap costs (slots, score, reach) reads off one record. Floats are rounded to 6 significant digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.allocation.arrays import block_rows, first_k
from recsys.allocation.problem import CampaignProblem, Id
from recsys.allocation.solver import Filled
from recsys.arrays import offsets_of
from recsys.records import Record, num


class ExposureFigures(Record):
    """How many messages each messaged customer gets within one campaign (module docstring)."""

    customers: int
    messages: int
    max_per_customer: int
    p99_per_customer: float
    mean_per_customer: float
    at_cap: int | None
    at_cap_share: float | None
    over_cap: int | None
    histogram: list[int]


class ProductOutcome(Record):
    """One product's allocated audience, against what it would get uncapped (module docstring)."""

    product_id: Id
    size: int
    shortfall: int
    candidates: int
    score: float
    uncapped_score: float
    score_kept: float | None


class SolverFacts(Record):
    """How the solver ran: the uncapped shortcut, rounds per pass, whether every pass ran to its end."""

    shortcut: bool
    rounds: list[int]
    complete: bool


class CampaignFigures(Record):
    """A campaign's settings, its audiences' totals and exposure, and the same of the uncapped references."""

    n: int
    max_per_customer: int | None
    min_audience: int
    products_requested: int
    products_known: int
    unknown_products: list[Id]
    excluded_customers: int
    excluded_candidates: int
    slots: int
    filled: int
    shortfall: int
    short_products: int
    below_min_audience: int
    score: float
    uncapped_score: float
    score_kept: float | None
    exposure: ExposureFigures
    uncapped_exposure: ExposureFigures
    solver: SolverFacts


def exposure_figures(codes: np.ndarray, cap: int | None, n_codes: int | None = None) -> ExposureFigures:
    """Exposure figures of the customer codes of every filled slot (one entry per message)."""
    codes = np.asarray(codes, dtype=np.int64)
    counts = np.bincount(codes, minlength=int(n_codes or 0)) if len(codes) else np.zeros(0, dtype=np.int64)
    used = counts[counts > 0]
    if len(used) == 0:
        return ExposureFigures(
            customers=0,
            messages=0,
            max_per_customer=0,
            p99_per_customer=0.0,
            mean_per_customer=0.0,
            at_cap=None if cap is None else 0,
            at_cap_share=None,
            over_cap=None if cap is None else 0,
            histogram=[],
        )
    at_cap = None if cap is None else int((used == cap).sum())
    return ExposureFigures(
        customers=int(len(used)),
        messages=int(used.sum()),
        max_per_customer=int(used.max()),
        p99_per_customer=num(float(np.percentile(used, 99))) or 0.0,
        mean_per_customer=num(float(used.mean())) or 0.0,
        at_cap=at_cap,
        at_cap_share=None if at_cap is None else num(at_cap / len(used)),
        over_cap=None if cap is None else int((used > cap).sum()),
        histogram=np.bincount(used)[1:].astype(int).tolist(),
    )


@dataclass(frozen=True)
class CampaignResult:
    """Allocated audiences (CSR over the known products, each in rank order: score descending) and the figures."""

    problem: CampaignProblem
    offsets: np.ndarray
    codes: np.ndarray
    scores: np.ndarray
    sizes: np.ndarray
    product_scores: np.ndarray
    uncapped_scores: np.ndarray
    figures: CampaignFigures

    def audience(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(customer codes, scores) of the i-th known product's audience, in rank order."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.codes[a:b], self.scores[a:b]

    def products(self) -> list[ProductOutcome]:
        """Every known product's outcome, in request order."""
        n = self.problem.campaign.n
        candidates = np.diff(self.problem.offsets)
        return [
            ProductOutcome(
                product_id=pid,
                size=int(size),
                shortfall=int(n - size),
                candidates=int(cand),
                score=num(score) or 0.0,
                uncapped_score=num(base) or 0.0,
                score_kept=num(score / base) if base > 0 else None,
            )
            for pid, size, cand, score, base in zip(
                self.problem.product_ids,
                self.sizes.tolist(),
                candidates.tolist(),
                self.product_scores.tolist(),
                self.uncapped_scores.tolist(),
                strict=True,
            )
        ]

    def long_rows(self) -> dict[str, Any]:
        """Columns of the long table (product row, rank 1.., customer code, score), in product then rank order."""
        rows = block_rows(self.offsets)
        return {
            "row": rows,
            "rank": np.arange(len(rows), dtype=np.int64) - self.offsets[rows] + 1,
            "code": self.codes,
            "score": self.scores,
        }


def campaign_result(problem: CampaignProblem, filled: Filled) -> CampaignResult:
    """The result of a solved campaign: audiences in rank order, per-product totals and the campaign's figures."""
    c = problem.campaign
    n_rows = problem.n_products
    rows = block_rows(problem.offsets)
    edges = filled.edges  # ascending: per product, in candidate-list (rank) order
    chosen_rows = rows[edges]
    sizes = np.bincount(chosen_rows, minlength=n_rows).astype(np.int64)
    scores64 = np.asarray(problem.scores, dtype=np.float64)
    product_scores = np.bincount(chosen_rows, weights=scores64[edges], minlength=n_rows)
    top = first_k(problem.offsets, c.n)
    uncapped_scores = np.bincount(rows[top], weights=scores64[top], minlength=n_rows)
    total, base = float(product_scores.sum()), float(uncapped_scores.sum())
    shortfall = c.n - sizes
    below = np.minimum(c.min_audience, np.diff(problem.offsets)) > sizes
    figures = CampaignFigures(
        n=c.n,
        max_per_customer=c.max_per_customer,
        min_audience=c.min_audience,
        products_requested=len(c.product_ids),
        products_known=n_rows,
        unknown_products=list(problem.unknown),
        excluded_customers=len(c.exclude_customers),
        excluded_candidates=problem.excluded_candidates,
        slots=n_rows * c.n,
        filled=int(len(edges)),
        shortfall=int(shortfall.sum()),
        short_products=int((shortfall > 0).sum()),
        below_min_audience=int(below.sum()),
        score=num(total) or 0.0,
        uncapped_score=num(base) or 0.0,
        score_kept=num(total / base) if base > 0 else None,
        exposure=exposure_figures(problem.codes[edges], c.max_per_customer, problem.n_customers),
        uncapped_exposure=exposure_figures(problem.codes[top], c.max_per_customer, problem.n_customers),
        solver=SolverFacts(shortcut=filled.shortcut, rounds=filled.rounds, complete=filled.complete),
    )
    return CampaignResult(
        problem=problem,
        offsets=offsets_of(sizes),
        codes=problem.codes[edges],
        scores=problem.scores[edges],
        sizes=sizes,
        product_scores=product_scores,
        uncapped_scores=uncapped_scores,
        figures=figures,
    )
