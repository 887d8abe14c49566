"""Exploration: the high-churn facts of a log as flat metrics and small figures."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

def split_block(stats: dict[str, Any]) -> dict[str, Any]:
    """The temporal-split block of profile statistics (whatever its quantile)."""
    return next(v for k, v in stats.items() if k.startswith("temporal_split_at_"))


def data_source() -> tuple[str, float]:
    """('synthetic', scale) when prepare reads the generated log, else ('file', 1.0)."""
    from recsys import config

    gen = config.load_params("generate")["generate"]
    src = config.load_params("prepare")["source"]
    if config.resolve(src["path"]) == config.resolve(gen["output"]):
        return "synthetic", float(gen["scale"])
    return "file", 1.0


def headline(stats: dict[str, Any]) -> dict[str, Any]:
    """The flat subset of profile statistics tracked as DVC metrics."""
    split = split_block(stats)
    return {
        "rows": stats["rows"],
        "raw_rows": stats.get("raw_rows"),
        "users": stats["unique_users"],
        "products": stats["unique_products"],
        "sparsity": stats["sparsity"],
        "one_time_users_pct": stats["users"]["one_time_users_pct"],
        "users_with_2_to_5_pct": stats["users"]["users_with_2_to_5_pct"],
        "users_with_more_than_5_pct": stats["users"]["users_with_more_than_5_pct"],
        "single_interaction_products_pct": stats["products"]["single_interaction_products_pct"],
        "top_20pct_products_share_pct": stats["products"]["top_20pct_products_share_of_interactions_pct"],
        "undated_rows": stats["time"].get("undated_rows", 0),
        "share_last_30_days_pct": stats["time"]["share_in_last_30_60_90_days_pct"][0],
        "retention_pct": split["retention_pct"],
        "returning_users": split["returning_users"],
        "new_products_pct": split["new_products_pct"],
        "split_cutoff": split["cutoff"],
    }


def interactions_per_user_figure(df: pd.DataFrame) -> Figure:
    """Bar chart of how many users have 1, 2, ... interactions (log scale)."""
    per_user = df.groupby("customer_id", observed=True, sort=False).size()
    counts = per_user.value_counts().sort_index()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.bar(counts.index.astype(int), counts.to_numpy(), color="#4c72b0")
    ax.set_yscale("log")
    ax.set_xlabel("interactions per user")
    ax.set_ylabel("users (log)")
    ax.set_title(f"{(per_user == 1).mean():.1%} of {len(per_user):,} users act once")
    fig.tight_layout()
    return fig


def popularity_figure(df: pd.DataFrame) -> Figure:
    """Product popularity: rank-frequency (log-log) and cumulative share of interactions."""
    counts = np.sort(df.groupby("product_id", observed=True, sort=False).size().to_numpy())[::-1]
    share = np.cumsum(counts) / counts.sum()
    x = np.arange(1, len(counts) + 1)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.loglog(x, counts, color="#dd8452")
    a.set_xlabel("product rank")
    a.set_ylabel("interactions")
    a.set_title("heavy-tailed popularity")
    b.plot(x / len(x), share, color="#55a868")
    b.axvline(0.2, color="grey", lw=0.8, ls="--")
    b.set_xlabel("share of products (most popular first)")
    b.set_ylabel("share of interactions")
    b.set_title(f"top 20% of products: {share[int(np.ceil(0.2 * len(x))) - 1]:.1%} of interactions")
    fig.tight_layout()
    return fig


def daily_volume_figure(df: pd.DataFrame, cutoff: str | pd.Timestamp | None = None) -> Figure:
    """Interactions per day over dated rows, with the temporal split's cutoff."""
    per_day = df["event_date"].dropna().dt.floor("D").value_counts().sort_index()
    fig, ax = plt.subplots(figsize=(9, 3.0))
    ax.plot(per_day.index, per_day.to_numpy(), color="#4c72b0", lw=1)
    if cutoff is not None:
        ax.axvline(pd.Timestamp(cutoff), color="#c44e52", ls="--", lw=1, label="80% date quantile (train | test)")
        ax.legend(loc="upper left")
    ax.set_ylabel("interactions per day")
    ax.set_title("traffic grows over the window; undated rows are not shown")
    fig.tight_layout()
    return fig


def event_mix_figure(df: pd.DataFrame) -> Figure:
    """Rows per event, split into dated and undated."""
    dated = df["event_date"].notna()
    tab = pd.crosstab(df["event"].astype(str), np.where(dated, "dated", "undated"))
    tab = tab.loc[tab.sum(axis=1).sort_values(ascending=False).index]
    fig, ax = plt.subplots(figsize=(6, 3.0))
    palette = {"dated": "#4c72b0", "undated": "#c44e52"}
    tab.plot.barh(stacked=True, ax=ax, color=[palette[c] for c in tab.columns])
    ax.invert_yaxis()
    ax.set_xlabel("rows")
    ax.set_title("event mix (undated rows in red)")
    fig.tight_layout()
    return fig


def churn_figure(split: dict[str, Any]) -> Figure:
    """Who is still there after the cutoff: early, late and returning users; new vs known products."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.0))
    a.bar(["train users", "test users", "returning"], [split["early_users"], split["late_users"], split["returning_users"]],
          color=["#4c72b0", "#dd8452", "#55a868"])
    a.set_title(f"retention {split['retention_pct']:.2f}% of train users")
    known = split["late_products"] - split["new_products_in_late"]
    b.bar(["test products seen in train", "new in test"], [known, split["new_products_in_late"]], color=["#4c72b0", "#c44e52"])
    b.set_title(f"{split['new_products_pct']:.1f}% of test products are new")
    fig.tight_layout()
    return fig
