"""Why a customer is in a product's audience: a few machine-readable parts that add up to the served score.

Read from what the cache stores (``recsys.cache.facts``): every customer's facts (rows in the log, distinct
products, last dated event, the engagement value) and, for rankers that read names, the name index with the cached
products' token rows. Parts by ranker:

- ``content`` (score = w * affinity + (1 - w) * engagement): ``engagement`` = (1 - w) * engagement(u), and ``name``
  = the name-token affinity with the product name's tokens found in the customer's history, each with its share
  (the name index's evidence, ``recsys.features.name_index.NameIndex.evidence``);
- ``name_knn`` (score = w * neighbour signal + (1 - w) * engagement): ``engagement`` and ``similar_products``: the
  products most similar by name that the customer touched, each with its share;
- ``category_popularity`` / ``category_share`` (score = the customer's history in the product's inferred
  category): one ``category`` part (the score, the customer's rows in the category and the words that describe it);
  customers filled from the fallback order get a ``model`` part of 0;
- ``activity`` and products answered from the global order (cold start): one ``engagement`` part, weight 1;
- any other ranker (factor models, item-kNN, recency, popularity, BG/NBD, random): one ``model`` part equal to
  the score (no decomposition is claimed), next to the customer's facts.

``adds_up`` says whether the parts sum to the score (float32 precision); the tests check it for the decomposable
rankers and that every part is true of the log (tokens occur in the customer's history, counts match).
numpy and pydantic only; the name index (scipy) is loaded on the first explanation that needs it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from recsys.cache.lookup import NAMES_PREFIX, AudienceLookup, positions

MAX_SHARES = 5  # tokens / similar products listed per customer
SCORE_TOLERANCE = 1e-5  # relative (float32 scores)
EPOCH = dt.date(1970, 1, 1)


class Record(BaseModel):
    """Immutable reason record; unknown fields rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomerFacts(Record):
    """What the log says of the customer (the whole log the cache was built from)."""

    interactions: int
    products: int
    last_event: str | None  # ISO date of the last dated event (UTC); None when every event is undated
    engagement: float  # the engagement value the ranker blends (recsys.features.engagement)


class EngagementPart(Record):
    """weight x the customer's engagement value."""

    kind: Literal["engagement"] = "engagement"
    value: float
    weight: float


class TokenShare(Record):
    """One name token of the product found in the customer's history, and its share of the name part."""

    token: str
    value: float


class NamePart(Record):
    """The name-token affinity part of the score, and the tokens behind it (largest first, at most 5)."""

    kind: Literal["name"] = "name"
    value: float
    tokens: list[TokenShare]


class ProductShare(Record):
    """One product similar by name that the customer touched, and its share of the part."""

    product_id: int | str
    value: float


class SimilarProductsPart(Record):
    """The similar-products part of the score (name_knn), and the products behind it (largest first, at most 5)."""

    kind: Literal["similar_products"] = "similar_products"
    value: float
    products: list[ProductShare]


class CategoryPart(Record):
    """A category ranker's score: the customer's history in the product's inferred category.

    ``value`` is the score (category_popularity: the customer's rows in that category; category_share: their share
    of rows there x the chance they return); ``rows`` the customer's rows in the category; ``tokens`` the words
    that weigh most in the category (what it is).
    """

    kind: Literal["category"] = "category"
    value: float
    category: int
    rows: int
    tokens: list[str]


class ModelPart(Record):
    """A ranker whose score is not decomposed here: the whole score, from that model."""

    kind: Literal["model"] = "model"
    value: float
    ranker: str


Part = Annotated[
    EngagementPart | NamePart | SimilarProductsPart | CategoryPart | ModelPart, Field(discriminator="kind")
]


class Reasons(Record):
    """Why one customer is in one product's audience (module docstring)."""

    score: float
    parts: list[Part]
    adds_up: bool
    customer: CustomerFacts


def sig(x: float) -> float:
    """A float at float32 precision for JSON: 7 significant digits."""
    return float(f"{float(x):.7g}")


def day_text(day: int) -> str | None:
    """ISO date of a day number (days since 1970-01-01), None for -1."""
    return None if day < 0 else (EPOCH + dt.timedelta(days=int(day))).isoformat()


def adds_up(parts: Sequence[Any], score: float) -> bool:
    """True when the parts' values sum to the score at float32 precision."""
    total = float(sum(p.value for p in parts))
    return abs(total - score) <= SCORE_TOLERANCE * max(1.0, abs(score))


class Explainer:
    """Reasons for the pairs a cache serves (one per cache version: ``Explainer.of(lookup)``)."""

    def __init__(self, lookup: AudienceLookup) -> None:
        """Bind to a lookup; the name index is opened on first use."""
        info = lookup.manifest.reasons
        if info is None:
            raise ValueError(
                f"cache version {lookup.manifest.version} stores no reasons (built by the "
                f"{lookup.manifest.engine.name} engine without them): rebuild it with `recsys build-cache`"
            )
        self.lookup = lookup
        self.info = info
        self._names: Any = None
        self._tokens: Any = None

    @classmethod
    def of(cls, lookup: AudienceLookup) -> Explainer:
        """The lookup's explainer (created once and kept on the lookup)."""
        found = lookup.cached.get("explainer")
        if found is None:
            found = cls(lookup)
            lookup.cached["explainer"] = found
        return found

    def _name_index(self) -> tuple[Any, Any]:
        """(NameIndex, products x tokens rows of the known products), loaded on first use."""
        if self._names is None:
            import scipy.sparse as sp

            from recsys.features.name_index import NameIndex

            directory = self.lookup.cache_dir / self.lookup.manifest.lookup_dir
            self._names = NameIndex.load(directory, NAMES_PREFIX)
            rows = {
                k: np.load(directory / f"{NAMES_PREFIX}product_tokens_{k}.npy", mmap_mode="r")
                for k in ("indptr", "indices", "data")
            }
            shape = (len(self._names.product_ids), self._names.tokens.n_tokens)
            self._tokens = sp.csr_matrix((rows["data"], rows["indices"], rows["indptr"]), shape=shape, copy=False)
        return self._names, self._tokens

    def facts(self, codes: np.ndarray) -> list[CustomerFacts]:
        """The facts of customers by vocabulary code."""
        a = self.lookup.arrays
        inter = a["customer_interactions"][codes].tolist()
        prods = a["customer_products"][codes].tolist()
        days = a["customer_last_day"][codes].tolist()
        eng = a["customer_engagement"][codes].tolist()
        return [
            CustomerFacts(interactions=i, products=p, last_event=day_text(d), engagement=sig(e))
            for i, p, d, e in zip(inter, prods, days, eng, strict=True)
        ]

    def explain(self, product_id: Any, codes: np.ndarray, scores: np.ndarray) -> list[Reasons]:
        """Reasons of the customers (vocabulary codes) in a product's audience, with their served scores."""
        codes = np.asarray(codes, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float64)
        facts = self.facts(codes)
        known = self.lookup.known(product_id) and not self._cold(product_id)
        ranker = self.lookup.manifest.ranker
        if known and self.info.names in ("affinity", "neighbours") and self.info.name_weight is not None:
            parts = self._name_parts(product_id, codes)
        elif known and self.info.names == "category":
            parts = self._category_parts(product_id, codes, scores)
        elif not known or ranker == "activity":
            parts = [[EngagementPart(value=f.engagement, weight=1.0)] for f in facts]
        else:
            parts = [[ModelPart(value=float(s), ranker=ranker)] for s in scores]
        return [
            Reasons(score=sig(float(s)), parts=p, adds_up=adds_up(p, float(s)), customer=f)
            for s, p, f in zip(scores, parts, facts, strict=True)
        ]

    def _cold(self, product_id: Any) -> bool:
        """True when the cache answers the product from the global order."""
        _, _, cold = self.lookup.top(product_id, 0)
        return bool(cold)

    def _name_parts(self, product_id: Any, codes: np.ndarray) -> list[list[Any]]:
        """Engagement + name (or similar products) parts from the name index's evidence of the product's token row."""
        index, tokens = self._name_index()
        weight = float(self.info.name_weight or 0.0)
        at = positions(np.asarray(index.product_ids), np.asarray([product_id]))[0]
        users = positions(np.asarray(index.customer_ids), self.lookup.customer_ids(codes))
        if at < 0 or (users < 0).any():
            raise ValueError(f"product {product_id!r} or one of its customers is missing from the name index")
        vector = tokens[int(at)]
        nbrs = sims = np.zeros(0)
        if self.info.names == "neighbours":
            from recsys.features.name_index import top_neighbours

            _, nbrs, sims = top_neighbours(vector, index.token_products, index.meta.neighbours, np.asarray([at]))
        evidence = index.evidence(vector, users, weight, nbrs, sims)
        out: list[list[Any]] = []
        for ev in evidence:
            eng = EngagementPart(value=sig(ev.engagement), weight=sig(1.0 - weight))
            if ev.name <= 0.0:  # no name signal: the customer is here on engagement alone
                out.append([eng])
            elif self.info.names == "affinity":
                top = [TokenShare(token=t, value=sig(v)) for t, v in ev.tokens[:MAX_SHARES]]
                out.append([eng, NamePart(value=sig(ev.name), tokens=top)])
            else:
                pids = np.asarray(index.product_ids)
                shares = [ProductShare(product_id=pids[p].item(), value=sig(v)) for p, v in ev.products[:MAX_SHARES]]
                out.append([eng, SimilarProductsPart(value=sig(ev.name), products=shares)])
        return out

    def _category_index(self) -> Any:
        """The served category ranker's index (loaded on first use)."""
        if self._names is None:
            from recsys.features.name_index import load_name_index

            self._names = load_name_index(self.lookup.cache_dir / self.lookup.manifest.lookup_dir, NAMES_PREFIX)
        return self._names

    def _category_parts(self, product_id: Any, codes: np.ndarray, scores: np.ndarray) -> list[list[Any]]:
        """The category part of every customer (its score in the product's category; 0: from the fallback order)."""
        index = self._category_index()
        at = positions(np.asarray(index.product_ids), np.asarray([product_id]))[0]
        users = positions(np.asarray(index.customer_ids), self.lookup.customer_ids(codes))
        if at < 0 or (users < 0).any():
            raise ValueError(f"product {product_id!r} or one of its customers is missing from the category index")
        category = int(index.product_category[at])
        rows = index.category_rows(category, users)
        tokens = index.category_tokens(category)
        ranker = self.lookup.manifest.ranker
        out: list[list[Any]] = []
        for s, r in zip(scores.tolist(), rows.tolist(), strict=True):
            if r > 0:
                out.append([CategoryPart(value=sig(s), category=category, rows=int(r), tokens=tokens)])
            else:  # outside the category's list: the fallback order, score 0
                out.append([ModelPart(value=sig(s), ranker=ranker)])
        return out

    def explain_ids(self, product_id: Any, customer_ids: np.ndarray, scores: np.ndarray) -> list[Reasons]:
        """Reasons by customer id (the served top-n's ids)."""
        codes = positions(np.asarray(self.lookup.arrays["customer_vocab"]), customer_ids)
        if (codes < 0).any():
            raise ValueError("a served customer is missing from the cache's customer vocabulary")
        return self.explain(product_id, codes, scores)


def reason_text(r: Reasons) -> str:
    """One line for people: each part with its value and what is behind it, then the customer's facts."""
    bits = []
    for p in r.parts:
        if isinstance(p, EngagementPart):
            bits.append(f"engagement {p.value:.3g}")
        elif isinstance(p, NamePart):
            tokens = ", ".join(f"{t.token} {t.value:.2g}" for t in p.tokens)
            bits.append(f"name {p.value:.3g}" + (f" ({tokens})" if tokens else ""))
        elif isinstance(p, CategoryPart):
            words = ", ".join(p.tokens[:3])
            bits.append(f"category {p.category} ({words}): {p.rows} of their rows there, score {p.value:.3g}")
        elif isinstance(p, SimilarProductsPart):
            products = ", ".join(f"{q.product_id} {q.value:.2g}" for q in p.products)
            bits.append(f"similar products bought {p.value:.3g}" + (f" ({products})" if products else ""))
        else:
            bits.append(f"{p.ranker} score {p.value:.3g}")
    f = r.customer
    last = f"last {f.last_event}" if f.last_event else "no dated event"
    return " + ".join(bits) + f"; {f.interactions} interactions, {f.products} products, {last}"


def audience_reasons(
    lookup: AudienceLookup, product_ids: Sequence[Any], offsets: np.ndarray, codes: np.ndarray, scores: np.ndarray
) -> list[Reasons] | None:
    """Reasons of every row of CSR audiences (products in order, customers as vocabulary codes); None when the cache
    stores none."""
    if lookup.manifest.reasons is None:
        return None
    ex = Explainer.of(lookup)
    out: list[Reasons] = []
    for i, pid in enumerate(product_ids):
        a, b = int(offsets[i]), int(offsets[i + 1])
        if b > a:
            out += ex.explain(pid, codes[a:b], scores[a:b])
    return out
