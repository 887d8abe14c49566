"""Cache build, pandas engine vs Spark engine (local mode): wall time, peak memory, output rows per scale.

Writes reports/benchmarks/engines.json and engines.md. One cell = one (engine, scale) build of the
activity cache (features + top-N of every product + the artifact), run in a fresh child process; the
parent samples the resident memory of the child's whole process tree (Python driver, the Spark JVM
with its local executors, any worker) every 0.2 s and keeps the peak of the sum. Cells already in
the JSON are skipped (resumable) unless --force; run one cell with --engine X --scale Y.

    nice -n 10 .venv/bin/python benchmarks/bench_engines.py --scale 1 --scale 10          # both engines
    nice -n 10 .venv/bin/python benchmarks/bench_engines.py --engine spark --scale 30 --data-dir /big/bench
    .venv/bin/python benchmarks/bench_engines.py --scale 0.05 --no-write                       # smoke run

Data per scale is generated once (``recsys generate``, sharded from scale 100 on, then ``recsys
prepare``) into --data-dir/scale-<s>/ (a temp dir by default, removed afterwards unless --keep-data).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess  # nosec B404 # runs its own benchmark cells and git as child processes
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench_rank import machine, prepare_data  # the shared data preparation and machine facts (a sibling script)

ENGINES: tuple[str, ...] = ("pandas", "spark")
GIB = 1024**3
MACHINE_GIB = 24.0
SAMPLE_S = 0.2


# ----------------------------------------------------------------------------------------------
# child: one build
# ----------------------------------------------------------------------------------------------


def run_cell(
    engine: str, prepared: Path, cache_dir: Path, n: int, driver_memory: str, partitions: int
) -> dict[str, Any]:
    """Build the activity cache with `engine`; return wall time and the manifest's counts."""
    import logging

    from recsys.cache.stage import build_cache_from_params

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # uncapped on both engines: the exposure cap is a single-machine allocation (Spark refuses it), and the
    # comparison is of the same work (the activity ranker's own top-n, byte-identical between the engines)
    overrides: dict[str, Any] = {
        "ranker": "activity",
        "n": n,
        "export": None,
        "engine": engine,
        "allocation": {"max_exposures": None},
    }
    if engine == "spark":
        overrides["spark"] = {"master": "local[2]", "driver_memory": driver_memory, "shuffle_partitions": partitions}
    t0 = time.perf_counter()
    manifest = build_cache_from_params(prepared, cache_dir, overrides=overrides)
    wall = time.perf_counter() - t0
    counts = manifest.counts
    return {
        "build_s": wall,
        "rows": counts.rows,
        "products": counts.products,
        "interactions": counts.interactions,
        "customers": counts.customers,
        "audience_sha256": manifest.files.audience_sha256,
    }


def content_volume(prepared: Path) -> dict[str, Any]:
    """Upper bound of the content ranker's (product, customer) candidates: the rows a Spark join would materialise."""
    import numpy as np

    from recsys import config
    from recsys.cache.build import canonical_order
    from recsys.cache.served import explicit_params
    from recsys.data.contract import load_prepared
    from recsys.rankers import make_ranker

    cache_params = config.load_params("cache")
    cache_params["cache"] = {**cache_params["cache"], "ranker": "content"}
    params = explicit_params(cache_params["cache"]["ranker"], cache_params["cache"], config.load_params("features"))
    t0 = time.perf_counter()
    ranker = make_ranker("content", params).fit(canonical_order(load_prepared(prepared)))
    estimate = ranker.candidate_estimate()
    return {
        "fit_s": round(time.perf_counter() - t0, 2),
        "products": int(len(estimate)),
        "candidate_pairs": int(estimate.sum()),
        "candidates_per_product_mean": round(float(np.mean(estimate)), 1),
        "token_user_cap": int(params.get("token_user_cap", 200)),
    }


# ----------------------------------------------------------------------------------------------
# parent: sampling, cells, report
# ----------------------------------------------------------------------------------------------


def tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants (processes that vanish count 0)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def spawn_cell(
    engine: str, prepared: Path, n: int, driver_memory: str, partitions: int, timeout_s: float
) -> dict[str, Any]:
    """Run one cell in a child process, sampling its process tree's RSS; return its figures or its error."""
    cache_dir = Path(tempfile.mkdtemp(prefix=f"bench-engines-{engine}-"))
    cmd = [
        sys.executable,
        __file__,
        "--child",
        engine,
        "--prepared",
        str(prepared),
        "--cache-dir",
        str(cache_dir / "cache"),
        "--n",
        str(n),
        "--driver-memory",
        driver_memory,
        "--partitions",
        str(partitions),
    ]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")]))
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # nosec B603 # argv built here (sys.executable, this script, numbers), no shell
    watched = psutil.Process(proc.pid)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss(watched))
            stop.wait(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        for p in watched.children(recursive=True):
            p.kill()
        proc.kill()
        out, err = proc.communicate()
        err = f"timed out after {timeout_s:.0f} s\n{err}"
    finally:
        stop.set()
        sampler.join()
        shutil.rmtree(cache_dir, ignore_errors=True)
    wall = time.perf_counter() - t0
    cell: dict[str, Any] = {
        "engine": engine,
        "wall_s": round(wall, 2),
        "peak_rss_gib": round(peak / GIB, 3),
        "load_avg_1m_before": round(load_before[0], 2),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if proc.returncode != 0:
        tail = (err or "").strip().splitlines()
        cell.update(
            {
                "error": tail[-1] if tail else f"exit {proc.returncode}",
                "returncode": proc.returncode,
                "stderr_tail": (err or "")[-3000:],
            }
        )
        return cell
    cell.update(json.loads(out.strip().splitlines()[-1]))
    steps = [line.split(": ", 1)[1] for line in (err or "").splitlines() if "spark build: " in line]
    if steps:
        cell["steps"] = [step.split("spark build: ", 1)[-1] for step in steps]
    return cell


def code_version() -> str:
    """The commit the cell ran (with '+dirty' when code, params or benchmarks had changes), or 'unknown'."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(  # nosec B603 B607 # fixed git argv to label the results, no shell; git from PATH
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(  # nosec B603 B607 # fixed git argv to label the results, no shell; git from PATH
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "recsys", "params", "benchmarks"],
            cwd=root,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def scale_key(scale: float) -> str:
    """JSON key of a scale: 1.0 -> '1', 0.05 -> '0.05'."""
    return f"{scale:g}"


def findings(cells: dict[str, dict[str, Any]]) -> list[str]:
    """Sentences computed from the measured cells: where Spark overtakes pandas, where pandas stops fitting."""
    by_scale: dict[float, dict[str, dict[str, Any]]] = {}
    for cell in cells.values():
        by_scale.setdefault(float(cell["scale"]), {})[cell["engine"]] = cell
    lines = []
    both = [(s, c) for s, c in sorted(by_scale.items()) if all(e in c and "error" not in c[e] for e in ENGINES)]
    faster = [s for s, c in both if c["spark"]["wall_s"] < c["pandas"]["wall_s"]]
    if not both:
        lines.append("No scale has a successful cell for both engines yet.")
    elif faster:
        lines.append(
            f"Spark (local[2]) is faster than pandas from scale {faster[0]:g} on among the measured scales "
            f"({', '.join(f'{s:g}' for s, _ in both)})."
        )
    else:
        ratios = ", ".join(f"{c['spark']['wall_s'] / c['pandas']['wall_s']:.1f}x at scale {s:g}" for s, c in both)
        lines.append(
            f"Where both engines complete, Spark (local[2]) is slower than pandas (Spark / pandas wall time: {ratios})."
        )
    pandas_ok = [(s, c["pandas"]) for s, c in sorted(by_scale.items()) if "pandas" in c and "error" not in c["pandas"]]
    pandas_failed = [s for s, c in sorted(by_scale.items()) if "pandas" in c and "error" in c["pandas"]]
    if pandas_failed:
        s_fail = pandas_failed[0]
        cell = by_scale[s_fail]["pandas"]
        killed = cell.get("returncode") == -9
        why = f"killed by the kernel at {cell['peak_rss_gib']:.1f} GiB: out of memory" if killed else cell["error"]
        lines.append(f"pandas failed at scale {s_fail:g} ({why}).")
        spark = by_scale[s_fail].get("spark")
        if spark is not None and "error" not in spark:
            lines.append(
                f"At scale {s_fail:g} only Spark completes: {spark['wall_s']:.0f} s, peak {spark['peak_rss_gib']:.1f} "
                f"GiB, {spark['rows']:,} rows — where pandas stops fitting the machine, Spark takes over."
            )
    if pandas_ok:
        s_max, top = pandas_ok[-1]
        lines.append(
            f"pandas fit the machine ({MACHINE_GIB:g} GiB) at every scale it completed, up to scale {s_max:g} "
            f"(peak {top['peak_rss_gib']:.1f} GiB)."
        )
    if len(pandas_ok) >= 2 and not pandas_failed:  # a measured failure replaces the extrapolation
        (s0, a), (s1, b) = pandas_ok[-2], pandas_ok[-1]
        slope = (b["peak_rss_gib"] - a["peak_rss_gib"]) / (s1 - s0)
        if slope > 0:
            reach = s1 + (MACHINE_GIB - b["peak_rss_gib"]) / slope
            lines.append(
                f"Extrapolating pandas' peak linearly from scales {s0:g} and {s1:g} ({slope:.2f} GiB per unit of "
                f"scale), it reaches {MACHINE_GIB:g} GiB near scale {reach:.0f} (an extrapolation, not a measurement)."
            )
    same = [
        s
        for s, c in sorted(by_scale.items())
        if all(e in c and "error" not in c[e] for e in ENGINES)
        and c["pandas"].get("audience_sha256") == c["spark"].get("audience_sha256")
    ]
    if same:
        lines.append(
            f"audience.parquet is byte-identical between the engines at scale(s) {', '.join(f'{s:g}' for s in same)}."
        )
    loaded = [c for c in cells.values() if c.get("load_avg_1m_before", 0) > 2.5]
    if loaded:
        lines.append(
            f"{len(loaded)} cell(s) ran while the 2-core machine was shared (1-minute load average above 2.5 "
            "at the start): their times are indicative only."
        )
    return lines


def markdown(report: dict[str, Any]) -> str:
    """The report as a markdown table plus the computed findings."""
    rows = sorted(report["cells"].values(), key=lambda c: (float(c["scale"]), c["engine"]))
    out = [
        "# Cache build: pandas vs Spark (local[2])",
        "",
        "Generated by `benchmarks/bench_engines.py` from `engines.json`; activity ranker, N = "
        f"{report.get('n', '?')}, uncapped on both engines (the exposure cap is a single-machine allocation). "
        "Peak memory = sum of the resident sets of the build's process tree (sampled every "
        f"{SAMPLE_S} s).",
        "",
        "| scale | engine | wall s | build s | peak GiB | interactions | products | rows | load before | measured |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for c in rows:
        if "error" in c:
            out.append(
                f"| {c['scale']} | {c['engine']} | {c['wall_s']} | failed: {c['error'][:60]} | {c['peak_rss_gib']} "
                f"| | | | {c['load_avg_1m_before']} | {c['measured_at']} |"
            )
            continue
        out.append(
            f"| {c['scale']} | {c['engine']} | {c['wall_s']} | {c['build_s']:.1f} | {c['peak_rss_gib']} | "
            f"{c['interactions']:,} | {c['products']:,} | {c['rows']:,} | {c['load_avg_1m_before']} | "
            f"{c['measured_at']} |"
        )
    out += ["", *[f"- {line}" for line in report["findings"]], ""]
    volumes = report.get("content_volume", {})
    if volumes:
        out += [
            "Content ranker, why it is not ported: its (product, customer) candidates before the top-N "
            "(rows a Spark join would materialise and shuffle):",
            "",
            "| scale | products | candidate pairs | per product |",
            "| ---: | ---: | ---: | ---: |",
        ]
        for key in sorted(volumes, key=float):
            v = volumes[key]
            out.append(f"| {key} | {v['products']:,} | {v['candidate_pairs']:,} | {v['candidates_per_product_mean']} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Run the requested cells and write the report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, action="append", help="data scale (repeatable; default 1)")
    parser.add_argument("--engine", action="append", choices=ENGINES, help="engine (repeatable; default both)")
    parser.add_argument("--data-dir", type=Path, help="where generated data lives (default: a temp dir per scale)")
    parser.add_argument("--keep-data", action="store_true", help="keep generated data")
    parser.add_argument("--force", action="store_true", help="rerun cells already in the report")
    parser.add_argument("--n", type=int, default=100, help="audience depth")
    parser.add_argument(
        "--driver-memory", default="8g", help="Spark driver JVM heap (local mode runs the executors in it)"
    )
    parser.add_argument("--partitions", type=int, default=16, help="Spark shuffle partitions")
    parser.add_argument("--timeout", type=float, default=6 * 3600, help="seconds before a cell is killed")
    parser.add_argument("--out", type=Path, help="JSON report (default reports/benchmarks/engines.json)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--content-volume", action="store_true", help="also count the content ranker's candidates per scale"
    )
    parser.add_argument("--render", action="store_true", help="only rewrite engines.md / findings from engines.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--prepared", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "content-volume":
        print(json.dumps(content_volume(args.prepared)))
        return 0
    if args.child:
        print(
            json.dumps(run_cell(args.child, args.prepared, args.cache_dir, args.n, args.driver_memory, args.partitions))
        )
        return 0

    from recsys import config

    out_path = args.out or config.REPORTS_DIR / "benchmarks" / "engines.json"
    report: dict[str, Any] = json.loads(out_path.read_text()) if out_path.is_file() and not args.no_write else {}
    report.setdefault("cells", {})
    if args.render:
        write_report(report, out_path, int(report.get("n", args.n)))
        return 0
    engines = args.engine or list(ENGINES)
    for scale in args.scale or [1.0]:
        todo = [e for e in engines if args.force or f"{e}@{scale_key(scale)}" not in report["cells"]]
        volume = args.content_volume and (args.force or scale_key(scale) not in report.get("content_volume", {}))
        if not todo and not volume:
            print(f"scale {scale:g}: already measured ({', '.join(engines)}); --force to rerun", flush=True)
            continue
        data_dir = args.data_dir / f"scale-{scale_key(scale)}" if args.data_dir else None
        prepared, temp = prepare_data(scale, data_dir)
        try:
            if volume:
                cmd = [sys.executable, __file__, "--child", "content-volume", "--prepared", str(prepared)]
                done = subprocess.run(cmd, capture_output=True, text=True, check=True)  # nosec B603 # argv built here (sys.executable, this script), no shell
                report.setdefault("content_volume", {})[scale_key(scale)] = json.loads(
                    done.stdout.strip().splitlines()[-1]
                )
                print(f"  content volume: {report['content_volume'][scale_key(scale)]}", flush=True)
            for engine in todo:
                print(f"scale {scale:g} {engine} ...", flush=True)
                cell = {
                    "scale": scale_key(scale),
                    "code": code_version(),
                    **spawn_cell(engine, prepared, args.n, args.driver_memory, args.partitions, args.timeout),
                }
                if engine == "spark":
                    cell["spark"] = {
                        "master": "local[2]",
                        "driver_memory": args.driver_memory,
                        "partitions": args.partitions,
                    }
                report["cells"][f"{engine}@{scale_key(scale)}"] = cell
                shown = {k: v for k, v in cell.items() if k not in ("stderr_tail", "audience_sha256")}
                print(f"  {shown}", flush=True)
                if not args.no_write:
                    write_report(report, out_path, args.n)
        finally:
            if temp is not None and not args.keep_data:
                shutil.rmtree(temp, ignore_errors=True)
            elif data_dir is not None and not args.keep_data:
                shutil.rmtree(data_dir, ignore_errors=True)
    if args.no_write:
        report["findings"] = findings(report["cells"])
        print(markdown({**report, "n": args.n}))
    return 0


def write_report(report: dict[str, Any], out_path: Path, n: int) -> None:
    """Write engines.json and engines.md (findings recomputed from every cell)."""
    report["n"] = n
    report["findings"] = findings(report["cells"])
    report["machine"] = machine()
    report["note"] = (
        "One cell = one activity cache build in a fresh child process; wall_s includes interpreter/JVM start, "
        "build_s is build_cache_from_params inside the child; peak_rss_gib = peak of the summed RSS of the "
        "child's process tree sampled every 0.2 s; load averages show whether the machine was shared."
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    out_path.with_suffix(".md").write_text(markdown(report))
    print(f"wrote {out_path} and {out_path.with_suffix('.md').name}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
