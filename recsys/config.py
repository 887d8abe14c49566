"""Project paths and params: every path derives from the project root, every knob from params/."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
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

DEFAULT_RAW_CSV = RAW_DIR / "synthetic.csv"
PREPARED_PARQUET = PREPARED_DIR / "interactions.parquet"
QUARANTINE_PARQUET = PREPARED_DIR / "quarantine.parquet"
PREPARE_SUMMARY_JSON = PREPARED_DIR / "prepare_summary.json"
CACHE_DIR = ARTIFACTS_DIR / "cache"
KERNEL_NAME = "recsys"


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
