"""The ``als`` ranker on Spark: MLlib ALS (implicit preferences), product -> customers with exclusion.

MLlib ALS and implicit's ALS (the pandas engine) are different implementations: MLlib scales the
regularisation by each row's number of ratings (ALS-WR), initialises and partitions differently and
computes in float32 blocks, so the factors and the audiences differ; parity is not expected, only the
shared invariants (ranks 1..n, non-increasing scores, no own customer, deterministic for a seed and a
fixed partitioning). Settings are the pandas ranker's (recsys.rankers.settings.ALSSettings): factors,
iterations, regularization, alpha (confidence = 1 + alpha * weight), seed, event_weights; plus
``spark_blocks`` (default 1, ``SparkALSSettings``): MLlib's user and item blocks. With one block a seeded fit is
reproducible run to run; with more blocks the fit spreads over executors, but MLlib adds the blocks'
Gram matrices in task-completion order, so repeated fits differ in the last bits and customers with
nearly equal scores can swap places.

Exclusion: MLlib's ``recommendForItemSubset(items, k)`` returns each product's top k customers, own
customers included. Products are grouped by own(p) (distinct customers) into powers of four; a group
with own(p) <= 4^j asks for k = n + 4^j, so after dropping own customers every product keeps its exact
top n while the request stays under n + 4 own(p) per product (not n + max own). Ties of the float32
scores are broken by ascending customer id after the request. Cold-start order: customers by their
factors' dot product with the popularity-weighted mean item factor (as the pandas ranker).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field
from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recsys.engines.spark.topn import dense_index
from recsys.rankers.settings import ALSSettings, parse_settings, settings_dict

GROUP_BASE = 4  # products are grouped by own(p) in powers of 4: the request stays under n + 4 own(p)


class SparkALSSettings(ALSSettings):
    """The pandas ALS settings plus MLlib's user/item blocks (1 = reproducible, see the module docstring)."""

    spark_blocks: int = Field(1, ge=1)


def als_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ranker block validated as SparkALSSettings (unknown keys and bad values raise ValueError)."""
    return settings_dict(parse_settings(SparkALSSettings, "als", params))


def ratings(
    rows: DataFrame, users: DataFrame, items: DataFrame, event_weights: Mapping[str, float] | None
) -> DataFrame:
    """(u, p, r): summed row weights per customer and product (1.0 per row unless event_weights), zeros dropped."""
    if event_weights:
        table = F.create_map(*[x for e, w in event_weights.items() for x in (F.lit(str(e)), F.lit(float(w)))])
        weight = F.coalesce(table[F.col("event")], F.lit(0.0))
    else:
        weight = F.lit(1.0)
    coded = rows.join(users, "customer_id").join(items, "product_id").withColumn("w", weight)
    return coded.groupBy("u", "p").agg(F.sum("w").cast("float").alias("r")).where(F.col("r") != 0)


def fit(rows: DataFrame, params: Mapping[str, Any], partitions: int) -> tuple[ALSModel, DataFrame, DataFrame]:
    """Fit MLlib ALS; return the model and the (customer_id, u) / (product_id, p) index tables."""
    p = als_params(params)
    users = dense_index(rows, "customer_id", "u", partitions).persist()
    items = dense_index(rows, "product_id", "p", partitions).persist()
    data = ratings(rows, users, items, p.get("event_weights")).persist()
    als = ALS(
        rank=int(p["factors"]),
        maxIter=int(p["iterations"]),
        regParam=float(p["regularization"]),
        alpha=float(p["alpha"]),
        implicitPrefs=True,
        seed=int(p["seed"]),
        userCol="u",
        itemCol="p",
        ratingCol="r",
        numUserBlocks=int(p["spark_blocks"]),
        numItemBlocks=int(p["spark_blocks"]),
        coldStartStrategy="drop",
    )
    return als.fit(data), users, items


def top_n(model: ALSModel, pairs: DataFrame, users: DataFrame, items: DataFrame, n: int, n_users: int) -> DataFrame:
    """(product_id, rank, customer_id, score): each product's best n customers by factor score, own ones excluded."""
    own = pairs.groupBy("product_id").agg(F.count(F.lit(1)).alias("own")).join(items, "product_id")
    bucket = F.ceil(F.log(float(GROUP_BASE), F.col("own").cast("double")) - F.lit(1e-9)).cast("int")
    own = own.withColumn("b", F.greatest(bucket, F.lit(0)))
    parts = []
    for (b,) in sorted((r["b"],) for r in own.select("b").distinct().collect()):
        k = min(n + GROUP_BASE ** int(b), n_users)
        subset = own.where(F.col("b") == b).select("p")
        parts.append(model.recommendForItemSubset(subset, k))
    recs = parts[0]
    for part in parts[1:]:
        recs = recs.unionByName(part)
    flat = recs.select("p", F.explode("recommendations").alias("x")).select(
        "p", F.col("x.u").alias("u"), F.col("x.rating").cast("double").alias("score")
    )
    named = flat.join(items, "p").join(users, "u").select("product_id", "customer_id", "score")
    allowed = named.join(pairs, ["product_id", "customer_id"], "left_anti")
    order = Window.partitionBy("product_id").orderBy(F.col("score").desc(), F.col("customer_id").asc())
    ranked = allowed.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= n)
    return ranked.select("product_id", F.col("rank").cast("int").alias("rank"), "customer_id", "score")


def global_order(model: ALSModel, pairs: DataFrame, users: DataFrame, items: DataFrame) -> DataFrame:
    """(customer_id, score): each customer's affinity to the popularity-weighted mean item factor."""
    pop = pairs.groupBy("product_id").agg(F.count(F.lit(1)).cast("double").alias("w")).join(items, "product_id")
    factors = model.itemFactors.withColumnRenamed("id", "p").join(pop, "p")
    total_row = pop.agg(F.sum("w").alias("t")).first()
    total = max(float(total_row["t"] or 0.0) if total_row is not None else 0.0, 1.0)
    mean = (
        factors.select("w", F.posexplode("features").alias("j", "f"))
        .groupBy("j")
        .agg(F.sum(F.col("w") * F.col("f").cast("double")).alias("s"))
        .orderBy("j")
        .collect()
    )
    vector = F.array(*[F.lit(float(r["s"]) / total) for r in mean])
    dot = F.aggregate(
        F.zip_with(F.col("features"), vector, lambda a, b: a.cast("double") * b), F.lit(0.0), lambda acc, x: acc + x
    )
    return model.userFactors.withColumnRenamed("id", "u").join(users, "u").select("customer_id", dot.alias("score"))
