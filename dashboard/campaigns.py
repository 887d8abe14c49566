"""The campaign builder tab: products by search or pasted ids, audience size and cap, what the cap costs, one CSV.

``build(data) -> ipywidgets.Widget`` is the tab (the dashboard composes tabs; this one is self-contained). The logic
is plain functions tested without a browser: ``parse_ids`` reads pasted ids, ``run_campaign`` allocates a campaign
from the served cache's candidates (``recsys.allocation.campaign``, the function ``POST /campaigns`` calls) and
returns the table the page shows and downloads — product id, product name, rank, customer, score and the reason
(``recsys.reasons``) — written through ``recsys.exports`` with the settings and the cache version as header lines;
``figures_html`` and ``histogram_svg`` show what the cap costs (slots, score, reach) and how many messages each
customer gets, capped against uncapped.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from dashboard.artifacts import DashboardData
from dashboard.render import download_link_html
from dashboard.search import resolve_query
from recsys.allocation.campaign import allocate_campaign
from recsys.allocation.export import campaign_header, campaign_table
from recsys.allocation.problem import Campaign
from recsys.allocation.result import CampaignFigures, CampaignResult, ExposureFigures
from recsys.data.ids import parse_id
from recsys.exports import csv_text
from recsys.reasons import audience_reasons, reason_text

CAPS: tuple[int | None, ...] = (1, 2, 3, 5, 10, None)
SHOWN_ROWS = 300  # rows of the table shown on the page (the CSV has them all)
SEPARATORS = re.compile(r"[\s,;]+")


def cap_label(cap: int | None) -> str:
    """'uncapped' or 'at most 2 messages per customer'."""
    return "uncapped" if cap is None else f"at most {cap} message{'s' if cap != 1 else ''} per customer"


def parse_ids(text: str, kind: str) -> tuple[list[int | str], list[str]]:
    """Ids pasted as text (whitespace, commas or semicolons between them): (distinct ids in order, unreadable bits)."""
    ids: list[int | str] = []
    bad: list[str] = []
    seen: set[int | str] = set()
    for raw in (t for t in SEPARATORS.split(text.strip()) if t):
        value = parse_id(raw, kind)
        if value is None:
            bad.append(raw)
        elif value not in seen:
            seen.add(value)
            ids.append(value)
    return ids, bad


@dataclass(frozen=True)
class CampaignView:
    """An allocated campaign as the page shows it: the result, its table (with reasons), the CSV and its name."""

    result: CampaignResult
    table: pd.DataFrame
    csv: str
    filename: str


def product_names(data: DashboardData) -> pd.Series:
    """Product id -> name from the loaded log (empty without it)."""
    if data.products is None:
        return pd.Series(dtype=object)
    return pd.Series(np.asarray(data.products.names, dtype=object), index=pd.Index(data.products.product_ids))


def run_campaign(
    data: DashboardData,
    product_ids: Sequence[int | str],
    n: int,
    cap: int | None,
    min_audience: int = 0,
    exclude: Sequence[int | str] | None = None,
) -> CampaignView:
    """Allocate the campaign from the served cache and build its table and CSV (ValueError for a bad campaign)."""
    if data.lookup is None:
        raise ValueError("no audience cache: build it with `recsys build-cache` (or `dvc repro cache`)")
    lookup = data.lookup
    campaign = Campaign(
        product_ids=list(product_ids),
        n=n,
        max_per_customer=cap,
        min_audience=min_audience,
        exclude_customers=list(exclude or []),
    )
    result = allocate_campaign(lookup, campaign)
    reasons = audience_reasons(lookup, result.problem.product_ids, result.offsets, result.codes, result.scores)
    texts = None if reasons is None else [reason_text(r) for r in reasons]
    table = campaign_table(result, lookup.customer_ids(result.codes), product_names(data), texts)
    size = f"cap{cap}" if cap is not None else "uncapped"
    filename = f"campaign_{len(result.problem.product_ids)}products_n{n}_{size}.csv"
    return CampaignView(result, table, csv_text(table, campaign_header(result, lookup.manifest)), filename)


def esc(value: Any) -> str:
    """HTML-escaped text."""
    return html.escape(str(value))


def share(x: float | None) -> str:
    """A share as a percentage."""
    return "n/a" if x is None else f"{100.0 * x:.1f}%"


def figures_html(f: CampaignFigures) -> str:
    """What the campaign got and what the cap cost, against the same campaign uncapped."""
    e, u = f.exposure, f.uncapped_exposure
    missing = esc(", ".join(map(str, f.unknown_products)))
    unknown = (
        f"<div class='recsys-campaign-unknown'>Not in the cache (left out): {missing}</div>"
        if f.unknown_products
        else ""
    )
    rows = [
        ("audience slots filled", f"{f.filled:,} of {f.slots:,}", f"{u.messages:,} of {f.slots:,}"),
        ("products short of n", f"{f.short_products:,}", "0" if u.messages == f.slots else "—"),
        ("total score kept", share(f.score_kept), "100.0%"),
        ("customers messaged", f"{e.customers:,}", f"{u.customers:,}"),
        ("most messages to one customer", f"{e.max_per_customer:,}", f"{u.max_per_customer:,}"),
        ("mean messages per customer", f"{e.mean_per_customer:.2f}", f"{u.mean_per_customer:.2f}"),
        ("customers at the cap", "—" if e.at_cap is None else f"{e.at_cap:,} ({share(e.at_cap_share)})", "—"),
    ]
    cells = "".join(
        f"<tr><td>{esc(a)}</td><td class='num'>{esc(b)}</td><td class='num'>{esc(c)}</td></tr>" for a, b, c in rows
    )
    return (
        f"<div class='recsys-campaign-figures'><b>{f.products_known:,} products, n = {f.n}, "
        f"{esc(cap_label(f.max_per_customer))}</b>"
        f"{'' if not f.min_audience else f', min audience {f.min_audience}'}"
        f"{'' if not f.excluded_customers else f', {f.excluded_customers:,} customers excluded'}"
        "<table class='recsys-table'><tr><th></th><th>this campaign</th><th>uncapped</th></tr>"
        f"{cells}</table>{unknown}</div>"
    )


def histogram_svg(capped: ExposureFigures, uncapped: ExposureFigures, width: int = 520, height: int = 190) -> str:
    """Customers by messages received (1, 2, ...), capped (blue) against uncapped (grey), as an inline SVG."""
    bins = max(len(capped.histogram), len(uncapped.histogram), 1)
    shown = min(bins, 20)  # the tail past 20 messages is folded into the last bar
    counts = []
    for hist in (capped.histogram, uncapped.histogram):
        v = np.zeros(shown, dtype=np.int64)
        arr = np.asarray(hist, dtype=np.int64)
        v[: min(len(arr), shown)] = arr[:shown]
        if len(arr) > shown:
            v[-1] += arr[shown:].sum()
        counts.append(v)
    top = max(int(max(c.max(initial=0) for c in counts)), 1)
    left, bottom = 40, 24
    slot = (width - left - 10) / shown
    bars = []
    for j, (v, colour, cls) in enumerate(zip(counts, ("#4c72b0", "#bbbbbb"), ("capped", "uncapped"), strict=True)):
        for i, c in enumerate(v):
            h = (height - bottom - 10) * c / top
            x = left + i * slot + j * slot / 2
            bars.append(
                f"<rect class='recsys-hist-{cls}' x='{x:.1f}' y='{height - bottom - h:.1f}' width='{slot / 2 - 1:.1f}' "
                f"height='{h:.1f}' fill='{colour}'><title>{i + 1}{'+' if i == shown - 1 and bins > shown else ''} "
                f"messages: {c:,} customers ({cls})</title></rect>"
            )
    labels = "".join(
        f"<text x='{left + i * slot + slot / 2:.1f}' y='{height - 8}' font-size='10' text-anchor='middle'>"
        f"{i + 1}{'+' if i == shown - 1 and bins > shown else ''}</text>"
        for i in range(shown)
    )
    return (
        f"<svg class='recsys-campaign-hist' width='{width}' height='{height}' role='img'>"
        f"<text x='4' y='12' font-size='11'>customers (max {top:,}) by messages received in the campaign: "
        f"this campaign (blue), uncapped (grey)</text>{''.join(bars)}{labels}</svg>"
    )


def table_html(table: pd.DataFrame, limit: int = SHOWN_ROWS) -> str:
    """The first `limit` rows of the campaign table (every column, the reason last as 'why')."""
    head = table.head(limit)
    rows = "".join(
        "<tr class='recsys-campaign-row'>"
        f"<td>{esc(r.product_id)}</td><td dir='auto'>{esc(r.product_name)}</td><td class='num'>{r.rank}</td>"
        f"<td class='cust'>{esc(r.customer_id)}</td><td class='num'>{r.score:.4g}</td>"
        f"<td class='why'>{esc(r.reason)}</td></tr>"
        for r in head.itertuples()
    )
    more = f"<div class='recsys-muted'>showing {len(head):,} of {len(table):,} rows (all in the CSV)</div>"
    return (
        "<table class='recsys-table recsys-campaign-table'><tr><th>product</th><th>name</th><th>rank</th>"
        f"<th>customer</th><th>score</th><th>why</th></tr>{rows}</table>{more if len(table) > limit else ''}"
    )


def selected_html(data: DashboardData, ids: list[int | str]) -> str:
    """The products in the campaign so far, with their names."""
    if not ids:
        return "<span class='recsys-muted'>No product yet: search or paste ids.</span>"
    names = product_names(data)
    items = ", ".join(f"{esc(p)} <span class='recsys-muted'>{esc(names.get(p, ''))}</span>" for p in ids[:30])
    more = f" … and {len(ids) - 30:,} more" if len(ids) > 30 else ""
    return f"<div class='recsys-campaign-selected'><b>{len(ids):,} products</b>: {items}{more}</div>"


def build(data: DashboardData) -> Any:
    """The campaign builder tab (ipywidgets): add products, set size and cap, build, see the figures, download."""
    import ipywidgets as W

    if data.lookup is None or data.products is None:
        return W.HTML(
            "<div class='recsys-note'>The campaign builder needs the audience cache and the prepared log: "
            "run `make run` (or `recsys build-cache`).</div>"
        )
    lookup, products = data.lookup, data.products
    kind = lookup.id_kind
    state: dict[str, list[int | str]] = {"ids": []}
    search = W.Text(placeholder="product id or part of its name", description="Find", continuous_update=False)
    search.add_class("recsys-campaign-search")
    matches = W.Dropdown(options=[], description="Matches", layout=W.Layout(width="60%"))
    matches.add_class("recsys-campaign-matches")
    add = W.Button(description="Add product", icon="plus").add_class("recsys-campaign-add")
    paste = W.Textarea(placeholder="paste product ids (one per line, or separated by commas)", description="Ids")
    paste.add_class("recsys-campaign-paste")
    add_ids = W.Button(description="Add pasted ids", icon="paste").add_class("recsys-campaign-add-ids")
    clear = W.Button(description="Clear", icon="trash").add_class("recsys-campaign-clear")
    selected = W.HTML(selected_html(data, [])).add_class("recsys-campaign-selected-box")
    depth = lookup.candidate_depth
    size = W.BoundedIntText(value=min(100, depth), min=1, max=depth, description="Audience n").add_class(
        "recsys-campaign-n"
    )
    cap = W.Dropdown(options=[(cap_label(c), c) for c in CAPS], value=2, description="Cap").add_class(
        "recsys-campaign-cap"
    )
    minimum = W.BoundedIntText(value=0, min=0, max=depth, description="Min audience").add_class("recsys-campaign-min")
    exclude = W.Textarea(placeholder="customers to leave out (opt-outs, recently contacted)", description="Exclude")
    exclude.add_class("recsys-campaign-exclude")
    go = W.Button(description="Build campaign", icon="send", button_style="primary").add_class("recsys-campaign-go")
    status = W.HTML().add_class("recsys-campaign-status")
    figures = W.HTML().add_class("recsys-campaign-figures-box")
    histogram = W.HTML().add_class("recsys-campaign-hist-box")
    download = W.HTML().add_class("recsys-campaign-download")
    table = W.HTML().add_class("recsys-campaign-table-box")

    def show_selected() -> None:
        selected.value = selected_html(data, state["ids"])

    def on_search(*_: Any) -> None:
        found = resolve_query(products, search.value)
        matches.options = [(f"{r.product_id} — {r.name}", r.product_id) for r in found.matches.itertuples()]
        status.value = f"<span class='recsys-muted'>{esc(found.message)}</span>"

    def on_add(*_: Any) -> None:
        value = matches.value.item() if hasattr(matches.value, "item") else matches.value
        if value is not None and value not in state["ids"]:
            state["ids"] = [*state["ids"], value]
            show_selected()

    def on_add_ids(*_: Any) -> None:
        ids, bad = parse_ids(paste.value, kind)
        state["ids"] = list(dict.fromkeys([*state["ids"], *ids]))
        show_selected()
        status.value = f"<span class='recsys-muted'>added {len(ids):,} ids</span>" + (
            f"; not ids of this cache: {esc(', '.join(bad[:10]))}" if bad else ""
        )

    def on_clear(*_: Any) -> None:
        state["ids"] = []
        show_selected()

    def on_go(*_: Any) -> None:
        excluded, bad = parse_ids(exclude.value, lookup.customer_kind)
        try:
            view = run_campaign(data, state["ids"], int(size.value), cap.value, int(minimum.value), excluded)
        except ValueError as exc:  # a bad campaign (no product, min audience > n): say so, keep the page alive
            status.value = f"<span class='recsys-error'>{esc(exc)}</span>"
            return
        f = view.result.figures
        figures.value = figures_html(f)
        histogram.value = histogram_svg(f.exposure, f.uncapped_exposure)
        download.value = download_link_html(view.csv, view.filename, "Download the campaign (CSV)")
        table.value = table_html(view.table)
        note = f"; not customer ids of this cache: {esc(', '.join(bad[:10]))}" if bad else ""
        status.value = f"<span class='recsys-campaign-done'>Campaign built: {len(view.table):,} rows{note}.</span>"

    search.observe(on_search, names="value")
    add.on_click(on_add)
    add_ids.on_click(on_add_ids)
    clear.on_click(on_clear)
    go.on_click(on_go)
    intro = W.HTML(
        "<h3 style='margin:10px 0 4px 0'>Campaign builder</h3><div class='recsys-muted'>Audiences of several "
        f"products sent together, allocated from each product's top {depth} candidates so that no customer gets "
        "more messages than the cap in this campaign; customers who touched a product are never in its audience."
        "</div>"
    )
    return W.VBox(
        [
            intro,
            W.HBox([search, matches, add]),
            W.HBox([paste, add_ids, clear]),
            selected,
            W.HBox([size, cap, minimum]),
            exclude,
            go,
            status,
            W.HBox([figures, histogram]),
            download,
            table,
        ],
        layout=W.Layout(padding="8px"),
    ).add_class("recsys-campaign-tab")
