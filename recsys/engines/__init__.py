"""Execution engines of the cache build: ``pandas`` (one machine, recsys.rankers) and ``spark`` (recsys.engines.spark).

Nothing here imports pyspark: the Spark engine is imported only when ``cache.engine: spark`` asks for it,
so the rest of the project runs without Java.
"""

from __future__ import annotations

ENGINES: tuple[str, ...] = ("pandas", "spark")


def check_engine(engine: str) -> str:
    """The engine name, or a ValueError naming the param and the choices."""
    if engine not in ENGINES:
        raise ValueError(
            f"cache.engine must be one of {ENGINES}, got {engine!r} (params/cache.yaml: cache.engine, or --engine)"
        )
    return engine
