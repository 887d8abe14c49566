"""The cache stage's entry point: params/cache.yaml -> the chosen engine's build (pandas here, Spark on request).

Kept apart from recsys.cache.build so that the pandas build never imports the Spark engine, which itself reuses
the pandas build's writers (no import cycle, not even a deferred one).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from recsys import config
from recsys.cache.build import NewProductsModel, build_cache
from recsys.cache.checks import CacheChecks, check_cache
from recsys.cache.figures import served_figures
from recsys.cache.lookup import AudienceLookup, CacheError
from recsys.cache.manifest import CacheManifest, CatalogueFile, Fingerprint
from recsys.cache.served import served_models
from recsys.cache.writer import fingerprint_file
from recsys.data.catalogue import Catalogue, read_catalogue
from recsys.data.contract import load_prepared
from recsys.data.ids import id_kind
from recsys.engines import check_engine
from recsys.parallel import check_processes


def build_cache_from_params(
    prepared_path: Path | str | None = None,
    cache_dir: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    selection: Path | None = None,
) -> CacheManifest:
    """Build the cache from params (cache, features), the evaluation's selection and the prepared Parquet.

    The served model is the evaluate stage's validation selection unless `cache.ranker` names a ranker
    (recsys.cache.served). `overrides` replaces keys of the `cache` block (e.g. {"ranker": "activity", "n": 50});
    `selection` replaces the served data set's selection file.
    With ``cache.engine: spark`` the build runs on Spark (recsys.engines.spark; `prepared_path` may be a URI).
    The manifest records what is measured of the served configuration (``recsys.cache.figures``).
    """
    cache_params = config.load_params("cache")
    cache_params["cache"] = {**cache_params["cache"], **dict(overrides or {})}
    feature_params = config.load_params("features")
    cfg = cache_params["cache"]
    dataset = str(cfg.get("dataset") or config.DEFAULT_DATASET)
    engine = check_engine(str(cfg.get("engine") or "pandas"))
    main, new = served_models(cfg, feature_params, dataset, selection)
    if engine == "spark":
        from recsys.engines.spark.build import build_cache_spark_from_params

        spark_params = {**cache_params, "cache": {**cfg, "ranker": main.ranker}}
        return build_cache_spark_from_params(spark_params, main.params, prepared_path, cache_dir)
    path = Path(prepared_path) if prepared_path else config.dataset_paths(dataset).interactions
    interactions = load_prepared(path)
    catalogue, catalogue_file = new_products_catalogue(cfg.get("catalogue"), interactions)
    n = int(cfg.get("n", 100))
    served_from = config.dataset_of(path, dataset)
    served = served_figures(
        dataset=served_from,
        ranker=main.ranker,
        params=main.params,
        n=n,
        max_exposures=(cfg.get("allocation") or {}).get("max_exposures"),
        feature_params=feature_params,
    )
    return build_cache(
        interactions,
        main.ranker,
        main.params,
        Path(cache_dir) if cache_dir else config.CACHE_DIR,
        n=n,
        candidates=int(cfg.get("candidates", n)),
        served=served,
        export=cfg.get("export") or None,
        fingerprint=Fingerprint(algorithm="sha256-file", value=fingerprint_file(path)),
        source=config.relative(path),
        keep=int(cfg.get("keep_lookup_dirs", 2)),
        allocation=cfg.get("allocation"),
        exposure=cfg.get("exposure"),
        seed=int(cfg.get("seed", 0)),
        dataset=served_from,
        processes=check_processes(cfg.get("processes", 1), "params/cache.yaml: cache.processes"),
        model_source=main.source,
        model_label=main.label,
        new_products=None if new is None else NewProductsModel(new.ranker, new.params, new.label),
        catalogue=catalogue,
        catalogue_file=catalogue_file,
    )


def new_products_catalogue(
    path: str | None, interactions: pd.DataFrame
) -> tuple[Catalogue | None, CatalogueFile | None]:
    """The catalogue of products not yet in the log (params/cache.yaml: cache.catalogue), or (None, None).

    Bad rows are set aside with their reason (recsys.data.catalogue) and counted in the manifest; nothing is dropped
    silently.
    """
    if not path:
        return None, None
    resolved = config.resolve(path)
    catalogue, _, report = read_catalogue(resolved, id_kind(interactions["product_id"]))
    info = CatalogueFile(
        path=config.relative(resolved), rows_in=report.rows_in, kept=report.kept, rejected=dict(report.rejected)
    )
    if report.rejected:
        print(f"cache: catalogue {info.path}: set aside {report.rejected}", flush=True)
    return catalogue, info


def prepared_input(prepared_path: Path | str | None = None) -> Path | None:
    """The local prepared Parquet the cache is built from (None for a URI: a remote Spark input)."""
    if prepared_path is not None and "://" in str(prepared_path):
        return None
    cfg = config.load_params("cache")["cache"]
    dataset = str(cfg.get("dataset") or config.DEFAULT_DATASET)
    path = Path(prepared_path) if prepared_path else config.dataset_paths(dataset).interactions
    return path if path.is_file() else None


def check_built(cache_dir: Path | None = None, prepared_path: Path | str | None = None) -> CacheChecks:
    """The checks of the cache at `cache_dir` against the prepared interactions it was built from (when local)."""
    local = prepared_input(prepared_path)
    return check_cache(Path(cache_dir) if cache_dir else config.CACHE_DIR, load_prepared(local) if local else None)


def open_or_build(cache_dir: Path) -> dict[str, Any]:
    """Open the cache at `cache_dir`; build it from params only when it does not open (missing, older format)."""
    try:
        AudienceLookup.open(cache_dir)
        return {"built": False}
    except CacheError as exc:
        print(f"{exc}\nbuilding it with recsys.cache.stage.build_cache_from_params() ...", flush=True)
    t0 = time.perf_counter()
    build_cache_from_params(cache_dir=cache_dir)
    return {"built": True, "build_s": round(time.perf_counter() - t0, 2)}
