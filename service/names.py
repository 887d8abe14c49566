"""POST /audiences/by-name: the audience of a product that exists nowhere yet, from its name, with the evidence.

The served cache carries the index of the evaluation's new-products model (recsys.features.name_index; the
``by_name_*`` files of the version directory); recsys.cache.by_name builds the answer. A name is cleaned (control
characters become spaces), refused with a clear 422 when it is empty, only white space, or longer than
``MAX_NAME_CHARS``, and otherwise always answered: a name with no token the log knows gets the engagement order
with ``fallback: true`` and the reason, as does a cache whose new-products model does not read names (its global
order). Every customer comes with the parts of its score: the engagement part and the name part, with the name's
tokens found in the customer's history (content), the similar products the customer touched (name_knn), or the
category the name was given (category models).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from recsys.basis import MAX_NAME_CHARS
from recsys.cache.by_name import clean_name, name_audience
from service.payloads import dumps
from service.schemas import CustomerId, ErrorResponse, ProductId

MAX_BY_NAME_N = 1000
MAX_EXCLUDE = 100_000
DEFAULT_BY_NAME_N = 20


class ByNameRequest(BaseModel):
    """A product name (any script) and how many customers to return."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description=f"The product's name, 1 to {MAX_NAME_CHARS} characters (any script).")
    n: int | None = Field(
        None,
        ge=1,
        le=MAX_BY_NAME_N,
        description=f"Customers to return, 1 to {MAX_BY_NAME_N}; default {DEFAULT_BY_NAME_N}.",
    )
    exclude_customers: list[CustomerId] = Field(
        default_factory=list,
        max_length=MAX_EXCLUDE,
        description="Customers never to return (opt-outs, recently contacted); unknown ids are ignored.",
    )

    @field_validator("name")
    @classmethod
    def _usable(cls, value: str) -> str:
        """Refuse empty, blank or over-long names with the reason."""
        if len(value) > MAX_NAME_CHARS:
            raise ValueError(f"name is {len(value)} characters long; at most {MAX_NAME_CHARS} are accepted")
        if not clean_name(value):
            raise ValueError("name is empty or only white space / control characters")
        return value


class TokenPart(BaseModel):
    """A token of the name found in the customer's history and its share of the score."""

    token: str
    contribution: float


class ProductPart(BaseModel):
    """A similar known product the customer touched and its share of the score."""

    product_id: ProductId
    contribution: float


class Evidence(BaseModel):
    """The parts of a customer's score: engagement + name (the name part split by token or by similar product)."""

    engagement: float
    name: float
    tokens: list[TokenPart]
    products: list[ProductPart]


class NamedCustomer(BaseModel):
    """One targeted customer of a new product."""

    rank: int = Field(ge=1)
    customer_id: CustomerId
    score: float
    evidence: Evidence


class SimilarProduct(BaseModel):
    """A known product whose name is among the most similar (TF-IDF cosine), or, for a category model, one of the
    category's products with the most customers (no similarity)."""

    product_id: ProductId
    product_name: str
    similarity: float | None


class NameCategory(BaseModel):
    """The category a category model gave the name, and the tokens that weigh most in it."""

    id: int
    tokens: list[str]


class ByNameResponse(BaseModel):
    """The audience of a new product, the model that ranked it and what its name matched."""

    name: str
    model: str | None = Field(description="The ranker behind the answer (the evaluation's new-products model).")
    category: NameCategory | None = Field(description="The category the name was given (category models only).")
    basis: str = Field(description="name | no_known_token | names_unused (recsys.rankers.base.BASIS_TEXT)")
    fallback: bool = Field(description="True when the name could not be used: the engagement / global order.")
    reason: str
    known_tokens: list[str]
    unknown_tokens: list[str]
    similar_products: list[SimilarProduct]
    customers: list[NamedCustomer]
    count: int
    cache_version: str


def add_name_routes(app: FastAPI, current_snapshot: Any) -> None:
    """Register POST /audiences/by-name on `app` (`current_snapshot(request)` reads the serving snapshot once)."""

    @app.post(
        "/audiences/by-name",
        response_model=ByNameResponse,
        responses={
            422: {"model": ErrorResponse, "description": "Client error (empty, blank or over-long name; bad n or ids)"},
            415: {"model": ErrorResponse, "description": "Body not sent as application/json"},
        },
        tags=["recommend"],
        summary="Audience of a product that exists nowhere yet, from its name, with the evidence",
    )
    async def by_name(body: ByNameRequest, request: Request) -> Response:
        """Rank every customer for a new product's name with the evaluation's new-products model; every customer
        comes with the parts of its score. A name with no known token gets the engagement order, flagged."""
        snapshot = current_snapshot(request)

        def run() -> bytes:
            return dumps(name_audience(snapshot.lookup, body.name, body.n or DEFAULT_BY_NAME_N, body.exclude_customers))

        return Response(await asyncio.to_thread(run), media_type="application/json")
