"""Wall time of every stage of the research pipeline, run one stage at a time in DVC's order.

Usage: ``python benchmarks/bench_pipeline.py [--stages A B ...] [--output FILE]`` (inside the venv, after
``make run`` once so every input exists). Each stage runs as ``dvc repro --force --single-item <stage>`` in
dvc.lock's order (DVC writes the lock in execution order), so a stage's time is its own. It reruns everything:
about as long as ``make run`` with nothing up to date. Writes ``reports/benchmarks/pipeline.json``: per stage
wall seconds and the peak summed RSS of the stage's process tree (sampled every 0.2 s), and the total.
"""

from __future__ import annotations

import argparse
import subprocess  # nosec B404 # runs dvc stages as child processes
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from recsys import config

from _report import emit


def topological(lock: Path) -> list[str]:
    """Stages in dvc.lock order (DVC writes the lock in execution order)."""
    data = yaml.safe_load(lock.read_text(encoding="utf-8")) or {}
    return list((data.get("stages") or {}).keys())


def tree_rss(proc: psutil.Process) -> int:
    """Summed RSS (bytes) of a process and its children (0 once it is gone)."""
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def run_stage(name: str, poll_s: float = 0.2) -> dict[str, Any]:
    """Run one stage forcibly; its wall time and the peak summed RSS of its process tree (sampled)."""
    t0 = time.perf_counter()
    popen = subprocess.Popen(  # nosec B603 # argv built here from sys.executable and a dvc.lock stage name, no shell
        [sys.executable, "-m", "dvc", "repro", "--force", "--single-item", name],
        cwd=config.PROJ_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc = psutil.Process(popen.pid)
    peak = 0
    while popen.poll() is None:
        peak = max(peak, tree_rss(proc))
        time.sleep(poll_s)
    wall = time.perf_counter() - t0
    err = popen.stderr.read() if popen.stderr is not None else ""
    return {
        "stage": name,
        "wall_s": round(wall, 1),
        "peak_rss_mib": round(peak / 2**20, 1),
        "ok": popen.returncode == 0,
        "error": None if popen.returncode == 0 else err.strip().splitlines()[-3:],
    }


def main(argv: list[str] | None = None) -> int:
    """Time every stage (or the given ones) and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="*", help="stage names (default: every stage, in DVC's order)")
    parser.add_argument("--output", type=Path, help="report path (default reports/benchmarks/pipeline.json)")
    args = parser.parse_args(argv)
    stages = args.stages or topological(config.PROJ_ROOT / "dvc.lock")
    rows = []
    for name in stages:
        row = run_stage(name)
        print(f"{name}: {row['wall_s']} s", file=sys.stderr, flush=True)
        rows.append(row)
    report = {
        "stages": rows,
        "total_s": round(sum(r["wall_s"] for r in rows), 1),
        "all_ok": all(r["ok"] for r in rows),
        "note": "each stage forced and run alone (dvc repro --force --single-item), in dvc.lock order",
    }
    emit(report, "pipeline", args.output)
    return 0 if report["all_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
