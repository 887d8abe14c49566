"""Tables with bootstrap CIs, the flat metrics dict, and the generated plain-language conclusion."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from recsys.evaluation.frame import SLICES
from recsys.evaluation.metrics import METRICS, bootstrap_means, nanmean_or_nan, percentile_ci
from recsys.evaluation.scoring import Segment

RANDOM_REF = "random_expected"
ORACLE_REF = "oracle"
REFERENCES: tuple[str, ...] = (RANDOM_REF, ORACLE_REF)
TABLE_COLUMNS: tuple[str, ...] = ("model", "k", "metric", "value", "ci_low", "ci_high", "n_products")


def segment_table(seg: Segment, n_boot: int, seed: int, level: float = 0.95) -> pd.DataFrame:
    """Long table (model, k, metric, value, ci_low, ci_high, n_products) with paired bootstrap CIs.

    Adds metric `lift` (precision of a model / expected precision of random targeting, the ratio of
    the two means in every resample) for every model that is not a reference.
    """
    vals = seg.stacked()  # (L, M, K, P)
    n_labels, n_metrics, n_ks, n_products = vals.shape
    flat = vals.reshape(n_labels * n_metrics * n_ks, n_products).T
    point = nanmean_or_nan(flat, axis=0)
    count = np.isfinite(flat).sum(axis=0)
    boot = bootstrap_means(flat, n_boot, seed)
    lo, hi = percentile_ci(boot, level)
    grid = pd.MultiIndex.from_product([seg.labels, METRICS, seg.ks], names=["model", "metric", "k"]).to_frame(index=False)
    table = grid.assign(value=point, ci_low=lo, ci_high=hi, n_products=count)
    rows = [table]
    if RANDOM_REF in seg.labels:
        shape = (n_boot, n_labels, n_metrics, n_ks)
        b = boot.reshape(shape)
        p = point.reshape(n_labels, n_metrics, n_ks)
        r = seg.labels.index(RANDOM_REF)
        prec = METRICS.index("precision")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio_boot = b[:, :, prec, :] / b[:, r : r + 1, prec, :]
            ratio = p[:, prec, :] / p[r : r + 1, prec, :]
        llo, lhi = percentile_ci(ratio_boot.reshape(n_boot, -1), level)
        lift = pd.MultiIndex.from_product([seg.labels, seg.ks], names=["model", "k"]).to_frame(index=False)
        n_prec = count.reshape(n_labels, n_metrics, n_ks)[:, prec, :].ravel()
        lift = lift.assign(metric="lift", value=ratio.ravel(), ci_low=llo, ci_high=lhi, n_products=n_prec)
        rows.append(lift[~lift["model"].isin(REFERENCES)])
    out = pd.concat(rows, ignore_index=True)[list(TABLE_COLUMNS)]
    out["k"] = out["k"].astype(np.int64)
    out["n_products"] = out["n_products"].astype(np.int64)
    return out


def paired_difference(
    seg: Segment, a: str, b: str, metric: str, k: int, n_boot: int, seed: int, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean(a) - mean(b) of a metric at k with a paired bootstrap CI over products."""
    i, j = seg.labels.index(a), seg.labels.index(b)
    mi, ki = METRICS.index(metric), seg.ks.index(k)
    stacked = seg.stacked()
    cols = np.stack([stacked[i, mi, ki], stacked[j, mi, ki]], axis=1)
    boot = bootstrap_means(cols, n_boot, seed)
    diff = boot[:, 0] - boot[:, 1]
    lo, hi = percentile_ci(diff[:, None], level)
    point = nanmean_or_nan(cols, axis=0)
    return float(point[0] - point[1]), float(lo[0]), float(hi[0])


def slice_table(seg: Segment, n_boot: int, seed: int, level: float = 0.95) -> pd.DataFrame:
    """Long table (slice, model, k, metric, value, ci_low, ci_high, n_products) of recall and hit share by slice."""
    parts = []
    for label, rec in seg.slice_recall.items():
        n_s, n_k, n_p = rec.shape
        flat = rec.reshape(n_s * n_k, n_p).T
        boot = bootstrap_means(flat, n_boot, seed)
        lo, hi = percentile_ci(boot, level)
        grid = pd.MultiIndex.from_product([SLICES, seg.ks], names=["slice", "k"]).to_frame(index=False)
        mean, n_valid = nanmean_or_nan(flat, axis=0), np.isfinite(flat).sum(axis=0)
        parts.append(grid.assign(model=label, metric="recall", value=mean, ci_low=lo, ci_high=hi, n_products=n_valid))
        totals = seg.slice_hits[label]
        with np.errstate(divide="ignore", invalid="ignore"):
            share = totals / totals.sum(axis=0, keepdims=True)
        parts.append(grid.assign(model=label, metric="hit_share", value=share.ravel(), ci_low=np.nan, ci_high=np.nan, n_products=n_p))
    if not parts:
        return pd.DataFrame(columns=["slice", *TABLE_COLUMNS])
    out = pd.concat(parts, ignore_index=True)
    return out[["slice", *TABLE_COLUMNS]]


def flat_metrics(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """{model: {'precision@10': v, 'precision@10_ci_low': lo, ...}} from a long table (DVC-metrics friendly)."""
    out: dict[str, dict[str, float]] = {}
    for row in table.itertuples(index=False):
        d = out.setdefault(str(row.model), {})
        key = f"{row.metric}@{int(row.k)}"
        d[key] = _num(row.value)
        d[f"{key}_ci_low"] = _num(row.ci_low)
        d[f"{key}_ci_high"] = _num(row.ci_high)
    return out


def _num(x: Any) -> float | None:
    """A JSON-safe float (None for NaN/inf), rounded to 6 significant digits."""
    x = float(x)
    return None if not np.isfinite(x) else float(f"{x:.6g}")


# ----------------------------------------------------------------------------------------------
# conclusion
# ----------------------------------------------------------------------------------------------


def _get(table: pd.DataFrame, model: str, metric: str, k: int) -> pd.Series | None:
    """The row of one (model, metric, k), or None."""
    hit = table[(table["model"] == model) & (table["metric"] == metric) & (table["k"] == k)]
    return None if hit.empty else hit.iloc[0]


def _fmt(x: float) -> str:
    """A metric value for prose: 4 significant digits, NaN as 'n/a'."""
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.4g}"


def _ci(row: pd.Series) -> str:
    """'v [lo, hi]' for a table row."""
    return f"{_fmt(row['value'])} [95% CI {_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"


BETTER = "better than random"
HIT_COUNT_ONLY = "above random by hit count only (too few hits to be robust across products: the lift CI includes 1)"


def hit_count(table: pd.DataFrame, model: str, k: int) -> float | None:
    """Total hits of a model in the top k over all products (expected hits for random_expected)."""
    row = _get(table, model, "precision", k)
    if row is None or not np.isfinite(row["value"]):
        return None
    return float(row["value"] * k * row["n_products"])


def random_hit_test(hits: float, expected: float) -> tuple[float, float]:
    """(P[X >= hits], P[X <= hits]) for X ~ Poisson(expected): hits of random targeting are rare and independent."""
    from scipy.stats import poisson

    h = int(round(hits))
    return float(poisson.sf(h - 1, expected)), float(poisson.cdf(h, expected))


def lift_verdict(table: pd.DataFrame, model: str, k: int, alpha: float = 0.025) -> str:
    """'better than random' / 'worse than random' only when the lift CI and the hit-count test agree.

    The percentile bootstrap collapses to [0, 0] for a model with no hit, which alone would call a
    model 'worse' than a random rule that expects 0.1 hits; the Poisson test of the hit count against
    random targeting's expected count guards both directions.
    """
    row = _get(table, model, "lift", k)
    hits, expected = hit_count(table, model, k), hit_count(table, RANDOM_REF, k)
    if row is None or hits is None or expected is None or not np.isfinite(row["ci_low"]):
        return "undetermined"
    p_more, p_less = random_hit_test(hits, expected)
    if row["ci_low"] > 1.0 and p_more < alpha:
        return BETTER
    if row["ci_high"] < 1.0 and p_less < alpha:
        return "worse than random"
    if p_more < alpha:
        return HIT_COUNT_ONLY
    return "indistinguishable from random"


def _short(verdict: str) -> str:
    """A verdict without its parenthesised explanation."""
    return verdict.split(" (")[0]


def _hits_text(table: pd.DataFrame, model: str, k: int) -> str:
    """'H hits vs E expected at random (p = ...)' for prose."""
    hits, expected = hit_count(table, model, k), hit_count(table, RANDOM_REF, k)
    if hits is None or expected is None:
        return ""
    p_more, _ = random_hit_test(hits, expected)
    return f"{hits:.0f} hits in the top {k} of all products vs {expected:.3g} expected at random (Poisson P[>=] = {p_more:.2g})"


def models_of(table: pd.DataFrame) -> list[str]:
    """Model labels of a table that are not references, in first-seen order."""
    return [m for m in dict.fromkeys(table["model"]) if m not in REFERENCES]


def ranking_at(table: pd.DataFrame, metric: str, k: int) -> list[tuple[str, pd.Series]]:
    """Models (no references) sorted by a metric at k, best first."""
    rows = [(m, _get(table, m, metric, k)) for m in models_of(table)]
    rows = [(m, r) for m, r in rows if r is not None and np.isfinite(r["value"])]
    return sorted(rows, key=lambda mr: -mr[1]["value"])


def conclusion_text(
    main: pd.DataFrame,
    summary: Mapping[str, Any],
    differences: Mapping[str, tuple[float, float, float]],
    ks: Sequence[int],
    headline_k: int,
    cf_model: str,
    engagement_models: Sequence[str],
    new_products: pd.DataFrame | None = None,
    backtest: pd.DataFrame | None = None,
    shares: Mapping[str, Mapping[str, float]] | None = None,
    slices: pd.DataFrame | None = None,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """Plain-language conclusion generated from the numbers (no hand-written result)."""
    sp = summary["split"]
    lines = [
        f"Temporal split at the {sp['quantile']:.0%} date quantile ({sp['cutoff']}): {sp['train_rows']:,} training rows, "
        f"{sp['test_rows']:,} test rows over {sp['test_days']:.1f} days. {sp['test_users_unseen_share']:.1%} of test customers "
        f"and {sp['test_products_unseen_share']:.1%} of test products never appear in training.",
        f"Evaluated {summary['products']['evaluated']:,} products present in both periods (all of them, no sampling; "
        f"{summary['products']['evaluated_with_truth']:,} with relevant customers) and {summary['products']['new']:,} new products "
        "served by each ranker's cold-start (global) order.",
    ]
    if shares:
        s = shares["test_rows"]
        lines.append(
            f"Test interactions by customers with 0 / 1 / 2+ training interactions: {s['0']:.1%} / {s['1']:.1%} / {s['2+']:.1%}; "
            f"the first group cannot be reached by any ranker that only targets known customers."
        )
    lines.append("")
    for k in ks:
        ranked = ranking_at(main, "precision", k)
        if not ranked:
            continue
        (best, brow), rest = ranked[0], ranked[1:]
        tied = [m for m, r in ranked if r["value"] == brow["value"]]
        if len(tied) > 1:
            names, _ = _names(tied)
            text = f"precision@{k}: {names} tie at {_ci(brow)}"
        else:
            text = f"precision@{k}: {best} leads with {_ci(brow)}"
        if rest and len(tied) == 1:
            second, srow = rest[0]
            text += f", ahead of {second} ({_ci(srow)})"
            key = f"{best}-{second}@{k}"
            if key in differences:
                d, lo, hi = differences[key]
                sig = "a clear margin" if lo > 0 else "not a significant margin"
                text += f"; difference {_fmt(d)} [95% CI {_fmt(lo)}, {_fmt(hi)}], {sig}"
        rnd, orc = _get(main, RANDOM_REF, "precision", k), _get(main, ORACLE_REF, "precision", k)
        if rnd is not None and orc is not None:
            text += f". Random targeting expects {_fmt(rnd['value'])}; the oracle ceiling is {_fmt(orc['value'])}."
        lines.append(text)
    lines.append("")
    k = headline_k
    cf_lift = _get(main, cf_model, "lift", k)
    cf_prec = _get(main, cf_model, "precision", k)
    if cf_lift is not None and cf_prec is not None:
        lines.append(
            f"At k={k}, {cf_model} reaches precision {_ci(cf_prec)}, a lift over random targeting of {_ci(cf_lift)}; "
            f"{_hits_text(main, cf_model, k)}: {lift_verdict(main, cf_model, k)}."
        )
    by_k = []
    for m in [cf_model, *engagement_models]:
        if _get(main, m, "lift", k) is not None:
            by_k.append(f"{m}: " + ", ".join(f"k={kk} {_short(lift_verdict(main, m, kk))}" for kk in ks))
    if by_k:
        lines.append("Against random targeting at every k — " + "; ".join(by_k) + ".")
    for m in engagement_models:
        lift, prec = _get(main, m, "lift", k), _get(main, m, "precision", k)
        if lift is not None and prec is not None:
            lines.append(f"{m}: precision {_ci(prec)}, lift {_ci(lift)}; {_hits_text(main, m, k)}: {lift_verdict(main, m, k)}.")
    for m in engagement_models:
        parts = []
        for kk in ks:
            if f"{m}-{cf_model}@{kk}" in differences:
                d, lo, hi = differences[f"{m}-{cf_model}@{kk}"]
                sign = "higher" if lo > 0 else ("lower" if hi < 0 else "n.s.")
                parts.append(f"k={kk} {_fmt(d)} [{_fmt(lo)}, {_fmt(hi)}] {sign}")
        if parts:
            lines.append(f"Precision of {m} minus {cf_model} (paired bootstrap 95% CI): " + "; ".join(parts))
    orc = _get(main, ORACLE_REF, "precision", k)
    ranked = ranking_at(main, "precision", k)
    if orc is not None and ranked and orc["value"] > 0:
        best, brow = ranked[0]
        lines.append(
            f"The best model ({best}) attains {brow['value'] / orc['value']:.1%} of the oracle ceiling at k={k}; "
            f"the ceiling itself is {_fmt(orc['value'])} because most relevant customers are not in training."
        )
    if slices is not None and not slices.empty:
        for m in [cf_model, *engagement_models[:1]]:
            parts = []
            for s in SLICES:
                r = slices[(slices["model"] == m) & (slices["slice"] == s) & (slices["metric"] == "recall") & (slices["k"] == k)]
                if not r.empty:
                    parts.append(f"{s}: {_fmt(r.iloc[0]['value'])}")
            if parts:
                lines.append(f"{m} recall@{k} by customers' training interactions ({', '.join(parts)}).")
    if new_products is not None and not new_products.empty:
        ranked_new = ranking_at(new_products, "precision", k)
        if ranked_new:
            best, brow = ranked_new[0]
            rnd = _get(new_products, RANDOM_REF, "precision", k)
            tail = f" (random expects {_fmt(rnd['value'])})" if rnd is not None else ""
            lines.append(f"New products (cold start, global order): best precision@{k} is {best} with {_ci(brow)}{tail}.")
    if backtest is not None and not backtest.empty:
        lines.append("")
        for q, part in backtest.groupby("cutoff_quantile", sort=True):
            ranked_q = ranking_at(part, "precision", k)
            if not ranked_q:
                continue
            best, brow = ranked_q[0]
            cf_q = _get(part, cf_model, "lift", k)
            cf_txt = f"; {cf_model} lift {_ci(cf_q)} ({_short(lift_verdict(part, cf_model, k))})" if cf_q is not None else ""
            lines.append(f"Backtest cutoff q={q:g}: best precision@{k} {best} {_ci(brow)}{cf_txt}.")
    lines.append("")
    lines.append(verdict_text(main, differences, cf_model, engagement_models, k, backtest))
    if claims:
        lines.append(claims_text(main, cf_model, engagement_models, claims))
    return "\n".join(lines).strip() + "\n"


def _names(models: Sequence[str]) -> tuple[str, str]:
    """('a and b', verb 'are') or ('a', 'is') for prose."""
    text = " and ".join(models) if len(models) <= 2 else ", ".join(models[:-1]) + " and " + models[-1]
    return text, ("are" if len(models) > 1 else "is")


def verdict_text(
    main: pd.DataFrame,
    differences: Mapping[str, tuple[float, float, float]],
    cf_model: str,
    engagement_models: Sequence[str],
    k: int,
    backtest: pd.DataFrame | None,
) -> str:
    """Verdict on 'CF cannot find the engaging customers; engagement ranking beats chance', from lifts and paired differences."""
    cf = lift_verdict(main, cf_model, k)
    eng = {m: lift_verdict(main, m, k) for m in engagement_models if _get(main, m, "lift", k) is not None}
    eng_ok = [m for m, v in eng.items() if v == BETTER]
    beats_cf = [m for m in eng_ok if f"{m}-{cf_model}@{k}" in differences and differences[f"{m}-{cf_model}@{k}"][1] > 0]
    cf_row = _get(main, cf_model, "lift", k)
    consistent = ""
    if backtest is not None and not backtest.empty:
        verdicts = [_short(lift_verdict(part, cf_model, k)) for _, part in backtest.groupby("cutoff_quantile", sort=True)]
        consistent = f" Across the {len(verdicts)} backtest cutoffs {cf_model} was: {', '.join(verdicts)}."
    if cf_row is None:
        return f"Verdict at k={k}: undetermined — {cf_model} was not evaluated." + consistent
    if not eng_ok:
        detail = ", ".join(f"{m}: {v}" for m, v in eng.items()) or "no engagement model evaluated"
        return f"Verdict at k={k}: the claim is refuted — engagement ranking is not better than random ({detail})." + consistent
    names, verb = _names(beats_cf or eng_ok)
    if cf == BETTER:
        head = (
            f"Verdict at k={k}: the claim is refuted as stated — {cf_model} does better than chance, though "
            f"{names} {verb} significantly better, so engagement ranking is still the stronger targeting rule."
            if beats_cf
            else f"Verdict at k={k}: the claim is refuted — {cf_model} is better than random and not significantly below "
            "engagement ranking."
        )
    elif cf == HIT_COUNT_ONLY:
        head = (
            f"Verdict at k={k}: the claim largely holds — {cf_model}'s few hits exceed the random expectation but are not "
            f"robust across products (lift CI includes 1), while {names} {verb} better than random and significantly better than it."
            if beats_cf
            else f"Verdict at k={k}: the claim holds only weakly — {cf_model}'s few hits exceed the random expectation but are not "
            f"robust across products, {names} {verb} better than random, and the paired difference is not significant."
        )
    elif beats_cf:
        head = (
            f"Verdict at k={k}: the claim holds — {cf_model} is {cf}, while {names} {verb} "
            "better than random and significantly better than it (paired bootstrap)."
        )
    else:
        head = (
            f"Verdict at k={k}: the claim holds only weakly — {cf_model} is {cf} and {names} {verb} better than random, "
            f"but the paired difference to {cf_model} is not significant, so the data cannot rank them."
        )
    return head + consistent


def claims_text(main: pd.DataFrame, cf_model: str, engagement_models: Sequence[str], claims: Mapping[str, Any]) -> str:
    """The original write-up's figures next to the measured ones (k=10)."""
    parts = []
    cf = _get(main, cf_model, "precision", 10)
    if cf is not None and "als_precision_at_10" in claims:
        parts.append(f"ALS precision@10 claimed {claims['als_precision_at_10']}, measured {_fmt(cf['value'])}")
    eng = [r for r in (_get(main, m, "precision", 10) for m in engagement_models) if r is not None]
    if eng and "activity_precision_at_10" in claims:
        measured = ", ".join(_fmt(r["value"]) for r in eng)
        parts.append(f"activity precision@10 claimed {claims['activity_precision_at_10']}, measured {measured}")
    rnd = _get(main, RANDOM_REF, "precision", 10)
    if rnd is not None and "random_precision" in claims:
        parts.append(f"random precision claimed {claims['random_precision']}, expected here {_fmt(rnd['value'])}")
    lifts = [r for r in (_get(main, m, "lift", 10) for m in engagement_models) if r is not None]
    if lifts and "lift_over_random" in claims:
        parts.append(f"lift claimed {claims['lift_over_random']}, measured {', '.join(_fmt(r['value']) for r in lifts)}")
    return ("Original write-up vs this evaluation (k=10): " + "; ".join(parts) + ".") if parts else ""
