"""A campaign, typed, and the allocation instance it gives over a source of ranked candidates.

A campaign (``Campaign``) is what a merchant sends at once: a list of product ids, the audience size ``n`` of
every product, the most messages one customer may get within the campaign (``max_per_customer``; None =
uncapped), an optional ``min_audience`` (every product reaches it before any product gets more, when its
candidates allow) and customers to leave out (opt-outs, recently contacted). Settings are checked when the
model is built (unknown keys, duplicated products, ``min_audience > n`` raise ``ValueError`` naming them).

The instance (``CampaignProblem``) is the campaign over a ``CandidateSource`` — anything that returns every
product's own ranked candidates deep enough (the served cache: ``recsys.cache.lookup.AudienceLookup``; the
evaluation's fitted ranker: ``recsys.evaluation.campaigns_run``). Its arrays: the known products in request
order, their candidate lists minus the excluded customers (CSR, best first, customer codes of the source),
and the products the source does not know (reported, never an error). Customers who touched a product are
never among its candidates (the rankers' contract), so no allocation can pick them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from recsys.allocation.arrays import block_rows
from recsys.arrays import offsets_of

MAX_CAMPAIGN_PRODUCTS = 5000
Id = int | str


class Campaign(BaseModel):
    """One campaign's settings (module docstring); immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    product_ids: list[Id] = Field(min_length=1, max_length=MAX_CAMPAIGN_PRODUCTS)
    n: int = Field(ge=1, description="audience size of every product")
    max_per_customer: int | None = Field(default=None, ge=1, description="messages per customer; None = uncapped")
    min_audience: int = Field(default=0, ge=0, description="every product reaches this before any gets more")
    exclude_customers: list[Id] = Field(default_factory=list, description="customers never messaged")

    @model_validator(mode="after")
    def _consistent(self) -> Campaign:
        """min_audience <= n and no product listed twice."""
        if self.min_audience > self.n:
            raise ValueError(f"min_audience={self.min_audience} must be <= n={self.n}")
        seen: set[Id] = set()
        for pid in self.product_ids:
            if pid in seen:
                raise ValueError(f"product {pid!r} is listed twice")
            seen.add(pid)
        return self


class CandidateSource(Protocol):
    """Ranked candidates of known products: what a campaign allocates from."""

    @property
    def candidate_depth(self) -> int:
        """The longest candidate list (n above it is refused)."""
        ...

    @property
    def n_customers(self) -> int:
        """Customer codes run 0..n_customers-1."""
        ...

    def rows_of(self, product_ids: Sequence[Id]) -> np.ndarray:
        """Row of each product id (-1 when unknown)."""
        ...

    def candidate_lists(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(offsets, customer codes, scores) of the rows' candidate lists, each best first."""
        ...

    def customer_codes(self, customer_ids: Sequence[Id]) -> np.ndarray:
        """Code of each customer id (-1 when the source does not know it)."""
        ...

    def customer_ids(self, codes: np.ndarray) -> np.ndarray:
        """Customer ids of codes."""
        ...


@dataclass(frozen=True)
class CampaignProblem:
    """A campaign's allocation instance over a candidate source (module docstring)."""

    campaign: Campaign
    product_ids: list[Id]  # known products, in request order
    rows: np.ndarray  # their rows in the source
    unknown: list[Id]  # requested products the source does not know
    offsets: np.ndarray  # (P+1,) candidate lists after exclusions
    codes: np.ndarray  # (E,) customer codes of the source
    scores: np.ndarray  # (E,)
    n_customers: int
    excluded_candidates: int  # candidate entries dropped because their customer is excluded

    @property
    def n_products(self) -> int:
        """Known products."""
        return len(self.product_ids)

    @property
    def cap(self) -> int:
        """The per-customer capacity the solver uses (uncapped: the number of products, which never binds)."""
        cap = self.campaign.max_per_customer
        return max(self.n_products, 1) if cap is None else int(cap)


def check_depth(campaign: Campaign, depth: int) -> None:
    """Raise ValueError naming the limit when the audience size exceeds the candidate depth."""
    if campaign.n > depth:
        raise ValueError(f"n={campaign.n} is above the candidate depth {depth}: ask for at most {depth} customers")


def campaign_problem(source: CandidateSource, campaign: Campaign) -> CampaignProblem:
    """The campaign's instance over `source`: known products' candidates minus excluded customers; unknown listed."""
    check_depth(campaign, source.candidate_depth)
    rows = np.asarray(source.rows_of(campaign.product_ids), dtype=np.int64)
    known = rows >= 0
    offsets, codes, scores = source.candidate_lists(rows[known])
    excluded = np.unique(source.customer_codes(campaign.exclude_customers)) if campaign.exclude_customers else None
    dropped = 0
    if excluded is not None and len(excluded) and len(codes):
        excluded = excluded[excluded >= 0]
        drop = np.isin(codes, excluded)
        dropped = int(drop.sum())
        if dropped:
            keep = np.flatnonzero(~drop)
            offsets = offsets_of(np.bincount(block_rows(offsets)[keep], minlength=len(offsets) - 1))
            codes, scores = codes[keep], scores[keep]
    return CampaignProblem(
        campaign=campaign,
        product_ids=[pid for pid, ok in zip(campaign.product_ids, known.tolist(), strict=True) if ok],
        rows=rows[known],
        unknown=[pid for pid, ok in zip(campaign.product_ids, known.tolist(), strict=True) if not ok],
        offsets=np.asarray(offsets, dtype=np.int64),
        codes=np.asarray(codes, dtype=np.int64),
        scores=np.asarray(scores),
        n_customers=int(source.n_customers),
        excluded_candidates=dropped,
    )
