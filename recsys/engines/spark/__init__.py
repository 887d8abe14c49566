"""The Spark engine of the cache build (``cache.engine: spark``): same params, same artifact as the pandas engine.

Modules: ``session`` (settings from params, the SparkSession, URIs), ``io`` (reading the canonical
interactions), ``features`` (the five engagement features and the engagement score, as defined in
recsys.features.engagement), ``topn`` (global-order top-N with exclusion, running sums), ``als``
(MLlib ALS), ``writer`` (streams Spark's ranked Parquet into the cache through recsys.cache.build)
and ``build`` (the entry point). Every module imports pyspark at its top, so import this package's
modules only when the Spark engine is asked for; nothing else in the project needs Java.
"""
