"""The cache build on Spark: read the canonical interactions, rank every product's top-n, write the same artifact.

Ported rankers: ``activity`` and ``recency`` (exact parity with the pandas engine: ids and ranks equal,
scores within 1e-9) and ``als`` (MLlib ALS; invariants only, see recsys.engines.spark.als). Not ported:
``content`` (single-machine only, see README "Scaling out (Spark)"), ``random`` (numpy's PCG64 stream
cannot be reproduced per customer in Spark, and it is a baseline), ``bpr`` and ``bgnbd`` (no Spark
implementation). Asking for one of them raises a ValueError naming the engine switch.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys import config
from recsys.cache.build import NOT_MEASURED, exposure_summary, uncapped_allocation
from recsys.cache.figures import served_figures
from recsys.cache.manifest import BuildInfo, CacheExposure, CacheManifest, EngineInfo, InputCounts, ServedFigures
from recsys.cache.writer import arrays_recommendations, jsonable
from recsys.engines.spark import als as spark_als
from recsys.engines.spark.features import customer_features
from recsys.engines.spark.io import fingerprint, read_interactions
from recsys.engines.spark.session import SparkSettings, join_uri, local_path, spark_session
from recsys.engines.spark.topn import TopOrder, customer_pairs, global_top_n, max_own, take_order
from recsys.engines.spark.writer import StagedAudience, write_staged_cache
from recsys.features.engagement import FeatureParams

SPARK_RANKERS: tuple[str, ...] = ("activity", "als", "recency")
log = logging.getLogger(__name__)


def check_ranker(name: str) -> None:
    """Raise a clear error for rankers the Spark engine does not have."""
    if name not in SPARK_RANKERS:
        raise ValueError(
            f"ranker {name!r} is not available on the spark engine (available: {list(SPARK_RANKERS)}); "
            "use cache.engine: pandas for it (params/cache.yaml, or --engine pandas)"
        )


def global_sort(ranker: str) -> list[Column]:
    """Sort order of the global rankers: score descending, the pandas tie-breaks, then ascending customer id."""
    if ranker == "recency":
        keys = [F.col("score").desc(), F.col("last_key").desc(), F.col("engagement").desc()]
    else:
        keys = [F.col("score").desc()]
    return keys + [F.col("customer_id").asc()]


def global_order(feats: DataFrame, ranker: str) -> DataFrame:
    """(customer_id, score, tie-break columns) of the activity or recency order."""
    if ranker == "recency":
        return feats.select(
            "customer_id",
            F.col("recency").alias("score"),
            F.col("last_us").cast("double").alias("last_key"),
            "engagement",
        )
    return feats.select("customer_id", F.col("engagement").alias("score"))


def rank_products(
    spark: SparkSession,
    rows: DataFrame,
    pairs: DataFrame,
    catalogue: DataFrame,
    ranker: str,
    params: Mapping[str, Any],
    n: int,
    n_customers: int,
    partitions: int,
    parts: int,
) -> tuple[DataFrame, TopOrder]:
    """(ranked rows range-partitioned by product into `parts`, cold-start fallback order) for one ranker."""
    if ranker == "als":
        model, users, items = spark_als.fit(rows, params, partitions)
        ranked = spark_als.top_n(model, pairs, users, items, n, n_customers).persist()  # sampled, then shuffled
        order = spark_als.global_order(model, pairs, users, items)
        fallback = take_order(order, global_sort("als"), min(n, n_customers))
        return ranked.repartitionByRange(parts, "product_id"), fallback
    feats = customer_features(rows, FeatureParams.from_params(params.get("features")), partitions).persist()
    order = global_order(feats, ranker)
    top = take_order(order, global_sort(ranker), min(n + max_own(pairs), n_customers))
    ranked = global_top_n(spark, catalogue, pairs, top, n, parts)
    k = min(n, len(top))
    return ranked, TopOrder(top.customer_ids[:k], top.scores[:k], top.customer_type)


def output_parts(n_products: int, n: int, settings: SparkSettings) -> int:
    """Number of staged part files: about rows_per_output_partition ranked rows each."""
    return max(1, math.ceil(n_products * n / settings.rows_per_output_partition))


def stage(
    spark: SparkSession, ranked: DataFrame, catalogue: DataFrame, fallback: TopOrder, uri: str, n: int
) -> StagedAudience:
    """Write the (range-partitioned) ranked rows sorted by (product_id, rank) under `uri`; collect sizes, vocabulary.

    The rows are each product's candidates; the served audiences are their first `n` (the writer splits them)."""
    target = join_uri(uri, "audience")
    ranked.sortWithinPartitions("product_id", "rank").write.mode("errorifexists").parquet(target)
    written = spark.read.parquet(target)
    counts = written.groupBy("product_id").agg(F.count(F.lit(1)).alias("size"))
    sizes = (
        catalogue.join(counts, "product_id", "left")
        .select("product_id", F.coalesce(F.col("size"), F.lit(0)).cast("long").alias("size"))
        .orderBy("product_id")
        .toArrow()
    )
    product_type = catalogue.schema["product_id"].dataType
    customer_type = written.schema["customer_id"].dataType if len(written.columns) else fallback.customer_type
    product_ids = sizes.column("product_id").to_numpy(zero_copy_only=False)
    if isinstance(product_type, T.StringType):
        product_ids = np.asarray(sizes.column("product_id").to_pylist(), dtype=object)
    distinct = written.select("customer_id").distinct().toArrow().column(0)
    fallback_ids = fallback.customer_ids[:n]
    if isinstance(customer_type, T.StringType):
        ranked_ids = {str(v) for v in distinct.to_pylist()} | {str(v) for v in fallback_ids.tolist()}
        vocab = np.asarray(sorted(ranked_ids), dtype=object)
    else:
        ints = np.asarray(distinct.to_numpy(zero_copy_only=False), dtype=np.int64)
        vocab = np.unique(np.concatenate([ints, np.asarray(fallback_ids, dtype=np.int64)]))
    customer_dtype: np.dtype[Any] = (
        np.dtype(np.int32) if isinstance(customer_type, T.IntegerType) else np.dtype(np.int64)
    )
    if isinstance(customer_type, (T.ShortType, T.ByteType)):
        customer_dtype = np.dtype(np.int16) if isinstance(customer_type, T.ShortType) else np.dtype(np.int8)
    return StagedAudience(
        uri=target,
        n=int(n),
        product_ids=np.asarray(product_ids),
        sizes=np.asarray(sizes.column("size").to_numpy(zero_copy_only=False), dtype=np.int64),
        customer_dtype=customer_dtype,
        vocab=vocab,
        fallback_ids=fallback_ids,
        fallback_scores=fallback.scores[:n],
    )


@dataclass(frozen=True)
class Inputs:
    """The interactions read once, with what every ranker needs: who touched what, the catalogue, counts."""

    rows: DataFrame
    pairs: DataFrame
    catalogue: DataFrame
    n_rows: int
    n_products: int
    n_customers: int

    @classmethod
    def read(cls, spark: SparkSession, uri: str) -> Inputs:
        """Read and persist the canonical interactions at `uri`; an empty table is an error."""
        rows = read_interactions(spark, uri).persist()
        counts = rows.agg(
            F.count(F.lit(1)).alias("rows"),
            F.countDistinct("product_id").alias("products"),
            F.countDistinct("customer_id").alias("customers"),
        ).first()
        if counts is None or int(counts["rows"]) == 0:
            raise ValueError(f"cannot fit a ranker on an empty interactions table ({uri})")
        pairs = customer_pairs(rows).persist()
        catalogue = pairs.select("product_id").distinct().persist()
        return cls(rows, pairs, catalogue, int(counts["rows"]), int(counts["products"]), int(counts["customers"]))

    def release(self) -> None:
        """Drop the persisted tables."""
        for frame in (self.rows, self.pairs, self.catalogue):
            frame.unpersist()


def rankings(
    spark: SparkSession, inputs: Inputs, ranker: str, params: Mapping[str, Any], n: int, partitions: int, parts: int = 1
) -> tuple[DataFrame, TopOrder]:
    """(product_id, rank, customer_id, score) of every catalogue product (range-partitioned into `parts`) and
    the cold-start fallback order."""
    check_ranker(ranker)
    return rank_products(
        spark, inputs.rows, inputs.pairs, inputs.catalogue, ranker, params, n, inputs.n_customers, partitions, parts
    )


def returning_customer_ids(rows: DataFrame) -> np.ndarray:
    """Ids of the customers with dated events on >= 2 distinct UTC days (``recsys.allocation.returning_customers``)."""
    days = F.to_date(F.col("event_date"))  # the session time zone is UTC (recsys.engines.spark.session)
    returning = (
        rows.where(F.col("event_date").isNotNull())
        .select("customer_id", days.alias("day"))
        .distinct()
        .groupBy("customer_id")
        .count()
        .where(F.col("count") >= 2)
        .select("customer_id")
        .toArrow()
    )
    ids = returning.column("customer_id").to_numpy(zero_copy_only=False)
    return np.sort(ids if ids.dtype.kind in "iu" else ids.astype(str).astype(object))


def remove_uri(spark: SparkSession, uri: str) -> None:
    """Delete a staging directory through Hadoop's FileSystem (any scheme Spark can write)."""
    jvm = spark.sparkContext._jvm
    if jvm is None:
        raise RuntimeError("the Spark session has no JVM gateway (was it stopped?)")
    path = jvm.org.apache.hadoop.fs.Path(uri)
    path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).delete(path, True)


def build_cache_spark(
    uri: str,
    ranker_name: str,
    ranker_params: Mapping[str, Any] | None,
    cache_dir: Path,
    *,
    n: int = 100,
    candidates: int | None = None,
    export: str | None = None,
    keep: int = 2,
    settings: SparkSettings | None = None,
    spark: SparkSession | None = None,
    source: str | None = None,
    allocation: Mapping[str, Any] | None = None,
    exposure: Mapping[str, Any] | None = None,
    seed: int = 0,
    dataset: str | None = None,
    served: ServedFigures | None = None,
) -> CacheManifest:
    """Fit `ranker_name` on Spark over the interactions at `uri`, rank every product `candidates` deep (default n),
    serve its top-n and write the cache.

    The served audiences are uncapped (the capped allocation is single-machine); the manifest records the same
    allocation and exposure facts as the pandas engine's, the exposure metrics computed from the written arrays.
    """
    if n < 1:
        raise ValueError(f"cache depth n must be >= 1, got {n} (params/cache.yaml: cache.n)")
    depth = n if candidates is None else int(candidates)
    if depth < n:
        raise ValueError(f"cache.candidates must be >= cache.n={n}, got {depth} (params/cache.yaml)")
    check_ranker(ranker_name)
    settings = settings or SparkSettings()
    spark = spark or spark_session(settings)
    params = dict(ranker_params or {})
    t0 = time.perf_counter()
    inputs = Inputs.read(spark, uri)
    run = f"recsys-staging-{uuid.uuid4().hex[:12]}"
    staging = (
        join_uri(settings.staging, run)
        if settings.staging
        else Path(cache_dir).resolve().parent.joinpath(f".{run}").as_uri()
    )
    log.info("spark build: read %d interactions in %.1f s", inputs.n_rows, time.perf_counter() - t0)
    try:
        t1 = time.perf_counter()
        parts = output_parts(inputs.n_products, depth, settings)
        ranked, fallback = rankings(spark, inputs, ranker_name, params, depth, settings.shuffle_partitions, parts)
        log.info("spark build: fitted %s (features, global order) in %.1f s", ranker_name, time.perf_counter() - t1)
        t1 = time.perf_counter()
        staged = stage(spark, ranked, inputs.catalogue, fallback, staging, n)
        log.info("spark build: ranked and staged %d rows in %.1f s", int(staged.sizes.sum()), time.perf_counter() - t1)
        t1 = time.perf_counter()
        meta = BuildInfo(
            dataset=dataset,
            ranker=ranker_name,
            ranker_params=jsonable(params),
            n=int(n),
            engine=EngineInfo(name="spark", spark_version=spark.version, master=spark.sparkContext.master),
            fingerprint=fingerprint(spark, uri, inputs.rows),
            source=source if source is not None else uri,
            counts=InputCounts(interactions=inputs.n_rows, customers=inputs.n_customers, catalogue=inputs.n_products),
            allocation=uncapped_allocation(allocation, n, seed),
            candidate_depth=depth,
            served=served or NOT_MEASURED,
        )
        reachable = returning_customer_ids(inputs.rows)

        def exposure_of(arrays: Mapping[str, np.ndarray]) -> CacheExposure:
            served = arrays_recommendations(arrays)
            return exposure_summary(served, served, reachable, n, exposure, seed)

        manifest = write_staged_cache(staged, Path(cache_dir), meta, exposure_of, export=export, keep=keep)
        log.info("spark build: driver streamed the staging into the cache in %.1f s", time.perf_counter() - t1)
        return manifest
    finally:
        inputs.release()
        try:
            remove_uri(spark, staging)
        finally:
            local = local_path(staging)
            if local is not None:
                shutil.rmtree(local, ignore_errors=True)


def build_cache_spark_from_params(
    cache_params: Mapping[str, Any],
    ranker_params: Mapping[str, Any],
    prepared: str | Path | None,
    cache_dir: Path | None,
    *,
    spark: SparkSession | None = None,
) -> CacheManifest:
    """The Spark build from the params structure (cache block with its spark sub-block) and the input URI."""
    cfg = cache_params["cache"]
    cap = (cfg.get("allocation") or {}).get("max_exposures")
    if cap is not None:
        raise ValueError(
            f"cache.allocation.max_exposures={cap}: the capped allocation runs on the single-machine engine only; "
            "the Spark engine writes each product's uncapped top-n. Set cache.allocation.max_exposures: null "
            "(or `recsys build-cache --engine spark --uncapped`), or use cache.engine: pandas"
        )
    settings = SparkSettings.from_params(cfg.get("spark"))
    served = config.dataset_paths(str(cfg.get("dataset") or config.DEFAULT_DATASET)).interactions
    uri = str(prepared) if prepared is not None else (settings.input or str(served))
    source = config.relative(uri) if local_path(uri) is not None else uri
    n = int(cfg.get("n", 100))
    dataset = dataset_of_uri(uri, str(cfg.get("dataset") or config.DEFAULT_DATASET))
    return build_cache_spark(
        uri,
        cfg["ranker"],
        ranker_params,
        Path(cache_dir) if cache_dir else config.CACHE_DIR,
        n=n,
        candidates=int(cfg.get("candidates", n)),
        served=served_figures(
            dataset=dataset,
            ranker=cfg["ranker"],
            params=ranker_params,
            n=n,
            max_exposures=None,
            feature_params=dict(ranker_params.get("features") or {}),
            engine="spark",
        ),
        export=cfg.get("export") or None,
        keep=int(cfg.get("keep_lookup_dirs", 2)),
        settings=settings,
        spark=spark,
        source=source,
        allocation=cfg.get("allocation"),
        exposure=cfg.get("exposure"),
        seed=int(cfg.get("seed", 0)),
        dataset=dataset,
    )


def dataset_of_uri(uri: str, name: str) -> str | None:
    """`name` when a local URI or path is that data set's prepared table (a remote URI never is), else None."""
    local = local_path(uri)
    return None if local is None else config.dataset_of(Path(local), name)
