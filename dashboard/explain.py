"""The words next to every figure a business user sees: what a score, an exposure or a weight means.

Texts are built from what is loaded (the served ranker and its params, the cache's own scores, the current
weights), never from typed numbers: the scale of cold-start scores against product scores is measured on the cache
(``ScoreScale``), the weights' shares are computed from the sliders.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.cache.lookup import AudienceLookup

SCALE_SAMPLE = 256  # products (evenly spaced) whose top score gives the typical product-list scale; few pages read

EXPOSURE_HELP: dict[str, str] = {
    "distinct customers": "how many different customers appear in at least one audience",
    "max exposures": "the most audiences any one customer is in",
    "p99 exposures": "99% of targeted customers are in at most this many audiences",
    "mean exposures": "the average number of audiences a targeted customer is in",
    "gini": "how unequally audiences are shared among targeted customers: 0 = evenly, near 1 = a few take all",
    "gini reachable": "the same over every reachable customer, those never targeted counting 0",
    "reachable share": "share of the reachable customers (active on 2+ days) who are targeted at all",
    "mean jaccard": "average overlap of two products' top lists: 0 = different customers, 1 = the same",
}


@dataclass(frozen=True)
class ScoreScale:
    """The top score of the cold-start list and the median top score of product lists, measured on the cache."""

    cold_start_top: float | None
    product_top_median: float | None
    products_sampled: int

    @classmethod
    def measure(cls, lookup: AudienceLookup | None, sample: int = SCALE_SAMPLE) -> ScoreScale:
        """Read both scales from the cache (an evenly spaced sample of products; nothing when there is no cache)."""
        if lookup is None or len(lookup.product_ids()) == 0:
            return cls(None, None, 0)
        ids = lookup.product_ids()
        cold = lookup.top_global(1)[1]  # what an unknown product gets
        picks = np.unique(np.linspace(0, len(ids) - 1, min(sample, len(ids))).astype(np.int64))
        tops = [lookup.top(ids[i].item() if hasattr(ids[i], "item") else ids[i], 1)[1] for i in picks]
        values = np.array([float(t[0]) for t in tops if len(t)], dtype=np.float64)
        return cls(
            float(cold[0]) if len(cold) else None,
            float(np.median(values)) if len(values) else None,
            len(values),
        )


def score_formula(ranker: str | None, params: Mapping[str, Any]) -> str:
    """What the served ranker's score is, in words (the content ranker's blend with its weight)."""
    if ranker == "content":
        w = float(params.get("affinity_weight", 0.5))
        return (
            f"for a product in the log, {w:.2f} × name affinity (how much the customer's history shares this "
            f"product's name words) + {1 - w:.2f} × engagement; for a new product, engagement alone"
        )
    if ranker in ("activity", None):
        return "the customer's engagement: a weighted sum of five activity features, each scaled to 0–1"
    if ranker == "recency":
        return "how recently the customer was active (decayed)"
    if ranker == "popularity":
        return "the customer's engagement with popular products"
    return f"the {ranker} model's score"


def score_help_html(ranker: str | None, params: Mapping[str, Any], scale: ScoreScale) -> str:
    """The explanation shown with the audience: what the score is and why new-product scores are on another scale."""
    text = (
        "<b>score</b>: the ranker's estimate of fit, used to order the list — "
        f"{html.escape(score_formula(ranker, params))}. Compare scores within one list only."
    )
    if scale.cold_start_top is not None and scale.product_top_median is not None:
        text += (
            f" A new product (cold start) gets the ranker's global order, on another scale: its top score is "
            f"{scale.cold_start_top:.2f} while a product's list typically tops at {scale.product_top_median:.2f} "
            f"(median over {scale.products_sampled:,} products of the cache); a higher number there does not mean a "
            "better audience."
        )
    text += (
        " <b>exposures</b>: in how many of the served audiences (one per product, the cache's depth) the customer "
        "already is — high means they are targeted by many campaigns. <b>change</b>: in or out of the list, or "
        "rank moves, against the cached list."
    )
    return f"<div class='recsys-muted recsys-explain recsys-score-help'>{text}</div>"


def weights_help_html(
    weights: Mapping[str, float], labels: Mapping[str, str], changed: bool, total_as_cached: float | None
) -> str:
    """How the engagement weights combine: their sum, the sum they are rescaled to, each one's share, the state."""
    total = float(sum(float(v) for v in weights.values()))
    state = "changed: the audience is re-ranked live" if changed else "as cached"
    if total <= 0:
        return (
            "<div class='recsys-muted recsys-weights-note'>engagement weights are all 0: every customer's engagement "
            f"is 0, so engagement no longer orders anyone · {state}</div>"
        )
    shares = " · ".join(f"{html.escape(labels.get(k, k))} {float(v) / total:.0%}" for k, v in weights.items())
    rescale = (
        f"; they are relative: rescaled to sum to {total_as_cached:.2f} (the cached params' sum) before scoring, so "
        "engagement keeps the cached scale and only the shares count"
        if total_as_cached is not None and total_as_cached > 0
        else ""
    )
    return (
        f"<div class='recsys-muted recsys-weights-note'>engagement weights sum to {total:.2f}{rescale} ({shares}) · "
        f"{state}</div>"
    )


def exposure_help(metric: str) -> str:
    """What an exposure metric of the panel means ('' when unknown)."""
    return EXPOSURE_HELP.get(metric, "")
