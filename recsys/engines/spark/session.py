"""Spark settings from params (``params/cache.yaml: cache.spark``), the SparkSession, and URI helpers.

Input and staging locations are URIs (``file:///...``, ``hdfs://...``, ``s3a://...`` or a plain local
path): they are handed to Spark as strings and never turned into ``pathlib.Path``, so object stores are
not precluded. Under ``spark-submit`` the submit flags (``--master``, ``--driver-memory``) win over
``cache.spark.master`` / ``driver_memory``, which only apply when the driver starts the JVM itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from pyspark.sql import SparkSession

SUBMITTED_ENV = "PYSPARK_GATEWAY_PORT"  # set when spark-submit (or pyspark) launched this Python driver


@dataclass(frozen=True)
class SparkSettings:
    """Every knob of the Spark engine (params/cache.yaml: cache.spark)."""

    master: str = "local[2]"
    input: str | None = None
    staging: str | None = None
    shuffle_partitions: int = 8
    driver_memory: str = "4g"
    rows_per_output_partition: int = 4_000_000
    conf: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Validate the knobs with messages naming the param."""
        if self.shuffle_partitions < 1:
            raise ValueError(f"cache.spark.shuffle_partitions must be >= 1, got {self.shuffle_partitions}")
        if self.rows_per_output_partition < 1:
            raise ValueError(
                f"cache.spark.rows_per_output_partition must be >= 1, got {self.rows_per_output_partition}"
            )
        if not str(self.master):
            raise ValueError("cache.spark.master must be a Spark master URL such as local[2] or spark://host:7077")

    @classmethod
    def from_params(cls, block: Mapping[str, Any] | None) -> SparkSettings:
        """Build from the cache.spark block; missing keys keep their defaults, unknown keys are an error."""
        block = dict(block or {})
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(block) - known)
        if unknown:
            raise ValueError(f"cache.spark has unknown key(s) {unknown}; known: {sorted(known)}")
        conf = {str(k): str(v) for k, v in dict(block.pop("conf", None) or {}).items()}
        kwargs: dict[str, Any] = {k: v for k, v in block.items() if v is not None}
        for key in ("shuffle_partitions", "rows_per_output_partition"):
            if key in kwargs:
                kwargs[key] = int(kwargs[key])
        return cls(**kwargs, conf=conf)


def spark_session(settings: SparkSettings, app_name: str = "recsys-cache") -> SparkSession:
    """Get or create the SparkSession: UTC session time zone, fixed shuffle partitions, no console progress."""
    builder = SparkSession.builder.appName(app_name)
    local = {}
    if SUBMITTED_ENV not in os.environ:
        builder = builder.master(settings.master).config("spark.driver.memory", settings.driver_memory)
        if settings.master.startswith("local"):  # a local driver listens on the loopback interface only
            local = {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}
    conf = {
        **local,
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        "spark.ui.showConsoleProgress": "false",
        "spark.ui.enabled": "false",
        "spark.sql.adaptive.enabled": "true",
        **dict(settings.conf),
    }
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    for key in ("spark.sql.session.timeZone", "spark.sql.shuffle.partitions"):  # a reused session gets them too
        spark.conf.set(key, conf[key])
    return spark


def has_scheme(uri: str) -> bool:
    """True for URIs with a scheme other than a Windows drive letter (hdfs://, s3a://, file:...)."""
    scheme = urlparse(str(uri)).scheme
    return len(scheme) > 1


def local_path(uri: str) -> str | None:
    """The local filesystem path of a plain path or file:// URI, else None (remote URIs)."""
    parsed = urlparse(str(uri))
    if not has_scheme(uri):
        return str(uri)
    if parsed.scheme == "file":
        return parsed.path
    return None


def join_uri(base: str, *parts: str) -> str:
    """`base` with path segments appended (works for local paths and scheme URIs alike)."""
    out = str(base).rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out
