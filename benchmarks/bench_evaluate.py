"""Benchmark the full evaluation (recsys.evaluation.run.run_evaluation); writes reports/benchmarks/evaluate.json.

Target at scale 1.0: the whole evaluation — tuning every model on the validation window, one test
fit and scoring per model, new products, intervals, comparisons — in <= 240 s on 2 cores. Records
wall and process CPU time per phase and per model (tuning fit / rank, test fit / rank), peak RSS,
and the machine's load average before/after (other jobs on a shared machine inflate wall times;
CPU seconds are the steadier figure, and the JSON says so instead of hiding it).

    nice -n 10 .venv/bin/python benchmarks/bench_evaluate.py                # data/prepared (or generate scale 1.0)
    nice -n 10 .venv/bin/python benchmarks/bench_evaluate.py --scale 0.1 --no-write
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _report import emit, peak_rss_mib

TARGET_SECONDS: dict[str, float] = {"1.0": 240.0}


def load_data(input_path: Path | None, scale: float, seed: int) -> tuple[Any, str]:
    """The prepared table: the given file, data/prepared at scale 1.0, else a generated synthetic log."""
    from recsys import config
    from recsys.data.contract import PRESETS, load_prepared

    candidate = input_path or (config.PREPARED_PARQUET if scale == 1.0 else None)
    if candidate is not None and Path(candidate).is_file():
        return load_prepared(Path(candidate)), config.relative(candidate)
    from recsys.data.prepare import prepare
    from recsys.data.synthetic import generate

    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    generate(tmp / "raw.csv", scale=scale, seed=seed)
    prepare(tmp / "raw.csv", tmp / "interactions.parquet", PRESETS["case_study"])
    return load_prepared(tmp / "interactions.parquet"), f"synthetic scale {scale} seed {seed} (generated)"


def summarise_phases(timings: dict[str, float]) -> dict[str, Any]:
    """Group the phase timings per model (tuning fit / rank, test fit / rank) and per kind, wall and CPU."""
    by_model: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    by_kind: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for name, sec in timings.items():
        clock, _, phase = name.partition("/") if name.startswith("cpu/") else ("wall", "", name)
        parts = phase.split("/")
        if len(parts) == 3 and parts[0] in {"tune", "test"}:
            by_model[parts[2]][f"{parts[0]}_{parts[1]}_{clock}"] += sec
            by_kind[f"{parts[0]}/{parts[1]}"][clock] += sec
        else:
            by_kind[phase][clock] += sec
    r = lambda d: {k: round(v, 2) for k, v in d.items()}  # noqa: E731
    return {"by_model": {m: r(v) for m, v in by_model.items()}, "by_kind": {k: r(v) for k, v in by_kind.items()}}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, help="prepared Parquet (default: data/prepared at scale 1.0)")
    parser.add_argument("--scale", type=float, default=1.0, help="synthetic scale when no input file exists")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", type=Path, help="JSON path (default reports/benchmarks/evaluate.json)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--eval-output", type=Path, help="keep the evaluation outputs here (default: a temp dir)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

    from recsys import config
    from recsys.evaluation.run import run_evaluation

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    df, source = load_data(args.input, args.scale, args.seed)
    load_s = time.perf_counter() - t0
    params = config.load_params("evaluate")
    with tempfile.TemporaryDirectory(prefix="bench-eval-out-") as tmp:
        t1, c1 = time.perf_counter(), time.process_time()
        result = run_evaluation(params, interactions=df, output_dir=args.eval_output or Path(tmp))
        eval_s, eval_cpu = time.perf_counter() - t1, time.process_time() - c1
    summary = result.summary
    target = TARGET_SECONDS.get(str(float(args.scale)))
    report = {
        "benchmark": "evaluate",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "scale": args.scale,
        "rows": int(len(df)),
        "evaluated_products": summary.split("test").evaluated_products,
        "ranked_products": summary.split("test").ranked_products,
        "validation_products": summary.split("validation").evaluated_products,
        "new_products": summary.split("test").new_products,
        "models": sorted(m.label for m in summary.models),
        "skipped_models": summary.skipped_models,
        "validation_trials": {t.model: len(t.trials) for t in summary.tuning},
        "validation_fits": {t.model: t.fits for t in summary.tuning},
        "bootstrap_replicates": summary.protocol.n_boot,
        "load_data_seconds": round(load_s, 2),
        "evaluation_seconds": round(eval_s, 2),
        "evaluation_cpu_seconds": round(eval_cpu, 2),
        "target_seconds": target,
        "within_target": None if target is None else bool(eval_s <= target),
        "phases": summarise_phases(result.timings),
        "phase_seconds": result.timings,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "openblas_num_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
    }
    emit(report, "evaluate", args.output, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
