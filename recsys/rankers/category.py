"""Category rankers: ``category_popularity``, ``category_share`` (inferred categories), ``truth_category`` (truth).

Both rank, for a product of category c, first the customers with history in c by a per-(customer,
category) score, then every other customer by a fallback order (score 0), the product's own and
excluded customers removed. The lists are indexed per category (CSR, best first), so a block of
products is ranked with gathers and searchsorted, no loop over products or customers.

- ``category_popularity``: c = the product's category inferred from the names of the fit rows
  (``recsys.features.categories.infer_categories``: TF-IDF + LSA + k-means, seeded). score(u, p) = the
  customer's fit rows in c; ties (and the fallback order) by the customer's fit rows, then last dated
  event (most recent first), then ascending id: ``popularity`` within the product's category. A product
  without fit rows, or whose names give no category, gets the ``popularity`` order (cold_start for the
  former). A source of the ``learned`` ranker.
- ``category_share``: c = the inferred category (as above); score(u, p) = share of the customer's fit rows
  in c x the return model's P(u active in the next ``horizon_days``) (``recsys.features.returns``, fitted
  on the fit rows only); ties and the fallback order by that probability, then ascending id. The
  ``truth_category`` formula with categories any log can infer: what the truth adds is the gap between them.
- ``truth_category``: the achievable reference of issue 20 on generated logs. c = the product's TRUE
  category from the generator's file (``categories_path``: a Parquet of product_id, category, e.g.
  ``data/raw/synthetic.categories.parquet``); score(u, p) = share of the customer's fit rows in c x the
  return model's P(u active in the next ``horizon_days``), as ``category_share``. A missing file, or a fit-row
  or requested product without a category in it, is an error (never a silent guess). Products without
  fit rows but with a true category are ranked in their category (cold_start True): the truth is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, cast

import numpy as np
import pandas as pd

from recsys import config
from recsys.arrays import cost_blocks, not_excluded, offsets_of, range_indices
from recsys.data.catalogue import Catalogue
from recsys.data.ids import id_array
from recsys.features.categories import CategoryParams, fit_categories
from recsys.features.name_index import CategoryIndex, CategoryModel, NameIndexMeta, names_blob
from recsys.features.returns import EventRows, ReturnModel, fit_return_model
from recsys.rankers.base import FixedRanker, GlobalOrder, History, Recommendations, ordered
from recsys.rankers.engagement import popularity_keys
from recsys.rankers.settings import (
    CategoryPopularitySettings,
    CategorySettings,
    CategoryShareSettings,
    RankerSettings,
    ShareReturnSettings,
    TruthCategorySettings,
)


@dataclass(frozen=True)
class CategoryLists:
    """Per category, the customers with a positive score, best first (CSR), and sorted (category, customer) keys."""

    indptr: np.ndarray
    users: np.ndarray
    scores: np.ndarray
    keys: np.ndarray  # sorted category * n_users + user of every entry
    key_scores: np.ndarray  # the entry's score, aligned with keys
    n_users: int

    @classmethod
    def build(
        cls,
        cats: np.ndarray,
        users: np.ndarray,
        scores: np.ndarray,
        ties: Sequence[np.ndarray],
        n_cats: int,
        n_users: int,
    ) -> CategoryLists:
        """Lists from unique (category, user, score) entries; ties by descending per-user `ties`, then by user."""
        keep = scores > 0
        cats, users, scores = cats[keep].astype(np.int64), users[keep].astype(np.int64), scores[keep]
        sort_keys = [users] + [-np.asarray(t)[users] for t in reversed(ties)] + [-scores, cats]
        order = np.lexsort(sort_keys)
        indptr = offsets_of(np.bincount(cats, minlength=n_cats))
        keys = cats * n_users + users
        by_key = np.argsort(keys, kind="stable")
        return cls(indptr, users[order], scores[order], keys[by_key], scores[by_key], n_users)

    def lookup(self, cats: np.ndarray, users: np.ndarray) -> np.ndarray:
        """Score of each (category, user) pair; 0 when the customer has none in the category (or category -1)."""
        cats = np.asarray(cats, dtype=np.int64)
        keys = cats * self.n_users + np.asarray(users, dtype=np.int64)
        out = np.zeros(len(keys), dtype=np.float64)
        if len(self.keys) == 0 or len(keys) == 0:
            return out
        pos = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        hit = (self.keys[pos] == keys) & (cats >= 0)
        out[hit] = self.key_scores[pos[hit]]
        return out

    def length(self, cats: np.ndarray) -> np.ndarray:
        """List length of each category (0 for -1)."""
        safe = np.maximum(cats, 0)
        return np.where(cats >= 0, self.indptr[safe + 1] - self.indptr[safe], 0).astype(np.int64)


def category_counts(
    cats_of_rows: np.ndarray, users: np.ndarray, n_users: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(category, user, rows) of every pair with rows, from per-row category codes (-1 rows dropped)."""
    known = cats_of_rows >= 0
    keys = cats_of_rows[known].astype(np.int64) * n_users + users[known]
    uniq, counts = np.unique(keys, return_counts=True)
    c, u = np.divmod(uniq, n_users)
    return c, u, counts.astype(np.float64)


def category_top(
    cats: np.ndarray,
    codes: np.ndarray,
    k: int,
    lists: CategoryLists,
    fallback: GlobalOrder,
    history: History,
    pair_keys: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sizes, customer codes, scores) of the best k per requested row: its category's list, then the fallback order.

    cats: category per row (-1: none); codes: history product code per row (-1: unseen, excludes nobody).
    """
    m = len(codes)
    n_users = history.n_users
    safe = np.maximum(codes, 0)
    n_excl = np.where(codes >= 0, history.indptr[safe + 1] - history.indptr[safe], 0)
    length = lists.length(cats)
    take = np.minimum(length, k + n_excl)
    row = np.repeat(np.arange(m, dtype=np.int64), take)
    idx = range_indices(lists.indptr[np.maximum(cats, 0)], take)
    users, scores = lists.users[idx], lists.scores[idx]
    keep = (codes[row] < 0) | not_excluded(pair_keys, codes[row] * n_users + users)
    row, users, scores = row[keep], users[keep], scores[keep]
    first = np.arange(len(row)) - np.searchsorted(row, row, side="left") < k
    row, users, scores = row[first], users[first], scores[first]
    need = k - np.bincount(row, minlength=m)
    short = np.flatnonzero(need > 0)
    parts = [(row, users, scores)]
    if len(short):
        depth = int(k + length[short].max())
        f_sizes, f_users, f_scores = fallback.top(codes[short], depth)
        f_row = np.repeat(short, f_sizes)
        f_users = f_users.astype(np.int64)
        outside = lists.lookup(cats[f_row], f_users) <= 0  # customers of the category list are already placed
        f_row, f_users, f_scores = f_row[outside], f_users[outside], f_scores[outside]
        rank = np.arange(len(f_row)) - np.searchsorted(f_row, f_row, side="left")
        fill = rank < need[f_row]
        parts.append((f_row[fill], f_users[fill], f_scores[fill]))
    all_rows = np.concatenate([p[0] for p in parts])
    order = np.argsort(all_rows, kind="stable")  # category entries first within a row, both parts already ranked
    return (
        np.bincount(all_rows, minlength=m).astype(np.int64),
        np.concatenate([p[1] for p in parts])[order],
        np.concatenate([p[2] for p in parts])[order].astype(np.float64),
    )


class CategoryRanker(FixedRanker):
    """Shared ranking of the category rankers: per-category lists, a fallback global order, blocks by cost."""

    uses_names = False
    name = "category"
    history_: History
    lists_: CategoryLists
    global_: GlobalOrder  # the fallback order (score 0)
    pair_keys_: np.ndarray
    product_category_: np.ndarray  # category code per indexed product (-1: none)

    def _check_fitted(self) -> None:
        """Raise a clear error when rank is called before fit."""
        if not hasattr(self, "lists_"):
            raise RuntimeError(f"ranker {self.name!r} is not fitted: call fit(interactions) first")

    def _chunk_entries(self) -> int:
        """Entries per vectorised block."""
        return int(self.params["chunk_entries"])

    def _request_categories(self, requested: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Category code of each requested product (-1: none)."""
        raise NotImplementedError

    def score_pairs(self, codes: np.ndarray, users: np.ndarray) -> np.ndarray:
        """The ranking score of each (product code, customer code) pair: its category score, else 0."""
        self._check_fitted()
        codes = np.asarray(codes, dtype=np.int64)
        cats = np.where(codes >= 0, self.product_category_[np.maximum(codes, 0)], -1)
        return self.lists_.lookup(cats, users)

    def rank(
        self, product_ids: np.ndarray | Sequence[Any], k: int, catalogue: Catalogue | None = None
    ) -> Recommendations:
        """Top-k customers per requested product: its category's list, then the fallback order (score 0).

        Rankers of inferred categories categorise a product without fit rows from its catalogue name (basis `name`;
        `no_known_token` when the name has no kept token, `no_name` without one: the fallback order).
        """
        self._check_fitted()
        requested = id_array(product_ids)
        h = self.history_
        codes = h.codes_of(requested)
        cats = self._request_categories(requested, codes)
        basis = self._basis(requested, codes, cats, catalogue)
        k = max(int(k), 0)
        safe = np.maximum(codes, 0)
        cost = np.where(codes >= 0, h.indptr[safe + 1] - h.indptr[safe], 0) + 2 * k + 1
        sizes = np.zeros(len(codes), dtype=np.int64)
        users: list[np.ndarray] = []
        scores: list[np.ndarray] = []
        if k > 0:
            for sl in cost_blocks(cost, self._chunk_entries()):
                s, u, v = category_top(cats[sl], codes[sl], k, self.lists_, self.global_, h, self.pair_keys_)
                sizes[sl] = s
                users.append(u)
                scores.append(v)
        user_codes = np.concatenate(users) if users else np.zeros(0, dtype=np.int64)
        return Recommendations(
            product_ids=requested,
            offsets=offsets_of(sizes),
            customer_ids=h.customer_ids[user_codes],
            scores=np.concatenate(scores) if scores else np.zeros(0, dtype=np.float64),
            cold_start=h.cold(codes),
            basis=basis,
        )

    def _basis(
        self, requested: np.ndarray, codes: np.ndarray, cats: np.ndarray, catalogue: Catalogue | None
    ) -> np.ndarray | None:
        """Per product why it was ranked so (None: the default, `names_unused` for cold starts); may set `cats`."""
        return None


class InferredCategoryRanker(CategoryRanker):
    """A category ranker over inferred categories: it reads a new product's catalogue name to categorise it."""

    uses_names = True
    category_model_: CategoryModel

    def _categories(
        self,
        interactions: pd.DataFrame,
        settings: CategorySettings,
        categories: pd.DataFrame | None,
        model: CategoryModel | None,
    ) -> pd.DataFrame:
        """The product categories (inferred here unless given) and the model that categorises new names."""
        if categories is None or model is None:
            categories, model = fit_categories(interactions, CategoryParams(**settings.model_dump()))
        self.category_model_ = model
        self.interactions_names_ = interactions[["product_id", "product_name", "event_date"]]  # names of the index
        return categories

    def name_index(self, label: str | None = None) -> CategoryIndex:
        """The fitted state that ranks a name never seen in the log, as memory-mappable arrays (the service's)."""
        self._check_fitted()
        h = self.history_
        customers = np.bincount(h.row_products, minlength=h.n_products)
        known = np.flatnonzero(self.product_category_ >= 0)
        order = known[np.lexsort((known, -customers[known], self.product_category_[known]))]
        n_cats = len(self.lists_.indptr) - 1
        names = Catalogue.from_interactions(self.interactions_names_).names_of(h.product_ids)
        blob, offsets = names_blob([n if isinstance(n, str) else "" for n in names])
        return CategoryIndex(
            meta=NameIndexMeta(ranker=self.name, label=label, method="category", weight=1.0, neighbours=0),
            model=self.category_model_,
            lists_indptr=np.asarray(self.lists_.indptr, dtype=np.int64),
            lists_users=np.asarray(self.lists_.users, dtype=np.int64),
            lists_scores=np.asarray(self.lists_.scores, dtype=np.float64),
            fallback_order=np.asarray(self.global_.order, dtype=np.int64),
            customer_ids=h.customer_ids,
            product_ids=h.product_ids,
            product_category=self.product_category_,
            category_products_indptr=offsets_of(
                np.bincount(self.product_category_[order], minlength=n_cats) if n_cats else np.zeros(0, dtype=np.int64)
            ),
            category_products=order.astype(np.int64),
            product_names=blob,
            product_name_offsets=offsets,
        )

    def _basis(
        self, requested: np.ndarray, codes: np.ndarray, cats: np.ndarray, catalogue: Catalogue | None
    ) -> np.ndarray | None:
        """Known products: history; cold ones: categorised from their catalogue name when it has a kept token."""
        cold = self.history_.cold(codes)
        basis = np.where(cold, "no_name", "history").astype(object)
        rows = np.flatnonzero(cold)
        if catalogue is None or len(rows) == 0:
            return basis
        names = catalogue.names_of(requested[rows])
        has = np.array([isinstance(n, str) for n in names], dtype=bool)
        rows, names = rows[has], names[has]
        if len(rows):
            found = self.category_model_.categories_of(list(names))
            cats[rows] = found
            basis[rows] = np.where(found >= 0, "name", "no_known_token")
        return basis


class CategoryPopularityRanker(InferredCategoryRanker):
    """Customers by their fit rows in the product's inferred category (popularity within the category)."""

    name = "category_popularity"
    settings_model = CategoryPopularitySettings

    def fit(
        self,
        interactions: pd.DataFrame,
        exclude: pd.DataFrame | None = None,
        categories: pd.DataFrame | None = None,
        category_model: CategoryModel | None = None,
    ) -> Self:
        """Infer categories from the fit rows' names (or take `categories` and `category_model`) and index the lists.

        `categories` (product_id, category) with its `category_model` lets a caller that already inferred them with
        the same settings on the same rows share the work (the ``learned`` ranker); products it lacks get -1.
        """
        settings = cast(CategoryPopularitySettings, self.settings)
        self.history_ = h = History.build(interactions, exclude)
        categories = self._categories(interactions, settings.categories, categories, category_model)
        self.product_category_ = product_category_codes(h, categories)
        rows, last = popularity_keys(interactions, h)
        c, u, n = category_counts(self.product_category_[h.row_products], h.row_users, h.n_users)
        n_cats = int(self.product_category_.max()) + 1 if len(self.product_category_) else 0
        self.lists_ = CategoryLists.build(c, u, n, (rows, last), max(n_cats, 0), h.n_users)
        self.global_ = GlobalOrder.build(ordered(rows, last), np.zeros(h.n_users), h)
        self.pair_keys_ = h.pair_keys()
        return self

    def _request_categories(self, requested: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Inferred category of known products with fit rows (-1 for cold ones)."""
        cold = self.history_.cold(codes)
        return np.where(cold, -1, self.product_category_[np.maximum(codes, 0)]).astype(np.int64)


def product_category_codes(history: History, categories: pd.DataFrame) -> np.ndarray:
    """Integer category (>= 0, or -1) of every indexed product, from a product_id, category table of int codes."""
    pos = pd.Index(categories["product_id"].to_numpy()).get_indexer(pd.Index(history.product_ids))
    values = categories["category"].to_numpy().astype(np.int64)
    out = np.where(pos >= 0, values[np.maximum(pos, 0)], -1).astype(np.int64)
    out[~history.signal] = -1  # products known only through exclusion rows carry no signal
    return out


def read_true_categories(path: str | Path) -> pd.DataFrame:
    """The generator's categories file (product_id, category), or a clear error naming the file and the fix."""
    resolved = config.resolve(path)
    if not resolved.is_file():
        raise FileNotFoundError(
            f"truth_category: categories file {config.relative(resolved)} not found; it is written by the generator "
            "(`dvc repro generate`, params/generate.yaml: generate.categories) and exists only for generated logs "
            "(params/prepare.yaml: datasets.<name>.categories)"
        )
    table = pd.read_parquet(resolved)
    missing = [c for c in ("product_id", "category") if c not in table.columns]
    if missing:
        raise ValueError(f"truth_category: {config.relative(resolved)} lacks column(s) {missing}")
    if not table["product_id"].is_unique:
        raise ValueError(f"truth_category: {config.relative(resolved)} repeats product ids")
    return table


class CategoryShareRanker(InferredCategoryRanker):
    """Share of the customer's fit rows in the product's inferred category x the return model's P(return)."""

    name = "category_share"
    settings_model: type[RankerSettings] = CategoryShareSettings

    def _share_settings(self) -> ShareReturnSettings:
        """The typed settings."""
        return cast(ShareReturnSettings, self.settings)

    def _product_categories(
        self, interactions: pd.DataFrame, categories: pd.DataFrame | None, model: CategoryModel | None
    ) -> np.ndarray:
        """Category code of every indexed product (inferred from the fit rows' names unless given)."""
        settings = cast(CategoryShareSettings, self.settings)
        table = self._categories(interactions, settings.categories, categories, model)
        return product_category_codes(self.history_, table)

    def fit(
        self,
        interactions: pd.DataFrame,
        exclude: pd.DataFrame | None = None,
        categories: pd.DataFrame | None = None,
        category_model: CategoryModel | None = None,
    ) -> Self:
        """Categories, the return model on the fit rows, then share x P(return) lists per category.

        `categories` (product_id, category codes) with its `category_model` lets a caller share an inference made
        with the same settings.
        """
        settings = self._share_settings()
        self.history_ = h = History.build(interactions, exclude)
        self.product_category_ = self._product_categories(interactions, categories, category_model)
        rows = EventRows.of(interactions)
        self.return_model_: ReturnModel = fit_return_model(rows, settings.returns, settings.horizon_days, settings.seed)
        p = self.return_model_.predict_at(rows)
        self.return_probability_ = p
        c, u, n = category_counts(self.product_category_[h.row_products], h.row_users, h.n_users)
        share = n / np.bincount(h.row_users, minlength=h.n_users)[u]
        n_cats = int(self.product_category_.max()) + 1 if len(self.product_category_) else 0
        self.lists_ = CategoryLists.build(c, u, share * p[u], (p,), max(n_cats, 0), h.n_users)
        self.global_ = GlobalOrder.build(ordered(p), np.zeros(h.n_users), h)
        self.pair_keys_ = h.pair_keys()
        return self

    def _request_categories(self, requested: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """Inferred category of known products with fit rows (-1 for cold ones)."""
        cold = self.history_.cold(codes)
        return np.where(cold, -1, self.product_category_[np.maximum(codes, 0)]).astype(np.int64)


class TruthCategoryRanker(CategoryShareRanker):
    """The achievable reference: share of the customer's history in the product's TRUE category x P(return)."""

    name = "truth_category"
    settings_model = TruthCategorySettings

    def _settings(self) -> TruthCategorySettings:
        """The typed settings."""
        return cast(TruthCategorySettings, self.settings)

    uses_names = False  # the truth needs no name: a new product is ranked in its true category

    def _basis(
        self, requested: np.ndarray, codes: np.ndarray, cats: np.ndarray, catalogue: Catalogue | None
    ) -> np.ndarray | None:
        """The default basis (cold products are ranked in their true category, not from a name)."""
        return None

    def _product_categories(
        self, interactions: pd.DataFrame, categories: pd.DataFrame | None, model: CategoryModel | None
    ) -> np.ndarray:
        """True category code of every product with fit rows (-1 for exclusion-only ones); a missing one raises."""
        settings = self._settings()
        if settings.categories_path is None:
            raise ValueError(
                "truth_category needs categories_path: the generator's categories file (params/prepare.yaml: "
                "datasets.<name>.categories); real logs have none"
            )
        table = read_true_categories(settings.categories_path)
        table = table[table["category"].notna()]
        codes, self.category_names_ = pd.factorize(table["category"], sort=True)
        self.truth_ = pd.Series(codes.astype(np.int64), index=pd.Index(table["product_id"].to_numpy()))
        h = self.history_
        fitted = h.product_ids[h.signal]
        pos = self.truth_.index.get_indexer(pd.Index(fitted))
        if (pos < 0).any():
            examples = ", ".join(str(p) for p in fitted[pos < 0][:5])
            raise ValueError(
                f"truth_category: {int((pos < 0).sum())} product(s) of the fit rows have no category in "
                f"{settings.categories_path} (e.g. {examples}); the file must come from the generator of this log"
            )
        out = np.full(h.n_products, -1, dtype=np.int64)
        out[np.flatnonzero(h.signal)] = self.truth_.to_numpy()[pos]
        return out

    def fit(
        self,
        interactions: pd.DataFrame,
        exclude: pd.DataFrame | None = None,
        categories: pd.DataFrame | None = None,
        category_model: CategoryModel | None = None,
    ) -> Self:
        """Read the true categories (never `categories`: the truth comes from the file only), then as category_share."""
        if categories is not None or category_model is not None:
            raise ValueError("truth_category reads its categories from categories_path only")
        return super().fit(interactions, exclude)

    def _request_categories(self, requested: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """True category of every requested product; a product without one is an error."""
        if len(requested) == 0:
            return np.zeros(0, dtype=np.int64)
        pos = self.truth_.index.get_indexer(pd.Index(requested))
        if (pos < 0).any():
            examples = ", ".join(str(p) for p in requested[pos < 0][:5])
            raise ValueError(
                f"truth_category: {int((pos < 0).sum())} requested product(s) have no true category "
                f"(e.g. {examples}) in {self._settings().categories_path}"
            )
        return self.truth_.to_numpy()[pos].astype(np.int64)
