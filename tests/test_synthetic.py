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
from recsys.data.synthetic import (
    CATEGORIES,
    Behaviour,
    behaviour_from_params,
    categories_path,
    generate,
    generate_frame,
    generate_log,
    root_of,
    shuffle_names,
)


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
    assert (raw.loc[undated, "Event"] == "wishlist").all() and (
        raw.loc[raw["Event"] == "wishlist", "Event_Date"] == ""
    ).all()
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
        "raw rows",
        "users",
        "products",
        "events: cart",
        "events: purchased",
        "events: wishlist",
        "one-time users %",
        "users with 2-5 interactions %",
        "single-interaction products %",
        "top-20% products share %",
        "share in last 30 days %",
        "share in last 60 days %",
        "share in last 90 days %",
        "date span (days)",
        "undated rows (all wishlist)",
        "new products % of late (80% split)",
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


# --- behaviour settings (issue 13): defaults unchanged, each setting does what it says ---

# sha256 of `generate(scale=0.01, seed=3)` recorded before the behaviour settings existed: the
# defaults must keep reproducing the calibrated log byte for byte.
DEFAULT_SCALE_001_SEED_3_MD5 = "57ee523f2778b699d1d8372b0d7222b6"


def test_default_behaviour_reproduces_the_calibrated_log(tmp_path: Path) -> None:
    info = generate(tmp_path / "a.csv", scale=0.01, seed=3)
    assert hashlib.md5((tmp_path / "a.csv").read_bytes()).hexdigest() == DEFAULT_SCALE_001_SEED_3_MD5
    generate(
        tmp_path / "b.csv",
        scale=0.01,
        seed=3,
        behaviour=behaviour_from_params({"category_loyalty": 0.7, "name_signal": 1, "retention": None}),
    )
    assert (tmp_path / "b.csv").read_bytes() == (tmp_path / "a.csv").read_bytes()
    assert info["behaviour"] == {"category_loyalty": 0.7, "name_signal": 1.0, "retention": None}


def test_true_categories_side_file(small: tuple[Path, pd.DataFrame, dict]) -> None:
    d, df, _ = small
    cats = pd.read_parquet(categories_path(d / "raw.csv"))
    assert categories_path(d / "raw.csv") == d / "raw.categories.parquet"
    assert list(cats.columns) == ["product_id", "category"] and cats["product_id"].is_unique
    assert set(cats["product_id"]) == set(df["product_id"])
    assert set(cats["category"]) <= {c[1] for c in CATEGORIES}
    names = df.drop_duplicates("product_id").merge(cats, on="product_id")
    perfume = names["product_name"].astype(str).str.fullmatch(r"عطر \d{3,}")
    assert (names.loc[perfume, "category"] == "Perfume").all() and perfume.any()


def test_shuffled_names_change_only_names() -> None:
    informative = generate_log(0.01, 11)
    shuffled = generate_log(0.01, 11, behaviour=Behaviour(name_signal=0.0))
    a, b = informative.frame, shuffled.frame
    pd.testing.assert_frame_equal(a.drop(columns="product_name"), b.drop(columns="product_name"))
    pd.testing.assert_frame_equal(informative.categories, shuffled.categories)
    names = lambda f: f.groupby("product_id")["product_name"].agg(lambda x: tuple(sorted(set(x))))  # noqa: E731
    assert (names(a) != names(b)).mean() > 0.9


def test_shuffle_names_keeps_the_name_multiset() -> None:
    rng = np.random.default_rng(0)
    name = np.array([f"n{i % 50}" for i in range(1000)], dtype=object)
    alt = np.array([f"a{i}" for i in range(1000)], dtype=object)
    same = shuffle_names(rng, name, alt, 1.0)
    assert same[0] is name and same[1] is alt
    new_name, new_alt = shuffle_names(rng, name, alt, 0.0)
    assert sorted(zip(new_name, new_alt, strict=True)) == sorted(
        zip(name, alt, strict=True)
    )  # pairs move together, none appears or vanishes
    assert (new_alt != alt).mean() > 0.99
    _, half_alt = shuffle_names(rng, name, alt, 0.5)
    assert 0.45 < (half_alt == alt).mean() < 0.56  # half keep their own name (+ a few drawn back by chance)


def test_retention_target_is_met_and_monotone() -> None:
    got = {r: generate_log(0.05, 5, behaviour=Behaviour(retention=r)).retention_pct for r in (0.03, 0.15, 0.4)}
    for target, pct in got.items():
        assert abs(pct - 100 * target) <= 0.1 * 100 * target, got  # within 10% of the target
    assert got[0.03] < got[0.15] < got[0.4]


def test_bad_behaviour_is_named() -> None:
    with pytest.raises(ValueError, match=r"generate.behaviour.category_loyalty must be in \[0, 1\], got 1.5"):
        behaviour_from_params({"category_loyalty": 1.5})
    with pytest.raises(ValueError, match=r"unknown key\(s\) in generate.behaviour: \['loyalty'\]"):
        behaviour_from_params({"loyalty": 0.3})
    with pytest.raises(ValueError, match="generate.behaviour.name_signal must be a number"):
        behaviour_from_params({"name_signal": "shuffled"})
    with pytest.raises(ValueError, match=r"generate.behaviour.retention must be in \(0, 1\) or null"):
        Behaviour(retention=40)


def test_unreachable_retention_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="generate.behaviour.retention 0.99 is not reachable"):
        generate_log(0.01, 1, behaviour=Behaviour(retention=0.99))
