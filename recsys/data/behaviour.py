"""Where a log sits on the generator's unpinned axes: category loyalty of returning customers.

Retention is the profile's (``split_stats``). Loyalty uses the same split: a returning customer is
active (dated rows) both before and after the cutoff. The observed share is the share of
returning customers whose post-cutoff activity touches a category of their pre-cutoff activity;
the chance share is the same share after pairing every customer's post-cutoff categories with
another returning customer's pre-cutoff categories (seeded random pairings: set sizes and
category shares kept, any link between the two sides broken). The chance-corrected loyalty
``(observed - chance) / (1 - chance)`` is 0 when customers return to a category no more often than
chance and 1 when every one returns to a category they know. The generator's ``category_loyalty``
(share of return visits sent to a category of an earlier visit, the rest to any category) gives
observed = loyalty + (1 - loyalty) * chance for a customer with one visit on each side, so the
corrected figure estimates it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

UNKNOWN = -1


def category_codes(interactions: pd.DataFrame, categories: pd.DataFrame) -> np.ndarray:
    """Category code of every row (-1 when its product has no known category in `categories`)."""
    lookup = categories.loc[categories["category"].notna(), ["product_id", "category"]]
    if lookup["category"].dtype.kind in "iu":
        lookup = lookup[lookup["category"] != UNKNOWN]
    index = pd.Index(lookup["product_id"].to_numpy())
    if not index.is_unique:
        raise ValueError("categories must give one category per product_id; found repeated product ids")
    codes, _ = pd.factorize(lookup["category"])
    if len(codes) == 0:  # no product has a known category (e.g. a log without names): every row is unknown
        return np.full(len(interactions), UNKNOWN, dtype=np.int64)
    pos = index.get_indexer(interactions["product_id"].to_numpy())
    return np.where(pos >= 0, codes[np.maximum(pos, 0)], UNKNOWN).astype(np.int64)


def overlap_share(
    pre_keys: np.ndarray, post_users: np.ndarray, post_cats: np.ndarray, n_cats: int, n_users: int
) -> float:
    """Share of users whose post-cutoff categories meet their pre-cutoff ones (keys = user * n_cats + category)."""
    hit = np.isin(post_users * n_cats + post_cats, pre_keys)
    return float(len(np.unique(post_users[hit])) / n_users) if n_users else float("nan")


def returning_category_loyalty(
    interactions: pd.DataFrame,
    categories: pd.DataFrame,
    cutoff: pd.Timestamp,
    permutations: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """Observed, chance and chance-corrected share of returning customers who come back to a category they know."""
    if permutations < 1:
        raise ValueError(f"permutations must be >= 1, got {permutations}")
    dated = interactions["event_date"].notna().to_numpy()
    cust = interactions["customer_id"].to_numpy()[dated]
    early = (interactions["event_date"] < cutoff).to_numpy()[dated]
    cat = category_codes(interactions.loc[dated], categories)
    users, ucode = np.unique(cust, return_inverse=True)
    returning = np.zeros(len(users), dtype=bool)
    returning[np.intersect1d(ucode[early], ucode[~early])] = True
    on_both = returning[ucode] & (cat != UNKNOWN)
    pre_u = np.zeros(len(users), dtype=bool)
    post_u = np.zeros(len(users), dtype=bool)
    pre_u[ucode[on_both & early]] = True
    post_u[ucode[on_both & ~early]] = True
    measured = np.flatnonzero(pre_u & post_u)  # returning users with a known category on both sides
    n = len(measured)
    result: dict[str, Any] = {
        "returning_users": int(returning.sum()),
        "measured_users": int(n),
        "rows_without_category": int((cat == UNKNOWN).sum()),
        "categories": int(len(np.unique(cat[cat != UNKNOWN]))),
    }
    if n == 0:
        return {
            **result,
            "observed": float("nan"),
            "chance": float("nan"),
            "loyalty": float("nan"),
            "loyalty_ci95": [float("nan"), float("nan")],
        }
    dense = np.full(len(users), -1, dtype=np.int64)
    dense[measured] = np.arange(n)
    rows = on_both & (dense[ucode] >= 0)
    n_cats = int(cat.max()) + 1
    pre = np.unique(dense[ucode[rows & early]] * n_cats + cat[rows & early])
    post = np.unique(dense[ucode[rows & ~early]] * n_cats + cat[rows & ~early])
    post_users, post_cats = np.divmod(post, n_cats)
    observed = overlap_share(pre, post_users, post_cats, n_cats, n)
    rng = np.random.default_rng(seed)
    chance = float(
        np.mean([overlap_share(pre, rng.permutation(n)[post_users], post_cats, n_cats, n) for _ in range(permutations)])
    )
    loyalty = (observed - chance) / (1.0 - chance) if chance < 1.0 else float("nan")
    half = 1.96 * np.sqrt(observed * (1.0 - observed) / n) / (1.0 - chance) if chance < 1.0 else float("nan")
    return {
        **result,
        "observed": round(observed, 4),
        "chance": round(chance, 4),
        "loyalty": round(float(loyalty), 4),
        "loyalty_ci95": [round(float(loyalty - half), 4), round(float(loyalty + half), 4)],
    }
