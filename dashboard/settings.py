"""Where the dashboard reads from and how it is served: paths, environment variables, port, fix-it hints.

Environment variables (all optional):

- ``RECSYS_DASHBOARD_DATA``: a directory laid out like ``data/`` (``prepared/interactions.parquet``,
  ``artifacts/cache/``); default ``recsys.config.DATA_DIR``.
- ``RECSYS_DASHBOARD_REPORTS``: a directory laid out like ``reports/`` (``metrics/evaluate.json``,
  ``metrics/explore.json``); default ``recsys.config.REPORTS_DIR``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from recsys import config

DATA_ENV = "RECSYS_DASHBOARD_DATA"
REPORTS_ENV = "RECSYS_DASHBOARD_REPORTS"
NOTEBOOK = Path(__file__).resolve().parent / "app.ipynb"
DEFAULT_PORT = 8866
PREPARED_HINT = "run `recsys generate && recsys prepare` (or `dvc repro prepare`) to produce it"
CACHE_HINT = "run `recsys build-cache` (or `dvc repro cache`) to produce it"
METRICS_HINT = "run `dvc repro` to produce these"


@dataclass(frozen=True)
class DashboardPaths:
    """Every file the dashboard reads."""

    prepared: Path
    cache_dir: Path
    evaluate_json: Path
    explore_json: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DashboardPaths:
        """Paths from RECSYS_DASHBOARD_DATA / RECSYS_DASHBOARD_REPORTS, else the project's defaults."""
        env = os.environ if env is None else env
        data = config.resolve(env[DATA_ENV]) if env.get(DATA_ENV) else config.DATA_DIR
        reports = config.resolve(env[REPORTS_ENV]) if env.get(REPORTS_ENV) else config.REPORTS_DIR
        metrics = reports / "metrics"
        return cls(
            prepared=data / config.PREPARED_PARQUET.relative_to(config.DATA_DIR),
            cache_dir=data / config.CACHE_DIR.relative_to(config.DATA_DIR),
            evaluate_json=metrics / "evaluate.json",
            explore_json=metrics / "explore.json",
        )
