"""The per-campaign cap study, computed with the evaluation's own harness (``recsys campaigns``, stage ``campaigns``).

Protocol (params/evaluate.yaml: ``campaigns``; the candidate depth from params/cache.yaml: ``cache.candidates``):

1. the ranker is the model the evaluation selected on validation for serving (``selection.json``:
   ``Selection.products``, its ranker and every setting as the evaluation's test fit used them; nothing is
   re-tuned). The summary must match the protocol params, else the stage stops;
2. the same test split, exclusions and evaluation set as the evaluation (recsys.evaluation.split / frame); the
   ranker is fitted once on the split's fit rows with exactly those settings;
3. every evaluated product (fit rows and test rows) is ranked ``cache.candidates`` deep: the candidate lists the
   cache stores for campaigns;
4. campaign sets (``CampaignSet``): for every size S of ``campaigns.sizes``, a seeded random partition of the
   evaluated products into campaigns of S (the last one smaller); with ``campaigns.launch_week``, the products
   grouped by the week (Monday, UTC) of their first dated fit row (products with undated fit rows only form one
   more campaign). Every product is in exactly one campaign of each set;
5. for every audience size n of ``campaigns.audiences`` and cap c of ``campaigns.caps``, every campaign of a set
   is allocated independently from its products' candidates (``recsys.allocation.solver.fill_audiences``; one call
   per set: customers are keyed by (campaign, customer), so caps never cross campaigns). Uncapped = each
   product's first n candidates (the reference at that n);
6. every series is scored at each evaluated k <= n by the harness (``scoring.score_ranker``: contract checks, same
   per-product metrics); the uncapped scores must equal the evaluation's own scores of the model at those k
   (checked); intervals (two-way bootstrap; quasi-Poisson Garwood for precision) and the paired customer
   sign-flip test of each capped series against uncapped at k = n, Holm-corrected across the series of that n,
   with power (``compare.run_family``);
7. exposure figures within campaigns (``recsys.allocation.result.exposure_figures`` over (campaign, customer)
   pairs, capped and uncapped), distinct customers across campaigns, audience fullness and the score kept;
   written once.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys import config
from recsys.allocation.arrays import block_rows, first_k
from recsys.allocation.catalogue import customer_codes
from recsys.allocation.result import ExposureFigures, exposure_figures
from recsys.allocation.solver import fill_audiences
from recsys.arrays import offsets_of, range_indices
from recsys.data.contract import load_prepared
from recsys.data.ids import id_array
from recsys.evaluation.campaigns import (
    AudienceFacts,
    CampaignSet,
    CampaignStudy,
    RecallAtK,
    SeriesResult,
    SetKind,
    series_label,
    status_of,
    write_campaign_study,
)
from recsys.evaluation.compare import PlannedComparison, run_family
from recsys.evaluation.frame import EvalSet, build_eval_sets
from recsys.evaluation.intervals import percentile_interval
from recsys.evaluation.metrics import METRICS, nanmean_or_nan
from recsys.evaluation.results import EvaluationSummary, ModelResult, PrecisionAtK, num, read_summary
from recsys.evaluation.run import Timer
from recsys.evaluation.scoring import Scored, score_ranker
from recsys.evaluation.settings import EvalConfig
from recsys.evaluation.split import protocol_splits
from recsys.evaluation.tables import ORACLE_REF, RANDOM_REF, SetResult, evaluate_set, long_table, precision_records
from recsys.features.engagement import timestamps_us
from recsys.rankers import Recommendations, make_ranker
from recsys.rankers.base import parallel_ranking

log = logging.getLogger(__name__)

STUDY_KEYS = ("sizes", "launch_week", "caps", "audiences", "seed")
OUTPUT_FILES: dict[str, str] = {
    "results": "results.json",
    "table": "metrics_at_k.csv",
    "timings": "timings.json",  # run-specific wall times: git-ignored, not a DVC output
}
LAUNCH_WEEK = "launch_week"
US_PER_WEEK = 7 * 86_400 * 1_000_000
MONDAY_OFFSET_US = 4 * 86_400 * 1_000_000  # 1970-01-01 was a Thursday: shift so weeks start on Mondays


# ----------------------------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------------------------


def _ints(raw: Any, key: str, minimum: int = 1) -> tuple[int, ...]:
    """A non-empty list of distinct integers >= minimum, sorted (ValueError naming the key)."""
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"campaigns.{key} must be a non-empty list of integers >= {minimum}, got {raw!r}")
    for v in raw:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f"campaigns.{key} entries must be integers >= {minimum}, got {v!r}")
    if len(set(raw)) != len(raw):
        raise ValueError(f"campaigns.{key} lists a value twice: {raw}")
    return tuple(sorted(raw))


@dataclass(frozen=True)
class StudyConfig:
    """The ``campaigns`` block of params/evaluate.yaml, validated."""

    sizes: tuple[int, ...] = (10, 100, 1000)
    launch_week: bool = True
    caps: tuple[int, ...] = (1, 2, 3, 5)
    audiences: tuple[int, ...] = (10, 100)
    seed: int = 42

    @classmethod
    def from_params(cls, block: Mapping[str, Any] | None) -> StudyConfig:
        """Parse the block; unknown keys and bad values raise ValueError naming the key."""
        block = dict(block or {})
        config.check_keys(block, STUDY_KEYS, "params/evaluate.yaml: campaigns")
        seed = block.get("seed", 42)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"campaigns.seed must be an integer, got {seed!r}")
        launch = block.get("launch_week", True)
        if not isinstance(launch, bool):
            raise ValueError(f"campaigns.launch_week must be true or false, got {launch!r}")
        return cls(
            sizes=_ints(block.get("sizes", [10, 100, 1000]), "sizes"),
            launch_week=launch,
            caps=_ints(block.get("caps", [1, 2, 3, 5]), "caps"),
            audiences=_ints(block.get("audiences", [10, 100]), "audiences"),
            seed=seed,
        )

    def check(self, ks: Sequence[int], candidates: int) -> None:
        """Every audience size must be an evaluated k and at most the candidate depth."""
        for n in self.audiences:
            if n not in ks:
                raise ValueError(f"campaigns.audiences {n} must be one of evaluate.ks {list(ks)} (scored at k = n)")
            if n > candidates:
                raise ValueError(f"campaigns.audiences {n} is above cache.candidates={candidates}")


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


def selected_model(summary: EvaluationSummary) -> tuple[ModelResult, str, dict[str, Any]]:
    """(test result, ranker, make_ranker params) of the model the evaluation selected on validation for serving."""
    if summary.selection is None:
        raise ValueError("the evaluation summary has no selection (an older summary): rerun `recsys evaluate`")
    chosen = summary.selection.products
    return summary.model(chosen.label), chosen.ranker, dict(chosen.settings)


# ----------------------------------------------------------------------------------------------
# campaign sets
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Partition:
    """A campaign set: its record and the campaign of every evaluated product (request order)."""

    record: CampaignSet
    campaign_of: np.ndarray


def partition_record(name: str, kind: SetKind, size: int | None, campaign_of: np.ndarray) -> Partition:
    """The record of a partition from its campaign index per product."""
    counts = np.bincount(campaign_of) if len(campaign_of) else np.zeros(0, dtype=np.int64)
    counts = counts[counts > 0]
    return Partition(
        CampaignSet(
            name=name,
            kind=kind,
            size=size,
            campaigns=int(len(counts)),
            products=int(len(campaign_of)),
            mean_size=float(num(counts.mean()) or 0.0) if len(counts) else 0.0,
            largest=int(counts.max()) if len(counts) else 0,
        ),
        campaign_of,
    )


def random_partition(n_products: int, size: int, seed: int) -> Partition:
    """Products in a seeded random order, cut into campaigns of `size` (the last one smaller)."""
    order = np.random.default_rng([int(seed), int(size)]).permutation(n_products)
    campaign_of = np.empty(n_products, dtype=np.int64)
    campaign_of[order] = np.arange(n_products, dtype=np.int64) // size
    return partition_record(f"random_{size}", "random", size, campaign_of)


def launch_weeks(product_ids: np.ndarray, train: pd.DataFrame) -> np.ndarray:
    """Week index (Monday-based, UTC) of each product's first dated fit row; -1 when it has none."""
    us, dated = timestamps_us(train["event_date"])
    first = pd.Series(us[dated]).groupby(train["product_id"].to_numpy()[dated], sort=False).min()
    weeks = (first + MONDAY_OFFSET_US) // US_PER_WEEK
    found = weeks.reindex(pd.Index(product_ids)).to_numpy()
    return np.where(np.isnan(found.astype(np.float64)), -1, found).astype(np.int64)


def launch_week_partition(product_ids: np.ndarray, train: pd.DataFrame) -> Partition:
    """One campaign per launch week (products with undated fit rows only: one more campaign)."""
    weeks = launch_weeks(product_ids, train)
    _, campaign_of = np.unique(weeks, return_inverse=True)
    return partition_record(LAUNCH_WEEK, "launch_week", None, campaign_of.astype(np.int64))


# ----------------------------------------------------------------------------------------------
# lists and their evaluation
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServedLists:
    """Fixed audiences answering ``rank`` like a ranker, so the evaluation's harness scores them unchanged."""

    recs: Recommendations

    def rank(self, product_ids: np.ndarray | Sequence[Any], k: int) -> Recommendations:
        """The stored audiences of the requested products, cut to k (ValueError naming a product without one)."""
        requested = id_array(product_ids)
        rows = np.asarray(pd.Index(np.asarray(self.recs.product_ids)).get_indexer(requested), dtype=np.int64)
        if (rows < 0).any():
            raise ValueError(f"product {requested[np.argmax(rows < 0)]!r} has no audience in this series")
        sizes = np.minimum(self.recs.sizes()[rows], int(k))
        gather = range_indices(np.asarray(self.recs.offsets, dtype=np.int64)[rows], sizes)
        return Recommendations(
            product_ids=np.asarray(self.recs.product_ids)[rows],
            offsets=offsets_of(sizes),
            customer_ids=np.asarray(self.recs.customer_ids)[gather],
            scores=np.asarray(self.recs.scores)[gather],
            cold_start=np.asarray(self.recs.cold_start)[rows],
        )


@dataclass(frozen=True)
class Candidates:
    """Every evaluated product's candidate lists (request order) with customer codes of the fitted ranker."""

    recs: Recommendations
    codes: np.ndarray  # (E,) customer code of every candidate entry
    n_customers: int

    @cached_property
    def rows(self) -> np.ndarray:
        """(E,) the product row of every candidate entry."""
        return block_rows(np.asarray(self.recs.offsets, dtype=np.int64))

    def lists(self, edges: np.ndarray) -> Recommendations:
        """The audiences made of the chosen candidate entries (ascending: per product, in rank order)."""
        rows = self.rows[edges]
        return Recommendations(
            product_ids=self.recs.product_ids,
            offsets=offsets_of(np.bincount(rows, minlength=len(self.recs))),
            customer_ids=np.asarray(self.recs.customer_ids)[edges],
            scores=np.asarray(self.recs.scores)[edges],
            cold_start=self.recs.cold_start,
        )


@dataclass
class SeriesRun:
    """One series' audiences, exposure figures and audience facts before scoring."""

    label: str
    campaign_set: str | None
    cap: int | None
    n: int
    recs: Recommendations
    exposure: ExposureFigures
    uncapped_exposure: ExposureFigures | None
    distinct_customers: int
    audiences: AudienceFacts


def audience_facts(recs: Recommendations, uncapped: Recommendations, n: int) -> AudienceFacts:
    """How full a series' audiences are against uncapped, and the share of the uncapped total score kept."""
    sizes, full = recs.sizes(), uncapped.sizes()
    short = int((sizes < full).sum())
    total = float(np.sum(np.asarray(uncapped.scores, dtype=np.float64)))
    kept = float(np.sum(np.asarray(recs.scores, dtype=np.float64)))
    return AudienceFacts(
        slots=int(n * len(recs)),
        filled=int(sizes.sum()),
        short_products=short,
        full_share=float(num(1.0 - short / len(recs)) or 0.0) if len(recs) else 1.0,
        score_share=num(kept / total) if total > 0 else None,
    )


def series_runs(cands: Candidates, partitions: Sequence[Partition], opts: StudyConfig) -> list[SeriesRun]:
    """Every series: uncapped at each n, then every (set, cap, n), allocated campaign by campaign."""
    offsets = np.asarray(cands.recs.offsets, dtype=np.int64)
    rows = cands.rows
    runs: list[SeriesRun] = []
    uncapped: dict[int, tuple[Recommendations, np.ndarray]] = {}
    for n in opts.audiences:
        top = first_k(offsets, n)
        recs = cands.lists(top)
        uncapped[n] = (recs, top)
        whole = exposure_figures(cands.codes[top], None, cands.n_customers)
        facts = audience_facts(recs, recs, n)
        distinct = whole.customers
        runs.append(SeriesRun(series_label(None, None, n), None, None, n, recs, whole, None, distinct, facts))
    for part in partitions:
        keys, inverse = np.unique(
            part.campaign_of[rows] * np.int64(max(cands.n_customers, 1)) + cands.codes, return_inverse=True
        )
        pair = inverse.astype(np.int64)  # (campaign, customer) code of every candidate entry
        for n in opts.audiences:
            base_recs, top = uncapped[n]
            for cap in opts.caps:
                filled = fill_audiences(offsets, pair, np.asarray(cands.recs.scores), n, cap, n_codes=len(keys))
                recs = cands.lists(filled.edges)
                runs.append(
                    SeriesRun(
                        series_label(part.record.name, cap, n),
                        part.record.name,
                        cap,
                        n,
                        recs,
                        exposure_figures(pair[filled.edges], cap, len(keys)),
                        exposure_figures(pair[top], cap, len(keys)),
                        int(len(np.unique(cands.codes[filled.edges]))),
                        audience_facts(recs, base_recs, n),
                    )
                )
            log.info("campaign set %s, n=%d: caps %s allocated", part.record.name, n, list(opts.caps))
    return runs


def recall_records(result: SetResult, label: str, level: float) -> list[RecallAtK]:
    """recall@k with its two-way bootstrap percentile interval at every k."""
    i = METRICS.index("recall")
    out = []
    for j, k in enumerate(result.ks):
        lo, hi = percentile_interval(result.boot(label, k, "recall")[:, None], level)
        value = nanmean_or_nan(result.scored[label].values[i, j])
        out.append(RecallAtK(k=k, value=num(value), low=num(lo[0]), high=num(hi[0])))
    return out


def check_uncapped(records: Sequence[PrecisionAtK], model: ModelResult) -> None:
    """Raise ValueError unless the uncapped precision equals the evaluation's own at every k it was scored at."""
    keys = ("value", "low", "high", "hits", "phi")
    for p in records:
        theirs = model.at(p.k)
        diff = [key for key in keys if getattr(p, key) != getattr(theirs, key)]
        if diff:
            raise ValueError(
                f"uncapped {model.label} differs from the evaluation at k={p.k} ({diff}: "
                f"{[getattr(p, x) for x in diff]} vs {[getattr(theirs, x) for x in diff]}): the evaluation summary "
                "is stale or the ranker is not deterministic; rerun `recsys evaluate`"
            )


# ----------------------------------------------------------------------------------------------
# the whole study
# ----------------------------------------------------------------------------------------------


@dataclass
class StudyRun:
    """Typed results, the long table and the timings of one study run."""

    study: CampaignStudy
    table: pd.DataFrame
    timings: dict[str, float]
    paths: dict[str, Path] = field(default_factory=dict)


def score_series(
    runs: Sequence[SeriesRun], es: EvalSet, cfg: EvalConfig, model: ModelResult, opts: StudyConfig
) -> tuple[list[SeriesResult], pd.DataFrame]:
    """Score every series with the harness, test each capped one against uncapped (Holm per n), build the records."""
    results: list[SeriesResult] = []
    tables = []
    for n in opts.audiences:
        ks = tuple(k for k in cfg.ks if k <= n)
        at_n = [r for r in runs if r.n == n]
        scored: dict[str, Scored] = {r.label: score_ranker(ServedLists(r.recs), es, ks, r.label) for r in at_n}
        result = evaluate_set(es, ks, scored, cfg.n_boot, cfg.seed)
        base = series_label(None, None, n)
        plan = [PlannedComparison(r.label, base, n, ("campaign_cap",)) for r in at_n if r.cap is not None]
        comparisons = {c.a: c for c in run_family(plan, result, cfg)}
        base_records = precision_records(result, base, cfg.level)
        check_uncapped(base_records, model)
        p0 = next(p.value for p in base_records if p.k == n) or 0.0
        for r in at_n:
            precision = base_records if r.label == base else precision_records(result, r.label, cfg.level)
            value = next(p.value for p in precision if p.k == n) or 0.0
            comp = comparisons.get(r.label)
            results.append(
                SeriesResult(
                    label=r.label,
                    campaign_set=r.campaign_set,
                    cap=r.cap,
                    n=n,
                    precision=precision,
                    recall=recall_records(result, r.label, cfg.level),
                    comparison=comp,
                    status=status_of(comp, cfg.alpha),
                    precision_share=num(value / p0) if p0 > 0 else None,
                    exposure=r.exposure,
                    uncapped_exposure=r.uncapped_exposure,
                    distinct_customers=r.distinct_customers,
                    audiences=r.audiences,
                )
            )
        table = long_table(result, cfg.level)
        table = table[~table["model"].isin([RANDOM_REF, ORACLE_REF])].copy()
        meta = {r.label: r for r in at_n}
        table.insert(0, "n", n)
        table.insert(1, "campaign_set", [meta[m].campaign_set or "" for m in table["model"]])
        table.insert(2, "cap", pd.Series([meta[m].cap for m in table["model"]], index=table.index, dtype="Int64"))
        table = table.rename(columns={"model": "series"})
        tables.append(table)
    return results, pd.concat(tables, ignore_index=True)


def run_study(
    summary: EvaluationSummary,
    interactions: pd.DataFrame,
    evaluate_block: Mapping[str, Any],
    campaigns_block: Mapping[str, Any] | None,
    cache_block: Mapping[str, Any],
) -> StudyRun:
    """The per-campaign cap study of the model the evaluation selected (module docstring)."""
    timer = Timer()
    cfg = EvalConfig.from_params(evaluate_block, int(cache_block.get("n", 100)))
    opts = StudyConfig.from_params(campaigns_block)
    candidates = int(cache_block.get("candidates", cache_block.get("n", 100)))
    opts.check(cfg.ks, candidates)
    check_summary(summary, cfg)
    model, ranker_name, params = selected_model(summary)
    t_total = time.perf_counter()
    with timer.phase("split"):
        _, test = protocol_splits(interactions, cfg.quantile, cfg.validation, cfg.undated_policy)
        es, _ = build_eval_sets(test, cfg.truth_events)
    with timer.phase("fit"):
        ranker: Any = make_ranker(ranker_name, params).fit(test.train, exclude=test.exclude)  # history_ below
    with timer.phase("rank"):
        with parallel_ranking(2):
            recs = ranker.rank(es.product_ids, candidates)
        cands = Candidates(
            recs, customer_codes(recs.customer_ids, ranker.history_.customer_ids), int(ranker.history_.n_users)
        )
    partitions = [random_partition(len(es), size, opts.seed) for size in opts.sizes]
    if opts.launch_week:
        partitions.append(launch_week_partition(es.product_ids, test.train))
    log.info("campaign study of %s: %d products, sets %s", model.label, len(es), [p.record.name for p in partitions])
    with timer.phase("allocate"):
        runs = series_runs(cands, partitions, opts)
    with timer.phase("score"):
        series, table = score_series(runs, es, cfg, model, opts)
    study = CampaignStudy(
        model=model.label,
        ranker=ranker_name,
        params=model.params,
        ks=list(cfg.ks),
        level=cfg.level,
        alpha=cfg.alpha,
        power=cfg.power,
        smallest_effect_ratio=cfg.smallest_effect_ratio,
        seed=opts.seed,
        candidates=candidates,
        audiences=list(opts.audiences),
        caps=list(opts.caps),
        fit_customers=int(ranker.history_.n_users),
        evaluated_products=len(es),
        products_with_truth=int((es.n_relevant > 0).sum()),
        campaign_sets=[p.record for p in partitions],
        series=series,
    )
    timer.seconds["total"] = round(time.perf_counter() - t_total, 3)
    return StudyRun(study, table, dict(timer.seconds))


# ----------------------------------------------------------------------------------------------
# outputs
# ----------------------------------------------------------------------------------------------


def dvc_metrics(study: CampaignStudy) -> dict[str, Any]:
    """DVC metrics: per series precision@n with its interval and hits, the test, the exposure headline figures."""
    series: dict[str, Any] = {}
    for s in study.series:
        p = s.at(s.n)
        series[s.label] = {
            f"precision@{s.n}": p.value,
            f"precision@{s.n}_ci_low": p.low,
            f"precision@{s.n}_ci_high": p.high,
            f"hits@{s.n}": p.hits,
            "p_holm": None if s.comparison is None else s.comparison.p_holm,
            "status": s.status,
            "max_messages_per_customer": s.exposure.max_per_customer,
            "full_share": s.audiences.full_share,
        }
    return {"model": study.model, "series": series}


def plot_table(study: CampaignStudy, n: int) -> pd.DataFrame:
    """One row per cap at audience size n: precision@n of every campaign set, and uncapped (for the DVC plots)."""
    base = study.uncapped(n).at(n).value
    rows = []
    for cap in study.caps:
        row: dict[str, Any] = {"cap": cap, "uncapped": base}
        for c in study.campaign_sets:
            row[c.name] = study.find(c.name, cap, n).at(n).value
        rows.append(row)
    return pd.DataFrame(rows)


def write_outputs(run: StudyRun, out_dir: Path, metrics_path: Path, plots_dir: Path) -> dict[str, Path]:
    """Write the typed results, the long table and timings into out_dir, the DVC metrics and the plot tables."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / fname for name, fname in OUTPUT_FILES.items()}
    write_campaign_study(run.study, paths["results"])
    run.table.to_csv(paths["table"], index=False, float_format="%.6g", lineterminator="\n")
    paths["timings"].write_text(json.dumps(run.timings, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(dvc_metrics(run.study), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    paths["metrics"] = metrics_path
    plots_dir.mkdir(parents=True, exist_ok=True)
    for n in run.study.audiences:
        path = plots_dir / f"campaign_caps_n{n}.csv"
        plot_table(run.study, n).to_csv(path, index=False, float_format="%.6g", lineterminator="\n")
        paths[f"plots_n{n}"] = path
    return paths


def default_paths(dataset: str) -> dict[str, Path]:
    """input, summary, output dir, metrics file and plots dir of a named data set."""
    d = config.dataset_paths(dataset)
    return {
        "input": d.interactions,
        "summary": d.evaluation_summary,
        "output_dir": d.evaluation_dir / "campaigns",
        "metrics": d.metrics_dir / "campaigns.json",
        "plots_dir": d.reports_dir / "plots",
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: the per-campaign cap study of the evaluation's default ranker on one data set; prints the paths."""
    parser = argparse.ArgumentParser(
        prog="recsys campaigns", description="Evaluate per-campaign caps on campaigns sampled from the test window."
    )
    parser.add_argument("--dataset", default=config.DEFAULT_DATASET, help="data set of params/prepare.yaml: datasets")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        evaluate_params = config.load_params("evaluate")
        paths = default_paths(args.dataset)
        run = run_study(
            read_summary(paths["summary"]),
            load_prepared(paths["input"]),
            dict(evaluate_params.get("evaluate") or {}),
            evaluate_params.get("campaigns"),
            dict(config.load_params("cache").get("cache") or {}),
        )
        run.paths = write_outputs(run, paths["output_dir"], paths["metrics"], paths["plots_dir"])
    except (FileNotFoundError, ValueError) as exc:
        print(f"campaigns: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: config.relative(v) for k, v in run.paths.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
