"""Response payloads shared by the FastAPI routes and the fast lane: id and n parsing, audience dicts, JSON bytes.

Client mistakes raise `client_error` (an HTTPException whose 422 body has FastAPI's validation shape);
FastAPI's exception handlers render it. Nothing here touches the request object.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from fastapi import HTTPException

from recsys.data.ids import in_int64, parse_id
from service.schemas import DEFAULT_N
from service.state import Snapshot


def dumps(payload: Any) -> bytes:
    """JSON bytes with orjson, numpy-aware (float32 scores print at their own shortest precision)."""
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)


def client_error(loc: Sequence[str | int], msg: str, kind: str = "value_error") -> HTTPException:
    """A 422 whose body has FastAPI's validation-error shape: {"detail": [{"loc", "msg", "type"}]}."""
    return HTTPException(status_code=422, detail=[{"loc": list(loc), "msg": msg, "type": kind}])


def parse_product_id(raw: Any, snapshot: Snapshot, loc: Sequence[str | int]) -> int | str:
    """A client-supplied id as the cache's id kind (`recsys.data.ids.parse_id`), or a 422 saying what was expected."""
    value = parse_id(raw, snapshot.id_kind)
    if value is None:
        kind, error = ("integers", "int_parsing") if snapshot.id_kind == "int" else ("strings", "string_type")
        raise client_error(loc, f"product ids in this cache are {kind}; got {raw!r}", error)
    if isinstance(value, int) and not in_int64(value):
        raise client_error(loc, f"product id {value} is outside the signed 64-bit integer range", "int_range")
    return value


def resolve_n(n: int | None, snapshot: Snapshot, loc: Sequence[str | int]) -> int:
    """The requested depth, defaulting to min(DEFAULT_N, N); 422 when outside 1..N."""
    if n is None:
        return min(DEFAULT_N, snapshot.n)
    if not 1 <= n <= snapshot.n:
        raise client_error(loc, f"n must be between 1 and {snapshot.n} (the cache depth N); got {n}", "less_than_equal")
    return n


def audience(snapshot: Snapshot, product_id: int | str, n: int) -> dict[str, Any]:
    """The response dict for one product: top-n customers with score and rank, plus the cold-start flag.

    Scores stay numpy float32 scalars so `dumps` prints 0.50422937, not float64 noise (0.5042293667793274).
    """
    customers, scores, cold_start = snapshot.lookup.top(product_id, n)
    recs = [
        {"customer_id": c, "score": s, "rank": r}
        for r, (c, s) in enumerate(zip(customers.tolist(), list(scores), strict=True), start=1)
    ]
    return {
        "product_id": product_id,
        "recommendations": recs,
        "count": len(recs),
        "cold_start": bool(cold_start),
        "basis": snapshot.lookup.basis(product_id),
        "model": snapshot.version,
    }
