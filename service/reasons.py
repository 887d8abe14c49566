"""``?explain=true``: every customer of an answer with its reasons (``recsys.reasons``), for /recommend and /campaigns.

The fast lane never sees these requests (it answers only a bare ``n=`` query), so explained answers always come
from the FastAPI routes. A cache that stores no reasons (``CacheManifest.reasons`` is None) answers a clear 422.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import Query

from recsys.reasons import Explainer
from service.payloads import client_error
from service.state import Snapshot

ExplainQuery = Annotated[
    bool,
    Query(
        description="Add every customer's reasons: parts that add up to the score (engagement, name tokens or "
        "similar products bought) and the customer's facts from the log."
    ),
]


def explainer(snapshot: Snapshot) -> Explainer:
    """The snapshot's explainer, or a 422 naming why this cache cannot explain."""
    try:
        return Explainer.of(snapshot.lookup)
    except ValueError as exc:
        raise client_error(("query", "explain"), str(exc)) from exc


def with_reasons(rows: list[dict[str, Any]], snapshot: Snapshot, product_id: Any, codes: np.ndarray | None) -> None:
    """Add `reasons` to every customer row of one product (rows have customer_id and score), in place."""
    if not rows:
        return
    ex = explainer(snapshot)
    scores = np.asarray([r["score"] for r in rows], dtype=np.float64)
    if codes is None:
        found = ex.explain_ids(product_id, np.asarray([r["customer_id"] for r in rows]), scores)
    else:
        found = ex.explain(product_id, codes, scores)
    for row, reasons in zip(rows, found, strict=True):
        row["reasons"] = reasons.model_dump(mode="json")
