"""The pandas build of the audience cache: fit the ranker, rank every product, write through the shared writer.

Every product of the served data set is ranked ``cache.candidates`` deep (M >= n) once: that ranking is the
candidate lists campaigns allocate from, and its first ``cache.n`` entries are the served audiences (each
product's own ranking, uncapped: the default). With ``cache.allocation.max_exposures`` set (an option, off by
default), the served audiences are instead allocated catalogue-wide so that no customer is in more than that
many of them (``recsys.allocation.catalogue``; optionally ``min_audience`` per product); the candidates stay
each product's own ranking either way. The global fallback served for unseen product ids is the ranker's plain
global order, uncapped: it answers ad-hoc lookups, it is not a campaign audience.

What the measured precision of the served configuration is, and where it comes from, is decided by
``recsys.cache.figures`` and handed in (``served``); the files are written by ``recsys.cache.writer`` (the layout
is its docstring), the manifest is ``recsys.cache.manifest``'s, the stage's params handling is
``recsys.cache.stage``'s. Same inputs and params give a byte-identical artifact directory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from recsys import config
from recsys.allocation.catalogue import AllocationParams, allocate, truncate
from recsys.allocation.exposure import DEFAULT_KS, exposure_metrics, returning_customers
from recsys.cache.facts import ranker_extras
from recsys.cache.manifest import (
    AllocationInfo,
    AllocationStats,
    BuildInfo,
    CacheExposure,
    CacheManifest,
    CatalogueFile,
    EngineInfo,
    ExposureSide,
    Fingerprint,
    InputCounts,
    NewProductsInfo,
    ServedFigures,
    read_manifest,
)
from recsys.cache.writer import LOCK_WAIT_S, concat_recommendations, jsonable, write_cache
from recsys.data.catalogue import Catalogue
from recsys.data.contract import CANONICAL_COLUMNS
from recsys.data.ids import id_array as as_id_array
from recsys.data.ids import id_kind
from recsys.rankers import Ranker, Recommendations, make_ranker
from recsys.rankers.base import parallel_ranking

NOT_MEASURED = ServedFigures(
    status="not_measured",
    what="the served lists",
    reason="the cache was built without an evaluation to compare with (recsys.cache.figures)",
)


def fingerprint_frame(interactions: pd.DataFrame) -> str:
    """sha256 of a table's canonical content, independent of row order."""
    cols = [c for c in CANONICAL_COLUMNS if c in interactions.columns]
    row_hashes = pd.util.hash_pandas_object(interactions[cols], index=False).to_numpy()
    return hashlib.sha256(np.sort(row_hashes).tobytes()).hexdigest()


def canonical_order(interactions: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by customer, product, date, event: float sums, hence the cache bytes, ignore input row order."""
    keys = [
        c for c in ("customer_id", "product_id", "event_date", "event", "product_name") if c in interactions.columns
    ]
    return interactions.sort_values(keys, kind="stable", na_position="last", ignore_index=True)


def catalogue_ids(interactions: pd.DataFrame) -> np.ndarray:
    """Every distinct product id of the interactions, sorted ascending."""
    ids = as_id_array(pd.unique(interactions["product_id"]))
    return np.sort(ids, kind="stable")


def cold_sentinel(catalogue: np.ndarray) -> Any:
    """A product id of the catalogue's kind that is not in the catalogue (asks a ranker for its global order)."""
    if id_kind(catalogue) == "int":
        return int(catalogue.max()) + 1 if len(catalogue) else 0
    sentinel = "\x00cold-start"
    while np.any(catalogue == sentinel):
        sentinel += "\x00"
    return sentinel


# ----------------------------------------------------------------------------------------------
# building
# ----------------------------------------------------------------------------------------------


def global_fallback(ranker: Ranker, catalogue: np.ndarray, n: int) -> Recommendations:
    """The ranker's answer for a product it never saw: its global order, used for cold-start lookups."""
    return ranker.rank(
        np.asarray([cold_sentinel(catalogue)], dtype=object if id_kind(catalogue) == "str" else np.int64), n
    )


def ranked_audiences(
    ranker: Any, catalogue: np.ndarray, n: int, allocation: AllocationParams
) -> tuple[Recommendations, Recommendations, Recommendations, dict[str, Any]]:
    """(served audiences, candidates, the ranker's own top-n, allocation stats) of every catalogue product.

    The catalogue is ranked ``allocation.candidates`` deep once; served = its first n, unless a catalogue-wide cap
    is set (``allocation.max_exposures``), which allocates the served audiences from those candidates.
    """
    allocation.check(n)
    candidates = ranker.rank(catalogue, allocation.candidates)
    own = truncate(candidates, n) if allocation.candidates > n else candidates
    if allocation.max_exposures is None:
        return own, candidates, own, {"capped": False}
    result = allocate(candidates, ranker, n, allocation)
    return result.recommendations, candidates, own, result.stats


def allocation_info(params: AllocationParams, n: int, seed: int, stats: Mapping[str, Any]) -> AllocationInfo:
    """The manifest's allocation block: the settings, the depth and seed, and what the allocation did."""
    return AllocationInfo(
        **params.to_dict(), depth=int(n), seed=int(seed), stats=AllocationStats.from_stats(dict(stats))
    )


def uncapped_allocation(allocation: Mapping[str, Any] | None, n: int, seed: int) -> AllocationInfo:
    """The manifest's allocation block of a cache that serves every product's uncapped top-n."""
    params = AllocationParams.from_params({**dict(allocation or {}), "max_exposures": None}, seed=seed)
    return allocation_info(params, n, seed, {"capped": False})


def exposure_summary(
    served: Recommendations,
    uncapped: Recommendations,
    reachable: np.ndarray,
    n: int,
    exposure: Mapping[str, Any] | None,
    seed: int,
) -> CacheExposure:
    """Exposure metrics of the uncapped top-n and of the served audiences (cut-offs above n use the whole list);
    `reachable` = ids of the customers with dated events on >= 2 distinct days (``returning_customers``)."""
    cfg = dict(exposure or {})
    unknown = sorted(set(cfg) - {"ks", "pairs"})
    if unknown:
        raise ValueError(f"cache.exposure: unknown key(s) {unknown}; expected ['ks', 'pairs']")
    ks = sorted({min(int(k), n) for k in cfg.get("ks", DEFAULT_KS)})
    kwargs: dict[str, Any] = {"reachable": reachable, "pairs": int(cfg.get("pairs", 10_000)), "seed": seed}
    before = ExposureSide.model_validate(exposure_metrics(uncapped, ks, **kwargs).to_dict())
    after = (
        before if served is uncapped else ExposureSide.model_validate(exposure_metrics(served, ks, **kwargs).to_dict())
    )
    return CacheExposure(reachable="customers with dated events on >= 2 distinct days", uncapped=before, served=after)


def build_cache(
    interactions: pd.DataFrame,
    ranker_name: str,
    ranker_params: Mapping[str, Any] | None,
    cache_dir: Path,
    *,
    n: int = 100,
    candidates: int | None = None,
    export: str | None = None,
    fingerprint: Fingerprint | None = None,
    source: str | None = None,
    keep: int = 2,
    allocation: Mapping[str, Any] | None = None,
    exposure: Mapping[str, Any] | None = None,
    seed: int = 0,
    dataset: str | None = None,
    processes: int = 1,
    served: ServedFigures | None = None,
    model_source: Literal["selection", "override"] | None = None,
    model_label: str | None = None,
    lock_wait_s: float = LOCK_WAIT_S,
    new_products: NewProductsModel | None = None,
    catalogue: Catalogue | None = None,
    catalogue_file: CatalogueFile | None = None,
) -> CacheManifest:
    """Fit `ranker_name`, rank every product `candidates` deep (default n), serve its top-n and write the cache.

    `allocation` is the optional catalogue-wide cap (cache.allocation: max_exposures, min_audience); `served` what is
    measured of the served configuration (``recsys.cache.figures``; default: not measured). `dataset` names the data
    set the interactions come from (params/prepare.yaml: datasets), recorded in the manifest. `processes` forked
    workers rank the catalogue (block rankers: content, itemknn); the cache does not depend on it.
    `new_products` is the model of products without fit rows: it ranks the `catalogue`'s products that are not in
    the log (from their names) and its name index answers names never seen (``/audiences/by-name``); without it,
    the served ranker does both when it reads names.
    """
    if n < 1:
        raise ValueError(f"cache depth n must be >= 1, got {n} (params/cache.yaml: cache.n)")
    depth = n if candidates is None else int(candidates)
    if depth < n:
        raise ValueError(f"cache.candidates must be >= cache.n={n}, got {depth} (params/cache.yaml)")
    alloc = AllocationParams.from_params(allocation, seed=seed, candidates=depth)
    alloc.check(n)
    interactions = canonical_order(interactions)
    ranker = make_ranker(ranker_name, dict(ranker_params or {})).fit(interactions)
    names_ranker, names_label = names_model(ranker, ranker_name, ranker_params, model_label, new_products, interactions)
    catalogue_products = catalogue_ids(interactions)
    with parallel_ranking(processes):
        recs, lists, own, stats = ranked_audiences(ranker, catalogue_products, n, alloc)
        new_ids = new_catalogue_ids(catalogue, catalogue_products)
        if len(new_ids):
            new_lists = (names_ranker or ranker).rank(new_ids, depth, catalogue)
            new_recs = truncate(new_lists, n)
            recs, lists, own = (
                concat_recommendations(pair) for pair in ((recs, new_recs), (lists, new_lists), (own, new_recs))
            )
    fallback = global_fallback(ranker, catalogue_products, n)
    by_name = names_ranker.name_index(names_label) if hasattr(names_ranker, "name_index") else None
    meta = BuildInfo(
        dataset=dataset,
        ranker=ranker_name,
        ranker_params=jsonable(dict(ranker_params or {})),
        model_source=model_source,
        model_label=model_label,
        n=int(n),
        engine=EngineInfo(name="pandas"),
        fingerprint=fingerprint or Fingerprint(algorithm="sha256-rows", value=fingerprint_frame(interactions)),
        source=source,
        counts=InputCounts(
            interactions=int(len(interactions)),
            customers=int(interactions["customer_id"].nunique()),
            catalogue=int(len(catalogue_products)),
            new_catalogue=int(len(new_ids)),
        ),
        new_products=None
        if names_ranker is None
        else NewProductsInfo(
            ranker=str(names_ranker.name),
            ranker_params=jsonable(dict(names_ranker.params)),
            label=names_label,
            by_name=by_name is not None,
        ),
        catalogue_file=catalogue_file,
        allocation=allocation_info(alloc, n, seed, stats),
        candidate_depth=depth,
        served=served or NOT_MEASURED,
    )
    facts = exposure_summary(recs, own, returning_customers(interactions), n, exposure, seed)
    params = dict(ranker_params or {})
    return write_cache(
        recs,
        lists,
        fallback,
        cache_dir,
        meta,
        facts,
        export=export,
        keep=keep,
        lock_wait_s=lock_wait_s,
        reasons=lambda vocab: ranker_extras(ranker, interactions, params, vocab, by_name, names_ranker is ranker),
    )


@dataclass(frozen=True)
class NewProductsModel:
    """The model of products without fit rows: registered ranker, make_ranker params, the evaluation's label."""

    ranker: str
    params: Mapping[str, Any]
    label: str | None = None


def names_model(
    ranker: Any,
    ranker_name: str,
    ranker_params: Mapping[str, Any] | None,
    label: str | None,
    new_products: NewProductsModel | None,
    interactions: pd.DataFrame,
) -> tuple[Any, str | None]:
    """(fitted ranker of products without fit rows, its label): the served one when it is the same model."""
    if new_products is None:
        return (ranker, label) if getattr(ranker, "uses_names", False) else (None, None)
    if new_products.ranker == ranker_name and dict(new_products.params) == dict(ranker_params or {}):
        return ranker, new_products.label
    return make_ranker(new_products.ranker, dict(new_products.params)).fit(interactions), new_products.label


def new_catalogue_ids(catalogue: Catalogue | None, known: np.ndarray) -> np.ndarray:
    """The catalogue's products that are not in the log (sorted), of the log's id kind."""
    if catalogue is None or len(catalogue) == 0:
        return known[:0]
    if catalogue.id_kind != id_kind(known):
        raise ValueError(
            f"the new-products catalogue has {catalogue.id_kind} product ids but the log has {id_kind(known)} ids "
            "(params/cache.yaml: cache.catalogue)"
        )
    return np.asarray(catalogue.product_ids[~np.isin(catalogue.product_ids, known)])


def cache_facts(cache_dir: Path) -> dict[str, Any]:
    """Version, shape and on-disk size of a cache (for benchmark and load-test reports)."""
    manifest = read_manifest(cache_dir)
    size = sum(p.stat().st_size for p in (cache_dir / manifest.lookup_dir).glob("*.npy"))
    return {
        "dir": config.relative(cache_dir),
        "version": manifest.version,
        "ranker": manifest.ranker,
        "n": manifest.n,
        "products": manifest.counts.products,
        "rows": manifest.counts.rows,
        "lookup_arrays_mb": round(size / 2**20, 1),
    }
