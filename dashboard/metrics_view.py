"""The "why this works (or doesn't)" panel: the pipeline's metrics files as text, tables and inline SVG bars."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dashboard.render import esc
from dashboard.settings import METRICS_HINT, DashboardPaths
from recsys import config

MODEL_ORDER: tuple[str, ...] = (
    "oracle",
    "activity",
    "content",
    "recency",
    "als",
    "bpr",
    "bgnbd",
    "popularity",
    "random",
)
_VALUE_KEYS = {"mean", "value", "estimate", "point", "score"}
_LO_KEYS = {"ci_low", "ci_lo", "ci_lower", "low", "lo", "lower"}
_HI_KEYS = {"ci_high", "ci_hi", "ci_upper", "high", "hi", "upper"}
_CI_KEYS = {"ci", "ci95", "ci_95", "interval", "bootstrap_ci", "ci_95pct"}
_MODEL_KEYS = ("model", "ranker", "name")
_MODEL_CONTAINERS = {"models", "rankers", "by_model", "results"}
_IGNORED = {"n", "k", "seed", "count", "n_products", "n_users", "n_boot", "std", "se", "stderr"}
Numbers = Sequence[float] | np.ndarray | pd.Series  # what the bar charts take
_FACT_PATTERNS = (
    "one_time",
    "retention",
    "returning",
    "new_products",
    "single_interaction",
    "with_2_to_5",
    "more_than_5",
    "sparsity",
    "top_20pct",
    "share_last",
    "undated",
)


def read_metrics(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(document, None) when the JSON file is readable, else (None, friendly message naming the fix)."""
    if not path.is_file():
        return None, f"{config.relative(path)} not found: {METRICS_HINT}."
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{path.name} is unreadable ({exc}): {METRICS_HINT}."
    if not isinstance(doc, dict):
        return None, f"{path.name} is not a JSON object: {METRICS_HINT}."
    return doc, None


def _num(value: Any) -> float | None:
    """A finite-or-nan float for JSON numbers (bools excluded), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _split_suffix(key: str) -> tuple[str, str | None]:
    """('precision@10', 'lo') for 'precision@10_ci_low'; (key, None) when the key carries no stat suffix."""
    for suffixes, stat in ((_LO_KEYS, "lo"), (_HI_KEYS, "hi"), (_CI_KEYS, "ci")):
        for suffix in sorted(suffixes, key=len, reverse=True):
            if key.endswith("_" + suffix) and len(key) > len(suffix) + 1:
                return key[: -len(suffix) - 1], stat
    return key, None


def _walk_metrics(
    node: Any,
    model: str | None,
    path: tuple[str, ...],
    out: list[tuple[str, str, str, float | None]],
    in_models: bool = False,
) -> None:
    """Collect (model, metric, stat, value) leaves from any nesting of models, metrics and CI blocks."""
    if isinstance(node, list):
        for item in node:
            _walk_metrics(item, model, path, out, in_models)
        return
    if not isinstance(node, dict):
        return
    model = model or next((str(node[k]).lower() for k in _MODEL_KEYS if isinstance(node.get(k), str)), None)
    base = ".".join(path + ((node["metric"],) if isinstance(node.get("metric"), str) else ()))
    for key, value in node.items():
        k = str(key).lower()
        if model is None:
            if isinstance(value, dict) and (k in MODEL_ORDER or in_models):
                _walk_metrics(value, k, (), out)
            elif isinstance(value, (dict, list)):
                _walk_metrics(value, None, path, out, in_models=k in _MODEL_CONTAINERS)
            continue
        stem, suffix_stat = _split_suffix(k)
        pair = isinstance(value, list) and len(value) == 2 and all(_num(v) is not None for v in value)
        if pair and (k in _CI_KEYS or suffix_stat == "ci"):
            metric = base if k in _CI_KEYS else ".".join(path + (stem,))
            out += [(model, metric, "lo", _num(value[0])), (model, metric, "hi", _num(value[1]))]
        elif isinstance(value, dict):
            _walk_metrics(value, model, path if k in _CI_KEYS else path + (str(key),), out)
        elif _num(value) is not None and k not in _IGNORED:
            stat = "value" if k in _VALUE_KEYS else "lo" if k in _LO_KEYS else "hi" if k in _HI_KEYS else None
            if stat is not None and base:
                out.append((model, base, stat, _num(value)))
            elif stat is None and suffix_stat in ("lo", "hi"):
                out.append((model, ".".join(path + (stem,)), suffix_stat, _num(value)))
            elif stat is None:
                out.append((model, ".".join(path + (str(key),)), "value", _num(value)))


def headline_table(doc: Mapping[str, Any]) -> pd.DataFrame:
    """Per model and metric: value and CI bounds (nan when absent), from any reasonable evaluate.json layout."""
    rows: list[tuple[str, str, str, float | None]] = []
    doc = dict(doc)
    if isinstance(doc.get("models"), Mapping):
        # the evaluate stage's layout: headline = the main split's models and references only,
        # never the backtest, new-product or diagnostic sections that repeat the same keys
        doc = {"models": doc["models"], "references": doc.get("references") or {}}
    _walk_metrics(doc, None, (), rows)
    columns = ["model", "metric", "value", "ci_low", "ci_high"]
    if not rows:
        return pd.DataFrame({c: [] for c in columns})
    long = pd.DataFrame(rows, columns=["model", "metric", "stat", "x"])
    wide = long.pivot_table(index=["model", "metric"], columns="stat", values="x", aggfunc="first").reset_index()
    for stat in ("value", "lo", "hi"):
        if stat not in wide.columns:
            wide[stat] = np.nan
    wide = wide.rename(columns={"lo": "ci_low", "hi": "ci_high"})[columns]
    wide = wide[wide["value"].notna()]
    rank = {m: i for i, m in enumerate(MODEL_ORDER)}
    return (
        wide.assign(_o=wide["model"].map(rank).fillna(len(rank)))
        .sort_values(["metric", "_o", "model"])
        .drop(columns="_o")
        .reset_index(drop=True)
    )


def headline_metrics(table: pd.DataFrame, limit: int = 2) -> list[str]:
    """Metrics worth plotting: shared by most models, precision/hit/recall/ndcg first."""
    if table.empty:
        return []
    per = table.groupby("metric")["model"].nunique()
    priorities = ("precision", "hit", "recall", "ndcg", "map", "lift")

    def prio(m: str) -> int:
        return next((i for i, w in enumerate(priorities) if w in m.lower()), 9)

    ranked = sorted(per.index, key=lambda m: (prio(m), -per[m], m))
    return ranked[:limit]


def churn_facts(doc: Mapping[str, Any]) -> pd.DataFrame:
    """The high-churn facts of explore.json (fact, value), percentages flagged."""
    flat = pd.json_normalize(dict(doc), sep=".").iloc[0].to_dict() if doc else {}
    rows = [
        (str(k), float(v)) for k, v in flat.items() if _num(v) is not None and any(p in str(k) for p in _FACT_PATTERNS)
    ]
    frame = pd.DataFrame(rows, columns=["fact", "value"])
    frame["is_pct"] = frame["fact"].str.endswith("_pct")
    return frame


def svg_bars(
    labels: Sequence[str],
    values: Numbers,
    title: str,
    lo: Numbers | None = None,
    hi: Numbers | None = None,
    xmax: float | None = None,
    unit: str = "",
    highlight: Sequence[bool] | None = None,
    fmt: str = "{:.4g}",
) -> str:
    """A small horizontal bar chart with optional CI whiskers as an inline SVG string (no plotting library)."""
    vals = np.nan_to_num(np.asarray(values, dtype=np.float64))
    lo_a = np.asarray(lo if lo is not None else vals, dtype=np.float64)
    hi_a = np.asarray(hi if hi is not None else vals, dtype=np.float64)
    top = xmax if xmax is not None else float(np.nanmax(np.r_[vals, hi_a[np.isfinite(hi_a)], 1e-12]))
    left, width, bar, gap = 190, 260, 16, 6
    height = 22 + len(vals) * (bar + gap)

    def x(v: float) -> float:
        return left + width * max(0.0, min(float(v), top)) / top if top > 0 else left

    marks = [f"<text x='0' y='13' font-size='12' font-weight='bold'>{esc(title)}</text>"]
    for i, (label, v) in enumerate(zip(labels, vals, strict=True)):
        y = 22 + i * (bar + gap)
        color = "#2a9d8f" if highlight is not None and highlight[i] else "#8d99ae"
        marks.append(f"<text x='{left - 6}' y='{y + 12}' font-size='11' text-anchor='end'>{esc(label)}</text>")
        marks.append(f"<rect x='{left}' y='{y}' width='{x(v) - left:.1f}' height='{bar}' fill='{color}'/>")
        if np.isfinite(lo_a[i]) and np.isfinite(hi_a[i]) and (lo_a[i] != v or hi_a[i] != v):
            a_, b_, m = x(lo_a[i]), x(hi_a[i]), y + bar / 2
            marks.append(
                f"<path d='M{a_:.1f} {m}H{b_:.1f}M{a_:.1f} {m - 4}V{m + 4}M{b_:.1f} {m - 4}V{m + 4}' "
                "stroke='#222' fill='none'/>"
            )
        marks.append(
            f"<text x='{max(x(v), x(hi_a[i]) if np.isfinite(hi_a[i]) else 0) + 4:.1f}' y='{y + 12}' "
            f"font-size='10'>{fmt.format(v)}{esc(unit)}</text>"
        )
    return (
        "<div><svg class='recsys-plot' xmlns='http://www.w3.org/2000/svg' "
        f"width='{left + width + 70}' height='{height}' "
        f"font-family='sans-serif'>{''.join(marks)}</svg></div>"
    )


def plot_headline(table: pd.DataFrame, metrics: Sequence[str]) -> str:
    """One bar chart per metric: models with their reported CI whiskers (activity highlighted)."""
    charts = []
    for metric in metrics:
        block = table[table["metric"] == metric]
        charts.append(
            svg_bars(
                block["model"].tolist(),
                block["value"],
                metric,
                block["ci_low"],
                block["ci_high"],
                highlight=(block["model"] == "activity").tolist(),
            )
        )
    return "".join(charts)


def plot_facts(facts: pd.DataFrame) -> str:
    """Bar chart of the percentage facts on a 0-100 scale."""
    pct = facts[facts["is_pct"]]
    labels = pct["fact"].str.removesuffix("_pct").str.replace("_", " ").tolist()
    return svg_bars(
        labels,
        pct["value"],
        "the log is high-churn (%)",
        xmax=100.0,
        unit="%",
        fmt="{:.1f}",
        highlight=pct["fact"].str.contains("one_time|retention|new_products").tolist(),
    )


@dataclass(frozen=True)
class MetricsView:
    """What the 'why this works' panel shows: one HTML block (text, tables, inline SVG plots)."""

    html: str
    has_evaluation: bool
    has_exploration: bool


def metrics_view(paths: DashboardPaths) -> MetricsView:
    """Read the pipeline's metrics files and turn them into text and plots (friendly message when missing)."""
    left, right = [], []
    ev, ev_msg = read_metrics(paths.evaluate_json)
    table = headline_table(ev) if ev is not None else pd.DataFrame()
    metrics = headline_metrics(table)
    if ev is None:
        left.append(f"<div class='recsys-note'>Evaluation: {esc(ev_msg)}</div>")
    elif not metrics:
        left.append(
            f"<div class='recsys-note'>{esc(paths.evaluate_json.name)} has no per-model metrics this panel "
            'recognises (expected e.g. {"models": {"activity": {"precision@10": {"mean": 0.01, '
            '"ci": [0.008, 0.012]}}}}).</div>'
        )
    else:
        left += [
            plot_headline(table, metrics),
            headline_html(table[table["metric"].isin(metrics)], paths.evaluate_json),
        ]
    ex, ex_msg = read_metrics(paths.explore_json)
    facts = churn_facts(ex) if ex is not None else pd.DataFrame()
    if ex is None:
        right.append(f"<div class='recsys-note'>Exploration: {esc(ex_msg)}</div>")
    else:
        right += [plot_facts(facts) if facts["is_pct"].any() else "", facts_html(facts, paths.explore_json)]
    body = (
        f"<div style='display:flex;gap:24px;flex-wrap:wrap'><div style='flex:1;min-width:380px'>{''.join(left)}</div>"
        f"<div style='flex:1;min-width:380px'>{''.join(right)}</div></div>"
    )
    return MetricsView(body, bool(metrics), ex is not None)


def headline_html(table: pd.DataFrame, source: Path) -> str:
    """The headline evaluation numbers as a small table."""
    ci = np.where(
        table["ci_low"].notna(),
        "[" + table["ci_low"].map("{:.4g}".format) + ", " + table["ci_high"].map("{:.4g}".format) + "]",
        "",
    )
    rows = "".join(
        f"<tr><td>{esc(m)}</td><td>{esc(k)}</td><td class='num'>{v:.4g}</td><td>{esc(c)}</td></tr>"
        for m, k, v, c in zip(table["model"], table["metric"], table["value"], ci, strict=True)
    )
    return (
        f"<b>Evaluation</b> <span class='recsys-muted'>({esc(source.name)})</span>"
        "<table class='recsys-table'><tr><th>model</th><th>metric</th><th>value</th><th>CI (as reported)</th></tr>"
        f"{rows}</table>"
    )


def _fact_value(value: float, is_pct: bool) -> str:
    """A fact formatted for reading: 88.8%, 433,787 or 0.999994."""
    if is_pct:
        return f"{value:.1f}%"
    return f"{int(value):,}" if float(value).is_integer() else f"{value:.6g}"


def facts_html(facts: pd.DataFrame, source: Path) -> str:
    """The high-churn facts as a short list."""
    items = "".join(
        f"<li>{esc(f.removesuffix('_pct').replace('_', ' '))}: <b>{_fact_value(v, p)}</b></li>"
        for f, v, p in zip(facts["fact"], facts["value"], facts["is_pct"], strict=True)
    )
    return f"<b>High-churn facts</b> <span class='recsys-muted'>({esc(source.name)})</span><ul>{items}</ul>"
