"""A campaign as one table for people: product id, product name, rank, customer, score, reason; settings in a header.

The ``recsys campaign`` CLI and the dashboard's campaign builder write the same table through
``recsys.exports`` (CSV-injection-safe cells, ``# key: value`` header lines): ``campaign_table`` builds it from an
allocated campaign (``recsys.allocation.result.CampaignResult``), ``campaign_header`` states the settings, the
cache version and the campaign's headline figures, so a file that travels alone says how it was made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from recsys.allocation.result import CampaignResult
from recsys.cache.manifest import CacheManifest

CSV_COLUMNS: tuple[str, ...] = ("product_id", "product_name", "rank", "customer_id", "score", "reason")


def product_names(prepared: Path) -> pd.Series:
    """Product id -> name (the first name of each product in the prepared table), read column-wise."""
    table = pq.read_table(prepared, columns=["product_id", "product_name"]).to_pandas()
    names = table.drop_duplicates("product_id").set_index("product_id")["product_name"].astype(object)
    out: pd.Series = names.where(names.notna(), "")
    return out


def campaign_table(
    result: CampaignResult,
    customer_ids: np.ndarray,
    names: Mapping[Any, Any] | pd.Series | None = None,
    reasons: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The long table of an allocated campaign (``CSV_COLUMNS``), products in request order, customers in rank order.

    `customer_ids` are the ids of the result's customer codes (``result.codes``); `reasons` one text per row (empty
    when None).
    """
    rows = result.long_rows()
    pids = np.asarray(result.problem.product_ids, dtype=object)[rows["row"]]
    lookup = names if isinstance(names, pd.Series) else pd.Series(dict(names or {}), dtype=object)
    mapped = pd.Series(pids, dtype=object).map(lookup).astype(object)
    product_name = mapped.where(mapped.notna(), "").to_numpy()
    if reasons is not None and len(reasons) != len(pids):
        raise ValueError(f"{len(reasons)} reasons for {len(pids)} rows")
    return pd.DataFrame(
        {
            "product_id": pids,
            "product_name": product_name,
            "rank": rows["rank"],
            "customer_id": np.asarray(customer_ids),
            "score": np.asarray(result.scores, dtype=np.float64).round(7),
            "reason": list(reasons) if reasons is not None else [""] * len(pids),
        },
        columns=list(CSV_COLUMNS),
    )


def campaign_header(result: CampaignResult, manifest: CacheManifest) -> dict[str, Any]:
    """The settings, the cache that answered and the headline figures, as ``# key: value`` header entries."""
    c, f = result.problem.campaign, result.figures
    return {
        "made_by": "recsys campaign allocation (recsys.allocation)",
        "cache_version": manifest.version,
        "dataset": manifest.dataset,
        "ranker": manifest.ranker,
        "candidate_depth": manifest.candidate_depth,
        "n": c.n,
        "max_per_customer": "uncapped" if c.max_per_customer is None else c.max_per_customer,
        "min_audience": c.min_audience,
        "excluded_customers": len(c.exclude_customers),
        "products_requested": f.products_requested,
        "products_known": f.products_known,
        "unknown_products": " ".join(str(p) for p in f.unknown_products),
        "slots_filled": f"{f.filled} of {f.slots}",
        "score_kept": f.score_kept,
        "customers": f.exposure.customers,
        "max_messages_per_customer": f.exposure.max_per_customer,
    }
