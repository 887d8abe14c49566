"""Capped audiences: per-product rankings turned into audiences where no customer is in more than `max_exposures` lists.

Problem. Products p (the requested lists) and customers u (the ranker's fitted customers). Choose pairs
x(p, u) in {0, 1} maximising the total score sum w(p, u) x(p, u) subject to: at most k customers per
product; at most c = ``max_exposures`` products per customer; never a customer who touched the product
in the fit data; each pair at most once. This is a bipartite b-matching; its LP relaxation is integral,
so small instances are solved exactly by scipy's HiGHS (``tests/test_allocation.py`` measures the gap).

Scores. w(p, u) is the ranker's score, seen through two inputs:

- the candidates: the ranker's own top-M list of every product (param ``candidates``, M >= k), exact;
- the shared order (``ranker.global_``) of every fitted customer with a per-product scale
  (``ranker.shared_scale``): scale_p * shared(u) is exactly the score of any allowed pair for the
  global-order rankers (random, activity, recency, bgnbd), a lower bound for ``content`` (its
  engagement part, affinity left out). Factor rankers (als, bpr) and itemknn have no such bound: their shared
  order (the cold-start order) only decides which customers fill slots the candidates cannot.

Scores written for chosen pairs are the ranker's exact scores: candidate scores, and for fill-ins
``ranker.score_pairs`` (content, als, bpr, itemknn) or the shared order (exact for global-order rankers).

Algorithm (a small bounded number of vectorised rounds; no Python loop over products or customers):

0. Shortcut: when the uncapped top-k already respects the cap it is returned unchanged (it is optimal).
1. Level. Step 3 hands customers out in the shared order, c slots each; the customer at which the open
   slots run out sets the level L (its shared score). A candidate edge is *specific* when its score
   beats scale_p * shared(u) (the customer is worth more to this product than to an arbitrary one) and
   *useful* when it also beats scale_p * L (the fill-in the product would otherwise get). Without a
   shared score model (factor rankers) every candidate edge is useful.
2. Deferred acceptance on the useful edges: customers propose, products hold. Each round every
   customer with capacity left proposes to its next best products (score, then a seeded hash on
   ties), every product keeps the best of what it holds plus the new proposals (up to its open
   slots, by its own rank) and rejects the rest. With one edge order on both sides the result is the
   greedy b-matching (edges by descending score, taken while both ends have room). A customer's list
   is cut to its best ``CUSTOMER_DEPTH * c`` edges and rounds stop at ``MAX_ROUNDS`` (holds are then
   final; every hold respects both capacities).
3. Fill from the shared order. Open slots are listed level by level (every product's first open slot,
   then its second, ...; products in a seeded random order within a level) and customers with capacity
   left, in the shared order, take consecutive runs of slots (run = capacity left, at most the number
   of open products): the stream.
   a. Score-aware window (rankers with ``score_pairs``): each slot of the stream may instead take one
      of the ``2 * WINDOW + 1`` customers around its place in it; these (slot, customer) pairs are
      scored exactly and matched by deferred acceptance (at most ``WINDOW_BUDGET`` pairs: the first
      slots of the stream, i.e. the lowest levels). Measured on the default data (content, k = 10,
      cap 50): +0.9 % total score for 8 s of CPU.
   b. Plain stream: excluded, already held and repeated pairs are dropped and retried in the next
      round with a new product order, until nothing changes. For global-order rankers this step
      alone is optimal: customers are used to their cap in descending score, products filled evenly.
   c. Residual: what the stream cannot place is matched explicitly: every still-open product against
      the first customers with capacity (enough to skip its exclusions), by deferred acceptance.
   d. Swaps: an open product o and a customer u with capacity that cannot meet (u excluded from o or
      already in it) are joined through a held pair (q, v): v moves to o, u takes v's place in q.
4. ``min_audience`` m: steps 1-3 run first to depth m, then to depth k on the capacity left, so every
   product reaches m before any product gets more; ValueError when sum_p min(m, allowed_p) > c x customers.

Where it can be suboptimal: greedy matching is a 1/2-approximation in the worst case (the gaps
measured against the exact LP are far smaller, see the tests); L is estimated once per pass before
step 2; candidates are only M deep, and the plain fill values pairs outside them by the shared order
(a lower bound for content, no model for als/bpr) and ignores per-product scales (cold-start products
value a fill-in more under content); longer augmenting paths than one swap are not searched.

Complexity with E candidate edges, P products, U customers: two passes over E (classify, pack), one
sort of the useful edges (then at most CUSTOMER_DEPTH * c per customer kept), O(R log R) per
deferred-acceptance round over the R proposals and holds it touches, O(k P + S log S) per fill round
over its S open slots, one exact sort of the P k chosen pairs. Memory: the candidate arrays (int32
codes, float64 scores, given), one uint64 per useful edge, a few int64 arrays per chosen pair.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recsys.arrays import gather_ranges, offsets_of, range_indices
from recsys.rankers.base import Recommendations

MAX_ROUNDS = 64  # deferred-acceptance rounds (holds are final after that)
FILL_ROUNDS = 32  # water-fill rounds (each retries only the pairs the previous one dropped)
CUSTOMER_DEPTH = 4  # a customer's proposal list is cut to CUSTOMER_DEPTH * max_exposures edges
RESIDUAL_BUDGET = 4_000_000  # explicit (product, customer) pairs tried by the residual and swap steps
SWAP_ROUNDS = 8  # rounds of one-swap repairs
SWAP_SAMPLES = 64  # held pairs tried per open slot in a swap round
WINDOW = 2  # score-aware fill: an open slot may take a customer up to this many places along the stream
WINDOW_BUDGET = 8_000_000  # (slot, customer) pairs the score-aware fill may score
CHUNK = 1 << 22  # edges processed per vectorised step in the passes over every candidate edge
PARAM_KEYS = ("max_exposures", "min_audience", "candidates")

PairScorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------------------------
# params
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllocationParams:
    """Frequency cap, minimum audience and candidate depth (params/cache.yaml: cache.allocation)."""

    max_exposures: int | None = None
    min_audience: int = 0
    candidates: int = 300
    seed: int = 0

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any] | None, seed: int = 0, where: str = "cache.allocation"
    ) -> AllocationParams:
        """Parse a params block ({max_exposures, min_audience, candidates}); unknown keys are an error."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(PARAM_KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; expected {list(PARAM_KEYS)}")
        cap = params.get("max_exposures")
        return cls(
            max_exposures=None if cap is None else _int(cap, f"{where}.max_exposures"),
            min_audience=_int(params.get("min_audience", 0), f"{where}.min_audience"),
            candidates=_int(params.get("candidates", 300), f"{where}.candidates"),
            seed=int(seed),
        )

    def check(self, k: int, where: str = "cache.allocation") -> None:
        """Raise ValueError naming the param when the settings cannot work at depth k."""
        if k < 1:
            raise ValueError(f"allocation depth k must be >= 1, got {k}")
        if self.max_exposures is not None and self.max_exposures < 1:
            raise ValueError(f"{where}.max_exposures must be >= 1 or null (uncapped), got {self.max_exposures}")
        if not 0 <= self.min_audience <= k:
            raise ValueError(f"{where}.min_audience must be in [0, k={k}], got {self.min_audience}")
        if self.max_exposures is not None and self.candidates < k:
            raise ValueError(f"{where}.candidates must be >= the audience depth k={k}, got {self.candidates}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-friendly dict."""
        return {"max_exposures": self.max_exposures, "min_audience": self.min_audience, "candidates": self.candidates}


def _int(value: Any, name: str) -> int:
    """An integer param, or a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------------------------
# the instance
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """A capped-allocation instance in customer codes 0..n_customers-1 (see the module docstring)."""

    n_customers: int
    offsets: np.ndarray  # (P+1,) candidate lists (CSR), each best first
    customers: np.ndarray  # (E,) candidate customer codes
    scores: np.ndarray  # (E,) candidate scores
    shared_order: np.ndarray  # customer codes in fill-in order, best first
    shared_scores: np.ndarray | None  # (U,) shared score per customer code; None = no score model
    scale: np.ndarray  # (P,) per-product factor of the shared score
    excluded: np.ndarray  # sorted keys row * n_customers + code of the pairs never allowed
    pair_scores: PairScorer | None = None  # exact score of (rows, codes); None = scale * shared score

    @property
    def n_products(self) -> int:
        """Number of product lists."""
        return int(len(self.offsets) - 1)


@dataclass
class Solution:
    """Chosen pairs in CSR (per product, best score first, ties by customer code) and run statistics."""

    sizes: np.ndarray
    customers: np.ndarray
    scores: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class Allocation:
    """Allocated audiences (same layout as the ranker's) and what the allocation did."""

    recommendations: Recommendations
    stats: dict[str, Any]


def truncate(recs: Recommendations, k: int) -> Recommendations:
    """The first k entries of every list."""
    keep = recs.ranks() <= k
    return Recommendations(
        product_ids=recs.product_ids,
        offsets=offsets_of(np.minimum(recs.sizes(), k)),
        customer_ids=np.asarray(recs.customer_ids)[keep],
        scores=np.asarray(recs.scores)[keep],
        cold_start=recs.cold_start,
    )


def customer_codes(customer_ids: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """int32 codes (positions in the sorted fitted ids) of customer ids; ValueError naming an unknown id."""
    ids = np.asarray(customer_ids)
    codes = np.empty(len(ids), dtype=np.int32)
    if len(ids) == 0:
        return codes
    dense = bool(ids.dtype.kind in "iu" and fitted.dtype.kind in "iu" and len(fitted) and fitted[0] >= 0)
    if dense and int(fitted[-1]) < max(2 * len(ids), 1 << 22):  # a lookup table of at most 2 ints per id
        lut = np.full(int(fitted[-1]) + 2, -1, dtype=np.int32)
        lut[fitted] = np.arange(len(fitted), dtype=np.int32)
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            codes[start : start + CHUNK] = lut[np.clip(chunk, -1, int(fitted[-1]) + 1)]
    else:
        index = pd.Index(fitted)
        for start in range(0, len(ids), CHUNK):
            codes[start : start + CHUNK] = index.get_indexer(ids[start : start + CHUNK])
    if (codes < 0).any():
        raise ValueError(f"candidate customer {ids[np.argmax(codes < 0)]!r} is not a fitted customer of the ranker")
    return codes


def problem_from_ranker(candidates: Recommendations, ranker: Any) -> Problem:
    """The instance of a fitted ranker's candidate lists: shared order, exclusions and pair scores from the ranker."""
    for attr in ("history_", "global_"):
        if not hasattr(ranker, attr):
            raise ValueError(
                f"allocation needs a fitted ranker with a shared order; {type(ranker).__name__} has no {attr}"
            )
    history, shared = ranker.history_, ranker.global_
    n = history.n_users
    pcodes = history.codes_of(candidates.product_ids)
    base = np.empty(n, dtype=np.float64)
    base[np.asarray(shared.order, dtype=np.int64)] = shared.scores
    scale_fn = getattr(ranker, "shared_scale", None)
    known = pcodes >= 0
    rows = np.repeat(np.flatnonzero(known), np.diff(history.indptr)[pcodes[known]])
    users = gather_ranges(history.users, history.indptr[pcodes[known]], history.indptr[pcodes[known] + 1]).astype(
        np.int64
    )
    scorer = getattr(ranker, "score_pairs", None)
    return Problem(
        n_customers=n,
        offsets=np.asarray(candidates.offsets, dtype=np.int64),
        customers=customer_codes(candidates.customer_ids, history.customer_ids),
        scores=np.asarray(candidates.scores, dtype=np.float64),
        shared_order=np.asarray(shared.order, dtype=np.int64),
        shared_scores=base if scale_fn is not None else None,
        scale=np.asarray(scale_fn(pcodes), dtype=np.float64) if scale_fn is not None else np.ones(len(pcodes)),
        excluded=np.sort(rows * np.int64(n) + users),
        pair_scores=None if scorer is None else (lambda r, u: scorer(pcodes[r], u)),
    )


# ----------------------------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------------------------


def mix64(keys: np.ndarray, seed: int) -> np.ndarray:
    """Seeded pseudo-random uint64 per key (splitmix64 finaliser): deterministic tie-breaks."""
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) + np.uint64((0x9E3779B97F4A7C15 * (int(seed) + 1)) % (1 << 64))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def in_sorted(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Membership of keys in a sorted key array."""
    if len(sorted_keys) == 0 or len(keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return np.asarray(sorted_keys[pos] == keys, dtype=bool)


def _run_position(sorted_values: np.ndarray) -> np.ndarray:
    """Position of each entry within its run of equal values (input sorted)."""
    n = len(sorted_values)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    start = np.ones(n, dtype=bool)
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=start[1:])
    idx = np.flatnonzero(start)
    return np.arange(n, dtype=np.int64) - np.repeat(idx, np.diff(np.append(idx, n)))


@dataclass
class _State:
    """What is allocated so far: flat pair arrays plus per-product counts and per-customer capacity left.

    Pairs are keyed ``position of the customer in the shared order * P + row``: the fill streams
    customers in that order, so its membership queries arrive almost sorted (searchsorted over 17M
    random keys was the bottleneck at depth 100; near-sorted queries measured several times faster).
    """

    problem: Problem
    position: np.ndarray  # (U,) rank of each customer code in the shared order
    n_products: int
    count: np.ndarray
    capacity: np.ndarray
    rows: np.ndarray
    codes: np.ndarray
    edges: np.ndarray  # candidate edge index of each pair, -1 when it is not a kept candidate score
    values: np.ndarray  # exact score of each pair
    held: np.ndarray  # sorted keys of the held pairs
    excluded: np.ndarray  # sorted keys of the excluded pairs

    @classmethod
    def empty(cls, problem: Problem, cap: int) -> _State:
        """Nothing allocated, every customer at full capacity."""
        p, n = problem.n_products, problem.n_customers
        position = np.empty(n, dtype=np.int64)
        position[problem.shared_order] = np.arange(n, dtype=np.int64)
        ex_rows, ex_codes = np.divmod(problem.excluded, np.int64(n))
        none = np.zeros(0, dtype=np.int64)
        return cls(
            problem,
            position,
            p,
            np.zeros(p, dtype=np.int64),
            np.full(n, cap, dtype=np.int64),
            none,
            none,
            none,
            np.zeros(0, dtype=np.float64),
            none,
            np.sort(position[ex_codes] * np.int64(p) + ex_rows),
        )

    def keys(self, rows: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Pair keys position(code) * P + row."""
        return np.asarray(self.position[codes] * np.int64(self.n_products) + rows, dtype=np.int64)

    def add(self, rows: np.ndarray, codes: np.ndarray, edges: np.ndarray | None = None) -> None:
        """Record new pairs (edges: their candidate edge index, -1 or None when not a candidate score)."""
        rows, codes = rows.astype(np.int64), codes.astype(np.int64)
        edges = np.full(len(rows), -1, dtype=np.int64) if edges is None else edges.astype(np.int64)
        self.rows, self.codes = np.concatenate([self.rows, rows]), np.concatenate([self.codes, codes])
        self.edges = np.concatenate([self.edges, edges])
        self.values = np.concatenate([self.values, pair_values(self.problem, rows, codes, edges)])
        self.count += np.bincount(rows, minlength=len(self.count))
        self.capacity -= np.bincount(codes, minlength=len(self.capacity))
        self.held = np.sort(np.concatenate([self.held, self.keys(rows, codes)]))

    def drop(self, index: np.ndarray) -> None:
        """Remove the pairs at `index`."""
        gone = np.zeros(len(self.rows), dtype=bool)
        gone[index] = True
        self.count -= np.bincount(self.rows[gone], minlength=len(self.count))
        self.capacity += np.bincount(self.codes[gone], minlength=len(self.capacity))
        self.rows, self.codes, self.edges = self.rows[~gone], self.codes[~gone], self.edges[~gone]
        self.values = self.values[~gone]
        self.held = np.sort(self.keys(self.rows, self.codes))

    def free(self, rows: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Pairs that are neither excluded nor held."""
        keys = self.keys(rows, codes)
        free: np.ndarray = ~(in_sorted(self.excluded, keys) | in_sorted(self.held, keys))
        return free

    def supply(self, problem: Problem) -> np.ndarray:
        """Customers with capacity left, in the shared order."""
        return np.asarray(problem.shared_order[self.capacity[problem.shared_order] > 0])


def _level(problem: Problem, state: _State, open_slots: int) -> float:
    """Shared score of the customer at which the fill would run out of open slots (-inf if it never does)."""
    if problem.shared_scores is None:
        return -np.inf
    order = state.supply(problem)
    j = int(np.searchsorted(np.cumsum(state.capacity[order]), open_slots))
    return float(problem.shared_scores[order[j]]) if j < len(order) else -np.inf


def rows_of(offsets: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Product row of candidate edge indices (CSR offsets)."""
    return np.searchsorted(offsets, edges, side="right") - 1


def _useful_edges(problem: Problem, level: float, state: _State) -> np.ndarray:
    """Indices of candidate edges worth proposing: specific (beat the shared score) and above the level."""
    out = []
    for start in range(0, len(problem.customers), CHUNK):
        sl = slice(start, start + CHUNK)
        u, w = problem.customers[sl], problem.scores[sl]
        r = rows_of(problem.offsets, np.arange(start, start + len(u), dtype=np.int64))
        keep = state.capacity[u] > 0
        if problem.shared_scores is not None:
            scale = problem.scale[r]
            keep &= (w > scale * problem.shared_scores[u]) & (w > scale * level)
        idx = np.flatnonzero(keep)
        if len(state.held) and len(idx):
            idx = idx[~in_sorted(state.held, state.keys(r[idx], u[idx]))]
        out.append(idx + start)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def descending_bits(scores: np.ndarray) -> np.ndarray:
    """uint64 whose ascending order is the descending order of the float64 scores (NaN-free input; -0.0 = 0.0)."""
    bits = (np.asarray(scores, dtype=np.float64) + 0.0).view(np.uint64)
    out = ~bits & np.uint64((1 << 63) - 1)
    negative = bits >= np.uint64(1 << 63)
    out[negative] = bits[negative]
    return out


def customer_lists(
    customers: np.ndarray,
    scores: np.ndarray,
    subset: np.ndarray,
    rows: Callable[[np.ndarray], np.ndarray],
    n_customers: int,
    depth: int,
    seed: int,
) -> np.ndarray:
    """The `subset` edges grouped by customer, each customer's best `depth` edges first (score, then a seeded hash).

    Packs (customer, score) into one uint64 per edge (the score keeps its top 64 - b bits, b = bits of
    the customer code), sorts the packed values to find every customer's depth-th best score, then
    argsorts only the edges at or above it, with 8 bits of the hash of (row, customer) in place of the
    lowest score bits (scores closer than ~2^-(44 - b) relative count as tied). Measured at 38M edges:
    a lexsort of every edge by (customer, -score, hash) took 5-10x longer and 2x the memory.
    """
    n = len(subset)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    shift = np.uint64(max(int(n_customers - 1).bit_length(), 1))
    packed = np.empty(n, dtype=np.uint64)
    for start in range(0, n, CHUNK):
        idx = subset[start : start + CHUNK]
        packed[start : start + CHUNK] = (customers[idx].astype(np.uint64) << (np.uint64(64) - shift)) | (
            descending_bits(scores[idx]) >> shift
        )
    ordered = np.sort(packed)
    bounds = offsets_of(np.bincount((ordered >> (np.uint64(64) - shift)).astype(np.int64), minlength=n_customers))
    cut = np.full(n_customers, np.iinfo(np.uint64).max, dtype=np.uint64)
    deep = np.diff(bounds) > depth
    cut[deep] = ordered[bounds[:-1][deep] + depth - 1]
    del ordered
    keep = np.flatnonzero(packed <= cut[(packed >> (np.uint64(64) - shift)).astype(np.int64)])
    edges = subset[keep]
    spare = np.uint64(min(8, int(64 - shift)))
    tie = mix64(rows(edges).astype(np.int64) * np.int64(n_customers) + customers[edges], seed)
    key = ((packed[keep] >> spare) << spare) | (tie >> (np.uint64(64) - spare))
    del packed
    order = np.argsort(key, kind="stable")
    edges = edges[order]
    return edges[_run_position(customers[edges]) < depth]


def _deferred_acceptance(
    cu: np.ndarray, cr: np.ndarray, cq: np.ndarray, slots: np.ndarray, capacity: np.ndarray
) -> tuple[np.ndarray, int]:
    """Customer-proposing deferred acceptance; returns (positions of the accepted edges, rounds).

    Edge i links customer cu[i] and product cr[i]; edges come grouped by customer, best first, and
    customers propose along them in that order; products rank proposals by cq (ascending) and hold at
    most slots[p]; customers hold at most capacity[u].
    """
    n_users, n_products = len(capacity), len(slots)
    cu, cr, cq = cu.astype(np.int64), cr.astype(np.int64), cq.astype(np.int64)
    span = np.int64(int(cq.max()) + 1 if len(cq) else 1)
    start = offsets_of(np.bincount(cu, minlength=n_users))
    ptr, end = start[:-1].copy(), start[1:]
    held = np.zeros(0, dtype=np.int64)
    held_u = np.zeros(n_users, dtype=np.int64)
    rounds = 0
    while rounds < MAX_ROUNDS:
        n_prop = np.clip(np.minimum(capacity - held_u, end - ptr), 0, None)
        active = np.flatnonzero(n_prop)
        if len(active) == 0:
            break
        rounds += 1
        new = range_indices(ptr[active], n_prop[active])
        ptr[active] += n_prop[active]
        held_u += np.bincount(cu[new], minlength=n_users)
        touched = np.zeros(n_products, dtype=bool)
        touched[cr[new]] = True
        hit = touched[cr[held]]
        contest = np.concatenate([held[hit], new])
        contest = contest[np.argsort(cr[contest] * span + cq[contest], kind="stable")]
        ok = _run_position(cr[contest]) < slots[cr[contest]]
        held_u -= np.bincount(cu[contest[~ok]], minlength=n_users)
        held = np.concatenate([held[~hit], contest[ok]])
    return held, rounds


def _level_slots(count: np.ndarray, want: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Open slots listed level by level (products in `perm` order within a level), as product rows."""
    prods = perm[want[perm] > 0]
    if len(prods) == 0:
        return np.zeros(0, dtype=np.int64)
    lo = count[prods]
    hi = lo + want[prods]
    return np.concatenate([prods[(lo <= level) & (level < hi)] for level in range(int(lo.min()), int(hi.max()))])


def _fill(problem: Problem, state: _State, target: np.ndarray, seed: int) -> tuple[int, int]:
    """Water-fill the open slots (up to `target` per product) from the shared order; returns (pairs, rounds)."""
    added = rounds = 0
    while rounds < FILL_ROUNDS:
        want = np.clip(target - state.count, 0, None)
        total = int(want.sum())
        supply = state.supply(problem)
        if total == 0 or len(supply) == 0:
            break
        rounds += 1
        run = np.minimum(state.capacity[supply], int((want > 0).sum()))
        m = min(int(np.searchsorted(np.cumsum(run), total)) + 1, len(supply))
        stream = np.repeat(supply[:m], run[:m])[:total]
        perm = np.random.default_rng([int(seed), rounds]).permutation(problem.n_products)
        slots = _level_slots(state.count, want, perm)[: len(stream)]
        stream = stream[: len(slots)]
        ordered = np.sort(state.keys(slots, stream))
        repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
        good = state.free(slots, stream) & ~in_sorted(repeated, state.keys(slots, stream))  # repeats retry next round
        if not good.any():
            break
        state.add(slots[good], stream[good])
        added += int(good.sum())
    return added, rounds


def _window_fill(problem: Problem, state: _State, target: np.ndarray, seed: int) -> int:
    """Score-aware fill (rankers with exact pair scores): each of the first open slots of the stream may take
    one of the 2 * WINDOW + 1 customers around its place in it, matched by exact scores; at most
    WINDOW_BUDGET (slot, customer) pairs are scored, the plain fill does the rest."""
    want = np.clip(target - state.count, 0, None)
    total = min(int(want.sum()), WINDOW_BUDGET // (2 * WINDOW + 1))
    supply = state.supply(problem)
    if total == 0 or len(supply) == 0 or problem.pair_scores is None:
        return 0
    run = np.minimum(state.capacity[supply], int((want > 0).sum()))
    m = min(int(np.searchsorted(np.cumsum(run), total)) + 1, len(supply))
    place = np.repeat(np.arange(m, dtype=np.int64), run[:m])[:total]
    perm = np.random.default_rng([int(seed), 0]).permutation(problem.n_products)
    slots = _level_slots(state.count, want, perm)[: len(place)]
    place = place[: len(slots)]
    reach = min(len(supply), m + WINDOW) - 1
    shifts = np.arange(-WINDOW, WINDOW + 1, dtype=np.int64)
    er = np.repeat(slots, len(shifts))
    eu = supply[np.clip(place[:, None] + shifts[None, :], 0, reach).ravel()]
    keys = state.keys(er, eu)
    _, first = np.unique(keys, return_index=True)
    first = first[state.free(er[first], eu[first])]
    er, eu = er[first], eu[first]
    ew = np.asarray(problem.pair_scores(er, eu), dtype=np.float64)
    order = list_order(er, ew, eu, problem.n_products)
    eq = np.empty(len(er), dtype=np.int64)
    eq[order] = _run_position(er[order])
    lists = customer_lists(eu, ew, np.arange(len(eu)), lambda e: er[e], problem.n_customers, len(er), seed)
    accepted, _ = _deferred_acceptance(eu[lists], er[lists], eq[lists], want, state.capacity)
    state.add(er[lists[accepted]], eu[lists[accepted]])
    return int(len(accepted))


def _residual(problem: Problem, state: _State, target: np.ndarray, excluded_per_row: np.ndarray, seed: int) -> int:
    """Fill what the stream could not: explicit (open product, customer) pairs matched by deferred acceptance."""
    want = np.clip(target - state.count, 0, None)
    open_rows = np.flatnonzero(want)
    supply = state.supply(problem)
    if len(open_rows) == 0 or len(supply) == 0:
        return 0
    width = int((want + state.count + excluded_per_row)[open_rows].max())
    width = max(1, min(len(supply), width, RESIDUAL_BUDGET // len(open_rows)))
    er = np.repeat(open_rows, width)
    position = np.tile(np.arange(width, dtype=np.int64), len(open_rows))
    eu = supply[position]
    ok = np.flatnonzero(state.free(er, eu))
    er, eu, position = er[ok], eu[ok], position[ok]
    if problem.shared_scores is not None:
        ew = problem.scale[er] * problem.shared_scores[eu]
    else:
        ew = -position.astype(np.float64)
    lists = customer_lists(eu, ew, np.arange(len(eu)), lambda e: er[e], problem.n_customers, width, seed)
    accepted, _ = _deferred_acceptance(eu[lists], er[lists], position[lists], want, state.capacity)
    state.add(er[lists[accepted]], eu[lists[accepted]])
    return int(len(accepted))


def _swap(problem: Problem, state: _State, target: np.ndarray, seed: int) -> int:
    """Fill open slots through one held pair: (q, v) -> (o, v) + (q, u) for open o and a customer u with capacity."""
    moved = 0
    for attempt in range(SWAP_ROUNDS):
        want = np.clip(target - state.count, 0, None)
        supply = state.supply(problem)
        n_held = len(state.rows)
        if not want.any() or len(supply) == 0 or n_held == 0:
            break
        o = np.repeat(np.flatnonzero(want), want[want > 0])
        width = min(n_held, SWAP_SAMPLES)
        o = o[: max(1, RESIDUAL_BUDGET // width)]
        u = supply[np.arange(len(o)) % len(supply)]
        rng = np.random.default_rng([int(seed), 7919, attempt])
        pick = (
            rng.permuted(np.tile(np.arange(n_held), (len(o), 1)), axis=1)[:, :width]
            if width == n_held
            else rng.integers(0, n_held, size=(len(o), width))
        )
        q, v = state.rows[pick], state.codes[pick]
        oo, uu = np.broadcast_to(o[:, None], pick.shape), np.broadcast_to(u[:, None], pick.shape)
        ok = (q != oo) & state.free(oo.ravel(), v.ravel()).reshape(pick.shape)
        ok &= state.free(q.ravel(), uu.ravel()).reshape(pick.shape)
        has = np.flatnonzero(ok.any(axis=1))
        col = np.argmax(ok[has], axis=1)
        pair, o, u = pick[has, col], o[has], u[has]
        q, v = state.rows[pair], state.codes[pair]
        keep = _unique_first(pair) & _unique_first(state.keys(o, v)) & _unique_first(state.keys(q, u))
        pair, o, u, q, v = pair[keep], o[keep], u[keep], q[keep], v[keep]
        within = _occurrence(u) < state.capacity[u]
        pair, o, u, q, v = pair[within], o[within], u[within], q[within], v[within]
        if len(pair) == 0:
            break
        state.drop(pair)
        state.add(np.concatenate([o, q]), np.concatenate([v, u]))
        moved += len(pair)
    return moved


def _unique_first(values: np.ndarray) -> np.ndarray:
    """True at the first occurrence of every value."""
    first = np.zeros(len(values), dtype=bool)
    first[np.unique(values, return_index=True)[1]] = True
    return first


def _occurrence(values: np.ndarray) -> np.ndarray:
    """Occurrence number (0, 1, ...) of every entry among the entries with the same value, in input order."""
    order = np.argsort(values, kind="stable")
    out = np.empty(len(values), dtype=np.int64)
    out[order] = _run_position(values[order])
    return out


# ----------------------------------------------------------------------------------------------
# solver
# ----------------------------------------------------------------------------------------------


def _excluded_per_row(problem: Problem) -> np.ndarray:
    """Excluded customers of every product."""
    return np.bincount(problem.excluded // np.int64(problem.n_customers), minlength=problem.n_products)


def solve(problem: Problem, k: int, max_exposures: int, min_audience: int = 0, seed: int = 0) -> Solution:
    """Allocate at most k customers per product and max_exposures products per customer (module docstring)."""
    if k < 1 or max_exposures < 1 or not 0 <= min_audience <= k:
        raise ValueError(
            f"need k >= 1, max_exposures >= 1 and 0 <= min_audience <= k; got {k}, {max_exposures}, {min_audience}"
        )
    p, n = problem.n_products, problem.n_customers
    sizes = np.diff(problem.offsets)
    top = range_indices(problem.offsets[:-1], np.minimum(sizes, k))
    exposures = np.bincount(problem.customers[top], minlength=n)
    excluded = _excluded_per_row(problem)
    allowed = n - excluded
    need = int(np.minimum(min_audience, allowed).sum())
    if need > n * max_exposures:
        raise ValueError(
            f"min_audience={min_audience} needs {need:,} exposures but {n:,} customers x max_exposures={max_exposures} "
            f"allow {n * max_exposures:,}: lower min_audience or raise max_exposures"
        )
    if len(exposures) == 0 or exposures.max() <= max_exposures:
        return _solution(
            problem,
            np.repeat(np.arange(p), np.minimum(sizes, k)),
            problem.customers[top].astype(np.int64),
            top,
            problem.scores[top],
            {"shortcut": True},
        )
    del top, exposures
    state = _State.empty(problem, max_exposures)
    stats: dict[str, Any] = {"shortcut": False, "passes": []}
    for depth in ([min_audience] if 0 < min_audience < k else []) + [k]:
        target = np.minimum(depth, allowed)
        slots = np.clip(target - state.count, 0, None)
        level = _level(problem, state, int(slots.sum()))
        useful = _useful_edges(problem, level, state)
        lists = customer_lists(
            problem.customers,
            problem.scores,
            useful,
            lambda e: rows_of(problem.offsets, e),
            n,
            CUSTOMER_DEPTH * max_exposures,
            seed,
        )
        del useful
        cr = rows_of(problem.offsets, lists)
        held, da_rounds = _deferred_acceptance(
            problem.customers[lists], cr, lists - problem.offsets[cr], slots, state.capacity
        )
        state.add(cr[held], problem.customers[lists[held]], lists[held])
        windowed = _window_fill(problem, state, target, seed)
        filled, fill_rounds = _fill(problem, state, target, seed)
        residual = _residual(problem, state, target, excluded, seed)
        swapped = _swap(problem, state, target, seed)
        stats["passes"].append(
            {
                "depth": int(depth),
                "level": None if level == -np.inf else level,
                "proposal_edges": int(len(lists)),
                "da_rounds": da_rounds,
                "da_pairs": int(len(held)),
                "window_pairs": windowed,
                "fill_rounds": fill_rounds,
                "fill_pairs": filled,
                "residual_pairs": residual,
                "swaps": swapped,
                "open_slots": int(np.clip(target - state.count, 0, None).sum()),
            }
        )
    return _solution(problem, state.rows, state.codes, state.edges, state.values, stats)


def list_order(rows: np.ndarray, scores: np.ndarray, codes: np.ndarray, n_rows: int) -> np.ndarray:
    """Permutation sorting pairs by row, then score descending, then code: exactly np.lexsort((codes, -scores, rows)).

    One argsort of a packed (row, top score bits) uint64, then an exact lexsort of the runs whose packed
    keys tie (equal or nearly equal scores within a row). Measured on 20M pairs: 3-6 s instead of 22 s.
    """
    if len(rows) == 0:
        return np.zeros(0, dtype=np.int64)
    shift = np.uint64(max(int(n_rows - 1).bit_length(), 1))
    key = (rows.astype(np.uint64) << (np.uint64(64) - shift)) | (descending_bits(scores) >> shift)
    order = np.argsort(key)
    key = key[order]
    tied = np.zeros(len(key), dtype=bool)
    same = key[1:] == key[:-1]
    tied[1:] |= same
    tied[:-1] |= same
    idx = np.flatnonzero(tied)
    if len(idx):
        sub = order[idx]
        order[idx] = sub[np.lexsort((codes[sub], -scores[sub], key[idx]))]
    return order


def pair_scores(problem: Problem, rows: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Exact score of (row, customer code) pairs: the ranker's pair scorer, else the shared score model."""
    if problem.pair_scores is not None:
        return np.asarray(problem.pair_scores(rows, codes), dtype=np.float64)
    if problem.shared_scores is not None:
        return np.asarray(problem.scale[rows] * problem.shared_scores[codes], dtype=np.float64)
    raise ValueError("pairs outside the candidate lists need pair_scores or shared_scores to be scored")


def pair_values(problem: Problem, rows: np.ndarray, codes: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Scores of pairs: the candidate score where `edges` names one (>= 0), else `pair_scores`."""
    values = np.empty(len(rows), dtype=np.float64)
    cand = edges >= 0
    values[cand] = problem.scores[edges[cand]]
    if not cand.all():
        values[~cand] = pair_scores(problem, rows[~cand], codes[~cand])
    return values


def _solution(
    problem: Problem, rows: np.ndarray, codes: np.ndarray, edges: np.ndarray, values: np.ndarray, stats: dict[str, Any]
) -> Solution:
    """Order the chosen pairs per product (best score first, ties by customer code)."""
    order = list_order(rows, values, codes, problem.n_products)
    rows, codes, values = rows[order], codes[order], values[order]
    sizes = np.bincount(rows, minlength=problem.n_products).astype(np.int64)
    from_candidates = int((edges >= 0).sum())
    stats = {
        **stats,
        "pairs": int(len(rows)),
        "from_candidates": from_candidates,
        "fill_ins": int(len(rows)) - from_candidates,
    }
    return Solution(sizes=sizes, customers=codes, scores=values, stats=stats)


def allocate(candidates: Recommendations, ranker: Any, k: int, params: AllocationParams) -> Allocation:
    """Capped audiences of depth k from a fitted ranker's candidates (`ranker.rank(products, params.candidates)`)."""
    params.check(k)
    if params.max_exposures is None:
        return Allocation(truncate(candidates, k), {"capped": False, "k": int(k), **params.to_dict()})
    problem = problem_from_ranker(candidates, ranker)
    sol = solve(problem, k, params.max_exposures, params.min_audience, params.seed)
    recs = Recommendations(
        product_ids=candidates.product_ids,
        offsets=offsets_of(sol.sizes),
        customer_ids=ranker.history_.customer_ids[sol.customers],
        scores=sol.scores,
        cold_start=candidates.cold_start,
    )
    return Allocation(recs, {"capped": True, "k": int(k), **params.to_dict(), **sol.stats})
