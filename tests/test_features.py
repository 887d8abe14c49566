"""Per-user features and the engagement score on logs whose right answers are computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recsys.features.engagement import (
    FEATURE_NAMES,
    EngagementModel,
    FeatureParams,
    compute_features,
    compute_raw_features,
    load_feature_params,
    normalise,
)

from _logs import frame, random_log

REF = "2023-04-01T00:00:00+00:00"
REF_DATE = "2023-04-01"
D90 = "2023-01-01"  # 90 days before REF
D45 = "2023-02-15"  # 45 days before REF


def hand_log() -> pd.DataFrame:
    """Four users: A active twice 90 days apart, B only undated, C twice on one day, D once 45 days ago."""
    return frame(
        [
            (1, 10, "p10", "purchased", REF_DATE),
            (1, 11, "p11", "cart", D90),
            (2, 10, "p10", "wishlist", None),
            (3, 12, "p12", "view", REF_DATE),
            (3, 12, "p12", "cart", REF_DATE),
            (4, 13, "p13", "purchased", D45),
        ]
    )


def minmax_params(**changes: object) -> FeatureParams:
    """Default knobs with the original minmax normalisation and an explicit reference date."""
    return FeatureParams(normalisation="minmax", reference_date=pd.Timestamp(REF)).with_(**changes)


# Hand computation (decay_days = recency_days = 90, undated_decay = 0, reference 2023-04-01):
#   A: purchased today (5 * e^0) + cart 90 days ago (3 * e^-1)       -> avg (5 + 3e^-1)/2 = 3.0518191617571633
#      span 90 days -> frequency 2/91;  recency e^0 = 1
#   B: one undated wishlist -> score 0, frequency 1/(0+1) = 1, recency = undated_decay = 0
#   C: view (0.5) + cart (3) today -> avg 1.75, same day -> frequency 2/1 = 2, recency 1
#   D: purchased 45 days ago -> avg 5e^-0.5 = 3.032653298563167, frequency 1, recency e^-0.5
HAND_RAW = {
    "total_interactions": [2.0, 1.0, 2.0, 1.0],
    "unique_products": [2.0, 1.0, 1.0, 1.0],
    "avg_event_score": [3.0518191617571633, 0.0, 1.75, 3.032653298563167],
    "interaction_frequency": [2 / 91, 1.0, 2.0, 1.0],
    "recency": [1.0, 0.0, 1.0, 0.6065306597126334],
}
# minmax: total [1,0,1,0]; unique [1,0,0,0]; avg / 3.0518191617571633 -> [1, 0, 0.573428472410663, 0.9937198561978485]
# frequency (x - 2/91) / (2 - 2/91) -> [0, 89/180, 1, 89/180]; recency already spans [0, 1].
HAND_ENGAGEMENT = {
    1: 0.35 * 1 + 0.25 * 1 + 0.20 * 1 + 0.15 * 0 + 0.05 * 1,  # 0.85
    2: 0.15 * (89 / 180),  # 0.07416666666666666
    3: 0.35 * 1 + 0.20 * 0.573428472410663 + 0.15 * 1 + 0.05 * 1,  # 0.6646856944821327
    4: 0.20 * 0.9937198561978485 + 0.15 * (89 / 180) + 0.05 * 0.6065306597126334,  # 0.303237170891868
}


def test_raw_features_match_hand_computation() -> None:
    raw = compute_raw_features(hand_log(), minmax_params())
    assert list(raw.index) == [1, 2, 3, 4]
    for name, expected in HAND_RAW.items():
        np.testing.assert_allclose(raw[name].to_numpy(), expected, rtol=1e-12, err_msg=name)
    assert raw["dated_interactions"].tolist() == [2, 0, 2, 1]
    assert raw["last_event_date"].isna().tolist() == [False, True, False, False]


def test_engagement_matches_hand_computation() -> None:
    feats = compute_features(hand_log(), minmax_params())
    np.testing.assert_allclose(feats["engagement"].to_numpy(), list(HAND_ENGAGEMENT.values()), rtol=1e-12)
    np.testing.assert_allclose(
        feats["engagement"].to_numpy(), [0.85, 0.07416666666666666, 0.6646856944821327, 0.303237170891868]
    )
    np.testing.assert_allclose(feats["norm_interaction_frequency"], [0.0, 89 / 180, 1.0, 89 / 180], rtol=1e-12)
    assert feats["engagement"].sort_values(ascending=False).index.tolist() == [1, 3, 4, 2]


def test_reference_date_defaults_to_latest_event() -> None:
    log = hand_log()
    raw = compute_raw_features(log, FeatureParams(normalisation="minmax"))
    assert raw.attrs["reference_date"] == "2023-04-01 00:00:00+00:00"
    np.testing.assert_allclose(raw["recency"].to_numpy(), HAND_RAW["recency"], rtol=1e-12)


def test_undated_decay_param_gives_undated_rows_credit() -> None:
    raw = compute_raw_features(hand_log(), minmax_params(undated_decay=0.5))
    # B: wishlist weight 2 * 0.5 over one interaction; recency of a user with no dated event = 0.5
    assert raw.loc[2, "avg_event_score"] == pytest.approx(1.0)
    assert raw.loc[2, "recency"] == pytest.approx(0.5)
    assert raw.loc[1, "avg_event_score"] == pytest.approx(HAND_RAW["avg_event_score"][0])


def test_decay_changes_the_order() -> None:
    """An old purchase beats a fresh cart without decay, loses with a 90-day decay."""
    log = frame([("old", 1, "a", "purchased", "2022-12-22"), ("new", 2, "b", "cart", REF_DATE)])
    only_avg = {
        "avg_event_score": 1.0,
        "total_interactions": 0.0,
        "unique_products": 0.0,
        "interaction_frequency": 0.0,
        "recency": 0.0,
    }
    fast = compute_features(log, minmax_params(weights=only_avg))  # old: 5e^(-100/90) = 1.646 < 3
    slow = compute_features(log, minmax_params(weights=only_avg, decay_days=1e9))  # old: ~5 > 3
    assert fast["engagement"].idxmax() == "new"
    assert slow["engagement"].idxmax() == "old"
    assert fast.loc["old", "avg_event_score"] == pytest.approx(5 * math.exp(-100 / 90))


def test_event_weights_change_the_order() -> None:
    log = frame([("buyer", 1, "a", "purchased", REF_DATE), ("carter", 2, "b", "cart", REF_DATE)])
    only_avg = dict.fromkeys(FEATURE_NAMES, 0.0) | {"avg_event_score": 1.0}
    default = compute_features(log, minmax_params(weights=only_avg))
    carts_first = compute_features(log, minmax_params(weights=only_avg, event_weights={"purchased": 1.0, "cart": 4.0}))
    assert default["engagement"].idxmax() == "buyer"
    assert carts_first["engagement"].idxmax() == "carter"


def test_normalisations() -> None:
    x = np.array([1.0, 2.0, 2.0, 3.0])
    np.testing.assert_allclose(normalise(x, "minmax"), [0.0, 0.5, 0.5, 1.0])
    np.testing.assert_allclose(normalise(x, "percentile"), [0.0, 0.5, 0.5, 1.0])
    logs = np.log1p(x)
    np.testing.assert_allclose(normalise(x, "log1p_minmax"), (logs - logs[0]) / (logs[-1] - logs[0]))
    heavy = np.array([1.0] * 8 + [2.0, 40.0])
    assert normalise(heavy, "minmax")[8] < 0.03 < normalise(heavy, "log1p_minmax")[8]
    assert not normalise(np.array([5.0, 5.0]), "minmax").any()
    with pytest.raises(ValueError, match="normalisation"):
        normalise(x, "zscore")


def test_engagement_model_rescoring_matches_full_recompute() -> None:
    log = random_log(n_rows=2000, seed=3)
    params = FeatureParams(normalisation="percentile")
    model = EngagementModel.fit(log, params)
    weights = {
        "total_interactions": 0.1,
        "unique_products": 0.1,
        "avg_event_score": 0.5,
        "interaction_frequency": 0.2,
        "recency": 0.1,
    }
    events = {**params.event_weights, "purchased": 1.0, "cart": 7.0}
    for method in ("minmax", "percentile", "log1p_minmax", "minmax"):  # memoised columns reused across calls
        for changed in (
            params.with_(normalisation=method, weights=weights),
            params.with_(normalisation=method, weights=weights, event_weights=events),
            params.with_(normalisation=method),
        ):
            full = compute_features(log, changed)
            np.testing.assert_allclose(model.engagement(changed), full["engagement"].to_numpy(), rtol=1e-12)
            np.testing.assert_allclose(
                model.features(changed)["norm_avg_event_score"], full["norm_avg_event_score"], rtol=1e-12
            )
    np.testing.assert_array_equal(model.engagement(), compute_features(log, params)["engagement"].to_numpy())
    with pytest.raises(ValueError, match="features.decay_days changes the raw features: refit"):
        model.engagement(params.with_(decay_days=30.0))


def test_string_customer_ids_and_params_file() -> None:
    feats = compute_features(random_log(n_rows=500, seed=1, str_ids=True), load_feature_params())
    assert feats.index.dtype == "string"
    assert feats["engagement"].between(0, 1).all()
    assert feats.index.is_monotonic_increasing and feats.index.is_unique


def test_bad_params_are_named() -> None:
    with pytest.raises(ValueError, match="normalisation"):
        FeatureParams(normalisation="rank")
    with pytest.raises(ValueError, match="unknown feature"):
        FeatureParams(weights={"clicks": 1.0})
    log = frame([(1, 1, "a", "purchased", REF_DATE)])
    log["event"] = pd.Categorical(["teleport"])
    with pytest.raises(ValueError, match="teleport"):
        compute_raw_features(log)
