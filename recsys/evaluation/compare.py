"""The report's family of comparisons (CF vs engagement at every k, default-ranker lead), verdicts and choices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.evaluation import report as text
from recsys.evaluation.intervals import percentile_interval
from recsys.evaluation.metrics import METRICS, nanmean_or_nan
from recsys.evaluation.results import (
    NON_DEPLOYABLE,
    ClaimRow,
    Comparison,
    Coverage,
    DefaultChoice,
    KVerdict,
    ModelResult,
    Reference,
    Selection,
    num,
)
from recsys.evaluation.settings import EvalConfig
from recsys.evaluation.significance import customer_differences, holm, minimum_detectable, sign_flip_test, verdict
from recsys.evaluation.tables import RANDOM_REF, SetResult, precision_records
from recsys.evaluation.tuning import SearchResult, TrialScore, best_trial


@dataclass(frozen=True)
class PlannedComparison:
    """A comparison of the family before testing: models, k and why the report makes it."""

    a: str
    b: str
    k: int
    purpose: tuple[str, ...]


def representative(labels: Sequence[str], searches: Mapping[str, SearchResult], available: Sequence[str]) -> str | None:
    """The group member whose chosen trial is best on validation, by the tuning rule (tuning.best_trial); a group
    with one evaluated member needs no validation: that member."""
    present = [m for m in labels if m in available]
    if len(present) == 1 and present[0] not in searches:
        return present[0]
    members = [m for m in present if m in searches]
    if not members:
        return None
    chosen: list[tuple[dict[str, Any], TrialScore]] = [({}, searches[m].trials[searches[m].chosen][1]) for m in members]
    return members[best_trial(chosen)]


def deployable_ranking(result: SetResult, k: int, rankers: Mapping[str, str]) -> list[str]:
    """Deployable models (not random, no reference) by test precision@k, best first (ties: listed order)."""
    j = result.ks.index(k)
    p = METRICS.index("precision")
    labels = [m for m in result.scored if rankers.get(m) not in NON_DEPLOYABLE]
    values = {m: float(nanmean_or_nan(result.scored[m].values[p, j])) for m in labels}
    return sorted(labels, key=lambda m: -values[m] if np.isfinite(values[m]) else np.inf)


def plan_family(
    cfg: EvalConfig, cf: str | None, eng: str | None, leader: str | None, runner: str | None
) -> list[PlannedComparison]:
    """The report's family: CF vs engagement at every k, plus the default-ranker comparison at the headline k."""
    plan: list[PlannedComparison] = []
    if cf is not None and eng is not None:
        plan += [PlannedComparison(cf, eng, k, ("verdict",)) for k in cfg.ks]
    if leader is not None and runner is not None:
        same = next((i for i, c in enumerate(plan) if c.k == cfg.headline_k and {c.a, c.b} == {leader, runner}), None)
        if same is None:
            plan.append(PlannedComparison(leader, runner, cfg.headline_k, ("default_ranker",)))
        else:
            c = plan[same]
            plan[same] = PlannedComparison(c.a, c.b, c.k, (*c.purpose, "default_ranker"))
    return plan


def run_family(plan: Sequence[PlannedComparison], result: SetResult, cfg: EvalConfig) -> list[Comparison]:
    """Test every planned comparison, Holm-adjust across the family, add power."""
    raw = []
    for c in plan:
        ha, hb = result.scored[c.a].hits.at(c.k), result.scored[c.b].hits.at(c.k)
        d = customer_differences(ha.customer, hb.customer)
        p, method = sign_flip_test(d, seed=cfg.seed)
        diff = result.boot(c.a, c.k, "precision") - result.boot(c.b, c.k, "precision")
        lo, hi = percentile_interval(diff[:, None], cfg.level)
        pj, kj = METRICS.index("precision"), result.ks.index(c.k)
        point = float(
            nanmean_or_nan(result.scored[c.a].values[pj, kj]) - nanmean_or_nan(result.scored[c.b].values[pj, kj])
        )
        raw.append((c, ha.count, hb.count, d, p, method, point, lo[0], hi[0]))
    adjusted = holm([r[4] for r in raw])
    m = max(len(raw), 1)
    out = []
    for (c, na, nb, d, p, method, point, lo, hi), p_holm in zip(raw, adjusted, strict=True):
        pw = minimum_detectable(d, cfg.alpha / m, c.k, result.n_with_truth, cfg.power)
        out.append(
            Comparison(
                a=c.a,
                b=c.b,
                k=c.k,
                purpose=list(c.purpose),
                hits_a=na,
                hits_b=nb,
                discordant=pw.discordant,
                discordant_customers=pw.discordant_customers,
                overdispersion=num(pw.overdispersion),
                statistic=int(d.sum()),
                difference=num(point),
                diff_low=num(lo),
                diff_high=num(hi),
                p_value=float(num(p) or 0.0),
                p_method=method,
                p_holm=float(num(p_holm) or 0.0),
                significant=bool(p_holm < cfg.alpha),
                mde_ratio=num(pw.ratio),
                mde_precision=num(pw.precision_difference),
                powered=bool(pw.ratio <= cfg.smallest_effect_ratio),
            )
        )
    return out


def verdicts_of(comparisons: Sequence[Comparison], cfg: EvalConfig) -> list[KVerdict]:
    """Per-k verdicts from the family's verdict comparisons."""
    out = []
    for c in comparisons:
        if "verdict" in c.purpose:
            v = verdict(c.statistic, c.p_holm, c.powered, cfg.alpha)
            out.append(
                KVerdict(
                    k=c.k,
                    verdict=v,
                    cf_model=c.a,
                    engagement_model=c.b,
                    discordant=c.discordant,
                    discordant_customers=c.discordant_customers,
                )
            )
    return out


def default_choice(
    result: SetResult,
    cfg: EvalConfig,
    selection: Selection,
    rankers: Mapping[str, str],
    comparisons: Sequence[Comparison],
    level: float,
) -> DefaultChoice:
    """The model chosen on validation, its test precision at the headline k, and the test comparison with the
    validation runner-up (confirmed when it beats it after Holm, reversed when the runner-up beats it)."""
    best = selection.products.label
    runner = selection.runner_up.label if selection.runner_up is not None else None
    leads = [k for k in result.ks if deployable_ranking(result, k, rankers)[:1] == [best]]
    comp = next((c for c in comparisons if "default_ranker" in c.purpose), None)
    rec = next(p for p in precision_records(result, best, level) if p.k == cfg.headline_k)
    decisive = comp is not None and comp.significant and comp.statistic != 0
    favours_best = comp is not None and (comp.a == best) == (comp.statistic > 0)
    return DefaultChoice(
        k=cfg.headline_k,
        label=best,
        ranker=rankers[best],
        value=rec.value,
        low=rec.low,
        high=rec.high,
        leads_at_k=leads,
        runner_up=runner,
        p_holm=None if comp is None else comp.p_holm,
        significant=bool(decisive and favours_best),
        reversed=bool(decisive and not favours_best),
    )


def coverage_records(result: SetResult, random_label: str | None, level: float) -> list[Coverage]:
    """Per k: does the random ranker's precision interval cover the exact random expectation?"""
    if random_label is None:
        return []
    expected = {p.k: p.value for p in precision_records(result, RANDOM_REF, level)}
    out = []
    for p in precision_records(result, random_label, level):
        e = expected[p.k]
        covers = e is not None and p.low is not None and p.high is not None and p.low <= e <= p.high
        out.append(Coverage(k=p.k, expected=e, low=p.low, high=p.high, covers=bool(covers)))
    return out


def case_study_rows(
    summary_models: Sequence[ModelResult], refs: Sequence[Reference], claims: Mapping[str, Any]
) -> list[ClaimRow]:
    """The original write-up's k=10 figures next to the measured ones."""
    by = {m.label: m for m in summary_models}
    rows = []
    fmt = text.fmt
    if "als_precision_at_10" in claims and "als" in by:
        rows.append(
            ClaimRow(
                claim="ALS precision@10",
                claimed=str(claims["als_precision_at_10"]),
                measured=fmt(by["als"].at(10).value),
            )
        )
    eng = [m for m in summary_models if m.group == "engagement"]
    if "activity_precision_at_10" in claims and eng:
        rows.append(
            ClaimRow(
                claim="engagement precision@10",
                claimed=str(claims["activity_precision_at_10"]),
                measured=", ".join(f"{m.label} {fmt(m.at(10).value)}" for m in eng),
            )
        )
    rnd = next((r for r in refs if r.label == RANDOM_REF), None)
    if "random_precision" in claims and rnd is not None:
        rows.append(
            ClaimRow(
                claim="random precision@10", claimed=str(claims["random_precision"]), measured=fmt(rnd.at(10).value)
            )
        )
    if "lift_over_random" in claims and eng and rnd is not None and rnd.at(10).value:
        lifts = ", ".join(f"{m.label} {fmt((m.at(10).value or 0.0) / (rnd.at(10).value or 1.0))}" for m in eng)
        rows.append(ClaimRow(claim="lift over random@10", claimed=str(claims["lift_over_random"]), measured=lifts))
    return rows
