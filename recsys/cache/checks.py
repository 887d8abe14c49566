"""What the cache stage checks on the cache it built, as a typed record (``reports/metrics/cache.json``).

``recsys build-cache`` (stage ``cache``) builds the cache, then checks the written version — not the build's
memory — with vectorised numpy over the memory-mapped arrays and the prepared interactions:

- coverage: products with an audience, products with a full one (n customers), rows, customers ranked;
- the exclusion rule: served and candidate pairs whose customer already touched the product (must be 0);
- list order: scores never increase down a served or candidate list (ranks are 1..n by construction);
- exposure: the most served audiences one customer is in, and whether the catalogue-wide cap (if any) holds;
- what is served: the manifest's version, ranker, depths, allocation and measured figures (``served``).

The cache report (``notebooks/cache.ipynb``, stage ``cache_report``) renders this record and the manifest; it
computes nothing that is written anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.cache.lookup import AudienceLookup, positions
from recsys.cache.manifest import AllocationInfo, CacheExposure, Record, ServedFigures
from recsys.cache.writer import codes_in


class CacheChecks(Record):
    """The cache stage's checks of the written cache (module docstring)."""

    dataset: str | None
    version: str
    ranker: str
    n: int
    candidate_depth: int
    products: int
    catalogue: int
    rows: int
    candidate_rows: int
    customers_ranked: int
    products_with_full_audience_pct: float
    exclusion_violations: int | None  # None: the interactions were not readable here (a remote Spark input)
    candidate_exclusion_violations: int | None
    scores_non_increasing: bool
    max_exposures_served: int
    cap_respected: bool
    allocation: AllocationInfo
    served: ServedFigures
    exposure: CacheExposure
    audience_sha256: str


def touched_keys(arrays: Mapping[str, np.ndarray], interactions: pd.DataFrame) -> np.ndarray:
    """Sorted keys product_row * customers + customer_code of every (product, customer) pair of the log in the cache."""
    pairs = interactions[["product_id", "customer_id"]].drop_duplicates()
    rows = positions(arrays["product_ids"], pairs["product_id"].to_numpy())
    codes = positions(arrays["customer_vocab"], pairs["customer_id"].to_numpy())
    known = (rows >= 0) & (codes >= 0)
    return np.unique(rows[known] * np.int64(len(arrays["customer_vocab"])) + codes[known])


def violations(keys: np.ndarray, touched: np.ndarray) -> int:
    """How many pair keys are touched pairs."""
    return int(np.isin(keys, touched, assume_unique=False).sum()) if len(keys) and len(touched) else 0


def non_increasing(offsets: np.ndarray, scores: np.ndarray) -> bool:
    """True when scores never increase within any CSR block."""
    if len(scores) < 2:
        return True
    same = np.ones(len(scores) - 1, dtype=bool)
    same[offsets[1:-1][(offsets[1:-1] > 0) & (offsets[1:-1] < len(scores))] - 1] = False
    return bool((np.diff(scores.astype(np.float64))[same] <= 0).all())


def check_cache(cache_dir: Path, interactions: pd.DataFrame | None) -> CacheChecks:
    """Check the cache version at `cache_dir` against the interactions it was built from (module docstring)."""
    lookup = AudienceLookup.open(cache_dir)
    m = lookup.manifest
    arrays = lookup.arrays
    offsets, cand_offsets = arrays["offsets"], arrays["candidate_offsets"]
    product_rows = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
    cand_rows = np.repeat(np.arange(len(cand_offsets) - 1, dtype=np.int64), np.diff(cand_offsets))
    index = arrays["customer_vocab"]
    served_codes = (
        arrays["customers"].astype(np.int64)
        if m.id_kinds.customer_id == "str"
        else codes_in(index, arrays["customers"]).astype(np.int64)
    )
    u = np.int64(lookup.n_customers)
    served_keys = product_rows * u + served_codes
    cand_keys = cand_rows * u + arrays["candidate_customers"].astype(np.int64)
    touched = touched_keys(arrays, interactions) if interactions is not None else None
    exposures = np.bincount(served_codes, minlength=int(u)) if len(served_codes) else np.zeros(1, dtype=np.int64)
    sizes = np.diff(offsets)
    cap = m.allocation.max_exposures
    return CacheChecks(
        dataset=m.dataset,
        version=m.version,
        ranker=m.ranker,
        n=m.n,
        candidate_depth=m.candidate_depth,
        products=m.counts.products,
        catalogue=m.counts.catalogue,
        rows=m.counts.rows,
        candidate_rows=m.candidates.rows,
        customers_ranked=m.counts.customers_ranked,
        products_with_full_audience_pct=round(100.0 * float((sizes >= m.n).mean()), 4) if len(sizes) else 0.0,
        exclusion_violations=None if touched is None else violations(served_keys, touched),
        candidate_exclusion_violations=None if touched is None else violations(cand_keys, touched),
        scores_non_increasing=non_increasing(offsets, arrays["scores"])
        and non_increasing(cand_offsets, arrays["candidate_scores"]),
        max_exposures_served=int(exposures.max()),
        cap_respected=cap is None or int(exposures.max()) <= cap,
        allocation=m.allocation,
        served=m.served,
        exposure=m.exposure,
        audience_sha256=m.files.audience_sha256,
    )


def write_checks(checks: CacheChecks, path: Path) -> Path:
    """Write the checks as the cache stage's DVC metrics file (sorted keys: stable bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(checks.model_dump(mode="json"), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_checks(path: Path) -> CacheChecks:
    """Read the cache stage's checks (a clear error names the file and the fix)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"cache checks {path} not found: run `recsys build-cache` (or `dvc repro cache`)")
    return CacheChecks.model_validate_json(Path(path).read_text(encoding="utf-8"))
