"""Product categories inferred from name tokens, and their agreement with known categories.

The procedure is the same for every log, so its output on the synthetic log can be checked
against the generator's true categories: each product's name tokens (every name logged for it,
folded and split by ``recsys.features.text.tokenize_names``; digit runs such as sizes and model
numbers and tokens of a single product dropped) are weighted by TF-IDF (the content ranker's
``tfidf``), projected on their leading singular vectors (LSA), L2-normalised and grouped by
k-means. k-means is fitted on a seeded sample of products and then assigns every product, so the
cost stays flat as the catalogue grows. Products without any kept token get category -1 (unknown).
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
from recsys.features.name_matrix import product_token_matrix, tfidf


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


def name_token_weights(interactions: pd.DataFrame) -> tuple[np.ndarray, sp.csr_matrix]:
    """Product ids (sorted) and their TF-IDF rows over letter tokens shared by at least two products."""
    codes, product_ids = encode_ids(interactions["product_id"])
    x, vocab = product_token_matrix(interactions["product_name"], codes, len(product_ids))
    letters = ~pd.Series(vocab, dtype="string[pyarrow]").str.fullmatch(r"\d+").fillna(True).to_numpy(dtype=bool)
    shared = np.bincount(x.indices, minlength=x.shape[1]) >= 2
    kept = sp.csr_matrix(x[:, np.flatnonzero(letters & shared)])
    return product_ids, tfidf(kept)


def infer_categories(interactions: pd.DataFrame, params: CategoryParams | None = None) -> pd.DataFrame:
    """Inferred category (0..k-1, or -1 when the names give no token) of every product: product_id, category."""
    params = params or CategoryParams()
    product_ids, weights = name_token_weights(interactions)
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
        rows = weights[named]
        with threadpool_limits(limits=1):
            svd = TruncatedSVD(min(params.components, n_tokens - 1), random_state=params.seed).fit(weights[fit])
            z = normalize(svd.transform(rows))
            fit_rows = np.searchsorted(named, fit)
            km = KMeans(k, n_init=params.n_init, random_state=params.seed).fit(z[fit_rows])
            category[named] = km.predict(z)
    elif len(named):
        category[named] = 0
    return pd.DataFrame({"product_id": product_ids, "category": category})


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
