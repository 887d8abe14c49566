"""Project paths and params: every path derives from the project root, every knob from params/."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PROJ_ROOT = Path(os.environ.get("RECSYS_ROOT", Path(__file__).resolve().parents[1])).resolve()
PARAMS_DIR = PROJ_ROOT / "params"
DATA_DIR = PROJ_ROOT / "data"
RAW_DIR = DATA_DIR / "raw"
PREPARED_DIR = DATA_DIR / "prepared"
ARTIFACTS_DIR = DATA_DIR / "artifacts"
REPORTS_DIR = PROJ_ROOT / "reports"
NOTEBOOKS_DIR = PROJ_ROOT / "notebooks"
DATASETS_REPORTS_DIR = REPORTS_DIR / "datasets"

DEFAULT_RAW_CSV = RAW_DIR / "synthetic.csv"
DEFAULT_DATASET = (
    "synthetic"  # the calibrated synthetic log: what the cache serves unless params/cache.yaml says otherwise
)
CACHE_DIR = ARTIFACTS_DIR / "cache"
CACHE_METRICS = REPORTS_DIR / "metrics" / "cache.json"  # the cache stage's checks (recsys.cache.checks)
KERNEL_NAME = "recsys"
DATASET_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True)
class DatasetPaths:
    """Where one data set's pipeline files live: data/prepared/<name>/ and reports/datasets/<name>/."""

    name: str

    @property
    def prepared_dir(self) -> Path:
        """data/prepared/<name>/."""
        return PREPARED_DIR / self.name

    @property
    def interactions(self) -> Path:
        """The canonical interactions Parquet written by `prepare`."""
        return self.prepared_dir / "interactions.parquet"

    @property
    def quarantine(self) -> Path:
        """Rows set aside by `prepare`, each with its reason."""
        return self.prepared_dir / "quarantine.parquet"

    @property
    def prepare_summary(self) -> Path:
        """prepare's row accounting (rows_in == kept + sum(rejected)) and the source it read."""
        return self.prepared_dir / "prepare_summary.json"

    @property
    def reports_dir(self) -> Path:
        """reports/datasets/<name>/: the data set's rendered notebooks (every data set under one directory, so a
        stage that reads them all depends on reports/datasets)."""
        return DATASETS_REPORTS_DIR / self.name

    @property
    def metrics_dir(self) -> Path:
        """reports/datasets/<name>/metrics/: DVC metrics of the data set."""
        return self.reports_dir / "metrics"

    @property
    def figures_dir(self) -> Path:
        """reports/datasets/<name>/figures/."""
        return self.reports_dir / "figures"

    @property
    def evaluation_dir(self) -> Path:
        """reports/datasets/<name>/evaluation/: the evaluation's typed summary and tables."""
        return self.reports_dir / "evaluation"

    @property
    def evaluation_summary(self) -> Path:
        """The typed evaluation summary (recsys.evaluation.results.EvaluationSummary)."""
        return self.evaluation_dir / "summary.json"


def dataset_paths(name: str) -> DatasetPaths:
    """The paths of data set `name` (a lower-case identifier, as listed in params/prepare.yaml: datasets)."""
    if not DATASET_NAME.fullmatch(name):
        raise ValueError(f"data set name {name!r} must match {DATASET_NAME.pattern} (params/prepare.yaml: datasets)")
    return DatasetPaths(name)


def datasets(params_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """The data sets the pipeline prepares, explores and evaluates (params/prepare.yaml: datasets), in order."""
    block = load_params("prepare", params_dir).get("datasets") or {}
    if not isinstance(block, Mapping) or not block:
        raise ValueError("params/prepare.yaml: `datasets` must map at least one data set name to its source block")
    for name in block:
        dataset_paths(str(name))
    return {str(k): dict(v or {}) for k, v in block.items()}


def dataset_config(name: str, params_dir: Path | None = None) -> dict[str, Any]:
    """One data set's block of params/prepare.yaml (its `source` and, for generated logs, `categories`)."""
    known = datasets(params_dir)
    if name not in known:
        raise ValueError(f"unknown data set {name!r}; params/prepare.yaml lists {sorted(known)}")
    return known[name]


def served_dataset(params_dir: Path | None = None) -> str:
    """The data set whose audiences the cache, the service and the dashboard serve (params/cache.yaml cache.dataset)."""
    try:
        cache = load_params("cache", params_dir).get("cache") or {}
    except FileNotFoundError:
        return DEFAULT_DATASET
    name = str(cache.get("dataset") or DEFAULT_DATASET)
    dataset_paths(name)
    return name


def dataset_of(path: Path, name: str) -> str | None:
    """`name` when `path` is that data set's prepared table (so a cache built from it records it), else None."""
    return name if Path(path).resolve() == dataset_paths(name).interactions.resolve() else None


PREPARED_PARQUET = dataset_paths(DEFAULT_DATASET).interactions  # the default data set's prepared table
QUARANTINE_PARQUET = dataset_paths(DEFAULT_DATASET).quarantine
PREPARE_SUMMARY_JSON = dataset_paths(DEFAULT_DATASET).prepare_summary


def resolve(path: str | os.PathLike[str]) -> Path:
    """Return `path` made absolute against the project root (absolute paths pass through)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (PROJ_ROOT / p)


def relative(path: str | os.PathLike[str]) -> str:
    """`path` relative to the project root when inside it (reports and manifests stay machine-independent)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(PROJ_ROOT))
    except ValueError:
        return str(path)


def load_params(stage: str, params_dir: Path | None = None) -> dict[str, Any]:
    """Load params/<stage>.yaml as a dict; a clear error names the missing file."""
    path = (params_dir or PARAMS_DIR) / f"{stage}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"params file {path} not found; expected one YAML file per stage in {path.parent}")
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh) or {}


def check_keys(
    cfg: Mapping[str, Any], allowed: Iterable[str], where: str, error: type[ValueError] = ValueError
) -> None:
    """Raise `error` naming the keys of a params block that are not `allowed`, so a typo is never ignored."""
    unknown = sorted(set(cfg) - set(allowed))
    if unknown:
        raise error(f"unknown key(s) in {where}: {unknown}; expected some of {sorted(allowed)}")
