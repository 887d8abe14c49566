"""The evaluation as one computation: ``run_evaluation(params)`` (``recsys evaluate``, ``python -m recsys.evaluation``).

Protocol (params/evaluate.yaml, block ``evaluate``; stated at the top of the generated report):

1. splits (recsys.evaluation.split): train | validation window | test window by date, with the
   undated-row policy; ground truth of a product = its customers in the window;
2. tuning (recsys.evaluation.tuning): every model with a ``search`` space, and every model of a
   verdict group with more than one member, is scored on the validation window; its chosen
   configuration is the best validation objective;
3. test: every model is refitted once with its chosen configuration on everything before the test
   cutoff and ranks every product present on both sides (plus, separately, the new products with
   each ranker's cold-start order); the test split is scored once;
4. references: the exact expectation of random targeting and the oracle ceiling;
5. intervals (recsys.evaluation.intervals): two-way (product x customer) bootstrap; precision@k
   gets the quasi-Poisson Garwood interval of its hit count;
6. comparisons (recsys.evaluation.significance): the family = the verdict comparison at every k
   (the CF and the engagement model with the best validation objective) plus the default-ranker
   comparison (test leader vs runner-up at the headline k); customer sign-flip tests, Holm, power,
   per-k verdicts and one overall sentence;
7. outputs, written once: ``summary.json`` (typed, recsys.evaluation.results), long CSV tables,
   ``report.md`` (generated), the DVC metrics and plots files, and ``timings.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
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
from recsys.data.catalogue import Catalogue
from recsys.data.contract import load_prepared
from recsys.evaluation import report as text
from recsys.evaluation.compare import (
    case_study_rows,
    coverage_records,
    default_choice,
    plan_family,
    representative,
    run_family,
    verdicts_of,
)
from recsys.evaluation.frame import EvalSet, build_eval_sets
from recsys.evaluation.metrics import METRICS, nanmean_or_nan
from recsys.evaluation.new_products import (
    CATALOGUE_TEXT,
    basis_counts,
    name_verdicts,
    plan_name_family,
    tune_new,
    uses_names,
    window_catalogue,
)
from recsys.evaluation.results import (
    EvaluationSummary,
    ModelResult,
    NewProductsResult,
    Protocol,
    Reference,
    SplitFacts,
    Trial,
    Tuning,
    UndatedFacts,
    ValidationScore,
    num,
    write_record,
    write_summary,
)
from recsys.evaluation.scoring import Scored, score_ranker, slice_shares
from recsys.evaluation.selection import build_selection, choose, validation_score
from recsys.evaluation.settings import EvalConfig, ModelSpec, deep_merge, model_extra, ranker_params
from recsys.evaluation.split import Split, protocol_splits, split_summary, undated_facts
from recsys.evaluation.tables import (
    ORACLE_REF,
    RANDOM_REF,
    TABLE_COLUMNS,
    SetResult,
    evaluate_set,
    long_table,
    precision_records,
    slice_table,
)
from recsys.evaluation.tuning import SearchResult, TrialScore, search, with_values
from recsys.parallel import pool_imap
from recsys.rankers import make_ranker

log = logging.getLogger(__name__)

OUTPUT_FILES: dict[str, str] = {
    "summary": "summary.json",
    "main": "metrics_at_k.csv",
    "new_products": "new_products_at_k.csv",
    "slices": "slices_at_k.csv",
    "validation": "validation.csv",
    "comparisons": "comparisons.csv",
    "selection": "selection.json",
    "report": "report.md",
    "timings": "timings.json",  # run-specific wall times: git-ignored, not a DVC output
}


# ----------------------------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------------------------


@dataclass
class Timer:
    """Wall-clock and process CPU seconds per named phase (CPU under 'cpu/<phase>', steadier on a shared machine)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the enclosed block under `name` (accumulates)."""
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - t0, 3)
            key = f"cpu/{name}"
            self.seconds[key] = round(self.seconds.get(key, 0.0) + time.process_time() - c0, 3)


# ----------------------------------------------------------------------------------------------
# tuning and test fits
# ----------------------------------------------------------------------------------------------


def fit_ranker(
    ranker: str, params: Mapping[str, Any], split: Split, feature_params: Mapping[str, Any], seed: int
) -> Any:
    """A ranker fitted on a split's fit rows, the split's exclusion-only rows excluded."""
    full = ranker_params(params, feature_params, seed, model_extra(ranker, params, split))
    return make_ranker(ranker, full).fit(split.train, exclude=split.exclude)


def tune_model(
    spec: ModelSpec, cfg: EvalConfig, val: Split, val_es: EvalSet, feature_params: Mapping[str, Any], timer: Timer
) -> SearchResult:
    """Search a model's space on the validation split (a single trial with its params when it has no space)."""
    ks = tuple(sorted({cfg.headline_k, cfg.objective.k}))
    metric = METRICS.index(cfg.objective.metric)

    def fit(params: Mapping[str, Any]) -> Any:
        with timer.phase(f"tune/fit/{spec.label}"):
            return fit_ranker(spec.ranker, params, val, feature_params, cfg.seed)

    def score(ranker: Any) -> TrialScore:
        with timer.phase(f"tune/rank/{spec.label}"):
            scored = score_ranker(ranker, val_es, ks, spec.label)
        objective = float(nanmean_or_nan(scored.values[metric, ks.index(cfg.objective.k)]))
        return TrialScore(objective, scored.hits.at(cfg.objective.k).count, scored.hits.at(cfg.headline_k).count)

    return search(
        spec.label, spec.ranker, spec.params, spec.search or {}, cfg.budget_of(spec.label), cfg.tuning_seed, fit, score
    )


# Expected cost of a model's search (slowest first), so that parallel workers finish together.
TUNING_COST: dict[str, int] = {"bpr": 0, "als": 1, "itemknn": 2, "content": 3, "name_knn": 4}


def _tune_job(
    shared: tuple[EvalConfig, Split, EvalSet, Mapping[str, Any]], spec: ModelSpec
) -> tuple[str, SearchResult | ImportError, dict[str, float]]:
    """One model's search in a worker: its result (or the ImportError of a missing optional library) and timings."""
    cfg, val, val_es, feature_params = shared
    timer = Timer()
    try:
        return spec.label, tune_model(spec, cfg, val, val_es, feature_params, timer), timer.seconds
    except ImportError as exc:
        return spec.label, exc, timer.seconds


def tune_many(
    specs: Sequence[ModelSpec],
    cfg: EvalConfig,
    val: Split,
    val_es: EvalSet,
    feature_params: Mapping[str, Any],
    timer: Timer,
) -> dict[str, SearchResult | ImportError]:
    """Independent models' searches in ``evaluate.processes`` spawned workers (implicit's OpenMP is not fork-safe).

    Why: on 2 cores the searches of ALS (2 threads) and BPR (1 thread, for determinism) left a core idle for minutes.
    Each search is seeded and self-contained, so results do not depend on the number of processes.
    """
    order = sorted(specs, key=lambda s: (TUNING_COST.get(s.ranker, len(TUNING_COST)), specs.index(s)))
    out: dict[str, SearchResult | ImportError] = {}
    shared = (cfg, val, val_es, feature_params)
    for label, result, seconds in pool_imap(_tune_job, order, cfg.processes, shared, start="spawn"):
        out[label] = result
        for phase, value in seconds.items():
            timer.seconds[phase] = round(timer.seconds.get(phase, 0.0) + value, 3)
    return out


def tuning_record(spec: ModelSpec, result: SearchResult) -> Tuning:
    """The typed record of a search."""
    trials = [
        Trial(
            index=i,
            params={k: _scalar(v) for k, v in values.items()},
            objective=num(s.objective),
            hits_objective_k=s.hits_objective_k,
            hits_headline_k=s.hits_headline_k,
            chosen=i == result.chosen,
        )
        for i, (values, s) in enumerate(result.trials)
    ]
    return Tuning(
        model=spec.label,
        space=[{k: [_scalar(v) for v in vs] for k, vs in grid.items()} for grid in result.space],
        grid_size=result.grid_size,
        fits=result.fits,
        trials=trials,
        chosen={k: _scalar(v) for k, v in result.chosen_values.items()},
    )


def _scalar(v: Any) -> float | int | str | bool | None:
    """A JSON scalar for params (numbers rounded like every result)."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return num(v)
    return None if v is None else str(v)


def flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted scalar keys (lists as strings)."""
    out: dict[str, Any] = {}
    for k, v in params.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flat_params(v, key + "."))
        else:
            out[key] = _scalar(v) if not isinstance(v, (list, tuple)) else json.dumps(list(v))
    return out


def load_claims() -> dict[str, Any]:
    """The original write-up's claims from the published profile."""
    from recsys.data.profile import load_profile

    return dict(load_profile().get("claims_of_the_original_write_up_to_beat_or_refute") or {})


def is_case_study_layout(prepare_summary: Path | None = None) -> bool:
    """True when `prepare` read the log with the case_study preset (data/prepared/prepare_summary.json: source)."""
    path = prepare_summary or config.PREPARE_SUMMARY_JSON
    if not Path(path).is_file():
        return False
    return str(json.loads(Path(path).read_text(encoding="utf-8")).get("source", "")).split("+")[0] == "case_study"


# ----------------------------------------------------------------------------------------------
# the whole evaluation
# ----------------------------------------------------------------------------------------------


@dataclass
class EvaluationResult:
    """The typed summary, the tables, the generated report and where they were written."""

    summary: EvaluationSummary
    main: pd.DataFrame
    new_products: pd.DataFrame
    slices: pd.DataFrame
    validation: pd.DataFrame
    comparisons: pd.DataFrame
    report: str
    timings: dict[str, float]
    paths: dict[str, Path] = field(default_factory=dict)


def split_facts(split: Split, existing: EvalSet, new: EvalSet) -> SplitFacts:
    """Typed facts of one split and its evaluation sets."""
    s = split_summary(split)
    return SplitFacts(
        name=s["name"],
        cutoff=s["cutoff"],
        end=s["end"],
        window_days=float(num(s["window_days"]) or 0.0),
        fit_rows=s["fit_rows"],
        truth_rows=s["truth_rows"],
        exclude_rows=s["exclude_rows"],
        fit_customers=s["fit_customers"],
        truth_customers=s["truth_customers"],
        truth_customers_unseen=s["truth_customers_unseen"],
        truth_customers_unseen_share=num(s["truth_customers_unseen_share"]),
        truth_products=s["truth_products"],
        truth_products_unseen=s["truth_products_unseen"],
        evaluated_products=len(existing),
        evaluated_with_truth=int((existing.n_relevant > 0).sum()),
        ranked_products=int(existing.scored_mask().sum()),
        new_products=len(new),
        relevant_pairs=int(existing.n_relevant.sum()),
        reachable_pairs=int(existing.n_eligible_relevant().sum()),
        truth_dispersion=float(num(existing.truth_dispersion()) or 1.0),
    )


def slice_share_record(test: Split, es: EvalSet) -> dict[str, dict[str, float | None]]:
    """Shares of test rows, test customers and relevant pairs by customers' number of fit rows (0, 1, 2+)."""
    shares = slice_shares(es, es.customers.codes(test.test["customer_id"].to_numpy()))
    return {what: {s: num(v) for s, v in by.items()} for what, by in shares.items()}


def validation_table(tunings: Sequence[Tuning]) -> pd.DataFrame:
    """Every validation trial: model, trial, params (JSON), objective, hits at the objective and headline k, chosen."""
    rows = [
        (
            t.model,
            tr.index,
            json.dumps(tr.params, sort_keys=True),
            tr.objective,
            tr.hits_objective_k,
            tr.hits_headline_k,
            tr.chosen,
        )
        for t in tunings
        for tr in t.trials
    ]
    return pd.DataFrame(
        rows, columns=["model", "trial", "params", "objective", "hits_objective_k", "hits_headline_k", "chosen"]
    )


def skip_optional(spec: ModelSpec, exc: ImportError, skipped: dict[str, str]) -> None:
    """Record an optional model whose library is missing as skipped (with the reason); a required one re-raises."""
    if not spec.optional:
        raise exc
    skipped[spec.label] = f"{type(exc).__name__}: {exc}"
    log.warning("skipping optional model %s: %s", spec.label, exc)


def served_depth() -> int | None:
    """params/cache.yaml: cache.n (the default headline k), or None when there is no cache params file."""
    try:
        return int((config.load_params("cache").get("cache") or {}).get("n", 100))
    except FileNotFoundError:
        return None


@dataclass
class Fits:
    """Validation-side state of the run: each model's chosen params and the rankers fitted on the validation split."""

    chosen: dict[str, dict[str, Any]] = field(default_factory=dict)
    searches: dict[str, SearchResult] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def validation_scores(
    cfg: EvalConfig,
    specs: Sequence[ModelSpec],
    fits: Fits,
    val: Split,
    val_es: EvalSet,
    val_new: EvalSet,
    val_catalogue: Catalogue,
    feature_params: Mapping[str, Any],
    timer: Timer,
) -> tuple[list[ValidationScore], list[ValidationScore], dict[str, dict[str, Any]], list[Tuning]]:
    """Validation objective of every model on known and on new products, and the name models' new-products settings.

    A searched model's known-products score is its chosen trial's (objective at the objective k); every other model
    is fitted once on the validation split and scored. Name models then tune their ``new_search`` on the validation
    new products; fallbacks and name models get a new-products score (the basis of the new-products selection).
    """
    metric = METRICS.index(cfg.objective.metric)
    ks = tuple(sorted({cfg.headline_k, cfg.objective.k}))
    names = {spec.label for spec in specs if uses_names(spec.ranker)}
    wanted_new = names | set(cfg.new_products.fallbacks) if cfg.new_products.enabled else set()
    known: list[ValidationScore] = []
    new: list[ValidationScore] = []
    new_params: dict[str, dict[str, Any]] = {}
    new_tuning: list[Tuning] = []
    for spec in specs:
        if spec.label in fits.skipped or spec.ranker == TRUTH_RANKER:
            continue  # the truth reference is never chosen: no validation score
        searched = fits.searches.get(spec.label)
        needs_fit = searched is None or spec.label in wanted_new
        ranker = None
        if needs_fit:
            try:
                with timer.phase(f"validation/fit/{spec.label}"):
                    ranker = fit_ranker(spec.ranker, fits.chosen[spec.label], val, feature_params, cfg.seed)
            except ImportError as exc:
                skip_optional(spec, exc, fits.skipped)
                continue
        if searched is not None:
            trial = searched.trials[searched.chosen][1]
            known.append(
                ValidationScore(
                    label=spec.label,
                    ranker=spec.ranker,
                    metric=cfg.objective.metric,
                    k=cfg.objective.k,
                    value=num(trial.objective),
                    hits=trial.hits_objective_k,
                )
            )
        else:
            with timer.phase(f"validation/rank/{spec.label}"):
                scored = score_ranker(ranker, val_es, ks, spec.label)
            known.append(
                validation_score(spec.label, spec.ranker, scored, metric, ks.index(cfg.objective.k), cfg.objective.k)
            )
        if spec.label not in wanted_new or ranker is None:
            continue
        changes: dict[str, Any] = {}
        if spec.label in names and spec.new_search:
            res = tune_new(
                spec.label,
                spec.ranker,
                ranker,
                spec.new_search,
                cfg.new_products.budget,
                cfg.tuning_seed,
                val_new,
                val_catalogue,
                ks,
                (cfg.objective.metric, cfg.objective.k),
                cfg.headline_k,
                timer.phase,
            )
            changes = with_values({}, res.chosen_values)
            new_tuning.append(tuning_record(spec, res))
            trial = res.trials[res.chosen][1]
            new.append(
                ValidationScore(
                    label=spec.label,
                    ranker=spec.ranker,
                    metric=cfg.objective.metric,
                    k=cfg.objective.k,
                    value=num(trial.objective),
                    hits=trial.hits_objective_k,
                )
            )
        else:
            with timer.phase(f"validation/rank_new/{spec.label}"):
                scored = score_ranker(ranker, val_new, ks, spec.label, catalogue=val_catalogue)
            new.append(
                validation_score(spec.label, spec.ranker, scored, metric, ks.index(cfg.objective.k), cfg.objective.k)
            )
        new_params[spec.label] = deep_merge(fits.chosen[spec.label], changes)
        del ranker
    return known, new, new_params, new_tuning


def run_evaluation(
    params: Mapping[str, Any] | None = None,
    interactions: pd.DataFrame | None = None,
    output_dir: Path | None = None,
    feature_params: Mapping[str, Any] | None = None,
    write: bool = True,
    case_study: bool = False,
    dataset: str | None = None,
    served_n: int | None = None,
    truth_categories: Path | str | None = None,
) -> EvaluationResult:
    """Run the whole evaluation from params (default params/evaluate.yaml) and write its outputs once.

    interactions: the canonical table (default: `evaluate.input`, loaded with load_prepared).
    feature_params: the params/features.yaml structure (default: loaded from params/).
    case_study: add the original write-up's figures as a labelled comparison (the caller decides,
    e.g. from ``is_case_study_layout()``; never guessed here).
    dataset: the data set's name, recorded in the selection. served_n: the served depth (default
    params/cache.yaml: cache.n), the headline k when ``evaluate.headline_k`` is null. truth_categories: the
    generator's categories file of a synthetic log: adds the achievable reference ``truth`` (``truth_category``).
    """
    timer = Timer()
    block = dict((params if params is not None else config.load_params("evaluate")).get("evaluate") or {})
    cfg = EvalConfig.from_params(block, served_n if served_n is not None else served_depth())
    if feature_params is None:
        try:
            feature_params = config.load_params("features")
        except FileNotFoundError:
            feature_params = {}
    with timer.phase("load"):
        if interactions is None:
            interactions = load_prepared(config.resolve(block.get("input") or config.PREPARED_PARQUET))
    t_total, c_total = time.perf_counter(), time.process_time()
    with timer.phase("split"):
        val, test = protocol_splits(interactions, cfg.quantile, cfg.validation, cfg.undated_policy)
        val_es, val_new = build_eval_sets(val, cfg.truth_events)
        test_es, new_es = build_eval_sets(test, cfg.truth_events)
        val_catalogue = window_catalogue(val, val_new)
        test_catalogue = window_catalogue(test, new_es)
        undated = undated_facts(interactions, test)
    log.info(
        "validation %s..%s: %d products (%d ranked), %d new; test from %s: %d products (%d ranked), %d new",
        val.cutoff,
        val.end,
        len(val_es),
        val_es.scored_mask().sum(),
        len(val_new),
        test.cutoff,
        len(test_es),
        test_es.scored_mask().sum(),
        len(new_es),
    )
    labels = {spec.label for spec in cfg.models}
    groups = [[m for m in g if m in labels] for g in (cfg.cf_models, cfg.engagement_models)]
    group_labels = {m for g in groups if len(g) > 1 for m in g}  # a one-member group has no choice to validate
    fits = Fits()
    all_specs = [*cfg.models, *truth_reference(truth_categories)]
    tuned = [s for s in all_specs if (s.search or s.label in group_labels) and "sources_from" not in s.params]
    with timer.phase("tune/parallel"):
        early = tune_many(tuned, cfg, val, val_es, feature_params, timer)
    specs: list[ModelSpec] = []
    for spec in all_specs:
        spec = with_sources(spec, cfg.models, fits, feature_params, cfg.seed)
        specs.append(spec)
        fits.chosen[spec.label] = dict(spec.params)
        if not spec.search and spec.label not in group_labels:
            continue
        try:
            outcome = early.get(spec.label)
            if isinstance(outcome, ImportError):
                raise outcome
            res = outcome if outcome is not None else tune_model(spec, cfg, val, val_es, feature_params, timer)
        except ImportError as exc:
            skip_optional(spec, exc, fits.skipped)
            continue
        fits.searches[spec.label] = res
        fits.chosen[spec.label] = with_values(spec.params, res.chosen_values)
    known_scores, new_scores, new_params, new_tuning = validation_scores(
        cfg, specs, fits, val, val_es, val_new, val_catalogue, feature_params, timer
    )
    searches, skipped, chosen_params = fits.searches, fits.skipped, fits.chosen
    names = [spec.label for spec in specs if uses_names(spec.ranker) and spec.label not in skipped]
    scored: dict[str, Scored] = {}
    scored_new: dict[str, Scored] = {}
    rankers: dict[str, str] = {}
    for spec in specs:
        if spec.label in skipped:
            continue
        try:
            with timer.phase(f"test/fit/{spec.label}"):
                ranker = fit_ranker(spec.ranker, chosen_params[spec.label], test, feature_params, cfg.seed)
        except ImportError as exc:
            skip_optional(spec, exc, skipped)
            continue
        rankers[spec.label] = spec.ranker
        with timer.phase(f"test/rank/{spec.label}"):
            scored[spec.label] = score_ranker(ranker, test_es, cfg.ks, spec.label, cfg.diagnostics)
        if cfg.new_products.enabled:
            changes = knob_changes(chosen_params[spec.label], new_params.get(spec.label))
            variant = ranker.with_params(changes) if changes else ranker
            with timer.phase(f"test/rank_new/{spec.label}"):
                scored_new[spec.label] = score_ranker(variant, new_es, cfg.ks, spec.label, catalogue=test_catalogue)
            del variant
        del ranker
    with timer.phase("intervals"):
        main = evaluate_set(test_es, cfg.ks, scored, cfg.n_boot, cfg.seed)
        new = evaluate_set(new_es, cfg.ks, scored_new, cfg.n_boot, cfg.seed) if cfg.new_products.enabled else None
    selection = build_selection(
        dataset,
        cfg.objective.metric,
        cfg.objective.k,
        cfg.headline_k,
        [s for s in known_scores if s.label in rankers],
        {
            label: ranker_params(
                chosen_params[label], feature_params, cfg.seed, model_extra(r, chosen_params[label], test)
            )
            for label, r in rankers.items()
        },
        [s for s in new_scores if s.label in rankers],
        {
            label: served_params(r, new_params[label], feature_params, cfg.seed, test)
            for label, r in rankers.items()
            if label in new_params
        },
    )
    with timer.phase("comparisons"):
        cf = representative(cfg.cf_models, searches, list(scored))
        eng = representative(cfg.engagement_models, searches, list(scored))
        runner = selection.runner_up.label if selection.runner_up is not None else None
        plan = plan_family(cfg, cf, eng, selection.products.label, runner)
        comparisons = run_family(plan, main, cfg)
        verdicts = verdicts_of(comparisons, cfg)
        new_result = None
        if new is not None:
            fallback = next((label for label in choose(new_scores) if label in cfg.new_products.fallbacks), None)
            new_family = run_family(plan_name_family(cfg.ks, names, fallback), new, cfg)
            new_result = NewProductsResult(
                catalogue=CATALOGUE_TEXT,
                products=len(new_es),
                with_truth=int((new_es.n_relevant > 0).sum()),
                ranked=int(new_es.scored_mask().sum()),
                models=[
                    model_result(label, rankers[label], cfg, new, new_params.get(label, chosen_params[label]), None)
                    for label in scored_new
                ],
                references=[
                    Reference(label=r, precision=precision_records(new, r, cfg.level)) for r in (RANDOM_REF, ORACLE_REF)
                ],
                tuning=new_tuning,
                validation=new_scores,
                basis=basis_counts(scored_new),
                fallback=fallback,
                comparisons=new_family,
                verdicts=name_verdicts(new_family, cfg.alpha),
            )
    models = [
        model_result(
            label,
            rankers[label],
            cfg,
            main,
            chosen_params[label],
            searches.get(label),
        )
        for label in scored
    ]
    references = [Reference(label=r, precision=precision_records(main, r, cfg.level)) for r in (RANDOM_REF, ORACLE_REF)]
    random_label = next((m for m, r in rankers.items() if r == "random"), None)
    summary = EvaluationSummary(
        protocol=Protocol(
            test_quantile=cfg.quantile,
            validation=cfg.validation,
            undated_policy=cfg.undated_policy,
            truth_events=list(cfg.truth_events) if cfg.truth_events else None,
            ks=list(cfg.ks),
            headline_k=cfg.headline_k,
            objective_metric=cfg.objective.metric,
            objective_k=cfg.objective.k,
            tuning_budget={"default": cfg.budget, **dict(cfg.budgets)},
            tuning_seed=cfg.tuning_seed,
            seed=cfg.seed,
            level=cfg.level,
            n_boot=cfg.n_boot,
            alpha=cfg.alpha,
            power=cfg.power,
            smallest_effect_ratio=cfg.smallest_effect_ratio,
            cf_models=list(cfg.cf_models),
            engagement_models=list(cfg.engagement_models),
        ),
        splits=[split_facts(val, val_es, val_new), split_facts(test, test_es, new_es)],
        undated=UndatedFacts(policy=cfg.undated_policy, **undated),
        models=models,
        references=references,
        tuning=[tuning_record(spec, searches[spec.label]) for spec in specs if spec.label in searches],
        comparisons=comparisons,
        verdicts=verdicts,
        overall=text.overall_sentence(verdicts),
        random_coverage=coverage_records(main, random_label, cfg.level),
        default_ranker=default_choice(main, cfg, selection, rankers, comparisons, cfg.level),
        skipped_models=skipped,
        slice_shares=slice_share_record(test, test_es) if cfg.diagnostics else None,
        case_study=None,
        validation=known_scores,
        selection=selection,
        new_products=new_result,
    )
    if case_study:
        summary = summary.model_copy(
            update={"case_study": case_study_rows(summary.models, summary.references, load_claims())}
        )
    timer.seconds["total"] = round(time.perf_counter() - t_total, 3)
    timer.seconds["cpu/total"] = round(time.process_time() - c_total, 3)
    main_table = long_table(main, cfg.level)
    new_table = long_table(new, cfg.level) if new is not None else pd.DataFrame(columns=list(TABLE_COLUMNS))
    all_comparisons = [*comparisons, *(new_result.comparisons if new_result is not None else [])]
    comp_table = pd.DataFrame([c.model_dump() for c in all_comparisons]) if all_comparisons else pd.DataFrame()
    if not comp_table.empty:
        comp_table["purpose"] = comp_table["purpose"].map("+".join)
    result = EvaluationResult(
        summary=summary,
        main=main_table,
        new_products=new_table,
        slices=slice_table(main),
        validation=validation_table([*summary.tuning, *new_tuning]),
        comparisons=comp_table,
        report=text.report_markdown(summary),
        timings=dict(timer.seconds),
    )
    if write:
        default_dir = config.resolve(block.get("output_dir") or (config.REPORTS_DIR / "evaluation"))
        result.paths = write_outputs(result, Path(output_dir) if output_dir is not None else default_dir)
    return result


TRUTH_RANKER = "truth_category"
TRUTH_LABEL = "truth"


def truth_reference(path: Path | str | None) -> list[ModelSpec]:
    """The achievable-reference model ``truth`` (true category share x P(return)) when a categories file is given."""
    if path is None:
        return []
    return [ModelSpec(label=TRUTH_LABEL, ranker=TRUTH_RANKER, params={"categories_path": str(path)})]


def with_sources(
    spec: ModelSpec, models: Sequence[ModelSpec], fits: Fits, feature_params: Mapping[str, Any], seed: int
) -> ModelSpec:
    """A learned model's ``sources_from`` (label -> candidates) as ``sources`` with each label's chosen settings.

    The sources are the models listed before it in params/evaluate.yaml, with the settings chosen for them on
    validation (a skipped optional model is left out); any other model is returned unchanged.
    """
    wanted = spec.params.get("sources_from")
    if not wanted:
        return spec
    by_label = {m.label: m for m in models}
    unknown = [label for label in wanted if label not in by_label]
    if unknown:
        raise ValueError(
            f"evaluate.models.{spec.label}.sources_from names {unknown}, which are not models listed before it"
        )
    sources = {
        label: {
            "ranker": by_label[label].ranker,
            "candidates": int(depth),
            "settings": ranker_params(fits.chosen[label], feature_params, seed),
        }
        for label, depth in dict(wanted).items()
        if label not in fits.skipped
    }
    params = {k: v for k, v in spec.params.items() if k != "sources_from"}
    return dataclasses.replace(spec, params={**params, "sources": sources})


def served_params(
    ranker: str, params: Mapping[str, Any], feature_params: Mapping[str, Any], seed: int, test: Split
) -> dict[str, Any]:
    """The make_ranker params of a model as the test fit used them (what the selection records for serving)."""
    return ranker_params(params, feature_params, seed, model_extra(ranker, params, test))


def knob_changes(base: Mapping[str, Any], new: Mapping[str, Any] | None) -> dict[str, Any]:
    """The nested params that differ between a model's chosen settings and its new-products settings."""
    if not new:
        return {}
    out: dict[str, Any] = {}
    for key in set(base) | set(new):
        a, b = base.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            sub = knob_changes(a, b)
            if sub:
                out[key] = sub
        elif a != b:
            out[key] = b
    return out


def model_result(
    label: str, ranker: str, cfg: EvalConfig, result: SetResult, params: Mapping[str, Any], search_: SearchResult | None
) -> ModelResult:
    """One model's typed test result on one product set."""
    return ModelResult(
        label=label,
        ranker=ranker,
        group=cfg.group_of(label, ranker),
        tuned=search_ is not None and any(search_.space),
        params=flat_params(params),
        validation_objective=num(search_.trials[search_.chosen][1].objective) if search_ is not None else None,
        precision=precision_records(result, label, cfg.level),
    )


def dvc_metrics(summary: EvaluationSummary) -> dict[str, Any]:
    """DVC metrics: precision@k, interval and hits per model / reference, tuning, verdicts, coverage, default."""
    out: dict[str, Any] = {"models": {}, "references": {}, "verdicts": {}, "random_coverage": {}}
    for kind, records in (("models", summary.models), ("references", summary.references)):
        for m in records:
            d = out[kind].setdefault(m.label, {})
            for p in m.precision:
                d[f"precision@{p.k}"] = p.value
                d[f"precision@{p.k}_ci_low"] = p.low
                d[f"precision@{p.k}_ci_high"] = p.high
                d[f"hits@{p.k}"] = p.hits
    for v in summary.verdicts:
        out["verdicts"][f"k{v.k}"] = v.verdict
    for c in summary.random_coverage:
        out["random_coverage"][f"k{c.k}"] = c.covers
    out["default_ranker"] = None if summary.default_ranker is None else summary.default_ranker.ranker
    return out


def write_outputs(
    result: EvaluationResult, out_dir: Path, metrics_path: Path | None = None, plots_dir: Path | None = None
) -> dict[str, Path]:
    """Write the summary, tables, report and timings into out_dir, plus the DVC metrics and plots files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / fname for name, fname in OUTPUT_FILES.items()}
    write_summary(result.summary, paths["summary"])
    if result.summary.selection is not None:
        write_record(result.summary.selection, paths["selection"])
    tables = {
        "main": result.main,
        "new_products": result.new_products,
        "slices": result.slices,
        "validation": result.validation,
        "comparisons": result.comparisons,
    }
    for name, table in tables.items():
        table.to_csv(paths[name], index=False, float_format="%.6g", lineterminator="\n")
    paths["report"].write_text(result.report, encoding="utf-8")
    paths["timings"].write_text(json.dumps(result.timings, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    metrics = metrics_path or (out_dir / "metrics.json")
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(json.dumps(dvc_metrics(result.summary), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    paths["metrics"] = metrics
    plots = plots_dir or out_dir
    plots.mkdir(parents=True, exist_ok=True)
    wide = (
        result.main[result.main["metric"] == "precision"]
        .pivot_table(index="k", columns="model", values="value", sort=False)
        .reset_index()
    )
    wide.columns.name = None
    paths["plots"] = plots / "precision_at_k.csv"
    wide.to_csv(paths["plots"], index=False, float_format="%.6g", lineterminator="\n")
    return paths


def quick_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A small variant for smoke runs: few bootstrap replicates, small factor models, budget 1, no BG/NBD."""
    p = copy.deepcopy(dict(params))
    block = p.setdefault("evaluate", {})
    block.setdefault("intervals", {})["n_boot"] = 100
    block.setdefault("tuning", {})["budget"] = 1
    models = block.get("models") or {}
    for spec in models.values():
        if (spec or {}).get("ranker") in {"als", "bpr"}:
            spec.update({"factors": 16, "iterations": 5})
            spec.pop("search", None)
    models.pop("bgnbd", None)
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI: run the evaluation from params/evaluate.yaml and print where the outputs went."""
    parser = argparse.ArgumentParser(
        prog="recsys evaluate", description="Run the offline evaluation (one computation, written once)."
    )
    parser.add_argument("--input", help="prepared interactions Parquet (default: evaluate.input)")
    parser.add_argument("--output-dir", help="output directory (default: evaluate.output_dir)")
    parser.add_argument(
        "--prepare-summary", help="prepare_summary.json of the input (layout detection; default: next to it)"
    )
    parser.add_argument("--metrics", default="reports/metrics/evaluate.json", help="DVC metrics file")
    parser.add_argument("--plots-dir", default="reports/plots", help="DVC plots directory")
    parser.add_argument("--dataset", help="the data set's name (recorded in the selection)")
    parser.add_argument(
        "--quick", action="store_true", help="small factor models, budget 1, few replicates (smoke run)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    params = config.load_params("evaluate")
    if args.quick:
        params = quick_params(params)
    if args.input:
        params["evaluate"]["input"] = args.input
    block = params["evaluate"]
    choice = str(block.get("case_study_comparison", "auto"))
    if choice not in {"auto", "true", "false", "True", "False"}:
        print(
            f"evaluate: error: evaluate.case_study_comparison must be auto, true or false, got {choice!r}",
            file=sys.stderr,
        )
        return 2
    summary_path = config.resolve(args.prepare_summary) if args.prepare_summary else None
    if summary_path is None and args.input:
        summary_path = config.resolve(args.input).with_name("prepare_summary.json")
    case_study = is_case_study_layout(summary_path) if choice == "auto" else choice.lower() == "true"
    try:
        truth = None
        if args.dataset:
            truth = config.dataset_config(args.dataset).get("categories") or None
        result = run_evaluation(
            params, write=False, case_study=case_study, dataset=args.dataset, truth_categories=truth
        )
        out_dir = config.resolve(args.output_dir or block.get("output_dir") or (config.REPORTS_DIR / "evaluation"))
        result.paths = write_outputs(result, out_dir, config.resolve(args.metrics), config.resolve(args.plots_dir))
    except (FileNotFoundError, ValueError) as exc:
        print(f"evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(result.summary.overall)
    print(json.dumps({k: config.relative(v) for k, v in result.paths.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
