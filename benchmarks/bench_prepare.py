"""Benchmark: generate + prepare at a scale (default 1.0 = 0.5M rows); wall time and peak RSS per phase.

Each phase runs in a fresh subprocess so its peak RSS (ru_maxrss) is its own. Writes
reports/benchmarks/prepare.json and prints it.

    python benchmarks/bench_prepare.py [--scale 1.0] [--seed 42]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess  # nosec B404 # runs its own benchmark cells as child processes
import sys
import tempfile
from pathlib import Path

from recsys.config import REPORTS_DIR

CHILD = """
import json, resource, sys, time
from pathlib import Path
phase, raw, out, scale, seed = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
t0 = time.perf_counter()
if phase == "generate":
    from recsys.data.synthetic import generate
    info = generate(raw, scale=scale, seed=seed)
    rows = info["rows"]
else:
    from recsys.data.contract import PRESETS
    from recsys.data.prepare import prepare
    rows = prepare(raw, out, PRESETS["case_study"]).rows_in
wall = time.perf_counter() - t0
peak_rss_mib = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
print(json.dumps({"rows": rows, "wall_s": round(wall, 3), "peak_rss_mib": peak_rss_mib}))
"""


def run_phase(phase: str, raw: Path, out: Path, scale: float, seed: int) -> dict:
    """Run one phase in a subprocess and return its JSON line."""
    proc = subprocess.run(  # nosec B603 # argv built here from sys.executable and this script, no shell
        [sys.executable, "-c", CHILD, phase, str(raw), str(out), str(scale), str(seed)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    """Measure both phases and write the report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw.csv", Path(tmp) / "interactions.parquet"
        result = {
            "scale": args.scale,
            "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "load_average": os.getloadavg()},
            "generate": run_phase("generate", raw, out, args.scale, args.seed),
            "raw_csv_mib": round(raw.stat().st_size / 2**20, 1) if raw.exists() else None,
            "prepare": run_phase("prepare", raw, out, args.scale, args.seed),
        }
    path = REPORTS_DIR / "benchmarks" / "prepare.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
