"""The per-customer features and engagement score on Spark, as defined in recsys.features.engagement.

Same definitions, same params (FeatureParams), same floating-point operations in the same order
wherever the order is fixed: a customer's decayed sum per event adds the rows in the pandas engine's
canonical row order (product, then date with undated rows last), so exact ties (customers with the
same rows up to ids) stay exact ties and are broken by ascending customer id as in the pandas engine.
exp/log1p come from the JVM (StrictMath) and the final weighted sums are sequential rather than BLAS,
so scores can differ from the pandas engine in the last bits (parity tests allow 1e-9).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recsys.data.contract import CANONICAL_EVENTS
from recsys.engines.spark.topn import with_running_sum
from recsys.features.engagement import (
    FEATURE_NAMES,
    US_PER_DAY,
    FeatureParams,
    event_weight_vector,
    reference_us,
    weight_vector,
)

DAY = float(US_PER_DAY)


def scan_facts(rows: DataFrame, params: FeatureParams) -> tuple[int | None, list[str]]:
    """One pass: the reference instant in microseconds (the param, else the latest dated event; None if
    nothing is dated) and the distinct non-null events."""
    facts = rows.agg(F.max("us").alias("m"), F.collect_set("event").alias("events")).first()
    value = None if facts is None else facts["m"]
    us = np.asarray([value if value is not None else 0], dtype=np.int64)
    events = [str(e) for e in (facts["events"] if facts is not None else [])]
    return reference_us(params, us, np.asarray([value is not None])), events


def event_order(events: Sequence[str]) -> list[str]:
    """Canonical events first (their contract order), then any other event name sorted."""
    known = [e for e in CANONICAL_EVENTS if e in events]
    return known + sorted(e for e in events if e not in CANONICAL_EVENTS)


def decay_column(ref: int | None, params: FeatureParams) -> Column:
    """exp(-days_ago / decay_days) for dated rows (days clipped at 0), undated_decay for undated rows."""
    undated = F.lit(float(params.undated_decay))
    if ref is None:
        return undated
    days = F.greatest(F.lit(ref) - F.col("us"), F.lit(0)) / F.lit(DAY)
    return F.when(F.col("us").isNull(), undated).otherwise(F.exp((-days) / F.lit(float(params.decay_days))))


def ordered_sum(values: Column) -> Column:
    """Sequential sum (from 0.0) of an array's `v` fields in the array's order."""
    return F.aggregate(values, F.lit(0.0), lambda acc, x: acc + x["v"])


def raw_features(rows: DataFrame, params: FeatureParams) -> tuple[DataFrame, int | None]:
    """Per customer: total_interactions, unique_products, avg_event_score, interaction_frequency, recency,
    dated_interactions and last_us (0 when undated only); plus the reference instant used."""
    ref, events = scan_facts(rows, params)
    order = event_order(events)
    weights = event_weight_vector(order, params.event_weights)  # raises naming any event without a weight
    weight_of = F.create_map(*[x for e, w in zip(order, weights, strict=True) for x in (F.lit(e), F.lit(float(w)))])
    rank_of = F.create_map(*[x for i, e in enumerate(order) for x in (F.lit(e), F.lit(i))])

    decayed = rows.where(F.col("event").isNotNull()).withColumn("v", decay_column(ref, params))
    row_key = F.struct(F.col("product_id"), F.col("us").isNull().alias("undated"), F.col("us"), F.col("v"))
    per_event = decayed.groupBy("customer_id", "event").agg(
        ordered_sum(F.array_sort(F.collect_list(row_key))).alias("d")
    )
    term = F.struct(rank_of[F.col("event")].alias("k"), (F.col("d") * weight_of[F.col("event")]).alias("v"))
    scored = per_event.groupBy("customer_id").agg(ordered_sum(F.array_sort(F.collect_list(term))).alias("event_sum"))

    base = rows.groupBy("customer_id").agg(
        F.count(F.lit(1)).cast("double").alias("total_interactions"),
        F.countDistinct("product_id").cast("double").alias("unique_products"),
        F.min("us").alias("first_us"),
        F.max("us").alias("last_us"),
        F.count("us").alias("dated_interactions"),
    )
    feats = base.join(scored, "customer_id", "left")
    has_dated = F.col("dated_interactions") > 0
    span = F.when(has_dated, (F.col("last_us") - F.col("first_us")) / F.lit(DAY)).otherwise(F.lit(0.0))
    undated = F.lit(float(params.undated_decay))
    if ref is None:
        recency = undated
    else:
        ago = -F.greatest(F.lit(ref) - F.col("last_us"), F.lit(0))
        recency = F.when(has_dated, F.exp(ago / F.lit(DAY) / F.lit(float(params.recency_days)))).otherwise(undated)
    feats = feats.select(
        "customer_id",
        "total_interactions",
        "unique_products",
        (F.coalesce(F.col("event_sum"), F.lit(0.0)) / F.col("total_interactions")).alias("avg_event_score"),
        (F.col("total_interactions") / (span + F.lit(1.0))).alias("interaction_frequency"),
        recency.alias("recency"),
        "dated_interactions",
        F.when(has_dated, F.col("last_us")).otherwise(F.lit(0)).cast("long").alias("last_us"),
    )
    return feats, ref


def minmax_columns(feats: DataFrame, columns: Mapping[str, Column]) -> dict[str, Column]:
    """(x - min) / (max - min) over all customers for each column (one pass); a constant column becomes 0."""
    stats = feats.agg(
        *[agg for j, x in enumerate(columns.values()) for agg in (F.min(x).alias(f"lo{j}"), F.max(x).alias(f"hi{j}"))]
    ).first()
    out = {}
    for j, (name, x) in enumerate(columns.items()):
        lo = stats[f"lo{j}"] if stats is not None else None
        hi = stats[f"hi{j}"] if stats is not None else None
        if lo is None or hi is None or not float(hi) > float(lo):
            out[name] = F.lit(0.0)
        else:
            out[name] = (x - F.lit(float(lo))) / F.lit(float(hi) - float(lo))
    return out


def with_percentiles(feats: DataFrame, names: Sequence[str], partitions: int) -> DataFrame:
    """Add norm_<name>: average rank scaled to [0, 1] (ties share their mean rank), all features in one sort.

    The (feature, value) counts of every feature are sorted together; feature j's running count is the
    global running count minus j * customers (every feature has one value per customer).
    """
    n = feats.count()
    if n < 2:
        return feats.select("*", *[F.lit(0.0).alias(f"norm_{name}") for name in names])
    cells = F.array(*[F.struct(F.lit(j).alias("f"), F.col(name).alias("x")) for j, name in enumerate(names)])
    counts = feats.select(F.explode(cells).alias("c")).select("c.f", "c.x").groupBy("f", "x").count()
    distinct = {int(r["f"]): int(r["count"]) for r in counts.groupBy("f").count().collect()}
    ranked = with_running_sum(counts, ["f", "x"], "count", "cum", partitions)
    cum = F.col("cum") - F.col("f").cast("long") * F.lit(n)
    mean_rank = cum.cast("double") - (F.col("count") - F.lit(1)) / F.lit(2.0)
    table = ranked.select("f", "x", ((mean_rank - F.lit(1.0)) / F.lit(float(n - 1))).alias("p")).persist()
    out = feats
    for j, name in enumerate(names):
        col = f"norm_{name}"
        if distinct.get(j, 0) < 2:
            out = out.withColumn(col, F.lit(0.0))
            continue
        part = table.where(F.col("f") == j).select(F.col("x").alias(name), F.col("p").alias(col))
        out = out.join(part, name, "left")
    return out


def with_engagement(feats: DataFrame, params: FeatureParams, partitions: int) -> DataFrame:
    """Add norm_<feature> for the five features (params.normalisation) and engagement = sum weight * norm."""
    method = params.normalisation
    if method == "percentile":
        out = with_percentiles(feats, FEATURE_NAMES, partitions)
    else:
        if method == "log1p_minmax":
            columns = {name: F.log1p(F.greatest(F.col(name), F.lit(0.0))) for name in FEATURE_NAMES}
        else:
            columns = {name: F.col(name) for name in FEATURE_NAMES}
        scaled = minmax_columns(feats, columns)
        out = feats.select("*", *[scaled[name].alias(f"norm_{name}") for name in FEATURE_NAMES])
    weights = weight_vector(params.weights)
    engagement: Column = F.lit(0.0)
    for name, w in zip(FEATURE_NAMES, weights, strict=True):
        engagement = engagement + F.lit(float(w)) * F.col(f"norm_{name}")
    return out.withColumn("engagement", engagement)


def customer_features(rows: DataFrame, params: FeatureParams, partitions: int) -> DataFrame:
    """Raw features, norm_<feature> and engagement per customer (as recsys.features.engagement.compute_features)."""
    raw, _ = raw_features(rows, params)
    return with_engagement(raw.persist(), params, partitions)
