"""Where the dashboard reads from and how it is served: paths, environment variables, port, fix-it hints.

The dashboard shows the data set the cache serves (``recsys.config.served_dataset()``, params/cache.yaml:
cache.dataset); its files are those of ``recsys.config.dataset_paths(name)``. Environment variables (all
optional) move the two roots:

- ``RECSYS_DASHBOARD_DATA``: a directory laid out like ``data/`` (``prepared/<name>/interactions.parquet``,
  ``artifacts/cache/``); default ``recsys.config.DATA_DIR``.
- ``RECSYS_DASHBOARD_REPORTS``: a directory laid out like ``reports/`` (``datasets/<name>/evaluation/summary.json``,
  ``datasets/<name>/metrics/explore.json``); default ``recsys.config.REPORTS_DIR``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from recsys import config

DATA_ENV = "RECSYS_DASHBOARD_DATA"
REPORTS_ENV = "RECSYS_DASHBOARD_REPORTS"
NOTEBOOK = Path(__file__).resolve().parent / "app.ipynb"
DEFAULT_PORT = 8866
PREPARED_HINT = "run `recsys generate && recsys prepare` (or `dvc repro prepare`) to produce it"
CACHE_HINT = "run `recsys build-cache` (or `dvc repro cache`) to produce it"
METRICS_HINT = "run `dvc repro` to produce these"
EVALUATION_HINT = "run `dvc repro` (or `recsys evaluate`) to produce it"


@dataclass(frozen=True)
class DashboardPaths:
    """Every file the dashboard reads, for one data set."""

    dataset: str
    prepared: Path
    cache_dir: Path
    evaluation_summary: Path
    explore_json: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, dataset: str | None = None) -> DashboardPaths:
        """Paths of `dataset` (default: the served one) under RECSYS_DASHBOARD_DATA / _REPORTS or the defaults."""
        env = os.environ if env is None else env
        data = config.resolve(env[DATA_ENV]) if env.get(DATA_ENV) else config.DATA_DIR
        reports = config.resolve(env[REPORTS_ENV]) if env.get(REPORTS_ENV) else config.REPORTS_DIR
        name = dataset or config.served_dataset()
        own = config.dataset_paths(name)
        return cls(
            dataset=name,
            prepared=data / own.interactions.relative_to(config.DATA_DIR),
            cache_dir=data / config.CACHE_DIR.relative_to(config.DATA_DIR),
            evaluation_summary=reports / own.evaluation_summary.relative_to(config.REPORTS_DIR),
            explore_json=reports / own.metrics_dir.relative_to(config.REPORTS_DIR) / "explore.json",
        )


class SearchSettings(BaseModel):
    """params/dashboard.yaml, dashboard.search: how many matches are listed and the lexicon's extra groups."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: int = Field(20, ge=1, le=1000)
    lexicon: list[list[str]] = Field(default_factory=list)


class DashboardSettings(BaseModel):
    """params/dashboard.yaml, block `dashboard` (unknown keys rejected)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    search: SearchSettings = Field(default_factory=SearchSettings)


def dashboard_settings(params_dir: Path | None = None) -> DashboardSettings:
    """The typed `dashboard` block of params/dashboard.yaml (defaults when the file is missing; a clear ValueError
    naming the file and the offending key otherwise)."""
    path = (params_dir or config.PARAMS_DIR) / "dashboard.yaml"
    if not path.is_file():
        return DashboardSettings()
    block = config.load_params("dashboard", params_dir).get("dashboard") or {}
    try:
        return DashboardSettings.model_validate(block)
    except ValidationError as exc:
        problems = "; ".join(f"dashboard.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{config.relative(path)}: {problems}") from exc
