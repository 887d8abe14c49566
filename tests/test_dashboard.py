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
import pytest

from dashboard.artifacts import DashboardData
from dashboard.audience import audience_csv, change_labels, diff_audiences, export_filename
from dashboard.metrics_view import churn_facts, headline_metrics, headline_table, metrics_view, read_metrics
from dashboard.render import (
    audience_summary_html,
    audience_table_html,
    download_link_html,
    header_html,
    product_card_html,
)
from dashboard.search import (
    ProductIndex,
    most_popular_product,
    product_row,
    random_product,
    resolve_query,
    search_products,
    search_results_options,
    warm_search_index,
)
from dashboard.serve import voila_command
from dashboard.settings import DATA_ENV, NOTEBOOK, REPORTS_ENV, DashboardPaths
from dashboard.whatif import WHATIF_RANKERS, WhatIfEngine, WhatIfSettings
from recsys import config
from recsys.cache.build import build_cache
from recsys.data.contract import DATE_DTYPE
from recsys.features.engagement import (
    DEFAULT_ENGAGEMENT_WEIGHTS,
    DEFAULT_EVENT_WEIGHTS,
    compute_raw_features,
)
from recsys.features.text import fold_text, query_tokens
from recsys.rankers import make_ranker
from recsys.rankers.base import deep_merge

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
    return deep_merge(BASE_PARAMS, settings.changes())


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
    return WhatIfEngine(log, {name: BASE_PARAMS for name in WHATIF_RANKERS})


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory, log: pd.DataFrame) -> DashboardPaths:
    """A data dir laid out like data/ (prepared parquet + cache built with the project's params) and empty reports."""
    root = tmp_path_factory.mktemp("dash")
    paths = DashboardPaths.from_env({DATA_ENV: str(root / "data"), REPORTS_ENV: str(root / "reports")})
    paths.prepared.parent.mkdir(parents=True)
    log.to_parquet(paths.prepared, index=False)
    features = config.load_params("features")
    build_cache(log, "activity", {"seed": 0, "features": features}, paths.cache_dir, n=15)
    return paths


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
    paths = DashboardPaths.from_env({DATA_ENV: str(tmp_path / "data"), REPORTS_ENV: str(tmp_path / "reports")})
    paths.prepared.parent.mkdir(parents=True)
    frame.to_parquet(paths.prepared, index=False)
    build_cache(frame, "activity", {"seed": 0, "features": config.load_params("features")}, paths.cache_dir, n=6)
    data = DashboardData.load(paths)
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
    html_table = audience_table_html(frame)
    assert html_table.count("<tr class='recsys-row'>") == 6


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
    assert "recsys prepare" in header_html(data)
    result = data.audience(1, 5)
    assert result.source == "none" and len(result.customers) == 0


def test_cache_without_prepared_data_and_corrupt_metrics(tmp_path: Path, artifacts: DashboardPaths) -> None:
    paths = replace(artifacts, prepared=tmp_path / "missing.parquet", evaluate_json=tmp_path / "evaluate.json")
    paths.evaluate_json.write_text("{not json", encoding="utf-8")
    data = DashboardData.load(paths)
    assert data.lookup is not None and not data.ready and "recsys prepare" in data.issues[0]
    assert data.audience(1, 3).source == "cache"
    doc, msg = read_metrics(paths.evaluate_json)
    assert doc is None and msg is not None and "unreadable" in msg and "dvc repro" in msg


EVALUATE_LAYOUTS = [
    {
        "k": 10,
        "models": {
            "activity": {"precision@10": {"mean": 0.012, "ci": [0.01, 0.014]}},
            "als": {"precision@10": {"mean": 0.0004, "ci": [0.0001, 0.0007]}},
            "random": {"precision@10": {"mean": 0.0007, "ci_low": 0.0005, "ci_high": 0.0009}},
            "oracle": {"precision@10": {"mean": 0.1}},
        },
    },
    {
        "results": [
            {"model": "activity", "metric": "precision@10", "value": 0.012, "ci_low": 0.01, "ci_high": 0.014},
            {"model": "als", "metric": "precision@10", "value": 0.0004, "ci": [0.0001, 0.0007]},
            {"model": "random", "metric": "precision@10", "value": 0.0007, "ci_low": 0.0005, "ci_high": 0.0009},
            {"model": "oracle", "metric": "precision@10", "value": 0.1},
        ]
    },
    {
        "activity": {"precision@10": 0.012, "precision@10_ci": [0.01, 0.014]},
        "als": {"precision@10": 0.0004, "precision@10_ci_low": 0.0001, "precision@10_ci_high": 0.0007},
        "random": {"precision@10": 0.0007, "precision@10_ci": [0.0005, 0.0009]},
        "oracle": {"precision@10": 0.1},
    },
]


@pytest.mark.parametrize("doc", EVALUATE_LAYOUTS, ids=["nested", "records", "flat-suffix"])
def test_headline_table_reads_several_layouts(doc: dict[str, Any]) -> None:
    table = headline_table(doc).set_index("model")
    assert table["metric"].eq("precision@10").all()
    assert table.loc["activity", "value"] == 0.012 and table.loc["activity", "ci_low"] == 0.01
    assert table.loc["als", "ci_high"] == 0.0007 and table.loc["random", "ci_low"] == 0.0005
    assert table["ci_low"].isna().to_numpy()[table.index.get_loc("oracle")]
    assert headline_table(doc)["model"].tolist() == ["oracle", "activity", "als", "random"]
    assert headline_metrics(headline_table(doc)) == ["precision@10"]


def test_metrics_view_with_files(tmp_path: Path) -> None:
    metrics = tmp_path / "reports" / "metrics"
    metrics.mkdir(parents=True)
    (metrics / "evaluate.json").write_text(json.dumps(EVALUATE_LAYOUTS[0]), encoding="utf-8")
    (metrics / "explore.json").write_text(
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
    paths = DashboardPaths.from_env({DATA_ENV: str(tmp_path / "data"), REPORTS_ENV: str(tmp_path / "reports")})
    view = metrics_view(paths)
    assert view.has_evaluation and view.has_exploration and "dvc repro" not in view.html
    assert view.html.count("<svg") == 2 and "precision@10" in view.html and "one time users" in view.html
    assert "88.8%" in view.html and "10,256" in view.html and "rows" not in view.html
    facts = churn_facts(json.loads((metrics / "explore.json").read_text()))
    assert set(facts.loc[facts["is_pct"], "fact"]) == {"one_time_users_pct", "retention_pct", "new_products_pct"}
    (metrics / "evaluate.json").write_text(json.dumps({"note": "nothing per model"}), encoding="utf-8")
    assert "recognises" in metrics_view(paths).html


def test_paths_from_env_and_voila_command(tmp_path: Path) -> None:
    default = DashboardPaths.from_env({})
    assert default.prepared == config.PREPARED_PARQUET and default.cache_dir == config.CACHE_DIR
    assert default.evaluate_json == config.REPORTS_DIR / "metrics" / "evaluate.json"
    custom = DashboardPaths.from_env({DATA_ENV: str(tmp_path), REPORTS_ENV: str(tmp_path / "r")})
    assert custom.prepared == tmp_path / "prepared" / "synthetic" / "interactions.parquet"
    assert (
        custom.cache_dir == tmp_path / "artifacts" / "cache"
        and custom.explore_json == tmp_path / "r" / "metrics" / "explore.json"
    )
    cmd = voila_command(9123)
    assert cmd[1:3] == ["-m", "voila"] and Path(cmd[3]) == NOTEBOOK and NOTEBOOK.is_file()
    assert "--Voila.ip=127.0.0.1" in cmd and "--port=9123" in cmd and "--no-browser" in cmd


def test_notebook_is_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is None and c.outputs == [] for c in code)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert "DashboardData.load()" in code[0].source


def test_headline_reads_the_main_split_not_the_backtest() -> None:
    from dashboard.metrics_view import headline_table

    doc = {
        "models": {"als": {"precision@10": 0.5, "precision@10_ci_low": 0.4, "precision@10_ci_high": 0.6}},
        "references": {"oracle": {"precision@10": 0.9}},
        "backtest": {"q0.6": {"models": {"als": {"precision@10": 0.1}}}},
    }
    table = headline_table(doc).set_index("model")
    assert (
        table.loc["als", "value"] == 0.5 and table.loc["als", "ci_low"] == 0.4 and table.loc["oracle", "value"] == 0.9
    )
