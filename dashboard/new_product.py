"""The new-product tab: type the name of a product about to launch, see its audience, why, and download it.

``build(data) -> ipywidgets.Widget`` is the tab. The audience comes from the served cache's new-products model
(``recsys.cache.by_name.name_audience``: the function ``POST /audiences/by-name`` and ``recsys audience`` call), so
the page, the API and the CLI agree to the byte. The logic is plain functions tested without a browser:
``audience_view`` turns one name into what the page shows — what the name matched (known and unknown tokens, or the
category a category model gave it), the similar known products, and every customer with its score split into its
parts (engagement, name) and the evidence behind the name part — and the CSV to download (``recsys.exports``: the
name, the model, the basis and the cache version as header lines; every text cell neutralised).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from dashboard.artifacts import DashboardData
from dashboard.render import download_link_html, esc
from recsys.basis import MAX_NAME_CHARS
from recsys.cache.by_name import audience_table, clean_name, name_audience
from recsys.exports import csv_text

DEFAULT_N = 20
SCORE_NOTE = (
    "score = engagement part + name part. The engagement part is (1 - w) x the customer's engagement (0-1: how much "
    "and how recently they act); the name part is w x how strongly the new name matches the customer's history "
    "(the tokens listed, or the similar products they touched). A category model scores the customer's history in "
    "the category the name falls into (rows in it, or its share x the chance they return). Scores compare customers "
    "of this product only."
)


@dataclass(frozen=True)
class NewProductView:
    """What the page shows for one name: the API's answer, its table, the CSV and its file name."""

    body: dict[str, Any]
    table: pd.DataFrame
    csv: str
    filename: str


def audience_view(data: DashboardData, name: str, n: int, exclude: list[Any] | None = None) -> NewProductView:
    """The audience of a name never seen in the log (a ValueError says why a name cannot be used)."""
    if data.lookup is None:
        raise ValueError("no audience cache is loaded: run `make run` (or `recsys build-cache`)")
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"the name is {len(name)} characters long; at most {MAX_NAME_CHARS} are accepted")
    cleaned = clean_name(name)
    if not cleaned:
        raise ValueError("type a product name (it is empty or only white space)")
    body = name_audience(data.lookup, cleaned, int(n), exclude or [])
    table = audience_table(body)
    header = {
        "name": body["name"],
        "model": body["model"],
        "basis": body["basis"],
        "reason": body["reason"],
        "cache_version": body["cache_version"],
    }
    stem = "".join(ch if ch.isalnum() else "_" for ch in cleaned)[:40].strip("_") or "product"
    return NewProductView(body, table, csv_text(table, header), f"new_product_{stem}_top{len(table)}.csv")


def matched_html(body: dict[str, Any]) -> str:
    """What the name matched: its known and unknown tokens, the category, the model and the basis."""
    known = ", ".join(esc(t) for t in body["known_tokens"]) or "none"
    unknown = ", ".join(esc(t) for t in body["unknown_tokens"]) or "none"
    parts = [
        f"<div><b>Model</b>: {esc(body['model'])} — {esc(body['reason'])}</div>",
        f"<div><b>Tokens the log knows</b>: <span dir='auto'>{known}</span>; "
        f"<b>never seen</b>: <span dir='auto'>{unknown}</span></div>",
    ]
    if body.get("category"):
        words = ", ".join(esc(t) for t in body["category"]["tokens"])
        parts.append(f"<div><b>Category</b> {body['category']['id']}: <span dir='auto'>{words}</span></div>")
    if body["fallback"]:
        parts.append("<div class='recsys-note'>The name gives no signal: this is the fallback order.</div>")
    return "<div class='recsys-card recsys-new-matched'>" + "".join(parts) + "</div>"


def similarity_text(value: float | None) -> str:
    """A cosine for the table ('' for a category's product, which has none)."""
    return "" if value is None else f"{value:.3f}"


def similar_html(body: dict[str, Any]) -> str:
    """The similar known products (or the category's best-known ones)."""
    rows = "".join(
        f"<tr><td>{esc(p['product_id'])}</td><td dir='auto'>{esc(p['product_name'])}</td>"
        f"<td class='num'>{similarity_text(p['similarity'])}</td></tr>"
        for p in body["similar_products"]
    )
    if not rows:
        return "<div class='recsys-muted'>No known product is similar by name.</div>"
    title = "Products of the same category" if body.get("category") else "Most similar known products"
    return (
        f"<div><b>{title}</b></div><table class='recsys-table recsys-new-similar'><tr><th>product</th><th>name</th>"
        f"<th>similarity</th></tr>{rows}</table>"
    )


def customers_html(table: pd.DataFrame, limit: int = 200) -> str:
    """The audience with every score's parts and the evidence ('why')."""
    rows = "".join(
        "<tr class='recsys-new-row'>"
        f"<td class='num'>{r.rank}</td><td class='cust'>{esc(r.customer_id)}</td><td class='num'>{r.score:.4g}</td>"
        f"<td class='num'>{r.engagement_part:.3g}</td><td class='num'>{r.name_part:.3g}</td>"
        f"<td class='why' dir='auto'>{esc(r.matched_tokens or r.similar_products_touched or '—')}</td></tr>"
        for r in table.head(limit).itertuples()
    )
    return (
        "<table class='recsys-table recsys-new-table'><tr><th>rank</th><th>customer</th><th>score</th>"
        "<th>engagement part</th><th>name part</th><th>why (tokens or similar products, with their share)</th></tr>"
        f"{rows}</table>"
    )


def build(data: DashboardData) -> Any:
    """The new-product tab (ipywidgets): a name, a size, the audience with its evidence, a CSV."""
    import ipywidgets as W

    if data.lookup is None:
        return W.HTML("<div class='recsys-note'>The new-product tab needs the audience cache: run `make run`.</div>")
    name = W.Text(placeholder="the new product's name (Arabic or Latin)", description="Name", continuous_update=False)
    name.layout = W.Layout(width="60%")
    name.add_class("recsys-new-name")
    size = W.BoundedIntText(value=DEFAULT_N, min=1, max=1000, description="Customers").add_class("recsys-new-n")
    exclude = W.Textarea(placeholder="customers to leave out (one per line)", description="Exclude")
    go = W.Button(description="Find the audience", icon="search", button_style="primary").add_class("recsys-new-go")
    status = W.HTML().add_class("recsys-new-status")
    matched = W.HTML().add_class("recsys-new-matched-box")
    similar = W.HTML().add_class("recsys-new-similar-box")
    download = W.HTML().add_class("recsys-new-download")
    table = W.HTML().add_class("recsys-new-table-box")

    def clear() -> None:
        matched.value = similar.value = download.value = table.value = ""

    def on_go(*_: Any) -> None:
        excluded = [line.strip() for line in exclude.value.splitlines() if line.strip()]
        try:
            view = audience_view(data, name.value, int(size.value), excluded)
        except ValueError as exc:
            clear()
            status.value = f"<span class='recsys-error'>{esc(exc)}</span>"
            return
        matched.value = matched_html(view.body)
        similar.value = similar_html(view.body)
        table.value = customers_html(view.table)
        download.value = download_link_html(view.csv, view.filename, "Download the audience (CSV)")
        shown = esc(view.body["name"])
        status.value = f"<span class='recsys-new-done'>{len(view.table):,} customers for “{shown}”.</span>"

    go.on_click(on_go)
    name.observe(on_go, names="value")
    intro = W.HTML(
        "<h3 style='margin:10px 0 4px 0'>New product</h3><div class='recsys-muted'>Type the name of a product that "
        "is not in the log yet (a launch): its audience comes from what the name says about every customer's "
        f"history, with the model the evaluation chose for new products. {esc(SCORE_NOTE)}</div>"
    )
    return W.VBox(
        [intro, W.HBox([name, size, go]), exclude, status, matched, similar, download, table],
        layout=W.Layout(padding="8px"),
    ).add_class("recsys-new-tab")
