"""Reading the canonical interactions table (recsys.data.contract) into Spark, and its fingerprint."""

from __future__ import annotations

import os
from pathlib import Path

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys.cache.manifest import Fingerprint
from recsys.cache.writer import fingerprint_file
from recsys.engines.spark.session import local_path

NEEDED: tuple[str, ...] = ("customer_id", "product_id", "event", "event_date")
ID_TYPES = (T.IntegerType, T.LongType, T.ShortType, T.ByteType, T.StringType)


def read_interactions(spark: SparkSession, uri: str) -> DataFrame:
    """customer_id, product_id, event (string), event_date (timestamp) and ``us`` (its epoch microseconds)."""
    try:
        df = spark.read.parquet(uri)
    except AnalysisException as exc:
        if "PATH_NOT_FOUND" in str(exc) or "Path does not exist" in str(exc):
            raise FileNotFoundError(
                f"prepared interactions {uri} not found; run `recsys prepare` (or `dvc repro prepare`) first, "
                "or set cache.spark.input / --input to the canonical Parquet (file, directory or hdfs:// / s3a:// URI)"
            ) from exc
        raise
    return check_interactions(df, uri)


def check_interactions(df: DataFrame, uri: str) -> DataFrame:
    """Validate the canonical columns and types (clear errors) and add ``us``."""
    missing = [c for c in NEEDED if c not in df.columns]
    if missing:
        raise ValueError(
            f"interactions at {uri} lack column(s) {missing} (columns found: {df.columns}); expected the canonical "
            "table written by `recsys prepare` (recsys.data.contract)"
        )
    types = {f.name: f.dataType for f in df.schema.fields}
    for col in ("customer_id", "product_id"):
        if not isinstance(types[col], ID_TYPES):
            raise ValueError(
                f"interactions at {uri}: {col} must be integer or string ids, got {types[col].simpleString()}"
            )
    if not isinstance(types["event_date"], T.TimestampType):
        raise ValueError(
            f"interactions at {uri}: event_date must be a UTC timestamp (datetime64[us, UTC]), got "
            f"{types['event_date'].simpleString()}"
        )
    return df.select(
        "customer_id",
        "product_id",
        F.col("event").cast("string").alias("event"),
        "event_date",
        F.unix_micros("event_date").alias("us"),
    )


def fingerprint(spark: SparkSession, uri: str, rows: DataFrame) -> Fingerprint:
    """sha256 of the file for a local Parquet file (as the pandas engine), else a row-order-free Spark digest."""
    path = local_path(uri)
    if path is not None and os.path.isfile(path):
        return Fingerprint(algorithm="sha256-file", value=fingerprint_file(Path(path)))
    cols = [F.col(c) for c in ("customer_id", "product_id", "event", "event_date")]
    digest = rows.agg(F.count(F.lit(1)).alias("n"), F.sum(F.xxhash64(*cols).cast("decimal(38,0)")).alias("s")).first()
    if digest is None:
        raise RuntimeError("Spark returned no row for the input fingerprint aggregate")
    return Fingerprint(algorithm="spark-xxhash64-sum", value=f"{int(digest['n'])}:{int(digest['s'] or 0)}")
