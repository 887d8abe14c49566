"""Coverage of the precision interval over many random-ranker seeds; writes reports/benchmarks/coverage.json.

For every seed the random ranker is fitted on the test split's fit rows (params/evaluate.yaml split and
undated policy) and its precision@k interval is checked against the exact random expectation. Reported
per k: the share of seeds covered, mean hits vs expected hits, and the same share for two alternative
dispersions, so the choice of recsys.evaluation.intervals is backed by numbers:

- ``interval`` (reported everywhere): phi = max(1, V / H, phi_R), V = two-way cluster-robust variance;
- ``no_floor``: phi = max(1, V / H) (no truth-dispersion floor);
- ``bootstrap_variance``: phi = max(1, Var*(H) / H) with the Poisson two-way bootstrap's exact variance
  (what a raw two-way bootstrap implies: wider, never below sqrt(3) x Poisson).

    nice -n 10 .venv/bin/python benchmarks/bench_coverage.py --seeds 40      # data/prepared (scale 1.0)
    nice -n 10 .venv/bin/python benchmarks/bench_coverage.py --scale 0.02 --no-write
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from _report import emit


def main(argv: list[str] | None = None) -> int:
    """Run the coverage benchmark and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, help="prepared Parquet (default: data/prepared at scale 1.0)")
    parser.add_argument("--scale", type=float, default=1.0, help="synthetic scale when no input file exists")
    parser.add_argument("--seeds", type=int, default=40, help="random-ranker seeds (>= 30)")
    parser.add_argument("--output", type=Path, help="JSON path (default reports/benchmarks/coverage.json)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from recsys import config
    from recsys.evaluation.coverage import random_coverage
    from recsys.evaluation.frame import build_eval_sets
    from recsys.evaluation.intervals import HitSet, bootstrap_variance, cluster_variance, garwood
    from recsys.evaluation.settings import EvalConfig
    from recsys.evaluation.split import protocol_splits

    from bench_evaluate import load_data  # a sibling script: python puts benchmarks/ first on sys.path

    t0 = time.perf_counter()
    df, source = load_data(args.input, args.scale, 42)
    cfg = EvalConfig.from_params(config.load_params("evaluate")["evaluate"])
    _, test = protocol_splits(df, cfg.quantile, cfg.validation, cfg.undated_policy)
    es, _ = build_eval_sets(test, cfg.truth_events)
    seeds = list(range(1000, 1000 + args.seeds))
    run = random_coverage(test, es, seeds, cfg.ks, cfg.level)
    n_truth = int((es.n_relevant > 0).sum())

    def alt_rate(kind: str) -> list[float]:
        """Coverage per k with another dispersion (recomputed from each seed's hits)."""
        covered = np.zeros((len(seeds), len(cfg.ks)), dtype=bool)
        for i, hits in enumerate(run.hit_sets):
            for j, k in enumerate(cfg.ks):
                h: HitSet = hits.at(k)
                var = bootstrap_variance(h) if kind == "bootstrap_variance" else cluster_variance(h)
                phi = max(1.0, var / h.count) if h.count else 1.0
                lo, hi = garwood(h.count / phi, cfg.level)
                covered[i, j] = phi * lo / (k * n_truth) <= run.expected[j] <= phi * hi / (k * n_truth)
        return [round(float(x), 3) for x in covered.mean(axis=0)]

    report: dict[str, Any] = {
        "benchmark": "coverage",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source,
        "rows": int(len(df)),
        "undated_policy": cfg.undated_policy,
        "evaluated_products": len(es),
        "products_with_truth": n_truth,
        "truth_dispersion": round(es.truth_dispersion(), 4),
        "seeds": len(seeds),
        "level": cfg.level,
        "ks": list(cfg.ks),
        "coverage": [round(float(x), 3) for x in run.rate()],
        "expected_hits": [round(float(e * k * n_truth), 4) for e, k in zip(run.expected, cfg.ks, strict=True)],
        "mean_hits": [round(float(x), 4) for x in run.hits.mean(axis=0)],
        "variance_of_hits": [round(float(x), 4) for x in run.hits.var(axis=0)],
        "coverage_no_floor": alt_rate("no_floor"),
        "coverage_bootstrap_variance": alt_rate("bootstrap_variance"),
        "seconds": round(time.perf_counter() - t0, 1),
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    emit(report, "coverage", args.output, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
