"""Benchmark the learned two-stage ranker (fit, rank, GBM re-train); writes reports/benchmarks/learned.json.

The measurement is the evaluation's validation split of the data (test quantile 0.8, matched validation
window, undated rows exclusion-only): the learned ranker (its default settings, ``label_days`` = the window's
length, plus ``--params``) is fitted on the fit rows and ranks the products the evaluation ranks, to depth
max(--ks). Phases and what they time:

- ``fit``: the whole ``fit`` (inner state: sources, categories, return model, features at the inner
  cutoff; training matrix; LightGBM; final state at the real cutoff), with the ranker's own breakdown;
- ``rank``: ``rank`` of the evaluation's products (candidates, features, prediction, backfill);
- ``retrain``: ``with_params`` with other GBM settings (re-trained on the cached matrix, no source refit),
  then the same ranking again twice with the feature cache on: the first fills it, the second only predicts
  (the price of one GBM trial in a validation search);
- ``catalogue`` (``--catalogue-k`` > 0): every product of the fit rows ranked to that depth (the cache's job).

Every scale runs in a fresh subprocess, so its peak RSS (``ru_maxrss``: interpreter, libraries, data) is
honest. CPU seconds are reported beside wall seconds (steadier on a shared machine).

    nice -n 10 .venv/bin/python benchmarks/bench_learned.py                       # scale 1.0 (data/prepared)
    .venv/bin/python benchmarks/bench_learned.py --scale 0.05 --catalogue-k 300   # generates into a temp dir
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess  # nosec B404 # runs its own measurement as a child process (honest peak RSS)
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from _report import peak_rss_mib
from bench_rank import _child_env, machine, prepare_data

KS: tuple[int, ...] = (10, 100, 300, 1000)
RETRAIN: dict[str, Any] = {"n_estimators": 100, "num_leaves": 15, "learning_rate": 0.1}


def _clock(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, wall seconds, process CPU seconds) of fn()."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def run_child(prepared: Path, params: dict[str, Any], ks: tuple[int, ...], catalogue_k: int) -> dict[str, Any]:
    """Every phase in this process (a fresh interpreter): see the module docstring."""
    from recsys import config
    from recsys.data.contract import load_prepared
    from recsys.evaluation.frame import build_eval_sets
    from recsys.evaluation.settings import ranker_params
    from recsys.evaluation.split import protocol_splits
    from recsys.rankers import make_ranker
    from recsys.rankers.learned import LearnedRanker

    df = load_prepared(prepared)
    val, _ = protocol_splits(df, 0.8, "matched", "exclude_only")
    es, _ = build_eval_sets(val)
    products = es.subset(es.scored_mask()).product_ids
    full = ranker_params({"label_days": round(val.window_days, 3), **params}, config.load_params("features"), 42)
    ranker = make_ranker("learned", full)
    if not isinstance(ranker, LearnedRanker):
        raise TypeError(f"make_ranker('learned') built a {type(ranker).__name__}")
    _, fit_s, fit_cpu = _clock(lambda: ranker.fit(val.train, exclude=val.exclude))
    fit_rss = peak_rss_mib()
    depth = max(ks)
    (recs, facts), rank_s, rank_cpu = _clock(lambda: ranker.rank_with_facts(products, depth))
    pairs = int(facts.candidates.sum())
    tuned, retrain_s, retrain_cpu = _clock(lambda: ranker.with_params({**RETRAIN, "feature_cache_pairs": 10**8}))
    _, fill_s, _ = _clock(lambda: tuned.rank(products, depth))
    _, cached_s, cached_cpu = _clock(lambda: tuned.rank(products, depth))
    tuned.state_.feature_cache.clear()
    out: dict[str, Any] = {
        "rows": len(df),
        "fit_rows": len(val.train),
        "customers": int(ranker.history_.n_users),
        "products": int(ranker.history_.n_products),
        "window_days": round(val.window_days, 3),
        "settings": {k: v for k, v in ranker.params.items() if k != "features"},
        "fit": {
            "wall_s": round(fit_s, 2),
            "cpu_s": round(fit_cpu, 2),
            "breakdown_s": ranker.training_.seconds,
            "training_rows": ranker.training_.rows,
            "training_groups": ranker.training_.groups,
            "training_rows_per_s": round(ranker.training_.rows / max(ranker.training_.seconds["train"], 1e-9), 1),
            "peak_rss_mib": round(fit_rss, 1),
        },
        "rank": {
            "products": len(products),
            "k": depth,
            "wall_s": round(rank_s, 2),
            "cpu_s": round(rank_cpu, 2),
            "candidate_pairs": pairs,
            "candidates_per_product": round(pairs / max(len(products), 1), 1),
            "products_per_s": round(len(products) / max(rank_s, 1e-9), 1),
            "pairs_per_s": round(pairs / max(rank_s, 1e-9), 1),
            "backfilled_share": round(float(facts.backfilled.sum()) / max(int(recs.offsets[-1]), 1), 4),
        },
        "retrain": {
            "changes": RETRAIN,
            "retrain_wall_s": round(retrain_s, 2),
            "retrain_cpu_s": round(retrain_cpu, 2),
            "rank_filling_cache_wall_s": round(fill_s, 2),
            "rank_from_cache_wall_s": round(cached_s, 2),
            "rank_from_cache_cpu_s": round(cached_cpu, 2),
        },
    }
    if catalogue_k > 0:
        catalogue = np.asarray(ranker.history_.product_ids)[ranker.history_.signal]
        (cat_recs, cat_facts), cat_s, cat_cpu = _clock(lambda: ranker.rank_with_facts(catalogue, catalogue_k))
        out["catalogue"] = {
            "products": len(catalogue),
            "k": catalogue_k,
            "wall_s": round(cat_s, 2),
            "cpu_s": round(cat_cpu, 2),
            "candidate_pairs": int(cat_facts.candidates.sum()),
            "products_per_s": round(len(catalogue) / max(cat_s, 1e-9), 1),
            "entries": int(cat_recs.offsets[-1]),
        }
    out["peak_rss_mib"] = round(peak_rss_mib(), 1)
    return out


def spawn(prepared: Path, params: dict[str, Any], ks: tuple[int, ...], catalogue_k: int) -> dict[str, Any]:
    """Run the phases in a fresh interpreter and parse its JSON line."""
    cmd = [sys.executable, __file__, "--child", "--prepared", str(prepared), "--params", json.dumps(params)]
    cmd += ["--ks", ",".join(map(str, ks)), "--catalogue-k", str(catalogue_k)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env())  # nosec B603 # argv built here, no shell
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()
        return {"error": tail[-1] if tail else f"exit {proc.returncode}", "stderr_tail": proc.stderr[-2000:]}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark for each requested scale and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, action="append", help="data scale (repeatable; default 1.0)")
    parser.add_argument("--data-dir", type=Path, help="where to generate non-default data (default: a temp dir)")
    parser.add_argument("--keep-data", action="store_true", help="keep generated temp data")
    parser.add_argument("--params", default="{}", help="JSON settings of the learned ranker over its defaults")
    parser.add_argument("--ks", default=",".join(map(str, KS)), help="cut-offs; the ranking depth is the largest")
    parser.add_argument("--catalogue-k", type=int, default=0, help="also rank every product to this depth (0: skip)")
    parser.add_argument("--out", type=Path, help="JSON report (default reports/benchmarks/learned.json)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prepared", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    ks = tuple(sorted({int(k) for k in args.ks.split(",") if k}))
    params = dict(json.loads(args.params))

    if args.child:
        print(json.dumps(run_child(args.prepared, params, ks, args.catalogue_k)))
        return 0

    from recsys import config

    out_path = args.out or config.REPORTS_DIR / "benchmarks" / "learned.json"
    report = json.loads(out_path.read_text()) if out_path.is_file() and not args.no_write else {}
    report.setdefault("runs", {})
    for scale in args.scale or [1.0]:
        key = f"{scale:.1f}" if float(scale).is_integer() else f"{scale:g}"
        print(f"scale {key}", flush=True)
        data_dir = args.data_dir if args.data_dir is None or len(args.scale or [1.0]) == 1 else args.data_dir / key
        prepared, temp = prepare_data(scale, data_dir)
        try:
            result = spawn(prepared, params, ks, args.catalogue_k)
        finally:
            if temp is not None and not args.keep_data:
                shutil.rmtree(temp, ignore_errors=True)
        result["prepared"] = config.relative(prepared) if temp is None else f"<temp>/{prepared.name}"
        result["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        report["runs"][key] = result
        print(json.dumps(result, indent=2), flush=True)
        if "error" in result:
            print(f"scale {key} failed: {result['error']}", file=sys.stderr)
    report["benchmark"] = "learned"
    report["machine"] = machine()
    report["note"] = (
        "Validation split of the evaluation protocol; each scale runs in a fresh subprocess (peak_rss_mib = its "
        "ru_maxrss). cpu_s is process CPU time (steadier than wall time on a shared machine)."
    )
    if not args.no_write:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
