"""``POST /campaigns``: a campaign's audiences allocated from the served cache's candidates, stateless.

The body names the products, the audience size ``n`` of every product, the most messages one customer may get
in this campaign (``max_per_customer``; null = uncapped), an optional ``min_audience`` and customers to leave out.
The answer is every known product's audience in rank order (customer, score, rank), what the product got
against what it would get uncapped, the products the cache does not know (reported, never an error) and the
campaign's exposure figures (``recsys.allocation.result``). The allocation is ``recsys.allocation.campaign``
over the snapshot's ``AudienceLookup`` (its candidate arrays), numpy only; it runs in a worker thread so the
event loop keeps serving while a large campaign (up to ``MAX_CAMPAIGN_PRODUCTS`` products) is allocated.

Client mistakes are 422s in FastAPI's shape: ids of the wrong kind, a product listed twice, ``n`` above the
cache's candidate depth (the message names it), ``min_audience > n``, too many products or exclusions.
It is an ordinary FastAPI route: whatever middleware and dependencies the app installs apply to it.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from recsys.allocation.campaign import allocate_campaign
from recsys.allocation.problem import MAX_CAMPAIGN_PRODUCTS, Campaign
from recsys.allocation.result import CampaignFigures, CampaignResult, ProductOutcome
from recsys.data.ids import in_int64, parse_id
from recsys.reasons import Reasons
from service.payloads import client_error, dumps, parse_product_id
from service.reasons import ExplainQuery, explainer, with_reasons
from service.schemas import CustomerId, ErrorResponse, ProductId, RequestedId
from service.state import Snapshot

MAX_EXCLUDED = 100_000  # 5,000 product ids and 100,000 customer ids stay within the default 2 MB body limit


class CampaignRequest(BaseModel):
    """A campaign: products, audience size, per-customer cap, minimum audience, customers to leave out."""

    model_config = ConfigDict(extra="forbid")

    product_ids: list[RequestedId] = Field(
        min_length=1,
        max_length=MAX_CAMPAIGN_PRODUCTS,
        description=f"1 to {MAX_CAMPAIGN_PRODUCTS} distinct product ids, as the cache types them.",
    )
    n: Annotated[StrictInt, Field(ge=1)] = Field(
        description="Customers per product, 1 <= n <= the cache's candidate depth (/health cache.candidate_depth).",
        json_schema_extra={"x-recsys-max": "candidates"},
    )
    max_per_customer: Annotated[StrictInt, Field(ge=1)] | None = Field(
        None, description="Most messages one customer gets in this campaign (1-5 typical); null = uncapped."
    )
    min_audience: Annotated[StrictInt, Field(ge=0)] = Field(
        0, description="Every product reaches this many customers before any gets more (when its candidates allow)."
    )
    exclude_customers: list[Annotated[int | str, Field(json_schema_extra={"x-recsys-id": "customer"})]] = Field(
        default_factory=list,
        max_length=MAX_EXCLUDED,
        description=f"Customers never messaged (opt-outs, recently contacted); at most {MAX_EXCLUDED:,}.",
    )


class CampaignCustomer(BaseModel):
    """One customer of a product's campaign audience."""

    customer_id: CustomerId
    score: float = Field(description="The ranker's score (float32, shortest decimal form); non-increasing with rank.")
    rank: int = Field(ge=1)
    reasons: Reasons | None = Field(None, description="With ?explain=true: why this customer (recsys.reasons).")


class CampaignAudience(ProductOutcome):
    """A product's allocated audience in rank order, and what it got against its uncapped audience."""

    product_id: ProductId
    customers: list[CampaignCustomer]


class CampaignResponse(BaseModel):
    """Every known product's audience (request order), the unknown products, the campaign's figures."""

    audiences: list[CampaignAudience]
    unknown_products: list[ProductId]
    figures: CampaignFigures
    model: str = Field(description="Cache version that produced this answer.")


def parse_customers(raw: list[Any], snapshot: Snapshot) -> list[int | str]:
    """Excluded customer ids as the cache's customer id kind; a 422 names the first one that cannot be an id."""
    kind = snapshot.customer_id_kind
    out: list[int | str] = []
    for i, value in enumerate(raw):
        parsed = parse_id(value, kind)
        if parsed is None or (isinstance(parsed, int) and not in_int64(parsed)):
            what = "integers" if kind == "int" else "strings"
            raise client_error(
                ("body", "exclude_customers", i), f"customer ids in this cache are {what}; got {value!r}"
            )
        out.append(parsed)
    return out


def campaign_of(body: CampaignRequest, snapshot: Snapshot) -> Campaign:
    """The typed campaign of a request; every client mistake is a 422 naming the field."""
    depth = snapshot.lookup.candidate_depth
    if body.n > depth:
        raise client_error(
            ("body", "n"),
            f"n must be at most {depth}, the cache's candidate depth (cache.candidates); got {body.n}",
            "less_than_equal",
        )
    if body.min_audience > body.n:
        raise client_error(("body", "min_audience"), f"min_audience must be <= n={body.n}; got {body.min_audience}")
    ids = [parse_product_id(raw, snapshot, ("body", "product_ids", i)) for i, raw in enumerate(body.product_ids)]
    seen: dict[int | str, int] = {}
    for i, pid in enumerate(ids):
        if pid in seen:
            raise client_error(("body", "product_ids", i), f"product {pid!r} is listed twice (first at {seen[pid]})")
        seen[pid] = i
    return Campaign(
        product_ids=ids,
        n=body.n,
        max_per_customer=body.max_per_customer,
        min_audience=body.min_audience,
        exclude_customers=parse_customers(body.exclude_customers, snapshot),
    )


def campaign_payload(result: CampaignResult, snapshot: Snapshot, explain: bool = False) -> dict[str, Any]:
    """The response dict: audiences built from the result's arrays (float32 scores print at their own precision);
    with `explain`, every customer's reasons."""
    lookup = snapshot.lookup
    ids = lookup.customer_ids(result.codes)
    customers = ids.tolist()
    scores = list(np.asarray(result.scores, dtype=np.float32))
    offsets = result.offsets.tolist()
    audiences = []
    for i, outcome in enumerate(result.products()):
        a, b = offsets[i], offsets[i + 1]
        item = outcome.model_dump()
        item["customers"] = [{"customer_id": customers[j], "score": scores[j], "rank": j - a + 1} for j in range(a, b)]
        if explain:
            with_reasons(item["customers"], snapshot, outcome.product_id, result.codes[a:b])
        audiences.append(item)
    return {
        "audiences": audiences,
        "unknown_products": list(result.problem.unknown),
        "figures": result.figures.model_dump(),
        "model": snapshot.version,
    }


def add_campaign_routes(app: FastAPI, current_snapshot: Any) -> None:
    """Register POST /campaigns on `app` (`current_snapshot(request)` reads the serving snapshot once)."""

    @app.post(
        "/campaigns",
        response_model=CampaignResponse,
        responses={
            422: {"model": ErrorResponse, "description": "Client error (bad ids, n above the candidate depth, body)"},
            415: {"model": ErrorResponse, "description": "Body not sent as application/json"},
        },
        tags=["campaigns"],
        summary="Audiences for a campaign of products under a per-customer cap",
    )
    async def campaigns(body: CampaignRequest, request: Request, explain: ExplainQuery = False) -> Response:
        """Allocate every known product's audience from its candidates: at most n each, at most max_per_customer
        messages per customer; unknown products are listed in `unknown_products`; `explain` adds reasons."""
        snapshot = current_snapshot(request)
        campaign = campaign_of(body, snapshot)
        if explain:
            explainer(snapshot)  # a cache without reasons is a 422 before any work

        def run() -> bytes:
            return dumps(campaign_payload(allocate_campaign(snapshot.lookup, campaign), snapshot, explain))

        return Response(await asyncio.to_thread(run), media_type="application/json")
