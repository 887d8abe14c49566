"""Tiny hand-made caches for the service's tests (real writer, real ranker, known data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.cache.build import build_cache
from recsys.cache.lookup import audience_path
from recsys.cache.manifest import CacheManifest
from recsys.data.contract import DATE_DTYPE

TINY_RANKER = "activity"
TINY_N = 5


def tiny_interactions(variant: int = 0, string_ids: bool = False) -> pd.DataFrame:
    """A canonical interactions table of 8 customers x 5 products; `variant` 1 reshuffles who did what.

    Every customer has some history; each product has a few interactions; one wishlist row is
    undated (NaT) as in the case-study log. With `string_ids` product ids are SKU-like strings.
    """
    rows: list[tuple[int, int, str, str | None]] = [
        (1, 101, "purchased", "2024-01-02"),
        (1, 102, "view", "2024-01-03"),
        (2, 101, "cart", "2024-01-04"),
        (2, 103, "purchased", "2024-01-05"),
        (3, 102, "rating", "2024-01-06"),
        (3, 104, "view", "2024-01-07"),
        (4, 103, "view", "2024-01-08"),
        (4, 105, "purchased", "2024-01-09"),
        (5, 101, "view", "2024-01-10"),
        (5, 104, "search_keyword", "2024-01-11"),
        (6, 105, "wishlist", None),
        (6, 102, "purchased", "2024-01-12"),
        (7, 103, "cart", "2024-01-13"),
        (7, 101, "purchased", "2024-01-14"),
        (8, 104, "purchased", "2024-01-15"),
        (8, 101, "view", "2024-01-16"),
        (1, 101, "view", "2024-01-17"),
        (2, 102, "view", "2024-01-18"),
    ]
    if variant:
        rows = [(c, 101 + (p - 101 + c) % 5, e, d) for c, p, e, d in rows]
        rows += [(9, 101, "purchased", "2024-02-01"), (9, 102, "view", "2024-02-02"), (3, 105, "cart", "2024-02-03")]
    frame = pd.DataFrame(rows, columns=["customer_id", "product_id", "event", "event_date"])
    frame["customer_id"] = frame["customer_id"].astype("int32")
    if string_ids:
        frame["product_id"] = ("SKU" + frame["product_id"].astype(str) + "A").astype("string[pyarrow]")
    else:
        frame["product_id"] = frame["product_id"].astype("int32")
    frame["product_name"] = pd.Categorical("item " + frame["product_id"].astype(str))
    frame["event"] = pd.Categorical(frame["event"])
    frame["event_date"] = pd.to_datetime(frame["event_date"], utc=True).astype(DATE_DTYPE)
    return frame[["customer_id", "product_id", "product_name", "event", "event_date"]]


def build_tiny_cache(
    cache_dir: Path,
    frame: pd.DataFrame,
    n: int = TINY_N,
    ranker: str = TINY_RANKER,
    params: dict[str, Any] | None = None,
) -> CacheManifest:
    """Build a real cache for `frame` with recsys.cache.build_cache; returns its manifest."""
    return build_cache(frame, ranker, params or {"seed": 0}, Path(cache_dir), n=n)


def client_score(value: Any) -> float:
    """A cached float32 score as a JSON client reads it: its shortest decimal form, parsed as a float."""
    return float(str(np.float32(value)))


def expected_audiences(cache_dir: Path) -> dict[Any, list[tuple[Any, float, int]]]:
    """Ground truth from audience.parquet: product id -> [(customer_id, score, rank), ...] in rank order.

    Scores are given as a JSON client reads them (`client_score`).
    """
    table = pd.read_parquet(audience_path(Path(cache_dir)))
    out: dict[Any, list[tuple[Any, float, int]]] = {}
    for pid, block in table.groupby("product_id", sort=True):
        block = block.sort_values("rank")
        out[pid if not hasattr(pid, "item") else pid.item()] = [
            (c.item() if hasattr(c, "item") else c, client_score(s), int(r))
            for c, s, r in zip(block["customer_id"], block["score"], block["rank"], strict=True)
        ]
    return out
