"""Exploration: the facts of a log (churn, popularity, time, behaviour axes) as flat metrics and small figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from recsys import config
from recsys.data.behaviour import returning_category_loyalty
from recsys.data.profile import split_stats
from recsys.features.categories import CategoryParams, category_agreement, infer_categories

CASE_STUDY_LAYOUT = "case_study"  # the prepare source whose statistics the published profile describes


def split_block(stats: dict[str, Any]) -> dict[str, Any]:
    """The temporal-split block of profile statistics (whatever its quantile)."""
    return next(v for k, v in stats.items() if k.startswith("temporal_split_at_"))


def data_source(prepare_summary: dict[str, Any] | None = None) -> tuple[str, float]:
    """('synthetic', scale) when the log is the generated one, else ('file', 1.0).

    The log is the one a prepare summary names as its input, else the one params/prepare.yaml reads.
    """
    gen = config.load_params("generate")["generate"]
    raw = (
        prepare_summary["input"] if prepare_summary else config.dataset_config(config.DEFAULT_DATASET)["source"]["path"]
    )
    if config.resolve(raw) == config.resolve(gen["output"]):
        return "synthetic", float(gen["scale"])
    return "file", 1.0


def true_categories_path(prepare_summary: dict[str, Any] | None = None) -> Path | None:
    """The generator's product-category side file when the log is the generated one and the file exists."""
    from recsys.data.synthetic import categories_path

    gen = config.load_params("generate")["generate"]
    if data_source(prepare_summary)[0] != "synthetic":
        return None
    path = config.resolve(gen.get("categories") or categories_path(config.resolve(gen["output"])))
    return path if path.is_file() else None


def true_categories_for(setting: str | None, prepare_summary: dict[str, Any] | None = None) -> Path | None:
    """The true-category file to check against: `setting` when given ("" = none), else the generator's side file."""
    if setting is None:
        return true_categories_path(prepare_summary)
    return config.resolve(setting) if setting else None


def has_case_study_layout(prepare_summary: dict[str, Any] | None) -> bool:
    """True when the log was read with the case-study layout, the only one the published profile describes."""
    if not prepare_summary:
        return False
    return str(prepare_summary.get("source")) == CASE_STUDY_LAYOUT


def behaviour_axes(
    df: pd.DataFrame,
    split_quantile: float = 0.8,
    params: CategoryParams | None = None,
    true_categories: pd.DataFrame | None = None,
    permutations: int = 20,
    split: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Where a log sits on the generator's unpinned axes (retention, category loyalty), and its inferred categories.

    `split` is the log's `split_stats` at `split_quantile` when the caller has it already.
    """
    params = params or CategoryParams()
    split = split if split is not None else split_stats(df, split_quantile)
    cutoff = pd.Timestamp(split["cutoff"])
    inferred = infer_categories(df, params)
    axes: dict[str, Any] = {
        "split_quantile": split_quantile,
        "cutoff": split["cutoff"],
        "retention_pct": split["retention_pct"],
        "returning_users": split["returning_users"],
        "inference": {
            "k": params.k,
            "products": int(len(inferred)),
            "products_without_tokens": int((inferred["category"] < 0).sum()),
        },
        "loyalty_inferred": returning_category_loyalty(df, inferred, cutoff, permutations, params.seed),
        "loyalty_true": None,
        "agreement": None,
    }
    if true_categories is not None:
        axes["loyalty_true"] = returning_category_loyalty(df, true_categories, cutoff, permutations, params.seed)
        axes["agreement"] = category_agreement(inferred, true_categories)
    return axes, inferred


def axes_headline(axes: dict[str, Any]) -> dict[str, Any]:
    """The flat subset of the behaviour axes tracked as DVC metrics (None where not measured)."""
    inferred, true, agree = axes["loyalty_inferred"], axes["loyalty_true"] or {}, axes["agreement"] or {}
    return {
        "loyalty_inferred": inferred["loyalty"],
        "loyalty_inferred_ci95_lo": inferred["loyalty_ci95"][0],
        "loyalty_inferred_ci95_hi": inferred["loyalty_ci95"][1],
        "loyalty_observed_share_inferred": inferred["observed"],
        "loyalty_chance_share_inferred": inferred["chance"],
        "loyalty_measured_users": inferred["measured_users"],
        "loyalty_true": true.get("loyalty"),
        "category_ari": agree.get("ari"),
        "category_nmi": agree.get("nmi"),
        "category_purity": agree.get("purity"),
    }


def category_examples(df: pd.DataFrame, inferred: pd.DataFrame, per_category: int = 3) -> pd.DataFrame:
    """Per inferred category: products, share of rows and the names of its most active products."""
    rows = df[["product_id", "product_name"]].merge(inferred, on="product_id", how="left")
    rows["category"] = rows["category"].fillna(-1).astype(np.int64)
    per_product = (
        rows.groupby(["category", "product_id"], observed=True)
        .agg(n=("product_name", "size"), name=("product_name", "first"))
        .reset_index()
    )
    per_product = per_product.sort_values(["category", "n", "product_id"], ascending=[True, False, True], kind="stable")
    top = per_product.groupby("category", sort=True).head(per_category)
    examples = top.groupby("category")["name"].agg(lambda names: " | ".join(str(n) for n in names))
    sizes = per_product.groupby("category").agg(products=("product_id", "size"), rows=("n", "sum"))
    out = sizes.join(examples.rename("most active products"))
    out["share of rows %"] = (100.0 * out["rows"] / out["rows"].sum()).round(2)
    return out.drop(columns="rows").sort_values("share of rows %", ascending=False, kind="stable").reset_index()


def loyalty_figure(axes: dict[str, Any]) -> Figure:
    """Observed vs chance share of returning customers who come back to a known category (inferred / true ones)."""
    sides = [("inferred categories", axes["loyalty_inferred"])]
    if axes["loyalty_true"] is not None:
        sides.append(("true categories", axes["loyalty_true"]))
    fig, ax = plt.subplots(figsize=(6.5, 1.3 + 0.7 * len(sides)))
    y = np.arange(len(sides))
    ax.barh(y - 0.18, [s["observed"] for _, s in sides], height=0.34, color="#4c72b0", label="observed")
    ax.barh(y + 0.18, [s["chance"] for _, s in sides], height=0.34, color="#c0c0c0", label="chance (random pairing)")
    ax.set_yticks(y, [f"{name}\nloyalty {s['loyalty']:.2f}" for name, s in sides])
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of returning customers touching a known category after the cutoff")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
    ax.invert_yaxis()
    fig.tight_layout()
    return fig


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
    a.set_title(f"{(counts == 1).mean():.1%} of {len(counts):,} products have one interaction")
    b.plot(x / len(x), share, color="#55a868")
    b.axvline(0.2, color="grey", lw=0.8, ls="--")
    b.set_xlabel("share of products (most popular first)")
    b.set_ylabel("share of interactions")
    b.set_title(f"top 20% of products: {share[int(np.ceil(0.2 * len(x))) - 1]:.1%} of interactions")
    fig.tight_layout()
    return fig


def daily_volume_figure(df: pd.DataFrame, cutoff: str | pd.Timestamp | None = None) -> Figure:
    """Interactions per day over dated rows, with the temporal split's cutoff."""
    dates = df["event_date"].dropna()
    per_day = dates.dt.floor("D").value_counts().sort_index()
    first = (dates < dates.min() + pd.Timedelta(days=30)).sum() / 30.0
    last = (dates > dates.max() - pd.Timedelta(days=30)).sum() / 30.0
    undated = int(df["event_date"].isna().sum())
    fig, ax = plt.subplots(figsize=(9, 3.0))
    ax.plot(per_day.index, per_day.to_numpy(), color="#4c72b0", lw=1)
    if cutoff is not None:
        # matplotlib's stubs type x as float; its date converter takes the Timestamp on a date axis
        ax.axvline(
            pd.Timestamp(cutoff),  # type: ignore[arg-type]
            color="#c44e52",
            ls="--",
            lw=1,
            label="split cutoff (train | test)",
        )
        ax.legend(loc="upper left")
    ax.set_ylabel("interactions per day")
    ax.set_title(
        f"{first:,.0f} interactions per day over the first 30 days, {last:,.0f} over the last 30"
        + (f"; {undated:,} undated rows not shown" if undated else "")
    )
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
    a.bar(
        ["train users", "test users", "returning"],
        [split["early_users"], split["late_users"], split["returning_users"]],
        color=["#4c72b0", "#dd8452", "#55a868"],
    )
    a.set_title(f"retention {split['retention_pct']:.2f}% of train users")
    known = split["late_products"] - split["new_products_in_late"]
    b.bar(
        ["test products seen in train", "new in test"],
        [known, split["new_products_in_late"]],
        color=["#4c72b0", "#c44e52"],
    )
    b.set_title(f"{split['new_products_pct']:.1f}% of test products are new")
    fig.tight_layout()
    return fig


def opening_markdown(head: dict[str, Any], split_quantile: float) -> str:
    """The explore report's first screen: its question and the answer in the log's own numbers (``headline``)."""
    return (
        "**The question.** How much of this log can a recommender learn from? Collaborative filtering needs "
        "customers who come back and products seen more than once.\n\n"
        f"**The answer.** {head['one_time_users_pct']:.1f}% of the {head['users']:,} customers act once and "
        f"{head['single_interaction_products_pct']:.1f}% of the {head['products']:,} products are touched once. "
        f"Across a temporal split at the {split_quantile:.0%} date quantile ({str(head['split_cutoff'])[:10]}), "
        f"{head['retention_pct']:.2f}% of the customers active before it come back after it "
        f"({head['returning_users']:,} customers), and {head['new_products_pct']:.1f}% of the products active after "
        "it were never seen before.\n"
    )
