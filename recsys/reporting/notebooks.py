"""Execute a project notebook with papermill (one named kernel) into reports/ and render it to HTML."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from recsys import config

log = logging.getLogger(__name__)

NOTEBOOKS: tuple[str, ...] = ("explore", "cf_proof", "cache", "evaluate", "sensitivity")
DATASET_NOTEBOOKS: tuple[str, ...] = (
    "explore",
    "evaluate",
    "cf_proof",
)  # run once per data set into reports/datasets/<name>/


def setup_logging(level: int = logging.INFO) -> None:
    """Send recsys log messages (progress of long steps) to stderr inside a notebook kernel."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write a metrics/summary JSON file (sorted keys, UTF-8, trailing newline)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(payload, indent=2, ensure_ascii=False, sort_keys=True, default=str) + "\n", encoding="utf-8"
    )


def scrub(executed: Path) -> None:
    """Drop run-specific noise (timestamps, durations, stderr progress/log streams) so reports are byte-stable."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    nb.metadata.pop("papermill", None)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"  # papermill gives its injected cell a random id
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
        if cell.cell_type == "code":
            cell.outputs = [
                o for o in cell.outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
            ]
    nbformat.write(nb, executed)


def render_html(executed: Path) -> Path:
    """Render an executed notebook to a standalone HTML file next to it (input prompts hidden)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(executed, as_version=4)
    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nb)
    html = executed.with_suffix(".html")
    html.write_text(body, encoding="utf-8")
    return html


def dataset_parameters(name: str, dataset: str) -> tuple[dict[str, Any], Path]:
    """(papermill parameters, output directory) that point notebook `name` at data set `dataset`'s files."""
    if name not in DATASET_NOTEBOOKS:
        raise ValueError(f"notebook {name!r} is not run per data set; per-data-set notebooks: {DATASET_NOTEBOOKS}")
    paths = config.dataset_paths(dataset)
    rel = config.relative
    if name == "explore":
        categories = config.dataset_config(dataset).get("categories")
        params: dict[str, Any] = {
            "dataset": dataset,
            "prepared_path": rel(paths.interactions),
            "metrics_path": rel(paths.metrics_dir / "explore.json"),
            "figures_dir": rel(paths.figures_dir / "explore"),
            "true_categories_path": rel(config.resolve(categories)) if categories else "",
        }
    else:
        params = {"dataset": dataset, "results_dir": rel(paths.evaluation_dir)}
    return params, paths.reports_dir


def run_notebook(name: str, parameters: dict[str, Any] | None = None, output_dir: Path | None = None) -> dict[str, Any]:
    """Execute notebooks/<name>.ipynb into reports/<name>.ipynb with papermill, then render HTML."""
    import papermill as pm

    if name not in NOTEBOOKS:
        raise ValueError(f"unknown notebook {name!r}; choose one of {NOTEBOOKS}")
    source = config.NOTEBOOKS_DIR / f"{name}.ipynb"
    if not source.is_file():
        raise FileNotFoundError(f"notebook {source} not found")
    out_dir = output_dir or config.REPORTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / f"{name}.ipynb"
    t0 = time.perf_counter()
    pm.execute_notebook(
        str(source),
        str(executed),
        parameters=parameters or {},
        kernel_name=config.KERNEL_NAME,
        cwd=str(config.PROJ_ROOT),
        log_output=True,
        progress_bar=False,
        request_save_on_cell_execute=False,
    )
    executed_s = time.perf_counter() - t0
    scrub(executed)
    html = render_html(executed)
    took = time.perf_counter() - t0
    log.info("notebook %s executed in %.1f s (+%.1f s HTML) -> %s", name, executed_s, took - executed_s, html)
    timing = {"notebook": name, "executed_seconds": round(executed_s, 2), "total_seconds": round(took, 2)}
    stem = name if out_dir == config.REPORTS_DIR else f"{out_dir.name}-{name}"
    write_json(config.DATA_DIR / "timings" / f"{stem}.json", timing)  # run-specific: kept out of reports/
    return {
        **timing,
        "executed": str(executed.relative_to(out_dir.parent)),
        "html": str(html.relative_to(out_dir.parent)),
    }
