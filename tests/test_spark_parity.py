"""The Spark engine (local[2]) against the pandas engine: same audiences and artifact, clear errors, ALS invariants."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recsys.cache.build import build_cache, canonical_order, catalogue_ids, global_fallback
from recsys.cache.facts import FACT_ARRAYS
from recsys.cache.lookup import LOOKUP_ARRAYS, MANIFEST_NAME, AudienceLookup, audience_path
from recsys.cache.manifest import read_manifest
from recsys.rankers import make_ranker

from _logs import frame, random_log

pyspark = pytest.importorskip(
    "pyspark", reason="pyspark is part of the project's `spark` extra (make setup installs it)"
)

from recsys.engines.spark.build import Inputs, build_cache_spark, rankings  # noqa: E402
from recsys.engines.spark.session import SparkSettings, spark_session  # noqa: E402

pytestmark = [
    pytest.mark.spark,
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]

N = 12
PARTITIONS = 2
SCORE_TOL = 1e-9
RUN_ONLY = {"version", "lookup_dir", "engine", "fingerprint", "source", "reasons"}  # a Spark build stores no reasons


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """One local[2] session for the module."""
    session = spark_session(SparkSettings(master="local[2]", shuffle_partitions=PARTITIONS, driver_memory="1g"))
    yield session


def tiny_log(string_ids: bool) -> pd.DataFrame:
    """Hand-made: ties (c2/c3 and c5/c6 have the same rows up to ids), undated rows, a product everybody touched."""
    c = (lambda i: f"C{i:02d}") if string_ids else (lambda i: i)
    p = (lambda i: f"SKU-{i}A") if string_ids else (lambda i: 100 + i)
    rows = [
        (c(1), p(1), "n1", "purchased", "2023-03-01T10:00:00"),
        (c(1), p(2), "n2", "cart", "2023-03-02T10:00:00"),
        (c(1), p(3), "n3", "wishlist", None),
        (c(2), p(1), "n1", "cart", "2023-02-01T00:00:00"),
        (c(2), p(4), "n4", "view", "2023-02-02T00:00:00"),
        (c(3), p(2), "n2", "cart", "2023-02-01T00:00:00"),
        (c(3), p(4), "n4", "view", "2023-02-02T00:00:00"),
        (c(4), p(4), "n4", "wishlist", None),
        (c(4), p(3), "n3", "wishlist", None),
        (c(5), p(2), "n2", "purchased", "2023-01-15T12:00:00"),
        (c(6), p(3), "n3", "purchased", "2023-01-15T12:00:00"),
        (c(7), p(4), "n4", "rating", "2023-03-31T23:00:00"),
        (c(7), p(4), "n4", "rating", "2023-03-31T23:00:00"),
    ]
    everybody = p(5)  # every customer touched it: its whole audience is excluded
    rows += [(c(i), everybody, "n5", "search_keyword", None if i % 2 else "2023-03-10T00:00:00") for i in range(1, 8)]
    return frame(rows)


def write_log(log: pd.DataFrame, tmp: Path, name: str) -> str:
    """The log as a canonical Parquet file; its path is the engine's input URI."""
    path = tmp / f"{name}.parquet"
    log.to_parquet(path)
    return str(path)


def pandas_rankings(
    log: pd.DataFrame, ranker: str, params: dict[str, Any], n: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The pandas engine's audiences (float64 scores) and its cold-start fallback, as long frames."""
    fitted = make_ranker(ranker, params).fit(canonical_order(log))
    catalogue = catalogue_ids(log)
    return fitted.rank(catalogue, n).to_frame(), global_fallback(fitted, catalogue, n).to_frame()


def spark_rankings(
    spark: Any, uri: str, ranker: str, params: dict[str, Any], n: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The Spark engine's audiences and fallback as long frames in (product, rank) order."""
    inputs = Inputs.read(spark, uri)
    try:
        ranked, fallback = rankings(spark, inputs, ranker, params, n, PARTITIONS)
        table = ranked.toArrow().to_pandas().sort_values(["product_id", "rank"], kind="stable", ignore_index=True)
    finally:
        inputs.release()
    fb = pd.DataFrame(
        {"rank": np.arange(1, len(fallback) + 1), "customer_id": fallback.customer_ids, "score": fallback.scores}
    )
    return table, fb


def assert_same_audiences(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Ids and ranks exactly equal, scores within SCORE_TOL."""
    assert len(got) == len(expected)
    for col in ("product_id", "rank", "customer_id"):
        assert got[col].astype(str).tolist() == expected[col].astype(str).tolist(), col
    np.testing.assert_allclose(got["score"].to_numpy(float), expected["score"].to_numpy(float), rtol=0, atol=SCORE_TOL)


PARITY_CASES = [  # (ranker, normalisation, string ids): every ranker, normalisation and id kind at least once
    ("activity", "log1p_minmax", False),
    ("activity", "minmax", True),
    ("activity", "percentile", False),
    ("activity", "percentile", True),
    ("recency", "log1p_minmax", True),
]


@pytest.mark.parametrize(("ranker", "normalisation", "string_ids"), PARITY_CASES)
def test_tiny_log_parity(spark: Any, tmp_path: Path, string_ids: bool, ranker: str, normalisation: str) -> None:
    log = tiny_log(string_ids)
    params = {"seed": 0, "features": {"engagement": {"normalisation": normalisation}}}
    expected, expected_fb = pandas_rankings(log, ranker, params, N)
    got, got_fb = spark_rankings(spark, write_log(log, tmp_path, "tiny"), ranker, params, N)
    assert_same_audiences(got, expected)
    assert got_fb["customer_id"].astype(str).tolist() == expected_fb["customer_id"].astype(str).tolist()
    np.testing.assert_allclose(got_fb["score"], expected_fb["score"], rtol=0, atol=SCORE_TOL)
    everybody = "SKU-5A" if string_ids else 105
    assert everybody not in set(got["product_id"].tolist())  # every customer touched it: empty audience
    assert len(got_fb) == 7  # n > customers: the fallback holds everybody


@pytest.mark.parametrize(
    ("ranker", "features", "string_ids"),
    [
        ("activity", {"engagement": {"normalisation": "percentile"}}, True),
        ("activity", {"features": {"event_weights": {"cart": 4.0}, "undated_decay": 0.3, "decay_days": 30}}, False),
        ("recency", {"features": {"reference_date": "2023-02-15"}, "engagement": {"normalisation": "minmax"}}, False),
    ],
    ids=["percentile-str-ids", "weights-undated-int-ids", "reference-date-int-ids"],
)
def test_small_log_parity(spark: Any, tmp_path: Path, ranker: str, features: dict[str, Any], string_ids: bool) -> None:
    log = random_log(n_rows=2500, n_users=300, n_products=70, seed=5, str_ids=string_ids, undated_frac=0.1)
    params = {"seed": 0, "features": features}
    expected, expected_fb = pandas_rankings(log, ranker, params, N)
    got, got_fb = spark_rankings(spark, write_log(log, tmp_path, "small"), ranker, params, N)
    assert_same_audiences(got, expected)
    assert got_fb["customer_id"].astype(str).tolist() == expected_fb["customer_id"].astype(str).tolist()


def assert_same_cache(spark_dir: Path, pandas_dir: Path) -> None:
    """Same audience.parquet rows (float32 scores within one float32 step), same lookup arrays, same manifest facts."""
    a = pd.read_parquet(audience_path(spark_dir))
    b = pd.read_parquet(audience_path(pandas_dir))
    assert list(a.columns) == list(b.columns) == ["product_id", "rank", "customer_id", "score"]
    assert a.dtypes.tolist() == b.dtypes.tolist()
    for col in ("product_id", "rank", "customer_id"):
        assert a[col].tolist() == b[col].tolist()
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-6, atol=1e-7)
    ma = json.loads((spark_dir / MANIFEST_NAME).read_text())
    mb = json.loads((pandas_dir / MANIFEST_NAME).read_text())
    assert ma["engine"]["name"] == "spark" and mb["engine"] == {"name": "pandas", "spark_version": None, "master": None}
    reason_files = {f"{key}.npy" for key in FACT_ARRAYS}  # the pandas build's reason facts; Spark stores none
    assert set(mb["files"]["checksums"]) - set(ma["files"]["checksums"]) == reason_files
    mb["files"]["checksums"] = {k: v for k, v in mb["files"]["checksums"].items() if k not in reason_files}
    for m in (ma, mb):  # the version (a digest that covers the reason files) names the directory the paths are in
        m["files"] = {k: v.removeprefix(m["lookup_dir"]) if isinstance(v, str) else v for k, v in m["files"].items()}
    assert {k: v for k, v in ma.items() if k not in RUN_ONLY} == {k: v for k, v in mb.items() if k not in RUN_ONLY}
    for key in LOOKUP_ARRAYS:
        x = np.load(spark_dir / ma["lookup_dir"] / f"{key}.npy")
        y = np.load(pandas_dir / mb["lookup_dir"] / f"{key}.npy")
        assert x.dtype == y.dtype and x.shape == y.shape, key
        if key.endswith("scores"):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
        else:
            assert np.array_equal(x, y), key


@pytest.mark.parametrize("string_ids", [False, True], ids=["int-ids", "str-ids"])
def test_cache_artifact_equals_the_pandas_engine(spark: Any, tmp_path: Path, string_ids: bool) -> None:
    log = random_log(n_rows=1500, n_users=150, n_products=40, seed=8, str_ids=string_ids)
    log = pd.concat([log, tiny_log(string_ids)], ignore_index=True) if string_ids else log
    uri = write_log(log, tmp_path, "log")
    params = {"seed": 0, "features": {}}
    build_cache(log, "activity", params, tmp_path / "pandas", n=N, export="parquet")
    manifest = build_cache_spark(
        uri,
        "activity",
        params,
        tmp_path / "spark",
        n=N,
        export="parquet",
        spark=spark,
        settings=SparkSettings(shuffle_partitions=PARTITIONS, rows_per_output_partition=100),
    )
    assert manifest.fingerprint.algorithm == "sha256-file" and manifest.engine.master == spark.sparkContext.master
    assert manifest == read_manifest(tmp_path / "spark")
    assert_same_cache(tmp_path / "spark", tmp_path / "pandas")
    assert manifest.files.export == f"{manifest.lookup_dir}/audience_original.parquet"
    exported = pd.read_parquet(tmp_path / "spark" / manifest.files.export)
    assert len(exported) == manifest.counts.rows
    lookup = AudienceLookup.open(tmp_path / "spark")
    first = lookup.product_ids()[0]
    assert lookup.top(first, N)[0].tolist() == AudienceLookup.open(tmp_path / "pandas").top(first, N)[0].tolist()
    assert not list(tmp_path.glob(".recsys-staging-*"))  # the staging directory is removed


def test_cache_with_no_allowed_customer(spark: Any, tmp_path: Path) -> None:
    log = frame([("C1", "SKU-1", "x", "purchased", "2023-01-01")])
    manifest = build_cache_spark(write_log(log, tmp_path, "one"), "activity", {}, tmp_path / "c", n=5, spark=spark)
    assert manifest.counts.rows == 0 and len(pd.read_parquet(audience_path(tmp_path / "c"))) == 0
    lookup = AudienceLookup.open(tmp_path / "c")
    assert len(lookup.top("SKU-1", 5)[0]) == 0 and lookup.top("elsewhere", 5)[0].tolist() == ["C1"]


def test_clear_errors(spark: Any, tmp_path: Path) -> None:
    log = random_log(n_rows=300, n_users=40, n_products=10, seed=1)
    uri = write_log(log, tmp_path, "log")
    with pytest.raises(
        ValueError, match=r"ranker 'content' is not available on the spark engine.*cache.engine: pandas"
    ):
        build_cache_spark(uri, "content", {}, tmp_path / "c", spark=spark)
    with pytest.raises(FileNotFoundError, match="recsys prepare"):
        build_cache_spark(str(tmp_path / "nowhere.parquet"), "activity", {}, tmp_path / "c", spark=spark)
    log.drop(columns=["event"]).to_parquet(tmp_path / "no_event.parquet")
    with pytest.raises(ValueError, match=r"lack column\(s\) \['event'\]"):
        build_cache_spark(str(tmp_path / "no_event.parquet"), "activity", {}, tmp_path / "c", spark=spark)
    odd = log.assign(event=log["event"].cat.add_categories(["returned"]))
    odd.loc[0, "event"] = "returned"
    odd.to_parquet(tmp_path / "odd.parquet")
    with pytest.raises(ValueError, match=r"no weight for event\(s\) \['returned'\]"):
        build_cache_spark(str(tmp_path / "odd.parquet"), "activity", {}, tmp_path / "c", spark=spark)
    with pytest.raises(ValueError, match="cache depth n must be >= 1"):
        build_cache_spark(uri, "activity", {}, tmp_path / "c", n=0, spark=spark)
    assert not (tmp_path / "c" / MANIFEST_NAME).exists()


def test_als_invariants(spark: Any, tmp_path: Path) -> None:
    log = random_log(n_rows=2000, n_users=200, n_products=50, seed=3)
    uri = write_log(log, tmp_path, "log")
    params = {"factors": 8, "iterations": 3, "regularization": 0.05, "seed": 7}
    first, fallback = spark_rankings(spark, uri, "als", params, N)
    touched = set(zip(log["product_id"].tolist(), log["customer_id"].tolist(), strict=True))
    assert not {(p, c) for p, c in zip(first["product_id"], first["customer_id"], strict=True)} & touched
    n_customers = log["customer_id"].nunique()
    sizes = first.groupby("product_id").size()
    own = log.groupby("product_id")["customer_id"].nunique()
    assert (sizes == np.minimum(N, n_customers - own.reindex(sizes.index))).all()  # a full audience wherever possible
    assert set(sizes.index) == set(own.index[own < n_customers])
    assert (first["rank"] == first.groupby("product_id").cumcount() + 1).all()
    assert (first.groupby("product_id")["score"].diff().dropna() <= 0).all()
    ties = first.groupby(["product_id", "score"])["customer_id"].apply(lambda s: s.is_monotonic_increasing)
    assert ties.all()
    assert len(fallback) == N and fallback["score"].is_monotonic_decreasing
    manifest = build_cache_spark(uri, "als", params, tmp_path / "c", n=N, spark=spark)
    assert manifest.ranker == "als" and manifest.counts.rows == len(first)
    cached = pd.read_parquet(audience_path(tmp_path / "c"))  # a second fit with the same seed: the same audiences
    for col in ("product_id", "rank", "customer_id"):
        assert cached[col].tolist() == first[col].tolist()
    np.testing.assert_allclose(cached["score"], first["score"].astype(np.float32), rtol=1e-6)
    assert AudienceLookup.open(tmp_path / "c").top(987_654, 3)[0].tolist() == fallback["customer_id"].head(3).tolist()


def test_cli_engine_spark_builds_a_cache_the_service_serves(spark: Any, tmp_path: Path) -> None:
    import warnings

    from recsys.cli import main
    from service.app import create_app
    from service.settings import ServiceSettings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient.*")
        from fastapi.testclient import TestClient

    log = random_log(n_rows=800, n_users=80, n_products=20, seed=4)
    uri = write_log(log, tmp_path, "log")
    cache_dir = tmp_path / "cache"
    args = ["build-cache", "--engine", "spark", "--ranker", "activity", "--input", uri, "--output", str(cache_dir)]
    assert main(args) == 0  # the default cache is uncapped: each product's own top-n, on Spark too
    assert main([*args, "--uncapped"]) == 0
    manifest = read_manifest(cache_dir)
    assert manifest.engine.name == "spark" and manifest.ranker == "activity" and manifest.n >= 1
    assert manifest.allocation.max_exposures is None and not manifest.allocation.stats.capped
    expected = pd.read_parquet(audience_path(cache_dir))
    product = int(expected["product_id"].iloc[0])
    assert manifest.candidate_depth >= manifest.n and manifest.reasons is None
    with TestClient(create_app(ServiceSettings(cache_dir=cache_dir, reload_interval_s=0.0))) as client:
        body = client.get(f"/recommend/{product}", params={"n": 3}).json()
        products = [int(p) for p in expected["product_id"].unique()[:5]]
        campaign = client.post("/campaigns", json={"product_ids": products, "n": 3, "max_per_customer": 1})
        explained = client.get(f"/recommend/{product}", params={"n": 3, "explain": "true"})
    want = expected[expected["product_id"] == product].head(3)["customer_id"].tolist()
    assert [r["customer_id"] for r in body["recommendations"]] == want and body["cold_start"] is False
    customers = [c["customer_id"] for a in campaign.json()["audiences"] for c in a["customers"]]
    assert campaign.status_code == 200 and len(customers) == len(set(customers))  # campaigns from Spark's candidates
    assert explained.status_code == 422 and "stores no reasons" in explained.text


def test_engine_and_settings_errors_name_the_param(tmp_path: Path) -> None:
    from recsys.cache.stage import build_cache_from_params
    from recsys.engines import check_engine

    assert check_engine("spark") == "spark"
    from recsys.engines.spark.build import build_cache_spark_from_params

    capped = {"cache": {"ranker": "activity", "allocation": {"max_exposures": 5}}}
    with pytest.raises(ValueError, match="the capped allocation runs on the single-machine engine only"):
        build_cache_spark_from_params(capped, {}, tmp_path / "x.parquet", tmp_path / "c")
    with pytest.raises(ValueError, match=r"cache.engine must be one of \('pandas', 'spark'\), got 'dask'"):
        build_cache_from_params(tmp_path / "x.parquet", tmp_path / "c", overrides={"engine": "dask"})
    with pytest.raises(ValueError, match=r"cache.spark has unknown key\(s\) \['mastr'\]"):
        SparkSettings.from_params({"mastr": "local[1]"})
    with pytest.raises(ValueError, match="cache.spark.shuffle_partitions must be >= 1"):
        SparkSettings.from_params({"shuffle_partitions": 0})
    settings = SparkSettings.from_params({"master": "spark://127.0.0.1:7077", "conf": {"spark.executor.memory": "2g"}})
    assert settings.master == "spark://127.0.0.1:7077" and settings.conf == {"spark.executor.memory": "2g"}
    assert settings.input is None and settings.shuffle_partitions == SparkSettings().shuffle_partitions


def test_uris_stay_uris() -> None:
    from recsys.engines.spark.session import has_scheme, join_uri, local_path

    assert local_path("s3a://bucket/data/interactions.parquet") is None
    assert local_path("hdfs://nn:8020/data") is None
    assert local_path("file:///tmp/x.parquet") == "/tmp/x.parquet" and local_path("data/x.parquet") == "data/x.parquet"
    assert has_scheme("s3a://b/k") and not has_scheme("/tmp/x") and not has_scheme("C:/data/x")
    assert join_uri("s3a://bucket/staging/", "run-1", "audience") == "s3a://bucket/staging/run-1/audience"
