"""Smoke test: the whole DVC pipeline (papermill notebooks included) at tiny scale in a temporary copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from recsys.cache.checks import read_checks
from recsys.cache.manifest import read_manifest
from recsys.config import PROJ_ROOT
from recsys.evaluation.campaigns import read_campaign_study
from recsys.evaluation.results import read_summary

pytestmark = pytest.mark.notebooks

BIN = Path(sys.executable).parent
TINY: dict[str, dict[str, Any]] = {
    "generate.yaml": {"generate": {"scale": 0.02, "seed": 5}},
    "evaluate.yaml": {
        "evaluate": {"intervals": {"n_boot": 50}, "tuning": {"budget": {"default": 1, "itemknn": 1, "bpr": 1}}}
    },
    "sensitivity.yaml": {
        "sensitivity": {
            "scale": 0.02,
            "n_boot": 50,
            "grid": [{"name": "loyalty", "vary": {"category_loyalty": [0.0, 0.7]}}],
        }
    },
}
ONLY_SYNTHETIC = (
    "prepare.yaml",
    "datasets",
    "online_retail",
)  # the real log: test_explore_notebook.py, test_prepare.py
SYN = Path("reports/datasets/synthetic")


def _merge(base: dict, over: dict) -> dict:
    """Recursive dict merge (over wins)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run a command, failing the test with its output when it fails."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A git+DVC copy of the project with tiny params, after one full `dvc repro`."""
    root = tmp_path_factory.mktemp("project")
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=PROJ_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for rel in files:
        src = PROJ_ROOT / rel
        if src.is_file():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / rel)
    for name, over in TINY.items():
        path = root / "params" / name
        path.write_text(
            yaml.safe_dump(_merge(yaml.safe_load(path.read_text()), over), allow_unicode=True, sort_keys=False)
        )
    name, block, drop = ONLY_SYNTHETIC
    path = root / "params" / name
    params = yaml.safe_load(path.read_text())
    del params[block][drop]
    path.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False))
    env = {
        **os.environ,
        "RECSYS_ROOT": str(root),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "OPENBLAS_NUM_THREADS": "1",
    }
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t.invalid"]
    run(["git", "init", "-q"], root, env)
    run([*git, "add", "-A"], root, env)
    run([*git, "commit", "-qm", "tiny"], root, env)
    run(["dvc", "repro"], root, env)
    return root, env


def test_reports_metrics_and_cache_exist_and_agree(project: tuple[Path, dict[str, str]]) -> None:
    root, _ = project
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    for name in ("explore", "cf_proof", "cache", "cache_report", "evaluate", "campaigns", "evaluate_report"):
        assert name in stages, f"stage {name} missing from dvc.yaml"
    for rel in (
        SYN / "explore",
        SYN / "cf_proof",
        SYN / "evaluate",
        Path("reports/cache"),
        Path("reports/sensitivity"),
    ):
        assert root.joinpath(rel).with_suffix(".html").stat().st_size > 10_000
        executed = json.loads(root.joinpath(rel).with_suffix(".ipynb").read_text())
        assert any(c.get("outputs") for c in executed["cells"] if c["cell_type"] == "code")
    prepared = pd.read_parquet(root / "data/prepared/synthetic/interactions.parquet")
    explore = json.loads((root / SYN / "metrics/explore.json").read_text())
    assert explore["rows"] == len(prepared) and explore["users"] == prepared["customer_id"].nunique()
    manifest = read_manifest(root / "data/artifacts/cache")
    assert manifest.dataset == "synthetic"
    cache = pd.read_parquet(root / "data/artifacts/cache" / manifest.files.audience)
    assert cache["product_id"].nunique() == prepared["product_id"].nunique()
    assert int(cache.groupby("product_id")["rank"].max().max()) <= manifest.n
    touched = set(zip(prepared["product_id"], prepared["customer_id"], strict=True))
    assert not any(pair in touched for pair in zip(cache["product_id"], cache["customer_id"], strict=True))
    assert manifest.allocation.max_exposures is None and manifest.candidate_depth >= manifest.n  # uncapped default
    checks = read_checks(root / "reports/metrics/cache.json")  # computed by the cache stage, not the notebook
    assert checks.products == prepared["product_id"].nunique() and checks.version == manifest.version
    assert checks.exclusion_violations == 0 and checks.candidate_exclusion_violations == 0
    cache_code = json.loads((root / "notebooks/cache.ipynb").read_text())
    source = "".join("".join(c["source"]) for c in cache_code["cells"] if c["cell_type"] == "code")
    assert "build_cache" not in source and "write_json" not in source and "read_checks" in source
    evaluation = json.loads((root / SYN / "metrics/evaluate.json").read_text())
    summary = read_summary(root / SYN / "evaluation/summary.json")
    assert evaluation["default_ranker"] == (summary.default_ranker.ranker if summary.default_ranker else None)
    assert {m.label for m in summary.models} >= {"random", "activity", "popularity", "als", "itemknn", "content"}
    for name in ("evaluate", "cf_proof"):  # the notebooks render the evaluation's results, they fit nothing
        source = json.loads((root / "notebooks" / f"{name}.ipynb").read_text())
        code = "".join("".join(c["source"]) for c in source["cells"] if c["cell_type"] == "code")
        assert "read_summary" in code and ".fit(" not in code and "run_evaluation" not in code
    text = (root / "reports/summary.md").read_text()
    assert summary.overall in text and "## The served data set: `synthetic`" in text
    selection = summary.selection
    assert selection is not None and manifest.ranker == selection.products.ranker  # cache.ranker: selected
    served = manifest.served
    if served.status == "measured":  # the served configuration's own test figures, never another's
        assert served.model == selection.products.label
        assert [p.k for p in served.precision] == [k for k in summary.protocol.ks if k <= manifest.n]
        assert served.precision[-1].hits == summary.model(selection.products.label).at(served.precision[-1].k).hits
    study = read_campaign_study(root / SYN / "evaluation/campaigns/results.json")  # the per-campaign cap study
    assert study.model == selection.products.label
    bounds = ("boot_low", "boot_high")
    for n in study.audiences:
        base = study.uncapped(n).precision
        own = [p for p in summary.model(study.model).precision if p.k <= n]
        assert [p.model_copy(update={b: getattr(q, b) for b in bounds}) for p, q in zip(own, base, strict=True)] == base
    assert "## Campaign caps" in text and ("Measured precision of the served" in text or "**not measured**" in text)
    assert "[evaluate](datasets/synthetic/evaluate.html)" in text and "[cache](cache.html)" in text
    assert "Campaign caps: what a per-campaign cap costs" in (root / SYN / "evaluate.html").read_text()


def test_second_repro_does_nothing_and_one_weight_reruns_only_its_stages(project: tuple[Path, dict[str, str]]) -> None:
    root, env = project
    out = run(["dvc", "status"], root, env)
    assert "up to date" in out, out
    path = root / "params/features.yaml"
    params = yaml.safe_load(path.read_text())
    params["engagement"]["weights"]["recency"] = 0.30
    path.write_text(yaml.safe_dump(params, allow_unicode=True, sort_keys=False))
    changed = yaml.safe_load(run(["dvc", "status", "--json"], root, env) or "{}")
    assert {"cache", "evaluate@synthetic", "campaigns@synthetic", "sensitivity"} <= set(changed), changed
    assert not {"generate", "prepare@synthetic", "explore@synthetic"} & set(changed), changed


def test_reports_are_for_readers_and_every_link_resolves(project: tuple[Path, dict[str, str]]) -> None:
    from recsys.reporting.links import broken_report_links, markdown_broken_links
    from recsys.reporting.readme import read_block
    from recsys.reporting.summary import FINDINGS_END, FINDINGS_START

    root, _ = project
    assert broken_report_links(root / "reports") == {}  # every href/src of every rendered report
    assert markdown_broken_links(root / "reports/summary.md") == []
    titles = {
        SYN / "evaluate.html": "Evaluation of the rankers · data set synthetic",
        SYN / "cf_proof.html": "Collaborative filtering vs engagement · data set synthetic",
        SYN / "explore.html": "Exploration of the log · data set synthetic",
        Path("reports/cache.html"): "The audience cache · data set synthetic",
    }
    for rel, title in titles.items():
        html = (root / rel).read_text()
        assert f"<title>{title}</title>" in html, rel
        assert "display(Markdown(" not in html and "from recsys import" not in html  # outputs only, no code
        assert f'href="{rel.with_suffix(".ipynb").name}"' in html  # the executed notebook next to it
    summary = read_summary(root / SYN / "evaluation/summary.json")
    evaluate = (root / SYN / "evaluate.html").read_text()
    assert evaluate.index("The answer at k = ") < evaluate.index("The evidence") < evaluate.index("Protocol")
    assert "reports/evaluation/summary.json" not in evaluate  # the per-data-set path, linked
    findings = read_block(root / "README.md", FINDINGS_START, FINDINGS_END)
    assert findings is not None and findings.startswith("**[`synthetic`](reports/datasets/synthetic/evaluate.html)")
    assert summary.default_ranker is None or summary.default_ranker.label in findings
    assert (root / "reports/summary.md").read_text().split("\n## ")[1].startswith("What we found")
