"""The "why this works (or doesn't)" panel: the typed evaluation summary and the explore facts, as HTML + inline SVG.

Evaluation: the served data set's ``recsys.evaluation.results.EvaluationSummary`` (``read_summary``; never prose,
never a guessed layout). Shown from its data fields: every model's precision@k at the headline k with its
interval, hits, lift over random and tuned settings, the references (random's exact expectation, the oracle
ceiling), the per-k verdicts and the overall sentence, the random-coverage check and the recommended default.
The chart is the lift over random (precision@k / random's exact expectation) on a log scale with interval
whiskers, so the oracle ceiling does not flatten the models. Wording comes from ``recsys.evaluation.report``.

Exploration: the high-churn facts of the data set's ``explore.json`` (percentages charted on a 0-100 scale).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from dashboard.render import esc
from dashboard.settings import EVALUATION_HINT, METRICS_HINT, DashboardPaths
from recsys import config
from recsys.cache.manifest import ServedFigures
from recsys.evaluation.report import chosen_text, fmt, interval, ks_text, verdict_phrase
from recsys.evaluation.results import EvaluationSummary, read_summary

Numbers = Sequence[float] | np.ndarray | pd.Series  # what the bar charts take
GROUP_COLORS: dict[str, str] = {
    "cf": "#e76f51",
    "engagement": "#2a9d8f",
    "content": "#264653",
    "baseline": "#8d99ae",
    "reference": "#b5a642",
}
MAX_DECADES = 8  # the lift axis spans at most this many powers of ten (smaller lifts sit at its left edge)
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


# ----------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------


def load_summary(path: Path) -> tuple[EvaluationSummary | None, str | None]:
    """(summary, None) when the typed evaluation summary reads, else (None, friendly message naming the fix)."""
    if not path.is_file():
        return None, f"{config.relative(path)} not found: {EVALUATION_HINT}."
    try:
        return read_summary(path), None
    except (OSError, UnicodeDecodeError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        return None, f"{config.relative(path)} is unreadable ({first}): {EVALUATION_HINT} again."


@dataclass(frozen=True)
class LiftRow:
    """One model (or the oracle) at the headline k: precision, interval, hits and the same as lift over random."""

    label: str
    group: str
    value: float | None
    low: float | None
    high: float | None
    hits: float
    lift: float | None
    lift_low: float | None
    lift_high: float | None


def _ratio(x: float | None, base: float) -> float | None:
    """x / base (None when x is missing)."""
    return None if x is None else x / base


def random_expectation(summary: EvaluationSummary, k: int) -> float | None:
    """Random's exact expected precision@k (None when missing or zero: no lift can be computed)."""
    value = summary.reference("random_expected").at(k).value
    return value if value is not None and value > 0 else None


def lift_rows(summary: EvaluationSummary, k: int) -> list[LiftRow]:
    """Every model (best precision@k first), then the oracle ceiling, with lifts over random's exact expectation."""
    base = random_expectation(summary, k)
    rows = []
    models = sorted(summary.models, key=lambda m: -(m.at(k).value or 0.0))
    entries = [(m.label, m.group, m.at(k)) for m in models] + [
        ("oracle", "reference", summary.reference("oracle").at(k))
    ]
    for label, group, p in entries:
        lifts = [None, None, None] if base is None else [_ratio(x, base) for x in (p.value, p.low, p.high)]
        rows.append(LiftRow(label, group, p.value, p.low, p.high, p.hits, *lifts))
    return rows


def log_domain(values: Sequence[float | None]) -> tuple[int, int]:
    """(lo, hi) powers of ten covering the positive values and 1 (random), at most MAX_DECADES apart."""
    positive = [v for v in values if v is not None and v > 0] + [1.0]
    lo = math.floor(math.log10(min(positive)))
    hi = math.ceil(math.log10(max(positive)))
    hi = max(hi, lo + 1)
    return max(lo, hi - MAX_DECADES), hi


def times(x: float) -> str:
    """A lift as text: '82.1×', '0.5×', '3.24e+04×'."""
    return f"{x:.3g}×"


def decade_label(d: int) -> str:
    """An axis label for 10**d: '0.01×', '1×', '10,000×'."""
    return f"{10.0**d:,.0f}×" if d >= 0 else f"{10.0**d:g}×"


def svg_lift(rows: Sequence[LiftRow], k: int, level: float, served: str | None = None) -> str:
    """Lift over random at k on a log axis: a dot per model, its interval as a whisker, random at 1×."""
    shown = [r for r in rows if r.lift is not None]
    lo, hi = log_domain([x for r in shown for x in (r.lift, r.lift_low, r.lift_high)])
    left, width, row_h, top = 150, 380, 20, 44

    def x(v: float | None) -> float:
        """Pixel of a lift; zero and values below the axis sit at its left edge."""
        if v is None or v <= 0:
            return float(left)
        return left + width * min(max((math.log10(v) - lo) / (hi - lo), 0.0), 1.0)

    height = top + len(shown) * row_h + 8
    marks = [
        f"<text x='0' y='13' font-size='12' font-weight='bold'>lift over random, precision@{k} "
        f"(log scale; whiskers: {level:.0%} interval)</text>"
    ]
    for d in range(lo, hi + 1):
        gx = x(10.0**d)
        marks.append(f"<line x1='{gx:.1f}' y1='{top - 8}' x2='{gx:.1f}' y2='{height - 4}' stroke='#e5e5e5'/>")
        marks.append(f"<text x='{gx:.1f}' y='{top - 12}' font-size='10' text-anchor='middle'>{decade_label(d)}</text>")
    one = x(1.0)
    marks.append(
        f"<line class='recsys-random-line' x1='{one:.1f}' y1='{top - 8}' x2='{one:.1f}' y2='{height - 4}' "
        "stroke='#e63946' stroke-dasharray='4 3'/>"
    )
    marks.append(f"<text x='{one + 3:.1f}' y='{height - 6}' font-size='9' fill='#e63946'>random</text>")
    for i, r in enumerate(shown):
        y = top + i * row_h + row_h / 2
        color = GROUP_COLORS.get(r.group, "#8d99ae")
        label = r.label + (" (served)" if r.label == served else "") + (" (ceiling)" if r.group == "reference" else "")
        weight = " font-weight='bold'" if r.label == served else ""
        marks.append(f"<text x='{left - 8}' y='{y + 4}' font-size='11' text-anchor='end'{weight}>{esc(label)}</text>")
        if r.lift_low is not None and r.lift_high is not None:
            a, b = x(r.lift_low), x(r.lift_high)
            cap_a = "" if r.lift_low <= 0 else f"M{a:.1f} {y - 4}V{y + 4}"  # open end: the interval reaches 0
            marks.append(
                f"<path class='recsys-whisker' d='M{a:.1f} {y}H{b:.1f}{cap_a}M{b:.1f} {y - 4}V{y + 4}' "
                f"stroke='{color}' fill='none'/>"
            )
        lift = r.lift or 0.0
        fill = color if lift > 0 else "white"
        marks.append(
            f"<circle class='recsys-lift' data-lift='{lift:.6g}' cx='{x(lift):.1f}' cy='{y}' r='4.5' "
            f"fill='{fill}' stroke='{color}'/>"
        )
        text = times(lift) if lift > 0 else "0 hits"
        right = max(x(lift), x(r.lift_high)) + 6
        marks.append(f"<text x='{right:.1f}' y='{y + 4}' font-size='10'>{text}</text>")
    return (
        "<div style='margin:4px 0 8px 0'><svg class='recsys-plot recsys-lift-chart' xmlns='http://www.w3.org/2000/svg' "
        f"width='{left + width + 90}' height='{height}' font-family='sans-serif'>{''.join(marks)}</svg></div>"
    )


def results_table_html(summary: EvaluationSummary, rows: Sequence[LiftRow], served: str | None = None) -> str:
    """Every model's precision@k [interval], hits, lift [interval] and tuned settings, then the references."""
    k, level = summary.protocol.headline_k, summary.protocol.level
    rnd = summary.reference("random_expected").at(k)

    def lift_text(r: LiftRow) -> str:
        return "n/a" if r.lift is None else interval(r.lift, r.lift_low, r.lift_high)

    body = []
    for r in rows:
        reference = r.group == "reference"
        name = f"{r.label} (ceiling)" if reference else r.label + (" · served" if r.label == served else "")
        settings = "" if reference else chosen_text(summary, r.label)
        body.append(
            f"<tr class='recsys-eval-row'><td>{esc(name)}</td><td>{esc(r.group)}</td>"
            f"<td class='num'>{esc(interval(r.value, r.low, r.high))}</td><td class='num'>{r.hits:g}</td>"
            f"<td class='num'>{esc(lift_text(r))}</td><td>{esc(settings)}</td></tr>"
        )
    body.append(
        "<tr class='recsys-eval-row'><td>random (exact expectation)</td><td>reference</td>"
        f"<td class='num'>{esc(fmt(rnd.value))}</td><td class='num'>{esc(fmt(rnd.hits))} expected</td>"
        "<td class='num'>1×</td><td></td></tr>"
    )
    head = (
        f"<tr><th>model</th><th>group</th><th>precision@{k} [{level:.0%} interval]</th><th>hits@{k}</th>"
        "<th>lift over random</th><th>tuned settings</th></tr>"
    )
    skipped = (
        "<div class='recsys-muted'>Not evaluated: "
        + esc("; ".join(f"{m} ({why})" for m, why in summary.skipped_models.items()))
        + "</div>"
        if summary.skipped_models
        else ""
    )
    return f"<table class='recsys-table recsys-eval-table'>{head}{''.join(body)}</table>{skipped}"


def verdicts_html(summary: EvaluationSummary) -> str:
    """The per-k verdicts (CF vs engagement, Holm-corrected) and the overall sentence, from the summary's fields."""
    if not summary.verdicts:
        items = "<li>no CF-vs-engagement comparison (a group has no evaluated model)</li>"
    else:
        items = "".join(
            f"<li class='recsys-verdict' data-verdict='{esc(v.verdict)}'>k={v.k}: {esc(v.cf_model)} vs "
            f"{esc(v.engagement_model)}: <b>{esc(verdict_phrase(v))}</b></li>"
            for v in summary.verdicts
        )
    return (
        "<div class='recsys-verdicts'><b>Verdicts</b> <span class='recsys-muted'>(CF vs engagement, "
        f"Holm-corrected)</span><ul>{items}</ul><div class='recsys-overall'><b>{esc(summary.overall)}</b></div></div>"
    )


def coverage_html(summary: EvaluationSummary) -> str:
    """Whether the seeded random ranker's interval covers its exact expectation, per k."""
    cover = summary.random_coverage
    if not cover:
        return "<div class='recsys-coverage recsys-muted'>Random-ranker check: no random ranker was evaluated.</div>"
    missed = [c for c in cover if not c.covers]
    sentence = "The seeded random ranker's interval " + (
        f"covers its exact expectation at every k ({ks_text([c.k for c in cover])})."
        if not missed
        else f"misses its exact expectation at k = {ks_text([c.k for c in missed])}."
    )
    cells = "".join(
        f"<tr><td class='num'>{c.k}</td><td class='num'>{esc(fmt(c.expected))}</td>"
        f"<td class='num'>[{esc(fmt(c.low))}, {esc(fmt(c.high))}]</td>"
        f"<td>{'yes' if c.covers else '<b>no</b>'}</td></tr>"
        for c in cover
    )
    return (
        f"<div class='recsys-coverage'><b>Random-ranker check</b>: {esc(sentence)}"
        "<table class='recsys-table'><tr><th>k</th><th>expected</th><th>random's interval</th><th>covers</th></tr>"
        f"{cells}</table></div>"
    )


def default_html(summary: EvaluationSummary, served: str | None) -> str:
    """The recommended default ranker (best deployable test precision) and whether the cache serves it."""
    d = summary.default_ranker
    if d is None:
        return "<div class='recsys-default recsys-muted'>No deployable model was evaluated.</div>"
    lead = ""
    if d.runner_up is not None:
        strength = "significant" if d.significant else "<b>not</b> significant"
        lead = f"; its lead over {esc(d.runner_up)} is {strength} after Holm correction (p = {esc(fmt(d.p_holm))})"
    if served is None:
        cache = ""
    elif served == d.ranker:
        cache = f" The cache serves <b>{esc(served)}</b>, the recommended ranker."
    else:
        cache = f" The cache serves <b>{esc(served)}</b>, not the recommended <b>{esc(d.ranker)}</b>."
    return (
        f"<div class='recsys-default'>Recommended default at k={d.k}: <b>{esc(d.label)}</b> (ranker "
        f"<code>{esc(d.ranker)}</code>), {esc(interval(d.value, d.low, d.high))}, leading at k = "
        f"{esc(ks_text(d.leads_at_k))}{lead}.{cache}</div>"
    )


def evaluation_html(summary: EvaluationSummary, source: Path, served: str | None = None) -> str:
    """The evaluation block: lift chart, results table, verdicts, recommended default and the random check."""
    k = summary.protocol.headline_k
    rows = lift_rows(summary, k)
    chart = (
        svg_lift(rows, k, summary.protocol.level, served)
        if random_expectation(summary, k) is not None
        else "<div class='recsys-note'>Random's exact expected precision is 0 here: no lift over random to chart.</div>"
    )
    test = summary.split("test")
    explain = (
        "<div class='recsys-muted recsys-explain'>How well each ranker would have picked customers: every ranker "
        f"ranked the customers of each product before the test window; <b>precision@{k}</b> is the share of its "
        f"first {k} customers who then engaged with the product (averaged over products), <b>hits</b> how many such "
        "customers it found in all, <b>lift</b> its precision divided by what random targeting gets (1× = no better "
        f"than chance). Whiskers and brackets are {summary.protocol.level:.0%} intervals: wide when hits are few. "
        "<b>Verdicts</b> say whether collaborative filtering (customers who bought the same things) beats "
        "engagement ranking (the most active customers), after correcting for testing several depths.</div>"
    )
    return (
        f"<b>Evaluation</b> <span class='recsys-muted'>({esc(config.relative(source))}; test window from "
        f"{esc(test.cutoff[:10])}, {test.evaluated_products:,} products, scored once)</span>{explain}"
        f"{chart}{results_table_html(summary, rows, served)}{verdicts_html(summary)}{default_html(summary, served)}"
        f"{coverage_html(summary)}"
    )


# ----------------------------------------------------------------------------------------------
# exploration
# ----------------------------------------------------------------------------------------------


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
    explain = (
        "<div class='recsys-muted recsys-explain'>Why targeting is hard here, measured on the log by the explore "
        "report: customers who act once leave nothing to learn from, and products new after the split have no "
        "history yet; percentages are shares of customers, products or interactions.</div>"
    )
    return f"<b>High-churn facts</b> <span class='recsys-muted'>({esc(source.name)})</span>{explain}<ul>{items}</ul>"


# ----------------------------------------------------------------------------------------------
# the panel
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsView:
    """What the 'why this works' panel shows: one HTML block (text, tables, inline SVG plots)."""

    html: str
    has_evaluation: bool
    has_exploration: bool


def served_html(figures: ServedFigures | None, ranker: str | None) -> str:
    """What the cache serves and the measured precision of exactly that configuration, or "not measured" and why."""
    if figures is None:
        return ""
    head = f"<b>Served</b>: {esc(ranker or '?')} — "
    if figures.status != "measured":
        return f"<div class='recsys-served'>{head}precision <b>not measured</b> ({esc(figures.reason or '')}).</div>"
    values = ", ".join(
        f"precision@{p.k} {esc(interval(p.value, p.low, p.high))} ({p.hits:g} hits)" for p in figures.precision
    )
    return (
        f"<div class='recsys-served'>{head}{values}. <span class='recsys-muted'>{esc(figures.what)} "
        f"({esc(figures.source or '')})</span></div>"
    )


def metrics_view(
    paths: DashboardPaths, served: str | None = None, figures: ServedFigures | None = None, ranker: str | None = None
) -> MetricsView:
    """The evaluation (typed summary) and exploration facts of the data set; friendly messages when missing.

    `served` is the evaluated model whose test figures are the served configuration's (marked "served" in the chart
    and table; None when the served configuration is not measured: nothing is marked); `figures` the manifest's
    measured figures of the served configuration and `ranker` the cache's ranker, stated above the evaluation.
    """
    summary, ev_msg = load_summary(paths.evaluation_summary)
    left = [served_html(figures, ranker)] + (
        [evaluation_html(summary, paths.evaluation_summary, served)]
        if summary is not None
        else [f"<div class='recsys-note'>Evaluation of data set {esc(paths.dataset)}: {esc(ev_msg)}</div>"]
    )
    ex, ex_msg = read_metrics(paths.explore_json)
    right = []
    if ex is None:
        right.append(f"<div class='recsys-note'>Exploration: {esc(ex_msg)}</div>")
    else:
        facts = churn_facts(ex)
        right += [plot_facts(facts) if facts["is_pct"].any() else "", facts_html(facts, paths.explore_json)]
    body = (
        f"<div style='display:flex;gap:24px;flex-wrap:wrap'><div style='flex:1.4;min-width:520px'>{''.join(left)}</div>"
        f"<div style='flex:1;min-width:380px'>{''.join(right)}</div></div>"
    )
    return MetricsView(body, summary is not None, ex is not None)
