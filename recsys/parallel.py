"""Worker pools: the one way the package spreads independent, deterministic jobs over the machine's cores.

Used where a stage left a core idle (measured on the project's 2-core machine): ranking the catalogue by blocks
(content, item-kNN), the exposure caps of the trade-off, the points of the sensitivity sweep. Every job is
independent and seeded, and results come back in input order, so they never depend on the number of processes.

Two start methods. ``fork``: workers inherit the shared state (a fitted ranker, a context of arrays), so
nothing large is pickled; only for jobs that run numpy / scipy, because GNU OpenMP (implicit's ALS) is not
fork-safe once the parent has used it (a forked child that starts OpenMP threads hangs). ``spawn``: fresh
interpreters that receive the shared state pickled once per worker; for jobs that fit models. Falls back to
the calling process with one process or one item, inside a daemonic pool worker (no nested pools), or where
the start method is unavailable.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal, TypeVar

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

_SHARED: Any = None  # what forked workers inherit while a pool runs (never pickled)


def check_processes(value: Any, key: str) -> int:
    """A processes param, validated: an integer >= 1 (the error names `key`)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
    return value


def can_start(method: str) -> bool:
    """Whether this process may start a pool with `method` (available here, not itself a daemonic pool worker)."""
    return method in mp.get_all_start_methods() and not mp.current_process().daemon


def _set_shared(shared: Any) -> None:
    """Spawned worker initialiser: the shared state, received once."""
    global _SHARED
    _SHARED = shared


def _call(job: tuple[Callable[[Any, Any], Any], Any]) -> Any:
    """Worker entry: the job's function on the inherited shared state and its item."""
    fn, item = job
    return fn(_SHARED, item)


def pool_imap(
    fn: Callable[[S, T], R],
    items: Sequence[T],
    processes: int,
    shared: S,
    *,
    start: Literal["fork", "spawn"] = "fork",
    fresh_workers: bool = False,
) -> Iterator[R]:
    """fn(shared, item) for every item, in order, in up to `processes` workers (`fn` must be module-level).

    `fresh_workers` gives every item a new worker (memory returned to the system after each heavy job).
    """
    global _SHARED
    n = min(check_processes(processes, "processes"), len(items))
    if n <= 1 or not can_start(start):
        for item in items:
            yield fn(shared, item)
        return
    jobs = [(fn, item) for item in items]
    tasks = 1 if fresh_workers else None
    if start == "spawn":
        with mp.get_context("spawn").Pool(n, _set_shared, (shared,), maxtasksperchild=tasks) as pool:
            yield from pool.imap(_call, jobs, chunksize=1)
        return
    previous, _SHARED = _SHARED, shared
    try:
        with mp.get_context("fork").Pool(n, maxtasksperchild=tasks) as pool:
            yield from pool.imap(_call, jobs, chunksize=1)
    finally:
        _SHARED = previous


def pool_map(
    fn: Callable[[S, T], R],
    items: Sequence[T],
    processes: int,
    shared: S,
    *,
    start: Literal["fork", "spawn"] = "fork",
    fresh_workers: bool = False,
) -> list[R]:
    """pool_imap collected into a list."""
    return list(pool_imap(fn, items, processes, shared, start=start, fresh_workers=fresh_workers))
