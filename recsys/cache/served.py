"""What the cache serves: the evaluate stage's validation selection, or an explicit override in params/cache.yaml.

``cache.ranker: selected`` (the default) builds exactly the models the evaluation chose on the validation window
of the served data set (``reports/datasets/<cache.dataset>/evaluation/selection.json``, a DVC dependency of the cache
stage): the model of products with a history and the model of products without fit rows (catalogue names and
``/audiences/by-name``), with every setting as the evaluation fitted them. ``cache.ranker: <name>`` overrides the
selection with that ranker and ``cache.settings`` (validated by the ranker's settings model, so a misspelt key is an
error naming it); the manifest and ``reports/summary.md`` say when an override is served. ``cache.new_products``:
``selected`` (the selection's new-products model), ``same`` (the served ranker) or ``none`` (no name index).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from recsys import config
from recsys.evaluation.results import SelectedModel, read_selection
from recsys.rankers import make_ranker

SELECTED = "selected"
NEW_PRODUCTS_CHOICES: tuple[str, ...] = ("selected", "same", "none")
Source = Literal["selection", "override"]


@dataclass(frozen=True)
class ServedModel:
    """A model the cache builds: registered ranker, make_ranker params, where they came from."""

    ranker: str
    params: dict[str, Any]
    source: Source
    label: str | None = None  # the evaluation's model label (selection only)


def selection_path(dataset: str) -> Path:
    """The selection file of a data set (written by `recsys evaluate --dataset NAME`)."""
    return config.dataset_paths(dataset).evaluation_dir / "selection.json"


def from_selected(model: SelectedModel) -> ServedModel:
    """A selection entry as a served model (its settings are complete make_ranker params)."""
    return ServedModel(ranker=model.ranker, params=dict(model.settings), source="selection", label=model.label)


def served_models(
    cache: Mapping[str, Any], feature_params: Mapping[str, Any], dataset: str, selection: Path | None = None
) -> tuple[ServedModel, ServedModel | None]:
    """(model of products with a history, model of products without fit rows or None) from the cache block."""
    ranker = str(cache.get("ranker") or SELECTED)
    settings = dict(cache.get("settings") or {})
    new_choice = str(cache.get("new_products") or "selected")
    if new_choice not in NEW_PRODUCTS_CHOICES:
        raise ValueError(
            f"params/cache.yaml: cache.new_products must be one of {NEW_PRODUCTS_CHOICES}, got {new_choice!r}"
        )
    path = selection or selection_path(dataset)
    chosen = read_selection(path) if SELECTED in (ranker, new_choice) else None
    if chosen is not None and ranker == SELECTED:
        if settings:
            raise ValueError(
                "params/cache.yaml: cache.settings is only for an explicit cache.ranker override; with `selected` the "
                f"settings come from {config.relative(path)}"
            )
        main = from_selected(chosen.products)
    else:
        params = explicit_params(ranker, cache, feature_params, settings)
        main = ServedModel(ranker=ranker, params=params, source="override")
    if new_choice == "none":
        return main, None
    if new_choice == "same" or chosen is None:
        return main, main
    return main, from_selected(chosen.new_products) if chosen.new_products is not None else None


def explicit_params(
    ranker: str, cache: Mapping[str, Any], feature_params: Mapping[str, Any], settings: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """make_ranker params of an explicitly named ranker: the cache seed, the features and `settings` (validated)."""
    params = {"seed": int(cache.get("seed", 0)), "features": dict(feature_params), **dict(settings or {})}
    make_ranker(ranker, params)  # unknown rankers and settings fail here, naming the key
    return params


def served_differences(manifest_ranker: str, manifest_params: Mapping[str, Any], selected: SelectedModel) -> list[str]:
    """How a built cache's model differs from the selection (ranker and every setting; empty when identical)."""
    if manifest_ranker != selected.ranker:
        return [f"ranker {manifest_ranker!r} instead of the selected {selected.ranker!r}"]
    served, chosen = dict(manifest_params), dict(selected.settings)
    return [
        f"{key}: {served.get(key)!r} instead of the selected {chosen.get(key)!r}"
        for key in sorted(set(served) | set(chosen))
        if served.get(key) != chosen.get(key)
    ]
