"""Honest offline evaluation: which ranker finds the customers who will engage with each product?

``run_evaluation(params)`` (params/evaluate.yaml, block ``evaluate``):

1. temporal split at a date quantile of the dated rows (recsys.evaluation.split; undated rows never
   reach the test side);
2. ground truth per product = its test-period customers (optionally only some event types);
3. every product present in both periods is evaluated (no sampling); products new in the test period
   are reported separately (each ranker's cold-start global order);
4. precision / recall / hit rate / NDCG / MAP @k, macro-averaged over products, 95% paired bootstrap
   CIs over products (seeded);
5. references: the exact expectation of random targeting, the seeded ``random`` ranker and the oracle
   ceiling; lift over random with a CI;
6. every model of ``models`` (random, activity with two normalisations, recency, content, ALS, BPR,
   BG/NBD) is fitted on the same training side and ranks the same products;
7. a rolling-origin backtest repeats the comparison at several cutoffs;
8. diagnostics by customers' number of training interactions (0, 1, 2+);
9. outputs: metrics JSON (DVC metrics), long CSV tables (DVC plots) and a generated conclusion.

Run: ``python -m recsys.evaluation.run`` (add ``--input``, ``--output-dir``, ``--quick``).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys import config
from recsys.data.contract import load_prepared
from recsys.evaluation.frame import EvalSet, build_eval_sets
from recsys.evaluation.references import oracle_metrics, random_metrics
from recsys.evaluation.report import (
    ORACLE_REF,
    RANDOM_REF,
    conclusion_text,
    flat_metrics,
    hit_count,
    lift_verdict,
    models_of,
    paired_difference,
    random_hit_test,
    ranking_at,
    segment_table,
    slice_table,
)
from recsys.evaluation.scoring import Segment, coded_recommendations, score_lists, slice_scores, slice_shares
from recsys.evaluation.split import Split, split_summary, temporal_split
from recsys.rankers import make_ranker

log = logging.getLogger(__name__)

DEFAULT_KS: tuple[int, ...] = (5, 10, 20, 50, 100)
OUTPUT_FILES: dict[str, str] = {
    "metrics": "metrics.json",
    "main": "metrics_at_k.csv",
    "new_products": "new_products_at_k.csv",
    "backtest": "backtest_at_k.csv",
    "slices": "slices_at_k.csv",
    "conclusion": "conclusion.md",
    "timings": "timings.json",  # run-specific wall times: git-ignored, not a DVC output
}


# ----------------------------------------------------------------------------------------------
# params
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """One model of the comparison: a label, the registered ranker name and its params block."""

    label: str
    ranker: str
    params: Mapping[str, Any]
    optional: bool = False


@dataclass(frozen=True)
class EvalConfig:
    """The evaluate block of params/evaluate.yaml, validated."""

    quantile: float = 0.8
    undated_in_train: bool = True
    truth_events: tuple[str, ...] | None = None
    ks: tuple[int, ...] = DEFAULT_KS
    headline_k: int = 10
    n_boot: int = 1000
    ci_level: float = 0.95
    seed: int = 42
    backtest_quantiles: tuple[float, ...] = (0.6, 0.7, 0.8)
    backtest_horizon: str | float | None = "matched"
    new_products: bool = True
    diagnostics: bool = True
    cf_model: str = "als"
    engagement_models: tuple[str, ...] = ("activity_log1p", "activity_minmax")
    models: tuple[ModelSpec, ...] = ()

    @classmethod
    def from_params(cls, block: Mapping[str, Any]) -> EvalConfig:
        """Build from the `evaluate` block; missing keys keep defaults; bad values raise ValueError."""
        split = dict(block.get("split") or {})
        boot = dict(block.get("bootstrap") or {})
        bt = dict(block.get("backtest") or {})
        truth = (block.get("ground_truth") or {}).get("events")
        ks = tuple(sorted({int(k) for k in block.get("ks", DEFAULT_KS)}))
        if not ks or ks[0] <= 0:
            raise ValueError(f"evaluate.ks must be positive integers, got {block.get('ks')}")
        models = tuple(
            ModelSpec(
                label=str(label),
                ranker=str(spec.get("ranker", label)),
                params={k: v for k, v in spec.items() if k not in {"ranker", "optional", "enabled"}},
                optional=bool(spec.get("optional", False)),
            )
            for label, spec in (block.get("models") or {}).items()
            if (spec or {}).get("enabled", True)
        )
        cfg = cls(
            quantile=float(split.get("quantile", 0.8)),
            undated_in_train=bool(split.get("undated_in_train", True)),
            truth_events=tuple(truth) if truth else None,
            ks=ks,
            headline_k=int(block.get("headline_k", 10)),
            n_boot=int(boot.get("n", 1000)),
            ci_level=float(boot.get("ci", 0.95)),
            seed=int(block.get("seed", 42)),
            backtest_quantiles=tuple(float(q) for q in bt.get("quantiles", (0.6, 0.7, 0.8))),
            backtest_horizon=bt.get("horizon", "matched"),
            new_products=bool(block.get("new_products", True)),
            diagnostics=bool(block.get("diagnostics", True)),
            cf_model=str(block.get("cf_model", "als")),
            engagement_models=tuple(block.get("engagement_models", ("activity_log1p", "activity_minmax"))),
            models=models,
        )
        if cfg.headline_k not in cfg.ks:
            raise ValueError(f"evaluate.headline_k={cfg.headline_k} must be one of evaluate.ks={list(cfg.ks)}")
        if not 0.0 < cfg.ci_level < 1.0:
            raise ValueError(f"evaluate.bootstrap.ci must be in (0, 1), got {cfg.ci_level}")
        if not cfg.models:
            raise ValueError("evaluate.models is empty: list at least one model (e.g. random, activity, als)")
        return cfg


def _deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge (over wins)."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out


def ranker_params(spec: ModelSpec, feature_params: Mapping[str, Any], seed: int, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Params handed to make_ranker: seed, the features block (+ the model's overrides), the model's own keys.

    The features' reference_date is forced to null, i.e. the end of the training data, so no
    feature is computed relative to a date inside the test window.
    """
    own = dict(spec.params)
    feats = _deep_merge(feature_params, {k: own.pop(k) for k in ("features", "engagement") if k in own})
    feats.setdefault("features", {})["reference_date"] = None
    return {"seed": seed, **own, **dict(extra or {}), "features": feats}


# ----------------------------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------------------------


@dataclass
class Timer:
    """Wall-clock seconds per named phase."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the enclosed block under `name` (accumulates)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 3)


# ----------------------------------------------------------------------------------------------
# one cutoff
# ----------------------------------------------------------------------------------------------


@dataclass
class CutoffResult:
    """Everything measured at one cutoff."""

    split: dict[str, Any]
    existing: Segment
    new: Segment | None
    shares: dict[str, dict[str, float]] | None
    skipped: dict[str, str]
    products: dict[str, int]
    model_info: dict[str, dict[str, Any]]


def _model_extra(spec: ModelSpec, split: Split) -> dict[str, Any]:
    """Per-split overrides: BG/NBD predicts over the test window's length unless params fix it."""
    if spec.ranker == "bgnbd" and "horizon_days" not in spec.params:
        return {"horizon_days": max(split.test_days, 1.0)}
    return {}


def _score_model(
    label: str, ranker: Any, es: EvalSet, ks: Sequence[int], seg: Segment, timer: Timer, phase: str, diagnostics: bool
) -> None:
    """Rank the set's products with a fitted ranker and add the per-product metrics to the segment."""
    kmax = int(max(ks))
    with timer.phase(f"{phase}/rank/{label}"):
        rec = ranker.rank(es.product_ids, kmax)
    with timer.phase(f"{phase}/metrics"):
        offsets, codes = coded_recommendations(rec, es, label)
        values, hits = score_lists(es, offsets, codes, ks)
        seg.add(label, values)
        if diagnostics:
            seg.slice_recall[label], seg.slice_hits[label] = slice_scores(es, offsets, codes, hits, ks)


def evaluate_cutoff(
    interactions: pd.DataFrame,
    cfg: EvalConfig,
    feature_params: Mapping[str, Any],
    quantile: float,
    timer: Timer,
    test_days: float | None = None,
    with_new: bool = True,
    with_diagnostics: bool = True,
) -> CutoffResult:
    """Split at one date quantile, fit every model on the training side, score all evaluated products."""
    phase = f"q{quantile:g}"
    with timer.phase(f"{phase}/split"):
        split = temporal_split(interactions, quantile, cfg.undated_in_train, test_days)
        existing, new = build_eval_sets(split, cfg.truth_events)
        summary = split_summary(split)
    log.info("cutoff q=%s (%s): %d evaluated products, %d new", quantile, summary["cutoff"], len(existing), len(new))
    seg_old = Segment(cfg.ks, len(existing))
    seg_new = Segment(cfg.ks, len(new)) if with_new else None
    skipped: dict[str, str] = {}
    info: dict[str, dict[str, Any]] = {}
    for spec in cfg.models:
        params = ranker_params(spec, feature_params, cfg.seed, _model_extra(spec, split))
        try:
            with timer.phase(f"{phase}/fit/{spec.label}"):
                ranker = make_ranker(spec.ranker, params).fit(split.train)
        except ImportError as exc:
            if not spec.optional:
                raise
            skipped[spec.label] = f"{type(exc).__name__}: {exc}"
            log.warning("skipping optional model %s: %s", spec.label, exc)
            continue
        info[spec.label] = {"ranker": spec.ranker, **{k: v for k, v in params.items() if k != "features"}}
        if hasattr(ranker, "fit_summary_"):
            info[spec.label]["fit_summary"] = dict(ranker.fit_summary_)
        _score_model(spec.label, ranker, existing, cfg.ks, seg_old, timer, phase, with_diagnostics)
        if seg_new is not None:
            _score_model(spec.label, ranker, new, cfg.ks, seg_new, timer, f"{phase}/new", False)
        del ranker
    with timer.phase(f"{phase}/references"):
        for es, seg in ((existing, seg_old), (new, seg_new)):
            if seg is not None:
                seg.add(RANDOM_REF, random_metrics(es, cfg.ks))
                seg.add(ORACLE_REF, oracle_metrics(es, cfg.ks))
    shares = None
    if with_diagnostics:
        test_codes = existing.customers.codes(split.test["customer_id"].to_numpy())
        shares = slice_shares(existing, test_codes)
    products = {
        "evaluated": len(existing),
        "evaluated_with_truth": int((existing.n_relevant > 0).sum()),
        "new": len(new),
        "relevant_pairs": int(existing.n_relevant.sum()),
        "relevant_pairs_reachable": int(existing.n_eligible_relevant().sum()),
    }
    return CutoffResult(summary, seg_old, seg_new, shares, skipped, products, info)


# ----------------------------------------------------------------------------------------------
# the whole evaluation
# ----------------------------------------------------------------------------------------------


@dataclass
class EvaluationResult:
    """Tables, the flat metrics dict, the generated conclusion and where they were written."""

    main: pd.DataFrame
    new_products: pd.DataFrame
    backtest: pd.DataFrame
    slices: pd.DataFrame
    metrics: dict[str, Any]
    conclusion: str
    timings: dict[str, float]
    paths: dict[str, Path] = field(default_factory=dict)


def _differences(seg: Segment, table: pd.DataFrame, cfg: EvalConfig) -> dict[str, tuple[float, float, float]]:
    """Paired bootstrap differences in precision: leader vs runner-up, and each engagement model vs CF, at every k."""
    out: dict[str, tuple[float, float, float]] = {}
    for k in cfg.ks:
        ranked = ranking_at(table, "precision", k)
        if len(ranked) >= 2:
            a, b = ranked[0][0], ranked[1][0]
            out[f"{a}-{b}@{k}"] = paired_difference(seg, a, b, "precision", k, cfg.n_boot, cfg.seed, cfg.ci_level)
    if cfg.cf_model in seg.labels:
        for m in cfg.engagement_models:
            if m in seg.labels:
                for k in cfg.ks:
                    out[f"{m}-{cfg.cf_model}@{k}"] = paired_difference(
                        seg, m, cfg.cf_model, "precision", k, cfg.n_boot, cfg.seed, cfg.ci_level
                    )
    return out


def _horizon(cfg: EvalConfig, main: CutoffResult) -> float | None:
    """Backtest test-window length in days: matched to the main split, a number, or None (to the end)."""
    h = cfg.backtest_horizon
    if h is None or h == "end":
        return None
    if h == "matched":
        return float(main.split["test_days"]) if main.split["test_days"] > 0 else None
    return float(h)


def run_evaluation(
    params: Mapping[str, Any] | None = None,
    interactions: pd.DataFrame | None = None,
    output_dir: Path | None = None,
    feature_params: Mapping[str, Any] | None = None,
    write: bool = True,
) -> EvaluationResult:
    """Run the whole evaluation from params (default params/evaluate.yaml) and write its outputs.

    interactions: the canonical table (default: `evaluate.input`, loaded with load_prepared).
    feature_params: the params/features.yaml structure (default: loaded from params/).
    """
    timer = Timer()
    block = dict((params if params is not None else config.load_params("evaluate")).get("evaluate") or {})
    cfg = EvalConfig.from_params(block)
    if feature_params is None:
        try:
            feature_params = config.load_params("features")
        except FileNotFoundError:
            feature_params = {}
    with timer.phase("load"):
        if interactions is None:
            interactions = load_prepared(config.resolve(block.get("input") or config.PREPARED_PARQUET))
    with timer.phase("total"):
        main = evaluate_cutoff(interactions, cfg, feature_params, cfg.quantile, timer, None, cfg.new_products, cfg.diagnostics)
        with timer.phase("bootstrap"):
            main_table = segment_table(main.existing, cfg.n_boot, cfg.seed, cfg.ci_level)
            new_table = (
                segment_table(main.new, cfg.n_boot, cfg.seed, cfg.ci_level) if main.new is not None else pd.DataFrame()
            )
            slices = slice_table(main.existing, cfg.n_boot, cfg.seed, cfg.ci_level) if cfg.diagnostics else pd.DataFrame()
            diffs = _differences(main.existing, main_table, cfg)
        backtests = []
        horizon = _horizon(cfg, main)
        for q in cfg.backtest_quantiles:
            if abs(q - cfg.quantile) < 1e-12 and horizon == main.split["test_days"]:
                res, tab = main, main_table
            else:
                res = evaluate_cutoff(interactions, cfg, feature_params, q, timer, horizon, False, False)
                with timer.phase("bootstrap"):
                    tab = segment_table(res.existing, cfg.n_boot, cfg.seed, cfg.ci_level)
            backtests.append((q, res, tab.assign(cutoff_quantile=q, cutoff=res.split["cutoff"])))
    backtest = pd.concat([b[2] for b in backtests], ignore_index=True) if backtests else pd.DataFrame()
    if not backtest.empty:
        backtest = backtest[["cutoff_quantile", "cutoff", "model", "k", "metric", "value", "ci_low", "ci_high", "n_products"]]
    metrics = _metrics_dict(cfg, main, main_table, new_table, backtests, slices, diffs)
    claims = _claims()
    conclusion = conclusion_text(
        main_table,
        metrics,
        diffs,
        cfg.ks,
        cfg.headline_k,
        cfg.cf_model,
        [m for m in cfg.engagement_models if m in main.existing.labels],
        new_products=new_table if not new_table.empty else None,
        backtest=backtest if len(backtests) > 1 else None,
        shares=main.shares,
        slices=slices if not slices.empty else None,
        claims=claims,
    )
    result = EvaluationResult(main_table, new_table, backtest, slices, metrics, conclusion, dict(timer.seconds))
    if write:
        default_dir = config.resolve(block.get("output_dir") or (config.REPORTS_DIR / "evaluation"))
        out_dir = Path(output_dir) if output_dir is not None else default_dir
        result.paths = write_outputs(result, out_dir)
    return result


def _claims() -> dict[str, Any] | None:
    """The original write-up's claims from the published profile (None if unavailable)."""
    try:
        from recsys.data.profile import load_profile

        return dict(load_profile().get("claims_of_the_original_write_up_to_beat_or_refute") or {})
    except Exception:  # noqa: BLE001 - the profile is optional context, never a reason to fail
        return None


def _metrics_dict(
    cfg: EvalConfig,
    main: CutoffResult,
    main_table: pd.DataFrame,
    new_table: pd.DataFrame,
    backtests: list[tuple[float, CutoffResult, pd.DataFrame]],
    slices: pd.DataFrame,
    diffs: Mapping[str, tuple[float, float, float]],
) -> dict[str, Any]:
    """Flat-ish metrics dict (DVC metrics): split facts, per-model metrics with CIs, lifts, backtest, diagnostics."""
    flat = flat_metrics(main_table)
    out: dict[str, Any] = {
        "split": main.split,
        "products": main.products,
        "headline_k": cfg.headline_k,
        "bootstrap": {"n": cfg.n_boot, "ci": cfg.ci_level, "seed": cfg.seed, "unit": "product"},
        "ground_truth_events": list(cfg.truth_events) if cfg.truth_events else "all",
        "models": {m: v for m, v in flat.items() if m not in (RANDOM_REF, ORACLE_REF)},
        "references": {m: v for m, v in flat.items() if m in (RANDOM_REF, ORACLE_REF)},
        "differences": {k: {"value": v[0], "ci_low": v[1], "ci_high": v[2]} for k, v in diffs.items()},
        "hits": _hits_dict(main_table, cfg),
        "skipped_models": main.skipped,
        "model_params": main.model_info,
    }
    if not new_table.empty:
        out["new_products"] = flat_metrics(new_table[new_table["k"] == cfg.headline_k])
    out["backtest"] = {
        f"q{q:g}": {
            "cutoff": res.split["cutoff"],
            "test_days": res.split["test_days"],
            "evaluated_products": res.products["evaluated"],
            "models": flat_metrics(tab[(tab["k"] == cfg.headline_k) & tab["metric"].isin(["precision", "lift"])]),
        }
        for q, res, tab in backtests
    }
    if main.shares is not None:
        diag: dict[str, Any] = {f"share_{what}_by_training_rows": v for what, v in main.shares.items()}
        if not slices.empty:
            rec = slices[(slices["metric"] == "recall") & (slices["k"] == cfg.headline_k)]
            diag[f"recall@{cfg.headline_k}_by_training_rows"] = {
                m: {str(r.slice): (None if not np.isfinite(r.value) else float(f"{r.value:.6g}")) for r in part.itertuples()}
                for m, part in rec.groupby("model", sort=False)
            }
        out["diagnostics"] = diag
    return out


def _hits_dict(table: pd.DataFrame, cfg: EvalConfig) -> dict[str, Any]:
    """Total hits per model at every k, random targeting's expected hits, and the headline verdicts."""
    k = cfg.headline_k
    out: dict[str, Any] = {}
    for m in [*models_of(table), RANDOM_REF, ORACLE_REF]:
        out[m] = {f"hits@{kk}": _round(hit_count(table, m, kk)) for kk in cfg.ks}
    expected = hit_count(table, RANDOM_REF, k)
    for m in models_of(table):
        hits = hit_count(table, m, k)
        if hits is not None and expected is not None:
            p_more, p_less = random_hit_test(hits, expected)
            out[m].update({f"p_more_than_random@{k}": _round(p_more), f"p_less_than_random@{k}": _round(p_less)})
        out[m][f"verdict@{k}"] = lift_verdict(table, m, k, (1.0 - cfg.ci_level) / 2.0)
    return out


def _round(x: float | None) -> float | None:
    """6 significant digits, None for missing/NaN."""
    return None if x is None or not np.isfinite(x) else float(f"{x:.6g}")


def write_outputs(result: EvaluationResult, out_dir: Path) -> dict[str, Path]:
    """Write metrics JSON (deterministic), the long CSV tables, the conclusion and the phase timings into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / fname for name, fname in OUTPUT_FILES.items()}
    paths["metrics"].write_text(json.dumps(result.metrics, indent=2, ensure_ascii=False, default=_json_default) + "\n", encoding="utf-8")
    tables = {"main": result.main, "new_products": result.new_products, "backtest": result.backtest, "slices": result.slices}
    for name, table in tables.items():
        table.to_csv(paths[name], index=False, float_format="%.6g")
    paths["conclusion"].write_text(result.conclusion, encoding="utf-8")
    paths["timings"].write_text(json.dumps(result.timings, indent=2) + "\n", encoding="utf-8")
    return paths


def _json_default(x: Any) -> Any:
    """JSON for numpy scalars and timestamps."""
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return None if not np.isfinite(x) else float(x)
    if isinstance(x, (pd.Timestamp,)):
        return x.isoformat()
    return str(x)


def quick_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A small variant for smoke runs: few bootstrap resamples, small ALS, no BG/NBD."""
    p = copy.deepcopy(dict(params))
    block = p.setdefault("evaluate", {})
    block.setdefault("bootstrap", {})["n"] = 100
    models = block.get("models") or {}
    for spec in models.values():
        if (spec or {}).get("ranker") in {"als", "bpr"}:
            spec.update({"factors": 16, "iterations": 5})
    models.pop("bgnbd", None)
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI: run the evaluation from params/evaluate.yaml and print where the outputs went."""
    parser = argparse.ArgumentParser(prog="python -m recsys.evaluation.run", description="Run the offline evaluation.")
    parser.add_argument("--input", help="prepared interactions Parquet (default: evaluate.input)")
    parser.add_argument("--output-dir", help="output directory (default: evaluate.output_dir)")
    parser.add_argument("--quick", action="store_true", help="small ALS and bootstrap (smoke run)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    params = config.load_params("evaluate")
    if args.quick:
        params = quick_params(params)
    if args.input:
        params["evaluate"]["input"] = args.input
    try:
        result = run_evaluation(params, output_dir=config.resolve(args.output_dir) if args.output_dir else None)
    except (FileNotFoundError, ValueError) as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(result.conclusion)
    print(json.dumps({k: str(v) for k, v in result.paths.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
