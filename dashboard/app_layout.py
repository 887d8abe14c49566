"""The dashboard's composition point: the header above a row of tabs, each built by its own module.

A tab is a module of the ``dashboard`` package with

- ``build(data: DashboardData) -> ipywidgets.Widget``: the tab's widgets, callbacks wired, over the data loaded
  once for the whole app (``dashboard.artifacts.DashboardData``);
- optionally ``warm(data: DashboardData) -> None``: background work started once the page is on screen.

Adding a tab is one line in ``TABS`` (title, module name). The first tab is built before the page is shown; the
others are built the first time they are selected, so they cost the first screen nothing. ``app.ipynb`` only calls
``compose`` and ``warm_up``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import ipywidgets as W

from dashboard import render as R
from dashboard.artifacts import DashboardData


@dataclass(frozen=True)
class TabSpec:
    """One tab: its title and the module (under ``dashboard``) whose ``build(data)`` makes it."""

    title: str
    module: str

    def load(self) -> ModuleType:
        """The tab's module (imported on first use)."""
        return importlib.import_module(f"dashboard.{self.module}")


TABS: tuple[TabSpec, ...] = (
    TabSpec("Audience explorer", "explorer"),
    # TabSpec("New product", "new_product"),
    TabSpec("Campaigns", "campaigns"),
)


@dataclass
class App:
    """The composed page: the root widget, the tab row and which tabs are built."""

    root: W.Widget
    tabs: W.Tab
    built: dict[int, ModuleType]


def _builder(spec: TabSpec, data: DashboardData) -> Callable[[], tuple[ModuleType, W.Widget]]:
    """A function that builds `spec`'s tab over `data`."""

    def run() -> tuple[ModuleType, W.Widget]:
        module = spec.load()
        return module, module.build(data)

    return run


def compose(data: DashboardData, tabs: tuple[TabSpec, ...] = TABS) -> App:
    """The header and the tabs; the first tab built now, the others on first selection."""
    if not tabs:
        raise ValueError("the dashboard needs at least one tab in dashboard.app_layout.TABS")
    builders = [_builder(spec, data) for spec in tabs]
    module, first = builders[0]()
    built = {0: module}
    pages: list[W.Widget] = [first] + [W.VBox([W.HTML(R.muted_html(f"loading {spec.title}…"))]) for spec in tabs[1:]]
    tab = W.Tab(children=pages).add_class("recsys-tabs")
    tab.titles = tuple(spec.title for spec in tabs)

    def on_select(change: dict[str, Any]) -> None:
        """Build a tab the first time it is selected (and warm it)."""
        i = change["new"]
        if i is None or i in built:
            return
        mod, widget = builders[i]()
        built[i] = mod
        pages[i].children = (widget,)
        warm_module(mod, data)

    tab.observe(on_select, names="selected_index")
    header = W.HTML(R.header_html(data)).add_class("recsys-header")
    root = W.VBox([header, tab], layout=W.Layout(padding="8px"))
    return App(root, tab, built)


def warm_module(module: ModuleType, data: DashboardData) -> None:
    """Start a tab module's background work, if it has any."""
    warm = getattr(module, "warm", None)
    if callable(warm):
        warm(data)


def warm_up(app: App, data: DashboardData) -> None:
    """Start the background work of every tab built so far (call after the page is displayed)."""
    for module in app.built.values():
        warm_module(module, data)
