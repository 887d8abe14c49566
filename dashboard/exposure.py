"""Exposure in the dashboard: each customer's served exposure count, the cache's exposure metrics, the cap what-if.

- ``ExposureCounts``: in how many served audiences (the cache's depth N) each customer is, computed once at load
  from the memory-mapped lookup arrays (``AudienceLookup.exposure_counts``: one bincount).
- ``exposure_panel_html``: the manifest's exposure metrics of the ranker's own top-N and of the served audiences,
  per k (``recsys.allocation.exposure.exposure_frame``), and the cap they were allocated under.
- The cap what-if (``cap_whatif``). The exact answer to "what if the cap were C" re-runs the joint allocation over
  the whole catalogue (tens of seconds at scale 1), so the dashboard answers per product and labels it an
  approximation: the other products' audiences are held at the served allocation; walking the product's own
  ranking (the what-if engine's ``Ranker.rescore``), a customer already in C or more other served audiences is
  held out and the next customer under the cap takes the slot. "Uncapped" is exact: the ranker's own top-n. A cap
  looser than the served one holds nobody out under this approximation (no customer is in more served audiences
  than the served cap), which the summary line says.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dashboard.audience import positions_in
from dashboard.explain import exposure_help
from recsys.allocation.exposure import exposure_frame
from recsys.cache.lookup import AudienceLookup
from recsys.cache.manifest import CacheManifest
from recsys.data.ids import id_array

SERVED = "served"  # the cap choice "as the cache was built"
UNCAPPED = "none"  # the cap choice "no cap" (the ranker's own top-n)
CapChoice = int | str  # SERVED, UNCAPPED or a cap >= 1
CAP_STEPS: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
MIN_DEPTH = 256  # first ranking depth the capped what-if walks (deepened by DEEPEN until n customers fit)
DEEPEN = 16  # measured at scale 1: scoring dominates a call, so few deep calls beat many shallow ones
Ranking = Callable[[int], tuple[np.ndarray, np.ndarray, bool]]  # depth -> (customer ids, scores, cold start)


@dataclass(frozen=True)
class ExposureCounts:
    """Served audiences per customer at the cache depth (customers in no audience are absent: count 0)."""

    customer_ids: np.ndarray  # ascending
    counts: np.ndarray

    @classmethod
    def from_lookup(cls, lookup: AudienceLookup | None) -> ExposureCounts:
        """The counts of an opened cache (empty without one)."""
        if lookup is None:
            return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        ids, counts = lookup.exposure_counts()
        return cls(id_array(ids), counts)

    def of(self, customer_ids: np.ndarray) -> np.ndarray:
        """Served exposure count of each customer (0 for customers in no served audience)."""
        pos = positions_in(self.customer_ids, customer_ids)
        return np.where(pos >= 0, self.counts[np.maximum(pos, 0)] if len(self.counts) else 0, 0).astype(np.int64)


def resolve_cap(choice: CapChoice, served_cap: int | None) -> int | None:
    """The cap a choice stands for: the served cap, None (uncapped) or the given cap (>= 1)."""
    if choice == SERVED:
        return served_cap
    if choice == UNCAPPED:
        return None
    if isinstance(choice, bool) or not isinstance(choice, int) or choice < 1:
        raise ValueError(f"a cap must be {SERVED!r}, {UNCAPPED!r} or an integer >= 1, got {choice!r}")
    return choice


def cap_options(served_cap: int | None) -> list[tuple[str, CapChoice]]:
    """Dropdown options: as served first, then uncapped (when the cache is capped), then the other caps."""
    served = "uncapped" if served_cap is None else f"cap {served_cap}"
    options: list[tuple[str, CapChoice]] = [(f"as served ({served})", SERVED)]
    if served_cap is not None:
        options.append(("uncapped (exact: the ranker's own top-n)", UNCAPPED))
    options += [(f"cap {c} (approximation)", c) for c in CAP_STEPS if c != served_cap]
    return options


@dataclass(frozen=True)
class CappedAudience:
    """The first n customers of a ranking under a cap, and whom the cap held out on the way."""

    customers: np.ndarray
    scores: np.ndarray
    held_out: np.ndarray  # ranked above the last chosen customer but already in >= cap other audiences (rank order)
    cold_start: bool
    depth: int  # how deep the ranking was walked


def capped_prefix(other: np.ndarray, cap: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions chosen, positions held out) of a ranking: the first n positions whose `other` exposures are below
    `cap`, and the positions at or over it before the last chosen one (all of them when fewer than n fit)."""
    ok = np.asarray(other) < cap
    chosen = np.flatnonzero(ok)[:n]
    end = int(chosen[-1]) + 1 if n > 0 and len(chosen) == n else len(ok)
    return chosen, np.flatnonzero(~ok[:end])


def cap_whatif(
    rank: Ranking, served_list: np.ndarray, counts: ExposureCounts, cap: int, n: int, max_depth: int
) -> CappedAudience:
    """A product's audience under `cap` with the other audiences held at the served allocation (an approximation).

    `rank(depth)` is the product's own ranking; `served_list` its served audience (full cache depth), whose entries
    do not count against the cap (they are this product's own slots). The ranking is deepened until n customers fit
    under the cap or every customer was seen (`max_depth`).
    """
    depth = max(DEEPEN * n, MIN_DEPTH)
    while True:
        depth = min(depth, max(max_depth, n))
        ranked, scores, cold = rank(depth)
        ranked = id_array(ranked)
        own = np.isin(ranked, id_array(served_list)) if len(served_list) else np.zeros(len(ranked), dtype=bool)
        other = counts.of(ranked) - own.astype(np.int64)
        chosen, held = capped_prefix(other, cap, n)
        if len(chosen) == n or len(ranked) < depth or depth >= max_depth:
            return CappedAudience(ranked[chosen], np.asarray(scores)[chosen], ranked[held], bool(cold), depth)
        depth *= DEEPEN


# ----------------------------------------------------------------------------------------------
# the cache's exposure metrics
# ----------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    """A metric value: integers (and floats from 1,000 up) with separators, other floats to 3 digits, '—' for None."""
    if value is None:
        return "—"
    if isinstance(value, int | np.integer) or abs(float(value)) >= 1000:
        return f"{float(value):,.0f}"
    return f"{float(value):.3g}"


def exposure_panel_html(manifest: CacheManifest) -> str:
    """The cap the cache was allocated under and its exposure metrics before (ranker's own top-N) and after."""
    alloc, exposure = manifest.allocation, manifest.exposure
    if alloc.max_exposures is None:
        cap = f"No frequency cap: every product's served audience is the ranker's own top {manifest.n}."
    else:
        cap = (
            f"Frequency cap: no customer is in more than <b>{alloc.max_exposures}</b> served audiences of depth "
            f"{alloc.depth} (allocated from each product's own top {manifest.candidate_depth})."
        )
    frame = exposure_frame({"before": exposure.uncapped.model_dump(), "after": exposure.served.model_dump()})
    flat = frame.reset_index()
    names = [str(metric).replace("_", " ") for metric in flat["metric"]]
    rows = "".join(
        f"<tr><td class='num'>{k}</td><td>{html.escape(name)}</td>"
        f"<td class='num'>{_cell(before)}</td><td class='num'>{_cell(after)}</td>"
        f"<td class='recsys-muted recsys-metric-help'>{html.escape(exposure_help(name))}</td></tr>"
        for k, name, before, after in zip(flat["k"], names, flat["before"], flat["after"], strict=True)
    )
    return (
        "<div class='recsys-exposure'><b>Exposure</b> <span class='recsys-muted'>(the cache's manifest: how often "
        f"each customer is targeted)</span><div>{cap}</div>"
        "<div class='recsys-muted recsys-explain'>An <b>exposure</b> is one audience a customer is in; k is how deep "
        "into each audience is counted (the top 10, or the whole list). <i>Ranker's own top-N</i>: the lists before "
        "the frequency cap; <i>served</i>: the lists the cache serves.</div>"
        "<table class='recsys-table'><tr><th>k</th><th>metric</th><th>ranker's own top-N</th><th>served</th>"
        "<th>what it means</th></tr>"
        f"{rows}</table><div class='recsys-muted'>reachable = {html.escape(exposure.reachable)}; Gini and p99 over "
        "the customers targeted at least once.</div></div>"
    )
