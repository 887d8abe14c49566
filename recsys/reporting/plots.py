"""Figures of the evaluation tables (recsys.evaluation.run outputs); every function returns a matplotlib Figure.

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

from recsys.evaluation.frame import SLICES
from recsys.evaluation.metrics import METRICS

REFERENCE_STYLE: dict[str, dict[str, Any]] = {
    "random_expected": {"color": "0.45", "linestyle": "--"},
    "oracle": {"color": "0.1", "linestyle": ":"},
}


def _axes(ax: Axes | None, size: tuple[float, float] = (7.0, 4.2)) -> tuple[Figure, Axes]:
    """The given axes and its figure, or a new figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.subplots()


def _check_metric(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows of one metric, or a clear error naming the metrics the table has."""
    if metric not in set(table["metric"]):
        raise ValueError(f"metric {metric!r} not in the table; available: {sorted(set(table['metric']))}")
    return table[table["metric"] == metric]


def _models(table: pd.DataFrame, models: Sequence[str] | None) -> list[str]:
    """Models to draw: the given ones, else every model in first-seen order."""
    return list(models) if models is not None else list(dict.fromkeys(table["model"]))


def plot_metric_at_k(
    table: pd.DataFrame, metric: str = "precision", models: Sequence[str] | None = None, ax: Axes | None = None, log_y: bool = True
) -> Figure:
    """A metric against k per model with its 95% CI band; references dashed/dotted."""
    fig, ax = _axes(ax)
    rows = _check_metric(table, metric)
    for model in _models(rows, models):
        part = rows[rows["model"] == model].sort_values("k")
        if part.empty:
            continue
        style = REFERENCE_STYLE.get(model, {"marker": "o"})
        line = ax.plot(part["k"], part["value"], label=model, **style)[0]
        ax.fill_between(part["k"], part["ci_low"], part["ci_high"], color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xscale("log")
    ks = sorted(rows["k"].unique())
    ax.set_xticks(ks, [str(k) for k in ks])
    if log_y and (rows["value"] > 0).any():
        ax.set_yscale("symlog", linthresh=max(float(rows.loc[rows["value"] > 0, "value"].min()), 1e-6))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("k (audience size)")
    ax.set_ylabel(f"{metric}@k (macro over products)")
    ax.set_title(f"{metric}@k with 95% bootstrap CIs")
    ax.legend(fontsize="small", ncols=2)
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
    ax.set_title("Lift over random with 95% bootstrap CIs")
    ax.legend(fontsize="small", ncols=2)
    return fig


def plot_backtest(
    table: pd.DataFrame, metric: str = "precision", k: int = 10, models: Sequence[str] | None = None, ax: Axes | None = None
) -> Figure:
    """A metric at one k for each backtest cutoff (grouped bars with CI error bars; the oracle only if asked)."""
    fig, ax = _axes(ax)
    rows = _check_metric(table, metric)
    rows = rows[rows["k"] == k]
    if rows.empty:
        raise ValueError(f"no rows for k={k} in the backtest table")
    cutoffs = sorted(rows["cutoff_quantile"].unique())
    names = _models(rows, models) if models is not None else [m for m in _models(rows, None) if m != "oracle"]
    width = 0.8 / max(len(names), 1)
    for i, model in enumerate(names):
        part = rows[rows["model"] == model].set_index("cutoff_quantile").reindex(cutoffs)
        x = np.arange(len(cutoffs)) + (i - (len(names) - 1) / 2) * width
        err = np.vstack([part["value"] - part["ci_low"], part["ci_high"] - part["value"]]).clip(min=0)
        color = {"color": REFERENCE_STYLE[model]["color"]} if model in REFERENCE_STYLE else {}
        ax.bar(x, part["value"], width, yerr=err, capsize=2, label=model, **color)
    ax.set_xticks(np.arange(len(cutoffs)), [f"q={q:g}" for q in cutoffs])
    ax.set_ylabel(f"{metric}@{k}")
    ax.set_title(f"Rolling-origin backtest: {metric}@{k} per cutoff")
    ax.legend(fontsize="small", ncols=2)
    return fig


def plot_slices(
    slices: pd.DataFrame, k: int = 10, metric: str = "recall", models: Sequence[str] | None = None, ax: Axes | None = None
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
        lo = part["ci_low"].fillna(part["value"])
        hi = part["ci_high"].fillna(part["value"])
        err = np.vstack([part["value"] - lo, hi - part["value"]]).clip(min=0)
        ax.bar(x, part["value"], width, yerr=err, capsize=2, label=model)
    ax.set_xticks(np.arange(len(SLICES)), [f"{s} training interactions" for s in SLICES])
    ax.set_ylabel(f"{metric}@{k} within the slice")
    ax.set_title(f"{metric}@{k} by customers' training history")
    ax.legend(fontsize="small", ncols=2)
    return fig


def plot_slice_shares(diagnostics: Mapping[str, Any], ax: Axes | None = None) -> Figure:
    """Share of test rows, test customers and relevant pairs by customers' training interactions."""
    fig, ax = _axes(ax, (6.0, 3.6))
    keys = [k for k in diagnostics if k.startswith("share_")]
    if not keys:
        raise ValueError("diagnostics hold no share_* entries (run the evaluation with diagnostics: true)")
    width = 0.8 / len(keys)
    for i, key in enumerate(keys):
        vals = [diagnostics[key].get(s, np.nan) for s in SLICES]
        x = np.arange(len(SLICES)) + (i - (len(keys) - 1) / 2) * width
        label = key.removeprefix("share_").removesuffix("_by_training_rows").replace("_", " ")
        ax.bar(x, vals, width, label=label)
    ax.set_xticks(np.arange(len(SLICES)), [f"{s} training interactions" for s in SLICES])
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of the test period")
    ax.set_title("Who engages in the test period?")
    ax.legend(fontsize="small")
    return fig


__all__ = ["plot_metric_at_k", "plot_lift", "plot_backtest", "plot_slices", "plot_slice_shares", "METRICS"]
