"""Rankers: for each product, which customers to target, best first (one engine for every stage).

- ``base``: the ``Ranker`` protocol, ``Recommendations`` (CSR result), the history index and global orders;
- ``engagement``: ``random``, ``activity``, ``recency``, ``popularity`` (one order for every product);
- ``names``: the token model of product names and the base of the rankers that read names;
- ``content``: name-token affinity blended with engagement;
- ``name_knn``: customers of the known products whose names are most similar;
- ``factor``: ``als`` and ``bpr`` (implicit);
- ``knn``: ``itemknn``, item-item cosine / BM25 neighbours (implicit) turned into product -> customers;
- ``bgnbd``: BG/NBD expected transactions (pymc-marketing, optional);
- ``registry``: ``make_ranker(name, params)``.
"""

from recsys.rankers.base import Ranker, Recommendations
from recsys.rankers.registry import available_rankers, make_ranker

__all__ = ["Ranker", "Recommendations", "available_rankers", "make_ranker"]
