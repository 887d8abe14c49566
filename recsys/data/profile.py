"""Profile statistics of an interactions table, and the calibration table against the published profile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PROFILE_PATH = Path(__file__).resolve().parents[1] / "resources" / "case_study_profile.json"


def load_profile(path: Path | None = None) -> dict[str, Any]:
    """The published case-study profile (a copy of shared/case_study_profile.json ships with the package)."""
    path = path or PROFILE_PATH
    if not path.is_file():
        raise FileNotFoundError(f"published profile {path} not found ")
    profile: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return profile


def _pct(x: float) -> float:
    """A share as a percentage (4 decimals, so small shares keep their precision)."""
    return round(100.0 * float(x), 4)


def user_stats(df: pd.DataFrame) -> dict[str, Any]:
    """Interactions per user and the churn shares."""
    per_user = df.groupby("customer_id", observed=True, sort=False).size()
    prods_per_user = df.groupby("customer_id", observed=True, sort=False)["product_id"].nunique()
    n = len(per_user)
    return {
        "interactions_per_user": {
            "mean": round(float(per_user.mean()), 3),
            "std": round(float(per_user.std()), 3),
            "max": int(per_user.max()),
            "median": float(per_user.median()),
        },
        "one_time_users_pct": _pct((per_user == 1).sum() / n),
        "users_with_2_to_5_pct": _pct(((per_user >= 2) & (per_user <= 5)).sum() / n),
        "users_with_more_than_5_pct": _pct((per_user > 5).sum() / n),
        "users_touching_single_product_pct": _pct((prods_per_user == 1).sum() / n),
        "share_of_users_with_at_most_2_3_5_interactions_pct": [_pct((per_user <= k).sum() / n) for k in (2, 3, 5)],
    }


def product_stats(df: pd.DataFrame) -> dict[str, Any]:
    """Interactions per product, popularity concentration."""
    per_prod = df.groupby("product_id", observed=True, sort=False).size()
    users_per_prod = df.groupby("product_id", observed=True, sort=False)["customer_id"].nunique()
    sorted_counts = np.sort(per_prod.to_numpy())[::-1]
    top = int(np.ceil(0.2 * len(sorted_counts)))
    return {
        "interactions_per_product": {
            "mean": round(float(per_prod.mean()), 3),
            "std": round(float(per_prod.std()), 3),
            "median": float(per_prod.median()),
            "p75": float(per_prod.quantile(0.75)),
            "max": int(per_prod.max()),
        },
        "single_interaction_products_pct": _pct((per_prod == 1).sum() / len(per_prod)),
        "products_with_2_or_more_users": int((users_per_prod >= 2).sum()),
        "max_users_on_one_product": int(users_per_prod.max()),
        "top_20pct_products_share_of_interactions_pct": _pct(sorted_counts[:top].sum() / sorted_counts.sum()),
    }


def time_stats(df: pd.DataFrame) -> dict[str, Any]:
    """Daily volume and the recency shares over dated rows."""
    dates = df["event_date"].dropna()
    if dates.empty:
        return {"dated_rows": 0}
    end = dates.max()
    per_day = dates.dt.floor("D").value_counts()
    return {
        "dated_rows": int(len(dates)),
        "undated_rows": int(df["event_date"].isna().sum()),
        "undated_by_event": {
            str(k): int(v) for k, v in df.loc[df["event_date"].isna(), "event"].value_counts().items() if v
        },
        "first": dates.min().isoformat(),
        "last": end.isoformat(),
        "span_days": int((end - dates.min()).days),
        "interactions_per_day": {
            "mean": round(float(per_day.mean()), 1),
            "min": int(per_day.min()),
            "max": int(per_day.max()),
        },
        "share_in_last_30_60_90_days_pct": [_pct((dates > end - pd.Timedelta(days=d)).mean()) for d in (30, 60, 90)],
        "median_date": _date_quantile(dates, 0.5).isoformat(),
    }


def _date_quantile(dates: pd.Series, q: float) -> pd.Timestamp:
    """The q-quantile of a datetime Series."""
    # pandas-stubs types Series.quantile as a float; on datetimes it is a Timestamp
    return pd.Timestamp(dates.quantile(q))  # type: ignore[arg-type]


def split_cutoff(df: pd.DataFrame, quantile: float = 0.8) -> pd.Timestamp:
    """The train | test cutoff: the date quantile of dated rows (rows before it are early, the rest late)."""
    dates = df["event_date"].dropna()
    if dates.empty:
        raise ValueError("the log has no dated rows: a temporal split needs event dates")
    return _date_quantile(dates, quantile)


def split_stats(df: pd.DataFrame, quantile: float = 0.8) -> dict[str, Any]:
    """Users/products before and after the date quantile of dated rows (undated rows on neither side)."""
    dated = df.loc[df["event_date"].notna(), ["customer_id", "product_id", "event_date"]]
    cutoff = split_cutoff(dated, quantile)
    early = dated["event_date"] < cutoff
    eu, lu = pd.unique(dated.loc[early, "customer_id"]), pd.unique(dated.loc[~early, "customer_id"])
    ep, lp = pd.unique(dated.loc[early, "product_id"]), pd.unique(dated.loc[~early, "product_id"])
    returning = int(np.isin(np.asarray(lu), np.asarray(eu)).sum())
    new_products = int((~np.isin(np.asarray(lp), np.asarray(ep))).sum())
    return {
        "quantile": quantile,
        "cutoff": cutoff.isoformat(),
        "early_users": int(len(eu)),
        "late_users": int(len(lu)),
        "returning_users": returning,
        "retention_pct": _pct(returning / max(len(eu), 1)),
        "early_products": int(len(ep)),
        "late_products": int(len(lp)),
        "new_products_in_late": new_products,
        "new_products_pct": _pct(new_products / max(len(lp), 1)),
    }


def event_stats(df: pd.DataFrame) -> dict[str, Any]:
    """Rows, users and products per event."""
    g = df.groupby("event", observed=True)
    return {
        "event_counts": {str(k): int(v) for k, v in g.size().items()},
        "events_unique": {
            str(k): {"users": int(u), "products": int(p)}
            for k, u, p in zip(g.size().index, g["customer_id"].nunique(), g["product_id"].nunique(), strict=True)
        },
    }


def profile_stats(
    df: pd.DataFrame, prepare_summary: dict[str, Any] | None = None, split_quantile: float = 0.8
) -> dict[str, Any]:
    """Every statistic of the published profile, computed from a prepared (deduplicated) table."""
    n_users = df["customer_id"].nunique()
    n_products = df["product_id"].nunique()
    stats: dict[str, Any] = {
        "rows": int(len(df)),
        "unique_users": int(n_users),
        "unique_products": int(n_products),
        "sparsity": round(1.0 - len(df) / (n_users * n_products), 6),
        **event_stats(df),
        "users": user_stats(df),
        "products": product_stats(df),
        "time": time_stats(df),
        f"temporal_split_at_{int(round(split_quantile * 100))}pct_date_quantile": split_stats(df, split_quantile),
    }
    if prepare_summary:
        stats["raw_rows"] = int(prepare_summary["rows_in"])
        stats["rejected"] = dict(prepare_summary["rejected"])
    return stats


def _get(d: dict[str, Any], path: str) -> Any:
    """Value at a dotted path of a nested dict (list items by integer)."""
    cur: Any = d
    for part in path.split("."):
        cur = cur[int(part)] if isinstance(cur, list) else cur[part]
    return cur


# (metric, path in our stats, path in the published profile, kind): rel = ±5% relative, oom = same order of magnitude
CALIBRATION_METRICS: list[tuple[str, str, str, str]] = [
    ("raw rows", "raw_rows", "raw_file.rows", "rel"),
    ("rows after dedupe", "rows", "after_dedupe_on_customer_product_event_date.rows", "rel"),
    ("users", "unique_users", "after_dedupe_on_customer_product_event_date.unique_users", "rel"),
    ("products", "unique_products", "after_dedupe_on_customer_product_event_date.unique_products", "rel"),
    *[
        (f"events: {e}", f"event_counts.{e}", f"after_dedupe_on_customer_product_event_date.event_counts.{e}", "rel")
        for e in ("cart", "purchased", "wishlist", "search_keyword", "rating")
    ],
    ("one-time users %", "users.one_time_users_pct", "users.one_time_users_pct", "rel"),
    ("users with 2-5 interactions %", "users.users_with_2_to_5_pct", "users.users_with_2_to_5_pct", "rel"),
    ("users with >5 interactions %", "users.users_with_more_than_5_pct", "users.users_with_more_than_5_pct", "rel"),
    ("mean interactions per user", "users.interactions_per_user.mean", "users.interactions_per_user.mean", "rel"),
    (
        "users touching a single product %",
        "users.users_touching_single_product_pct",
        "users.users_touching_single_product_pct",
        "rel",
    ),
    (
        "single-interaction products %",
        "products.single_interaction_products_pct",
        "products.single_interaction_products_pct",
        "rel",
    ),
    (
        "top-20% products share %",
        "products.top_20pct_products_share_of_interactions_pct",
        "products.top_20pct_products_share_of_interactions_pct",
        "rel",
    ),
    (
        "max interactions on one product",
        "products.interactions_per_product.max",
        "products.interactions_per_product.max",
        "oom",
    ),
    ("max users on one product", "products.max_users_on_one_product", "products.max_users_on_one_product", "oom"),
    (
        "share in last 30 days %",
        "time.share_in_last_30_60_90_days_pct.0",
        "time.share_in_last_30_60_90_days_pct.0",
        "rel",
    ),
    (
        "share in last 60 days %",
        "time.share_in_last_30_60_90_days_pct.1",
        "time.share_in_last_30_60_90_days_pct.1",
        "rel",
    ),
    (
        "share in last 90 days %",
        "time.share_in_last_30_60_90_days_pct.2",
        "time.share_in_last_30_60_90_days_pct.2",
        "rel",
    ),
    ("date span (days)", "time.span_days", "raw_file.Event_Date", "days"),
    (
        "undated rows (all wishlist)",
        "time.undated_rows",
        "after_dedupe_on_customer_product_event_date.event_counts.wishlist",
        "rel",
    ),
    (
        "early users (80% split)",
        "temporal_split_at_80pct_date_quantile.early_users",
        "temporal_split_at_80pct_date_quantile.early_users",
        "rel",
    ),
    (
        "late users (80% split)",
        "temporal_split_at_80pct_date_quantile.late_users",
        "temporal_split_at_80pct_date_quantile.late_users",
        "rel",
    ),
    (
        "retention % (80% split)",
        "temporal_split_at_80pct_date_quantile.retention_pct",
        "temporal_split_at_80pct_date_quantile.retention_pct",
        "rel",
    ),
    (
        "late products (80% split)",
        "temporal_split_at_80pct_date_quantile.late_products",
        "temporal_split_at_80pct_date_quantile.late_products",
        "rel",
    ),
    (
        "new products % of late (80% split)",
        "temporal_split_at_80pct_date_quantile.new_products_pct",
        "temporal_split_at_80pct_date_quantile.new_products_pct",
        "rel",
    ),
]


def calibration_table(
    stats: dict[str, Any], profile: dict[str, Any], scale: float = 1.0, tolerance: float = 0.05
) -> pd.DataFrame:
    """Target vs got for every calibrated statistic; counts are scaled by `scale`, shares are not."""
    rows = []
    for metric, ours, theirs, kind in CALIBRATION_METRICS:
        try:
            got = float(_get(stats, ours))
        except (KeyError, IndexError):
            got = float("nan")  # e.g. raw rows when no prepare summary was given
        if kind == "days":
            target = 181.0
        else:
            target = float(_get(profile, theirs))
            is_count = "%" not in metric and "mean" not in metric and kind == "rel"
            if is_count or kind == "oom":
                target *= scale
        if kind == "oom":
            ok = 0.1 < got / target < 10.0 if target else False
            rule = "same order of magnitude"
        else:
            ok = abs(got - target) <= tolerance * abs(target)
            rule = f"±{tolerance:.0%}"
        undated_ok = True
        if metric.startswith("undated"):
            undated_ok = set(stats["time"].get("undated_by_event", {})) <= {"wishlist"}
        rows.append(
            {
                "metric": metric,
                "target": round(target, 3),
                "got": round(float(got), 3),
                "rel_diff_pct": round(100.0 * (got - target) / target, 2) if target else float("nan"),
                "rule": rule,
                "ok": bool(ok and undated_ok),
            }
        )
    return pd.DataFrame(rows)
