"""The allocation's one solver: greedy b-matching of ranked candidate lists, vectorised as deferred acceptance.

Instance: product rows p (0..P-1), each with a candidate list of customer codes u (0..U-1) and scores, best
first (CSR: ``offsets``, ``codes``, ``scores``); at most ``slots[p]`` customers per product and at most
``capacity[u]`` products per customer (the cap). Goal: the edges of maximum total score within both limits.
A campaign's per-customer cap (``recsys.allocation.campaign``) and the catalogue-wide frequency cap
(``recsys.allocation.catalogue``) are both this problem.

Greedy: walk the edges in one global order — score descending, then position in the CSR arrays (the
product's request order, then its own list order) — and take an edge while both its ends have room. Its
result is computed as product-proposing deferred acceptance in which both sides rank edges by that same
order: with one order on both sides the stable b-matching is unique and equals the greedy one. Each round
every product with open slots proposes to its next candidates (as many as it has open slots); every customer
keeps the best of what it holds plus the new proposals, up to its capacity, and rejects the rest. The lists
are already in order, so nothing is sorted but the proposals of a round and the holds of the customers they
reach: a round costs O(R log R) over the R edges it touches. Rounds stop when no product has open slots and
an untried candidate (or after ``max_rounds``: holds are then final, still within both limits).

Quality: greedy b-matching is a 1/2-approximation in the worst case; on the instances the tests draw the gap
to the exact LP optimum (scipy HiGHS; the LP of bipartite b-matching is integral) is far smaller
(``tests/test_allocation.py`` bounds it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.allocation.arrays import block_rows, descending_bits, first_k, run_position
from recsys.arrays import offsets_of, range_indices


@dataclass(frozen=True)
class Matching:
    """Accepted edges (positions in the CSR arrays, ascending: per product, in list order) and the solver's rounds."""

    edges: np.ndarray
    rounds: int
    complete: bool  # False when max_rounds stopped the rounds (holds were then final)


def check_lists(offsets: np.ndarray, codes: np.ndarray, scores: np.ndarray) -> None:
    """Raise ValueError unless the CSR candidate lists are consistent (offsets, equal lengths, finite scores)."""
    if len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(codes) or np.any(np.diff(offsets) < 0):
        raise ValueError("candidate offsets are not a CSR index of the candidate arrays")
    if len(codes) != len(scores):
        raise ValueError(f"{len(codes)} candidate customers but {len(scores)} scores")
    if len(scores) and not np.isfinite(scores).all():
        raise ValueError("candidate scores must be finite")


def match(
    offsets: np.ndarray,
    codes: np.ndarray,
    scores: np.ndarray,
    slots: np.ndarray,
    capacity: np.ndarray,
    *,
    max_rounds: int | None = None,
) -> Matching:
    """Greedy b-matching of CSR candidate lists (each best first) under `slots` per row and `capacity` per code."""
    offsets = np.asarray(offsets, dtype=np.int64)
    check_lists(offsets, codes, scores)
    codes = np.asarray(codes, dtype=np.int64)
    slots = np.asarray(slots, dtype=np.int64)
    capacity = np.asarray(capacity, dtype=np.int64)
    rows = block_rows(offsets)
    order_bits = descending_bits(scores)
    ptr, end = offsets[:-1].copy(), offsets[1:]
    held = np.zeros(0, dtype=np.int64)
    count = np.zeros(len(slots), dtype=np.int64)
    rounds = 0
    while max_rounds is None or rounds < max_rounds:
        n_prop = np.clip(np.minimum(slots - count, end - ptr), 0, None)
        active = np.flatnonzero(n_prop)
        if len(active) == 0:
            return Matching(np.sort(held), rounds, True)
        rounds += 1
        new = range_indices(ptr[active], n_prop[active])
        ptr[active] += n_prop[active]
        count[active] += n_prop[active]
        touched = np.zeros(len(capacity), dtype=bool)
        touched[codes[new]] = True
        hit = touched[codes[held]]
        contest = np.concatenate([held[hit], new])
        contest = contest[np.lexsort((contest, order_bits[contest], codes[contest]))]
        ok = run_position(codes[contest]) < capacity[codes[contest]]
        count -= np.bincount(rows[contest[~ok]], minlength=len(slots))
        held = np.concatenate([held[~hit], contest[ok]])
    return Matching(np.sort(held), rounds, False)


def greedy_order(scores: np.ndarray) -> np.ndarray:
    """Edge positions in the solver's global order (score descending, then position): for references and tests."""
    return np.lexsort((np.arange(len(scores)), descending_bits(scores)))


@dataclass(frozen=True)
class Filled:
    """Chosen edges (positions in the CSR arrays, ascending) and how the solver got them."""

    edges: np.ndarray
    shortcut: bool  # the uncapped top-n already respected the cap (returned unchanged: it is optimal)
    rounds: list[int]  # deferred-acceptance rounds per pass (min_audience pass first)
    complete: bool


def fill_audiences(
    offsets: np.ndarray,
    codes: np.ndarray,
    scores: np.ndarray,
    n: int,
    cap: int,
    min_audience: int = 0,
    *,
    n_codes: int | None = None,
    max_rounds: int | None = None,
) -> Filled:
    """Audiences of at most n per product and at most `cap` per customer, maximising the total score (greedy).

    With ``0 < min_audience < n`` a first pass fills every product to min_audience, a second to n on the capacity
    left, so every product reaches min_audience (when its candidates and the cap allow) before any gets more.
    """
    if n < 1 or cap < 1 or not 0 <= min_audience <= n:
        raise ValueError(f"need n >= 1, cap >= 1 and 0 <= min_audience <= n; got {n}, {cap}, {min_audience}")
    offsets = np.asarray(offsets, dtype=np.int64)
    codes = np.asarray(codes, dtype=np.int64)
    n_codes = int(n_codes if n_codes is not None else (codes.max() + 1 if len(codes) else 0))
    top = first_k(offsets, n)
    if len(top) == 0 or np.bincount(codes[top], minlength=n_codes).max() <= cap:
        return Filled(top, True, [], True)
    held = np.zeros(0, dtype=np.int64)
    rounds: list[int] = []
    complete = True
    n_rows = len(offsets) - 1
    rows = block_rows(offsets)
    for depth in ([min_audience] if 0 < min_audience < n else []) + [n]:
        left = cap - np.bincount(codes[held], minlength=n_codes)
        free = np.ones(len(codes), dtype=bool)
        free[held] = False
        keep = np.flatnonzero(free & (left[codes] > 0))
        count = np.bincount(rows[held], minlength=n_rows)
        sub = offsets_of(np.bincount(rows[keep], minlength=n_rows))
        slots = np.clip(depth - count, 0, None)
        found = match(sub, codes[keep], scores[keep], slots, left, max_rounds=max_rounds)
        held = np.concatenate([held, keep[found.edges]])
        rounds.append(found.rounds)
        complete &= found.complete
    return Filled(np.sort(held), False, rounds, complete)
