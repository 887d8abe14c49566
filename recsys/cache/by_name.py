"""The audience of a product name never seen in the log, with the evidence of every customer (numpy only).

One implementation for the API (``POST /audiences/by-name``), the CLI (``recsys audience --name``) and the
dashboard's new-product tab: the served cache's new-products index (``AudienceLookup.names``,
recsys.features.name_index) ranks the cleaned name; a cache without one answers its global order with
``fallback: true``. Every customer comes with the parts of its score (engagement, name; the tokens or similar
products behind the name part). pandas is imported only by ``audience_table`` (the CLI's and the dashboard's CSV).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

from recsys.basis import BASIS_TEXT
from recsys.cache.lookup import AudienceLookup

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def clean_name(raw: str) -> str:
    """Control characters replaced by spaces, surrounding white space removed."""
    return _CONTROL.sub(" ", raw).strip()


def _id(value: Any) -> Any:
    """A numpy id as a plain int or str."""
    return value.item() if isinstance(value, np.generic) else value


def name_audience(lookup: AudienceLookup, raw_name: str, n: int, exclude: Sequence[Any] = ()) -> dict[str, Any]:
    """The audience of a name with its evidence (the /audiences/by-name body; the CLI and the dashboard use it too).

    The cache's new-products index ranks it; a cache without one answers its global order, flagged.
    """
    name = clean_name(raw_name)
    index = lookup.names
    if index is None:
        return _global_payload(lookup, name, n, exclude)
    (audience,) = index.audiences([name], n, list(exclude))
    ids = index.customer_ids
    customers = [
        {
            "rank": r,
            "customer_id": _id(ids[c]),
            "score": float(s),
            "evidence": {
                "engagement": ev.engagement,
                "name": ev.name,
                "tokens": [{"token": t, "contribution": w} for t, w in ev.tokens],
                "products": [{"product_id": _id(index.product_ids[p]), "contribution": w} for p, w in ev.products],
            },
        }
        for r, (c, s, ev) in enumerate(zip(audience.customers, audience.scores, audience.evidence, strict=True), 1)
    ]
    fallback = audience.basis != "name"
    category = None
    if audience.category >= 0:
        category = {"id": audience.category, "tokens": audience.category_tokens}
    return {
        "name": name,
        "model": index.meta.ranker,
        "category": category,
        "basis": audience.basis,
        "fallback": fallback,
        "reason": BASIS_TEXT[audience.basis],
        "known_tokens": audience.known_tokens,
        "unknown_tokens": audience.unknown_tokens,
        "similar_products": [
            {
                "product_id": _id(index.product_ids[p]),
                "product_name": index.product_name(p),
                "similarity": None if category is not None else float(sim),
            }
            for p, sim in audience.similar
        ],
        "customers": customers,
        "count": len(customers),
        "cache_version": lookup.manifest.version,
    }


def _global_payload(lookup: AudienceLookup, name: str, n: int, exclude: Sequence[Any]) -> dict[str, Any]:
    """The answer of a cache without a name index: its global order, flagged as a fallback."""
    customers, scores, _ = lookup.top_global(n, exclude)
    return {
        "name": name,
        "model": lookup.manifest.ranker,
        "category": None,
        "basis": "names_unused",
        "fallback": True,
        "reason": BASIS_TEXT["names_unused"],
        "known_tokens": [],
        "unknown_tokens": [],
        "similar_products": [],
        "customers": [
            {
                "rank": r,
                "customer_id": _id(c),
                "score": float(s),
                "evidence": {"engagement": float(s), "name": 0.0, "tokens": [], "products": []},
            }
            for r, (c, s) in enumerate(zip(customers.tolist(), list(scores), strict=True), 1)
        ],
        "count": len(customers),
        "cache_version": lookup.manifest.version,
    }


TABLE_COLUMNS: list[str] = [
    "rank",
    "customer_id",
    "score",
    "engagement_part",
    "name_part",
    "matched_tokens",
    "similar_products_touched",
]


def audience_table(body: dict[str, Any]) -> pd.DataFrame:
    """A name's audience as a table for people: rank, customer, score, its parts and the evidence behind them."""
    import pandas as pd  # only for the CLI's and the dashboard's CSV: the service never calls this

    rows = []
    for c in body["customers"]:
        ev = c["evidence"]
        tokens = ", ".join(f"{t['token']} ({t['contribution']:.3g})" for t in ev["tokens"])
        products = ", ".join(f"{p['product_id']} ({p['contribution']:.3g})" for p in ev["products"])
        rows.append(
            {
                "rank": c["rank"],
                "customer_id": c["customer_id"],
                "score": c["score"],
                "engagement_part": ev["engagement"],
                "name_part": ev["name"],
                "matched_tokens": tokens,
                "similar_products_touched": products,
            }
        )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)
