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

Algorithm (a bounded number of vectorised rounds; no Python loop over products or customers):

0. Shortcut: when the uncapped top-k already respects the cap it is returned unchanged (it is optimal).
1. Level. Step 3 hands customers out in the shared order, c slots each; the customer at which the open
   slots run out sets the level L (its shared score). A candidate edge is *specific* when its score
   beats scale_p * shared(u) (the customer is worth more to this product than to an arbitrary one) and
   *useful* when it also beats scale_p * L (the fill-in the product would otherwise get). Without a
   shared score model (factor rankers) every candidate edge is useful.
2. The useful edges go to the allocation's one solver (``recsys.allocation.solver.match``: greedy
   b-matching as product-proposing deferred acceptance; campaigns use the same), under the open slots and
   every customer's capacity left; at most ``MAX_ROUNDS`` rounds (holds are then final; both limits hold).
3. Fill from the shared order. Open slots are listed level by level (every product's first open slot,
   then its second, ...; products in a seeded random order within a level) and customers with capacity
   left, in the shared order, take consecutive runs of slots (run = capacity left, at most the number
   of open products): the stream. Excluded, already held and repeated pairs are dropped and retried in
   the next round with a new product order, until nothing changes. For global-order rankers this step
   alone is optimal: customers are used to their cap in descending score, products filled evenly.
4. Residual (phase ``residual``): what the stream cannot place is matched explicitly — every still-open
   product against the first customers with capacity (enough to skip its exclusions) — by the solver.
5. ``min_audience`` m: steps 1-4 run first to depth m, then to depth k on the capacity left, so every
   product reaches m before any product gets more; ValueError when sum_p min(m, allowed_p) > c x customers.

Phases kept by measurement (``benchmarks/bench_allocation.py --ablation``, synthetic log of scale 0.2, 40k
products, cap 50): the residual step fills the last open slots the stream leaves (1-2 of 4M at k = 100,
in 3 s of CPU at most); a score-aware window around the stream's places (+0.2 % total score for content at
k = 100 for +80 % CPU and +0.5 GiB) and one-swap repairs (no slot or score the residual step did not already
give) did not earn their time and were removed. On tiny, tight instances they mattered more: the LP gaps that
``tests/test_allocation.py`` bounds rose (global-order rankers: max 0.7 % -> 4.8 %, mean 0.05 % -> 0.39 %).

Where it can be suboptimal: greedy matching is a 1/2-approximation in the worst case (the gaps
measured against the exact LP are far smaller, see the tests); L is estimated once per pass before
step 2; candidates are only M deep, and the plain fill values pairs outside them by the shared order
(a lower bound for content, no model for als/bpr) and ignores per-product scales (cold-start products
value a fill-in more under content); no augmenting path is searched.

Complexity with E candidate edges, P products, U customers: one pass over E (classify), O(R log R) per
solver round over the R proposals and holds it touches, O(k P + S log S) per fill round over its S open
slots, one exact sort of the P k chosen pairs. Memory: the candidate arrays (int32 codes, float64 scores,
given), the useful edges' indices, a few int64 arrays per chosen pair.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recsys.allocation.arrays import first_k, in_sorted, list_order, rows_of
from recsys.allocation.solver import match
from recsys.arrays import gather_ranges, offsets_of
from recsys.rankers.base import Recommendations

MAX_ROUNDS = 1000  # deferred-acceptance rounds of the candidate phase (measured: 106 at scale 0.2; final after)
FILL_ROUNDS = 32  # water-fill rounds (each retries only the pairs the previous one dropped)
RESIDUAL_BUDGET = 4_000_000  # explicit (product, customer) pairs tried by the residual step
CHUNK = 1 << 22  # edges processed per vectorised step in the passes over every candidate edge
PARAM_KEYS = ("max_exposures", "min_audience")
OPTIONAL_PHASES: tuple[str, ...] = ("residual",)
PHASES: frozenset[str] = frozenset(OPTIONAL_PHASES)  # the phases run by default (benchmarks/bench_allocation.py)

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
        cls,
        params: Mapping[str, Any] | None,
        seed: int = 0,
        candidates: int = 300,
        where: str = "cache.allocation",
    ) -> AllocationParams:
        """Parse {max_exposures, min_audience} (unknown keys are an error); `candidates` is cache.candidates."""
        params = dict(params or {})
        unknown = sorted(set(params) - set(PARAM_KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; expected {list(PARAM_KEYS)}")
        cap = params.get("max_exposures")
        return cls(
            max_exposures=None if cap is None else _int(cap, f"{where}.max_exposures"),
            min_audience=_int(params.get("min_audience", 0), f"{where}.min_audience"),
            candidates=_int(candidates, "cache.candidates"),
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
        if self.candidates < k:
            raise ValueError(f"cache.candidates must be >= the audience depth k={k}, got {self.candidates}")

    def to_dict(self) -> dict[str, Any]:
        """The cap's settings as a JSON-friendly dict (the candidate depth is recorded on its own)."""
        return {"max_exposures": self.max_exposures, "min_audience": self.min_audience}


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
        basis=recs.basis,
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


def _match_pairs(state: _State, er: np.ndarray, eu: np.ndarray, ew: np.ndarray, want: np.ndarray) -> int:
    """Match explicit (row, customer, score) pairs with the solver under the open slots and capacity left; add them."""
    if len(er) == 0:
        return 0
    order = list_order(er, ew, eu, len(want))
    er, eu, ew = er[order], eu[order], ew[order]
    offsets = offsets_of(np.bincount(er, minlength=len(want)))
    found = match(offsets, eu, ew, want, state.capacity)
    state.add(er[found.edges], eu[found.edges])
    return int(len(found.edges))


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


def _residual(problem: Problem, state: _State, target: np.ndarray, excluded_per_row: np.ndarray) -> int:
    """Fill what the stream could not: explicit (open product, customer) pairs matched by the solver."""
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
    return _match_pairs(state, er, eu, ew, want)


# ----------------------------------------------------------------------------------------------
# solver
# ----------------------------------------------------------------------------------------------


def _excluded_per_row(problem: Problem) -> np.ndarray:
    """Excluded customers of every product."""
    return np.bincount(problem.excluded // np.int64(problem.n_customers), minlength=problem.n_products)


def solve(
    problem: Problem,
    k: int,
    max_exposures: int,
    min_audience: int = 0,
    seed: int = 0,
    phases: frozenset[str] = PHASES,
) -> Solution:
    """Allocate at most k customers per product and max_exposures products per customer (module docstring).

    `phases` names the optional fill phases to run (``PHASES``; the benchmark's ablation switches them off).
    """
    if k < 1 or max_exposures < 1 or not 0 <= min_audience <= k:
        raise ValueError(
            f"need k >= 1, max_exposures >= 1 and 0 <= min_audience <= k; got {k}, {max_exposures}, {min_audience}"
        )
    unknown = sorted(set(phases) - set(OPTIONAL_PHASES))
    if unknown:
        raise ValueError(f"unknown allocation phase(s) {unknown}; expected a subset of {list(OPTIONAL_PHASES)}")
    p, n = problem.n_products, problem.n_customers
    sizes = np.diff(problem.offsets)
    top = first_k(problem.offsets, k)
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
        useful_rows = rows_of(problem.offsets, useful)
        found = match(
            offsets_of(np.bincount(useful_rows, minlength=p)),
            problem.customers[useful],
            problem.scores[useful],
            slots,
            state.capacity,
            max_rounds=MAX_ROUNDS,
        )
        held = useful[found.edges]
        held_rows = useful_rows[found.edges]
        proposed = int(len(useful))
        del useful, useful_rows
        state.add(held_rows, problem.customers[held], held)
        filled, fill_rounds = _fill(problem, state, target, seed)
        residual = _residual(problem, state, target, excluded) if "residual" in phases else 0
        stats["passes"].append(
            {
                "depth": int(depth),
                "level": None if level == -np.inf else level,
                "proposal_edges": proposed,
                "da_rounds": found.rounds,
                "da_pairs": int(len(held)),
                "fill_rounds": fill_rounds,
                "fill_pairs": filled,
                "residual_pairs": residual,
                "open_slots": int(np.clip(target - state.count, 0, None).sum()),
            }
        )
    return _solution(problem, state.rows, state.codes, state.edges, state.values, stats)


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


def allocate(
    candidates: Recommendations, ranker: Any, k: int, params: AllocationParams, phases: frozenset[str] = PHASES
) -> Allocation:
    """Capped audiences of depth k from a fitted ranker's candidates (`ranker.rank(products, params.candidates)`)."""
    params.check(k)
    if params.max_exposures is None:
        return Allocation(truncate(candidates, k), {"capped": False, "k": int(k), **params.to_dict()})
    problem = problem_from_ranker(candidates, ranker)
    sol = solve(problem, k, params.max_exposures, params.min_audience, params.seed, phases)
    recs = Recommendations(
        product_ids=candidates.product_ids,
        offsets=offsets_of(sol.sizes),
        customer_ids=ranker.history_.customer_ids[sol.customers],
        scores=sol.scores,
        cold_start=candidates.cold_start,
    )
    return Allocation(recs, {"capped": True, "k": int(k), **params.to_dict(), **sol.stats})
