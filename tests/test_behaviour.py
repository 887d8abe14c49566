"""Behaviour axes: category inference from names and the category loyalty of returning customers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.data.behaviour import returning_category_loyalty
from recsys.data.contract import PRESETS, load_prepared
from recsys.data.prepare import prepare
from recsys.data.profile import split_cutoff
from recsys.data.synthetic import Behaviour, categories_path, generate
from recsys.features.categories import CategoryParams, category_agreement, category_params_from, infer_categories
from recsys.reporting.explore import axes_headline, behaviour_axes, category_examples

from _logs import frame

CUTOFF = pd.Timestamp("2023-02-01", tz="UTC")


def two_sided(pre: dict[int, list[str]], post: dict[int, list[str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A log where customer u touches one product of each category in pre[u] before CUTOFF and post[u] after it."""
    cats = sorted({c for d in (pre, post) for cs in d.values() for c in cs})
    pid = {c: i + 1 for i, c in enumerate(cats)}
    rows = [(u, pid[c], f"name {c}", "purchased", "2023-01-10T10:00:00") for u, cs in pre.items() for c in cs]
    rows += [(u, pid[c], f"name {c}", "purchased", "2023-02-10T10:00:00") for u, cs in post.items() for c in cs]
    return frame(rows), pd.DataFrame(
        {"product_id": np.array(list(pid.values()), dtype=np.int64), "category": list(pid)}
    )


def test_loyalty_is_zero_when_chance_explains_the_overlap() -> None:
    # every pre side is {A}: a post side meets it iff it holds A, whoever it is paired with -> chance = observed
    df, cats = two_sided({1: ["A"], 2: ["A"], 3: ["A"], 4: ["A"]}, {1: ["A"], 2: ["A"], 3: ["B"], 4: ["B"]})
    got = returning_category_loyalty(df, cats, CUTOFF, permutations=5)
    assert (got["returning_users"], got["measured_users"], got["observed"], got["chance"], got["loyalty"]) == (
        4,
        4,
        0.5,
        0.5,
        0.0,
    )


def test_full_loyalty_against_random_pairing() -> None:
    # 40 customers, 4 categories, each returns to its own category: observed 1, chance ~ 1/4 -> loyalty ~ 1
    pre = {u: ["ABCD"[u % 4]] for u in range(40)}
    df, cats = two_sided(pre, pre)
    got = returning_category_loyalty(df, cats, CUTOFF, permutations=400, seed=3)
    assert got["observed"] == 1.0 and abs(got["chance"] - 0.25) < 0.02
    assert got["loyalty"] == pytest.approx((1.0 - got["chance"]) / (1.0 - got["chance"]))
    assert got["loyalty_ci95"] == [1.0, 1.0]


def test_only_returning_dated_rows_with_known_categories_count() -> None:
    df, cats = two_sided({1: ["A"], 2: ["A"], 3: ["B"]}, {1: ["A"], 2: ["B"], 5: ["A"]})
    extra = frame(
        [
            (3, 99, "x", "purchased", "2023-02-11T00:00:00"),  # user 3 returns, but to an uncategorised product
            (2, 1, "name A", "wishlist", None),
        ]
    )  # undated: on neither side
    got = returning_category_loyalty(pd.concat([df, extra], ignore_index=True), cats, CUTOFF, permutations=5)
    assert got["returning_users"] == 3 and got["measured_users"] == 2  # users 1, 2 (user 3's late row has no category)
    assert got["rows_without_category"] == 1 and got["observed"] == 0.5
    assert returning_category_loyalty(df.iloc[:0], cats, CUTOFF)["measured_users"] == 0
    unknown = returning_category_loyalty(df, cats.iloc[:0], CUTOFF)  # no known category at all (a log without names)
    assert unknown["measured_users"] == 0 and unknown["rows_without_category"] == len(df)


def test_inference_separates_token_groups_and_marks_unnamed_products() -> None:
    fruit = ["red apple", "green apple", "apple juice", "red pear", "green pear", "pear juice"]
    tools = ["steel hammer", "iron hammer", "hammer set", "steel wrench", "iron wrench", "wrench set"]
    names = fruit + tools + ["500", None]
    rows = [(1, i + 1, n, "cart", "2023-01-01T00:00:00") for i, n in enumerate(names)]
    got = infer_categories(frame(rows), CategoryParams(k=2, components=5, n_init=5, seed=1))
    assert got["product_id"].tolist() == list(range(1, 15))
    labels = got["category"].to_numpy()
    assert len(set(labels[:6])) == 1 and len(set(labels[6:12])) == 1 and labels[0] != labels[6]
    assert labels[12:].tolist() == [-1, -1]  # digits only / no name: unknown
    truth = pd.DataFrame({"product_id": range(1, 15), "category": ["fruit"] * 6 + ["tool"] * 6 + ["x", "y"]})
    assert category_agreement(got, truth) == {
        "products": 12,
        "inferred_categories": 2,
        "true_categories": 2,
        "ari": 1.0,
        "nmi": 1.0,
        "purity": 1.0,
    }
    again = infer_categories(frame(rows), CategoryParams(k=2, components=5, n_init=5, seed=1))
    pd.testing.assert_frame_equal(got, again)


def test_category_params_are_checked() -> None:
    assert category_params_from({"k": "12"}).k == 12
    with pytest.raises(ValueError, match=r"unknown key\(s\) in explore.categories: \['clusters'\]"):
        category_params_from({"clusters": 3})
    with pytest.raises(ValueError, match="explore.categories.k must be >= 1, got 0"):
        CategoryParams(k=0)


@pytest.fixture(scope="module")
def loyalty_logs(tmp_path_factory: pytest.TempPathFactory) -> dict[float, tuple[pd.DataFrame, pd.DataFrame]]:
    """Scale-0.1 synthetic logs (~50K rows, ~1,100 returning customers) at loyalty 0, 0.35 and 0.7."""
    d = tmp_path_factory.mktemp("loyalty")
    out = {}
    for loyalty in (0.0, 0.35, 0.7):
        raw = d / f"raw_{loyalty}.csv"
        generate(raw, scale=0.1, seed=2, behaviour=Behaviour(category_loyalty=loyalty))
        prepare(raw, d / f"p_{loyalty}.parquet", PRESETS["case_study"])
        out[loyalty] = load_prepared(d / f"p_{loyalty}.parquet"), pd.read_parquet(categories_path(raw))
    return out


@pytest.mark.parametrize("loyalty", [0.0, 0.35, 0.7])
def test_true_categories_recover_the_generator_loyalty(loyalty_logs: dict, loyalty: float) -> None:
    # ~1,100 measured customers give a 95% interval of about +-0.03; 0.05 also covers the small bias of
    # customers with several visits (measured over seeds 1-3 at this scale: errors of 0.02 at most)
    df, truth = loyalty_logs[loyalty]
    got = returning_category_loyalty(df, truth, split_cutoff(df, 0.8))
    assert got["measured_users"] > 900
    assert abs(got["loyalty"] - loyalty) <= 0.05, got


def test_behaviour_axes_on_synthetic_log(loyalty_logs: dict) -> None:
    df, truth = loyalty_logs[0.7]
    params = CategoryParams(k=24, fit_products=4000, n_init=3)
    axes, inferred = behaviour_axes(df, 0.8, params, truth, permutations=5)
    assert axes["agreement"]["ari"] > 0.6 and axes["agreement"]["products"] == df["product_id"].nunique()
    # inferred categories see part of the loyalty: below the truth, far above chance
    assert 0.3 < axes["loyalty_inferred"]["loyalty"] < axes["loyalty_true"]["loyalty"]
    assert axes["returning_users"] == axes["loyalty_true"]["returning_users"]
    head = axes_headline(axes)
    assert head["loyalty_true"] == axes["loyalty_true"]["loyalty"] and head["category_ari"] == axes["agreement"]["ari"]
    examples = category_examples(df, inferred)
    assert examples["products"].sum() == df["product_id"].nunique() and len(examples) == inferred["category"].nunique()
    no_truth, _ = behaviour_axes(df, 0.8, params, None, permutations=5)
    assert no_truth["loyalty_true"] is None and axes_headline(no_truth)["category_ari"] is None
