"""Figures of the evaluation results (recsys.evaluation outputs); every function returns a matplotlib Figure.

Figures are built without pyplot's global state (``matplotlib.figure.Figure``), so notebooks display
them by returning them and tests can draw many without leaking windows. Pass ``ax`` to draw into an
existing axes instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from recsys.evaluation.campaigns import CampaignStudy
from recsys.evaluation.frame import SLICES
from recsys.evaluation.metrics import METRICS
from recsys.evaluation.results import EvaluationSummary

REFERENCE_STYLE: dict[str, dict[str, Any]] = {
    "random_expected": {"color": "0.45", "linestyle": "--"},
    "oracle": {"color": "0.1", "linestyle": ":"},
}


def _axes(ax: Axes | None, size: tuple[float, float] = (7.0, 4.2)) -> tuple[Figure, Axes]:
    """The given axes and its figure, or a new figure with one axes."""
    if ax is not None:
        fig = ax.get_figure(root=True)
        if not isinstance(fig, Figure):
            raise ValueError("ax must belong to a matplotlib Figure")
        return fig, ax
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.subplots()


def axis_unit(values: Sequence[float | None]) -> tuple[float, str]:
    """(scale, label suffix) that bring small values near 1, so the axis needs no offset text above it."""
    finite = [abs(float(v)) for v in values if v is not None and np.isfinite(v) and v != 0]
    if not finite:
        return 1.0, ""
    exponent = int(np.floor(np.log10(max(finite))))
    if -2 <= exponent <= 3:
        return 1.0, ""
    return 10.0**exponent, f" (× $10^{{{exponent}}}$)"


def _check_metric(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows of one metric, or a clear error naming the metrics the table has."""
    if metric not in set(table["metric"]):
        raise ValueError(f"metric {metric!r} not in the table; available: {sorted(set(table['metric']))}")
    return table[table["metric"] == metric]


def _models(table: pd.DataFrame, models: Sequence[str] | None) -> list[str]:
    """Models to draw: the given ones, else every model in first-seen order."""
    return list(models) if models is not None else list(dict.fromkeys(table["model"]))


def dodge_factors(ks: Sequence[float], n: int, share: float = 0.6) -> np.ndarray:
    """Multiplicative x offsets (log axis) that spread `n` series around each k inside `share` of the narrowest gap."""
    logs = np.log10(np.sort(np.asarray(ks, dtype=np.float64)))
    gap = float(np.min(np.diff(logs))) if len(logs) > 1 else 1.0
    step = share * gap / max(n, 1)
    return np.asarray(10.0 ** ((np.arange(n) - (n - 1) / 2) * step), dtype=np.float64)


def plot_metric_at_k(
    table: pd.DataFrame,
    metric: str = "precision",
    models: Sequence[str] | None = None,
    ax: Axes | None = None,
    log_y: bool = True,
) -> Figure:
    """A metric against k per model, each point with its 95% interval as a whisker; the models are dodged sideways
    around each k so no interval hides another; references (random's expectation, the oracle) as lines."""
    fig, ax = _axes(ax, (9.0, 4.6))
    rows = _check_metric(table, metric)
    names = _models(rows, models)
    series = [m for m in names if m not in REFERENCE_STYLE]
    ks = sorted(rows["k"].unique())
    factors = dodge_factors(ks, len(series))
    for i, model in enumerate(series):
        part = rows[rows["model"] == model].sort_values("k")
        if part.empty:
            continue
        y = part["value"].to_numpy(dtype=np.float64)
        lo = part["ci_low"].to_numpy(dtype=np.float64)
        hi = part["ci_high"].to_numpy(dtype=np.float64)
        lo, hi = np.where(np.isfinite(lo), lo, y), np.where(np.isfinite(hi), hi, y)
        ax.errorbar(
            part["k"].to_numpy(dtype=np.float64) * factors[i],
            y,
            yerr=np.vstack([y - lo, hi - y]).clip(min=0),
            fmt="o-",
            markersize=4,
            linewidth=0.8,
            elinewidth=1.0,
            capsize=2,
            color=f"C{i % 10}",
            label=model,
        )
    for model in (m for m in names if m in REFERENCE_STYLE):
        part = rows[rows["model"] == model].sort_values("k")
        if not part.empty:
            ax.plot(part["k"], part["value"], label=model, **REFERENCE_STYLE[model])
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    if log_y and (rows["value"] > 0).any():
        ax.set_yscale("symlog", linthresh=max(float(rows.loc[rows["value"] > 0, "value"].min()), 1e-6))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("k (audience size; the models are spread sideways around each k)")
    ax.set_ylabel(f"{metric}@k (macro over products)")
    ax.set_title(f"{metric}@k with 95% intervals")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return fig


def plot_lift(table: pd.DataFrame, models: Sequence[str] | None = None, ax: Axes | None = None) -> Figure:
    """Lift of precision over random targeting per model and k, with CI error bars; 1 = chance."""
    fig, ax = _axes(ax)
    rows = _check_metric(table, "lift")
    names = _models(rows, models)
    ks = sorted(rows["k"].unique())
    width = 0.8 / max(len(names), 1)
    for i, model in enumerate(names):
        part = rows[rows["model"] == model].set_index("k").reindex(ks)
        x = np.arange(len(ks)) + (i - (len(names) - 1) / 2) * width
        err = np.vstack([part["value"] - part["ci_low"], part["ci_high"] - part["value"]]).clip(min=0)
        ax.bar(x, part["value"], width, yerr=err, capsize=2, label=model)
    ax.axhline(1.0, color="0.3", linestyle="--", linewidth=1, label="random = 1")
    ax.set_xticks(np.arange(len(ks)), [f"k={k}" for k in ks])
    ax.set_ylabel("precision lift over random targeting")
    ax.set_title("Lift of precision over the exact random expectation (95% intervals)")
    ax.legend(fontsize="small", ncols=2)
    return fig


def plot_slices(
    slices: pd.DataFrame,
    k: int = 10,
    metric: str = "recall",
    models: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """A metric by customers' number of training interactions (0, 1, 2+) per model."""
    fig, ax = _axes(ax)
    rows = _check_metric(slices, metric)
    rows = rows[rows["k"] == k]
    names = _models(rows, models)
    width = 0.8 / max(len(names), 1)
    for i, model in enumerate(names):
        part = rows[rows["model"] == model].set_index("slice").reindex(list(SLICES))
        x = np.arange(len(SLICES)) + (i - (len(names) - 1) / 2) * width
        ax.bar(x, part["value"], width, label=model)
    ax.set_xticks(np.arange(len(SLICES)), [f"{s} fit rows" for s in SLICES])
    ax.set_ylabel(f"{metric}@{k} within the slice")
    ax.set_title(f"{metric}@{k} by customers' training history")
    ax.legend(fontsize="small", ncols=2)
    return fig


def plot_slice_shares(shares: Mapping[str, Mapping[str, float | None]] | None, ax: Axes | None = None) -> Figure:
    """Shares of test rows, customers and relevant pairs by customers' fit rows (EvaluationSummary.slice_shares)."""
    fig, ax = _axes(ax, (6.0, 3.6))
    if not shares:
        raise ValueError("no slice shares in the summary (run the evaluation with diagnostics: true)")
    keys = list(shares)
    width = 0.8 / len(keys)
    for i, key in enumerate(keys):
        vals = np.array([shares[key].get(s) for s in SLICES], dtype=np.float64)  # None -> nan
        x = np.arange(len(SLICES)) + (i - (len(keys) - 1) / 2) * width
        ax.bar(x, vals, width, label=key.replace("_", " "))
    ax.set_xticks(np.arange(len(SLICES)), [f"{s} fit rows" for s in SLICES])
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of the test period")
    ax.set_title("Who engages in the test period?")
    ax.legend(fontsize="small")
    return fig


def plot_precision_intervals(summary: EvaluationSummary, k: int, ax: Axes | None = None) -> Figure:
    """precision@k of every model with its interval and hit count; the exact random expectation as a dashed line."""
    fig, ax = _axes(ax, (7.0, 0.45 * (len(summary.models) + 2) + 1.2))
    models = sorted(summary.models, key=lambda m: m.at(k).value or 0.0)
    y = np.arange(len(models))
    for i, m in enumerate(models):
        p = m.at(k)
        value, low, high = (np.nan if v is None else v for v in (p.value, p.low, p.high))
        ax.errorbar(
            value, i, xerr=[[max(value - low, 0.0)], [max(high - value, 0.0)]], fmt="o", capsize=3, color=f"C{i % 10}"
        )
        ax.annotate(
            f"{p.hits:g} hits", (high, i), xytext=(4, 0), textcoords="offset points", va="center", fontsize="small"
        )
    expected = summary.reference("random_expected").at(k).value
    if expected is not None:
        ax.axvline(expected, **REFERENCE_STYLE["random_expected"], label="random (exact expectation)")
    ax.set_yticks(y, [m.label for m in models])
    linthresh = max(expected or 1e-6, 1e-7)
    ax.set_xscale("symlog", linthresh=linthresh)
    highs = [float(h) for h in (m.at(k).high for m in models) if h]
    top = max([*highs, linthresh * 10])
    decades = list(range(int(np.ceil(np.log10(linthresh))), int(np.ceil(np.log10(top))) + 1))  # none in the linear part
    ax.set_xticks([0.0] + [10.0**d for d in decades], ["0"] + [f"$10^{{{d}}}$" for d in decades])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(0.0, top * 4)  # room for the hit counts right of the intervals
    ax.set_xlabel(f"precision@{k} (test; linear below the random expectation, logarithmic above)")
    ax.set_title(f"precision@{k} with {summary.protocol.level:.0%} intervals (quasi-Poisson, two-way)")
    ax.legend(fontsize="small", loc="upper left")
    return fig


def plot_validation(summary: EvaluationSummary, ax: Axes | None = None) -> Figure:
    """Every validation trial's objective per model; the chosen trial is the filled marker."""
    fig, ax = _axes(ax, (7.0, 0.45 * (len(summary.tuning) + 1) + 1.2))
    for i, t in enumerate(summary.tuning):
        vals = np.array([np.nan if tr.objective is None else tr.objective for tr in t.trials])
        chosen = np.array([tr.chosen for tr in t.trials])
        jitter = np.linspace(-0.15, 0.15, len(vals)) if len(vals) > 1 else np.zeros(1)
        ax.scatter(vals[~chosen], i + jitter[~chosen], facecolors="none", edgecolors=f"C{i % 10}", s=25)
        ax.scatter(vals[chosen], i + jitter[chosen], color=f"C{i % 10}", s=45, label=None)
        hits = next(tr.hits_objective_k for tr in t.trials if tr.chosen)
        ax.annotate(
            f"{hits} hits",
            (np.nanmax(vals) if np.isfinite(vals).any() else 0.0, i),
            xytext=(6, 0),
            textcoords="offset points",
            va="center",
            fontsize="small",
        )
    ax.set_yticks(np.arange(len(summary.tuning)), [t.model for t in summary.tuning])
    p = summary.protocol
    ax.set_xlabel(f"validation {p.objective_metric}@{p.objective_k}")
    ax.set_title("Tuning on the validation window (filled = chosen)")
    return fig


def plot_comparisons(summary: EvaluationSummary, purpose: str = "verdict", ax: Axes | None = None) -> Figure:
    """Precision difference A - B with its bootstrap interval for the family's comparisons of one purpose, per k."""
    fig, ax = _axes(ax)
    comps = [c for c in summary.comparisons if purpose in c.purpose]
    if not comps:
        raise ValueError(f"no comparison with purpose {purpose!r} in the summary")
    scale, unit = axis_unit([v for c in comps for v in (c.difference, c.diff_low, c.diff_high)])
    for i, c in enumerate(comps):
        d, lo, hi = (np.nan if v is None else v / scale for v in (c.difference, c.diff_low, c.diff_high))
        marker = "o" if c.significant else "s"
        ax.errorbar(
            i,
            d,
            yerr=[[max(d - lo, 0.0)], [max(hi - d, 0.0)]],
            fmt=marker,
            capsize=3,
            color="C0" if c.significant else "0.4",
        )
        ax.annotate(
            f"p_Holm={c.p_holm:.2g}\n{c.hits_a}/{c.hits_b} hits",
            (i, hi),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            fontsize="x-small",
        )
    ax.axhline(0.0, color="0.3", linewidth=1)
    ax.margins(y=0.18)  # room for the annotations above the intervals
    ax.set_xticks(np.arange(len(comps)), [f"k={c.k}" for c in comps])
    ax.set_ylabel(f"precision@k: {comps[0].a} - {comps[0].b}{unit}")
    ax.set_title(f"Paired differences ({purpose}), two-way bootstrap intervals")
    return fig


def plot_campaign_caps(study: CampaignStudy) -> Figure:
    """Per audience size: precision@n of every campaign set under each cap, with intervals; uncapped as a band."""
    fig = Figure(figsize=(5.2 * len(study.audiences), 3.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(study.audiences)))
    x = np.arange(len(study.caps), dtype=np.float64)
    width = 0.8 / max(len(study.campaign_sets), 1)
    for ax, n in zip(axes, study.audiences, strict=True):
        base = study.uncapped(n).at(n)
        if base.low is not None and base.high is not None:
            ax.axhspan(base.low, base.high, color="0.85", label=f"uncapped ({base.hits:g} hits)")
        if base.value is not None:
            ax.axhline(base.value, color="0.4", linewidth=1)
        for j, c in enumerate(study.campaign_sets):
            points = [study.find(c.name, cap, n).at(n) for cap in study.caps]
            values = np.array([np.nan if p.value is None else p.value for p in points])
            low = np.array([np.nan if p.low is None else p.low for p in points])
            high = np.array([np.nan if p.high is None else p.high for p in points])
            err = np.vstack([np.clip(values - low, 0, None), np.clip(high - values, 0, None)])
            offset = (j - (len(study.campaign_sets) - 1) / 2) * width
            ax.errorbar(x + offset, values, yerr=err, fmt="o", capsize=2, color=f"C{j}", label=c.name.replace("_", " "))
        ax.set_xticks(x, [f"cap {c}" for c in study.caps])
        ax.set_ylabel(f"precision@{n} (test; {study.level:.0%} interval)")
        ax.set_title(f"audiences of {n}", fontsize="medium")
        ax.legend(fontsize="small")
    fig.suptitle(f"{study.model}: per-campaign caps against uncapped (grey band)", fontsize="medium")
    return fig


__all__ = [
    "plot_campaign_caps",
    "plot_metric_at_k",
    "plot_lift",
    "plot_slices",
    "plot_slice_shares",
    "plot_precision_intervals",
    "plot_validation",
    "plot_comparisons",
    "METRICS",
]


def plot_sensitivity(
    points: pd.DataFrame, positions: pd.DataFrame | None = None, models: Sequence[str] | None = None
) -> Figure:
    """precision@k with its interval per model against each swept setting (three panels), real logs marked.

    points: ``recsys.evaluation.sensitivity.points_table``; positions: ``log_positions`` (vertical lines at each
    data set's inferred loyalty or retention).
    """
    fig = Figure(figsize=(13.0, 4.2), layout="constrained")
    axes = fig.subplots(1, 3, sharey=True)
    panels = [
        ("loyalty", 1.0, "category_loyalty", "loyalty_inferred", "category loyalty (informative names)"),
        ("loyalty", 0.0, "category_loyalty", "loyalty_inferred", "category loyalty (shuffled names)"),
        ("retention", None, "measured_retention_pct", "retention_pct", "retention (%)"),
    ]
    names = _models(points, models)
    floor = float(points["precision"][points["precision"] > 0].min()) / 3 if (points["precision"] > 0).any() else 1e-7
    for ax, (axis, signal, x, where, title) in zip(axes, panels, strict=True):
        part = points[(points["axis"] == axis) & ((points["name_signal"] == signal) if signal is not None else True)]
        span = float(part[x].max() - part[x].min()) if not part.empty else 1.0
        for j, model in enumerate(names):
            rows = part[part["model"] == model].sort_values(x)
            if rows.empty:
                continue
            xs = rows[x].to_numpy(dtype=float) + 0.008 * (span or 1.0) * (j - len(names) / 2)  # dodge the whiskers
            y = np.maximum(rows["precision"].to_numpy(dtype=float), floor)
            lo = np.maximum(rows["low"].to_numpy(dtype=float), floor)
            hi = np.maximum(rows["high"].to_numpy(dtype=float), floor)
            ax.errorbar(xs, y, yerr=[y - lo, hi - y], marker="o", capsize=3, label=model)
        if positions is not None and not positions.empty:
            for row in positions.itertuples(index=False):
                value = getattr(row, where)
                if value is not None and np.isfinite(value):
                    ax.axvline(float(value), color="0.5", linestyle=":", linewidth=1)
                    ax.annotate(
                        str(row.dataset),
                        (float(value), 1.0),
                        xycoords=("data", "axes fraction"),
                        rotation=90,
                        va="top",
                        ha="right",
                        fontsize=8,
                        color="0.35",
                    )
        ax.set_yscale("log")
        ax.set_xlabel(title)
        ax.set_title(title)
    axes[0].set_ylabel("precision@10 (log; 0 drawn at the floor)")
    axes[-1].legend(fontsize=8, loc="best")
    return fig
