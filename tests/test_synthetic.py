"""Synthetic generator: exact raw format, deterministic per seed, calibrated shape at small scale."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsys.data.contract import CASE_STUDY_HEADER, PRESETS, load_prepared
from recsys.data.prepare import prepare, summary_dict
from recsys.data.profile import calibration_table, load_profile, profile_stats
from recsys.data.synthetic import generate, generate_frame, root_of


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, dict]:
    """A scale-0.05 log (25K rows) generated, prepared and profiled once for the module."""
    d = tmp_path_factory.mktemp("synthetic")
    generate(d / "raw.csv", scale=0.05, seed=7)
    summary = prepare(d / "raw.csv", d / "interactions.parquet", PRESETS["case_study"])
    df = load_prepared(d / "interactions.parquet")
    return d, df, profile_stats(df, summary_dict(summary))


def test_raw_format_is_exactly_the_case_study_header(small: tuple[Path, pd.DataFrame, dict]) -> None:
    d, _, _ = small
    first = (d / "raw.csv").read_text(encoding="utf-8").splitlines()[0]
    assert first.replace('"', "") == ",".join(CASE_STUDY_HEADER)
    raw = pd.read_csv(d / "raw.csv", dtype=str, keep_default_na=False)
    assert raw["index"].astype(int).is_unique and raw["index"].astype(int).min() == 3
    assert raw["Event_Date"].str.fullmatch(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00)?").all()
    assert set(raw["Event"]) == {"cart", "purchased", "wishlist", "search_keyword", "rating"}
    undated = raw["Event_Date"] == ""
    assert (raw.loc[undated, "Event"] == "wishlist").all() and (raw.loc[raw["Event"] == "wishlist", "Event_Date"] == "").all()
    assert not raw.duplicated().any()
    perfume = raw["product_name"].str.startswith("عطر ")
    assert perfume.any()
    assert (raw.loc[perfume, "product_name"] == "عطر " + raw.loc[perfume, "product_id"].str.zfill(3)).all()


def test_dense_product_ids(small: tuple[Path, pd.DataFrame, dict]) -> None:
    _, df, _ = small
    ids = np.sort(df["product_id"].unique())
    assert ids[0] == 1 and ids[-1] == len(ids)


def test_deterministic_per_seed(tmp_path: Path) -> None:
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    generate(tmp_path / "a.csv", scale=0.01, seed=3)
    generate(tmp_path / "b.csv", scale=0.01, seed=3)
    generate(tmp_path / "c.csv", scale=0.01, seed=4)
    assert digest(tmp_path / "a.csv") == digest(tmp_path / "b.csv")
    assert digest(tmp_path / "a.csv") != digest(tmp_path / "c.csv")


def test_small_scale_shape_matches_profile_ratios(small: tuple[Path, pd.DataFrame, dict]) -> None:
    _, _, stats = small
    table = calibration_table(stats, load_profile(), scale=0.05, tolerance=0.15).set_index("metric")
    must_hold = [
        "raw rows", "users", "products", "events: cart", "events: purchased", "events: wishlist",
        "one-time users %", "users with 2-5 interactions %", "single-interaction products %",
        "top-20% products share %", "share in last 30 days %", "share in last 60 days %",
        "share in last 90 days %", "date span (days)", "undated rows (all wishlist)", "new products % of late (80% split)",
    ]
    failing = table.loc[must_hold][~table.loc[must_hold, "ok"]]
    assert failing.empty, failing.to_string()
    # returning users exist and are rare, as in the real log (3.05%)
    retention = stats["temporal_split_at_80pct_date_quantile"]["retention_pct"]
    assert 1.0 < retention < 6.0


def test_returning_users_prefer_their_category(small: tuple[Path, pd.DataFrame, dict]) -> None:
    _, df, _ = small
    first_word = df["product_name"].astype(str).str.split(" ").str[0]
    per_user = pd.DataFrame({"u": df["customer_id"], "w": first_word}).groupby("u")["w"]
    multi = per_user.nunique()[per_user.size() >= 2]
    # a user with several interactions mostly stays in one category (far more than chance)
    assert (multi == 1).mean() > 0.6


def test_root_of_resolves_chains() -> None:
    parent = np.array([-1, 0, 1, -1, 3, 0])
    assert root_of(parent).tolist() == [0, 0, 0, 3, 3, 0]


def test_bad_scale_is_rejected() -> None:
    with pytest.raises(ValueError, match="scale must be > 0"):
        generate_frame(scale=0)
