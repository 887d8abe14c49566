"""Campaign-ready audiences: exposure metrics of any set of audiences and capped allocation.

- ``exposure``: ``exposure_metrics(recs, ks, reachable=...)`` -> ``ExposureMetrics`` (JSON via ``to_dict``);
- ``allocate``: ``allocate(candidates, ranker, k, AllocationParams(...))`` -> ``Allocation`` (capped
  ``Recommendations`` + stats); ``solve(Problem, ...)`` is the array-level solver the tests check against an LP.
"""

from recsys.allocation.allocate import Allocation, AllocationParams, Problem, allocate, solve, truncate
from recsys.allocation.exposure import ExposureAtK, ExposureMetrics, exposure_metrics, gini

__all__ = [
    "Allocation",
    "AllocationParams",
    "ExposureAtK",
    "ExposureMetrics",
    "Problem",
    "allocate",
    "exposure_metrics",
    "gini",
    "solve",
    "truncate",
]
