"""The explore notebook on a log that is not the case-study layout: the vendored Online Retail log."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from recsys.config import PROJ_ROOT
from recsys.data.contract import PRESETS
from recsys.data.prepare import prepare
from recsys.reporting.notebooks import run_notebook

pytestmark = pytest.mark.notebooks


def test_explore_runs_on_online_retail(tmp_path: Path) -> None:
    prepared = tmp_path / "prepared" / "interactions.parquet"
    summary = prepare(
        PROJ_ROOT / "data/external/online_retail/online_retail.parquet", prepared, PRESETS["online_retail"]
    )
    metrics_path = tmp_path / "metrics" / "explore.json"
    run_notebook(
        "explore",
        {"prepared_path": str(prepared), "metrics_path": str(metrics_path), "figures_dir": str(tmp_path / "figures")},
        output_dir=tmp_path / "reports",
    )
    metrics = json.loads(metrics_path.read_text())
    assert metrics["layout"] == "online_retail" and metrics["source"] == "file"
    assert metrics["rows"] == summary.kept and metrics["users"] == summary.users
    assert metrics["calibration_within_tolerance"] is None and metrics["loyalty_true"] is None
    assert metrics["loyalty_measured_users"] == metrics["returning_users"] > 0
    assert metrics["loyalty_inferred_ci95_lo"] <= metrics["loyalty_inferred"] <= metrics["loyalty_inferred_ci95_hi"]
    assert pd.read_csv(metrics_path.with_name("calibration.csv")).empty  # no comparison with another log's profile
    nb = nbformat.read(tmp_path / "reports" / "explore.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert f"retention of **{metrics['retention_pct']:.2f}%**" in text
    assert "No true categories are known for this log" in text and "is not compared with it" in text
    assert {p.name for p in (tmp_path / "figures").iterdir()} >= {"loyalty.png", "users.png", "churn.png"}
