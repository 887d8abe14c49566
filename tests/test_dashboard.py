"""The dashboard package on small hand-built data: search, what-if, diff, export, metrics, failures."""

from __future__ import annotations

import base64
import io
import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest
from pydantic import ValidationError
from test_reporting import summary as hand_made_summary  # a small typed EvaluationSummary built by hand

from dashboard import campaigns as campaign_tab
from dashboard import new_product as new_product_tab
from dashboard.artifacts import DashboardData
from dashboard.audience import audience_csv, change_labels, diff_audiences, export_filename
from dashboard.exposure import (
    SERVED,
    UNCAPPED,
    ExposureCounts,
    cap_options,
    cap_whatif,
    capped_prefix,
    exposure_panel_html,
    resolve_cap,
)
from dashboard.metrics_view import (
    churn_facts,
    evaluation_html,
    lift_rows,
    load_summary,
    log_domain,
    metrics_view,
    read_metrics,
    svg_lift,
)
from dashboard.render import (
    audience_summary_html,
    audience_table_html,
    download_link_html,
    header_html,
    product_card_html,
    weights_note_html,
)
from dashboard.search import (
    ProductIndex,
    find_products,
    most_popular_product,
    product_row,
    random_product,
    resolve_query,
    search_products,
    search_results_options,
    warm_search_index,
)
from dashboard.serve import voila_command
from dashboard.settings import (
    DATA_ENV,
    NOTEBOOK,
    REPORTS_ENV,
    DashboardPaths,
    DashboardSettings,
    dashboard_settings,
)
from dashboard.whatif import WHATIF_RANKERS, WhatIfEngine, WhatIfSettings
from recsys import config
from recsys.cache.build import build_cache
from recsys.cache.by_name import name_audience
from recsys.cache.lookup import audience_path
from recsys.cache.manifest import CacheManifest, MeasuredPrecision, ServedFigures
from recsys.data.contract import DATE_DTYPE
from recsys.evaluation.results import Coverage, write_summary
from recsys.exports import read_csv
from recsys.features.engagement import (
    DEFAULT_ENGAGEMENT_WEIGHTS,
    DEFAULT_EVENT_WEIGHTS,
    compute_raw_features,
)
from recsys.features.text import fold_text, query_tokens
from recsys.lexicon import Lexicon, LexiconFile, Unit, unit_pattern
from recsys.rankers import make_ranker
from recsys.rankers.base import deep_merge

from _logs import settings_for

EVENTS = ("purchased", "cart", "rating", "wishlist", "search_keyword")
NAMES = {
    1: "زيت زيتون طبيعي Noor 500 مل",
    2: "عطر 002",
    3: "أرز بسمتي ٥ كيلو",
    4: "Café Crème Dana 250 G",
    5: "مَكتبة Noor",
    6: "شامبو Hala 400 مل",
    7: "زيت زيتون بكر Salam 1 لتر",
    8: "Chocolate Dark 100 G",
}


def make_log(n_users: int = 80, n_rows: int = 400, seed: int = 7) -> pd.DataFrame:
    """A canonical interactions table: skewed activity, 8 named products, wishlist rows undated."""
    rng = np.random.default_rng(seed)
    users = (rng.zipf(1.6, n_rows) % n_users + 1).astype(np.int32) * 10
    products = rng.integers(1, len(NAMES) + 1, n_rows).astype(np.int32)
    events = rng.choice(EVENTS, n_rows, p=[0.3, 0.45, 0.05, 0.15, 0.05])
    dates = pd.Timestamp("2023-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 90 * 86400, n_rows), unit="s")
    frame = pd.DataFrame(
        {
            "customer_id": users,
            "product_id": products,
            "product_name": pd.Categorical([NAMES[p] for p in products]),
            "event": pd.Categorical(events, categories=list(EVENTS) + ["view"]),
            "event_date": pd.Series(dates).where(events != "wishlist").astype(DATE_DTYPE),
        }
    )
    return frame.drop_duplicates(["customer_id", "product_id", "event", "event_date"]).reset_index(drop=True)


BASE_PARAMS: dict[str, Any] = {"seed": 3, "features": {}, "token_user_cap": 4}


def refit_params(settings: WhatIfSettings) -> dict[str, Any]:
    """make_ranker params equal to the base params with the settings' knobs applied."""
    return deep_merge(settings_for(settings.ranker, BASE_PARAMS), settings.changes())


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return make_log()


@pytest.fixture(scope="module")
def index(log: pd.DataFrame) -> ProductIndex:
    raw = compute_raw_features(log)
    codes = np.searchsorted(raw.index.to_numpy(), log["customer_id"].to_numpy())
    return ProductIndex.build(log, codes)


@pytest.fixture(scope="module")
def engine(log: pd.DataFrame) -> WhatIfEngine:
    return WhatIfEngine(log, {name: settings_for(name, BASE_PARAMS) for name in WHATIF_RANKERS})


def dashboard_dir(
    root: Path, log: pd.DataFrame, n: int, allocation: dict[str, Any] | None = None, candidates: int | None = None
) -> DashboardPaths:
    """A data dir laid out like data/ (prepared parquet + activity cache built with the project's feature params) and
    empty reports, under `root`."""
    paths = DashboardPaths.from_env({DATA_ENV: str(root / "data"), REPORTS_ENV: str(root / "reports")})
    paths.prepared.parent.mkdir(parents=True)
    log.to_parquet(paths.prepared, index=False)
    params = {"seed": 0, "features": config.load_params("features")}
    build_cache(log, "activity", params, paths.cache_dir, n=n, allocation=allocation, candidates=candidates)
    return paths


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory, log: pd.DataFrame) -> DashboardPaths:
    """The uncapped cache of depth 15 and the log it was built from."""
    return dashboard_dir(tmp_path_factory.mktemp("dash"), log, n=15)


@pytest.fixture(scope="module")
def data(artifacts: DashboardPaths) -> DashboardData:
    return DashboardData.load(artifacts)


# ---------------------------------------------------------------------------------------------- search


def test_fold_text_unifies_arabic_and_latin_variants() -> None:
    folded = fold_text(["أَحْمَد", "إسلام آمنة", "مكتبة", "مستشفى", "٥٠٠ مل", "Café  CRÈME", "ـعـطـر", None]).to_pylist()
    assert folded == ["احمد", "اسلام امنه", "مكتبه", "مستشفي", "500 مل", "cafe creme", "عطر", None]


def test_query_tokens_split_letters_from_digits() -> None:
    assert query_tokens("  500مل  Noor ") == ["500", "مل", "noor"]
    assert query_tokens("") == []


@pytest.mark.parametrize(
    ("query", "expected_first"),
    [
        ("زيت زيتون", 1),  # Arabic, two tokens, most popular olive oil first or the other one
        ("ارز", 3),  # bare alef finds 'أرز', Eastern digits in the name do not matter
        ("ارز 5 كيلو", 3),  # ASCII digit finds '٥'
        ("cafe creme", 4),  # Latin without accents, lower case
        ("NOOR", None),  # two products contain Noor: both returned
        ("مكتبه", 5),  # teh marbuta folded, diacritics ignored
        ("500مل", 1),  # letter/digit run split
    ],
)
def test_search_by_partial_name(index: ProductIndex, query: str, expected_first: int | None) -> None:
    hits = search_products(index, query)
    folded_names = fold_text(hits["name"].tolist()).to_pylist()
    assert len(hits) > 0
    for tok in query_tokens(query):
        assert all(tok in n for n in folded_names)
    if expected_first is not None and query != "زيت زيتون":
        assert hits["product_id"].iloc[0] == expected_first
    if query == "NOOR":
        assert set(hits["product_id"]) == {1, 5}
    if query == "زيت زيتون":
        assert set(hits["product_id"]) == {1, 7}
        assert hits["interactions"].is_monotonic_decreasing


def test_search_by_id_ranks_exact_id_first(index: ProductIndex) -> None:
    hits = search_products(index, "2")
    assert hits["product_id"].iloc[0] == 2
    assert hits["name"].iloc[0] == NAMES[2]
    assert search_products(index, "no such thing").empty
    assert search_products(index, "   ").empty


def test_resolve_query_takes_unknown_id_as_cold_start(index: ProductIndex) -> None:
    unknown = resolve_query(index, "99999")
    assert unknown.matches.empty and unknown.cold_start_id == 99999 and "cold start" in unknown.message
    nothing = resolve_query(index, "no such product")
    assert nothing.matches.empty and nothing.cold_start_id is None
    found = resolve_query(index, "عطر")
    assert found.cold_start_id is None and found.matches["product_id"].iloc[0] == 2


def test_product_history_and_cold_start(index: ProductIndex, log: pd.DataFrame) -> None:
    rows = log[log["product_id"] == 3]
    hist = index.history(3)
    assert hist is not None and hist.name == NAMES[3]
    assert hist.interactions == len(rows) and hist.customers == rows["customer_id"].nunique()
    assert hist.events == {k: int(v) for k, v in rows["event"].value_counts().items() if v}
    assert hist.first_seen == rows["event_date"].min() and hist.last_seen == rows["event_date"].max()
    assert hist.undated == int(rows["event_date"].isna().sum())
    assert index.history(12345) is None and index.history("abc") is None
    assert "cold start" in product_card_html(None, 12345)
    assert "New product</b> tab" in product_card_html(None, 12345)  # points to where a launch's name is ranked
    assert "dir='auto'" in product_card_html(hist, 3)


def test_product_row_and_background_search_index(log: pd.DataFrame) -> None:
    raw = compute_raw_features(log)
    idx = ProductIndex.build(log, np.searchsorted(raw.index.to_numpy(), log["customer_id"].to_numpy()))
    assert "name_folded" not in idx.__dict__  # the search index is built lazily
    row = product_row(idx, most_popular_product(idx))
    assert row["interactions"].iloc[0] == log["product_id"].value_counts().max() and product_row(idx, 999).empty
    warm_search_index(idx).join(timeout=60)
    assert "name_folded" in idx.__dict__ and len(idx.name_folded) == len(idx.name_vocab)
    label, value = search_results_options(row)[0]
    assert value == str(row["product_id"].iloc[0]) and "\u2068" in label and "interactions" in label


def test_random_product_is_seeded(index: ProductIndex) -> None:
    a = [random_product(index, np.random.default_rng(5)) for _ in range(3)]
    assert len(set(a)) == 1 and a[0] in set(index.product_ids.tolist())


def test_string_product_ids(log: pd.DataFrame) -> None:
    frame = log.assign(product_id=("SKU" + log["product_id"].astype(str) + "A").astype("string[pyarrow]"))
    raw = compute_raw_features(frame)
    idx = ProductIndex.build(frame, np.searchsorted(raw.index.to_numpy(), frame["customer_id"].to_numpy()))
    assert search_products(idx, "SKU2A")["product_id"].iloc[0] == "SKU2A"
    history = idx.history("SKU2A")
    assert history is not None and history.name == NAMES[2]
    assert resolve_query(idx, "SKU99").cold_start_id == "SKU99"


def test_string_ids_end_to_end(tmp_path: Path, log: pd.DataFrame) -> None:
    frame = log.assign(
        customer_id=("C" + log["customer_id"].astype(str)).astype("string[pyarrow]"),
        product_id=("SKU" + log["product_id"].astype(str) + "A").astype("string[pyarrow]"),
    )
    data = DashboardData.load(dashboard_dir(tmp_path, frame, n=6))
    assert data.ready and not data.issues
    cached = data.audience("SKU3A", 6)
    assert cached.source == "cache" and all(str(c).startswith("C") for c in cached.customers)
    changed = replace(data.default_settings(), weights={**DEFAULT_ENGAGEMENT_WEIGHTS, "recency": 1.0})
    whatif = data.audience("SKU3A", 6, changed)
    assert not set(whatif.customers) & set(frame.loc[frame["product_id"] == "SKU3A", "customer_id"])
    table = data.audience_table(whatif)
    assert (table["interactions"] > 0).all() and table["customer_id"].tolist() == whatif.customers.tolist()
    assert whatif.diff is not None
    assert set(whatif.diff.entered) == set(whatif.customers) - set(cached.customers)


# ---------------------------------------------------------------------------------------------- what-if


SETTINGS = [
    WhatIfSettings("activity", DEFAULT_EVENT_WEIGHTS, DEFAULT_ENGAGEMENT_WEIGHTS, "log1p_minmax"),
    WhatIfSettings(
        "activity",
        {**DEFAULT_EVENT_WEIGHTS, "cart": 9.0, "purchased": 0.5},
        {**DEFAULT_ENGAGEMENT_WEIGHTS, "recency": 1.0, "total_interactions": 0.0},
        "log1p_minmax",
    ),
    WhatIfSettings("activity", DEFAULT_EVENT_WEIGHTS, {**DEFAULT_ENGAGEMENT_WEIGHTS, "avg_event_score": 0.9}, "minmax"),
    WhatIfSettings("activity", {**DEFAULT_EVENT_WEIGHTS, "wishlist": 7.5}, DEFAULT_ENGAGEMENT_WEIGHTS, "percentile"),
    WhatIfSettings(
        "recency", DEFAULT_EVENT_WEIGHTS, {**DEFAULT_ENGAGEMENT_WEIGHTS, "unique_products": 0.0}, "log1p_minmax"
    ),
    WhatIfSettings("random", DEFAULT_EVENT_WEIGHTS, DEFAULT_ENGAGEMENT_WEIGHTS, "log1p_minmax"),
    WhatIfSettings("content", DEFAULT_EVENT_WEIGHTS, DEFAULT_ENGAGEMENT_WEIGHTS, "log1p_minmax", 0.5),
    WhatIfSettings("content", {**DEFAULT_EVENT_WEIGHTS, "cart": 6.0}, DEFAULT_ENGAGEMENT_WEIGHTS, "percentile", 0.85),
]


def test_whatif_offers_the_served_ranker() -> None:
    assert "content" in WHATIF_RANKERS and {"activity", "recency", "random"} <= set(WHATIF_RANKERS)
    assert WhatIfSettings("random", {}, {}, "minmax").changes() == {}  # random has no engagement knobs
    assert set(SETTINGS[-1].changes()) == {"features", "affinity_weight"}


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: f"{s.ranker}-{s.normalisation}-{s.affinity_weight}")
def test_whatif_ranking_equals_a_refit_ranker(
    log: pd.DataFrame, engine: WhatIfEngine, settings: WhatIfSettings
) -> None:
    ranker = make_ranker(settings.ranker, refit_params(settings)).fit(log)
    k = 25
    recs = ranker.rank(np.array([1, 4, 999], dtype=np.int32), k)
    for i, pid in enumerate([1, 4, 999]):
        block = slice(recs.offsets[i], recs.offsets[i + 1])
        customers, scores, cold = engine.rank(settings, pid, k)
        np.testing.assert_array_equal(customers, recs.customer_ids[block])
        np.testing.assert_array_equal(scores, recs.scores[block])
        assert cold == bool(recs.cold_start[i])


def test_whatif_respects_exclusion(log: pd.DataFrame, engine: WhatIfEngine) -> None:
    n_users = log["customer_id"].nunique()
    for settings in (SETTINGS[1], SETTINGS[-1]):
        for pid in NAMES:
            bought = set(log.loc[log["product_id"] == pid, "customer_id"])
            customers, _, _ = engine.rank(settings, pid, n_users)
            assert not bought & set(customers.tolist())
            assert len(customers) == n_users - len(bought)
        everyone, _, cold = engine.rank(settings, 424242, n_users + 5)
        assert cold and len(everyone) == n_users
    as_text, as_int = engine.rank(SETTINGS[-1], "4", 6), engine.rank(SETTINGS[-1], 4, 6)  # widgets hand ids as text
    np.testing.assert_array_equal(as_text[0], as_int[0])
    assert not as_text[2]
    with pytest.raises(ValueError, match="has no knobs"):
        engine.fitted("als")


# ---------------------------------------------------------------------------------------------- diff + export


def test_diff_entered_left_and_moves() -> None:
    diff = diff_audiences(np.array([10, 20, 30, 40]), np.array([30, 10, 50, 60]))
    assert diff.entered.tolist() == [50, 60] and diff.left.tolist() == [20, 40]
    assert diff.moves.tolist() == [2, -1, 0, 0]
    assert change_labels(diff).tolist() == ["▲2", "▼1", "new", "new"]
    same = diff_audiences(np.array([1, 2]), np.array([1, 2]))
    assert len(same.entered) == 0 and len(same.left) == 0 and change_labels(same).tolist() == ["=", "="]
    empty = diff_audiences(np.array([], dtype=np.int64), np.array([5]))
    assert empty.entered.tolist() == [5] and empty.left.tolist() == []


def test_dashboard_data_cache_whatif_and_diff(data: DashboardData, log: pd.DataFrame) -> None:
    assert data.ready and not data.issues and data.n_max == 15
    assert data.counts == {"interactions": len(log), "customers": log["customer_id"].nunique(), "products": len(NAMES)}
    cached = data.audience(1, 10)
    assert data.lookup is not None and data.whatif is not None and data.products is not None
    top, scores, cold = data.lookup.top(1, 10)
    assert cached.source == "cache" and not cold and cached.ranker == "activity"
    np.testing.assert_array_equal(cached.customers, top)
    # the same knobs through the what-if path reproduce the cache exactly: nobody entered or left
    forced = data.whatif.rank(data.default_settings(), 1, 10)
    np.testing.assert_array_equal(forced[0], top)
    assert scores.dtype == np.float32  # the cache keeps float32: equal up to that rounding
    np.testing.assert_allclose(
        np.asarray(forced[1], dtype=np.float64), scores.astype(np.float64), rtol=float(np.finfo(np.float32).eps), atol=0
    )
    changed = replace(
        data.default_settings(), weights={**DEFAULT_ENGAGEMENT_WEIGHTS, "recency": 1.0, "total_interactions": 0.0}
    )
    result = data.audience(1, 10, changed)
    assert result.source == "what-if" and result.diff is not None
    assert set(result.diff.entered) == set(result.customers) - set(top)
    assert set(result.diff.left) == set(top) - set(result.customers)
    assert len(result.diff.entered) == len(result.diff.left) > 0
    summary = audience_summary_html(result, 10)
    assert f"{len(result.diff.entered)} entered" in summary and f"{len(result.diff.left)} left" in summary
    # rounding noise from a slider still counts as "as cached"
    noisy = replace(data.default_settings(), weights={k: v + 1e-15 for k, v in DEFAULT_ENGAGEMENT_WEIGHTS.items()})
    assert data.audience(1, 10, noisy).source == "cache"
    unseen = data.audience(424242, 5, changed)
    assert unseen.cold_start and len(unseen.customers) == 5


def test_audience_table_activity_columns(data: DashboardData, log: pd.DataFrame) -> None:
    assert data.users is not None
    frame = data.audience_table(data.audience(2, 6))
    assert frame.columns.tolist() == [
        "rank",
        "customer_id",
        "score",
        "change",
        "exposures",
        "interactions",
        "distinct_products",
        "last_seen",
        "events",
    ]
    assert frame["rank"].tolist() == list(range(1, 7))
    for row in frame.itertuples():
        mine = log[log["customer_id"] == row.customer_id]
        assert row.interactions == len(mine) and row.distinct_products == mine["product_id"].nunique()
        assert row.last_seen == mine["event_date"].max()
        counts = mine["event"].value_counts()
        assert row.events == " · ".join(f"{int(counts[e])} {e}" for e in data.users.categories if counts.get(e, 0))
    audience = pd.read_parquet(audience_path(data.paths.cache_dir))
    served = audience["customer_id"].value_counts()  # audiences each customer is in at the cache depth
    assert frame["exposures"].tolist() == [int(served.get(c, 0)) for c in frame["customer_id"]]
    html_table = audience_table_html(frame)
    assert html_table.count("<tr class='recsys-row'>") == 6 and html_table.count("class='num expo'") == 6


def test_export_csv_content_and_download_link(data: DashboardData) -> None:
    changed = replace(data.default_settings(), weights={**DEFAULT_ENGAGEMENT_WEIGHTS, "recency": 1.0})
    result = data.audience(5, 8, changed)
    frame = data.audience_table(result)
    text = audience_csv(frame, 5)
    back = pd.read_csv(io.StringIO(text))
    assert back.columns.tolist() == [
        "product_id",
        "rank",
        "customer_id",
        "score",
        "exposures",
        "interactions",
        "distinct_products",
        "last_seen",
        "events",
    ]
    assert (back["product_id"] == 5).all() and back["rank"].tolist() == list(range(1, 9))
    assert back["customer_id"].tolist() == result.customers.tolist()
    np.testing.assert_allclose(back["score"], result.scores, rtol=1e-15)
    assert back["last_seen"].str.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").all()
    name = export_filename(5, result.source, len(frame))
    link = download_link_html(text, name)
    assert f'download="{name}"' in link and name == "audience_5_whatif_top8.csv"
    match = re.search(r"base64,([A-Za-z0-9+/=]+)", link)
    assert match is not None
    payload = match.group(1)
    assert base64.b64decode(payload).decode("utf-8") == "\ufeff" + text
    assert export_filename("SKU 1/2", "cache", 3) == "audience_SKU_1_2_cache_top3.csv"


# ------------------------------------------------------------------------------------- failures, metrics, wiring


def test_missing_artifacts_give_friendly_messages(tmp_path: Path) -> None:
    paths = DashboardPaths.from_env({DATA_ENV: str(tmp_path / "nothing"), REPORTS_ENV: str(tmp_path / "nothing")})
    data = DashboardData.load(paths)
    assert not data.ready and data.lookup is None
    text = " ".join(data.issues)
    assert "recsys prepare" in text and "recsys build-cache" in text and "Traceback" not in text
    view = metrics_view(paths)
    assert view.html.count("dvc repro") == 2 and not view.has_evaluation and not view.has_exploration
    assert "recsys evaluate" in view.html and "summary.json not found" in view.html
    assert "recsys prepare" in header_html(data)
    result = data.audience(1, 5)
    assert result.source == "none" and len(result.customers) == 0


def test_cache_without_prepared_data_and_corrupt_summary(tmp_path: Path, artifacts: DashboardPaths) -> None:
    paths = replace(artifacts, prepared=tmp_path / "missing.parquet", evaluation_summary=tmp_path / "summary.json")
    paths.evaluation_summary.write_text("{not json", encoding="utf-8")
    data = DashboardData.load(paths)
    assert data.lookup is not None and not data.ready and "recsys prepare" in data.issues[0]
    assert data.audience(1, 3).source == "cache"
    summary, msg = load_summary(paths.evaluation_summary)
    assert summary is None and msg is not None and "unreadable" in msg and "recsys evaluate" in msg
    assert "unreadable" in metrics_view(paths).html
    explore = tmp_path / "explore.json"
    explore.write_text("[1, 2]", encoding="utf-8")
    doc, msg = read_metrics(explore)
    assert doc is None and msg is not None and "not a JSON object" in msg and "dvc repro" in msg


# ---------------------------------------------------------------------------------------------- evaluation panel


def test_lift_rows_divide_by_the_exact_random_expectation() -> None:
    rows = lift_rows(hand_made_summary(), 10)  # random expects precision@10 = 1e-4
    assert [r.label for r in rows] == ["content", "activity", "als", "random", "oracle"]
    lifts = {r.label: (r.lift, r.lift_low, r.lift_high) for r in rows}
    assert lifts["content"] == pytest.approx((40.0, 20.0, 80.0))
    assert lifts["activity"] == pytest.approx((20.0, 10.0, 40.0))
    assert lifts["als"] == pytest.approx((0.0, 0.0, 74.0)) and lifts["oracle"] == pytest.approx((400.0, 200.0, 800.0))
    assert rows[-1].group == "reference" and rows[0].hits == 2
    assert log_domain([0.0, None, 0.05, 800.0]) == (-2, 3) and log_domain([3.0]) == (0, 1)
    assert log_domain([1e-12, 1e3]) == (-5, 3)  # at most MAX_DECADES wide: smaller values sit at the left edge


def test_lift_chart_is_on_a_log_axis_with_random_at_one() -> None:
    rows = lift_rows(hand_made_summary(), 10)
    svg = svg_lift(rows, 10, 0.95, served="activity")
    dots = [
        (float(a), float(b), fill)
        for a, b, fill in re.findall(r"data-lift='([^']+)' cx='([^']+)' cy='[^']+' r='4.5' fill='([^']+)'", svg)
    ]
    assert [d[0] for d in dots] == pytest.approx([40.0, 20.0, 0.0, 0.0, 400.0])
    left, width, decades = 150.0, 380.0, 3  # domain 10^0 .. 10^3 (the oracle's high whisker is 800)
    for lift, cx, fill in dots:
        expected = left + width * (np.log10(lift) / decades if lift > 0 else 0.0)
        assert cx == pytest.approx(expected, abs=0.1)
        assert (fill == "white") == (lift == 0)  # zero hits: a hollow dot at the axis' left edge
    assert dots[4][1] - dots[0][1] == pytest.approx(width / decades, abs=0.2)  # 400 vs 40: one decade apart
    assert "recsys-random-line" in svg and ">1×<" in svg and ">1,000×<" in svg and "0 hits" in svg
    assert "activity (served)" in svg and "oracle (ceiling)" in svg and "95% interval" in svg


def test_evaluation_panel_renders_the_summary_fields() -> None:
    s = hand_made_summary(verdicts=("cf_better", "inconclusive"))
    html_text = evaluation_html(s, Path("reports/synthetic/evaluation/summary.json"), served="activity")
    assert html_text.count("<tr class='recsys-eval-row'>") == len(s.models) + 2  # models, oracle, random
    assert "0.004 [0.002, 0.008]" in html_text and "40 [20, 80]" in html_text  # precision and lift with interval
    assert "factors=32" in html_text and "activity · served" in html_text
    assert "0.05 expected" in html_text and "1×" in html_text  # random's exact expectation row
    verdicts = re.findall(r"data-verdict='([a-z_]+)'>k=(\d+)", html_text)
    assert verdicts == [("cf_better", "10"), ("inconclusive", "100")]
    assert "<b>CF better</b>" in html_text and "<b>inconclusive (5 discordant hits)</b>" in html_text
    assert s.overall in html_text.replace("&#x27;", "'")  # the overall sentence is the summary's own field
    assert "covers its exact expectation at every k (10 and 100)" in html_text
    assert "Recommended default at k=10: <b>content</b>" in html_text
    assert "significant after Holm correction (p = 0.03)" in html_text
    assert "The cache serves <b>activity</b>, not the recommended <b>content</b>" in html_text
    assert "the recommended ranker" in evaluation_html(s, Path("x.json"), served="content")


def test_evaluation_panel_reports_a_coverage_miss_and_a_zero_random_expectation() -> None:
    s = hand_made_summary(significant=False)
    missed = s.model_copy(
        update={
            "random_coverage": [
                Coverage(k=10, expected=1e-4, low=0.0, high=0.0074, covers=True),
                Coverage(k=100, expected=1e-4, low=2e-4, high=3e-4, covers=False),
            ]
        }
    )
    text = evaluation_html(missed, Path("x.json"))
    assert "misses its exact expectation at k = 100" in text and "<td><b>no</b></td>" in text
    assert "<b>not</b> significant after Holm correction (p = 1)" in text
    rnd = s.reference("random_expected")
    zero = rnd.model_copy(update={"precision": [p.model_copy(update={"value": 0.0}) for p in rnd.precision]})
    flat = s.model_copy(update={"references": [zero, s.reference("oracle")]})
    text = evaluation_html(flat, Path("x.json"))
    assert "no lift over random to chart" in text and "<svg" not in text and "n/a" in text


def test_metrics_view_with_files(tmp_path: Path) -> None:
    paths = DashboardPaths.from_env({DATA_ENV: str(tmp_path / "data"), REPORTS_ENV: str(tmp_path / "reports")})
    write_summary(hand_made_summary(), paths.evaluation_summary)
    paths.explore_json.parent.mkdir(parents=True)
    paths.explore_json.write_text(
        json.dumps(
            {
                "one_time_users_pct": 88.8,
                "retention_pct": 3.05,
                "new_products_pct": 57.0,
                "returning_users": 10256,
                "sparsity": 0.999994,
                "rows": 498879,
                "split_cutoff": "2023-03-05",
            }
        ),
        encoding="utf-8",
    )
    view = metrics_view(paths, served="content")
    assert view.has_evaluation and view.has_exploration and "dvc repro" not in view.html
    assert view.html.count("<svg") == 2 and "recsys-lift-chart" in view.html and "one time users" in view.html
    assert "88.8%" in view.html and "10,256" in view.html and "rows" not in view.html
    assert "content (served)" in view.html
    facts = churn_facts(json.loads(paths.explore_json.read_text()))
    assert set(facts.loc[facts["is_pct"], "fact"]) == {"one_time_users_pct", "retention_pct", "new_products_pct"}


def test_paths_from_env_and_voila_command(tmp_path: Path) -> None:
    default = DashboardPaths.from_env({})
    served = config.dataset_paths(config.served_dataset())
    assert default.dataset == config.served_dataset()
    assert default.prepared == served.interactions and default.cache_dir == config.CACHE_DIR
    assert default.evaluation_summary == served.evaluation_summary
    assert default.explore_json == served.metrics_dir / "explore.json"
    custom = DashboardPaths.from_env({DATA_ENV: str(tmp_path), REPORTS_ENV: str(tmp_path / "r")}, dataset="other")
    assert custom.prepared == tmp_path / "prepared" / "other" / "interactions.parquet"
    assert custom.cache_dir == tmp_path / "artifacts" / "cache"
    assert custom.evaluation_summary == tmp_path / "r" / "datasets" / "other" / "evaluation" / "summary.json"
    assert custom.explore_json == tmp_path / "r" / "datasets" / "other" / "metrics" / "explore.json"
    with pytest.raises(ValueError, match="data set name"):
        DashboardPaths.from_env({}, dataset="Bad Name")
    cmd = voila_command(9123)
    assert cmd[1:3] == ["-m", "voila"] and Path(cmd[3]) == NOTEBOOK and NOTEBOOK.is_file()
    assert "--Voila.ip=127.0.0.1" in cmd and "--port=9123" in cmd and "--no-browser" in cmd


# ---------------------------------------------------------------------------------------------- exposure + cap


CAP = 3
CAPPED_N = 10


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory, log: pd.DataFrame) -> DashboardData:
    """The dashboard over a cache capped at CAP audiences per customer (activity, depth CAPPED_N)."""
    allocation = {"max_exposures": CAP}
    root = tmp_path_factory.mktemp("capped")
    return DashboardData.load(dashboard_dir(root, log, n=CAPPED_N, allocation=allocation, candidates=40))


def own_ranking(data: DashboardData, pid: int) -> np.ndarray:
    """The cache ranker's own ranking of every customer for a product (a fresh fit, independent of the dashboard)."""
    features = config.load_params("features")
    n_customers = data.counts["customers"]
    ranker = make_ranker("activity", {"seed": 0, "features": features}).fit(pd.read_parquet(data.paths.prepared))
    return np.asarray(ranker.rank(np.array([pid]), n_customers).customer_ids)


def test_exposure_counts_agree_with_the_cache_and_its_manifest(capped: DashboardData) -> None:
    assert capped.lookup is not None and capped.served_cap == CAP
    manifest: CacheManifest = capped.lookup.manifest
    audience = pd.read_parquet(audience_path(capped.paths.cache_dir))
    expected = audience["customer_id"].value_counts().sort_index()
    counts = capped.exposure
    assert counts.customer_ids.tolist() == expected.index.tolist() and counts.counts.tolist() == expected.tolist()
    served = manifest.exposure.served.at(CAPPED_N)
    assert int(counts.counts.max()) == served.max_exposures <= CAP and len(counts.counts) == served.distinct_customers
    assert counts.of(np.array([expected.index[0], 999_999])).tolist() == [int(expected.iloc[0]), 0]
    assert counts.of(np.array(["C1"], dtype=object)).tolist() == [0]  # another id kind: in no audience
    assert ExposureCounts.from_lookup(None).of(np.array([1, 2])).tolist() == [0, 0]


def test_capped_prefix_holds_out_customers_at_the_cap() -> None:
    other = np.array([0, 3, 1, 5, 0, 2, 4])
    chosen, held = capped_prefix(other, 3, 3)
    assert chosen.tolist() == [0, 2, 4] and held.tolist() == [1, 3]
    chosen, held = capped_prefix(other, 3, 5)  # fewer than n fit: every position at or over the cap is held out
    assert chosen.tolist() == [0, 2, 4, 5] and held.tolist() == [1, 3, 6]
    assert capped_prefix(other, 10, 2)[0].tolist() == [0, 1] and len(capped_prefix(other, 10, 2)[1]) == 0


def test_cap_whatif_deepens_the_ranking_until_n_fit() -> None:
    ranking = np.arange(100, 1100)  # customer ids in rank order
    counts = ExposureCounts(np.arange(100, 1100), np.where(np.arange(1000) < 600, 5, 0))  # the first 600 are busy
    asked: list[int] = []

    def rank(depth: int) -> tuple[np.ndarray, np.ndarray, bool]:
        asked.append(depth)
        return ranking[:depth], -np.arange(depth, dtype=np.float64), False

    served = np.array([100, 101])  # this product's own served slots do not count against the cap
    result = cap_whatif(rank, served, counts, cap=5, n=4, max_depth=1000)
    assert asked == [256, 1000] and result.depth == 1000
    assert result.customers.tolist() == [100, 101, 700, 701]
    assert len(result.held_out) == 598 and result.held_out[0] == 102 and result.scores.tolist() == [0, -1, -600, -601]
    few = cap_whatif(rank, served, counts, cap=1, n=500, max_depth=1000)  # only 400 customers are under the cap
    assert len(few.customers) == 400 and few.depth == 1000


def test_cap_choices() -> None:
    assert resolve_cap(SERVED, 50) == 50 and resolve_cap(UNCAPPED, 50) is None and resolve_cap(7, None) == 7
    with pytest.raises(ValueError, match="integer >= 1"):
        resolve_cap(0, 50)
    options = cap_options(50)
    assert options[:2] == [("as served (cap 50)", SERVED), ("uncapped (exact: the ranker's own top-n)", UNCAPPED)]
    assert [v for _, v in options[2:]] == [1, 2, 5, 10, 20, 100, 200, 500, 1000]
    assert cap_options(None)[0] == ("as served (uncapped)", SERVED) and cap_options(None)[1][1] == 1


def test_cap_whatif_in_the_dashboard(capped: DashboardData) -> None:
    assert capped.lookup is not None
    pid = int(capped.lookup.product_ids()[0])
    cached = capped.audience(pid, CAPPED_N)
    assert cached.source == "cache" and cached.cap == CAP and not cached.approximate
    ranking = own_ranking(capped, pid)
    # uncapped: exactly the ranker's own top-n; the diff names who the cap had moved out and in
    free = capped.audience(pid, CAPPED_N, cap=UNCAPPED)
    assert free.source == "what-if" and free.cap is None and not free.approximate
    assert free.customers.tolist() == ranking[:CAPPED_N].tolist()
    assert free.diff is not None and set(free.diff.entered) == set(free.customers) - set(cached.customers)
    # a tighter cap: the first customers of the ranking with fewer than `cap` other served audiences
    served_list = capped.lookup.top(pid, CAPPED_N)[0]
    other = capped.exposure.of(ranking) - np.isin(ranking, served_list)
    for cap in (1, 2):
        result = capped.audience(pid, CAPPED_N, cap=cap)
        assert result.approximate and result.cap == cap and result.held_out is not None
        assert result.customers.tolist() == ranking[other < cap][:CAPPED_N].tolist()
        last = int(np.flatnonzero(ranking == result.customers[-1])[0])
        assert result.held_out.tolist() == ranking[: last + 1][other[: last + 1] >= cap].tolist()
        assert result.diff is not None  # a list the ranking cannot fill under the cap is shorter than the served one
        assert len(result.diff.entered) - len(result.diff.left) == len(result.customers) - len(cached.customers)
        text = audience_summary_html(result, CAPPED_N, capped.cache_ranker)
        assert f"{len(result.held_out)}</b> customers of the ranking held out" in text and "approximation" in text
        assert f"{len(result.diff.entered)} entered" in text
    # a cap nobody reaches holds nobody out: the ranker's own top-n
    loose = capped.audience(pid, CAPPED_N, cap=1000)
    assert loose.customers.tolist() == free.customers.tolist() and loose.held_out is not None
    assert len(loose.held_out) == 0
    assert "a looser cap holds no one out" in audience_summary_html(loose, CAPPED_N)
    assert "looser" not in audience_summary_html(capped.audience(pid, CAPPED_N, cap=2), CAPPED_N)
    # an unseen product: its ranking is the global order and the fallback list holds no slots of its own
    global_order = own_ranking(capped, 424242)
    unseen = capped.audience(424242, CAPPED_N, cap=2)
    assert unseen.cold_start and unseen.approximate
    assert unseen.customers.tolist() == global_order[capped.exposure.of(global_order) < 2][:CAPPED_N].tolist()
    # changed weights under the served cap: the same approximation, at the served cap
    changed = replace(capped.default_settings(), weights={**DEFAULT_ENGAGEMENT_WEIGHTS, "recency": 1.0})
    moved = capped.audience(pid, CAPPED_N, changed)
    assert moved.source == "what-if" and moved.approximate and moved.cap == CAP


def test_exposure_panel_shows_the_manifest_before_and_after(capped: DashboardData, data: DashboardData) -> None:
    assert capped.lookup is not None and data.lookup is not None
    manifest = capped.lookup.manifest
    text = exposure_panel_html(manifest)
    assert f"no customer is in more than <b>{CAP}</b> served audiences of depth {CAPPED_N}" in text
    before, after = manifest.exposure.uncapped.at(CAPPED_N), manifest.exposure.served.at(CAPPED_N)
    row = re.search(
        rf"<td class='num'>{CAPPED_N}</td><td>max exposures</td><td class='num'>([^<]+)</td>"
        r"<td class='num'>([^<]+)</td>",
        text,
    )
    assert row is not None and row.groups() == (f"{before.max_exposures:,}", f"{after.max_exposures:,}")
    assert text.count("<tr>") == 1 + 7 * len(manifest.exposure.served.ks) + 1  # header, 7 metrics per k, jaccard
    assert "No frequency cap" in exposure_panel_html(data.lookup.manifest)


def test_notebook_is_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is None and c.outputs == [] for c in code)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    source = "\n".join(c.source for c in code)
    assert "DashboardData.load()" in source and "compose(data)" in source
    assert "ipywidgets" not in source  # the notebook only composes: every widget lives in a tab module


# ----------------------------------------------------------------------------------------------
# served figures and the campaign builder tab
# ----------------------------------------------------------------------------------------------


def test_the_panel_states_the_served_figures_or_not_measured(artifacts: DashboardPaths) -> None:
    measured = ServedFigures(
        status="measured",
        what="test-window precision of content, each product's own top 15",
        source="reports/datasets/synthetic/evaluation/summary.json",
        model="content",
        precision=[MeasuredPrecision(k=10, value=0.004, low=0.002, high=0.008, hits=2)],
    )
    view = metrics_view(artifacts, served=measured.model, figures=measured, ranker="content")
    assert "<b>Served</b>: content — precision@10 0.004 [0.002, 0.008] (2 hits)" in view.html
    missing = ServedFigures(status="not_measured", what="content under cap 3", reason="no study measures it")
    view = metrics_view(artifacts, served=None, figures=missing, ranker="content")
    assert "precision <b>not measured</b> (no study measures it)" in view.html and "(served)" not in view.html


def test_campaign_builder_logic(data: DashboardData, log: pd.DataFrame) -> None:
    assert data.lookup is not None
    kind = data.lookup.id_kind
    products = [int(p) for p in data.lookup.product_ids()[:12]]
    ids, bad = campaign_tab.parse_ids(" , ".join(map(str, [*products, products[0]])) + "\nnope", kind)
    assert ids == products and bad == ["nope"]  # duplicates dropped, order kept, unreadable bits reported
    view = campaign_tab.run_campaign(data, [*products, 10**9], n=6, cap=1)
    table, f = view.table, view.result.figures
    assert list(table.columns) == ["product_id", "product_name", "rank", "customer_id", "score", "reason"]
    assert table["customer_id"].value_counts().max() == 1 and f.unknown_products == [10**9]
    assert table["reason"].str.contains("interactions").all()  # every row says why
    names = log.drop_duplicates("product_id").set_index("product_id")["product_name"].astype(str)
    assert (table["product_name"] == names.reindex(table["product_id"]).to_numpy()).all()
    frame, header = read_csv(io.StringIO(view.csv))
    assert len(frame) == len(table) and header["cache_version"] == data.lookup.manifest.version
    assert header["max_per_customer"] == "1" and header["n"] == "6"
    assert view.filename == f"campaign_{len(products)}products_n6_cap1.csv"
    html_text = campaign_tab.figures_html(f) + campaign_tab.histogram_svg(f.exposure, f.uncapped_exposure)
    assert f"{f.filled:,} of {f.slots:,}" in html_text and "recsys-hist-capped" in html_text
    assert "Not in the cache (left out): 1000000000" in html_text
    assert table["score"].iloc[0] == pytest.approx(float(view.result.scores[0]), rel=1e-6)
    with pytest.raises(ValueError, match="min_audience=7 must be <= n=6"):
        campaign_tab.run_campaign(data, products, n=6, cap=1, min_audience=7)
    widget = campaign_tab.build(data)
    assert "recsys-campaign-tab" in widget._dom_classes


def test_app_composes_the_tabs_and_builds_the_others_on_first_selection(data: DashboardData) -> None:
    import ipywidgets as W

    from dashboard import explorer
    from dashboard.app_layout import TABS, TabSpec, compose

    assert TABS[0] == TabSpec("Audience explorer", "explorer") and callable(explorer.build)
    for spec in TABS:  # every listed tab is a module with build(data)
        assert callable(spec.load().build)
    app = compose(data, (TabSpec("one", "explorer"), TabSpec("two", "explorer")))
    assert app.tabs.titles == ("one", "two") and set(app.built) == {0}
    first, second = app.tabs.children

    def classes(widget: W.Widget) -> set[str]:
        found = set(getattr(widget, "_dom_classes", ()))
        for child in getattr(widget, "children", ()):
            found |= classes(child)
        return found

    assert {"recsys-search", "recsys-audience", "recsys-why", "recsys-cap"} <= classes(first)
    assert "recsys-audience" not in classes(second)  # not built yet
    app.tabs.selected_index = 1
    assert set(app.built) == {0, 1} and "recsys-audience" in classes(second)
    with pytest.raises(ValueError, match="at least one tab"):
        compose(data, ())


# ---------------------------------------------------------------------------------------------- search across languages


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("perfume", {2}),  # English finds the Arabic عطر
        ("Perfumes", {2}),  # case and a Latin plural
        ("shampoo", {6}),
        ("olive oil", {1, 7}),  # a two-word phrase of the lexicon finds زيت زيتون
        ("شوكولاتة", {8}),  # Arabic finds the English Chocolate
        ("rice 5", {3}),  # a lexicon word and a digit (the Eastern ٥ of the name)
        ("NOOR", {1, 5}),  # a transliterated brand as typed still finds the Latin spelling
        ("hala", {6}),
    ],
)
def test_search_expands_queries_through_the_bilingual_lexicon(
    index: ProductIndex, query: str, expected: set[int]
) -> None:
    lexicon = Lexicon.packaged()
    assert set(search_products(index, query, lexicon=lexicon)["product_id"]) == expected


def test_lexicon_terms_are_folded_whole_words_and_both_directions() -> None:
    lexicon = Lexicon.packaged()
    assert "عطر" in lexicon.alternatives("perfume") and "perfume" in lexicon.alternatives("عطر")
    assert lexicon.expand("Olive Oil 500") == [Unit("olive oil", ("زيت زيتون",)), Unit("500")]
    assert lexicon.expand("أرز")[0].alternatives == ("rice",)  # the query is folded like the names
    names = fold_text(["عطر 001", "العطر الفاخر", "عطرية", "Rawda Perfume"])
    pattern = unit_pattern(lexicon.expand("perfume")[0])
    assert pattern is not None
    assert pc.match_substring_regex(names, pattern).to_pylist() == [True, True, False, False]  # whole word, with ال
    with pytest.raises(ValueError, match="at least two distinct terms"):
        Lexicon.from_groups([["perfume", "Perfume"]])
    with pytest.raises(ValidationError):
        LexiconFile.model_validate({"version": 1, "groups": [["a", "b"]], "extra": 1})


def test_search_states_the_true_count_and_what_it_searched(index: ProductIndex) -> None:
    lexicon = Lexicon.packaged()
    hits = find_products(index, "G", limit=1, lexicon=lexicon)
    assert hits.total == 2 and len(hits.frame) == 1 and "جرام" in hits.also
    found = resolve_query(index, "G", limit=1, lexicon=lexicon)
    assert found.total == 2
    assert found.message.startswith("2 products match “G” (also searched: ")
    assert found.message.endswith("; the 1 with the most interactions is listed.")
    assert resolve_query(index, "perfume", lexicon=lexicon).message == (
        "1 product matches “perfume” (also searched: fragrance, scent, عطر, عطور)."
    )
    nothing = resolve_query(index, "zzqq perfume", lexicon=lexicon)
    assert nothing.matches.empty and nothing.total == 0
    assert (
        nothing.message == "No product name or id matches “zzqq perfume” (also searched: fragrance, scent, عطر, عطور)."
    )


def test_dashboard_params_extend_the_lexicon_and_reject_unknown_keys(tmp_path: Path, index: ProductIndex) -> None:
    (tmp_path / "dashboard.yaml").write_text("dashboard:\n  search:\n    limit: 5\n    lexicon: [[library, مكتبة]]\n")
    settings = dashboard_settings(tmp_path)
    assert settings.search.limit == 5
    lexicon = Lexicon.packaged(settings.search.lexicon)
    assert search_products(index, "library", lexicon=lexicon)["product_id"].tolist() == [5]
    assert search_products(index, "library", lexicon=Lexicon.packaged()).empty
    (tmp_path / "dashboard.yaml").write_text("dashboard:\n  search:\n    limt: 5\n")
    with pytest.raises(ValueError, match=r"dashboard\.yaml: dashboard\.search\.limt"):
        dashboard_settings(tmp_path)
    assert dashboard_settings(tmp_path / "none") == DashboardSettings()  # no file: the defaults


def test_a_failed_search_clears_the_card_and_says_what_was_searched(data: DashboardData) -> None:
    from dashboard.explorer import Explorer

    explorer = Explorer(data)
    explorer.wire()
    assert explorer.state["product"] is not None and explorer.table.value  # opens on the most popular product
    explorer.search_box.value = "zzqq"
    assert explorer.state["product"] is None and explorer.table.value == "" and explorer.export.value == ""
    assert "recsys-no-match" in explorer.product_card.value and "“zzqq”" in explorer.product_card.value
    explorer.search_box.value = "perfume"
    assert str(explorer.state["product"]) == "2" and "عطر 002" in explorer.product_card.value
    assert "1 product matches “perfume”" in explorer.search_msg.value


# ---------------------------------------------------------------------------------------------- explained on screen


def test_score_scale_and_help_come_from_the_cache(data: DashboardData) -> None:
    from dashboard.explain import ScoreScale, score_help_html
    from recsys.cache.build import cold_sentinel

    assert data.lookup is not None
    scale = ScoreScale.measure(data.lookup)
    ids = data.lookup.product_ids()
    assert scale.cold_start_top == pytest.approx(float(data.lookup.top(cold_sentinel(ids), 1)[1][0]))
    tops = [float(data.lookup.top(int(p), 1)[1][0]) for p in ids if len(data.lookup.top(int(p), 1)[1])]
    assert scale.products_sampled == len(tops) and scale.product_top_median == pytest.approx(float(np.median(tops)))
    text = score_help_html("content", {"affinity_weight": 0.3}, scale)
    assert "0.30 × name affinity" in text and "0.70 × engagement" in text
    assert f"its top score is {scale.cold_start_top:.2f}" in text and "<b>exposures</b>" in text
    assert "cold start" not in score_help_html("activity", {}, ScoreScale(None, None, 0))


def test_engagement_weights_are_relative_and_say_how_they_combine(data: DashboardData) -> None:
    base = data.default_settings()
    assert base.weight_total == pytest.approx(sum(base.weights.values()))
    doubled = replace(base, weights={k: 2 * v for k, v in base.weights.items()})
    assert doubled.close_to(base)  # only the shares count: the cached list is served
    pid = int(data.products.product_ids[0]) if data.products is not None else 0
    assert data.audience(pid, 5, doubled).source == "cache"
    moved = replace(base, weights={**base.weights, "recency": base.weights["recency"] + 0.55})
    assert sum(moved.scaled_weights().values()) == pytest.approx(base.weight_total)
    note = weights_note_html(moved, base)
    total = sum(moved.weights.values())
    assert f"engagement weights sum to {total:.2f}" in note and f"rescaled to sum to {base.weight_total:.2f}" in note
    share = moved.weights["recency"] / total
    assert f"recency {share:.0%}" in note and "changed" in note
    assert "are all 0" in weights_note_html(replace(base, weights=dict.fromkeys(base.weights, 0.0)), base)


# ---------------------------------------------------------------------------------------------- new product


@pytest.fixture(scope="module")
def named(tmp_path_factory: pytest.TempPathFactory, log: pd.DataFrame) -> DashboardData:
    """A dashboard over a content cache (the served ranker reads names: its index answers new names)."""
    root = tmp_path_factory.mktemp("named")
    paths = DashboardPaths.from_env({DATA_ENV: str(root / "data"), REPORTS_ENV: str(root / "reports")})
    paths.prepared.parent.mkdir(parents=True)
    log.to_parquet(paths.prepared, index=False)
    build_cache(log, "content", {"seed": 0, "token_user_cap": 500}, paths.cache_dir, n=10)
    return DashboardData.load(paths)


def test_new_product_view_matches_the_api_and_explains_every_customer(named: DashboardData) -> None:
    assert named.lookup is not None
    name = "زيت زيتون جديد 2 لتر"
    view = new_product_tab.audience_view(named, f"  {name}\x00 ", 6)
    body = name_audience(named.lookup, name, 6)
    assert view.body == body  # the page shows exactly what POST /audiences/by-name answers
    assert list(view.table.columns) == [
        "rank",
        "customer_id",
        "score",
        "engagement_part",
        "name_part",
        "matched_tokens",
        "similar_products_touched",
    ]
    assert view.table["rank"].tolist() == list(range(1, 7))
    np.testing.assert_allclose(view.table["engagement_part"] + view.table["name_part"], view.table["score"], rtol=1e-9)
    frame, header = read_csv(io.StringIO(view.csv))
    assert header["name"] == name and header["model"] == "content" and len(frame) == 6
    html_ = new_product_tab.matched_html(view.body) + new_product_tab.customers_html(view.table)
    assert "زيت" in html_ and html_.count("recsys-new-row") == 6
    for bad in ("", "   ", "x" * 501):
        with pytest.raises(ValueError):
            new_product_tab.audience_view(named, bad, 5)


def test_new_product_tab_builds(named: DashboardData, data: DashboardData) -> None:
    assert "recsys-new-tab" in new_product_tab.build(named)._dom_classes
    fallback = new_product_tab.audience_view(data, "عطر", 3)  # an activity cache: no name index, its global order
    assert fallback.body["fallback"] is True and fallback.body["basis"] == "names_unused"
