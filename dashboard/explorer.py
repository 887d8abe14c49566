"""The audience explorer tab: find a product, its audience, the what-if, the export and the evaluation panel.

``build(data)`` creates the widgets and wires their callbacks (the logic lives in the other modules of the
package: ``search``, ``audience``, ``whatif``, ``exposure``, ``metrics_view``, ``render``); ``warm(data)`` starts
the background work the first screen does not wait for (the search index, the what-if ranker's fit). The CSS
classes (``recsys-*``) are what the browser tests drive.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as W
import numpy as np

from dashboard import audience as A
from dashboard import explain as E
from dashboard import exposure as X
from dashboard import render as R
from dashboard import search as S
from dashboard import whatif as WI
from dashboard.artifacts import DashboardData
from dashboard.metrics_view import metrics_view
from recsys.features.engagement import FEATURE_NAMES, NORMALISATIONS

WIDE = W.Layout(width="100%")
LABEL = {"description_width": "140px"}
OPENING_N = 20  # the audience depth the page opens with (at most the cache's N)


def section(title: str) -> W.HTML:
    """A section heading."""
    return W.HTML(f"<h3 style='margin:10px 0 4px 0'>{title}</h3>")


def slider(value: float, lo: float, hi: float, step: float, description: str, fmt: str, css: str) -> W.FloatSlider:
    """A full-width float slider that updates on release, tagged with its CSS class."""
    return W.FloatSlider(
        value=value,
        min=lo,
        max=hi,
        step=step,
        description=description,
        continuous_update=False,
        readout_format=fmt,
        layout=WIDE,
        style=LABEL,
    ).add_class(css)


class Explorer:
    """The explorer's widgets and callbacks over one loaded `DashboardData`."""

    def __init__(self, data: DashboardData) -> None:
        """Create every widget (callbacks are wired only when the data is ready)."""
        self.data = data
        self.default = data.default_settings()
        self.state: dict[str, Any] = {"product": None, "hold": False}
        self.rng = np.random.default_rng(data.seed)
        default = self.default
        self.search_box = W.Text(
            placeholder="product id or part of its name (Arabic or Latin)",
            description="Find",
            continuous_update=False,
            layout=W.Layout(width="60%"),
        ).add_class("recsys-search")
        self.search_btn = W.Button(description="Search", icon="search", layout=W.Layout(width="auto")).add_class(
            "recsys-search-button"
        )
        self.random_btn = W.Button(
            description="Random product", icon="random", layout=W.Layout(width="auto")
        ).add_class("recsys-random-button")
        self.search_msg = W.HTML().add_class("recsys-search-msg")
        self.results = W.Dropdown(options=[], description="Matches", layout=WIDE).add_class("recsys-results")
        self.product_card = W.HTML(R.product_card_html(None, None)).add_class("recsys-product-card")
        self.n_slider = W.IntSlider(
            value=min(OPENING_N, data.n_max),
            min=1,
            max=data.n_max,
            description="Top N",
            continuous_update=False,
            layout=WIDE,
            style=LABEL,
        ).add_class("recsys-n")
        self.summary = W.HTML().add_class("recsys-summary-box")
        self.table = W.HTML().add_class("recsys-audience")
        self.export = W.HTML().add_class("recsys-export")
        self.ranker_dd = W.Dropdown(
            options=list(WI.WHATIF_RANKERS), value=default.ranker, description="Ranker", style=LABEL
        ).add_class("recsys-ranker")
        self.affinity_slider = slider(
            default.affinity_weight, 0.0, 1.0, 0.05, "name affinity", ".2f", "recsys-affinity"
        )
        self.norm_dd = W.Dropdown(
            options=list(NORMALISATIONS), value=default.normalisation, description="Normalisation", style=LABEL
        ).add_class("recsys-norm")
        self.event_sliders = {
            e: slider(float(default.event_weights.get(e, 0.0)), 0.0, 10.0, 0.5, e, ".1f", f"recsys-event-{e}")
            for e in data.present_events()
        }
        self.weight_sliders = {
            f: slider(
                float(default.weights.get(f, 0.0)), 0.0, 1.0, 0.05, R.FEATURE_LABELS[f], ".2f", f"recsys-weight-{f}"
            )
            for f in FEATURE_NAMES
        }
        self.weights_note = W.HTML().add_class("recsys-weights-note-box")
        self.reset_btn = W.Button(
            description="Reset to cached params", icon="undo", layout=W.Layout(width="220px")
        ).add_class("recsys-reset")
        self.cap_dd = W.Dropdown(
            options=X.cap_options(data.served_cap),
            value=X.SERVED,
            description="Frequency cap",
            style=LABEL,
            layout=WIDE,
        ).add_class("recsys-cap")
        self.exposure_box = W.HTML(
            X.exposure_panel_html(data.lookup.manifest) if data.lookup is not None else ""
        ).add_class("recsys-exposure-box")
        self.why_text = W.HTML(
            metrics_view(data.paths, data.served_label, data.served_figures, data.cache_ranker).html
        ).add_class("recsys-why")
        ranker = data.cache_ranker or data.whatif_ranker
        self.score_help = W.HTML(
            E.score_help_html(ranker, data.params_for(ranker), E.ScoreScale.measure(data.lookup))
        ).add_class("recsys-score-help-box")

    # --- callbacks -----------------------------------------------------------------------------

    def current_settings(self) -> WI.WhatIfSettings:
        """The what-if settings the knobs show."""
        return WI.WhatIfSettings(
            ranker=self.ranker_dd.value,
            event_weights={**self.default.event_weights, **{e: s.value for e, s in self.event_sliders.items()}},
            weights={f: s.value for f, s in self.weight_sliders.items()},
            normalisation=self.norm_dd.value,
            affinity_weight=self.affinity_slider.value,
            weight_total=self.default.weight_total,
        )

    def enable_knobs(self, *_: Any) -> None:
        """Only the knobs the chosen ranker has can be moved."""
        engagement = not WI.uses_engagement(self.ranker_dd.value)
        for w in [self.norm_dd, *self.event_sliders.values(), *self.weight_sliders.values()]:
            w.disabled = engagement
        self.affinity_slider.disabled = not WI.uses_affinity(self.ranker_dd.value)

    def refresh(self, *_: Any) -> None:
        """Re-rank the selected product under the knobs and redraw the audience, export and summary."""
        if self.state["hold"]:
            return
        settings = self.current_settings()
        self.weights_note.value = R.weights_note_html(settings, self.default)
        pid = self.state["product"]
        if pid is None:
            self.summary.value, self.table.value, self.export.value = "", "", ""
            return
        try:
            result = self.data.audience(pid, self.n_slider.value, settings, self.cap_dd.value)
            frame = self.data.audience_table(result)
            self.table.value = R.audience_table_html(frame)
            self.export.value = R.download_link_html(
                A.audience_csv(frame, pid), A.export_filename(pid, result.source, len(frame))
            )
            # last: the summary says the update is complete
            self.summary.value = R.audience_summary_html(result, self.n_slider.value, self.data.cache_ranker)
        except Exception as exc:  # keep the page alive and say what happened, without a traceback
            self.summary.value = R.issues_html([f"Could not rank this product: {exc}"])

    def select_product(self, pid: Any) -> None:
        """Show a product's card and audience."""
        self.state["product"] = pid
        self.product_card.value = R.product_card_html(self.data.product_history(pid), pid)
        self.refresh()

    def show_matches(self, matches: Any) -> None:
        """Fill the results dropdown and open the first match."""
        options = S.search_results_options(matches)
        self.state["hold"] = True
        self.results.options = options
        self.results.value = options[0][1] if options else None
        self.state["hold"] = False
        if options:
            self.select_product(options[0][1])

    def on_search(self, *_: Any) -> None:
        """Resolve the search box's query; a search that finds nothing clears the card and the audience."""
        if self.data.products is None:  # callbacks are wired only when the data is ready
            return
        found = S.resolve_query(
            self.data.products, self.search_box.value, self.data.settings.search.limit, self.data.lexicon
        )
        self.search_msg.value = R.muted_html(found.message)
        self.show_matches(found.matches)
        if found.cold_start_id is not None:
            self.select_product(found.cold_start_id)
        elif found.matches.empty:
            self.state["product"] = None
            self.product_card.value = R.no_match_card_html(found.message)
            self.refresh()

    def on_pick(self, change: dict[str, Any]) -> None:
        """Open the product picked in the results dropdown."""
        if not self.state["hold"] and change["new"] is not None and change["new"] != self.state["product"]:
            self.select_product(change["new"])

    def on_random(self, *_: Any) -> None:
        """Open a random product (seeded)."""
        if self.data.products is None:
            return
        pid = S.random_product(self.data.products, self.rng)
        self.search_msg.value = R.muted_html(f"random product {pid}")
        self.show_matches(S.product_row(self.data.products, pid))

    def on_reset(self, *_: Any) -> None:
        """Put every knob back to the cached params."""
        default = self.default
        self.state["hold"] = True
        self.ranker_dd.value, self.norm_dd.value = default.ranker, default.normalisation
        self.cap_dd.value = X.SERVED
        self.affinity_slider.value = default.affinity_weight
        for e, s in self.event_sliders.items():
            s.value = float(default.event_weights.get(e, 0.0))
        for f, s in self.weight_sliders.items():
            s.value = float(default.weights.get(f, 0.0))
        self.state["hold"] = False
        self.refresh()

    def wire(self) -> None:
        """Connect the callbacks and open the most popular product."""
        if self.data.products is None:
            raise ValueError("the explorer's callbacks need the prepared data (DashboardData.ready)")
        self.search_box.observe(self.on_search, names="value")
        self.search_btn.on_click(self.on_search)
        self.random_btn.on_click(self.on_random)
        self.reset_btn.on_click(self.on_reset)
        self.results.observe(self.on_pick, names="value")
        self.ranker_dd.observe(self.enable_knobs, names="value")
        knobs = [self.n_slider, self.cap_dd, self.ranker_dd, self.norm_dd, self.affinity_slider]
        for w in [*knobs, *self.event_sliders.values(), *self.weight_sliders.values()]:
            w.observe(self.refresh, names="value")
        self.enable_knobs()
        self.show_matches(S.product_row(self.data.products, S.most_popular_product(self.data.products)))
        self.search_msg.value = R.muted_html("showing the most popular product; search for another")

    # --- layout --------------------------------------------------------------------------------

    def layout(self) -> W.Widget:
        """The tab: find and what-if on the left, the audience on the right, the evaluation panel below."""
        why = W.VBox([section("4 · Why this works (or doesn't)"), self.why_text])
        if not self.data.ready:
            return W.VBox([why])
        find = W.VBox(
            [
                section("1 · Find a product"),
                W.HBox([self.search_box, self.search_btn, self.random_btn]),
                self.search_msg,
                self.results,
                self.product_card,
            ]
        )
        whatif = W.VBox(
            [
                section("3 · What-if: tune the ranking"),
                self.cap_dd,
                self.ranker_dd,
                self.affinity_slider,
                self.norm_dd,
                W.HTML("<b>event weights</b> <span class='recsys-muted'>(before time decay)</span>"),
                *self.event_sliders.values(),
                W.HTML("<b>engagement weights</b>"),
                *self.weight_sliders.values(),
                self.weights_note,
                self.reset_btn,
                self.exposure_box,
            ]
        )
        audience = W.VBox(
            [
                section("2 · Audience"),
                self.n_slider,
                self.summary,
                section("5 · Export"),
                self.export,
                self.score_help,
                self.table,
            ]
        )
        body = W.HBox(
            [
                W.VBox([find, whatif], layout=W.Layout(width="40%", padding="0 12px 0 0")),
                W.VBox([audience], layout=W.Layout(width="60%")),
            ]
        )
        return W.VBox([body, why])


def build(data: DashboardData) -> W.Widget:
    """The explorer tab over `data` (wired and showing the most popular product when the data is ready)."""
    explorer = Explorer(data)
    if data.ready:
        explorer.wire()
    return explorer.layout()


def warm(data: DashboardData) -> None:
    """Background work once the page is up: the search index and the fit of the what-if's opening ranker."""
    if data.products is not None:
        S.warm_search_index(data.products)
    if data.whatif is not None:
        data.whatif.warm((data.default_settings().ranker,))
