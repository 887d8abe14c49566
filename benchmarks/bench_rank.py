"""Benchmark features, rankers, cache build/load and lookups; writes reports/benchmarks/rank.json.

Every phase runs in its own subprocess, so its peak RSS (``ru_maxrss``, including the interpreter
and imported libraries) is honest and phases do not inherit each other's memory.

    nice -n 10 .venv/bin/python benchmarks/bench_rank.py                 # scale 1.0 (data/prepared)
    nice -n 10 .venv/bin/python benchmarks/bench_rank.py --scale 10      # generates into a temp dir
    .venv/bin/python benchmarks/bench_rank.py --scale 0.05 --phases features,activity --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess  # nosec B404 # runs its own benchmark cells and the recsys CLI as child processes
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from _report import peak_rss_mib

PHASES: tuple[str, ...] = ("features", "activity", "cache_build", "content", "rescore", "cache_load")
GIB = 1024**3
TARGETS: dict[str, dict[str, float]] = {
    # scale 1.0: features + activity top-100 of every product + cache write (the cache_build phase)
    "1.0": {
        "cache_build_s": 20.0,
        "cache_build_rss_gib": 2.0,
        "content_s": 120.0,
        "cache_load_s": 2.0,
        "lookup_p99_us": 50.0,
        "rescore_s": 0.3,
    },
    "10.0": {"peak_rss_gib": 12.0, "cache_load_s": 2.0, "lookup_p99_us": 50.0},
}


def _timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """(result, wall seconds)."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------
# phases (run inside a child process)
# ----------------------------------------------------------------------------------------------


def phase_features(prepared: Path, cache_dir: Path, n: int, lookups: int) -> dict[str, Any]:
    """Load + compute_features (raw features, normalisation, engagement) of every customer."""
    from recsys.data.contract import load_prepared
    from recsys.features.engagement import compute_features, load_feature_params

    df, load_s = _timed(load_prepared, prepared)
    feats, feat_s = _timed(compute_features, df, load_feature_params())
    return {"rows": len(df), "users": len(feats), "load_s": load_s, "wall_s": feat_s}


RESCORE_CHANGES: tuple[dict[str, Any], ...] = (
    {"features": {"engagement": {"weights": {"recency": 0.3}}}},
    {"features": {"engagement": {"normalisation": "minmax", "weights": {"recency": 0.4}}}},
    {"features": {"engagement": {"normalisation": "percentile"}, "features": {"event_weights": {"cart": 4.0}}}},
    {"features": {"engagement": {"normalisation": "log1p_minmax"}, "features": {"event_weights": {"cart": 5.0}}}},
)


def phase_rescore(prepared: Path, cache_dir: Path, n: int, lookups: int) -> dict[str, Any]:
    """The re-score API (the dashboard's what-if): one product's top-n over all customers under changed knobs."""
    from recsys import config
    from recsys.cache.served import explicit_params
    from recsys.data.contract import load_prepared
    from recsys.rankers import make_ranker

    df = load_prepared(prepared)
    products = _catalogue(df)
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"products_per_ranker": 40}
    for name in ("activity", "recency", "content"):
        cache_params = config.load_params("cache")
        cache_params = {**cache_params, "cache": {**cache_params["cache"], "ranker": name}}
        ranker, fit_s = _timed(
            make_ranker(
                name,
                explicit_params(cache_params["cache"]["ranker"], cache_params["cache"], config.load_params("features")),
            ).fit,
            df,
        )
        times = []
        for i, product in enumerate(rng.choice(products, size=40)):
            changes = dict(RESCORE_CHANGES[i % len(RESCORE_CHANGES)])
            if name == "content":
                changes["affinity_weight"] = 0.3 + 0.01 * i
            times.append(_timed(ranker.rescore, [product], n, changes)[1])
        out[name] = {
            "fit_s": round(fit_s, 3),
            "max_s": round(max(times), 4),
            "p50_s": round(float(np.median(times)), 4),
            "first_s": round(times[0], 4),
        }
    return out


def _catalogue(df: Any) -> np.ndarray:
    """Every product id of the table, sorted."""
    from recsys.cache.build import catalogue_ids

    return catalogue_ids(df)


def _rank_all(name: str, prepared: Path, n: int) -> dict[str, Any]:
    """Load, fit `name`, rank the whole catalogue top-n."""
    from recsys import config
    from recsys.cache.served import explicit_params
    from recsys.data.contract import load_prepared
    from recsys.rankers import make_ranker

    df, load_s = _timed(load_prepared, prepared)
    cache_params = config.load_params("cache")
    cache_params = {**cache_params, "cache": {**cache_params["cache"], "ranker": name}}
    params = explicit_params(cache_params["cache"]["ranker"], cache_params["cache"], config.load_params("features"))
    ranker, fit_s = _timed(make_ranker(name, params).fit, df)
    products = _catalogue(df)
    recs, rank_s = _timed(ranker.rank, products, n)
    return {
        "products": len(products),
        "entries": int(recs.offsets[-1]),
        "load_s": load_s,
        "fit_s": fit_s,
        "rank_s": rank_s,
        "wall_s": fit_s + rank_s,
    }


def phase_activity(prepared: Path, cache_dir: Path, n: int, lookups: int) -> dict[str, Any]:
    """Activity ranking (features + exclusion-aware top-n) of every product."""
    return _rank_all("activity", prepared, n)


def phase_content(prepared: Path, cache_dir: Path, n: int, lookups: int) -> dict[str, Any]:
    """Content ranking of every product."""
    return _rank_all("content", prepared, n)


def phase_cache_build(prepared: Path, cache_dir: Path, n: int, lookups: int) -> dict[str, Any]:
    """build_cache_from_params with the activity ranker: load, features, rank, write Parquet + lookup."""
    from recsys.cache import stage as cache

    manifest, wall = _timed(
        cache.build_cache_from_params, prepared, cache_dir, overrides={"ranker": "activity", "n": n, "export": None}
    )
    size = sum(f.stat().st_size for f in cache_dir.rglob("*") if f.is_file())
    return {
        "wall_s": wall,
        "rows": manifest.counts.rows,
        "products": manifest.counts.products,
        "disk_mib": size / 2**20,
        "parquet_mib": (cache_dir / manifest.files.audience).stat().st_size / 2**20,
    }


def phase_cache_load(prepared: Path, cache_dir: Path, n: int, lookups: int) -> dict[str, Any]:
    """AudienceLookup.open, then in-process top(n) latency over random known products."""
    from recsys.cache.lookup import AudienceLookup

    lookup, open_s = _timed(AudienceLookup.open, cache_dir)
    rng = np.random.default_rng(0)
    ids = rng.choice(np.asarray(lookup.product_ids()), size=lookups).tolist()
    for p in ids[:1000]:  # warm the page cache like a running service
        lookup.top(p, n)
    lat = np.empty(len(ids), dtype=np.float64)
    clock = time.perf_counter_ns
    for j, p in enumerate(ids):
        t0 = clock()
        lookup.top(p, n)
        lat[j] = clock() - t0
    us = lat / 1_000.0
    return {
        "wall_s": open_s,
        "lookups": len(ids),
        "p50_us": float(np.percentile(us, 50)),
        "p99_us": float(np.percentile(us, 99)),
        "mean_us": float(us.mean()),
        "max_us": float(us.max()),
    }


def run_phase(name: str, prepared: Path, cache_dir: Path, n: int, lookups: int) -> dict[str, Any]:
    """Run one phase here and add this process's peak RSS."""
    fn = globals()[f"phase_{name}"]
    out, total = _timed(fn, prepared, cache_dir, n, lookups)
    return {**out, "total_s": total, "peak_rss_mib": peak_rss_mib()}


# ----------------------------------------------------------------------------------------------
# parent
# ----------------------------------------------------------------------------------------------


def _child_env() -> dict[str, str]:
    """Environment of the child processes: single-threaded BLAS, project importable."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env


def spawn_phase(name: str, prepared: Path, cache_dir: Path, n: int, lookups: int) -> dict[str, Any]:
    """Run a phase in a fresh interpreter and parse its JSON line."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--prepared",
        str(prepared),
        "--cache-dir",
        str(cache_dir),
        "--n",
        str(n),
        "--lookups",
        str(lookups),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env())  # nosec B603 # argv built here (sys.executable, this script), no shell
    if proc.returncode != 0:
        return {
            "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}",
            "stderr_tail": proc.stderr[-2000:],
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


def prepare_data(scale: float, data_dir: Path | None) -> tuple[Path, Path | None]:
    """The prepared Parquet for `scale`: data/prepared at 1.0, else generated into `data_dir` (temp by default)."""
    from recsys import config

    if scale == 1.0 and data_dir is None:
        if not config.PREPARED_PARQUET.is_file():
            raise SystemExit(f"{config.PREPARED_PARQUET} missing: run `recsys generate` and `recsys prepare` first")
        return config.PREPARED_PARQUET, None
    temp = None
    if data_dir is None:
        data_dir = temp = Path(tempfile.mkdtemp(prefix=f"bench-scale{scale:g}-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    raw, prepared = data_dir / "raw.csv", data_dir / "interactions.parquet"
    cli = [sys.executable, "-m", "recsys.cli"]
    if not prepared.is_file():
        for args in (
            ["generate", "--scale", str(scale), "--output", str(raw)],
            ["prepare", "--input", str(raw), "--output", str(prepared)],
        ):
            t0 = time.perf_counter()
            subprocess.run(cli + args, check=True, env=_child_env(), stdout=subprocess.DEVNULL)  # nosec B603 # the recsys CLI with arguments built here, no shell
            print(f"  {args[0]}: {time.perf_counter() - t0:.1f} s", flush=True)
    return prepared, temp


def check_targets(scale_key: str, phases: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Compare measured figures with the targets of this scale."""
    t = TARGETS.get(scale_key, {})
    measured = {
        "cache_build_s": phases.get("cache_build", {}).get("total_s"),
        "cache_build_rss_gib": (phases.get("cache_build", {}).get("peak_rss_mib") or 0) / 1024 or None,
        "content_s": phases.get("content", {}).get("wall_s"),
        "cache_load_s": phases.get("cache_load", {}).get("wall_s"),
        "lookup_p99_us": phases.get("cache_load", {}).get("p99_us"),
        "rescore_s": max(
            (v["max_s"] for k, v in phases.get("rescore", {}).items() if isinstance(v, dict)), default=None
        ),
        "peak_rss_gib": max((p.get("peak_rss_mib", 0) for p in phases.values()), default=0) / 1024 or None,
    }
    return {
        k: {"target": v, "measured": measured[k], "ok": measured[k] is not None and measured[k] <= v}
        for k, v in t.items()
        if measured.get(k) is not None
    }


def machine() -> dict[str, Any]:
    """Where the numbers were measured."""
    import pandas as pd
    import psutil
    import pyarrow
    import scipy

    return {
        "cpus": os.cpu_count(),
        "mem_gib": round(psutil.virtual_memory().total / GIB, 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "pyarrow": pyarrow.__version__,
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark for each requested scale and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, action="append", help="data scale (repeatable; default 1.0)")
    parser.add_argument("--data-dir", type=Path, help="where to generate non-default data (default: a temp dir)")
    parser.add_argument("--keep-data", action="store_true", help="keep generated temp data")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma list of {PHASES}")
    parser.add_argument("--n", type=int, default=100, help="audience depth")
    parser.add_argument("--lookups", type=int, default=100_000, help="lookups for the latency phase")
    parser.add_argument("--out", type=Path, help="JSON report (default reports/benchmarks/rank.json)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--merge", action="store_true", help="keep this scale's earlier phase results not rerun now")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--prepared", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(run_phase(args.child, args.prepared, args.cache_dir, args.n, args.lookups)))
        return 0

    from recsys import config

    out_path = args.out or config.REPORTS_DIR / "benchmarks" / "rank.json"
    report = json.loads(out_path.read_text()) if out_path.is_file() and not args.no_write else {}
    report.setdefault("runs", {})
    phases = [p for p in args.phases.split(",") if p]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        parser.error(f"unknown phase(s) {unknown}; choose from {PHASES}")
    for scale in args.scale or [1.0]:
        key = f"{scale:.1f}" if float(scale).is_integer() else f"{scale:g}"
        print(f"scale {key}", flush=True)
        data_dir = args.data_dir if args.data_dir is None or len(args.scale or [1.0]) == 1 else args.data_dir / key
        prepared, temp = prepare_data(scale, data_dir)
        cache_dir = Path(tempfile.mkdtemp(prefix=f"bench-cache-{key}-"))
        previous = report["runs"].get(key, {}).get("phases", {}) if args.merge else {}
        results: dict[str, dict[str, Any]] = {}
        try:
            for name in phases:
                if name == "cache_load" and "cache_build" not in results:
                    results["cache_build"] = spawn_phase("cache_build", prepared, cache_dir, args.n, args.lookups)
                results[name] = spawn_phase(name, prepared, cache_dir, args.n, args.lookups)
                results[name]["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
                shown = {
                    k: (round(v, 4) if isinstance(v, float) else v)
                    for k, v in results[name].items()
                    if k not in ("stderr_tail", "measured_at")
                }
                print(f"  {name}: {shown}", flush=True)
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
            if temp is not None and not args.keep_data:
                shutil.rmtree(temp, ignore_errors=True)
        results = {**previous, **results}
        run = {
            "prepared": config.relative(prepared) if temp is None else f"<temp>/{prepared.name}",
            "n": args.n,
            "phases": results,
            "targets": check_targets(key, results),
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        report["runs"][key] = run
        for k, v in run["targets"].items():
            print(f"  target {k}: measured {v['measured']:.4g} vs {v['target']} -> {'OK' if v['ok'] else 'MISSED'}")
    report["machine"] = machine()
    report["note"] = (
        "Each phase runs in a fresh subprocess; peak_rss_mib is that process's ru_maxrss "
        "(interpreter + libraries + data). total_s includes loading the prepared Parquet."
    )
    if not args.no_write:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
