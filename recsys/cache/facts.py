"""What the cache stores so every served pair can be explained (``recsys.reasons`` reads it), computed at build time.

- Customer facts (``FACT_ARRAYS``, aligned with the version's ``customer_vocab``): rows in the log
  (``customer_interactions``), distinct products touched (``customer_products``), the UTC day of the last dated
  event (``customer_last_day``, days since 1970-01-01; -1 when every event is undated) and the engagement value the
  ranker blends (``customer_engagement``, ``recsys.features.engagement`` under the ranker's feature params).
- For rankers that read names: the served ranker's index (a category ranker: its category index, the product
  categories and the per-category customer scores; content and name_knn: their name index,
  ``NameRanker.name_index``: vocabulary, idf, token postings, product customers, engagement), beside the lookup
  arrays with the file
  prefix ``NAMES_PREFIX`` (``recsys.features.name_index.NameIndex.load(version_dir, NAMES_PREFIX)`` reads it), plus
  the served products' own TF-IDF token rows (``<prefix>product_tokens_*``, the ranker's ``x_``: the vector a known
  product is scored with), so the name part of a known product's score is the index's evidence of that vector.

``Extras`` collects them; ``recsys.cache.writer`` writes and digests them with the version.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.cache.lookup import BY_NAME_PREFIX, NAMES_PREFIX, positions
from recsys.features.engagement import US_PER_DAY, EngagementModel, FeatureParams, timestamps_us
from recsys.features.name_index import AnyNameIndex

FACT_ARRAYS: tuple[str, ...] = (
    "customer_interactions",
    "customer_products",
    "customer_last_day",
    "customer_engagement",
)
META_NAME = "meta.json"
PRODUCT_TOKENS: tuple[str, ...] = ("product_tokens_indptr", "product_tokens_indices", "product_tokens_data")


@dataclass(frozen=True)
class Extras:
    """The reason arrays of one version: customer facts, and the name index with the products' token rows."""

    facts: Mapping[str, np.ndarray]
    names: AnyNameIndex | None = None  # the served ranker's index: a name-token index, or a category index
    product_tokens: sp.csr_matrix | None = None  # the known products' token rows (name-token indexes only)
    by_name: AnyNameIndex | None = None  # the new-products model's index (BY_NAME_PREFIX), for names never seen

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array by its file name relative to the version directory (sorted keys: the digest's order)."""
        return self._arrays

    @cached_property
    def _arrays(self) -> dict[str, np.ndarray]:
        """`arrays`, built once (the version digest and the writer both read them)."""
        out = {key: np.asarray(self.facts[key]) for key in FACT_ARRAYS}
        if self.names is not None:
            named = self.names.arrays()
            out.update({f"{NAMES_PREFIX}{key}": fixed_text(value) for key, value in named.items()})
        if self.names is not None and self.product_tokens is not None:
            m = self.product_tokens
            out.update(
                {
                    f"{NAMES_PREFIX}product_tokens_indptr": np.asarray(m.indptr, dtype=np.int64),
                    f"{NAMES_PREFIX}product_tokens_indices": np.asarray(m.indices, dtype=np.int64),
                    f"{NAMES_PREFIX}product_tokens_data": np.asarray(m.data, dtype=np.float64),
                }
            )
        if self.by_name is not None:
            out.update({f"{BY_NAME_PREFIX}{key}": fixed_text(value) for key, value in self.by_name.arrays().items()})
        return dict(sorted(out.items()))

    def meta_files(self) -> dict[str, str]:
        """The meta.json files of the indexes (file name -> text), in digest order."""
        out = {}
        if self.names is not None:
            out[f"{NAMES_PREFIX}{META_NAME}"] = self.names.meta.to_json()
        if self.by_name is not None:
            out[f"{BY_NAME_PREFIX}{META_NAME}"] = self.by_name.meta.to_json()
        return out

    def meta_text(self) -> str:
        """The indexes' meta.json texts, in digest order ('' without an index)."""
        return "".join(self.meta_files().values())

    def write(self, directory: Path) -> None:
        """Write every array (fsynced) and the name index's meta file into a version directory."""
        for key, array in self.arrays().items():
            with (directory / f"{key}.npy").open("wb") as fh:
                np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
                fh.flush()
                os.fsync(fh.fileno())
        for name, text in self.meta_files().items():
            (directory / name).write_text(text, encoding="utf-8")


def fixed_text(values: np.ndarray) -> np.ndarray:
    """Object arrays of str ids as fixed-width unicode (memory-mappable, no pickle); other arrays unchanged."""
    arr = np.asarray(values)
    if arr.dtype.kind != "O":
        return arr
    return arr.astype(str) if len(arr) else np.zeros(0, dtype="<U1")


def customer_facts(interactions: pd.DataFrame, features: Mapping[str, Any], vocab: np.ndarray) -> dict[str, np.ndarray]:
    """The fact arrays of every customer of `vocab` (sorted stored ids) from the log and the ranker's feature params."""
    model = EngagementModel.fit(interactions, FeatureParams.from_params(dict(features)))
    raw = model.raw
    ids = raw.index.to_numpy()
    at = positions(ids if ids.dtype.kind in "iu" else ids.astype(str), vocab)  # raw is indexed by sorted customer id
    if (at < 0).any():
        raise ValueError("a stored customer has no row in the interactions the cache was built from")
    us, dated = timestamps_us(raw["last_event_date"])
    last_day = np.where(dated, us // US_PER_DAY, -1)
    return {
        "customer_interactions": raw["total_interactions"].to_numpy()[at].astype(np.int32),
        "customer_products": raw["unique_products"].to_numpy()[at].astype(np.int32),
        "customer_last_day": last_day[at].astype(np.int32),
        "customer_engagement": model.engagement()[at].astype(np.float32),
    }


def ranker_extras(
    ranker: Any,
    interactions: pd.DataFrame,
    params: Mapping[str, Any],
    vocab: np.ndarray,
    by_name: AnyNameIndex | None = None,
    by_name_is_served: bool = False,
) -> Extras:
    """The reason arrays of a fitted ranker (facts always; the name index and token rows when it reads tokens) and the
    new-products model's index `by_name` (`by_name_is_served`: exported from this very ranker, so the served index is
    the same arrays without the label, not a second export)."""
    facts = customer_facts(interactions, params.get("features") or {}, vocab)
    token_index = hasattr(ranker, "x_")
    if not getattr(ranker, "uses_names", False) or not (token_index or hasattr(ranker, "category_model_")):
        return Extras(facts, by_name=by_name)
    if by_name_is_served and by_name is not None:
        served = replace(by_name, meta=replace(by_name.meta, label=None))
    else:
        served = ranker.name_index()
    return Extras(facts, served, sp.csr_matrix(ranker.x_) if token_index else None, by_name)
