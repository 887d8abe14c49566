"""spark-submit entry point of the Spark cache build: the ``recsys build-cache`` options, engine forced to spark.

    spark-submit --master spark://HOST:7077 --driver-memory 8g --executor-memory 8g \\
        "$(python -c 'import recsys.engines.spark.submit as m; print(m.__file__)')" \\
        --ranker activity --uncapped --input hdfs:///data/interactions.parquet --output data/artifacts/cache

The submit flags (master, memory, cores) win over ``cache.spark.master`` / ``driver_memory``; input,
staging and the other knobs come from params/cache.yaml (``cache.spark``) or the options.
"""

from __future__ import annotations

import sys

from recsys.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["build-cache", "--engine", "spark", *sys.argv[1:]]))
