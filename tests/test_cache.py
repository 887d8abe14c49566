"""The audience cache: artifact layout, determinism, lookups, string ids, clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recsys.cache.build import build_cache
from recsys.cache.lookup import (
    AUDIENCE_NAME,
    MANIFEST_NAME,
    AudienceLookup,
    CacheCorruptError,
    CacheError,
    CacheNotFoundError,
    audience_path,
)
from recsys.cache.manifest import FORMAT_VERSION, CacheManifest, read_manifest
from recsys.cache.served import served_differences, served_models
from recsys.cache.stage import build_cache_from_params
from recsys.evaluation.results import SelectedModel, Selection, ValidationScore, write_record
from recsys.exports import read_csv
from recsys.rankers import make_ranker
from recsys.rankers.base import GlobalRanker

from _logs import frame, random_log, settings_for

N = 12


def build(log: pd.DataFrame, cache_dir: Path, ranker: str = "activity", **kwargs: Any) -> CacheManifest:
    """build_cache with the test defaults."""
    return build_cache(log, ranker, settings_for(ranker, {"seed": 0, "token_user_cap": 20}), cache_dir, n=N, **kwargs)


@pytest.fixture(scope="module")
def int_log() -> pd.DataFrame:
    return random_log(n_rows=2000, n_users=200, n_products=60, seed=21)


@pytest.fixture(scope="module")
def int_cache(tmp_path_factory: pytest.TempPathFactory, int_log: pd.DataFrame) -> tuple[Path, CacheManifest]:
    cache_dir = tmp_path_factory.mktemp("cache")
    return cache_dir, build(int_log, cache_dir)


def test_artifact_layout_and_manifest(int_cache: tuple[Path, CacheManifest], int_log: pd.DataFrame) -> None:
    cache_dir, manifest = int_cache
    text = (cache_dir / MANIFEST_NAME).read_text()
    assert read_manifest(cache_dir) == manifest and AudienceLookup.open(cache_dir).manifest == manifest
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"  # sorted keys: stable bytes
    on_disk = json.loads(text)
    assert on_disk["format_version"] == FORMAT_VERSION and "created_at" not in on_disk  # nothing time-dependent
    assert manifest.ranker == "activity" and manifest.n == N and manifest.engine.name == "pandas"
    assert manifest.ranker_params["seed"] == 0
    assert (manifest.id_kinds.product_id, manifest.id_kinds.customer_id) == ("int", "int")
    assert manifest.fingerprint.algorithm == "sha256-rows" and len(manifest.fingerprint.value) == 64
    assert manifest.allocation.max_exposures is None and manifest.allocation.depth == N
    assert not manifest.allocation.capped and manifest.allocation.stats.capped is False
    exposure = manifest.exposure
    assert exposure.served == exposure.uncapped and exposure.served.ks == [10, N]  # 100 > N: whole lists
    assert on_disk["exposure"]["served"]["at_k"].keys() == {"10", str(N)}
    assert manifest.counts.products == int_log["product_id"].nunique()
    assert manifest.counts.interactions == len(int_log) and manifest.counts.catalogue == manifest.counts.products
    assert (cache_dir / manifest.lookup_dir).is_dir() and manifest.lookup_dir == f"lookup-{manifest.version}"
    audience = pd.read_parquet(audience_path(cache_dir))
    assert list(audience.columns) == ["product_id", "rank", "customer_id", "score"]
    assert len(audience) == manifest.counts.rows
    assert manifest.counts.customers_ranked == audience["customer_id"].nunique()
    assert manifest.files.audience == f"{manifest.lookup_dir}/{AUDIENCE_NAME}" and manifest.files.export is None
    assert audience.equals(audience.sort_values(["product_id", "rank"]).reset_index(drop=True))
    assert (audience["rank"] == audience.groupby("product_id").cumcount() + 1).all()
    assert (audience.groupby("product_id")["score"].diff().dropna() <= 0).all()


def test_parquet_matches_the_ranker_and_the_lookup(
    int_cache: tuple[Path, CacheManifest], int_log: pd.DataFrame
) -> None:
    cache_dir, _ = int_cache
    audience = pd.read_parquet(audience_path(cache_dir))
    products = np.sort(int_log["product_id"].unique())
    expected = make_ranker("activity", {"seed": 0}).fit(int_log).rank(products, N).to_frame()
    pd.testing.assert_frame_equal(audience, expected, check_dtype=False)
    lookup = AudienceLookup.open(cache_dir)
    assert lookup.n == N and lookup.id_kind == "int"
    assert np.array_equal(lookup.product_ids(), products)
    for p, block in audience.groupby("product_id"):
        customers, scores, cold = lookup.top(p, N)
        assert customers.tolist() == block["customer_id"].tolist()
        np.testing.assert_array_equal(scores, block["score"].to_numpy())
        assert cold is False
    first = int(products[0])
    assert lookup.top(first, 3)[0].tolist() == audience.query("product_id == @first")["customer_id"].head(3).tolist()
    assert lookup.top(str(first), 3)[0].tolist() == lookup.top(np.int32(first), 3)[0].tolist()
    assert len(lookup.top(first, 10_000)[0]) <= N and len(lookup.top(first, 0)[0]) == 0


def test_cold_start_lookup_serves_the_global_order(
    int_cache: tuple[Path, CacheManifest], int_log: pd.DataFrame
) -> None:
    lookup = AudienceLookup.open(int_cache[0])
    customers, scores, cold = lookup.top(987_654, 5)
    assert cold is True and not lookup.known(987_654) and lookup.known(int(lookup.product_ids()[0]))
    activity = make_ranker("activity").fit(int_log)
    assert isinstance(activity, GlobalRanker)
    eng = activity.features_["engagement"]
    assert customers.tolist() == eng.sort_values(ascending=False, kind="stable").index[:5].tolist()
    assert lookup.top("SKU-1", 5)[2] is True and lookup.top(None, 5)[2] is True


def _tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("allocation", [None, {"max_exposures": 4}])
def test_two_builds_give_identical_bytes(tmp_path: Path, int_log: pd.DataFrame, allocation: dict | None) -> None:
    a = build(int_log, tmp_path / "a", ranker="content", allocation=allocation, candidates=30)
    b = build(
        int_log.sample(frac=1.0, random_state=3), tmp_path / "b", ranker="content", allocation=allocation, candidates=30
    )
    assert (audience_path(tmp_path / "a")).read_bytes() == (audience_path(tmp_path / "b")).read_bytes()
    assert (tmp_path / "a" / MANIFEST_NAME).read_bytes() == (tmp_path / "b" / MANIFEST_NAME).read_bytes()
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")  # lookup arrays and directory names too
    assert a.files.audience_sha256 == b.files.audience_sha256
    assert a.fingerprint == b.fingerprint  # row-order independent content fingerprint
    assert a == b


def test_rebuilds_keep_two_lookup_dirs_and_replace_the_manifest(tmp_path: Path, int_log: pd.DataFrame) -> None:
    logs = [int_log.iloc[: len(int_log) - 100 * i] for i in range(3)]  # three different inputs
    names = [build(log, tmp_path).lookup_dir for log in logs]
    assert len(set(names)) == 3
    kept = sorted(p.name for p in tmp_path.glob("lookup-*"))
    assert kept == sorted(names[1:])
    assert AudienceLookup.open(tmp_path).manifest.lookup_dir == names[-1]
    assert not list(tmp_path.glob(".*tmp*"))
    # the same input again: same version, its lookup dir is reused and counts as the newest
    assert build(logs[1], tmp_path).lookup_dir == names[1]
    assert sorted(p.name for p in tmp_path.glob("lookup-*")) == sorted(names[1:])
    assert build(logs[0], tmp_path).lookup_dir == names[0]
    assert sorted(p.name for p in tmp_path.glob("lookup-*")) == sorted([names[0], names[1]])


def test_string_ids_end_to_end(tmp_path: Path) -> None:
    log = random_log(n_rows=1500, n_users=150, n_products=40, seed=8, str_ids=True)
    log.loc[0, "product_id"] = "SKU-85123A"
    log.loc[0, "customer_id"] = "C001"
    manifest = build(log, tmp_path, ranker="content", export="parquet")
    assert (manifest.id_kinds.product_id, manifest.id_kinds.customer_id) == ("str", "str")
    assert manifest.files.export == f"{manifest.lookup_dir}/audience_original.parquet"
    lookup = AudienceLookup.open(tmp_path)
    assert lookup.id_kind == "str" and lookup.known("SKU-85123A")
    audience = pd.read_parquet(audience_path(tmp_path))
    assert audience["customer_id"].dtype == "string" and audience["product_id"].dtype == "string"
    block = audience[audience["product_id"] == "SKU-85123A"]
    customers, scores, cold = lookup.top("SKU-85123A", N)
    assert customers.tolist() == block["customer_id"].tolist() and not cold
    assert "C001" not in customers.tolist()  # C001 interacted with SKU-85123A
    assert lookup.top("SKU-NOPE", 3)[2] is True and lookup.top(12345, 3)[2] is True
    exported = pd.read_parquet(tmp_path / manifest.files.export)
    assert list(exported.columns) == ["product_id", "customer_id", "score", "rank"] and len(exported) == len(audience)


@pytest.mark.parametrize("ids", [(1, 1), ("C1", "SKU-1")])
def test_catalogue_with_no_allowed_customer(tmp_path: Path, ids: tuple[object, object]) -> None:
    log = frame([(ids[0], ids[1], "x", "purchased", "2023-01-01")])
    manifest = build_cache(log, "content", {}, tmp_path, n=5)
    assert manifest.counts.rows == 0 and len(pd.read_parquet(audience_path(tmp_path))) == 0
    lookup = AudienceLookup.open(tmp_path)
    customers, scores, cold = lookup.top(ids[1], 5)
    assert len(customers) == 0 and len(scores) == 0 and cold is False
    assert lookup.top("elsewhere", 5)[0].tolist() == [ids[0]]  # the only customer, for an unseen product


def test_csv_export(tmp_path: Path, int_log: pd.DataFrame) -> None:
    manifest = build(int_log, tmp_path, export="csv")
    assert manifest.files.export is not None
    exported, _ = read_csv(tmp_path / manifest.files.export)
    assert list(exported.columns) == ["product_id", "customer_id", "score", "rank"]
    with pytest.raises(ValueError, match="export"):
        build(int_log, tmp_path, export="xlsx")


CAP = 4


@pytest.mark.parametrize("ranker", ["activity", "content"])
def test_capped_cache_invariants_on_the_built_cache(tmp_path: Path, int_log: pd.DataFrame, ranker: str) -> None:
    manifest = build(
        int_log,
        tmp_path,
        ranker=ranker,
        export="csv",
        allocation={"max_exposures": CAP, "min_audience": 2},
        candidates=40,
    )
    alloc = manifest.allocation
    assert alloc.max_exposures == CAP and alloc.depth == N and alloc.min_audience == 2 and alloc.capped
    assert manifest.candidate_depth == 40 and alloc.stats.capped is True and alloc.stats.k == N
    assert alloc.stats.pairs == manifest.counts.rows == (alloc.stats.from_candidates or 0) + (alloc.stats.fill_ins or 0)
    audience = pd.read_parquet(audience_path(tmp_path))
    lookup = AudienceLookup.open(tmp_path)
    served = {p: lookup.top(p, N) for p in lookup.product_ids().tolist()}
    from_lookup = pd.concat(
        [pd.DataFrame({"product_id": p, "customer_id": c, "score": s}) for p, (c, s, _) in served.items()],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(from_lookup, audience[["product_id", "customer_id", "score"]], check_dtype=False)
    # no customer over the cap
    assert audience["customer_id"].value_counts().max() <= CAP
    # nobody who already touched the product
    touched = int_log[["product_id", "customer_id"]].drop_duplicates()
    assert len(audience.merge(touched, on=["product_id", "customer_id"])) == 0
    # ranks 1..n, scores non-increasing, each customer once per product
    assert (audience["rank"] == audience.groupby("product_id").cumcount() + 1).all()
    assert (audience.groupby("product_id")["score"].diff().dropna() <= 0).all()
    assert not audience.duplicated(["product_id", "customer_id"]).any()
    # min_audience honoured (the cap leaves room: 200 customers x 4 >= 60 products x 12)
    assert audience.groupby("product_id").size().min() >= 2 and len(served) == int_log["product_id"].nunique()
    # the manifest reports both sides of the cap
    before, after = manifest.exposure.uncapped.at(N), manifest.exposure.served.at(N)
    assert before.max_exposures > CAP >= after.max_exposures
    assert after.max_exposures == audience["customer_id"].value_counts().max()
    assert after.distinct_customers == audience["customer_id"].nunique() > before.distinct_customers
    assert manifest.files.export is not None
    exported, _ = read_csv(tmp_path / manifest.files.export)
    pd.testing.assert_frame_equal(exported, audience[["product_id", "customer_id", "score", "rank"]], check_dtype=False)


def test_capped_cache_with_string_ids(tmp_path: Path) -> None:
    log = random_log(n_rows=1500, n_users=150, n_products=40, seed=8, str_ids=True)
    manifest = build(log, tmp_path, ranker="content", allocation={"max_exposures": 3}, candidates=30)
    assert (manifest.id_kinds.product_id, manifest.id_kinds.customer_id) == ("str", "str")
    audience = pd.read_parquet(audience_path(tmp_path))
    assert audience["customer_id"].value_counts().max() <= 3 < manifest.exposure.uncapped.at(N).max_exposures
    touched = log[["product_id", "customer_id"]].drop_duplicates()
    assert len(audience.merge(touched, on=["product_id", "customer_id"])) == 0
    lookup = AudienceLookup.open(tmp_path)
    first = str(lookup.product_ids()[0])
    assert lookup.top(first, N)[0].tolist() == audience.loc[audience["product_id"] == first, "customer_id"].tolist()


def test_allocation_params_errors(tmp_path: Path, int_log: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="cache.allocation.max_exposures must be >= 1"):
        build(int_log, tmp_path, allocation={"max_exposures": 0})
    with pytest.raises(ValueError, match="cache.candidates must be >= cache.n"):
        build(int_log, tmp_path, allocation={"max_exposures": 3}, candidates=N - 1)
    with pytest.raises(ValueError, match="unknown key"):
        build(int_log, tmp_path, allocation={"cap": 3})
    with pytest.raises(ValueError, match="min_audience"):
        build(int_log, tmp_path, allocation={"max_exposures": 3, "min_audience": N + 1})


def test_missing_cache_error_names_path_and_command(tmp_path: Path) -> None:
    with pytest.raises(CacheNotFoundError) as info:
        AudienceLookup.open(tmp_path / "nowhere")
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message
    assert "recsys build-cache" in message and "dvc repro cache" in message
    assert isinstance(info.value, FileNotFoundError)


def _corrupt_copy(src: Path, dst: Path) -> Path:
    """A copy of a built cache directory to damage."""
    import shutil

    shutil.copytree(src, dst)
    return dst


DAMAGES = ("manifest-garbage", "manifest-keys", "lookup-dir", "array-missing", "array-truncated", "offsets")


@pytest.mark.parametrize("damage", DAMAGES)
def test_corrupt_cache_errors(tmp_path: Path, int_cache: tuple[Path, CacheManifest], damage: str) -> None:
    cache_dir = _corrupt_copy(int_cache[0], tmp_path / "c")
    manifest = json.loads((cache_dir / MANIFEST_NAME).read_text())
    lookup_dir = cache_dir / manifest["lookup_dir"]
    if damage == "manifest-garbage":
        (cache_dir / MANIFEST_NAME).write_text("{not json")
    elif damage == "manifest-keys":
        (cache_dir / MANIFEST_NAME).write_text(json.dumps({"n": 3}))
    elif damage == "lookup-dir":
        import shutil

        shutil.rmtree(lookup_dir)
    elif damage == "array-missing":
        (lookup_dir / "scores.npy").unlink()
    elif damage == "array-truncated":
        (lookup_dir / "customers.npy").write_bytes((lookup_dir / "customers.npy").read_bytes()[:20])
    elif damage == "offsets":
        offsets = np.load(lookup_dir / "offsets.npy")
        np.save(lookup_dir / "offsets.npy", offsets[::-1].copy())
    with pytest.raises(CacheCorruptError) as info:
        AudienceLookup.open(cache_dir)
    assert str(cache_dir) in str(info.value) and "recsys build-cache" in str(info.value)
    assert isinstance(info.value, CacheError)


def test_build_cache_from_params(tmp_path: Path, int_log: pd.DataFrame) -> None:
    prepared = tmp_path / "interactions.parquet"
    int_log.to_parquet(prepared)
    selection = write_selection(tmp_path / "selection.json")
    manifest = build_cache_from_params(
        prepared_path=prepared, cache_dir=tmp_path / "cache", selection=tmp_path / "selection.json"
    )
    assert manifest.ranker == selection.products.ranker and manifest.model_source == "selection"
    assert manifest.fingerprint.algorithm == "sha256-file"
    assert manifest.candidate_depth == manifest.candidates.depth >= manifest.n  # params/cache.yaml: cache.candidates
    assert manifest.served.status == "not_measured" and "not one of the pipeline's data sets" in (
        manifest.served.reason or ""
    )
    assert manifest.source == str(prepared)  # outside the project root: the path as given
    assert manifest.ranker and manifest.n >= 1 and "features" in manifest.ranker_params
    lookup = AudienceLookup.open(tmp_path / "cache")
    assert len(lookup) == int_log["product_id"].nunique()
    assert manifest.dataset is None and read_manifest(tmp_path / "cache").dataset is None  # a file given by path
    with pytest.raises(ValueError, match=r"params/cache.yaml: cache.processes must be an integer >= 1, got 0"):
        build_cache_from_params(
            prepared_path=prepared,
            cache_dir=tmp_path / "bad",
            overrides={"processes": 0},
            selection=tmp_path / "selection.json",
        )
    named = build_cache(int_log, "activity", {}, tmp_path / "named", n=N, dataset="online_retail")
    assert named.dataset == read_manifest(tmp_path / "named").dataset == "online_retail"


MANIFEST_DAMAGES = {
    "missing-field": (lambda m: m["counts"].pop("rows"), "counts.rows: Field required"),
    "wrong-type": (lambda m: m.update(n="many"), "n: Input should be a valid integer"),
    "unknown-field": (lambda m: m.update(created_at="2024-01-01"), "created_at: Extra inputs are not permitted"),
    "bad-kind": (
        lambda m: m["id_kinds"].update(product_id="float"),
        "id_kinds.product_id: Input should be 'int' or 'str'",
    ),
    "old-format": (lambda m: m.update(format_version=3), f"format version 3, this code reads version {FORMAT_VERSION}"),
    "not-an-object": (None, "manifest.json is not a JSON object"),
}


@pytest.mark.parametrize("damage", sorted(MANIFEST_DAMAGES))
def test_invalid_manifest_names_the_file_the_field_and_the_fix(
    tmp_path: Path, int_cache: tuple[Path, CacheManifest], damage: str
) -> None:
    cache_dir = _corrupt_copy(int_cache[0], tmp_path / "c")
    change, expected = MANIFEST_DAMAGES[damage]
    doc = json.loads((cache_dir / MANIFEST_NAME).read_text())
    if change is None:
        doc = [doc]
    else:
        change(doc)
    (cache_dir / MANIFEST_NAME).write_text(json.dumps(doc))
    for read in (read_manifest, AudienceLookup.open):
        with pytest.raises(CacheCorruptError) as info:
            read(cache_dir)
        message = str(info.value)
        assert expected in message and MANIFEST_NAME in message, message
        assert str(cache_dir) in message and "recsys build-cache" in message


def test_manifest_round_trips_through_its_json(int_cache: tuple[Path, CacheManifest]) -> None:
    manifest = int_cache[1]
    assert CacheManifest.model_validate_json(manifest.to_json()) == manifest
    assert (int_cache[0] / MANIFEST_NAME).read_text() == manifest.to_json()
    with pytest.raises(ValueError, match="frozen"):
        manifest.n = 3  # type: ignore[misc]


@pytest.mark.parametrize("ids", ["dense-int", "sparse-int", "str"])
def test_exposure_counts_of_the_lookup_equal_the_audience_counts(tmp_path: Path, ids: str) -> None:
    log = random_log(n_rows=1500, n_users=150, n_products=40, seed=8, str_ids=ids == "str")
    if ids == "sparse-int":  # ids far above the dense-bincount limit: counted with one sort instead
        log["customer_id"] = log["customer_id"].astype(np.int64) * 10**12
    manifest = build(log, tmp_path, allocation={"max_exposures": 3}, candidates=30)
    customers, counts = AudienceLookup.open(tmp_path).exposure_counts()
    expected = pd.read_parquet(audience_path(tmp_path))["customer_id"].value_counts().sort_index()
    assert customers.tolist() == expected.index.tolist() and counts.tolist() == expected.tolist()
    assert counts.dtype == np.int64 and int(counts.sum()) == manifest.counts.rows
    served = manifest.exposure.served.at(N)
    assert int(counts.max()) == served.max_exposures <= 3 and len(counts) == served.distinct_customers


def test_manifest_exposure_records_mirror_the_exposure_metrics() -> None:
    """The manifest (pydantic, import-light) restates recsys.allocation.exposure's result fields: they must agree."""
    import dataclasses

    from recsys.allocation.exposure import ExposureAtK as AtK
    from recsys.allocation.exposure import ExposureMetrics
    from recsys.cache.manifest import ExposureAtK, ExposureSide

    assert set(ExposureAtK.model_fields) == {f.name for f in dataclasses.fields(AtK)} - {"k"}  # k is the dict key
    assert set(ExposureSide.model_fields) == {f.name for f in dataclasses.fields(ExposureMetrics)}


def write_selection(path: Path) -> Selection:
    """A selection file: content for products with a history, name_knn for new products."""
    score = ValidationScore(label="content", ranker="content", metric="precision", k=12, value=0.01, hits=3)
    content = {"seed": 42, "features": {}, "affinity_weight": 0.7, "token_user_cap": 20}
    knn = {"seed": 42, "features": {}, "neighbours": 3}
    selection = Selection(
        dataset="synthetic",
        rule="test",
        headline_k=12,
        products=SelectedModel(label="content", ranker="content", settings=content, validation=score),
        runner_up=None,
        new_products=SelectedModel(
            label="name_knn", ranker="name_knn", settings=knn, validation=score.model_copy(update={"label": "name_knn"})
        ),
        new_products_runner_up=None,
    )
    write_record(selection, path)
    return selection


def test_the_cache_serves_the_evaluations_selection_unless_overridden(tmp_path: Path) -> None:
    path = tmp_path / "selection.json"
    selection = write_selection(path)
    main, new = served_models({"ranker": "selected", "seed": 1}, {}, "synthetic", path)
    assert (main.ranker, main.params, main.source, main.label) == (
        "content",
        selection.products.settings,
        "selection",
        "content",
    )
    assert new is not None and new.ranker == "name_knn" and new.params["neighbours"] == 3
    over, same = served_models(
        {"ranker": "activity", "settings": {}, "new_products": "same", "seed": 5}, {"engagement": {}}, "x", path
    )
    assert over.source == "override" and over.params == {"seed": 5, "features": {"engagement": {}}} and same == over
    assert served_models({"ranker": "activity", "new_products": "none"}, {}, "x", path)[1] is None
    with pytest.raises(ValueError, match="affinity_wieght"):
        served_models({"ranker": "content", "settings": {"affinity_wieght": 0.9}}, {}, "x", path)
    with pytest.raises(ValueError, match="only for an explicit cache.ranker override"):
        served_models({"ranker": "selected", "settings": {"affinity_weight": 0.9}}, {}, "synthetic", path)
    with pytest.raises(ValueError, match="cache.new_products must be one of"):
        served_models({"ranker": "activity", "new_products": "maybe"}, {}, "x", path)
    with pytest.raises(FileNotFoundError, match="recsys evaluate"):
        served_models({"ranker": "selected"}, {}, "synthetic", tmp_path / "absent.json")


def test_a_cache_built_from_the_selection_records_it_and_matches_every_setting(tmp_path: Path) -> None:
    selection = write_selection(tmp_path / "selection.json")
    main, _ = served_models({"ranker": "selected"}, {}, "synthetic", tmp_path / "selection.json")
    manifest = build_cache(
        random_log(n_rows=600),
        main.ranker,
        main.params,
        tmp_path / "cache",
        n=5,
        model_source=main.source,
        model_label=main.label,
    )
    assert manifest.model_source == "selection" and manifest.model_label == "content"
    assert served_differences(manifest.ranker, manifest.ranker_params, selection.products) == []
    changed = {**selection.products.settings, "affinity_weight": 0.2}
    assert served_differences("content", changed, selection.products) == [
        "affinity_weight: 0.2 instead of the selected 0.7"
    ]
    assert served_differences("als", {}, selection.products) == ["ranker 'als' instead of the selected 'content'"]


# ----------------------------------------------------------------------------------------------
# what is served, and how well it is measured (recsys.cache.figures)
# ----------------------------------------------------------------------------------------------


def test_served_figures_are_the_served_configurations_own_or_not_measured(tmp_path: Path) -> None:
    from test_reporting import summary as hand_made_summary

    from recsys.cache.figures import served_figures
    from recsys.evaluation.results import write_summary

    path = write_summary(hand_made_summary(), tmp_path / "summary.json")
    features: dict[str, Any] = {"features": {}, "engagement": {}}
    seed = hand_made_summary().protocol.seed

    def figures(ranker: str, params: dict[str, Any], **kw: Any) -> Any:
        kwargs: dict[str, Any] = {"dataset": "synthetic", "n": 100, "max_exposures": None, "summary_path": path}
        kwargs.update(kw)
        return served_figures(ranker=ranker, params=params, feature_params=features, **kwargs)

    served = figures("content", {"seed": seed, "features": features, "affinity_weight": 0.5, "chunk_entries": 10})
    model = hand_made_summary().model("content")
    assert served.status == "measured" and served.model == "content" and served.source is not None
    assert [(p.k, p.value, p.hits) for p in served.precision] == [(p.k, p.value, p.hits) for p in model.precision]
    shallow = figures("content", {"seed": seed, "features": features, "affinity_weight": 0.5}, n=10)
    assert [p.k for p in shallow.precision] == [10]  # depths up to the served one only
    other = figures("content", {"seed": seed, "features": features, "affinity_weight": 0.9})
    assert other.status == "not_measured" and "affinity_weight: served 0.9, evaluated 0.5" in (other.reason or "")
    capped = figures("content", {"seed": seed, "features": features, "affinity_weight": 0.5}, max_exposures=50)
    assert capped.status == "not_measured" and "catalogue-wide cap 50" in (capped.reason or "") and not capped.precision
    assert figures("bpr", {"seed": seed}).status == "not_measured"  # no evaluated bpr model
    assert figures("activity", {"seed": seed}, dataset=None).reason == (
        "the cache was built from a file that is not one of the pipeline's data sets"
    )
    spark_als = figures("als", {"seed": seed, "factors": 32, "iterations": 10}, engine="spark")
    assert spark_als.status == "not_measured" and "another implementation" in (spark_als.reason or "")
    missing = figures("content", {}, summary_path=tmp_path / "none.json")
    assert missing.status == "not_measured" and "run `recsys evaluate`" in (missing.reason or "")
