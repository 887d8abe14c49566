"""Profile statistics on a hand-made log with known answers."""

from __future__ import annotations

import pandas as pd

from recsys.data.profile import calibration_table, load_profile, profile_stats, split_stats


def tiny() -> pd.DataFrame:
    """5 users, 4 products, 8 rows; one undated wishlist row."""
    ts = lambda s: pd.Timestamp(s, tz="UTC")  # noqa: E731
    rows = [
        (1, 10, "cart", ts("2023-01-01")),
        (1, 10, "purchased", ts("2023-01-01 00:10")),
        (2, 10, "cart", ts("2023-01-02")),
        (3, 11, "cart", ts("2023-01-03")),
        (4, 12, "purchased", ts("2023-01-04")),
        (1, 13, "cart", ts("2023-01-05")),
        (5, 13, "cart", ts("2023-01-05")),
        (5, 11, "wishlist", pd.NaT),
    ]
    df = pd.DataFrame(rows, columns=["customer_id", "product_id", "event", "event_date"])
    df["event_date"] = df["event_date"].astype("datetime64[us, UTC]")
    df["product_name"] = "x"
    return df


def test_user_and_product_stats_exact() -> None:
    st = profile_stats(tiny())
    assert st["rows"] == 8 and st["unique_users"] == 5 and st["unique_products"] == 4
    assert st["users"]["one_time_users_pct"] == 60.0  # users 2, 3, 4
    assert st["users"]["users_with_2_to_5_pct"] == 40.0  # users 1 (3 rows), 5 (2 rows)
    assert st["users"]["users_touching_single_product_pct"] == 60.0
    assert st["users"]["interactions_per_user"]["max"] == 3
    assert st["products"]["single_interaction_products_pct"] == 25.0  # product 12
    assert st["products"]["max_users_on_one_product"] == 2
    # top 20% of 4 products = 1 product (product 10 with 3 of 8 rows)
    assert st["products"]["top_20pct_products_share_of_interactions_pct"] == 37.5
    assert st["time"]["undated_rows"] == 1 and st["time"]["undated_by_event"] == {"wishlist": 1}
    assert st["event_counts"] == {"purchased": 2, "cart": 5, "wishlist": 1}


def test_split_stats_exclude_undated_rows() -> None:
    sp = split_stats(tiny(), quantile=0.5)
    # dated dates sorted: 01-01, 01-01 00:10, 01-02, 01-03, 01-04, 01-05, 01-05 -> median 01-03
    assert sp["cutoff"].startswith("2023-01-03")
    assert sp["early_users"] == 2  # users 1, 2
    assert sp["late_users"] == 4  # users 3, 4, 1, 5
    assert sp["returning_users"] == 1 and sp["retention_pct"] == 50.0
    assert sp["new_products_in_late"] == 3 and sp["late_products"] == 3


def test_calibration_table_flags_misses() -> None:
    table = calibration_table(profile_stats(tiny()), load_profile(), scale=1.0)
    assert not table.set_index("metric").loc["users", "ok"]
    assert {"metric", "target", "got", "rel_diff_pct", "rule", "ok"} <= set(table.columns)
