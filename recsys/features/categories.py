"""Product categories inferred from name tokens, and their agreement with known categories.

The procedure is the same for every log, so its output on the synthetic log can be checked
against the generator's true categories: each product's name tokens (every name logged for it,
folded and split by ``recsys.features.text.tokenize_names``; digit runs such as sizes and model
numbers and tokens of a single product dropped) are weighted by TF-IDF (the content ranker's
``tfidf``), projected on their leading singular vectors (LSA), L2-normalised and grouped by
k-means. k-means is fitted on a seeded sample of products and then assigns every product, so the
cost stays flat as the catalogue grows. Products without any kept token get category -1 (unknown).
The fitted model (``CategoryModel``) also categorises names never logged: a new product's catalogue name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.cluster import KMeans
from sklearn.decomposition import TruncatedSVD
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.preprocessing import normalize
from threadpoolctl import threadpool_limits

from recsys.config import check_keys
from recsys.data.behaviour import UNKNOWN
from recsys.features.engagement import encode_ids
from recsys.features.name_index import CategoryModel, TokenModel
from recsys.features.name_matrix import product_token_matrix


@dataclass(frozen=True)
class CategoryParams:
    """Settings of the name-token category inference (params/explore.yaml: explore.categories)."""

    k: int = 32  # number of inferred categories
    components: int = 100  # LSA dimensions (at most the number of kept tokens - 1)
    fit_products: int = 20_000  # products k-means is fitted on (a seeded sample when there are more)
    n_init: int = 10  # k-means restarts; the best (lowest inertia) is kept
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("k", "components", "fit_products", "n_init"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"explore.categories.{key} must be >= 1, got {getattr(self, key)}")


def category_params_from(cfg: Mapping[str, Any] | None) -> CategoryParams:
    """CategoryParams from a params mapping (missing keys keep their defaults; unknown keys are an error)."""
    cfg = dict(cfg or {})
    check_keys(cfg, [f.name for f in fields(CategoryParams)], "explore.categories")
    return CategoryParams(**{k: int(v) for k, v in cfg.items()})


def name_token_model(interactions: pd.DataFrame) -> tuple[np.ndarray, TokenModel]:
    """Product ids (sorted) and the TF-IDF token model of their names over letter tokens shared by >= 2 products."""
    codes, product_ids = encode_ids(interactions["product_id"])
    x, vocab = product_token_matrix(interactions["product_name"], codes, len(product_ids))
    letters = ~pd.Series(vocab, dtype="string[pyarrow]").str.fullmatch(r"\d+").fillna(True).to_numpy(dtype=bool)
    shared = np.bincount(x.indices, minlength=x.shape[1]) >= 2
    kept = np.flatnonzero(letters & shared)
    return product_ids, TokenModel.from_matrix(sp.csr_matrix(x[:, kept]), np.asarray(vocab)[kept], x.shape[0])


def fit_categories(
    interactions: pd.DataFrame, params: CategoryParams | None = None
) -> tuple[pd.DataFrame, CategoryModel]:
    """(product_id, category of every product (-1 when the names give no token), the fitted model)."""
    params = params or CategoryParams()
    product_ids, tokens = name_token_model(interactions)
    weights = tokens.products
    category = np.full(len(product_ids), UNKNOWN, dtype=np.int64)
    named = np.flatnonzero(weights.getnnz(axis=1) > 0)
    n_tokens = weights.shape[1]
    k = min(params.k, len(named))
    if k >= 2 and n_tokens >= 2:
        rng = np.random.default_rng(params.seed)
        fit = (
            named
            if len(named) <= params.fit_products
            else np.sort(rng.choice(named, params.fit_products, replace=False))
        )
        with threadpool_limits(limits=1):
            svd = TruncatedSVD(min(params.components, n_tokens - 1), random_state=params.seed).fit(weights[fit])
            z = normalize(svd.transform(weights[fit]))
            km = KMeans(k, n_init=params.n_init, random_state=params.seed).fit(z)
        components = np.asarray(svd.components_, dtype=np.float64)
        centers = np.asarray(km.cluster_centers_, dtype=np.float64)
    else:
        components = np.zeros((0, n_tokens))
        centers = np.zeros((1 if len(named) else 0, 0))
    model = CategoryModel(TokenModel(tokens.vocab, tokens.idf, sp.csr_matrix((0, n_tokens))), components, centers)
    category[named] = model.assign(weights[named])  # the same assignment a new name gets
    return pd.DataFrame({"product_id": product_ids, "category": category}), model


def infer_categories(interactions: pd.DataFrame, params: CategoryParams | None = None) -> pd.DataFrame:
    """Inferred category (0..k-1, or -1 when the names give no token) of every product: product_id, category."""
    return fit_categories(interactions, params)[0]


def category_agreement(inferred: pd.DataFrame, truth: pd.DataFrame) -> dict[str, Any]:
    """ARI, NMI and purity of inferred vs known categories (products in both with a known inferred category)."""
    both = inferred.merge(truth.rename(columns={"category": "truth"}), on="product_id", how="inner")
    both = both[both["category"] != UNKNOWN]
    if both.empty:
        return {"products": 0, "ari": float("nan"), "nmi": float("nan"), "purity": float("nan")}
    labels, truth_codes = both["category"].to_numpy(), pd.factorize(both["truth"])[0]
    table = pd.crosstab(labels, truth_codes)
    return {
        "products": int(len(both)),
        "inferred_categories": int(both["category"].nunique()),
        "true_categories": int(both["truth"].nunique()),
        "ari": round(float(adjusted_rand_score(truth_codes, labels)), 4),
        "nmi": round(float(normalized_mutual_info_score(truth_codes, labels)), 4),
        "purity": round(float(table.max(axis=1).sum() / table.to_numpy().sum()), 4),
    }
