"""The cache stage's entry point: params/cache.yaml -> the chosen engine's build (pandas here, Spark on request).

Kept apart from recsys.cache.build so that the pandas build never imports the Spark engine, which itself reuses
the pandas build's writers (no import cycle, not even a deferred one).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recsys import config
from recsys.cache.build import build_cache, fingerprint_file
from recsys.cache.lookup import AudienceLookup, CacheError
from recsys.cache.manifest import CacheManifest, Fingerprint
from recsys.cache.served import served_models
from recsys.data.contract import load_prepared
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
    """
    cache_params = config.load_params("cache")
    cache_params["cache"] = {**cache_params["cache"], **dict(overrides or {})}
    feature_params = config.load_params("features")
    cfg = cache_params["cache"]
    dataset = str(cfg.get("dataset") or config.DEFAULT_DATASET)
    engine = check_engine(str(cfg.get("engine") or "pandas"))
    main, _ = served_models(cfg, feature_params, dataset, selection)
    if engine == "spark":
        from recsys.engines.spark.build import build_cache_spark_from_params

        spark_params = {**cache_params, "cache": {**cfg, "ranker": main.ranker}}
        return build_cache_spark_from_params(spark_params, main.params, prepared_path, cache_dir)
    path = Path(prepared_path) if prepared_path else config.dataset_paths(dataset).interactions
    interactions = load_prepared(path)
    return build_cache(
        interactions,
        main.ranker,
        main.params,
        Path(cache_dir) if cache_dir else config.CACHE_DIR,
        n=int(cfg.get("n", 100)),
        export=cfg.get("export") or None,
        fingerprint=Fingerprint(algorithm="sha256-file", value=fingerprint_file(path)),
        source=config.relative(path),
        keep=int(cfg.get("keep_lookup_dirs", 2)),
        allocation=cfg.get("allocation"),
        exposure=cfg.get("exposure"),
        seed=int(cfg.get("seed", 0)),
        dataset=config.dataset_of(path, dataset),
        processes=check_processes(cfg.get("processes", 1), "params/cache.yaml: cache.processes"),
        model_source=main.source,
        model_label=main.label,
    )


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
