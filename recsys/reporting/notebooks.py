"""Execute a project notebook with papermill (one named kernel) into reports/ and render it to HTML."""

from __future__ import annotations

import json
import logging
import os
import re
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
    stable_table_ids(nb)
    nbformat.write(nb, executed)


STYLER_ID = re.compile(r"\bT_[0-9a-f]{5}(?![0-9a-f])")  # pandas Styler's random table uuid ("T_e62b2")
OBJECT_ADDRESS = re.compile(r" at 0x[0-9a-f]+>")  # a default repr's memory address ("<... Styler at 0x7f03b13c2990>")


def stable_table_ids(nb: Any) -> None:
    """Rename pandas Styler's random table ids in HTML outputs to T_t01, T_t02, ... in order of appearance, and drop
    memory addresses from plain-text reprs."""
    names: dict[str, str] = {}

    def rename(match: re.Match[str]) -> str:
        return names.setdefault(match.group(0), f"T_t{len(names) + 1:02d}")

    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data") or {}
            for mime, pattern, repl in (("text/html", STYLER_ID, rename), ("text/plain", OBJECT_ADDRESS, ">")):
                value = data.get(mime)
                if value is not None:
                    text = "".join(value) if isinstance(value, list) else value
                    data[mime] = pattern.sub(repl, text)


TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE = "recsys_report"  # JupyterLab's template + wide outputs scrolling in their frame + the source line
TITLES: dict[str, str] = {
    "explore": "Exploration of the log",
    "evaluate": "Evaluation of the rankers",
    "cf_proof": "Collaborative filtering vs engagement",
    "cache": "The audience cache",
    "sensitivity": "Generator sensitivity",
}


def report_title(name: str, dataset: str | None = None) -> str:
    """The browser title of a rendered report: what it is and which data it is about."""
    what = TITLES.get(name, name)
    if name == "sensitivity":
        return f"{what} · synthetic logs across the generator's unpinned settings"
    return f"{what} · data set {dataset}" if dataset else what


def rerun_command(name: str, dataset: str | None = None) -> str:
    """The DVC command that re-renders a report (its stage, per data set where the stage is a foreach)."""
    stage = {"evaluate": "evaluate_report", "sensitivity": "sensitivity_report"}.get(name, name)
    return f"dvc repro {stage}@{dataset}" if name in DATASET_NOTEBOOKS and dataset else f"dvc repro {stage}"


def source_links(name: str, html: Path, dataset: str | None = None) -> dict[str, str]:
    """Where a report comes from: relative links (from the HTML) to the executed notebook and the source notebook."""
    source = config.NOTEBOOKS_DIR / f"{name}.ipynb"
    return {
        "source_path": config.relative(source),
        "source_href": Path(os.path.relpath(source, html.parent)).as_posix(),
        "executed_href": html.with_suffix(".ipynb").name,
        "rerun": rerun_command(name, dataset),
    }


def render_html(executed: Path, name: str | None = None, dataset: str | None = None) -> Path:
    """Render an executed notebook to a standalone HTML file next to it, for a reader: no code cells (the executed
    notebook next to it and the source notebook keep the code; the page links to both), a title naming the report
    and the data set, wide outputs scrolling inside their frame."""
    import nbformat
    from nbconvert import HTMLExporter

    name = name or executed.stem
    nb = nbformat.read(executed, as_version=4)
    nb.cells = [c for c in nb.cells if c.cell_type != "code" or c.outputs]  # code without output leaves no gap
    html = executed.with_suffix(".html")
    exporter = HTMLExporter(template_name=TEMPLATE, extra_template_basedirs=[str(TEMPLATES_DIR)])
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    resources = {"metadata": {"name": report_title(name, dataset)}, "recsys": source_links(name, html, dataset)}
    nb.metadata["title"] = report_title(name, dataset)
    body, _ = exporter.from_notebook_node(nb, resources=resources)
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
    dataset = (parameters or {}).get("dataset") or (config.served_dataset() if name == "cache" else None)
    html = render_html(executed, name, dataset)
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
