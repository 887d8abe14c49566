"""Generator sensitivity: the evaluation re-run on synthetic logs across settings the published profile does not pin.

A synthetic log only tests what its generator encodes. Three behaviours are not pinned by the published profile
(``recsys.data.synthetic.Behaviour``): the category loyalty of returning customers, how much a product's name
reveals its category (``name_signal``: 1 = informative names, 0 = names shuffled across products) and retention.
``run_sweep`` generates one log per point of a small grid (params/sensitivity.yaml), prepares it exactly as
``recsys prepare`` does (case-study preset), and evaluates it with the evaluation's own code
(``run_evaluation``: same splits, exclusions, intervals and paired tests). To stay within the pipeline's time budget
the sweep does not re-tune: every model keeps the settings chosen on the validation window of the data set named in
``settings_from`` (its typed summary), and the CF and engagement groups are that data set's validation
representatives, so each point costs one fit per model. The typed ``SensitivitySummary`` keeps every point's
precision@k with its interval and hits, the test leader and the CF vs engagement verdicts; ``conditions`` states,
from those numbers only, under which settings each verdict holds.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

import pandas as pd

from recsys import config
from recsys.data.contract import PRESETS, load_prepared
from recsys.data.prepare import prepare
from recsys.data.synthetic import Behaviour, behaviour_from_params, generate_log, write_case_study_csv
from recsys.evaluation.report import VERDICT_TEXT
from recsys.evaluation.results import EvaluationSummary, Record, Verdict, num, read_record, read_summary, write_record
from recsys.evaluation.run import run_evaluation
from recsys.evaluation.tuning import set_path
from recsys.parallel import check_processes, pool_map

log = logging.getLogger(__name__)

AXES: tuple[str, ...] = ("category_loyalty", "name_signal", "retention")
PLOT_FILES: dict[str, str] = {
    "loyalty_informative_names": "category_loyalty",
    "loyalty_shuffled_names": "category_loyalty",
    "retention": "retention",
}


# ----------------------------------------------------------------------------------------------
# params
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepAxis:
    """One block of the grid: the settings it varies (their product) on top of the base behaviour."""

    name: str
    vary: Mapping[str, Sequence[Any]]


@dataclass(frozen=True)
class SweepConfig:
    """params/sensitivity.yaml, validated."""

    scale: float
    seed: int
    settings_from: str
    models: tuple[str, ...]
    base: Mapping[str, Any]
    axes: tuple[SweepAxis, ...]
    n_boot: int
    processes: int = 1

    @classmethod
    def from_params(cls, block: Mapping[str, Any]) -> SweepConfig:
        """Build from the `sensitivity` block; a ValueError names the bad key."""
        keys = ("scale", "seed", "settings_from", "models", "base", "grid", "n_boot", "processes")
        config.check_keys(block, keys, "sensitivity")
        scale = float(block.get("scale", 0.5))
        if not 0.0 < scale <= 10.0:
            raise ValueError(f"sensitivity.scale must be in (0, 10], got {scale}")
        axes = []
        for i, item in enumerate(block.get("grid") or []):
            config.check_keys(item, ("name", "vary"), f"sensitivity.grid[{i}]")
            vary = dict(item.get("vary") or {})
            bad = sorted(set(vary) - set(AXES))
            if bad or not vary:
                raise ValueError(f"sensitivity.grid[{i}].vary must set some of {AXES}, got {sorted(vary)}")
            axes.append(SweepAxis(str(item.get("name") or f"axis{i}"), {k: list(v) for k, v in vary.items()}))
        if not axes:
            raise ValueError("sensitivity.grid is empty: list at least one block of settings to vary")
        base = dict(block.get("base") or {})
        bad = sorted(set(base) - set(AXES))
        if bad:
            raise ValueError(f"sensitivity.base has unknown setting(s) {bad}; known: {AXES}")
        models = tuple(str(m) for m in block.get("models") or ())
        if not models:
            raise ValueError("sensitivity.models is empty: list the evaluation models to compare at every point")
        return cls(
            scale=scale,
            seed=int(block.get("seed", 42)),
            settings_from=str(block.get("settings_from", config.DEFAULT_DATASET)),
            models=models,
            base=base,
            axes=tuple(axes),
            n_boot=int(block.get("n_boot", 1000)),
            processes=check_processes(block.get("processes", 1), "sensitivity.processes"),
        )


def sweep_points(cfg: SweepConfig) -> list[tuple[str, dict[str, Any]]]:
    """(axis name, behaviour settings) of every point: each axis's product of values over the base settings."""
    points: list[tuple[str, dict[str, Any]]] = []
    for axis in cfg.axes:
        keys = list(axis.vary)
        for values in product(*(axis.vary[k] for k in keys)):
            points.append((axis.name, {**dict(cfg.base), **dict(zip(keys, values, strict=True))}))
    return points


def unflatten_into(spec: Mapping[str, Any], flat: Mapping[str, Any]) -> dict[str, Any]:
    """A model's params block with the summary's flat chosen settings (dotted keys) written back into it."""
    out = {k: copy.deepcopy(v) for k, v in spec.items() if k != "search"}
    for key, value in flat.items():
        if key in {"ranker", "seed", "optional", "enabled"}:
            continue
        out = set_path(out, key, value)
    return out


def point_params(cfg: SweepConfig, evaluate: Mapping[str, Any], tuned: EvaluationSummary) -> dict[str, Any]:
    """The evaluate params of every point: the listed models with the settings chosen on `settings_from`'s validation,
    no search, the groups' validation representatives as the only group members."""
    block = copy.deepcopy(dict(evaluate.get("evaluate") or {}))
    specs = dict(block.get("models") or {})
    missing = [m for m in cfg.models if m not in specs]
    if missing:
        raise ValueError(f"sensitivity.models {missing} are not models of params/evaluate.yaml ({sorted(specs)})")
    chosen = {m.label: m.params for m in tuned.models}
    models = {}
    for label in cfg.models:
        if label not in chosen:
            raise ValueError(
                f"model {label!r} has no result in the {cfg.settings_from} evaluation summary to take settings from"
            )
        models[label] = unflatten_into(specs[label], chosen[label])
    block["models"] = models
    tuning = dict(block.get("tuning") or {})
    budget = tuning.get("budget")
    if isinstance(budget, Mapping):  # per-model budgets may name models the sweep leaves out (nothing is tuned anyway)
        tuning["budget"] = {k: v for k, v in budget.items() if k == "default" or k in models}
    block["tuning"] = tuning
    comparisons = dict(block.get("comparisons") or {})
    verdict = tuned.verdicts[0] if tuned.verdicts else None
    cf = (
        [verdict.cf_model]
        if verdict and verdict.cf_model in models
        else [m for m in comparisons.get("cf_models", []) if m in models][:1]
    )
    eng = (
        [verdict.engagement_model]
        if verdict and verdict.engagement_model in models
        else [m for m in comparisons.get("engagement_models", []) if m in models][:1]
    )
    block["comparisons"] = {**comparisons, "cf_models": cf, "engagement_models": eng}
    block["intervals"] = {**dict(block.get("intervals") or {}), "n_boot": cfg.n_boot}
    block["new_products"] = {**dict(block.get("new_products") or {}), "enabled": False}
    block["diagnostics"] = False
    return {"evaluate": block}


# ----------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------


class PointModel(Record):
    """One model at one point: precision@k with its interval and hits."""

    label: str
    ranker: str
    group: str
    k: int
    value: float | None
    low: float | None
    high: float | None
    hits: float


class PointVerdict(Record):
    """CF vs engagement at one k and one point."""

    k: int
    verdict: Verdict
    cf_model: str
    engagement_model: str
    discordant: int  # discordant hits the comparison rests on


class SweepPoint(Record):
    """One generator setting and what the evaluation concluded on its log."""

    axis: str
    category_loyalty: float
    name_signal: float
    retention: float | None
    measured_retention_pct: float
    rows: int
    evaluated_products: int
    reachable_pairs: int
    models: list[PointModel]
    random_expected: float | None
    leader: str | None
    leader_significant: bool
    runner_up: str | None
    verdicts: list[PointVerdict]
    overall: str


class SensitivitySummary(Record):
    """The sweep: how it was run and every point."""

    scale: float
    seed: int
    settings_from: str
    headline_k: int
    models: list[str]
    cf_model: str | None
    engagement_model: str | None
    points: list[SweepPoint]
    conditions: list[str]


def point_result(axis: str, behaviour: Behaviour, retention_pct: float, rows: int, s: EvaluationSummary) -> SweepPoint:
    """The typed record of one evaluated point."""
    k = s.protocol.headline_k
    test = s.split("test")
    leader = s.default_ranker
    return SweepPoint(
        axis=axis,
        category_loyalty=float(behaviour.category_loyalty),
        name_signal=float(behaviour.name_signal),
        retention=None if behaviour.retention is None else float(behaviour.retention),
        measured_retention_pct=float(num(retention_pct) or 0.0),
        rows=int(rows),
        evaluated_products=test.evaluated_products,
        reachable_pairs=test.reachable_pairs,
        models=[
            PointModel(
                label=m.label,
                ranker=m.ranker,
                group=m.group,
                k=k,
                value=m.at(k).value,
                low=m.at(k).low,
                high=m.at(k).high,
                hits=m.at(k).hits,
            )
            for m in s.models
        ],
        random_expected=s.reference("random_expected").at(k).value,
        leader=leader.label if leader else None,
        leader_significant=bool(leader and leader.significant),
        runner_up=leader.runner_up if leader else None,
        verdicts=[
            PointVerdict(
                k=v.k,
                verdict=v.verdict,
                cf_model=v.cf_model,
                engagement_model=v.engagement_model,
                discordant=v.discordant,
            )
            for v in s.verdicts
        ],
        overall=s.overall,
    )


# ----------------------------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------------------------


def point_in_tmp(
    shared: tuple[SweepConfig, Mapping[str, Any], Mapping[str, Any]], point: tuple[str, Mapping[str, Any]]
) -> SweepPoint:
    """One point of the grid, its log generated and prepared in a temporary directory removed afterwards."""
    cfg, point_cfg, feature_params = shared
    axis, settings = point
    with tempfile.TemporaryDirectory(prefix="recsys-sensitivity-") as tmp:
        return evaluate_point(axis, settings, cfg, point_cfg, feature_params, Path(tmp))


def evaluate_point(
    axis: str,
    settings: Mapping[str, Any],
    cfg: SweepConfig,
    params: Mapping[str, Any],
    feature_params: Mapping[str, Any],
    work: Path,
) -> SweepPoint:
    """Generate, prepare and evaluate one point (files in `work`, removed by the caller)."""
    behaviour = behaviour_from_params(settings)
    t0 = time.perf_counter()
    generated = generate_log(scale=cfg.scale, seed=cfg.seed, behaviour=behaviour)
    raw = work / "raw.csv"
    write_case_study_csv(generated.frame, raw)
    prepared = work / "interactions.parquet"
    prepare(raw, prepared, PRESETS["case_study"])
    interactions = load_prepared(prepared)
    result = run_evaluation(params, interactions=interactions, feature_params=feature_params, write=False)
    log.info("sensitivity point %s %s: %d rows in %.1f s", axis, behaviour, len(interactions), time.perf_counter() - t0)
    return point_result(axis, behaviour, generated.retention_pct, len(interactions), result.summary)


def run_sweep(
    params: Mapping[str, Any] | None = None,
    evaluate: Mapping[str, Any] | None = None,
    feature_params: Mapping[str, Any] | None = None,
    tuned: EvaluationSummary | None = None,
) -> SensitivitySummary:
    """Evaluate every point of the grid and state the conditions of each verdict."""
    block = dict((params if params is not None else config.load_params("sensitivity")).get("sensitivity") or {})
    cfg = SweepConfig.from_params(block)
    evaluate = evaluate if evaluate is not None else config.load_params("evaluate")
    feature_params = feature_params if feature_params is not None else config.load_params("features")
    tuned = tuned or read_summary(config.dataset_paths(cfg.settings_from).evaluation_summary)
    point_cfg = point_params(cfg, evaluate, tuned)
    # points are independent and seeded: the same results in any number of processes, in grid order; spawned,
    # not forked, because each point fits ALS (OpenMP) and the caller may have used OpenMP already
    points = pool_map(point_in_tmp, sweep_points(cfg), cfg.processes, (cfg, point_cfg, feature_params), start="spawn")
    comparisons = point_cfg["evaluate"]["comparisons"]
    summary = SensitivitySummary(
        scale=cfg.scale,
        seed=cfg.seed,
        settings_from=cfg.settings_from,
        headline_k=tuned.protocol.headline_k,
        models=list(cfg.models),
        cf_model=(comparisons.get("cf_models") or [None])[0],
        engagement_model=(comparisons.get("engagement_models") or [None])[0],
        points=points,
        conditions=[],
    )
    return summary.model_copy(update={"conditions": conditions(summary)})


# ----------------------------------------------------------------------------------------------
# tables and conditions
# ----------------------------------------------------------------------------------------------


def points_table(summary: SensitivitySummary) -> pd.DataFrame:
    """Long table: one row per (point, model) with the settings, precision@k, interval and hits."""
    rows = []
    for p in summary.points:
        for m in p.models:
            rows.append(
                {
                    "axis": p.axis,
                    "category_loyalty": p.category_loyalty,
                    "name_signal": p.name_signal,
                    "retention": p.retention,
                    "measured_retention_pct": p.measured_retention_pct,
                    "model": m.label,
                    "k": m.k,
                    "precision": m.value,
                    "low": m.low,
                    "high": m.high,
                    "hits": m.hits,
                    "leader": p.leader,
                    "leader_significant": p.leader_significant,
                }
            )
    return pd.DataFrame(rows)


def plot_tables(summary: SensitivitySummary) -> dict[str, pd.DataFrame]:
    """Wide tables for DVC plots: precision@k per model (columns) against the varied setting (x)."""
    table = points_table(summary)
    selections = {
        "loyalty_informative_names": (table["axis"] == "loyalty") & (table["name_signal"] == 1.0),
        "loyalty_shuffled_names": (table["axis"] == "loyalty") & (table["name_signal"] == 0.0),
        "retention": table["axis"] == "retention",
    }
    out = {}
    for name, mask in selections.items():
        x = PLOT_FILES[name]
        part = table[mask]
        wide = part.pivot_table(index=x, columns="model", values="precision", sort=True).reset_index()
        wide.columns.name = None
        out[name] = wide
    return out


def _where(points: Sequence[SweepPoint], key: str, hold: Sequence[bool]) -> str:
    """'at every setting', 'at no setting', 'only when <key> >= x', or the list of settings where `hold` is true."""
    values = [getattr(p, key) if key != "retention" else p.measured_retention_pct for p in points]
    on = [v for v, h in zip(values, hold, strict=True) if h]
    if not on:
        return "at no setting"
    if len(on) == len(values):
        return "at every setting"
    order = sorted(range(len(values)), key=lambda i: values[i])
    flags = [hold[i] for i in order]
    upper = all(flags[i] <= flags[i + 1] for i in range(len(flags) - 1))
    lower = all(flags[i] >= flags[i + 1] for i in range(len(flags) - 1))
    label = "retention" if key == "retention" else key.replace("_", " ")
    unit = "%" if key == "retention" else ""
    if upper:
        return f"only when {label} >= {min(on):.3g}{unit}"
    if lower:
        return f"only when {label} <= {max(on):.3g}{unit}"
    return "only at " + ", ".join(f"{v:.3g}{unit}" for v in sorted(on))


def conditions(summary: SensitivitySummary) -> list[str]:
    """Sentences stating, from the numbers, where each model leads and where each CF-vs-engagement verdict holds."""
    out: list[str] = []
    groups: list[tuple[str, str, list[SweepPoint]]] = []
    loyalty = [p for p in summary.points if p.axis == "loyalty"]
    for signal, label in ((1.0, "informative names"), (0.0, "shuffled names")):
        pts = sorted([p for p in loyalty if p.name_signal == signal], key=lambda p: p.category_loyalty)
        if pts:
            groups.append((f"with {label}", "category_loyalty", pts))
    retention = sorted([p for p in summary.points if p.axis == "retention"], key=lambda p: p.measured_retention_pct)
    if retention:
        groups.append(("across retention (default loyalty and names)", "retention", retention))
    k = summary.headline_k
    for where, key, pts in groups:
        leaders = sorted({p.leader for p in pts if p.leader})
        for model in leaders:
            sig = [p.leader == model and p.leader_significant for p in pts]
            led = [p.leader == model for p in pts]
            if any(sig):
                out.append(
                    f"{where.capitalize()}: {model} leads precision@{k} significantly (Holm) {_where(pts, key, sig)}"
                    f"; it has the highest point estimate {_where(pts, key, led)}."
                )
            else:
                out.append(
                    f"{where.capitalize()}: {model} has the highest precision@{k} point estimate "
                    f"{_where(pts, key, led)}, never by a significant margin over the runner-up."
                )
        for verdict in ("cf_better", "engagement_better", "no_detectable_difference", "inconclusive"):
            hold = [any(v.k == k and v.verdict == verdict for v in p.verdicts) for p in pts]
            if any(hold):
                hits = [
                    next((v.discordant for v in p.verdicts if v.k == k), 0) for p, h in zip(pts, hold, strict=True) if h
                ]
                span = (
                    f" ({min(hits)}"
                    + (f"-{max(hits)}" if max(hits) != min(hits) else "")
                    + " discordant hits behind the comparison)"
                )
                out.append(
                    f"{where.capitalize()}: CF ({summary.cf_model}) vs engagement ({summary.engagement_model}) "
                    f"at k={k} is '{VERDICT_TEXT.get(verdict, verdict)}' {_where(pts, key, hold)}{span}."
                )
    return out


def write_outputs(summary: SensitivitySummary, out_dir: Path) -> dict[str, Path]:
    """summary.json (typed, byte-stable), points.csv and the DVC plot tables under plots/."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"summary": out_dir / "summary.json", "points": out_dir / "points.csv"}
    write_record(summary, paths["summary"])
    points_table(summary).to_csv(paths["points"], index=False, float_format="%.6g")
    (out_dir / "plots").mkdir(exist_ok=True)
    for name, table in plot_tables(summary).items():
        paths[name] = out_dir / "plots" / f"{name}.csv"
        table.to_csv(paths[name], index=False, float_format="%.6g")
    return paths


def read_sensitivity(path: Path) -> SensitivitySummary:
    """Read a sweep summary (a clear error names the file and the command that writes it)."""
    return read_record(
        SensitivitySummary,
        path,
        "sensitivity summary {path} not found: run `recsys sensitivity` (or `dvc repro sensitivity`)",
    )


# ----------------------------------------------------------------------------------------------
# where real logs sit on the axes
# ----------------------------------------------------------------------------------------------

POSITION_KEYS: tuple[str, ...] = (
    "retention_pct",
    "loyalty_inferred",
    "loyalty_inferred_ci95_lo",
    "loyalty_inferred_ci95_hi",
    "loyalty_true",
    "loyalty_measured_users",
)


def log_positions(names: Sequence[str] | None = None) -> pd.DataFrame:
    """Each data set's retention and category loyalty from its explore metrics (reports/datasets/<name>/metrics).

    ``loyalty_inferred`` uses categories inferred from name tokens (any log); ``loyalty_true`` only exists for a
    generated log, whose true categories are known: the gap between the two on the synthetic log is the bias of the
    inference, which a real log's inferred figure carries too. Data sets without explore metrics are left out.
    """
    import json

    rows = []
    for name in names if names is not None else list(config.datasets()):
        path = config.dataset_paths(name).metrics_dir / "explore.json"
        if not path.is_file():
            continue
        metrics = json.loads(path.read_text(encoding="utf-8"))
        rows.append({"dataset": name, "source": metrics.get("source"), **{k: metrics.get(k) for k in POSITION_KEYS}})
    return pd.DataFrame(rows, columns=["dataset", "source", *POSITION_KEYS])
