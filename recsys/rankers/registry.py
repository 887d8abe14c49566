"""The ranker registry: ``make_ranker(name, params)`` builds any ranker the project has, by name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from recsys.rankers.base import Ranker
from recsys.rankers.bgnbd import BGNBDRanker
from recsys.rankers.category import CategoryPopularityRanker, CategoryShareRanker, TruthCategoryRanker
from recsys.rankers.content import ContentRanker
from recsys.rankers.engagement import ActivityRanker, PopularityRanker, RandomRanker, RecencyRanker
from recsys.rankers.factor import ALSRanker, BPRRanker
from recsys.rankers.knn import ItemKNNRanker
from recsys.rankers.learned import LearnedRanker
from recsys.rankers.name_knn import NameKNNRanker

RankerFactory = Callable[[Mapping[str, Any]], Ranker]
RANKERS: dict[str, RankerFactory] = {
    cls.name: cls
    for cls in (
        RandomRanker,
        ActivityRanker,
        RecencyRanker,
        PopularityRanker,
        ContentRanker,
        ALSRanker,
        BPRRanker,
        ItemKNNRanker,
        NameKNNRanker,
        BGNBDRanker,
        CategoryPopularityRanker,
        CategoryShareRanker,
        TruthCategoryRanker,
        LearnedRanker,
    )
}


def available_rankers() -> list[str]:
    """Names make_ranker accepts."""
    return sorted(RANKERS)


def make_ranker(name: str, params: Mapping[str, Any] | None = None) -> Ranker:
    """Build an unfitted ranker by name; params are the ranker's block (+ 'features', 'seed')."""
    if name not in RANKERS:
        raise ValueError(f"unknown ranker {name!r}; available: {available_rankers()} (params/cache.yaml: cache.ranker)")
    return RANKERS[name](dict(params or {}))
