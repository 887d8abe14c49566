"""Top-N per product on Spark: a global customer order minus each product's own customers, and running sums.

Exclusion (the rule of recsys.rankers.base): a customer who touched the product (any event, dated or
not) is never ranked for it. With one global order, product p's top n lie within the first
``n + own(p)`` positions, so only the first ``M = min(n + max_p own(p), customers)`` customers of the
order are needed: they are collected to the driver (M rows) and broadcast. For each product the
excluded positions among them are gathered, the allowed positions are
``slice(array_except(sequence(0, min(n + |e|, M) - 1), e), 1, n)``, exploded into ranks 1..n.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T


@dataclass(frozen=True)
class TopOrder:
    """The first M customers of a global order: ids and scores as numpy arrays (position = index)."""

    customer_ids: np.ndarray
    scores: np.ndarray
    customer_type: T.DataType

    def __len__(self) -> int:
        """Number of customers kept (M)."""
        return int(len(self.customer_ids))


def customer_pairs(rows: DataFrame) -> DataFrame:
    """Distinct (product_id, customer_id) pairs: who touched what (every row counts, dated or not)."""
    return rows.select("product_id", "customer_id").distinct()


def max_own(pairs: DataFrame) -> int:
    """The largest number of distinct customers of one product."""
    row = pairs.groupBy("product_id").count().agg(F.max("count").alias("m")).first()
    return int(row["m"] or 0) if row is not None else 0


def take_order(order: DataFrame, sort_cols: list[Column], m: int) -> TopOrder:
    """The first `m` rows of `order` (columns customer_id, score) under `sort_cols`, collected through Arrow."""
    head = order.orderBy(*sort_cols).limit(max(m, 0)).select("customer_id", "score").toArrow()
    customer_type = order.schema["customer_id"].dataType
    ids = head.column("customer_id").to_numpy(zero_copy_only=False)
    if isinstance(customer_type, T.StringType):
        ids = np.asarray(ids, dtype=object)
    return TopOrder(
        ids, np.asarray(head.column("score").to_numpy(zero_copy_only=False), dtype=np.float64), customer_type
    )


def top_frame(spark: SparkSession, top: TopOrder) -> DataFrame:
    """(pos, customer_id, score) of the kept order as a small DataFrame (to broadcast)."""
    schema = T.StructType(
        [
            T.StructField("pos", T.IntegerType(), False),
            T.StructField("customer_id", top.customer_type, False),
            T.StructField("score", T.DoubleType(), False),
        ]
    )
    ids = top.customer_ids.tolist()
    data = list(zip(range(len(top)), ids, top.scores.tolist(), strict=True))
    return spark.createDataFrame(data, schema=schema)


def global_top_n(
    spark: SparkSession, catalogue: DataFrame, pairs: DataFrame, top: TopOrder, n: int, parts: int = 1
) -> DataFrame:
    """(product_id, rank, customer_id, score): each catalogue product's first n allowed customers of the order,
    range-partitioned by product into `parts` (partitioned before the explode, so only products are sampled)."""
    m = len(top)
    positions = F.broadcast(top_frame(spark, top))
    excluded = (
        pairs.join(positions.select("customer_id", "pos"), "customer_id")
        .groupBy("product_id")
        .agg(F.sort_array(F.collect_list("pos")).alias("e"))
    )
    empty = F.array().cast(T.ArrayType(T.IntegerType()))
    per_product = (
        catalogue.join(excluded, "product_id", "left")
        .select("product_id", F.coalesce(F.col("e"), empty).alias("e"))
        .repartitionByRange(max(parts, 1), "product_id")
    )
    stop = F.least(F.lit(n) + F.size("e"), F.lit(m)) - F.lit(1)
    allowed = F.slice(F.array_except(F.sequence(F.lit(0), stop), F.col("e")), 1, n)
    if m == 0:
        allowed = empty
    exploded = per_product.select("product_id", F.posexplode(allowed).alias("i", "pos"))
    return exploded.join(positions, "pos").select(
        "product_id", (F.col("i") + 1).cast("int").alias("rank"), "customer_id", "score"
    )


def with_running_sum(
    df: DataFrame, order_cols: Sequence[str], value_col: str, out_col: str, partitions: int
) -> DataFrame:
    """`df` plus the inclusive running sum of `value_col` in ascending `order_cols` (unique keys).

    Scales past one partition: rows are range-partitioned and checkpointed (so every later action sees
    the same partitioning), each partition's total is collected (one number per partition), and a
    per-partition window adds the totals of the partitions before it.
    """
    spark = df.sparkSession
    keys = list(order_cols)
    ranged = (
        df.repartitionByRange(max(partitions, 1), *keys)
        .sortWithinPartitions(*keys)
        .withColumn("_part", F.spark_partition_id())
        .localCheckpoint(eager=True)
    )
    totals = sorted(
        (int(r["_part"]), int(r["t"])) for r in ranged.groupBy("_part").agg(F.sum(value_col).alias("t")).collect()
    )
    offsets, running = [], 0
    for part, total in totals:
        offsets.append((part, running))
        running += total
    schema = T.StructType([T.StructField("_part", T.IntegerType(), False), T.StructField("_off", T.LongType(), False)])
    off = F.broadcast(spark.createDataFrame(offsets, schema=schema))
    window = Window.partitionBy("_part").orderBy(*keys).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    return (
        ranged.join(off, "_part")
        .withColumn(out_col, F.sum(value_col).over(window) + F.col("_off"))
        .drop("_part", "_off")
    )


def dense_index(values: DataFrame, col: str, out_col: str, partitions: int) -> DataFrame:
    """Distinct values of `col` with a dense 0-based index in ascending value order (int)."""
    distinct = values.select(col).distinct().withColumn("_one", F.lit(1).cast("long"))
    ranked = with_running_sum(distinct, [col], "_one", "_cum", partitions)
    return ranked.select(col, (F.col("_cum") - 1).cast("int").alias(out_col))
