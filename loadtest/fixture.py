"""What the locust users need to know about the serving cache: ids, audience sizes, unknown ids, an exclusion sample."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recsys import config
from recsys.cache.manifest import CacheManifest


def tiny_cache(work: Path) -> tuple[Path, Path]:
    """A tiny real cache (8 customers x 5 products, N=100) plus its interactions Parquet, under `work`."""
    from service.testing import build_tiny_cache, tiny_interactions

    frame = tiny_interactions()
    prepared = work / "interactions.parquet"
    frame.to_parquet(prepared)
    build_tiny_cache(work / "cache", frame, n=100)
    return work / "cache", prepared


def unknown_product_ids(ids: np.ndarray, count: int, rng: np.random.Generator) -> list[Any]:
    """`count` ids of the cache's kind that the cache does not contain (they must come back cold_start)."""
    if ids.dtype.kind in "iu":
        top = int(ids.max()) if len(ids) else 0
        return (top + 1 + rng.choice(10**6, size=count, replace=False)).tolist()
    known = set(ids.tolist())
    out = [f"unknown-{rng.integers(0, 2**62):x}" for _ in range(count)]
    return [u for u in out if u not in known]


def source_mismatch(manifest: CacheManifest, prepared: Path) -> str | None:
    """Why `prepared` is not the data the cache was fitted on (exclusion would not hold), or None."""
    from recsys.cache.build import fingerprint_frame
    from recsys.cache.writer import fingerprint_file
    from recsys.data.contract import load_prepared

    fp = manifest.fingerprint
    if fp.algorithm == "sha256-file":
        same = fingerprint_file(prepared) == fp.value
    elif fp.algorithm == "sha256-rows":
        same = fingerprint_frame(load_prepared(prepared)) == fp.value
    else:
        return f"the cache's fingerprint ({fp.algorithm}) cannot be checked against a local file"
    return None if same else f"{prepared} is not the data this cache was built from (fingerprint differs)"


def exclusion_sample(
    prepared: Path, manifest: CacheManifest, pool: list[Any], spot: int, rng: np.random.Generator
) -> tuple[dict[str, list[Any]], str | None]:
    """Customers who interacted with each of `spot` products (half the most-interacted, half random from `pool`)."""
    import pandas as pd

    if not prepared.is_file():
        return {}, f"{prepared} not found: exclusion spot-check skipped (run the prepare stage first)"
    mismatch = source_mismatch(manifest, prepared)
    if mismatch:
        return {}, f"exclusion spot-check skipped: {mismatch}"
    table = pd.read_parquet(prepared, columns=["product_id", "customer_id"])
    counts = table["product_id"].value_counts()
    popular = counts.index[: spot // 2].tolist()
    taken = set(popular)
    rest = [p for p in pool if p not in taken]
    chosen = popular + [rest[i] for i in rng.choice(len(rest), size=min(spot - len(popular), len(rest)), replace=False)]
    chosen_set = set(chosen)
    picked = table[table["product_id"].isin(chosen_set)]
    grouped = picked.groupby("product_id", observed=True)["customer_id"].unique()
    return {str(pid): sorted(np.asarray(cs).tolist()) for pid, cs in grouped.items()}, None


def build_fixture(
    cache_dir: Path | None = None, prepared: Path | None = None, *, sample: int = 10_000, spot: int = 100, seed: int = 0
) -> dict[str, Any]:
    """Ids, audience sizes, unknown ids and an exclusion sample for the locust users (JSON-ready)."""
    from recsys.cache.lookup import AudienceLookup

    lookup = AudienceLookup.open(cache_dir or config.CACHE_DIR)
    ids = np.asarray(lookup.product_ids())
    rng = np.random.default_rng(seed)
    known = ids[np.sort(rng.choice(len(ids), size=min(sample, len(ids)), replace=False))].tolist()
    unknown = unknown_product_ids(ids, 100, rng)
    exclusion, skipped = exclusion_sample(prepared or config.PREPARED_PARQUET, lookup.manifest, known, spot, rng)
    exclusion = {k: v for k, v in exclusion.items() if lookup.known(int(k) if lookup.id_kind == "int" else k)}
    available: dict[str, list[Any]] = {}
    for pid in [*known, *(int(k) if lookup.id_kind == "int" else k for k in exclusion)]:
        customers, _, cold = lookup.top(pid, lookup.n)
        available[str(pid)] = [int(len(customers)), bool(cold)]
    return {
        "known_ids": known,
        "available": available,
        "unknown_ids": unknown,
        "fallback_size": int(len(lookup.top(unknown[0], lookup.n)[0])),
        "n_max": int(lookup.n),
        "exclusion": exclusion,
        "exclusion_skipped": skipped,
        "seed": seed,
    }
