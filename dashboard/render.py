"""HTML fragments of the audience explorer (escaped; names get dir="auto" so Arabic reads right-to-left)."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from dashboard.artifacts import DashboardData
from dashboard.audience import AudienceResult
from dashboard.search import ProductHistory
from dashboard.whatif import WhatIfSettings

FEATURE_LABELS: dict[str, str] = {
    "total_interactions": "interactions",
    "unique_products": "distinct products",
    "avg_event_score": "event score",
    "interaction_frequency": "frequency",
    "recency": "recency",
}

CSS = """<style>
.recsys-muted{color:#666;font-size:0.9em}
.recsys-note{background:#fff8e1;border-left:4px solid #f4a261;padding:6px 10px;margin:4px 0}
.recsys-issue{background:#fdecea;border-left:4px solid #e76f51;padding:6px 10px;margin:4px 0}
.recsys-card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;background:#fafafa}
.recsys-card h3{margin:0 0 4px 0}
table.recsys-table{border-collapse:collapse;font-size:0.9em;width:100%}
table.recsys-table th,table.recsys-table td{border-bottom:1px solid #e5e5e5;padding:2px 6px;text-align:left}
table.recsys-table th{background:#f2f2f2;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.chg-new{color:#2a9d8f;font-weight:bold}.chg-up{color:#2a9d8f}.chg-down{color:#e76f51}
.recsys-verdicts,.recsys-default,.recsys-coverage{margin-top:8px}
.recsys-download-link{display:inline-block;padding:4px 10px;border:1px solid #2a9d8f;border-radius:4px;
  color:#2a9d8f;text-decoration:none;font-weight:bold}
</style>"""


def esc(value: Any) -> str:
    """Escaped text of a value ('' for None/NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return ""
    return html.escape(str(value))


def date_text(ts: Any) -> str:
    """A timestamp as YYYY-MM-DD ('—' when missing)."""
    return "—" if ts is None or pd.isna(ts) else pd.Timestamp(ts).strftime("%Y-%m-%d")


def muted_html(text: str) -> str:
    """A short escaped grey message."""
    return f"<span class='recsys-muted'>{esc(text)}</span>"


def issues_html(issues: Sequence[str], notes: Sequence[str] = ()) -> str:
    """Boxes for blocking issues and softer notes."""
    return "".join(f'<div class="recsys-issue">{esc(i)}</div>' for i in issues) + "".join(
        f'<div class="recsys-note">{esc(n)}</div>' for n in notes
    )


def header_html(data: DashboardData) -> str:
    """Title and one line saying what is loaded."""
    parts = [CSS, "<h2 style='margin:0'>Audience explorer</h2>"]
    if data.counts:
        parts.append(
            f"<div class='recsys-muted'>{data.counts['interactions']:,} interactions · "
            f"{data.counts['customers']:,} customers · {data.counts['products']:,} products · "
            f"data up to {esc((data.reference_date or '')[:10])}</div>"
        )
    if data.lookup is not None:
        m = data.lookup.manifest
        cap = (
            "uncapped"
            if m.allocation.max_exposures is None
            else f"cap {m.allocation.max_exposures} audiences per customer"
        )
        parts.append(
            f"<div class='recsys-muted'>Audience cache: ranker <b>{esc(m.ranker)}</b>, N = {m.n}, {cap} · "
            f"{m.counts.products:,} products · version {esc(m.version[:12])} ({esc(m.engine.name)})</div>"
        )
    parts.append(issues_html(data.issues, data.notes))
    return "".join(parts)


def product_card_html(history: ProductHistory | None, product_id: Any) -> str:
    """Name and history of the selected product, or the cold-start notice."""
    if product_id is None or str(product_id).strip() == "":
        return "<div class='recsys-card recsys-muted'>Search for a product by id or name, or pick a random one.</div>"
    if history is None:
        return (
            f"<div class='recsys-card recsys-product'><h3>Product {esc(product_id)}</h3>"
            "<b>New product — cold start.</b> Nobody in the log has interacted with it yet, so its audience is the "
            "ranker's global order (no one to exclude); its scores are on that order's scale, not a product list's "
            "(see the note above the audience). For a product about to launch, type its name in the "
            "<b>New product</b> tab: its audience is ranked from the name.</div>"
        )
    events = ", ".join(f"{n:,} {esc(e)}" for e, n in history.events.items()) or "—"
    others = (
        "<div class='recsys-muted'>also logged as: "
        f"{', '.join(f'<span dir=auto>{esc(n)}</span>' for n in history.other_names[:5])}</div>"
        if history.other_names
        else ""
    )
    undated = f" · {history.undated:,} undated" if history.undated else ""
    return (
        f"<div class='recsys-card recsys-product'><h3 dir='auto'>{esc(history.name) or '(no name)'}</h3>"
        f"<div class='recsys-muted'>product id {esc(history.product_id)}</div>{others}"
        f"<div>{history.interactions:,} interactions by {history.customers:,} customers — {events}{undated}</div>"
        f"<div>first seen {date_text(history.first_seen)} · last seen {date_text(history.last_seen)}</div></div>"
    )


def no_match_card_html(message: str) -> str:
    """The product card after a search that found nothing: what was searched, and no product."""
    return f"<div class='recsys-card recsys-no-match'><b>No product shown.</b> {esc(message)}</div>"


def audience_table_html(frame: pd.DataFrame) -> str:
    """The audience table as HTML (one <tr class='recsys-row'> per customer)."""
    change = frame["change"].astype(str)
    cls = np.where(
        change == "new",
        "chg-new",
        np.where(change.str.startswith("▲"), "chg-up", np.where(change.str.startswith("▼"), "chg-down", "")),
    )
    last = frame["last_seen"].dt.strftime("%Y-%m-%d").fillna("—")
    cells = (
        "<tr class='recsys-row'><td class='num'>"
        + frame["rank"].astype(str)
        + "</td><td class='cust'>"
        + frame["customer_id"].astype(str).map(html.escape)
        + "</td><td class='num'>"
        + frame["score"].map("{:.4f}".format)
        + "</td><td class='"
        + cls
        + "'>"
        + change.map(html.escape)
        + "</td><td class='num expo'>"
        + frame["exposures"].astype(str)
        + "</td><td class='num'>"
        + frame["interactions"].astype(str)
        + "</td><td class='num'>"
        + frame["distinct_products"].astype(str)
        + "</td><td>"
        + last
        + "</td><td>"
        + frame["events"].astype(str).map(html.escape)
        + "</td></tr>"
    )
    head = (
        "<tr><th>rank</th><th>customer</th>"
        '<th title="the ranker\'s estimate of fit: it orders the list; compare within one list only">score</th>'
        "<th title='entered the list (new) or moved, against the cached list'>change</th>"
        "<th title='in how many served audiences (cache depth N) the customer is'>exposures</th><th>interactions</th>"
        "<th>distinct products</th><th>last seen</th><th>events</th></tr>"
    )
    return (
        f"<div style='max-height:780px;overflow:auto'><table class='recsys-table'>{head}{''.join(cells)}</table></div>"
    )


def weights_note_html(settings: WhatIfSettings, default: WhatIfSettings) -> str:
    """How the engagement weights combine (sum, shares after rescaling) and whether the knobs differ from the cache."""
    from dashboard.explain import weights_help_html

    return weights_help_html(settings.weights, FEATURE_LABELS, not settings.close_to(default), settings.weight_total)


def audience_summary_html(result: AudienceResult, n: int, cache_ranker: str | None = None) -> str:
    """One line: where the list comes from and how it differs from the cache (and whether the ranker changed)."""
    cold = " · <b>cold start</b>: global order" if result.cold_start else ""
    took = f" · ranked in {result.seconds * 1000:.0f} ms"
    cap = "uncapped" if result.cap is None else f"cap {result.cap}"
    if result.source == "cache":
        text = f"Top {len(result.customers)} from the cache (ranker <b>{esc(result.ranker)}</b>, {cap}){cold}"
    elif result.source == "what-if":
        text = f"What-if top {len(result.customers)} (ranker <b>{esc(result.ranker)}</b>, {cap}){cold}{took}"
        if result.approximate and result.held_out is not None:
            text += f"<br><span class='recsys-cap-note'>{cap_note(result)}</span>"
        if result.diff is not None:
            moved = int(((result.diff.moves != 0) & ~result.diff.is_new).sum())
            versus = "vs cache" if cache_ranker in (None, result.ranker) else f"vs cache (ranker {esc(cache_ranker)})"
            text += (
                f"<br><span class='recsys-diff'>{versus}: <b class='chg-new'>{len(result.diff.entered)} entered</b>, "
                f"<b class='chg-down'>{len(result.diff.left)} left</b>, {moved} moved</span>"
            )
        else:
            text += " · no cache to compare with"
    else:
        text = "No audience available (see the messages above)."
    if len(result.customers) < n and result.source != "none":
        text += f" · only {len(result.customers)} eligible customers"
    return f"<div class='recsys-summary'>{text}</div>"


def cap_note(result: AudienceResult) -> str:
    """What the cap what-if did and what it assumes (a per-product approximation of the joint allocation)."""
    held = 0 if result.held_out is None else len(result.held_out)
    text = (
        f"cap {result.cap}: per-product approximation of the joint allocation (the other products' audiences held "
        f"as served): <b>{held}</b> customers of the ranking held out, already in ≥ {result.cap} other served audiences"
    )
    looser = result.cap is not None and result.served_cap is not None and result.cap > result.served_cap
    if looser:
        text += (
            f". The served audiences were allocated under cap {result.served_cap}, so nobody is in more than "
            f"{result.served_cap} of them: a looser cap holds no one out here, while the exact joint allocation would "
            "give busy customers more slots elsewhere too"
        )
    return text


def download_link_html(csv_text: str, filename: str, label: str = "Download CSV") -> str:
    """An HTML anchor that makes the browser download `csv_text` (UTF-8 with BOM, so spreadsheets read Arabic)."""
    payload = base64.b64encode(("\ufeff" + csv_text).encode("utf-8")).decode("ascii")
    return (
        f'<a class="recsys-download-link" download="{html.escape(filename)}" '
        f'href="data:text/csv;charset=utf-8;base64,{payload}">⬇ {html.escape(label)}</a>'
        f' <span class="recsys-muted">{html.escape(filename)}</span>'
    )
