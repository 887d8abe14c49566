"""The exposure-cap trade-off, computed with the evaluation's own harness (``recsys tradeoff``, stage ``tradeoff``).

Protocol (params/evaluate.yaml: ``tradeoff``; the served configuration from params/cache.yaml: ``cache``):

1. the ranker is the evaluation's default ranker (``EvaluationSummary.default_ranker``: the test leader
   among deployable models) with the settings the evaluation chose on validation (the summary's tuning;
   nothing is re-tuned). The summary must match the params (protocol and settings), else the stage stops;
2. the same test split, exclusions and evaluation set as the evaluation (recsys.evaluation.split / frame);
   the ranker is fitted once on the split's fit rows exactly as the evaluation fits it (``run.fit_ranker``);
3. every product with fit rows is ranked ``cache.allocation.candidates`` deep, and for each cap the
   allocation (recsys.allocation.allocate) picks audiences of depth ``cache.n`` over that whole catalogue,
   with the cache's ``min_audience`` and seed: the configuration the cache would serve. Uncapped = the
   ranker's own top-n (always evaluated: the reference of every comparison);
4. the evaluated products' audiences are scored at every k of the evaluation by the harness
   (``scoring.score_ranker``: contract checks, same per-product metrics); the uncapped scores must equal the
   evaluation's own scores of the ranker at every k <= depth (checked; the stage stops otherwise);
5. intervals (two-way bootstrap; quasi-Poisson Garwood for precision) and the paired customer sign-flip
   test of each cap against uncapped at the headline k, Holm-corrected across the caps, with power
   (``compare.run_family``);
6. exposure metrics of the whole catalogue's audiences per cap (``allocation.exposure_metrics`` at
   ``cache.exposure.ks``, reachable = fit customers active in the test window), audience fullness and the
   share of the uncapped total score kept;
7. the recommendation (recsys.evaluation.tradeoff.recommend), and the outputs, written once.

Caps are allocated in ``tradeoff.processes`` forked worker processes (each allocation is deterministic,
so results do not depend on the number of processes); measured on the default data, one allocation of
the content ranker's catalogue takes 20-45 s and 2 GiB, ranking 300 candidates about 50 s.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys import config
from recsys.allocation import AllocationParams, allocate, exposure_metrics, truncate
from recsys.allocation.exposure import DEFAULT_KS, TABLE_METRICS, ExposureMetrics
from recsys.arrays import offsets_of, range_indices
from recsys.data.contract import load_prepared
from recsys.data.ids import id_array
from recsys.evaluation.compare import PlannedComparison, run_family
from recsys.evaluation.frame import EvalSet, build_eval_sets
from recsys.evaluation.intervals import percentile_interval
from recsys.evaluation.metrics import METRICS, nanmean_or_nan
from recsys.evaluation.results import EvaluationSummary, ModelResult, PrecisionAtK, num, read_summary
from recsys.evaluation.run import Timer, fit_ranker, flat_params
from recsys.evaluation.scoring import Scored, score_ranker
from recsys.evaluation.settings import EvalConfig
from recsys.evaluation.split import Split, protocol_splits
from recsys.evaluation.tables import ORACLE_REF, RANDOM_REF, SetResult, evaluate_set, long_table, precision_records
from recsys.evaluation.tradeoff import (
    UNCAPPED,
    AudienceFacts,
    CapResult,
    RecallAtK,
    TradeoffResults,
    cap_label,
    exposure_at,
    recommend,
    rounded_exposure,
    status_of,
    write_tradeoff,
)
from recsys.evaluation.tuning import with_values
from recsys.parallel import check_processes, pool_map
from recsys.rankers import Recommendations
from recsys.rankers.base import parallel_ranking

log = logging.getLogger(__name__)

OUTPUT_FILES: dict[str, str] = {
    "results": "results.json",
    "table": "metrics_at_k.csv",
    "exposure": "exposure.csv",
    "timings": "timings.json",  # run-specific wall times: git-ignored, not a DVC output
}
TRADEOFF_KEYS = ("caps", "keep_share", "full_audiences", "max_allowed_exposures", "processes")
DEFAULT_CAPS: tuple[int | None, ...] = (None, 500, 200, 100, 50, 20)


# ----------------------------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TradeoffConfig:
    """The ``tradeoff`` block of params/evaluate.yaml, validated (uncapped always first)."""

    caps: tuple[int | None, ...] = DEFAULT_CAPS
    keep_share: float = 0.9
    full_audiences: bool = True
    processes: int = 2
    max_allowed_exposures: int | None = None

    @classmethod
    def from_params(cls, block: Mapping[str, Any] | None) -> TradeoffConfig:
        """Parse the block; unknown keys and bad values raise ValueError naming the key."""
        block = dict(block or {})
        config.check_keys(block, TRADEOFF_KEYS, "params/evaluate.yaml: tradeoff")
        raw = block.get("caps", list(DEFAULT_CAPS))
        if not isinstance(raw, list) or not raw:
            raise ValueError(f"tradeoff.caps must be a non-empty list of integers >= 1 or null, got {raw!r}")
        caps: list[int | None] = []
        for c in raw:
            if c is not None and (isinstance(c, bool) or not isinstance(c, int) or c < 1):
                raise ValueError(f"tradeoff.caps entries must be integers >= 1 or null (uncapped), got {c!r}")
            caps.append(c)
        if len(set(caps)) != len(caps):
            raise ValueError(f"tradeoff.caps lists a cap twice: {raw}")
        if None not in caps:
            raise ValueError(
                f"tradeoff.caps must include null (uncapped: the reference of every comparison), got {raw}"
            )
        keep = float(block.get("keep_share", 0.9))
        if not 0.0 < keep <= 1.0:
            raise ValueError(f"tradeoff.keep_share must be in (0, 1], got {keep}")
        processes = check_processes(block.get("processes", 2), "tradeoff.processes")
        if all(c is None for c in caps):
            raise ValueError(f"tradeoff.caps must list at least one cap besides null (uncapped), got {raw}")
        limit = block.get("max_allowed_exposures")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"tradeoff.max_allowed_exposures must be an integer >= 1 or null, got {limit!r}")
        if limit is not None and not any(c is not None and c <= limit for c in caps):
            raise ValueError(
                f"tradeoff.caps {raw} has no cap within tradeoff.max_allowed_exposures={limit}: add one <= {limit}"
            )
        ordered = (None, *sorted((c for c in caps if c is not None), reverse=True))
        return cls(ordered, keep, bool(block.get("full_audiences", True)), processes, limit)


@dataclass(frozen=True)
class ServedConfig:
    """What the cache serves (params/cache.yaml: cache): depth, allocation settings, exposure cut-offs."""

    depth: int
    allocation: AllocationParams  # max_exposures unset: each cap sets it
    exposure_ks: tuple[int, ...]
    pairs: int

    @classmethod
    def from_params(cls, cache: Mapping[str, Any]) -> ServedConfig:
        """Parse the cache block (cache.n, cache.seed, cache.allocation, cache.exposure)."""
        depth = int(cache.get("n", 100))
        alloc = {k: v for k, v in dict(cache.get("allocation") or {}).items() if k != "max_exposures"}
        params = AllocationParams.from_params(alloc, seed=int(cache.get("seed", 0)))
        params.check(depth)
        if params.candidates < depth:
            raise ValueError(f"cache.allocation.candidates must be >= cache.n={depth}, got {params.candidates}")
        exposure = dict(cache.get("exposure") or {})
        config.check_keys(exposure, ("ks", "pairs"), "params/cache.yaml: cache.exposure")
        ks = tuple(sorted({min(int(k), depth) for k in exposure.get("ks", DEFAULT_KS)}))
        return cls(depth, params, ks, int(exposure.get("pairs", 10_000)))


def check_summary(summary: EvaluationSummary, cfg: EvalConfig) -> None:
    """Raise ValueError when the evaluation summary was written under other protocol params than cfg."""
    p = summary.protocol
    pairs = {
        "split.quantile": (p.test_quantile, cfg.quantile),
        "split.validation": (p.validation, cfg.validation),
        "split.undated_policy": (p.undated_policy, cfg.undated_policy),
        "ground_truth.events": (p.truth_events, list(cfg.truth_events) if cfg.truth_events else None),
        "ks": (p.ks, list(cfg.ks)),
        "headline_k": (p.headline_k, cfg.headline_k),
        "seed": (p.seed, cfg.seed),
    }
    stale = [f"evaluate.{key}: summary {a!r}, params {b!r}" for key, (a, b) in pairs.items() if a != b]
    if stale:
        raise ValueError("the evaluation summary is stale (" + "; ".join(stale) + "): rerun `recsys evaluate`")


def chosen_settings(summary: EvaluationSummary, cfg: EvalConfig) -> tuple[ModelResult, str, dict[str, Any]]:
    """(model result, ranker, params) of the evaluation's default ranker with its validation-chosen settings."""
    if summary.default_ranker is None:
        raise ValueError("the evaluation recommends no default ranker (no deployable model was evaluated)")
    label = summary.default_ranker.label
    spec = next((m for m in cfg.models if m.label == label), None)
    if spec is None:
        raise ValueError(f"the evaluation's default ranker {label!r} is not enabled in evaluate.models")
    tuning = next((t for t in summary.tuning if t.model == label), None)
    params = with_values(spec.params, tuning.chosen) if tuning is not None else dict(spec.params)
    model = summary.model(label)
    if flat_params(params) != model.params:
        raise ValueError(
            f"evaluate.models.{label} no longer matches the settings the evaluation tested "
            f"({model.params} vs {flat_params(params)}): rerun `recsys evaluate`"
        )
    return model, spec.ranker, params


# ----------------------------------------------------------------------------------------------
# lists and their evaluation
# ----------------------------------------------------------------------------------------------


def select_blocks(recs: Recommendations, rows: np.ndarray, k: int | None = None) -> Recommendations:
    """The blocks `rows` of `recs` (in that order), each cut to its first k entries when k is given."""
    rows = np.asarray(rows, dtype=np.int64)
    sizes = recs.sizes()[rows]
    if k is not None:
        sizes = np.minimum(sizes, int(k))
    idx = range_indices(np.asarray(recs.offsets, dtype=np.int64)[rows], sizes)
    return Recommendations(
        product_ids=np.asarray(recs.product_ids)[rows],
        offsets=offsets_of(sizes),
        customer_ids=np.asarray(recs.customer_ids)[idx],
        scores=np.asarray(recs.scores)[idx],
        cold_start=np.asarray(recs.cold_start)[rows],
    )


@dataclass(frozen=True)
class ServedLists:
    """Fixed audiences answering ``rank`` like a ranker, so the evaluation's harness scores them unchanged."""

    recs: Recommendations

    def rank(self, product_ids: np.ndarray | Sequence[Any], k: int) -> Recommendations:
        """The stored audiences of the requested products, cut to k (ValueError naming a product without one)."""
        requested = id_array(product_ids)
        rows = np.asarray(pd.Index(np.asarray(self.recs.product_ids)).get_indexer(requested), dtype=np.int64)
        if (rows < 0).any():
            raise ValueError(f"product {requested[np.argmax(rows < 0)]!r} has no served audience")
        return select_blocks(self.recs, rows, k)


def reachable_customers(es: EvalSet, split: Split) -> np.ndarray:
    """Ids of the fit customers active in the split's truth window (any event), sorted by code."""
    codes = es.customers.codes(split.test["customer_id"].to_numpy())
    active = np.unique(codes[codes >= 0])
    active = active[es.customers.train_rows[active] > 0]
    return np.asarray(es.customers.ids[active])


def exposure_counts(recs: Recommendations, k: int) -> pd.Series:
    """Number of lists holding each customer within its first k entries (index: customer id)."""
    top = np.asarray(recs.customer_ids)[recs.ranks() <= k]
    return pd.Series(top).value_counts(sort=False)


def hits_over_caps(hits_customers: np.ndarray, counts: pd.Series, caps: Sequence[int | None]) -> dict[int, int]:
    """Per cap: how many of the given hits (customer ids, one per hit) go to customers with more than cap exposures."""
    x = counts.reindex(pd.Index(hits_customers)).fillna(0).to_numpy()
    return {int(c): int((x > c).sum()) for c in caps if c is not None}


def audience_facts(recs: Recommendations, uncapped: Recommendations) -> AudienceFacts:
    """How many audiences are as long as uncapped, and the share of the uncapped total score kept."""
    if not np.array_equal(np.asarray(recs.product_ids), np.asarray(uncapped.product_ids)):
        raise ValueError("capped and uncapped audiences must list the same products in the same order")
    sizes, full = recs.sizes(), uncapped.sizes()
    short = int((sizes < full).sum())
    total = float(np.sum(np.asarray(uncapped.scores, dtype=np.float64)))
    served = float(np.sum(np.asarray(recs.scores, dtype=np.float64)))
    return AudienceFacts(
        products=len(recs),
        depth=int(full.max()) if len(full) else 0,
        slots=int(sizes.sum()),
        full_share=float(num(1.0 - short / len(recs)) or 0.0) if len(recs) else 1.0,
        short_products=short,
        min_size=int(sizes.min()) if len(sizes) else 0,
        score_share=num(served / total) if total > 0 else None,
    )


@dataclass(frozen=True)
class CapContext:
    """Everything one cap's run needs (shared with forked workers without copying)."""

    ranker: Any
    candidates: Recommendations
    uncapped: Recommendations
    es: EvalSet
    ks: tuple[int, ...]
    served: ServedConfig
    reachable: np.ndarray


@dataclass
class CapRun:
    """One cap's scored evaluation set, exposure metrics, audience facts and allocation statistics."""

    cap: int | None
    scored: Scored
    exposure: ExposureMetrics
    audiences: AudienceFacts
    stats: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


def run_cap(ctx: CapContext, cap: int | None) -> CapRun:
    """Allocate the catalogue's audiences under `cap` (None = the ranker's own top-n), score and measure them."""
    t0, c0 = time.perf_counter(), time.process_time()
    if cap is None:
        recs, stats = ctx.uncapped, {"capped": False}
    else:
        params = dataclasses.replace(ctx.served.allocation, max_exposures=int(cap))
        try:
            allocation = allocate(ctx.candidates, ctx.ranker, ctx.served.depth, params)
        except ValueError as exc:
            name = getattr(ctx.ranker, "name", type(ctx.ranker).__name__)
            raise ValueError(f"the allocation of ranker {name!r} under cap {cap} failed: {exc}") from exc
        recs, stats = allocation.recommendations, allocation.stats
    t1 = time.perf_counter()
    scored = score_ranker(ServedLists(recs), ctx.es, ctx.ks, cap_label(cap))
    exposure = exposure_metrics(
        recs, ctx.served.exposure_ks, reachable=ctx.reachable, pairs=ctx.served.pairs, seed=ctx.served.allocation.seed
    )
    facts = audience_facts(recs, ctx.uncapped)
    seconds = {
        "allocate": round(t1 - t0, 3),
        "measure": round(time.perf_counter() - t1, 3),
        "cpu": round(time.process_time() - c0, 3),
    }
    return CapRun(cap, scored, rounded_exposure(exposure), facts, stats, seconds)


def run_caps(ctx: CapContext, caps: Sequence[int | None], processes: int) -> list[CapRun]:
    """Run every cap, in `processes` forked workers when more than one (same results either way), in order."""
    return pool_map(run_cap, list(caps), processes, ctx, fresh_workers=True)  # numpy only: forked


def recall_records(result: SetResult, label: str, level: float) -> list[RecallAtK]:
    """recall@k with its two-way bootstrap percentile interval at every k."""
    i = METRICS.index("recall")
    out = []
    for j, k in enumerate(result.ks):
        lo, hi = percentile_interval(result.boot(label, k, "recall")[:, None], level)
        value = nanmean_or_nan(result.scored[label].values[i, j])
        out.append(RecallAtK(k=k, value=num(value), low=num(lo[0]), high=num(hi[0])))
    return out


def check_uncapped(records: Sequence[PrecisionAtK], model: ModelResult, depth: int) -> None:
    """Raise ValueError unless the uncapped precision equals the evaluation's own at every k <= depth."""
    keys = ("value", "low", "high", "hits", "phi")
    for p in records:
        if p.k > depth:
            continue
        theirs = model.at(p.k)
        diff = [key for key in keys if getattr(p, key) != getattr(theirs, key)]
        if diff:
            raise ValueError(
                f"uncapped {model.label} differs from the evaluation at k={p.k} ({diff}: "
                f"{[getattr(p, x) for x in diff]} vs {[getattr(theirs, x) for x in diff]}): the evaluation summary "
                "is stale or the ranker is not deterministic; rerun `recsys evaluate`"
            )


# ----------------------------------------------------------------------------------------------
# the whole trade-off
# ----------------------------------------------------------------------------------------------


@dataclass
class TradeoffRun:
    """Typed results, the long tables, the plot table and the timings of one trade-off run."""

    results: TradeoffResults
    table: pd.DataFrame
    exposure: pd.DataFrame
    plot: pd.DataFrame
    timings: dict[str, float]
    paths: dict[str, Path] = field(default_factory=dict)


def run_tradeoff(
    summary: EvaluationSummary,
    interactions: pd.DataFrame,
    evaluate_block: Mapping[str, Any],
    tradeoff_block: Mapping[str, Any] | None,
    cache_block: Mapping[str, Any],
    feature_params: Mapping[str, Any],
) -> TradeoffRun:
    """Evaluate the default ranker's served audiences under every cap (module docstring) and recommend one."""
    timer = Timer()
    cfg = EvalConfig.from_params(evaluate_block, int(cache_block.get("n", 100)))
    opts = TradeoffConfig.from_params(tradeoff_block)
    served = ServedConfig.from_params(cache_block)
    if served.depth < cfg.headline_k:
        raise ValueError(f"cache.n={served.depth} must be >= evaluate.headline_k={cfg.headline_k}")
    check_summary(summary, cfg)
    model, ranker_name, params = chosen_settings(summary, cfg)
    t_total, c_total = time.perf_counter(), time.process_time()
    with timer.phase("split"):
        _, test = protocol_splits(interactions, cfg.quantile, cfg.validation, cfg.undated_policy)
        es, _ = build_eval_sets(test, cfg.truth_events)
        reachable = reachable_customers(es, test)
    with timer.phase("fit"):
        ranker = fit_ranker(ranker_name, params, test, feature_params, cfg.seed)
    with timer.phase("rank"):
        history = ranker.history_
        catalogue = history.product_ids[history.signal]
        with parallel_ranking(opts.processes):
            candidates = ranker.rank(catalogue, served.allocation.candidates)
        uncapped = truncate(candidates, served.depth)
    log.info(
        "trade-off of %s: %d products, %d customers, %d candidates each; caps %s",
        model.label,
        len(catalogue),
        history.n_users,
        served.allocation.candidates,
        list(opts.caps),
    )
    ctx = CapContext(ranker, candidates, uncapped, es, cfg.ks, served, reachable)
    with timer.phase("caps"):
        runs = [run_cap(ctx, None), *run_caps(ctx, opts.caps[1:], opts.processes)]
    for run in runs:
        for key, value in run.seconds.items():
            timer.seconds[f"{cap_label(run.cap)}/{key}"] = value
    with timer.phase("intervals"):
        scored = {cap_label(r.cap): r.scored for r in runs}
        result = evaluate_set(es, cfg.ks, scored, cfg.n_boot, cfg.seed)
    with timer.phase("comparisons"):
        plan = [PlannedComparison(cap_label(c), UNCAPPED, cfg.headline_k, ("cap",)) for c in opts.caps[1:]]
        comparisons = {c.a: c for c in run_family(plan, result, cfg)}
    base = precision_records(result, UNCAPPED, cfg.level)
    check_uncapped(base, model, served.depth)
    base_hits = runs[0].scored.hits.at(cfg.headline_k)
    over = hits_over_caps(es.customers.ids[base_hits.customer], exposure_counts(ctx.uncapped, served.depth), opts.caps)
    p0 = next(p.value for p in base if p.k == cfg.headline_k) or 0.0
    caps = []
    for run in runs:
        label = cap_label(run.cap)
        precision = precision_records(result, label, cfg.level)
        comp = comparisons.get(label)
        value = next(p.value for p in precision if p.k == cfg.headline_k) or 0.0
        caps.append(
            CapResult(
                cap=run.cap,
                label=label,
                precision=precision,
                recall=recall_records(result, label, cfg.level),
                exposure=run.exposure,
                audiences=run.audiences,
                comparison=comp,
                status=status_of(comp, cfg.alpha),
                precision_share=num(value / p0) if p0 > 0 else None,
                uncapped_hits_over_cap=None if run.cap is None else over[run.cap],
            )
        )
    results = TradeoffResults(
        model=model.label,
        ranker=ranker_name,
        params=model.params,
        headline_k=cfg.headline_k,
        ks=list(cfg.ks),
        level=cfg.level,
        alpha=cfg.alpha,
        power=cfg.power,
        smallest_effect_ratio=cfg.smallest_effect_ratio,
        depth=served.depth,
        candidates=served.allocation.candidates,
        min_audience=served.allocation.min_audience,
        allocation_seed=served.allocation.seed,
        catalogue_products=int(len(catalogue)),
        fit_customers=int(history.n_users),
        reachable_customers=int(len(reachable)),
        evaluated_products=len(es),
        products_with_truth=result.n_with_truth,
        caps=caps,
        recommendation=recommend(
            caps, cfg.headline_k, opts.keep_share, opts.full_audiences, opts.max_allowed_exposures
        ),
    )
    del ctx, candidates, uncapped
    timer.seconds["total"] = round(time.perf_counter() - t_total, 3)
    timer.seconds["cpu/total"] = round(time.process_time() - c_total, 3)
    return TradeoffRun(
        results=results,
        table=cap_table(result, results, cfg.level),
        exposure=exposure_table(results),
        plot=plot_table(results),
        timings=dict(timer.seconds),
    )


# ----------------------------------------------------------------------------------------------
# tables and outputs
# ----------------------------------------------------------------------------------------------


def cap_table(result: SetResult, results: TradeoffResults, level: float) -> pd.DataFrame:
    """Long table: cap, model, k, metric, value, ci_low, ci_high, interval, hits, n_products (the evaluation's)."""
    table = long_table(result, level)
    table = table[~table["model"].isin([RANDOM_REF, ORACLE_REF])].copy()
    caps = {c.label: c.cap for c in results.caps}
    table.insert(0, "cap", pd.Series([caps[m] for m in table["model"]], index=table.index, dtype="Int64"))
    table["model"] = results.model
    return table.reset_index(drop=True)


def exposure_table(results: TradeoffResults) -> pd.DataFrame:
    """Long table: cap, k, metric, value (exposure metrics per cut-off, top-10 Jaccard, audience fullness)."""
    rows: list[tuple[int | None, int, str, float | int | None]] = []
    for c in results.caps:
        for e in c.exposure.at_k:
            rows += [(c.cap, e.k, metric, getattr(e, metric)) for metric in ("slots", *TABLE_METRICS)]
        rows.append((c.cap, c.exposure.jaccard_k, "mean_jaccard", c.exposure.mean_jaccard))
        a = c.audiences
        for metric in ("full_share", "short_products", "min_size", "score_share"):
            rows.append((c.cap, results.depth, metric, getattr(a, metric)))
    table = pd.DataFrame(rows, columns=["cap", "k", "metric", "value"], dtype=object)  # counts stay integers
    table["cap"] = table["cap"].astype("Int64")
    table["k"] = table["k"].astype(np.int64)
    return table


def plot_table(results: TradeoffResults) -> pd.DataFrame:
    """One row per cap for the DVC plots: log10 of the cap (uncapped: of its largest exposure count) and the metrics.

    The uncapped lists have no cap; their point sits at the largest number of lists any customer is in at
    the served depth, the cap that would not bind.
    """
    k, n = results.headline_k, results.depth
    rows = []
    for c in results.caps:
        p = c.at(k)
        e10, e_n = exposure_at(c, 10), exposure_at(c, n)
        limit = c.cap if c.cap is not None else max(e_n.max_exposures, 1)
        rows.append(
            {
                "cap": UNCAPPED if c.cap is None else str(c.cap),
                "log10_cap": round(float(np.log10(limit)), 6),
                f"precision_at_{k}": p.value,
                f"precision_at_{k}_low": p.low,
                f"precision_at_{k}_high": p.high,
                f"hits_at_{k}": p.hits,
                f"distinct_customers_at_{e10.k}": e10.distinct_customers,
                f"distinct_customers_at_{e_n.k}": e_n.distinct_customers,
                f"max_exposures_at_{e10.k}": e10.max_exposures,
                f"max_exposures_at_{e_n.k}": e_n.max_exposures,
                f"gini_at_{e_n.k}": e_n.gini,
            }
        )
    return pd.DataFrame(rows)


def dvc_metrics(results: TradeoffResults) -> dict[str, Any]:
    """DVC metrics: per cap precision@headline k (interval, hits), exposure headline figures; the recommendation."""
    k, n = results.headline_k, results.depth
    caps: dict[str, Any] = {}
    for c in results.caps:
        p = c.at(k)
        e10, e_n = exposure_at(c, 10), exposure_at(c, n)
        caps[c.label] = {
            f"precision@{k}": p.value,
            f"precision@{k}_ci_low": p.low,
            f"precision@{k}_ci_high": p.high,
            f"hits@{k}": p.hits,
            f"distinct_customers@{e10.k}": e10.distinct_customers,
            f"distinct_customers@{e_n.k}": e_n.distinct_customers,
            f"max_exposures@{e_n.k}": e_n.max_exposures,
            f"gini@{e_n.k}": e_n.gini,
            "p_holm": None if c.comparison is None else c.comparison.p_holm,
            "status": c.status,
        }
    r = results.recommendation
    return {"model": results.model, "recommended_cap": r.cap, "basis": r.basis, "outcome": r.outcome, "caps": caps}


def write_outputs(run: TradeoffRun, out_dir: Path, metrics_path: Path, plots_dir: Path) -> dict[str, Path]:
    """Write the typed results, the tables and timings into out_dir, the DVC metrics and the plot table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / fname for name, fname in OUTPUT_FILES.items()}
    write_tradeoff(run.results, paths["results"])
    run.table.to_csv(paths["table"], index=False, float_format="%.6g", lineterminator="\n")
    run.exposure.to_csv(paths["exposure"], index=False, lineterminator="\n")  # values already rounded
    paths["timings"].write_text(json.dumps(run.timings, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(dvc_metrics(run.results), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    paths["metrics"] = metrics_path
    plots_dir.mkdir(parents=True, exist_ok=True)
    paths["plots"] = plots_dir / "cap_tradeoff.csv"
    run.plot.to_csv(paths["plots"], index=False, float_format="%.6g", lineterminator="\n")
    return paths


def default_paths(dataset: str | None, evaluate_block: Mapping[str, Any]) -> dict[str, Path]:
    """input, summary, output dir, metrics file and plots dir: of a named data set, else from evaluate's params."""
    if dataset is not None:
        d = config.dataset_paths(dataset)
        return {
            "input": d.interactions,
            "summary": d.evaluation_summary,
            "output_dir": d.evaluation_dir / "tradeoff",
            "metrics": d.metrics_dir / "tradeoff.json",
            "plots_dir": d.reports_dir / "plots",
        }
    evaluation = config.resolve(evaluate_block.get("output_dir") or (config.REPORTS_DIR / "evaluation"))
    return {
        "input": config.resolve(evaluate_block.get("input") or config.PREPARED_PARQUET),
        "summary": evaluation / "summary.json",
        "output_dir": evaluation / "tradeoff",
        "metrics": config.REPORTS_DIR / "metrics" / "tradeoff.json",
        "plots_dir": config.REPORTS_DIR / "plots",
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: the exposure-cap trade-off of the evaluation's default ranker; prints the recommendation and the paths."""
    parser = argparse.ArgumentParser(
        prog="recsys tradeoff", description="Evaluate the default ranker's served audiences under exposure caps."
    )
    parser.add_argument("--dataset", help="data set name of params/prepare.yaml: datasets (sets every path below)")
    parser.add_argument("--input", help="prepared interactions Parquet (default: evaluate.input)")
    parser.add_argument("--summary", help="evaluation summary.json (default: <evaluate.output_dir>/summary.json)")
    parser.add_argument("--output-dir", help="output directory (default: <evaluate.output_dir>/tradeoff)")
    parser.add_argument("--metrics", help="DVC metrics file (default: reports/metrics/tradeoff.json)")
    parser.add_argument("--plots-dir", help="DVC plots directory (default: reports/plots)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        evaluate_params = config.load_params("evaluate")
        evaluate_block = dict(evaluate_params.get("evaluate") or {})
        paths = default_paths(args.dataset, evaluate_block)
        for key in ("input", "summary", "output_dir", "metrics", "plots_dir"):
            if getattr(args, key) is not None:
                paths[key] = config.resolve(getattr(args, key))
        run = run_tradeoff(
            read_summary(paths["summary"]),
            load_prepared(paths["input"]),
            evaluate_block,
            evaluate_params.get("tradeoff"),
            dict(config.load_params("cache").get("cache") or {}),
            config.load_params("features"),
        )
        run.paths = write_outputs(run, paths["output_dir"], paths["metrics"], paths["plots_dir"])
    except (FileNotFoundError, ValueError) as exc:
        print(f"tradeoff: error: {exc}", file=sys.stderr)
        return 2
    r = run.results.recommendation
    print(f"recommended cap: {r.cap} ({r.outcome}, basis {r.basis})")
    print(json.dumps({k: config.relative(v) for k, v in run.paths.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
